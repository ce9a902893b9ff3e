#!/usr/bin/env bash
# Installs the Debian packages dtrain needs, then configures and builds it in build/ (or $DTRAIN_BUILD_DIR).
# Used by both README commands; safe to run again (it only rebuilds what changed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}

bash "$root/.ci/setup-debian.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_UNITY_BUILD="${DTRAIN_UNITY_BUILD:-OFF}"
# Two cores and ~1.3 GB per LibTorch translation unit: the default parallelism is right.
cmake --build "$build"
