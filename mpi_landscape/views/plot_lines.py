"""Matplotlib figures of 1D surface files: loss and accuracy curves, interpolations, bands.

One file is drawn as the reference's plot_1D draws it (loss on the left axis
in blue, accuracy on the right in red); several are told apart by colour on
two stacked panels, loss above accuracy, so no axis label has to stand for
more than one curve. An interpolation between two checkpoints marks α = 0
and α = 1 and names both models. Diverged points are gaps, their α shaded.
A log loss axis is ticked in plain numbers, as the 2D colour bars are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ..errors import LandscapeError
from ..store import Surface
from ..summary import CurveSet
from .plot_data import axis_label, diverged_mask, interpolation_ends, loss_description, metric_label, metric_values
from .plot_layout import COLUMN_WIDTH, figure_title, plain_log_axis

SPLIT_STYLES = (("train", "-"), ("test", "--"))
LEGEND_COLUMNS = 2  # legend entries side by side below the axes: fits a column's width


def figure_1d(curves: Sequence[tuple[Surface, str]], title: str, log: bool = False,
              loss_range: tuple[float | None, float | None] = (None, None),
              acc_range: tuple[float, float] | None = None) -> Figure:
    """Loss and accuracy against α; train solid, test dashed.

    One file: loss on the left axis, accuracy on the right (the reference's
    colours); an interpolation also marks and names its two models. Several
    files: loss above, accuracy below, one colour per file. ``loss_range`` and
    ``acc_range`` fix the axes (the reference's ``--loss_max``); the legend
    sits below the axes, off the curves.
    """
    if len(curves) == 1:
        fig, handles = _one_file(curves[0][0], log)
    else:
        fig, handles = _several_files(curves)
    loss_ax, acc_ax = fig.axes[:2]
    if not handles:
        raise LandscapeError("the 1D file has no train_/test_ loss or accuracy arrays to plot")
    band = _shade_diverged([loss_ax] if len(curves) == 1 else [loss_ax, acc_ax], [s for s, _ in curves])
    if band is not None:
        handles.append(band)
    if log:
        loss_ax.set_yscale("log")
        plain_log_axis(loss_ax.yaxis)
    loss_ax.set_ylim(*loss_range)
    if acc_range is not None:
        acc_ax.set_ylim(*acc_range)
    loss_ax.set_xlim(min(s.x.min() for s, _ in curves), max(s.x.max() for s, _ in curves))
    ends = interpolation_ends(curves[0][0]) if len(curves) == 1 else None
    if ends is not None:
        _mark_ends(loss_ax, ends)
        title = "\n".join(filter(None, [title, f"α = 0: {ends[0]}", f"α = 1: {ends[1]}"]))
    figure_title(fig, title)
    fig.legend(handles=handles, loc="outside lower center", ncols=LEGEND_COLUMNS, frameon=False)
    return fig


def _one_file(surface: Surface, log: bool) -> tuple[Figure, list]:
    """The reference's layout: loss (blue, left axis) and accuracy (red, right axis) of each split."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.add_subplot()
    acc_ax = ax.twinx()
    handles = []
    for split, style in SPLIT_STYLES:
        for kind, axes, colour in (("loss", ax, "tab:blue"), ("acc", acc_ax, "tab:red")):
            name = f"{split}_{kind}"
            if name in surface.metrics:
                what = "loss" if kind == "loss" else "accuracy"
                handles += axes.plot(surface.x, metric_values(surface, name), style, color=colour,
                                     label=f"{split} {what}")
    ax.set_xlabel(axis_label("x", surface))
    ax.set_ylabel(f"loss ({loss_description(surface)})", color="tab:blue")
    acc_ax.set_ylabel("accuracy (%)", color="tab:red")
    return fig, handles


def _several_files(curves: Sequence[tuple[Surface, str]]) -> tuple[Figure, list]:
    """Loss above accuracy, sharing α; a colour per file, train solid and test dashed."""
    fig = Figure(figsize=(COLUMN_WIDTH, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(2, 1, sharex=True)
    handles = []
    for i, (surface, label) in enumerate(curves):
        for split, style in SPLIT_STYLES:
            for kind, axes in (("loss", loss_ax), ("acc", acc_ax)):
                if f"{split}_{kind}" in surface.metrics:
                    axes.plot(surface.x, metric_values(surface, f"{split}_{kind}"), style, color=f"C{i}")
        handles.append(Line2D([], [], color=f"C{i}", label=label))
    handles += [Line2D([], [], color="k", linestyle=style, label=split) for split, style in SPLIT_STYLES]
    if not any(axes.lines for axes in (loss_ax, acc_ax)):
        handles = []
    surface = curves[0][0]
    loss_ax.set_ylabel(f"loss ({loss_description(surface)})")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_xlabel(axis_label("x", surface))
    return fig, handles


def _mark_ends(ax, ends: tuple[str, str]) -> None:
    """Dotted lines at α = 0 and α = 1, marked θ₁ and θ₂ just above the axes (off the curves)."""
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for alpha, name in ((0.0, "θ₁"), (1.0, "θ₂")):
        ax.axvline(alpha, color="0.4", linestyle=":", linewidth=0.8, label=f"_model {name}", zorder=1)
        ax.text(alpha, 1.01, name, transform=top, ha="center", va="bottom", fontsize=7)


def _shade_diverged(axes: Sequence, surfaces: Sequence[Surface]):
    """Grey bands over the α where any curve diverged; the legend handle, or None when none did."""
    handle = None
    for surface in surfaces:
        diverged = np.zeros(surface.shape, dtype=bool)
        for name in surface.metrics:
            diverged |= diverged_mask(surface, name)
        x = surface.x
        half = np.diff(x).min() / 2 if len(x) > 1 else 0.5
        for start, stop in _runs(diverged):
            for ax in axes:
                handle = ax.axvspan(x[start] - half, x[stop - 1] + half, color="0.85", zorder=0,
                                    linewidth=0, label="diverged (non-finite outputs)")
    return handle


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def figure_band(surface: Surface, band: CurveSet, count: int, metric: str, title: str,
                log: bool = False, value_range: tuple[float | None, float | None] | None = None) -> Figure:
    """The mean of ``metric`` over several 1D curves on ``surface``'s α grid (random directions of
    different seeds) with ± one standard deviation shaded and the pointwise extremes dotted.

    ``value_range`` fixes the value axis (``--vmin``/``--loss_max`` for a loss, ``--acc_range``
    for an accuracy); the legend sits below the axes, as in ``figure_1d``.
    """
    fig = Figure(figsize=(COLUMN_WIDTH, 2.9), layout="constrained")
    ax = fig.add_subplot()
    alpha = surface.x
    ax.fill_between(alpha, band.mean - band.std, band.mean + band.std, color="tab:blue", alpha=0.3,
                    linewidth=0, label="± 1 standard deviation")
    ax.plot(alpha, band.low, ":", color="tab:blue", linewidth=0.7, label="min / max")
    ax.plot(alpha, band.high, ":", color="tab:blue", linewidth=0.7)
    ax.plot(alpha, band.mean, color="tab:blue", label=f"mean of {count} directions")
    ax.set_xlabel(axis_label("x", surface))
    ax.set_ylabel(metric_label(metric, surface))
    if log:
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
    if value_range is not None:
        ax.set_ylim(*value_range)
    ax.set_xlim(alpha.min(), alpha.max())
    figure_title(fig, title)
    fig.legend(loc="outside lower center", ncols=LEGEND_COLUMNS, frameon=False)
    return fig
