"""Queries back to a centre: its open issues of a run, as an XLSX and a CSV a data manager sends.

One row per issue (dq.issue), sorted by patient pseudonym, form and line, with what is wrong and
what is expected, a `response` column (a data-validation list in the XLSX: corrected, confirmed,
cannot_determine) and a `comment` column for the centre's answer. Only pseudonymous keys leave.

A centre is a source's centre: each registry or trial numbers its own centres, so iltb's FR04 and
sacha_fr's FR04 are two hospitals, and a batch holds one source's issues at one centre code. Asked for
a code several sources use, without the source, send_queries refuses and names them.

`rtw queries` records what it sends (send_queries): a batch in meta.query_batch and each row in
meta.query_item. Each row carries two hidden cells, the batch id and a row key: an HMAC under the
pseudonymisation key over the batch, the issue and the cells shown, so that an edited row or a row
of a foreign workbook is refused when the answers come back (etl/quality/responses.py). The key
itself never leaves; the row key reveals nothing of it.

Cells carry text that came from exports, so anything a spreadsheet would run as a formula (text
starting with `=`, `+`, `-`, `@`, tab or carriage return, also after a separator or line break inside
the text, where a `;` locale starts a cell: etl/spreadsheet.py) gets a `'`, and XLSX cells are written
as strings. A text longer than a spreadsheet cell holds (32,767 characters: openpyxl cuts it there when
it writes) is cut before, with a note of its length. Both files hold the same cell text, which the row
key covers. The CSV is UTF-8 with a BOM, which Excel needs to guess the encoding.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from etl import fsio
from etl.config import Home, connect_duckdb
from etl.quality.findings import value_hash
from etl.quality.query_status import queries_as_of, sent_items_sql
from etl.quality.report import RunChoice, choose_run
from etl.spreadsheet import spreadsheet_text
from etl.transform.keyguard import recorded_fingerprint
from etl.transform.pseudonym import PseudonymKey, key_is_configured, load_key

log = logging.getLogger(__name__)


class Response(StrEnum):
    """A centre's answer to a query."""

    CORRECTED = "corrected"  # the export was wrong and is corrected: the finding should go
    CONFIRMED = "confirmed"  # the value is true: the finding is waived while it stays the same
    CANNOT_DETERMINE = "cannot_determine"  # the centre cannot tell: the finding stays open


class Selection(StrEnum):
    """Which of a centre's open issues a batch sends."""

    ALL = "all"
    NEW_ONLY = "new_only"  # not sent to the centre before (with this value)
    REMINDERS = "reminders"  # sent more than N days ago, still present, no answer for the value found now


# (header, XLSX column width). The cells shown are those before `response`; the last two are hidden.
SHOWN: tuple[tuple[str, int], ...] = (
    ("patient pseudonym", 26), ("source", 13), ("form", 12), ("line", 8), ("table", 16), ("field", 20),
    ("value", 20), ("rule id", 26), ("severity", 10), ("what is wrong", 60), ("what is expected", 36))
ANSWER: tuple[tuple[str, int], ...] = (("response", 18), ("comment", 40))
HIDDEN: tuple[tuple[str, int], ...] = (("query batch", 26), ("row key", 66))
COLUMNS: tuple[tuple[str, int], ...] = (*SHOWN, *ANSWER, *HIDDEN)
HEADER: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
DRAFT_BATCH = "draft"  # a workbook written without recording a batch (tests, previews): refused at import
_ROW_KEY_LABEL = "rtw-query-row"  # keeps row keys apart from every pseudonym made with the same key
_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_CELL_CHARACTERS = 32_767  # what an Excel cell holds; openpyxl cuts a longer text there when it writes

