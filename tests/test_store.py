"""The surface file: layout, journal, resume checks, and the reference's files."""

import json
import os

import h5py
import numpy as np
import pytest

from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import JOURNAL_SUFFIX, SurfaceWriter, read_surface
from surface_files import leave_as_killed

X = np.linspace(-1, 1, 5)
Y = np.linspace(-2, 2, 3)
IDENTITY = {"model": "demo_mlp", "directions_sha256": "abc"}


def open_writer(path, identity=IDENTITY, x=X, y=Y, metrics=("train_loss", "train_acc")):
    return SurfaceWriter.open(str(path), x, y, "dirs.h5", metrics, identity,
                              {"config": {"model": "demo_mlp"}}, flush_seconds=3600)


def test_new_file_has_reference_names_nan_and_done(tmp_path):
    path = tmp_path / "s.h5"
    w = open_writer(path)
    w.record(7, {"train_loss": 0.5, "train_acc": 90.0})
    w.close({"extra": 1})
    with h5py.File(path, "r") as f:
        assert set(f) == {"dir_file", "xcoordinates", "ycoordinates", "train_loss", "train_acc", "done"}
        assert f["train_loss"].shape == (3, 5) and f["done"].dtype == np.uint8
        assert f["dir_file"][()].decode() == "dirs.h5"
        z = f["train_loss"][()]
        assert z[1, 2] == 0.5 and np.isnan(z).sum() == 14
        assert f["done"][()].sum() == 1 and f["done"][1, 2] == 1
        # the coordinates are dimension scales of every array
        assert f["train_loss"].dims[0][0].name == "/ycoordinates"
        assert f["train_loss"].dims[1][0].name == "/xcoordinates"
        assert json.loads(f.attrs["identity"]) == IDENTITY
        assert f.attrs["points_done"] == 1 and f.attrs["extra"] == 1
    assert not os.path.exists(str(path) + JOURNAL_SUFFIX)


def test_journal_keeps_results_that_never_reached_a_snapshot(tmp_path):
    path = tmp_path / "s.h5"
    w = open_writer(path)
    w.record(0, {"train_loss": 1.0, "train_acc": 10.0})
    w.record(14, {"train_loss": 2.0, "train_acc": 20.0})
    # As if killed now: the file still holds the empty snapshot, the journal both points,
    # and a torn last line from a write cut short.
    assert read_surface(str(path)).done.sum() == 0
    leave_as_killed(w)
    with open(str(path) + JOURNAL_SUFFIX, "a") as j:
        j.write('{"i": 3, "m": {"train_lo')
    w2 = open_writer(path)
    assert w2.done.sum() == 2
    assert read_surface(str(path)).metrics["train_loss"][2, 4] == 2.0
    order = np.arange(15)
    assert w2.remaining(order).tolist() == list(range(1, 14))


def test_infinite_and_nan_results_are_done(tmp_path):
    path = tmp_path / "s.h5"
    w = open_writer(path)
    w.record(1, {"train_loss": float("inf"), "train_acc": float("nan")})
    leave_as_killed(w)
    w = open_writer(path)  # replayed from the journal
    s = read_surface(str(path))
    assert s.done.ravel()[1] and np.isinf(s.metrics["train_loss"].ravel()[1])


@pytest.mark.parametrize("change,match", [
    (dict(x=np.linspace(-1, 1, 7)), "another x grid"),
    (dict(y=np.linspace(-1, 1, 3)), "another y grid"),
    (dict(y=None), "different dimension"),
    (dict(identity={**IDENTITY, "directions_sha256": "zzz"}), "directions_sha256"),
    (dict(metrics=("train_loss", "train_acc", "test_loss")), "test_loss"),
])
def test_mismatched_request_is_refused_and_file_untouched(tmp_path, change, match):
    path = tmp_path / "s.h5"
    w = open_writer(path)
    w.record(2, {"train_loss": 0.1, "train_acc": 99.0})
    w.close()
    before = path.read_bytes()
    with pytest.raises(LandscapeError, match=match):
        open_writer(path, **change)
    assert path.read_bytes() == before


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(LandscapeError, match="does not exist"):
        open_writer(tmp_path / "nope" / "s.h5")


def test_stale_snapshot_is_cleared_and_a_journal_of_no_known_request_refused(tmp_path):
    path = tmp_path / "s.h5"
    (tmp_path / "s.h5.tmp123").write_bytes(b"half")
    w = open_writer(path)
    assert w.done.sum() == 0
    assert not (tmp_path / "s.h5.tmp123").exists()
    w.close()
    path.unlink()
    (tmp_path / ("s.h5" + JOURNAL_SUFFIX)).write_text('{"i": 0, "m": {"train_loss": 5}}\n')
    with pytest.raises(LandscapeError, match="no record of its request"):
        open_writer(path)  # its results are not thrown away unasked


def write_reference_file(path, x, y, fill):
    """A surface file as the reference writes it: shape (nx, ny), -1 where unfinished."""
    xm, ym = np.meshgrid(x, y)
    losses = -np.ones((len(x), len(y)))
    acc = -np.ones((len(x), len(y)))
    for i, (a, b) in enumerate(zip(xm.ravel(), ym.ravel())):
        if fill(i):
            losses.ravel()[i] = a ** 2 + 10 * b ** 2
            acc.ravel()[i] = 50.0
    with h5py.File(path, "w") as f:
        f["dir_file"] = "dirs.h5"
        f["xcoordinates"] = x
        f["ycoordinates"] = y
        f["train_loss"] = losses
        f["train_acc"] = acc


@pytest.mark.parametrize("nx,ny", [(5, 5), (5, 3)])
def test_reference_files_read_as_z_iy_ix(tmp_path, nx, ny):
    x, y = np.linspace(-1, 1, nx), np.linspace(-2, 2, ny)
    path = str(tmp_path / "ref.h5")
    write_reference_file(path, x, y, fill=lambda i: i % 4 != 3)
    s = read_surface(path)
    z = s.metrics["train_loss"]
    assert z.shape == (ny, nx)
    for iy in range(ny):
        for ix in range(nx):
            i = iy * nx + ix
            if i % 4 != 3:
                assert s.done[iy, ix] and z[iy, ix] == pytest.approx(x[ix] ** 2 + 10 * y[iy] ** 2)
            else:
                assert not s.done[iy, ix]
    assert s.dir_file == "dirs.h5"


def test_not_a_surface_file(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["a"] = 1
    with pytest.raises(LandscapeError, match="not a surface file"):
        read_surface(str(path))
    with pytest.raises(LandscapeError, match="does not exist"):
        read_surface(str(tmp_path / "none.h5"))
