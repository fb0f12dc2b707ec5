"""The PCA trajectory figure: an optimizer's path on the contours of the surface around it.

What the paper's Fig. 9 shows must read at column width: the axes span the
path and a margin (not the whole grid drawn to one scale, which squashes a
long path into a strip); contour labels sit where the lines are sparse, away
from the path, a few of them; the learning-rate drops (the kink the figure is
about) are drawn above the end marker, and where the path's last epochs
cluster round its end an inset zooms on them. The 3D version lays the path on
the surface.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figure_3d import MARKS, PATH_STYLE, surface_3d
from .path_on_surface import resample_path
from .plane_axes import label_plane
from .plot_data import masked_values, metric_label
from .plot_figures import COLUMN_WIDTH, Scale, _mark_diverged
from ..store import Projection, Surface

MARGIN = 0.1  # of the path's extent, on each side
MIN_SHORT_SIDE = 0.25  # the short side of the view is at least this share of the long one
EQUAL_ASPECT_MAX = 1.5  # the path drawn to one scale only when its view is about square
CLUSTER_RADIUS = 0.04  # of the view's long side: checkpoints this near the end are a cluster
MIN_CLUSTER = 4  # checkpoints in the end's cluster (or any lr drop in it) that ask for a zoom
INSET_SIZE = 0.38  # of the axes, each side
MAX_LABELS = 6
LABEL_BOX = (0.16, 0.07)  # a contour label's size in axes fractions: labels this far apart never touch
MIN_CLEARANCE = 0.035  # label only where the nearest other contour line is this far (axes fractions)
UPRIGHT_WEIGHT = 0.5  # how much a steep line's score is cut (its label would stand on end)
EDGE = 0.08  # labels keep this far from the frame (axes fractions), never clipped by it


def figure_trajectory(surface: Surface, metric: str, projection: Projection, scale: Scale,
                      title: str, explained_variance: tuple[float, float] | None = None) -> Figure:
    """Contour lines of ``metric`` with the projected optimizer path: start, end, and red dots
    at learning-rate drops (the paper's marks), their epochs named in the legend; an inset
    zooms where the path's end clusters."""
    fig = Figure(figsize=(COLUMN_WIDTH, 3.3), layout="constrained")
    ax = fig.add_subplot()
    z = masked_values(surface, metric, log=scale.log)
    (x0, x1), (y0, y1) = view_limits(projection)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    lines = ax.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(), cmap=scale.cmap,
                       linewidths=0.8)
    _draw_path(ax, projection, legend=True)
    _mark_diverged(ax, surface, metric, legend=False)
    label_plane(ax, surface, explained_variance, spans=(x1 - x0, y1 - y0), max_ratio=EQUAL_ASPECT_MAX)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    avoid = []
    cluster = end_cluster(projection, max(x1 - x0, y1 - y0))
    if cluster is not None:
        avoid.append(_zoom_inset(ax, surface, z, scale, projection, cluster))
    _label_sparse_lines(ax, lines, projection, avoid)
    if len(lines.levels):
        scale.colorbar(fig, lines, ax, metric_label(metric, surface))
    fig.legend(loc="outside lower center", ncols=2, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def figure_trajectory_3d(surface: Surface, metric: str, projection: Projection, scale: Scale,
                         title: str, explained_variance: tuple[float, float] | None = None,
                         log_height: bool = False) -> Figure:
    """The 3D surface of ``metric`` with the path sampled along it, its start, end and drops."""
    z = masked_values(surface, metric, log=scale.log)
    return surface_3d(surface, z, metric_label(metric, surface), scale, title, explained_variance,
                      log_height, projection=projection)


def view_limits(projection: Projection) -> tuple[tuple[float, float], tuple[float, float]]:
    """The path's extent and a margin; a short side widened to a share of the long one."""
    spans = [np.ptp(projection.xcoord), np.ptp(projection.ycoord)]
    long_side = max(max(spans), 1e-12)
    limits = []
    for coords, span in zip((projection.xcoord, projection.ycoord), spans):
        span = max(span, MIN_SHORT_SIDE * long_side)
        centre = (coords.min() + coords.max()) / 2
        limits.append((centre - (0.5 + MARGIN) * span, centre + (0.5 + MARGIN) * span))
    return limits[0], limits[1]


def end_cluster(projection: Projection, view_size: float) -> np.ndarray | None:
    """Indices of the path's last checkpoints that lie within a few percent of the view round its
    end, from the first learning-rate drop among them when there is one, when they are enough
    (or hold a drop) to need a zoom; else None."""
    near = np.hypot(projection.xcoord - projection.xcoord[-1],
                    projection.ycoord - projection.ycoord[-1]) <= CLUSTER_RADIUS * view_size
    first = len(near) - 1
    while first > 0 and near[first - 1]:
        first -= 1
    tail = np.arange(first, len(near))
    drops = np.intersect1d(projection.drop_indices(), tail[:-1])
    if len(drops):
        return np.arange(drops[0], len(near))
    return tail if len(tail) >= MIN_CLUSTER else None


def _draw_path(ax, projection: Projection, legend: bool) -> None:
    """The path and its marks, each tagged by its kind (``gid``); drops above the end marker."""
    ax.plot(projection.xcoord, projection.ycoord, marker=".", markersize=2.5, gid="path",
            label="path" if legend else "_path", **PATH_STYLE)
    drops = projection.drop_indices()
    at = {"start": [0], "end": [len(projection.xcoord) - 1], "lr_drop": drops}
    for gid, style in MARKS.items():
        index = np.asarray(at[gid], dtype=int)
        if not len(index):
            continue
        label = style.get("label", "")
        if gid == "lr_drop":
            label = f"lr drop (epoch {', '.join(str(projection.epochs[i]) for i in drops)})"
        ax.plot(projection.xcoord[index], projection.ycoord[index], gid=gid,
                **{**style, "label": label if legend else f"_{gid}"})


def _zoom_inset(ax, surface: Surface, z: np.ma.MaskedArray, scale: Scale, projection: Projection,
                cluster: np.ndarray) -> tuple[float, float, float, float]:
    """An inset in the emptiest corner, showing the cluster of checkpoints round the path's end;
    returns the region it covers (axes fractions, with room for its tick labels)."""
    px, py = projection.xcoord[cluster], projection.ycoord[cluster]
    half = max(np.ptp(px), np.ptp(py), 1e-9) * (0.5 + 2 * MARGIN)
    cx, cy = (px.min() + px.max()) / 2, (py.min() + py.max()) / 2
    right, top = _emptiest_corner(ax, projection, (cx, cy))
    bounds = [1 - INSET_SIZE - 0.02 if right else 0.02, 1 - INSET_SIZE - 0.02 if top else 0.02,
              INSET_SIZE, INSET_SIZE]
    inset = ax.inset_axes(bounds)
    inset.contour(surface.x, surface.y, z, levels=scale.levels(), norm=scale.norm(), cmap=scale.cmap,
                  linewidths=0.6)
    _draw_path(inset, projection, legend=False)
    inset.set_xlim(cx - half, cx + half)
    inset.set_ylim(cy - half, cy + half)
    for axis in (inset.xaxis, inset.yaxis):
        axis.set_major_locator(MaxNLocator(3))
    inset.tick_params(labelsize=5, length=2, pad=1)
    if right:  # tick labels on the inset's inner sides, off the main axes' own
        inset.yaxis.tick_left()
    else:
        inset.yaxis.tick_right()
    if top:
        inset.xaxis.tick_bottom()
    else:
        inset.xaxis.tick_top()
    ax.indicate_inset_zoom(inset, edgecolor="0.3")
    pad = 0.12  # room for the inset's tick labels
    return bounds[0] - pad, bounds[1] - pad, bounds[0] + INSET_SIZE + pad, bounds[1] + INSET_SIZE + pad


def _emptiest_corner(ax, projection: Projection, cluster_centre: tuple[float, float]) -> tuple[bool, bool]:
    """(right, top) of the axes corner the path crosses least, never over a mark or the cluster."""
    u, v = _axes_fractions(ax, *resample_path(projection.xcoord, projection.ycoord, 1e-3 * _view_size(ax))[:2])
    marks = np.concatenate([[0, len(projection.xcoord) - 1], projection.drop_indices()]).astype(int)
    mu, mv = _axes_fractions(ax, projection.xcoord[marks], projection.ycoord[marks])
    cu, cv = _axes_fractions(ax, np.array([cluster_centre[0]]), np.array([cluster_centre[1]]))
    reach = INSET_SIZE + 0.1  # the inset and its tick labels
    scores = {}
    for right in (True, False):
        for top in (True, False):
            def inside(a, b):
                return ((a >= 1 - reach) if right else (a <= reach)) & ((b >= 1 - reach) if top else (b <= reach))
            scores[right, top] = (int(inside(mu, mv).sum() + inside(cu, cv).sum()), int(inside(u, v).sum()))
    return min(scores, key=scores.get)


def _view_size(ax) -> float:
    return max(np.ptp(ax.get_xlim()), np.ptp(ax.get_ylim()))


def _axes_fractions(ax, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return (x - x0) / (x1 - x0), (y - y0) / (y1 - y0)


def _label_sparse_lines(ax, lines, projection: Projection,
                        avoid: list[tuple[float, float, float, float]]) -> None:
    """Label a few contour lines, each where the other lines are farthest from it, off the path,
    off the ``avoid`` regions (axes fractions) and clear of the frame and of each other."""
    if not len(lines.levels):
        return
    chosen = _choose_labels(_label_candidates(ax, lines, projection, avoid))
    if not chosen:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    manual = [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for _, (u, v) in chosen]
    ax.clabel(lines, levels=[lines.levels[level] for level, _ in sorted(chosen)], manual=manual,
              inline=True, fontsize=5.5, fmt="%.3g", colors="0.2")  # dark: readable on any line colour


def _label_candidates(ax, lines, projection: Projection, avoid) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(level, points, score) per contour level: the points (axes fractions) where a label may go,
    scored by how far the nearest other line and the path are, more for a level-running line
    (whose label is upright)."""
    path_u, path_v, _ = resample_path(*_axes_fractions(ax, projection.xcoord, projection.ycoord), 0.01)
    vertices = [np.column_stack(_axes_fractions(ax, *p.vertices.T)) if len(p.vertices) else np.zeros((0, 2))
                for p in lines.get_paths()]
    candidates = []
    for level, points in enumerate(vertices):
        keep = ((points > EDGE) & (points < 1 - EDGE)).all(axis=1)
        for u0, v0, u1, v1 in avoid:
            keep &= ~((points[:, 0] > u0) & (points[:, 0] < u1) & (points[:, 1] > v0) & (points[:, 1] < v1))
        tangent = np.gradient(points, axis=0) if len(points) > 1 else np.ones_like(points)
        level_running = np.abs(tangent[:, 0]) / np.maximum(np.hypot(*tangent.T), 1e-12)
        points, level_running = points[keep][::2], level_running[keep][::2]
        if not len(points):
            continue
        others = np.concatenate([v for i, v in enumerate(vertices) if i != level] + [np.zeros((0, 2))])
        clearance = (np.min(np.hypot(*(points[:, None, :] - others[None, :, :]).transpose(2, 0, 1)), axis=1)
                     if len(others) else np.ones(len(points)))
        off_path = np.min(np.hypot(points[:, None, 0] - path_u[None], points[:, None, 1] - path_v[None]), axis=1)
        candidates.append((level, points, np.minimum(clearance, off_path) * (1 - UPRIGHT_WEIGHT * (1 - level_running))))
    return candidates


def _choose_labels(candidates) -> list[tuple[int, np.ndarray]]:
    """Greedily the best-scored free point of a level not yet labelled, until none scores enough
    or there are ``MAX_LABELS``; a point is free when no chosen label's box would overlap its own."""
    chosen: list[tuple[int, np.ndarray]] = []
    while len(chosen) < MAX_LABELS:
        best = None
        for level, points, score in candidates:
            if any(level == c for c, _ in chosen):
                continue
            free = np.ones(len(points), dtype=bool)
            for _, at in chosen:
                free &= ((np.abs(points[:, 0] - at[0]) >= LABEL_BOX[0])
                         | (np.abs(points[:, 1] - at[1]) >= LABEL_BOX[1]))
            free_score = np.where(free, score, -1.0)
            if free_score.max() >= MIN_CLEARANCE and (best is None or free_score.max() > best[2]):
                best = (level, points[free_score.argmax()], free_score.max())
        if best is None:
            break
        chosen.append((best[0], best[1]))
    return chosen
