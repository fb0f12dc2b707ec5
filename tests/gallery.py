"""The gallery of docs/figures.md: small sample files and the plot commands that draw each figure.

    python tests/gallery.py docs/images/gallery        # what `make gallery` runs

writes the sample surface files into a scratch folder, runs each entry's
``python -m mpi_landscape.plot`` command there (in-process) with ``--out`` in
the given folder, and leaves one PNG per entry. tests/test_gallery_2d.py draws
the same entries and checks every figure, so the pictures in the docs are the
ones the tests read.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # the sample builders, and this checkout's package
from surface_files import DEMO_CONFIG, basin, curvature_metrics, write_spectrum_file, write_surface  # noqa: E402

COMPARE_RUNS = [(f"{optimizer} · batch {batch} · wd {wd}", width, error)  # the paper's eight runs:
                for optimizer in ("SGD", "Adam") for wd in ("0", "5e-4")  # optimizer × weight decay
                for batch, width, error in ((128, 1.0, 7.4), (8192, 0.4, 11.1))]  # × batch size


GALLERY_DPI = 150  # enough to read on a screen, small enough to keep in the repository


@dataclass(frozen=True)
class Entry:
    """One figure of the gallery: its file name, the paper's figure it stands for, the plot arguments."""

    name: str
    paper: str
    args: tuple[str, ...]


ENTRIES = (
    Entry("contour", "Fig. 5 (2D contours, one panel)", ("basin.h5", "--kinds", "contour")),
    Entry("contourf", "Fig. 5, filled", ("basin.h5", "--kinds", "contourf")),
    Entry("heat", "—", ("basin.h5", "--kinds", "heat")),
    Entry("vlevel", "the reference's --vmin/--vmax/--vlevel", ("basin.h5", "--kinds", "contourf", "--vmin",
                                                              "0.01", "--vmax", "1", "--vlevel", "0.1")),
    Entry("partial", "— (--watch while a run writes)", ("partial.h5", "--kinds", "heat")),
    Entry("line_1d", "Fig. 4 (1D, filter-normalized)", ("line.h5", "--labels", "VGG-9 · batch 128")),
    Entry("overlay_1d", "Fig. 4, several models", ("line.h5", "line_large.h5", "--labels",
                                                  "batch 128,batch 8192")),
    Entry("interpolation", "Fig. 2 (1D linear interpolation)", ("interp.h5",)),
    Entry("band", "— (several random directions)", ("seed0.h5", "seed1.h5", "seed2.h5", "--band")),
    Entry("compare_grid", "Figs. 5, 11, 12 (2×4 grids)",
          tuple(f"run{i}.h5" for i in range(8)) + ("--compare", "--cols", "4", "--labels",
                                                   ",".join(label for label, _, _ in COMPARE_RUNS))),
    Entry("train_test", "— (train beside test)", ("basin.h5", "--compare", "--metric", "train_loss,test_loss")),
    Entry("max_eig", "the curvature maps (λmax)", ("curvature.h5", "--metric", "max_eig", "--kinds", "contourf")),
    Entry("min_eig", "the curvature maps (λmin)", ("curvature.h5", "--metric", "min_eig", "--kinds", "contourf")),
    Entry("min_eig_lines", "the curvature maps, as lines", ("curvature.h5", "--metric", "min_eig", "--kinds", "contour")),
    Entry("eig_ratio", "the convexity maps (|λmin/λmax|)", ("curvature.h5", "--metric", "eig_ratio", "--kinds",
                                                        "contourf")),
    Entry("narrow_range", "— (a language model's narrow loss range)", ("gpt2.h5", "--kinds", "contour")),
    Entry("perplexity", "—", ("gpt2.h5", "--metric", "train_perplexity", "--kinds", "contourf")),
    Entry("spectrum", "— (Hessian spectral density)", ("spectrum.h5", "--spectrum")),
)


def write_samples(folder: str) -> str:
    """Every sample file the entries read, written into ``folder``; returns it."""
    grid = np.linspace(-1, 1, 21)
    line = np.linspace(-1, 1, 41)

    def path(name: str) -> str:
        return os.path.join(folder, name)

    def splits(z, error=7.4):
        return {"train_loss": z, "train_acc": 100 - 30 * np.tanh(z), "test_loss": 1.15 * z + 0.25,
                "test_acc": 100 - error - 30 * np.tanh(z - z.min())}  # its test error at θ*: ``error``

    write_surface(path("basin.h5"), grid, grid, metrics=splits(basin(grid, grid)))
    done = np.zeros((21, 21), dtype=bool)
    done[::5, ::5] = True  # the coarse-to-fine lattice a run finishes first: 5×5 of 21×21
    write_surface(path("partial.h5"), grid, grid, done=done, metrics=splits(basin(grid, grid)))
    write_surface(path("curvature.h5"), grid, grid, metrics=curvature_metrics(grid, grid))
    for name, sharpness in (("line.h5", 1.0), ("line_large.h5", 6.0)):
        write_surface(path(name), line, metrics=splits(0.02 + 4 * sharpness * line ** 2))
    interp_config = {**DEMO_CONFIG, "model_file": "sgd_128/model_20.t7", "model_file2": "sgd_8192/model_20.t7"}
    alpha = np.linspace(-0.5, 1.5, 81)
    barrier = 0.02 + 0.6 * np.sin(np.pi * np.clip(alpha, 0, 1)) ** 2 + 2 * np.clip(-alpha, 0, None) \
        + 2 * np.clip(alpha - 1, 0, None)
    write_surface(path("interp.h5"), alpha, metrics=splits(barrier), config=interp_config)
    for seed in range(3):
        write_surface(path(f"seed{seed}.h5"), line, metrics=splits(0.02 + (3 + seed) * line ** 2))
    for i, (_, width, error) in enumerate(COMPARE_RUNS):
        xx, yy = np.meshgrid(grid, grid)
        z = 0.02 + (4 / width ** 2) * (xx ** 2 + 1.5 * yy ** 2)
        write_surface(path(f"run{i}.h5"), grid, grid, metrics=splits(z, error))
    xx, yy = np.meshgrid(grid, grid)
    gpt2 = 6.235 + 0.015 * (xx ** 2 + yy ** 2) / 2
    write_surface(path("gpt2.h5"), grid, grid,
                  metrics={"train_loss": gpt2, "train_perplexity": np.exp(gpt2), "train_acc": 20 - gpt2},
                  config={**DEMO_CONFIG, "model": "gpt2", "task": "language_model"})
    write_spectrum_file(path("spectrum.h5"))
    return folder


def command(entry: Entry, out_folder: str) -> list[str]:
    """The plot command's arguments for ``entry``, its figures written as ``out_folder/<name>``."""
    return [*entry.args, "--out", os.path.join(out_folder, entry.name), "--format", "png", "--dpi", str(GALLERY_DPI)]


def main(out_folder: str) -> int:
    """Write the gallery's PNGs into ``out_folder`` (one per entry, named after it)."""
    from mpi_landscape import plot

    os.makedirs(out_folder, exist_ok=True)
    out_folder = os.path.abspath(out_folder)
    with tempfile.TemporaryDirectory() as scratch:
        write_samples(scratch)
        here = os.getcwd()
        os.chdir(scratch)
        try:
            for entry in ENTRIES:
                if plot.main(command(entry, out_folder)) != 0:
                    return 1
        finally:
            os.chdir(here)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/gallery"))
