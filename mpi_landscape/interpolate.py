"""``python -m mpi_landscape.interpolate``: loss along the line (or plane) through two (three) models.

    mpirun -n 4 python -m mpi_landscape.interpolate --model resnet56 \\
        --model_file small_batch.t7 --model_file2 large_batch.t7

computes f(α) = L(θ1 + α·(θ2 − θ1)) on ``--x=-0.5:1.5:401``: α = 0 is
``--model_file``, α = 1 is ``--model_file2`` (the paper's figure 1 / 2). With
``--model_file3`` it is the plane θ1 + α·(θ2 − θ1) + β·(θ3 − θ1), on ``--y``
(default: the same axis as ``--x``); (0, 0), (1, 0) and (0, 1) are the three models.

This is the surface command with the paper's defaults for interpolation:
``--dir_type states`` (BatchNorm running statistics are interpolated too, the
paper's footnote: with ``weights`` the statistics stay those of θ1, and α = 1
is not the second model), ``--splits train,test``, and no normalization or
bias/BN handling, which only apply to random directions. Every other surface
flag works the same; the file layout, MPI use and resuming are the surface's.
"""

from __future__ import annotations

import dataclasses
import sys

from .errors import LandscapeError
from .surface import SurfaceConfig, build_parser as build_surface_parser, run_command

DEFAULTS = {"dir_type": "states", "x": "-0.5:1.5:401", "splits": "train,test",
            "xnorm": "none", "ynorm": "none", "xignore": "none", "yignore": "none"}


def build_parser():
    """The surface command's flags with the interpolation defaults."""
    parser = build_surface_parser()
    parser.prog = "python -m mpi_landscape.interpolate"
    parser.description = ("Loss and accuracy along the line θ1 + α·(θ2 − θ1) between two models "
                          "(or over the plane through three), over MPI ranks when run under mpirun.")
    parser.set_defaults(**DEFAULTS)
    return parser


def interpolation_config(config: SurfaceConfig) -> SurfaceConfig:
    """Check that ``config`` names the models to interpolate; a plane gets ``--y`` = ``--x`` by default."""
    if not config.model_file or not config.model_file2:
        raise LandscapeError("--model_file and --model_file2 are required: the two models "
                             "at α = 0 and α = 1")
    if config.model_file3 and config.y is None:
        return dataclasses.replace(config, y=config.x)
    if config.y is not None and not config.model_file3:
        raise LandscapeError("--y needs --model_file3 (the plane through three models); for a random "
                             "y direction use python -m mpi_landscape.surface")
    return config


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the interpolation as a surface."""
    return run_command("mpi_landscape.interpolate", build_parser(), argv, adapt=interpolation_config)


if __name__ == "__main__":
    sys.exit(main())
