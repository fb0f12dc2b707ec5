"""``python -m mpi_landscape.surface``: compute a 1D or 2D loss surface into one HDF5 file.

    mpirun -n 16 python -m mpi_landscape.surface --model resnet56 \\
        --model_file resnet56.t7 --dataset cifar10 --datapath cifar10/data \\
        --x=-1:1:51 --y=-1:1:51

The flags are the reference's (plot_surface.py), with dashed aliases. MPI is
detected, CUDA is used when present; ``--mpi`` and ``--cuda`` are accepted for
old command lines and change nothing. Rerunning a command after its job was
killed computes only the points that are not in the file yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Callable

from .cli import add_flag, exit_on_user_error, given_flags, new_parser, parse_config
from .distributed import finalize_together, stop_signals_caught
from .directions import DIR_TYPES, IGNORES, NORMS, SPEC_FLAGS, TARGET_FLAGS, DirectionSpec, default_dir_file
from .evaluate import BN_MODES, PRECISIONS
from .task import LOSS_NAMES
from .grid import Grid

EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped by a signal; rerun the same command to finish


@dataclass(frozen=True)
class SurfaceConfig:
    """Everything one surface run needs, as given on the command line."""

    model: str = "resnet56"
    model_file: str | None = None
    model_file2: str | None = None
    model_file3: str | None = None
    x: str = "-1:1:51"
    y: str | None = None
    dir_type: str = "weights"
    xnorm: str = "filter"
    ynorm: str = "filter"
    xignore: str = "biasbn"
    yignore: str = "biasbn"
    same_dir: bool = False
    dir_file: str | None = None
    surf_file: str | None = None
    dataset: str = "cifar10"
    datapath: str = "cifar10/data"
    download: bool = False
    raw_data: bool = False
    data_split: int = 1
    splits: str = "train"
    loss_name: str = "crossentropy"
    task: str = "classification"
    batch_size: int | None = None
    precision: str = "fp32"
    low_memory: bool = False
    compile: bool = False
    bn: str = "eval"
    fold_bn: bool = True
    bn_batch_size: int = 128
    seed: int = 123
    coordinator_only: bool = False
    ranks_per_point: int = 1
    image_size: int = 224
    cache_dir: str | None = None
    stream: bool = False
    hessian: bool = False
    hessian_tol: float = 1e-3
    hessian_max_iter: int = 100
    flush_seconds: float = 2.0
    fsync_every_result: bool = False
    given: tuple[str, ...] | None = None  # the flags set on the command line; None: those off their defaults

    def is_given(self, name: str) -> bool:
        """Whether the field ``name`` was set by the user rather than left at its default."""
        if self.given is not None:
            return name in self.given
        return getattr(self, name) != next(f.default for f in dataclasses.fields(self) if f.name == name)

    def direction_flags_given(self) -> dict[str, object]:
        """The direction flags the user set, which an existing direction file must not contradict."""
        return {name: getattr(self, name) for name in (*SPEC_FLAGS, *TARGET_FLAGS)
                if self.is_given(name) and getattr(self, name) is not None}

    @property
    def grid(self) -> Grid:
        return Grid.parse(self.x, self.y)

    @property
    def split_list(self) -> list[str]:
        return [s.strip() for s in self.splits.split(",") if s.strip()]

    @property
    def direction_spec(self) -> DirectionSpec:
        return DirectionSpec(self.dir_type, self.xnorm, self.ynorm, self.xignore, self.yignore,
                             self.same_dir, self.seed, two_d=self.y is not None)

    def resolved_dir_file(self) -> str:
        """``--dir_file``, or the reference's name derived from the checkpoints and flags."""
        if self.dir_file:
            return self.dir_file
        return default_dir_file(self.model_file, self.direction_spec, self.model_file2,
                                self.model_file3)

    def resolved_surf_file(self) -> str:
        """``--surf_file``, or the reference's name: the direction file plus the grid."""
        if self.surf_file:
            return self.surf_file
        grid = self.grid
        name = self.resolved_dir_file()
        name += f"_[{grid.x.lo:g},{grid.x.hi:g},{grid.x.num}]"
        if grid.y is not None:
            name += f"x[{grid.y.lo:g},{grid.y.hi:g},{grid.y.num}]"
        name += "_rawdata" if self.raw_data else ""
        name += f"_datasplit={self.data_split}" if self.data_split > 1 else ""
        return name + ".h5"


