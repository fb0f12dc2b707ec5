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
and provenance, with a list of the runs that computed points. A rerun keeps
every array the file holds: what it may compute is ``_Rerun``'s rule.

Durability: the live surface file is only ever replaced whole (written beside
it, fsync'd, then ``os.replace`` and an fsync of the folder), so a reader or a
crash never sees it half written; each result is appended to a journal
(``<surf_file>.journal``, whose first line names the request) the moment it
arrives, so a killed job loses nothing that reached the coordinator. Reopening
replays the journal's valid lines into the file, or into a new file of the same
request when the file is gone. ``<surf_file>.lock`` keeps a second job off a
file that a live job writes.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import h5py
import numpy as np

from .errors import LandscapeError, require_folder

DIRECTION_GROUPS = ("xdirection", "ydirection")
IDENTITY_ATTR = "identity"
JOURNAL_SUFFIX = ".journal"
LOCK_SUFFIX = ".lock"
UNREADABLE_SUFFIX = ".unreadable"
JOURNAL_VERSION = 1
RUNS_ATTR = "runs"
RUNS_ATTR_BYTES = 48 * 1024  # an attribute in HDF5's default (compact) storage must stay under 64 KiB
JOURNAL_BYTES_PER_POINT = 40 + 32  # a line's frame, plus this much per metric (free-space estimate)
SNAPSHOT_OVERHEAD_BYTES = 1 << 16  # HDF5 structure and attributes beside the arrays (estimate)


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


def check_surface_path(path: str) -> None:
    """Refuse a ``--surf_file`` that names a folder, or whose folder is missing or not writable,
    before anything (its lock included) is written."""
    if os.path.isdir(path):
        raise LandscapeError(f"--surf_file {path} is a folder: name a file, e.g. "
                             f"{os.path.join(path, 'surface.h5')}")
    require_folder(path, f"--surf_file {path}")


class SurfaceLock:
    """One job per file: an exclusive ``flock`` on ``<file>.lock`` that names its holder.

    The lock belongs to the file itself: a name reached through a symlink is
    resolved first (``os.path.realpath``), so every name of one file shares
    one lock file, beside the file it names (``target``), and that is the path
    to write. The OS drops the lock when the holding process ends, however it
    ends (kill -9, a node that goes down), so a lock file left behind never
    blocks a rerun; its text (host, pid, start time) only says who holds it.

    A lock file deleted by hand while its job runs would let a second job in
    beside the first: ``check`` (before every write) notices that the lock file
    is gone or is another one, and ``release`` removes only the job's own.
    """

    def __init__(self, target: str, fd: int | None):
        self.target, self.path, self.fd = target, target + LOCK_SUFFIX, fd
        self._identity = _file_identity(os.fstat(fd)) if fd is not None else None

    @classmethod
    def acquire(cls, file: str, wait: bool = False) -> "SurfaceLock":
        """Hold ``file``'s lock; if another job holds it, refuse at once with its holder, or with
        ``wait`` say so and wait until it lets go."""
        target = os.path.realpath(file)
        path = target + LOCK_SUFFIX
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise LandscapeError(f"{file}: cannot write beside it ({_reason(exc)})") from None
            try:
                _lock_exclusively(fd, file, wait)
            except LandscapeError:
                os.close(fd)
                raise
            except OSError as exc:  # a file system without locks (Lustre mounted without -o flock)
                os.close(fd)
                print(f"warning: cannot lock {path} ({exc}): make sure no other job writes {file}",
                      file=sys.stderr, flush=True)
                return cls(target, None)
            if _names_fd(path, fd):
                break  # not the file of a holder that released (and removed) it meanwhile
            os.close(fd)
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}, started {started}\n".encode())
        return cls(target, fd)

    def check(self) -> None:
        """Refuse to go on unless the lock file is still the one this job holds."""
        if self.fd is not None and not _names_fd(self.path, self.fd):
            raise LandscapeError(
                f"the lock file {self.path} was removed or replaced while this job held it, so another "
                f"job may be writing {self.target}: this job stopped before writing again (what it "
                f"computed is in that file and its journal); let the other job finish, or stop it, "
                f"then rerun the same command")

    def release(self) -> None:
        """Remove the lock file if it is still this job's (while holding it), and let go."""
        if self.fd is None:
            return
        if _names_fd(self.path, self.fd):
            _remove_if_present(self.path)
        os.close(self.fd)
        self.fd = None


