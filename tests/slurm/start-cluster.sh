#!/usr/bin/env bash
# Start a REAL single-node Slurm cluster on localhost, for tests and CI.
# Debian 12 (Slurm 22.05), run as root, no systemd needed. Idempotent: safe to
# rerun while the cluster is up. It installs only the missing packages, rewrites
# the config, starts only the daemons that are not running, and restarts a daemon
# whose config file changed.
#
# Environment:
#   WITH_DBD=1        (default) also run MariaDB + slurmdbd, so accounting and sacct
#                     work as on real clusters. WITH_DBD=0: no accounting (use
#                     `slurm-status-command: squeue` in Snakemake profiles).
#   SMOKE=1           (default) submit a small job at the end and wait for it
#                     (and, with WITH_DBD=1, for its sacct record). SMOKE=0 skips it.
#   CLUSTER_NAME=ci   Slurm ClusterName.
#   KILL_WAIT=5       seconds between SIGTERM and SIGKILL when a job hits its time
#                     limit or is cancelled (Slurm's default is 30).
#   PROCTRACK=linuxproc  (default; works on any host, as in the tested recipe)
#                     PROCTRACK=cgroup: proctrack/cgroup as on real clusters; needs a
#                     writable cgroup v1 freezer controller. PROCTRACK=auto: cgroup if
#                     that is usable, else linuxproc. They differ in who gets SIGTERM at
#                     a time limit or scancel: cgroup signals only each step's task
#                     process, linuxproc all its descendants (see README.md).
#   GPUS=2            GPU slots the node advertises as generic resources, backed by
#                     stand-in device files /dev/ledsweep-gpu<i> (null devices: Slurm drops
#                     file-less GPUs): jobs that ask for --gpus=N are scheduled and get
#                     CUDA_VISIBLE_DEVICES as on a GPU cluster, and run on the CPU. GPUS=0: none.
#   SLURM_DBPASS      MariaDB password of the 'slurm' user (default slurmdbpass).
#   SLURM_CI_STATE_DIR  where the list of daemons this script started is kept
#                     (default /run/ledsweep-slurm); stop-cluster.sh reads it.
#
# Every daemon writes its own pid file. For each daemon it starts, this script
# also writes "$SLURM_CI_STATE_DIR/<daemon>.pidfile" (the path of that pid file).
# stop-cluster.sh stops only the daemons listed there.
set -euo pipefail

WITH_DBD=${WITH_DBD:-1}
SMOKE=${SMOKE:-1}
CLUSTER=${CLUSTER_NAME:-ci}
KILL_WAIT=${KILL_WAIT:-5}
PROCTRACK=${PROCTRACK:-linuxproc}
GPUS=${GPUS:-2}
DBPASS=${SLURM_DBPASS:-slurmdbpass}
STATE_DIR=${SLURM_CI_STATE_DIR:-/run/ledsweep-slurm}
export DEBIAN_FRONTEND=noninteractive

case "$WITH_DBD" in 0 | 1) ;; *) echo "start-cluster.sh: WITH_DBD must be 0 or 1" >&2; exit 2 ;; esac
case "$PROCTRACK" in auto | linuxproc | cgroup) ;; *) echo "start-cluster.sh: PROCTRACK must be auto, cgroup or linuxproc" >&2; exit 2 ;; esac
case "$KILL_WAIT" in '' | *[!0-9]*) echo "start-cluster.sh: KILL_WAIT must be an integer" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then echo "start-cluster.sh: must run as root" >&2; exit 2; fi

# --------------------------------------------------------------------- helpers
now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }
T0=$(now_ms)
elapsed() { local d=$(( $(now_ms) - T0 )); printf '%d.%01d' $(( d / 1000 )) $(( d % 1000 / 100 )); }
log() { echo "[start-cluster +$(elapsed)s] $*"; }
on_error() {
  echo "start-cluster.sh FAILED at line $1 after $(elapsed)s; log tails:" >&2
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log /var/log/mysql/ci-mariadbd.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 8 "$f" >&2; }
  done
  return 0
}
trap 'on_error $LINENO' ERR

