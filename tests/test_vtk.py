"""Tests of ``python -m mpi_landscape.vtk``: files read back with VTK's own XML readers.

Geometry (point count, bounds, the height of given points) and every point
array are compared with the HDF5 file; partial runs must leave out the quads
that touch unfinished points; the trajectory must lie on the surface; and the
.vtp must render off-screen to a picture that shows a surface.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGReader
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLStructuredGridReader

import mpi_landscape
from conftest import run_module
from mpi_landscape import vtk as vtk_command
from mpi_landscape.views.plot_render import render_png
from mpi_landscape.views.vtk_export import surface_grid
from mpi_landscape.store import read_surface
from surface_files import bowl, write_projection, write_reference_surface, write_surface


def read_back(path: str):
    """The dataset in ``path``, read by VTK's XML reader for its type."""
    reader = vtkXMLPolyDataReader() if path.endswith(".vtp") else vtkXMLStructuredGridReader()
    reader.SetFileName(path)
    reader.Update()
    return reader.GetOutput()


def points_of(dataset) -> np.ndarray:
    return vtk_to_numpy(dataset.GetPoints().GetData())


def point_array(dataset, name: str) -> np.ndarray:
    array = dataset.GetPointData().GetArray(name)
    assert array is not None, f"no point array {name}"
    return vtk_to_numpy(array)


def quads_of(polydata) -> np.ndarray:
    cells = polydata.GetPolys()
    offsets = vtk_to_numpy(cells.GetOffsetsArray())
    assert (np.diff(offsets) == 4).all()
    return vtk_to_numpy(cells.GetConnectivityArray()).reshape(-1, 4)


def export(*args: str) -> list[str]:
    """Run the vtk command in-process; returns the paths written."""
    return vtk_command.run(vtk_command.parse_vtk_config(list(args)))


def test_vtp_of_a_demo_run_matches_the_hdf5(demo_run, tmp_path, capsys):
    assert vtk_command.main([demo_run, "--out", str(tmp_path / "demo.vtp")]) == 0
    path = capsys.readouterr().out.split()
    assert path == [str(tmp_path / "demo.vtp")]
    with open(path[0], "rb") as f:
        header = f.read(400)
    assert b'type="PolyData"' in header and b"vtkZLibDataCompressor" in header
    surface = read_surface(demo_run)
    ny, nx = len(surface.y), len(surface.x)
    poly = read_back(path[0])
    assert poly.GetNumberOfPoints() == nx * ny and poly.GetNumberOfPolys() == (nx - 1) * (ny - 1)
    z = surface.metrics["train_loss"]
    np.testing.assert_allclose(poly.GetBounds(), [-1, 1, -0.5, 0.5, z.min(), z.max()])
    xyz = points_of(poly)
    for iy, ix in [(0, 0), (0, nx - 1), (ny - 1, 0), (2, 3)]:
        np.testing.assert_allclose(xyz[iy * nx + ix], [surface.x[ix], surface.y[iy], z[iy, ix]])
    for name, values in surface.metrics.items():
        np.testing.assert_array_equal(point_array(poly, name), values.ravel())
    assert (point_array(poly, "done") == 1).all()
    assert poly.GetPointData().GetScalars().GetName() == "train_loss"


def test_vts_of_a_non_square_reference_file(tmp_path):
    x, y = np.linspace(-1, 1, 7), np.linspace(-2, 2, 4)
    ref = write_reference_surface(tmp_path / "ref.h5", x, y)
    paths = export(ref, "--format", "vts", "--metric", "train_acc")
    assert paths == [str(tmp_path / "ref_train_acc.vts")]
    grid = read_back(paths[0])
    assert grid.GetExtent() == (0, 6, 0, 3, 0, 0)
    acc = 100 - 10 * bowl(x, y)
    xyz = points_of(grid)
    np.testing.assert_allclose(xyz[:, 2], acc.ravel())
    np.testing.assert_allclose(xyz[3 * 7 + 5], [x[5], y[3], acc[3, 5]])
    np.testing.assert_allclose(point_array(grid, "train_loss"), bowl(x, y).ravel())


def partial_surface(tmp_path) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.linspace(-1, 1, 6), np.linspace(0, 1, 5)
    done = np.ones((5, 6), dtype=bool)
    done[2, 3] = done[4, 0] = False
    return write_surface(tmp_path / "partial.h5", x, y, done=done), x, y, done


