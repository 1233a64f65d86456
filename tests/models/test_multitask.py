import pytest
import torch
from torch import nn

from taskrel.errors import UnknownTaskError
from taskrel.models import MultiTaskModel, chemical_model, mlp_model


def test_chemical_architecture_and_parameter_split():
    model = chemical_model(["a", "b"], seed=0)
    shapes = [tuple(p.shape) for p in model.shared_parameters()]
    assert shapes == [(32, 180), (32,), (16, 32), (16,)]
    assert [tuple(p.shape) for p in model.task_parameters("a")] == [(1, 16), (1,)]
    assert all((p == 0).all() for p in model.shared_parameters()[1::2])  # zero biases (Keras default)


def test_stacked_and_per_task_forward_agree():
    model = mlp_model(["a", "b", "c"], 6, (8, 4), seed=1)
    x = torch.randn(3, 5, 6)
    stacked = model.forward_stacked(x, ["a", "b", "c"])
    per_task = torch.stack([model(x[k], t) for k, t in enumerate("abc")])
    by_dict = model.forward_tasks({t: x[k] for k, t in enumerate("abc")})
    assert torch.allclose(stacked, per_task, atol=1e-6)
    assert all(torch.allclose(by_dict[t], per_task[k], atol=1e-6) for k, t in enumerate("abc"))


def test_non_linear_heads_use_the_generic_path():
    heads = {t: nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)) for t in "ab"}
    model = MultiTaskModel(nn.Linear(2, 4), heads)
    x = torch.randn(2, 7, 2)
    assert torch.allclose(model.forward_stacked(x, ["b", "a"])[0], model(x[0], "b"))


def test_same_seed_same_weights_and_unknown_head():
    a, b = mlp_model(["t"], 3, (4,), seed=5), mlp_model(["t"], 3, (4,), seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(UnknownTaskError, match="'u'"):
        a.head("u")
