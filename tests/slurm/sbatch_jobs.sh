#!/usr/bin/env bash
# The project's CPU batch script (slurm/train-cpu.sbatch) under a real Slurm: `sbatch --wait` with 2 and 4 tasks
# (srun --mpi=pmix) and with mpirun inside the allocation, each job checked for its output and exit state; then
# preemption: SIGUSR1 to the batch shell mid-training (as `#SBATCH --signal=B:USR1@...` sends it) -> checkpoint ->
# exit 75 -> `scontrol requeue` -> the requeued job resumes by itself and ends with the weights of an uninterrupted
# job; and a 4-task ZeRO job preempted and requeued with 2 tasks resumes on 2 ranks. Cleans up (daemons, job
# processes, scratch) even when it fails.
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

# Preemption: SIGUSR1 to the batch shell of job $1 once its metrics file $2 shows step 20, then wait until the job is
# requeued (its output $3 says so) and the node has cleaned up after it.
preempt() {
  local job=$1 metrics=$2 out=$3
  for _ in $(seq 600); do
    grep -q '"step":20' "$metrics" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '"step":20' "$metrics" || fail "job $job did not reach step 20"
  scancel --batch --signal=USR1 "$job"
  for _ in $(seq 600); do
    grep -q "requeueing job $job" "$out" 2>/dev/null && [ "$(job_state "$job")" = PENDING ] && break
    sleep 0.1
  done
  for _ in $(seq 300); do
    [ "$(sinfo -h -N -o %T)" = idle ] && ! pgrep -f slurmstepd > /dev/null && break
    sleep 0.1
  done
}
# Slurm holds a requeued batch job back for a while (its BeginTime, ~2 minutes) before it may start again; a test has
# no reason to wait for that: make it eligible now (with any other changes given), then wait for it to complete.
restart_and_wait() {
  local job=$1
  shift
  scontrol update JobId="$job" StartTime=now "$@"
  for _ in $(seq 1200); do
    [ "$(job_state "$job")" = COMPLETED ] && break
    sleep 0.1
  done
  [ "$(job_state "$job")" = COMPLETED ] || fail "job $job did not complete after its requeue: $(job_state "$job")"
}

# The same 2-task job, preempted: it resumes by itself and ends with the uninterrupted job's weights.
out=$scratch/preempted.out
job=$(DTRAIN_CHECKPOINTS=$scratch/ckpt-preempted sbatch --parsable --ntasks=2 --ntasks-per-node=2 --output="$out" \
  "$source_dir/slurm/train-cpu.sbatch" --metrics-file "$scratch/preempted.jsonl")
preempt "$job" "$scratch/preempted.jsonl" "$out"
restart_and_wait "$job"
grep -q "stopped by a signal at step" "$out" || fail "dtrain did not report the stop"
grep -q "requeueing job $job" "$out" || fail "the batch script did not requeue the job"
grep -q "resumed from .*checkpoint-" "$out" || fail "the requeued job did not resume from the checkpoint"
expected=$(fingerprint "$scratch/srun-2.out")
[ "$(fingerprint "$out")" = "$expected" ] ||
  fail "weights after the requeue ($(fingerprint "$out")) differ from the uninterrupted job's ($expected)"
echo "ok   preemption: stopped at $(sed -n 's/.*stopped by a signal at step \([0-9]*\).*/\1/p' "$out"), requeued, resumed, same weights ($expected)"

# Requeued onto fewer tasks: a 4-task job with sharded optimizer state (--zero-stage 2), preempted, requeued with 2
# tasks, resumes its 4-rank checkpoint (the shards re-cut: Note [Re-sharding]) and completes.
out=$scratch/shrunk.out
job=$(DTRAIN_CHECKPOINTS=$scratch/ckpt-shrunk sbatch --parsable --ntasks=4 --ntasks-per-node=4 --output="$out" \
  "$source_dir/slurm/train-cpu.sbatch" --zero-stage 2 --metrics-file "$scratch/shrunk.jsonl")
preempt "$job" "$scratch/shrunk.jsonl" "$out"
restart_and_wait "$job" NumTasks=2 NumCPUs=2 TasksPerNode=2
resumed=$(grep -o "resumed from .*checkpoint-[0-9]*.pt at step [0-9]* .*of a 4-rank run on 2 ranks" "$out" || true)
[ -n "$resumed" ] || fail "the job requeued with 2 tasks did not resume its 4-rank checkpoint on 2 ranks"
grep -q "^dtrain: done: " "$out" || fail "the job requeued with 2 tasks did not finish training"
echo "ok   requeued with fewer tasks: $resumed"
