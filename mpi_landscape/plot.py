"""``python -m mpi_landscape.plot``: figures of surface files, as PNG and PDF.

    python -m mpi_landscape.plot resnet56_surface.h5
    python -m mpi_landscape.plot resnet56_surface.h5 --vmin 0.1 --vmax 10 --vlevel 0.5   # the reference's
    python -m mpi_landscape.plot a.h5 b.h5 c.h5 --compare --labels "SGD,Adam,SAM"
    python -m mpi_landscape.plot surf.h5 --proj_file proj.h5 --kinds contour
    python -m mpi_landscape.plot surf.h5 --watch 30        # while a run is writing it
    python -m mpi_landscape.plot a.h5 b.h5 --compare --annotate   # key figures in the panel titles
    python -m mpi_landscape.plot seed0_1d.h5 seed1_1d.h5 seed2_1d.h5 --band
    python -m mpi_landscape.plot run*.h5 --compare --cols 4       # the paper's 2×4 grids
    python -m mpi_landscape.plot surf.h5 --metric train_loss,test_loss   # train beside test
    python -m mpi_landscape.plot spectrum.h5 --spectrum          # a hessian run's density, redrawn

A 1D file gives loss and accuracy against α (several files overlaid); a 2D
file gives labelled contour lines, filled contours, a heatmap and a 3D
surface of one metric; ``--proj_file`` adds an optimizer path on the contours
and ``--compare`` puts several 2D surfaces side by side on one colour scale,
in rows of ``--cols``, θ* marked and the test error under each label
(``--annotate``: also the summary command's key figures); several
``--metric`` names of one kind are drawn side by side the same way; ``--band``
draws 1D files of several random directions as their mean ± std.
Levels and colour ranges come from the data unless ``--vmin/--vmax/--vlevel``
fix them; a positive quantity spanning a decade or more (a loss, λmax) gets
log-spaced round levels, so a trained network's basin has contours of its
own, and a signed one (λmin) diverges from white at zero. Each figure file is
written under a temporary name and renamed over the old one (``--watch``
viewers never read a part); docs/figures.md shows every kind. Points where the network
diverged are gaps marked as such. A partial 2D file is drawn as the finest
complete coarse-to-fine lattice it holds; a file with no finished point,
or no finite value to draw, is refused in one line (``--watch`` waits for its
first point instead). Titles are short; the file's
details go into each figure file's metadata. The paths written are printed,
one per line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .cli import add_flag, config_from_files, exit_on_user_error, file_labels, new_parser
from .errors import LandscapeError, require_folder
from .store import Surface, read_projection, read_spectrum, read_surface
from .summary import curve_set
from .views.plot_data import (colour_map, default_prefix, explained_variance, figure_metadata,
                              figure_title, is_loss, key_figures, legend_label, metric_kind, metric_values,
                              panel_name, preview, progress_text, quantity_label, short_name,
                              spans_decades, test_error_text)
from .views.plot_animation import write_animation
from .views.figure_trajectory import figure_trajectory, figure_trajectory_3d
from .views.plot_figures import KINDS, figure_2d, figure_compare
from .views.plot_layout import column_style
from .views.plot_lines import figure_1d, figure_band
from .views.plot_scale import Scale, linear_threshold
from .views.plot_spectrum import density_figure

FORMATS = ("png", "pdf", "svg")
AUTO_LOG_RATIO = 10.0  # a loss whose largest value is this many times its smallest gets log levels
FILE_SUFFIX = {"contour": "2dcontour", "contourf": "2dcontourf", "heat": "2dheat",
               "surface": "3dsurface"}  # the reference plot_2D's names


@dataclass(frozen=True)
class PlotConfig:
    """Which files to draw, what, and where."""

    surf_files: tuple[str, ...] = ()
    metric: str = "train_loss"
    out: str | None = None
    format: str = "png,pdf"
    dpi: int = 300
    kinds: str = ",".join(KINDS)
    log: bool = False
    vmin: float | None = None
    vmax: float | None = None
    vlevel: float | None = None
    proj_file: str | None = None
    dir_file: str | None = None
    compare: bool = False
    annotate: bool = False
    band: bool = False
    watch: float = 0.0
    animate: bool = False
    title: str | None = None
    labels: str | None = None
    loss_max: float | None = None
    acc_range: str | None = None
    weights: bool = False
    cols: int | None = None
    spectrum: bool = False

    @property
    def metrics(self) -> list[str]:
        """``--metric``: one name, or several (``train_loss,test_loss``) drawn side by side."""
        names = [m.strip() for m in self.metric.split(",") if m.strip()]
        if not names:
            raise LandscapeError("--metric: give an array name, e.g. train_loss")
        if len({metric_kind(m) for m in names}) > 1:
            raise LandscapeError(f"--metric {self.metric}: metrics drawn side by side share one colour "
                                 "scale; give metrics of one kind, e.g. train_loss,test_loss")
        return names

    @property
    def side_by_side(self) -> bool:
        """Panels on one scale: ``--compare``, or several metrics of one file."""
        return self.compare or len(self.metrics) > 1

    @property
    def label_list(self) -> list[str] | None:
        """``--labels``: one per file, in order."""
        return file_labels(self.labels, self.surf_files)

    @property
    def acc_limits(self) -> tuple[float, float] | None:
        """``--acc_range LO:HI`` as numbers."""
        if self.acc_range is None:
            return None
        try:
            lo, hi = (float(v) for v in self.acc_range.split(":"))
        except ValueError:
            raise LandscapeError(f"--acc_range {self.acc_range!r}: give LO:HI in percent, e.g. 0:100") from None
        if not lo < hi:
            raise LandscapeError(f"--acc_range {self.acc_range!r}: LO must be below HI")
        return lo, hi

    @property
    def formats(self) -> list[str]:
        chosen = [f.strip().lower() for f in self.format.split(",") if f.strip()]
        bad = [f for f in chosen if f not in FORMATS]
        if bad or not chosen:
            raise LandscapeError(f"--format {self.format!r}: choose from {', '.join(FORMATS)}")
        return chosen

    @property
    def kind_list(self) -> list[str]:
        chosen = [k.strip() for k in self.kinds.split(",") if k.strip()]
        bad = [k for k in chosen if k not in KINDS]
        if bad or not chosen:
            raise LandscapeError(f"--kinds {self.kinds!r}: choose from {', '.join(KINDS)}")
        return chosen

    def __post_init__(self) -> None:
        if self.dpi < 10:
            raise LandscapeError(f"--dpi {self.dpi}: give dots per inch, e.g. 300")
        _ = self.label_list, self.acc_limits  # bad --labels or --acc_range: refused before any file is read
        if self.annotate and not self.compare:
            raise LandscapeError("--annotate labels the panels of --compare; add --compare")
        if self.cols is not None and (self.cols < 1 or not self.side_by_side):
            raise LandscapeError(f"--cols {self.cols}: panels per row of --compare (or of several "
                                 "--metric names); give a positive number with --compare")
        if self.band and self.labels is not None:
            raise LandscapeError("--labels names each file's curve; --band draws their mean as one: "
                                 "leave out --labels or --band")


def build_parser() -> argparse.ArgumentParser:
    """The plot command's flags (the reference's plot_1D/plot_2D names where they exist)."""
    p = new_parser("mpi_landscape.plot", PlotConfig,
                   "Plot 1D or 2D surface files (complete or still being written) as PNG/PDF.")
    p.add_argument("surf_files", nargs="*", metavar="FILE", default=argparse.SUPPRESS,
                   help="surface files (.h5)")
    add_flag(p, "--surf_file", action="append", dest="extra_files", metavar="FILE",
             default=argparse.SUPPRESS, help="a surface file, as the reference passes it (repeatable)")
    p.add_argument("--metric", "--surf_name", "--surf-name", dest="metric",
                   help="the array to draw in 2D, e.g. train_loss, test_acc; several of one kind "
                        "(train_loss,test_loss) are drawn side by side")
    add_flag(p, "--out", help="path prefix of the figures; None: the surface file without .h5")
    add_flag(p, "--format", help=f"comma-separated formats among {', '.join(FORMATS)}")
    add_flag(p, "--dpi", type=int, help="resolution of PNG files (dots per inch at a column's width)")
    add_flag(p, "--kinds", help=f"2D views to draw, among {', '.join(KINDS)}")
    add_flag(p, "--log", action="store_true",
             help="log scale for the loss (1D axis; 2D colours and levels; log10 height in 3D)")
    add_flag(p, "--vmin", type=float, help="lowest contour level and colour (1D: loss axis bottom); "
             "None: the data's minimum")
    add_flag(p, "--vmax", type=float, help="highest contour level and colour, where the 3D surface is "
             "clipped (1D: loss axis top); None: the data's maximum")
    add_flag(p, "--vlevel", type=float, help="spacing of contour levels from --vmin (with --log in "
             "decades); None: round levels, log-spaced for a loss spanning a decade or more")
    add_flag(p, "--title", help="figure title; None: the model and checkpoint (and progress while partial)")
    add_flag(p, "--labels", help="comma-separated names, one per file: --compare panel titles, 1D legend")
    add_flag(p, "--loss_max", type=float, help="1D: top of the loss axis (as the reference's plot_1D)")
    add_flag(p, "--acc_range", metavar="LO:HI", help="1D: accuracy axis range in percent, e.g. 0:100")
    add_flag(p, "--proj_file", help="projected trajectory (proj_xcoord, proj_ycoord) to draw on the contours")
    add_flag(p, "--dir_file", help="direction file for PCA axis labels; None: the one the surface names")
    add_flag(p, "--compare", action="store_true",
             help="one panel per 2D file side by side, on a shared colour scale")
    add_flag(p, "--annotate", action="store_true",
             help="with --compare: each panel's title carries its key figures (mean basin radius, "
                  "largest curvature eigenvalue, convex share of the basin; see the summary command)")
    add_flag(p, "--band", action="store_true",
             help="1D random-direction files (one per seed): the mean of --metric ± one standard "
                  "deviation instead of one curve per file")
    add_flag(p, "--weights", action="store_true",
             help="the files are checkpoints: histograms of their weights on shared bins (the paper's "
                  "Fig. 3, why filter normalization matters)")
    add_flag(p, "--watch", type=float, metavar="SECONDS",
             help="redraw every SECONDS until every file is complete (0: draw once)")
    # panels, spectra
    add_flag(p, "--cols", type=int, help="with --compare: panels per row (e.g. 4 for the paper's 2×4 "
             "grids); None: at most three across")
    add_flag(p, "--spectrum", action="store_true",
             help="the files are Hessian spectrum files (hessian --spectrum_file): draw each one's "
                  "spectral density as <prefix>_density.<format>")
    add_flag(p, "--animate", action="store_true",
             help="the 2D files as the frames of one animation, --out PATH.gif (or .mp4 with ffmpeg), "
                  "on one colour scale and camera; None --out: <first file>_<metric>_evolution.gif")
    return p


def parse_plot_config(argv: list[str]) -> PlotConfig:
    """Parse ``argv``; files come as positional arguments and/or ``--surf_file``."""
    return config_from_files(build_parser(), PlotConfig, argv, ("surf_files", "extra_files"))


def main(argv: list[str] | None = None) -> int:
    """Draw, print the paths written; with ``--watch``, redraw until the files are complete."""
    with exit_on_user_error():
        config = parse_plot_config(sys.argv[1:] if argv is None else argv)
        try:
            wait_for_files(config)
        except KeyboardInterrupt:
            return 130
        paths, fraction = draw(config)
        print("\n".join(paths), flush=True)
        try:
            while config.watch > 0 and fraction < 1:
                time.sleep(config.watch)
                paths, fraction = draw(config)
                print(f"redrawn: {fraction:.0%} of the least finished file done", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
    return 0


def wait_for_files(config: PlotConfig) -> None:
    """With ``--watch``, wait (checking every SECONDS) until every surface file exists and holds a
    finished point: a run started a moment ago creates its file only once its ranks are set up,
    and its first results follow."""
    if config.watch <= 0:
        return
    missing = [p for p in config.surf_files if not os.path.isfile(p)]
    if missing:
        print(f"waiting for {', '.join(missing)} to appear", file=sys.stderr, flush=True)
        while any(not os.path.isfile(p) for p in config.surf_files):
            time.sleep(config.watch)
    empty = [p for p in config.surf_files if not read_surface(p).done.any()]
    if empty:
        print(f"waiting for the first finished point of {', '.join(empty)}", file=sys.stderr, flush=True)
        while any(not read_surface(p).done.any() for p in empty):
            time.sleep(config.watch)


def draw(config: PlotConfig) -> tuple[list[str], float]:
    """Draw every figure ``config`` asks for; returns the paths written and the lowest fraction done."""
    if config.weights:
        return _draw_weights(config), 1.0
    if config.spectrum:
        with column_style():
            return [p for index, path in enumerate(config.surf_files)
                    for p in save(density_figure(read_spectrum(path)), _prefix(config, index, len(config.surf_files))
                                  + "_density", config.formats, config.dpi, {"Title": path})], 1.0
    read = [(path, read_surface(path)) for path in config.surf_files]
    for path, surface in read:
        drawn = [config.metric] if surface.y is not None or config.band else \
            [m for m in surface.metrics if is_loss(m)]
        _check_something_to_draw(path, surface, drawn)
    fraction = min(s.fraction_done for _, s in read)
    loaded = [(path, preview(s)) for path, s in read]
    labels = config.label_list
    if config.animate:  # the files as frames of one animation (views/plot_animation.py)
        frames = list(zip([s for _, s in loaded], labels or [legend_label(s, p) for p, s in loaded]))
        out = config.out or f"{default_prefix(config.surf_files[0])}_{config.metric}_evolution.gif"
        return [write_animation(frames, config.metric, resolve_scale(config, [s for s, _ in frames]), out)], fraction
    if config.band and loaded[0][1].y is not None:
        raise LandscapeError("--band draws 1D files of several random directions; these are 2D")
    if len({s.y is None for _, s in loaded}) > 1:
        raise LandscapeError("1D and 2D surface files cannot be plotted together; plot them separately")
    for path, surface in loaded:
        if surface.y is not None and min(surface.shape) < 2:
            raise LandscapeError(f"{path}: a 2D surface needs at least 2 points on each axis to draw "
                                 f"contours (its grid is {surface.shape[1]}x{surface.shape[0]})")
    formats = config.formats
    with column_style():
        if loaded[0][1].y is None:
            paths = _draw_1d(config, loaded, labels, formats)
        elif config.side_by_side:
            # the summary's numbers from every finished point, not only those of a preview's lattice
            figures = [key_figures(path, s, config.metrics[0]) for path, s in read] if config.annotate else None
            paths = _draw_compare(config, loaded, labels, figures, formats)
        else:
            paths = [p for index, item in enumerate(loaded)
                     for p in _draw_2d(config, item, _prefix(config, index, len(loaded)), formats,
                                       labels[index] if labels else None)]
    return paths, fraction


def _check_something_to_draw(path: str, surface: Surface, metrics: list[str]) -> None:
    """Refuse a file whose figures would be blank: no finished point, or no finite value of the
    ``metrics`` drawn (every finished point diverged)."""
    done = int(surface.done.sum())
    if not done:
        raise LandscapeError(f"{path} has no finished point yet (0 of {surface.done.size}): nothing to "
                             f"draw; plot it once its run has finished points (--watch waits for them)")
    present = [m for m in metrics if m in surface.metrics]  # a missing --metric is named where it is drawn
    if present and not any(np.isfinite(metric_values(surface, m)).any() for m in present):
        raise LandscapeError(f"{path} has no finite {' or '.join(present)} at any of its {done} finished "
                             f"points (the network diverged at every one): nothing to draw")


def resolve_scale(config: PlotConfig, surfaces: list[Surface]) -> Scale:
    """Contour levels and colour range: the flags where given (exactly), else from the data.

    The range is the finished, finite values' own; a loss whose values span a
    decade or more gets a log scale with round 1-2-5 levels from just above
    its minimum, unless ``--vlevel`` asks for the reference's evenly spaced ones.
    """
    metrics = config.metrics
    lo, hi = _data_range(metrics, surfaces, positive=config.log)
    auto_log = (spans_decades(metrics[0]) and config.vlevel is None and lo > 0 and hi / lo >= AUTO_LOG_RATIO
                and (config.vmin is None or config.vmin > 0))
    cmap, centre = colour_map(metrics[0])
    vmin = config.vmin if config.vmin is not None else lo
    vmax = config.vmax if config.vmax is not None else hi
    wide_signed = centre is not None and config.vlevel is None and not config.log
    linthresh = linear_threshold(vmin - centre, vmax - centre) if wide_signed and centre == 0 else None
    return Scale(vmin, vmax, config.vlevel, config.log or auto_log, cmap, centre, linthresh)


def _draw_1d(config: PlotConfig, loaded: list[tuple[str, Surface]], labels: list[str] | None,
             formats: list[str]) -> list[str]:
    if config.proj_file:
        raise LandscapeError("--proj_file needs a 2D surface: a trajectory is drawn on contours")
    if len(config.metrics) > 1:
        raise LandscapeError("a 1D figure draws every split's loss and accuracy; give one --metric (or none)")
    if config.band:
        return _draw_band(config, loaded, formats)
    named = labels
    labels = labels or _distinct_labels([legend_label(s, path) for path, s in loaded], loaded)
    curves = [(s, label) for (_, s), label in zip(loaded, labels)]
    if config.title is not None:
        title = config.title
    elif len(loaded) == 1:
        title = named[0] if named else figure_title(loaded[0][1], loaded[0][0])
    else:
        title = ""
    fig = figure_1d(curves, title, log=config.log, loss_range=_loss_range(config),
                    acc_range=config.acc_limits)
    stem = _prefix(config, 0, 1) + ("_1d_loss_acc" if len(loaded) == 1 else "_1d_compare")
    return save(fig, stem + ("_log" if config.log else ""), formats, config.dpi,
                figure_metadata(loaded[0][1], loaded[0][0]))


def _draw_band(config: PlotConfig, loaded: list[tuple[str, Surface]], formats: list[str]) -> list[str]:
    """One figure of the mean ± std of ``--metric`` over 1D files of several random directions."""
    path, first = loaded[0]
    if any(s.x.shape != first.x.shape or not np.allclose(s.x, first.x) for _, s in loaded):
        raise LandscapeError("--band needs 1D files on the same α grid")
    band = curve_set(np.stack([metric_values(s, config.metric) for _, s in loaded]))
    title = config.title if config.title is not None else \
        f"{short_name(first, path)}, {len(loaded)} random directions"
    value_range = _loss_range(config) if is_loss(config.metric) else config.acc_limits
    fig = figure_band(first, band, len(loaded), config.metric, title, log=config.log,
                      value_range=value_range)
    return save(fig, f"{_prefix(config, 0, 1)}_{config.metric}_1d_band{'_log' if config.log else ''}",
                formats, config.dpi, _joint_metadata(title, loaded))


def _draw_2d(config: PlotConfig, item: tuple[str, Surface], prefix: str,
             formats: list[str], label: str | None = None) -> list[str]:
    """The 2D views of one file; ``label`` (its ``--labels`` entry) titles them, with the progress
    while partial, unless ``--title`` does."""
    path, surface = item
    scale = resolve_scale(config, [surface])
    variance = explained_variance(path, surface, config.dir_file)
    if config.title is not None:
        title = config.title
    elif label is not None:
        title = ", ".join(filter(None, [label, progress_text(surface)]))
    else:
        title = figure_title(surface, path)
    metadata = figure_metadata(surface, path)
    stem = f"{prefix}_{config.metric}"
    log = "_log" if config.log else ""
    paths = []
    for kind in config.kind_list:
        fig = figure_2d(surface, config.metric, kind, scale, title, variance, log_height=config.log)
        paths += save(fig, f"{stem}_{FILE_SUFFIX[kind]}{log}", formats, config.dpi, metadata)
    if config.proj_file:
        projection = read_projection(config.proj_file)
        fig = figure_trajectory(surface, config.metric, projection, scale, title, variance)
        paths += save(fig, f"{stem}_2dcontour_proj{log}", formats, config.dpi, metadata)
        if "surface" in config.kind_list:  # the path on the 3D surface too
            fig = figure_trajectory_3d(surface, config.metric, projection, scale, title, variance,
                                       log_height=config.log)
            paths += save(fig, f"{stem}_3dsurface_proj{log}", formats, config.dpi, metadata)
    return paths


def _draw_weights(config: PlotConfig) -> list[str]:
    """``--weights``: the checkpoints' weight histograms in one figure, named after the first."""
    from .networks import checkpoint_weights  # loads torch: only for checkpoints
    from .views.figure_weights import figure_weights

    paths = config.surf_files
    labels = config.label_list or [os.path.basename(p) for p in paths]
    with column_style():
        fig = figure_weights([(label, checkpoint_weights(p)) for label, p in zip(labels, paths)],
                             config.title or "")
        stem = config.out or f"{os.path.splitext(paths[0])[0]}_weights"
        return save(fig, stem, config.formats, config.dpi, {"Title": config.title or ", ".join(labels)})