# Issues of records with no centre cannot be sent to one: they are in the report only.
_ISSUES = """
SELECT i.patient_pseudonym, i.source_id, i.record_set, i.line, i.table_name, i.field, i.value, i.rule_id,
       i.severity, c.description, i.message, c.expected, i.source_record_key
FROM dq.issue i LEFT JOIN dq.check c USING (rule_id)
WHERE i.run_id = ? AND i.source_id = ? AND i.centre_id = ?
ORDER BY i.patient_pseudonym NULLS LAST, i.record_set NULLS LAST, i.line NULLS LAST, i.rule_id, i.field
"""


@dataclass(frozen=True)
class QueryRow:
    """One issue as a workbook row: its identity across runs and the cells shown."""

    rule_id: str
    source_id: str
    source_record_key: str
    field: str | None
    value: str | None
    severity: str
    cells: tuple[Any, ...]  # as in SHOWN: text as written (neutralised), the line as a number

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.rule_id, self.source_id, self.source_record_key, self.field or "")


def cell_text(value: Any) -> str:
    """A cell as compared at import: the XLSX gives the line as a number, the CSV as text."""
    return "" if value is None else str(value)


def row_key(key: PseudonymKey, batch_id: str, identity: Sequence[str], cells: Sequence[Any]) -> str:
    """The hidden key of a workbook row: an HMAC over batch, issue and cells shown (full 256 bits)."""
    message = "\x1f".join([_ROW_KEY_LABEL, batch_id, *identity, json.dumps([cell_text(c) for c in cells])])
    return hmac.new(key.secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, order=True)
class Centre:
    """A centre of a source: its code is the source's own (iltb's FR04 is not sacha_fr's FR04)."""

    source_id: str
    centre_id: str

    def __str__(self) -> str:  # as --centre takes it
        return f"{self.source_id}:{self.centre_id}"


class UnknownCentre(ValueError):
    """The centre is not one the run judged; the message lists those with open issues."""


class AmbiguousCentre(ValueError):
    """Several sources of the run have a centre with the code asked for; the message names them."""


class QueryKeyError(ValueError):
    """No pseudonymisation key, or not the warehouse's: row keys made with it would never verify."""


def warehouse_key(home: Home, key_value: str | None = None) -> PseudonymKey:
    """The key the warehouse was built with (explicit, env or key file), never a new one: load_key would
    create a key file, and workbooks keyed with it could not be imported."""
    if not key_is_configured(home.key_file, key_value):
        raise QueryKeyError(f"no pseudonymisation key: set RTW_PSEUDONYM_KEY or restore {home.key_file}")
    key = load_key(home.key_file, key_value)
    recorded = recorded_fingerprint(home.warehouse)
    if recorded is not None and recorded != key.fingerprint():
        raise QueryKeyError("the pseudonymisation key differs from the one this warehouse was built with; restore "
                            "the key (RTW_PSEUDONYM_KEY or the key file)")
    return key


def _what_is_wrong(description: str | None, message: str | None) -> str:
    parts = [p for p in (description, message) if p]
    return " — ".join(dict.fromkeys(parts))  # the message may repeat the description


