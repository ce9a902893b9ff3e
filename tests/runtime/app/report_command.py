#!/usr/bin/python3
"""dtrain-report on a metrics file with known figures: the table's interval-weighted throughput, step time,
breakdown shares, evaluation and training-state lines are exact; the three PNGs are real images of the expected size; only the last
run of an appended file is reported; a bad file is one clear error line.

usage: report_command.py REPORT_SCRIPT SCRATCH_FOLDER
"""
import json
import os
import shutil
import subprocess
import sys

import matplotlib.image

report, scratch = sys.argv[1:3]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
from script_checks import check, finish  # noqa: E402


def train(step, step_ms, samples_per_s, loss):
    # The breakdown: 10% data, 30% forward, 40% backward, 10% exposed communication, 0% pipeline, 10% optimizer.
    return {"event": "train", "step": step, "loss": loss, "step_ms": step_ms, "samples_per_s": samples_per_s,
            "data_wait_ms": 0.1 * step_ms, "forward_ms": 0.3 * step_ms, "backward_ms": 0.4 * step_ms,
            "exposed_comm_ms": 0.1 * step_ms, "pipeline_wait_ms": 0.0, "optimizer_ms": 0.1 * step_ms,
            "rss_gb": step / 100}


records = [train(10, 500.0, 1.0, 9.0),  # an earlier run, reported only with --all
           train(10, 100.0, 640.0, 2.0), train(20, 300.0, 320.0, 1.5),
           {"event": "eval", "step": 20, "epoch": 0, "loss": 1.25, "accuracy": 0.75, "samples": 100,
            "predictions": 100, "bits_per_prediction": 1.8},
           {"event": "training_state_bytes", "zero_stage": 2, "parameters": 4 * 2**20, "gradients": 2**19,
            "optimizer_state": 2**20, "peak_activations": 3 * 2**19, "activation_checkpoint_every": 2}]
metrics = os.path.join(scratch, "metrics.jsonl")
with open(metrics, "w") as f:
    f.write("\n".join(json.dumps(r) for r in records) + "\n")

plots = os.path.join(scratch, "plots")
result = subprocess.run([report, metrics, "--plots", plots], capture_output=True, text=True)
out = result.stdout
# 10 steps of 0.1 s at 640/s and 10 steps of 0.3 s at 320/s: 1600 samples in 4 s, 200 ms per step on average.
for line in ["| steps | 20 |", "| throughput | 400.0 samples/s |", "| step time | 200.00 ms |",
             "|   forward | 60.00 ms (30.0%) |", "|   backward | 80.00 ms (40.0%) |",
             "| exposed communication share | 10.0% |", "| pipeline bubble + transfers share | 0.0% |",
             "| data-wait share | 10.0% |", "| peak memory (any rank) | 0.20 GB |", "| final training loss | 1.5000 |",
             "| final evaluation | loss 1.2500, accuracy 0.7500 |", "| best evaluation accuracy | 0.7500 (step 20) |",
             "| training state per rank (largest, --zero-stage 2) | parameters 4.00 MiB, gradients 0.50 MiB, "
             "optimizer state 1.00 MiB |",
             "| peak activations per rank (largest) | 1.50 MiB (--activation-checkpointing-every 2) |"]:
    check(result.returncode == 0 and line in out, f"table has {line}", out + result.stderr)
for name in ["loss.png", "accuracy.png", "step_time.png"]:
    path = os.path.join(plots, name)
    image = matplotlib.image.imread(path) if os.path.exists(path) else None
    check(image is not None and image.shape[0] == 400 and image.shape[1] in (700, 900),
          f"{name} is a 700 or 900 x 400 image", str(None if image is None else image.shape))

result = subprocess.run([report, metrics, "--all"], capture_output=True, text=True)
check(result.returncode == 0 and "| steps | 30 |" in result.stdout, "--all reports every run", result.stdout)

with open(metrics, "a") as f:
    f.write("{not json\n")
result = subprocess.run([report, metrics], capture_output=True, text=True)
check(result.returncode == 2 and result.stderr.strip() == f"dtrain-report: error: {metrics}:6: not a JSON line "
      "(Expecting property name enclosed in double quotes)", "a broken line is one clear error", result.stderr)
result = subprocess.run([report, os.path.join(scratch, "missing.jsonl")], capture_output=True, text=True)
check(result.returncode == 2 and "cannot read" in result.stderr, "a missing file is one clear error", result.stderr)

shutil.rmtree(scratch, ignore_errors=True)
finish()
