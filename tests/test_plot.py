"""Tests of ``python -m mpi_landscape.plot``: every figure kind, from our files and the reference's.

Surfaces come from a real (small) demo run, from ``SurfaceWriter`` with known
analytic values (complete and partial), and from plain h5py in the
reference's layout (2D arrays stored (nx, ny), -1 for unfinished). Figures are
checked as files (valid PNG/PDF, not a blank image) and as matplotlib objects
(the values drawn, the labels, the title).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from conftest import run_module
from mpi_landscape import plot
from mpi_landscape.errors import LandscapeError
from mpi_landscape.store import Surface, read_projection, read_surface
from mpi_landscape.views.plot_data import (diverged_mask, done_text, figure_metadata, figure_title,
                                           legend_label, locate_dir_file, metric_values, preview,
                                           read_explained_variance)
from mpi_landscape.views.figure_trajectory import figure_trajectory
from mpi_landscape.views.plot_figures import Scale, column_style, figure_1d, figure_2d, figure_compare
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
    assert fig.get_suptitle() == f"ref.h5, {done_text(1 - 1 / (nx * ny))}"
    assert figure_metadata(surface, path)["Subject"] == f"ref.h5: {nx}×{ny} grid, {done_text(1 - 1 / (nx * ny))}"
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
    assert title == "demo_mlp · demo.t7, 63% done"
    assert figure_metadata(surface, "partial.h5")["Subject"] == \
        "partial.h5: filter-normalized weights, 10×10 grid, 63% done"
    fig = figure_2d(surface, "train_loss", "heat", Scale(0.1, 10, 0.5), title)
    drawn = fig.axes[0].collections[0].get_array()
    assert drawn.mask.sum() == 37 and not drawn.mask.ravel()[:63].any()
    assert fig.get_suptitle() == title


def test_titles_of_complete_files_and_rounding():
    assert done_text(0.999) == "99% done" and done_text(0.0) == "0% done"
    x = np.linspace(-1, 1, 3)
    complete = Surface(x, x, {}, np.ones((3, 3), dtype=bool), None, {"config": DEMO_CONFIG})
    assert figure_title(complete, "f.h5") == "demo_mlp · demo.t7"
    assert figure_metadata(complete, "f.h5") == {"Title": "demo_mlp · demo.t7",
                                                 "Subject": "f.h5: filter-normalized weights, 3×3 grid"}
    interp = Surface(x, None, {}, np.ones(3, dtype=bool), None,
                     {"config": {**DEMO_CONFIG, "model_file2": "b.t7"}})
    assert figure_metadata(interp, "f.h5")["Subject"] == "f.h5: interpolation to b.t7, 3 points"


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
    assert acc_ax.get_xlabel().startswith("α")  # loss above, accuracy below: α under both

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
    drops = [line for line in ax.lines if line.get_label().startswith("lr drop")][0]
    np.testing.assert_allclose(drops.get_xdata(), 0.8 * (1 - t[[3, 8]]))
    assert drops.get_label() == "lr drop (epoch 30, 80)"  # named once in the legend: no labels to overprint
    assert drops.get_color() == "red" and drops.get_marker() == "o"  # the paper's red dots
    assert not [t for t in ax.texts if t.get_text().startswith("ep")]
    marks = {line.get_label(): line for line in ax.lines}
    assert (marks["start"].get_xdata()[0], marks["end"].get_xdata()[0]) == (0.8, 0.0)
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"start", "end", "lr drop (epoch 30, 80)"} <= set(legend_texts)

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
    surfaces = [(read_surface(p), f"net{i} · demo.t7") for i, p in enumerate(paths)]
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
    low = surface.metrics["train_loss"].min()
    assert scale.log and scale.vmin == low
    levels = scale.levels()
    assert levels[0] > low and levels[-1] <= surface.metrics["train_loss"].max() and len(levels) >= 8
    assert all(len(f"{v:g}".replace(".", "").strip("0")) <= 2 for v in levels)  # 1, 1.5, 2, 3, 5, ...
    config = plot.parse_plot_config([str(tmp_path / "s.h5"), "--metric", "test_acc"])
    scale = plot.resolve_scale(config, [surface])
    acc = surface.metrics["test_acc"]
    assert (scale.vmin, scale.vmax) == (acc.min(), acc.max())
    paths = run_plot(capsys, str(tmp_path / "s.h5"), "--metric", "test_acc", "--kinds", "surface,heat",
                     "--format", "png")
    assert [os.path.basename(p) for p in paths] == ["s_test_acc_3dsurface.png", "s_test_acc_2dheat.png"]
    fig = figure_2d(surface, "train_loss", "surface", Scale(0.1, 10, 0.1, log=True), "t", log_height=True)
    fig.canvas.draw()
    ax3d, bar = fig.axes
    assert bar.get_ylabel() == "loss (train, mean cross-entropy)"
    z_ticks = [t.get_text() for t in ax3d.get_zticklabels() if t.get_text()]
    assert len(z_ticks) >= 3 and set(z_ticks) <= {f"{m * 10.0 ** k:g}" for m in (1, 2, 5) for k in range(-2, 3)}  # log10 height, round ticks


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


def test_reference_interpolation_nan_points_are_done_and_diverged(tmp_path):
    """The reference's scheduler counts NaN points as finished: so do we, and they show as diverged."""
    x = np.linspace(-0.5, 1.5, 9)
    loss = np.where((x < -0.3) | (x > 1.3), np.nan, 0.1 + x ** 2)
    acc = np.where(np.isnan(loss), 100 / 3, 90.0)  # what argmax of NaN rows gave the reference: class 0
    path = tmp_path / "ref_interp.h5"
    with h5py.File(path, "w") as f:
        f["xcoordinates"], f["train_loss"], f["train_acc"] = x, loss, acc
    surface = read_surface(str(path))
    assert surface.fraction_done == 1.0
    assert done_text(surface.fraction_done) == "100% done"
    np.testing.assert_array_equal(diverged_mask(surface, "train_acc"), np.isnan(loss))
    values = metric_values(surface, "train_acc")
    assert np.isnan(values[np.isnan(loss)]).all() and (values[~np.isnan(loss)] == 90).all()


