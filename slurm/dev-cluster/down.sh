#!/usr/bin/env bash
# Tear down the dev cluster that up.sh started under $INTDIM_SLURM_DIR (default /tmp/intdim-slurm):
# cancel its jobs, then stop its daemons by their pidfiles (never by name: other sessions on the
# machine may run their own). Harmless to run twice, or when nothing was ever started.
#
#     slurm/dev-cluster/down.sh            # stop; keep config, accounting DB and logs for next up.sh
#     slurm/dev-cluster/down.sh --purge    # stop and delete the whole base directory
set -euo pipefail

# shellcheck source=slurm/dev-cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=false
case ${1:-} in
"") ;;
--purge) purge=true ;;
*) die "usage: $0 [--purge]" ;;
esac

if [[ ! -d $BASE ]]; then
    log "nothing to do: $BASE does not exist"
    exit 0
fi

# Job processes are children of slurmstepd, which outlives slurmd: cancel the jobs first so that
# stopping the daemons leaves nothing behind.
if running slurmctld && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    log "cancelling jobs"
    scancel --partition="$PARTITION" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.2
    done
fi
# Whatever still runs on the node (a job stuck completing, or slurmctld was already gone): ask the
# job steps for their pids (scontrol talks to them through our spool directory) and kill those and
# the slurmstepd above them, which would otherwise linger retrying to reach a dead slurmctld.
if [[ -f $SLURM_CONF ]]; then
    mapfile -t leftover < <(timeout 20 scontrol listpids 2>/dev/null |
        awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}')
    for pid in "${leftover[@]}"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -r _ ppid _ <<<"${stat##*) }" # fields after "pid (comm) ": state ppid ...
        if [[ $(cat "/proc/$ppid/comm" 2>/dev/null) == slurmstepd ]]; then
            leftover+=("$ppid")
        fi
    done
    if ((${#leftover[@]})); then
        log "killing leftover job processes: ${leftover[*]}"
        kill -KILL "${leftover[@]}" 2>/dev/null || true
    fi
fi

# Dead means gone or a zombie: where PID 1 is slow to reap orphans (some containers), an exited
# daemon stays a zombie for seconds and `kill -0` alone would keep us waiting.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

stop() { # name: SIGTERM, wait up to 20 s, then SIGKILL
    local name=$1 pid
    if ! pid=$(pid_of "$name"); then
        rm -f "$RUN/$name.pid"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$RUN/$name.pid"
}

for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    stop "${DAEMONS[i]}"
done

if $purge; then
    log "removing $BASE"
    rm -rf "$BASE"
fi
log "cluster under $BASE is down"
