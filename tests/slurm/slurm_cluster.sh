# A real one-node Slurm (slurmctld + slurmd + munge, from Debian) in a scratch folder, for the launch tests.
# Source it, then: slurm_start SCRATCH; ... ; slurm_stop (also safe to call when the start failed half-way).
# Recipe and gotchas: shared/ENVIRONMENT.md ("A real Slurm cluster on one machine").

slurm_start() {
  local scratch=$1 node
  node=$(hostname -s)
  SLURM_SCRATCH=$scratch
  mkdir -p "$scratch"/{state,spool,log,run}
  cat > "$scratch/slurm.conf" <<CONF
ClusterName=dtraintest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$scratch/log/jobcomp.txt
SelectType=select/cons_tres
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
MinJobAge=4
ReturnToService=2
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$scratch/run/slurmctld.pid
SlurmdPidFile=$scratch/run/slurmd.pid
SlurmctldLogFile=$scratch/log/slurmctld.log
SlurmdLogFile=$scratch/log/slurmd.log
TmpFS=$scratch/spool
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$scratch/slurm.conf
  mkdir -p /run/munge && chown munge:munge /run/munge
  SLURM_STARTED_MUNGE=
  if ! munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    SLURM_STARTED_MUNGE=1
  fi
  slurmctld -i > "$scratch/log/slurmctld.out" 2>&1
  slurmd -N "$node" > "$scratch/log/slurmd.out" 2>&1
  for _ in $(seq 100); do
    [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ] && return 0
    sleep 0.1
  done
  echo "slurm_start: the node did not become idle" >&2
  cat "$scratch/log/slurmctld.log" "$scratch/log/slurmd.log" >&2 2>/dev/null || true
  return 1
}

slurm_stop() {
  [ -n "${SLURM_SCRATCH:-}" ] || return 0
  scancel --full --quiet --user=root 2>/dev/null || true
  local pidfile pid
  for pidfile in "$SLURM_SCRATCH/run/slurmd.pid" "$SLURM_SCRATCH/run/slurmctld.pid"; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # slurmstepd and job processes outlive a stopped slurmd: end ours too, and only ours (on a real Slurm node the
  # site's daemons run beside them). Our slurmstepds inherited SLURM_CONF from our slurmd; our jobs name the scratch.
  for pid in $(pgrep -x slurmstepd 2>/dev/null); do
    if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_SCRATCH/slurm.conf"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  pkill -9 -f "$SLURM_SCRATCH" 2>/dev/null || true
  if [ -n "${SLURM_STARTED_MUNGE:-}" ]; then
    pid=$(cat /run/munge/munged.pid 2>/dev/null) && kill "$pid" 2>/dev/null || true
  fi
  SLURM_SCRATCH=
}
