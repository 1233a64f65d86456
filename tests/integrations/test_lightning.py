"""Lightning: AffinityCallback against taskrel's collectors in a plain loop, resume, LightningProblem in sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

L = pytest.importorskip("lightning")

from taskrel.affinity import AffinityMatrix, EtapAffinity, PtgTransferGain, TagAffinity  # noqa: E402
from taskrel.errors import ConfigError  # noqa: E402
from taskrel.integrations.lightning import AffinityCallback, LightningProblem  # noqa: E402
from taskrel.problems.registry import load_problem  # noqa: E402
from taskrel.train import StepContext, TrialEvaluator  # noqa: E402
from taskrel.train.loop import torch_threads  # noqa: E402
from taskrel.train.store import RunStore  # noqa: E402

from .examples import DOCS, load_example  # noqa: E402

TASKS = ("HUFL", "MUFL", "OT")
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.fixture(scope="module")
def example():
    return load_example("lightning_example")


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def fit(example, callbacks=(), epochs=3, shuffle=True, ckpt_path=None, **options):
    L.seed_everything(0, verbose=False)
    module, data = example.Forecaster(TASKS), example.Windows(TASKS, shuffle=shuffle)
    options = {"enable_checkpointing": False, "num_sanity_val_steps": -1, **QUIET, **options}
    trainer = L.Trainer(max_epochs=epochs, callbacks=list(callbacks), **options)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


def plain_loop(example, collectors, epochs=3):
    """The same module, data, seed and optimiser trained by hand, following taskrel's callback contract."""
    L.seed_everything(0, verbose=False)
    module, data = example.Forecaster(TASKS), example.Windows(TASKS)
    optimizer = module.configure_optimizers()
    val_batch = next(iter(data.val_dataloader()))

    def val():
        with torch.no_grad():
            return {t: float(loss) for t, loss in module.task_losses(val_batch).items()}

    for c in collectors:
        c.on_train_begin({"val_loss": val()})
    loader = data.train_dataloader()
    for epoch in range(epochs):
        for i, batch in enumerate(loader):
            losses = module.training_step(batch, i)["task_losses"]
            evaluator = TrialEvaluator(
                module, lambda m, tasks, b=batch: torch.stack(list(m.task_losses(b).values()))[list(tasks)]
            )
            heads = [list(module.heads[t].parameters()) for t in TASKS]
            ctx = StepContext(TASKS, list(losses.values()), list(module.trunk.parameters()), optimizer, evaluator,
                              task_parameters=heads)  # fmt: skip
            for c in collectors:
                c.on_step(ctx)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
        for c in collectors:
            c.on_epoch_end(epoch, {"val_loss": val()})
    return module


def test_callback_gives_the_plain_loop_matrices_and_leaves_training_bit_identical(example):
    """ETAP, TAG and PTG: the shared trunk and each task's head found from the losses' graphs."""
    callback = AffinityCallback(["etap", "tag", "ptg"], weighting="validation")
    watched = fit(example, [callback])
    unwatched = fit(example)
    for name, value in watched.state_dict().items():
        assert torch.equal(value, unwatched.state_dict()[name]), name
    assert "training_step" not in vars(watched)  # the wrapper is gone after the fit

    reference = [EtapAffinity(weighting="validation"), TagAffinity(weighting="validation"),
                 PtgTransferGain(weighting="validation")]  # fmt: skip
    by_hand = plain_loop(example, reference)
    torch.testing.assert_close(by_hand.state_dict(), watched.state_dict())  # the same training
    for collector in reference:
        matrix = callback.matrices[collector.method]
        assert matrix.tasks == TASKS and matrix.method == f"{collector.method}-validation"
        np.testing.assert_allclose(matrix.values, collector.matrix().values, rtol=1e-6, atol=1e-9)
        assert matrix.steps == collector.matrix().steps == 3 * 7  # 900 training windows in batches of 128


