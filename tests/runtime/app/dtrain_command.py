#!/usr/bin/python3
"""The dtrain command end to end at 2 ranks: a TorchScript model (made with torch.jit.script) trains on shards made
from an h5py file and learns; pipelines of the built-in MLP and of TorchScript stage modules learn; --dry-run prints
the rank table. Bad input has its own catalogue, bad_inputs.py.

usage: dtrain_command.py DTRAIN DTRAIN_SHARD SCRATCH_FOLDER
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch

dtrain, shard_tool, scratch = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import ENV, check, finish, mpirun, sanitizer_report  # noqa: E402
MPIRUN = mpirun(2)


def run_dtrain(*args):
    result = subprocess.run(MPIRUN + [dtrain, *args], env=ENV, capture_output=True, text=True, timeout=240)
    report = sanitizer_report(result.stdout + result.stderr)
    check(report is None, f"no sanitizer report from dtrain {' '.join(args[:4])} ...", report or "")
    return result


def final_accuracy(result):
    """The eval accuracy on the run's closing "dtrain: done" line, 0 if there is none."""
    done = [line for line in result.stdout.splitlines() if line.startswith("dtrain: done")]
    return float(done[0].split("eval accuracy ")[1].split()[0]) if done and "eval accuracy " in done[0] else 0.0


# Data: 3 Gaussian blobs in 8 dimensions, made with h5py and sharded by dtrain-shard.
rng = np.random.default_rng(0)
labels = rng.integers(0, 3, size=900).astype(np.uint8)
features = (rng.standard_normal((900, 8)) * 0.5 + np.eye(8)[labels] * 3).astype(np.float32)
with h5py.File(os.path.join(scratch, "blobs.h5"), "w") as f:
    f["features"], f["labels"] = features, labels
data = os.path.join(scratch, "blobs")
subprocess.run([shard_tool, "--input-hdf5", os.path.join(scratch, "blobs.h5"), "--datasets", "features,labels",
                "--classes", "3", "--shards", "3", "--output", data], check=True, stdout=subprocess.DEVNULL)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(8, 16)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


model = os.path.join(scratch, "net.pt")
torch.jit.script(Net()).save(model)

common = ["--train-data", data, "--eval-data", data, "--inputs", "features", "--targets", "labels",
          "--batch-size", "16", "--optimizer", "adam", "--lr", "0.01", "--progress", "lines"]
result = run_dtrain("--torchscript", model, "--epochs", "3", *common)
check(result.returncode == 0 and final_accuracy(result) > 0.95,
      "TorchScript model trains to > 0.95 accuracy at 2 ranks", result.stdout + result.stderr)

# The same data through a 2-stage pipeline of the built-in MLP (1F1B, 4 micro-batches per step).
result = run_dtrain("--model", "mlp", "--pipeline-stages", "2", "--micro-batches", "4", "--epochs", "3", *common)
check(result.returncode == 0 and "pipeline of 2 stages by parameters: stage 0: layers 0-2" in result.stdout
      and final_accuracy(result) > 0.95,
      "a 2-stage pipeline of the built-in MLP trains to > 0.95 accuracy", result.stdout + result.stderr)

