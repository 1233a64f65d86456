"""A small multichannel forecaster: one shared window encoder, one linear head per channel.

Input: a window (n, input_len, C) of all C channels; the head of channel k predicts that channel's
next `horizon` values, shape (n, horizon). The encoder

1. subtracts every channel's last observed value from its window (the NLinear normalisation of
   Zeng et al., "Are Transformers Effective for Time Series Forecasting?", 2023),
2. flattens the window (input_len · C values: every channel sees every other channel) and applies
   one fully connected ReLU layer of width `hidden` (a channel-mixing MLP),

and passes the C last values on next to the features. Head k is ``Linear(hidden, horizon)`` on the
features plus channel k's last value, added back unchanged (no parameters).

Why this encoder: it is the smallest model that is a real forecaster on ETT. A window MLP without
the last-value normalisation forecasts ETTh1's test months markedly worse (their levels have drifted
from the training year; see ``benchmarks/ett_convergence.py``), and a Conv1d / patch encoder or a
Transformer costs several times more per step on CPU for no better error at horizon 24, while the
full ground truth needs hundreds of runs on one core. All channels are mixed in the shared layer, so
what one channel's loss teaches the encoder is what the others read: the sharing MTL measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from taskrel.errors import ModelError
from taskrel.models.multitask import MultiTaskModel


class WindowEncoder(nn.Module):
    """(n, input_len, C) → (n, hidden + C): ReLU features of the level-removed window, then the C last values."""

    def __init__(self, input_len: int, n_channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.layer = nn.Linear(input_len * n_channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, -1, :]
        features = torch.relu(self.layer((x - last[:, None, :]).flatten(1)))
        return torch.cat([features, last], dim=1)


class ChannelHead(nn.Module):
    """Channel `channel`'s forecast: ``Linear(hidden, horizon)`` on the features plus its last input value.

    The channel is a one-hot buffer rather than an attribute, so heads of different channels have the
    same layout and a batched ensemble (`taskrel.train.batched`) carries each member's channel as data.
    """

    def __init__(self, channel: int, n_channels: int, hidden: int, horizon: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.linear = nn.Linear(hidden, horizon)
        self.register_buffer("select", nn.functional.one_hot(torch.tensor(channel), n_channels).float())

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        level = (encoded[:, self.hidden :] * self.select).sum(dim=1, keepdim=True)  # exactly the channel's value
        return self.linear(encoded[:, : self.hidden]) + level


def window_forecaster(
    channels: Sequence[str],
    heads: Sequence[str],
    input_len: int,
    horizon: int,
    hidden: int = 64,
    seed: int = 0,
) -> MultiTaskModel:
    """A `MultiTaskModel` reading all `channels` with a head for each name in `heads` (a subset), seeded."""
    unknown = [h for h in heads if h not in channels]
    if unknown or not heads:
        raise ModelError(f"heads must be a non-empty subset of the channels {list(channels)}, got {list(heads)}")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        encoder = WindowEncoder(input_len, len(channels), hidden)
        modules = {name: ChannelHead(list(channels).index(name), len(channels), hidden, horizon) for name in heads}
    finally:
        torch.random.set_rng_state(generator_state)
    return MultiTaskModel(encoder, modules)
