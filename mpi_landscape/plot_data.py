"""What the views (plots and VTK export) read and say about a surface, without drawing.

Reading a projected trajectory and a direction file's explained variance,
masking unfinished points, and the words on every figure: titles from the
file's provenance, axis labels with their definitions, metric labels. Kept
apart from matplotlib and VTK so both views say the same things and tests can
check the words alone.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import LandscapeError
from .store import Surface, read_directions

LOSS_TEXT = {"crossentropy": "mean cross-entropy", "mse": "mean squared error"}
OTHER_METRICS = {
    "max_eig": "largest Hessian eigenvalue",
    "min_eig": "smallest Hessian eigenvalue",
}


# ---------------------------------------------------------------- trajectories


def locate_dir_file(surface_path: str, surface: Surface, override: str | None) -> str | None:
    """The direction file to read axis facts from: ``override``, else the one the surface names.

    The stored name is relative to where the run started; it is looked for
    there, beside the surface file under its stored relative path, and beside
    it under its bare name (default names put both files in one folder). A
    stored name that cannot be found is not an error; a missing ``override`` is.
    """
    if override:
        if not os.path.isfile(override):
            raise LandscapeError(f"--dir_file {override} does not exist")
        return override
    if not surface.dir_file:
        return None
    folder = os.path.dirname(os.path.abspath(surface_path))
    for candidate in (surface.dir_file, os.path.join(folder, surface.dir_file),
                      os.path.join(folder, os.path.basename(surface.dir_file))):
        if os.path.isfile(candidate):
            return candidate
    return None


def explained_variance(surface_path: str, surface: Surface,
                       override: str | None) -> tuple[float, float] | None:
    """The PCA axes' explained variance ratios: from ``--dir_file`` when given, else from what
    the surface file recorded of its directions, else from its direction file; None otherwise."""
    recorded = (surface.attrs.get("directions") or {}).get("explained_variance_ratio")
    if recorded and not override:
        return float(recorded[0]), float(recorded[1])
    return read_explained_variance(locate_dir_file(surface_path, surface, override))


def read_explained_variance(dir_file: str | None) -> tuple[float, float] | None:
    """PCA directions' ``explained_variance_ratio_`` (two fractions), or None for other directions."""
    if dir_file is None:
        return None
    extras = read_directions(dir_file, tensors=False).extras
    if "explained_variance_ratio_" not in extras:
        return None
    ratio = np.asarray(extras["explained_variance_ratio_"], dtype=np.float64).ravel()
    if len(ratio) < 2:
        raise LandscapeError(f"{dir_file}: explained_variance_ratio_ must hold two values, "
                             f"found {len(ratio)}")
    return float(ratio[0]), float(ratio[1])


# ---------------------------------------------------------------- values


def metric_values(surface: Surface, metric: str) -> np.ndarray:
    """The named array with NaN wherever the point is unfinished or not a finite number."""
    if metric not in surface.metrics:
        raise LandscapeError(f"the surface has no array {metric!r}; it has: "
                             f"{', '.join(sorted(surface.metrics)) or 'none'}")
    values = np.array(surface.metrics[metric], dtype=np.float64)
    values[~surface.done | ~np.isfinite(values)] = np.nan
    return values


def masked_values(surface: Surface, metric: str, log: bool = False) -> np.ma.MaskedArray:
    """``metric_values`` masked (gaps in contours and meshes); with ``log``, values ≤ 0 are gaps too."""
    values = metric_values(surface, metric)
    if log:
        values[values <= 0] = np.nan
    return np.ma.masked_invalid(values)


# ---------------------------------------------------------------- words


def metric_label(metric: str, surface: Surface | None = None) -> str:
    """What a metric is, e.g. ``loss (train, mean cross-entropy)`` or ``accuracy (test, %)``."""
    split, _, kind = metric.rpartition("_")
    if kind == "loss" and split:
        return f"loss ({split}, {loss_description(surface)})"
    if kind == "acc" and split:
        return f"accuracy ({split}, %)"
    return OTHER_METRICS.get(metric, metric)


