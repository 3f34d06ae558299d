"""Excel and OpenDocument workbooks as source files, read with python-calamine: one record set per sheet.

A workbook is a whole snapshot of its source (a registry's forms, one sheet each). `stage_workbook`
writes a folder `<sha256>/` with one Parquet file per sheet (`001.parquet`, ..., the sheet's name
in the schema metadata under `rtw.sheet`), each holding the sheet's columns as strings plus
`_line` (the sheet's row number, as Excel shows it) and lineage. The folder is written under a
temporary name and renamed into place, so it appears only when every sheet is in it.

Library: python-calamine (Rust), not openpyxl. Measured on a 50,000 x 20 .xlsx (strings, whole
numbers, decimals, dates, blanks; 5.9 MB), iterating every row of the sheet, 2 cores, Dec 2026:
calamine 0.66-0.75 s (peak RSS 123 MiB: it holds the sheet's cells), openpyxl read-only
10.2-10.3 s (52 MiB): calamine is ~15x faster. It also reads .xls, .xlsb and .ods, which
openpyxl cannot. With calamine a sheet is loaded whole; rows are then converted and written in
chunks, so memory is the sheet's cells plus one chunk. `benchmarks/adapters.py --openpyxl`
measures both again, beside this adapter: on 100,000 x 20 it stages and reads back ~31,000
records/s, 2.4x the time of calamine's bare iteration (openpyxl alone: ~4,100 records/s).

Gotchas of the format:
- Cells are typed, not text. A date is a serial number whose *number format* says it is a date:
  calamine reads the format and returns a date (`2019-05-03`) or datetime
  (`2019-05-03T10:20:30`; a datetime at midnight is indistinguishable from a date, so it comes out
  as a date); a time-of-day cell `08:30:00`; a duration (`[h]:mm`) `30:00:00`. A date typed into
  a cell formatted General or Text stays the number or the text typed ("43831", "03/05/2019"):
  that is what the sheet shows, and the mapping's date formats parse the text. Dates before
  1900-03-01 are unreliable (Excel's 1900 leap-year bug; serial 0 reads as the time 00:00:00);
  1904-based workbooks (old Mac Excel) are converted by calamine. An .xlsx's date cell formatted to show
  a month and year, or a year, and no day (`mmm-yy`, Excel's own for "12/2021" typed in) stages as it shows,
  `2021-12` or `2021`, not as the first day Excel stores (etl/extract/excel_shown.py; a notice counts them);
  another day, typed in full, is kept.
- Numbers are doubles: whole numbers are written without ".0"; others with at most 15 significant
  digits (Excel's own precision, so 0.1+0.2 stored as 0.30000000000000004 is "0.3"), never in
  exponent notation. Text that looks numeric ("00123") stays text: leading zeros survive.
- Booleans are written TRUE / FALSE, as English Excel shows them (etl/spreadsheet.EXCEL_BOOLEANS; a
  German one shows WAHR / FALSCH). A formula gives its cached value. Error cells (#N/A, #DIV/0!),
  which calamine reads as empty, and formulas of a workbook written by a program that never computed
  them (no cached value) are staged as Excel shows them, `#DIV/0!`, `=58`, for a typed field to refuse
  (an .xlsx's: etl/extract/excel_unread.py; a notice counts them); an .xlsb's, .xls's or .ods's read as empty.
- Merged cells hold their value in the top-left cell only; calamine reads the range's other cells
  as empty. By default (`merged_cells: top_left`) they stay so, as delivered, and a notice lists the
  ranges in the data rows and names the option: a patient number merged over a patient's follow-up
  rows leaves every row below the first without a key (quarantined). `merged_cells: fill` gives
  every cell of a range in the data rows (below the header row) the range's top-left value, over
  the range's rows and columns. The header row is read as delivered: a name merged over two
  columns filled across would be a repeated name (an empty header cell a merge made is named in
  the error), and a range starting at or above the header would fill data rows with a column name
  or a title (not filled; a notice names it). A row is blank by what it holds itself: a range
  running past a patient's last row makes no record of its own. calamine gives the ranges of
  .xlsx/.xlsm/.xls only, with the sheet it loads (asked for before this option too, for the
  notice). An .ods's are read from its content.xml (`opendocument_merged_ranges`: a cell's
  number-rows-spanned / number-columns-spanned, rows and cells counted with their repeats), parsed
  only when it holds a span at all: on 100,000 x 20 cells with 66,666 ranges the parse takes about
  as long as calamine's read (6.7 s against 4.5 s, loaded 2-core machine, Dec 2026). An .xlsb's are
  read from its sheet's .bin part (`binary_merged_ranges`): BrtMergeCell records (type 0xB0, an RfX
  of four 4-byte numbers: first and last row, first and last column, 0-based) after the cells, taken
  in the walk of the part's records that reads the sheet's reach, so they cost no second read; so an
  .xlsb is noticed, advised and filled as an .xlsx (it was read unfilled without a notice, and fill
  was refused). No tool here writes an .xlsb: the tests build the records as MS-XLSB lays them out,
  the layout other readers and writers of the format use. The
  ranges are held as a small array (`merged_ranges`) and filling holds only those open at the
  current row. Measured on a 100,000 x
  20 .xlsx with a patient number and centre merged over each patient's 3 rows (66,666 ranges),
  staging, median of 7, Dec 2026: 2.30 s before this option, 2.23 s as delivered, 2.38 s filled;
  peak RSS 294, 292, 293 MiB (the sheet's cells in calamine, as before).
- The header is row `header_row` (1-based) of every sheet; rows above it (titles, notes) are
  skipped. Without the option, each sheet's header is found: the first row filling more than half
  as many cells as the fullest of its first 20 filled rows (title lines fill one cell), row 1 in a
  plain sheet; a notice names the row when it is not 1. So a workbook is read before any mapping.
  A header name is the cell's text with outer blanks trimmed and line breaks made spaces. A column
  with an empty header is dropped if it holds no value (Excel's used range often runs past the
  data) and is an error if it does; a repeated name is an error. Both name the sheet and column, a
  repeated name by the letters of its two columns, not quoted: a sheet without its header row has a
  patient's values for names (a number, a name); the CSV reader's error gives the columns' numbers.
- Blank rows (every cell empty or blanks) are dropped wherever they are, trailing ones included;
  a notice counts them. A sheet with no cells at all gives no record set (a notice says so).
- Hidden sheets are read like the others (a notice says which); chart and macro sheets are not.
- A ".xls" written by a web application is often HTML or tab-separated text; it is refused with
  what it is. Password-protected workbooks are refused.
- A damaged or hostile workbook fails its file, never the run: a sheet whose cells reach past
  MAX_SHEET_CELLS (an .xlsx's, .xlsb's or .xls's cells are scanned before calamine allocates the
  grid; an .ods's repeated rows and cells calamine bounds itself, at 100 million, and its refusal is
  said as plainly, though without the sheet, which calamine does not name; a grid below that which the
  machine cannot hold aborts the child the workbook is read in, etl/extract/isolated.py), a zip part failing its
  checksum, and whatever calamine raises on it, an I/O error of its zip reader and a Rust panic (pyo3
  raises it as a BaseException) included.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import struct
import sys
import zipfile
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import python_calamine as calamine
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from etl.extract import isolated
from etl.extract.adapter import (
    LINE_COLUMN,
    SourceAdapter,
    StageResult,
    parquet_whole,
    staging_writer,
    what_it_is,
)
from etl.extract.errors import ExtractError
from etl.extract.excel_shown import Shown, shown_cells, shown_styles, shown_text
from etl.extract.excel_unread import MAY_HOLD, unread_cells
from etl.extract.odm_xml import SAFE_PARSER, SAFE_TREE_PARSER
from etl.extract.sheet_xml import column_number, part_blocks
from etl.fsio import written_atomically
from etl.spreadsheet import EXCEL_BOOLEANS

__all__ = ["ADAPTER", "SHEET_METADATA_KEY", "ExcelAdapter", "ExcelOptions", "cell_text", "column_letter",
           "detect_header_row", "iter_sheet_records", "merged_ranges", "read_staged_workbook", "read_workbook_sheets",
           "stage_workbook"]

#: key of each staged Parquet file's schema metadata holding its sheet's name
SHEET_METADATA_KEY = b"rtw.sheet"
SHEETS_STAGED = "sheets.json"  # in a staged workbook's folder: its sheets' files, for staged_whole

_ZIP = b"PK\x03\x04"
_OPENDOCUMENT = b"application/vnd.oasis.opendocument.spreadsheet"  # an .ods's `mimetype` member
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXACT_INTEGER = 2.0**53
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_MAX_LISTED = 5  # columns or merged ranges named in one notice
_HEADER_SCAN = 20  # filled rows looked at to find a header row
# calamine's refusal of a sheet's grid (python-calamine 0.9: "Cell limit exceeded (N cells requested, max M)")
_CELL_LIMIT = re.compile(r"Cell limit exceeded(?: \((\d+) cells requested, max (\d+)\))?")

#: rows converted and written at a time: measured on a 100,000 x 20 sheet, staging peaks at
#: +170 MiB with 20,000 (the sheet's cells in calamine, mostly), +290 MiB with 50,000
CHUNK_ROWS = 20_000

#: the cells of a sheet's grid (its first row and column to the furthest filled ones) an .xlsx may span.
#: calamine allocates the whole grid, 32 bytes a cell, before a row is read: one stray value at XFD1048576
#: asked for 512 GiB and aborted the process (the night's every source with it), no error to catch. 50
#: million cells is 1.5 GiB there, 500 columns of 100,000 rows; a sheet spanning more is refused first. An
#: .xlsb's reach is read from its sheet's records, an .xls's from its Workbook stream's (calamine reads every
#: sheet of an .xls as it opens it: refused before): BIFF8 has 256 columns, but a cell's field holds 65,535.
MAX_SHEET_CELLS = 50_000_000
# what a sheet refused for its reach asks for
_CLEAR_STRAY_VALUE = ("expected the table alone: a value far below or right of it (a stray keystroke) is cleared by "
                      "deleting the rows and columns past the table and saving")

#: how the other cells of a merged range read (the option `merged_cells`, see the module docstring)
MergedCells = Literal["top_left", "fill"]


class ExcelOptions(BaseModel):
    """Reader options of a workbook."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    header_row: int | None = Field(
        None, ge=1, description="the row naming the columns (1-based), on every sheet; rows above it are skipped. "
        "Default: found on each sheet, the first row filling more than half as many cells as the fullest of its "
        "first 20 rows (so title lines above a table are skipped)")
    sheets: list[str] | None = Field(None, description="the sheets to read, by name; default every worksheet")
    merged_cells: MergedCells = Field(
        "top_left", description="top_left: a merged range's value is in its top-left cell only, its other cells "
        "read empty (as delivered); fill: every cell of a merged range in the data rows reads the range's value "
        "(e.g. a patient number merged over the patient's follow-up rows); the header row is never filled")


