#!/usr/bin/env bash
# The pipeline job: a character-level Transformer language model on the King James Bible (Debian's bible-kjv), cut
# into 2 pipeline stages on 2 ranks (1F1B, 4 micro-batches per step). Installs the packages, builds, shards the text
# once (90% train / 10% eval, same token ids) and reports validation bits per character. Extra arguments go to dtrain
# (e.g. --pipeline-stages 1 for the unpipelined run, --max-steps 100 for a short one; they override the config).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DTRAIN_BUILD_DIR:-$root/build}
ranks=${DTRAIN_RANKS:-2}
bash "$root/.ci/build.sh"

if [ ! -f "$root/data/kjv-eval/manifest.json" ]; then
  mkdir -p "$root/data"
  bible -p /usr/lib gen1:1-rev22:21 > "$root/data/kjv.txt"
  for split in train:0:0.9 eval:0.9:1; do
    "$build/io/dtrain-shard" --text "$root/data/kjv.txt" --text-range "${split#*:}" --sequence-length 128 --shards 2 \
      --output "$root/data/kjv-${split%%:*}"
  done
fi

mkdir -p "$root/out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp -np "$ranks" \
  "$build/runtime/dtrain" --config "$root/jobs/kjv_char_transformer.cfg" \
  --metrics-file "$root/out/kjv-metrics.jsonl" --checkpoint-dir "$root/out/kjv-checkpoints" "$@"
