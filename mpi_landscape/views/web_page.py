"""Surface files as one self-contained interactive HTML page (plotly.js embedded, no network).

The page is data plus a small controller: Python reads the files and turns
each into a panel of plain JSON (coordinates, every metric with its gaps,
diverged points, the trajectory's heights, provenance, the summary command's
numbers) and one colour range per metric shared by every panel; the script
in ``web_page.js`` builds plotly traces from it for the metric, split, height
scale and view the reader picks, so switching redraws without a server.
plotly.js itself comes from the ``plotly`` package (``get_plotlyjs``) and is
inlined, so the file opens offline, from an e-mail or a USB stick.

Unfinished and diverged points are ``null`` (gaps, never interpolated over:
the contour view lays an opaque cell over each, and the hover names it), a
partial file is shown at its finest complete coarse-to-fine lattice, as
``plot --watch`` draws it.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import LandscapeError, require_folder
from ..store import Projection, Surface
from ..summary import DEFAULT_LEVEL
from ..summary.report import columns_for, splits_of, summarize
from ..summary.tables import cell, header, present
from .plot_data import (SIGNED_METRICS, axis_label, details, diverged_mask, explained_variance, is_loss,
                        metric_label, metric_values, preview, progress_text, short_name)
from .plot_grid import sample_bilinear

AUTO_LOG_RATIO = 10.0  # a loss whose largest value is this many times its smallest gets a log height
SUMMARY_HIDDEN = {"file", "kind", "grid", "metric", "level"}  # said elsewhere on the page
MODES = ("single", "compare", "frames")
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")  # {{NAME}} in web_page.html


@dataclass(frozen=True)
class PageItem:
    """One file of the page: its path, its surface as read, an optional trajectory, its label."""

    path: str
    surface: Surface
    projection: Projection | None = None
    label: str | None = None
    dir_file: str | None = None


def page_data(items: list[PageItem], mode: str = "single", title: str | None = None,
              refresh_seconds: float | None = None) -> dict:
    """Everything the page shows, as JSON-ready data: one panel per file and the shared scales.

    ``mode`` is ``single`` (one file), ``compare`` (one panel per file) or
    ``frames`` (one panel, a slider over the files); ``refresh_seconds`` makes
    the page poll ``data.json`` (the live page of ``--serve``).
    """
    if mode not in MODES:
        raise LandscapeError(f"unknown page mode {mode!r}; choose from {', '.join(MODES)}")
    if not items:
        raise LandscapeError("give at least one surface file")
    panels = [panel_data(item) for item in items]
    metrics = list(dict.fromkeys(name for panel in panels for name in panel["metrics"]))
    first = items[0]
    default_title = short_name(first.surface, first.path) if len(items) == 1 else \
        ", ".join(dict.fromkeys(p["name"] for p in panels))
    return {"title": title or default_title, "mode": mode, "metrics": metrics,
            "labels": {m: metric_label(m, first.surface) for m in metrics},
            "scales": {m: shared_scale(m, panels) for m in metrics},
            "panels": panels, "refresh_seconds": refresh_seconds}


def panel_data(item: PageItem) -> dict:
    """One file as the page draws it (its finest complete lattice while partial)."""
    full = item.surface
    if full.y is None:
        raise LandscapeError(f"{item.path} is a 1D surface; the page draws 2D surfaces "
                             f"(draw lines with python -m mpi_landscape.plot)")
    surface = preview(full)
    if min(surface.shape) < 2:
        raise LandscapeError(f"{item.path}: a 2D surface needs at least 2 points on each axis "
                             f"(its grid is {surface.shape[1]}x{surface.shape[0]})")
    variance = explained_variance(item.path, full, item.dir_file)
    panel = {"name": item.label or short_name(full, item.path), "file": os.path.basename(item.path),
             "x": surface.x.tolist(), "y": surface.y.tolist(),
             "xlabel": axis_label("x", surface, variance), "ylabel": axis_label("y", surface, variance),
             "grid": [len(full.x), len(full.y)], "done": surface.done.ravel().astype(int).tolist(),
             "fraction_done": full.fraction_done, "progress": progress_text(surface),
             "metrics": {name: metric_data(surface, name, item.projection) for name in full.metrics},
             "summary": summary_rows(item.path, full), "provenance": provenance(item.path, full)}
    if item.projection is not None:
        panel["trajectory"] = trajectory_data(item.projection)
    return panel


def metric_data(surface: Surface, metric: str, projection: Projection | None) -> dict:
    """A metric's values (rows of ``Z[iy, ix]``, ``None`` where not a finished finite number),
    the flat indices of its diverged points, and the trajectory's height on it."""
    values = metric_values(surface, metric)
    data = {"values": [[_number(v) for v in row] for row in values],
            "diverged": np.flatnonzero(diverged_mask(surface, metric).ravel()).tolist()}
    if projection is not None:
        heights = sample_bilinear(surface.x, surface.y, values, projection.xcoord, projection.ycoord)
        data["trajectory"] = [_number(v) for v in heights]
    return data