# -- cell values to text --------------------------------------------------------------------------
def _number_text(value: float) -> str:
    if value.is_integer() and abs(value) < _EXACT_INTEGER:
        return str(int(value))
    text = f"{value:.15g}"
    if "e" in text:  # harmonise reads positional notation only
        text = np.format_float_positional(value, precision=15, unique=True, fractional=False, trim="-")
    return text


def _datetime_text(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


def _time_text(value: dt.time) -> str:
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


def _duration_text(value: dt.timedelta) -> str:
    # As Excel's [h]:mm:ss shows it: hours past 24, sign in front.
    milliseconds = round(value / dt.timedelta(milliseconds=1))
    sign = "-" if milliseconds < 0 else ""
    seconds, fraction = divmod(abs(milliseconds), 1000)
    text = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:03d}" if fraction else text


_CELL_TEXT: dict[type, Callable[[Any], str]] = {
    str: str,
    float: _number_text,
    int: str,
    bool: EXCEL_BOOLEANS.__getitem__,
    dt.datetime: _datetime_text,
    dt.date: dt.date.isoformat,
    dt.time: _time_text,
    dt.timedelta: _duration_text,
}


def cell_text(value: Any) -> str:
    """A calamine cell as the text the pipeline stages (see the module docstring)."""
    if value is None:
        return ""
    convert = _CELL_TEXT.get(type(value), str)  # a type calamine adds later: its plain text
    return convert(value)