def _open_issue_counts(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> dict[Centre, int]:
    """Every centre the run judged or found issues at, with its number of open issues (0 included)."""
    return {Centre(source_id, centre_id): n for source_id, centre_id, n in con.execute("""
        WITH centres AS (
            SELECT DISTINCT source_id, centre_id FROM dq.check_result WHERE run_id = $1 AND centre_id IS NOT NULL
            UNION SELECT DISTINCT source_id, centre_id FROM dq.issue WHERE run_id = $1 AND centre_id IS NOT NULL
        )
        SELECT c.source_id, c.centre_id, count(i.centre_id) FROM centres c LEFT JOIN dq.issue i
          ON i.source_id = c.source_id AND i.centre_id = c.centre_id AND i.run_id = $1
        GROUP BY 1, 2 ORDER BY 1, 2""", [choice.findings_run_id]).fetchall()}


def open_issues_by_centre(warehouse: Path, run_id: str | None = None) -> dict[Centre, int]:
    """Centre -> number of open issues in the run (default: the latest), for every centre it judged."""
    con = connect_duckdb(warehouse, read_only=True)
    try:
        return _open_issue_counts(con, choose_run(con, run_id))
    finally:
        con.close()


def _written(value: Any) -> Any:
    """A cell as the workbook holds it: the line a number, all else neutralised text (None: empty), cut
    to what a cell holds."""
    if value is None or isinstance(value, int):
        return value
    # Control characters are not allowed in XLSX XML; a stray one must not lose the whole list.
    text = ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", spreadsheet_text(value))
    if len(text) <= _CELL_CHARACTERS:
        return text
    note = f" … [cut: {len(text):,} characters, more than a spreadsheet cell holds]"
    return text[:_CELL_CHARACTERS - len(note)] + note


def _query_rows(con: duckdb.DuckDBPyConnection, choice: RunChoice, centre: Centre) -> list[QueryRow]:
    rows = []
    for (pseudonym, source_id, record_set, line, table_name, field, value, rule_id, severity, description,
         message, expected, record_key) in con.execute(
            _ISSUES, [choice.findings_run_id, centre.source_id, centre.centre_id]).fetchall():
        cells = (pseudonym, source_id, record_set, line, table_name, field, value, rule_id, severity,
                 _what_is_wrong(description, message), expected)
        rows.append(QueryRow(rule_id, source_id, record_key, field, value, severity,
                             tuple(_written(c) for c in cells)))
    return rows


def _sheet_rows(rows: Sequence[QueryRow], batch_id: str, key: PseudonymKey) -> list[list[Any]]:
    return [[*r.cells, None, None, batch_id, row_key(key, batch_id, r.identity, r.cells)] for r in rows]


def _write_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def _write_xlsx(path: Path, rows: Sequence[Sequence[Any]], centre_name: str) -> None:
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
            cell = sheet.cell(row=row_number, column=column, value=value)
            cell.data_type = "s"  # a string, whatever it looks like: never a formula
    visible = len(SHOWN) + len(ANSWER)
    response = get_column_letter(len(SHOWN) + 1)
    choices = DataValidation(type="list", formula1='"' + ",".join(r.value for r in Response) + '"', allow_blank=True,
                             showErrorMessage=True, errorTitle="response",
                             error="Choose corrected, confirmed or cannot_determine")
    sheet.add_data_validation(choices)
    choices.add(f"{response}2:{response}{max(len(rows), 1) + 1}")
    for column in range(visible + 1, len(COLUMNS) + 1):  # batch id and row key: hidden, read back at import
        sheet.column_dimensions[get_column_letter(column)].hidden = True
    sheet.freeze_panes = "A2"
    # Over every column, the hidden ones too: a sort from the filter's buttons moves the rows of its range only,
    # and would part a row from its batch id and row key.
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(rows) + 1}"
    book.properties.title = f"Data queries for centre {centre_name}"
    book.save(path)


def _candidates(counts: Mapping[Centre, int], centre_id: str, source_id: str | None) -> list[Centre]:
    """The run's centres `centre_id` may name: the code in `source_id`, or in any source; `SOURCE:CODE` too."""
    if source_id is not None:
        code = centre_id.removeprefix(f"{source_id}:")
        return [c for c in counts if c == Centre(source_id, code)]
    prefix, colon, code = centre_id.partition(":")
    return [c for c in counts if c.centre_id == centre_id or (colon and c == Centre(prefix, code))]