def _lock_exclusively(fd: int, file: str, wait: bool) -> None:
    """``flock`` ``fd`` exclusively: at once, or refused naming the holder, or waited for with ``wait``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "holder unknown"
    if not wait:
        raise LandscapeError(f"{file} is in use by another job ({holder}); wait for it to end or stop "
                             f"it, then rerun (nothing was changed)")
    print(f"note: waiting for another job to finish writing {file} ({holder})", file=sys.stderr, flush=True)
    fcntl.flock(fd, fcntl.LOCK_EX)


def _file_identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _names_fd(path: str, fd: int) -> bool:
    """Whether ``path`` is (still) the file open as ``fd``: neither removed nor replaced."""
    try:
        return _file_identity(os.stat(path)) == _file_identity(os.fstat(fd))
    except OSError:
        return False


class SurfaceWriter:
    """Rank 0's handle on a surface file: record results as they arrive, never lose one.

    Results go into in-memory arrays and, line by line, into the journal;
    ``flush`` replaces the file with a complete snapshot when something changed
    and ``flush_seconds`` have passed (``force=True`` always). The journal is
    fsync'd at least every ``flush_seconds`` (after every result with
    ``fsync_every_result``). The writer holds the file's lock until ``close``.
    A run that has nothing to compute leaves the file as it found it.
    """

    def __init__(self, path: str, x: np.ndarray, y: np.ndarray | None, dir_file: str,
                 metrics: dict[str, np.ndarray], done: np.ndarray, attrs: dict,
                 flush_seconds: float, lock: SurfaceLock, fsync_every_result: bool = False):
        self.path = path
        self.x, self.y, self.dir_file = x, y, dir_file
        self.metrics, self.done, self.attrs = metrics, done, attrs
        self.flush_seconds = flush_seconds
        self.fsync_every_result = fsync_every_result
        self.notes: list[str] = []  # what reopening found and mended, for the user
        self._dirty = False
        self._last_flush = self._last_sync = time.monotonic()
        self.identity: dict = {}  # what the file's points were computed for (its identity attribute)
        self._lock = lock
        self._journal = None
        self._run: dict | None = None  # this run's entry in the file's list of runs, while it computes

    @classmethod
    def open(cls, path: str, x: np.ndarray, y: np.ndarray | None, dir_file: str,
             metric_names: Iterable[str], identity: Mapping, attrs: Mapping | None = None,
             flush_seconds: float = 2.0, fsync_every_result: bool = False,
             optional_identity: Iterable[str] = (), identity_defaults: Mapping | None = None,
             run: Mapping | None = None, lock: SurfaceLock | None = None) -> "SurfaceWriter":
        """Create the surface file, or reopen it after checking it matches ``identity``.

        An existing file whose identity (grid, directions, model, data, task)
        differs from the request is refused and left untouched, and so is a file
        another live job holds (``lock``: the file's lock, if the caller took it already).
        Identities are compared on the keys of both: a
        key one side lacks stands for its ``identity_defaults`` value, and is no
        mismatch at all when it is in ``optional_identity`` (the settings of
        metrics a rerun may leave out, such as the Hessian's). What a rerun
        with fewer, more or other metrics than the file does is ``_Rerun``'s
        rule: no computed array is ever removed. The journal of a killed run is
        replayed: into its file, or -- when that file is missing or unreadable
        (then kept aside) -- into a new one, if the journal was written for a
        request this one matches. ``run`` (command line, host, ...) is this
        run's entry in the file's ``runs`` attribute, listed only if it has
        points to compute.
        """
        metric_names = list(metric_names)
        if not flush_seconds >= 0:  # NaN too: snapshots and fsyncs would never be due
            raise LandscapeError(f"--flush_seconds must be 0 or more, got {flush_seconds:g}")
        check_surface_path(path)
        request = _Request(x, y, metric_names, _as_json(identity), frozenset(optional_identity),
                           _as_json(identity_defaults or {}))
        lock = lock or SurfaceLock.acquire(path)
        path = lock.target  # a symlink's target: a snapshot replaces that file, never the link
        try:
            return cls._open_held(path, dir_file, request, dict(attrs or {}), flush_seconds,
                                  fsync_every_result, lock, dict(run or {}))
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_held(cls, path: str, dir_file: str, request: "_Request", attrs: dict, flush_seconds: float,
                   fsync_every_result: bool, lock: SurfaceLock, run: dict) -> "SurfaceWriter":
        journal = _Journal.read(path + JOURNAL_SUFFIX)
        held = _Held.find(path, journal, request)
        writer = cls(path, request.x, request.y, held.dir_file or dir_file, held.metrics, held.done,
                     held.attrs, flush_seconds, lock, fsync_every_result)
        kept = writer._replay(journal, recovered=held.from_journal)
        rerun = _Rerun(path, held, request, points_done=int(writer.done.sum()))
        rerun.check()  # refuses before anything on disk changed
        if rerun.starts_over:  # nothing computed yet: the file becomes this request's
            writer.metrics = {k: np.full(request.shape, np.nan) for k in request.metrics}
            writer.dir_file, writer.identity = dir_file, request.identity
            kept = []
        else:
            writer.identity = held.identity if held.identity is not None else request.identity
        if not writer.done.all():
            _check_free_space(path, writer.metrics, int((~writer.done).sum()))
        if held.unreadable is not None:
            aside = _set_aside(path)
            writer.notes.insert(0, f"note: {held.unreadable}; it is kept as {aside}, and the results of its "
                                   f"journal go into a new file")
        writer.attrs[IDENTITY_ATTR] = writer.identity
        for leftover in glob.glob(glob.escape(path) + ".tmp*"):
            _remove_if_present(leftover)  # a snapshot a killed run did not finish
        if writer.done.all():  # nothing to compute: the file as it is, unless the journal held news
            if writer._dirty or not held.from_file:
                writer.flush(force=True)
            _remove_if_present(journal.path)
            return writer
        writer.attrs.update(attrs)
        writer._run = {"started": _now(), "dir_file": dir_file, **run}
        writer.attrs[RUNS_ATTR] = [*held.attrs.get(RUNS_ATTR, []), writer._run]
        writer.flush(force=True)
        writer._start_journal(_journal_header(writer.identity, request.x, request.y, list(writer.metrics)), kept)
        return writer

    def remaining(self, order: np.ndarray) -> np.ndarray:
        """The flat indices of ``order`` that are not done yet, order kept."""
        return order[~self.done.ravel()[order]]

    def record(self, index: int, values: Mapping[str, float]) -> None:
        """Store one point's metrics: journal first, then memory."""
        line = json.dumps({"i": int(index), "m": {k: float(v) for k, v in values.items()}}) + "\n"
        self._lock.check()
        try:
            self._journal.write(line)
            self._journal.flush()
            if self.fsync_every_result or time.monotonic() - self._last_sync >= self.flush_seconds:
                os.fsync(self._journal.fileno())
                self._last_sync = time.monotonic()
        except OSError as exc:
            raise LandscapeError(f"cannot write the journal {self._journal.name} ({_reason(exc)}): make "
                                 f"room and rerun the same command; what was computed is kept") from None
        self._apply(int(index), values)
        self.flush()

    def flush(self, force: bool = False) -> bool:
        """Replace the file with a snapshot if due; returns whether it wrote."""
        due = self._dirty and time.monotonic() - self._last_flush >= self.flush_seconds
        if not (force or due):
            return False
        self._lock.check()
        with _atomic_h5(self.path) as f:
            self._write_snapshot(f)
        self._dirty = False
        self._last_flush = time.monotonic()
        return True

    def close(self, attrs: Mapping | None = None, run: Mapping | None = None) -> None:
        """Write the final snapshot (with ``attrs`` added, ``run`` added to this run's entry in the
        list of runs), drop the journal and the lock. A run that had nothing to compute writes nothing."""
        if self._run is not None:
            self.attrs.update(attrs or {})
            self._run.update({**(run or {}), "finished": _now()})
            self.flush(force=True)
            self._journal.close()
            os.remove(self.path + JOURNAL_SUFFIX)
        self._lock.release()

    def _apply(self, index: int, values: Mapping[str, float]) -> None:
        for name, array in self.metrics.items():
            array.ravel()[index] = values.get(name, np.nan)
        self.done.ravel()[index] = True
        self._dirty = True

    def _replay(self, journal: "_Journal", recovered: bool) -> list[bytes]:
        """Fold valid results of a killed run's journal into memory; the valid lines.

        A line is applied only if it names a point of the grid that is not done
        yet, with every metric of the file as a number; any other line (a
        torn last line, damage, a hand edit) is skipped and reported in ``notes``.
        """
        applied, bad, kept = 0, [], []
        for number, line in journal.entries:
            entry = _journal_entry(line, self.done.size, list(self.metrics))
            if entry is None:
                bad.append(number)
                continue
            kept.append(line)
            if not self.done.ravel()[entry[0]]:
                self._apply(*entry)
                applied += 1
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            self.notes.append(f"warning: {journal.path}: skipped {len(bad)} bad "
                              f"line{'s' * (len(bad) > 1)} (line {shown}); they were not applied")
        if recovered and applied:
            self.notes.append(f"note: recovered {applied} point{'s' * (applied != 1)} from {journal.path}")
        return kept

    def _start_journal(self, header: dict, kept: list[bytes]) -> None:
        """The journal from now on: the request's identity, then the valid lines found before.

        It keeps every result since the file was created, so a surface file
        lost or damaged later is rebuilt from it; it is replaced whole (a bad
        line is reported once, then gone) and fsync'd before results follow.
        """
        journal_path = self.path + JOURNAL_SUFFIX
        try:
            with open(journal_path + ".new", "wb") as fresh:
                fresh.write(json.dumps(header).encode() + b"\n")
                fresh.writelines(line if line.endswith(b"\n") else line + b"\n" for line in kept)
                fresh.flush()
                os.fsync(fresh.fileno())
            os.replace(journal_path + ".new", journal_path)
            _fsync_file(os.path.dirname(os.path.abspath(journal_path)))
            self._journal = open(journal_path, "a", encoding="utf-8")
        except OSError as exc:
            _remove_if_present(journal_path + ".new")
            raise LandscapeError(f"cannot write the journal {journal_path} ({_reason(exc)})") from None

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
        attrs = {**self.attrs, "points_done": int(self.done.sum()), "points_total": int(self.done.size)}
        if RUNS_ATTR in attrs:
            attrs[RUNS_ATTR] = _runs_that_fit(attrs[RUNS_ATTR])
        _set_attrs(f, attrs)


# ---------------------------------------------------------------- reruns


@dataclass(frozen=True)
class _Request:
    """What a run asks of its surface file: the grid, the metrics, and the identity of its numbers."""

    x: np.ndarray
    y: np.ndarray | None
    metrics: list[str]
    identity: dict
    optional: frozenset[str]  # identity keys one side may lack (settings of metrics a rerun leaves out)
    defaults: dict  # what an identity key one side lacks stands for

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.y), len(self.x)) if self.y is not None else (len(self.x),)


