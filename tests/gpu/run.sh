#!/usr/bin/env bash
# The GPU lane: on a machine with NVIDIA GPU(s) and a CUDA LibTorch, builds dtrain's GPU tests and runs every test
# labelled gpu (ctest -L gpu) at each rank count the visible GPUs allow (NCCL needs a GPU per rank), then measures
# dtrain against PyTorch on the same GPU (bench/gpu_vs_pytorch.py). Fails with one
# line when no GPU is visible: a GPU test never passes by skipping. Writes one markdown report with every figure.
#
#   tests/gpu/run.sh [--torch DIR] [--debs DIR] [--out DIR] [--build DIR]
#
#   --torch DIR  a CUDA LibTorch: the folder of the pytorch.org zip (libtorch/), a wheel's torch/ folder, or the
#                folder holding TorchConfig.cmake. Default: the pip-installed torch of `python3`.
#   --debs DIR   Debian bookworm .deb files (for machines without apt; see README "GPU test lane"), unpacked with
#                dpkg -x into a prefix ($DTRAIN_CACHE/bookworm-deb-root, default /var/cache/dtrain) that the build
#                and the tests use.
#   --out DIR    where the report goes (default $OUT if set, else the build folder): gpu-report.md.
#   --build DIR  build folder (default build-gpu/ in the repository).
# Other environment: CUDAToolkit_ROOT (default /usr/local/cuda), NCCL_HOME (if NCCL is not in the toolkit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
torch="" debs="" out=${OUT:-} build=$root/build-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) torch=$2; shift 2 ;;
    --debs) debs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "tests/gpu/run.sh: unknown argument $1 (see the top of this file)" >&2; exit 2 ;;
  esac
done
out=${out:-$build}
mkdir -p "$out" "$build"
report=$out/gpu-report.md
started=$(date +%s)

# The GPUs this process can use: nvidia-smi's list, narrowed by CUDA_VISIBLE_DEVICES as CUDA narrows it.
gpus=0
gpu_lines=""
if command -v nvidia-smi > /dev/null && gpu_lines=$(nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version \
  --format=csv,noheader 2> /dev/null); then
  gpus=$(grep -c . <<< "$gpu_lines" || true)
fi
if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
  visible=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c . || true)
  gpus=$(( visible < gpus ? visible : gpus ))
fi
if [ "$gpus" -lt 1 ]; then
  line="tests/gpu/run.sh: FAIL: no GPU is visible (nvidia-smi $(command -v nvidia-smi > /dev/null && echo "lists none" ||
    echo "not found: no NVIDIA driver")${CUDA_VISIBLE_DEVICES+, CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES}); the GPU tests were not run"
  printf '# dtrain GPU lane\n\n%s\n' "$line" > "$report"
  echo "$line" >&2
  exit 1
fi
arch=$(head -n 1 <<< "$gpu_lines" | cut -d, -f3 | tr -d ' ')

# Build dependencies from .deb files: unpacked into one prefix; the names of Debian's alternatives (mpicxx, mpirun,
# h5pcc) are made as links, Open MPI is told where it now lives (OPAL_PREFIX), and h5pcc's fixed paths are rewritten.
cmake_extra=()
if [ -n "$debs" ]; then
  # Outside the repository: CMake refuses installable targets whose headers are inside the source or build folder.
  prefix=${DTRAIN_CACHE:-/var/cache/dtrain}/bookworm-deb-root
  if [ ! -f "$prefix/.unpacked" ]; then
    rm -rf "$prefix" && mkdir -p "$prefix"
    for deb in "$debs"/*.deb; do dpkg -x "$deb" "$prefix"; done
    for tool in mpicc mpicxx mpirun mpiexec; do ln -sf "$tool.openmpi" "$prefix/usr/bin/$tool"; done
    sed -i "s|=\"/usr|=\"$prefix/usr|g" "$prefix/usr/bin/h5pcc.openmpi"
    ln -sf h5pcc.openmpi "$prefix/usr/bin/h5pcc"
    touch "$prefix/.unpacked"
  fi
  multiarch=$prefix/usr/lib/x86_64-linux-gnu
  export PATH=$prefix/usr/bin:$PATH OPAL_PREFIX=$prefix/usr
  export LD_LIBRARY_PATH=$multiarch:$multiarch/openmpi/lib:$multiarch/hdf5/openmpi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  cmake_extra+=(-DCMAKE_PREFIX_PATH="$prefix/usr" -DMPI_CXX_COMPILER="$prefix/usr/bin/mpicxx"
    -DMPIEXEC_EXECUTABLE="$prefix/usr/bin/mpirun" -DHDF5_C_COMPILER_EXECUTABLE="$prefix/usr/bin/h5pcc")
fi

# The LibTorch: given, or the pip-installed torch's (torch.utils.cmake_prefix_path is <torch>/share/cmake).
if [ -z "$torch" ]; then
  torch=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2> /dev/null) || {
    echo "tests/gpu/run.sh: FAIL: no --torch given and python3 has no torch installed" >&2
    exit 1
  }
fi
torch_dir=$(find "$torch" -maxdepth 4 -name TorchConfig.cmake -printf '%h\n' -quit 2> /dev/null || true)
if [ -z "$torch_dir" ]; then
  echo "tests/gpu/run.sh: FAIL: no TorchConfig.cmake under $torch" >&2
  exit 1
fi

step=$(date +%s)
# Caffe2_DIR too: LibTorch's config looks for Caffe2 on the system paths before its own folder (a Debian LibTorch
# there would be taken).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$torch_dir" \
  -DCaffe2_DIR="$(dirname "$torch_dir")/Caffe2" \
  -DCUDAToolkit_ROOT="${CUDAToolkit_ROOT:-/usr/local/cuda}" -DTORCH_CUDA_ARCH_LIST="$arch" -DDTRAIN_WITH_NCCL=ON \
  -DDTRAIN_GPU_TESTS=ON -DDTRAIN_BUILD_BENCH=OFF "${cmake_extra[@]}" > "$build/gpu-configure.log" 2>&1 ||
  { cat "$build/gpu-configure.log"; exit 1; }
configure_line=$(grep -E "^-- dtrain:" "$build/gpu-configure.log" | sed 's/^-- //')
configure_s=$(( $(date +%s) - step ))
echo "$configure_line"
grep -q "TORCH_CUDA_ARCH_LIST" <<< "$configure_line" ||
  { echo "tests/gpu/run.sh: FAIL: the LibTorch in $torch_dir has no CUDA" >&2; exit 1; }

# Only what the GPU tests need, and the command for its --version line.
step=$(date +%s)
gpu_targets=$(sed -n 's/^build \(test_[A-Za-z0-9_]*_gpu\): phony.*/\1/p' "$build/build.ninja" | sort -u | tr '\n' ' ')
# shellcheck disable=SC2086 # one argument per target
cmake --build "$build" --target dtrain-bin dtrain-shard $gpu_targets > "$build/gpu-build.log" 2>&1 ||
  { cat "$build/gpu-build.log"; exit 1; }
