#!/usr/bin/env bash
# The CUDA-LibTorch lane of CI: builds every target of dtrain against the LibTorch of PyTorch's official wheel
# (torch 2.11.0: CUDA 13.0, NCCL 2.28.9, the versions of the toolkit in /usr/local/cuda), warning-free, and runs the
# whole CPU test suite against that build. No GPU is needed: a CUDA LibTorch runs CPU code without a driver.
#
# Downloads once into $DTRAIN_CACHE (default /var/cache/dtrain): the wheels in wheels/, each checked by its sha256,
# unpacked into torch-2.11.0-cu130/ as pip would lay them out (torch/, nvidia/<name>/lib), so LibTorch's own RPATH
# ($ORIGIN/../../nvidia/...) finds the three libraries the toolkit lacks. Everything else (libcudart, libnccl, cuBLAS,
# cuDNN ...) comes from the toolkit: one libcudart and one libnccl per process, checked below with ldd.
# Build folder: build-cuda/ (DTRAIN_CUDA_BUILD_DIR). Exit code: the first failing step's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_CUDA_BUILD_DIR:-$root/build-cuda}
cache=${DTRAIN_CACHE:-/var/cache/dtrain}
cuda=${CUDAToolkit_ROOT:-/usr/local/cuda}
site=$cache/torch-2.11.0-cu130

# Wheel, sha256, what of it to unpack (unzip's patterns; Python's bindings are left out). The versions are the ones torch 2.11.0 pins (its Requires-Dist); only the
# libraries that libtorch_cuda.so and libtorch_nvshmem.so need (readelf -d) and the toolkit does not have are taken.
wheels=(
  "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl"
  "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"
  "torch/include/* torch/lib/* torch/share/cmake/* torch/version.py -x torch/lib/libtorch_python.so"
  "nvidia_cusparselt_cu13-0.8.0-py3-none-manylinux2014_x86_64.whl"
  "25e30a8a7323935d4ad0340b95a0b69926eee755767e8e0b1cf8dd85b197d3fd"
  "nvidia/cusparselt/lib/*"
  "nvidia_nvshmem_cu13-3.4.5-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
  "290f0a2ee94c9f3687a02502f3b9299a9f9fe826e6d0287ee18482e78d495b80"
  "nvidia/nvshmem/lib/libnvshmem_host.so.3"
  "nvidia_cufile-1.15.1.6-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
  "08a3ecefae5a01c7f5117351c64f17c7c62efa5fffdbe24fc7d298da19cd0b44"
  "nvidia/cu13/lib/libcufile.so.0"
)
requirements="torch==2.11.0 nvidia-cusparselt-cu13==0.8.0 nvidia-nvshmem-cu13==3.4.5 nvidia-cufile==1.15.1.6"

bash "$root/.ci/setup-debian.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

step=$(date +%s)
mkdir -p "$cache/wheels"
hash_ok() {  # file, sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}
missing=0
for ((i = 0; i < ${#wheels[@]}; i += 3)); do
  hash_ok "$cache/wheels/${wheels[i]}" "${wheels[i + 1]}" || missing=1
done
if [ "$missing" = 1 ]; then
  echo "cuda: downloading $requirements"
  # shellcheck disable=SC2086 # one argument per requirement
  pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$cache/wheels" $requirements
  for ((i = 0; i < ${#wheels[@]}; i += 3)); do
    if ! hash_ok "$cache/wheels/${wheels[i]}" "${wheels[i + 1]}"; then
      echo "cuda: $cache/wheels/${wheels[i]} is missing or its sha256 is not ${wheels[i + 1]}" >&2
      exit 1
    fi
  done
fi

# The unpacked folder is reused only if it was unpacked from exactly these wheels.
stamp=$(printf '%s\n' "${wheels[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$site/.dtrain-unpacked" 2>/dev/null)" != "$stamp" ]; then
  echo "cuda: unpacking into $site"
  rm -rf "$site"
  mkdir -p "$site"
  for ((i = 0; i < ${#wheels[@]}; i += 3)); do
    set -f  # the patterns are unzip's, not the shell's
    # shellcheck disable=SC2086 # one argument per pattern
    unzip -q -o "$cache/wheels/${wheels[i]}" ${wheels[i + 2]} -d "$site"
    set +f
  done
  echo "$stamp" > "$site/.dtrain-unpacked"
fi
echo "cuda: wheels checked and unpacked in $(( $(date +%s) - step )) s ($(du -sh "$site" | cut -f1) in $site)"

step=$(date +%s)
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_UNITY_BUILD="${DTRAIN_UNITY_BUILD:-OFF}" \
  -DCMAKE_PREFIX_PATH="$site/torch" \
  -DCUDAToolkit_ROOT="$cuda" -DTORCH_CUDA_ARCH_LIST="8.0;9.0" -DDTRAIN_WITH_NCCL=ON -DDTRAIN_GPU_TESTS=ON > "$build/ci-configure.log" 2>&1 ||
  { cat "$build/ci-configure.log"; exit 1; }
grep -E "^-- dtrain:" "$build/ci-configure.log"
echo "cuda: configured in $(( $(date +%s) - step )) s"

step=$(date +%s)
# Warning-free means no compiler or linker warning in the whole build, LibTorch 2.11's headers included.
cmake --build "$build" 2>&1 | tee "$build/ci-build.log"
if grep -E -i "warning[: ]" "$build/ci-build.log"; then
  echo "cuda: the build has warnings (above)" >&2
  exit 1
fi
echo "cuda: built every target in $(( $(date +%s) - step )) s, no warnings"

# One libcudart and one libnccl in the process, both the toolkit's; one libc10 and one libtorch_cpu, both the wheel's
# (not Debian's LibTorch, which this machine has too).
check_one() {  # library, folder it must come from
  paths=$(ldd "$build/runtime/dtrain" | awk -v lib="$1" 'index($1, lib ".so") == 1 {print $3}')
  echo "cuda: dtrain loads $1 from $(tr "\n" " " <<< "$paths")"
  if [ "$(wc -w <<< "$paths")" != 1 ] || [[ "$(readlink -f "$paths")" != "$2"/* ]]; then
    echo "cuda: build-cuda/runtime/dtrain must load exactly one $1, from $2" >&2
    exit 1
  fi
}
toolkit=$(readlink -f "$cuda")
check_one libcudart "$toolkit"
check_one libnccl "$toolkit"
check_one libc10 "$site/torch/lib"
check_one libtorch_cpu "$site/torch/lib"
"$build/runtime/dtrain" --version

step=$(date +%s)
# The GPU tests (label gpu) are built to prove they compile, but fail without a GPU by design: tests/gpu/run.sh runs
# them on GPU machines. The tests labelled host (a real Slurm, network namespaces) test this machine's services, not
# the LibTorch build, and the bookworm suite has just run them.
(cd "$build" && ctest --output-on-failure --timeout 600 --label-exclude "gpu|host")
echo "cuda: CPU test suite passed in $(( $(date +%s) - step )) s"