@dataclass
class _Held:
    """What a surface file holds -- or, when the file is gone or unreadable, what its journal says it held."""

    identity: dict | None  # None: a file of no known request (the reference's)
    metrics: dict[str, np.ndarray]
    done: np.ndarray
    dir_file: str | None
    attrs: dict
    from_file: bool
    from_journal: bool = False
    unreadable: str | None = None  # why the file on disk could not be read (it is then set aside)

    @classmethod
    def find(cls, path: str, journal: "_Journal", request: _Request) -> "_Held":
        """The file at ``path`` (or its journal, or nothing yet), checked to be on the request's grid
        and of its identity; refused, changing nothing, when it is not."""
        unreadable = None
        if os.path.exists(path):
            try:
                existing = read_surface(path)
            except LandscapeError as exc:
                if not journal.entries or journal.header is None:
                    raise LandscapeError(f"{exc}; delete it to start over") from None
                unreadable = str(exc)
            else:
                held = cls(existing.attrs.get(IDENTITY_ATTR), {k: v.copy() for k, v in existing.metrics.items()},
                           existing.done.copy(), existing.dir_file, existing.attrs, from_file=True)
                held._check(path, existing, request)
                if journal.header is not None and not _same_header(
                        journal.header, _journal_header(held.identity or request.identity, request.x,
                                                        request.y, list(held.metrics))):
                    raise LandscapeError(f"{journal.path} was written for another request than its file "
                                         f"{path}; delete it to start over (nothing was changed)")
                return held
        if journal.header is None:
            if journal.lines:
                raise LandscapeError(f"{journal.path} has no record of its request and its surface "
                                     f"file is missing; delete it to start over")
            return cls(request.identity, {k: np.full(request.shape, np.nan) for k in request.metrics},
                       np.zeros(request.shape, dtype=bool), None, {}, from_file=False)
        header = journal.header
        names = header.get("metrics")
        expected = _journal_header(request.identity, request.x, request.y, [])
        if (not isinstance(header.get("identity"), dict) or not isinstance(names, list)
                or (header.get("shape"), header.get("coordinates_sha256"))
                != (expected["shape"], expected["coordinates_sha256"])
                or _identity_mismatch(header["identity"], request) is not None):
            raise LandscapeError(f"{journal.path} was written for another request than this one "
                                 f"(grid, directions, model, data or metrics); pass another "
                                 f"--surf_file, or delete it to start over (nothing was changed)")
        return cls(header["identity"], {str(k): np.full(request.shape, np.nan) for k in names},
                   np.zeros(request.shape, dtype=bool), None, {}, from_file=False, from_journal=True,
                   unreadable=unreadable)

    def _check(self, path: str, existing: Surface, request: _Request) -> None:
        """Refuse a file that was computed on another grid or for another request's numbers."""
        x, y = request.x, request.y
        if (existing.y is None) != (y is None):
            _refuse(path, "of a different dimension (1D vs 2D)")
        if existing.x.shape != x.shape or not np.allclose(existing.x, x, rtol=0, atol=1e-12):
            _refuse(path, f"on another x grid ({_axis_text(existing.x)} vs {_axis_text(x)})")
        if y is not None and (existing.y.shape != y.shape
                              or not np.allclose(existing.y, y, rtol=0, atol=1e-12)):
            _refuse(path, f"on another y grid ({_axis_text(existing.y)} vs {_axis_text(y)})")
        if self.identity is not None:
            mismatch = _identity_mismatch(self.identity, request)
            if mismatch is not None:
                _refuse(path, mismatch)