def loss_description(surface: Surface | None) -> str:
    """The per-sample loss averaged over the split, e.g. ``mean cross-entropy`` (the reference's default)."""
    loss_name = _config(surface).get("loss_name") or "crossentropy"
    return LOSS_TEXT.get(loss_name, loss_name)


def axis_label(axis: str, surface: Surface,
               explained_variance: tuple[float, float] | None = None) -> str:
    """The x (``axis='x'``) or y axis label: α or β and what it means for this surface."""
    index = 0 if axis == "x" else 1
    if explained_variance is not None:
        return f"PC{index + 1} ({100 * explained_variance[index]:.1f}% of variance)"
    eigenvalue = (surface.attrs.get("directions") or {}).get(f"{axis}_eigenvalue")
    if eigenvalue is not None:
        return f"{'α' if axis == 'x' else 'β'}  (Hessian eigenvector, λ = {eigenvalue:.4g})"
    config = _config(surface)
    if axis == "x" and config.get("model_file2"):
        return "α  (θ = θ₁ + α·(θ₂ − θ₁))"
    if axis == "y" and config.get("model_file3"):
        return "β  (θ = θ₁ + β·(θ₃ − θ₁))"
    return "α  (θ* + α·δ)" if axis == "x" else "β  (θ* + β·η)"


def done_text(fraction: float) -> str:
    """``63% done`` (rounded down, so an unfinished file never says 100%)."""
    return f"{math.floor(100 * fraction)}% done"


def short_name(surface: Surface, path: str) -> str:
    """The file's model and checkpoint, e.g. ``resnet56 · resnet56.t7``; the file name when unknown."""
    config = _config(surface)
    if not config.get("model"):
        return os.path.basename(path)
    checkpoint = os.path.basename(config.get("model_file") or "")
    return f"{config['model']} · {checkpoint}" if checkpoint else str(config["model"])


def details(surface: Surface) -> str:
    """Directions and grid in a few words, e.g. ``filter-normalized weights, 51×51 grid``."""
    config = _config(surface)
    grid = (f"{len(surface.x)}×{len(surface.y)} grid" if surface.y is not None
            else f"{len(surface.x)} points")
    if config.get("model_file2"):
        return f"interpolation to {os.path.basename(config['model_file2'])}, {grid}"
    directions = surface.attrs.get("directions") or {}
    if "explained_variance_ratio" in directions:
        return f"PCA directions of the trajectory, {grid}"
    config = {**config, **directions}  # what the direction file says beats the flags of the run
    norm = config.get("xnorm")
    if norm is None:
        return grid
    if surface.y is not None and config.get("ynorm", norm) != norm:
        norm = f"{norm}/{config['ynorm']}"
    norm_text = "unnormalized" if norm == "none" else f"{norm}-normalized"
    return f"{norm_text} {config.get('dir_type', 'weights')}, {grid}"


def figure_title(surface: Surface, path: str) -> str:
    """Two lines of provenance: model and checkpoint; directions, grid and, while partial, how much is done."""
    second = details(surface)
    if surface.fraction_done < 1:
        second += f", {done_text(surface.fraction_done)}"
    return f"{short_name(surface, path)}\n{second}"


def legend_label(surface: Surface, path: str) -> str:
    """A curve's name in an overlay: the short name, with the done fraction while partial."""
    label = short_name(surface, path)
    return label if surface.fraction_done >= 1 else f"{label} ({done_text(surface.fraction_done)})"


def default_prefix(path: str) -> str:
    """Where a surface's figures go by default: beside it, named after it without ``.h5``."""
    return path[:-3] if path.endswith(".h5") else path


def _config(surface: Surface | None) -> dict:
    config = surface.attrs.get("config") if surface is not None else None
    return config if isinstance(config, dict) else {}
