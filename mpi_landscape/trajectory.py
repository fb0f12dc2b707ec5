"""``python -m mpi_landscape.trajectory``: PCA directions of an optimizer's path, and the path in them.

    python -m mpi_landscape.trajectory --model resnet56 --model_folder runs/resnet56 \\
        --start_epoch 0 --max_epoch 300 --save_epoch 1

Reads the checkpoints ``<model_folder>/model_<epoch>.t7`` of one training run,
takes the top two principal components of [θ_i − θ_n] (θ_n: the last epoch)
as x and y directions, writes them as a direction file in the reference's
layout (with sklearn's ``explained_variance_ratio_``, ``singular_values_`` and
``explained_variance_``), and writes the coordinates of every checkpoint in
that plane into a projection file. A surface along the PCA directions is then
an ordinary surface run with ``--model_file`` = the last checkpoint and
``--dir_file`` = this direction file; ``mpi_landscape.plot --proj_file``
draws the path on it. Both commands are printed, complete (with the data
flags given here), so they run as printed.

Which checkpoints: the epochs ``start_epoch, start_epoch + save_epoch, ...``
up to ``max_epoch``, plus ``max_epoch`` itself when the step skips it (the
trainer always saves its last epoch). ``max_epoch`` defaults to the highest
epoch in the folder. Every one of these must exist; other files in the folder
are not used.

Both outputs are reused when they exist and fit the request (rerunning a
command recomputes nothing); a file made from other epochs is refused, never
overwritten.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass

import numpy as np
import torch

from .cli import add_flag, exit_on_user_error, new_parser, parse_config
from .directions import DIR_TYPES, IGNORES, DirectionSpec, fingerprint, load_directions, model_tensors, save_directions
from .errors import LandscapeError, require_folder
from .pca import PROJECTIONS, principal_components, project
from .networks import build_network, load_weights
from .train import LOG_FILE, lr_drops, read_log, saved_epochs
from .store import read_directions, read_projection, write_projection



@dataclass(frozen=True)
class TrajectoryConfig:
    """Everything one trajectory run needs, as given on the command line."""

    model: str = "resnet56"
    model_folder: str | None = None
    start_epoch: int = 0
    max_epoch: int | None = None
    save_epoch: int = 1
    prefix: str = "model_"
    suffix: str = ".t7"
    dir_type: str = "weights"
    ignore: str = "none"
    projection: str = "cos"
    dir_file: str | None = None
    proj_file: str | None = None
    dataset: str = "cifar10"
    datapath: str = "cifar10/data"
    raw_data: bool = False
    task: str = "classification"

    def resolved_dir_file(self) -> str:
        """``--dir_file``, or the reference's ``<folder>/PCA_<dir_type>[_ignore=..]_save_epoch=<s>/directions.h5``."""
        if self.dir_file:
            return self.dir_file
        name = f"PCA_{self.dir_type}"
        name += f"_ignore={self.ignore}" if self.ignore != "none" else ""
        name += f"_save_epoch={self.save_epoch}"
        return os.path.join(self.model_folder or ".", name, "directions.h5")

    def resolved_proj_file(self) -> str:
        """``--proj_file``, or the reference's ``<dir_file>_proj_<projection>.h5``."""
        return self.proj_file or f"{self.resolved_dir_file()}_proj_{self.projection}.h5"


@dataclass(frozen=True)
class Checkpoint:
    """One saved model of the training run."""

    epoch: int
    path: str


@dataclass
class TrajectoryResult:
    """What a run produced: the two files, the final checkpoint θ_n and the path's coordinates in the PCA plane."""

    dir_file: str
    proj_file: str
    model_file: str  # the last checkpoint of the series, the model the directions start from
    epochs: np.ndarray
    xcoord: np.ndarray
    ycoord: np.ndarray
    explained_variance_ratio: np.ndarray | None  # None when the direction file holds no PCA ratios


