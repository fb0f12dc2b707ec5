"""Matplotlib figures of loss surfaces, sized for a paper column.

Each builder takes surfaces already read and returns a ``matplotlib.figure.Figure``
(no pyplot: no global state, no display, Agg for PNG and the PDF backend for
PDF). Unfinished points are masked, so a partial file shows gaps, not zeros;
points where the network diverged are gaps too, marked × (2D) or shaded (1D),
never drawn as values. Colour bars carry round ticks, α and β share one scale
when they are in the same units, and titles are short. The layouts are the
reference's (plot_1D, plot_2D, plot_trajectory), the paper's side-by-side
comparison (Figure 6) and the mean ± std band of several 1D random directions.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator

from ..errors import LandscapeError
from .figure_3d import surface_3d as _surface_3d
from .plane_axes import label_plane as _label_plane
from .plot_data import (axis_label, diverged_mask, loss_description, masked_values, metric_label,
                        metric_values)
from ..store import Surface
from ..summary import CurveSet

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 6.5, "lines.linewidth": 1.2,
    "pdf.fonttype": 42, "savefig.bbox": "tight",
}
KINDS = ("contour", "contourf", "heat", "surface")
MAX_LEVELS = 1000
ROUND_LEVELS = 12  # about this many contour levels when the spacing comes from the data
LOG_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))
MIN_LOG_LEVELS = 8  # finer mantissas until a log range has this many levels
DIVERGED_STYLE = dict(marker="x", color="0.45", markersize=3, linestyle="none", label="diverged")


@contextmanager
def column_style() -> Iterator[None]:
    """Fonts and sizes that stay readable when a figure is printed one column wide."""
    with matplotlib.rc_context(STYLE):
        yield


@dataclass(frozen=True)
class Scale:
    """The value range, contour levels and colour map shared by a figure's colours and lines.

    ``step`` is the reference's ``--vlevel`` (levels ``vmin, vmin+step, ...``;
    in decades with ``log``); without it the levels are round numbers inside
    the range: 1-2-5 per decade on a log scale, so the lowest decade -- a
    trained network's basin -- gets contours of its own. ``centre`` makes the
    colours diverge from that value (a curvature's sign).
    """

    vmin: float
    vmax: float
    step: float | None = None
    log: bool = False
    cmap: str = "viridis"
    centre: float | None = None

    def __post_init__(self) -> None:
        if not self.vmin < self.vmax:
            raise LandscapeError(f"--vmin {self.vmin:g} must be below --vmax {self.vmax:g}")
        if self.step is not None and not self.step > 0:
            raise LandscapeError(f"--vlevel {self.step:g} must be positive")
        if self.log and self.vmin <= 0:
            raise LandscapeError(f"--log needs a positive --vmin (got {self.vmin:g})")
        if len(self.levels()) > MAX_LEVELS:
            raise LandscapeError(f"--vlevel {self.step:g} gives more than {MAX_LEVELS} contour levels "
                                 f"between {self.vmin:g} and {self.vmax:g}; choose a larger step")

    def levels(self) -> np.ndarray:
        """Contour levels: from ``step`` when given (the reference's arange; in decades with
        ``log``, vmax included), else round numbers within [vmin, vmax]."""
        if self.step is not None:
            if self.log:
                exponents = np.arange(np.log10(self.vmin), np.log10(self.vmax) + 1e-9, self.step)
                return 10.0 ** exponents
            return np.arange(self.vmin, self.vmax, self.step)
        if self.log:
            return round_log_levels(self.vmin, self.vmax)
        levels = MaxNLocator(ROUND_LEVELS, steps=[1, 2, 2.5, 5, 10]).tick_values(self.vmin, self.vmax)
        span = self.vmax - self.vmin
        return levels[(levels >= self.vmin - 1e-9 * span) & (levels <= self.vmax + 1e-9 * span)]

    def norm(self) -> Normalize:
        if self.log:
            return LogNorm(self.vmin, self.vmax)
        if self.centre is not None and self.vmin < self.centre < self.vmax:
            return TwoSlopeNorm(self.centre, self.vmin, self.vmax)
        return Normalize(self.vmin, self.vmax)

    def ticks(self):
        """Round tick values: 1, 2, 5 per decade on a log scale, else a few round numbers."""
        return LogLocator(subs=(1.0, 2.0, 5.0)) if self.log else MaxNLocator(6, steps=[1, 2, 2.5, 5, 10])

    def colorbar(self, fig: Figure, mappable, ax, label: str, **kwargs) -> None:
        """A colour bar whose tick labels are round numbers, whatever the levels."""
        bar = fig.colorbar(mappable, ax=ax, label=label, **kwargs)
        bar.set_ticks(self.ticks())
        bar.formatter = FormatStrFormatter("%g")
        bar.update_ticks()


def round_log_levels(vmin: float, vmax: float) -> np.ndarray:
    """Levels m·10^k inside (vmin, vmax], with m from 1-2-5 or finer until there are enough of them."""
    decades = np.arange(np.floor(np.log10(vmin)), np.ceil(np.log10(vmax)) + 1)
    levels = np.array([])
    for mantissas in LOG_MANTISSAS:
        candidates = np.array([float(f"{m * 10.0 ** k:.3g}") for k in decades for m in mantissas])
        levels = np.unique(candidates[(candidates > vmin) & (candidates <= vmax * (1 + 1e-9))])
        if len(levels) >= MIN_LOG_LEVELS:
            break
    return levels


def figure_1d(curves: Sequence[tuple[Surface, str]], title: str, log: bool = False,
              loss_range: tuple[float | None, float | None] = (None, None),
              acc_range: tuple[float, float] | None = None) -> Figure:
    """Loss (left axis) and accuracy (right axis) against α; train solid, test dashed.

    One file is drawn in the reference's colours (loss blue, accuracy red);
    several are told apart by colour, with accuracy drawn thinner. Where the
    network diverged (non-finite outputs) the curves have gaps and the band is
    shaded. ``loss_range`` and ``acc_range`` fix the axes (the reference's
    ``--loss_max``); the legend sits below the axes, off the curves.
    """
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.add_subplot()
    acc_ax = ax.twinx()
    single = len(curves) == 1
    handles: list = []
    for i, (surface, label) in enumerate(curves):
        colour = f"C{i}"
        for split, style in (("train", "-"), ("test", "--")):
            for kind, axes, own_colour, width in (("loss", ax, "tab:blue", 1.2),
                                                   ("acc", acc_ax, "tab:red", 1.2 if single else 0.7)):
                name = f"{split}_{kind}"
                if name not in surface.metrics:
                    continue
                what = "loss" if kind == "loss" else "accuracy"
                line, = axes.plot(surface.x, metric_values(surface, name), style,
                                  color=own_colour if single else colour, linewidth=width,
                                  label=f"{split} {what}")
                if single:
                    handles.append(line)
        if not single:
            handles.append(Line2D([], [], color=colour, label=label))
    if not handles:
        raise LandscapeError("the 1D file has no train_/test_ loss or accuracy arrays to plot")
    if not single:
        handles += [Line2D([], [], color="k", linestyle="-", label="train"),
                    Line2D([], [], color="k", linestyle="--", label="test"),
                    Line2D([], [], color="k", linewidth=0.7, label="thin: accuracy")]
    band = _shade_diverged(ax, [s for s, _ in curves])
    if band is not None:
        handles.append(band)
    surface = curves[0][0]
    ax.set_xlabel(axis_label("x", surface))
    ax.set_ylabel(f"loss ({loss_description(surface)})", color="tab:blue" if single else "k")
    acc_ax.set_ylabel("accuracy (%)", color="tab:red" if single else "k")
    if log:
        ax.set_yscale("log")
    ax.set_ylim(*loss_range)
    if acc_range is not None:
        acc_ax.set_ylim(*acc_range)
    ax.set_xlim(min(s.x.min() for s, _ in curves), max(s.x.max() for s, _ in curves))
    if title:
        ax.set_title(title)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False)
    return fig


def _shade_diverged(ax, surfaces: Sequence[Surface]):
    """Grey bands over the α where any curve diverged; the legend handle, or None when none did."""
    handle = None
    for surface in surfaces:
        diverged = np.zeros(surface.shape, dtype=bool)
        for name in surface.metrics:
            diverged |= diverged_mask(surface, name)
        x = surface.x
        half = np.diff(x).min() / 2 if len(x) > 1 else 0.5
        for start, stop in _runs(diverged):
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
    if value_range is not None:
        ax.set_ylim(*value_range)
    ax.set_xlim(alpha.min(), alpha.max())
    if title:
        ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    return fig


def figure_2d(surface: Surface, metric: str, kind: str, scale: Scale, title: str,
              explained_variance: tuple[float, float] | None = None,
              log_height: bool = False) -> Figure:
    """One 2D view of ``metric``: labelled contour lines, filled contours, a heatmap or a 3D surface.

    Each has a colour bar with round ticks; diverged points are gaps marked ×.
    ``log_height`` (``--log``) draws the 3D surface's height as log10 of the metric.
    """
    if kind not in KINDS:
        raise LandscapeError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    z = masked_values(surface, metric, log=scale.log)
    label = metric_label(metric, surface)
    if kind == "surface":
        return _surface_3d(surface, z, label, scale, title, explained_variance, log_height)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.9), layout="constrained")
    ax = fig.add_subplot()
    if kind == "contour":
        lines = _contour_lines(ax, surface, z, scale)
        if len(lines.levels):
            scale.colorbar(fig, lines, ax, label)
    elif kind == "contourf":
        filled = ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                             cmap=scale.cmap, extend="both")
        scale.colorbar(fig, filled, ax, label)
    else:
        mesh = ax.pcolormesh(surface.x, surface.y, z, norm=scale.norm(), cmap=scale.cmap,
                             shading="nearest")
        scale.colorbar(fig, mesh, ax, label, extend="both")
    _mark_diverged(ax, surface, metric)
    _label_plane(ax, surface, explained_variance)
    if title:
        ax.set_title(title)
    return fig


def figure_compare(surfaces: Sequence[tuple[Surface, str]], metric: str, scale: Scale,
                   explained_variances: Sequence[tuple[float, float] | None],
                   title: str | None = None) -> Figure:
    """One panel per (surface, panel title), filled contours on one shared colour scale and one colour bar."""
    n = len(surfaces)
    nrows = -(-n // 3)
    ncols = -(-n // nrows)  # at most three across, rows filled evenly
    fig = Figure(figsize=(2.3 * ncols + 0.7, 2.2 * nrows + 0.2 + (0.2 if title else 0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    filled = None
    for i, ((surface, panel_title), variance) in enumerate(zip(surfaces, explained_variances)):
        ax = axes.flat[i]
        z = masked_values(surface, metric, log=scale.log)
        filled = ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                             cmap=scale.cmap, extend="both")
        ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                   colors="k", linewidths=0.3, alpha=0.5)
        _mark_diverged(ax, surface, metric)
        _label_plane(ax, surface, variance)
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
        ax.set_title(panel_title)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    scale.colorbar(fig, filled, axes.ravel().tolist(), metric_label(metric, surfaces[0][0]), shrink=0.7)
    if title:
        fig.suptitle(title)
    return fig


def _contour_lines(ax, surface: Surface, z: np.ma.MaskedArray, scale: Scale):
    """The reference's contour plot: lines at the scale's levels, each labelled with its value."""
    lines = ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                       cmap=scale.cmap, linewidths=0.8)
    if len(lines.levels):
        ax.clabel(lines, inline=True, fontsize=5.5, fmt="%.3g")
    return lines


def _mark_diverged(ax, surface: Surface, metric: str, legend: bool = True) -> None:
    """A grey × at each finished point where the network diverged (a gap in the colours)."""
    iy, ix = np.nonzero(diverged_mask(surface, metric))
    if len(ix):
        ax.plot(surface.x[ix], surface.y[iy], **DIVERGED_STYLE)
        if legend:
            ax.legend(loc="upper right", fontsize=5.5, framealpha=0.8, handlelength=1)