@dataclass
class _Rerun:
    """The rule for a request on a file that already holds points (docs/hdf5_layout.md, "Reruns").

    ``done`` says every array of the file holds a value at a done point, so:
    a request of the file's metrics resumes it; one of fewer metrics computes
    nothing on a complete file and is refused on a partial one (its new points
    would lack the others); one of more or other metrics is refused once a
    point is done (its new metrics would be missing there). A file with no
    done point holds nothing computed and becomes the request's. No computed
    array is ever removed.
    """

    path: str
    held: _Held
    request: _Request
    points_done: int

    @property
    def starts_over(self) -> bool:
        return self.points_done == 0

    def check(self) -> None:
        if self.starts_over:
            return
        total = self.held.done.size
        extra = [m for m in self.request.metrics if m not in self.held.metrics]
        if extra:
            raise LandscapeError(
                f"{self.path} holds {self.points_done} computed point{'s' * (self.points_done != 1)} without "
                f"{', '.join(extra)}, which this request computes; every point of a file holds the same "
                f"metrics: pass another --surf_file to compute them (nothing was changed)")
        fewer = sorted(m for m in self.held.metrics if m not in self.request.metrics)
        if fewer and self.points_done < total:
            command = self.held.attrs.get("command_line")
            finish = f"its own command ({command})" if command else "the flags that compute them"
            raise LandscapeError(
                f"{self.path} has {self.points_done} of {total} points done, each with {', '.join(fewer)}, "
                f"which this request leaves out: finish it with {finish}, or pass another --surf_file "
                f"(nothing was changed)")


