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

import numpy as np
from matplotlib.figure import Figure

from ..errors import LandscapeError
from .figure_3d import surface_3d as _surface_3d
from .plane_axes import label_plane as _label_plane
from .plot_data import diverged_mask, masked_values, metric_label
from .plot_layout import (COLUMN_WIDTH, column_style, figure_title, label_contours, panel_title,  # noqa: F401
                          settle_layout)
from .plot_lines import figure_1d, figure_band  # noqa: F401  (the 1D figures, named here too)
from .plot_scale import Scale  # noqa: F401  (the figures' scale: part of this module's API)
from ..store import Surface

KINDS = ("contour", "contourf", "heat", "surface")
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
