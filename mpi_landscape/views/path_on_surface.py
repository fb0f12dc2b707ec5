"""An optimizer path sampled along a surface, so that a 3D drawing lies on it.

Between two checkpoints the surface is not a straight chord: a polyline drawn
through the checkpoints alone cuts through hills and sinks under valleys. The
path is therefore resampled at steps finer than the grid, and each sample
takes the surface's height where it lies (bilinear, as the drawn quads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .plot_grid import sample_bilinear

STEPS_PER_CELL = 4  # samples per grid step along the path: finer than any quad it crosses


@dataclass(frozen=True)
class SampledPath:
    """Samples along a path: their plane coordinates, height, and position in checkpoints
    (``t`` = 2.5 is halfway between checkpoints 2 and 3)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    t: np.ndarray


def sample_path(grid_x: np.ndarray, grid_y: np.ndarray, height: np.ndarray,
                px: np.ndarray, py: np.ndarray) -> SampledPath:
    """The path through (px, py) resampled every fraction of a grid step, with the height
    ``height`` (shape (len(grid_y), len(grid_x))) at each sample; NaN outside the grid."""
    step = min(np.diff(grid_x).min(), np.diff(grid_y).min()) / STEPS_PER_CELL
    x, y, t = resample_path(px, py, step)
    return SampledPath(x, y, sample_bilinear(grid_x, grid_y, height, x, y), t)


def resample_path(px: np.ndarray, py: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points along the polyline through (px, py) at most ``step`` apart, every checkpoint among
    them, and each one's position in checkpoints (``t``)."""
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    pieces = np.maximum(np.ceil(np.hypot(np.diff(px), np.diff(py)) / step).astype(int), 1)
    t = np.concatenate([i + np.arange(n) / n for i, n in enumerate(pieces)] + [[len(px) - 1.0]])
    index = np.arange(len(px))
    return np.interp(t, index, px), np.interp(t, index, py), t