def checkpoint_series(folder: str, start_epoch: int = 0, max_epoch: int | None = None,
                      save_epoch: int = 1, prefix: str = "model_", suffix: str = ".t7") -> list[Checkpoint]:
    """The checkpoints of the run in ``folder``, oldest first (see the module docstring for the rule)."""
    if not os.path.isdir(folder):
        raise LandscapeError(f"--model_folder {folder} is not a folder")
    if save_epoch < 1 or start_epoch < 0:
        raise LandscapeError(f"--save_epoch must be >= 1 and --start_epoch >= 0 "
                             f"(got {save_epoch} and {start_epoch})")
    if max_epoch is None:
        found = saved_epochs(folder, prefix, suffix)
        if not found:
            raise LandscapeError(f"no checkpoints named {prefix}<epoch>{suffix} in {folder}; "
                                 f"check --model_folder, --prefix and --suffix")
        max_epoch = found[-1]
    epochs = list(range(start_epoch, max_epoch + 1, save_epoch))
    if not epochs or epochs[-1] != max_epoch:
        epochs.append(max_epoch)
    series = [Checkpoint(e, os.path.join(folder, f"{prefix}{e}{suffix}")) for e in epochs]
    missing = [c.path for c in series if not os.path.isfile(c.path)]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise LandscapeError(f"{len(missing)} of {len(series)} checkpoints are missing: {shown}; "
                             f"pass the --start_epoch/--max_epoch/--save_epoch the run was saved with")
    return series


def lr_drop_epochs(folder: str) -> np.ndarray:
    """The epochs after which the learning rate changed (``train.lr_drops``), from ``log.csv``.

    Empty when the folder has no training log.
    """
    if not os.path.isfile(os.path.join(folder, LOG_FILE)):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(lr_drops(read_log(folder)), dtype=np.int64)


class TensorLayout:
    """Which model tensors enter the trajectory matrix, and where each sits in a row.

    Integer entries (BatchNorm's ``num_batches_tracked``) never do: evaluation
    leaves them at θ*. With ``ignore="biasbn"`` neither do tensors with
    dim <= 1 (biases, BatchNorm parameters and statistics); their directions
    are written as zeros, as the reference does.
    """

    def __init__(self, net: torch.nn.Module, dir_type: str, ignore: str):
        if ignore not in IGNORES:
            raise LandscapeError(f"--ignore {ignore!r}: choose biasbn or none")
        self.dir_type = dir_type
        self.names, tensors = model_tensors(net, dir_type)
        self.shapes = [tuple(t.shape) for t in tensors]
        self.kept = [t.is_floating_point() and not (ignore == "biasbn" and t.dim() <= 1) for t in tensors]
        sizes = [t.numel() if keep else 0 for t, keep in zip(tensors, self.kept)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.size = int(self.offsets[-1])

    def fill(self, row: np.ndarray, net: torch.nn.Module) -> None:
        """Write the model's kept tensors into ``row`` (float32, length ``size``)."""
        _, tensors = model_tensors(net, self.dir_type)
        for i, t in enumerate(tensors):
            if self.kept[i]:
                row[self.offsets[i]:self.offsets[i + 1]] = t.reshape(-1).cpu().numpy()

    def unflatten(self, vector: np.ndarray) -> list[torch.Tensor]:
        """A row vector as one float32 tensor per model tensor (zeros where not kept)."""
        out = []
        for i, shape in enumerate(self.shapes):
            if self.kept[i]:
                part = vector[self.offsets[i]:self.offsets[i + 1]].reshape(shape)
                out.append(torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)))
            else:
                out.append(torch.zeros(shape, dtype=torch.float32))
        return out

    def flatten(self, direction: list[torch.Tensor]) -> np.ndarray:
        """The kept entries of a direction, in row order (float64)."""
        return np.concatenate([d.reshape(-1).double().numpy()
                               for d, keep in zip(direction, self.kept) if keep])


def trajectory_matrix(net: torch.nn.Module, series: list[Checkpoint], layout: TensorLayout) -> np.ndarray:
    """[θ_i − θ_n] for every checkpoint (θ_n: the last), one float32 row each, built in place.

    The one (n_checkpoints × n_kept) array is the only copy; each checkpoint is
    loaded into ``net`` in turn.
    """
    matrix = np.empty((len(series), layout.size), dtype=np.float32)
    final = matrix[-1]
    load_weights(net, series[-1].path)
    layout.fill(final, net)
    for row, checkpoint in zip(matrix[:-1], series[:-1]):
        load_weights(net, checkpoint.path)
        layout.fill(row, net)
        row -= final
    final.fill(0.0)
    return matrix


