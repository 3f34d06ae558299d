"""Queries back to a centre: its open issues of a run, as an XLSX and a CSV a data manager sends.

One row per issue (dq.issue), sorted by patient pseudonym, form and line, with what is wrong and
what is expected, and a blank column for the centre's answer. Only pseudonymous keys leave.

Cells carry text that came from exports, so anything a spreadsheet would run as a formula (text
starting with `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`, and XLSX cells are
written as strings. The CSV is UTF-8 with a BOM, which Excel needs to guess the encoding.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from etl import fsio
from etl.quality.report import RunChoice, choose_run

log = logging.getLogger(__name__)

# (header, XLSX column width)
COLUMNS: tuple[tuple[str, int], ...] = (
    ("patient pseudonym", 26), ("source", 13), ("form", 12), ("line", 8), ("table", 16), ("field", 20),
    ("value", 20), ("rule id", 26), ("severity", 10), ("what is wrong", 60), ("what is expected", 36),
    ("centre answer", 40))
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")

# Issues of records with no centre cannot be sent to one: they are in the report only.
_ISSUES = """
SELECT i.patient_pseudonym, i.source_id, i.record_set, i.line, i.table_name, i.field, i.value, i.rule_id,
       i.severity, c.description, i.message, c.expected
FROM dq.issue i LEFT JOIN dq.check c USING (rule_id)
WHERE i.run_id = ? AND i.centre_id = ?
ORDER BY i.patient_pseudonym NULLS LAST, i.record_set NULLS LAST, i.line NULLS LAST, i.rule_id, i.field
"""


class UnknownCentre(ValueError):
    """The centre is not one the run judged; the message lists those with open issues."""


def spreadsheet_text(value: object) -> str:
    """Text a spreadsheet shows as it is and never evaluates: a leading `'` before formula starts."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _what_is_wrong(description: str | None, message: str | None) -> str:
    parts = [p for p in (description, message) if p]
    return " — ".join(dict.fromkeys(parts))  # the message may repeat the description


def _open_issue_counts(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> dict[str, int]:
    """Every centre the run judged or found issues at, with its number of open issues (0 included)."""
    return dict(con.execute("""
        WITH centres AS (
            SELECT DISTINCT centre_id FROM dq.check_result WHERE run_id = $1 AND centre_id IS NOT NULL
            UNION SELECT DISTINCT centre_id FROM dq.issue WHERE run_id = $1 AND centre_id IS NOT NULL
        )
        SELECT c.centre_id, count(i.centre_id) FROM centres c LEFT JOIN dq.issue i
          ON i.centre_id = c.centre_id AND i.run_id = $1
        GROUP BY 1 ORDER BY 1""", [choice.findings_run_id]).fetchall())


def open_issues_by_centre(warehouse: Path, run_id: str | None = None) -> dict[str, int]:
    """Centre -> number of open issues in the run (default: the latest), for every centre it judged."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return _open_issue_counts(con, choose_run(con, run_id))
    finally:
        con.close()


def _query_rows(con: duckdb.DuckDBPyConnection, choice: RunChoice, centre_id: str) -> list[list[Any]]:
    rows = []
    for (pseudonym, source_id, record_set, line, table_name, field, value, rule_id, severity, description,
         message, expected) in con.execute(_ISSUES, [choice.findings_run_id, centre_id]).fetchall():
        rows.append([pseudonym, source_id, record_set, line, table_name, field, value, rule_id, severity,
                     _what_is_wrong(description, message), expected, None])
    return rows


def _write_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow([header for header, _ in COLUMNS])
        writer.writerows([[v if isinstance(v, int) else spreadsheet_text(v) for v in row] for row in rows])


def _write_xlsx(path: Path, rows: Sequence[Sequence[Any]], centre_id: str) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = "queries"
    for column, (header, width) in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=1, column=column, value=header)
        cell.font = Font(bold=True)
        sheet.column_dimensions[get_column_letter(column)].width = width
    for row_number, row in enumerate(rows, start=2):
        for column, value in enumerate(row, start=1):
            if value is None:
                continue
            if isinstance(value, int):  # the line number: a number, to sort on
                sheet.cell(row=row_number, column=column, value=value)
                continue
            # Control characters are not allowed in XLSX XML; a stray one must not lose the whole list.
            text = ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", spreadsheet_text(value))
            cell = sheet.cell(row=row_number, column=column, value=text)
            cell.data_type = "s"  # a string, whatever it looks like: never a formula
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(rows) + 1}"
    book.properties.title = f"Data queries for centre {centre_id}"
    book.save(path)


def write_centre_queries(warehouse: Path, out_dir: Path, centre_id: str,
                         run_id: str | None = None) -> tuple[Path, Path]:
    """Write <out_dir>/queries_<centre>_<run>.xlsx and .csv with the centre's open issues of the run
    (default: the latest); return (xlsx, csv). A centre with no open issue gets the header only."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        choice = choose_run(con, run_id)
        counts = _open_issue_counts(con, choice)
        if centre_id not in counts:
            with_issues = [f"{c} ({n})" for c, n in counts.items() if n]
            raise UnknownCentre(f"centre {centre_id!r} is not a centre of run {choice.run_id}; centres with open "
                                f"issues: {', '.join(with_issues) or 'none'}")
        rows = _query_rows(con, choice, centre_id)
    finally:
        con.close()
    fsio.private_folder(out_dir)
    stem = _UNSAFE_IN_FILE_NAME.sub("_", f"queries_{centre_id}_{choice.run_id}")
    xlsx, csv_path = out_dir / f"{stem}.xlsx", out_dir / f"{stem}.csv"
    with fsio.written_atomically(xlsx) as partial:  # lists hold pseudonyms and values: owner-only
        _write_xlsx(partial, rows, centre_id)
    with fsio.written_atomically(csv_path) as partial:
        _write_csv(partial, rows)
    if rows:
        log.info("%d open issues of centre %s in run %s: %s", len(rows), centre_id, choice.findings_run_id, xlsx)
    else:
        log.info("centre %s has no open issue in run %s: %s holds the header only", centre_id,
                 choice.findings_run_id, xlsx)
    return xlsx, csv_path
