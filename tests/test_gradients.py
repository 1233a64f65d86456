"""The per-task gradient engine against a naive per-task backward loop."""

import pytest
import torch
from torch import nn

from taskrel.errors import ConfigError, ModelError, NonFiniteError
from taskrel.gradients import (
    LinearCapture,
    backward_with_task_gradients,
    gram,
    shared_input_backward,
    shared_linear_layers,
    task_gradients,
)
from taskrel.models import MultiTaskModel, chemical_model, loss_function, mlp_model


def naive(model, losses_fn):
    rows = []
    for k in range(len(losses_fn())):
        model.zero_grad(set_to_none=True)
        losses_fn()[k].backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]))
    return torch.stack(rows)


def make_batch(k=4, b=16, d=180, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(k, b, d, generator=g) > 0.9).float()
    y = (torch.rand(k, b, generator=g) > 0.5).float()
    return x, y


@pytest.mark.parametrize("mode", ["loop", "batched", "auto"])
def test_engine_equals_naive_loop(mode):
    model = chemical_model(["a", "b", "c", "d"], seed=1)
    x, y = make_batch()
    loss = loss_function("binary")

    def losses():
        out = model.forward_stacked(x, model.task_names)
        return [loss(out[k], y[k]) for k in range(4)]

    reference = naive(model, losses)
    grads = task_gradients(losses(), model.shared_parameters(), mode=mode)
    assert grads.shape == (4, sum(p.numel() for p in model.shared_parameters()))
    assert torch.allclose(grads, reference, atol=1e-6)


@pytest.mark.parametrize("trunk", ["linear", "other"])
def test_backward_with_task_gradients_equals_naive_loop(trunk):
    """Both fast paths (hooks on linear trunks, vmap otherwise) against K separate backward passes."""
    model = mlp_model(["a", "b", "c"], 7, (5, 4), seed=2)
    if trunk == "other":  # a LayerNorm is not row-wise linear: forces the vmap path
        model.trunk = nn.Sequential(model.trunk, nn.LayerNorm(4))
    x, y = torch.randn(3, 9, 7, generator=torch.Generator().manual_seed(3)), torch.randn(3, 9)
    loss = loss_function("regression")

    def losses():
        return [loss(model(x[k], t), y[k]) for k, t in enumerate(model.task_names)]

    reference = naive(model, losses)
    heads = []
    for k, task in enumerate(model.task_names):
        model.zero_grad(set_to_none=True)
        losses()[k].backward()
        heads.append([p.grad.clone() for p in model.task_parameters(task)])
    model.zero_grad(set_to_none=True)
    torch.stack(losses()).sum().backward()
    summed = [p.grad.clone() for p in model.parameters()]

    model.zero_grad(set_to_none=True)
    result = backward_with_task_gradients(model, model.task_names, x, y, loss)
    assert torch.allclose(result.shared, reference, atol=1e-6)
    assert torch.allclose(result.losses, torch.stack(losses()).detach(), atol=1e-6)
    assert all(
        torch.allclose(g, h, atol=1e-6) for k in range(3) for g, h in zip(result.heads[k], heads[k], strict=True)
    )
    assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(model.parameters(), summed, strict=True))


def shared_input_case(shape, bias=True):
    """Tasks reading the same rows x of `shape` (…, 6) through a 6→5→4 trunk (LayerNorm without affine
    parameters in between, the second linear layer called twice); float64 for tight checks."""
    torch.manual_seed(4)

    class Trunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(6, 5, bias=bias), nn.Linear(5, 5, bias=bias)
            self.norm = nn.LayerNorm(5, elementwise_affine=False)

        def forward(self, x):
            return torch.relu(self.second(torch.tanh(self.second(self.norm(self.first(x))))))

    model = MultiTaskModel(Trunk(), {t: nn.Linear(5, 2) for t in "abc"}).double()
    x = torch.randn(*shape, 6, dtype=torch.float64)
    y = torch.randn(3, *shape, 2, dtype=torch.float64)

    def losses():
        features = model.trunk(x)
        return torch.stack([((model.head(t)(features) - y[k]) ** 2).mean() for k, t in enumerate("abc")])

    return model, losses


def run_shared_input_backward(model, losses, **kwargs):
    shared = model.shared_parameters()
    layers = shared_linear_layers(model, shared)
    with LinearCapture(layers) as capture:
        values = losses()
    heads = [model.task_parameters(t) for t in "abc"]
    return shared_input_backward(values, capture, shared, heads, ["a", "b", "c"], **kwargs)