def run(config: TrajectoryConfig) -> TrajectoryResult:
    """PCA directions of the run in ``config.model_folder`` and its path projected onto them."""
    if not config.model_folder:
        raise LandscapeError("--model_folder is required: the folder with the run's checkpoints")
    series = checkpoint_series(config.model_folder, config.start_epoch, config.max_epoch,
                               config.save_epoch, config.prefix, config.suffix)
    epochs = np.array([c.epoch for c in series], dtype=np.int64)
    drops = lr_drop_epochs(config.model_folder)
    net = build_network(config.model)
    layout = TensorLayout(net, config.dir_type, config.ignore)
    dir_file, proj_file = config.resolved_dir_file(), config.resolved_proj_file()
    for flag, given in (("--dir_file", config.dir_file), ("--proj_file", config.proj_file)):
        if given:
            require_folder(given, f"{flag} {given}")
    directions = _existing_directions(dir_file, net, config.dir_type, epochs, config.ignore)
    matrix, ratio = None, _recorded_ratio(dir_file) if directions is not None else None
    if directions is None:
        matrix = trajectory_matrix(net, series, layout)
        directions, ratio = _pca_directions(matrix, layout, dir_file, config, net, series)
    if os.path.exists(proj_file):
        return _existing_projection(proj_file, dir_file, series[-1].path, directions, epochs, config.projection, ratio)
    if matrix is None:
        matrix = trajectory_matrix(net, series, layout)
    xcoord, ycoord = project(matrix, layout.flatten(directions[0]), layout.flatten(directions[1]),
                             config.projection)
    write_projection(proj_file, xcoord, ycoord, epochs, drops, {
        "dir_file": dir_file, "projection": config.projection, "dir_type": config.dir_type,
        "ignore": config.ignore, "model": config.model, "model_folder": config.model_folder,
        "model_files": [c.path for c in series], "directions_sha256": fingerprint(*directions),
    })
    return TrajectoryResult(dir_file, proj_file, series[-1].path, epochs, xcoord, ycoord, ratio)


def _existing_directions(dir_file: str, net: torch.nn.Module, dir_type: str, epochs: np.ndarray,
                         ignore: str) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
    """The directions already in ``dir_file`` (checked against the model, epochs and --ignore), or None."""
    if not os.path.exists(dir_file):
        return None
    attrs = read_directions(dir_file, tensors=False).attrs
    made_from = attrs.get("epochs")
    if made_from is not None and list(made_from) != epochs.tolist():
        raise LandscapeError(
            f"{dir_file} holds PCA directions of epochs {_epochs_text(made_from)}, not of "
            f"{_epochs_text(epochs)}; pass another --dir_file, or delete it to recompute"
        )
    if attrs.get("ignore", ignore) != ignore:
        raise LandscapeError(
            f"{dir_file} holds PCA directions made with --ignore {attrs['ignore']}, not {ignore}; "
            f"pass another --dir_file, or delete it to recompute"
        )
    return load_directions(dir_file, net, dir_type, two_d=True)


def _existing_projection(proj_file: str, dir_file: str, model_file: str, directions, epochs: np.ndarray,
                         projection: str, ratio: np.ndarray | None) -> TrajectoryResult:
    """Reuse a projection file that was made from these directions, epochs and projection."""
    existing = read_projection(proj_file)
    same = (existing.epochs.tolist() == epochs.tolist()
            and existing.attrs.get("projection") == projection
            and existing.attrs.get("directions_sha256") == fingerprint(*directions))
    if not same:
        raise LandscapeError(
            f"{proj_file} holds a projection of other checkpoints, directions or --projection; "
            f"pass another --proj_file, or delete it to recompute"
        )
    return TrajectoryResult(dir_file, proj_file, model_file, existing.epochs, existing.xcoord, existing.ycoord,
                            ratio)


def _pca_directions(matrix: np.ndarray, layout: TensorLayout, dir_file: str, config: TrajectoryConfig,
                    net: torch.nn.Module, series: list[Checkpoint]) -> tuple[tuple, np.ndarray]:
    """The top two principal components as direction tensors, written to ``dir_file``; and their ratios."""
    components = principal_components(matrix, 2)
    directions = tuple(layout.unflatten(v) for v in components.vectors)
    os.makedirs(os.path.dirname(os.path.abspath(dir_file)), exist_ok=True)  # the default's PCA_... folder
    spec = DirectionSpec(config.dir_type, "none", "none", config.ignore, config.ignore)
    save_directions(dir_file, net, spec, directions[0], directions[1], provenance={
        "method": "pca", "centred": True, "model": config.model,
        "model_file": series[-1].path, "model_folder": config.model_folder,
        "epochs": [c.epoch for c in series], "ignore": config.ignore,
    }, extras={
        "explained_variance_ratio_": components.explained_variance_ratio,
        "singular_values_": components.singular_values,
        "explained_variance_": components.explained_variance,
    })
    return directions, components.explained_variance_ratio


