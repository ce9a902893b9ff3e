#!/usr/bin/env bash
# Installs every Debian package dtrain needs to build, test and run its jobs. Idempotent: packages already present are
# skipped without touching the network. Run as root (or with sudo available).
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make ninja-build pkg-config
  # LibTorch and a fast BLAS for it: without OpenBLAS, libblas.so.3 is Debian's reference BLAS and fp32 matmul is ~15x slower
  libtorch-dev libopenblas0-openmp
  # MPI, parallel HDF5 and the tools to inspect shards
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
  # command-line, tests, JSON, formatting
  libboost-program-options-dev libgtest-dev libgmock-dev nlohmann-json3-dev libfmt-dev zlib1g-dev
  # checkpoint checksums
  libxxhash-dev
  # the bundled real data and the Python peers used by tests and benchmarks
  dataset-fashion-mnist bible-kjv bible-kjv-text python3-h5py python3-numpy python3-torch python3-matplotlib
  # a real Slurm and two network namespaces for the launch tests (tests/slurm)
  slurm-wlm munge iproute2
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-debian: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup-debian: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-debian: done"