# A TorchScript user cuts the model themselves: one module file per stage.
class Hidden(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(8, 16)

    def forward(self, x):
        return torch.relu(self.hidden(x))


stage_files = [os.path.join(scratch, "stage0.pt"), os.path.join(scratch, "stage1.pt")]
torch.jit.script(Hidden()).save(stage_files[0])
torch.jit.script(torch.nn.Linear(16, 3)).save(stage_files[1])
result = run_dtrain("--stage-modules", ",".join(stage_files), "--pipeline-stages", "2", "--micro-batches", "2",
                    "--epochs", "3", *common)
check(result.returncode == 0 and final_accuracy(result) > 0.95,
      "two TorchScript stage modules train as a pipeline to > 0.95 accuracy", result.stdout + result.stderr)

def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# Early stopping: no epoch improves accuracy by 10, so with patience 1 the run ends after its second epoch of six.
metrics_file = os.path.join(scratch, "early.jsonl")
result = run_dtrain("--model", "mlp", "--epochs", "6", "--early-stopping-patience", "1", "--early-stopping-min-delta",
                    "10", "--metrics-file", metrics_file, *common)
records = metrics(metrics_file) if result.returncode == 0 else []
check(result.returncode == 0 and "early stopping: no improvement of accuracy for 1 epochs" in result.stdout
      and [r["epoch"] for r in records if r["event"] == "eval"] == [0, 1]
      and [r["epoch"] for r in records if r["event"] == "early_stop"] == [1],
      "early stopping ends the run after patience epochs without improvement", result.stdout + result.stderr)

# --quick-validation: 10% of the data (90 of 900 samples: 3 steps of 32 per epoch) for at most 2 epochs, then a summary.
metrics_file = os.path.join(scratch, "quick.jsonl")
result = run_dtrain("--model", "mlp", "--epochs", "5", "--quick-validation", "--metrics-file", metrics_file,
                    "--log-every", "1", *common)
records = metrics(metrics_file) if result.returncode == 0 else []
check(result.returncode == 0 and "quick validation: " in result.stdout and "accuracy" in result.stdout
      and max(r["step"] for r in records if r["event"] == "train") == 6
      and len([r for r in records if r["event"] == "eval"]) == 2,
      "--quick-validation runs 2 epochs of 3 steps on 10% of the data and reports", result.stdout + result.stderr)

# --memory-warn-gb below what any process uses: every rank warns, once, and the run goes on.
result = run_dtrain("--model", "mlp", "--epochs", "1", "--memory-warn-gb", "0.001", "--log-every", "2", *common)
warnings = [line for line in result.stderr.splitlines() if line.startswith("dtrain: warning: rank")]
check(result.returncode == 0 and sorted(line.split()[3] for line in warnings) == ["0", "1"]
      and all("GB of host memory, above --memory-warn-gb 0.00" in line for line in warnings),
      "--memory-warn-gb warns once per rank above the threshold", result.stdout + result.stderr)

# --partition time: the stages are cut by measured forward+backward time, and the pipeline trains.
result = run_dtrain("--model", "mlp", "--pipeline-stages", "2", "--partition", "time", "--epochs", "3", *common)
check(result.returncode == 0 and "pipeline of 2 stages by time: stage 0: layers 0-" in result.stdout
      and final_accuracy(result) > 0.95,
      "a pipeline cut by measured time trains to > 0.95 accuracy", result.stdout + result.stderr)

# Memory options: --activation-checkpointing changes no bit of the weights; --zero-stage 3 learns alike and keeps a
# shard of the parameters, gradients and optimizer state per rank (the metrics' training_state_bytes); ZeRO 1 works on
# a TorchScript model too.
def crc(result):
    lines = [line for line in result.stdout.splitlines() if line.startswith("dtrain: weights crc32 ")]
    return lines[0].split()[-1] if lines else None


def state_bytes(path):
    return [r for r in metrics(path) if r["event"] == "training_state_bytes"][-1]


runs = {}
for name, extra in [("plain", []), ("checkpointed", ["--activation-checkpointing"]),
                    ("zero3", ["--zero-stage", "3", "--activation-checkpointing-every", "2"])]:
    metrics_file = os.path.join(scratch, f"memory-{name}.jsonl")
    runs[name] = (run_dtrain("--model", "mlp", "--epochs", "2", "--metrics-file", metrics_file, *extra, *common),
                  metrics_file)
plain, checkpointed, zero3 = (runs[k][0] for k in ("plain", "checkpointed", "zero3"))
check(plain.returncode == 0 and checkpointed.returncode == 0 and crc(plain) is not None
      and crc(plain) == crc(checkpointed),
      "--activation-checkpointing gives bit-identical weights", plain.stdout + checkpointed.stdout + checkpointed.stderr)
if zero3.returncode == 0 and plain.returncode == 0:
    replicated, sharded = state_bytes(runs["plain"][1]), state_bytes(runs["zero3"][1])
else:
    replicated = sharded = {}
check(zero3.returncode == 0 and final_accuracy(zero3) > 0.95 and "(--zero-stage 3)" in zero3.stdout
      and sharded.get("zero_stage") == 3
      and all(0 < sharded.get(k, 0) <= replicated.get(k, 0) / 2 + 64 for k in ("parameters", "optimizer_state"))
      and 0 < sharded.get("gradients", 0) < replicated.get("gradients", 0),
      "--zero-stage 3 trains to > 0.95 with half the parameters, optimizer state and gradients per rank at 2 ranks",
      f"{replicated} {sharded}\n" + zero3.stdout + zero3.stderr)
result = run_dtrain("--torchscript", model, "--epochs", "3", "--zero-stage", "1", *common)
check(result.returncode == 0 and final_accuracy(result) > 0.95,
      "a TorchScript model trains with --zero-stage 1", result.stdout + result.stderr)

result = run_dtrain("--dry-run")
check(result.returncode == 0 and "local rank" in result.stdout and result.stdout.count("cpu") == 2,
      "--dry-run prints one table row per rank", result.stdout + result.stderr)

version = subprocess.run([dtrain, "--version"], env=ENV, capture_output=True, text=True, timeout=60)
line = version.stdout.strip()
check(version.returncode == 0 and line.startswith("dtrain ") and "\n" not in line
      and all(name in line for name in ("LibTorch ", "MPI ", "HDF5 ")),
      "--version prints one line naming dtrain, LibTorch, MPI and HDF5", version.stdout + version.stderr)

shutil.rmtree(scratch, ignore_errors=True)
finish()