def _identity_mismatch(held: Mapping, request: _Request) -> str | None:
    """What differs between a file's identity and the request's, compared on the keys of both; None if nothing.

    A key one side lacks stands for its default; without one it is a
    mismatch unless it is optional. Mappings (each split's dataset size) are
    compared on the entries both have.
    """
    absent = object()
    for key in [*held, *(k for k in request.identity if k not in held)]:
        old = held.get(key, request.defaults.get(key, absent))
        new = request.identity.get(key, request.defaults.get(key, absent))
        if absent in (old, new):
            if key in request.optional:
                continue
        elif _same_value(old, new):
            continue
        shown = ["not set" if v is absent else repr(v) for v in (old, new)]
        return f"with another {key} ({shown[0]}, request: {shown[1]})"
    return None


def _same_value(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_value(a[k], b[k]) for k in a.keys() & b.keys())
    return a == b


def _refuse(path: str, what: str) -> None:
    raise LandscapeError(f"{path} already holds a surface {what}; pass another --surf_file, "
                         f"or delete it to start over (nothing was changed)")


def _runs_that_fit(runs: list) -> list:
    """The list of runs as stored: whole, or -- past what one HDF5 attribute holds -- the first run,
    ``{"omitted": n}`` for the n runs left out after it, and the latest runs."""
    head, omitted, tail = runs[:1], 0, list(runs[1:])
    if tail and isinstance(tail[0], dict) and set(tail[0]) == {"omitted"}:
        omitted, tail = tail[0]["omitted"], tail[1:]
    while len(tail) > 1 and len(json.dumps([*head, {"omitted": omitted}, *tail])) > RUNS_ATTR_BYTES:
        tail, omitted = tail[1:], omitted + 1
    return [*head, *([{"omitted": omitted}] if omitted else []), *tail]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _axis_text(values: np.ndarray) -> str:
    return f"{values[0]:g}:{values[-1]:g}:{len(values)}" if len(values) else "empty"


