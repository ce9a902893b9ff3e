#!/usr/bin/env bash
# The job step every dtrain batch script runs (slurm/*.sbatch call it): starts dtrain on all the allocation's tasks,
# passes Slurm's stop warning on to the ranks, and requeues the job when dtrain stopped for it.
#
#   dtrain-step.sh DTRAIN_ARGS...
#
# Environment (all optional):
#   DTRAIN           the dtrain command (default: dtrain on PATH, else <repo>/build/runtime/dtrain)
#   DTRAIN_LAUNCHER  srun (default: ranks started by Slurm through PMIx) or mpirun (Open MPI reads the allocation)
#
# Ranks, nodes and devices: Slurm starts --ntasks-per-node tasks on each node; dtrain takes each rank's world rank and
# its local rank from MPI (never from SLURM_PROCID), and a GPU rank uses CUDA device <local rank>, so one task per GPU
# means --ntasks-per-node = --gpus-per-node. Run the same command with --dry-run to print and check that table.
#
# Stopping and requeueing (Note [Stopping on a signal] in runtime/training/stop_request.h): `#SBATCH --signal=B:USR1@<s>`
# sends SIGUSR1 to this shell <s> seconds before the time limit, and preemption or scancel sends SIGTERM; either is
# passed on to the ranks as SIGUSR1, they agree to stop at the next step, write a checkpoint and exit with 75, and
# this script then runs `scontrol requeue`. The requeued job starts this script again; with --resume auto (add it to
# the arguments, as the batch scripts do) it continues from that checkpoint.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dtrain=${DTRAIN:-$(command -v dtrain || echo "$here/../build/runtime/dtrain")}
launcher=${DTRAIN_LAUNCHER:-srun}
readonly preempted=75

# The tasks the allocation has now. SLURM_TASKS_PER_NODE ("4(x2),3") is worked out when the job starts; SLURM_NTASKS
# is the request at submission, which a job requeued onto fewer tasks or nodes still carries (elastic resume: the
# checkpoint of the larger run continues on the ranks it has).
allocated_tasks() {
  local total=0 part count repeat parts
  IFS=, read -ra parts <<< "$SLURM_TASKS_PER_NODE"
  for part in "${parts[@]}"; do
    count=${part%%(*} repeat=1
    if [[ $part == *"(x"* ]]; then
      repeat=${part#*(x}
      repeat=${repeat%)}
    fi
    total=$((total + count * repeat))
  done
  echo "$total"
}
tasks=()
[ -z "${SLURM_TASKS_PER_NODE:-}" ] || tasks=(--ntasks="$(allocated_tasks)")

case "$launcher" in
  srun) srun --mpi=pmix --kill-on-bad-exit=1 "${tasks[@]}" "$dtrain" "$@" & ;;
  mpirun) mpirun "$dtrain" "$@" & ;;
  *) echo "dtrain-step.sh: error: DTRAIN_LAUNCHER=$launcher is not srun or mpirun" >&2; exit 2 ;;
esac
step=$!
trap 'echo "dtrain-step.sh: stop signal: passing it to the ranks" >&2; kill -USR1 "$step" 2>/dev/null' USR1 TERM

status=0
wait "$step" || status=$?
while kill -0 "$step" 2>/dev/null; do  # a trapped signal ends `wait` early: wait for the step itself
  status=0
  wait "$step" || status=$?
done

if [ "$status" -eq "$preempted" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "dtrain-step.sh: dtrain stopped with a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  echo "dtrain-step.sh: dtrain stopped with a checkpoint (not in a Slurm job: nothing to requeue)"
fi
exit "$status"