# shellcheck source=tests/slurm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # running NAME PID
# alive NAME PIDFILE: the pid file names a live process called NAME (so a stale pid
# file whose pid now belongs to another process does not count).
alive() { [ -s "$2" ] && running "$1" "$(<"$2")"; }
# wait_for SECONDS DESCRIPTION CMD...: run CMD every 0.2 s until it succeeds
wait_for() {
  local tries=$(( $1 * 5 )) what=$2 i
  shift 2
  for (( i = 0; i < tries; i++ )); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "ERROR: timed out after ${tries}x0.2s waiting for $what" >&2
  return 1
}
mark_started() { printf '%s\n' "$2" >"$STATE_DIR/$1.pidfile"; }   # mark_started NAME PIDFILE
# start_daemon NAME PIDFILE CMD...: start CMD unless NAME is already running
start_daemon() {
  local name=$1 pf=$2
  shift 2
  if alive "$name" "$pf"; then
    if [ -f "$STATE_DIR/$name.pidfile" ]; then
      log "$name already running (pid $(<"$pf"))"
    else
      log "$name already running (pid $(<"$pf")) but NOT started by this script; stop-cluster.sh will leave it alone"
    fi
    return 0
  fi
  rm -f "$pf"
  log "starting $name"
  "$@"
  mark_started "$name" "$pf"
}
# stop_for_restart NAME PIDFILE: stop a running daemon so that it rereads its config
stop_for_restart() {
  local name=$1 pf=$2 pid i
  alive "$name" "$pf" || return 0
  pid=$(<"$pf")
  log "restarting $name (pid $pid): its config changed"
  kill "$pid"
  for (( i = 0; i < 300; i++ )); do running "$name" "$pid" || break; sleep 0.1; done
  if running "$name" "$pid"; then echo "ERROR: $name (pid $pid) did not exit within 30 s" >&2; false; fi
  rm -f "$pf"
}
# install_if_changed NEWFILE DEST OWNER MODE: returns 0 if DEST was (re)written
install_if_changed() {
  if cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
  install -o "${3%%:*}" -g "${3##*:}" -m "$4" "$1" "$2"
  rm -f "$1"
  return 0
}

# cgroup_v1_usable: Slurm 22.05's cgroup/v1 needs the v1 layout (a tmpfs at /sys/fs/cgroup,
# not cgroup2fs) with a writable freezer controller. cgroup/v2 is not used here (untested;
# 22.05's cgroup/v2 expects systemd to create its scope).
cgroup_v1_usable() {
  local probe=/sys/fs/cgroup/freezer/ledsweep-probe.$$
  [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] || return 1
  [ "$(stat -fc %T /sys/fs/cgroup/freezer 2>/dev/null)" = cgroupfs ] || return 1
  mkdir "$probe" 2>/dev/null || return 1
  rmdir "$probe"
}
PROCTRACK_NOTE=
if [ "$PROCTRACK" = auto ]; then
  if cgroup_v1_usable; then PROCTRACK=cgroup; else PROCTRACK=linuxproc; fi
  PROCTRACK_NOTE=" (auto)"
elif [ "$PROCTRACK" = cgroup ] && ! cgroup_v1_usable; then
  echo "start-cluster.sh: PROCTRACK=cgroup needs a writable cgroup v1 freezer controller (/sys/fs/cgroup/freezer); use PROCTRACK=linuxproc or auto" >&2
  exit 2
fi

install -d -m 0755 "$STATE_DIR"
log "WITH_DBD=$WITH_DBD CLUSTER_NAME=$CLUSTER KILL_WAIT=$KILL_WAIT PROCTRACK=$PROCTRACK$PROCTRACK_NOTE SMOKE=$SMOKE"

