"""Surface files as rows of numbers: which figures, in which units, read how.

One row per file, in the columns of ``COLUMNS`` (docs/summary.md explains
each); one set row per group of 1D random-direction files of the same
checkpoint and grid. Files are read through ``store.read_surface``, so the
reference's files (no ``done`` mask, -1 where unfinished) read like ours.
"""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass

import numpy as np

from . import (BEYOND, UNKNOWN, axis_radii, barrier, basin_area, basin_region,
               centre_curvature, centre_index, combine, convex_mask, convex_share, curve_set,
               end_indices, local_minima, ray_radii)
from ..errors import LandscapeError
from ..store import Surface


@dataclass(frozen=True)
class Column:
    """One output column: its name (``<split>`` stands for each split in the file), unit, meaning."""

    name: str
    unit: str
    meaning: str
    extent: bool = False  # an Extent: CSV and JSON give its status beside the value


METRIC_UNIT = "<metric>"  # in a unit: the unit of the metric summarized (loss, %, perplexity, ...)
COLUMNS = (
    Column("file", "", "the surface file's name"),
    Column("kind", "", "2d, 1d (random direction) or interpolation (α = 0 and α = 1 are two models)"),
    Column("grid", "points", "points per axis, x×y"),
    Column("metric", "", "the array the basin, curvature and barrier figures are computed on"),
    Column("done", "fraction", "share of the grid's points that are finished"),
    Column("diverged", "points", "finished points with a non-finite value or non-finite outputs; "
                                 "left out of every figure"),
    Column("centre_<split>_loss", "loss", "the loss at the centre (α, β) = (0, 0), i.e. θ*"),
    Column("centre_<split>_acc", "%", "the accuracy at the centre"),
    Column("min_loss", METRIC_UNIT, "the lowest finished value of the metric on the grid"),
    Column("min_x", "α", "where it is: x coordinate"),
    Column("min_y", "β", "where it is: y coordinate (2D)"),
    Column("min_offset", "α,β", "distance from the centre to that minimum (0: the centre is the minimum)"),
    Column("level", METRIC_UNIT, "ε of --level: the basin is where the metric ≤ centre + ε"),
    Column("radius_x", "α", "basin radius along x: mean of the distances to the first crossing of "
                            "centre + ε towards −x and +x", extent=True),
    Column("radius_y", "β", "basin radius along y, the same (2D)", extent=True),
    Column("radius_mean", "α,β", "basin radius averaged over 72 directions in the plane (2D)", extent=True),
    Column("basin_area", "fraction", "share of the grid's points in the connected region around the "
                                     "centre where the metric ≤ centre + ε", extent=True),
    Column("curv_xx", f"{METRIC_UNIT}/unit²", "second difference ∂²f/∂α² at the centre"),
    Column("curv_yy", f"{METRIC_UNIT}/unit²", "second difference ∂²f/∂β² at the centre (2D)"),
    Column("curv_xy", f"{METRIC_UNIT}/unit²", "mixed difference ∂²f/∂α∂β at the centre (2D)"),
    Column("eig_max", f"{METRIC_UNIT}/unit²", "largest eigenvalue of the 2×2 matrix of those differences (2D)"),
    Column("eig_min", f"{METRIC_UNIT}/unit²", "smallest eigenvalue of it (2D)"),
    Column("hessian_max_eig", "loss/weight²", "the full Hessian's λmax at the centre, where the file "
                                              "has the max_eig metric"),
    Column("hessian_min_eig", "loss/weight²", "the full Hessian's λmin at the centre (min_eig metric)"),
    Column("convex_basin", "fraction", "share of the basin's points where the discrete Hessian is "
                                       "positive semi-definite"),
    Column("convex_grid", "fraction", "the same share over the whole grid"),
    Column("local_minima", "points", "interior points strictly below all their neighbours"),
    Column("barrier", METRIC_UNIT, "interpolation: highest value on 0 ≤ α ≤ 1 minus the higher end"),
    Column("barrier_at", "α", "interpolation: where that highest value is"),
    Column("gap_loss_start", "loss", "interpolation: test − train loss at α = 0"),
    Column("gap_loss_end", "loss", "interpolation: test − train loss at α = 1"),
    Column("gap_acc_start", "%", "interpolation: train − test accuracy at α = 0"),
    Column("gap_acc_end", "%", "interpolation: train − test accuracy at α = 1"),
)

SET_COLUMNS = (
    Column("files", "files", "how many 1D random-direction files of one checkpoint and grid"),
    Column("checkpoint", "", "the checkpoint they are drawn around (its folder and name)"),
    Column("radius_mean", "α", "mean of their basin radii (radius_x); beyond-grid radii count at the edge"),
    Column("radius_std", "α", "standard deviation of those radii"),
    Column("radius_min", "α", "smallest radius"),
    Column("radius_max", "α", "largest radius"),
    Column("radius_beyond", "files", "radii that reach beyond the grid (lower bounds)"),
    Column("max_std", METRIC_UNIT, "largest standard deviation of the curves at one α"),
)


