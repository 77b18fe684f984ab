#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests: install, start, stop.
#
#   tests/slurm/cluster.sh start   # installs slurm-wlm and munge if missing (Debian, needs root),
#                                  # starts munged, slurmctld and slurmd; prints the SLURM_CONF
#   tests/slurm/cluster.sh stop    # stops what start started
#   tests/slurm/cluster.sh check   # exit 0 if this machine can run it; else prints why
#
# State and logs live in $DSA110MS_SLURM_DIR (default /tmp/dsa110ms-slurm). The configuration
# must be at SLURM's default path, /etc/slurm/slurm.conf: the SLURM executor plugin clears every
# SLURM_* variable (SLURM_CONF too) inside a job before it calls srun. An existing slurm.conf
# that this script did not write is never touched (the cluster is not started then).
# No accounting daemon: jobs are followed with squeue (MinJobAge keeps finished jobs visible).
set -euo pipefail

DIR=${DSA110MS_SLURM_DIR:-/tmp/dsa110ms-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by dsa110ms tests/slurm/cluster.sh"
NODE=$(hostname -s)

why_not() {
    # Prints why this machine cannot run the cluster; nothing if it can.
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: installing and running slurmctld/slurmd needs root"
    elif ! command -v apt-get >/dev/null && ! command -v slurmctld >/dev/null; then
        echo "no slurmctld and no apt-get to install it"
    elif [[ -f $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        echo "$CONF exists and was not written by this script (a real cluster's?)"
    fi
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$DIR/apt.log" 2>&1 ||
        { echo "apt-get install slurm-wlm munge failed, see $DIR/apt.log" >&2; exit 1; }
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10))
    mkdir -p "$DIR/state" "$DIR/spool" "$(dirname "$CONF")"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=dsa110ms-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MinJobAge=86400
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$DIR"
    local reason
    reason=$(why_not)
    if [[ -n $reason ]]; then echo "cannot run SLURM here: $reason" >&2; exit 2; fi
    install
    write_conf
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- /usr/sbin/munged
        else
            /usr/sbin/munged --force
        fi
        touch "$DIR/started-munged"
    fi
    for _ in $(seq 40); do
        munge -n </dev/null >/dev/null 2>&1 && break
        sleep 0.25
    done
    stop_daemons
    rm -rf "${DIR:?}/state"/* "${DIR:?}/spool"/*
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 60); do
        if SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null | grep -qx idle; then
            echo "$CONF"
            return
        fi
        sleep 0.5
    done
    echo "SLURM did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    exit 1
}

stop_daemons() {
    for daemon in slurmd slurmctld; do
        if [[ -f $DIR/$daemon.pid ]]; then
            kill "$(cat "$DIR/$daemon.pid" 2>/dev/null)" 2>/dev/null || true
            for _ in $(seq 40); do
                kill -0 "$(cat "$DIR/$daemon.pid" 2>/dev/null)" 2>/dev/null || break
                sleep 0.25
            done
            rm -f "$DIR/$daemon.pid"
        fi
    done
}

stop() {
    stop_daemons
    if [[ -f $DIR/started-munged ]]; then
        pkill -x munged || true
        for _ in $(seq 40); do
            pgrep -x munged >/dev/null || break
            sleep 0.25
        done
        rm -f "$DIR/started-munged"
    fi
    if [[ -f $CONF ]] && grep -qxF "$MARKER" "$CONF"; then
        rm -f "$CONF"
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    check) reason=$(why_not); if [[ -n $reason ]]; then echo "$reason"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|check" >&2; exit 64 ;;
esac