def build_parser() -> argparse.ArgumentParser:
    """The surface command's flags (also the source of the CLI reference in docs/)."""
    p = new_parser(
        "mpi_landscape.surface", SurfaceConfig,
        "Compute loss and accuracy over a 1D line or a 2D grid of θ* + α·δ + β·η "
        "into one HDF5 file, over MPI ranks when run under mpirun.")
    add_flag(p, "--model", help="registered model name (e.g. resnet56) or package.module:factory")
    add_flag(p, "--model_file", required=True, help="checkpoint of θ* (.t7 from the reference, a state_dict, or ours)")
    add_flag(p, "--model_file2", help="second model: x direction becomes θ2 − θ1 (interpolation)")
    add_flag(p, "--model_file3", help="third model: y direction becomes θ3 − θ1 (plane of three)")
    add_flag(p, "--x", help="x axis as min:max:num, e.g. --x=-1:1:51")
    add_flag(p, "--y", help="y axis as min:max:num; leave out for a 1D line")
    add_flag(p, "--dir_type", choices=DIR_TYPES,
             help="directions over parameters (weights) or the whole state_dict incl. BN statistics (states)")
    add_flag(p, "--xnorm", choices=NORMS, help="normalization of the x direction (filter = the paper's)")
    add_flag(p, "--ynorm", choices=NORMS, help="normalization of the y direction")
    add_flag(p, "--xignore", choices=IGNORES, help="biasbn: zero direction on biases and BN parameters")
    add_flag(p, "--yignore", choices=IGNORES, help="biasbn: zero direction on biases and BN parameters")
    add_flag(p, "--same_dir", action="store_true", help="use the x direction as the y direction too")
    add_flag(p, "--dir_file", help="direction file to use or create (default: named after --model_file)")
    add_flag(p, "--surf_file", help="surface file to write or resume (default: named after --dir_file)")
    add_flag(p, "--dataset", help="cifar10, demo (built in, no download), imagefolder:PATH (train/ and "
                                  "val/ or test/, a folder per class) or package.module:factory")
    add_flag(p, "--datapath", help="folder holding cifar-10-batches-py")
    add_flag(p, "--download", action="store_true", help="download CIFAR-10 into --datapath if missing")
    add_flag(p, "--raw_data", action="store_true", help="no input normalization")
    add_flag(p, "--data_split", type=int, help="evaluate a fixed random 1/N of each split (quick preview)")
    add_flag(p, "--splits", help="splits to evaluate: train, test or train,test")
    add_flag(p, "--loss_name", choices=LOSS_NAMES, help="per-sample loss of --task classification")
    add_flag(p, "--task", help="what a batch means: classification, language_model, regression, "
                               "or package.module:factory returning a mpi_landscape.task.Task")
    add_flag(p, "--batch_size", type=int,
             help="evaluation batch size (default: the largest that fits on a GPU; on a CPU, the "
                  "whole split or equal batches whose largest activation is at most 32 MB, "
                  "e.g. 512 CIFAR images for a ResNet)")
    add_flag(p, "--precision", choices=tuple(PRECISIONS),
             help="forward pass precision; bf16/fp16 also store an fp32 check of the centre point")
    add_flag(p, "--low_memory", action="store_true",
             help="hold θ* and the directions in the --precision dtype (bf16/fp16) on the device: "
                  "10 instead of 16 bytes per weight for a 2D surface (see docs/method.md)")
    add_flag(p, "--compile", action="store_true", help="torch.compile the model (compile time reported apart)")
    add_flag(p, "--bn", choices=BN_MODES,
             help="eval: BatchNorm running statistics of the checkpoint (the reference); "
                  "recompute: re-estimated on the train split at every point")
    add_flag(p, "--bn_batch_size", type=int, help="batch size for --bn recompute")
    add_flag(p, "--no_fold_bn", dest="fold_bn", action="store_false",
             help="run each eval-mode BatchNorm module as it is (default: folded into the convolution or "
                  "linear layer before it: the same numbers to float32 rounding, faster; see docs/method.md)")
    add_flag(p, "--seed", type=int, help="seed of the random directions")
    add_flag(p, "--coordinator_only", action="store_true",
             help="rank 0 only hands out work and writes results (no evaluation)")
    add_flag(p, "--ranks_per_point", type=int,
             help="K: each point is evaluated by a group of K ranks, each holding 1/K of the data "
                  "(memory per rank falls K-fold; see docs/clusters.md)")
    add_flag(p, "--image_size", type=int,
             help="imagefolder: side of the centre crop the images are resized to (ImageNet mean/std)")
    add_flag(p, "--cache_dir", help="imagefolder: folder for the decoded images (default: beside the data)")
    add_flag(p, "--stream", action="store_true",
             help="stream the data from host memory in chunks even when it fits on the device")
    add_flag(p, "--flush_seconds", type=seconds,
             help="longest time between snapshots of the surface file (and fsyncs of its journal)")
    add_flag(p, "--fsync_every_result", action="store_true",
             help="fsync the journal after every result, so a power loss costs no finished point "
                  "(slower on network file systems)")
    add_flag(p, "--hessian", action="store_true",
             help="also max_eig, min_eig and eig_ratio=|min/max| of the Hessian of the first split's "
                  "loss at every point (Lanczos; tens of Hessian-vector products per point)")
    add_flag(p, "--hessian_tol", type=float,
             help="relative precision of max_eig and min_eig: Lanczos stops when each has settled and its residual "
                  "is below this fraction of max(|itself|, |max_eig|/100)")
    add_flag(p, "--hessian_max_iter", type=int, help="most Hessian-vector products per point")
    for legacy in ("--mpi", "--cuda"):
        add_flag(p, legacy, action="store_true", help="accepted for old command lines; not needed")
    for legacy in ("--ngpu", "--threads"):
        add_flag(p, legacy, type=int, help="accepted for old command lines; ignored (one GPU per rank, "
                                           "no data-loading threads)")
    return p


