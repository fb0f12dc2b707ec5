"""What the views (plots and VTK export) read and say about a surface, without drawing.

Reading a projected trajectory and a direction file's explained variance,
masking unfinished points, and the words on every figure: titles from the
file's provenance, axis labels with their definitions, metric labels, a
panel's key figures from the summary package. Kept apart from matplotlib and
VTK so both views say the same things and tests can check the words alone.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import LandscapeError
from ..grid import refinement_levels
from ..store import Surface, read_directions
from ..summary import DEFAULT_LEVEL, centre_index
from ..summary.report import summarize

LOSS_TEXT = {"crossentropy": "mean cross-entropy", "mse": "mean squared error"}
TASK_LOSS_TEXT = {"language_model": "mean next-token cross-entropy", "regression": "mean squared error"}
OTHER_METRICS = {
    "max_eig": "largest Hessian eigenvalue",
    "min_eig": "smallest Hessian eigenvalue",
    "eig_ratio": "|smallest / largest| Hessian eigenvalue",
}
SIGNED_METRICS = ("min_eig",)  # values of either sign: colours diverge from 0
POSITIVE_METRICS = ("max_eig", "eig_ratio")  # besides losses and perplexities: log scale when spanning decades
SEQUENTIAL_MAP, DIVERGING_MAP = "viridis", "RdBu_r"


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
    """The named array with NaN wherever the point is unfinished, diverged or not a finite number.

    A diverged point's accuracy is no accuracy: it is NaN here, and
    ``diverged_mask`` says where to mark it instead.
    """
    if metric not in surface.metrics:
        raise LandscapeError(f"the surface has no array {metric!r}; it has: "
                             f"{', '.join(sorted(surface.metrics)) or 'none'}")
    values = np.array(surface.metrics[metric], dtype=np.float64)
    values[~surface.done | ~np.isfinite(values) | diverged_mask(surface, metric)] = np.nan
    return values


def diverged_mask(surface: Surface, metric: str) -> np.ndarray:
    """Finished points where the network diverged for ``metric``'s split.

    Diverged: some samples' outputs were not finite (``<split>_nonfinite`` > 0),
    or, in files without that array such as the reference's, the split's loss
    is not finite. A metric without a split (``max_eig``) diverged where it is
    not finite itself.
    """
    split, _, _ = metric.rpartition("_")
    arrays = surface.metrics
    with np.errstate(invalid="ignore"):
        if f"{split}_nonfinite" in arrays:
            diverged = arrays[f"{split}_nonfinite"] > 0
        elif f"{split}_loss" in arrays:
            diverged = ~np.isfinite(arrays[f"{split}_loss"])
        else:
            diverged = ~np.isfinite(arrays[metric]) if metric in arrays else np.zeros(surface.shape, bool)
    return surface.done & diverged


def masked_values(surface: Surface, metric: str, log: bool = False) -> np.ma.MaskedArray:
    """``metric_values`` masked (gaps in contours and meshes); with ``log``, values ≤ 0 are gaps too."""
    values = metric_values(surface, metric)
    if log:
        values[values <= 0] = np.nan
    return np.ma.masked_invalid(values)


def finest_complete_lattice(surface: Surface) -> tuple[np.ndarray, np.ndarray | None]:
    """Axis indices of the finest coarse-to-fine lattice whose points are all done.

    A run hands out points coarsest level first (endpoints, then midpoints,
    ...), so early on a partial file holds a complete coarser surface: that is
    what a preview draws. Returns all indices for a complete file, and the
    endpoints when even those are missing (the caller then draws gaps).
    """
    if surface.y is None:
        return np.arange(len(surface.x)), None
    level_x, level_y = refinement_levels(len(surface.x)), refinement_levels(len(surface.y))
    best = (np.flatnonzero(level_x == 0), np.flatnonzero(level_y == 0))
    for level in range(1, max(level_x.max(), level_y.max()) + 1):
        ix, iy = np.flatnonzero(level_x <= level), np.flatnonzero(level_y <= level)
        if not surface.done[np.ix_(iy, ix)].all():
            break
        best = ix, iy
    return best


def preview(surface: Surface) -> Surface:
    """A partial surface cut to its finest complete lattice (itself when done or when that is finest)."""
    ix, iy = finest_complete_lattice(surface)
    if surface.y is None or surface.fraction_done >= 1 or not surface.done[np.ix_(iy, ix)].all() \
            or (len(ix), len(iy)) == (len(surface.x), len(surface.y)):
        return surface
    metrics = {k: v[np.ix_(iy, ix)] for k, v in surface.metrics.items()}
    attrs = {**surface.attrs, "preview_of": [len(surface.y), len(surface.x)],
             "preview_fraction_done": surface.fraction_done}
    return Surface(surface.x[ix], surface.y[iy], metrics, surface.done[np.ix_(iy, ix)],
                   surface.dir_file, attrs)


# ---------------------------------------------------------------- words


def metric_label(metric: str, surface: Surface | None = None) -> str:
    """What a metric is, e.g. ``loss (train, mean cross-entropy)`` or ``accuracy (test, %)``."""
    split, _, kind = metric.rpartition("_")
    if kind == "loss" and split:
        return f"loss ({split}, {loss_description(surface)})"
    if kind == "acc" and split:
        return f"accuracy ({split}, %)"
    if kind == "nonfinite" and split:
        return f"share of samples with non-finite outputs ({split})"
    if kind == "perplexity" and split:
        return f"perplexity ({split})"
    return OTHER_METRICS.get(metric, metric)


def quantity_label(metrics: list[str], surface: Surface | None = None) -> str:
    """What several metrics drawn on one colour scale have in common, e.g. ``loss (mean cross-entropy)``
    for train_loss and test_loss; a single metric's own label."""
    if len(metrics) == 1:
        return metric_label(metrics[0], surface)
    kind = metric_kind(metrics[0])
    if kind == "loss":
        return f"loss ({loss_description(surface)})"
    return {"acc": "accuracy (%)", "perplexity": "perplexity"}.get(kind, kind)


