#!/usr/bin/python3
"""GPU training through the dtrain command (label gpu; tests/gpu/run.sh runs it on GPU machines, and it fails without
a GPU): each check compares a GPU run with an independent run that must give the same losses, step by step.

  - 1 GPU over NCCL, fp32 (TF32 off): the losses of the same run on the CPU (relative 1e-5).
  - 2 and 4 ranks sharing one GPU over MPI (pinned host staging): 1 rank with 2x and 4x the batch (1e-5).
  - ZeRO stage 2 with activation checkpointing, 2 ranks on one GPU over MPI and 1 over NCCL: the replicated runs.
  - a 2-stage pipeline on one GPU (MPI): one process with the same micro-batches (1e-5).
  - a checkpoint written on the GPU resumes on the CPU, and one written on the CPU resumes on the GPU: the losses after
    the resume are those of the uninterrupted run (1e-5).
  - fp16 autocast with dynamic loss scaling from an initial scale that overflows: every overflowing step is skipped
    and halves the scale, then training goes on with finite, falling losses.

usage: training_gpu.py DTRAIN DTRAIN_SHARD SCRATCH_FOLDER
The data is synthetic Fashion-MNIST-shaped images (made here with the standard library), so the lane needs no
dataset package.
"""
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys

dtrain, shard_tool, scratch = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import ENV, check, finish, mpirun  # noqa: E402

TOLERANCE = 1e-5


def write_idx(path, magic, dims, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)


def make_images(folder, split, count, rng):
    """Images whose label is a bright 7x7 square at one of 10 places, over noise: learnable in a few steps."""
    images, labels = bytearray(), bytearray()
    for i in range(count):
        label = rng.randrange(10)
        pixels = bytearray(rng.randrange(60) for _ in range(28 * 28))
        top, left = 2 + 12 * (label // 5), 1 + 5 * (label % 5)
        for r in range(top, top + 7):
            for c in range(left, left + 5):
                pixels[r * 28 + c] = 200 + rng.randrange(55)
        images += pixels
        labels.append(label)
    write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), 0x803, [count, 28, 28], bytes(images))
    write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), 0x801, [count], bytes(labels))


raw = os.path.join(scratch, "raw")
os.makedirs(raw)
rng = random.Random(0)
make_images(raw, "train", 2048, rng)
make_images(raw, "t10k", 512, rng)
data = {}
for split in ("train", "t10k"):
    data[split] = os.path.join(scratch, split)
    subprocess.run([shard_tool, "--fashion-mnist", raw, "--split", split, "--shards", "4", "--output", data[split]],
                   check=True, stdout=subprocess.DEVNULL)

runs = 0


def train(args, ranks=1):
    """Runs dtrain; returns ({step: record} of the training records, stdout)."""
    global runs
    runs += 1
    metrics = os.path.join(scratch, f"metrics-{runs}.jsonl")
    command = mpirun(ranks) + [dtrain, "--train-data", data["train"], "--log-every", "1", "--progress", "none",
                               "--metrics-file", metrics, "--seed", "3", "--lr", "0.05", "--momentum", "0.9", *args]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        print(" ".join(command) + "\n" + result.stdout[-3000:] + result.stderr[-3000:])
        return {}, result.stdout
    records = {}
    with open(metrics) as f:
        for line in f:
            record = json.loads(line)
            if record.get("event") == "train":
                records[record["step"]] = record
    return records, result.stdout


def same_losses(what, a, b, steps=None):
    steps = steps or sorted(set(a) | set(b))
    worst = max((abs(a[s]["loss"] - b[s]["loss"]) / max(abs(b[s]["loss"]), 1e-12) for s in steps
                 if s in a and s in b), default=float("inf"))
    complete = all(s in a and s in b for s in steps) and steps
    check(bool(complete) and worst <= TOLERANCE, f"{what}: losses of {len(steps)} steps within {TOLERANCE} "
          f"(largest relative difference {worst:.2e})",
          "\n".join(f"step {s}: {a.get(s, {}).get('loss')} vs {b.get(s, {}).get('loss')}" for s in steps))


mlp = ["--model", "mlp", "--max-steps", "12"]

# 1 GPU over NCCL against the CPU.
cpu, _ = train([*mlp, "--batch-size", "64", "--device", "cpu"])
gpu, out = train([*mlp, "--batch-size", "64", "--device", "cuda", "--backend", "nccl"])
check("on GPUs over nccl" in out, "the GPU run says it trains on GPUs over NCCL", out)
check(bool(gpu) and all("gpu_allocated_gb" in r and r["gpu_total_gb"] > 0 for r in gpu.values()),
      "the GPU run's metrics hold the GPU's memory")
same_losses("1 GPU (NCCL, fp32, no TF32) = CPU", gpu, cpu)

