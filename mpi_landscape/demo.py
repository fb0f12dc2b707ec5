"""``python -m mpi_landscape.demo``: a whole loss landscape on a laptop in under a minute, no download.

Trains the small ``demo_mlp`` on the built-in spirals data with the training
library, then computes its 2D filter-normalized surface (train and test
splits) under ``mpirun -n 2``, exactly as a user would for a real network:

    mpirun -n 2 python -m mpi_landscape.surface --model demo_mlp \\
        --model_file demo_output/model_20.t7 --dataset demo --splits train,test \\
        --x=-1:1:41 --y=-1:1:41 --surf_file demo_output/demo_surface.h5

and then draws it with the plot and vtk commands: contour lines and the 3D
surface as PNG, the ParaView file and its off-screen picture. These are the
README's pictures (``make images`` copies them into docs/images).

Running the demo again reuses the trained network and resumes (or keeps) the
surface; a training run that was cut short continues from its last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace

from .cli import add_flag, exit_on_user_error, new_parser, parse_config
from .errors import LandscapeError
from .train import TrainConfig, model_path, resumable_epochs, train

SURFACE_FILE = "demo_surface.h5"
VTK_PICTURE = "demo_surface_vtk.png"


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo writes, how many ranks it uses, and the grid."""

    workdir: str = "demo_output"
    np: int = 2
    x: str = "-1:1:41"
    y: str = "-1:1:41"
    epochs: int = 20


def demo_training(config: DemoConfig) -> TrainConfig:
    """The demo network's training run: Adam on the spirals, one learning-rate drop, a few seconds on one core."""
    return TrainConfig(model="demo_mlp", dataset="demo", optimizer="adam", lr=0.01,
                       lr_milestones=str(max(1, config.epochs * 3 // 4)), batch_size=128,
                       epochs=config.epochs, save_epoch=5, save_dir=config.workdir, seed=0)


def ensure_trained(config: DemoConfig) -> str:
    """The checkpoint of the trained demo network, training (or finishing training) it if needed."""
    checkpoint = model_path(config.workdir, config.epochs)
    if os.path.isfile(checkpoint):
        print(f"using the trained network {checkpoint}")
        return checkpoint
    training = demo_training(config)
    done = [e for e in resumable_epochs(config.workdir) if e < config.epochs]
    if done:
        training = replace(training, resume_epoch=done[-1])
    print(f"training demo_mlp on the spirals data for {config.epochs} epochs into {config.workdir}", flush=True)
    began = time.perf_counter()
    train(training)
    print(f"trained in {time.perf_counter() - began:.1f} s")
    return checkpoint


def find_mpirun() -> str | None:
    """The ``mpirun`` installed next to this Python (e.g. the mpich wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which("mpirun")


def surface_arguments(config: DemoConfig, checkpoint: str, surf_file: str) -> list[str]:
    """The surface command's flags for the demo network."""
    return ["--model", "demo_mlp", "--model_file", checkpoint, "--dataset", "demo",
            "--splits", "train,test", f"--x={config.x}", f"--y={config.y}", "--surf_file", surf_file]


def run_demo(config: DemoConfig) -> str:
    """Train if needed, compute the surface, and return the surface file's absolute path."""
    if config.np < 1:
        raise LandscapeError(f"--np must be at least 1, got {config.np}")
    checkpoint = ensure_trained(config)
    surf_file = os.path.abspath(os.path.join(config.workdir, SURFACE_FILE))
    arguments = surface_arguments(config, checkpoint, surf_file)
    mpirun = find_mpirun() if config.np > 1 else None
    if mpirun is None:
        if config.np > 1:
            print("no mpirun found (install the 'mpich' package); computing the surface in this process")
        from .surface import main as surface_main

        status = surface_main(arguments)
    else:
        command = [mpirun, "-n", str(config.np), sys.executable, "-m", "mpi_landscape.surface", *arguments]
        print("$ " + " ".join(command), flush=True)
        status = subprocess.run(command).returncode
    if status != 0:
        raise LandscapeError(f"the surface command exited with status {status}; rerun the demo to resume it")
    return surf_file


def draw(surf_file: str) -> None:
    """The demo surface's pictures, by the plot and vtk commands (which print the paths they write)."""
    from . import plot, vtk

    picture = os.path.join(os.path.dirname(surf_file), VTK_PICTURE)
    for command, argv in ((plot.main, [surf_file, "--kinds", "contour,surface", "--format", "png"]),
                          (vtk.main, [surf_file, "--log", "--png", picture])):
        status = command(argv)
        if status:
            raise LandscapeError(f"drawing {surf_file} failed (status {status})")


def build_parser() -> argparse.ArgumentParser:
    """The demo's flags."""
    p = new_parser("mpi_landscape.demo", DemoConfig,
                   "Train a small network on built-in data and compute its 2D loss surface over MPI ranks.")
    add_flag(p, "--workdir", help="folder for the checkpoints, training log and surface file")
    add_flag(p, "--np", type=int, help="number of MPI ranks for the surface")
    add_flag(p, "--x", help="x axis as min:max:num, e.g. --x=-1:1:41")
    add_flag(p, "--y", help="y axis as min:max:num")
    add_flag(p, "--epochs", type=int, help="training epochs")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo and say where the result is and what to do with it."""
    config = parse_config(build_parser(), DemoConfig, argv)
    with exit_on_user_error():
        surf_file = run_demo(config)
        print(f"demo surface written to {surf_file}\npictures:", flush=True)
        draw(surf_file)
    print(f"more views: {sys.executable} -m mpi_landscape.plot --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