def _recorded_ratio(dir_file: str) -> np.ndarray | None:
    """The explained variance ratios a PCA direction file holds (so a rerun reports them too), or None."""
    ratio = read_directions(dir_file, tensors=False).extras.get("explained_variance_ratio_")
    return None if ratio is None else np.asarray(ratio, dtype=np.float64).ravel()


def _epochs_text(epochs) -> str:
    epochs = list(epochs)
    return f"{epochs[0]}..{epochs[-1]} ({len(epochs)} checkpoints)" if epochs else "none"


def covering_axis(values: np.ndarray, num: int = 21, margin: float = 0.2) -> str:
    """A grid spec ``lo:hi:num`` covering ``values`` with ``margin`` of their span on each side."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = margin * max(hi - lo, 1e-8)
    return f"{lo - pad:.3g}:{hi + pad:.3g}:{num}"


def build_parser():
    """The trajectory command's flags (the reference's plot_trajectory.py names, dashed aliases too)."""
    p = new_parser(
        "mpi_landscape.trajectory", TrajectoryConfig,
        "PCA directions of a training run's checkpoints, and the run's path projected onto them.")
    add_flag(p, "--model", help="registered model name (e.g. resnet56) or package.module:factory")
    add_flag(p, "--model_folder", help="folder holding the checkpoints <prefix><epoch><suffix>")
    add_flag(p, "--start_epoch", type=int, help="first epoch of the path")
    add_flag(p, "--max_epoch", type=int, help="last epoch, the final model θ_n; leave out for the last one in the folder")
    add_flag(p, "--save_epoch", type=int, help="step between the epochs used")
    add_flag(p, "--prefix", help="checkpoint name before the epoch")
    add_flag(p, "--suffix", help="checkpoint name after the epoch")
    add_flag(p, "--dir_type", choices=DIR_TYPES,
             help="PCA over parameters (weights) or the whole state_dict incl. BN statistics (states)")
    add_flag(p, "--ignore", choices=IGNORES, help="biasbn: leave biases and BN tensors out (zero direction)")
    add_flag(p, "--projection", choices=PROJECTIONS,
             help="cos: dot product with each direction (the reference's); lstsq: least squares")
    add_flag(p, "--dir_file", help="direction file to write, or to reuse if it exists; "
             "leave out for <model_folder>/PCA_<dir_type>[_ignore=biasbn]_save_epoch=<s>/directions.h5")
    add_flag(p, "--proj_file", help="projection file to write; leave out for <dir_file>_proj_<projection>.h5")
    add_flag(p, "--dataset", help="data the printed surface command evaluates on: cifar10, demo or "
             "package.module:factory (the PCA itself reads checkpoints only)")
    add_flag(p, "--datapath", help="folder holding cifar-10-batches-py, for the printed surface command")
    add_flag(p, "--raw_data", action="store_true", help="no input normalization, for the printed surface command")
    add_flag(p, "--task", help="what a batch means, for the printed surface command: classification, "
                               "language_model, regression or package.module:factory")
    return p


def next_commands(config: TrajectoryConfig, result: TrajectoryResult) -> tuple[str, str]:
    """The surface command along the PCA directions over the path, and the plot command that draws
    the path on it: complete shell lines, quoted, that run as printed."""
    surf_file = os.path.join(os.path.dirname(result.dir_file), "surface.h5")
    surface = ["mpirun", "-n", "4", "python", "-m", "mpi_landscape.surface", "--model", config.model,
               "--model_file", result.model_file, "--dataset", config.dataset, "--datapath", config.datapath,
               *(["--raw_data"] if config.raw_data else []),
               *(["--task", config.task] if config.task != "classification" else []),
               "--dir_type", config.dir_type, "--dir_file", result.dir_file, f"--x={covering_axis(result.xcoord)}",
               f"--y={covering_axis(result.ycoord)}", "--surf_file", surf_file]
    plot = ["python", "-m", "mpi_landscape.plot", surf_file, "--proj_file", result.proj_file]
    return shlex.join(surface), shlex.join(plot)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, print where the files are and how to compute the surface."""
    config = parse_config(build_parser(), TrajectoryConfig, argv)
    with exit_on_user_error():
        result = run(config)
    if result.explained_variance_ratio is not None:
        ratios = ", ".join(f"{r:.4f}" for r in result.explained_variance_ratio)
        print(f"explained variance ratio of the two PCA directions: {ratios}")
    print(f"direction file: {result.dir_file}")
    print(f"projection file: {result.proj_file} ({len(result.epochs)} checkpoints)")
    surface, plot = next_commands(config, result)
    print(f"surface along these directions:\n  {surface}\nthe path on it:\n  {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
