# shellcheck shell=bash
# What the scripts in launch/ share, sourced by each of them (not run on its own).
#
# Globals the functions set or read: args (the command's flags), cmd (the step),
# stop ("", timelimit or cancelled), pid (the step), resender, rc (the step's
# exit status); REQUEUE, MAX_REQUEUES, PYTHON, MPIRUN, SITE_SETUP from the script.

# ---- set-up ------------------------------------------------------------------

# Run SITE_SETUP (module load, venv, ...) in this shell; end the job if it fails.
site_setup() {
    if [[ -n "$SITE_SETUP" ]]; then
        eval "$SITE_SETUP" || { echo "SITE_SETUP failed: $SITE_SETUP" >&2; exit 1; }
    fi
}

# MPIRUN unset: the mpirun next to PYTHON (e.g. the mpich wheel's in a venv),
# else the one on PATH.
default_mpirun() {
    if [[ -z "$MPIRUN" ]]; then
        py="$(command -v "$PYTHON")" || { echo "PYTHON=$PYTHON not found" >&2; exit 1; }
        if [[ -x "$(dirname "$py")/mpirun" ]]; then MPIRUN="$(dirname "$py")/mpirun"; else MPIRUN=mpirun; fi
    fi
}

# OMP_NUM_THREADS from the job's --cpus-per-task. $1 is what starts the step;
# "srun" also gets SRUN_CPUS_PER_TASK (since Slurm 22.05 srun does not inherit
# --cpus-per-task from the job).
threads_from_job() {
    if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
        [[ "${1:-}" != srun ]] || export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}"
    fi
}

# ---- Workload: environment variables -> the command's flags -------------------

# Append EXTRA_ARGS (split at whitespace), then the arguments given, to args.
add_extra_args() {
    read -r -a extra <<<"$EXTRA_ARGS"
    args+=("${extra[@]}" "$@")
}

# args for mpi_landscape.surface; the defaults of the workload variables are here.
# Y= (empty) makes it a 1D line. Arguments: passed on after EXTRA_ARGS.
workload_args() {
    MODEL="${MODEL:-resnet56}"
    MODEL_FILE="${MODEL_FILE:-trained_nets/resnet56_sgd_lr=0.1_bs=128_wd=0.0005/model_300.t7}"
    DATASET="${DATASET:-cifar10}"
    DATAPATH="${DATAPATH:-cifar10/data}"
    X="${X:--1:1:51}"
    Y="${Y--1:1:51}"
    DIR_TYPE="${DIR_TYPE:-weights}"
    DIR_FILE="${DIR_FILE:-}"
    SURF_FILE="${SURF_FILE:-}"
    EXTRA_ARGS="${EXTRA_ARGS:-}"

    # The norms and ignores go only when set: the command's defaults are the paper's
    # (filter, biasbn), and a flag given must agree with an existing DIR_FILE.
    args=(--model "$MODEL" --model_file "$MODEL_FILE" --dataset "$DATASET" --datapath "$DATAPATH"
          --x="$X" --dir_type "$DIR_TYPE")
    [[ -z "${XNORM:-}" ]] || args+=(--xnorm "$XNORM")
    [[ -z "${XIGNORE:-}" ]] || args+=(--xignore "$XIGNORE")
    if [[ -n "$Y" ]]; then
        args+=(--y="$Y")
        [[ -z "${YNORM:-}" ]] || args+=(--ynorm "$YNORM")
        [[ -z "${YIGNORE:-}" ]] || args+=(--yignore "$YIGNORE")
    fi
    [[ -z "$DIR_FILE" ]] || args+=(--dir_file "$DIR_FILE")
    [[ -z "$SURF_FILE" ]] || args+=(--surf_file "$SURF_FILE")
    add_extra_args "$@"
}

# args for mpi_landscape.interpolate (the line between two models, or the plane
# through three with MODEL_FILE3); the defaults are here. Arguments: passed on.
interpolate_args() {
    MODEL="${MODEL:-vgg9}"
    MODEL_FILE="${MODEL_FILE:-trained_nets/vgg9_sgd_lr=0.1_bs=128_wd=0.0005/model_300.t7}"
    MODEL_FILE2="${MODEL_FILE2:-trained_nets/vgg9_sgd_lr=0.1_bs=8192_wd=0.0005/model_300.t7}"
    MODEL_FILE3="${MODEL_FILE3:-}"
    DATASET="${DATASET:-cifar10}"
    DATAPATH="${DATAPATH:-cifar10/data}"
    X="${X:--0.5:1.5:401}"
    Y="${Y:-}"
    SURF_FILE="${SURF_FILE:-}"
    EXTRA_ARGS="${EXTRA_ARGS:-}"

    args=(--model "$MODEL" --model_file "$MODEL_FILE" --model_file2 "$MODEL_FILE2"
          --dataset "$DATASET" --datapath "$DATAPATH" --x="$X")
    [[ -z "$MODEL_FILE3" ]] || args+=(--model_file3 "$MODEL_FILE3")
    [[ -z "$Y" ]] || args+=(--y="$Y")
    [[ -z "$SURF_FILE" ]] || args+=(--surf_file "$SURF_FILE")
    add_extra_args "$@"
}

