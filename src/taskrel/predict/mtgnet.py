"""An MTG-Net-style learned predictor (after Song et al. 2022): gains from group membership alone.

Each task has a learned embedding; a group is the set of its members' embeddings, mixed by one
self-attention layer, and a small head reads every member's gain from its mixed token. Trained
with Adam on the measured (group, task) gains of the training groups (mean squared error), as an
ensemble of a few seeds averaged at prediction (the seeds act on a forked RNG: torch's global
generator is left as it was). No affinity is used. Its hyperparameters are fixed
(no search on the test groups); like the original, it needs many training groups to be reliable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from taskrel.arguments import integer, real
from taskrel.errors import ConfigError
from taskrel.predict.base import GainPredictor
from taskrel.train.loop import torch_threads


class _SetNet(nn.Module):
    def __init__(self, n_tasks: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tasks, dim)
        self.attend = nn.MultiheadAttention(dim, num_heads=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def forward(self, members: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(members)
        mixed, _ = self.attend(tokens, tokens, tokens, key_padding_mask=padding)
        return self.head(torch.cat([tokens, mixed], dim=-1)).squeeze(-1)


class MtgNetPredictor(GainPredictor):
    """Set-attention meta-learner on group membership (see the module docstring)."""

    needs_affinity = False

    def __init__(self, dim: int = 16, epochs: int = 300, lr: float = 1e-2, weight_decay: float = 1e-3,
                 ensemble: int = 3, seed: int = 0) -> None:  # fmt: skip
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.ensemble = ensemble
        self.seed = seed
        self._check_params()

    def _check_params(self) -> None:
        if integer("dim", self.dim, 2) % 2:
            raise ConfigError(f"dim must be an even integer ≥ 2 (the attention has two heads), got {self.dim!r}")
        integer("epochs", self.epochs, 1)
        real("lr", self.lr, 0.0, open_minimum=True)
        real("weight_decay", self.weight_decay, 0.0)
        integer("ensemble", self.ensemble, 1)
        integer("seed", self.seed, 0)

    def _encode(self, groups: list) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        index = {t: i for i, t in enumerate(self.tasks_)}
        ordered = [[t for t in self.tasks_ if t in g] for g in groups]
        width = max(len(g) for g in ordered)
        members = torch.zeros(len(ordered), width, dtype=torch.long)
        padding = torch.ones(len(ordered), width, dtype=torch.bool)
        for r, group in enumerate(ordered):
            members[r, : len(group)] = torch.tensor([index[t] for t in group])
            padding[r, : len(group)] = False
        return members, padding, ordered

    def _fit(self, train: pd.DataFrame, measured: pd.DataFrame) -> None:
        groups = list(dict.fromkeys(train["group"]))
        first = train.drop_duplicates("group").set_index("group")["members"]
        members, padding, ordered = self._encode([first[g] for g in groups])
        gain = train.set_index(["group", "task"])["gain"]
        target = torch.zeros(members.shape)
        for r, (name, group) in enumerate(zip(groups, ordered, strict=True)):
            target[r, : len(group)] = torch.tensor([gain[(name, t)] for t in group], dtype=torch.float32)
        self.nets_ = []
        with torch_threads(1):
            self._train(members, padding, target)

    def _train(self, members: torch.Tensor, padding: torch.Tensor, target: torch.Tensor) -> None:
        for k in range(self.ensemble):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed) * 1000 + k)
                net = _SetNet(len(self.tasks_), int(self.dim))
            optimizer = torch.optim.Adam(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            for _ in range(int(self.epochs)):
                optimizer.zero_grad()
                error = (net(members, padding) - target)[~padding]
                (error**2).mean().backward()
                optimizer.step()
            self.nets_.append(net.eval())

    def _predict(self, rows: pd.DataFrame) -> np.ndarray:
        groups = list(dict.fromkeys(rows["group"]))
        first = rows.drop_duplicates("group").set_index("group")["members"]
        members, padding, ordered = self._encode([first[g] for g in groups])
        with torch.no_grad():
            out = torch.stack([net(members, padding) for net in self.nets_]).mean(dim=0)
        value = {(g, t): float(out[r, c]) for r, (g, group) in enumerate(zip(groups, ordered, strict=True))
                 for c, t in enumerate(group)}  # fmt: skip
        return np.array([value[(g, t)] for g, t in zip(rows["group"], rows["task"], strict=True)])
