#!/usr/bin/python3
"""Exact resume after a crash: a 2-rank run of the char-transformer is killed (SIGKILL, one rank, mid-epoch) after its
checkpoint of step 20; the job must end by itself, the checkpoints on disk must be whole, and `--resume auto` must
go on to produce, step for step, the very losses of an uninterrupted run and its final weights (sampler position, RNG
states, optimizer and learning-rate schedule all restored).

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

# The same run, killed once its checkpoint of step 20 is on disk.
killed_dir = path("ck-killed")
victim = subprocess.Popen(MPIRUN + [dtrain, *args, "--checkpoint-dir", killed_dir, "--metrics-file",
                                    path("killed.jsonl")], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
deadline = time.monotonic() + 240
while not os.path.exists(os.path.join(killed_dir, "checkpoint-000000020.pt")) and time.monotonic() < deadline:
    time.sleep(0.002)
ranks = subprocess.run(["pgrep", "-f", f"^{dtrain} .*{killed_dir}"], capture_output=True, text=True).stdout.split()
check(len(ranks) == 2, "found both ranks of the run to kill", str(ranks))
if ranks:
    os.kill(int(ranks[-1]), signal.SIGKILL)
killed_at = time.monotonic()
output, _ = victim.communicate(timeout=60)
check(victim.returncode != 0 and "dtrain: done" not in output and time.monotonic() - killed_at < 10,
      f"the killed job ends by itself within 10 s (exit {victim.returncode}) without finishing", output)
left = sorted(os.listdir(killed_dir))
check(all(name.endswith(".pt") for name in left), f"no temporary file left behind: {left}")

resumed = subprocess.run(MPIRUN + [dtrain, *args, "--checkpoint-dir", killed_dir, "--resume", "auto",
                                   "--metrics-file", path("resumed.jsonl")], env=ENV, capture_output=True, text=True,
                         timeout=300)
check(resumed.returncode == 0, "the resumed run finishes", resumed.stdout + resumed.stderr)
resumed_from = int(re.search(r"checkpoint-0*(\d+)\.pt", resumed.stdout + resumed.stderr).group(1))
check(resumed_from >= 20, f"it resumed from the newest checkpoint (step {resumed_from})", resumed.stdout)

expected, got = losses(path("full.jsonl")), losses(path("resumed.jsonl"))
later = [step for step in expected if step > resumed_from]
differing = [(step, expected[step], got.get(step)) for step in later if got.get(step) != expected[step]]
check(later and not differing, f"the losses of steps {resumed_from + 1}-{max(later)} equal the uninterrupted run's "
      "bit for bit", str(differing[:5]))
check(crc(full.stdout) is not None and crc(full.stdout) == crc(resumed.stdout),
      f"the final weights equal the uninterrupted run's (crc32 {crc(full.stdout)} vs {crc(resumed.stdout)})")

shutil.rmtree(scratch, ignore_errors=True)
finish()
