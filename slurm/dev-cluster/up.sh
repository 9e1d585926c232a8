#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster (slurmctld + slurmd + slurmdbd on MariaDB, munge auth)
# from Debian 12 packages, with everything it owns under one base directory:
#
#     eval "$(slurm/dev-cluster/up.sh)"      # then sinfo, sbatch, submitit ... work
#     slurm/dev-cluster/down.sh              # stops the daemons by their pidfiles
#
# Base directory: $INTDIM_SLURM_DIR (default /tmp/intdim-slurm). Needs root: it installs the
# packages when missing and the daemons run as root (SlurmUser=root), which is what a throwaway
# dev cluster wants. Idempotent: daemons already running from this base directory are left alone,
# so a second call only waits for the cluster and prints the environment again.
#
# stdout carries only `export` lines (for eval); every message goes to stderr.
# Knobs: INTDIM_SLURM_DIR, INTDIM_SLURM_PORT_BASE (four ports from here: slurmctld, slurmd,
# slurmdbd, mariadb), INTDIM_SLURM_TIMEOUT (seconds to wait for the cluster, default 90).
set -euo pipefail

# Keep stdout clean for `eval`: fd 3 is the real stdout, everything else goes to stderr.
exec 3>&1 1>&2

# shellcheck source=slurm/dev-cluster/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TIMEOUT=${INTDIM_SLURM_TIMEOUT:-90}
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server-core mariadb-client-core)

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and runs the SLURM daemons \
as root); on a laptop: eval \"\$(sudo slurm/dev-cluster/up.sh)\""
[[ $BASE == /* ]] || die "INTDIM_SLURM_DIR must be an absolute path, got '$BASE'"
# Unix socket paths are limited to 108 bytes.
((${#MUNGE_SOCKET} < 100)) || die "INTDIM_SLURM_DIR is too long for a socket path: '$BASE'"

# ---------------------------------------------------------------------------------------------
# Packages. CI runs this on a fresh Debian 12 machine, so install what is missing, quietly.
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "packages missing (${missing[*]}) and no apt-get: this \
script supports Debian 12; install them by hand"
    mkdir -p "$LOG"
    log "installing ${missing[*]} (log: $LOG/apt.log)"
    t0=$SECONDS
    # Other sessions may hold the dpkg lock for a while: wait for it instead of failing.
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update &&
            DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 install -y \
                --no-install-recommends "${missing[@]}"
    } >"$LOG/apt.log" 2>&1; then
        tail -n 20 "$LOG/apt.log" >&2
        die "apt-get failed installing ${missing[*]}; full log: $LOG/apt.log"
    fi
    log "packages installed in $((SECONDS - t0)) s"
fi

# Wait until "$@" succeeds; on timeout name the log that explains why (and run $diagnose, if set,
# to print what state things are in).
diagnose=
wait_for() { # what logfile timeout cmd...
    local what=$1 logfile=$2 limit=$3
    shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            [[ -f $logfile ]] && tail -n 15 "$logfile" >&2
            [[ -n $diagnose ]] && $diagnose >&2
            die "timed out after ${limit}s waiting for $what; see $logfile (all logs: $LOG)"
        fi
        sleep 0.2
    done
}

# Run "$@" with stdin from /dev/null and no inherited descriptor above 2. A daemon that kept our
# fd 3 (or any pipe the caller handed us) open would make `$(up.sh)` wait for EOF forever.
detached() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if ((fd > 2)); then exec {fd}>&-; fi
    done
    exec "$@" </dev/null
}

# Start a self-daemonising program and wait for its pidfile.
start_daemon() { # name cmd...
    local name=$1
    shift
    log "starting $name"
    (detached "$@") >>"$LOG/$name.out" 2>&1 || {
        tail -n 15 "$LOG/$name.log" "$LOG/$name.out" >&2 2>/dev/null || true
        die "$name failed to start; see $LOG/$name.log and $LOG/$name.out"
    }
    wait_for "$name to write $RUN/$name.pid" "$LOG/$name.log" 30 running "$name"
}

# ---------------------------------------------------------------------------------------------
# Directories. munged refuses a group/world-writable key directory (wants 0700) and wants its
# socket directory 0755 so that unprivileged clients (sbatch run by a laptop user) can reach it.
mkdir -p "$BASE" "$ETC" "$RUN" "$LOG" "$BASE/spool/slurmctld" "$BASE/spool/slurmd" \
    "$MUNGE_KEY_DIR" "$MUNGE_SOCK_DIR" "$BASE/mariadb"
chmod 0755 "$BASE" "$BASE/munge" "$MUNGE_SOCK_DIR"
chmod 0700 "$MUNGE_KEY_DIR"

# ---------------------------------------------------------------------------------------------
# Configuration, written once: later calls keep the ports, password and munge key they chose.
port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
choose_port_base() {
    # Derived from the base directory so two sessions' clusters on one machine do not collide;
    # step past anything already listening.
    local base
    base=${INTDIM_SLURM_PORT_BASE:-$((20000 + $(printf '%s' "$BASE" | cksum | cut -d' ' -f1) % 2000 * 10))}
    local tries=0
    while port_in_use "$base" || port_in_use $((base + 1)) || port_in_use $((base + 2)) ||
        port_in_use $((base + 3)); do
        [[ -z ${INTDIM_SLURM_PORT_BASE:-} ]] || die "port(s) $base..$((base + 3)) already in use"
        base=$((base + 10))
        ((++tries < 50)) || die "no free ports found near $base"
    done
    echo "$base"
}

if [[ ! -s $SLURM_CONF ]]; then
    log "writing configuration under $ETC"
    port=$(choose_port_base)
    db_pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    # Topology must come from slurmd -C: a NodeName line with only CPUs=2 makes slurmd complain
    # about the sockets/cores/threads it actually finds. RealMemory is trimmed by 10% because
    # a node that reports less memory than configured is drained.
    node_line=$(slurmd -C | head -n 1)
    [[ $node_line == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    node=${node_line%% *}
    node=${node#NodeName=}
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    [[ $mem =~ ^[0-9]+$ ]] || die "no RealMemory in 'slurmd -C' output: $node_line"
    node_line=${node_line/RealMemory=$mem/RealMemory=$((mem * 9 / 10))}

    cat >"$ETC/slurm.conf.tmp" <<EOF
# Generated by slurm/dev-cluster/up.sh for a throwaway single-node cluster.
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
# Jobs here run as root (CI) or as the laptop user; root daemons can start both.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$BASE/spool/slurmctld
SlurmdSpoolDir=$BASE/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
# No cgroups needed (containers, laptops): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start batch jobs as soon as they are submitted: submit -> RUNNING ~0.9 s instead of ~1.9 s.
SchedulerParameters=batch_sched_delay=0
# Cancelled jobs get SIGKILL 5 s after SIGTERM (default 30 s) so tests do not wait.
KillWait=5
# Accounting: submitit polls sacct, without it cancelled/killed jobs never look finished.
# The slurmctld->slurmdbd connection ignores AuthInfo's socket; it takes the munge socket here.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((port + 2))
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
# No mail on a dev box; the default /bin/mail is usually absent and slurmctld complains.
MailProg=/bin/true
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmdbd refuses a slurmdbd.conf readable by others (it holds the database password).
    (
        umask 077
        cat >"$ETC/slurmdbd.conf" <<EOF
# Generated by slurm/dev-cluster/up.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((port + 2))
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((port + 3))
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
    )
    chmod 0600 "$ETC/slurmdbd.conf"
    # Rename last: a half-written slurm.conf never counts as "configured".
    mv "$ETC/slurm.conf.tmp" "$SLURM_CONF"
fi
port=$(sed -n 's/^SlurmctldPort=//p' "$SLURM_CONF")
db_port=$((port + 3))

# ---------------------------------------------------------------------------------------------
# munge
if [[ ! -s $MUNGE_KEY_DIR/munge.key ]]; then
    (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY_DIR/munge.key.tmp")
    mv "$MUNGE_KEY_DIR/munge.key.tmp" "$MUNGE_KEY_DIR/munge.key"
fi
if ! running munged; then
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    # --force: munged refuses to start when any directory above its seed file is group-writable
    # (e.g. a home directory with 0775), which is no threat to a dev cluster. The key itself
    # still sits 0600 in a 0700 directory.
    start_daemon munged munged --force --socket="$MUNGE_SOCKET" \
        --key-file="$MUNGE_KEY_DIR/munge.key" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$BASE/munge/munged.seed"
fi
wait_for "munge socket" "$LOG/munged.log" 30 munge -n --socket="$MUNGE_SOCKET"

# ---------------------------------------------------------------------------------------------
# MariaDB for slurmdbd, private to this base directory: own datadir, socket, TCP port on
# 127.0.0.1 only (slurmdbd cannot be pointed at a socket path, so it connects over TCP).
# A throwaway accounting DB: no need to sync every commit; a 16 MB redo log (default 96 MB) and
# 8 MB tablespace growth steps (default 64 MB) keep a base directory near 60 MB instead of 180.
# Buffer pool and lock timeout are the values slurmdbd otherwise warns about at start-up.
DB_OPTS=(--innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-log-file-size=16M
    --innodb-autoextend-increment=8 --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900)
db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }
if [[ ! -d $DB_DIR/mysql ]]; then
    log "initialising MariaDB in $DB_DIR"
    rm -rf "$DB_DIR"
    mariadb-install-db --no-defaults --datadir="$DB_DIR" --user=root --skip-test-db \
        --auth-root-authentication-method=socket "${DB_OPTS[@]}" \
        >"$LOG/mariadb-install.log" 2>&1 ||
        die "mariadb-install-db failed; see $LOG/mariadb-install.log"
fi
if ! running mariadbd; then
    log "starting mariadbd"
    # mariadbd does not daemonise itself: detach it from this shell and its terminal.
    (detached setsid mariadbd --no-defaults --datadir="$DB_DIR" --socket="$DB_SOCKET" \
        --pid-file="$RUN/mariadbd.pid" --port="$db_port" --bind-address=127.0.0.1 \
        --user=root --log-error="$LOG/mariadbd.log" "${DB_OPTS[@]}") \
        >>"$LOG/mariadbd.out" 2>&1 &
    wait_for "mariadbd to accept connections" "$LOG/mariadbd.log" 60 db -e 'SELECT 1'
fi
db_pass=$(sed -n 's/^StoragePass=//p' "$ETC/slurmdbd.conf")
db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

# ---------------------------------------------------------------------------------------------
# slurmdbd, then register the cluster (slurmctld does not do it by itself).
running slurmdbd || start_daemon slurmdbd slurmdbd
wait_for "slurmdbd to answer" "$LOG/slurmdbd.log" 60 sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# slurmctld and slurmd.
running slurmctld || start_daemon slurmctld slurmctld
running slurmd || start_daemon slurmd slurmd

node_idle() {
    local state
    state=$(sinfo -h -p "$PARTITION" -o '%t')
    [[ $state == idle || $state == mix || $state == alloc ]]
}
node_state() { sinfo -N -o '%N %T %E' || true; }
diagnose=node_state
wait_for "the node to be idle in 'sinfo'" "$LOG/slurmctld.log" "$TIMEOUT" node_idle
diagnose=
wait_for "'sacct' to answer" "$LOG/slurmdbd.log" "$TIMEOUT" sacct -n -X
log "cluster $CLUSTER is up (base $BASE, logs in $LOG)"

# The environment a shell (or submitit) needs: SLURM_CONF. SLURM clients find the munge socket
# through AuthInfo in slurm.conf; INTDIM_MUNGE_SOCKET is only for debugging with the munge tools
# (`munge -n --socket "$INTDIM_MUNGE_SOCKET" | unmunge --socket "$INTDIM_MUNGE_SOCKET"`), which
# read no environment variable. INTDIM_SLURM_DIR lets a later down.sh find this cluster.
{
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    printf 'export INTDIM_SLURM_DIR=%q\n' "$BASE"
    printf 'export INTDIM_MUNGE_SOCKET=%q\n' "$MUNGE_SOCKET"
} >&3
