"""The library entry point for notebooks and scripts: a surface from objects in memory.

    from mpi_landscape import compute_surface
    surface = compute_surface(net, train_loader, x="-1:1:21", y="-1:1:21")
    surface.plot()                      # the command line's figures, paths returned
    surface.view()                      # the interactive page, shown inline in a notebook
    surface.save("net_surface.h5")      # a file plot, vtk and summary read
    again = compute_surface(net, test_set, x="-1:1:21", y="-1:1:21", directions=surface.directions)

No MPI, no checkpoint files: the network, the data and (optionally) the
directions are passed in; the same evaluator and direction code as the MPI
engine does the work, so the numbers are the ones the command line would give.
See docs/library.md for every parameter and field.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .directions import (Direction, DirectionSpec, create_directions, describe_directions, model_tensors,
                         save_directions)
from .errors import LandscapeError
from .evaluate import PointEvaluator, SplitData
from .grid import Grid
from .store import Surface
from .task import Task, make_task, metric_names
from .threads import sized_thread_pool

# One split as a user may have it: (inputs, targets) of tensors or numpy arrays, a Dataset or
# DataLoader yielding (inputs, targets) pairs, or the evaluator's own SplitData.
DataLike = SplitData | tuple[Any, Any] | Dataset | DataLoader
DATASET_BATCH = 1024  # samples per batch when a Dataset is read into memory


@dataclass
class ComputedSurface(Surface):
    """A ``Surface`` computed in memory, with the directions it was computed along.

    ``directions`` (x, y) can be passed back to ``compute_surface`` to evaluate
    the same plane again (another split, a later checkpoint of the same net).
    """

    directions: tuple[Direction, Direction | None] = (None, None)
    spec: DirectionSpec = field(default_factory=DirectionSpec)
    path: str | None = None
    _net: torch.nn.Module | None = field(default=None, repr=False)  # names and shapes for the direction file
    _scratch: bool = field(default=False, repr=False)  # ``path`` is the temporary copy plot() and vtk() read

    def save(self, path: str) -> str:
        """Write the surface file ``path`` and its direction file beside it (``<name>.directions.h5``),
        in the layout the command line writes; refuses to replace an existing file. Returns ``path``."""
        from . import store

        dir_file = os.path.splitext(path)[0] + ".directions.h5"
        for existing in (path, dir_file):
            if os.path.exists(existing):
                raise LandscapeError(f"{existing} exists: save to another path, or remove it first")
        save_directions(dir_file, self._net, self.spec, *self.directions)
        provenance = {"config": {**self.attrs, "dir_file": dir_file, "surf_file": path},
                      "directions": describe_directions(dir_file)}
        writer = store.SurfaceWriter.open(path, self.x, self.y, dir_file, list(self.metrics),
                                          identity={"source": "mpi_landscape.compute_surface"},
                                          attrs=provenance, flush_seconds=float("inf"))
        for index in np.flatnonzero(self.done.ravel()):
            writer.record(int(index), {k: float(v.ravel()[index]) for k, v in self.metrics.items()})
        writer.close()
        self.path, self.dir_file, self._scratch = path, dir_file, False
        return path

    def plot(self, *flags: str) -> list[str]:
        """Draw the command line's figures (``python -m mpi_landscape.plot FILE *flags``) and
        return the paths written. They go beside the saved file; for a surface not saved yet,
        into the current folder as ``surface_*`` (its file is put in a temporary folder for the
        plot command to read), unless ``--out`` says where."""
        from . import plot

        unsaved = self.path is None or self._scratch
        out = ["--out", os.path.join(os.getcwd(), "surface")] \
            if unsaved and not any(f == "--out" or f.startswith("--out=") for f in flags) else []
        return _run_entry_point(plot.main, [self._saved_path(), *out, *flags])

    def vtk(self, *flags: str) -> list[str]:
        """Export for ParaView (``python -m mpi_landscape.vtk FILE *flags``); the paths written."""
        from . import vtk

        return _run_entry_point(vtk.main, [self._saved_path(), *flags])

    def view(self, *flags: str, height: int = 900) -> str:
        """Write the interactive page (``python -m mpi_landscape.view FILE *flags``), show it in the
        notebook when run in one (IPython), and return its path. An unsaved surface is saved first."""
        from . import view

        path = _run_entry_point(view.main, [self._saved_path(), *flags])[0]
        _show_inline(path, height)
        return path

    def _saved_path(self) -> str:
        if self.path is None:
            self.save(os.path.join(tempfile.mkdtemp(prefix="surface_"), "surface.h5"))
            self._scratch = True
        return self.path


def compute_surface(net: torch.nn.Module, data: DataLike | Mapping[str, DataLike],
                    x: str = "-1:1:51", y: str | None = None, *,
                    directions: tuple[Direction, Direction | None] | None = None,
                    spec: DirectionSpec | None = None, loss_name: str = "crossentropy",
                    batch_size: int | None = None, device: str | torch.device | None = None,
                    progress: bool = True, task: Task | str = "classification",
                    fold_bn: bool = True) -> ComputedSurface:
    """The loss and metrics of ``task`` for ``net`` over the grid ``x`` (and ``y``), as a ``ComputedSurface``.

    ``data`` is one split (evaluated as "train") or a mapping of split name to
    split; a split is ``(inputs, targets)`` of tensors or numpy arrays (inputs
    may also be a dict or a tuple of tensors), a ``Dataset`` or a ``DataLoader``
    yielding ``(inputs, targets)``. ``task`` is a built-in name
    (classification, language_model, regression) or a ``Task``. The
    directions are ``directions`` (e.g. an earlier ``surface.directions``) or
    else drawn as ``spec`` says (seeded, filter-normalized by default).
    ``net`` is moved to the points in place; its weights, device and
    train/eval mode are restored afterwards, also when the call is interrupted.
    """
    grid = Grid.parse(x, y)
    spec = spec or DirectionSpec(two_d=grid.is_2d)
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.get_default_dtype())
    splits = {k: as_split(v, dtype) for k, v in (data.items() if isinstance(data, Mapping) else [("train", data)])}
    names, theta = model_tensors(net, spec.dir_type)
    dx, dy = directions if directions is not None else create_directions(net, spec)
    _check_directions(dx, dy, grid, names, theta)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task = make_task(task, loss_name)
    metrics = {k: np.full(grid.shape, np.nan) for k in metric_names(splits, task)}
    done = np.zeros(grid.shape, dtype=bool)
    with _restored(net):
        evaluator = PointEvaluator(net, spec.dir_type, dx, dy if grid.is_2d else None, splits,
                                   loss_name, batch_size, device, task=task, fold_bn=fold_bn)
        first = next(iter(splits.values()))
        with sized_thread_pool(net, first.inputs, evaluator.batch_size, device), \
                _progress(grid.size, progress) as bar:
            for index, alpha, beta in _points(grid):
                values = evaluator(alpha, beta)
                for k in metrics:
                    metrics[k].ravel()[index] = values[k]
                done.ravel()[index] = True
                bar.update(1)
    attrs = {"model": type(net).__name__, "loss_name": loss_name, "task": task.name, "x": x, "y": y,
             "dataset_size": {k: len(v) for k, v in splits.items()}}
    return ComputedSurface(grid.xcoordinates(), grid.ycoordinates(), metrics, done, None, attrs,
                           directions=(dx, dy if grid.is_2d else None), spec=spec, _net=net)


def _points(grid: Grid) -> Iterable[tuple[int, float, float]]:
    """``(flat index, alpha, beta)`` of every point, coarse to fine, computed at once (a small
    network's point takes about a millisecond, so per-point bookkeeping shows)."""
    order = grid.coarse_to_fine()
    iy, ix = np.divmod(order, grid.x.num)
    betas = grid.ycoordinates()[iy] if grid.is_2d else np.zeros(len(order))
    return zip(order.tolist(), grid.xcoordinates()[ix].tolist(), betas.tolist())


def as_split(value: DataLike, dtype: torch.dtype = torch.float32) -> SplitData:
    """One split in the evaluator's form: whole-split input and target tensors.

    Floating inputs take ``dtype`` (the network's); integer targets become int64
    (class indices, tokens), floating targets (regression) ``dtype`` too.
    """
    if isinstance(value, SplitData):
        return value
    if isinstance(value, DataLoader):
        inputs, targets = _concatenate(value)
    elif isinstance(value, Dataset):
        inputs, targets = _concatenate(DataLoader(value, batch_size=DATASET_BATCH))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        inputs, targets = value
    else:
        raise LandscapeError("data must be (inputs, targets) of tensors or numpy arrays, a Dataset or a "
                             f"DataLoader of (inputs, targets) pairs, or a dict of those; got {type(value).__name__}")
    inputs, targets = _as_tensors(inputs, dtype), _as_tensors(targets, dtype)
    rows = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs[0] if isinstance(inputs, tuple) else inputs)
    if rows != len(targets):
        raise LandscapeError(f"data has {rows} inputs but {len(targets)} targets")
    return SplitData(inputs, targets if targets.is_floating_point() else targets.long())