def _draw_compare(config: PlotConfig, loaded: list[tuple[str, Surface]], labels: list[str] | None,
                  figures: list[str] | None, formats: list[str]) -> list[str]:
    """The 2D files side by side, each ``--metric`` of a file beside the others, on one colour scale.

    A panel's title is its file's label (``--labels``, else its model and
    checkpoint), the metric when several are drawn, and the test error at θ*
    when the file has a test accuracy; ``figures`` (``--annotate``: a line of
    key figures per file) go under it.
    """
    if config.proj_file:
        raise LandscapeError("--proj_file draws a path on one surface; leave out --compare")
    metrics = config.metrics
    named = labels or (None if len(loaded) == 1 and len(metrics) > 1 else
                       _distinct_labels([legend_label(s, path) for path, s in loaded], loaded))
    panels, variances, panel_metrics = [], [], []
    for index, (path, surface) in enumerate(loaded):
        error = test_error_text(surface) if len(metrics) == 1 else None
        extra = figures[index] if figures is not None else None
        for metric in metrics:
            words = [named[index] if named else None, panel_name(metric) if len(metrics) > 1 else None]
            heading = ", ".join(w for w in words if w)
            panels.append((surface, "\n".join(t for t in (heading, error, extra) if t)))
            variances.append(explained_variance(path, surface, config.dir_file))
            panel_metrics.append(metric)
    surfaces = [s for _, s in loaded]
    fig = figure_compare(panels, panel_metrics, resolve_scale(config, surfaces), variances,
                         title=config.title, cols=config.cols if config.cols else
                         (len(metrics) if len(metrics) > 1 else None),
                         label=quantity_label(metrics, surfaces[0]))
    metadata = _joint_metadata(config.title or ", ".join(named or metrics), loaded)
    name = "_".join(metrics)
    return save(fig, f"{_prefix(config, 0, 1)}_{name}_2dcompare{'_log' if config.log else ''}",
                formats, config.dpi, metadata)


