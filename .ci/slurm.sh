#!/usr/bin/env bash
# One-node Slurm cluster for CI and local testing (run as root).
#
#   .ci/slurm.sh [start]   install slurm-wlm + munge if missing, start munged,
#                          slurmctld and slurmd, wait until the node is idle
#   .ci/slurm.sh stop      stop the daemons started by this script
#   .ci/slurm.sh status    print daemon / node state
#   .ci/slurm.sh env       print the export line for SLURM_CONF
#
# Everything (munge key, slurm.conf, logs, spool, state) lives under
#   MPI_LANDSCAPE_SLURM_DIR   (default /tmp/mpi_landscape_slurm)
# The system's /etc/slurm is left alone: export SLURM_CONF (`.ci/slurm.sh env`
# prints the line). MPI_LANDSCAPE_SLURM_LINK_ETC=1 points a free
# /etc/slurm/slurm.conf at the generated file instead (a symlink that stop removes).
#
# Other knobs (environment):
#   MPI_LANDSCAPE_SLURM_CPUS        CPUs declared for the node   (default: nproc)
#   MPI_LANDSCAPE_SLURM_MEM_MB      RealMemory of the node       (default: MemTotal - 5%)
#   MPI_LANDSCAPE_SLURM_CTLD_PORT   slurmctld port               (default 6817)
#   MPI_LANDSCAPE_SLURM_SLURMD_PORT slurmd port                  (default 6818)
#   MPI_LANDSCAPE_SLURM_TIMEOUT     seconds to wait for the node (default 60)
#   MPI_LANDSCAPE_SLURM_MPI_DEFAULT MpiDefault (default none, so job scripts
#                                   must say srun --mpi=pmi2 as on most sites)
#   MPI_LANDSCAPE_SLURM_GPUS        gres/gpu count of the node (default auto:
#                                   the /dev/nvidiaN devices; without any, as many
#                                   placeholder GPUs as CPUs, so job scripts that
#                                   ask --gpus-per-node run unchanged and their
#                                   ranks fall back to the CPU); 0 = no gres
#
# Starting again while the cluster is up does nothing but re-check readiness
# (after changing a knob, use restart: slurm.conf is rewritten only then).
# Exit status: 0 ready, 3 Slurm cannot be installed/started here (not root,
# no apt-get, install failed), anything else a real failure (logs are shown).
set -euo pipefail

STATE_DIR="${MPI_LANDSCAPE_SLURM_DIR:-/tmp/mpi_landscape_slurm}"
LINK_ETC="${MPI_LANDSCAPE_SLURM_LINK_ETC:-0}"
CTLD_PORT="${MPI_LANDSCAPE_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${MPI_LANDSCAPE_SLURM_SLURMD_PORT:-6818}"
WAIT_S="${MPI_LANDSCAPE_SLURM_TIMEOUT:-60}"
MPI_DEFAULT="${MPI_LANDSCAPE_SLURM_MPI_DEFAULT:-none}"
GPUS="${MPI_LANDSCAPE_SLURM_GPUS:-auto}"
PARTITION=debug
CLUSTER=mpilandscape

CONF="$STATE_DIR/slurm.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_PID="$MUNGE_DIR/munged.pid"
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
LOG_DIR="$STATE_DIR/log"
ETC_CONF=/etc/slurm/slurm.conf

NODE="$(hostname -s)"

log() { echo "[slurm.sh] $*"; }
die() { echo "[slurm.sh] ERROR: $*" >&2; exit 1; }
# exit 3: Slurm cannot be installed/started here at all (callers may skip)
unavailable() { echo "[slurm.sh] UNAVAILABLE: $*" >&2; exit 3; }

pid_alive() {  # pid_alive PIDFILE: the recorded process runs and is the daemon named like the file
    local pid name
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    name="$(basename "$1" .pid)"
    if [[ -d "/proc/$pid" ]]; then
        # not a zombie, and the same program (the pid may have been reused)
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name"* ]]
    else
        kill -0 "$pid" 2>/dev/null
    fi
}

