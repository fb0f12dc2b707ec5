"""Matplotlib figures of loss surfaces, sized for a paper column.

Each builder takes surfaces already read and returns a ``matplotlib.figure.Figure``
(no pyplot: no global state, no display, Agg for PNG and the PDF backend for
PDF). Unfinished points are masked, so a partial file shows gaps, not zeros.
The layouts are the reference's (plot_1D, plot_2D, plot_trajectory) and the
paper's side-by-side comparison (Figure 6).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator

from ..errors import LandscapeError
from .plot_data import (axis_label, done_text, loss_description, masked_values,
                        metric_label, metric_values, short_name)
from ..store import Projection, Surface

COLUMN_WIDTH = 3.5  # inches: one column of a two-column paper
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 6.5, "lines.linewidth": 1.2,
    "pdf.fonttype": 42, "savefig.bbox": "tight",
}
KINDS = ("contour", "contourf", "heat", "surface")
MAX_LEVELS = 1000


@contextmanager
def column_style() -> Iterator[None]:
    """Fonts and sizes that stay readable when a figure is printed one column wide."""
    with matplotlib.rc_context(STYLE):
        yield


@dataclass(frozen=True)
class Scale:
    """The value range and contour spacing shared by a figure's colours and levels."""

    vmin: float
    vmax: float
    step: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.vmin < self.vmax:
            raise LandscapeError(f"--vmin {self.vmin:g} must be below --vmax {self.vmax:g}")
        if not self.step > 0:
            raise LandscapeError(f"--vlevel {self.step:g} must be positive")
        if self.log and self.vmin <= 0:
            raise LandscapeError(f"--log needs a positive --vmin (got {self.vmin:g})")
        if len(self.levels()) > MAX_LEVELS:
            raise LandscapeError(f"--vlevel {self.step:g} gives more than {MAX_LEVELS} contour levels "
                                 f"between {self.vmin:g} and {self.vmax:g}; choose a larger step")

    def levels(self) -> np.ndarray:
        """Contour levels from vmin in steps below vmax (the reference's arange); with ``log``,
        in decades, vmax included."""
        if self.log:
            exponents = np.arange(np.log10(self.vmin), np.log10(self.vmax) + 1e-9, self.step)
            return 10.0 ** exponents
        return np.arange(self.vmin, self.vmax, self.step)

    def norm(self) -> Normalize:
        return LogNorm(self.vmin, self.vmax) if self.log else Normalize(self.vmin, self.vmax)

    def colorbar(self, fig: Figure, mappable, ax, label: str, **kwargs) -> None:
        """A colour bar with plain numbers as tick labels (1, 2, 5 per decade on a log scale)."""
        ticks = LogLocator(subs=(1.0, 2.0, 5.0)) if self.log else None
        fig.colorbar(mappable, ax=ax, label=label, ticks=ticks, format=FormatStrFormatter("%g"), **kwargs)


def figure_1d(curves: Sequence[tuple[Surface, str]], title: str, log: bool = False) -> Figure:
    """Loss (left axis) and accuracy (right axis) against α; train solid, test dashed.

    One file is drawn in the reference's colours (loss blue, accuracy red);
    several are told apart by colour, with accuracy drawn thinner.
    """
    fig = Figure(figsize=(COLUMN_WIDTH, 2.6), layout="constrained")
    ax = fig.add_subplot()
    acc_ax = ax.twinx()
    single = len(curves) == 1
    handles: list[Line2D] = []
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
    surface = curves[0][0]
    ax.set_xlabel(axis_label("x", surface))
    ax.set_ylabel(f"loss ({loss_description(surface)})", color="tab:blue" if single else "k")
    acc_ax.set_ylabel("accuracy (%)", color="tab:red" if single else "k")
    if log:
        ax.set_yscale("log")
    ax.set_xlim(min(s.x.min() for s, _ in curves), max(s.x.max() for s, _ in curves))
    ax.set_title(title)
    acc_ax.legend(handles=handles, loc="best", framealpha=0.85)  # on the upper of the twin axes
    return fig


def figure_2d(surface: Surface, metric: str, kind: str, scale: Scale, title: str,
              explained_variance: tuple[float, float] | None = None) -> Figure:
    """One 2D view of ``metric``: labelled contour lines, filled contours, a heatmap or a 3D surface."""
    if kind not in KINDS:
        raise LandscapeError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    z = masked_values(surface, metric, log=scale.log)
    label = metric_label(metric, surface)
    if kind == "surface":
        return _surface_3d(surface, z, label, scale, title, explained_variance)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.9), layout="constrained")
    ax = fig.add_subplot()
    if kind == "contour":
        _contour_lines(ax, surface, z, scale)
    elif kind == "contourf":
        filled = ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                             cmap="viridis", extend="both")
        scale.colorbar(fig, filled, ax, label)
    else:
        mesh = ax.pcolormesh(surface.x, surface.y, z, norm=scale.norm(), cmap="viridis",
                             shading="nearest")
        scale.colorbar(fig, mesh, ax, label, extend="both")
    _label_plane(ax, surface, explained_variance)
    ax.set_title(title if kind != "contour" else f"{title}\ncontours: {label}")
    return fig


