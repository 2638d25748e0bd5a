#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by tests/slurm/start-cluster.sh.
#
# Stops only the daemons that start-cluster.sh started: those listed in
# "$SLURM_CI_STATE_DIR/<daemon>.pidfile" (default /run/ledsweep-slurm). Each is
# stopped through the pid in its own pid file, and only if that pid is still a
# process with the expected name (never pkill/killall). Order: slurmd, slurmctld,
# slurmdbd, mariadbd, munged. SIGTERM, then SIGKILL after STOP_TIMEOUT seconds
# (default 30). Exits 0 when nothing is running; safe to run any number of times.
#
# Jobs that are still running are not cancelled: their slurmstepd processes
# outlive slurmd. Run `scancel --user=root` (or similar) first if that matters.
set -uo pipefail

STATE_DIR=${SLURM_CI_STATE_DIR:-/run/ledsweep-slurm}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }
T0=$(now_ms)
elapsed() { local d=$(( $(now_ms) - T0 )); printf '%d.%01d' $(( d / 1000 )) $(( d % 1000 / 100 )); }
log() { echo "[stop-cluster +$(elapsed)s] $*"; }

# shellcheck source=tests/slurm/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # running NAME PID

stop_daemon() {   # stop_daemon NAME DEFAULT_PIDFILE
  local name=$1 marker="$STATE_DIR/$1.pidfile" pf pid i
  if [ ! -f "$marker" ]; then
    pf=$2
    if [ -s "$pf" ] && running "$name" "$(<"$pf")"; then
      log "$name: running (pid $(<"$pf")) but not started by start-cluster.sh; left alone"
    else
      log "$name: not started by start-cluster.sh"
    fi
    return 0
  fi
  pf=$(<"$marker")
  pid=
  [ -s "$pf" ] && pid=$(<"$pf")
  case "$pid" in
    '' | *[!0-9]*)
      log "$name: no pid in ${pf:-<empty>}; not running"
      rm -f "$marker"
      return 0 ;;
  esac
  if ! running "$name" "$pid"; then
    log "$name: not running (stale pid file $pf)"
    rm -f "$pf" "$marker"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for (( i = 0; i < STOP_TIMEOUT * 10; i++ )); do
    running "$name" "$pid" || break
    sleep 0.1
  done
  if running "$name" "$pid"; then
    log "$name: pid $pid still there after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.2
  fi
  # slurmctld's Debian prerm calls scancel if /run/slurmctld.pid exists, so do not leave it behind
  rm -f "$pf" "$marker"
  log "$name: stopped (pid $pid)"
}

if [ "$(id -u)" != 0 ]; then echo "stop-cluster.sh: must run as root" >&2; exit 2; fi
stop_daemon slurmd    /run/slurmd.pid
stop_daemon slurmctld /run/slurmctld.pid
stop_daemon slurmdbd  /run/slurmdbd.pid
stop_daemon mariadbd  /run/mysqld/mysqld.pid
stop_daemon munged    /run/munge/munged.pid
log "done in $(elapsed)s"
exit 0
