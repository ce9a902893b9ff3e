#!/usr/bin/env bash
# The main job on a fresh Debian bookworm machine: installs the packages, builds, then runs dtrain's communication
# benchmark on 2 ranks (until the training demo lands, this is the job that exercises the runtime end to end).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}
bash "$root/.ci/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp -np 2 \
  "$build/bench/comm_bench" --min-bytes 4096 --max-bytes 67108864 "$@"