def test_partial_run_leaves_out_quads_touching_unfinished_points(tmp_path):
    path, x, y, done = partial_surface(tmp_path)
    vtp, = export(path)
    poly = read_back(vtp)
    quads = quads_of(poly)
    unfinished = {2 * 6 + 3, 4 * 6 + 0}
    assert len(quads) == 5 * 4 - 4 - 1  # the interior point takes four quads, the corner one
    assert not unfinished & set(quads.ravel().tolist())
    np.testing.assert_array_equal(point_array(poly, "done"), done.ravel().astype(np.uint8))
    loss = point_array(poly, "train_loss")
    assert np.isnan(loss[sorted(unfinished)]).all() and np.isfinite(np.delete(loss, sorted(unfinished))).all()
    z = points_of(poly)[:, 2]
    drawn = bowl(x, y)[done]
    assert z.max() == pytest.approx(drawn.max()) and z.min() == pytest.approx(drawn.min())  # no spikes

    vts, = export(path, "--format", "vts")
    grid = read_back(vts)
    hidden = [i for i in range(grid.GetNumberOfPoints()) if not grid.IsPointVisible(i)]
    assert hidden == sorted(unfinished)
    visible_cells = sum(grid.IsCellVisible(i) for i in range(grid.GetNumberOfCells()))
    assert visible_cells == len(quads)


def test_log_and_zmax_shape_the_height_as_the_reference(tmp_path):
    x = np.linspace(-1, 1, 5)
    path = write_surface(tmp_path / "s.h5", x, x)
    vtp, = export(path, "--log", "--zmax", "2")
    assert os.path.basename(vtp) == "s_train_loss_zmax=2_log.vtp"
    poly = read_back(vtp)
    expected = np.log(np.minimum(bowl(x, x), 2) + 0.1)
    np.testing.assert_allclose(points_of(poly)[:, 2], expected.ravel())
    np.testing.assert_allclose(point_array(poly, "height"), expected.ravel())
    np.testing.assert_allclose(point_array(poly, "train_loss"), bowl(x, x).ravel())  # raw values kept
    flat, = export(path, "--flat", "--out", str(tmp_path / "flat.vtp"))
    assert (points_of(read_back(flat))[:, 2] == 0).all()


def test_a_diverged_point_is_a_hole_unless_clipped(tmp_path):
    x = np.linspace(-1, 1, 4)
    loss = bowl(x, x)
    loss[1, 2] = np.inf
    path = write_surface(tmp_path / "s.h5", x, x, metrics={"train_loss": loss})
    hole = read_back(export(path)[0])
    assert hole.GetNumberOfPolys() == 9 - 4 and np.isnan(point_array(hole, "train_loss")[1 * 4 + 2])
    assert (point_array(hole, "done") == 1).all()
    assert point_array(hole, "diverged").tolist() == [int(i == 1 * 4 + 2) for i in range(16)]
    acc = np.where(np.isinf(loss), 100 / 3, 90.0)  # argmax of NaN outputs: class 0
    both = write_surface(tmp_path / "a.h5", x, x, metrics={"train_loss": loss, "train_acc": acc})
    by_acc = read_back(export(both, "--metric", "train_acc")[0])
    assert by_acc.GetNumberOfPolys() == 9 - 4 and np.isnan(point_array(by_acc, "train_acc")[1 * 4 + 2])
    clipped = read_back(export(path, "--zmax", "3")[0])
    assert clipped.GetNumberOfPolys() == 9 and points_of(clipped)[1 * 4 + 2, 2] == 3


