"""The 3D surface figure of a 2D loss surface (the reference's ``3dsurface``), optionally
with an optimizer's path lying on it.

A loss whose colours are on a log scale is drawn with a log height too (what
makes the basin readable: on a linear height a trained network's minimum is a
flat floor under a few tall walls), the z axis labelled with round values in
the metric's own units. Each face is coloured by its own value, the mean of its
corners on the colour scale, so a face never takes one corner's colour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator

from .path_on_surface import sample_path
from .plot_data import axis_label
from ..store import Projection, Surface

if TYPE_CHECKING:
    from .plot_figures import Scale

FIGSIZE = (3.5, 3.0)  # inches: one column of a two-column paper
LOG_TICK_SUBS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
MIN_TICKS, MAX_TICKS = 3, 6
PATH_STYLE = dict(color="k", linewidth=1.0, zorder=5)
MARKS = {  # gid: style, drawn in this order (later above)
    "start": dict(marker="^", color="tab:green", markeredgecolor="k", markeredgewidth=0.5, markersize=5,
                  linestyle="none", zorder=6, label="start"),
    "end": dict(marker="*", color="gold", markeredgecolor="k", markeredgewidth=0.5, markersize=8,
                linestyle="none", zorder=6, label="end"),
    "lr_drop": dict(marker="o", color="red", markeredgecolor="k", markeredgewidth=0.3, markersize=4,
                    linestyle="none", zorder=7),
}


def surface_3d(surface: Surface, z: np.ma.MaskedArray, label: str, scale: Scale, title: str,
               explained_variance: tuple[float, float] | None, log_height: bool,
               projection: Projection | None = None) -> Figure:
    """A 3D surface coloured by the scale, clipped at its vmax, with a colour bar that names it.

    The height is log10 of the metric with ``log_height`` or whenever the scale
    is logarithmic (3D axes have no log scale: the ticks carry the values).
    ``projection`` draws its path on the surface, sampled along it, with the
    start, the end and the learning-rate drops marked above the surface.
    """
    log_height = log_height or scale.log
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # the path stays above the surface
    clipped = np.ma.masked_invalid(np.minimum(z.filled(np.nan), scale.vmax))
    height = np.log10(clipped.filled(np.nan)) if log_height else clipped.filled(np.nan)
    xx, yy = np.meshgrid(surface.x, surface.y)
    ny, nx = height.shape
    ax.plot_surface(xx, yy, height, facecolors=face_colours(clipped, scale), linewidth=0,
                    antialiased=True, rcount=ny, ccount=nx, shade=False, zorder=1)
    mappable = matplotlib.cm.ScalarMappable(norm=scale.norm(), cmap=scale.cmap)
    scale.colorbar(fig, mappable, ax, label, shrink=0.6, pad=0.12)
    ax.set_xlabel(axis_label("x", surface, explained_variance), labelpad=-2)
    ax.set_ylabel(axis_label("y", surface, explained_variance), labelpad=-2)
    ax.set_zlabel(label.split(" (")[0] + (" (log scale)" if log_height else ""), labelpad=-2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]))
    finite = height[np.isfinite(height)]
    top = np.log10(scale.vmax) if log_height else scale.vmax
    low = min(finite.min(), top - 1e-9) if len(finite) else top - 1
    ax.set_zlim(low, top)
    _value_ticks(ax.zaxis, low, top, log_height)
    ax.tick_params(pad=-1)
    if projection is not None:
        _path_on_surface(ax, surface, height, projection)
    if title:
        ax.set_title(title)
    return fig


def face_colours(values: np.ma.MaskedArray, scale: Scale) -> np.ndarray:
    """One RGBA per face, from the mean of its four corners' positions on the colour scale (on a
    log scale, their geometric mean), laid out as plot_surface reads it: face (i, j) takes [i, j]."""
    position = np.ma.masked_invalid(np.asarray(scale.norm()(values), dtype=np.float64))
    mean = np.ma.masked_all(values.shape)
    mean[:-1, :-1] = (position[:-1, :-1] + position[1:, :-1] + position[:-1, 1:] + position[1:, 1:]) / 4
    return matplotlib.colormaps[scale.cmap](mean)


def _value_ticks(axis, low: float, top: float, log_height: bool) -> None:
    """Round ticks in the metric's own units: 1-2-5 per decade on a log height."""
    if not log_height:
        axis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
        return
    axis.set_major_locator(FixedLocator(np.log10(round_log_values(10 ** low, 10 ** top))))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{10.0 ** v:.6g}"))


def round_log_values(lo: float, hi: float) -> np.ndarray:
    """Round values within [lo, hi] (lo > 0) for a log axis: 1-2-5 per decade, finer when the
    range is narrow, one per decade when it spans many."""
    values = np.array([])
    for subs in LOG_TICK_SUBS:
        candidates = LogLocator(subs=subs).tick_values(lo, hi)
        values = candidates[(candidates >= lo * (1 - 1e-9)) & (candidates <= hi * (1 + 1e-9))]
        if len(values) >= MIN_TICKS:
            break
    if len(values) > MAX_TICKS:  # many decades: one tick per decade
        values = values[np.isclose(np.log10(values), np.round(np.log10(values)))]
    return values


def _path_on_surface(ax, surface: Surface, height: np.ndarray, projection: Projection) -> None:
    """The path sampled along the surface (no chords through it) and its marks at their heights."""
    path = sample_path(surface.x, surface.y, height, projection.xcoord, projection.ycoord)
    ax.plot(path.x, path.y, path.z, gid="path", label="path", **PATH_STYLE)
    at = {"start": [0], "end": [len(projection.xcoord) - 1], "lr_drop": list(projection.drop_indices())}
    for gid, style in MARKS.items():
        index = np.array(at[gid], dtype=int)
        if not len(index):
            continue
        z = np.interp(index, path.t, path.z)
        ax.plot(projection.xcoord[index], projection.ycoord[index], z, gid=gid, **style)
