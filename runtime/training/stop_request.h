#pragma once
// Note [Stopping on a signal]
// Batch systems warn before they stop a job: Slurm sends SIGUSR1 at `#SBATCH --signal=B:USR1@60` time (forwarded by
// the batch script to the job step), and SIGTERM when it preempts or cancels. dtrain catches both, and at the next
// step boundary all ranks agree (one tiny MAX allreduce; a signal may reach only some ranks) to stop together: the
// trainer writes a checkpoint and the command exits with kPreemptedExitCode, which the batch script turns into
// `scontrol requeue`; the requeued job resumes from that checkpoint with --resume auto.

#include "comm/control_plane.h"

namespace dtrain::runtime {

// EX_TEMPFAIL: "try again later". slurm/*.sbatch requeue the job on this code.
inline constexpr int kPreemptedExitCode = 75;

// Installs the SIGUSR1 and SIGTERM handlers (they only set a flag). Idempotent.
void install_stop_signal_handlers();

// Whether this rank got one of those signals since the start (or the last clear_stop_request()).
bool stop_requested_here();
void clear_stop_request();

// Collective over `control`: true on every rank if any rank got a stop signal.
bool agree_to_stop(comm::ControlPlane& control);

}  // namespace dtrain::runtime