install_packages() {
    local missing=0 cmd
    for cmd in munged munge slurmctld slurmd sbatch srun sinfo scontrol; do
        if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then
            missing=1
        fi
    done
    if ! compgen -G '/usr/lib*/*/slurm*/mpi_pmi2.so' >/dev/null \
        && ! compgen -G '/usr/lib*/slurm*/mpi_pmi2.so' >/dev/null; then
        missing=1
    fi
    [[ $missing == 0 ]] && return 0
    [[ $(id -u) == 0 ]] || unavailable "slurm-wlm/munge are not installed and this is not root"
    command -v apt-get >/dev/null 2>&1 || unavailable "slurm-wlm/munge missing and apt-get is not available"
    log "installing slurm-wlm munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # slurm-wlm pulls slurmctld, slurmd, slurm-client and slurm-wlm-basic-plugins
    # (mpi_pmi2.so, proctrack_linuxproc.so, task_none.so, select_cons_tres.so).
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$STATE_DIR/apt.log" 2>&1; then
        apt-get update -q >>"$STATE_DIR/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE_DIR/apt.log" 2>&1 \
            || { tail -n 30 "$STATE_DIR/apt.log" >&2; unavailable "apt-get install slurm-wlm munge failed"; }
    fi
}

start_munge() {
    mkdir -p "$MUNGE_DIR"
    # the socket must be reachable by every user who submits jobs; the key stays 0400
    chmod 0755 "$STATE_DIR" "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "generating munge key"
        (umask 077 && dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none)
    fi
    chmod 0400 "$MUNGE_KEY"
    if pid_alive "$MUNGE_PID" && munge -n --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$MUNGE_PID" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    # --force: the key lives below /tmp, whose sticky world-writable parent
    # munged would otherwise reject.
    munged --force \
        --key-file="$MUNGE_KEY" \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE_PID" \
        --log-file="$LOG_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" \
        || { tail -n 20 "$LOG_DIR/munged.log" >&2 || true; die "munged failed to start"; }
    local _
    for _ in $(seq 1 50); do
        munge -n --socket="$MUNGE_SOCKET" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 20 "$LOG_DIR/munged.log" >&2 || true
    die "munged did not answer on $MUNGE_SOCKET"
}

