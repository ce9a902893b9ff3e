#!/usr/bin/python3
"""Shards made by dtrain-shard read with h5py, and data made with h5py converted by dtrain-shard: bit for bit.

usage: h5py_round_trip.py DTRAIN_SHARD SCRATCH_FOLDER
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

import h5py
import numpy as np

shard_tool, scratch = sys.argv[1], sys.argv[2]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from script_checks import check, finish  # noqa: E402


def run(*args):
    subprocess.run([shard_tool, *args], check=True, stdout=subprocess.DEVNULL)


def read_all(folder, name):
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    parts = [h5py.File(os.path.join(folder, s["file"]), "r")[name][()] for s in manifest["shards"]]
    return manifest, np.concatenate(parts)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


# 1. Fashion-MNIST IDX -> shards -> h5py equals the IDX bytes.
fmnist = "/usr/share/datasets/fashion-mnist"
out = os.path.join(scratch, "fmnist")
run("--fashion-mnist", fmnist, "--split", "t10k", "--limit", "2500", "--samples-per-shard", "1000", "--gzip", "4",
    "--output", out)
manifest, images = read_all(out, "images")
_, labels = read_all(out, "labels")
check(len(manifest["shards"]) == 3 and [s["samples"] for s in manifest["shards"]] == [1000, 1000, 500],
      "fashion-mnist: 3 shards of 1000, 1000, 500 samples")
check(np.array_equal(images, read_idx(fmnist + "/t10k-images-idx3-ubyte.gz")[:2500]), "fashion-mnist: images equal")
check(np.array_equal(labels, read_idx(fmnist + "/t10k-labels-idx1-ubyte.gz")[:2500]), "fashion-mnist: labels equal")
check(images.dtype == np.uint8 and images.shape == (2500, 28, 28), "fashion-mnist: uint8 [2500, 28, 28]")

# 2. An HDF5 file written by h5py -> dtrain-shard --input-hdf5 -> h5py equals the original.
source = os.path.join(scratch, "source.h5")
rng = np.random.default_rng(7)
features = rng.standard_normal((777, 5)).astype(np.float32)
targets = rng.integers(0, 1 << 40, size=777, dtype=np.int64)
with h5py.File(source, "w") as f:
    f["features"] = features
    f["targets"] = targets
out = os.path.join(scratch, "from-h5py")
run("--input-hdf5", source, "--datasets", "features,targets", "--shards", "4", "--chunk-samples", "100", "--output",
    out)
manifest, got_features = read_all(out, "features")
_, got_targets = read_all(out, "targets")
check(np.array_equal(got_features, features) and got_features.dtype == np.float32, "input-hdf5: float32 equal")
check(np.array_equal(got_targets, targets) and got_targets.dtype == np.int64, "input-hdf5: int64 equal")
check(manifest["datasets"][0] == {"name": "features", "dtype": "float32", "shape": [5]}, "input-hdf5: manifest")

# 3. A text corpus -> character token sequences; decoding with the manifest's vocabulary gives the text back.
text = ("In the beginning God created the heaven and the earth. " * 40).encode()
corpus = os.path.join(scratch, "corpus.txt")
open(corpus, "wb").write(text)
out = os.path.join(scratch, "text")
run("--text", corpus, "--sequence-length", "32", "--output", out)
manifest, tokens = read_all(out, "tokens")
vocabulary = manifest["vocabulary"].encode("latin-1")
decoded_ok = all(bytes(vocabulary[t] for t in row) == text[i * 32:i * 32 + 33] for i, row in enumerate(tokens))
check(tokens.shape == ((len(text) - 1) // 32, 33) and decoded_ok, "text: windows of 33 tokens decode to the text")

# 4. dtrain-shard's own checksum verification passes on what it wrote, and refuses a folder without a manifest.
subprocess.run([shard_tool, "--verify", os.path.join(scratch, "fmnist")], check=True, stdout=subprocess.DEVNULL)
bad = subprocess.run([shard_tool, "--verify", scratch], capture_output=True, text=True)
check(bad.returncode != 0 and "manifest.json: missing" in bad.stderr and bad.stderr.count("\n") == 1,
      "verify: a folder without a manifest is one clear error line")

shutil.rmtree(scratch, ignore_errors=True)
finish()