def basin(x: np.ndarray) -> np.ndarray:
    """A trained network's loss: 0.004 at the minimum, 4 at the corners (three decades)."""
    xx, yy = np.meshgrid(x, x)
    return 0.004 * 1000 ** ((xx ** 2 + yy ** 2) / 2)


def test_default_levels_resolve_the_basin_and_colours_end_at_the_data(tmp_path):
    x = np.linspace(-1, 1, 21)
    loss = basin(x)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x, metrics={"train_loss": loss}))
    config = plot.parse_plot_config([str(tmp_path / "s.h5")])
    scale = plot.resolve_scale(config, [surface])
    assert (scale.vmin, scale.vmax) == (loss.min(), loss.max())  # the data's range, not 0.1..10
    assert (scale.levels() < 0.1).sum() >= 3
    fig = figure_2d(surface, "train_loss", "contour", scale, "t")
    assert (np.asarray(fig.axes[0].collections[0].levels) < 0.1).sum() >= 3  # drawn, not just computed
    reference = plot.resolve_scale(plot.parse_plot_config([str(tmp_path / "s.h5"), "--vmin", "0.1", "--vmax",
                                                           "10", "--vlevel", "0.5"]), [surface])
    np.testing.assert_allclose(reference.levels(), np.arange(0.1, 10, 0.5))  # the reference's, exactly
    assert not reference.log and (reference.vmin, reference.vmax) == (0.1, 10)


def colour_bar_labels(fig) -> list[str]:
    fig.canvas.draw()
    bar = fig.axes[-1]
    return [t.get_text() for t in bar.get_yticklabels() if t.get_text()]


@pytest.mark.parametrize("kind", ["contour", "contourf", "heat", "surface"])
def test_colour_bar_ticks_are_round_numbers(tmp_path, kind):
    x = np.linspace(-1, 1, 9)
    xx, yy = np.meshgrid(x, x)
    acc = 48.5333 + (94.8533 - 48.5333) * (1 - (xx ** 2 + yy ** 2) / 2)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x, metrics={"train_acc": acc}))
    scale = plot.resolve_scale(plot.parse_plot_config([str(tmp_path / "s.h5"), "--metric", "train_acc"]),
                               [surface])
    labels = colour_bar_labels(figure_2d(surface, "train_acc", kind, scale, "t"))
    assert len(labels) >= 3
    for label in labels:
        digits = label.replace("−", "").replace("-", "").replace(".", "").lstrip("0")
        assert len(digits.rstrip("0") or "0") <= 3, labels