@pytest.mark.parametrize("shape", [(11,), (3, 7)], ids=["rows", "sequence"])
@pytest.mark.parametrize("bias", [True, False])
def test_shared_input_backward_equals_naive_loop(shape, bias):
    """Per-task gradients, their Gram matrix by both routes, head `.grad` against K backward passes; the
    summed `.grad` bit for bit the ordinary backward's."""
    model, losses = shared_input_case(shape, bias)
    reference = naive(model, lambda: list(losses()))
    heads = []
    for k, task in enumerate("abc"):
        model.zero_grad(set_to_none=True)
        losses()[k].backward()
        heads.append([p.grad.clone() for p in model.task_parameters(task)])
    model.zero_grad(set_to_none=True)
    losses().sum().backward()
    summed = [p.grad.clone() for p in model.parameters()]
    for kwargs in ({}, {"gram_only": True, "route": "gradients"}, {"gram_only": True, "route": "gram"}):
        model.zero_grad(set_to_none=True)
        result = run_shared_input_backward(model, losses, **kwargs)
        if kwargs:
            assert result.shared is None
            assert torch.allclose(result.gram, reference @ reference.T, rtol=1e-10, atol=1e-12), kwargs
        else:
            assert torch.allclose(result.shared, reference, atol=1e-12)
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), summed, strict=True))
        for k in range(3):
            assert all(torch.allclose(g, h, atol=1e-12) for g, h in zip(result.heads[k], heads[k], strict=True))


def test_a_shared_layer_the_forward_skips_has_zero_gradients():
    """A shared linear layer left out of this forward: its gradient rows are 0, by both routes, as autograd says."""
    model, losses = shared_input_case((5,))
    model.trunk.spare = nn.Linear(5, 3).double()  # shared, never called by Trunk.forward
    shared = model.shared_parameters()
    reference = task_gradients(list(losses()), shared, mode="loop")  # autograd, one backward per task
    assert reference[:, -sum(p.numel() for p in model.trunk.spare.parameters()) :].abs().max() == 0
    model.zero_grad(set_to_none=True)
    result = run_shared_input_backward(model, losses)
    assert torch.allclose(result.shared, reference, atol=1e-12)
    model.zero_grad(set_to_none=True)
    result = run_shared_input_backward(model, losses, gram_only=True, route="gram")
    assert torch.allclose(result.gram, reference @ reference.T, rtol=1e-10, atol=1e-12)
    assert model.trunk.spare.weight.grad is None  # as the ordinary backward leaves it


def test_shared_linear_layers_must_hold_every_shared_parameter():
    model, _ = shared_input_case((5,))
    assert shared_linear_layers(model, model.shared_parameters()) == [model.trunk.first, model.trunk.second]
    model.trunk.norm = nn.LayerNorm(5).double()  # affine parameters outside any linear layer
    assert shared_linear_layers(model, model.shared_parameters()) is None


def test_shared_input_backward_refuses_what_it_cannot_do():
    model, losses = shared_input_case((5,))
    with pytest.raises(ConfigError, match="gram_only=True"):
        run_shared_input_backward(model, losses, route="gram")
    with pytest.raises(ConfigError, match="route must be one of"):
        run_shared_input_backward(model, losses, gram_only=True, route="fast")


def test_shared_input_gram_names_a_task_whose_gradient_norm_overflows():
    model, losses = shared_input_case((5,))
    scaled = lambda: losses() * torch.tensor([1.0, 1e200, 1.0], dtype=torch.float64)  # noqa: E731
    with pytest.raises(NonFiniteError, match="task 'b'"):
        run_shared_input_backward(model, scaled, gram_only=True, route="gram")


def test_gram_is_inner_products_in_float64():
    grads = torch.randn(3, 50)
    g = gram(grads)
    assert g.dtype == torch.float64
    assert torch.allclose(g, grads.double() @ grads.double().T)


def test_non_finite_loss_names_the_task():
    w = nn.Parameter(torch.ones(3))
    losses = [w.sum(), w.sum() * float("nan")]
    with pytest.raises(NonFiniteError, match="'second'"):
        task_gradients(losses, [w], names=["first", "second"])


def test_infinite_gradient_names_the_task():
    w = nn.Parameter(torch.tensor([0.0, 1.0]))
    losses = [w.sum(), torch.sqrt(w).sum()]  # d sqrt(w)/dw = inf at w = 0
    with pytest.raises(NonFiniteError, match="gradient of task 'b'"):
        task_gradients(losses, [w], names=["a", "b"], mode="loop")


def test_model_without_shared_parameters_is_refused():
    model = MultiTaskModel(nn.Identity(), {"a": nn.Linear(3, 1), "b": nn.Linear(3, 1)})
    with pytest.raises(ModelError, match="no trainable shared"):
        model.shared_parameters()
    with pytest.raises(ModelError, match="no shared parameters"):
        task_gradients([torch.tensor(1.0)], [])
