"""Tests of ``python -m mpi_landscape.plot``: every figure kind, from our files and the reference's.

Surfaces come from a real (small) demo run, from ``SurfaceWriter`` with known
analytic values (complete and partial), and from plain h5py in the
reference's layout (2D arrays stored (nx, ny), -1 for unfinished). Figures are
checked as files (valid PNG/PDF, not a blank image) and as matplotlib objects
(the values drawn, the labels, the title).
"""

from __future__ import annotations

import os
import threading
import time

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from conftest import run_module
from mpi_landscape import plot
from mpi_landscape.errors import LandscapeError
from mpi_landscape.views.plot_data import (done_text, figure_title, legend_label, locate_dir_file,
                                     read_explained_variance)
from mpi_landscape.views.plot_figures import Scale, figure_1d, figure_2d, figure_compare, figure_trajectory
from mpi_landscape.store import Surface, read_projection, read_surface
from surface_files import DEMO_CONFIG, bowl, write_projection, write_reference_surface, write_surface


def assert_png(path: str, min_colours: int = 8) -> np.ndarray:
    """A readable PNG that is not one flat colour; returns its pixels."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    channels = np.round(image * 255).astype(np.uint32)
    packed = sum(channels[..., i] << (8 * i) for i in range(image.shape[2]))  # one integer per colour
    assert len(np.unique(packed)) >= min_colours
    return image


def assert_pdf(path: str) -> None:
    with open(path, "rb") as f:
        content = f.read()
    assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    assert len(content) > 5000


def run_plot(capsys, *args: str) -> list[str]:
    """Run the plot command in-process; returns the paths it printed."""
    assert plot.main(list(args)) == 0
    return capsys.readouterr().out.split()


def test_every_2d_kind_from_a_demo_run(demo_run, tmp_path, capsys):
    paths = run_plot(capsys, demo_run, "--out", str(tmp_path / "demo"), "--vmin", "0.01", "--vmax", "2",
                     "--vlevel", "0.1")
    kinds = ("2dcontour", "2dcontourf", "2dheat", "3dsurface")
    assert paths == [str(tmp_path / f"demo_train_loss_{k}.{ext}") for k in kinds for ext in ("png", "pdf")]
    for path in paths:
        assert_png(path) if path.endswith(".png") else assert_pdf(path)


def test_heatmap_draws_z_iy_ix_on_non_square_grids(tmp_path):
    x, y = np.linspace(-1, 1, 7), np.linspace(-0.5, 1.5, 4)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, y))
    fig = figure_2d(surface, "train_loss", "heat", Scale(0.1, 10, 0.5), "t")
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(4, 7), bowl(x, y))
    assert fig.axes[0].get_xlim()[1] > 1 and fig.axes[0].get_ylim()[1] > 1.5  # α across, β up


@pytest.mark.parametrize("nx, ny", [(6, 6), (7, 4)])
def test_reference_layout_files(tmp_path, capsys, nx, ny):
    x, y = np.linspace(-1, 1, nx), np.linspace(-2, 2, ny)
    path = write_reference_surface(tmp_path / "ref.h5", x, y, unfinished=[(ny - 1, nx - 1)])
    surface = read_surface(path)
    fig = figure_2d(surface, "train_loss", "heat", Scale(0.1, 10, 0.5), figure_title(surface, path))
    drawn = fig.axes[0].collections[0].get_array().reshape(ny, nx)
    expected = np.ma.masked_array(bowl(x, y), mask=np.zeros((ny, nx), dtype=bool))
    expected.mask[ny - 1, nx - 1] = True
    np.testing.assert_array_equal(drawn.mask, expected.mask)
    np.testing.assert_allclose(drawn.compressed(), expected.compressed())
    assert fig.axes[0].get_title() == f"ref.h5\n{nx}×{ny} grid, {done_text(1 - 1 / (nx * ny))}"
    paths = run_plot(capsys, path, "--format", "png")
    assert len(paths) == 4
    for p in paths:
        assert_png(p)


def test_partial_file_masks_unfinished_points_and_says_how_much_is_done(tmp_path):
    x, y = np.linspace(-1, 1, 10), np.linspace(-1, 1, 10)
    done = np.zeros((10, 10), dtype=bool)
    done.ravel()[:63] = True
    surface = read_surface(write_surface(tmp_path / "partial.h5", x, y, done=done))
    title = figure_title(surface, "partial.h5")
    assert title == "demo_mlp · demo.t7\nfilter-normalized weights, 10×10 grid, 63% done"
    fig = figure_2d(surface, "train_loss", "heat", Scale(0.1, 10, 0.5), title)
    drawn = fig.axes[0].collections[0].get_array()
    assert drawn.mask.sum() == 37 and not drawn.mask.ravel()[:63].any()
    assert fig.axes[0].get_title() == title


def test_titles_of_complete_files_and_rounding():
    assert done_text(0.999) == "99% done" and done_text(0.0) == "0% done"
    x = np.linspace(-1, 1, 3)
    complete = Surface(x, x, {}, np.ones((3, 3), dtype=bool), None, {"config": DEMO_CONFIG})
    assert figure_title(complete, "f.h5") == "demo_mlp · demo.t7\nfilter-normalized weights, 3×3 grid"
    interp = Surface(x, None, {}, np.ones(3, dtype=bool), None,
                     {"config": {**DEMO_CONFIG, "model_file2": "b.t7"}})
    assert figure_title(interp, "f.h5") == "demo_mlp · demo.t7\ninterpolation to b.t7, 3 points"


def test_1d_files_overlaid(tmp_path, capsys):
    x = np.linspace(-1, 1, 21)
    first = write_surface(tmp_path / "a.h5", x)
    done = np.arange(21) < 15
    second = write_surface(tmp_path / "b.h5", x, done=done,
                           config={**DEMO_CONFIG, "model_file": "other.t7"})
    surfaces = [(read_surface(first), "first"), (read_surface(second), "second")]
    fig = figure_1d(surfaces, "title")
    loss_ax, acc_ax = fig.axes
    styles = {(line.get_color(), line.get_linestyle()) for line in loss_ax.lines}
    assert styles == {("C0", "-"), ("C0", "--"), ("C1", "-"), ("C1", "--")}
    assert len(acc_ax.lines) == 4
    assert np.isnan(loss_ax.lines[2].get_ydata()[15:]).all()  # unfinished: a gap, not a value
    assert loss_ax.get_ylabel() == "loss (mean cross-entropy)" and acc_ax.get_ylabel() == "accuracy (%)"
    assert loss_ax.get_xlabel().startswith("α")

    paths = run_plot(capsys, first, second, "--log", "--out", str(tmp_path / "both"))
    assert paths == [str(tmp_path / "both_1d_compare_log.png"), str(tmp_path / "both_1d_compare_log.pdf")]
    assert_png(paths[0])
    assert_pdf(paths[1])
    single = run_plot(capsys, second, "--format", "png")
    assert single == [str(tmp_path / "b_1d_loss_acc.png")]
    legend = legend_label(read_surface(second), second)
    assert legend == "demo_mlp · other.t7 (71% done)"


def test_trajectory_on_contours_with_pca_axes_and_lr_drops(tmp_path, capsys, monkeypatch):
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)
    with h5py.File(tmp_path / "dirs.h5", "w") as f:  # a PCA direction file, reference layout
        f["xdirection/0"] = np.ones((3, 2), dtype=np.float32)
        f["ydirection/0"] = np.ones((3, 2), dtype=np.float32)
        f["explained_variance_ratio_"] = np.array([0.6234, 0.2101])
    surf = write_surface(tmp_path / "s.h5", x, y, dir_file="dirs.h5")
    t = np.linspace(0, 1, 12)
    proj = write_projection(tmp_path / "p.h5", 0.8 * (1 - t), 0.5 * (1 - t) ** 2,
                            epochs=np.arange(0, 120, 10), drops=np.array([30, 80]))
    fig = figure_trajectory(read_surface(surf), "train_loss", read_projection(proj),
                            Scale(0.1, 10, 0.5), "t", (0.6234, 0.2101))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "PC1 (62.3% of variance)" and ax.get_ylabel() == "PC2 (21.0% of variance)"
    drops = [line for line in ax.lines if line.get_label() == "lr drop"][0]
    np.testing.assert_allclose(drops.get_xdata(), 0.8 * (1 - t[[3, 8]]))
    assert sorted(t.get_text() for t in ax.texts if t.get_text().startswith("ep")) == ["ep 30", "ep 80"]

    monkeypatch.chdir(tmp_path.parent)  # the stored dir_file name is found beside the surface file too
    assert read_explained_variance(locate_dir_file(surf, read_surface(surf), None)) == (0.6234, 0.2101)
    with pytest.raises(LandscapeError, match="--dir_file nowhere.h5 does not exist"):
        locate_dir_file(surf, read_surface(surf), "nowhere.h5")
    paths = run_plot(capsys, surf, "--proj_file", proj, "--kinds", "contour", "--format", "png")
    assert paths == [str(tmp_path / "s_train_loss_2dcontour.png"),
                     str(tmp_path / "s_train_loss_2dcontour_proj.png")]
    assert_png(paths[1])


def test_projection_files_are_checked(tmp_path):
    numbered = read_projection(write_projection(tmp_path / "ref.h5", np.zeros(3), np.zeros(3)))
    assert numbered.epochs.tolist() == [0, 1, 2]  # the reference's files have no epochs
    short = write_projection(tmp_path / "short.h5", np.zeros(3), np.zeros(2))
    with pytest.raises(LandscapeError, match="one entry per checkpoint"):
        read_projection(short)


def test_compare_puts_surfaces_on_one_colour_scale(tmp_path, capsys):
    x = np.linspace(-1, 1, 8)
    paths = [write_surface(tmp_path / f"s{i}.h5", x, x, metrics={"train_loss": (i + 1) * bowl(x, x)},
                           config={**DEMO_CONFIG, "model": f"net{i}"}) for i in range(3)]
    surfaces = [(read_surface(p), p) for p in paths]
    fig = figure_compare(surfaces, "train_loss", Scale(0.1, 10, 0.5), [None] * 3)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["net0 · demo.t7", "net1 · demo.t7", "net2 · demo.t7"]
    filled = [ax.collections[0] for ax in panels]
    assert {(c.norm.vmin, c.norm.vmax) for c in filled} == {(0.1, 10)}
    assert all(np.array_equal(c.levels, filled[0].levels) for c in filled)
    assert len(fig.axes) == 4  # three panels and one colour bar

    written = run_plot(capsys, *paths, "--compare", "--metric", "train_loss", "--format", "png,pdf",
                       "--out", str(tmp_path / "cmp"))
    assert written == [str(tmp_path / f"cmp_train_loss_2dcompare.{ext}") for ext in ("png", "pdf")]
    assert_png(written[0])
    assert_pdf(written[1])


def test_log_scale_and_other_metrics(tmp_path, capsys):
    x = np.linspace(-1, 1, 9)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x))
    config = plot.parse_plot_config([str(tmp_path / "s.h5"), "--log"])
    scale = plot.resolve_scale(config, [surface])
    np.testing.assert_allclose(scale.levels()[[0, 10, 20]], [0.1, 1.0, 10.0])
    config = plot.parse_plot_config([str(tmp_path / "s.h5"), "--metric", "test_acc"])
    scale = plot.resolve_scale(config, [surface])
    acc = surface.metrics["test_acc"]
    assert (scale.vmin, scale.vmax) == (acc.min(), acc.max())
    paths = run_plot(capsys, str(tmp_path / "s.h5"), "--metric", "test_acc", "--kinds", "surface,heat",
                     "--format", "png")
    assert [os.path.basename(p) for p in paths] == ["s_test_acc_3dsurface.png", "s_test_acc_2dheat.png"]
    fig = figure_2d(surface, "train_loss", "surface", Scale(0.1, 10, 0.1, log=True), "t")
    assert fig.axes[0].get_zlabel() == "log10 loss (train, mean cross-entropy)"


def test_watch_redraws_until_the_file_is_complete(tmp_path, capsys):
    x = np.linspace(-1, 1, 6)
    path = tmp_path / "live.h5"
    half = np.zeros((6, 6), dtype=bool)
    half[:3] = True
    write_surface(path, x, x, done=half)

    def finish_later():
        time.sleep(1.0)
        write_surface(tmp_path / "complete.h5", x, x)
        os.replace(tmp_path / "complete.h5", path)  # as the writer does: the file is replaced whole

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    started = time.monotonic()
    assert plot.main([str(path), "--watch", "0.3", "--kinds", "heat", "--format", "png"]) == 0
    finisher.join()
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "live_train_loss_2dheat.png")]
    assert "redrawn: 100%" in err.splitlines()[-1] and time.monotonic() - started >= 1.0


def test_user_errors_are_one_line(tmp_path, capsys):
    x = np.linspace(-1, 1, 5)
    two_d = write_surface(tmp_path / "a.h5", x, x)
    one_d = write_surface(tmp_path / "b.h5", x)
    for args, message in ([[two_d, "--metric", "nope"], "has no array 'nope'"],
                          [[two_d, one_d], "1D and 2D"],
                          [[str(tmp_path / "missing.h5")], "does not exist"],
                          [[one_d, "--proj_file", "p.h5"], "needs a 2D surface"],
                          [[two_d, "--vmin", "5", "--vmax", "1"], "must be below"],
                          [[two_d, "--format", "gif"], "--format"]):
        with pytest.raises(SystemExit) as exit_info:
            plot.main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_command_line_entry_point(demo_run, tmp_path):
    result = run_module("mpi_landscape.plot", demo_run, "--kinds", "contour", "--format", "png",
                        "--out", str(tmp_path / "cli"), "--vmin", "0.01", "--vmax", "2", "--vlevel", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "cli_train_loss_2dcontour.png")]
    assert_png(result.stdout.split()[0])
