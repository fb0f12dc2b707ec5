"""Values between grid points: bilinear sampling and bicubic resampling, in numpy.

The VTK export needs both: a trajectory's height where it crosses the
surface (bilinear, exact on the drawn quads' edges) and a smooth finer
surface for rendering (``--interp``; the reference used SciPy's interp2d,
which SciPy has removed). Keys' cubic convolution is separable, interpolates
the samples exactly and reproduces quadratics, so on a regular grid it is a
pair of small matrix products.
"""

from __future__ import annotations

import numpy as np

from ..errors import LandscapeError

KEYS_A = -0.5  # Keys (1981): the choice that makes the kernel third-order accurate


def sample_bilinear(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                    px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """``z`` (shape (len(y), len(x))) at the points (px, py); NaN outside the grid or next to a NaN."""
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    out = np.full(px.shape, np.nan)
    inside = (px >= x[0]) & (px <= x[-1]) & (py >= y[0]) & (py <= y[-1])
    ix = np.clip(np.searchsorted(x, px[inside], side="right") - 1, 0, len(x) - 2)
    iy = np.clip(np.searchsorted(y, py[inside], side="right") - 1, 0, len(y) - 2)
    tx = (px[inside] - x[ix]) / (x[ix + 1] - x[ix])
    ty = (py[inside] - y[iy]) / (y[iy + 1] - y[iy])
    out[inside] = ((1 - ty) * ((1 - tx) * z[iy, ix] + tx * z[iy, ix + 1])
                   + ty * ((1 - tx) * z[iy + 1, ix] + tx * z[iy + 1, ix + 1]))
    return out


def is_regular(axis: np.ndarray) -> bool:
    """Whether the coordinates are evenly spaced and increasing (what cubic convolution assumes)."""
    if len(axis) < 2:
        return False
    step = (axis[-1] - axis[0]) / (len(axis) - 1)
    return bool(step > 0 and np.allclose(np.diff(axis), step, rtol=1e-6, atol=0))


def cubic_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix taking ``n_in`` evenly spaced samples to ``n_out`` over the same span.

    Beyond the ends the samples are extended by Keys' boundary rule
    f[-1] = 3f[0] − 3f[1] + f[2], which is exact for quadratics; the
    extension is folded into the matrix.
    """
    if n_in < 3:
        raise LandscapeError(f"cubic resampling needs at least 3 points per axis, found {n_in}")
    t = np.linspace(0.0, n_in - 1, n_out)
    base = np.clip(np.floor(t).astype(int), 0, n_in - 2)
    frac = t - base
    padded = np.zeros((n_out, n_in + 2))  # column j + 1 holds sample j; 0 and -1 the extensions
    rows = np.arange(n_out)
    for k in (-1, 0, 1, 2):
        padded[rows, base + k + 1] += _keys(frac - k)
    weights = padded[:, 1:-1].copy()
    weights[:, :3] += np.outer(padded[:, 0], [3.0, -3.0, 1.0])
    weights[:, -3:] += np.outer(padded[:, -1], [1.0, -3.0, 3.0])
    return weights


def resample_bicubic(z: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """``z`` (on a regular grid, no NaN) resampled to ``ny`` × ``nx`` points over the same extent."""
    return cubic_weights(z.shape[0], ny) @ z @ cubic_weights(z.shape[1], nx).T


def _keys(d: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel at offsets ``d`` (in grid steps)."""
    a, d = KEYS_A, np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))
