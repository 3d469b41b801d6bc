#!/usr/bin/env bash
# A real single-node SLURM cluster for the test suite, from Debian's packages, as root, no systemd.
#
#   .ci/slurm/cluster.sh start DIR   # munge, MariaDB, slurmdbd, slurmctld, slurmd; waits for the node
#   .ci/slurm/cluster.sh stop DIR    # stops what `start DIR` started (by its pid files)
#   .ci/slurm/cluster.sh check       # exit 0 when this machine can run it, else prints why
#
# Everything (config, state, logs, sockets, database) lives under DIR, on ports picked free; the one
# path outside is the symlink /run/slurm/conf -> DIR/etc (see start). Clients find the cluster through
# SLURM_CONF=DIR/etc/slurm.conf.
# The node declares 64 CPUs, 64 GB and eight GPUs whatever the machine has (SlurmdParameters=
# config_overrides): the GPUs are GRES backed by symlinks to /dev/null (no autodetection), so
# `--gpus=N` requests are accepted, scheduled, and the allocation gets CUDA_VISIBLE_DEVICES.
# A TaskProlog stands in for the CUDA driver: it tells each task how many GPUs it was given
# (HCCR_NUM_GPUS, which hccr.training.launch reads when torch sees no device).
# Partitions `cpu` and `gpu` are the ones workflow/profiles/slurm asks for; account `hccr`.
set -euo pipefail

NAME=hccr
ACCOUNT=hccr
GPUS=8
CPUS=64
MEMORY_MB=64000
DAEMONS=(slurmctld slurmd slurmdbd munged mariadbd)
CONF_CACHE=/run/slurm/conf  # where clients look last for slurm.conf: one cluster per machine at a time

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

