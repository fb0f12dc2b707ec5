"""Principal components of an optimizer trajectory, and projections onto two directions.

The paper (section 7) applies PCA to the matrix M = [θ_0 − θ_n; …; θ_{n−1} − θ_n]
of checkpoints relative to the final model. Its reference code builds M over
every saved epoch up to and including the last, so M also holds the final
model's zero row θ_n − θ_n, and fits ``sklearn.decomposition.PCA(n_components=2)``,
which centres the rows on their mean first. We do both (the trajectory
command passes the zero row too), so the directions and the explained variance
ratios are the reference's. Centred, the result does not depend on which model
the rows are taken relative to.

M has one row per checkpoint and one column per weight: for real networks
n_rows << n_columns. The components are therefore computed from the
n_rows × n_rows Gram matrix of the centred rows (eigenvectors U, eigenvalues
S²), with V = M_cᵀ·U / S, never from an SVD of M itself. M is read in column
blocks, each cast to float64 and centred on the fly: M is never copied, never
modified, and the extra memory is O(n_rows²) plus one block.

This module is plain numpy: no torch, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import LandscapeError

PROJECTIONS = ("cos", "lstsq")
BLOCK_BYTES = 64 << 20  # size of the float64 column block read from M at a time
DEGENERATE = 1e-12  # a component with less than this share of the first one's variance is noise


@dataclass(frozen=True)
class Components:
    """The leading principal components of a set of rows, with sklearn's names for the numbers."""

    vectors: np.ndarray  # (k, n_columns) float64, orthonormal rows
    explained_variance: np.ndarray  # (k,) S² / (n_rows − 1)
    explained_variance_ratio: np.ndarray  # (k,) share of the total variance
    singular_values: np.ndarray  # (k,) of the centred matrix


def principal_components(matrix: np.ndarray, k: int = 2) -> Components:
    """The top ``k`` principal components of the rows of ``matrix`` (centred, as sklearn's PCA).

    Signs are fixed so that the largest-magnitude entry of each component is
    positive: a component's sign is arbitrary, and this makes it reproducible.
    """
    n_rows, n_columns = matrix.shape
    if n_rows < k + 1:
        raise LandscapeError(
            f"PCA of {k} components needs at least {k + 1} checkpoints, got {n_rows}; "
            f"save more epochs or lower --save_epoch"
        )
    gram = np.zeros((n_rows, n_rows))
    for block in _column_blocks(n_rows, n_columns):
        centred = matrix[:, block].astype(np.float64)
        centred -= centred.mean(axis=0)
        gram += centred @ centred.T
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    top = np.argsort(eigenvalues)[::-1][:k]
    variances, u = np.clip(eigenvalues[top], 0.0, None), eigenvectors[:, top]
    total = float(np.trace(gram))
    if total <= 0.0 or variances[-1] <= DEGENERATE * variances[0]:
        raise LandscapeError(
            f"the checkpoints span fewer than {k} directions (all identical, or on one line); "
            f"PCA directions are undefined for them"
        )
    singular = np.sqrt(variances)
    vectors = np.empty((k, n_columns))
    for block in _column_blocks(n_rows, n_columns):
        centred = matrix[:, block].astype(np.float64)
        centred -= centred.mean(axis=0)
        vectors[:, block] = (u.T @ centred) / singular[:, None]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # round-off only
    signs = np.sign(vectors[np.arange(k), np.argmax(np.abs(vectors), axis=1)])
    vectors *= signs[:, None]
    return Components(vectors, variances / (n_rows - 1), variances / total, singular)


def project(matrix: np.ndarray, dx: np.ndarray, dy: np.ndarray,
            method: str = "cos") -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of every row of ``matrix`` in the plane of ``dx`` and ``dy``.

    ``cos`` is the reference's projection: each coordinate is the dot product
    with that unit direction, exact when the directions are orthogonal (PCA
    directions are). ``lstsq`` is the least-squares fit row ≈ x·dx + y·dy,
    exact for any two independent directions (solved by its 2×2 normal equations).
    """
    if method not in PROJECTIONS:
        raise LandscapeError(f"--projection {method!r}: choose one of {', '.join(PROJECTIONS)}")
    dx, dy = np.asarray(dx, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    dots = np.zeros((matrix.shape[0], 2))
    for block in _column_blocks(matrix.shape[0], matrix.shape[1]):
        part = matrix[:, block].astype(np.float64)
        dots[:, 0] += part @ dx[block]
        dots[:, 1] += part @ dy[block]
    gram = np.array([[dx @ dx, dx @ dy], [dy @ dx, dy @ dy]])
    if method == "cos":
        coords = dots / np.sqrt(np.diag(gram))
    else:
        if abs(np.linalg.det(gram)) <= DEGENERATE * gram[0, 0] * gram[1, 1]:
            raise LandscapeError("the two directions are parallel: a least-squares projection is undefined")
        coords = np.linalg.solve(gram, dots.T).T
    return coords[:, 0], coords[:, 1]


def _column_blocks(n_rows: int, n_columns: int) -> list[slice]:
    """Column slices whose float64 copy stays near ``BLOCK_BYTES``."""
    width = max(1, BLOCK_BYTES // (8 * max(n_rows, 1)))
    return [slice(start, min(start + width, n_columns)) for start in range(0, n_columns, width)]
