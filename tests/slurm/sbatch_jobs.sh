#!/usr/bin/env bash
# The project's CPU batch script (slurm/train-cpu.sbatch) under a real Slurm: `sbatch --wait` with 2 and 4 tasks
# (srun --mpi=pmix) and with mpirun inside the allocation, each job checked for its output and exit state; then
# preemption: SIGUSR1 to the batch shell mid-training (as `#SBATCH --signal=B:USR1@...` sends it) -> checkpoint ->
# exit 75 -> `scontrol requeue` -> the requeued job resumes by itself and ends with the weights of an uninterrupted
# job. Cleans up (daemons, job processes, scratch) even when it fails.
# usage: sbatch_jobs.sh SOURCE_DIR BUILD_DIR SCRATCH      (exit 77: skipped, not root; a failure when CI=true)
set -euo pipefail
source_dir=$1 build_dir=$2 scratch=$3
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: starting slurmctld/slurmd/munged needs root"
  [ "${CI:-}" != true ] || { echo "sbatch_jobs.sh: CI=true: a skipped test is a failure" >&2; exit 1; }
  exit 77
fi
source "$source_dir/tests/slurm/slurm_cluster.sh"
rm -rf "$scratch"
mkdir -p "$scratch"
trap 'slurm_stop; rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*"; for f in "$scratch"/*.out; do echo "== $f"; cat "$f"; done; exit 1; }

"$build_dir/io/dtrain-shard" --fashion-mnist /usr/share/datasets/fashion-mnist --split train --limit 3072 \
  --output "$scratch/data" > /dev/null
cat > "$scratch/job.cfg" <<CFG
train-data = $scratch/data
model = cnn
batch-size = 16
epochs = 2
optimizer = adam
lr = 0.001
progress = lines
log-every = 10
CFG
slurm_start "$scratch/slurm"
export DTRAIN_HOME=$source_dir DTRAIN=$build_dir/runtime/dtrain DTRAIN_CONFIG=$scratch/job.cfg
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # mpirun as root inside the allocation

job_state() { scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
fingerprint() { sed -n 's/^dtrain: weights crc32 \([0-9a-f]*\)$/\1/p' "$1" | tail -1; }

# Whole jobs, srun and mpirun, 2 and 4 tasks.
for case in srun:2 srun:4 mpirun:2; do
  launcher=${case%%:*} tasks=${case#*:}
  out=$scratch/$launcher-$tasks.out
  DTRAIN_LAUNCHER=$launcher DTRAIN_CHECKPOINTS=$scratch/ckpt-$launcher-$tasks \
    sbatch --wait --ntasks="$tasks" --ntasks-per-node="$tasks" --output="$out" \
    "$source_dir/slurm/train-cpu.sbatch" --metrics-file "$scratch/$launcher-$tasks.jsonl" > /dev/null ||
    fail "$launcher with $tasks tasks: sbatch --wait returned $?"
  grep -q "on $tasks ranks" "$out" || fail "$launcher with $tasks tasks: dtrain did not see $tasks ranks"
  grep -q "^dtrain: done: $((3072 / 16 / tasks * 2)) steps, 2 epochs" "$out" ||
    fail "$launcher with $tasks tasks: no 'dtrain: done' line with all steps"
  [ -n "$(fingerprint "$out")" ] || fail "$launcher with $tasks tasks: no weights fingerprint"
  echo "ok   $launcher, $tasks tasks: job completed, $(grep -c '^step ' "$out") progress lines"
done

# Preemption: the same 2-task job, signalled once it has taken some steps.
out=$scratch/preempted.out
job=$(DTRAIN_CHECKPOINTS=$scratch/ckpt-preempted sbatch --parsable --ntasks=2 --ntasks-per-node=2 --output="$out" \
  "$source_dir/slurm/train-cpu.sbatch" --metrics-file "$scratch/preempted.jsonl")
for _ in $(seq 600); do
  grep -q '"step":20' "$scratch/preempted.jsonl" 2>/dev/null && break
  sleep 0.1
done
grep -q '"step":20' "$scratch/preempted.jsonl" || fail "the job to preempt did not reach step 20"
scancel --batch --signal=USR1 "$job"
# Slurm holds a requeued batch job back for a while (its BeginTime, ~2 minutes) before it may start again; a test has
# no reason to wait for that: once requeued, make it eligible now.
for _ in $(seq 600); do
  grep -q "requeueing job $job" "$out" 2>/dev/null && [ "$(job_state "$job")" = PENDING ] && break
  sleep 0.1
done
for _ in $(seq 300); do  # and the node has finished cleaning up after the first run
  [ "$(sinfo -h -N -o %T)" = idle ] && ! pgrep -f slurmstepd > /dev/null && break
  sleep 0.1
done
scontrol update JobId="$job" StartTime=now
for _ in $(seq 1200); do
  [ "$(job_state "$job")" = COMPLETED ] && break
  sleep 0.1
done
[ "$(job_state "$job")" = COMPLETED ] || fail "the preempted job did not complete after its requeue: $(job_state "$job")"
grep -q "stopped by a signal at step" "$out" || fail "dtrain did not report the stop"
grep -q "requeueing job $job" "$out" || fail "the batch script did not requeue the job"
grep -q "resumed from .*checkpoint-" "$out" || fail "the requeued job did not resume from the checkpoint"
expected=$(fingerprint "$scratch/srun-2.out")
[ "$(fingerprint "$out")" = "$expected" ] ||
  fail "weights after the requeue ($(fingerprint "$out")) differ from the uninterrupted job's ($expected)"
echo "ok   preemption: stopped at $(sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' "$out"), requeued, resumed, same weights ($expected)"