def test_equal_aspect_for_directions_in_the_same_units(tmp_path):
    x = np.linspace(-1, 1, 7)
    square = read_surface(write_surface(tmp_path / "s.h5", x, x))
    assert figure_2d(square, "train_loss", "heat", Scale(0.1, 10), "t").axes[0].get_aspect() == 1.0
    interp = read_surface(write_surface(tmp_path / "i.h5", x, x, config={**DEMO_CONFIG, "model_file2": "b.t7"}))
    assert figure_2d(interp, "train_loss", "heat", Scale(0.1, 10), "t").axes[0].get_aspect() == "auto"


def test_titles_labels_and_metadata_from_the_command_line(tmp_path, capsys):
    from PIL import Image

    x = np.linspace(-1, 1, 6)
    paths = [write_surface(tmp_path / f"s{i}.h5", x, x) for i in range(2)]  # same model and checkpoint
    out = str(tmp_path / "cmp")
    run_plot(capsys, *paths, "--compare", "--format", "png", "--out", out)
    shown = plot.draw(plot.parse_plot_config([*paths, "--compare", "--format", "png", "--out", out]))
    assert shown[1] == 1.0
    fig = figure_compare([(read_surface(p), f"panel {i}") for i, p in enumerate(paths)], "train_loss",
                         Scale(0.1, 10), [None] * 2, title="Figure 6")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["panel 0", "panel 1"]
    assert fig.get_suptitle() == "Figure 6"
    written = run_plot(capsys, *paths, "--compare", "--format", "png", "--out", out, "--labels", "SGD, Adam",
                       "--title", "two optimizers")
    text = Image.open(written[0]).text
    assert text["Title"] == "two optimizers" and "s0.h5: filter-normalized weights, 6×6 grid" in text["Description"]
    default = plot._distinct_labels(["net · a.t7", "net · a.t7"], [(p, None) for p in paths])
    assert default == ["net · a.t7 [s0.h5]", "net · a.t7 [s1.h5]"]  # identical defaults told apart
    with pytest.raises(SystemExit):
        plot.main([*paths, "--compare", "--labels", "only one"])
    assert "--labels gives 1 labels for 2 files" in capsys.readouterr().err


def test_3d_surface_has_a_colour_bar_and_is_clipped_at_vmax(tmp_path):
    x = np.linspace(-1, 1, 9)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x))
    fig = figure_2d(surface, "train_loss", "surface", Scale(0.2, 1.5), "t")
    ax3d = fig.axes[0]
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel().startswith("loss")
    heights = ax3d.collections[0]._faces[..., 2]  # the drawn polygons' z coordinates
    assert np.nanmax(heights) <= 1.5 + 1e-9 and ax3d.get_zlim()[1] == pytest.approx(1.5)


def test_1d_ranges_legend_outside_and_diverged_ends(tmp_path, capsys):
    x = np.linspace(-0.5, 1.5, 21)
    loss = np.where((x < -0.35) | (x > 1.35), np.nan, 0.05 + (x - 0.5) ** 2)
    metrics = {"train_loss": loss, "train_acc": np.where(np.isnan(loss), 0.0, 95.0),
               "train_nonfinite": np.where(np.isnan(loss), 1.0, 0.0)}
    path = write_surface(tmp_path / "interp.h5", x, metrics=metrics)
    surface = read_surface(path)
    fig = figure_1d([(surface, "a")], "t", loss_range=(0, 5), acc_range=(0, 100))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylim() == (0, 5) and acc_ax.get_ylim() == (0, 100)
    assert loss_ax.get_legend() is None and acc_ax.get_legend() is None and len(fig.legends) == 1
    acc = acc_ax.lines[0].get_ydata()
    assert np.isnan(acc[np.isnan(loss)]).all()  # no accuracy drawn where the network is undefined
    bands = [p for p in loss_ax.patches if p.get_label().startswith("diverged")]
    assert len(bands) == 2
    assert "diverged (non-finite outputs)" in [t.get_text() for t in fig.legends[0].get_texts()]

    config = plot.parse_plot_config([path, "--loss_max", "3", "--acc_range", "50:100", "--vmin", "0.01"])
    with column_style():
        written = plot._draw_1d(config, [(path, surface)], None, ["png"])
    assert_png(written[0])
    with pytest.raises(SystemExit):
        plot.main([path, "--acc_range", "100:50"])
    assert "LO must be below HI" in capsys.readouterr().err


