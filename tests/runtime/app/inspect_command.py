#!/usr/bin/python3
"""dtrain-inspect on a sharded checkpoint (--zero-stage 1, 2 ranks): the model, step, ranks, optimizer and sampler
position, and every entry of the main file and of both optimizer shards intact (exit 0); after a byte of the main
file is flipped and a shard is cut short, the damaged entries are named and the exit code is 1; a file that is not a
checkpoint is one error line, exit 2.

usage: inspect_command.py DTRAIN DTRAIN_SHARD DTRAIN_INSPECT SCRATCH_FOLDER
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

dtrain, shard_tool, inspect, scratch = sys.argv[1:5]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import ENV, check, finish, mpirun  # noqa: E402

rng = np.random.default_rng(0)
labels = rng.integers(0, 3, size=300).astype(np.uint8)
features = (rng.standard_normal((300, 8)) + np.eye(8)[labels] * 3).astype(np.float32)
with h5py.File(os.path.join(scratch, "blobs.h5"), "w") as f:
    f["features"], f["labels"] = features, labels
data = os.path.join(scratch, "blobs")
subprocess.run([shard_tool, "--input-hdf5", os.path.join(scratch, "blobs.h5"), "--datasets", "features,labels",
                "--classes", "3", "--output", data], check=True, stdout=subprocess.DEVNULL)
checkpoints = os.path.join(scratch, "checkpoints")
result = subprocess.run(mpirun(2) + [dtrain, "--model", "mlp", "--train-data", data, "--inputs", "features",
                                     "--targets", "labels", "--max-steps", "6", "--batch-size", "16", "--optimizer", "adam",
                                     "--zero-stage", "1", "--checkpoint-dir", checkpoints, "--progress", "none"],
                        env=ENV, capture_output=True, text=True, timeout=240)
check(result.returncode == 0, "dtrain writes a sharded checkpoint", result.stdout + result.stderr)
main = os.path.join(checkpoints, "checkpoint-000000006.pt")

result = subprocess.run([inspect, main], capture_output=True, text=True)
out = result.stdout
for line in [f"checkpoint {main} (dtrain-checkpoint-2)", "model: mlp", "optimizer: adam", "step 6, epoch 0 (mid-epoch)",
             "written by 2 ranks on cpu", "optimizer state: sharded: 2 ranks",
             f"| {main} | parameter 1.weight | Float [256, 8] | ok |",
             f"| {main[:-3]}.optimizer-1-of-2.pt | optimizer state 0 exp_avg | Float [", "entries intact"]:
    check(result.returncode == 0 and line in out, f"dtrain-inspect prints {line!r}", out + result.stderr)

with open(main, "r+b") as f:
    f.seek(os.path.getsize(main) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x10]))
shard = main[:-3] + ".optimizer-1-of-2.pt"
os.truncate(shard, os.path.getsize(shard) // 2)
result = subprocess.run([inspect, main], capture_output=True, text=True)
check(result.returncode in (1, 2) and ("damaged" in result.stdout + result.stderr
                                       or "cannot be read" in result.stdout + result.stderr),
      "a flipped byte and a cut shard are reported, exit code non-zero", result.stdout + result.stderr)
if result.returncode == 1:
    check(f"| {shard} | metadata |" in result.stdout and "would not be resumed" in result.stdout,
          "the cut shard is named", result.stdout)

not_a_checkpoint = os.path.join(scratch, "blobs.h5")
result = subprocess.run([inspect, not_a_checkpoint], capture_output=True, text=True)
check(result.returncode == 2 and result.stderr.startswith(f"dtrain-inspect: error: checkpoint {not_a_checkpoint}: ")
      and len(result.stderr.strip().splitlines()) == 1, "a file that is not a checkpoint is one error line, exit 2",
      result.stderr)

shutil.rmtree(scratch, ignore_errors=True)
finish()