def _distinct_labels(labels: list[str], loaded: list[tuple[str, Surface]]) -> list[str]:
    """The files' labels, each with its file name where two would read the same."""
    if len(set(labels)) == len(labels):
        return labels
    return [f"{label} [{os.path.basename(path)}]" for label, (path, _) in zip(labels, loaded)]


def _joint_metadata(title: str, loaded: list[tuple[str, Surface]]) -> dict[str, str]:
    """Metadata of a figure drawn from several files: its title, and every file's description."""
    return {"Title": title, "Subject": "; ".join(figure_metadata(s, path)["Subject"] for path, s in loaded)}


def _loss_range(config: PlotConfig) -> tuple[float | None, float | None]:
    """The 1D loss axis: ``--vmin`` to ``--loss_max`` (the reference's name) or ``--vmax``."""
    return config.vmin, config.loss_max if config.loss_max is not None else config.vmax


def save(fig: Figure, stem: str, formats: list[str], dpi: int,
         metadata: dict[str, str] | None = None) -> list[str]:
    """Write ``fig`` as ``stem.<format>`` for each format, ``metadata`` (Title, Subject) inside
    each file; returns the paths.

    Each file is written under a temporary name in its folder and renamed over
    the old one, so a viewer that reloads it (``--watch``) never reads a part.
    """
    require_folder(stem, f"cannot write {stem}.*")
    paths = [f"{stem}.{fmt}" for fmt in formats]
    for fmt, path in zip(formats, paths):
        folder, name = os.path.split(path)
        temporary = os.path.join(folder, f".{name}.{os.getpid()}.part")
        try:
            fig.savefig(temporary, format=fmt, dpi=dpi, metadata=_metadata_for(fmt, metadata or {}))
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return paths


