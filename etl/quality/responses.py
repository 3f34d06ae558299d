"""Answers from centres: a returned query workbook (XLSX or CSV) read, checked row by row, recorded.

A centre fills the `response` column (corrected, confirmed, cannot_determine) and may write a
`comment`; nothing else may change. Each row is checked against what was sent (meta.query_item):
its batch must be one this warehouse sent, its hidden row key one of that batch's, and its shown
cells must still give that key (an HMAC under the pseudonymisation key, etl/quality/queries.py).
A row that fails is reported with the file, its row number and what is wrong; the other rows are
still taken. Answers go to meta.query_response with who imported them and when; importing the
same file again adds nothing. A query's answer is the latest one to its newest batch answered: an
answer to an older batch, imported after the newer batch was answered, is not taken (a warning names
both batches), and a row answered twice in one file differently is refused, both rows named. A record moved
to another centre is queried there: a late answer from its former centre, after the new centre answered a
later batch, is recorded but makes or withdraws no waiver (a warning names the newer batch and its centre).

`confirmed` makes a waiver (meta.waiver) keyed by record, rule, field and the value's hash, which
validation applies on the next run (etl/quality/validate.py): the finding moves to
dq.waived_issue while the value stays the same, and reopens when an export changes it. A confirmation
of a value the latest run does not find (changed since, or the finding gone) makes its waiver all the
same, counted apart from those that take effect at the next run. Only rules
the catalogue marks confirmable can be confirmed (a real 19-year-old in a 0-18 registry is, an
impossible date never is); a confirmation of another rule is refused with a row error.

Gotchas of returned files: Excel keeps the hidden columns and the line as a number, and a centre
may answer on a copied or renamed sheet (every sheet with the query header is read). A CSV saved
again by Excel may be `;`-separated in some locales (the delimiter is sniffed from the header; the
quoting is always Excel's, `""` inside a quoted cell, which may hold line breaks) and in the Windows
code page of its locale, or saved as "Unicode text" (UTF-16, tab-separated, named .txt, perhaps renamed
.csv). UTF-16 is known by its byte-order mark or, without one, by its NUL bytes: the header's characters
are ASCII, so every other byte of its start is NUL (which no CSV in a code page or UTF-8 holds). A CSV
that is neither UTF-16 nor UTF-8 is read as Windows-1252 (Western Europe; or Mac Roman, Excel for Mac's, when its
accented letters are at Mac Roman's bytes: etl/quality/code_pages.py) unless the import is told its
code page (`encoding`: cp1250 for Polish, Czech or Hungarian Excel, whose "ł", "ř",
"ő" Windows-1252 reads as other letters, or refuses); its cells are compared as text, a cell a
spreadsheet re-typed (2027-11-16 saved as a date cell or as 16/11/2027, 0012 as 12, a line as 12.0, true as
a boolean cell, which English Excel writes TRUE, a German one WAHR, a French one VRAI) as the cell sent, but
never where it could hide an edit: a date that the other day order reads as another day (2027-04-03 back as
03/04/2027, or 03/04 swapped to 04/03) is an edit, and so is a number that the other decimal mark reads as
another number (1,234 back as 1.234, or 1234 as 1.234; a Swiss 1'234 for 1234 is a re-typing, for 1.234 it
is not) or that is grouped with two marks, which no locale writes (1.234 567); an XLSX number cell is
compared as its value, not as the text Python writes for it, even where that is the text sent (1.234).

A returned file is hostile until read: a file over MAX_RETURNED_BYTES (a CSV's bytes, an XLSX's
unpacked parts: a zip bomb) is refused before it is parsed, and a sheet's declared size is ignored
(openpyxl pads every row to it: A1:XFD1048576 made one cell in the last row a million rows of 16,384).
"""

from __future__ import annotations

import codecs
import csv
import getpass
import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
from openpyxl.utils import get_column_letter

from etl.config import Home
from etl.extract.file_names import shown_file_name
from etl.pull.unzip import ZipLimits, ZipRefused, check_zip
from etl.quality.catalogue import Rule, load_catalogue
from etl.quality.code_pages import western_code_page
from etl.quality.findings import value_hash_sql
from etl.quality.queries import ANSWER, HEADER, HIDDEN, SHOWN, Response, cell_text, row_key
from etl.quality.query_status import sent_items_sql
from etl.quality.report import choose_run
from etl.spreadsheet import EXCEL_BOOLEANS, spreadsheet_boolean
from etl.transform.days import hide_days
from etl.transform.pseudonym import PseudonymKey
from etl.transform.screen import TextScreen, every_source_numbers, typed_text_screen

log = logging.getLogger(__name__)

_SHOWN = [name for name, _ in SHOWN]
_PSEUDONYM, _SOURCE = _SHOWN[:2]
_RESPONSE, _COMMENT = (name for name, _ in ANSWER)
_BATCH, _ROW_KEY = (name for name, _ in HIDDEN)
# The most a returned file may hold (a CSV's bytes, a workbook's unpacked members): a centre's list is
# ~1 KiB a row, so 128 MiB is above 100,000 queries; a zip bomb of a few hundred KiB is far above it.
MAX_RETURNED_BYTES = 128 << 20
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # Excel's "Unicode text" starts with the first
_DELIMITED = (".csv", ".txt")  # .txt: Excel's "Unicode text" (or "Text (tab delimited)") as saved
_UTF16_SIGN = 32  # bytes of a file's start whose NULs tell UTF-16 without a byte-order mark
_QUOTED_CHARACTERS = 60  # of a returned cell a message quotes: a hostile one may hold 32,767 (a CSV's, 131,072)


class ResponseFileError(ValueError):
    """The file as a whole cannot be read as a returned query workbook; the message names it."""