missing() {
    # Why this machine cannot run the cluster (empty when it can).
    if [ "$(id -u)" != 0 ]; then
        echo "not root (slurmd must run as root to start jobs)"
        return
    fi
    local tools=(slurmctld slurmd slurmdbd munged mungekey mariadbd mariadb-install-db mariadb sbatch sacct
                 sacctmgr scancel sinfo)
    local absent=()
    for tool in "${tools[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || absent+=("$tool")
    done
    if [ ${#absent[@]} -gt 0 ]; then
        echo "missing ${absent[*]} (apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server)"
    elif [ -e /etc/slurm/slurm.conf ]; then
        echo "this machine has its own SLURM config (/etc/slurm/slurm.conf), which srun inside a job would read"
    elif pgrep -x slurmd >/dev/null 2>&1; then
        echo "a slurmd already runs on this machine (one cluster at a time: $CONF_CACHE is shared)"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
    # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds.
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what (logs: $DIR/log)"
        sleep 0.5
    done
}

write_configs() {
    local host=$1 ctld_port=$2 slurmd_port=$3 dbd_port=$4 db_port=$5
    mkdir -p "$DIR"/{etc,log,run,state,spool,dev,munge,mysql}
    chmod 700 "$DIR/munge"
    for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "$DIR/dev/gpu$i"; done

    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$NAME
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers rarely allow them) and no CPU binding (the node's CPUs are declared, not real).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$DIR/etc/task_prolog.sh
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerParameters=sched_interval=2
MessageTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
# The munge socket for slurmdbd connections (its default is the system one).
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF

    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]
EOF

    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"

    # What torch.cuda.device_count() would say on a GPU node: the devices SLURM handed this task.
    cat >"$DIR/etc/task_prolog.sh" <<'EOF'
#!/bin/sh
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    echo "export HCCR_NUM_GPUS=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)"
fi
EOF
    chmod 755 "$DIR/etc/task_prolog.sh"
}

start_munge() {
    mungekey --create --keyfile "$DIR/munge/munge.key" --force
    chmod 400 "$DIR/munge/munge.key"
    munged --key-file "$DIR/munge/munge.key" --socket "$DIR/munge/munge.socket" \
        --pid-file "$DIR/run/munged.pid" --log-file "$DIR/log/munged.log" --seed-file "$DIR/munge/munge.seed" \
        --force
    wait_for 20 munge test -S "$DIR/munge/munge.socket"
}

start_mariadb() {
    local db_port=$1
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=normal \
        --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed ($DIR/log/mariadb-install.log)"
    setsid mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --port="$db_port" --bind-address=127.0.0.1 \
        --socket="$DIR/run/mysql.sock" --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadb.log" \
        --skip-name-resolve --innodb-buffer-pool-size=32M --innodb-log-file-size=8M \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot -e "SELECT 1"
    mariadb --no-defaults --socket="$DIR/run/mysql.sock" -uroot <<'EOF'
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start() {
    local why
    why=$(missing)
    [ -z "$why" ] || die "cannot start: $why"
    ! compgen -G "$DIR/run/*.pid" >/dev/null || die "$DIR already holds a cluster; stop it first"
    export PATH="$PATH:/usr/sbin:/sbin"
    export SLURM_CONF="$DIR/etc/slurm.conf"
    local host ctld_port slurmd_port dbd_port db_port
    host=$(hostname -s)
    ctld_port=$(free_port); slurmd_port=$(free_port); dbd_port=$(free_port); db_port=$(free_port)
    write_configs "$host" "$ctld_port" "$slurmd_port" "$dbd_port" "$db_port"

    start_munge
    start_mariadb "$db_port"
    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -i add cluster "$NAME" >/dev/null
    sacctmgr -i add account "$ACCOUNT" Description="hccr tests" Organization=hccr >/dev/null
    sacctmgr -i add user root DefaultAccount="$ACCOUNT" >/dev/null
    slurmctld
    wait_for 60 slurmctld scontrol ping
    # srun inside a job runs without SLURM_CONF (the plugin's jobstep drops SLURM_* variables): it finds
    # the config where client commands look when neither SLURM_CONF nor /etc/slurm/slurm.conf is there,
    # slurmd's configless cache. (Configless itself cannot work here: slurmd would need the munge
    # socket before it has the config that names it.)
    mkdir -p "$(dirname "$CONF_CACHE")"
    ln -sfn "$DIR/etc" "$CONF_CACHE"
    slurmd
    wait_for 60 "node $host idle" sh -c "sinfo -h -N -o %T | grep -qx idle"
    log "up: SLURM_CONF=$SLURM_CONF (node $host: $CPUS CPUs, gpu:$GPUS; partitions cpu, gpu; account $ACCOUNT)"
}

stop() {
    compgen -G "$DIR/run/*.pid" >/dev/null || { log "nothing to stop in $DIR"; return 0; }
    export SLURM_CONF="$DIR/etc/slurm.conf"
    local daemon pid pids=()
    # Jobs first, so that no job step outlives its slurmd.
    if scontrol ping >/dev/null 2>&1; then
        squeue -h -o %i | xargs -r scancel 2>/dev/null || true
        for _ in $(seq 1 40); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.25; done
    fi
    for daemon in "${DAEMONS[@]}"; do
        pid=$(cat "$DIR/run/$daemon.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        # Stop in order: the scheduler before its database, the database before munge.
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    done
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$DIR"/run/*.pid
    [ "$(readlink "$CONF_CACHE" 2>/dev/null)" != "$DIR/etc" ] || rm -f "$CONF_CACHE"
    log "stopped the cluster in $DIR"
}

command=${1:-}
case "$command" in
    check)
        why=$(missing)
        [ -z "$why" ] || { echo "$why"; exit 1; }
        ;;
    start | stop)
        [ $# -eq 2 ] || die "usage: $0 $command DIR"
        mkdir -p "$2"
        DIR=$(cd "$2" && pwd)
        "$command"
        ;;
    *)
        die "usage: $0 start DIR | stop DIR | check"
        ;;
esac
