# A single-node SLURM cluster for tests and development (munged, slurmctld, slurmd from
# Debian's packages, no systemd). Source it after services.sh.
#
#   slurm_up DIR      install if missing (root on Debian), write DIR/slurm.conf and start
#                     the daemons with their state, logs and pid files under DIR; exports
#                     SLURM_CONF so that sbatch, squeue, ... use this cluster
#   slurm_down DIR    stop what slurm_up started (by pid file), cancel leftover jobs,
#                     remove the cluster's cgroups and DIR
#
# APPLIANCE_SLURM_CGROUP=0 uses proctrack/linuxproc (sites without cgroups; memory is then
# enforced by slurmstepd polling instead of the kernel).

slurm_install() {
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null \
    && return 0
  say "installing SLURM and munge from Debian's packages"
  apt_install --no-install-recommends slurmctld slurmd slurm-client munge \
    || die "SLURM is missing and cannot be installed here: install slurmctld slurmd slurm-client munge"
}

slurm_up() {
  local dir=$1 host cpus mem real hw cgroup=${APPLIANCE_SLURM_CGROUP:-1}
  is_root || die "starting a SLURM cluster needs root"
  slurm_install
  mkdir -p "$dir"/{state,spool,log}
  chmod 755 "$dir"
  host=$(hostname -s)
  cpus=$(nproc)
  hw=$(/usr/sbin/slurmd -C | head -1 | grep -o 'Boards=.*ThreadsPerCore=[0-9]*' || true)
  mem=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
  real=$(( mem - (mem / 20 > 256 ? mem / 20 : 256) ))  # slurmd drains a node that has less
  local proctrack=proctrack/cgroup task=task/cgroup,task/affinity acct=jobacct_gather/cgroup extra=""
  if [ "$cgroup" != 1 ]; then
    proctrack=proctrack/linuxproc task=task/affinity acct=jobacct_gather/linux
    extra="JobAcctGatherParams=OverMemoryKill"
  fi
  cat >"$dir/slurm.conf" <<EOF
# The appliance's test cluster (scripts/lib/slurm.sh): one node, no slurmdbd.
ClusterName=appliance
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=${APPLIANCE_SLURMCTLD_PORT:-6817}
SlurmdPort=${APPLIANCE_SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=$proctrack
TaskPlugin=$task
JobAcctGatherType=$acct
JobAcctGatherFrequency=task=2
$extra
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=3600
# jobs kept an hour after they end: room for the tests' and benchmarks' (bench/slurm_rounds)
MaxJobCount=100000
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SlurmdParameters=config_overrides
KillWait=2
OverTimeLimit=0
InactiveLimit=0
ReturnToService=2
SlurmdTimeout=30
MpiDefault=none
MailProg=/bin/true
NodeName=$host CPUs=$cpus $hw RealMemory=$real State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# more partitions, as a real site has (bench/slurm_rounds.py spreads other users' jobs)
PartitionName=long Nodes=ALL Default=NO MaxTime=INFINITE State=UP
PartitionName=short Nodes=ALL Default=NO MaxTime=60 State=UP
EOF
  cat >"$dir/cgroup.conf" <<EOF
CgroupPlugin=autodetect
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
EOF
  export SLURM_CONF=$dir/slurm.conf
  # munge: a key of this cluster's own, and a daemon whose socket the clients find
  [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create --force; chown munge:munge /etc/munge/munge.key; }
  # munged runs as the munge user, who cannot reach DIR (mktemp makes it 0700): its pid
  # file and log go beside its socket
  install -d -o munge -g munge -m 0755 /run/munge
  if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/appliance-munged.pid \
      --log-file=/run/munge/appliance-munged.log
    wait_for 10 "munged" munge -n || die "munged did not start"
  fi
  /usr/sbin/slurmctld -i -f "$SLURM_CONF" || die "slurmctld did not start (log: $dir/log)"
  /usr/sbin/slurmd -f "$SLURM_CONF" || die "slurmd did not start (log: $dir/log)"
  if ! wait_for 30 "SLURM node $host" slurm_idle "$host"; then
    tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    die "the SLURM node did not become idle"
  fi
}

slurm_idle() {
  [ "$(sinfo -h -n "$1" -o %T 2>/dev/null)" = idle ]
}

slurm_stop_pid() {
  local file=$1 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

slurm_down() {
  local dir=$1
  [ -d "$dir" ] || return 0
  SLURM_CONF=$dir/slurm.conf scancel --full --quiet -u root 2>/dev/null || true
  sleep 0.5
  slurm_stop_pid "$dir/slurmd.pid"
  slurm_stop_pid "$dir/slurmctld.pid"
  slurm_stop_pid /run/munge/appliance-munged.pid
  rm -f /run/munge/appliance-munged.log
  rmdir /run/munge 2>/dev/null || true
  # the cluster's cgroups (v1): empty directories only
  local c
  for c in /sys/fs/cgroup/*/slurm*; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$dir"
}