def column_letter(index: int) -> str:
    """0 -> "A", 26 -> "AA". Not openpyxl's get_column_letter: importing openpyxl.utils imports all of openpyxl
    (~0.3 s), which this calamine reader otherwise never needs."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


# -- reading --------------------------------------------------------------------------------------
def _open_workbook(path: Path) -> calamine.CalamineWorkbook:
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        raise ExtractError(f"{path.name}: not an Excel or OpenDocument workbook: the file is empty")
    if not head.startswith((_ZIP, _OLE2)):
        raise ExtractError(f"{path.name}: not an Excel or OpenDocument workbook: {_what_it_is(path, head)}; "
                           "expected an .xlsx/.xlsm/.xlsb/.xls/.ods file")
    if head.startswith(_OLE2):  # calamine reads every sheet of an .xls as it opens it
        extents = xls_sheet_extents(path)
        for name, (rows, columns) in extents.items():
            _refuse_reach(path, name, rows, columns, quoted=tuple(extents))
    try:
        return calamine.CalamineWorkbook.from_path(str(path))
    except calamine.PasswordError:
        raise ExtractError(f"{path.name}: the workbook is password-protected; expected an unprotected copy") \
            from None
    except BaseException as error:
        if not _unreadable(error):
            raise
        if beyond := _beyond_cell_limit(path, error):
            raise beyond from None
        kind = "a zip archive" if head.startswith(_ZIP) else "an OLE2 (Office) file"
        raise ExtractError(f"{path.name}: not a readable workbook: {kind} that calamine cannot read as one "
                           f"({_said(error)}); expected a complete .xlsx/.xlsm/.xlsb/.xls/.ods file "
                           "(a zipped export, an encrypted workbook, or truncated in transfer?)") from None


def _beyond_cell_limit(path: Path, error: BaseException) -> ExtractError | None:
    """calamine's refusal of a sheet bigger than it holds (an .ods's repeated rows and cells, which it reads as
    it opens the workbook), said as _refuse_reach says an .xlsx's: what is too big, never a cell; None: another
    error. calamine names neither the sheet nor the row and column reached, only the cells of the grid."""
    said = _CELL_LIMIT.search(str(error)) if isinstance(error, calamine.CalamineError) else None
    if said is None:
        return None
    requested, limit = (f"{int(n):,}" if n else None for n in said.groups())
    grid = f"a grid of {requested} cells" if requested else "a grid"
    return ExtractError(
        f"{path.name}: a sheet's cells (its repeated rows and cells counted) reach {grid}, more than the "
        f"{limit or 'most'} the reader (python-calamine) holds; {_CLEAR_STRAY_VALUE}")


def _unreadable(error: BaseException) -> bool:
    """Whether calamine failed on what the file holds: its own error, an I/O error of the zip it reads (a
    member failing its checksum), or a panic (pyo3 raises a Rust panic as a BaseException, so that it
    escapes `except Exception`: a damaged .xls reached an index out of bounds)."""
    return isinstance(error, (calamine.CalamineError, OSError)) or type(error).__name__ == "PanicException"


def _said(error: BaseException) -> str:
    """What calamine said, on one line (a panic's message spans several), after the error's kind unless it is
    calamine's own; what it quotes left out: the text of a cell it could not read (an entity, `&P998877;`)."""
    said = _QUOTED.sub("[...]", " ".join(str(error).split()))
    return said if isinstance(error, calamine.CalamineError) else f"{type(error).__name__}: {said}"


_QUOTED = re.compile(r"`[^`]*`|\"[^\"]*\"|(?<!\w)'[^']*'(?!\w)")


def _load_sheet(path: Path, workbook: calamine.CalamineWorkbook, name: str) -> calamine.CalamineSheet:
    """A sheet's cells: calamine reads a sheet's part only now, so a part damaged, missing or holding what
    it refuses (an entity a DOCTYPE declares) is found here, not when the workbook opens."""
    try:
        return workbook.get_sheet_by_name(name)
    except BaseException as error:
        if not _unreadable(error):
            raise
        # the kind alone: what calamine says of a sheet's XML may quote its text (an entity's name, a cell's)
        raise ExtractError(f"{path.name}, sheet '{name}': not readable ({type(error).__name__}); expected "
                           "the sheet as an office program writes it (damaged in transfer, or written by a tool "
                           "that leaves a part out or declares XML entities?)") from None


def _what_it_is(path: Path, head: bytes) -> str:
    return what_it_is(path, head, named_like="a workbook", html="a web application's 'Excel export'?",
                      xml="an Excel 2003 XML spreadsheet or an ODM file?")


def read_workbook_sheets(path: Path) -> list[tuple[str, bool]]:
    """The workbook's worksheets in order, each with whether it is hidden (chart and macro sheets left out)."""
    workbook = _open_workbook(path)
    try:
        return _worksheets(path, workbook)
    finally:
        workbook.close()


def _worksheets(path: Path, workbook: calamine.CalamineWorkbook) -> list[tuple[str, bool]]:
    """The worksheets, each with whether it is hidden; two of one name (ignoring case, as Excel compares them)
    refused: calamine finds a sheet by its name, and one of the two would be read twice, the other never."""
    sheets = [(sheet.name, sheet.visible != calamine.SheetVisibleEnum.Visible)
              for sheet in workbook.sheets_metadata if sheet.typ == calamine.SheetTypeEnum.WorkSheet]
    seen: set[str] = set()
    for name, _hidden in sheets:
        if name.casefold() in seen:
            raise ExtractError(f"{path.name}: two sheets are named '{name}' (names compared ignoring case); "
                               "expected each sheet named once, as Excel and LibreOffice keep them (the workbook "
                               "was written by another program, or damaged?)", quoted=[n for n, _ in sheets])
        seen.add(name.casefold())
    return sheets


_PACKAGE_PARSER = etree.XMLParser(**SAFE_TREE_PARSER)  # no DTD, entity
_OFFICE_DOCUMENT = "/officeDocument"  # the end of the relationship type naming the workbook part
# The reference of a row or cell that holds something (not an empty <row .../> or <c .../>, a <c ...></c>, nor a
# row of such cells only, which a format gives and calamine allocates nothing for: a column formatted down to row
# 1,048,576 was refused): its column letters (none for a row) and row number, whatever the element's prefix, the
# attribute's place, quotes or spacing: a scan, not a parse (a row cut from its end by a block counts)
_NOTHING_HELD = rb"(?:\s*<(?:[\w.-]+:)?c\s[^>]*?(?:/>|>\s*</(?:[\w.-]+:)?c>))*\s*</(?:[\w.-]+:)?(?:row|c)>"
_REACH = re.compile(rb"""<(?:[\w.-]+:)?(?:row|c)\s[^>]*?(?<=\s)r\s*=\s*["']([A-Z]{0,3})(\d+)["'][^>]*?(?<!/)>"""
                    rb"(?!" + _NOTHING_HELD + rb")")


def sheet_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """An .xlsx's or .xlsb's worksheet parts by sheet name (found through the package's relationships); {}
    when they cannot be found, which calamine then reports. A part damaged raises `_DAMAGED_MEMBER`."""
    try:
        workbook, targets = _workbook_part(archive)
        data = archive.read(workbook)
        sheets = _binary_sheets(data) if workbook.endswith(".bin") else _xml_sheets(data)
    except (KeyError, StopIteration, etree.XMLSyntaxError, struct.error, UnicodeDecodeError):
        return {}
    return {name: targets[rel][0] for name, rel in sheets if rel in targets}


def _workbook_part(archive: zipfile.ZipFile) -> tuple[str, dict[str, tuple[str, str]]]:
    """The package's workbook part and its relationships (`_relationships`: its sheets', its styles'...)."""
    workbook = _related(archive, "_rels/.rels", "", _OFFICE_DOCUMENT)
    folder, _, name = workbook.rpartition("/")
    return workbook, _relationships(archive, f"{folder}/_rels/{name}.rels", folder)


def _xml_sheets(workbook: bytes) -> list[tuple[str, str]]:
    """An .xlsx's sheets (name, relationship id), from its workbook part."""
    root = etree.fromstring(workbook, _PACKAGE_PARSER)
    return [(str(sheet.get("name", "")), next((str(v) for k, v in sheet.attrib.items() if str(k).endswith("}id")), ""))
            for sheet in root.iter("{*}sheet")]


_BUNDLE_SHEET = 0x9C  # BrtBundleSh: a sheet of an .xlsb's workbook part


def _binary_sheets(workbook: bytes) -> list[tuple[str, str]]:
    """An .xlsb's sheets (name, relationship id), from its workbook part's BrtBundleSh records: two
    4-byte fields, then the relationship id and the name, each a 4-byte count of UTF-16 characters."""
    sheets = []
    for kind, data in _binary_records(workbook):
        if kind == _BUNDLE_SHEET:
            rel, at = _wide_text(data, 8)
            name, _ = _wide_text(data, at)
            sheets.append((name, rel))
    return sheets


def _wide_text(data: bytes, at: int) -> tuple[str, int]:
    (count,) = struct.unpack_from("<I", data, at)
    count = 0 if count == 0xFFFFFFFF else count  # a nullable text's null
    return data[at + 4:at + 4 + 2 * count].decode("utf-16-le"), at + 4 + 2 * count


def _binary_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """A BIFF12 part's records (type, data): the type in one or two bytes, the size in one to four, 7 bits
    a byte, the high bit saying another follows."""
    at = 0
    while at < len(data):
        kind, at = _varint(data, at, 2)
        size, at = _varint(data, at, 4)
        yield kind, data[at:at + size]
        at += size


def _varint(data: bytes, at: int, most: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * most, 7):
        byte = data[at] if at < len(data) else 0
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    return value, at


def _related(archive: zipfile.ZipFile, rels: str, folder: str, kind: str) -> str:
    return next(target for target, type_ in _relationships(archive, rels, folder).values() if type_.endswith(kind))


def _relationships(archive: zipfile.ZipFile, rels: str, folder: str) -> dict[str, tuple[str, str]]:
    """A relationships part's targets (as archive member names) and types, by id."""
    root = etree.fromstring(archive.read(rels), _PACKAGE_PARSER)
    found = {}
    for rel in root.iter("{*}Relationship"):
        target = rel.get("Target", "")
        member = target.lstrip("/") if target.startswith("/") else f"{folder}/{target}".lstrip("/")
        found[rel.get("Id", "")] = (member, rel.get("Type", ""))
    return found


def sheet_extent(archive: zipfile.ZipFile, part: str, merged: bytearray | None = None,
                 unread: list[bool] | None = None) -> tuple[int, int]:
    """The furthest row and column (1-based) a worksheet part's cells reach, scanned from its XML in blocks
    (or its records: `binary_sheet_extent`, which adds an .xlsb's merged ranges to `merged`). Columns A-Z
    count as 26: only a wider reach matters. `unread`, when given, gets True once a block may hold an error cell
    or a formula (`excel_unread.MAY_HOLD`): the same blocks, not a walk of the part's own for them."""
    if part.endswith(".bin"):
        with archive.open(part) as stream:
            return binary_sheet_extent(stream, merged=merged)
    rows, columns = 0, 26
    for text in part_blocks(archive, part):
        reached = _REACH.findall(text)
        rows = max([rows, *(int(row) for _, row in reached)])
        columns = max([columns, *map(column_number, {letters for letters, _ in reached if len(letters) > 1})])
        if unread is not None and not unread and MAY_HOLD.search(text):
            unread.append(True)
    return rows, columns


_ROW_HEADER = 0x00  # BrtRowHdr: the row of the cells after it, its first 4 bytes
# BrtCellRk .. BrtFmlaError: a cell with a value, its column first (4 bytes); calamine skips BrtCellBlank (0x01),
# so a blank cell, styled, makes no grid
_FIRST_VALUE_CELL, _LAST_VALUE_CELL = 0x02, 0x0B
_CELL_HEAD = 10  # a record's type (2 bytes at most), size (4) and a cell's column (4)
_MERGE_CELL = 0xB0  # BrtMergeCell, after the cells: an RfX, the first and last row, first and last column
_RFX = 16  # bytes of an RfX: four 4-byte numbers, 0-based
_U32 = struct.Struct("<I").unpack_from


def binary_sheet_extent(stream: Any, block: int = 1 << 20, merged: bytearray | None = None) -> tuple[int, int]:
    """The furthest row and column (1-based) an .xlsb worksheet part's value cells reach, read record by
    record in blocks (a cell's row is its BrtRowHdr's); each merged range's RfX added to `merged` when given
    (`binary_merged_ranges` reads them: calamine gives none of an .xlsb). A Python loop: on 100,000 x 20
    text cells (2.1 million records) it takes 1.1-1.2 s, and staging the sheet 4.1 s instead of 3.3 (Dec
    2026)."""
    rows = columns = row = 0
    data, at = b"", 0  # `at`, the next record's offset, may lie past the data read: a payload to skip
    while more := stream.read(block):
        if at >= len(data) + len(more):
            data, at = b"", at - len(data) - len(more)
            continue
        data = data[at:] + more if at <= len(data) else more[at - len(data):]
        at, last = 0, len(data) - _CELL_HEAD
        while at <= last:  # a head and a column lie whole in the data (a cell's data is 8 bytes at least)
            record = at
            kind = data[at]
            at += 1
            if kind & 0x80:
                kind = kind & 0x7F | (data[at] & 0x7F) << 7
                at += 1
            size = data[at]
            at += 1
            if size & 0x80:
                size, at = _varint(data, at - 1, 4)
            if kind == _ROW_HEADER:
                (row,) = _U32(data, at)
            elif _FIRST_VALUE_CELL <= kind <= _LAST_VALUE_CELL:  # comparisons, not max(): twice as fast
                if row >= rows:
                    rows = row + 1
                (column,) = _U32(data, at)
                if column >= columns:
                    columns = column + 1
            elif kind == _MERGE_CELL and merged is not None and size >= _RFX:
                if at + _RFX > len(data):  # cut by the block: read whole with the next one
                    at = record
                    break
                merged += data[at:at + _RFX]
            at += size
    return rows, columns


def _package(path: Path) -> zipfile.ZipFile | None:
    """An .xlsx/.xlsm/.xlsb's zip archive, for `sheet_extent`; None for another kind (or a zip calamine
    refuses)."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return None


def _shown_styles(archive: zipfile.ZipFile) -> dict[int, Shown]:
    """An .xlsx's cell styles whose format shows a date without its day or a number's leading zeros
    (`excel_shown`); {} for an .xlsb, or
    a package whose styles part is not found."""
    try:
        workbook, targets = _workbook_part(archive)
        styles = next(target for target, kind in targets.values() if kind.endswith("/styles"))
    except (KeyError, StopIteration, etree.XMLSyntaxError, *_DAMAGED_MEMBER):
        return {}
    return {} if workbook.endswith(".bin") else shown_styles(archive, styles)


def _scan_sheet_part(path: Path, archive: zipfile.ZipFile | None, parts: dict[str, str],
                     name: str) -> tuple[np.ndarray | None, bool]:
    """Refuse a sheet whose grid calamine could not hold (MAX_SHEET_CELLS) before it loads it. An .xlsb
    sheet's merged ranges (as `merged_ranges` gives them) are read in the same walk of its records and
    returned (None for another sheet, or one whose part was not found), and whether an .xlsx sheet's part may
    hold an error cell or a formula (`excel_unread`), seen in the same look at its XML."""
    if archive is None or name not in parts:
        return None, False
    merged = bytearray() if parts[name].endswith(".bin") else None
    unread: list[bool] = []
    try:
        rows, columns = sheet_extent(archive, parts[name], merged, unread)
    except KeyError:  # a part missing: calamine says which
        return None, False
    except _DAMAGED_MEMBER as error:  # its reach unknown: not left to calamine, which may read a part failing
        raise _damaged(path, f", sheet '{name}'", error) from None  # its checksum (it read a workbook.xml so)
    _refuse_reach(path, name, rows, columns)
    return None if merged is None else binary_merged_ranges(merged), bool(unread)


_LAST_ROW, _LAST_COLUMN = 1_048_575, 16_383  # 0-based: Excel's sheet ends at XFD1048576


def binary_merged_ranges(merged: bytes | bytearray) -> np.ndarray:
    """An .xlsb sheet's merged ranges from their RfX records (first row, last row, first column, last column,
    0-based), as `merged_ranges` gives them; a range past the sheet's end (only a hostile file writes one) is
    cut at it, so that filling never walks 4 billion columns."""
    rfx = np.frombuffer(merged, dtype="<u4").reshape(-1, 4).astype(np.int64)
    rfx[:, :2] = rfx[:, :2].clip(max=_LAST_ROW)
    rfx[:, 2:] = rfx[:, 2:].clip(max=_LAST_COLUMN)
    ranges = np.column_stack([rfx[:, 0] + 1, rfx[:, 2], rfx[:, 1] + 1, rfx[:, 3]]).astype(np.int32)
    return _in_order(ranges[(ranges[:, 0] <= ranges[:, 2]) & (ranges[:, 1] <= ranges[:, 3])])


def _refuse_reach(path: Path, name: str, rows: int, columns: int, quoted: Sequence[str] = ()) -> None:
    if rows * columns > MAX_SHEET_CELLS:
        raise ExtractError(
            f"{path.name}, sheet '{name}': its cells reach row {rows:,} and column {column_letter(columns - 1)}, "
            f"a grid of up to {rows * columns:,} cells, more than the {MAX_SHEET_CELLS:,} a sheet is read with; "
            f"{_CLEAR_STRAY_VALUE}", quoted=quoted)


# -- an .xls's reach: its Workbook stream in the OLE2 compound file, then its BIFF8 records ---------------
_FREE_SECTORS = 0xFFFFFFFA  # sector numbers from here on end a chain or mark a sector free
_WORKBOOK_STREAMS = ("Workbook", "Book")  # BIFF8; BIFF5


def ole_stream(data: bytes, names: Sequence[str]) -> bytes | None:
    """The first stream of an OLE2 compound file (`data`) named one of `names`; None when there is none or
    the file's structure cannot be followed (calamine then says why). A chain is followed as far as the
    file has sectors, so a loop a hostile FAT makes ends."""
    try:
        size, mini_size = 1 << struct.unpack_from("<H", data, 0x1E)[0], 1 << struct.unpack_from("<H", data, 0x20)[0]
        fat_count, directory_start, _, cutoff, mini_fat_start, _, difat_next, difat_count = struct.unpack_from(
            "<8I", data, 0x2C)
        if not 128 <= size <= 4096 or not 16 <= mini_size <= size:
            return None
        sector_count = len(data) // size
        difat = list(struct.unpack_from("<109I", data, 0x4C))
        for _ in range(min(difat_count, sector_count)):
            difat += struct.unpack_from(f"<{size // 4}I", data, (difat_next + 1) * size)
            difat_next = difat.pop()
        fat = [entry for sector in difat[:min(fat_count, sector_count)]
               for entry in struct.unpack_from(f"<{size // 4}I", data, (sector + 1) * size)]

        def chain(start: int, table: list[int]) -> Iterator[int]:
            for _ in range(len(table)):
                if start >= min(_FREE_SECTORS, len(table)):
                    return
                yield start
                start = table[start]

        def stream(start: int, length: int) -> bytes:
            return b"".join(data[(n + 1) * size:(n + 2) * size] for n in chain(start, fat))[:length]

        directory = stream(directory_start, len(data))
        entries = [directory[at:at + 128] for at in range(0, len(directory) - 127, 128)]
        for entry in entries:
            length = min(struct.unpack_from("<H", entry, 64)[0], 64)
            if entry[66] == 2 and entry[:length].decode("utf-16-le", "replace").rstrip("\0") in names:
                start, length = struct.unpack_from("<2I", entry, 116)
                if length >= cutoff:
                    return stream(start, length)
                root_start, root_length = struct.unpack_from("<2I", entries[0], 116)
                mini = stream(root_start, root_length)
                raw = stream(mini_fat_start, len(data))
                mini_fat = list(struct.unpack_from(f"<{len(raw) // 4}I", raw))  # whole entries: a cut one left out
                return b"".join(mini[n * mini_size:(n + 1) * mini_size] for n in chain(start, mini_fat))[:length]
    except (struct.error, IndexError):
        return None
    return None


_BOF, _EOF, _BOUNDSHEET = 0x0809, 0x000A, 0x0085
# cells: the row then the column (2 bytes each) first; MULRK and MULBLANK end with their last column. Blank cells
# count: within the format's 256 columns no sheet reaches MAX_SHEET_CELLS, and a hostile one is refused either way
_XLS_CELLS = frozenset({0x0006, 0x00D6, 0x00FD, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E})
_XLS_CELL_RUNS = frozenset({0x00BD, 0x00BE})
_XLS_REACH = _XLS_CELLS | _XLS_CELL_RUNS
_RECORD_HEAD = struct.Struct("<4H").unpack_from  # a record's type and size, a cell's row and column
_U16 = struct.Struct("<H").unpack_from


def xls_sheet_extents(path: Path) -> dict[str, tuple[int, int]]:
    """The furthest row and column (1-based) each sheet of an .xls reaches, by name, from its records; {}
    when the file's structure cannot be followed (calamine then says why). A record's fields are read where
    they lie in the stream, none copied: on 50,000 x 20 text cells the walk takes 0.22 s of CPU, 0.72 s when
    each record was sliced (a shared 2-core machine, Dec 2026); an .xls holds 65,536 rows at most."""
    stream = ole_stream(path.read_bytes(), _WORKBOOK_STREAMS)
    if stream is None:
        return {}
    sheets: dict[int, str] = {}
    extents: dict[str, tuple[int, int]] = {}
    sheet: str | None = None
    rows = columns = 0  # the current sheet's reach, kept in `extents` as the sheet ends
    end = len(stream)
    at = 0
    # A record's head and the first 4 bytes of its data (a cell's row and column) are read at once. A record
    # starting in the last 8 bytes is left out: it holds under 4 bytes of data, too few for a cell or a
    # sheet's name, and a sheet it starts or ends counts no cell after it.
    while at + 8 <= end:
        kind, size, row, column = _RECORD_HEAD(stream, at)
        data, at = at + 4, at + 4 + size
        if kind in _XLS_REACH:
            if sheet is not None and size >= 4:  # the row and column lie in the stream: the loop's bound
                if kind in _XLS_CELL_RUNS and (held := min(size, end - data)) >= 6:
                    (column,) = _U16(stream, data + held - 2)  # a record cut by the stream's end: what is left
                if row >= rows:  # comparisons, not max(): faster
                    rows = row + 1
                if column >= columns:
                    columns = column + 1
        elif kind == _BOUNDSHEET and min(size, end - data) >= 8:
            count, wide = stream[data + 6], stream[data + 7] & 1
            text = stream[data + 8:min(data + 8 + count * (1 + wide), at)]
            sheets[_U32(stream, data)[0]] = text.decode("utf-16-le" if wide else "latin-1", "replace")
        elif kind in (_BOF, _EOF):
            _keep_reach(extents, sheet, rows, columns)
            rows = columns = 0
            sheet = sheets.get(data - 4) if kind == _BOF else None  # a BOUNDSHEET names its BOF's offset
    _keep_reach(extents, sheet, rows, columns)
    return extents


def _keep_reach(extents: dict[str, tuple[int, int]], sheet: str | None, rows: int, columns: int) -> None:
    """A sheet's reach, as its records end, added to what `extents` holds of a sheet of its name."""
    if sheet is not None and rows:
        before = extents.get(sheet, (0, 0))
        extents[sheet] = (max(before[0], rows), max(before[1], columns))