# ------------------------------------------------------------------ 1. packages
PKGS=(slurm-wlm munge)
[ "$WITH_DBD" = 1 ] && PKGS+=(slurmdbd mariadb-server)
MISSING=()
for p in "${PKGS[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || MISSING+=("$p")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  log "apt-get update"
  apt-get update -q >/dev/null
  log "apt-get install ${MISSING[*]}"
  # The postinst scripts try to start the services through invoke-rc.d; without
  # systemd (or with a policy-rc.d that exits 101) that is refused, which is fine.
  apt-get install -y -q --no-install-recommends "${MISSING[@]}" >/dev/null
  log "packages installed"
else
  log "packages already installed"
fi

# --------------------------------------------------------------------- 2. munge
if [ ! -s /etc/munge/munge.key ]; then            # normally created by munge's postinst
  log "creating /etc/munge/munge.key"
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge    # /run is a tmpfs; only systemd would create it
start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged
wait_for 15 "munge credential round trip" bash -c 'munge -n | unmunge'

# -------------------------------------------------------------- 3. slurm.conf
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
REALMEM=$(( MEM * 9 / 10 ))                          # a bit below what slurmd -C reports
if [ "$WITH_DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
GRES_TYPES="# no GPU generic resources (GPUS=0)" NODE_GRES=""
if [ "$GPUS" -gt 0 ]; then
  GRES_TYPES="GresTypes=gpu"
  NODE_GRES=" Gres=gpu:${GPUS}"
fi
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
NEWCONF=$(mktemp)
cat >"$NEWCONF" <<EOF
# Generated by tests/slurm/start-cluster.sh: single-node Slurm on localhost
ClusterName=${CLUSTER}
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
# no mail program installed; this silences "Configured MailProg is invalid"
MailProg=/bin/true
ProctrackType=proctrack/${PROCTRACK}
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SchedulerType=sched/backfill
# start a submitted job at once instead of up to 3 s later (22.05 default batch_sched_delay=3)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without DefMemPerCPU a job without --mem gets the whole node's memory
DefMemPerCPU=1000
# must stay >= 3 x slurm-init-seconds-before-status-checks for the Snakemake plugin's squeue mode
MinJobAge=300
# time limits: SIGTERM at the limit, SIGKILL KillWait seconds later, no grace minutes
KillWait=${KILL_WAIT}
OverTimeLimit=0
${ACCT}
JobCompType=jobcomp/none
SlurmctldDebug=info
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdDebug=info
SlurmdLogFile=/var/log/slurm/slurmd.log
${GRES_TYPES}
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${REALMEM}${NODE_GRES} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
SLURM_CONF_CHANGED=0
if install_if_changed "$NEWCONF" /etc/slurm/slurm.conf root:root 0644; then
  SLURM_CONF_CHANGED=1
  log "wrote /etc/slurm/slurm.conf (node ${HOST}, CPUs=${CPUS}, RealMemory=${REALMEM}, proctrack/${PROCTRACK})"
fi
NEWGRES=$(mktemp)
if [ "$GPUS" -gt 0 ]; then
  for ((i = 0; i < GPUS; i++)); do
    [ -e "/dev/ledsweep-gpu$i" ] || mknod -m 0666 "/dev/ledsweep-gpu$i" c 1 3   # a null device
  done
  printf '# Generated by tests/slurm/start-cluster.sh: %s stand-in GPUs (null devices)\nNodeName=%s Name=gpu File=/dev/ledsweep-gpu[0-%s]\n' \
    "$GPUS" "$HOST" "$((GPUS - 1))" >"$NEWGRES"
else
  printf '# Generated by tests/slurm/start-cluster.sh: no generic resources\n' >"$NEWGRES"
fi
if install_if_changed "$NEWGRES" /etc/slurm/gres.conf root:root 0644; then
  SLURM_CONF_CHANGED=1
  log "wrote /etc/slurm/gres.conf (GPUS=${GPUS})"
fi
if [ "$PROCTRACK" = cgroup ]; then
  NEWCG=$(mktemp)
  cat >"$NEWCG" <<EOF
# Generated by tests/slurm/start-cluster.sh (PROCTRACK=cgroup): track processes only
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=no
EOF
  if install_if_changed "$NEWCG" /etc/slurm/cgroup.conf root:root 0644; then
    SLURM_CONF_CHANGED=1
    log "wrote /etc/slurm/cgroup.conf"
  fi
fi
# slurmctld dies with "CLUSTER NAME MISMATCH" if the saved state belongs to another ClusterName
CN_FILE=/var/lib/slurm/slurmctld/clustername
if [ -f "$CN_FILE" ] && [ "$(<"$CN_FILE")" != "$CLUSTER" ]; then
  log "removing stale $CN_FILE (was $(<"$CN_FILE"))"
  rm -f "$CN_FILE"
fi

# ------------------------------------------------- 4. accounting (WITH_DBD=1)
if [ "$WITH_DBD" = 1 ]; then
  install -d -o mysql -g root -m 0755 /run/mysqld
  if [ ! -d /var/lib/mysql/mysql ]; then           # normally initialized by the postinst
    log "initializing the MariaDB data directory"
    mariadb-install-db --user=mysql >/dev/null
  fi
  if ! alive mariadbd /run/mysqld/mysqld.pid; then
    if mariadb-admin ping >/dev/null 2>&1; then
      log "a MariaDB server not started by this script answers; using it (stop-cluster.sh will leave it alone)"
    else
      rm -f /run/mysqld/mysqld.pid
      log "starting mariadbd"
      # mariadbd does not daemonize itself: detach it with setsid
      install -d -o mysql -g adm -m 2750 /var/log/mysql   # not created with --no-install-recommends
      setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        >>/var/log/mysql/ci-mariadbd.log 2>&1 </dev/null &
      MARIADB_BG=$!
      mark_started mariadbd /run/mysqld/mysqld.pid
      for (( i = 0; i < 300; i++ )); do           # up to 60 s, but fail at once if it died
        mariadb-admin ping >/dev/null 2>&1 && break
        if ! running mariadbd "$MARIADB_BG"; then echo "ERROR: mariadbd exited" >&2; false; fi
        sleep 0.2
      done
    fi
  else
    log "mariadbd already running (pid $(</run/mysqld/mysqld.pid))"
  fi
  wait_for 60 "mariadbd" mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DBPASS}';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '${DBPASS}';
              GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
              FLUSH PRIVILEGES;"
  NEWDBD=$(mktemp)
  cat >"$NEWDBD" <<EOF