def trajectory_data(projection: Projection) -> dict:
    """The projected path: coordinates, epochs, and which checkpoints had a learning-rate drop."""
    return {"x": projection.xcoord.tolist(), "y": projection.ycoord.tolist(),
            "epochs": projection.epochs.tolist(), "drops": projection.drop_indices().tolist()}


def shared_scale(metric: str, panels: list[dict]) -> dict:
    """One colour range for ``metric`` over every panel: linear bounds, the smallest positive
    value (for a log height), the default height, and whether colours diverge from zero."""
    values = np.array([v for p in panels if metric in p["metrics"]
                       for row in p["metrics"][metric]["values"] for v in row if v is not None],
                      dtype=np.float64)
    if not len(values):
        return {"lo": 0.0, "hi": 1.0, "positive_lo": None, "log": False, "signed": False}
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:  # a flat surface still needs a range to colour
        lo, hi = lo - 0.5, hi + 0.5
    positive = values[values > 0]
    positive_lo = float(positive.min()) if len(positive) == len(values) else None
    log = bool(is_loss(metric) and positive_lo is not None and hi / positive_lo >= AUTO_LOG_RATIO)
    return {"lo": lo, "hi": hi, "positive_lo": positive_lo, "log": log,
            "signed": metric in SIGNED_METRICS and lo < 0 < hi}


def summary_rows(path: str, surface: Surface) -> dict:
    """The summary command's numbers per split's loss (``{"train_loss": [[header, cell], ...]}``)."""
    rows = {}
    for split in splits_of(surface):
        metric = f"{split}_loss"
        try:
            row, notes = summarize(path, surface, metric, DEFAULT_LEVEL)
        except LandscapeError as exc:
            rows[metric] = {"rows": [], "notes": [str(exc)]}
            continue
        columns = [c for c in present(columns_for(splits_of(surface)), [row]) if c.name not in SUMMARY_HIDDEN]
        rows[metric] = {"rows": [[header(c), cell(row.get(c.name))] for c in columns], "notes": notes}
    return rows


def provenance(path: str, surface: Surface) -> list[list[str]]:
    """What the file says about where it came from, as (label, text) rows."""
    attrs = surface.attrs
    config = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    identity = attrs.get("identity") if isinstance(attrs.get("identity"), dict) else {}
    versions = attrs.get("versions") if isinstance(attrs.get("versions"), dict) else {}
    last_run = attrs.get("last_run") if isinstance(attrs.get("last_run"), dict) else {}
    rows = [("file", os.path.basename(path)), ("model", config.get("model")),
            ("checkpoint", config.get("model_file")), ("checkpoint sha256", identity.get("model_file_sha256")),
            ("second model", config.get("model_file2") or None), ("third model", config.get("model_file3") or None),
            ("grid", f"x {_axis_text(surface.x)}, y {_axis_text(surface.y)}"),
            ("directions", details(surface)), ("direction file", surface.dir_file),
            ("dataset", _dataset_text(identity)), ("precision", attrs.get("precision")),
            ("ranks", attrs.get("ranks")), ("host", attrs.get("host")),
            ("command", attrs.get("command_line")),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or None),
            ("last run", _last_run_text(last_run))]
    return [[label, str(text)] for label, text in rows if text not in (None, "")]


def render_page(data: dict) -> str:
    """The HTML page: plotly.js, the data and the controller inlined in one file."""
    from plotly.offline import get_plotlyjs

    template = _resource("web_page.html")
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    parts = {"TITLE": html.escape(data["title"]), "PLOTLY_JS": get_plotlyjs(),
             "DATA": payload, "SCRIPT": _resource("web_page.js")}
    return PLACEHOLDER.sub(lambda m: parts[m[1]], template)  # one pass: inlined text is never read as a key


def write_page(path: str, data: dict) -> str:
    """Write the page for ``data`` to ``path`` (replaced whole, never half written); returns ``path``."""
    require_folder(path, f"--out {path}")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(render_page(data))
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise LandscapeError(f"cannot write {path} ({exc.strerror or exc})") from None
    return path


def _resource(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _number(value: float) -> float | None:
    """A finite value rounded to 7 significant digits (the page shows 6), else None (a gap)."""
    return float(f"{value:.7g}") if math.isfinite(value) else None


def _axis_text(axis: np.ndarray) -> str:
    return f"{axis[0]:g}:{axis[-1]:g}:{len(axis)}"


def _dataset_text(identity: dict) -> str | None:
    if not identity.get("dataset"):
        return None
    sizes = identity.get("dataset_size") or {}
    counted = ", ".join(f"{split} {n} samples" for split, n in sizes.items())
    return f"{identity['dataset']} ({counted})" if counted else str(identity["dataset"])


def _last_run_text(last_run: dict) -> str | None:
    if not last_run.get("points"):
        return None
    return (f"{last_run['points']} points in {last_run.get('wall_seconds', float('nan')):.1f} s "
            f"on {last_run.get('ranks', '?')} ranks ({last_run.get('device', '?')}), "
            f"finished {last_run.get('finished', '?')}")
