#!/usr/bin/env bash
# GPU figures in one go, from a plain checkout (no install, no internet): seconds per grid
# point of the engine against the reference style (point_speed.py), then two real 11x11
# surfaces of a ResNet-56 over 50,000 CIFAR-shaped images through `python -m
# mpi_landscape.surface`: the fast mode (bf16, compiled) and fp32; then the peer rows,
# compute_surface against loss-landscapes (peer_speed.py, when loss-landscapes is installed;
# ResNet-20 on 10,000 images). Sized for about 8 minutes on one H100.
#
#   bash bench/gpu.sh                    # from anywhere; needs torch, torchvision, h5py, mpi4py
#   OUT=/some/folder bash bench/gpu.sh   # also copy the log and the result files there
#
# Arguments go to point_speed.py (e.g. --modes fp32,bf16); PYTHON picks the interpreter
# (default: python). The ResNet-56 is freshly
# initialised (fixed seed) with BatchNorm statistics taken from the data, so its losses are
# those of an untrained real network; the images are random pixels with fixed seed 0,
# normalized as CIFAR-10 is: speed does not depend on what they show. For a quick check on a
# machine without a GPU, shrink it:
#
#   BENCH_DEVICE=cpu BENCH_IMAGES=64 BENCH_GRID=3 BENCH_PEER_IMAGES=64 BENCH_PEER_ROUNDS=1 \
#       BENCH_PEER_MODELS=linear,resnet20 BENCH_HESSIAN_IMAGES=32 BENCH_HESSIAN_ROUNDS=1 \
#       bash bench/gpu.sh --models resnet20 --repeats 1 --min_seconds 0
#
# The curvature rows (bench/hessian_peers.py against PyHessian on the demo MLP and ResNet-20,
# BENCH_HESSIAN_IMAGES images, default 2048, BENCH_HESSIAN_ROUNDS rounds, default 5) need
# pyhessian; without it they are skipped with a note.
set -euo pipefail

cd "$(dirname "$0")/.."
device=${BENCH_DEVICE:-cuda}
images=${BENCH_IMAGES:-50000}
grid=${BENCH_GRID:-11}
python=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$PWD:$PWD/bench:$work${PYTHONPATH:+:$PYTHONPATH}"

# The surface command's --dataset module:factory: the same images as point_speed.py's.
cat > "$work/synthetic_cifar.py" <<EOF
"""A CIFAR-shaped training split of $images random images, the same at every call (seed 0)."""
import torch

from mpi_landscape.data import cifar_inputs
from point_speed import synthetic_cifar


def train():
    pixels, labels = synthetic_cifar($images)
    return cifar_inputs(pixels), torch.from_numpy(labels).long()
EOF