# ---------------------------------------------------------------- journal


@dataclass
class _Journal:
    """A journal as found on disk: its header (the request it was written for) and its other lines."""

    path: str
    header: dict | None
    entries: list[tuple[int, bytes]]  # (line number, line) after the header

    @property
    def lines(self) -> bool:
        """Whether there is anything in it at all."""
        return self.header is not None or bool(self.entries)

    @classmethod
    def read(cls, path: str) -> "_Journal":
        try:
            with open(path, "rb") as f:
                lines = list(enumerate(f, start=1))
        except FileNotFoundError:
            return cls(path, None, [])
        except OSError as exc:
            raise LandscapeError(f"cannot read the journal {path} ({exc})") from None
        header = None
        if lines:
            try:
                first = json.loads(lines[0][1])
                if isinstance(first, dict) and first.get("journal") == JOURNAL_VERSION:
                    header, lines = first, lines[1:]
            except ValueError:
                pass  # not a header: a journal of an older version, or damage; judged line by line
        return cls(path, header, lines)


def _journal_header(identity: Mapping, x: np.ndarray, y: np.ndarray | None, metric_names: list[str]) -> dict:
    """The journal's first line: the request it belongs to, as JSON reads it back."""
    grid = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    if y is not None:
        grid.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    shape = [len(y), len(x)] if y is not None else [len(x)]
    return json.loads(json.dumps({"journal": JOURNAL_VERSION, "identity": dict(identity), "shape": shape,
                                  "coordinates_sha256": grid.hexdigest(), "metrics": metric_names}))


