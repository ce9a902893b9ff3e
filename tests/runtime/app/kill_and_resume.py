#!/usr/bin/python3
"""Exact resume after a crash or a preemption, for a 2-rank run of the char-transformer: one rank killed (SIGKILL,
mid-epoch) after its checkpoint of step 20 (and the half-written file of a write killed midway planted beside it),
and one rank sent SIGTERM (every rank must stop with a checkpoint and exit 75). The job must end by itself, only whole
checkpoints may count, and `--resume auto` must go on to produce, step for step, the very losses of an uninterrupted
run and its final weights (sampler position, RNG states, optimizer and learning-rate schedule all restored).

usage: kill_and_resume.py DTRAIN DTRAIN_SHARD SCRATCH_FOLDER
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

dtrain, shard_tool, scratch = sys.argv[1:4]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import ENV, check, finish, mpirun  # noqa: E402
MPIRUN = mpirun(2)


def path(*parts):
    return os.path.join(scratch, *parts)


def losses(metrics_file):
    """step -> mean training loss, from a run's metrics file."""
    out = {}
    with open(metrics_file) as f:
        for line in f:
            record = json.loads(line)
            if record.get("event") == "train":
                out[record["step"]] = record["loss"]
    return out


def crc(output):
    found = re.findall(r"dtrain: weights crc32 ([0-9a-f]{8})", output)
    return found[0] if found else None


# A small corpus of made-up sentences, as token shards.
rng = random.Random(1)
words = "the of and to in that he shall unto for his a they be is him not them it with all thou".split()
with open(path("corpus.txt"), "w") as f:
    for _ in range(500):
        f.write(" ".join(rng.choice(words) for _ in range(12)).capitalize() + ".\n")
subprocess.run([shard_tool, "--text", path("corpus.txt"), "--sequence-length", "64", "--shards", "2", "--output",
                path("tokens")], check=True, stdout=subprocess.DEVNULL)

args = ["--model", "char-transformer", "--train-data", path("tokens"), "--inputs", "tokens", "--targets",
        "next-token", "--batch-size", "8", "--epochs", "2", "--optimizer", "adamw", "--lr", "0.003", "--lr-schedule",
        "cosine", "--warmup-steps", "5", "--log-every", "1", "--checkpoint-every", "10", "--keep-checkpoints", "2",
        "--progress", "lines", "--seed", "3"]

full = subprocess.run(MPIRUN + [dtrain, *args, "--checkpoint-dir", path("ck-full"), "--metrics-file",
                                path("full.jsonl")], env=ENV, capture_output=True, text=True, timeout=300)
check(full.returncode == 0, "the uninterrupted run finishes", full.stdout + full.stderr)
steps_per_epoch = int(re.search(r"(\d+) steps per epoch", full.stdout).group(1))
check(steps_per_epoch > 20, f"step 20 is mid-epoch ({steps_per_epoch} steps per epoch)")

def start(name):
    folder = path(f"ck-{name}")
    run = subprocess.Popen(MPIRUN + [dtrain, *args, "--checkpoint-dir", folder, "--metrics-file", path(f"{name}.jsonl")],
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return run, folder


def signal_one_rank(folder, number):
    """Sends `number` to the last rank of the run writing into `folder`; False if its two ranks were not found."""
    ranks = subprocess.run(["pgrep", "-f", f"^{dtrain} .*{folder}"], capture_output=True, text=True).stdout.split()
    check(len(ranks) == 2, f"found both ranks of the run in {folder}", str(ranks))
    if ranks:
        os.kill(int(ranks[-1]), number)
    return bool(ranks)


def wait_for(name, seconds=240):
    deadline = time.monotonic() + seconds
    while not os.path.exists(name) and time.monotonic() < deadline:
        time.sleep(0.001)
    return os.path.exists(name)


def resume_and_compare(name, folder, at_least):
    """`--resume auto` into `folder` must produce the uninterrupted run's losses from there on, and its weights."""
    resumed = subprocess.run(MPIRUN + [dtrain, *args, "--checkpoint-dir", folder, "--resume", "auto",
                                       "--metrics-file", path(f"{name}-resumed.jsonl")], env=ENV, capture_output=True,
                             text=True, timeout=300)
    check(resumed.returncode == 0, f"{name}: the resumed run finishes", resumed.stdout + resumed.stderr)
    found = re.search(r"checkpoint-0*(\d+)\.pt", resumed.stdout + resumed.stderr)
    resumed_from = int(found.group(1)) if found else -1
    check(resumed_from >= at_least, f"{name}: it resumed from the newest whole checkpoint (step {resumed_from})",
          resumed.stdout)
    expected, got = losses(path("full.jsonl")), losses(path(f"{name}-resumed.jsonl"))
    later = [step for step in expected if step > resumed_from]
    differing = [(step, expected[step], got.get(step)) for step in later if got.get(step) != expected[step]]
    check(later and not differing, f"{name}: the losses of steps {resumed_from + 1}-{max(later, default=0)} equal the "
          "uninterrupted run's bit for bit", str(differing[:5]))
    check(crc(full.stdout) is not None and crc(full.stdout) == crc(resumed.stdout),
          f"{name}: the final weights equal the uninterrupted run's (crc32 {crc(full.stdout)} vs {crc(resumed.stdout)})")


# SIGKILL to one rank once the checkpoint of step 20 is on disk: the job ends by itself, nothing half-written stays.
victim, folder = start("killed")
wait_for(os.path.join(folder, "checkpoint-000000020.pt"))
signal_one_rank(folder, signal.SIGKILL)
killed_at = time.monotonic()
output, _ = victim.communicate(timeout=60)
check(victim.returncode != 0 and "dtrain: done" not in output and time.monotonic() - killed_at < 10,
      f"the killed job ends by itself within 10 s (exit {victim.returncode}) without finishing", output)
left = sorted(os.listdir(folder))
check(all(name.endswith(".pt") for name in left), f"no temporary file left behind: {left}")
# What a kill in the middle of writing step 30 leaves (the write itself lasts milliseconds, too short to hit from
# here): half of a checkpoint under the temporary name. The resume must start from step 20 and remove it.
with open(os.path.join(folder, "checkpoint-000000020.pt"), "rb") as whole:
    half = whole.read()
with open(os.path.join(folder, "checkpoint-000000030.pt.tmp"), "wb") as f:
    f.write(half[:len(half) // 2])
resume_and_compare("killed", folder, 20)
check(not any(name.endswith(".tmp") for name in os.listdir(folder)),
      f"the resumed run removed the half-written file: {sorted(os.listdir(folder))}")

# SIGTERM to one rank only (as a preemption notice reaches one task first): every rank stops at the same step with a
# checkpoint and exits 75, without root or Slurm; the resume is exact.
victim, folder = start("terminated")
wait_for(os.path.join(folder, "checkpoint-000000010.pt"))
signal_one_rank(folder, signal.SIGTERM)
output, _ = victim.communicate(timeout=120)
stopped = re.search(r"dtrain: stopped by a signal at step (\d+)", output)
check(victim.returncode == 75 and stopped is not None
      and os.path.exists(os.path.join(folder, f"checkpoint-{int(stopped.group(1)):09d}.pt")),
      f"SIGTERM to one rank: exit 75 with a checkpoint of the step it stopped at (exit {victim.returncode})", output)
resume_and_compare("terminated", folder, int(stopped.group(1)) if stopped else 10)

shutil.rmtree(scratch, ignore_errors=True)
finish()
