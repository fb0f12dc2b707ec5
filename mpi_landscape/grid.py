"""Grid specifications, coordinates, flat indices and the order points are computed in.

A grid is one axis (a 1D line) or two axes (a 2D surface). Axes are written as
the reference's ``"min:max:num"`` strings. A point is addressed by one flat
index ``i = iy * nx + ix`` so that ``Z.ravel()[i]`` is ``Z[iy, ix]`` for the
surface arrays of shape ``(ny, nx)``; a 1D grid has ``ny == 1``.

The order in which points are handed out is coarse to fine: after any prefix of
whole refinement levels, the finished points form a complete coarser grid
(every 2^k-th point of each axis, endpoints included), so an interrupted run
already gives a usable low-resolution surface.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .errors import LandscapeError


def _whole_number(text: str) -> int:
    """A count written as ``51``, ``+51`` or, for big grids, ``1e6``; a fraction is refused."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # a ValueError here is "not a grid spec"
        if not (np.isfinite(value) and value == int(value)):
            raise ValueError(text) from None
        return int(value)


@dataclass(frozen=True)
class Axis:
    """One axis of the grid: ``num`` evenly spaced values from ``lo`` to ``hi``."""

    lo: float
    hi: float
    num: int

    @classmethod
    def parse(cls, spec: str, name: str = "x") -> "Axis":
        """Parse ``"min:max:num"`` (the reference's format); refuse anything else."""
        parts = str(spec).split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            lo, hi = float(parts[0]), float(parts[1])
            num = _whole_number(parts[2])
        except ValueError:
            raise LandscapeError(
                f"--{name}={spec!r} is not a grid spec: write min:max:num, e.g. --{name}=-1:1:51"
            ) from None
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise LandscapeError(f"--{name}={spec!r}: min and max must be finite numbers")
        if num < 1:
            raise LandscapeError(f"--{name}={spec!r}: the number of points must be at least 1")
        if num > 1 and not lo < hi:
            raise LandscapeError(f"--{name}={spec!r}: min must be smaller than max")
        return cls(lo, hi, num)

    @property
    def spec(self) -> str:
        """The axis written back as ``"min:max:num"``."""
        return f"{self.lo:g}:{self.hi:g}:{self.num}"

    def coordinates(self) -> np.ndarray:
        """The axis values as float64, endpoints included (the reference's linspace)."""
        return np.linspace(self.lo, self.hi, self.num, dtype=np.float64)


@dataclass(frozen=True)
class Grid:
    """A 1D line (``y is None``) or a 2D surface of points (x[ix], y[iy])."""

    x: Axis
    y: Axis | None = None

    @classmethod
    def parse(cls, x: str, y: str | None = None) -> "Grid":
        """Build a grid from the ``--x`` and optional ``--y`` specs."""
        return cls(Axis.parse(x, "x"), Axis.parse(y, "y") if y else None)

    @property
    def is_2d(self) -> bool:
        return self.y is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the result arrays: ``(ny, nx)`` in 2D, ``(nx,)`` in 1D."""
        return (self.y.num, self.x.num) if self.y is not None else (self.x.num,)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def xcoordinates(self) -> np.ndarray:
        return self.x.coordinates()

    def ycoordinates(self) -> np.ndarray | None:
        return self.y.coordinates() if self.y is not None else None

    def unravel(self, index: int) -> tuple[int, int]:
        """Flat index -> ``(iy, ix)``; ``iy`` is 0 on a 1D grid."""
        if not 0 <= index < self.size:
            raise IndexError(f"point {index} is outside a grid of {self.size} points")
        return divmod(int(index), self.x.num)

    def ravel(self, iy: int, ix: int) -> int:
        """``(iy, ix)`` -> flat index."""
        return int(iy) * self.x.num + int(ix)

    def point(self, index: int) -> tuple[float, float]:
        """The coordinates ``(alpha, beta)`` of a flat index (beta is 0.0 in 1D)."""
        iy, ix = self.unravel(index)
        return float(self._x[ix]), float(self._y[iy]) if self._y is not None else 0.0

    @functools.cached_property
    def _x(self) -> np.ndarray:  # computed once: point() is called for every grid point
        return self.xcoordinates()

    @functools.cached_property
    def _y(self) -> np.ndarray | None:
        return self.ycoordinates()

    def coarse_to_fine(self) -> np.ndarray:
        """All flat indices, coarsest refinement level first (stable within a level)."""
        level_x = refinement_levels(self.x.num)
        level_y = refinement_levels(self.y.num) if self.y is not None else np.zeros(1, np.int64)
        level = np.maximum(level_y[:, None], level_x[None, :]).ravel()
        return np.argsort(level, kind="stable")


def refinement_levels(n: int) -> np.ndarray:
    """Level of each of ``n`` axis indices under recursive bisection.

    Level 0 holds the endpoints; level k adds the midpoints of the intervals of
    level k-1. Every index of a level-k-complete set lies on a grid that is
    uniform up to rounding, which is what makes a prefix a coarse surface.
    """
    levels = np.full(n, -1, dtype=np.int64)
    levels[[0, n - 1]] = 0
    intervals, level = [(0, n - 1)], 0
    while intervals:
        level += 1
        next_intervals = []
        for lo, hi in intervals:
            if hi - lo < 2:
                continue
            mid = (lo + hi) // 2
            levels[mid] = level
            next_intervals += [(lo, mid), (mid, hi)]
        intervals = next_intervals
    return levels
