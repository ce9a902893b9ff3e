#!/usr/bin/env bash
# The whole test suite on a fresh Debian bookworm machine: installs the packages, builds, runs every test
# (single-process and multi-rank under mpirun). Exit code: ctest's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}
bash "$root/.ci/build.sh"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
