"""``python -m mpi_landscape.summary``: the landscape in numbers, one row per surface file.

    python -m mpi_landscape.summary small_batch.h5 large_batch.h5 --level 0.1
    python -m mpi_landscape.summary *.h5 --markdown --json summary.json --csv summary.csv
    python -m mpi_landscape.summary line_seed*.h5        # a set of 1D random directions

For each file (1D or 2D, ours or the reference's): the centre's loss and
accuracy per split, the grid's minimum and where it is, basin radii and area
at the ``--level`` contour, the curvature at the centre, the convex share and
the local minima, and for interpolations the barrier and the train-test gaps.
Two or more 1D random-direction files of one checkpoint and grid also get a
set row: the spread of their curves and the distribution of their basin
radii. docs/summary.md explains every column and its unit.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from ..cli import add_flag, config_from, exit_on_user_error, new_parser
from ..errors import LandscapeError, require_folder
from ..store import read_surface
from . import DEFAULT_LEVEL
from .report import SET_COLUMNS, Column, columns_for, in_units, splits_of, summarize, summarize_sets
from .tables import csv_text, json_text, markdown_table, present, text_table


@dataclass(frozen=True)
class SummaryConfig:
    """Which files to summarize, on which metric and level, and where to write."""

    surf_files: tuple[str, ...] = ()
    metric: str = "train_loss"
    level: float = DEFAULT_LEVEL
    interpolation: bool = False
    markdown: bool = False
    columns: str | None = None
    json: str | None = None
    csv: str | None = None

    def __post_init__(self) -> None:
        if not self.level > 0:
            raise LandscapeError(f"--level {self.level}: give a positive loss increase, e.g. 0.1")


def build_parser() -> argparse.ArgumentParser:
    """The summary command's flags."""
    p = new_parser("mpi_landscape.summary", SummaryConfig,
                   "Basin size, curvature, convexity and barriers of surface files, one row per file.")
    p.add_argument("surf_files", nargs="+", metavar="FILE", default=argparse.SUPPRESS,
                   help="surface files (.h5), 1D or 2D")
    p.add_argument("--metric", "--surf_name", "--surf-name", dest="metric",
                   help="the array the basin, curvature and barrier figures are computed on")
    add_flag(p, "--level", type=float, help="ε: the basin is where the metric ≤ its centre value + ε "
                                           "(0.1: the paper's 0.1-level contour)")
    add_flag(p, "--interpolation", action="store_true",
             help="treat 1D files as interpolations between two models (α = 0 and 1) even when "
                  "they do not record --model_file2 (reference files)")
    add_flag(p, "--markdown", action="store_true", help="print Markdown tables instead of aligned text")
    add_flag(p, "--columns", metavar="NAMES",
             help="comma-separated columns to print, e.g. file,radius_mean,eig_max (None: all that "
                  "have values; --json and --csv always hold all)")
    add_flag(p, "--json", metavar="PATH", help="also write everything, curves of sets included, as JSON")
    add_flag(p, "--csv", metavar="PATH", help="also write the rows as CSV")
    return p


def main(argv: list[str] | None = None) -> int:
    """Print the tables, write the files asked for; a user error is one line and exit status 2."""
    with exit_on_user_error():
        namespace = vars(build_parser().parse_args(sys.argv[1:] if argv is None else argv))
        config = config_from(SummaryConfig, {**namespace, "surf_files": tuple(namespace["surf_files"])})
        print(run(config))
    return 0


def run(config: SummaryConfig) -> str:
    """Summarize every file, write ``--json``/``--csv``, and return what to print."""
    for path in (config.json, config.csv):
        if path:
            require_folder(path, f"cannot write {path}")
    items, splits = [], []
    for path in config.surf_files:
        surface = read_surface(path)
        row, notes = summarize(path, surface, config.metric, config.level, config.interpolation)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        items.append((path, surface, row))
        splits += [s for s in splits_of(surface) if s not in splits]
    rows = [row for _, _, row in items]
    sets = summarize_sets(items, config.metric)
    columns = present(columns_for(splits, config.metric), rows)
    set_columns = present(in_units(SET_COLUMNS, config.metric), sets)
    if config.json:
        _write(config.json, json_text(columns, rows, sets, set_columns))
    if config.csv:
        _write(config.csv, csv_text(columns, rows))
    table = markdown_table if config.markdown else text_table
    text = table(chosen(columns, config.columns), rows)
    if sets:
        text += f"\n\nsets of 1D random directions ({config.metric}):\n\n" + table(set_columns, sets)
    return text


def chosen(columns: list[Column], names: str | None) -> list[Column]:
    """The columns named in ``--columns``, in that order; all of them when None."""
    if names is None:
        return columns
    by_name = {c.name: c for c in columns}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        raise LandscapeError(f"--columns: no column {', '.join(unknown) or '(none given)'} for these "
                             f"files; they have: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