def find_centre(con: duckdb.DuckDBPyConnection, choice: RunChoice, centre_id: str,
                source_id: str | None = None) -> Centre:
    """The centre of the run that `centre_id` (a code, or `SOURCE:CODE`) and `source_id` name. A code
    several sources use is refused without its source: their centres are different hospitals."""
    counts = _open_issue_counts(con, choice)
    found = _candidates(counts, centre_id, source_id)
    asked = centre_id if source_id is None else f"{source_id}:{centre_id.removeprefix(f'{source_id}:')}"
    if not found:
        with_issues = [f"{c} ({n})" for c, n in counts.items() if n]
        raise UnknownCentre(f"centre {asked!r} is not a centre of run {choice.run_id}; centres with open "
                            f"issues: {', '.join(with_issues) or 'none'}")
    if len(found) > 1:
        each = ", ".join(f"{c.source_id} ({counts[c]} open issues)" for c in found)
        raise AmbiguousCentre(
            f"centre {asked!r} is a centre of {len(found)} sources in run {choice.run_id}, each numbering its own "
            f"centres: {each}; name the one to query with --source, e.g. --source {found[0].source_id}, or as "
            f"--centre {found[0]}")
    return found[0]


def _write_files(out_dir: Path, stem: str, rows: Sequence[QueryRow], centre: Centre, batch_id: str,
                 key: PseudonymKey) -> tuple[Path, Path]:
    fsio.private_folder(out_dir)
    stem = _UNSAFE_IN_FILE_NAME.sub("_", stem)
    xlsx, csv_path = out_dir / f"{stem}.xlsx", out_dir / f"{stem}.csv"
    sheet_rows = _sheet_rows(rows, batch_id, key)
    with fsio.written_atomically(xlsx) as partial:  # lists hold pseudonyms and values: owner-only
        _write_xlsx(partial, sheet_rows, f"{centre.centre_id} of {centre.source_id}")
    with fsio.written_atomically(csv_path) as partial:
        _write_csv(partial, sheet_rows)
    return xlsx, csv_path


def write_centre_queries(warehouse: Path, out_dir: Path, centre_id: str, run_id: str | None = None, *,
                         key: PseudonymKey, batch_id: str = DRAFT_BATCH,
                         source_id: str | None = None) -> tuple[Path, Path]:
    """Write <out_dir>/queries_<source>_<centre>_<run>.xlsx and .csv with the centre's open issues of the
    run (default: the latest); return (xlsx, csv). A centre with no open issue gets the header only.
    Nothing is recorded: answers to such a workbook are refused at import; send_queries records."""
    con = connect_duckdb(warehouse, read_only=True)
    try:
        choice = choose_run(con, run_id)
        centre = find_centre(con, choice, centre_id, source_id)
        rows = _query_rows(con, choice, centre)
    finally:
        con.close()
    stem = f"queries_{centre.source_id}_{centre.centre_id}_{choice.run_id}"
    xlsx, csv_path = _write_files(out_dir, stem, rows, centre, batch_id, key)
    if rows:
        log.info("%d open issues of centre %s in run %s: %s", len(rows), centre, choice.findings_run_id, xlsx)
    else:
        log.info("centre %s has no open issue in run %s: %s holds the header only", centre,
                 choice.findings_run_id, xlsx)
    return xlsx, csv_path


@dataclass(frozen=True)
class SentBatch:
    """A batch of queries recorded in meta.query_batch, and the files written."""

    batch_id: str
    centre: Centre
    run_id: str
    queries: int
    xlsx: Path
    csv: Path


def new_batch_id(centre: Centre, now: datetime) -> str:
    return _UNSAFE_IN_FILE_NAME.sub(
        "_", f"Q{now.strftime('%Y%m%dT%H%M%SZ')}-{centre.source_id}-{centre.centre_id}-{secrets.token_hex(2)}")


def _sent_before(con: duckdb.DuckDBPyConnection, centre: Centre) -> set[tuple[str, str, str, str, str]]:
    """Issues (identity + value hash) already sent to the centre in an earlier batch, as the report and the
    reminders count them (query_status.sent_items_sql): the unanswered rows of an older batch that mixed two
    sources' centres of one code count as sent to neither, so they go again, as new."""
    return {tuple(r) for r in con.execute(  # type: ignore[misc]
        f"SELECT rule_id, source_id, source_record_key, field, value_hash FROM ({sent_items_sql(con)}) "
        "WHERE centre_id = $centre AND source_id = $source",
        {"centre": centre.centre_id, "source": centre.source_id}).fetchall()}


