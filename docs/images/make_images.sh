#!/usr/bin/env bash
# Make docs/images/ again from the demo, with the plot and vtk commands' defaults
# (docs/paraview.md shows the same commands). Run from the repository root:
#   bash docs/images/make_images.sh            (PYTHON=.venv/bin/python by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
work=${WORKDIR:-demo_wide}

"$PYTHON" -m mpi_landscape.demo --workdir "$work" --x=-2:2:41 --y=-2:2:41
"$PYTHON" -m mpi_landscape.vtk "$work/demo_surface.h5" --log --interp 200 \
    --png docs/images/demo_surface_vtk.png
"$PYTHON" -m mpi_landscape.plot "$work/demo_surface.h5" --kinds contour --format png --dpi 200 \
    --out "$work/figure"
cp "$work/figure_train_loss_2dcontour.png" docs/images/demo_contour.png
