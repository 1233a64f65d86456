import numpy as np
import pytest
import torch

from taskrel.errors import ModelError
from taskrel.models.forecast import window_forecaster

CHANNELS = ("a", "b", "c")


def test_each_head_forecasts_its_channel_from_the_whole_window():
    model = window_forecaster(CHANNELS, ("c", "a"), input_len=8, horizon=4, hidden=5, seed=3)
    x = torch.randn(6, 8, 3)
    out = model(x, "c")
    assert out.shape == (6, 4)
    # with the head's linear map zeroed, the forecast is the channel's last observed value (NLinear level)
    with torch.no_grad():
        model.head("c").linear.weight.zero_()
        model.head("c").linear.bias.zero_()
    np.testing.assert_allclose(model(x, "c").detach(), x[:, -1, 2:3].expand(6, 4))
    # another channel's history changes the forecast of "a" (channels are mixed in the shared layer)
    moved = x.clone()
    moved[:, :4, 1] += 1.0
    assert not torch.allclose(model(x, "a"), model(moved, "a"))


def test_seeded_and_heads_checked():
    one = window_forecaster(CHANNELS, ("a",), 8, 4, seed=1)
    same = window_forecaster(CHANNELS, ("a",), 8, 4, seed=1)
    other = window_forecaster(CHANNELS, ("a",), 8, 4, seed=2)
    assert torch.equal(one.trunk.layer.weight, same.trunk.layer.weight)
    assert not torch.equal(one.trunk.layer.weight, other.trunk.layer.weight)
    with pytest.raises(ModelError, match="subset"):
        window_forecaster(CHANNELS, ("d",), 8, 4)