# The first lines of an MPI job's output: where it runs, and the command.
# shellcheck disable=SC2154  # cmd: set by the script
print_mpi_job() {
    echo "job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NUM_NODES:-?} node(s)," \
         "${SLURM_NTASKS:-?} ranks, $(date '+%F %T')"
    echo "+ ${cmd[*]}"
}

# ---- Time-limit warning, scancel, requeue -------------------------------------

# Install the traps; from here on the time-limit warning (SIGUSR1 to the batch
# shell, #SBATCH --signal=B:USR1@120) is remembered in stop, and SIGTERM
# (scancel) ends the step. $1 is how the warning stops the step: "ranks" passes
# SIGUSR1 on to it (srun and mpirun hand it to every rank; each finishes its
# point and rank 0 writes everything before the step exits with status 75),
# "term" sends it SIGTERM. $2: the rest of the "time limit near: " line.
trap_preemption() {
    stop_mode="$1"
    stop_message="$2"
    stop=""
    pid=""
    resender=""
    trap on_warning USR1
    trap 'stop=cancelled; [[ -z "$pid" ]] || kill -TERM "$pid" 2>/dev/null' TERM
    # a warning caught before (by the script's first trap) counts from here
    [[ -z "${warned_early:-}" ]] || on_warning
}

# The USR1 trap: note the warning, and stop the step if it runs.
# shellcheck disable=SC2317  # called by the trap
on_warning() {
    stop=timelimit
    echo "time limit near: $stop_message"
    [[ -z "$pid" ]] || stop_step
}

# Ask the running step to stop (see trap_preemption). With "ranks" SIGUSR1 goes
# again every 10 s until the step ends: a signal that comes while srun or
# mpirun is still launching the ranks may not be passed on.
stop_step() {
    if [[ "$stop_mode" == term ]]; then
        kill -TERM "$pid" 2>/dev/null
        return 0
    fi
    kill -USR1 "$pid" 2>/dev/null || return 0
    [[ -n "$resender" ]] || { (while sleep 10 && kill -USR1 "$pid" 2>/dev/null; do :; done) & resender=$!; }
}

# Wait for the step $pid and set rc; wait returns early (>128) when a trapped
# signal arrives, so keep waiting while the step runs.
wait_step() {
    while :; do
        wait "$pid"
        rc=$?
        if ((rc > 128)) && kill -0 "$pid" 2>/dev/null; then continue; fi
        break
    done
}

# Run cmd in the background, stopping it on the time-limit warning, and set rc;
# warned before it started, run nothing (rc 75 for "ranks", 143 for "term").
# $1 names the step in the line that reports its exit status.
run_step_with_preemption() {
    if [[ -n "$stop" ]]; then
        if [[ "$stop_mode" == term ]]; then rc=143; else rc=75; fi
    else
        "${cmd[@]}" &
        pid=$!
        [[ "$stop" != timelimit ]] || stop_step   # warned while starting it
        wait_step
        [[ -z "$resender" ]] || kill "$resender" 2>/dev/null
    fi
    echo "$1 exited with status $rc at $(date '+%F %T')"
}

# End the job. After the warning anything but success (0) or a refused request
# (2) means work remains (a step killed by the signal itself, while it was still
# starting, has lost nothing either): requeue the job, at most MAX_REQUEUES
# times and only with REQUEUE=1, and exit 75; otherwise exit with rc.
# $1 ends "submit again to ..." (finish, continue); $2 "requeueing job N to ...".
exit_or_requeue() {
    if [[ "$stop" == timelimit && "$rc" != 0 && "$rc" != 2 ]]; then
        if [[ "$REQUEUE" != 1 ]]; then
            echo "not requeued (REQUEUE=$REQUEUE); submit the same job again to $1"
        elif ((${SLURM_RESTART_COUNT:-0} >= MAX_REQUEUES)); then
            echo "not requeued: MAX_REQUEUES=$MAX_REQUEUES reached; submit again to $1" >&2
        else
            echo "requeueing job $SLURM_JOB_ID to $2"
            if scontrol requeue "$SLURM_JOB_ID"; then
                exit 75   # the job is back in the queue; Slurm ends this run now anyway
            fi
            echo "scontrol requeue failed; submit again to $1" >&2
        fi
        exit 75
    fi
    exit "$rc"
}