write_conf() {
    local cpus mem_mb tmp
    cpus="${MPI_LANDSCAPE_SLURM_CPUS:-$(nproc)}"
    mem_mb="${MPI_LANDSCAPE_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)}"
    local gpus=0 gres_node="" devs=() i
    mapfile -t devs < <(compgen -G '/dev/nvidia[0-9]*' | sort -V)
    if [[ "$GPUS" == auto ]]; then
        if ((${#devs[@]} > 0)); then gpus=${#devs[@]}; else gpus=$cpus; devs=(); fi
    else
        gpus=$GPUS
        ((${#devs[@]} == gpus)) || devs=()
    fi
    if ((gpus > 0)); then
        gres_node=" Gres=gpu:$gpus"
        if ((${#devs[@]} > 0)); then
            printf "NodeName=$NODE Name=gpu File=%s\n" "${devs[@]}" >"$STATE_DIR/gres.conf"
        else
            # slurmd drops GPUs without File=: point at placeholder files
            mkdir -p "$STATE_DIR/fake_gpus"
            for ((i = 0; i < gpus; i++)); do : >"$STATE_DIR/fake_gpus/gpu$i"; done
            printf 'NodeName=%s Name=gpu File=%s/fake_gpus/gpu[0-%s]\n' \
                "$NODE" "$STATE_DIR" "$((gpus - 1))" >"$STATE_DIR/gres.conf"
        fi
    else
        : >"$STATE_DIR/gres.conf"
    fi
    tmp="$CONF.tmp"
    cat >"$tmp" <<EOF
# Generated by .ci/slurm.sh -- one-node test cluster. Do not edit; rerun the script.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=$MPI_DEFAULT
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Accept the node as declared even if hardware detection differs.
SlurmdParameters=config_overrides
ReturnToService=2
# sbatch --wait polls every 2 s only while MinJobAge/2 <= 2 (else 2, 8, 32 s).
MinJobAge=5
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
SlurmctldTimeout=60
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb$gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    mv "$tmp" "$CONF"
}

link_etc_conf() {
    [[ "$LINK_ETC" == 1 ]] || return 0
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]; then
        return 0
    fi
    if [[ -e "$ETC_CONF" || -L "$ETC_CONF" ]]; then
        log "note: $ETC_CONF exists and is not ours; export SLURM_CONF=$CONF to use this cluster"
        return 0
    fi
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
}

node_state() {
    SLURM_CONF="$CONF" sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1
}

cluster_ready() {
    pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" || return 1
    local st
    st="$(node_state)"
    [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]]
}

start_slurm() {
    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/slurmd" "$LOG_DIR"
    if ! pid_alive "$CTLD_PID"; then
        log "starting slurmctld"
        rm -f "$CTLD_PID"
        slurmctld -f "$CONF" \
            || { tail -n 30 "$LOG_DIR/slurmctld.log" >&2 || true; die "slurmctld failed to start"; }
    fi
    if ! pid_alive "$SLURMD_PID"; then
        log "starting slurmd"
        rm -f "$SLURMD_PID"
        slurmd -f "$CONF" -N "$NODE" \
            || { tail -n 30 "$LOG_DIR/slurmd.log" >&2 || true; die "slurmd failed to start"; }
    fi
}

wait_ready() {
    local deadline st resumed=0
    deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        st="$(node_state || true)"
        if [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]]; then
            log "cluster ready: node $NODE $st, partition $PARTITION, SLURM_CONF=$CONF"
            return 0
        fi
        case "$st" in
            down* | drain* | fail*)
                if ((resumed == 0)); then
                    SLURM_CONF="$CONF" scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        if ! pid_alive "$CTLD_PID"; then
            tail -n 30 "$LOG_DIR/slurmctld.log" >&2 || true
            die "slurmctld exited (log: $LOG_DIR/slurmctld.log)"
        fi
        if ! pid_alive "$SLURMD_PID"; then
            tail -n 30 "$LOG_DIR/slurmd.log" >&2 || true
            die "slurmd exited (log: $LOG_DIR/slurmd.log)"
        fi
        sleep 0.5
    done
    echo "--- sinfo ---" >&2
    SLURM_CONF="$CONF" sinfo -N -l >&2 || true
    echo "--- slurmctld.log ---" >&2
    tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true
    echo "--- slurmd.log ---" >&2
    tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
    die "node $NODE not idle after ${WAIT_S}s (state: '${st:-unknown}')"
}

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    local name=$1 pidfile=$2 pid
    pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid="$(cat "$pidfile")"
    log "stopping $name ($pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

cmd_start() {
    mkdir -p "$STATE_DIR" "$LOG_DIR"
    if [[ -s "$CONF" ]] && cluster_ready; then
        link_etc_conf
        wait_ready
        return 0
    fi
    [[ $(id -u) == 0 ]] || unavailable "starting the cluster needs root (daemons run as root)"
    install_packages
    start_munge
    if ! pid_alive "$CTLD_PID" && ! pid_alive "$SLURMD_PID"; then
        write_conf
    fi
    link_etc_conf
    start_slurm
    wait_ready
}

cmd_stop() {
    if [[ -s "$CONF" ]] && command -v scontrol >/dev/null 2>&1 && pid_alive "$CTLD_PID"; then
        SLURM_CONF="$CONF" scancel --quiet --partition="$PARTITION" >/dev/null 2>&1 || true
    fi
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile munged "$MUNGE_PID"
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$CONF" ]]; then
        rm -f "$ETC_CONF"
    fi
    log "stopped"
}

cmd_status() {
    local d
    for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
        if pid_alive "${d#*:}"; then echo "${d%%:*}: running ($(cat "${d#*:}"))"; else echo "${d%%:*}: stopped"; fi
    done
    if [[ -s "$CONF" ]] && pid_alive "$CTLD_PID"; then
        SLURM_CONF="$CONF" sinfo -N -l || true
    fi
    cluster_ready
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    -h | --help | help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" ;;
    *) die "unknown command '$1' (start|stop|restart|status|env)" ;;
esac
