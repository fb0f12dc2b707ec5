"""The gallery's 2D, 1D, comparison, curvature and spectrum figures, checked as a reviewer reads them.

Each entry of tests/gallery.py (the figures of docs/figures.md) is drawn by
the plot command from small real surface files, and every figure it saves is
checked from the rendered figure object: colour-bar tick labels sit where the
bar has their value, no two pieces of text overlap, none is cut by the canvas
or by its axes' frame. Further tests check what each kind is for: curvature
maps that resolve the basin, contour lines that show on white, panels the
paper uses, names on the interpolation figure, atomic rewrites under --watch.
"""

from __future__ import annotations

import os
import shlex

import numpy as np
import pytest
from matplotlib.colors import LogNorm, SymLogNorm

import gallery
from figure_checks import (assert_bar_spans_axes, assert_colour_bar_ticks, assert_legible,
                           assert_lines_visible, colour_bars, visible_texts)
from mpi_landscape import plot
from mpi_landscape.store import read_surface
from mpi_landscape.views import plot_data
from mpi_landscape.views.plot_figures import Scale, column_style, figure_2d, figure_compare
from surface_files import DEMO_CONFIG, write_surface


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> str:
    return gallery.write_samples(str(tmp_path_factory.mktemp("gallery")))


def draw(monkeypatch, folder: str, args, out: str) -> list:
    """Run the plot command on ``args`` in ``folder``; returns (path, figure) for every figure saved."""
    saved = []
    original = plot.save

    def keep(fig, stem, *rest, **kwargs):
        paths = original(fig, stem, *rest, **kwargs)
        saved.append((paths[0], fig))
        return paths

    monkeypatch.setattr(plot, "save", keep)
    monkeypatch.chdir(folder)
    assert plot.main([*args, "--out", out, "--format", "png", "--dpi", "100"]) == 0
    assert saved
    return saved


@pytest.mark.parametrize("entry", gallery.ENTRIES, ids=[e.name for e in gallery.ENTRIES])
def test_gallery_figure_reads(entry, samples, tmp_path, monkeypatch, capsys):
    for path, fig in draw(monkeypatch, samples, entry.args, str(tmp_path / entry.name)):
        with column_style():
            assert_legible(fig)
        assert os.path.getsize(path) > 10_000


def figure_of(monkeypatch, samples, tmp_path, *args):
    (_, fig), = draw(monkeypatch, samples, args, str(tmp_path / "f"))
    return fig


# ---------------------------------------------------------------- 1: colour-bar ticks


@pytest.mark.parametrize("metric, flags", [("max_eig", ()), ("eig_ratio", ()),
                                           ("train_loss", ("--vmin", "0.01", "--vmax", "1", "--vlevel", "0.1"))])
def test_colour_bar_ticks_are_where_their_values_are(metric, flags, samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "curvature.h5", "--metric", metric, "--kinds",
                    "contourf", *flags)
    assert_colour_bar_ticks(fig, min_ticks=3)


def test_colour_bar_ticks_use_the_minus_of_the_axes(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "curvature.h5", "--metric", "min_eig", "--kinds", "heat")
    (bar,) = colour_bars(fig)
    labels = [t.get_text() for t in bar.ax.get_yticklabels() if t.get_text()]
    assert any(label.startswith("\u2212") for label in labels) and not any("-" in label for label in labels)


# ---------------------------------------------------------------- 3: curvature maps


def test_positive_curvature_spanning_decades_gets_a_log_scale(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "curvature.h5", "--metric", "max_eig", "--kinds", "contourf")
    filled = fig.axes[0].collections[0]
    assert isinstance(filled.norm, LogNorm)
    values = read_surface(os.path.join(samples, "curvature.h5")).metrics["max_eig"]
    basin = values[values < 20]  # λmax 1…20 across the basin: several colours, not one
    assert len(np.unique(np.searchsorted(filled.levels, basin))) >= 4


