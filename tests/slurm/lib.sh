# shellcheck shell=bash
# Shared by start-cluster.sh and stop-cluster.sh (sourced, not run).

# running NAME PID: PID is a live process called NAME. A zombie does not count: the
# daemons are children of PID 1 once detached, and a container's PID 1 may reap
# late or never (Firecracker's process_api here took ~1.6 s; `kill -0` succeeds on zombies).
running() {
  local state tasks
  case "$2" in '' | *[!0-9]*) return 1 ;; esac
  [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ] || return 1
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$2/status" 2>/dev/null)
  [ -n "$state" ] || return 1
  case "$state" in Z | X) ;; *) return 0 ;; esac
  tasks=("/proc/$2/task/"*)   # a zombie leader with live threads is still running
  [ ${#tasks[@]} -gt 1 ]
}
