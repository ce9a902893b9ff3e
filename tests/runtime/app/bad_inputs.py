#!/usr/bin/python3
"""The catalogue of bad input (docs/errors.md): each kind of mistake a user makes with flags, config files, data,
checkpoints, output folders and the launcher, run through the dtrain command under mpirun. Every case must end with
a non-zero exit, without hanging, with one error message from dtrain (the same on every rank that prints it, no C++
backtrace) that holds the expected text, and without losing any file that was already on disk.

usage: bad_inputs.py DTRAIN DTRAIN_SHARD SCRATCH_FOLDER
"""
import atexit
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import torch

dtrain, shard_tool, scratch = sys.argv[1:4]


def unmount_leftovers():
    """Unmounts what an interrupted earlier run (killed by a timeout) left mounted under the scratch folder."""
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in points:
        if point.startswith(os.path.abspath(scratch) + os.sep):
            subprocess.run(["umount", "-l", point], check=False)


unmount_leftovers()
atexit.register(unmount_leftovers)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that a terminated run still unmounts (atexit)
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import ENV, failures, finish, mpirun, sanitizer_report  # noqa: E402


def path(*parts):
    return os.path.join(scratch, *parts)


def run(args, ranks=2, env=None, launcher=True):
    command = (mpirun(ranks) if launcher else []) + [dtrain, *args]
    return subprocess.run(command, env=env or ENV, capture_output=True, text=True, timeout=180)


