"""Numbers from a loss surface: the few figures a results table needs, by one yardstick.

The paper reads its claims off pictures ("the 0.1-level contour", "dramatic
non-convexities", "sharper minima"); these functions put numbers on them, on
the grid a surface file holds. They take plain numpy arrays -- coordinates and
heights ``z[iy, ix]`` (or ``z[ix]`` on a line) in which a **diverged** point is
``+inf`` and an **unfinished** point is ``NaN`` -- and know nothing of files,
so a test can check every number on a surface whose answer is known in closed
form. docs/method.md defines each quantity; ``python -m mpi_landscape.summary``
reads surface files and prints them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

INSIDE, BEYOND, UNKNOWN = "inside", "beyond", "unknown"
DEFAULT_LEVEL = 0.1  # ε of the basin: the paper's 0.1-level contour
RAY_DIRECTIONS = 72  # rays from the centre for the direction-averaged basin radius
RAY_STEPS_PER_CELL = 4  # samples per grid spacing along a ray
FLAT_TOLERANCE = 1e-9  # curvature below this share of max|z|/(hx·hy) counts as flat (convex)


@dataclass(frozen=True)
class Extent:
    """A distance (or area) found on the grid and how far to trust it.

    ``status`` is ``inside`` (found on the grid), ``beyond`` (the grid ends
    first: ``value`` is then the grid's edge, a lower bound) or ``unknown``
    (an unfinished point comes first: ``value`` is NaN).
    """

    value: float
    status: str

    def text(self, digits: int = 3) -> str:
        """``0.412``, ``>0.980`` (beyond the grid) or ``?`` (unknown)."""
        if self.status == UNKNOWN:
            return "?"
        return (">" if self.status == BEYOND else "") + f"{self.value:.{digits}g}"


@dataclass(frozen=True)
class Curvature:
    """Second differences of the surface at one point and the eigenvalues of their 2×2 matrix."""

    xx: float
    yy: float
    xy: float

    @property
    def eigenvalues(self) -> tuple[float, float]:
        """(largest, smallest) eigenvalue of [[xx, xy], [xy, yy]]."""
        mean, half = (self.xx + self.yy) / 2, np.hypot((self.xx - self.yy) / 2, self.xy)
        return float(mean + half), float(mean - half)


@dataclass(frozen=True)
class Barrier:
    """The highest loss on the path from α = 0 to α = 1 minus the higher end, and where it is."""

    height: float
    at: float


@dataclass(frozen=True)
class CurveSet:
    """Curves of one metric on a shared axis (e.g. 1D plots of several random directions)."""

    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray


def centre_index(x: np.ndarray, y: np.ndarray | None = None) -> tuple[int, ...]:
    """The grid point nearest the origin (α, β) = (0, 0): θ* itself on a symmetric grid."""
    ix = int(np.argmin(np.abs(x)))
    return (ix,) if y is None else (int(np.argmin(np.abs(y))), ix)


def first_crossing(distances: np.ndarray, values: np.ndarray, threshold: float) -> Extent:
    """Where ``values`` (sampled at increasing ``distances`` from the centre) first exceed ``threshold``.

    The crossing is interpolated linearly between the last sample at or below
    the level and the first above it; a diverged sample (+inf) is above it and
    puts the crossing at the last sample below. No crossing: beyond, at the
    last distance. An unfinished sample (NaN) before any crossing: unknown.
    """
    above = values > threshold
    unknown = np.isnan(values)
    stops = np.flatnonzero(above | unknown)
    if not len(stops):
        return Extent(float(distances[-1]), BEYOND)
    k = int(stops[0])
    if unknown[k]:
        return Extent(float("nan"), UNKNOWN)
    if k == 0:  # the first sample itself is above the level
        return Extent(float(distances[0]), INSIDE)
    v0, v1, d0, d1 = values[k - 1], values[k], distances[k - 1], distances[k]
    if not np.isfinite(v1):
        return Extent(float(d0), INSIDE)
    return Extent(float(d0 + (threshold - v0) / (v1 - v0) * (d1 - d0)), INSIDE)


def combine(extents: list[Extent]) -> Extent:
    """The mean of several extents: unknown if any is, beyond (a lower bound) if any is."""
    statuses = {e.status for e in extents}
    if UNKNOWN in statuses:
        return Extent(float("nan"), UNKNOWN)
    return Extent(float(np.mean([e.value for e in extents])), BEYOND if BEYOND in statuses else INSIDE)


def axis_radii(coords: np.ndarray, heights: np.ndarray, centre: int,
               threshold: float) -> tuple[Extent, Extent]:
    """Distance from the centre to the level crossing towards lower and towards higher coordinates,
    along one grid line (``heights`` is that line)."""
    below = first_crossing(coords[centre] - coords[centre::-1], heights[centre::-1], threshold)
    above = first_crossing(coords[centre:] - coords[centre], heights[centre:], threshold)
    return below, above


def ray_radii(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre: tuple[int, int], threshold: float,
              directions: int = RAY_DIRECTIONS) -> list[Extent]:
    """The level crossing along ``directions`` evenly spaced rays from the centre, on the
    bilinear interpolation of the grid."""
    cy, cx = centre
    step = min(np.min(np.diff(x)), np.min(np.diff(y))) / RAY_STEPS_PER_CELL
    radii = []
    for angle in 2 * np.pi * np.arange(directions) / directions:
        ux, uy = np.cos(angle), np.sin(angle)
        edge = min(_distance_to_edge(x[cx], ux, x[0], x[-1]), _distance_to_edge(y[cy], uy, y[0], y[-1]))
        distances = np.append(np.arange(0.0, edge, step), edge)
        values = bilinear(x, y, z, x[cx] + distances * ux, y[cy] + distances * uy)
        radii.append(first_crossing(distances, values, threshold))
    return radii


def _distance_to_edge(start: float, unit: float, low: float, high: float) -> float:
    if abs(unit) < 1e-12:
        return np.inf
    return ((high if unit > 0 else low) - start) / unit


def bilinear(x: np.ndarray, y: np.ndarray, z: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``z[iy, ix]`` at the points (px, py) inside the grid.

    A corner that carries weight and is unfinished makes the point unknown (NaN);
    otherwise one that diverged makes it +inf.
    """
    ix = np.clip(np.searchsorted(x, px, side="right") - 1, 0, len(x) - 2)
    iy = np.clip(np.searchsorted(y, py, side="right") - 1, 0, len(y) - 2)
    tx = np.clip((px - x[ix]) / (x[ix + 1] - x[ix]), 0, 1)
    ty = np.clip((py - y[iy]) / (y[iy + 1] - y[iy]), 0, 1)
    corners = [(z[iy, ix], (1 - tx) * (1 - ty)), (z[iy, ix + 1], tx * (1 - ty)),
               (z[iy + 1, ix], (1 - tx) * ty), (z[iy + 1, ix + 1], tx * ty)]
    total = sum(np.where(w > 0, np.nan_to_num(v, posinf=0.0), 0.0) * w for v, w in corners)
    diverged = np.logical_or.reduce([(w > 0) & np.isposinf(v) for v, w in corners])
    unknown = np.logical_or.reduce([(w > 0) & np.isnan(v) for v, w in corners])
    return np.where(unknown, np.nan, np.where(diverged, np.inf, total))


def basin_region(z: np.ndarray, centre: tuple[int, ...], threshold: float) -> np.ndarray:
    """The grid points connected to the centre (through edge neighbours) where z ≤ ``threshold``."""
    allowed = np.isfinite(z) & (z <= threshold)
    region = np.zeros(z.shape, dtype=bool)
    region[centre] = allowed[centre]
    while True:
        grown = region.copy()
        for axis in range(z.ndim):
            grown |= _shift(region, 1, axis) | _shift(region, -1, axis)
        grown &= allowed
        if np.array_equal(grown, region):
            return region
        region = grown


def basin_area(z: np.ndarray, region: np.ndarray) -> Extent:
    """The basin's share of the grid's points: beyond when it reaches the grid's edge, unknown
    when it borders an unfinished point (it may go on past it)."""
    share = float(region.sum() / region.size)
    edges = np.zeros(z.shape, dtype=bool)
    for axis in range(z.ndim):
        edges[(slice(None),) * axis + (0,)] = edges[(slice(None),) * axis + (-1,)] = True
    neighbours = np.zeros(z.shape, dtype=bool)
    for axis in range(z.ndim):
        neighbours |= _shift(region, 1, axis) | _shift(region, -1, axis)
    if (neighbours & np.isnan(z)).any():
        return Extent(share, UNKNOWN)
    return Extent(share, BEYOND if (region & edges).any() else INSIDE)


def _shift(mask: np.ndarray, offset: int, axis: int) -> np.ndarray:
    """``mask`` moved by ``offset`` along ``axis``, with False shifted in (no wrap-around)."""
    out = np.zeros_like(mask)
    src = [slice(None)] * mask.ndim
    dst = [slice(None)] * mask.ndim
    src[axis], dst[axis] = (slice(None, -offset), slice(offset, None)) if offset > 0 else \
        (slice(-offset, None), slice(None, offset))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def second_differences(coords: np.ndarray, z: np.ndarray, axis: int) -> np.ndarray:
    """∂²z along ``axis`` by the three-point difference (exact for quadratics on any spacing);
    NaN on the edges and wherever a point used is not finite."""
    h = np.diff(coords)
    hm, hp = h[:-1], h[1:]
    shape = [1] * z.ndim
    shape[axis] = -1
    hm, hp = hm.reshape(shape), hp.reshape(shape)
    lo, mid, hi = (np.take(z, range(start, z.shape[axis] - 2 + start), axis=axis) for start in (0, 1, 2))
    with np.errstate(invalid="ignore"):  # inf - inf at diverged points: masked just below
        inner = 2 * (hm * hi - (hm + hp) * mid + hp * lo) / (hm * hp * (hm + hp))
    inner = np.where(np.isfinite(lo) & np.isfinite(mid) & np.isfinite(hi), inner, np.nan)
    pad = [(0, 0)] * z.ndim
    pad[axis] = (1, 1)
    return np.pad(inner, pad, constant_values=np.nan)


def mixed_differences(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """∂²z/∂x∂y by the four diagonal neighbours (exact for quadratics); NaN on the edges and
    wherever a point used is not finite."""
    corners = z[2:, 2:], z[2:, :-2], z[:-2, 2:], z[:-2, :-2]
    with np.errstate(invalid="ignore"):  # inf - inf at diverged points: masked just below
        inner = (corners[0] - corners[1] - corners[2] + corners[3]) / np.outer(y[2:] - y[:-2], x[2:] - x[:-2])
    finite = np.logical_and.reduce([np.isfinite(c) for c in corners])
    return np.pad(np.where(finite, inner, np.nan), 1, constant_values=np.nan)


def hessian_field(x: np.ndarray, y: np.ndarray | None, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """(∂²x, ∂²y, ∂²xy) at every grid point ((∂²x,) on a line); NaN where it cannot be formed."""
    if y is None:
        return (second_differences(x, z, 0),)
    xx = second_differences(x, z, 1)
    yy = second_differences(y, z, 0)
    xy = mixed_differences(x, y, z)
    known = np.isfinite(xx) & np.isfinite(yy) & np.isfinite(xy)
    return tuple(np.where(known, a, np.nan) for a in (xx, yy, xy))


def centre_curvature(x: np.ndarray, y: np.ndarray | None, z: np.ndarray) -> Curvature:
    """The second differences at the centre point (NaN where a neighbour is missing)."""
    field = hessian_field(x, y, z)
    centre = centre_index(x, y)
    if y is None:
        return Curvature(float(field[0][centre]), float("nan"), float("nan"))
    return Curvature(*(float(a[centre]) for a in field))


def convex_mask(x: np.ndarray, y: np.ndarray | None, z: np.ndarray) -> np.ndarray:
    """Per point: 1.0 where the discrete Hessian is positive semi-definite, 0.0 where it is not,
    NaN where it cannot be formed (edges, missing or diverged neighbours).

    Curvature smaller than ``FLAT_TOLERANCE`` · max|z| / (hx·hy) counts as flat, hence convex.
    """
    field = hessian_field(x, y, z)
    finite = z[np.isfinite(z)]
    spacing = np.min(np.diff(x)) * (np.min(np.diff(y)) if y is not None else np.min(np.diff(x)))
    tolerance = FLAT_TOLERANCE * (np.max(np.abs(finite)) if finite.size else 0.0) / spacing
    if y is None:
        smallest = field[0]
    else:
        xx, yy, xy = field
        smallest = (xx + yy) / 2 - np.hypot((xx - yy) / 2, xy)
    return np.where(np.isnan(smallest), np.nan, (smallest >= -tolerance).astype(float))


def convex_share(mask: np.ndarray, where: np.ndarray | None = None) -> float:
    """The share of points (of ``where``, default all) with a convex mask of 1, among those
    where it could be formed; NaN when none could."""
    values = mask if where is None else mask[where]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def local_minima(z: np.ndarray) -> np.ndarray:
    """The interior points strictly below every neighbour (8 in 2D, 2 on a line), all finite."""
    inner = tuple(slice(1, -1) for _ in range(z.ndim))
    centre = z[inner]
    is_min = np.isfinite(centre)
    for offset in np.ndindex(*(3,) * z.ndim):
        if all(o == 1 for o in offset):
            continue
        neighbour = z[tuple(slice(o, o + n) for o, n in zip(offset, centre.shape))]
        is_min &= np.isfinite(neighbour) & (centre < neighbour)
    return np.pad(is_min, 1, constant_values=False)


def barrier(alpha: np.ndarray, z: np.ndarray) -> Barrier:
    """The barrier on the straight path between the models at α = 0 and α = 1.

    Height: the highest loss at grid points with 0 ≤ α ≤ 1 minus the higher of
    the two ends (0 when the path never rises above its ends); ``at``: the α of
    that highest point. A diverged point on the path makes it +inf, an
    unfinished one NaN.
    """
    start, end = end_indices(alpha)
    path = z[start:end + 1]
    if np.isnan(path).any():
        return Barrier(float("nan"), float("nan"))
    top = int(np.argmax(path))
    return Barrier(float(max(path[top] - max(path[0], path[-1]), 0.0)), float(alpha[start + top]))


def end_indices(alpha: np.ndarray) -> tuple[int, int]:
    """The grid indices nearest α = 0 and α = 1 (the two models of an interpolation)."""
    return int(np.argmin(np.abs(alpha))), int(np.argmin(np.abs(alpha - 1)))


def curve_set(curves: np.ndarray) -> CurveSet:
    """Pointwise mean, standard deviation, minimum and maximum of ``curves`` (one per row),
    over the curves that are finite there (NaN where none is)."""
    curves = np.where(np.isfinite(curves), curves, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is NaN, as documented
        return CurveSet(np.nanmean(curves, axis=0), np.nanstd(curves, axis=0),
                        np.nanmin(curves, axis=0), np.nanmax(curves, axis=0))