#: what reading a damaged member of a zip raises: a checksum failing (BadZipFile), a deflate stream corrupt or
#: cut (zlib.error, EOFError), a compression method a flipped byte made unknown (NotImplementedError)
_DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def _damaged(path: Path, where: str, error: Exception) -> ExtractError:
    return ExtractError(f"{path.name}{where}: not a readable workbook: a part of its zip archive is damaged "
                        f"({type(error).__name__}: {error}); expected a complete file (damaged or truncated in "
                        "transfer?)")


_NO_RANGES = np.zeros((0, 4), dtype=np.int32)  # see merged_ranges
_NEVER = sys.maxsize  # a row number past any sheet's


@dataclass
class SheetRead:
    """What reading one sheet found besides its records (for notices)."""

    blank_rows: int = 0
    dropped_columns: tuple[str, ...] = ()
    detected_header_row: int | None = None  # when the header row was found rather than given
    # merged ranges (`merged_ranges`) starting below the header row, and those starting at or above it
    # that run into the data rows
    merged_in_data: np.ndarray = field(default_factory=lambda: _NO_RANGES)
    merged_from_header: np.ndarray = field(default_factory=lambda: _NO_RANGES)
    merged_filled: bool = False  # merged_in_data were filled (merged_cells: fill)
    partial_dates: int = 0  # date cells staged as the month or year their format shows (excel_shown.py)
    padded_numbers: int = 0  # whole numbers staged with the leading zeros their format shows (excel_shown.py)
    unread: int = 0  # error cells and formulas never computed, staged as Excel shows them (excel_unread.py)