def test_signed_curvature_diverges_from_zero(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "curvature.h5", "--metric", "min_eig", "--kinds", "contourf")
    filled = fig.axes[0].collections[0]
    assert isinstance(filled.norm, SymLogNorm)
    assert filled.norm(0.0) == pytest.approx(0.5)  # white at zero
    levels = filled.levels
    assert 0.0 in levels and levels[0] <= -5 and levels[-1] > 0
    centre = read_surface(os.path.join(samples, "curvature.h5")).metrics["min_eig"][10, 10]
    assert centre == pytest.approx(-0.011)  # in a band of its own whose top edge is 0, not an extension
    assert levels[np.searchsorted(levels, centre)] == 0.0 and levels[0] < centre


def test_contour_lines_show_on_white_at_every_level(samples, tmp_path, monkeypatch):
    for metric in ("min_eig", "train_loss"):
        fig = figure_of(monkeypatch, samples, tmp_path, "curvature.h5", "--metric", metric, "--kinds", "contour")
        assert_lines_visible(fig.axes[0].collections[0])


def test_spectrum_figure_redrawn_from_its_file(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "spectrum.h5", "--spectrum")
    assert fig.get_figwidth() == pytest.approx(3.5)
    texts = [t.get_text() for t in visible_texts(fig)]
    assert any("1 run ×" in t for t in texts) and not any("1 runs" in t for t in texts)
    assert "λmax = 47.8" in texts and "λmin = \u22121.23" in texts
    assert os.path.isfile(tmp_path / "f_density.png")


# ---------------------------------------------------------------- 4: words that collide


def test_long_titles_and_contour_labels_stay_inside(tmp_path):
    x = np.linspace(-1, 1, 9)
    surface = read_surface(write_surface(tmp_path / "s.h5", x, x))
    title = "a_rather_long_model_name · checkpoint_epoch_300.t7, 63% done, shown at 5×5"
    with column_style():
        for kind in ("contour", "contourf", "heat"):
            fig = figure_2d(surface, "train_loss", kind, Scale(0.1, 5), title)
            assert_legible(fig)
            assert_bar_spans_axes(fig, fig.axes[0])


def test_narrow_range_contour_labels_do_not_repeat(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "gpt2.h5", "--kinds", "contour")
    lines = fig.axes[0].collections[0]
    assert lines.labelTexts
    for text, level in zip(lines.labelTexts, lines.labelCValues):  # each label is its own line's level
        assert float(text.get_text().replace("\u2212", "-")) == pytest.approx(level, rel=1e-9, abs=0), \
            f"the line at {level:g} is labelled {text.get_text()}"


def test_perplexity_is_named(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "gpt2.h5", "--metric", "train_perplexity", "--kinds", "heat")
    (bar,) = colour_bars(fig)
    assert bar.ax.get_ylabel() == "perplexity (train)"


def test_interpolation_names_both_checkpoints_and_marks_the_ends(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "interp.h5")
    texts = [t.get_text() for t in visible_texts(fig)]
    assert any("sgd_128/model_20.t7" in t for t in texts) and any("sgd_8192/model_20.t7" in t for t in texts)
    ax = fig.axes[0]
    marks = sorted(line.get_xdata()[0] for line in ax.lines if line.get_label().startswith("_model"))
    assert marks == [0.0, 1.0]


def test_labels_name_a_single_file(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "line.h5", "--labels", "VGG-9 · batch 128")
    assert "VGG-9 · batch 128" in [t.get_text() for t in visible_texts(fig)]


def test_multi_file_1d_overlay_is_two_panels_with_a_legend_within_the_figure(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "line.h5", "line_large.h5", "--labels", "small,large")
    loss_ax, acc_ax = [ax for ax in fig.axes if ax.get_ylabel()]
    assert loss_ax.get_ylabel().startswith("loss") and acc_ax.get_ylabel().startswith("accuracy")
    legend = fig.legends[0]
    fig.canvas.draw()
    assert legend.get_window_extent().width <= fig.bbox.width