def seconds(text: str) -> float:
    """A ``--flush_seconds`` value: a finite number of seconds, 0 or more (with NaN or infinity no
    snapshot and no fsync of the journal would ever be due)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"give a number of seconds, 0 or more, e.g. 2 (got {text!r})")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, and turn a user error into one line and a non-zero exit."""
    return run_command("mpi_landscape.surface", build_parser(), argv)


def run_command(module: str, parser: argparse.ArgumentParser, argv: list[str] | None,
                adapt: Callable[[SurfaceConfig], SurfaceConfig] = lambda config: config) -> int:
    """Run the surface command line ``argv`` of ``python -m module``; its exit status.

    ``adapt`` turns the parsed config into the one to run (a LandscapeError it
    raises is a user error like any other). The status is 0 when the run
    ended, EXIT_STOPPED when a signal stopped it, 2 for a user error.
    """
    in_process = argv is not None  # called from Python, not as the process's own command line
    argv = sys.argv[1:] if argv is None else argv
    with stop_signals_caught(give_back=in_process):
        config = dataclasses.replace(parse_config(parser, SurfaceConfig, argv), given=given_flags(parser, argv))
        with exit_on_user_error():
            stats = run(adapt(config), command_line=["python", "-m", module, *argv])
        finalize_together()
    return EXIT_STOPPED if stats.stopped_early else 0


def run(config: SurfaceConfig, comm=None, command_line: list[str] | None = None):
    """Compute the surface ``config`` asks for on the ranks of ``comm`` (default: the world)."""
    from .engine import run_surface

    return run_surface(config, comm, command_line)


if __name__ == "__main__":
    sys.exit(main())