# Generated by tests/slurm/start-cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=${DBPASS}
StorageLoc=slurm_acct_db
EOF
  if install_if_changed "$NEWDBD" /etc/slurm/slurmdbd.conf slurm:slurm 0600; then
    log "wrote /etc/slurm/slurmdbd.conf"
    stop_for_restart slurmdbd /run/slurmdbd.pid
  fi
  start_daemon slurmdbd /run/slurmdbd.pid slurmdbd      # must be up before slurmctld
  wait_for 60 "slurmdbd on port 6819" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
else
  for d in slurmdbd:/run/slurmdbd.pid mariadbd:/run/mysqld/mysqld.pid; do
    if alive "${d%%:*}" "${d#*:}"; then
      log "note: ${d%%:*} is still running; WITH_DBD=0 does not use it (stop-cluster.sh stops it if this script started it)"
    fi
  done
fi

# --------------------------------------------------- 5. slurmctld and slurmd
if [ "$SLURM_CONF_CHANGED" = 1 ]; then   # AccountingStorageType etc. need a restart, not a reconfigure
  if alive slurmctld /run/slurmctld.pid; then
    njobs=$(squeue -h -t PD,R,CG,S 2>/dev/null | wc -l || true)
    [ "${njobs:-0}" = 0 ] || log "WARNING: restarting Slurm with ${njobs} job(s) queued or running; a job launched during the restart can be lost (it then stays RUNNING until its time limit)"
  fi
  # controller first, so that it launches nothing on a slurmd that is going away
  stop_for_restart slurmctld /run/slurmctld.pid
  stop_for_restart slurmd /run/slurmd.pid