def figure_trajectory(surface: Surface, metric: str, projection: Projection, scale: Scale,
                      title: str, explained_variance: tuple[float, float] | None = None) -> Figure:
    """Contour lines of ``metric`` with the projected optimizer path, its ends and learning-rate drops."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.add_subplot()
    _contour_lines(ax, surface, masked_values(surface, metric, log=scale.log), scale)
    ax.plot(projection.xcoord, projection.ycoord, "-", color="k", linewidth=0.9, marker=".", markersize=2.5,
            label="path")
    ax.plot(projection.xcoord[:1], projection.ycoord[:1], "o", color="tab:green", markersize=4, label="start")
    ax.plot(projection.xcoord[-1:], projection.ycoord[-1:], "*", color="tab:red", markersize=7, label="end")
    drops = projection.drop_indices()
    if len(drops):
        ax.plot(projection.xcoord[drops], projection.ycoord[drops], "D", color="tab:orange", markersize=3.5,
                label="lr drop")
        for i in drops:
            ax.annotate(f"ep {projection.epochs[i]}", (projection.xcoord[i], projection.ycoord[i]),
                        xytext=(3, 3), textcoords="offset points", fontsize=6)
    _label_plane(ax, surface, explained_variance)
    ax.legend(loc="best", framealpha=0.85)
    ax.set_title(f"{title}\ncontours: {metric_label(metric, surface)}")
    return fig


def figure_compare(surfaces: Sequence[tuple[Surface, str]], metric: str, scale: Scale,
                   explained_variances: Sequence[tuple[float, float] | None]) -> Figure:
    """One panel per surface, filled contours on one shared colour scale and one colour bar."""
    n = len(surfaces)
    nrows = -(-n // 3)
    ncols = -(-n // nrows)  # at most three across, rows filled evenly
    fig = Figure(figsize=(2.3 * ncols + 0.7, 2.2 * nrows + 0.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    filled = None
    for i, ((surface, path), variance) in enumerate(zip(surfaces, explained_variances)):
        ax = axes.flat[i]
        z = masked_values(surface, metric, log=scale.log)
        filled = ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                             cmap="viridis", extend="both")
        ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                   colors="k", linewidths=0.3, alpha=0.5)
        _label_plane(ax, surface, variance)
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
        title = short_name(surface, path)
        if surface.fraction_done < 1:
            title += f"\n{done_text(surface.fraction_done)}"
        ax.set_title(title)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    scale.colorbar(fig, filled, axes.ravel().tolist(), metric_label(metric, surfaces[0][0]), shrink=0.7)
    return fig


def _contour_lines(ax, surface: Surface, z: np.ma.MaskedArray, scale: Scale) -> None:
    """The reference's contour plot: lines at the scale's levels, each labelled with its value."""
    lines = ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                       cmap="viridis", linewidths=0.8)
    if len(lines.levels):
        ax.clabel(lines, inline=True, fontsize=5.5, fmt="%.3g")


def _surface_3d(surface: Surface, z: np.ma.MaskedArray, label: str, scale: Scale, title: str,
                explained_variance: tuple[float, float] | None) -> Figure:
    """A shaded 3D surface; with ``log`` its height is log10 of the metric (3D axes have no log scale)."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.2), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    xx, yy = np.meshgrid(surface.x, surface.y)
    height = np.log10(z) if scale.log else z
    ax.plot_surface(xx, yy, height.filled(np.nan), cmap="coolwarm", linewidth=0,
                    antialiased=True, rcount=200, ccount=200)
    ax.set_xlabel(axis_label("x", surface, explained_variance), labelpad=-2)
    ax.set_ylabel(axis_label("y", surface, explained_variance), labelpad=-2)
    ax.set_zlabel(f"log10 {label}" if scale.log else label, labelpad=-2)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.tick_params(pad=-1)
    ax.set_title(title)
    return fig


def _label_plane(ax, surface: Surface, explained_variance: tuple[float, float] | None) -> None:
    ax.set_xlabel(axis_label("x", surface, explained_variance))
    ax.set_ylabel(axis_label("y", surface, explained_variance))