def _metadata_for(fmt: str, metadata: dict[str, str]) -> dict[str, str]:
    """PDF keeps a Subject; PNG and SVG call it a Description."""
    if fmt == "pdf":
        return dict(metadata)
    return {("Description" if k == "Subject" else k): v for k, v in metadata.items()}


def _prefix(config: PlotConfig, index: int, count: int) -> str:
    """The figure path prefix of file ``index`` of ``count`` drawn separately."""
    path = config.surf_files[index]
    if config.out is None:
        return default_prefix(path)
    if count == 1:
        return config.out
    return f"{config.out}_{os.path.basename(default_prefix(path))}"


def _data_range(metrics: list[str], surfaces: list[Surface], positive: bool) -> tuple[float, float]:
    """The finished, finite (and, for a log scale, positive) values' range over all surfaces and metrics."""
    values = np.concatenate([metric_values(s, m).ravel() for s in surfaces for m in metrics])
    values = values[np.isfinite(values) & ((values > 0) if positive else True)]
    if not len(values):
        return (1.0, 10.0) if positive else (0.0, 1.0)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:  # a flat surface still needs a range to colour
        return (lo / 2, lo * 2) if positive else (lo - 0.5, hi + 0.5)
    return lo, hi


if __name__ == "__main__":
    sys.exit(main())
