"""Queries back to a centre: its open issues of a run as XLSX and CSV a data manager can send.

Cells are text that came from exports, so anything a spreadsheet would run as a formula
(`=`, `+`, `-`, `@`, tab, carriage return at the start) is neutralised with a leading quote.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
from openpyxl import Workbook
from openpyxl.cell.cell import TYPE_STRING
from openpyxl.styles import Font

from etl.quality.report import validated_runs

COLUMNS = ["patient pseudonym", "source", "form", "line", "table", "field", "value", "rule", "severity",
           "what is wrong", "what is expected", "centre answer"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUERY = """
SELECT i.patient_pseudonym, i.source_id, i.record_set, i.line, i.table_name, i.field, i.value, i.rule_id,
       i.severity, c.description || coalesce(' (' || i.message || ')', ''), c.expected, ''
FROM dq.issue i LEFT JOIN dq.check c USING (rule_id)
WHERE i.run_id = ? AND i.centre_id = ?
ORDER BY i.patient_pseudonym, i.record_set, i.line, i.rule_id
"""


class UnknownCentre(ValueError):
    """The centre has no issue in the run, and is not a centre the run judged."""


def safe_cell(value: object) -> str:
    """Text a spreadsheet shows as text, never evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def centres_with_issues(warehouse: Path, run_id: str | None = None) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        run_id = run_id or validated_runs(con)[-1]
        return dict(con.execute("SELECT centre_id, count(*) FROM dq.issue WHERE run_id = ? AND centre_id IS NOT NULL "
                                "GROUP BY 1 ORDER BY 1", [run_id]).fetchall())
    finally:
        con.close()


def write_centre_queries(warehouse: Path, out_dir: Path, centre_id: str,
                         run_id: str | None = None) -> tuple[Path, Path]:
    """Write queries_<centre>_<run>.xlsx and .csv; returns both paths."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        runs = validated_runs(con)
        if not runs:
            raise ValueError(f"{warehouse} has no validated run yet")
        run_id = run_id or runs[-1]
        known = {c for (c,) in con.execute("SELECT DISTINCT centre_id FROM dq.check_result WHERE run_id = ? "
                                           "AND centre_id IS NOT NULL", [run_id]).fetchall()}
        if centre_id not in known:
            raise UnknownCentre(f"centre {centre_id!r} is not among the centres of run {run_id}: "
                                f"{', '.join(sorted(known)) or 'none'}")
        rows = con.execute(_QUERY, [run_id, centre_id]).fetchall()
    finally:
        con.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"queries_{centre_id}_{run_id}"
    cells = [[safe_cell(v) for v in row] for row in rows]
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(cells)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "queries"
    sheet.append(COLUMNS)
    for row in cells:
        sheet.append(row)
    for row_cells in sheet.iter_rows(min_row=2):
        for cell in row_cells:
            cell.data_type = TYPE_STRING  # never a formula, whatever the text
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    for column, width in zip("ABCDEFGHIJKL", (26, 12, 14, 7, 18, 18, 18, 30, 9, 60, 40, 30), strict=True):
        sheet.column_dimensions[column].width = width
    book.save(stem.with_suffix(".xlsx"))
    return stem.with_suffix(".xlsx"), stem.with_suffix(".csv")