def _cut(text: str, limit: int = _QUOTED_CHARACTERS) -> str:
    """Text from a returned file as a message shows it: its start, and its length when it is longer."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _quoted(text: str) -> str:
    """A returned cell or sheet name as a message quotes it: in quotes (a line break escaped), cut as _cut."""
    if len(text) <= _QUOTED_CHARACTERS:
        return repr(text)
    return f"{text[:_QUOTED_CHARACTERS] + '…'!r} ({len(text):,} characters)"


def _quoted_answer(text: str) -> str:
    """A centre's refused response as a message quotes it: each digit written 9, as `rtw check` shapes a value
    it may not show. The cell is typed by a person, who may write the correction there ("corrected: born
    06/05/2003, TREP-000004"), and the message reaches the terminal and the log; unlike a comment it is not
    stored, and a birth date of a quarantined patient is one no screen knows (no row holds its month)."""
    return _quoted(re.sub(r"\d", "9", text))


def _row_name(sheet: str | None, number: int) -> str:
    return f"row {number}" if sheet is None else f"sheet {_quoted(sheet)} row {number}"


@dataclass(frozen=True)
class RowProblem:
    """A row that was not taken (or taken with a warning): which file, which sheet when a workbook has
    several query sheets, which row (the header is row 1), what is wrong."""

    file_name: str
    row_number: int
    message: str
    sheet: str | None = None

    def __str__(self) -> str:
        return f"{self.file_name} {_row_name(self.sheet, self.row_number)}: {self.message}"


@dataclass
class ImportSummary:
    """What an import took and refused."""

    file_name: str
    rows: int = 0  # rows read (empty rows left out)
    unanswered: int = 0
    recorded: int = 0  # answers new to meta.query_response
    already_imported: int = 0
    repeated: int = 0  # rows repeating another row's answer in the file: taken once
    superseded: int = 0  # answers to an older batch than one already answered for the query: not taken
    waivers_added: int = 0  # that take effect at the next run: for a value the latest run finds
    waivers_not_found: int = 0  # for a value the latest run does not find (changed since, or the finding gone)
    waivers_withdrawn: int = 0
    erased: int = 0  # answers about a patient erased (rtw forget) since the batch was sent: not taken
    problems: list[RowProblem] = field(default_factory=list)  # rows refused
    warnings: list[RowProblem] = field(default_factory=list)  # taken for an old value, or left for a newer answer


@dataclass(frozen=True)
class _Item:
    """A row as sent (meta.query_item)."""

    batch_id: str
    row_key: str
    rule_id: str
    source_id: str
    source_record_key: str
    field: str | None
    value_hash: str
    cells: tuple[str, ...]
    centre_id: str
    sent_at: datetime

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.rule_id, self.source_id, self.source_record_key, self.field or "")


class ReturnedRow(NamedTuple):
    """A non-empty row of a returned file: its sheet (named when a workbook has several query sheets),
    its number (the header is row 1), header -> cell text, the headers of its XLSX number cells (whose
    text is Python's, a decimal point and no grouping, whichever locale typed them), and the columns (1 is A)
    of its non-empty cells under no header, which are not read."""

    sheet: str | None
    number: int
    cells: dict[str, str]
    numbers: frozenset[str] = frozenset()
    unread: tuple[int, ...] = ()


def read_returned(path: Path, encoding: str | None = None) -> Iterator[ReturnedRow]:
    """Each non-empty row of a returned .xlsx (every sheet with the query header) or .csv. encoding: the
    CSV's code page when it is not UTF-8 (default: Windows-1252); an XLSX holds Unicode and needs none."""
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        sheets: list[tuple[str | None, list[Sequence[Any]]]] = [*_xlsx_sheets(path)]
    elif suffix in _DELIMITED:
        sheets = [(None, _csv_rows(path, encoding))]
    else:
        raise ResponseFileError(f"{path.name}: expected the returned .xlsx or .csv of a query batch (or the .txt "
                                "Excel saves as Unicode text)")
    several = len(sheets) > 1
    for sheet, rows in sheets:
        where = path.name if sheet is None else f"{path.name} sheet {_quoted(sheet)}"
        if not rows:
            raise ResponseFileError(f"{where}: empty; expected the header of a query workbook")
        header = _header(rows[0])
        if missing := [h for h in HEADER if h not in header]:
            raise ResponseFileError(f"{where} row 1: the columns {', '.join(repr(m) for m in missing)} are missing; "
                                    "expected the header of a query workbook sent by rtw queries")
        named = [(i, name) for i, name in enumerate(header) if name]  # not every column a header spans
        for name in HEADER:  # which of two columns the centre filled in is unknown
            if len(twice := [i for i, n in named if n == name]) > 1:
                raise ResponseFileError(f"{where} row 1: the column {name!r} is there {len(twice)} times (columns "
                                        f"{', '.join(get_column_letter(i + 1) for i in twice)}); keep the one sent")
        for number, row in enumerate(rows[1:], start=2):
            cells = {name: _returned_text(row[i]) if i < len(row) else "" for i, name in named}
            unread = tuple(i + 1 for i, value in enumerate(row)
                           if (i >= len(header) or not header[i]) and _returned_text(value).strip())
            if any(v.strip() for v in cells.values()) or unread:
                numbers = frozenset(name for i, name in named if i < len(row) and _is_number(row[i]))
                yield ReturnedRow(sheet if several else None, number, cells, numbers, unread)


def _returned_text(value: Any) -> str:
    """A returned cell as text: a boolean cell as Excel writes it (TRUE, FALSE), not as Python does (True)."""
    return EXCEL_BOOLEANS[value] if isinstance(value, bool) else cell_text(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _header(row: Sequence[Any]) -> list[str]:
    return [cell_text(c).strip() for c in row]


def _xlsx_sheets(path: Path) -> list[tuple[str, list[Sequence[Any]]]]:
    """Every sheet with the query header: a centre may answer on a copied or renamed sheet. If none has
    it, the sheet `queries` or else the first, whose header the error names. Another sheet holding answers
    refuses the file: its answers cannot be matched to their queries, and would be left out unsaid."""
    from openpyxl import load_workbook

    _check_unpacked_size(path)
    try:  # read-only: a sheet is parsed only when its rows are read, so both steps may meet a broken file
        book = load_workbook(path, read_only=True, data_only=True)
        try:
            sheets = [(sheet.title, _sheet_rows(sheet)) for sheet in book.worksheets]
        finally:
            book.close()
    except Exception as exc:  # openpyxl raises zipfile, KeyError, XML or its own errors for a broken file
        raise ResponseFileError(f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__}: "
                                f"{_cut(str(exc), 200)})") from None  # the error may quote the file's XML
    if not sheets:
        raise ResponseFileError(f"{path.name}: the workbook has no sheet; expected the sheet 'queries'")
    with_header = [(title, rows) for title, rows in sheets if rows and set(HEADER) <= set(_header(rows[0]))]
    for title, rows in sheets if with_header else []:  # else the sheet read names what it lacks
        if missing := _answered_without_columns(rows):
            raise ResponseFileError(
                f"{path.name} sheet {_quoted(title)} row 1: holds answers, but not the columns "
                f"{', '.join(repr(m) for m in missing)}, by which an answer is matched to its query (hidden in the "
                "sheet sent: a filtered range copied to a new sheet leaves them out); answer on the sheet sent, or "
                "copy it whole")
    return with_header or [next((s for s in sheets if s[0] == "queries"), sheets[0])]


def _answered_without_columns(rows: Sequence[Sequence[Any]]) -> list[str]:
    """The query columns a sheet lacks when it holds answers (a cell under `response` or `comment`): none when
    it has every column, or no answer."""
    header = _header(rows[0]) if rows else []
    missing = [h for h in HEADER if h not in header]
    answers = [i for i, name in enumerate(header) if name in (_RESPONSE, _COMMENT)]
    if missing and any(i < len(row) and _returned_text(row[i]).strip() for row in rows[1:] for i in answers):
        return missing
    return []


def _check_unpacked_size(path: Path) -> None:
    """Refuse a workbook whose members unpack to more than a returned list can hold (a zip bomb), before
    openpyxl reads any; a file that is no zip at all is left to openpyxl to name."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_zip(archive, ZipLimits(max_total_bytes=MAX_RETURNED_BYTES))
    except zipfile.BadZipFile:
        return
    except ZipRefused as exc:
        raise ResponseFileError(f"{path.name}: {exc}; expected a returned query workbook") from None


def _sheet_rows(sheet: Any) -> list[Sequence[Any]]:
    # A sheet may declare its size (A1:XFD1048576); read as declared, every row is padded to it.
    sheet.reset_dimensions()
    return list(sheet.iter_rows(values_only=True))


def _csv_text(path: Path, encoding: str | None) -> str:
    if (size := path.stat().st_size) > MAX_RETURNED_BYTES:
        raise ResponseFileError(f"{path.name}: {size:,} bytes, more than the limit of {MAX_RETURNED_BYTES:,} for a "
                                "returned query list")
    data = path.read_bytes()
    if encoding is not None:
        return _decoded(path, data, encoding)
    if data.startswith(_UTF16_BOMS):
        return _utf16(path, data)
    if order := _utf16_without_bom(data):
        return _utf16(path, data, order)
    _check_text(path, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Excel saves "CSV" in the code page of its locale: Windows-1252 on Windows (rtw's own em dash is 0x97), Mac
    # Roman on a Mac
    if (code_page := western_code_page(data)) is None:
        raise ResponseFileError(f"{path.name}: neither UTF-8 nor Windows-1252 nor Mac Roman text; save the CSV as "
                                "UTF-8, or give its code page (--encoding cp1250 for Central European Excel)")
    return data.decode(code_page)


def _utf16_without_bom(data: bytes) -> str | None:
    """The byte order of UTF-16 text without a byte-order mark ('utf-16-le' or '-be'), told by the NUL half of
    each ASCII character of its start (the query header's); None: not such text."""
    start = data[:_UTF16_SIGN - _UTF16_SIGN % 2] if len(data) >= 2 else b""
    if not start:
        return None
    even, odd = start[0::2], start[1::2]
    if not odd.strip(b"\0") and b"\0" not in even:
        return "utf-16-le"
    if not even.strip(b"\0") and b"\0" not in odd:
        return "utf-16-be"
    return None


def _utf16(path: Path, data: bytes, order: str = "utf-16") -> str:
    """Excel's "Unicode text" (a centre may rename it .csv): UTF-16, tab-separated, in the byte order its
    byte-order mark says (dropped) or, without one, its NULs say."""
    try:
        return data.decode(order)
    except UnicodeDecodeError as exc:
        known = "starts with a UTF-16 byte-order mark" if order == "utf-16" else f"looks like {order.upper()} text"
        raise ResponseFileError(f"{path.name}: {known} but is not UTF-16 text ({exc}); save the workbook as XLSX or "
                                "as CSV UTF-8") from None


def _check_text(path: Path, data: bytes) -> None:
    """Refuse what is no text at all: a workbook renamed .csv, or bytes with NULs that are not UTF-16 text."""
    if data.startswith(b"PK\x03\x04"):
        raise ResponseFileError(f"{path.name}: a zip file, such as an XLSX workbook, named {path.suffix}; expected "
                                "CSV text: if it is the returned workbook, name it .xlsx")
    if b"\0" in data:
        raise ResponseFileError(f"{path.name}: holds NUL bytes, so it is neither CSV text nor Excel's Unicode text "
                                "(UTF-16, its header first); expected the returned .xlsx, or its .csv")


def _decoded(path: Path, data: bytes, encoding: str) -> str:
    """The CSV's text in the code page the quality officer named: that one only, never a guess."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ResponseFileError(f"{path.name}: unknown encoding {encoding!r}; expected a code page such as "
                                "cp1250, cp1252 or utf-8") from None
    if data.startswith(codecs.BOM_UTF8) and name not in {"utf-8", "utf-8-sig"}:
        raise ResponseFileError(f"{path.name}: starts with a UTF-8 byte-order mark, so it is UTF-8 text, not "
                                f"{encoding}; import it without an encoding")
    if data.startswith(_UTF16_BOMS):
        if not name.startswith("utf-16"):
            raise ResponseFileError(f"{path.name}: starts with a UTF-16 byte-order mark, so it is UTF-16 text (Excel's "
                                    f"Unicode text), not {encoding}; import it without an encoding")
        return _utf16(path, data)
    if (order := _utf16_without_bom(data)) and not name.startswith("utf-16"):
        raise ResponseFileError(f"{path.name}: every other byte of its start is NUL, so it is UTF-16 text (Excel's "
                                f"Unicode text) without a byte-order mark, not {encoding}; import it without an "
                                "encoding")
    if order and name == "utf-16":  # without a byte-order mark Python's utf-16 takes the machine's byte order
        return _utf16(path, data, order)
    if not name.startswith("utf-16"):
        _check_text(path, data)
    try:
        return data.decode("utf-8-sig" if name == "utf-8" else name)
    except UnicodeDecodeError as exc:
        raise ResponseFileError(f"{path.name}: not {encoding} text ({exc}); give the code page the CSV was saved "
                                "in, or none for UTF-8") from None


def _csv_rows(path: Path, encoding: str | None = None) -> list[Sequence[Any]]:
    text = _csv_text(path, encoding)
    try:  # only the delimiter: the sniffer guesses the quoting wrong from a header without quotes
        delimiter = csv.Sniffer().sniff(text.partition("\n")[0], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    # Excel's quoting ("" inside a quoted cell); newline="" keeps line breaks inside quoted cells as written.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return list(reader)
    except csv.Error as exc:  # a cell over the reader's field limit (131,072 characters)
        raise ResponseFileError(f"{path.name} line {reader.line_num}: {exc}; expected a returned query list") from None


def _items(con: duckdb.DuckDBPyConnection, batch_ids: Sequence[str]) -> dict[tuple[str, str], _Item]:
    if not batch_ids:
        return {}
    found = con.execute(
        "SELECT i.batch_id, i.row_key, i.rule_id, i.source_id, i.source_record_key, i.field, i.value_hash, i.cells, "
        "b.centre_id, b.sent_at FROM meta.query_item i JOIN meta.query_batch b USING (batch_id) "
        "WHERE list_contains(?, i.batch_id)", [list(batch_ids)]).fetchall()
    return {(r[0], r[1]): _Item(batch_id=r[0], row_key=r[1], rule_id=r[2], source_id=r[3], source_record_key=r[4],
                                field=r[5], value_hash=r[6], cells=tuple(json.loads(r[7])), centre_id=r[8],
                                sent_at=r[9])
            for r in found}


# What a spreadsheet does to a text cell it reads as a number, a date or a boolean (a CSV opened, then saved
# as CSV or XLSX): 0012 -> 12, 12 -> 12.0 (a float cell), 2027-11-16 -> a date cell ('2027-11-16 00:00:00')
# or the locale's short date, true -> a boolean cell, which Excel writes TRUE (English Excel in a CSV too;
# German Excel, or LibreOffice in a German locale, writes WAHR, and a centre may type WAHR or VRAI as text).
# A spreadsheet reads and writes dates in its locale's day order: day-first (16/11/2027, 16.11.2027,
# 16-11-2027) or month-first (11/16/2027: with slashes only); year-first is read alike by both. Which one
# re-typed a file is not known, so a cell is taken as re-typed only if no order reads it as another day than
# the one sent: 03/04/2027 is 3 April day-first and 4 March month-first, and a centre that swapped it to
# 04/03/2027 made another day in either.
# Numbers alike: a locale writes a decimal point, grouping with commas (1,234.5), or a decimal comma,
# grouping with dots or spaces (1.234,5; 1 234,5); Swiss and Liechtenstein locales a decimal point, grouping
# with an apostrophe (1'234.5, or 1’234.5, the typographic one of CLDR's Swiss locales), which no other
# convention reads, so it gives no cell a second reading. 1,234 is 1234 in one and 1.234 in the other, so a
# cell is taken as re-typed only if it stands for one number in every convention, the one the cell sent
# stands for in every convention: 0012 as 12 or 12,0, 12,5 as 12.5, 1234.5 as 1'234.5, but not 1,234 as
# 1.234 or as 1234, nor 1.234 as 1'234. A locale groups a number with one mark throughout: 1.234 567,8 or
# 1'234’567.8 is no spreadsheet's writing and is read as no number (each mark alone is a locale's).
# An XLSX number cell is its value, in no convention (12.345 typed is not 12345), even where Python writes it as
# the text sent: 1.234 typed for a sent 1.234 (1234 with a decimal comma) is as unsure as 1.234 for 1,234.
_YEAR_FIRST = ("%Y-%m-%d", "%Y/%m/%d")
_DAY_ORDERS = (("%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y"), ("%m/%d/%Y",))  # day-first, month-first
_MIDNIGHT = (" 00:00:00", "T00:00:00")


class _Convention(NamedTuple):
    """How a locale writes a number: the pattern, the grouping marks, the decimal mark."""

    pattern: re.Pattern[str]
    grouping: str
    decimal: str


_EXPONENT = r"([eE][-+]?\d{1,4})?"
_DECIMAL_POINT = _Convention(re.compile(rf"[-+]?(\d{{1,3}}(,\d{{3}})+(\.\d*)?|\d+(\.\d*)?|\.\d+){_EXPONENT}"), ",", ".")
_DECIMAL_COMMA = _Convention(  # a space: also the no-break spaces French and Nordic locales group with
    re.compile(rf"[-+]?(\d{{1,3}}([. \u00a0\u202f]\d{{3}})+(,\d*)?|\d+(,\d*)?|,\d+){_EXPONENT}"), ". \u00a0\u202f", ",")
_APOSTROPHE_GROUPING = _Convention(  # Swiss: the ASCII apostrophe, or U+2019 as CLDR writes it
    re.compile(rf"[-+]?(\d{{1,3}}(['\u2019]\d{{3}})+(\.\d*)?|\d+(\.\d*)?|\.\d+){_EXPONENT}"), "'\u2019", ".")
_CONVENTIONS = (_DECIMAL_POINT, _DECIMAL_COMMA, _APOSTROPHE_GROUPING)
_WHOLE = re.compile(r"-?\d+")  # as Python writes an XLSX whole number, the line's among them


def _as_number(text: str, convention: _Convention) -> Decimal | None:
    """The number `text` stands for, read in one convention (None: not a number in it)."""
    text = text.strip()
    if not convention.pattern.fullmatch(text) or len(set(convention.grouping) & set(text)) > 1:
        return None
    for mark in convention.grouping:
        text = text.replace(mark, "")
    return Decimal(text.replace(convention.decimal, "."))


def _numbers(text: str, typed: bool = False) -> set[Decimal]:
    """The numbers a cell stands for, one per convention that reads it; typed: an XLSX number cell, its value."""
    readings = (_as_number(text, c) for c in ((_DECIMAL_POINT,) if typed else _CONVENTIONS))
    return {number for number in readings if number is not None}


def _number_readings(sent: str, returned: str, typed: bool) -> tuple[bool, bool]:
    """(whether the two cells can stand for the same number, whether they can stand for two numbers between them)."""
    numbers, back = _numbers(sent), _numbers(returned, typed)
    return bool(numbers & back), len(numbers | back) > 1


def _as_date(text: str, day_order: Sequence[str]) -> date | None:
    """The day `text` stands for, read in one day order as a spreadsheet writes it (None: not a date)."""
    text = text.strip()
    for midnight in _MIDNIGHT:
        text = text.removesuffix(midnight)
    for layout in (*_YEAR_FIRST, *day_order):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    return None


def _day_readings(sent: str, returned: str) -> tuple[bool, bool]:
    """(whether some day order reads the two cells as the same day, whether some order reads two days)."""
    readings = [(_as_date(sent, order), _as_date(returned, order)) for order in _DAY_ORDERS]
    return (any(day is not None and day == back for day, back in readings),
            any(day is not None and back is not None and day != back for day, back in readings))


class _Edit(NamedTuple):
    """A shown cell that is neither the one sent nor what a spreadsheet makes of it, and whether the other day
    order or decimal mark would have made it so (a re-typing that cannot be told from an edit)."""

    name: str
    day_unsure: bool
    number_unsure: bool


def _edit(name: str, sent: str, returned: str, typed: bool) -> _Edit | None:
    """The cell `returned` in place of `sent` (typed: an XLSX number), read once as a number and as a day; None:
    the cell sent, or the same number or day written a spreadsheet's way. A number it shortened (1.23457E+19),
    another day, a number that the other convention reads as another (1,234 as 1.234: 1234 with a decimal
    point) or a day that the other day order reads as another (03/04/2027 as 2027-04-03: 4 March month-first)
    is an edit, and so is a number grouped with two marks (1.234 567,8). A boolean's word in any spreadsheet's
    language and case (TRUE, WAHR, vrai: etl/spreadsheet.BOOLEAN_WORDS) for such a word sent is that boolean.
    A number cell is its value, even where Python writes it as the text sent: 1.234 typed for a sent 1.234,
    which a decimal comma groups, is what a decimal-point spreadsheet makes of it, or 1,234 typed by a
    decimal-comma centre for a number it read as 1234; never a day (an XLSX date cell is read as a date and
    time, not a number)."""
    if returned == sent and (not typed or _WHOLE.fullmatch(sent)):  # a whole number reads alike in every convention
        return None
    if (boolean := spreadsheet_boolean(returned)) is not None and spreadsheet_boolean(sent) is boolean:
        return None
    same_number, other_number = _number_readings(sent, returned, typed)
    if same_number and not other_number:
        return None
    same_day, other_day = (False, False) if typed else _day_readings(sent, returned)
    if same_day and not other_day:
        return None
    return _Edit(name, day_unsure=same_day and other_day, number_unsure=same_number and other_number)


def _edits(item: _Item, row: ReturnedRow) -> list[_Edit]:
    """The shown cells of a returned row that are not as sent, in the order sent."""
    edits = (_edit(name, sent, row.cells.get(name, ""), name in row.numbers)
             for name, sent in zip(_SHOWN, item.cells, strict=True))
    return [edit for edit in edits if edit is not None]


def _edited_message(edited: Sequence[_Edit]) -> str:
    """Which columns changed; for a date or a number a spreadsheet may have re-typed in either day order or
    either decimal mark, why it is refused (the values are not quoted: a date may be a birth date)."""
    columns = ", ".join(repr(edit.name) for edit in edited)
    message = (f"column{'s' if len(edited) != 1 else ''} {columns} changed since the query was sent; only "
               f"{_RESPONSE!r} and {_COMMENT!r} may be filled in")
    days = [edit.name for edit in edited if edit.day_unsure]
    numbers = [edit.name for edit in edited if edit.number_unsure]
    reasons = [f"{', '.join(repr(n) for n in names)}: a spreadsheet reading the {what} would make it another {kind}"
               for names, what, kind in ((days, "date month-first or day-first", "day"),
                                         (numbers, "number with a decimal point or a decimal comma", "number"))
               if names]
    if reasons:
        left = " and ".join(kinds for names, kinds in ((days, "dates"), (numbers, "numbers")) if names)
        message += (f" ({'; '.join(reasons)}, so a re-typing cannot be told from an edit; ask the centre for the "
                    f"XLSX as it was sent, or for a CSV with the {left} left as they were)")
    return message


@dataclass(frozen=True)
class _Answer:
    item: _Item
    response: Response
    comment: str | None
    row_number: int
    sheet: str | None = None

    @property
    def given(self) -> tuple[Response, str | None]:
        return self.response, self.comment


def check_rows(rows: Sequence[ReturnedRow], file_name: str, items: Mapping[tuple[str, str], _Item],
               known_batches: set[str], rules: Mapping[str, Rule], key: PseudonymKey,
               summary: ImportSummary, erased: Collection[tuple[str, str]] = frozenset()) -> list[_Answer]:
    """The answers of the rows that pass every check; a RowProblem in `summary` for each that does not. erased:
    the (source, patient pseudonym) of the patients erased by rtw forget (meta.erasure), whose query rows are
    gone: an answer about one is not taken, with a warning, not refused as a row copied or edited."""
    answers = []
    for row in rows:
        sheet, number, cells = row.sheet, row.number, row.cells
        if row.unread:  # an answer typed a column too far, say (its text is not quoted: it may name a patient)
            summary.warnings.append(RowProblem(
                file_name, number, f"the {'cells' if len(row.unread) > 1 else 'cell'} in column"
                f"{'s' if len(row.unread) > 1 else ''} {', '.join(get_column_letter(c) for c in row.unread)}, under no "
                f"header, {'are' if len(row.unread) > 1 else 'is'} not read: an answer goes in column {_RESPONSE!r}, a "
                f"comment in {_COMMENT!r}", sheet))
            if not any(v.strip() for v in cells.values()):
                continue
        summary.rows += 1

        def refuse(message: str, number: int = number, sheet: str | None = sheet) -> None:
            summary.problems.append(RowProblem(file_name, number, message, sheet))

        batch_id, given_key = cells.get(_BATCH, "").strip(), cells.get(_ROW_KEY, "").strip()
        if batch_id not in known_batches:
            refuse(f"query batch {_quoted(batch_id)} was not sent from this warehouse (column {_BATCH!r}); is this a "
                   "workbook of another warehouse, or was the column edited?")
            continue
        item = items.get((batch_id, given_key))
        if item is None and (cells.get(_SOURCE, "").strip(), cells.get(_PSEUDONYM, "").strip()) in erased:
            if not cells.get(_RESPONSE, "").strip() and not cells.get(_COMMENT, "").strip():
                summary.unanswered += 1
                continue
            summary.erased += 1
            summary.warnings.append(RowProblem(file_name, number, "the patient of this row was erased (rtw forget) "
                                               "after the batch was sent; not taken", sheet))
            continue
        if item is None:
            refuse(f"the row key (column {_ROW_KEY!r}) is not one of batch {batch_id}'s rows: the row was copied from "
                   "another workbook or its key edited")
            continue
        # Against the cells sent, not by the row key alone: a number cell may be written as the text sent and
        # still not be it (1.234 typed for a 1.234 a decimal comma groups).
        if edited := _edits(item, row):
            refuse(_edited_message(edited))
            continue
        if row_key(key, batch_id, item.identity, item.cells) != given_key:  # the cells are as sent
            refuse(f"the row key does not verify under the current pseudonymisation key (rotated since batch "
                   f"{batch_id} was sent?); send the centre its queries again")
            continue
        answer, comment = cells.get(_RESPONSE, "").strip(), cells.get(_COMMENT, "").strip() or None
        if not answer:
            if comment:
                refuse(f"a comment without a response: choose one of {', '.join(r.value for r in Response)} in "
                       f"column {_RESPONSE!r}")
            else:
                summary.unanswered += 1
            continue
        try:
            response = Response(answer.lower())
        except ValueError:
            refuse(f"response {_quoted_answer(answer)} is not one of {', '.join(r.value for r in Response)} "
                   f"(column {_RESPONSE!r})")
            continue
        rule = rules.get(item.rule_id)
        if response is Response.CONFIRMED and (rule is None or not rule.meta.is_confirmable):
            refuse(f"rule {item.rule_id} cannot be confirmed: a value it finds cannot be true (an impossible date, a "
                   "code not in the list) or must not be loaded as it is; answer corrected once the source is "
                   "corrected, or cannot_determine")
            continue
        answers.append(_Answer(item, response, comment, number, sheet))
    answers = _once_per_row(answers, file_name, summary)
    order = {(r.sheet, r.number): i for i, r in enumerate(rows)}
    summary.problems.sort(key=lambda p: order.get((p.sheet, p.row_number), len(order)))
    return answers


def _once_per_row(answers: Sequence[_Answer], file_name: str, summary: ImportSummary) -> list[_Answer]:
    """A query answered in several rows of the file (a duplicated row, a copied sheet): the same answer is
    taken once; different answers are all refused, for which one the centre meant is unknown."""
    by_row: dict[tuple[str, str], list[_Answer]] = {}
    for answer in answers:
        by_row.setdefault((answer.item.batch_id, answer.item.row_key), []).append(answer)
    taken = []
    for same in by_row.values():
        if all(a.given == same[0].given for a in same):
            taken.append(same[0])
            summary.repeated += len(same) - 1
            continue
        for answer in same:
            other = next(o for o in same if o.given != answer.given)
            differs = (f"{other.response.value!r} there, {answer.response.value!r} here"
                       if other.response is not answer.response else "another comment")
            summary.problems.append(RowProblem(
                file_name, answer.row_number, f"answers the same query as {_row_name(other.sheet, other.row_number)} "
                f"differently ({differs}); neither row is taken: keep one of them", answer.sheet))
    return taken


_SENT = "query_rows_sent"  # what was sent, as the report reads it (query_status.sent_items_sql), once per import

# For each answer of the file, the latest answer recorded before this import to the same query (the item's
# source's centre and issue) in a batch sent after the item's (by batch sent, then import, as _QUERIES of
# query_status orders them), the latest to the same issue at any centre (a record moved to another centre is
# queried there), and whether the item's own row is among what was sent (_SENT: a row of an old batch of two
# sources is only once answered). One statement a file: one an answer made a file of 2,000 rows 2,000 round trips.
_NEWER_ANSWERS = f"""
WITH answered AS (   -- the file's answers, each row once (_once_per_row), as sent
    SELECT i.batch_id, i.row_key, b.centre_id, i.source_id, i.rule_id, i.source_record_key,
           coalesce(i.field, '') AS field, b.sent_at, m.row_key IS NOT NULL AS is_sent
    FROM (SELECT unnest($batches::VARCHAR[]) AS batch_id, unnest($keys::VARCHAR[]) AS row_key) a
    JOIN meta.query_item i ON i.batch_id = a.batch_id AND i.row_key = a.row_key
    JOIN meta.query_batch b ON b.batch_id = i.batch_id
    LEFT JOIN {_SENT} m ON m.batch_id = i.batch_id AND m.row_key = i.row_key
), recorded AS (     -- every answer recorded to a row sent
    SELECT s.centre_id, s.source_id, s.rule_id, s.source_record_key, s.field, s.sent_at, s.batch_id, r.response,
           r.imported_at
    FROM {_SENT} s JOIN meta.query_response r USING (batch_id, row_key)
)
SELECT a.batch_id, a.row_key, a.is_sent,
       arg_max({{'sent_at': n.sent_at, 'imported_at': n.imported_at, 'batch_id': n.batch_id,
                 'response': n.response, 'centre_id': n.centre_id}}, (n.sent_at, n.imported_at))
           FILTER (WHERE n.centre_id = a.centre_id),
       arg_max({{'sent_at': n.sent_at, 'imported_at': n.imported_at, 'batch_id': n.batch_id,
                 'response': n.response, 'centre_id': n.centre_id}}, (n.sent_at, n.imported_at))
           FILTER (WHERE n.batch_id IS NOT NULL)
FROM answered a
LEFT JOIN recorded n ON n.source_id = a.source_id AND n.rule_id = a.rule_id
     AND n.source_record_key = a.source_record_key AND n.field = a.field AND n.sent_at > a.sent_at
GROUP BY a.batch_id, a.row_key, a.is_sent
"""


class _Newer(NamedTuple):
    """An answer to a query in a batch sent later than the one a row of the file answers."""

    sent_at: datetime
    imported_at: datetime
    batch_id: str
    response: str
    centre_id: str


_Issue = tuple[str, str, str, str]  # source, rule, record, field ('' for none): asked of whichever centre holds it


def _issue(item: _Item) -> _Issue:
    return (item.source_id, item.rule_id, item.source_record_key, item.field or "")


_WaiverKey = tuple[str, str, str, str | None, str]  # source, record, rule, field (None apart from ''), value hash


@dataclass
class _Known:
    """What the answers of a file are judged against, read once for all of them (5 statements an answer made
    a centre's file of 2,000 rows 10-15 s at 20,000 persons): the latest answer to each row, the values the
    run finds each confirmed query's issue with, the waivers of their values, kept as the import changes
    them, the newest answer recorded before the import in a later batch of each row's query (its centre's) and
    of its issue (any centre's), with the answers this import records to rows sent (`recorded`), which a later
    row of the file reads as newer."""

    latest: dict[tuple[str, str], tuple[str, str | None]]  # (batch, row key) -> (response, comment)
    values_found: dict[tuple[str, str, str, str], set[str]]  # issue identity -> hashes the run finds
    waivers: dict[_WaiverKey, int]  # -> how many rows meta.waiver holds
    newer: dict[tuple[str, str], _Newer]  # (batch, row key) -> the answer recorded to a later batch, if any
    newer_anywhere: dict[tuple[str, str], _Newer]  # likewise, to a later batch of any centre
    sent: set[tuple[str, str]]  # (batch, row key) of the answers whose row is among those sent (_SENT)
    recorded: dict[_Issue, list[_Newer]] = field(default_factory=dict)  # by this import


def _waiver_key(item: _Item) -> _WaiverKey:
    return (item.source_id, item.source_record_key, item.rule_id, item.field, item.value_hash)


def _known(con: duckdb.DuckDBPyConnection, findings_run_id: str, answers: Sequence[_Answer]) -> _Known:
    items = [a.item for a in answers]
    rows = {"batches": [i.batch_id for i in items], "keys": [i.row_key for i in items]}
    latest = {(b, k): (r, c) for b, k, (r, c) in con.execute(
        "SELECT r.batch_id, r.row_key, arg_max((r.response, r.comment), r.imported_at) FROM meta.query_response r "
        "JOIN (SELECT unnest($batches) AS batch_id, unnest($keys) AS row_key) USING (batch_id, row_key) GROUP BY ALL",
        rows).fetchall()}
    confirmed = [a.item for a in answers if a.response is Response.CONFIRMED]
    values_found: dict[tuple[str, str, str, str], set[str]] = {}
    for rule, source, record, field_, value in con.execute(
            f"SELECT rule_id, source_id, source_record_key, coalesce(field, ''), {value_hash_sql('value')} "
            "FROM (SELECT value, rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = $run "
            "UNION ALL SELECT value, rule_id, source_id, source_record_key, field FROM dq.waived_issue "
            "WHERE run_id = $run) WHERE list_contains($records, source_record_key)",
            {"run": findings_run_id, "records": sorted({i.source_record_key for i in confirmed})}).fetchall():
        values_found.setdefault((rule, source, record, field_), set()).add(value)
    waivers = {tuple(key): n for *key, n in con.execute(
        "SELECT source_id, source_record_key, rule_id, field, value_hash, count(*) FROM meta.waiver "
        "WHERE list_contains($records, source_record_key) GROUP BY ALL",
        {"records": sorted({i.source_record_key for i in items})}).fetchall()}
    newer, anywhere, sent = {}, {}, set()
    for batch_id, key, is_sent, found, found_anywhere in con.execute(_NEWER_ANSWERS, rows).fetchall():
        if is_sent:
            sent.add((batch_id, key))
        if found is not None:
            newer[batch_id, key] = _Newer(**found)
        if found_anywhere is not None:
            anywhere[batch_id, key] = _Newer(**found_anywhere)
    return _Known(latest, values_found, waivers, newer, anywhere, sent)  # type: ignore[arg-type]


def _newer_answer(known: _Known, item: _Item, any_centre: bool = False) -> _Newer | None:
    """The latest answer to the same query (any_centre: to the same issue, asked of any centre) in a batch sent
    after the item's: recorded before this import, or by it to a row sent (a file may hold rows of two batches
    of a query: the older one, after the newer, is not taken)."""
    later = [a for a in known.recorded.get(_issue(item), [])
             if a.sent_at > item.sent_at and (any_centre or a.centre_id == item.centre_id)]
    if before := (known.newer_anywhere if any_centre else known.newer).get((item.batch_id, item.row_key)):
        later.append(before)
    return max(later, key=lambda a: (a.sent_at, a.imported_at), default=None)


@dataclass
class _Writes:
    """What an import writes, gathered answer by answer and written at the end in a statement a table: the
    answers, the waivers a withdrawal deletes (every row of the key, as it stood before the import) and the
    waivers the import leaves made (by the last confirmation of the key not withdrawn after it)."""

    responses: list[tuple[Any, ...]] = field(default_factory=list)
    waivers_deleted: set[_WaiverKey] = field(default_factory=set)
    waivers_made: dict[_WaiverKey, tuple[Any, ...]] = field(default_factory=dict)


def _record(con: duckdb.DuckDBPyConnection, answers: Sequence[_Answer], file_name: str, file_sha256: str,
            who: str, now: datetime, summary: ImportSummary) -> None:
    if not answers:
        return
    findings_run_id = choose_run(con).findings_run_id
    # Read once, not per answer: it aggregates the whole history of batches and answers (ms per call at 10,000 rows).
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_SENT} AS {sent_items_sql(con)}")
    try:
        known = _known(con, findings_run_id, answers)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_SENT}")
    writes = _Writes()
    for answer in answers:
        _record_answer(answer, file_name, file_sha256, who, now, summary, known, writes)
    _write(con, writes)


def _record_answer(answer: _Answer, file_name: str, file_sha256: str, who: str, now: datetime,
                   summary: ImportSummary, known: _Known, writes: _Writes) -> None:
    item = answer.item

    def warn(message: str) -> None:
        summary.warnings.append(RowProblem(file_name, answer.row_number, message, answer.sheet))

    # A row is answered once a file (_once_per_row): the file's own answers never change its latest.
    if known.latest.get((item.batch_id, item.row_key)) == (answer.response.value, answer.comment):
        summary.already_imported += 1  # the latest only: a re-confirmation is new
        return
    if newer := _newer_answer(known, item):
        warn(f"answers batch {item.batch_id}, but the same query was answered {newer.response!r} in batch "
             f"{newer.batch_id}, sent later: the newer answer stands and this one is not taken")
        summary.superseded += 1
        return
    writes.responses.append((
        item.batch_id, item.row_key, answer.response.value, answer.comment,
        file_name if answer.sheet is None else f"{file_name} sheet {answer.sheet!r}", file_sha256,
        answer.row_number, who, now))
    if (item.batch_id, item.row_key) in known.sent:
        known.recorded.setdefault(_issue(item), []).append(_Newer(item.sent_at, now, item.batch_id,
                                                                   answer.response.value, item.centre_id))
    summary.recorded += 1
    if elsewhere := _newer_answer(known, item, any_centre=True):  # the record has moved to another centre since
        warn(f"the same finding was answered {elsewhere.response!r} in batch {elsewhere.batch_id} of centre "
             f"{elsewhere.centre_id}, sent later: this answer is recorded, but the newer one stands for the waiver")
        return
    key = _waiver_key(item)
    if answer.response is Response.CONFIRMED:
        # The waiver is made for the value sent even when the run no longer finds it: it can only ever waive
        # what the centre confirmed, and a finding that comes back with it is not queried again.
        found = known.values_found.get(item.identity, set())
        if found and item.value_hash not in found:  # the next run finds another value, which stays open
            warn(f"the value has changed since batch {item.batch_id} was sent; this confirmation covers the old "
                 "value only: send the centre its queries again")
        if not known.waivers.get(key):
            writes.waivers_made[key] = (*key, item.centre_id, item.batch_id, now, who)
            known.waivers[key] = 1
            if item.value_hash in found:
                summary.waivers_added += 1
            else:
                summary.waivers_not_found += 1
    elif known.waivers.get(key):  # the centre took a confirmation back (a later answer on the same value)
        writes.waivers_deleted.add(key)
        writes.waivers_made.pop(key, None)
        summary.waivers_withdrawn += known.waivers.pop(key)


def _write(con: duckdb.DuckDBPyConnection, writes: _Writes) -> None:
    """The import's writes, a statement a table (the deletes first: a key withdrawn, then confirmed again,
    keeps the new waiver)."""
    if writes.waivers_deleted:
        deleted = list(zip(*writes.waivers_deleted, strict=True))
        con.execute(
            "DELETE FROM meta.waiver w USING (SELECT unnest($1::VARCHAR[]) AS source_id, "
            "unnest($2::VARCHAR[]) AS source_record_key, unnest($3::VARCHAR[]) AS rule_id, "
            "unnest($4::VARCHAR[]) AS field, unnest($5::VARCHAR[]) AS value_hash) d "
            "WHERE w.source_id = d.source_id AND w.source_record_key = d.source_record_key "
            "AND w.rule_id = d.rule_id AND w.field IS NOT DISTINCT FROM d.field AND w.value_hash = d.value_hash",
            [list(column) for column in deleted])
    _insert(con, "meta.query_response", writes.responses)
    _insert(con, "meta.waiver", list(writes.waivers_made.values()))


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows into a table in one statement: each column passed as a list, the lists unnested side by side (the
    column types the table's, which DuckDB casts to)."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    con.execute(f"INSERT INTO {table} SELECT {', '.join(f'unnest(${n})' for n in range(1, len(columns) + 1))}",
                [list(column) for column in columns])


def _screened_comment(screen: TextScreen, comment: str) -> str:
    """A centre's comment as it is stored: without patient numbers and EUPIDs (the typed-text screen), and with
    every day hidden, digits that read as a date (etl/transform/days.py `hide_days`), not a code of as many
    ("MedDRA 10019211"). A comment answering a query about a birth date is where a centre writes the day
    ("corrected: born 16/02/2012"), which the warehouse never holds, in whatever month: the patient's held one
    is the wrong one the query is about, and a quarantined patient has none."""
    return hide_days(screen.screened(comment))


def import_responses(home: Home, path: Path, key: PseudonymKey, *, wait: float = 0.0,
                     rules: Sequence[Rule] | None = None, encoding: str | None = None) -> ImportSummary:
    """Read, check and record the answers of a returned query workbook (.xlsx or .csv), in a publish of
    its own under the run lock; the waivers take effect at the next run. encoding: a CSV's code page when
    it is not UTF-8 (default: Windows-1252)."""
    from etl.load.warehouse import change_warehouse
    from etl.pipeline import new_run_id

    if not path.is_file():
        raise ResponseFileError(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    if not home.warehouse.exists():
        raise ResponseFileError(f"no warehouse at {home.warehouse}; run 'rtw run' first")
    # The file's and its sheets' names as stored and logged: a centre may name them after a patient (its sha256
    # tells the file apart).
    numbers = every_source_numbers(home)
    shown = shown_file_name(path.name, numbers)
    rows = [row._replace(sheet=shown_file_name(row.sheet, numbers)) if row.sheet else row
            for row in read_returned(path, encoding)]
    file_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    catalogue = {r.rule_id: r for r in (load_catalogue(check_types=False) if rules is None else rules)}
    summary = ImportSummary(shown)
    now, who = datetime.now(UTC), getpass.getuser()

    def record(con: duckdb.DuckDBPyConnection) -> None:
        batch_ids = sorted({r.cells.get(_BATCH, "").strip() for r in rows} - {""})
        known = {b for (b,) in con.execute("SELECT batch_id FROM meta.query_batch WHERE list_contains(?, batch_id)",
                                           [batch_ids]).fetchall()}
        erased = set(con.execute("SELECT source_id, source_patient_pseudonym FROM meta.erasure").fetchall())
        answers = check_rows(rows, shown, _items(con, sorted(known)), known, catalogue, key, summary, erased)
        # A comment naming a patient's number or birth date is kept without them (etl/transform/screen.py).
        screen = typed_text_screen(home, con, numbers=numbers)
        answers = [replace(a, comment=_screened_comment(screen, a.comment)) if a.comment else a for a in answers]
        _record(con, answers, shown, file_sha256, who, now, summary)

    run_id = new_run_id(now)
    change_warehouse(home, run_id, record, wait=wait)
    for problem in [*summary.problems, *summary.warnings]:  # info: the command line prints them itself
        log.info("%s", problem)
    log.info("%s: %d rows, %d answers recorded, %d already imported, %d repeated, %d superseded, %d unanswered, "
             "%d about a patient erased since, %d refused, %d waivers added, %d waivers for a value no longer found, "
             "%d waivers withdrawn", shown, summary.rows, summary.recorded, summary.already_imported, summary.repeated,
             summary.superseded, summary.unanswered, summary.erased, len(summary.problems), summary.waivers_added,
             summary.waivers_not_found, summary.waivers_withdrawn)
    return summary
