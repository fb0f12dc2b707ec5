"""The HDF5 schema, in one place: direction files and surface files.

Both layouts are the reference's, so files move both ways between the two
tools; our additions live in attributes.

Direction file: groups ``xdirection`` and ``ydirection`` holding datasets
``"0"``, ``"1"``, ... (one per tensor, in the tensor's shape, float32), plus
optional extra datasets at the root (PCA's ``explained_variance_ratio_``).

Surface file: ``dir_file`` (string dataset), ``xcoordinates``,
``ycoordinates`` (float64 dimension scales) and one array per metric
(``train_loss``, ``train_acc``, ...) of shape ``(ny, nx)`` -- ``(nx,)`` for a
line -- with NaN where unfinished, and ``done`` (uint8), the authority on what
is finished. Root attributes carry the request's identity (checked on resume)
and provenance.

Durability: the live surface file is only ever replaced whole (written beside
it, then ``os.replace``), so a reader or a crash never sees it half written;
each result is appended to a journal (``<surf_file>.journal``) the moment it
arrives, so a killed job loses nothing that reached the coordinator. Reopening
replays the journal into the file.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import h5py
import numpy as np

from .errors import LandscapeError, require_folder

DIRECTION_GROUPS = ("xdirection", "ydirection")
IDENTITY_ATTR = "identity"
JOURNAL_SUFFIX = ".journal"


# ---------------------------------------------------------------- directions


@dataclass
class DirectionFile:
    """Direction tensors as numpy arrays, and the attributes they were saved with."""

    x: list[np.ndarray]
    y: list[np.ndarray] | None
    attrs: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def write_directions(
    path: str,
    x: Iterable[np.ndarray],
    y: Iterable[np.ndarray] | None = None,
    attrs: Mapping | None = None,
    extras: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write a direction file in the reference's layout, atomically."""
    with _atomic_h5(path) as f:
        for name, tensors in zip(DIRECTION_GROUPS, (x, y)):
            if tensors is None:
                continue
            group = f.create_group(name)
            for i, t in enumerate(tensors):
                group.create_dataset(str(i), data=np.asarray(t, dtype=np.float32))
        for key, value in (extras or {}).items():
            f.create_dataset(key, data=np.asarray(value))
        _set_attrs(f, attrs or {})