def detect_header_row(rows: Iterable[tuple[int, list[Any]]]) -> int | None:
    """The header among a sheet's first rows ((row number, cells)): the first filling more than half as
    many cells as the fullest of them; None when all are blank.

    Title lines ("CRF export: Enrolment", "Exported 01/11/2026") fill one cell above a wider table.
    """
    filled = [(number, sum(1 for cell in cells if cell_text(cell).strip())) for number, cells in rows]
    widest = max((count for _number, count in filled), default=0)
    if not widest:
        return None
    enough = widest // 2 + 1
    return next(number for number, count in filled if count >= enough)


def merged_ranges(sheet: calamine.CalamineSheet) -> np.ndarray | None:
    """The sheet's merged ranges, one row each: first row, first column, last row, last column (rows
    1-based as Excel shows them, columns 0-based), in row then column order; None when calamine does
    not say (.ods: `opendocument_merged_ranges`; .xlsb: `binary_merged_ranges`).

    An int32 array rather than calamine's tuples: a sheet merging a key over each patient's rows has a
    range per patient (66,666 on a 100,000-row sheet: 1 MiB here, 15 MiB as tuples)."""
    given = sheet.merged_cell_ranges
    if given is None:
        return None
    corners = chain.from_iterable(chain.from_iterable(given))  # top, left, bottom, right of each range
    ranges = np.fromiter(corners, dtype=np.int32, count=4 * len(given)).reshape(-1, 4)
    del given
    ranges[:, 0] += 1
    ranges[:, 2] += 1
    return _in_order(ranges)


def _in_order(ranges: np.ndarray) -> np.ndarray:
    return ranges[np.lexsort((ranges[:, 1], ranges[:, 0]))]


