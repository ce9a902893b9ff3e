#!/usr/bin/python3
"""dtrain's ZeRO against PyTorch's ZeroRedundancyOptimizer (torch.distributed, gloo) in the same run: the MLP of
bench/memory_bench.cpp (24 square layers of 2048 and a head, 100.7 M parameters), Adam, 4 ranks of one thread each,
the same steps and batch. Prints each one's peak resident memory per rank above what the rank held before the model
existed, and the step time, side by side. PyTorch's ZeroRedundancyOptimizer shards the optimizer state (dtrain's
--zero-stage 1); stage 2 has no peer here: Debian's PyTorch 1.13 cannot import torch.distributed.fsdp under Python
3.11 (ValueError: mutable default TensorProperties in a dataclass).
That the two train to the same weights is a test (tests/runtime/data_parallel/pytorch_ddp_parity.py).

usage: pytorch_zero_peer.py --bench build/bench/memory_bench [--summary FILE]
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

RANKS, STEPS, BATCH, WIDTH, LAYERS = 4, 3, 8, 2048, 24


def mlp():
    layers = []
    for _ in range(LAYERS):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1000  # kB -> MB
    return 0.0


def peer_rank(rank, port, sharded, results):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), USE_LIBUV="0")
    dist.init_process_group("gloo", rank=rank, world_size=RANKS)
    torch.manual_seed(1)
    x = torch.randn(BATCH * RANKS * STEPS, WIDTH)
    y = torch.randint(0, 10, (x.shape[0],))
    dist.barrier()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again at the current resident memory
    baseline = status_mb("VmRSS")
    torch.manual_seed(2)
    model = nn.parallel.DistributedDataParallel(mlp())
    if sharded:
        from torch.distributed.optim import ZeroRedundancyOptimizer
        optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-4)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for s in range(STEPS):
        row = s * BATCH * RANKS + rank * BATCH
        loss = F.cross_entropy(model(x[row:row + BATCH]), y[row:row + BATCH])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    step_s = (time.perf_counter() - start) / STEPS
    peak = torch.tensor([status_mb("VmHWM") - baseline])
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    results[rank] = (peak.item(), step_s)
    dist.destroy_process_group()


def pytorch(sharded):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(peer_rank, args=(free_port(), sharded, results), nprocs=RANKS)
        return results[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="path of build/bench/memory_bench")
    parser.add_argument("--summary", help="append the headline rows to this markdown file")
    args = parser.parse_args()
    # The same allocator setting as memory_bench (mallopt there): freed tensors leave the resident set.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run = subprocess.run(["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(RANKS), args.bench,
                          "--width", str(WIDTH), "--layers", str(LAYERS), "--steps", str(STEPS), "--batch",
                          str(BATCH)], env=env, capture_output=True, text=True, timeout=1200)
    if run.returncode != 0:
        sys.exit("memory_bench failed:\n" + run.stdout + run.stderr)
    ours = {int(m.group(1)): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\| (\d) \| (\d+) MB \| \d+ MB \| [\d.]+ \| ([\d.]+) s \|", run.stdout, re.M)}
    theirs = {0: pytorch(False), 1: pytorch(True)}
    print(f"ZeRO against PyTorch on an MLP of 100.7 M parameters, Adam, {RANKS} ranks, {STEPS} steps of {BATCH} "
          f"samples per rank\n")
    print("| optimizer state | dtrain peak memory per rank | PyTorch | dtrain step time | PyTorch | memory ratio "
          "(PyTorch / dtrain) | time ratio (PyTorch / dtrain) |")
    print("|---|---|---|---|---|---|---|")
    names = {0: "replicated (DDP + Adam)", 1: "sharded (--zero-stage 1, ZeroRedundancyOptimizer)"}
    for stage in (0, 1):
        (our_mb, our_s), (their_mb, their_s) = ours[stage], theirs[stage]
        print(f"| {names[stage]} | {our_mb:.0f} MB | {their_mb:.0f} MB | {our_s:.2f} s | {their_s:.2f} s | "
              f"{their_mb / our_mb:.3f} | {their_s / our_s:.3f} |")
        if args.summary:
            with open(args.summary, "a") as f:
                f.write(f"| pytorch_zero_peer | {names[stage]}: peak memory | {our_mb:.0f} MB | PyTorch | "
                        f"{their_mb:.0f} MB | {their_mb / our_mb:.3f} |\n")
                f.write(f"| pytorch_zero_peer | {names[stage]}: step time | {our_s:.2f} s | PyTorch | "
                        f"{their_s:.2f} s | {their_s / our_s:.3f} |\n")
    print(f"\ndtrain --zero-stage 2 (no PyTorch CPU peer): {ours[2][0]:.0f} MB, {ours[2][1]:.2f} s")


if __name__ == "__main__":
    main()