def metric_kind(metric: str) -> str:
    """What a metric measures without its split: ``loss`` for train_loss, ``max_eig`` for max_eig."""
    split, _, kind = metric.rpartition("_")
    return kind if split and kind in ("loss", "acc", "perplexity", "nonfinite") else metric


def panel_name(metric: str) -> str:
    """A metric as a panel's title: ``test loss``, ``train accuracy``, ``largest Hessian eigenvalue``."""
    split, _, kind = metric.rpartition("_")
    if split and kind in ("loss", "acc", "perplexity"):
        return f"{split} {'accuracy' if kind == 'acc' else kind}"
    return OTHER_METRICS.get(metric, metric)


def colour_map(metric: str) -> tuple[str, float | None]:
    """A metric's colour map and the value its colours diverge from (None: sequential)."""
    return (DIVERGING_MAP, 0.0) if metric in SIGNED_METRICS else (SEQUENTIAL_MAP, None)


def is_loss(metric: str) -> bool:
    """Whether ``metric`` is a split's loss (positive, spanning decades near a minimum)."""
    return metric.endswith("_loss") or metric == "loss"


def spans_decades(metric: str) -> bool:
    """Whether ``metric`` is positive and may span decades (a loss, a perplexity, λmax, |λmin/λmax|),
    so that a log scale shows its small values."""
    return is_loss(metric) or metric.endswith("_perplexity") or metric in POSITIVE_METRICS


def loss_description(surface: Surface | None) -> str:
    """The per-sample loss averaged over the split, e.g. ``mean cross-entropy`` (the reference's default)."""
    config = _config(surface)
    task = config.get("task") or "classification"
    if task != "classification":
        return TASK_LOSS_TEXT.get(task, f"loss of --task {task}")
    loss_name = config.get("loss_name") or "crossentropy"
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


def interpolation_ends(surface: Surface) -> tuple[str, str] | None:
    """The two checkpoints of an interpolation (``--model_file2``), named by as much of their paths as
    tells them apart (``sgd_128/model_20.t7``, ``sgd_8192/model_20.t7``); None for other files."""
    config = _config(surface)
    first, second = config.get("model_file"), config.get("model_file2")
    if not (first and second):
        return None
    parts = [os.path.normpath(str(p)).split(os.sep) for p in (first, second)]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if names[0] != names[1]:
            return names[0], names[1]
    return str(first), str(second)


def done_text(fraction: float) -> str:
    """``63% done`` (rounded down, so an unfinished file never says 100%)."""
    return f"{math.floor(100 * fraction)}% done"


def progress_text(surface: Surface) -> str:
    """How much of the file is done, and the lattice a preview shows: ``40% done, shown at 5×5``; '' when complete."""
    if "preview_of" in surface.attrs:
        fraction = surface.attrs["preview_fraction_done"]
        return f"{done_text(fraction)}, shown at {len(surface.x)}×{len(surface.y)}"
    return done_text(surface.fraction_done) if surface.fraction_done < 1 else ""


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


def key_figures(path: str, surface: Surface, metric: str) -> str:
    """A panel's numbers in one line, as the summary command computes them:
    mean basin radius at its default level, largest curvature eigenvalue, convex share of the basin."""
    row, _ = summarize(path, surface, metric, DEFAULT_LEVEL)
    radius, eigenvalue, convex = row.get("radius_mean"), row.get("eig_max"), row.get("convex_basin")
    parts = [f"r̄ {radius.text(2)}" if radius is not None else "r̄ –",
             f"λmax {eigenvalue:.3g}" if eigenvalue is not None else "λmax –",
             f"convex {convex:.0%}" if convex is not None and np.isfinite(convex) else "convex –"]
    return " · ".join(parts)


def test_error_text(surface: Surface) -> str | None:
    """``test error 7.4%`` at θ* (the grid point nearest the origin), as the paper's panels say it;
    None when the file has no finished test accuracy there."""
    if "test_acc" not in surface.metrics:
        return None
    accuracy = metric_values(surface, "test_acc")[centre_index(surface.x, surface.y)]
    return f"test error {100 - accuracy:.1f}%" if np.isfinite(accuracy) else None


def figure_title(surface: Surface, path: str) -> str:
    """A short title: model and checkpoint, and while partial how much is done (details go to metadata)."""
    progress = progress_text(surface)
    return f"{short_name(surface, path)}, {progress}" if progress else short_name(surface, path)


def figure_metadata(surface: Surface, path: str) -> dict[str, str]:
    """What a figure file records of its surface in its own metadata: source, directions, grid, progress."""
    description = details(surface)
    progress = progress_text(surface)
    if progress:
        description += f", {progress}"
    return {"Title": short_name(surface, path), "Subject": f"{os.path.basename(path)}: {description}"}


def legend_label(surface: Surface, path: str) -> str:
    """A curve's name in an overlay: the short name, with the done fraction while partial."""
    label = short_name(surface, path)
    progress = progress_text(surface)
    return f"{label} ({progress})" if progress else label


def default_prefix(path: str) -> str:
    """Where a surface's figures go by default: beside it, named after it without ``.h5``."""
    return path[:-3] if path.endswith(".h5") else path


def _config(surface: Surface | None) -> dict:
    config = surface.attrs.get("config") if surface is not None else None
    return config if isinstance(config, dict) else {}