def _as_tensors(value, dtype: torch.dtype):
    """A tensor, numpy array, or a dict or tuple of them, as tensors; floating ones take ``dtype``."""
    if isinstance(value, Mapping):
        return {k: _as_tensors(v, dtype) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_as_tensors(v, dtype) for v in value)
    tensor = value if torch.is_tensor(value) else torch.as_tensor(np.asarray(value))
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


def _concatenate(batches: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(inputs, targets)`` batches of a DataLoader joined into two tensors."""
    inputs, targets = [], []
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise LandscapeError("a Dataset or DataLoader must yield (inputs, targets) pairs; "
                                 f"got {type(batch).__name__}")
        inputs.append(torch.as_tensor(batch[0]))
        targets.append(torch.as_tensor(batch[1]))
    if not inputs:
        raise LandscapeError("the Dataset or DataLoader is empty")
    return torch.cat(inputs), torch.cat(targets)


def _check_directions(dx: Direction, dy: Direction | None, grid: Grid, names: list[str],
                      theta: list[torch.Tensor]) -> None:
    """Refuse directions that do not fit ``net`` tensor by tensor, or a 2D grid without a y direction."""
    if grid.is_2d and dy is None:
        raise LandscapeError("a 2D grid (y given) needs directions with a y direction")
    for axis, direction in (("x", dx), ("y", dy if grid.is_2d else None)):
        if direction is None:
            continue
        shapes = [tuple(t.shape) for t in direction]
        expected = [tuple(t.shape) for t in theta]
        if shapes != expected:
            where = next((n for n, a, b in zip(names, shapes, expected) if a != b), "the tensor count")
            raise LandscapeError(f"the {axis} direction does not fit the network ({where} differs): "
                                 "pass directions computed for this network and dir_type")


@contextlib.contextmanager
def _restored(net: torch.nn.Module):
    """Whatever happens inside, ``net`` leaves with its weights, device, modes and module forwards
    (which folded BatchNorm replaces) as they were."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    modes = {m: m.training for m in net.modules()}
    forwards = {m: m.__dict__.get("forward") for m in net.modules()}
    device = next((t.device for t in net.state_dict().values()), torch.device("cpu"))
    try:
        yield
    finally:
        net.to(device)
        net.load_state_dict(state)
        for module, training in modes.items():
            module.train(training)
        for module, forward in forwards.items():
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward


def _progress(total: int, show: bool):
    """A progress bar (a widget in a notebook, text on a terminal), or one that draws nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pt", desc="surface", disable=not show, dynamic_ncols=True)


def _show_inline(page: str, height: int) -> None:
    """Display the page in the running IPython kernel, in an iframe of its own (its scripts and
    styles kept apart from the notebook's); nothing outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    with open(page, encoding="utf-8") as f:
        document = html.escape(f.read(), quote=True)
    frame = f'<iframe srcdoc="{document}" style="width: 100%; height: {int(height)}px; border: 0"></iframe>'
    display(HTML(f"<div>{frame}</div>"))  # IFrame takes a URL, and a kernel's files may have none


def _run_entry_point(main, argv: list[str]) -> list[str]:
    """Run a command's ``main(argv)`` in this process; the paths it prints, or its error as a LandscapeError."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except SystemExit as stopped:
        status = stopped.code
    if status:
        raise LandscapeError(err.getvalue().strip().removeprefix("error: ") or f"exit status {status}")
    sys.stderr.write(err.getvalue())
    return [line for line in out.getvalue().splitlines() if line and os.path.exists(line)]