def _due_reminders(con: duckdb.DuckDBPyConnection, findings_run_id: str, centre: Centre, older_than: datetime,
                   now: datetime) -> set[tuple[str, str, str, str]]:
    """Queries first sent to the centre before `older_than` that the run finds open (not answered, or
    answered for a value it no longer finds) or answered `corrected` and still there: as the report counts
    them (etl/quality/query_status.py)."""
    return {(q.rule_id, q.source_id, q.source_record_key, q.field or "")
            for q in queries_as_of(con, findings_run_id, now, (centre.source_id, centre.centre_id))
            if q.first_sent < older_than and (q.is_open or q.is_corrected_still_present)}


def select_rows(con: duckdb.DuckDBPyConnection, choice: RunChoice, rows: Sequence[QueryRow], centre: Centre,
                selection: Selection, older_than_days: int | None, now: datetime) -> list[QueryRow]:
    """The rows a batch of this selection sends, of the centre's open issues `rows` in the run chosen."""
    if selection is Selection.NEW_ONLY:
        before = _sent_before(con, centre)
        return [r for r in rows if (*r.identity, value_hash(r.value)) not in before]
    if selection is Selection.REMINDERS:
        due = _due_reminders(con, choice.findings_run_id, centre, now - timedelta(days=older_than_days or 0), now)
        return [r for r in rows if r.identity in due]
    return list(rows)


def send_queries(home: Home, centre_id: str, key: PseudonymKey, *, source_id: str | None = None,
                 run_id: str | None = None, selection: Selection = Selection.ALL, older_than_days: int | None = None,
                 wait: float = 0.0, now: datetime | None = None) -> SentBatch:
    """Write the queries of a centre (a code, or `SOURCE:CODE`; `source_id` the source whose code it is,
    needed when several sources use the code) to <reports>/<run>/queries/ and record the batch in
    meta.query_batch and meta.query_item, in a publish of its own under the run lock (the files are
    written inside it: a batch is recorded only with its workbook, a workbook only with its batch)."""
    from etl.load.warehouse import change_warehouse
    from etl.pipeline import new_run_id

    if selection is Selection.REMINDERS and older_than_days is None:
        raise ValueError("reminders need --reminders-older-than DAYS")
    now = now or datetime.now(UTC)
    sent: list[SentBatch] = []

    def record(con: duckdb.DuckDBPyConnection) -> None:
        choice = choose_run(con, run_id)
        centre = find_centre(con, choice, centre_id, source_id)
        batch_id = new_batch_id(centre, now)
        rows = select_rows(con, choice, _query_rows(con, choice, centre), centre, selection, older_than_days, now)
        out_dir = home.reports / choice.run_id / "queries"
        xlsx, csv_path = _write_files(out_dir, f"queries_{batch_id}", rows, centre, batch_id, key)
        con.execute(
            "INSERT INTO meta.query_batch (batch_id, centre_id, source_id, run_id, sent_at, sent_by, selection, "
            "older_than_days, file_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                batch_id, centre.centre_id, centre.source_id, choice.findings_run_id, now, getpass.getuser(),
                selection.value, older_than_days if selection is Selection.REMINDERS else None, xlsx.name])
        if rows:
            con.executemany("INSERT INTO meta.query_item VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                (batch_id, row_key(key, batch_id, r.identity, r.cells), r.rule_id, r.source_id, r.source_record_key,
                 r.field, value_hash(r.value), r.severity, json.dumps([cell_text(c) for c in r.cells]))
                for r in rows])
        sent.append(SentBatch(batch_id, centre, choice.findings_run_id, len(rows), xlsx, csv_path))

    if not home.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {home.warehouse}; run 'rtw run' first")
    change_warehouse(home, new_run_id(now), record, wait=wait)  # the batch id needs the centre, found inside
    log.info("batch %s: %d queries for centre %s", sent[0].batch_id, sent[0].queries, sent[0].centre)
    return sent[0]
