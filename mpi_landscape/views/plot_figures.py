"""Matplotlib figures of 2D loss surfaces, sized for a paper column.

Each builder takes surfaces already read and returns a ``matplotlib.figure.Figure``
(no pyplot: no global state, no display, Agg for PNG and the PDF backend for
PDF). Unfinished points are masked, so a partial file shows gaps, not zeros;
points where the network diverged are gaps too, marked ×, never drawn as
values. Colour bars carry round ticks where the bar has those values, α and β
share one scale when they are in the same units, and titles are short. The
layouts are the reference's (plot_2D, plot_trajectory) and the paper's grids
of panels on one colour scale (its Figs. 5, 11 and 12); the 1D figures are in
``plot_lines``.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from ..errors import LandscapeError
from .plot_data import axis_label, diverged_mask, masked_values, metric_label
from .plot_layout import (COLUMN_WIDTH, column_style, figure_title, label_contours, panel_title,  # noqa: F401
                          settle_layout)
from .plot_lines import figure_1d, figure_band  # noqa: F401  (the 1D figures, named here too)
from .plot_scale import Scale  # noqa: F401  (the figures' scale: part of this module's API)
from ..store import Projection, Surface

KINDS = ("contour", "contourf", "heat", "surface")
EQUAL_ASPECT_MAX = 4.0  # α and β drawn to one scale unless one range is this many times the other
DIVERGED_STYLE = dict(marker="x", color="0.45", markersize=3, linestyle="none", label="diverged")


def figure_2d(surface: Surface, metric: str, kind: str, scale: Scale, title: str,
              explained_variance: tuple[float, float] | None = None,
              log_height: bool = False) -> Figure:
    """One 2D view of ``metric``: labelled contour lines, filled contours, a heatmap or a 3D surface.

    Each has a colour bar with round ticks, as tall as the plane; diverged points
    are gaps marked ×. ``log_height`` (``--log``) draws the 3D surface's height
    as log10 of the metric.
    """
    if kind not in KINDS:
        raise LandscapeError(f"unknown plot kind {kind!r}; choose from {', '.join(KINDS)}")
    z = masked_values(surface, metric, log=scale.log)
    label = metric_label(metric, surface)
    if kind == "surface":
        return _surface_3d(surface, z, label, scale, title, explained_variance, log_height)
    fig = Figure(figsize=(COLUMN_WIDTH, 2.9), layout="constrained")
    ax = fig.add_subplot()
    lines = None
    if kind == "contour":
        lines = ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                           cmap=scale.line_cmap(), linewidths=0.8)
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
    figure_title(fig, title)
    if lines is not None:
        label_contours(ax, lines)
    settle_layout(fig)
    return fig


def figure_trajectory(surface: Surface, metric: str, projection: Projection, scale: Scale,
                      title: str, explained_variance: tuple[float, float] | None = None) -> Figure:
    """Contour lines of ``metric`` with the projected optimizer path: start, end, and red dots
    at learning-rate drops (the paper's marks), their epochs named in the legend."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.3), layout="constrained")
    ax = fig.add_subplot()
    lines = _contour_lines(ax, surface, masked_values(surface, metric, log=scale.log), scale)
    ax.plot(projection.xcoord, projection.ycoord, "-", color="k", linewidth=0.9, marker=".", markersize=2.5,
            label="path")
    drops = projection.drop_indices()
    if len(drops):
        epochs = ", ".join(str(projection.epochs[i]) for i in drops)
        ax.plot(projection.xcoord[drops], projection.ycoord[drops], "o", color="red", markersize=4,
                linestyle="none", zorder=4, label=f"lr drop (epoch {epochs})")
    ax.plot(projection.xcoord[:1], projection.ycoord[:1], "^", color="tab:green", markeredgecolor="k",
            markeredgewidth=0.5, markersize=5, linestyle="none", zorder=5, label="start")
    ax.plot(projection.xcoord[-1:], projection.ycoord[-1:], "*", color="gold", markeredgecolor="k",
            markeredgewidth=0.5, markersize=8, linestyle="none", zorder=5, label="end")
    _mark_diverged(ax, surface, metric, legend=False)
    _label_plane(ax, surface, explained_variance)
    if len(lines.levels):
        scale.colorbar(fig, lines, ax, metric_label(metric, surface))
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def figure_compare(surfaces: Sequence[tuple[Surface, str]], metric: str | Sequence[str], scale: Scale,
                   explained_variances: Sequence[tuple[float, float] | None],
                   title: str | None = None, cols: int | None = None, label: str | None = None) -> Figure:
    """One panel per (surface, panel title), filled contours on one shared colour scale and one colour bar.

    ``metric`` is one name for every panel or one per panel (train beside test
    from one file). Panels fill rows of ``cols`` (None: at most three across,
    rows filled evenly), θ* is marked + in each, and the bar is labelled
    ``label`` (None: the metric's own label).
    """
    n = len(surfaces)
    metrics = [metric] * n if isinstance(metric, str) else list(metric)
    if cols is None:
        nrows = -(-n // 3)
        ncols = -(-n // nrows)
    else:
        ncols = min(cols, n)
        nrows = -(-n // ncols)
    panel = 1.9 if ncols > 3 else 2.3
    fig = Figure(figsize=(panel * ncols + 0.8, (panel - 0.1) * nrows + 0.4 + (0.25 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    filled = None
    for i, ((surface, panel_text), variance, name) in enumerate(zip(surfaces, explained_variances, metrics)):
        ax = axes.flat[i]
        z = masked_values(surface, name, log=scale.log)
        filled = ax.contourf(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                             cmap=scale.cmap, extend="both")
        ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                   colors="k", linewidths=0.3, alpha=0.5)
        _mark_centre(ax, surface)
        _mark_diverged(ax, surface, name)
        _label_plane(ax, surface, variance)
        if i % ncols:
            ax.set_ylabel("")
        if i < n - ncols:
            ax.set_xlabel("")
        panel_title(ax, panel_text, panel)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    bar_label = label if label is not None else metric_label(metrics[0], surfaces[0][0])
    scale.colorbar(fig, filled, axes.ravel().tolist(), bar_label, shrink=0.8 if nrows > 1 else 0.9)
    if title:
        figure_title(fig, title)
    return fig


def _mark_centre(ax, surface: Surface) -> None:
    """θ* (α = β = 0) as a small black +, where the grid holds it."""
    if surface.x.min() <= 0 <= surface.x.max() and surface.y.min() <= 0 <= surface.y.max():
        ax.plot([0.0], [0.0], "+", color="k", markersize=5, markeredgewidth=0.8, label="θ*", zorder=4)


def _contour_lines(ax, surface: Surface, z: np.ma.MaskedArray, scale: Scale):
    """The reference's contour plot: lines at the scale's levels, in colours that show on white,
    each labelled with its value (labels placed once the layout is fixed, clear of each other)."""
    lines = ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(),
                       cmap=scale.line_cmap(), linewidths=0.8)
    label_contours(ax, lines)
    return lines


def _mark_diverged(ax, surface: Surface, metric: str, legend: bool = True) -> None:
    """A grey × at each finished point where the network diverged (a gap in the colours)."""
    iy, ix = np.nonzero(diverged_mask(surface, metric))
    if len(ix):
        ax.plot(surface.x[ix], surface.y[iy], **DIVERGED_STYLE)
        if legend:
            ax.legend(loc="upper right", fontsize=5.5, framealpha=0.8, handlelength=1)


def _surface_3d(surface: Surface, z: np.ma.MaskedArray, label: str, scale: Scale, title: str,
                explained_variance: tuple[float, float] | None, log_height: bool) -> Figure:
    """A 3D surface coloured by the scale, clipped at its vmax, with a colour bar that names it.

    With ``log_height`` the height is log10 of the metric (3D axes have no log
    scale) and its ticks are labelled in decades.
    """
    fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    xx, yy = np.meshgrid(surface.x, surface.y)
    clipped = np.minimum(z.filled(np.nan), scale.vmax)
    height = np.log10(clipped) if log_height else clipped
    colours = matplotlib.colormaps[scale.cmap](scale.norm()(np.ma.masked_invalid(clipped)))
    ax.plot_surface(xx, yy, height, facecolors=colours, linewidth=0, antialiased=True,
                    rcount=200, ccount=200, shade=False)
    mappable = matplotlib.cm.ScalarMappable(norm=scale.norm(), cmap=scale.cmap)
    scale.colorbar(fig, mappable, ax, label, shrink=0.6, pad=0.12)  # its label names the height too
    ax.set_xlabel(axis_label("x", surface, explained_variance), labelpad=-2)
    ax.set_ylabel(axis_label("y", surface, explained_variance), labelpad=-2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(4))
    if log_height:
        ax.zaxis.set_major_locator(MultipleLocator(1))
        ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10.0 ** v:g}"))
    else:
        ax.zaxis.set_major_locator(MaxNLocator(4))
    top = np.log10(scale.vmax) if log_height else scale.vmax
    low = np.nanmin(height) if np.isfinite(height).any() else top - 1
    ax.set_zlim(min(low, top - 1e-9), top)
    ax.tick_params(pad=-1)
    if title:
        ax.set_title(title)
    return fig


def _label_plane(ax, surface: Surface, explained_variance: tuple[float, float] | None) -> None:
    """Axis labels; α and β on one scale when they are in the same units and of similar ranges."""
    ax.set_xlabel(axis_label("x", surface, explained_variance))
    ax.set_ylabel(axis_label("y", surface, explained_variance))
    if same_units(surface):
        spans = np.ptp(surface.x), np.ptp(surface.y)
        if min(spans) > 0 and max(spans) / min(spans) <= EQUAL_ASPECT_MAX:
            ax.set_aspect("equal", adjustable="box")


def same_units(surface: Surface) -> bool:
    """Whether α and β measure the same thing: both random/PCA directions, or both model differences."""
    config = surface.attrs.get("config") if isinstance(surface.attrs.get("config"), dict) else {}
    return bool(config.get("model_file2")) == bool(config.get("model_file3"))