fi
start_daemon slurmctld /run/slurmctld.pid slurmctld
wait_for 30 "slurmctld (scontrol ping)" scontrol ping
start_daemon slurmd /run/slurmd.pid slurmd
# The node must be idle; resume it if an earlier run left it down or drained.
node_state() { sinfo -h -n "$HOST" -o '%t' 2>/dev/null || true; }
NODE_UP=0
for (( i = 0; i < 150; i++ )); do
  case "$(node_state)" in
    idle | mix | alloc | comp) NODE_UP=1; break ;;   # a '*' suffix means "not responding"
    drain | drng | down | inval) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
if [ "$NODE_UP" != 1 ]; then
  echo "ERROR: node $HOST is not up (state: $(node_state))" >&2
  sinfo -R >&2
  false
fi
if [ "$WITH_DBD" = 1 ]; then
  wait_for 30 "cluster $CLUSTER to register in slurmdbd" \
    bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx '$CLUSTER'"
fi

# The running slurmctld must use what we wrote (catches a daemon that was not restarted).
CFG=$(scontrol show config)
check_cfg() {   # check_cfg KEY EXPECTED
  local got
  got=$(sed -n "s/^$1 *= *//p" <<<"$CFG")
  if [ "$got" != "$2" ]; then
    echo "ERROR: scontrol show config: $1 = '$got', expected '$2'" >&2
    false
  fi
}
check_cfg ClusterName "$CLUSTER"
check_cfg KillWait "$KILL_WAIT sec"
check_cfg OverTimeLimit "0 min"
check_cfg MinJobAge "300 sec"
check_cfg ProctrackType "proctrack/$PROCTRACK"
check_cfg DefMemPerCPU "1000"
check_cfg SchedulerParameters "batch_sched_delay=0"
if [ "$WITH_DBD" = 1 ]; then check_cfg AccountingStorageType accounting_storage/slurmdbd
else check_cfg AccountingStorageType accounting_storage/none; fi
log "cluster up: $(sinfo -h -o '%P %a %D %t %N' | tr '\n' ' ')(KillWait=${KILL_WAIT}s OverTimeLimit=0 MinJobAge=300 DefMemPerCPU=1000 proctrack/${PROCTRACK})"

# ---------------------------------------------------------------- 6. smoke job
if [ "$SMOKE" = 1 ]; then
  out=$(mktemp -d)
  jid=$(sbatch --parsable -t 1 --mem=100 -J ci-smoke -o "$out/%j.out" -D "$out" --wrap 'hostname')
  # Poll scontrol: `sbatch --wait` sleeps in growing steps (about 10 s for a 0 s job).
  state=
  for (( i = 0; i < 300; i++ )); do
    state=$(scontrol -o show job "$jid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$state" in
      COMPLETED) break ;;
      FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        echo "ERROR: smoke job $jid ended as $state" >&2; cat "$out/$jid.out" >&2 || true; false ;;
    esac
    sleep 0.2
  done
  if [ "$state" != COMPLETED ]; then echo "ERROR: smoke job $jid still $state after 60 s" >&2; false; fi
  log "smoke job $jid COMPLETED on $(<"$out/$jid.out")"
  if [ "$WITH_DBD" = 1 ]; then
    wait_for 30 "sacct record of job $jid" bash -c "sacct -n -X -P -j $jid -o State | grep -qx COMPLETED"
    log "sacct: $(sacct -n -X -P -j "$jid" -o JobID,Account,State,ExitCode | tr '\n' ' ')"
  fi
  rm -rf "$out"
fi
log "done in $(elapsed)s"
