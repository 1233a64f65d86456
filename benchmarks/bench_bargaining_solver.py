"""Bargaining solver: taskrel's damped Newton vs the reference convex-concave procedure (cvxpy + ECOS).

The reference is re-implemented here from its published description (Nash-MTL §3.2, AuxiNash App. C):
variables α ≥ 0 on the Frobenius-normalised Gram matrix Gₙ = G/‖G‖_F; constraints
log(α_i) + log((Gα)_i) ≥ log p_i; objective Σ_i (Gₙα)_i plus the linearisation of the concave
φ(α) = Σ_i log α_i + log (Gₙα)_i at the previous iterate; up to 20 CCP rounds, each an ECOS solve
(max_iters 100, warm start) of a problem built once per preference vector; it stops when
‖Gₙα − 1/α‖ < 1e-3 or α moves less than 1e-6. Solver failures are recorded, not hidden.

Both solve the same problems: random task gradients for K = 3, 10, 30 and ill-conditioned ones
(nearly parallel gradients, norms spread over 8 orders, huge norms, near Pareto-stationarity).
Reported per case: median time per solve, the speed-up, each answer's relative residual
max_i |α_i (Gα)_i / p_i − 1| on the original G, and the largest relative difference in α. Near
Pareto-stationarity taskrel regularises by default (warned; residual reported on the matrix it
solved); with the guard lifted (max_amplification=1e12) it solves the original problem too.

Run: python benchmarks/bench_bargaining_solver.py   (needs the `bench` extra: cvxpy, ecos)
"""

from __future__ import annotations

import time
import warnings

import cvxpy as cp
import numpy as np

from taskrel.weighting import NearStationaryWarning, relative_residual, solve_bargaining

from common import write_result

CCP_ROUNDS = 20


class ReferenceCCP:
    """The convex-concave procedure of the reference code, for one preference vector p."""

    def __init__(self, k: int, p: np.ndarray) -> None:
        self.p = p
        self.alpha = cp.Variable(k, nonneg=True)
        self.gram = cp.Parameter((k, k))
        self.scale = cp.Parameter(nonneg=True)
        self.linearisation = cp.Parameter(k)
        g_alpha = self.gram @ self.alpha
        constraints = [-cp.log(self.alpha[i] * self.scale) - cp.log(g_alpha[i]) + np.log(p[i]) <= 0 for i in range(k)]
        objective = cp.Minimize(cp.sum(g_alpha) + self.linearisation @ self.alpha / self.scale)
        self.problem = cp.Problem(objective, constraints)

    def solve(self, gram: np.ndarray) -> tuple[np.ndarray, str]:
        scale = float(np.linalg.norm(gram))
        normalised = gram / scale
        self.gram.value = normalised
        self.scale.value = scale
        alpha = np.ones(len(gram))
        status = "round cap"
        for _ in range(CCP_ROUNDS):
            previous = alpha
            self.linearisation.value = 1.0 / previous + normalised.T @ (1.0 / (normalised @ previous))
            try:
                self.problem.solve(solver=cp.ECOS, warm_start=True, max_iters=100)
            except cp.error.SolverError as exc:
                return alpha, f"ECOS failed: {exc}"
            if self.alpha.value is None:
                return alpha, f"ECOS status {self.problem.status}"
            alpha = np.maximum(self.alpha.value, 1e-10)
            if np.linalg.norm(normalised @ alpha - 1.0 / (alpha + 1e-10)) < 1e-3:
                status = "residual rule"
                break
            if np.linalg.norm(alpha - previous) < 1e-6:
                status = "step rule"
                break
        return alpha, status


