#!/usr/bin/env bash
# Installs the build into a scratch prefix with `cmake --install`, checks that the library, headers, commands and
# package config are there, builds docs/example (a separate project using find_package(dtrain)) against it and runs
# it at 2 ranks: it must train and end with identical weights on both ranks. Then the installed dtrain trains a
# TorchScript MLP on Fashion-MNIST and exports it (--export-model), and the example's classify (plain LibTorch
# inference) must reach on the test images the accuracy dtrain's own evaluation reported, to 1e-4.
# usage: install_and_use.sh SOURCE_DIR BUILD_DIR SCRATCH
set -euo pipefail
source_dir=$1 build_dir=$2 scratch=$3
rm -rf "$scratch"
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix
cmake --install "$build_dir" --prefix "$prefix" > /dev/null
for path in lib/libdtrain.so bin/dtrain bin/dtrain-shard bin/dtrain-inspect bin/dtrain-report include/dtrain/comm/communicator.h \
  include/dtrain/runtime/data_parallel/distributed_data_parallel.h lib/cmake/dtrain/dtrainConfig.cmake \
  lib/cmake/dtrain/dtrainTargets.cmake; do
  [ -e "$prefix/$path" ] || { echo "FAIL: $path was not installed"; exit 1; }
done
help=$("$prefix/bin/dtrain" --help) && grep -q -- --pipeline-stages <<< "$help" ||
  { echo "FAIL: the installed dtrain does not run"; exit 1; }
cmake -S "$source_dir/docs/example" -B "$scratch/example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" > "$scratch/configure.log" || { cat "$scratch/configure.log"; exit 1; }
cmake --build "$scratch/example" > "$scratch/build.log" || { cat "$scratch/build.log"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp -np 2 "$scratch/example/train_ddp" \
  | tee "$scratch/run.log"
grep -q "weights identical on every rank" "$scratch/run.log" || { echo "FAIL: the example did not finish in agreement"; exit 1; }

"$prefix/bin/dtrain-shard" --fashion-mnist /usr/share/datasets/fashion-mnist --split t10k --shards 2 \
  --output "$scratch/fmnist-test" > /dev/null
/usr/bin/python3 - "$scratch/net.pt" <<'PY'
import sys
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
torch.jit.script(net).save(sys.argv[1])
PY
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp -np 2 "$prefix/bin/dtrain" \
  --torchscript "$scratch/net.pt" --train-data "$scratch/fmnist-test" --eval-data "$scratch/fmnist-test" \
  --max-steps 40 --batch-size 64 --lr 0.05 --progress none --export-model "$scratch/trained.pt" > "$scratch/train.log" ||
  { cat "$scratch/train.log"; echo "FAIL: dtrain --export-model"; exit 1; }
reported=$(sed -n 's/^dtrain: done.*eval accuracy \([0-9.]*\).*/\1/p' "$scratch/train.log")
measured=$("$scratch/example/classify" "$scratch/trained.pt" /usr/share/datasets/fashion-mnist |
  sed -n 's/.*accuracy \([0-9.]*\)$/\1/p')
echo "classify: accuracy $measured; dtrain's evaluation: $reported"
/usr/bin/python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-4 or b < 0.3)" \
  "${measured:-0}" "${reported:-0}" || { echo "FAIL: the exported model classifies otherwise than dtrain evaluated it"; exit 1; }
echo "ok: installed, found by find_package(dtrain), example trained at 2 ranks, exported model classified at dtrain's accuracy"
