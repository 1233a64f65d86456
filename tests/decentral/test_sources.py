"""Per-agent data sources and the in-process real-data engine built on them."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from taskrel.data import load_dataset
from taskrel.decentral.graphs import make_graph
from taskrel.decentral.realdata import RealConfig, agent_scores, auc, run_real, run_source, with_bias
from taskrel.decentral.sources import DatasetSource, FileSource, source_from_spec
from taskrel.errors import ConfigError, DataError, UnknownTaskError

DECENTRAL = {"estimator": "neighbourhood", "normalise": "gershgorin"}


def write_agents(root, k=4, n=60, d=3, seed=0, logistic=False):
    """K agent files a0..a{K-1}.npz: two clusters of linear models (agents < K/2 share one)."""
    rng = np.random.default_rng(seed)
    centres = 2 * rng.standard_normal((2, d))
    for j in range(k):
        w = centres[j * 2 // k] + 0.1 * rng.standard_normal(d)
        x = rng.standard_normal((n, d))
        z = x @ w + 0.3 * rng.standard_normal(n)
        np.savez(root / f"a{j}.npz", x=x, y=(z > 0).astype(float) if logistic else z)
    return sorted(root.glob("*.npz"))


def test_a_file_agent_needs_only_its_own_file(tmp_path):
    paths = write_agents(tmp_path)
    source = FileSource.from_directory(tmp_path)
    assert source.names == ("a0", "a1", "a2", "a3")
    with np.load(paths[2]) as f:
        x, y = f["x"], f["y"]
    for p in paths[:2] + paths[3:]:
        p.unlink()  # the other agents' files are gone: agent 2 does not need them
    data = source.load(2)
    rows = np.concatenate([data.x_train, data.x_test])
    assert len(data.y_train) == 48 and len(data.y_test) == 12  # 80 / 20
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))
    assert sorted(np.concatenate([data.y_train, data.y_test])) == sorted(y)
    with pytest.raises(DataError, match=r"a0\.npz is missing"):
        source.load(0)


def test_csv_files_and_explicit_test_arrays(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    lines = "".join(f"{a},{t},{b}\n" for (a, b), t in zip(x, y, strict=True))
    (tmp_path / "north.csv").write_text("f1,y,f2\n" + lines)
    np.savez(tmp_path / "south.npz", x=x, y=y, x_test=x[:3], y_test=y[:3])
    source = FileSource.from_directory(tmp_path, test_fraction=0.3)
    north, south = source.load(0), source.load(1)
    assert north.x_train.shape == (7, 2) and north.x_test.shape == (3, 2)
    assert sorted(np.concatenate([north.y_train, north.y_test])) == sorted(y)
    assert np.array_equal(south.x_train, x) and np.array_equal(south.y_test, y[:3])
    assert source_from_spec(source.spec()).load(0).y_test.tolist() == north.y_test.tolist()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("b.csv", "f1,f2\n1,2\n3,4\n", "no target column 'y'"),
     ("b.csv", "f1,y\n1,2\nx,4\n", r"row 3, column 'f1': 'x' is not a number"),
     ("b.npz", b"not an npz", "not a readable .npz"),
     ("b.npz", {"x": np.zeros((4, 2)), "y": np.zeros(3)}, r"need x \(n, d\) and y \(n,\)"),
     ("b.npz", {"x": np.zeros((4, 2)), "y": np.array([0.0, 1.0, 2.0, 1.0])}, "labels 0/1, y row 2 is 2")],
)  # fmt: skip
def test_a_malformed_agent_file_is_named(tmp_path, name, content, message):
    write_agents(tmp_path, k=2)
    path = tmp_path / name
    if isinstance(content, dict):
        np.savez(path, **content)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    source = FileSource.from_directory(tmp_path, "logistic")
    k = source.names.index("b")
    with pytest.raises(DataError, match=message):
        source.load(k)


def test_directory_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FileSource.from_directory(tmp_path / "nowhere")
    (tmp_path / "only.npz").write_bytes(b"")
    with pytest.raises(DataError, match="holds 1 agent file"):
        FileSource.from_directory(tmp_path)
    with pytest.raises(ConfigError, match="loss must be one of"):
        FileSource([tmp_path / "a.npz", tmp_path / "b.npz"], "hinge")


def test_a_dataset_agent_holds_exactly_its_task():
    source = DatasetSource.open("landmine", ["3", "0", "7"], split_seed=2)
    assert source.loss == "logistic" and source.names == ("3", "0", "7")
    reference = load_dataset("landmine", split_seed=2).task("0")
    data = source.load(1)
    assert np.array_equal(data.x_train, reference.train.x) and np.array_equal(data.y_test, reference.test.y)
    with pytest.raises(UnknownTaskError, match="'nope'"):
        DatasetSource.open("landmine", ["0", "nope"])
    assert DatasetSource.open("school", ["1", "2"]).loss == "squared"


def test_auc_matches_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200).astype(float)
    s = np.round(y + rng.standard_normal(200), 1)  # with ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(auc(s, np.ones(200)))


def test_run_source_scores_each_agent_on_its_own_test_split(tmp_path):
    write_agents(tmp_path, k=4)
    source = FileSource.from_directory(tmp_path)
    adjacency = make_graph("random", 4, average_degree=2, weights=1.0, seed=0)
    config = RealConfig(mu=0.05, eta=1.0, iters=600, **DECENTRAL)
    summary = run_source(source, adjacency, config)
    assert set(summary) == {"algorithms", "laplacian"}
    assert set(summary["algorithms"]) == {"noncoop", "consensus", "learned"}
    # independent re-computation from the per-agent arrays with run_real and a plain MSE
    data = [source.load(k) for k in range(4)]
    result = run_real([(d.x_train, d.y_train) for d in data], adjacency, "squared", config)
    for name in ("noncoop", "consensus", "learned"):
        pairs = zip(data, result.models[name], strict=True)
        mse = np.mean([np.mean((with_bias(d.x_test) @ w - d.y_test) ** 2) for d, w in pairs])
        assert summary["algorithms"][name]["test_mse"] == pytest.approx(mse, rel=1e-12)
    lap = np.array(summary["laplacian"])
    assert np.allclose(lap, lap.T) and np.allclose(lap.sum(axis=1), 0)
    assert np.abs(lap).sum(axis=1).max() == pytest.approx(1.0)  # Gershgorin normalisation
    assert (lap[(adjacency == 0) & ~np.eye(4, dtype=bool)] == 0).all()  # only on the communication graph
    assert agent_scores(result.models["noncoop"][:1], data[0].x_test, data[0].y_test, "squared").shape == (1,)


def test_real_data_stability_is_checked_before_any_iteration(tmp_path):
    write_agents(tmp_path, k=3)
    source = FileSource.from_directory(tmp_path)
    adjacency = make_graph("random", 3, average_degree=2, weights=1.0, seed=0)
    data = [source.load(k) for k in range(3)]
    traces = [np.mean(np.sum(with_bias(d.x_train) ** 2, axis=1)) for d in data]
    worst = int(np.argmax(traces))
    with pytest.raises(ConfigError, match=rf"agent {worst} \(a{worst}\): step size μ = 2 is unstable") as err:
        run_source(source, adjacency, RealConfig(mu=2.0, eta=0.5, iters=100, **DECENTRAL))
    assert f"a stable choice is μ = {1 / max(traces):.3g}" in str(err.value)
    with pytest.raises(ConfigError, match=r"μ·η = 0.5·8 = 4 ≥ 2.*a stable choice is η = 2"):
        RealConfig(mu=0.5, eta=8.0, **DECENTRAL)
