#!/usr/bin/env python3
"""GPU training throughput: dtrain against PyTorch (Python, eager) training the same model with the same batch,
precision, optimizer and GPU, measured in the same run. Prints one markdown table; run by tests/gpu/run.sh, which puts
it in the GPU lane's report. Needs a python3 with a CUDA torch (the lane's) and a GPU.

  gpu_vs_pytorch.py DTRAIN DTRAIN_SHARD SCRATCH [--steps N]

Models: the registry's cnn and resnet18 (ResNet-18, CIFAR stem, one input channel), on 28x28 one-channel images.
dtrain reads its batches from HDF5 shards (its real data path); PyTorch gets the whole data set on the GPU up front,
the most favourable case for the peer. Figure: samples/s over the steps after a warm-up; ratio = dtrain / PyTorch.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("dtrain")
parser.add_argument("shard_tool")
parser.add_argument("scratch")
parser.add_argument("--steps", type=int, default=120)
args = parser.parse_args()
os.makedirs(args.scratch, exist_ok=True)
WARMUP = 20
SAMPLES = 8192
generator = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (SAMPLES, 28, 28), dtype=torch.uint8, generator=generator)
labels = torch.randint(0, 10, (SAMPLES,), dtype=torch.uint8, generator=generator)


def write_idx(path, magic, tensor):
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in tensor.shape))
        f.write(tensor.numpy().tobytes())


raw = os.path.join(args.scratch, "raw")
os.makedirs(raw, exist_ok=True)
write_idx(os.path.join(raw, "train-images-idx3-ubyte.gz"), 0x803, images)
write_idx(os.path.join(raw, "train-labels-idx1-ubyte.gz"), 0x801, labels)
shards = os.path.join(args.scratch, "train")
subprocess.run([args.shard_tool, "--fashion-mnist", raw, "--split", "train", "--shards", "8", "--output", shards],
               check=True, stdout=subprocess.DEVNULL)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def resnet18():
    layers = [nn.Unflatten(1, (1, 28)), nn.Conv2d(1, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout in (64, 128, 256, 512):
        layers += [BasicBlock(cin, cout, 1 if cout == 64 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))


def cnn():
    return nn.Sequential(nn.Unflatten(1, (1, 28)), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
                         nn.Linear(64 * 7 * 7, 10))


def pytorch_samples_per_s(make, batch, amp):
    model = make().cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_all = images.cuda().float().div_(255)
    y_all = labels.cuda().long()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    start = None
    for step in range(args.steps):
        if step == WARMUP:
            torch.cuda.synchronize()
            start = time.perf_counter()
        i = (step * batch) % (SAMPLES - batch)
        x, y = x_all[i:i + batch], y_all[i:i + batch]
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=False)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    torch.cuda.synchronize()
    return (args.steps - WARMUP) * batch / (time.perf_counter() - start)


def dtrain_samples_per_s(model, batch, amp):
    metrics = os.path.join(args.scratch, f"metrics-{model}-{amp}.jsonl")
    subprocess.run([args.dtrain, "--train-data", shards, "--model", model, "--device", "cuda", "--backend", "nccl",
                    "--batch-size", str(batch), "--amp", amp, "--lr", "0.05", "--momentum", "0.9", "--max-steps",
                    str(args.steps), "--log-every", str(WARMUP), "--progress", "none", "--metrics-file", metrics],
                   check=True, stdout=subprocess.DEVNULL)
    with open(metrics) as f:
        records = [json.loads(line) for line in f]
    after_warmup = [r for r in records if r.get("event") == "train" and r["step"] > WARMUP]
    # Each record covers WARMUP steps: samples/s of the whole measured span.
    seconds = sum(r["step_ms"] * WARMUP / 1e3 for r in after_warmup)
    return len(after_warmup) * WARMUP * batch / seconds


print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.steps} steps ({WARMUP} warm-up)\n")
print("| model | batch | precision | dtrain samples/s | PyTorch samples/s | ratio |")
print("|---|---|---|---|---|---|")
for model, make, batch in (("cnn", cnn, 256), ("resnet18", resnet18, 128)):
    for amp in ("none", "bf16"):
        mine = dtrain_samples_per_s(model, batch, amp)
        peer = pytorch_samples_per_s(make, batch, amp)
        print(f"| {model} | {batch} | {amp} | {mine:.0f} | {peer:.0f} | {mine / peer:.2f} |", flush=True)