def splits_of(surface: Surface) -> list[str]:
    """The splits the file has a loss for, train first."""
    names = [k[:-len("_loss")] for k in surface.metrics if k.endswith("_loss")]
    return sorted(names, key=lambda s: (s != "train", s))


def columns_for(splits: list[str], metric: str = "train_loss") -> list[Column]:
    """``COLUMNS`` with each ``<split>`` column repeated per split, in ``metric``'s units."""
    out = []
    for column in in_units(COLUMNS, metric):
        if "<split>" in column.name:
            out += [Column(column.name.replace("<split>", s), column.unit, column.meaning) for s in splits]
        else:
            out.append(column)
    return out


def in_units(columns, metric: str) -> list[Column]:
    """``columns`` with the metric's unit written in: ``[perplexity]`` for ``--metric train_perplexity``."""
    unit = metric_unit(metric)
    return [dataclasses.replace(c, unit=c.unit.replace(METRIC_UNIT, unit)) for c in columns]


def metric_unit(metric: str) -> str:
    """What a metric is measured in: ``loss``, ``%`` (accuracies), ``perplexity``, else its own name."""
    split, _, kind = metric.rpartition("_")
    if not split:
        return metric
    return {"loss": "loss", "acc": "%", "perplexity": "perplexity"}.get(kind, metric)


def heights(surface: Surface, metric: str) -> tuple[np.ndarray, int]:
    """The metric as the numbers want it, +inf where diverged and NaN where unfinished,
    and the count of diverged points.

    A finished point is diverged when its value is not finite or when the
    ``<split>_nonfinite`` metric of its split says some outputs were not finite.
    """
    if metric not in surface.metrics:
        raise LandscapeError(f"the surface has no array {metric!r}; it has: "
                             f"{', '.join(sorted(surface.metrics)) or 'none'} (choose one with --metric)")
    z = np.array(surface.metrics[metric], dtype=np.float64)
    diverged = surface.done & diverged_points(surface, metric.rpartition("_")[0])
    diverged |= surface.done & ~np.isfinite(z)
    z[diverged] = np.inf
    z[~surface.done] = np.nan
    return z, int(diverged.sum())


