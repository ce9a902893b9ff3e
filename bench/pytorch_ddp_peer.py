#!/usr/bin/python3
"""dtrain's DistributedDataParallel against PyTorch's (torch.distributed, gloo) on the same model (MLP 784-1024-1024-10),
initial weights, data and data order, 2 ranks each, one thread per rank, in the same run.

Prints a table of step times (dtrain overlapped, dtrain with the allreduce after backward, one rank with no
communication, PyTorch DDP). That the two train to the same weights is a test (tests/runtime/data_parallel/
pytorch_ddp_parity.py). usage: pytorch_ddp_peer.py --bench build/bench/ddp_step_bench [--steps 20]
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


def mlp():
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(rank, world, port, initial, x, y, steps, warmup, batch, results):
    torch.set_num_threads(1)
    # USE_LIBUV=0: Debian's PyTorch 2.6 is built without libuv, which its TCPStore would otherwise ask for.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), USE_LIBUV="0")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import time

    model = mlp()
    with torch.no_grad():
        for p, w in zip(model.parameters(), initial):
            p.copy_(w)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    global_batch = batch * world
    seconds = 0.0
    for s in range(warmup + steps):
        dist.barrier()
        start = time.perf_counter()
        row = (s % (x.shape[0] // global_batch)) * global_batch + rank * batch
        optimizer.zero_grad()
        F.cross_entropy(ddp(x[row:row + batch]), y[row:row + batch]).backward()
        optimizer.step()
        if s >= warmup:
            seconds += time.perf_counter() - start
    if rank == 0:
        results["step_ms"] = 1e3 * seconds / steps
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="path of dtrain's ddp_step_bench")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--summary", help="append the headline figures to this markdown file (bench/run-all.sh)")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="dtrain-peer-")
    try:
        torch.manual_seed(0)
        x = torch.randn(64 * 2 * 8, 784)
        y = torch.randint(0, 10, (x.shape[0],))
        initial = [p.detach().clone() for p in mlp().parameters()]
        inputs = os.path.join(scratch, "inputs.pt")
        torch.save([x, y] + initial, inputs)

        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        run = subprocess.run(["mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "pml", "ob1", "--mca", "btl",
                              "self,vader,tcp", "-np", "2", args.bench, "--input", inputs,
                              "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)],
                             env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit("ddp_step_bench failed:\n" + run.stdout + run.stderr)
        dtrain = {k: float(v) for k, v in re.findall(r"^(\w+_step_ms) ([0-9.]+)$", run.stdout, re.M)}

        with mp.Manager() as manager:
            results = manager.dict()
            mp.spawn(train, args=(2, free_port(), initial, x, y, args.steps, args.warmup, args.batch, results),
                     nprocs=2)
            torch_ms = results["step_ms"]

        rows = [("dtrain DDP, overlapped (2 ranks)", dtrain["dtrain_step_ms"]),
                ("dtrain, allreduce after backward (2 ranks)", dtrain["after_backward_step_ms"]),
                ("dtrain ranks without communication", dtrain["local_step_ms"]),
                ("PyTorch DDP, gloo (2 ranks)", torch_ms)]
        print(f"MLP 784-1024-1024-10, batch {args.batch} per rank, SGD, 1 thread per rank, {args.steps} timed steps")
        print(f"{'':44} {'step ms':>9} {'vs PyTorch':>11} {'vs no comm':>11}")
        for name, ms in rows:
            print(f"{name:44} {ms:9.2f} {ms / torch_ms:11.3f} {ms / dtrain['local_step_ms']:11.3f}")
        if args.summary:  # bench/run-all.sh's table: ratio = PyTorch time / dtrain time (above 1: dtrain faster)
            with open(args.summary, "a") as f:
                f.write(f"| pytorch_ddp_peer | DDP step, MLP 784-1024-1024-10, 2 ranks | "
                        f"{dtrain['dtrain_step_ms']:.2f} ms | PyTorch DDP gloo | {torch_ms:.2f} ms | "
                        f"{torch_ms / dtrain['dtrain_step_ms']:.3f} |\n")
                f.write(f"| pytorch_ddp_peer | DDP step against ranks without communication | "
                        f"{dtrain['dtrain_step_ms']:.2f} ms | no communication | {dtrain['local_step_ms']:.2f} ms | "
                        f"{dtrain['local_step_ms'] / dtrain['dtrain_step_ms']:.3f} |\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