def opendocument_merged_ranges(path: Path) -> dict[str, np.ndarray] | None:
    """Each sheet's merged ranges (as `merged_ranges` gives them) of an OpenDocument spreadsheet, by sheet
    name, read from its content.xml; None for a workbook of another kind.

    A merged range is a cell saying how many rows and columns it spans (table:number-rows-spanned,
    table:number-columns-spanned); rows and cells are counted with their repeats
    (table:number-rows-repeated, table:number-columns-repeated), as calamine counts them. Read with
    libxml2's safe settings, each row dropped once counted."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return None
    with archive:
        names = set(archive.namelist())
        if "mimetype" not in names or archive.read("mimetype").strip() != _OPENDOCUMENT or "content.xml" not in names:
            return None
        with archive.open("content.xml") as content:
            if not _says(content, b"-spanned="):  # no merged cell: spare the parse (as long as calamine's own)
                return {}
        with archive.open("content.xml") as content:
            try:
                return _spanned_cells(content)
            except etree.XMLSyntaxError as error:
                raise ExtractError(f"{path.name}: content.xml, line {error.lineno}: not well-formed XML ({error.msg}); "
                                   "expected an OpenDocument spreadsheet as an office program writes it") from None


def _says(stream: Any, text: bytes, block: int = 1 << 20) -> bool:
    """Whether a stream holds `text`, read a block at a time (the text may straddle two)."""
    tail = b""
    while chunk := stream.read(block):
        if text in tail + chunk:
            return True
        tail = (tail + chunk)[-len(text):]
    return False


def _spanned_cells(content: Any) -> dict[str, np.ndarray]:
    sheets: dict[str, np.ndarray] = {}
    corners: list[tuple[int, int, int, int]] = []
    row = column = 0  # rows before the current one, cells before the current one
    repeats = 1  # of the current row: identical rows are written once
    cells = (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell")
    for event, element in etree.iterparse(content, tag=(f"{_TABLE}table", f"{_TABLE}table-row", *cells),
                                          **SAFE_PARSER):
        name = element.tag
        if name in cells and event == "start":
            repeated = int(element.get(f"{_TABLE}number-columns-repeated", 1))
            rows = int(element.get(f"{_TABLE}number-rows-spanned", 1))
            columns = int(element.get(f"{_TABLE}number-columns-spanned", 1))
            if rows > 1 or columns > 1:
                corners += [(top, left, top + rows - 1, left + columns - 1) for top in range(row + 1, row + 1 + repeats)
                            for left in range(column, column + repeated)]
            column += repeated  # the other columns a cell spans are covered cells of their own
        elif name == f"{_TABLE}table-row":
            if event == "start":
                column, repeats = 0, int(element.get(f"{_TABLE}number-rows-repeated", 1))
            else:
                row += repeats
                element.clear()  # the row's cells are counted: keep memory to a row
                while element.getprevious() is not None:
                    del element.getparent()[0]
        elif name == f"{_TABLE}table":
            if event == "start":
                row, corners = 0, []
            else:
                ranges = np.array(corners, dtype=np.int32).reshape(-1, 4)
                sheets[element.get(f"{_TABLE}name", "")] = _in_order(ranges)
                element.clear()
    return sheets


class _FillDown:
    """Merged ranges of the data rows filled as the rows stream past, in row order: a range's value is
    taken from its top-left cell when its first row passes, and written into the record of each of its
    rows, at the places of its named columns. Only the ranges open at the current row are held."""

    def __init__(self, ranges: np.ndarray, first_column: int, kept: Sequence[int]) -> None:
        # merged_ranges' rows in row order, as Python ints a block at a time (a numpy row per range is slow)
        self._waiting = chain.from_iterable(ranges[i:i + 4096].tolist() for i in range(0, len(ranges), 4096))
        self._upcoming: list[int] | None = next(self._waiting, None)
        self._first_column = first_column
        # the named columns (cell indexes from the used range's start) in order, each with its place in the record:
        # a range's are found by bisection, not by walking its columns (a hostile A:XFD range has 16,384). No sort:
        # `kept` ascends (_header keeps the header's cells in their order), so its pairs do
        self._named = [(index, place) for place, index in enumerate(kept)]
        self._open: list[tuple[int, str, list[int]]] = []  # (last row, value, places)
        self._earliest_last = _NEVER  # of the open ranges: past it, one has closed

    def fill(self, number: int, texts: list[str], record: list[str] | None) -> None:
        """Row `number` as read (`texts`, cells from the used range's first column); `record` filled in
        place (None for a row skipped: it still opens the ranges starting on it)."""
        if self._upcoming is not None and self._upcoming[0] <= number:
            self._open_from(number, texts)
        if number > self._earliest_last:
            self._open = [item for item in self._open if item[0] >= number]
            self._earliest_last = min((item[0] for item in self._open), default=_NEVER)
        if record is not None:
            for _last, value, places in self._open:
                for place in places:
                    record[place] = value

    def _open_from(self, number: int, texts: list[str]) -> None:
        first_column, named = self._first_column, self._named
        while self._upcoming is not None and self._upcoming[0] <= number:
            first, left, last, right = self._upcoming
            self._upcoming = next(self._waiting, None)
            start = bisect_left(named, (left - first_column, -1))
            end = bisect_left(named, (right - first_column + 1, -1), start)
            places = [place for _index, place in named[start:end]]
            top_left = left - first_column
            value = texts[top_left] if first == number and 0 <= top_left < len(texts) else ""
            if places:  # a range over unnamed columns only fills nothing
                self._open.append((last, value, places))
                self._earliest_last = min(self._earliest_last, last)


def iter_sheet_records(path: Path, sheet: calamine.CalamineSheet, header_row: int | None, found: SheetRead,
                       *, chunk_rows: int = CHUNK_ROWS, merged: np.ndarray = _NO_RANGES, fill: bool = False,
                       shown: Mapping[int, Mapping[int, Shown]] | None = None,
                       unread: Mapping[int, Mapping[int, str]] | None = None,
                       ) -> Iterator[tuple[list[str], list[int], list[list[str]]]]:
    """Stream a sheet as (header, row numbers, columns of text), `chunk_rows` records at a time.

    The first item always comes (maybe with no records), so an empty sheet still has its header.
    `found` collects the blank rows skipped, the unnamed empty columns dropped, the header row
    found when `header_row` is None (see `detect_header_row`) and the `merged` ranges (`merged_ranges`)
    in the data rows, which `fill` fills (see the module docstring). `shown`: the cells whose format shows a
    date without its day or a number's leading zeros (`excel_shown.shown_cells`), staged as it shows them;
    `unread`: the cells calamine reads as empty that hold an error or a formula never computed
    (`excel_unread.unread_cells`), staged as Excel shows them.
    """
    (first_row, first_column), (last_row, _last_column) = sheet.start or (0, 0), sheet.end or (0, 0)
    # python-calamine's iter_rows yields every row from the sheet's first (row 1), but cells from its
    # first used column on: rows are numbered from 1, columns from the used range's start.
    rows: Iterator[tuple[int, list[Any]]] = enumerate(sheet.iter_rows(), start=1)
    if header_row is None:
        head = list(islice(rows, first_row + _HEADER_SCAN))
        header_row = found.detected_header_row = detect_header_row(head) or first_row + 1
        rows = chain(head, rows)
    if header_row <= first_row:
        raise ExtractError(f"{path.name}, sheet '{sheet.name}', row {header_row}: the header row is blank; "
                           f"expected column names there (the first filled row is {first_row + 1}; "
                           "set the source's `options: header_row:`)")
    if header_row > last_row + 1:
        raise ExtractError(f"{path.name}, sheet '{sheet.name}': the header row {header_row} is past the sheet's "
                           f"last row ({last_row + 1}); expected column names there")
    header_cells: list[Any] = []
    for number, cells in rows:
        if number == header_row:
            header_cells = cells
            break
    header, kept = _header(path, sheet.name, header_row, first_column, header_cells)
    named = set(kept)
    unnamed = [i for i in range(len(header_cells)) if i not in named]
    # Ranges below the header are the data's; one starting at or above it would fill data rows with a
    # column's name or a title.
    found.merged_in_data = merged[merged[:, 0] > header_row]
    found.merged_from_header = merged[(merged[:, 0] <= header_row) & (merged[:, 2] > header_row)]
    found.merged_filled = fill and len(found.merged_in_data) > 0
    fills = _FillDown(found.merged_in_data, first_column, kept) if found.merged_filled else None
    numbers: list[int] = []
    records: list[list[str]] = []
    yielded = False
    number = header_row
    for number, cells in rows:
        texts = [cell if type(cell) is str else cell_text(cell) for cell in cells]  # most cells are text
        if shown and (formatted := shown.get(number)):
            _as_shown(texts, cells, formatted, first_column, found)
        if unread and (held := unread.get(number)):
            found.unread += _unread_shown(texts, held, first_column)
        # Blank rows and unnamed columns are judged by the cells as delivered, before any filling.
        if not any(text.strip() for text in texts):
            found.blank_rows += 1
            if fills is not None:
                fills.fill(number, texts, None)
            continue
        for index in unnamed:
            if index < len(texts) and texts[index].strip():
                merge = _merge_hint(merged, header_row, first_column + index)
                raise ExtractError(  # the value is not shown: it may identify a patient
                    f"{path.name}, sheet '{sheet.name}', cell {column_letter(first_column + index)}{number}: "
                    f"a value under a header cell with no name (row {header_row}{merge}); "
                    "expected every column holding values to be named")
        record = [texts[index] if index < len(texts) else "" for index in kept]
        if fills is not None:
            fills.fill(number, texts, record)
        records.append(record)
        numbers.append(number)
        if len(records) == chunk_rows:
            yield header, numbers, _columns(records, len(header))
            numbers, records, yielded = [], [], True
    if number != last_row + 1:  # a python-calamine that numbers rows otherwise must not shift `_line`
        raise RuntimeError(f"{path.name}, sheet '{sheet.name}': python-calamine yielded rows up to {number}, "
                           f"expected {last_row + 1}; check iter_rows after an upgrade")
    found.dropped_columns = tuple(column_letter(first_column + index) for index in unnamed)
    if records or not yielded:
        yield header, numbers, _columns(records, len(header))


def _as_shown(texts: list[str], cells: list[Any], formatted: Mapping[int, Shown], first_column: int,
              found: SheetRead) -> None:
    """A row's cells whose format shows a date without its day or a number's leading zeros, as the format shows
    them (in `texts`; `shown_text`), counted in `found`."""
    for column, what in formatted.items():
        index = column - first_column
        text = shown_text(cells[index], what) if 0 <= index < len(cells) else None
        if text is not None:
            texts[index] = text
            if isinstance(what, int):
                found.padded_numbers += 1
            else:
                found.partial_dates += 1


def _unread_shown(texts: list[str], held: Mapping[int, str], first_column: int) -> int:
    """A row's cells calamine read as empty that hold an error or a formula never computed, as Excel shows
    them (in `texts`, widened to reach them); how many."""
    count = 0
    for column, shown in held.items():
        index = column - first_column
        if index < 0:
            continue  # left of what calamine reads: no column of the sheet's
        if index >= len(texts):
            texts.extend([""] * (index + 1 - len(texts)))
        if not texts[index].strip():
            texts[index] = shown
            count += 1
    return count


def _columns(records: list[list[str]], width: int) -> list[list[str]]:
    return [list(column) for column in zip(*records)] if records else [[] for _ in range(width)]


def _header(path: Path, sheet: str, row: int, first_column: int, cells: list[Any]) -> tuple[list[str], list[int]]:
    """The column names and the positions of named columns; an error for a repeated or reserved name."""
    names: list[str] = []
    kept: list[int] = []
    seen: dict[str, str] = {}
    for index, cell in enumerate(cells):
        name = _LINE_BREAKS.sub(" ", cell_text(cell)).strip()
        if not name:
            continue  # an error only if a value sits below it (see iter_sheet_records)
        letter = column_letter(first_column + index)
        if name in seen:  # by position: a sheet without its header row has a patient's record for names
            raise ExtractError(f"{path.name}, sheet '{sheet}', cell {letter}{row}: the header repeats the name of "
                               f"column {seen[name]}; expected unique column names (or is row {row} a record, the "
                               "header row missing?)")
        if name == LINE_COLUMN:
            raise ExtractError(f"{path.name}, sheet '{sheet}', cell {letter}{row}: the header is '{LINE_COLUMN}', "
                               "a name the reader reserves for row numbers")
        seen[name] = letter
        names.append(name)
        kept.append(index)
    if not names:
        raise ExtractError(f"{path.name}, sheet '{sheet}', row {row}: the header row names no column; "
                           "expected column names (set the source's `options: header_row:`)")
    return names, kept


def _range_name(merged_range: Sequence[int]) -> str:
    """A row of `merged_ranges` as Excel names it: A2:A4."""
    top, left, bottom, right = (int(n) for n in merged_range)
    return f"{column_letter(left)}{top}:{column_letter(right)}{bottom}"


def _merge_hint(merged: np.ndarray, header_row: int, column: int) -> str:
    """For a header cell with no name: the merged range it is part of, whose text is in another cell."""
    for top, left, bottom, right in merged.tolist():
        if top <= header_row <= bottom and left <= column <= right and (top, left) != (header_row, column):
            return (f": the cell is part of merged cells {_range_name((top, left, bottom, right))}, whose text is "
                    f"in {column_letter(left)}{top}; unmerge them and name each column")
    return ""


# -- staging --------------------------------------------------------------------------------------
def stage_workbook(path: Path, out: Path, *, header_row: int | None = None, sheets: list[str] | None = None,
                   merged_cells: MergedCells = "top_left", lineage: dict[str, str] | None = None,
                   chunk_rows: int = CHUNK_ROWS) -> StageResult:
    """Stage a workbook to a folder `out` with one Parquet file per sheet (see the module docstring);
    `merged_cells` is the option of that name (`ExcelOptions`).

    The folder is built under a temporary name beside `out` and renamed into place, so a failure
    never leaves half a workbook where a reader would look.
    """
    lineage = dict(lineage or {})
    workbook = _open_workbook(path)
    opendocument = opendocument_merged_ranges(path)  # calamine gives an .ods's merged ranges as None
    rows = 0
    notices: list[str] = []
    merged_in_data = False
    worksheets = [name for name, _hidden in _worksheets(path, workbook)]  # what an error may quote
    archive = _package(path) if opendocument is None else None
    try:
        try:
            members = sheet_parts(archive) if archive is not None else {}
        except _DAMAGED_MEMBER as error:
            raise _damaged(path, "", error) from None
        styles = _shown_styles(archive) if archive is not None else {}
        with written_atomically(out, folder=True) as temp:
            parts = []
            chosen = _chosen_sheets(path, workbook, sheets)  # their names: the notices quote them
            for index, (name, hidden) in enumerate(chosen, start=1):
                binary_merged, may_hold_unread = _scan_sheet_part(path, archive, members, name)
                shown = (shown_cells(archive, members[name], styles)
                         if archive is not None and styles and name in members else None)
                unread = unread_cells(archive, members[name]) if archive is not None and may_hold_unread else None
                sheet = _load_sheet(path, workbook, name)
                if sheet.start is None:
                    notices.append(f"{path.name}: sheet '{name}' is empty: no record set")
                    continue
                merged = merged_ranges(sheet)
                if merged is None:  # calamine gives none of an .ods or an .xlsb: read from the file here
                    merged = opendocument.get(name, _NO_RANGES) if opendocument is not None else binary_merged
                fill = merged_cells == "fill"
                if fill and merged is None:
                    raise ExtractError(f"{path.name}, sheet '{name}': `options: {{merged_cells: fill}}` cannot be "
                                       "applied: the sheet's merged cells could not be read (its part in the "
                                       "workbook was not found), so none could be filled and the rows below a "
                                       "merged value's first would load without it; expected the workbook saved "
                                       "as .xlsx (Excel: File > Save As > Excel Workbook), or its merged cells "
                                       "unmerged and filled in and the option removed")
                found = SheetRead()
                parts.append(f"{index:03d}.parquet")
                count = _stage_sheet(path, sheet, temp / parts[-1], header_row, lineage, found, chunk_rows,
                                     _NO_RANGES if merged is None else merged, fill, shown, unread)
                rows += count
                notices += _sheet_notices(path.name, name, hidden, count, found)
                merged_in_data = merged_in_data or len(found.merged_in_data) > 0
            (temp / SHEETS_STAGED).write_text(json.dumps(parts))
    except ExtractError as exc:  # it may name a sheet, whose name may hold a patient number like a file's
        raise ExtractError(str(exc), quoted=worksheets) from None
    finally:
        workbook.close()
        if archive is not None:
            archive.close()
    advised = {"merged_cells": "fill"} if merged_in_data and merged_cells != "fill" else {}
    return StageResult(rows=rows, notices=tuple(notices), advised_options=advised,
                       quoted=tuple(name for name, _ in chosen))


def _chosen_sheets(path: Path, workbook: calamine.CalamineWorkbook, wanted: list[str] | None) -> list[tuple[str, bool]]:
    worksheets = _worksheets(path, workbook)
    if wanted is None:
        return worksheets
    names = [name for name, _hidden in worksheets]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ExtractError(f"{path.name}: no sheet named {', '.join(repr(m) for m in missing)}; "
                           f"expected one of {', '.join(repr(n) for n in names)} (the source's `options: sheets:`)")
    return [(name, hidden) for name, hidden in worksheets if name in wanted]


def _stage_sheet(path: Path, sheet: calamine.CalamineSheet, out: Path, header_row: int | None, lineage: dict[str, str],
                 found: SheetRead, chunk_rows: int, merged: np.ndarray, fill: bool,
                 shown: Mapping[int, Mapping[int, Shown]] | None = None,
                 unread: Mapping[int, Mapping[int, str]] | None = None) -> int:
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for header, numbers, columns in iter_sheet_records(path, sheet, header_row, found, chunk_rows=chunk_rows,
                                                           merged=merged, fill=fill, shown=shown, unread=unread):
            if writer is None:
                clashes = sorted(set(lineage) & set(header))
                if clashes:
                    raise ExtractError(f"{path.name}, sheet '{sheet.name}': column(s) {clashes} clash with the "
                                       "lineage columns; expected other column names")
                schema = pa.schema([pa.field(name, pa.string()) for name in header]
                                   + [pa.field(LINE_COLUMN, pa.int64())]
                                   + [pa.field(key, pa.string()) for key in lineage],
                                   metadata={SHEET_METADATA_KEY: sheet.name.encode()})
                writer = staging_writer(out, schema)
            arrays = [pa.array(column, type=pa.string()) for column in columns]
            arrays.append(pa.array(numbers, type=pa.int64()))
            arrays += [pa.repeat(pa.scalar(value, pa.string()), len(numbers)) for value in lineage.values()]
            writer.write_table(pa.Table.from_arrays(arrays, schema=writer.schema))
            rows += len(numbers)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _sheet_notices(file_name: str, sheet: str, hidden: bool, rows: int, found: SheetRead) -> list[str]:
    where = f"{file_name}: sheet '{sheet}'"
    notices = [f"{where}: {rows} row{'' if rows == 1 else 's'}" + (" (a hidden sheet)" if hidden else "")]
    if found.detected_header_row not in (None, 1):
        notices.append(f"{where}: column names found on row {found.detected_header_row}, the rows above "
                       "skipped (set `options: header_row:` to choose another)")
    if found.blank_rows:
        notices.append(f"{where}: {found.blank_rows} blank row(s) skipped")
    if found.dropped_columns:
        notices.append(f"{where}: column(s) {', '.join(found.dropped_columns[:_MAX_LISTED])}"
                       f"{' ...' if len(found.dropped_columns) > _MAX_LISTED else ''} have no name and no "
                       "value: left out")
    if found.merged_filled:
        notices.append(f"{where}: merged cells {_listed(found.merged_in_data)} filled: every cell of a range "
                       "reads its top-left value (merged_cells: fill)")
    elif len(found.merged_in_data):
        notices.append(f"{where}: merged cells {_listed(found.merged_in_data)} in the data rows: the value is in "
                       "the top-left cell only, the others are empty (`options: {merged_cells: fill}` gives every "
                       "cell of a range its value)")
    if found.partial_dates:
        notices.append(f"{where}: {found.partial_dates} date cell(s) formatted to show a month and year, or a year, "
                       "and no day, and holding the first day Excel stores for one typed in: staged as shown "
                       "(2021-12, 2021; read with a `%Y-%m` or `%Y` date format)")
    if found.padded_numbers:
        notices.append(f"{where}: {found.padded_numbers} number cell(s) formatted to show leading zeros (0000): "
                       "staged as shown (0042, not 42)")
    if found.unread:
        notices.append(f"{where}: {found.unread} cell(s) hold an Excel error (#N/A, #DIV/0!, ...) or a formula "
                       "whose value was never computed: staged as Excel shows them (the error, or =the formula), "
                       "not as empty, so that a field they feed refuses them (a workbook saved by Excel keeps "
                       "its formulas' values)")
    if len(found.merged_from_header):
        notices.append(f"{where}: merged cells {_listed(found.merged_from_header)} run from the header row (or "
                       "above it) into the data rows: the data rows are left empty, not filled with the header's "
                       "text")
    return notices


def _listed(ranges: np.ndarray) -> str:
    more = len(ranges) - _MAX_LISTED
    return ", ".join(_range_name(r) for r in ranges[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def read_staged_workbook(staged: Path) -> dict[str, pa.Table]:
    """A staged workbook folder as one table per sheet, by sheet name, in workbook order."""
    if not staged.is_dir():
        raise ExtractError(f"{staged}: not a staged workbook folder")
    record_sets: dict[str, pa.Table] = {}
    for part in sorted(staged.glob("*.parquet")):
        table = pq.read_table(part)
        name = (table.schema.metadata or {}).get(SHEET_METADATA_KEY, part.stem.encode()).decode()
        record_sets[name] = table
    return record_sets


class ExcelAdapter(SourceAdapter):
    """Excel (.xlsx, .xlsm, .xlsb, .xls) and OpenDocument (.ods) workbooks: one record set per sheet."""

    format = "excel"
    typed_numbers = True
    description = "Excel and OpenDocument workbooks (.xlsx, .xlsm, .xlsb, .xls, .ods): one record set per sheet"
    suffixes = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
    one_record_set_per_file = False
    Options = ExcelOptions

    def staged_name(self, stem: str) -> str:
        # A folder: one Parquet file per sheet.
        return stem

    def staged_whole(self, staged: Path) -> bool:
        try:
            parts = json.loads((staged / SHEETS_STAGED).read_text())
        except (OSError, ValueError):
            return False
        return all(parquet_whole(staged / part) for part in parts)

    def stage(self, path: Path, out: Path, options: ExcelOptions, lineage: dict[str, str]) -> StageResult:
        # in a child of its own: calamine aborts the process on a workbook whose grid it cannot allocate
        staging = functools.partial(stage_workbook, path, out, header_row=options.header_row, sheets=options.sheets,
                                    merged_cells=options.merged_cells, lineage=lineage)
        return isolated.read_apart(path, staging, what="Excel or OpenDocument workbook", out=out,
                                   reader="python-calamine")

    def record_tables(self, staged: Path, record_set: str) -> dict[str, pa.Table]:
        return read_staged_workbook(staged)


ADAPTER = ExcelAdapter()
