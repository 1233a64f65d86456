"""A from-scratch reference of the synthetic GMRF baselines, written from the equations alone.

Agent k of run r sees ``d_k(i) = u_k(i)ᵀ w°_k + v_k(i)`` with ``u ~ N(0, σ_u² I_M)``, ``v ~ N(0, σ_v²)``,
drawn chunk by chunk from ``default_rng([seed, 2, r, k])`` (the data, as documented in
`taskrel.decentral.streams`; nothing of the algorithms is imported). Every iteration adapts with
LMS, ``ψ_k = w_k + μ u_k (d_k − u_kᵀ w_k)``, then combines over neighbours:

- non-cooperative: ``w_k = ψ_k`` (step μ);
- consensus (ATC): ``w_k = Σ_l a_kl ψ_l`` with Metropolis weights ``a_kl = 1 / (1 + max(n_k, n_l))`` (step μ');
- true graph: ``w_k = ψ_k − μ' η Σ_l L_kl ψ_l`` (step μ').
"""

import numpy as np

CHUNK = 256  # iterations per data chunk, as documented for every engine


def metropolis(adjacency: np.ndarray) -> np.ndarray:
    k = len(adjacency)
    degree = [(adjacency[j] != 0).sum() - (adjacency[j, j] != 0) for j in range(k)]
    a = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j and adjacency[i, j] != 0:
                a[i, j] = 1.0 / (1 + max(degree[i], degree[j]))
        a[i, i] = 1.0 - a[i].sum()
    return a


def lms(w: np.ndarray, u: np.ndarray, d: float, step: float) -> np.ndarray:
    return w + step * u * (d - u @ w)


def baselines(config, adjacency, laplacian, true_models) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per baseline: final models (R, K, M) and network MSD (R, iters), by plain loops over agents."""
    runs, agents, dim = true_models.shape
    mu_coop = config.mu_coop if config.mu_coop is not None else config.mu
    steps = {"noncoop": config.mu, "consensus": mu_coop, "true": mu_coop}
    a = metropolis(adjacency)
    models = {name: np.zeros((runs, agents, dim)) for name in steps}
    msd = {name: np.zeros((runs, config.iters)) for name in steps}
    for r in range(runs):
        rngs = [np.random.default_rng([config.seed, 2, r, k]) for k in range(agents)]
        w = {name: np.zeros((agents, dim)) for name in steps}
        for start in range(0, config.iters, CHUNK):
            n = min(CHUNK, config.iters - start)
            u = [config.sigma_u * rng.standard_normal((n, dim)) for rng in rngs]
            d = [u[k] @ true_models[r, k] + config.sigma_v * rngs[k].standard_normal(n) for k in range(agents)]
            for t in range(n):
                for name, step in steps.items():
                    psi = [lms(w[name][k], u[k][t], d[k][t], step) for k in range(agents)]
                    for k in range(agents):
                        if name == "noncoop":
                            w[name][k] = psi[k]
                        elif name == "consensus":
                            w[name][k] = sum(a[k, j] * psi[j] for j in range(agents))
                        else:
                            pull = sum(laplacian[k, j] * psi[j] for j in range(agents))
                            w[name][k] = psi[k] - step * config.eta * pull
                    msd[name][r, start + t] = ((w[name] - true_models[r]) ** 2).sum() / agents
        for name in steps:
            models[name][r] = w[name]
    return {name: (models[name], msd[name]) for name in steps}


def real_baselines(train, adjacency, loss: str, config) -> dict[str, np.ndarray]:
    """Non-cooperative SGD and Metropolis ATC on real data: tail-averaged affine models (K, M + 1), by plain loops.

    Agent k draws rows uniformly with replacement from its own training set with
    ``default_rng([seed, 2, 0, k])``, chunk by chunk; the model sees ``[x, 1]``. Squared loss:
    ``w + μ x̃ (y − x̃ᵀw)``; logistic: ``w − μ x̃ (1 / (1 + e^{−x̃ᵀw}) − y)``. The reported model is the
    mean of the iterates after iteration ``iters − round(average·iters)``.
    """
    agents = len(train)
    xs = [np.hstack([np.asarray(x, float), np.ones((len(x), 1))]) for x, _ in train]
    ys = [np.asarray(y, float) for _, y in train]
    rngs = [np.random.default_rng([config.seed, 2, 0, k]) for k in range(agents)]
    a = metropolis(adjacency)
    w = {name: np.zeros((agents, xs[0].shape[1])) for name in ("noncoop", "consensus")}
    total = {name: np.zeros_like(value) for name, value in w.items()}
    tail = config.iters - max(1, round(config.average * config.iters))

    def sgd(model, x, y):
        z = x @ model
        error = y - z if loss == "squared" else y - 1.0 / (1.0 + np.exp(-z))
        return model + config.mu * x * error

    for start in range(0, config.iters, CHUNK):
        n = min(CHUNK, config.iters - start)
        rows = [rng.integers(0, len(x), size=n) for rng, x in zip(rngs, xs, strict=True)]
        for t in range(n):
            for name in w:
                psi = [sgd(w[name][k], xs[k][rows[k][t]], ys[k][rows[k][t]]) for k in range(agents)]
                for k in range(agents):
                    w[name][k] = psi[k] if name == "noncoop" else sum(a[k, j] * psi[j] for j in range(agents))
                if start + t + 1 > tail:
                    total[name] += w[name]
    return {name: total[name] / (config.iters - tail) for name in w}
