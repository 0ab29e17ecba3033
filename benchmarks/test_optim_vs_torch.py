"""Our Adam/AdamW against torch.optim (needs the bench extra: torch).

Lives beside the torch reference rather than in tests/, because torch is a benchmark
dependency, not a test one: `.venv/bin/python -m pytest benchmarks/test_optim_vs_torch.py`.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_optim import START, VARIANTS, fresh_params, quadratic_grads  # noqa: E402

from kirchhoff_sim.training.optim import Adam, AdamW, CosineSchedule, StepSchedule  # noqa: E402

TORCH_ATOL = 1e-12

# ------------------------------------------------------------------ against torch
def _torch_scheduler(torch, schedule, opt):
    if isinstance(schedule, StepSchedule):
        return torch.optim.lr_scheduler.StepLR(
            opt, step_size=schedule.step_size, gamma=schedule.gamma
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=schedule.t_max, eta_min=schedule.eta_min
    )


@pytest.mark.parametrize("cls, weight_decay", VARIANTS)
@pytest.mark.parametrize("schedule", [StepSchedule(2, 0.5), CosineSchedule(3, 1e-3)])
def test_matches_torch(cls, weight_decay, schedule):
    torch_cls = {Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}[cls]
    lr, betas, eps = 0.05, (0.85, 0.99), 1e-8
    n_epochs, steps_per_epoch = 4, 3

    params = fresh_params()
    opt = cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, schedule=schedule)
    tparams = [torch.tensor(p, dtype=torch.float64) for p in START]
    topt = torch_cls(tparams, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    tsched = _torch_scheduler(torch, schedule, topt)

    for epoch in range(n_epochs):
        opt.set_epoch(epoch)
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        for _ in range(steps_per_epoch):
            opt.step(quadratic_grads(params))
            grads = quadratic_grads([t.numpy() for t in tparams])
            for t, g in zip(tparams, grads):
                t.grad = torch.from_numpy(g)
            topt.step()
        tsched.step()
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p, t.numpy(), rtol=0, atol=TORCH_ATOL)