def diverged_points(surface: Surface, split: str) -> np.ndarray:
    """Where ``<split>_nonfinite`` is above zero (all False when the file has no such metric)."""
    share = surface.metrics.get(f"{split}_nonfinite")
    if share is None:
        return np.zeros(surface.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.asarray(share) > 0


def kind_of(surface: Surface, interpolation: bool) -> str:
    """2d, 1d or interpolation (recorded ``--model_file2``, or asked for by the caller)."""
    if surface.y is not None:
        return "2d"
    config = surface.attrs.get("config")
    recorded = isinstance(config, dict) and bool(config.get("model_file2"))
    return "interpolation" if interpolation or recorded else "1d"


def summarize(path: str, surface: Surface, metric: str, level: float,
              interpolation: bool = False) -> tuple[dict, list[str]]:
    """The row of one file and notes worth telling the user (e.g. no grid point at the origin)."""
    kind = kind_of(surface, interpolation)
    x, y = surface.x, surface.y
    grid = "×".join(str(n) for n in reversed(surface.shape))  # x×y
    if min(surface.shape) < 3:
        raise LandscapeError(f"{path}: its grid ({grid}) needs at least 3 points on each axis "
                             f"for second differences")
    z, diverged = heights(surface, metric)
    centre = centre_index(x, y)
    notes = []
    if abs(x[centre[-1]]) > 1e-9 or (y is not None and abs(y[centre[0]]) > 1e-9):
        notes.append(f"{path}: no grid point at the origin; the nearest, ({_coords(surface, centre)}), "
                     f"is used as the centre")
    row: dict = {"file": os.path.basename(path), "kind": kind,
                 "grid": grid, "metric": metric,
                 "done": surface.fraction_done, "diverged": diverged, "level": level}
    for split in splits_of(surface):
        for name in ("loss", "acc"):
            row[f"centre_{split}_{name}"] = _value_at(surface, f"{split}_{name}", centre)
    _minimum(row, surface, z, centre)
    centre_value = z[centre]
    if not np.isfinite(centre_value):
        notes.append(f"{path}: the centre is {'unfinished' if np.isnan(centre_value) else 'diverged'}; "
                     f"no basin or curvature figures")
        return row, notes
    threshold = centre_value + level
    if y is None:
        row["radius_x"] = combine(list(axis_radii(x, z, centre[0], threshold)))
    else:
        row["radius_x"] = combine(list(axis_radii(x, z[centre[0]], centre[1], threshold)))
        row["radius_y"] = combine(list(axis_radii(y, z[:, centre[1]], centre[0], threshold)))
        row["radius_mean"] = combine(ray_radii(x, y, z, centre, threshold))
    region = basin_region(z, centre, threshold)
    row["basin_area"] = basin_area(z, region)
    curvature = centre_curvature(x, y, z)
    row["curv_xx"] = curvature.xx
    if y is not None:
        row.update(curv_yy=curvature.yy, curv_xy=curvature.xy)
        row["eig_max"], row["eig_min"] = curvature.eigenvalues
    for name in ("max_eig", "min_eig"):
        if name in surface.metrics:
            row[f"hessian_{name}"] = _value_at(surface, name, centre)
    convex = convex_mask(x, y, z)
    row["convex_basin"] = convex_share(convex, region)
    row["convex_grid"] = convex_share(convex)
    row["local_minima"] = int(local_minima(z).sum())
    if kind == "interpolation":
        _interpolation(row, surface, z, notes, path)
    return row, notes


def _interpolation(row: dict, surface: Surface, z: np.ndarray, notes: list[str], path: str) -> None:
    x = surface.x
    start, end = end_indices(x)
    if abs(x[start]) > 1e-9 or abs(x[end] - 1) > 1e-9 or end <= start:
        notes.append(f"{path}: the grid has no points at α = 0 and α = 1; the nearest "
                     f"(α = {x[start]:g}, {x[end]:g}) stand for the two models")
    if end > start:
        found = barrier(x, z)
        row["barrier"], row["barrier_at"] = found.height, found.at
    for index, where in ((start, "start"), (end, "end")):
        train, test = (_value_at(surface, f"{s}_loss", (index,)) for s in ("train", "test"))
        if train is not None and test is not None:
            row[f"gap_loss_{where}"] = test - train
        train, test = (_value_at(surface, f"{s}_acc", (index,)) for s in ("train", "test"))
        if train is not None and test is not None:
            row[f"gap_acc_{where}"] = train - test


def _minimum(row: dict, surface: Surface, z: np.ndarray, centre: tuple[int, ...]) -> None:
    finite = np.where(np.isfinite(z), z, np.inf)
    if not np.isfinite(finite).any():
        return
    index = np.unravel_index(int(np.argmin(finite)), z.shape)
    row["min_loss"] = float(z[index])
    row["min_x"] = float(surface.x[index[-1]])
    offset = (surface.x[index[-1]] - surface.x[centre[-1]]) ** 2
    if surface.y is not None:
        row["min_y"] = float(surface.y[index[0]])
        offset += (surface.y[index[0]] - surface.y[centre[0]]) ** 2
    row["min_offset"] = float(np.sqrt(offset))


def _value_at(surface: Surface, metric: str, index: tuple[int, ...]) -> float | None:
    """A metric's finished value at a grid point; None when the file lacks it or it is unfinished."""
    if metric not in surface.metrics or not surface.done[index]:
        return None
    return float(surface.metrics[metric][index])


def _coords(surface: Surface, index: tuple[int, ...]) -> str:
    text = f"α = {surface.x[index[-1]]:g}"
    return text if surface.y is None else f"{text}, β = {surface.y[index[0]]:g}"


# ---------------------------------------------------------------- sets of 1D random directions


def summarize_sets(items: list[tuple[str, Surface, dict]], metric: str) -> list[dict]:
    """One entry per group of two or more 1D random-direction files of the same checkpoint and
    grid: the mean curve and its spread, and the distribution of basin radii."""
    groups: dict[tuple, list[tuple[str, Surface, dict]]] = {}
    for path, surface, row in items:
        if row["kind"] != "1d":
            continue
        config = surface.attrs.get("config")
        checkpoint = config.get("model_file") if isinstance(config, dict) else None
        key = (checkpoint, tuple(np.round(surface.x, 12)))
        groups.setdefault(key, []).append((path, surface, row))
    sets = []
    for (checkpoint, _), members in groups.items():
        if len(members) < 2:
            continue
        curves = curve_set(np.stack([heights(s, metric)[0] for _, s, _ in members]))
        radii = [row["radius_x"] for _, _, row in members if "radius_x" in row]
        known = [r.value for r in radii if r.status != UNKNOWN]
        sets.append({
            "checkpoint": _short_path(checkpoint),
            "metric": metric, "alpha": members[0][1].x.tolist(),
            "mean": curves.mean.tolist(), "std": curves.std.tolist(),
            "min": curves.low.tolist(), "max": curves.high.tolist(),
            "max_std": float(np.nanmax(curves.std)) if np.isfinite(curves.std).any() else None,
            "files": len(members), "names": [os.path.basename(p) for p, _, _ in members],
            "radius_mean": _stat(np.mean, known), "radius_std": _stat(np.std, known),
            "radius_min": _stat(np.min, known), "radius_max": _stat(np.max, known),
            "radius_beyond": sum(r.status == BEYOND for r in radii),
            "radius_unknown": sum(r.status == UNKNOWN for r in radii),
        })
    return sets


def _short_path(path: str | None) -> str | None:
    """The checkpoint's folder and name (``bs32/model_40.t7``): trainers name every run's files alike."""
    if not path:
        return None
    folder, name = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.basename(folder), name) if folder else name


def _stat(function, values: list[float]) -> float | None:
    return float(function(values)) if values else None