def _same_header(a: Mapping, b: Mapping) -> bool:
    """Whether two journal headers name the same request (the metrics in any order)."""
    def key(header: Mapping) -> dict:
        names = header.get("metrics")
        return {**header, "metrics": sorted(names) if isinstance(names, list) else names}
    return key(a) == key(b)


def _as_json(value: Mapping) -> dict:
    """``value`` as JSON reads it back (lists for tuples, ...): how a file's attributes compare with it."""
    return json.loads(json.dumps(dict(value)))


def _journal_entry(line: bytes, size: int, metric_names: list[str]) -> tuple[int, dict[str, float]] | None:
    """(index, metrics) of a journal line, or None unless it is a point of the grid with every metric a number."""
    try:
        entry = json.loads(line)
    except ValueError:  # includes bytes that are not UTF-8
        return None
    if not isinstance(entry, dict):
        return None
    index, values = entry.get("i"), entry.get("m")
    if type(index) is not int or not 0 <= index < size or not isinstance(values, dict):
        return None
    if not all(type(values.get(name)) in (int, float) for name in metric_names):
        return None
    return index, {name: float(values[name]) for name in metric_names}


def _set_aside(path: str) -> str:
    """Rename an unreadable surface file out of the way (never over another); its new name."""
    aside, n = path + UNREADABLE_SUFFIX, 1
    while os.path.exists(aside):
        aside, n = f"{path}{UNREADABLE_SUFFIX}{n}", n + 1
    os.replace(path, aside)
    return aside


def _check_free_space(path: str, metrics: Mapping[str, np.ndarray], points_left: int) -> None:
    """Refuse to start when the folder cannot hold a second snapshot (written beside the file) and the journal."""
    folder = os.path.dirname(os.path.abspath(path))
    points = next(iter(metrics.values())).size if metrics else 0
    snapshot = points * (8 * len(metrics) + 1) + SNAPSHOT_OVERHEAD_BYTES
    journal = points_left * (JOURNAL_BYTES_PER_POINT * max(len(metrics), 1))
    free = shutil.disk_usage(folder).free
    if free < snapshot + journal:
        raise LandscapeError(f"the folder {folder} has {free / 1e6:.3g} MB free; this run needs about "
                             f"{(snapshot + journal) / 1e6:.3g} MB (a snapshot of the surface file and "
                             f"the journal): make room or pass a --surf_file elsewhere")


# ---------------------------------------------------------------- helpers


class _atomic_h5:
    """Context manager: an h5py.File built in memory, then written beside ``path`` and moved over it.

    HDF5 never writes to the disk itself: a write that fails (a full disk)
    would leave its library state broken (errors at exit, even a crash).
    The bytes go out by plain file I/O instead, fsync'd before ``os.replace``,
    and the folder fsync'd after it, so after a crash of the machine ``path``
    is the old file or the new one, never an empty or partial one. On any
    failure the temporary file is removed and the old file stays as it was.
    """

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp{os.getpid()}"

    def __enter__(self) -> h5py.File:
        self.image = io.BytesIO()
        self.file = h5py.File(self.image, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        self.file.close()
        if exc_type is not None:
            return
        try:
            with open(self.tmp, "wb") as out:
                out.write(self.image.getbuffer())
                out.flush()
                os.fsync(out.fileno())
            os.replace(self.tmp, self.path)
            _fsync_file(os.path.dirname(os.path.abspath(self.path)))
        except OSError as error:
            _remove_if_present(self.tmp)
            raise LandscapeError(f"cannot write {self.path} ({_reason(error)}): make room and rerun "
                                 f"the same command; what was computed is kept") from None


def _reason(exc: BaseException) -> str:
    """An I/O error in a few words (h5py's own messages run over several lines)."""
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if errno else (str(exc).splitlines() or [type(exc).__name__])[0]


def _fsync_file(path: str) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
