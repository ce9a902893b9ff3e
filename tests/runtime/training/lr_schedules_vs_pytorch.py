#!/usr/bin/python3
"""dtrain's learning-rate schedules against PyTorch's schedulers, step by step: linear warm-up (LinearLR), then
StepLR or CosineAnnealingLR (chained with SequentialLR), or a constant rate. For each configuration the rate PyTorch's
optimizer holds at each step must equal dtrain's lr_at(step) within 1e-12 relative.

usage: lr_schedules_vs_pytorch.py LR_CURVE
"""
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import check, finish  # noqa: E402

lr_curve = sys.argv[1]
STEPS = 60


def pytorch_rates(base_lr, warmup, then):
    """The lr PyTorch's optimizer uses at steps 0..STEPS-1: `then` builds the scheduler that follows the warm-up."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = []
    if warmup > 0:
        # LinearLR over warmup - 1 intervals: base/warmup at step 0, base at step warmup - 1.
        schedulers.append(torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0,
                                                            total_iters=max(warmup - 1, 1)))
    schedulers.append(then(optimizer))
    scheduler = schedulers[0] if len(schedulers) == 1 else torch.optim.lr_scheduler.SequentialLR(
        optimizer, schedulers, milestones=[warmup])
    rates = []
    for _ in range(STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def dtrain_rates(*args):
    out = subprocess.run([lr_curve, *args, "--steps", str(STEPS)], capture_output=True, text=True, check=True).stdout
    return [float(line) for line in out.split()]


CASES = [
    ("constant", ["--schedule", "constant", "--lr", "0.1"], 0.1, 0,
     lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0, total_iters=0)),
    ("constant after 5 warm-up steps", ["--schedule", "constant", "--lr", "0.1", "--warmup-steps", "5"], 0.1, 5,
     lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0, total_iters=0)),
    ("step (every 7, gamma 0.5)", ["--schedule", "step", "--lr", "0.2", "--step-size", "7", "--gamma", "0.5"], 0.2, 0,
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    ("step after 4 warm-up steps",
     ["--schedule", "step", "--lr", "0.2", "--step-size", "10", "--gamma", "0.1", "--warmup-steps", "4"], 0.2, 4,
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.1)),
    ("cosine to 0 over 60 steps", ["--schedule", "cosine", "--lr", "0.05", "--total-steps", "60"], 0.05, 0,
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=60, eta_min=0.0)),
    ("cosine to 1e-3 after 10 warm-up steps",
     ["--schedule", "cosine", "--lr", "0.05", "--total-steps", "60", "--warmup-steps", "10", "--min-lr", "0.001"],
     0.05, 10, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=0.001)),
]

for name, args, base_lr, warmup, then in CASES:
    ours, theirs = dtrain_rates(*args), pytorch_rates(base_lr, warmup, then)
    worst = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, theirs))
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if abs(a - b) > 1e-12 * abs(b)), None)
    check(len(ours) == STEPS and first is None, f"{name}: dtrain = PyTorch at all {STEPS} steps (worst {worst:.2g})",
          f"first difference at step {first}: dtrain {ours[first]!r}, PyTorch {theirs[first]!r}"
          if first is not None else "")
finish()