def test_resumed_fit_continues_the_sums_to_the_uninterrupted_matrix(example, tmp_path):
    whole = AffinityCallback(["etap", TagAffinity(sample=0.5, seed=3)])
    saver = L.pytorch.callbacks.ModelCheckpoint(tmp_path, "{epoch}", save_top_k=-1, every_n_epochs=1)
    uninterrupted = fit(example, [whole, saver], epochs=4, shuffle=False, enable_checkpointing=True)
    resumed = AffinityCallback(["etap", TagAffinity(sample=0.5, seed=3)])
    after = fit(example, [resumed], epochs=4, shuffle=False, ckpt_path=tmp_path / "epoch=1.ckpt")
    for name, value in after.state_dict().items():
        assert torch.equal(value, uninterrupted.state_dict()[name]), name
    for name in ("etap", "tag"):
        np.testing.assert_allclose(resumed.matrices[name].values, whole.matrices[name].values, rtol=1e-12)
        assert resumed.matrices[name].steps == whole.matrices[name].steps == 4 * 7


def test_the_documented_example_runs_and_writes_its_matrices(example, tmp_path):
    matrices = example.main(tmp_path)
    assert set(matrices) == {"etap", "tag"}
    for name, matrix in matrices.items():
        assert matrix.tasks == example.TASKS
        back = AffinityMatrix.read_csv(tmp_path / f"{name}.csv", tasks=example.TASKS)
        np.testing.assert_allclose(back.values, matrix.values, rtol=1e-10)  # CSV keeps 12 digits
        assert (tmp_path / f"{name}.png").stat().st_size > 0


def test_sweep_with_two_workers_records_the_losses_of_direct_training(tmp_path):
    spec = f"{DOCS / 'lightning_example.py'}:problem"
    store = tmp_path / "runs.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-m", "taskrel", "sweep", "--problem", spec, "--groups", "all", "--seeds",
                           "1", "--store", str(store), "--workers", "2", "--quiet", "--json"],
                          env=env, capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    assert json.loads(done.stdout)["done"] == 3  # two single tasks and the pair
    problem = load_problem(spec)
    with RunStore.open(store) as runs:
        records = {r.group: r for r in runs.records()}
    for group in ("HUFL", "OT", "HUFL|OT"):
        direct = problem.train(group.split("|"), 0)
        for task in group.split("|"):
            assert records[group].val_loss[task] == pytest.approx(direct.val_loss[task], rel=1e-6)
            assert records[group].test_loss[task] == pytest.approx(direct.test_loss[task], rel=1e-6)


def test_lightning_problem_takes_collectors_through_the_callback(example):
    problem = LightningProblem(lambda g, s: example.Forecaster(g), lambda g, s: example.Windows(g, seed=s),
                               {"max_epochs": 2, "num_sanity_val_steps": -1, "enable_checkpointing": False},
                               tasks=TASKS)  # fmt: skip
    collector = EtapAffinity()
    result = problem.train(TASKS, 0, callbacks=[collector])
    callback = AffinityCallback(["etap"])
    fit(example, [callback], epochs=2)
    np.testing.assert_allclose(collector.matrix().values, callback.matrices["etap"].values, rtol=1e-6)
    assert set(result.val_loss) == set(result.test_loss) == set(TASKS) and result.steps == 2 * 7
    with pytest.raises(ConfigError, match="LightningProblem 'lightning' trains with its module's own"):
        problem.train(TASKS, 0, weighting=object())


def test_a_module_that_does_not_follow_the_rules_is_named(example):
    class TotalOnly(example.Forecaster):
        def training_step(self, batch, batch_idx):
            return sum(self.task_losses(batch).values())

    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(max_epochs=1, callbacks=[AffinityCallback()], enable_checkpointing=False, **QUIET)
    with pytest.raises(ConfigError, match=r"TotalOnly.training_step returned Tensor; .* 'task_losses'"):
        trainer.fit(TotalOnly(TASKS), datamodule=example.Windows(TASKS))

    class Unlogged(example.Forecaster):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", sum(self.task_losses(batch).values()))

    trainer = L.Trainer(max_epochs=1, callbacks=[AffinityCallback()], enable_checkpointing=False, **QUIET)
    with pytest.raises(ConfigError, match=r"Unlogged logged no \['val_loss/HUFL'.*weighting='steps'"):
        trainer.fit(Unlogged(TASKS), datamodule=example.Windows(TASKS))
    with pytest.raises(ConfigError, match="unknown method"):
        AffinityCallback(["etap", "gradnorm"])