# Ranks sharing one GPU over MPI against one rank with the whole batch.
one, _ = train([*mlp, "--batch-size", "64", "--device", "cuda", "--backend", "mpi"])
for ranks in (2, 4):
    shared, _ = train([*mlp, "--batch-size", str(64 // ranks), "--device", "cuda", "--backend", "mpi"], ranks)
    same_losses(f"{ranks} ranks on one GPU over MPI = 1 rank with {ranks}x the batch", shared, one)

# ZeRO stage 2 with activation checkpointing on the GPU: over MPI (2 ranks on one GPU: the reduce-scatter and the
# all-gather of the shards go through pinned host memory) and over NCCL (1 rank), against the replicated runs.
zero, _ = train([*mlp, "--batch-size", "32", "--device", "cuda", "--backend", "mpi", "--zero-stage", "2",
                 "--activation-checkpointing"], 2)
same_losses("2 ranks on one GPU, --zero-stage 2 --activation-checkpointing = 1 rank with 2x the batch", zero, one)
zero_nccl, _ = train([*mlp, "--batch-size", "64", "--device", "cuda", "--backend", "nccl", "--zero-stage", "2",
                      "--activation-checkpointing"])
same_losses("1 GPU over NCCL, --zero-stage 2 --activation-checkpointing = CPU", zero_nccl, cpu)
# ZeRO stage 3 on the GPU: every block's parameters gathered into device memory freed after use (Note [Parameter
# shards]), over MPI through pinned host memory and over NCCL.
zero3, _ = train([*mlp, "--batch-size", "32", "--device", "cuda", "--backend", "mpi", "--zero-stage", "3"], 2)
same_losses("2 ranks on one GPU, --zero-stage 3 = 1 rank with 2x the batch", zero3, one)
zero3_nccl, _ = train([*mlp, "--batch-size", "64", "--device", "cuda", "--backend", "nccl", "--zero-stage", "3",
                       "--activation-checkpointing"])
same_losses("1 GPU over NCCL, --zero-stage 3 --activation-checkpointing = CPU", zero3_nccl, cpu)

# A 2-stage pipeline on one GPU against one process accumulating the same micro-batches.
piped, _ = train([*mlp, "--batch-size", "16", "--device", "cuda", "--backend", "mpi", "--pipeline-stages", "2",
                  "--micro-batches", "4"], 2)
whole, _ = train([*mlp, "--batch-size", "16", "--device", "cuda", "--backend", "mpi", "--grad-accumulation", "4"])
same_losses("2-stage pipeline on one GPU = one process", piped, whole)

# Checkpoints across devices: written at step 6 on one device, resumed on the other, against the uninterrupted run.
for written_on, resumed_on in (("cuda", "cpu"), ("cpu", "cuda")):
    folder = os.path.join(scratch, f"checkpoints-{written_on}")
    uninterrupted, _ = train([*mlp, "--batch-size", "64", "--device", written_on, "--checkpoint-dir", folder,
                              "--checkpoint-every", "6"])
    resumed, out = train([*mlp, "--batch-size", "64", "--device", resumed_on, "--resume",
                          os.path.join(folder, "checkpoint-000000006.pt")])
    check("resumed from" in out or bool(resumed), f"a {written_on} checkpoint loads on {resumed_on}", out)
    same_losses(f"a {written_on} checkpoint resumed on {resumed_on} = the uninterrupted run", resumed,
                uninterrupted, steps=list(range(7, 13)))

# fp16 with an initial loss scale that overflows fp16 gradients: skipped steps halve the scale, then it trains.
amp, out = train(["--model", "cnn", "--max-steps", "40", "--batch-size", "64", "--device", "cuda", "--amp", "fp16",
                  "--loss-scale-init", "1e12"])
steps = sorted(amp)
scales = [amp[s]["loss_scale"] for s in steps]
halvings = [i for i in range(1, len(scales)) if scales[i] == scales[i - 1] / 2]
check(len(scales) == 40 and scales[0] == 5e11 and len(halvings) >= 1,
      f"fp16: the first steps overflow and halve the scale ({len(halvings) + 1} halvings, from 1e12 to "
      f"{scales[-1] if scales else 'none'})", str(scales))
clean = [s for s in steps if amp[s]["loss_scale"] == scales[-1]]
check(len(clean) >= 10 and all(amp[s]["loss"] == amp[s]["loss"] for s in clean) and
      amp[clean[-1]]["loss"] < amp[clean[0]]["loss"],
      "fp16: after the scale settles the losses are finite and fall", str([amp[s]["loss"] for s in steps]))
check("steps skipped (non-finite gradients)" in out, "fp16: the closing line counts the skipped steps", out)

finish()
