"""Make the gallery's trajectory, 3D, VTK and weight-histogram pictures from a real demo run.

    python docs/gallery_3d.py [--workdir gallery_output]     # or: make gallery-3d

Trains the demo network twice (small and large batch, weight decay 5e-4, a
checkpoint per epoch), takes the PCA directions of the small-batch run, computes
the surface around its final model along them and one along filter-normalized
random directions (``mpirun -n 2``), then runs the documented commands that draw
docs/images/gallery/trajectory_*.png, 3d_*.png, vtk_*.png and weights_*.png
(docs/figures.md shows each beside the paper's figure), and, where ParaView's
``pvbatch`` is installed, docs/paraview.md's steps (vtk_paraview_*.png). Each
command is printed before it runs; a run whose output is already in the
workdir is not run again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

GALLERY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images", "gallery")
PCA = "runs/small_batch/PCA_weights_ignore=biasbn_save_epoch=1"


def commands(mpirun: str) -> list[tuple[str | None, list[str]]]:
    """(a file the step writes, or None to always run; the command), in order."""
    py = [sys.executable, "-m"]
    train = ["--model", "demo_mlp", "--dataset", "demo", "--lr", "0.1", "--epochs", "20",
             "--lr_milestones", "10,15", "--save_epoch", "1", "--weight_decay", "5e-4"]
    surface = [mpirun, "-n", "2", sys.executable, "-m", "mpi_landscape.surface", "--model", "demo_mlp",
               "--dataset", "demo", "--model_file", "runs/small_batch/model_20.t7"]
    return [
        ("runs/small_batch/model_20.t7",
         py + ["mpi_landscape.train", *train, "--batch_size", "32", "--save_dir", "runs/small_batch"]),
        ("runs/large_batch/model_20.t7",
         py + ["mpi_landscape.train", *train, "--batch_size", "1000", "--save_dir", "runs/large_batch"]),
        (f"{PCA}/directions.h5_proj_cos.h5",
         py + ["mpi_landscape.trajectory", "--model", "demo_mlp", "--model_folder", "runs/small_batch",
               "--ignore", "biasbn", "--dataset", "demo"]),
        ("pca_surface.h5",
         surface + ["--dir_type", "weights", "--dir_file", f"{PCA}/directions.h5", "--x=-2.36:13.3:41",
                    "--y=-4.32:1.68:31", "--surf_file", "pca_surface.h5"]),
        ("random_surface.h5",
         surface + ["--x=-1:1:41", "--y=-1:1:41", "--dir_file", "random_dirs.h5",
                    "--surf_file", "random_surface.h5"]),
        (None, py + ["mpi_landscape.plot", "pca_surface.h5", "--proj_file", f"{PCA}/directions.h5_proj_cos.h5",
                     "--kinds", "surface", "--format", "png", "--out", "trajectory"]),
        (None, py + ["mpi_landscape.plot", "random_surface.h5", "--kinds", "surface", "--format", "png",
                     "--out", "random"]),
        (None, py + ["mpi_landscape.vtk", "random_surface.h5", "--interp", "120", "--png", "vtk_surface.png"]),
        (None, py + ["mpi_landscape.vtk", "pca_surface.h5", "--interp", "120", "--proj_file",
                     f"{PCA}/directions.h5_proj_cos.h5", "--png", "vtk_trajectory.png"]),
        (None, py + ["mpi_landscape.plot", "--weights", "runs/small_batch/model_20.t7",
                     "runs/large_batch/model_20.t7", "--labels", "batch size 32,batch size 1000",
                     "--title", "weight decay 5e-4", "--format", "png", "--out", "weights"]),
    ]


PICTURES = {  # what the commands wrote -> its name in the gallery
    "trajectory_train_loss_2dcontour_proj.png": "trajectory_2d.png",
    "trajectory_train_loss_3dsurface_proj.png": "trajectory_3d.png",
    "random_train_loss_3dsurface.png": "3d_surface.png",
    "vtk_surface.png": "vtk_surface.png",
    "vtk_trajectory.png": "vtk_trajectory.png",
    "weights.png": "weights_batch_size.png",
}
PARAVIEW_PICTURES = {"paraview/warped.png": "vtk_paraview_warped.png", "paraview/path.png": "vtk_paraview_path.png"}
STEPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "paraview_steps.py")


def paraview_commands() -> list[tuple[str | None, list[str]]]:
    """docs/paraview.md's steps on the PCA surface in ParaView's pvbatch (under a virtual X server
    without a display): the exports it opens, then the scripted steps."""
    py = [sys.executable, "-m", "mpi_landscape.vtk", "pca_surface.h5", "--log"]
    pvbatch = ["pvbatch"] if os.environ.get("DISPLAY") else ["xvfb-run", "-a", "pvbatch"]
    os.makedirs("paraview", exist_ok=True)
    return [(None, py + ["--out", "paraview/surface.vtp"]),
            (None, py + ["--flat", "--proj_file", f"{PCA}/directions.h5_proj_cos.h5", "--out", "paraview/flat.vtp"]),
            (None, pvbatch + [STEPS, "paraview/surface.vtp", "paraview/flat.vtp", "paraview/flat_trajectory.vtp",
                              "paraview"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="gallery_output", help="where the runs and their files go")
    parser.add_argument("--mpirun", default=shutil.which("mpirun", path=os.path.dirname(sys.executable)) or "mpirun",
                        help="the MPI launcher (default: the environment's own, e.g. the mpich wheel's)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.workdir)
    steps = commands(args.mpirun)
    pictures = dict(PICTURES)
    if shutil.which("pvbatch"):
        steps += paraview_commands()
        pictures.update(PARAVIEW_PICTURES)
    else:
        print("pvbatch not found: the ParaView pictures are left as they are", file=sys.stderr)
    for output, command in steps:
        if output and os.path.exists(output):
            continue
        print("+", shlex.join(command), flush=True)
        tries = 2 if "xvfb-run" in command else 1  # two virtual X servers starting at once may collide
        for attempt in range(tries):
            done = subprocess.run(command, stdout=subprocess.DEVNULL)
            if done.returncode == 0:
                break
            if attempt == tries - 1:
                raise SystemExit(f"error: {shlex.join(command)} failed (exit status {done.returncode})")
    os.makedirs(GALLERY, exist_ok=True)
    for made, name in pictures.items():
        shutil.copyfile(made, os.path.join(GALLERY, name))
        print(os.path.join(GALLERY, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