def test_diverged_points_are_marked_in_2d(tmp_path):
    x = np.linspace(-1, 1, 5)
    loss = bowl(x, x)
    loss[0, 0] = np.nan
    nonfinite = np.zeros_like(loss)
    nonfinite[0, 0] = 1.0
    acc = np.where(np.isnan(loss), 0.0, 90.0)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x, metrics={
        "train_loss": loss, "train_acc": acc, "train_nonfinite": nonfinite}))
    fig = figure_2d(surface, "train_acc", "heat", Scale(80, 100), "t")
    ax = fig.axes[0]
    assert np.ma.getmaskarray(ax.collections[0].get_array()).reshape(5, 5)[0, 0]  # a gap, not 0 %
    marks = [line for line in ax.lines if line.get_label() == "diverged"]
    assert len(marks) == 1 and (marks[0].get_xdata()[0], marks[0].get_ydata()[0]) == (-1, -1)


def test_any_metric_is_drawn_and_min_eig_gets_a_diverging_map(tmp_path, capsys):
    x = np.linspace(-1, 1, 7)
    xx, yy = np.meshgrid(x, x)
    metrics = {"train_loss": bowl(x, x), "min_eig": xx - 0.3, "eig_ratio": 0.5 + 0 * xx}
    path = write_surface(tmp_path / "h.h5", x, x, metrics=metrics)
    surface = read_surface(path)
    scale = plot.resolve_scale(plot.parse_plot_config([path, "--metric", "min_eig"]), [surface])
    assert scale.cmap == "RdBu_r" and scale.norm().vcenter == 0
    fig = figure_2d(surface, "min_eig", "heat", scale, "t")
    assert fig.axes[0].collections[0].get_cmap().name == "RdBu_r"
    assert fig.axes[0].child_axes[0].get_ylabel() == "smallest Hessian eigenvalue"  # the bar, beside the plane
    for metric in ("min_eig", "eig_ratio"):
        assert run_plot(capsys, path, "--metric", metric, "--kinds", "heat", "--format", "png")


def test_watch_waits_for_the_file_to_appear(tmp_path, capsys):
    x = np.linspace(-1, 1, 5)
    path = tmp_path / "later.h5"

    def create_later():
        time.sleep(1.0)
        write_surface(tmp_path / "tmp.h5", x, x)
        os.replace(tmp_path / "tmp.h5", path)

    creator = threading.Thread(target=create_later)
    creator.start()
    assert plot.main([str(path), "--watch", "0.2", "--kinds", "heat", "--format", "png"]) == 0
    creator.join()
    out, err = capsys.readouterr()
    assert "waiting for" in err and out.split() == [str(tmp_path / "later_train_loss_2dheat.png")]


def test_partial_coarse_to_fine_file_is_drawn_at_its_finest_complete_lattice(tmp_path):
    from mpi_landscape.grid import Grid

    x = np.linspace(-1, 1, 9)
    order = Grid.parse("-1:1:9", "-1:1:9").coarse_to_fine()
    done = np.zeros((9, 9), dtype=bool)
    done.ravel()[order[:25 + 6]] = True  # levels 0-1 (3×3), level 2 (5×5) and 6 points of level 3
    surface = read_surface(write_surface(tmp_path / "p.h5", x, x, done=done))
    shown = preview(surface)
    np.testing.assert_allclose(shown.x, x[::2])
    assert shown.done.all() and figure_title(shown, "p.h5") == "demo_mlp · demo.t7, 38% done, shown at 5×5"
    fig = figure_2d(shown, "train_loss", "heat", Scale(0.1, 10), figure_title(shown, "p.h5"))
    drawn = fig.axes[0].collections[0].get_array()
    assert drawn.size == 25 and not np.ma.getmaskarray(drawn).any()  # a surface, not isolated dots
    done.ravel()[order[:81]] = True
    assert preview(read_surface(write_surface(tmp_path / "full.h5", x, x, done=done))).x.size == 9


def test_views_and_their_entry_points_load_neither_torch_nor_mpi4py():
    probe = ("import sys, mpi_landscape.plot, mpi_landscape.vtk, mpi_landscape.views.plot_render; "
             "print(sorted(m for m in ('torch', 'mpi4py') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
