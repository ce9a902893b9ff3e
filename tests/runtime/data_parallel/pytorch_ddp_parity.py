#!/usr/bin/python3
"""dtrain's DistributedDataParallel against PyTorch's (torch.distributed, gloo), 2 ranks each: the same MLP, initial
weights, data and data order; SGD with momentum, and Adam with the optimizer state sharded (dtrain's --zero-stage 1
and 2 against PyTorch's ZeroRedundancyOptimizer). Every rank's per-step losses and final weights must equal PyTorch's
same rank bit for bit when the Python torch is the LibTorch dtrain was built against (the same kernels), and within
1e-5 otherwise (the CUDA lane builds against the torch 2.11 wheel); the weights must have moved, and dtrain's ranks must
hold identical weights. usage: pytorch_ddp_parity.py --tool build/tests/runtime/data_parallel/ddp_steps
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

RANKS = 2
STEPS = 10
BATCH = 16
INPUTS = 64


def mlp():
    return nn.Sequential(nn.Linear(INPUTS, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (dtrain's optimizer, dtrain's ZeRO stage, PyTorch's optimizer): replicated SGD against DDP and SGD, sharded Adam
# against DDP and ZeroRedundancyOptimizer(Adam).
CASES = [("sgd", 0, "sgd"), ("adam", 1, "zero-adam"), ("adam", 2, "zero-adam")]


def pytorch_rank(rank, port, initial, x, y, kind, results):
    torch.set_num_threads(1)
    # USE_LIBUV=0: Debian's PyTorch is built without libuv, which its TCPStore would otherwise ask for.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), USE_LIBUV="0")
    dist.init_process_group("gloo", rank=rank, world_size=RANKS)
    model = mlp()
    with torch.no_grad():
        for p, w in zip(model.parameters(), initial):
            p.copy_(w)
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=16384 / 2**20)
    if kind == "sgd":
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    else:
        from torch.distributed.optim import ZeroRedundancyOptimizer
        optimizer = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam, lr=0.01)
    global_batch = BATCH * RANKS
    losses = []
    for s in range(STEPS):
        row = (s % (x.shape[0] // global_batch)) * global_batch + rank * BATCH
        optimizer.zero_grad()
        loss = F.cross_entropy(ddp(x[row:row + BATCH]), y[row:row + BATCH])
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    results[rank] = [torch.tensor(losses, dtype=torch.double)] + [p.detach().clone() for p in model.parameters()]
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", required=True, help="path of tests/runtime/data_parallel/ddp_steps")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="dtrain-ddp-parity-")
    try:
        torch.manual_seed(0)
        x = torch.randn(BATCH * RANKS * 4, INPUTS)
        y = torch.randint(0, 10, (x.shape[0],))
        initial = [p.detach().clone() for p in mlp().parameters()]
        inputs = os.path.join(scratch, "inputs.pt")
        torch.save([x, y] + initial, inputs)
        problems = []
        for optimizer, zero_stage, peer in CASES:
            problems += compare(args.tool, scratch, inputs, initial, x, y, optimizer, zero_stage, peer)
        for problem in problems:
            print("FAIL " + problem)
        sys.exit(1 if problems else 0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare(tool, scratch, inputs, initial, x, y, optimizer, zero_stage, peer):
    prefix = os.path.join(scratch, f"dtrain-{optimizer}-{zero_stage}")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run = subprocess.run(["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(RANKS), tool,
                          "--input", inputs, "--output", prefix, "--steps", str(STEPS), "--batch", str(BATCH),
                          "--optimizer", optimizer, "--zero-stage", str(zero_stage)],
                         env=env, capture_output=True, text=True, timeout=240)
    if run.returncode != 0:
        sys.exit("ddp_steps failed:\n" + run.stdout + run.stderr)
    libtorch = run.stdout.split()[-1]
    # "1.13.0a0" (Debian's build), "2.11.0+cu130" (the wheel): the release numbers alone.
    same_kernels = re.match(r"\d+\.\d+\.\d+", torch.__version__).group(0) == libtorch
    # Replicated SGD runs PyTorch's very kernels; a sharded Adam steps flat shards where PyTorch steps whole
    # parameters, so its element-wise kernels may round differently (vectorised bodies against scalar tails).
    tolerance = 0.0 if same_kernels and zero_stage == 0 else 1e-5

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(pytorch_rank, args=(free_port(), initial, x, y, peer, results), nprocs=RANKS)
        theirs = [list(results[r]) for r in range(RANKS)]
    ours = [torch.load(f"{prefix}.rank{r}.pt", weights_only=False) for r in range(RANKS)]

    problems = []
    what = f"{optimizer} zero stage {zero_stage} against PyTorch's {peer}"
    largest_gap = 0.0
    for r in range(RANKS):
        loss_gap = (ours[r][0] - theirs[r][0]).abs().max().item()
        weight_gap = max((a - b).abs().max().item() for a, b in zip(ours[r][1:], theirs[r][1:]))
        moved = max((a - b).abs().max().item() for a, b in zip(ours[r][1:], initial))
        largest_gap = max(largest_gap, loss_gap, weight_gap)
        print(f"{what}, rank {r}: max |loss gap| over {STEPS} steps {loss_gap:.3g}, max |weight gap| "
              f"{weight_gap:.3g}, weights moved by up to {moved:.3g}")
        if loss_gap > tolerance or weight_gap > tolerance:
            problems.append(f"{what}: rank {r} differs from PyTorch's rank {r} by more than {tolerance}")
        if moved < 1e-2:
            problems.append(f"{what}: rank {r}'s weights hardly moved ({moved:.3g}): the comparison shows nothing")
        if not all(torch.equal(a, b) for a, b in zip(ours[r][1:], ours[0][1:])):
            problems.append(f"{what}: dtrain's rank {r} holds other weights than its rank 0")
    print(f"{what}: dtrain on LibTorch {libtorch}, PyTorch {torch.__version__}: "
          + ("bit for bit" if largest_gap == 0 else f"largest gap {largest_gap:.3g}, allowed {tolerance}"))
    return problems


if __name__ == "__main__":
    main()
