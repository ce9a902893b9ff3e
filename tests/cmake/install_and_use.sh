#!/usr/bin/env bash
# Installs the build into a scratch prefix with `cmake --install`, checks that the library, headers, commands and
# package config are there, builds docs/example (a separate project using find_package(dtrain)) against it and runs
# it at 2 ranks: it must train and end with identical weights on both ranks.
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
echo "ok: installed, found by find_package(dtrain), example trained at 2 ranks"
