"""Rows of numbers as text: an aligned table, Markdown, CSV and JSON, with units in the headers.

A column that no row has a value for is left out; an ``Extent`` is written
``>0.98`` (beyond the grid) or ``?`` (unknown) in tables, and as a value with a
``<name>_status`` beside it in CSV and JSON, so machines need not parse ``>``.
"""

from __future__ import annotations

import csv
import io
import json
import math

from . import Extent
from .report import Column

EMPTY = "–"


def present(columns: list[Column], rows: list[dict]) -> list[Column]:
    """The columns at least one row has a value for."""
    return [c for c in columns if any(row.get(c.name) is not None for row in rows)]


def header(column: Column) -> str:
    """``radius_x [α]``: the name and, where it has one, the unit."""
    return f"{column.name} [{column.unit}]" if column.unit else column.name


def cell(value) -> str:
    """A value as a table shows it: 4 significant digits, ``–`` when absent."""
    if value is None:
        return EMPTY
    if isinstance(value, Extent):
        return value.text(4)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def text_table(columns: list[Column], rows: list[dict]) -> str:
    """Columns aligned with spaces, one line per row, for a terminal."""
    grid = [[header(c) for c in columns]] + [[cell(row.get(c.name)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip() for line in grid)


def markdown_table(columns: list[Column], rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c.name)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(columns: list[Column], rows: list[dict]) -> str:
    """CSV whose header holds the names (units are in docs/summary.md and the JSON)."""
    names = []
    for c in columns:
        names += [c.name, f"{c.name}_status"] if c.extent else [c.name]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        values = []
        for c in columns:
            value = row.get(c.name)
            if c.extent:
                values += ["", ""] if value is None else [_plain(value.value), value.status]
            else:
                values.append("" if value is None else _plain(value))
        writer.writerow(values)
    return out.getvalue()


def json_text(columns: list[Column], rows: list[dict], sets: list[dict],
              set_columns: list[Column]) -> str:
    """Everything as JSON: the columns with units and meanings, the rows, the sets with their curves."""
    def encode(value):
        if isinstance(value, Extent):
            return {"value": encode(value.value), "status": value.status}
        if isinstance(value, float):
            return None if math.isnan(value) else ("inf" if math.isinf(value) else value)
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    document = {
        "columns": [{"name": c.name, "unit": c.unit, "meaning": c.meaning} for c in columns],
        "rows": [{c.name: encode(row.get(c.name)) for c in columns} for row in rows],
        "set_columns": [{"name": c.name, "unit": c.unit, "meaning": c.meaning} for c in set_columns],
        "sets": [{k: encode(v) for k, v in s.items()} for s in sets],
    }
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False)


def _plain(value) -> str:
    return "" if isinstance(value, float) and math.isnan(value) else str(value)
