import numpy as np
import pytest
import torch

from taskrel.data.ett import ETT_TASKS, load_ett
from taskrel.errors import ConfigError
from taskrel.problems.builtin import ETT_CONFIG
from taskrel.problems.registry import load_problem
from taskrel.problems.torch_problem import TorchProblem


@pytest.fixture(scope="module")
def problem():
    return load_problem("ett", max_epochs=1)


def test_ett_is_a_seven_channel_single_input_problem(problem):
    assert isinstance(problem, TorchProblem)
    assert list(problem.tasks) == list(ETT_TASKS)
    assert problem.config.optimizer == "adam" and problem.config.max_epochs == 1
    assert problem.config.batch_size == ETT_CONFIG.batch_size
    assert problem.fingerprint()["name"] == "etth1"
    assert load_problem("etth2", max_epochs=1).fingerprint()["name"] == "etth2"


@pytest.mark.slow
def test_reported_losses_are_the_mse_of_the_restored_model_on_standardised_windows(problem):
    trainer = problem.trainer(["MULL", "OT"], seed=0)
    result = trainer.fit()
    windows = load_ett("ETTh1")
    x, y = (torch.from_numpy(a) for a in windows.test)
    with torch.no_grad():
        for k, task in ((3, "MULL"), (6, "OT")):
            mse = float(((trainer.model(x, task) - y[:, k]) ** 2).mean())
            assert np.isclose(result.test_loss[task], mse, rtol=1e-5)
    # training helps: better than the untrained forecaster (which predicts roughly the last value)
    untrained = problem.make_model(("MULL", "OT"), 0)
    with torch.no_grad():
        before = float(((untrained(x, "OT") - y[:, 6]) ** 2).mean())
    assert result.test_loss["OT"] < before


@pytest.mark.slow
def test_same_seed_same_numbers_and_unknown_options_refused(problem):
    first = problem.train(["LULL"], 3)
    again = problem.train(["LULL"], 3)
    assert first.val_loss == again.val_loss
    with pytest.raises(ConfigError, match=r"unknown training option\(s\): \['no_such_option'\]"):
        load_problem("ett", no_such_option=1)
