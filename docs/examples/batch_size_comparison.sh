#!/usr/bin/env bash
# The paper's section 5 set-up at demo scale: demo_mlp trained with small and large batches,
# with and without weight decay; the four filter-normalized surfaces, the two small-to-large
# interpolations, 1D random directions of several seeds, then the numbers and the figures.
#
#     bash docs/examples/batch_size_comparison.sh [OUT]          (OUT: default comparison_output)
#
# Sizes come from the environment, so a test can run the same steps shrunk:
# PYTHON, NP (MPI ranks; 0: no mpirun, one process), EPOCHS, SMALL_BATCH, LARGE_BATCH, GRID (2D axis), LINE (interpolation
# axis), SEEDS (1D random directions). Rerunning skips what is already there.
set -euo pipefail

OUT=${1:-comparison_output}
PYTHON=${PYTHON:-python}
NP=${NP:-2}
EPOCHS=${EPOCHS:-40}
SMALL_BATCH=${SMALL_BATCH:-32}
LARGE_BATCH=${LARGE_BATCH:-1500}
GRID=${GRID:--1:1:41}
LINE=${LINE:--0.5:1.5:201}
SEEDS=${SEEDS:-1 2 3 4 5}
MPIRUN=$(dirname "$(command -v "$PYTHON")")/mpirun
[ -x "$MPIRUN" ] || MPIRUN=mpirun
mkdir -p "$OUT"

ranks() {  # run a command under mpirun -n $NP, or as one process when NP is 0
  if [ "$NP" -gt 0 ]; then "$MPIRUN" -n "$NP" "$@"; else "$@"; fi
}

for wd in 0 0.0005; do
  for bs in "$SMALL_BATCH" "$LARGE_BATCH"; do
    net="$OUT/bs${bs}_wd${wd}"
    [ -f "$net/model_$EPOCHS.t7" ] || "$PYTHON" -m mpi_landscape.train --model demo_mlp --dataset demo \
        --optimizer sgd --lr 0.1 --lr_milestones "$((EPOCHS * 3 / 4))" --batch_size "$bs" \
        --weight_decay "$wd" --epochs "$EPOCHS" --save_epoch "$EPOCHS" --save_dir "$net" > "$net.train.log"
    ranks "$PYTHON" -m mpi_landscape.surface --model demo_mlp --dataset demo \
        --model_file "$net/model_$EPOCHS.t7" --splits train,test --x="$GRID" --y="$GRID" \
        --dir_file "$net/dirs_2d.h5" --surf_file "$OUT/surface_bs${bs}_wd${wd}.h5" > /dev/null
  done
  ranks "$PYTHON" -m mpi_landscape.interpolate --model demo_mlp --dataset demo \
      --model_file "$OUT/bs${SMALL_BATCH}_wd${wd}/model_$EPOCHS.t7" \
      --model_file2 "$OUT/bs${LARGE_BATCH}_wd${wd}/model_$EPOCHS.t7" --x="$LINE" \
      --dir_file "$OUT/interp_wd${wd}_dirs.h5" --surf_file "$OUT/interp_wd${wd}.h5" > /dev/null
done

for bs in "$SMALL_BATCH" "$LARGE_BATCH"; do
  for seed in $SEEDS; do
    net="$OUT/bs${bs}_wd0"
    ranks "$PYTHON" -m mpi_landscape.surface --model demo_mlp --dataset demo \
        --model_file "$net/model_$EPOCHS.t7" --splits train,test --x="$GRID" --seed "$seed" \
        --dir_file "$net/dirs_1d_seed$seed.h5" --surf_file "$OUT/line_bs${bs}_seed$seed.h5" > /dev/null
  done
done

surfaces=("$OUT"/surface_bs"$SMALL_BATCH"_wd0.h5 "$OUT"/surface_bs"$LARGE_BATCH"_wd0.h5
          "$OUT"/surface_bs"$SMALL_BATCH"_wd0.0005.h5 "$OUT"/surface_bs"$LARGE_BATCH"_wd0.0005.h5)
"$PYTHON" -m mpi_landscape.summary "${surfaces[@]}" "$OUT"/interp_wd0.h5 "$OUT"/interp_wd0.0005.h5 \
    --markdown --json "$OUT/summary.json" --csv "$OUT/summary.csv" > "$OUT/summary.md"
for bs in "$SMALL_BATCH" "$LARGE_BATCH"; do
  "$PYTHON" -m mpi_landscape.summary "$OUT"/line_bs"$bs"_seed*.h5 --markdown \
      --json "$OUT/lines_bs$bs.json" > "$OUT/lines_bs$bs.md"
  "$PYTHON" -m mpi_landscape.plot "$OUT"/line_bs"$bs"_seed*.h5 --band --format png --dpi 150 \
      --out "$OUT/lines_bs$bs"
done
"$PYTHON" -m mpi_landscape.plot "${surfaces[@]}" --compare --annotate --format png --dpi 150 \
    --out "$OUT/comparison"
cat "$OUT/summary.md" "$OUT"/lines_bs*.md
