"""A collector restored from `state_dict()` (saved and loaded as a checkpoint is) continues the same sums."""

from __future__ import annotations

import io

import numpy as np
import torch

from taskrel.affinity import EtapAffinity, PtgTransferGain, TagAffinity

from .problems import ett_problem


def collectors():
    return [EtapAffinity(momentum=True, weighting="validation"), TagAffinity(sample=0.5, seed=1, every=2),
            PtgTransferGain(sample=0.5, seed=2, weighting="validation")]  # fmt: skip


def test_a_restored_collector_ends_with_the_uninterrupted_matrix():
    problem = ett_problem(rows=32)
    optimizer = torch.optim.Adam(problem.model.parameters(), lr=1e-2)
    whole, first = collectors(), collectors()

    def val():
        with torch.no_grad():
            return {"val_loss": dict(zip(problem.tasks, problem.losses(problem.model, range(7)).tolist(), strict=True))}

    for c in whole + first:
        c.on_train_begin(val())
    watching = first
    for epoch in range(4):
        if epoch == 2:  # interrupted: a fresh set of collectors continues from the saved state
            buffer = io.BytesIO()
            torch.save([c.state_dict() for c in first], buffer)
            buffer.seek(0)
            watching = collectors()
            for c, state in zip(watching, torch.load(buffer, weights_only=False), strict=True):
                c.load_state_dict(state)
        for _ in range(3):
            ctx = problem.context(optimizer)
            for c in whole + watching:
                c.on_step(ctx)
            optimizer.zero_grad()
            torch.stack(ctx.losses).sum().backward()
            optimizer.step()
        for c in whole + watching:
            c.on_epoch_end(epoch, val())
    for resumed, uninterrupted in zip(watching, whole, strict=True):
        a, b = resumed.matrix(), uninterrupted.matrix()
        np.testing.assert_array_equal(a.values, b.values)
        assert (a.steps, a.update) == (b.steps, b.update)