run_all() {
    local status=0 started=$SECONDS
    touch "$work/start"
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not found"; fi

    echo; echo "== seconds per point: bench/point_speed.py --device $device --images $images $*"
    "$python" bench/point_speed.py --device "$device" --images "$images" "$@" || status=$?
    echo "($((SECONDS - started)) s so far)"

    echo; echo "== surfaces: resnet56, $images images, ${grid}x${grid} grid"
    "$python" - "$work/resnet56.t7" <<'EOF'
import sys

import torch

sys.path.insert(0, "bench")

import mpi_landscape_models as models
import synthetic_cifar
from point_speed import BN_CALIBRATION_IMAGES, calibrate_batchnorm

torch.manual_seed(0)
net = models.build_model("resnet56")
calibrate_batchnorm(net, synthetic_cifar.train()[0][:BN_CALIBRATION_IMAGES])
models.save_checkpoint(sys.argv[1], net)
EOF
    for mode in bf16+compile fp32; do
        local flags=(--precision "${mode%+compile}")
        [[ $mode == *+compile ]] && flags+=(--compile)
        echo "-- ${flags[*]}"
        "$python" -m mpi_landscape.surface --model resnet56 --model_file "$work/resnet56.t7" \
            --dataset synthetic_cifar:train --x=-1:1:"$grid" --y=-1:1:"$grid" "${flags[@]}" \
            --dir_file "$work/directions.h5" --surf_file "$work/surface_$mode.h5" || status=$?
    done
    "$python" - "$work" "$images" "$grid" <<'EOF' || status=$?
import json
import os
import sys

import torch

sys.path.insert(0, "bench")

from machine import environment, machine_name
from mpi_landscape.store import read_surface

work, images, grid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
FULL_GRID_POINTS = 51 * 51
device = "cuda" if torch.cuda.is_available() else "cpu"  # where the surface command ran
runs = {}
for mode in ("bf16+compile", "fp32"):
    path = os.path.join(work, f"surface_{mode}.h5")
    if os.path.exists(path):
        attrs = read_surface(path).attrs
        last = attrs.get("last_run") or {}
        per_point, warmup = last.get("seconds_per_point", float("nan")), last.get("warmup_seconds", 0.0)
        full_grid_minutes = (FULL_GRID_POINTS * per_point + warmup) / 60
        runs[mode] = {"last_run": last, "precision_check": attrs.get("precision_check"),
                      "minutes_for_51x51": full_grid_minutes}
        print(f"{mode}: {per_point:.4f} s/point over {last.get('points')} points, warm-up {warmup:.1f} s, "
              f"batch {last.get('batch_size')}, peak {'GPU' if device == 'cuda' else 'RSS'} "
              f"{last.get('peak_memory_bytes_rank0', 0) / 2**20:.0f} MB; a 51x51 grid at this rate: "
              f"{full_grid_minutes:.1f} min")
machine = machine_name(device)
env = {k: v for k, v in environment(device).items() if k != "argv"}  # argv: this snippet's temp folder
with open(os.path.join(work, f"surface_{machine}.json"), "w") as out:
    json.dump({"benchmark": "surface", "machine": machine, **env, "model": "resnet56", "images": images,
               "grid": f"{grid}x{grid}", "runs": runs}, out, indent=2)
EOF

    # Peer rows: compute_surface against loss-landscapes (bench/peer_speed.py) on the same device.
    local peer_images=${BENCH_PEER_IMAGES:-10000}
    echo; echo "== peers: bench/peer_speed.py --device $device --images $peer_images"
    if "$python" -c "import loss_landscapes" 2>/dev/null; then
        "$python" bench/peer_speed.py --device "$device" --images "$peer_images" \
            --rounds "${BENCH_PEER_ROUNDS:-5}" ${BENCH_PEER_MODELS:+--models "$BENCH_PEER_MODELS"} || status=$?
    else
        echo "loss_landscapes is not installed: pip install -r bench/requirements.txt (skipped)"
    fi

    # Curvature against PyHessian (bench/hessian_peers.py): products, λmax and trace, interleaved.
    local hessian_images=${BENCH_HESSIAN_IMAGES:-2048}
    echo; echo "== curvature against PyHessian: bench/hessian_peers.py --device $device --images $hessian_images"
    if "$python" -c "import pyhessian" 2>/dev/null; then
        "$python" bench/hessian_peers.py --device "$device" --images "$hessian_images" \
            --rounds "${BENCH_HESSIAN_ROUNDS:-5}" || status=$?
    else
        echo "pyhessian is not installed (pip install pyhessian==0.1): no curvature rows"
    fi
    echo "($((SECONDS - started)) s in all)"

    if [[ -n "${OUT:-}" ]]; then
        mkdir -p "$OUT"
        find bench/results -name 'point_speed_*.json' -newer "$work/start" -exec cp {} "$OUT"/ \;
        find bench/results -name 'hessian_peers_*.json' -newer "$work/start" -exec cp {} "$OUT"/ \;
        find bench/results -name 'peer_speed_*.json' -newer "$work/start" -exec cp {} "$OUT"/ \;
        cp "$work"/surface_*.json "$OUT"/ || status=$?
        echo "copied the result files to $OUT"
    fi
    return "$status"
}

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    run_all "$@" 2>&1 | tee "$OUT/gpu.log"
else
    run_all "$@"
fi