def read_directions(path: str, tensors: bool = True) -> DirectionFile:
    """Read a direction file written by this tool or by the reference.

    ``tensors=False`` reads only the attributes and root datasets (cheap for big nets).
    """
    if not os.path.isfile(path):
        raise LandscapeError(f"direction file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "xdirection" not in f:
                raise LandscapeError(
                    f"{path} is not a direction file: it has no 'xdirection' group"
                )
            groups = [(_read_tensor_group(f[g]) if tensors else []) if g in f else None
                      for g in DIRECTION_GROUPS]
            extras = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
            return DirectionFile(groups[0], groups[1], _get_attrs(f), extras)
    except OSError as exc:
        raise LandscapeError(f"cannot read direction file {path}: {exc}") from None


def _read_tensor_group(group: h5py.Group) -> list[np.ndarray]:
    keys = sorted(group.keys(), key=int)
    if keys != [str(i) for i in range(len(keys))]:
        raise LandscapeError(f"{group.name} must hold datasets named 0..N-1, found {keys[:5]}...")
    return [np.asarray(group[k][()]) for k in keys]


# ---------------------------------------------------------------- surfaces


@dataclass
class Surface:
    """A surface file read back: coordinates, metric arrays (ny, nx) and the done mask."""

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    done: np.ndarray
    dir_file: str | None
    attrs: dict

    @property
    def shape(self) -> tuple[int, ...]:
        return self.done.shape

    @property
    def fraction_done(self) -> float:
        return float(self.done.mean()) if self.done.size else 0.0


def read_surface(path: str) -> Surface:
    """Read a surface file of this tool or of the reference (any grid shape).

    The reference stored 2D arrays with shape (nx, ny) while filling them in
    (ny, nx) memory order and marked unfinished points with -1; both are
    mended here so every caller sees ``Z[iy, ix]`` and an honest ``done``.
    """
    if not os.path.isfile(path):
        raise LandscapeError(f"surface file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "xcoordinates" not in f:
                raise LandscapeError(f"{path} is not a surface file: it has no 'xcoordinates'")
            x = np.asarray(f["xcoordinates"][()], dtype=np.float64)
            y = np.asarray(f["ycoordinates"][()], dtype=np.float64) if "ycoordinates" in f else None
            shape = (len(y), len(x)) if y is not None else (len(x),)
            names = [k for k in f if k not in ("xcoordinates", "ycoordinates", "dir_file", "done")
                     and isinstance(f[k], h5py.Dataset) and f[k].size == int(np.prod(shape))]
            metrics = {k: np.asarray(f[k][()], dtype=np.float64).reshape(shape) for k in names}
            if "done" in f:
                done = np.asarray(f["done"][()]).reshape(shape).astype(bool)
            else:
                done = _done_from_values(metrics, shape)
            dir_file = _as_str(f["dir_file"][()]) if "dir_file" in f else None
            return Surface(x, y, metrics, done, dir_file, _get_attrs(f))
    except OSError as exc:
        raise LandscapeError(f"cannot read surface file {path}: {exc}") from None


def _done_from_values(metrics: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """For files without a ``done`` mask (the reference's): what its own scheduler counts as done.

    The reference fills its arrays with -1 until a point is computed; every
    other value is finished, a NaN or inf loss included (a diverged network,
    e.g. beyond the ends of an interpolation), as its scheduler treats them.
    """
    losses = [v for k, v in metrics.items() if k.endswith("loss")] or list(metrics.values())
    if not losses:
        return np.zeros(shape, dtype=bool)
    return np.logical_and.reduce([v != -1 for v in losses])


class SurfaceWriter:
    """Rank 0's handle on a surface file: record results as they arrive, never lose one.

    Results go into in-memory arrays and, line by line, into the journal;
    ``flush`` replaces the file with a complete snapshot when something changed
    and ``flush_seconds`` have passed (``force=True`` always).
    """

    def __init__(self, path: str, x: np.ndarray, y: np.ndarray | None, dir_file: str,
                 metrics: dict[str, np.ndarray], done: np.ndarray, attrs: dict,
                 flush_seconds: float):
        self.path = path
        self.x, self.y, self.dir_file = x, y, dir_file
        self.metrics, self.done, self.attrs = metrics, done, attrs
        self.flush_seconds = flush_seconds
        self._dirty = False
        self._last_flush = time.monotonic()
        self._journal = open(path + JOURNAL_SUFFIX, "a", encoding="utf-8")

    @classmethod
    def open(cls, path: str, x: np.ndarray, y: np.ndarray | None, dir_file: str,
             metric_names: Iterable[str], identity: Mapping, attrs: Mapping | None = None,
             flush_seconds: float = 2.0) -> "SurfaceWriter":
        """Create the surface file, or reopen it after checking it matches ``identity``.

        An existing file whose identity (grid, directions, model, data, metrics)
        differs from the request is refused and left untouched.
        """
        metric_names = list(metric_names)
        shape = (len(y), len(x)) if y is not None else (len(x),)
        require_folder(path, f"--surf_file {path}")
        attrs = dict(attrs or {})
        attrs[IDENTITY_ATTR] = dict(identity)
        if os.path.exists(path):
            existing = read_surface(path)
            _check_matches(path, existing, x, y, identity, metric_names)
            metrics = {k: existing.metrics[k].copy() for k in metric_names}
            done = existing.done.copy()
            attrs = {**existing.attrs, **attrs}
        else:
            _remove_if_present(path + JOURNAL_SUFFIX)  # stale: its file is gone
            metrics = {k: np.full(shape, np.nan) for k in metric_names}
            done = np.zeros(shape, dtype=bool)
        for leftover in glob.glob(glob.escape(path) + ".tmp*"):
            _remove_if_present(leftover)  # a snapshot a killed run did not finish
        writer = cls(path, x, y, dir_file, metrics, done, attrs, flush_seconds)
        writer._replay_journal()
        writer.flush(force=True)
        writer._journal.truncate(0)
        return writer

    def remaining(self, order: np.ndarray) -> np.ndarray:
        """The flat indices of ``order`` that are not done yet, order kept."""
        return order[~self.done.ravel()[order]]

    def record(self, index: int, values: Mapping[str, float]) -> None:
        """Store one point's metrics: journal first, then memory."""
        self._journal.write(json.dumps({"i": int(index), "m": {k: float(v) for k, v in values.items()}}) + "\n")
        self._journal.flush()
        self._apply(int(index), values)
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Replace the file with a snapshot if due; returns whether it wrote."""
        due = self._dirty and time.monotonic() - self._last_flush >= self.flush_seconds
        if not (force or due):
            return False
        with _atomic_h5(self.path) as f:
            self._write_snapshot(f)
        self._dirty = False
        self._last_flush = time.monotonic()
        return True

    def close(self, attrs: Mapping | None = None) -> None:
        """Write the final snapshot (with ``attrs`` added) and drop the journal."""
        self.attrs.update(attrs or {})
        self.flush(force=True)
        self._journal.close()
        os.remove(self.path + JOURNAL_SUFFIX)

    def _apply(self, index: int, values: Mapping[str, float]) -> None:
        for name, array in self.metrics.items():
            array.ravel()[index] = values.get(name, np.nan)
        self.done.ravel()[index] = True
        self._dirty = True

    def _replay_journal(self) -> None:
        """Fold results journaled by a killed run into memory; a torn last line is ignored."""
        self._journal.flush()
        with open(self.path + JOURNAL_SUFFIX, encoding="utf-8") as journal:
            for line in journal:
                try:
                    entry = json.loads(line)
                    index, values = int(entry["i"]), entry["m"]
                except (ValueError, KeyError, TypeError):
                    continue
                if 0 <= index < self.done.size:
                    self._apply(index, values)

    def _write_snapshot(self, f: h5py.File) -> None:
        f.create_dataset("dir_file", data=self.dir_file)
        scales = [f.create_dataset("xcoordinates", data=self.x)]
        scales[0].make_scale("x")
        if self.y is not None:
            scales.insert(0, f.create_dataset("ycoordinates", data=self.y))
            scales[0].make_scale("y")
        arrays = {**self.metrics, "done": self.done.astype(np.uint8)}
        for name, values in arrays.items():
            dset = f.create_dataset(name, data=values)
            for axis, scale in enumerate(scales):
                dset.dims[axis].attach_scale(scale)
        _set_attrs(f, {**self.attrs, "points_done": int(self.done.sum()),
                       "points_total": int(self.done.size)})


def _check_matches(path: str, existing: Surface, x: np.ndarray, y: np.ndarray | None,
                   identity: Mapping, metric_names: list[str]) -> None:
    """Refuse an existing surface file that was computed for a different request."""
    def refuse(what: str) -> None:
        raise LandscapeError(
            f"{path} already holds a surface {what}; pass another --surf_file, "
            f"or delete it to start over (nothing was changed)"
        )

    if (existing.y is None) != (y is None):
        refuse("of a different dimension (1D vs 2D)")
    if existing.x.shape != x.shape or not np.allclose(existing.x, x, rtol=0, atol=1e-12):
        refuse(f"on another x grid ({_axis_text(existing.x)} vs {_axis_text(x)})")
    if y is not None and (existing.y.shape != y.shape
                          or not np.allclose(existing.y, y, rtol=0, atol=1e-12)):
        refuse(f"on another y grid ({_axis_text(existing.y)} vs {_axis_text(y)})")
    missing = [m for m in metric_names if m not in existing.metrics]
    if missing:
        refuse(f"without the metrics {missing} that this request computes")
    old = existing.attrs.get(IDENTITY_ATTR, {})
    for key, value in identity.items():
        if key in old and old[key] != value:
            refuse(f"with another {key} ({old[key]!r}, request: {value!r})")


def _axis_text(values: np.ndarray) -> str:
    return f"{values[0]:g}:{values[-1]:g}:{len(values)}" if len(values) else "empty"


# ---------------------------------------------------------------- helpers


class _atomic_h5:
    """Context manager: an h5py.File written beside ``path`` and moved over it on success."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp{os.getpid()}"

    def __enter__(self) -> h5py.File:
        try:
            self.file = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise LandscapeError(f"cannot write {self.path}: {exc}") from None
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.remove(self.tmp)


def _set_attrs(obj: h5py.HLObject, attrs: Mapping) -> None:
    """Store attributes; dicts and lists as JSON text so plain h5py can read them."""
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)):
            obj.attrs[key] = json.dumps(value)
        elif value is None:
            obj.attrs[key] = "null"
        else:
            obj.attrs[key] = value


def _get_attrs(obj: h5py.HLObject) -> dict:
    out = {}
    for key, value in obj.attrs.items():
        value = _as_str(value) if isinstance(value, (bytes, str)) else value
        if isinstance(value, str) and (value[:1] in ("[", "{") or value == "null"):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _remove_if_present(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- trajectory projections


@dataclass
class Projection:
    """An optimizer path in the plane of two directions: one (x, y) per checkpoint."""

    xcoord: np.ndarray
    ycoord: np.ndarray
    epochs: np.ndarray
    lr_drop_epochs: np.ndarray
    attrs: dict = field(default_factory=dict)

    def drop_indices(self) -> np.ndarray:
        """Indices of the checkpoints taken at an epoch where the learning rate dropped."""
        return np.flatnonzero(np.isin(self.epochs, self.lr_drop_epochs))


def write_projection(path: str, xcoord: np.ndarray, ycoord: np.ndarray, epochs: np.ndarray,
                     lr_drop_epochs: np.ndarray, attrs: Mapping | None = None) -> None:
    """Write a projection file: the reference's ``proj_xcoord``/``proj_ycoord`` plus the epochs."""
    with _atomic_h5(path) as f:
        f.create_dataset("proj_xcoord", data=np.asarray(xcoord, dtype=np.float64))
        f.create_dataset("proj_ycoord", data=np.asarray(ycoord, dtype=np.float64))
        f.create_dataset("epochs", data=np.asarray(epochs, dtype=np.int64))
        f.create_dataset("lr_drop_epochs", data=np.asarray(lr_drop_epochs, dtype=np.int64))
        _set_attrs(f, attrs or {})


def read_projection(path: str) -> Projection:
    """Read a projection file of this tool or of the reference (whose points are numbered 0..n-1)."""
    if not os.path.isfile(path):
        raise LandscapeError(f"projection file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("proj_xcoord", "proj_ycoord") if k not in f]
            if missing:
                raise LandscapeError(f"{path} is not a projection file: it has no {', '.join(missing)}")
            x = np.asarray(f["proj_xcoord"][()], dtype=np.float64).ravel()
            y = np.asarray(f["proj_ycoord"][()], dtype=np.float64).ravel()
            epochs = (np.asarray(f["epochs"][()], dtype=np.int64).ravel() if "epochs" in f
                      else np.arange(len(x), dtype=np.int64))
            drops = (np.asarray(f["lr_drop_epochs"][()], dtype=np.int64).ravel() if "lr_drop_epochs" in f
                     else np.zeros(0, dtype=np.int64))
            attrs = _get_attrs(f)
    except OSError as exc:
        raise LandscapeError(f"cannot read projection file {path}: {exc}") from None
    if not len(x):
        raise LandscapeError(f"{path} holds no projected checkpoints")
    if not len(x) == len(y) == len(epochs):
        raise LandscapeError(f"{path}: proj_xcoord, proj_ycoord and epochs must have one entry "
                             f"per checkpoint (found {len(x)}, {len(y)}, {len(epochs)})")
    return Projection(x, y, epochs, drops, attrs)


# ---------------------------------------------------------------- Hessian spectra

SPECTRUM_DATASETS = ("top_eigenvalues", "min_eigenvalue", "trace", "trace_error",
                     "slq_nodes", "slq_weights", "density_grid", "density")


@dataclass
class Spectrum:
    """The Hessian spectrum at θ*: top-k and smallest eigenvalue, trace and its error, SLQ density."""

    top_eigenvalues: np.ndarray
    min_eigenvalue: float
    trace: float
    trace_error: float
    slq_nodes: np.ndarray  # runs × steps
    slq_weights: np.ndarray
    density_grid: np.ndarray
    density: np.ndarray
    attrs: dict = field(default_factory=dict)


def write_spectrum(path: str, spectrum: Spectrum) -> None:
    """Write a spectrum file, atomically: one float64 dataset per field, provenance as root attributes."""
    require_folder(path, f"--spectrum_file {path}")
    with _atomic_h5(path) as f:
        for name in SPECTRUM_DATASETS:
            f.create_dataset(name, data=np.asarray(getattr(spectrum, name), dtype=np.float64))
        _set_attrs(f, spectrum.attrs)


def read_spectrum(path: str) -> Spectrum:
    """Read a spectrum file written by ``write_spectrum``."""
    if not os.path.isfile(path):
        raise LandscapeError(f"spectrum file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in SPECTRUM_DATASETS if k not in f]
            if missing:
                raise LandscapeError(f"{path} is not a spectrum file: it has no {', '.join(missing)}")
            values = {k: np.asarray(f[k][()], dtype=np.float64) for k in SPECTRUM_DATASETS}
            attrs = _get_attrs(f)
    except OSError as exc:
        raise LandscapeError(f"cannot read spectrum file {path}: {exc}") from None
    for scalar in ("min_eigenvalue", "trace", "trace_error"):
        values[scalar] = float(values[scalar])
    return Spectrum(**values, attrs=attrs)
