#!/usr/bin/env bash
# Runs every benchmark in bench/ and writes one markdown report (default out/bench-report.md): one table with each
# headline figure, the peer it is measured against in the same run, and the ratio (above 1: dtrain ahead of, or as
# good as, the peer; for the pipeline, theory / measured bubble), then each benchmark's full table.
# usage: bash bench/run-all.sh [REPORT.md]      (a few minutes on 2 cores; builds first)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}
report=$(realpath -m "${1:-$root/out/bench-report.md}")
bash "$root/.ci/build.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=$work/rows.md
: > "$rows"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp)

run() {  # run NAME COMMAND...: its output goes to the report's appendix, a failure stops the whole run
  local name=$1
  shift
  echo "bench/run-all.sh: $name" >&2
  if ! "$@" > "$work/$name.txt" 2>&1; then
    cat "$work/$name.txt" >&2
    echo "bench/run-all.sh: error: $name failed" >&2
    exit 1
  fi
}

run comm_bench "${mpirun[@]}" -np 2 "$build/bench/comm_bench" --summary "$rows"
run io_bench "$build/bench/io_bench" --folder "$work/io" --summary "$rows"
run pytorch_ddp_peer /usr/bin/python3 "$root/bench/pytorch_ddp_peer.py" --bench "$build/bench/ddp_step_bench" \
  --summary "$rows"
run scaling_bench "${mpirun[@]}" -np 2 "$build/bench/scaling_bench" --summary "$rows"
run pipeline_bench "${mpirun[@]}" -np 2 "$build/bench/pipeline_bench" --summary "$rows"
run memory_bench "${mpirun[@]}" -np 4 "$build/bench/memory_bench" --summary "$rows"
run pytorch_zero_peer /usr/bin/python3 "$root/bench/pytorch_zero_peer.py" --bench "$build/bench/memory_bench" \
  --summary "$rows"
run checkpoint_bench "${mpirun[@]}" -np 2 "$build/bench/checkpoint_bench" --summary "$rows"

mkdir -p "$(dirname "$report")"
{
  echo "# dtrain benchmark report"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -n); every peer measured in the same run."
  echo
  echo "| benchmark | figure | dtrain | peer | peer's figure | ratio |"
  echo "|---|---|---|---|---|---|"
  cat "$rows"
  for name in comm_bench io_bench pytorch_ddp_peer scaling_bench pipeline_bench memory_bench pytorch_zero_peer \
    checkpoint_bench; do
    echo
    echo "## $name"
    echo
    echo '```'
    cat "$work/$name.txt"
    echo '```'
  done
} > "$report"
echo "bench/run-all.sh: wrote $report ($(wc -l < "$rows") figures)"