def test_log_loss_ticks_are_plain_numbers_in_1d_as_in_2d(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "line.h5", "--log")
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and not any("$" in t for t in labels)


# ---------------------------------------------------------------- 6: panels the paper uses


def test_compare_grid_of_eight_with_subtitles_and_theta_star(samples, tmp_path, monkeypatch):
    entry = next(e for e in gallery.ENTRIES if e.name == "compare_grid")
    fig = figure_of(monkeypatch, samples, tmp_path, *entry.args)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 8
    rows = sorted({round(ax.get_position().y0, 3) for ax in panels})
    assert len(rows) == 2  # 2 × 4
    assert panels[0].get_title() == "SGD · batch 128 · wd 0\ntest error 7.4%"
    for ax in panels:
        (star,) = [line for line in ax.lines if line.get_label() == "θ*"]
        assert (star.get_xdata()[0], star.get_ydata()[0]) == (0.0, 0.0)


def test_train_beside_test_from_one_file(samples, tmp_path, monkeypatch):
    fig = figure_of(monkeypatch, samples, tmp_path, "basin.h5", "--compare", "--metric", "train_loss,test_loss")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["train loss", "test loss"]
    (bar,) = colour_bars(fig)
    assert bar.ax.get_ylabel() == "loss (mean cross-entropy)"


def test_cols_is_checked(samples, monkeypatch, capsys):
    monkeypatch.chdir(samples)
    with pytest.raises(SystemExit) as stopped:
        plot.main(["basin.h5", "--cols", "2"])
    assert stopped.value.code == 2 and "--cols" in capsys.readouterr().err


# ---------------------------------------------------------------- 7: --watch rewrites atomically


def test_figures_are_replaced_whole(samples, tmp_path, monkeypatch):
    """A viewer polling the PNG sees the old file or the new one, never a part: each is written
    under another name in the same folder and renamed over the old one."""
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(plot.os, "replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    figure_of(monkeypatch, samples, tmp_path, "basin.h5", "--kinds", "heat")
    ((temporary, final),) = renames
    assert final == str(tmp_path / "f_train_loss_2dheat.png")
    assert os.path.dirname(temporary) == str(tmp_path) and not os.path.exists(temporary)
    assert sorted(os.listdir(tmp_path)) == ["f_train_loss_2dheat.png"]


def test_figures_page_shows_every_gallery_figure_with_its_command():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    page = open(os.path.join(root, "docs", "figures.md"), encoding="utf-8").read()
    images = os.listdir(os.path.join(root, "docs", "images", "gallery"))
    for entry in gallery.ENTRIES:
        assert f"python -m mpi_landscape.plot {shlex.join(entry.args)}\n" in page, entry.name
        (image,) = [name for name in images if name.startswith(f"{entry.name}_") and
                    not any(name.startswith(f"{other.name}_") and len(other.name) > len(entry.name)
                            for other in gallery.ENTRIES)]
        assert f"(images/gallery/{image})" in page, entry.name


def test_compare_of_four_files_without_labels_keeps_titles_apart(tmp_path):
    x = np.linspace(-1, 1, 11)
    paths = [write_surface(tmp_path / f"resnet56_sgd_run{i}.h5", x, x,
                           config={**DEMO_CONFIG, "model": "resnet56_noshort",
                                   "model_file": f"cifar10/trained_nets/resnet56_sgd_lr=0.1_bs=128_wd=0.0005_run{i}/"
                                                 "model_300.t7"}) for i in range(4)]
    assert plot.main([*paths, "--compare", "--format", "png"]) == 0
    fig = figure_compare([(read_surface(p), plot_data.legend_label(read_surface(p), p)) for p in paths],
                         "train_loss", Scale(0.2, 5), [None] * 4)
    with column_style():
        assert_legible(fig)