def test_interp_resamples_complete_surfaces_only(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 6)
    path = write_surface(tmp_path / "s.h5", x, y)
    vtp, = export(path, "--interp", "25")
    poly = read_back(vtp)
    assert poly.GetNumberOfPoints() == 25 * 25 and poly.GetNumberOfPolys() == 24 * 24
    xyz = points_of(poly)
    # The bowl is a quadratic: cubic convolution reproduces it exactly between the samples.
    np.testing.assert_allclose(xyz[:, 2], 0.2 + xyz[:, 0] ** 2 + 3 * xyz[:, 1] ** 2 + 0.5 * xyz[:, 0],
                               atol=1e-12)

    partial, *_ = partial_surface(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        vtk_command.main([partial, "--interp", "50"])
    assert exit_info.value.code == 2
    assert "--interp needs a complete surface, this one is 93% done" in capsys.readouterr().err


def test_trajectory_lies_on_the_surface(tmp_path):
    x, y = np.linspace(-1, 1, 11), np.linspace(-1, 1, 7)
    xx, yy = np.meshgrid(x, y)
    plane = {"train_loss": 1 + 0.5 * xx - 0.25 * yy}  # bilinear sampling is exact on a plane
    path = write_surface(tmp_path / "s.h5", x, y, metrics=plane)
    px = np.array([-0.9, -0.5, 0.1, 1.5, 1.6, 0.3, 0.2, 0.0])  # two checkpoints outside the grid
    py = np.array([-0.9, -0.2, 0.4, 0.0, 0.0, 0.1, -0.3, 0.0])
    proj = write_projection(tmp_path / "p.h5", px, py, epochs=np.arange(8) * 10, drops=np.array([20]))
    paths = export(path, "--proj_file", proj)
    assert paths[1] == str(tmp_path / "s_train_loss_trajectory.vtp")
    line = read_back(paths[1])
    assert line.GetNumberOfLines() == 2
    checkpoint = point_array(line, "checkpoint")
    keep = [0, 1, 2, 5, 6, 7]
    at = checkpoint >= 0  # the checkpoints, and between them samples along the surface
    assert checkpoint[at].tolist() == keep and line.GetNumberOfPoints() > 3 * len(keep)
    xyz = points_of(line)
    np.testing.assert_allclose(xyz[at, :2], np.column_stack([px[keep], py[keep]]))
    np.testing.assert_allclose(xyz[:, 2], 1 + 0.5 * xyz[:, 0] - 0.25 * xyz[:, 1], atol=1e-12)
    np.testing.assert_array_equal(point_array(line, "epoch")[at], np.array(keep) * 10)
    assert np.all(np.diff(point_array(line, "epoch")[:at.nonzero()[0][3]]) > 0)  # interpolated between
    np.testing.assert_array_equal(point_array(line, "lr_drop")[at], [0, 0, 1, 0, 0, 0])
    assert point_array(line, "lr_drop").sum() == 1
    verts = line.GetVerts()  # the drop as a vertex cell of its own, for ParaView's Threshold
    drop_point = np.flatnonzero(checkpoint == 2).tolist()
    assert verts.GetNumberOfCells() == 1 and vtk_to_numpy(verts.GetConnectivityArray()).tolist() == drop_point


def test_vtp_renders_off_screen_to_a_surface_picture(demo_run, tmp_path):
    png = str(tmp_path / "demo.png")
    render_png(surface_grid(read_surface(demo_run), "train_loss"), png, size=(320, 240))
    reader = vtkPNGReader()
    reader.SetFileName(png)
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions()[:2] == (320, 240)
    pixels = vtk_to_numpy(image.GetPointData().GetScalars())[:, :3]
    not_background = (pixels < 250).any(axis=1).mean()
    assert 0.15 < not_background < 0.95
    packed = pixels[:, 0].astype(np.uint32) << 16 | pixels[:, 1].astype(np.uint32) << 8 | pixels[:, 2]
    assert len(np.unique(packed)) > 1000  # shaded and coloured (the colour bar alone has a few hundred)


def test_png_flag_and_the_module_never_shadows_the_vtk_package(demo_run, tmp_path):
    package_dir = os.path.dirname(mpi_landscape.__file__)  # where mpi_landscape/vtk.py lives
    result = subprocess.run(
        [sys.executable, "-m", "mpi_landscape.vtk", demo_run, "--out", str(tmp_path / "d.vtp"),
         "--png", str(tmp_path / "d.png")],
        cwd=package_dir, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "d.vtp"), str(tmp_path / "d.png")]
    assert os.path.getsize(tmp_path / "d.png") > 10_000
    probe = subprocess.run([sys.executable, "-c", "import mpi_landscape.vtk, vtk; print(vtk.__file__)"],
                           text=True, capture_output=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert os.path.dirname(probe.stdout.strip()) != package_dir


def test_user_errors_are_one_line(tmp_path, capsys):
    x = np.linspace(-1, 1, 5)
    one_d = write_surface(tmp_path / "line.h5", x)
    two_d = write_surface(tmp_path / "s.h5", x, x)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["proj_xcoord"] = np.zeros(2)
    for args, message in ([[one_d], "1D surface"],
                          [[two_d, "--metric", "nope"], "no array 'nope'"],
                          [[two_d, "--proj_file", str(tmp_path / "p.h5")], "no proj_ycoord"],
                          [[two_d, "--out", str(tmp_path / "no" / "x.vtp")], "does not exist"]):
        with pytest.raises(SystemExit) as exit_info:
            vtk_command.main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_command_line_entry_point(demo_run, tmp_path):
    result = run_module("mpi_landscape.vtk", demo_run, "--format", "vts", "--out", str(tmp_path / "d.vts"))
    assert result.returncode == 0, result.stderr
    assert read_back(result.stdout.strip()).GetNumberOfPoints() == 5 * 4


# ---------------------------------------------------------------- ParaView itself

PARAVIEW_STEPS = os.path.join(os.path.dirname(__file__), "paraview_steps.py")
REQUIRE_PARAVIEW = "MPI_LANDSCAPE_REQUIRE_PARAVIEW"  # set in CI: a missing pvbatch fails there


def pvbatch_command() -> list[str]:
    """ParaView's batch interpreter, under a virtual X server when there is no display
    (Debian's ParaView renders through X only); skips, or fails where it is required, without one."""
    missing = [tool for tool in ("pvbatch",) + (() if os.environ.get("DISPLAY") else ("xvfb-run",))
               if not shutil.which(tool)]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: apt-get install paraview python3-paraview xvfb)"
        if os.environ.get(REQUIRE_PARAVIEW) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return ["pvbatch"] if os.environ.get("DISPLAY") else ["xvfb-run", "-a", "pvbatch"]


