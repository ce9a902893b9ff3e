#!/usr/bin/env bash
# Builds dtrain against LibTorch 2.x and runs the whole test suite there: a Debian trixie root folder (LibTorch 2.6,
# Open MPI 5, HDF5 1.14, g++ 14) made with debootstrap, the repository bind-mounted at /src, the build in
# /build-trixie inside the root. Tests labelled "host" (a real Slurm, network namespaces) run on bookworm only, and the
# benchmarks are built by the bookworm and CUDA lanes. Reuses the root folder when it exists (DTRAIN_TRIXIE_ROOT,
# default /var/cache/dtrain/trixie-root); always unmounts what it mounted. Exit code: ctest's. Run as root.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rootfs=${DTRAIN_TRIXIE_ROOT:-/var/cache/dtrain/trixie-root}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
packages="g++ cmake ninja-build make pkg-config libtorch-dev libopenblas0-openmp libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools libboost-program-options-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libfmt-dev zlib1g-dev libxxhash-dev dataset-fashion-mnist python3-h5py python3-numpy python3-torch python3-matplotlib"

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
if [ ! -f "$rootfs/.dtrain-debootstrap-done" ]; then
  echo "trixie: debootstrap into $rootfs from $mirror"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  debootstrap --variant=minbase trixie "$rootfs" "$mirror" >/dev/null
  touch "$rootfs/.dtrain-debootstrap-done"
fi

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
mount -t sysfs sysfs "$rootfs/sys" && mounted+=("$rootfs/sys")  # hwloc (Open MPI) reads the CPU topology there
mkdir -p "$rootfs/dev/shm" && mount -t tmpfs tmpfs "$rootfs/dev/shm" && mounted+=("$rootfs/dev/shm")
mkdir -p "$rootfs/src" && mount --bind "$repo" "$rootfs/src" && mounted+=("$rootfs/src")

stamp=$(echo "$packages" | md5sum | cut -d' ' -f1)
if [ "$(cat "$rootfs/.dtrain-packages" 2>/dev/null)" != "$stamp" ]; then
  echo "trixie: installing packages"
  echo "deb $mirror trixie main contrib" > "$rootfs/etc/apt/sources.list"
  chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $(echo $packages) >/dev/null"
  echo "$stamp" > "$rootfs/.dtrain-packages"
fi

chroot "$rootfs" /usr/bin/env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HOME=/root bash -c \
  "cmake -S /src -B /build-trixie -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_UNITY_BUILD=${DTRAIN_UNITY_BUILD:-OFF} \
     -DDTRAIN_BUILD_BENCH=OFF >/dev/null && cmake --build /build-trixie && \
   cd /build-trixie && ctest --output-on-failure --timeout 600 --label-exclude host"
