#!/usr/bin/env bash
# The main job on a fresh Debian bookworm machine: installs the packages, builds, shards the bundled Fashion-MNIST
# (once) and trains the demo CNN on 2 ranks. Extra arguments go to dtrain (e.g. --epochs 1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}
bash "$root/.ci/build.sh"

fmnist=/usr/share/datasets/fashion-mnist
for split in train:fmnist-train t10k:fmnist-test; do
  if [ ! -f "$root/data/${split#*:}/manifest.json" ]; then
    "$build/io/dtrain-shard" --fashion-mnist "$fmnist" --split "${split%%:*}" --output "$root/data/${split#*:}" --shards 4
  fi
done

mkdir -p "$root/out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp -np 2 \
  "$build/runtime/dtrain" --config "$root/jobs/fashion_mnist_cnn.cfg" \
  --metrics-file "$root/out/demo-metrics.jsonl" --checkpoint-dir "$root/out/demo-checkpoints" "$@"