def fingerprints(folder):
    """name -> sha256 of every file under `folder`: what must survive a failed run."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# --- fixtures: data, models, checkpoints ---------------------------------------------------------------------------

def make_shards(name, width):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=600).astype(np.uint8)
    features = (rng.standard_normal((600, width)) * 0.5 + np.eye(8, width)[labels] * 3).astype(np.float32)
    with h5py.File(path(name + ".h5"), "w") as f:
        f["features"], f["labels"] = features, labels
    subprocess.run([shard_tool, "--input-hdf5", path(name + ".h5"), "--datasets", "features,labels", "--classes", "3",
                    "--shards", "3", "--output", path(name)], check=True, stdout=subprocess.DEVNULL)
    return path(name)


data = make_shards("blobs", 8)
wider = make_shards("blobs9", 9)
missing_shard = shutil.copytree(data, path("missing-shard"))
os.remove(os.path.join(missing_shard, "shard-00001.h5"))
truncated_shard = shutil.copytree(data, path("truncated-shard"))
os.truncate(os.path.join(truncated_shard, "shard-00002.h5"), 2000)
corrupt_shard = shutil.copytree(data, path("corrupt-shard"))
with h5py.File(os.path.join(corrupt_shard, "shard-00001.h5"), "r+") as f:
    f["features"][5, 3] += 1.0  # a flipped value: the file opens fine, only its CRC-32 tells

script = path("net.pt")
torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))).save(script)
with open(path("unknown-key.cfg"), "w") as f:
    f.write("epochs = 2\nbatch-size = 16\nlearning-rate = 0.1\n")
with open(path("bad-value.cfg"), "w") as f:
    f.write("# job\nepochs = two\n")
with open(path("a-file"), "w") as f:
    f.write("not a folder\n")

common = ["--train-data", data, "--inputs", "features", "--targets", "labels", "--batch-size", "16", "--progress",
          "lines"]


def common_but(option, value):
    """`common` with `option` set to `value` (Boost refuses an option given twice)."""
    out = list(common)
    out[out.index(option) + 1] = value
    return out


checkpoints = path("checkpoints")
result = run(["--model", "mlp", "--epochs", "1", "--checkpoint-dir", checkpoints, *common])
assert result.returncode == 0, result.stdout + result.stderr
saved = os.path.join(checkpoints, sorted(os.listdir(checkpoints))[-1])
truncated_checkpoint = path("truncated.pt")
shutil.copy(saved, truncated_checkpoint)
os.truncate(truncated_checkpoint, 50000)

# A checkpoint of sharded optimizer state (--zero-stage 1), then one without rank 1's shard.
sharded_checkpoints = path("sharded-checkpoints")
result = run(["--model", "mlp", "--epochs", "1", "--zero-stage", "1", "--checkpoint-dir", sharded_checkpoints, *common])
assert result.returncode == 0, result.stdout + result.stderr
sharded_saved = os.path.join(sharded_checkpoints, [f for f in sorted(os.listdir(sharded_checkpoints))
                                                   if ".optimizer-" not in f][-1])
lost_shard = sharded_saved[:-len(".pt")] + ".optimizer-1-of-2.pt"
assert os.path.exists(lost_shard), os.listdir(sharded_checkpoints)
shard_lost = path("shard-lost")
os.makedirs(shard_lost)
for name in os.listdir(sharded_checkpoints):
    if name != os.path.basename(lost_shard):
        shutil.copy(os.path.join(sharded_checkpoints, name), shard_lost)
without_shard = os.path.join(shard_lost, os.path.basename(sharded_saved))

# A full disk: a 260 KiB tmpfs holds one checkpoint of this model (~160 KiB) but not a second one beside it.
small_disk = path("small-disk")
os.makedirs(small_disk)
can_mount = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=260k", "tmpfs", small_disk],
                                                 capture_output=True).returncode == 0
if can_mount:
    result = run(["--model", "mlp", "--epochs", "1", "--checkpoint-dir", small_disk, *common])
    assert result.returncode == 0, result.stdout + result.stderr

srun_without_pmix = dict(ENV, SLURM_NTASKS="2", SLURM_STEP_ID="0", SLURM_PROCID="0", SLURM_JOB_ID="1")

# --- the catalogue: (kind, dtrain arguments, the text the error must hold, extra settings) --------------------------
CASES = [
    # Flags
    ("a value out of range", ["--model", "mlp", "--epochs", "0", *common], "--epochs must be >= 1 (got 0)", {}),
    ("a negative learning rate", ["--model", "mlp", "--lr", "-1", *common], "learning rate must be positive", {}),
    ("a value that is not a number", ["--lr", "fast", *common], "the argument ('fast') for option '--lr' is invalid",
     {}),
    ("an unknown option", ["--bogus", "3", *common], "unrecognised option '--bogus'", {}),
    ("an unknown choice", ["--model", "mlp", *common_but("--progress", "sometimes")],
     "--progress: 'sometimes' is not one of", {}),
    ("an unknown precision", ["--model", "mlp", "--amp", "fp8", *common], "--amp: 'fp8' is not one of none, bf16, fp16",
     {}),
    ("an unknown lr schedule", ["--model", "mlp", "--lr-schedule", "linear", *common],
     "--lr-schedule: 'linear' is not one of constant, step, cosine", {}),
    ("an unknown model", ["--model", "transformer", *common],
     "unknown model 'transformer' (known: char-transformer, cnn, mlp, resnet18)", {}),
    ("two models at once", ["--model", "mlp", "--torchscript", script, *common],
     "give either --model or --torchscript, not both", {}),
    ("the same setting twice", ["--micro-batches", "2", "--grad-accumulation", "3", *common],
     "--micro-batches 2 and --grad-accumulation 3 are the same setting", {}),
    ("pipeline stages that do not divide the ranks", ["--model", "mlp", "--pipeline-stages", "3", *common],
     "--pipeline-stages 3 does not divide the 2 ranks", {}),
    ("an unknown pipeline schedule", ["--pipeline-schedule", "interleaved", *common],
     "--pipeline-schedule: 'interleaved' is not 1f1b or gpipe", {}),
    ("stage modules that do not match the stages", ["--stage-modules", script, "--pipeline-stages", "2", *common],
     "--stage-modules names 1 files for", {}),
    ("a TorchScript model cut into stages", ["--torchscript", script, "--pipeline-stages", "2", *common],
     "--torchscript cannot be cut into stages", {}),
    ("a missing TorchScript file", ["--torchscript", path("missing.pt"), *common], "missing.pt does not exist", {}),
    ("a ZeRO stage out of range", ["--model", "mlp", "--zero-stage", "7", *common],
     "--zero-stage must be 0, 1, 2 or 3 (got 7)", {}),
    ("ZeRO stage 3 of a TorchScript module", ["--torchscript", script, "--zero-stage", "3", *common],
     "--zero-stage 3 needs a model made of blocks (a built-in model); torchscript:", {}),
    ("activation checkpointing of a TorchScript module", ["--torchscript", script, "--activation-checkpointing", *common],
     "--activation-checkpointing needs a model made of blocks (a built-in model); torchscript:", {}),
    ("checkpointing every 0th block", ["--model", "mlp", "--activation-checkpointing-every", "0", *common],
     "--activation-checkpointing-every must be >= 1 (got 0)", {}),
    # Config files
    ("an unknown key in a config file", ["--model", "mlp", "--config", path("unknown-key.cfg"), *common],
     f"--config {path('unknown-key.cfg')}:3: unrecognised option 'learning-rate'", {}),
    ("a bad value in a config file", ["--model", "mlp", "--config", path("bad-value.cfg"), *common],
     f"--config {path('bad-value.cfg')}:2: the argument ('two') for option 'epochs' is invalid", {}),
    ("a missing config file", ["--model", "mlp", "--config", path("none.cfg"), *common],
     f"--config: cannot read {path('none.cfg')}", {}),
    # Data
    ("a missing dataset folder", ["--model", "mlp", *common_but("--train-data", path("nowhere"))],
     "no such dataset folder", {}),
    ("a missing shard", ["--model", "mlp", *common_but("--train-data", missing_shard)], "shard-00001.h5: missing shard",
     {}),
    ("a truncated shard", ["--model", "mlp", *common_but("--train-data", truncated_shard)],
     "shard-00002.h5: cannot open: not an HDF5 file, or truncated", {}),
    ("a corrupt shard", ["--model", "mlp", "--verify-data", *common_but("--train-data", corrupt_shard)],
     "is corrupt: CRC-32", {}),
    ("an input dataset the shards lack", ["--model", "mlp", *common_but("--inputs", "pixels")], "pixels", {}),
    ("evaluation data of another shape", ["--model", "mlp", *common, "--eval-data", wider],
     f"--eval-data {wider}: 'features' samples have shape [9], but --train-data {data} has [8]", {}),
    ("next-token targets on float features",
     ["--model", "char-transformer", "--train-data", data, "--inputs", "features", "--targets", "next-token"],
     "--targets next-token needs 'features' to hold integer token sequences", {}),
    # Checkpoints
    ("a sharded checkpoint resumed at ZeRO stage 3 (other buckets)",
     ["--model", "mlp", "--zero-stage", "3", "--epochs", "2", "--resume", sharded_saved, *common],
     "its optimizer shards are cut as 2 ranks, bucket plan", {}),
    ("a checkpoint of another model", ["--torchscript", script, "--epochs", "2", "--resume", saved, *common],
     "it holds model 'mlp'", {}),
    ("a checkpoint of another optimizer",
     ["--model", "mlp", "--optimizer", "adam", "--epochs", "2", "--resume", saved, *common],
     "it holds the state of optimizer 'sgd', this run uses 'adam'", {}),
    ("checkpoints of another number of pipeline stages",
     ["--model", "mlp", "--pipeline-stages", "2", "--epochs", "2", "--checkpoint-dir", checkpoints, "--resume", "auto",
      *common],
     "was written with another number of pipeline stages; this run has 2", {"one_line": True}),
    ("--export-model of a pipeline",
     ["--model", "mlp", "--pipeline-stages", "2", "--export-model", path("exported.pt"), *common],
     "--export-model needs the whole model on one rank", {}),
    ("--export-model into a folder that cannot be written",
     ["--model", "mlp", "--export-model", path("no-such-folder/exported.pt"), *common],
     f"--export-model {path('no-such-folder/exported.pt')}: cannot write to the folder {path('no-such-folder')}",
     {}),
    ("a truncated checkpoint", ["--model", "mlp", "--epochs", "2", "--resume", truncated_checkpoint, *common],
     "cannot be read (truncated, damaged or not a dtrain checkpoint)", {}),
    ("a missing checkpoint", ["--model", "mlp", "--epochs", "2", "--resume", path("none.pt"), *common],
     "none.pt: no such file", {}),
    ("a sharded checkpoint with a missing shard",
     ["--model", "mlp", "--zero-stage", "1", "--epochs", "2", "--resume", without_shard, *common],
     f"its optimizer shard {lost_shard.replace(sharded_checkpoints, shard_lost)} is missing (on rank 1)",
     {"one_line": True}),
    ("a sharded checkpoint resumed with replicated state",
     ["--model", "mlp", "--epochs", "2", "--resume", sharded_saved, *common],
     "its optimizer state is sharded (--zero-stage 1, 2 or 3); resume with the --zero-stage that wrote it", {}),
    # Outputs
    ("a checkpoint folder that cannot be made", ["--model", "mlp", "--checkpoint-dir", path("a-file", "ck"), *common],
     "cannot create checkpoint folder", {}),
    ("a metrics file that cannot be written", ["--model", "mlp", "--metrics-file", path("a-file", "m.jsonl"), *common],
     "cannot open metrics file", {"one_line": True}),
    ("a full disk while writing a checkpoint",
     ["--model", "mlp", "--epochs", "2", "--checkpoint-dir", small_disk, "--resume", "auto", *common],
     "No space left on device; the previous checkpoint", {"needs_mount": True, "keep": small_disk, "one_line": True}),
    # Launcher
    ("srun without PMIx (each task a world of one)", ["--model", "mlp", *common],
     "srun started 2 tasks, but each one is an MPI world of its own", {"env": srun_without_pmix, "launcher": False}),
]
if not os.path.exists("/dev/nvidia0"):
    # Without CUDA in LibTorch (Debian's) or without a GPU (the CUDA LibTorch of the CUDA lane): either reason is named.
    CASES.append(("GPUs asked for on a machine without GPUs", ["--model", "mlp", "--device", "cuda", *common],
                  "dtrain: error: --device cuda: ", {"one_line": True}))
    CASES.append(("NCCL on a machine without GPUs", ["--dry-run", "--backend", "nccl"],
                  "dtrain: error: --backend nccl needs a GPU: ", {"one_line": True}))
CASES.append(("NCCL asked for on CPUs", ["--dry-run", "--device", "cpu", "--backend", "nccl"],
              "--backend nccl moves GPU memory, but --device cpu trains on the CPU", {"one_line": True}))
CASES.append(("an unknown device", ["--model", "mlp", "--device", "tpu", *common],
              "--device: 'tpu' is not one of cpu, cuda, auto", {}))

kept = {checkpoints: fingerprints(checkpoints)}
skipped = []
for kind, args, expected, extra in CASES:
    if extra.get("needs_mount") and not can_mount:
        print(f"skip {kind}: needs root to mount a small tmpfs")
        skipped.append(kind)
        if os.environ.get("CI") == "true":
            failures.append(kind)  # CI runs as root: a case it cannot run is a failure
        continue
    keep = extra.get("keep")
    before = fingerprints(keep) if keep else None
    problems = []
    try:
        result = run(args, ranks=extra.get("ranks", 2), env=extra.get("env"), launcher=extra.get("launcher", True))
    except subprocess.TimeoutExpired:
        problems.append("hung (no exit within 180 s)")
        result = None
    if result is not None:
        errors = [line for line in result.stderr.splitlines() if line.startswith("dtrain: error")]
        messages = {re.sub(r"^dtrain: error on rank \d+: ", "", re.sub(r"^dtrain: error: ", "", line))
                    for line in errors}
        if result.returncode == 0:
            problems.append("exit 0")
        if not errors:
            problems.append("no 'dtrain: error' line")
        elif len(messages) > 1:
            problems.append(f"{len(messages)} different error messages")
        elif expected not in errors[0]:
            problems.append(f"the error does not say: {expected}")
        if extra.get("one_line") and len(errors) > 1:
            problems.append(f"{len(errors)} error lines for the job, one expected")
        if sanitizer_report(result.stdout + result.stderr):
            problems.append(f"a sanitizer's report: {sanitizer_report(result.stdout + result.stderr)}")
        if "frame #" in result.stderr:
            problems.append("a C++ backtrace in the output")
        if keep:
            after = fingerprints(keep)
            lost = [name for name, digest in before.items() if after.get(name) != digest]
            stray = [name for name in after if name not in before]
            if lost or stray:
                problems.append(f"files lost or changed: {lost}, left behind: {stray}")
    for folder, digests in kept.items():
        if fingerprints(folder) != digests:
            problems.append(f"{folder} changed")
    print(("ok   " if not problems else "FAIL ") + kind + (": " + "; ".join(problems) if problems else ""))
    if not problems:
        print("     " + errors[0])
    if problems:
        failures.append(kind)
        if result is not None:
            print(result.stdout[-2000:] + result.stderr[-3000:])

if can_mount:
    subprocess.run(["umount", small_disk])
handled = len(CASES) - len(set(failures) | set(skipped))
print(f"{handled} of {len(CASES)} kinds of bad input handled" + (f", {len(skipped)} not run" if skipped else ""))
shutil.rmtree(scratch, ignore_errors=True)
finish()
