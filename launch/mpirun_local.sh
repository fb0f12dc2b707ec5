#!/bin/bash
# Loss surface on this machine (a workstation, or an interactive node without a
# scheduler): NP MPI ranks under mpirun, one per GPU.
#
#   bash launch/mpirun_local.sh
#
# What to edit (environment variables, or the defaults below):
#   NP        number of ranks (default: one per GPU that nvidia-smi lists, else 2)
#   workload  MODEL MODEL_FILE DATASET DATAPATH X Y DIR_TYPE XNORM YNORM XIGNORE
#             YIGNORE DIR_FILE SURF_FILE, EXTRA_ARGS for any other flag (defaults:
#             workload_args in launch/common.sh)
#             e.g. NP=4 MODEL=resnet56 MODEL_FILE=trained_nets/resnet56/model_300.t7 \
#                  X=-1:1:51 Y=-1:1:51 SURF_FILE=resnet56.h5 bash launch/mpirun_local.sh
#             Y= (empty) computes a 1D line. Arguments are passed on to the
#             command: bash launch/mpirun_local.sh --splits train,test
#   PYTHON    interpreter with mpi_landscape importable (default: the .venv that
#             `make install` creates next to this folder, else python on PATH)
#   MPIRUN    default: the mpirun next to PYTHON (e.g. the mpich wheel's in a
#             venv), else the one on PATH; MPIRUN_ARGS adds options to it
#
# Demo (no GPU, no dataset):
#   python -c "import mpi_landscape_models as models; models.save_checkpoint('demo_mlp.t7', models.build_model('demo_mlp'))"
#   NP=2 MODEL=demo_mlp DATASET=demo MODEL_FILE=demo_mlp.t7 X=-1:1:5 Y=-1:1:5 \
#     bash launch/mpirun_local.sh
#
# Ctrl-C (or SIGTERM/SIGUSR1 to this script, or SIGHUP: its terminal closed) asks the ranks to stop: they keep
# every finished point and exit with status 75; a second Ctrl-C kills them. Running
# the same command again computes only the points that are still missing.

set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$REPO_ROOT/launch/common.sh" ]] || { echo "$REPO_ROOT/launch/common.sh not found" >&2; exit 1; }
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$REPO_ROOT/launch/common.sh"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
MPIRUN="${MPIRUN:-}"
MPIRUN_ARGS="${MPIRUN_ARGS:-}"
if [[ -z "${NP:-}" ]]; then
    NP=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    ((NP > 0)) || NP=2
fi
default_mpirun

workload_args "$@"
read -r -a mpirun_args <<<"$MPIRUN_ARGS"
cmd=("$MPIRUN" -n "$NP" "${mpirun_args[@]}" "$PYTHON" -m mpi_landscape.surface "${args[@]}")
echo "+ ${cmd[*]}"

# setsid keeps mpirun away from the terminal, so Ctrl-C reaches only this script,
# which turns the first one into a graceful stop (SIGUSR1, passed on to every rank).
stops=0
hung_up=""
pid=""
# shellcheck disable=SC2317  # called by the trap
on_stop() {
    if [[ "${1:-}" == hangup ]]; then   # a terminal hangs up once, however many SIGHUPs say so
        [[ -z "$hung_up" ]] || return 0
        hung_up=1
    fi
    stops=$((stops + 1))
    if ((stops == 1)); then
        echo "stopping: the ranks finish their current point (Ctrl-C again to abort)" >&2
        [[ -z "$pid" ]] || kill -USR1 "$pid" 2>/dev/null
    else
        echo "aborting; points already written stay in the file" >&2
        [[ -z "$pid" ]] || kill -KILL -- -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    fi
}
# The ranks' output reaches the terminal through two relays that outlive it: MPICH's mpirun exits 255,
# ranks and all, when it cannot write their output, and once the terminal has closed every write fails.
# A relay ignores the terminal's signals (Ctrl-C is this script's to handle) and drops what it cannot write.
# shellcheck disable=SC2317  # run in the process substitutions
relay() {
    trap '' INT HUP
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do printf '%s\n' "$line" 2>/dev/null; done
}
exec 3> >(relay)
relay_out=$!
exec 4> >(relay >&2)
relay_err=$!
trap on_stop INT TERM USR1
trap 'on_stop hangup' HUP
setsid "${cmd[@]}" >&3 2>&4 3>&- 4>&- &
pid=$!
exec 3>&- 4>&-
((stops == 0)) || kill -USR1 "$pid" 2>/dev/null   # stopped while starting it
wait_step
wait "$relay_out" "$relay_err" 2>/dev/null   # the last lines are on the terminal before the script ends
if ((stops == 1)) && [[ "$rc" != 0 && "$rc" != 2 && "$rc" != 75 ]]; then
    # the stop came while the ranks were still starting, before they could catch it
    echo "stopped before the ranks were ready; rerun the same command to finish" >&2
    rc=75
fi
exit "$rc"