def rgb_pixels(path: str) -> np.ndarray:
    reader = vtkPNGReader()
    reader.SetFileName(path)
    reader.Update()
    return vtk_to_numpy(reader.GetOutput().GetPointData().GetScalars())[:, :3].astype(int)


def largest_colour_share(pixels: np.ndarray, shape) -> float:
    """The share of the drawn pixels in an image's central region taken by its commonest colour
    class on a cool-to-warm map (cool, warm, or grey); shading changes brightness only, so a basin
    of one colour gives a share near 1."""
    from matplotlib.colors import rgb_to_hsv

    image = pixels.reshape(shape[1], shape[0], 3)
    h, w = image.shape[:2]
    centre = image[int(0.3 * h):int(0.7 * h), int(0.3 * w):int(0.7 * w)].reshape(-1, 3)
    hsv = rgb_to_hsv(centre[(centre < 245).any(axis=1)] / 255.0)
    grey = hsv[:, 1] <= 0.15
    warm = ~grey & ((hsv[:, 0] < 0.1) | (hsv[:, 0] > 0.9))
    cool = ~grey & (hsv[:, 0] > 0.5) & (hsv[:, 0] < 0.75)
    return float(max(grey.mean(), warm.mean(), cool.mean()))


def test_paraview_follows_the_documented_steps(tmp_path):
    """docs/paraview.md in ParaView (pvbatch, off-screen): the log-height surface coloured by its height,
    the warped flat export, and the path warped onto it whose lr drops Threshold + Glyph select (vertex
    cells: a polyline alone gives 0 points), each seen through the page's camera (not ParaView's
    straight-down one) and coloured by the quantity it is lifted by, so the basin has colours of its own."""
    command = pvbatch_command()
    x = np.linspace(-1, 1, 21)
    xx, yy = np.meshgrid(x, x)
    loss = 0.02 + 3 * (xx ** 2 + 0.6 * yy ** 2) ** 1.5  # a trained network's basin: most of it below 0.5
    surf = write_surface(tmp_path / "s.h5", x, x, metrics={"train_loss": loss})
    t = np.linspace(0, 1, 12)
    proj = write_projection(tmp_path / "p.h5", 0.8 * (1 - t), 0.5 * (1 - t) ** 2,
                            epochs=np.arange(0, 120, 10), drops=np.array([30, 80]))
    surface_vtp, = export(surf, "--log", "--out", str(tmp_path / "s.vtp"))
    flat_vtp, path_vtp = export(surf, "--log", "--flat", "--proj_file", proj, "--out", str(tmp_path / "flat.vtp"))
    done = subprocess.run([*command, PARAVIEW_STEPS, surface_vtp, flat_vtp, path_vtp, str(tmp_path)],
                          text=True, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threshold_points"] == 2  # Threshold on lr_drop keeps the two drops
    for name in ("surface", "warped", "path"):
        camera = report["cameras"][name]
        sight = np.subtract(camera["focal_point"], camera["position"])
        down = np.degrees(np.arccos(-sight[2] / np.linalg.norm(sight)))
        assert 40 < down < 70, f"{name}: the camera looks {down:.0f}° off straight down"
        pixels = rgb_pixels(str(tmp_path / f"{name}.png"))
        drawn = (pixels < 245).any(axis=1).mean()
        assert 0.08 < drawn < 0.95, f"{name}.png: {drawn:.0%} of the picture drawn"
        packed = pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2]
        assert len(np.unique(packed)) > 200, f"{name}.png is not a shaded, coloured surface"
        if name != "path":
            share = largest_colour_share(pixels, (480, 360))
            assert share < 0.8, f"{name}.png: {share:.0%} of the basin is one colour"
    pixels = rgb_pixels(str(tmp_path / "path.png"))
    red = (pixels[:, 0] > 200) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)
    assert red.sum() > 30  # the drops' red spheres are in the picture
