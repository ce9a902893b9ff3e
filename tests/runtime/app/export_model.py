#!/usr/bin/python3
"""dtrain --export-model at 2 ranks on Fashion-MNIST (Debian's dataset-fashion-mnist): Python's torch.load reads the
exported state dict of the built-in MLP into the same model defined in Python, and torch.jit.load the exported
TorchScript module; each reaches on the test set exactly the accuracy dtrain's own evaluation reported (to 1e-4).

usage: export_model.py DTRAIN DTRAIN_SHARD SCRATCH_FOLDER
"""
import glob
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
from script_checks import ENV, check, finish, mpirun  # noqa: E402

test_set = os.path.join(scratch, "fmnist-test")
subprocess.run([shard_tool, "--fashion-mnist", "/usr/share/datasets/fashion-mnist", "--split", "t10k", "--shards", "2",
                "--output", test_set], check=True, stdout=subprocess.DEVNULL)
images, labels = [], []
for shard in sorted(glob.glob(os.path.join(test_set, "shard-*.h5"))):
    with h5py.File(shard) as f:
        images.append(f["images"][:])
        labels.append(f["labels"][:])
images = torch.from_numpy(np.concatenate(images)).float() / 255  # as dtrain's feed scales uint8 inputs
labels = torch.from_numpy(np.concatenate(labels).astype(np.int64))


def train_and_export(model_args, exported):
    result = subprocess.run(mpirun(2) + [dtrain, *model_args, "--train-data", test_set, "--eval-data", test_set,
                                         "--max-steps", "40", "--batch-size", "64", "--lr", "0.05",
                                         "--progress", "none", "--export-model", exported],
                            env=ENV, capture_output=True, text=True, timeout=300)
    done = [line for line in result.stdout.splitlines() if line.startswith("dtrain: done")]
    check(result.returncode == 0 and done and "eval accuracy " in done[0]
          and f"dtrain: exported the trained model to {exported}" in result.stdout,
          f"dtrain {' '.join(model_args)} trains, evaluates and exports", result.stdout + result.stderr)
    return float(done[0].split("eval accuracy ")[1].split()[0]) if done and "eval accuracy " in done[0] else -1.0


def accuracy(model):
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).double().mean().item()


def mlp():  # jobs/model_registry.cpp: mlp
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                               torch.nn.ReLU(), torch.nn.Linear(128, 10))


state_dict_file = os.path.join(scratch, "mlp-state-dict.pt")
reported = train_and_export(["--model", "mlp"], state_dict_file)
python_model = mlp()
# LibTorch's pickler tags the dict's type (torch.jit._pickle.restore_type_tag), which PyTorch >= 2.6's default
# weights_only=True loader refuses; weights_only=False reads it on every version (README: Export).
state = torch.load(state_dict_file, weights_only=False)
check(sorted(state) == sorted(python_model.state_dict()), "the state dict has the Python model's names",
      f"{sorted(state)} vs {sorted(python_model.state_dict())}")
python_model.load_state_dict(state)
measured = accuracy(python_model)
check(abs(measured - reported) <= 1e-4 and reported > 0.3,
      "the exported MLP gives in Python the accuracy dtrain reported", f"python {measured:.4f}, dtrain {reported:.4f}")

scripted = os.path.join(scratch, "net.pt")
torch.manual_seed(0)
torch.jit.script(mlp()).save(scripted)
trained_script = os.path.join(scratch, "net-trained.pt")
reported = train_and_export(["--torchscript", scripted], trained_script)
measured = accuracy(torch.jit.load(trained_script))
check(abs(measured - reported) <= 1e-4 and reported > 0.3,
      "the exported TorchScript module gives in Python the accuracy dtrain reported",
      f"python {measured:.4f}, dtrain {reported:.4f}")
check(abs(accuracy(torch.jit.load(scripted)) - reported) > 0.05, "the export holds the trained weights, not the "
      "initial ones", "")

shutil.rmtree(scratch, ignore_errors=True)
finish()