build_s=$(( $(date +%s) - step ))
version=$("$build/runtime/dtrain" --version)
echo "$version"

# Rank counts above the GPU count cannot run (NCCL: one GPU per rank); they are listed in the report as not run.
cd "$build"
all_tests=$(ctest -N -L gpu | sed -n 's/^ *Test *#[0-9]*: *//p')
too_many=$(grep -E "_np[0-9]+$" <<< "$all_tests" | awk -v g="$gpus" -F_np '$NF > g {print}' || true)
exclude=$(tr '\n' '|' <<< "$too_many" | sed 's/|$//')
step=$(date +%s)
status=0
ctest --output-on-failure --timeout 600 -L gpu ${exclude:+-E "^($exclude)$"} 2>&1 | tee "$build/gpu-ctest.log" ||
  status=$?
test_s=$(( $(date +%s) - step ))

# dtrain against PyTorch on the same GPU (bench/gpu_vs_pytorch.py), with the python3 whose torch this lane builds on.
step=$(date +%s)
bench_table=$(python3 "$root/bench/gpu_vs_pytorch.py" "$build/runtime/dtrain" "$build/io/dtrain-shard" \
  "$build/gpu-bench" 2>&1) || { bench_table="bench/gpu_vs_pytorch.py failed:"$'\n'"$bench_table"; status=1; }
echo "$bench_table"
bench_s=$(( $(date +%s) - step ))

{
  echo "# dtrain GPU lane"
  echo
  echo "Ran $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname): $gpus GPU(s) visible, exit code $status."
  echo
  echo "| GPU | name | compute capability | memory | driver |"
  echo "|---|---|---|---|---|"
  while IFS=, read -r index name cap memory driver; do
    echo "| $index |$name |$cap |$memory |$driver |"
  done <<< "$gpu_lines"
  echo
  echo "- dtrain --version: \`$version\`"
  echo "- configure: \`$configure_line\` ($configure_s s)"
  echo "- build of $gpu_targets dtrain: $build_s s"
  echo "- tests: $test_s s; whole lane: $(( $(date +%s) - started )) s"
  echo
  echo "| test | result | seconds |"
  echo "|---|---|---|"
  sed -n 's/^ *[0-9]*\/[0-9]* Test *#[0-9]*: *\([^ ]*\) \.*\**\(.*[^ ]\) *\([0-9.]*\) sec$/| \1 | \2 | \3 |/p' gpu-ctest.log
  for t in $too_many; do echo "| $t | not run: needs more GPUs than the $gpus visible | |"; done
  echo
  grep -E "tests passed|tests failed" gpu-ctest.log || true
  echo
  echo "## Throughput against PyTorch ($bench_s s)"
  echo
  echo "$bench_table"
  if [ "$status" -ne 0 ]; then
    echo
    echo '```'
    grep -E "^\[rank [0-9]+\]|Failure|FAILED|error" gpu-ctest.log | head -n 60 || true
    echo '```'
  fi
} > "$report"
echo "tests/gpu/run.sh: report in $report"
exit "$status"