def problems(rng: np.random.Generator) -> list[tuple[str, int, np.ndarray, bool]]:
    """(name, K, task gradients J (K, P), uniform preferences?) for every benchmark case."""
    cases = []
    for k in (3, 10, 30):
        for uniform in (True, False):
            for _ in range(5):
                cases.append((f"random K={k}", k, rng.normal(size=(k, 1000)), uniform))
    for k in (3, 10, 30):
        common = rng.normal(size=1000)
        for _ in range(3):
            parallel = common + 1e-4 * rng.normal(size=(k, 1000))
            cases.append((f"nearly parallel (cos≈1−1e-8) K={k}", k, parallel, False))
            spread = rng.normal(size=(k, 1000)) * 10.0 ** rng.uniform(-4, 4, size=(k, 1))
            cases.append((f"norms spread 1e-4..1e4 K={k}", k, spread, False))
            cases.append((f"huge norms (Gram ~1e10) K={k}", k, 1e5 * rng.normal(size=(k, 1000)) / 30, False))
    for _ in range(3):
        near = rng.normal(size=(3, 50))
        near[2] = -(near[0] + near[1]) + 1e-4 * rng.normal(size=50)
        cases.append(("near Pareto-stationary (ε=1e-4) K=3", 3, near, True))
    return cases


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def plot(summary: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(y - 0.2, [summary[n]["median_ccp_ms"] for n in names], 0.4, label="reference CCP (cvxpy + ECOS)")
    ax.barh(y + 0.2, [summary[n]["median_newton_ms"] for n in names], 0.4, label="taskrel damped Newton")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per solve (ms, log scale)")
    ax.set_title("Nash bargaining solve Gα = p/α")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    warnings.filterwarnings("ignore", message=".*not DPP.*")  # the reference problem is not DPP; recorded below
    rng = np.random.default_rng(0)
    rows = []
    for name, k, grads, uniform in problems(rng):
        gram = grads @ grads.T
        p = np.ones(k) if uniform else rng.uniform(0.2, 2.0, size=k) * k / 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NearStationaryWarning)
            ours = solve_bargaining(gram, p)
        unregularised = solve_bargaining(gram, p, max_amplification=1e12)
        ours_time = median_time(lambda g=gram, p=p: solve_bargaining(g, p), 20 if k < 30 else 10)
        reference = ReferenceCCP(k, p)
        ref_alpha, status = reference.solve(gram)
        ref_time = median_time(lambda r=reference, g=gram: r.solve(g), 3)
        ref_residual = relative_residual(gram, ref_alpha, p)
        rows.append(
            {
                "case": name,
                "K": k,
                "preferences": "uniform (Nash-MTL)" if uniform else "random (AuxiNash)",
                "newton_ms": ours_time * 1e3,
                "ccp_ms": ref_time * 1e3,
                "speedup": ref_time / ours_time,
                "newton_iterations": ours.iterations,
                "newton_residual": relative_residual(gram, ours.alpha, p),
                "newton_ridge": ours.ridge,
                "newton_residual_on_solved_gram": relative_residual(ours.gram, ours.alpha, p),
                "newton_unregularised_residual": relative_residual(gram, unregularised.alpha, p),
                "newton_warned": bool(caught),
                "ccp_status": status,
                "ccp_residual": ref_residual,
                "ccp_converged": bool(ref_residual < 1e-4),
                "alpha_max_rel_diff": float(np.max(np.abs(ref_alpha - ours.alpha) / ours.alpha)),
            }
        )
        row = rows[-1]
        print(
            f"{name:42s} {row['preferences'][:7]:8s} newton {row['newton_ms']:7.3f} ms  ccp {row['ccp_ms']:8.2f} ms "
            f"×{row['speedup']:6.0f}  res {row['newton_residual']:.1e} / {row['ccp_residual']:.1e}  "
            f"Δα {row['alpha_max_rel_diff']:.1e}  {status}",
            flush=True,
        )
    summary = {}
    for name in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == name]
        converged = [r for r in group if r["ccp_converged"]]
        summary[name] = {
            "n": len(group),
            "median_newton_ms": float(np.median([r["newton_ms"] for r in group])),
            "median_ccp_ms": float(np.median([r["ccp_ms"] for r in group])),
            "median_speedup": float(np.median([r["speedup"] for r in group])),
            "max_newton_residual": float(max(r["newton_residual"] for r in group)),
            "max_newton_residual_on_solved_gram": float(max(r["newton_residual_on_solved_gram"] for r in group)),
            "max_newton_unregularised_residual": float(max(r["newton_unregularised_residual"] for r in group)),
            "newton_regularised": int(sum(r["newton_ridge"] > 0 for r in group)),
            "max_ccp_residual": float(max(r["ccp_residual"] for r in group)),
            "ccp_converged": len(converged),
            "max_alpha_rel_diff_where_ccp_converged": (
                float(max(r["alpha_max_rel_diff"] for r in converged)) if converged else None
            ),
        }
    path = write_result(
        "bargaining_solver",
        {
            "description": "taskrel damped Newton vs reference CCP (cvxpy + ECOS), same Gram matrices",
            "cvxpy": cp.__version__,
            "reference_problem_is_dpp": ReferenceCCP(3, np.ones(3)).problem.is_dpp(),
            "summary": summary,
            "rows": rows,
        },
    )
    plot(summary, path.with_suffix(".png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
