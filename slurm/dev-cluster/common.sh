# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source it
# Shared by up.sh and down.sh (sourced, not run): the base-directory layout and pidfile helpers.
# Everything the dev cluster owns lives under $BASE, so two clusters (two sessions, two test runs)
# on one machine never share a file, a socket or a pidfile.

BASE=${INTDIM_SLURM_DIR:-/tmp/intdim-slurm}
BASE=${BASE%/}
ETC=$BASE/etc
RUN=$BASE/run
LOG=$BASE/log
MUNGE_KEY_DIR=$BASE/munge/key
MUNGE_SOCK_DIR=$BASE/munge/socket
MUNGE_SOCKET=$MUNGE_SOCK_DIR/munge.socket
DB_DIR=$BASE/mariadb/data
DB_SOCKET=$BASE/mariadb/mariadb.sock
SLURM_CONF=$ETC/slurm.conf
CLUSTER=intdim-dev
PARTITION=debug
# The order up.sh starts them in; down.sh stops them in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
export SLURM_CONF # the daemons also find slurmdbd.conf next to it

log() { printf '%s [%ss]: %s\n' "${0##*/}" "$SECONDS" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# A pidfile only counts if its process is alive AND is the daemon we expect: pids get reused,
# and other sessions on the machine may run their own slurmctld. Never look daemons up by name.
pid_of() { # name -> prints the live pid from $RUN/name.pid, or fails
    local name=$1 pid
    [[ -s $RUN/$name.pid ]] || return 1
    read -r pid <"$RUN/$name.pid" || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
    echo "$pid"
}
running() { pid_of "$1" >/dev/null; }
