"""Delimited-text reader for Ennov per-form CSV exports and national registry files.

Values are read as the raw strings delivered (empty stays ""; harmonisation parses later), each
record with `_line`, the physical line where it starts, which error and quarantine messages cite.
`stage_csv` writes a file to one Parquet file of string columns plus `_line` and lineage: through
Arrow's CSV reader when every record is one line (`etl.extract.one_line_csv`, the usual case),
else record by record here.

Gotchas of the files we receive:
- Encoding: Ennov writes UTF-8 with a BOM (which must not stick to the first column name);
  Italian registries write cp1252, which differs from latin-1 in 0x80-0x9F (€, curly quotes).
  Valid UTF-8 is decisive (non-ASCII cp1252 text is almost never valid UTF-8); bytes cp1252
  leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) mean latin-1. A sample may cut a multi-byte
  UTF-8 character at its end: that is not a sign of cp1252. Detection sees only the sample, so
  a bad byte further on is reported while reading, with its line.
- Delimiter: `;` in European exports (the comma is their decimal separator), else `,`, tab,
  `|`. `|` and `,` also occur inside values (Ennov AGENTS, free text), so the header decides.
- Decimal commas (`4,5`) are kept as strings; the dialect only records the convention, which
  numbers with thousands separators decide when there are any (`1.234,5`: ','; alone, `12.345` read
  with '.' as most decimals do would load 12.345 where the export meant 12,345).
- Dates: dd/mm/yyyy (the default when every value is ambiguous: European sources), mm/dd/yyyy,
  yyyy-mm-dd, dd.mm.yyyy, Ennov month precision mm/yyyy. Sentinels (99/99/9999, 00/05/2010,
  UK/05/2019) say nothing about the format and are ignored.
- CRLF line endings; quoted fields may hold the delimiter, doubled quotes and line breaks, so a
  record's line is where it starts, not its index. A ragged row is an error, never padded.
- A title or a few lines of notes above the header ("Registro Italiano ... export 2026-11-01"):
  the header is line `header_row` (1 unless the mapping says), the lines above it skipped but
  counted, so messages cite the file's own lines. It is never guessed: a file whose first lines fill
  no more than half as many fields as a line below them (Excel's rule for its header row) is
  refused saying which `header_row` would read it, and so is a file whose header moved from the
  line the mapping names (a line above it as wide as a header), rather than read from another line.
- NUL bytes are no text: between the letters they are UTF-16 without its byte-order mark (which decodes as
  UTF-8), elsewhere a damaged file (a copy cut short and padded with zeros); either is refused at its line,
  as is a record repeating the header (two exports joined into one file), rather than loaded as values.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from etl.extract.adapter import FormatDetails, OneTableAdapter, StageResult, refuse_if_other_format, staging_writer
from etl.extract.errors import ExtractError
from etl.extract.one_line_csv import stage_one_line_records
from etl.fsio import write_bytes, written_atomically

if TYPE_CHECKING:
    from etl.transform.mapping import SourceMapping

DELIMITERS = (";", ",", "\t", "|")  # order breaks ties: European sources first
LINE_COLUMN = "_line"
HEAD_RECORDS = 20  # records below the header row judged to tell a title above it (as for a sheet)

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ASCII_PROBE = bytes(range(32, 127)) + b"\t\r\n"
_DECIMAL_CELL = re.compile(r"-?\d+([.,])\d+")
_GROUPED_DECIMAL_CELL = re.compile(r"-?\d{1,3}(?:([.,\u00a0\u202f' ])\d{3})+(?!\1)([.,])\d+")  # 1.234,5 1 234,5
_SLASH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/\d{4}")
_ISO_DATE = re.compile(r"\d{4}-(\d{2})-(\d{2})")
_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.\d{4}")
_MONTH_YEAR = re.compile(r"(\d{1,2})/\d{4}")


@dataclass(frozen=True)
class CsvDialect:
    encoding: str  # "utf-8-sig", "utf-8", "cp1252", "latin-1"
    delimiter: str  # ";", ",", "\t", "|"
    decimal: str  # "." or ","
    date_format: str | None  # strptime format; None when no column looks like dates
    quotechar: str = '"'
    header_row: int = 1  # the line naming the columns; the lines above it (titles, notes) are skipped

    def __post_init__(self) -> None:
        # Dialects also come from YAML overrides: fail before reading, not halfway through a file.
        if len(self.delimiter) != 1 or len(self.quotechar) != 1 or self.delimiter == self.quotechar:
            raise ValueError(f"delimiter and quotechar must be two different single characters, "
                             f"got {self.delimiter!r} and {self.quotechar!r}")
        if self.decimal not in (".", ","):
            raise ValueError(f"decimal must be '.' or ',', got {self.decimal!r}")
        codecs.lookup(self.encoding)  # LookupError names an unknown encoding
        if self.header_row < 1:
            raise ValueError(f"header_row is a line number from 1, got {self.header_row}")
        # Lines are split on the byte 0x0A before decoding, which needs an ASCII-compatible encoding.
        if not _ascii_compatible(self.encoding):
            raise ValueError(f"encoding {self.encoding!r} is not ASCII-compatible (UTF-16?); re-export as UTF-8")

    def describe(self) -> str:
        """One line for notices: "utf-8-sig, ';', decimal '.', dates %d/%m/%Y" (", header on line 3")."""
        header = f", header on line {self.header_row}" if self.header_row != 1 else ""
        return (f"{self.encoding}, {self.delimiter!r}, decimal {self.decimal!r}, dates {self.date_format or 'none'}"
                f"{header}")


def _ascii_compatible(encoding: str) -> bool:
    try:
        return _ASCII_PROBE.decode(encoding) == _ASCII_PROBE.decode("ascii")
    except ValueError:
        return False


def sniff_dialect(path: Path, *, sample_bytes: int = 256_000, **overrides: str | None) -> CsvDialect:
    """Detect a file's dialect from its first bytes; overrides (from the source mapping) win.

    An override of None counts as not given, so optional YAML options can be passed through.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - {f.name for f in fields(CsvDialect)})
    if unknown:
        raise TypeError(f"sniff_dialect: unknown override(s) {unknown}")
    with path.open("rb") as handle:
        sample = handle.read(sample_bytes)
        truncated = bool(handle.read(1))
    if not sample:
        raise ExtractError(f"{path.name}: empty file; expected a header row naming the columns")
    if sample.startswith(_UTF16_BOMS):
        raise ExtractError(f"{path.name}: starts with a UTF-16 byte-order mark; expected UTF-8 or 8-bit text "
                           "(re-export as UTF-8)")
    if (nul := sample.find(b"\x00")) >= 0:  # before sniffing: UTF-16 without a mark decodes as UTF-8
        start = sample.rfind(b"\n", 0, nul) + 1
        end = sample.find(b"\n", nul)
        _refuse_nul(path, sample[start:end if end >= 0 else len(sample)], sample.count(b"\n", 0, nul) + 1)
    encoding = given["encoding"] if "encoding" in given else _sniff_encoding(sample, truncated)
    if sample.startswith(_UTF8_BOM) and codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        # Read as the mapping says, the mark would become part of the first column's name ("ï»¿id").
        raise ExtractError(f"{path.name}: starts with a UTF-8 byte-order mark, but the mapping says the encoding is "
                           f"{encoding}; expected {encoding} text without the mark: the export was saved as UTF-8 "
                           f"(export it again as {encoding}, or set csv: {{encoding: utf-8-sig}} in the mapping)")
    quotechar = given.get("quotechar", '"')
    header_row = int(given.get("header_row", 1))
    text = sample.decode(encoding, errors="replace")
    if truncated:  # the last line is probably cut
        text = text[: text.rfind("\n") + 1] or text
    if header_row > 1:  # titles and notes above the header say nothing of the dialect
        skipped = text.split("\n", header_row - 1)
        text = skipped[-1] if len(skipped) == header_row else ""
    delimiter = given["delimiter"] if "delimiter" in given else _sniff_delimiter(text, quotechar)
    # Each distinct cell once, with its count: a sample repeats its codes and dates (a 256 kB one holds
    # some 40,000 cells, 2,500 of them distinct), and the sniffing below is a Python step per cell.
    cells = Counter(cell.strip() for record in _parse_sample(text, delimiter, quotechar)[1:] for cell in record)
    decimal = given["decimal"] if "decimal" in given else _sniff_decimal(cells, delimiter)
    date_format = (given["date_format"] or None) if "date_format" in given else _sniff_date_format(cells)
    return CsvDialect(encoding, delimiter, decimal, date_format, quotechar, header_row)


def _sniff_encoding(sample: bytes, truncated: bool) -> str:
    if sample.startswith(_UTF8_BOM):
        return "utf-8-sig"
    try:
        # Not final when the sample was cut: a character split at its end is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=not truncated)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _parse_sample(text: str, delimiter: str, quotechar: str) -> list[list[str]]:
    records: list[list[str]] = []
    with contextlib.suppress(csv.Error):  # e.g. a runaway quote: judge on what parsed before it
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quotechar)
        records.extend(record for record in reader if record)
    return records


def _sniff_delimiter(text: str, quotechar: str) -> str:
    """The candidate giving the most records with the header's field count (at least 2 fields).

    Parsing with each candidate (rather than counting characters) ignores delimiters in quotes. A first
    line of one field (a title above the header) is no header's count: then that of most records, when
    at least half have it, so that the file is refused as having a title rather than read as one column.
    """
    best, best_score = DELIMITERS[0], (-1.0, 0)
    for candidate in DELIMITERS:
        counts = [len(record) for record in _parse_sample(text, candidate, quotechar)]
        width = counts[0] if counts else 0
        if width == 1:
            width, times = max(Counter(counts).items(), key=lambda item: (item[1], item[0]))
            width = width if 2 * times >= len(counts) else 0
        if width < 2:
            continue
        score = (sum(count == width for count in counts) / len(counts), width)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _sniff_decimal(cells: Counter[str], delimiter: str) -> str:
    """The separator of most decimal-looking cells (`cells`: each cell's count); the decimal mark of
    numbers written with thousands separators (`1.234,5`) when there are any: they say it alone, and
    `12.345` beside them is twelve thousand, which the mark ',' then refuses rather than reading 12.345."""
    if delimiter == ",":
        return "."
    separators: Counter[str] = Counter()
    grouped: Counter[str] = Counter()
    for cell, count in cells.items():
        if match := _GROUPED_DECIMAL_CELL.fullmatch(cell):
            grouped[match[2]] += count
        elif match := _DECIMAL_CELL.fullmatch(cell):
            separators[match[1]] += count
    votes = grouped or separators
    return "," if votes[","] > votes["."] else "."


def _sniff_date_format(cells: Counter[str]) -> str | None:
    """The most common date layout among cells that are plausible dates (sentinels are not);
    `cells`: each cell's count."""
    votes: Counter[str] = Counter()
    day_first = month_first = month_year = 0
    for cell, count in cells.items():
        if match := _SLASH_DATE.fullmatch(cell):
            first, second = int(match[1]), int(match[2])
            as_dmy, as_mdy = _is_day_month(first, second), _is_day_month(second, first)
            if as_dmy or as_mdy:
                votes["%d/%m/%Y"] += count
                day_first += count * (as_dmy and not as_mdy)
                month_first += count * (as_mdy and not as_dmy)
        elif (match := _ISO_DATE.fullmatch(cell)) and _is_day_month(int(match[2]), int(match[1])):
            votes["%Y-%m-%d"] += count
        elif (match := _DOTTED_DATE.fullmatch(cell)) and _is_day_month(int(match[1]), int(match[2])):
            votes["%d.%m.%Y"] += count
        elif (match := _MONTH_YEAR.fullmatch(cell)) and 1 <= int(match[1]) <= 12:
            month_year += count
    if votes:
        layout = votes.most_common(1)[0][0]
        return "%m/%d/%Y" if layout == "%d/%m/%Y" and month_first > day_first else layout
    # Month precision only counts when no column holds full dates (Ennov ENROL has both).
    return "%m/%Y" if month_year else None


def _is_day_month(day: int, month: int) -> bool:
    return 1 <= day <= 31 and 1 <= month <= 12


def iter_csv_rows(path: Path, dialect: CsvDialect, *, chunk_rows: int = 50_000) -> Iterator[pd.DataFrame]:
    """Stream a file's records as frames of raw strings plus `_line`, the line where each record starts.

    The header is the record on line `dialect.header_row` (see `_header`). A file with a header and no
    records yields one empty frame, so callers still see its columns.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    with path.open("rb") as handle:
        header_line, header, records = _header(path, _decoded_lines(path, handle, dialect.encoding), dialect)
        rows: list[list[str]] = []
        lines: list[int] = []
        yielded = False
        for line, record in records:
            if len(record) != len(header):
                raise ExtractError(
                    f"{path.name}, line {line}: expected {len(header)} fields, found {len(record)} "
                    f"(delimiter {dialect.delimiter!r}; is a delimiter or line break in a value unquoted?)")
            if _column_name(record[0]) == header[0] and [_column_name(value) for value in record] == header:
                raise ExtractError(
                    f"{path.name}, line {line}: the header of line {header_line} again; expected one header and "
                    "records below it (two exports joined into one file? send each export as a file of its own)")
            rows.append(record)
            lines.append(line)
            if len(rows) == chunk_rows:
                yield _frame(header, rows, lines)
                rows, lines, yielded = [], [], True
        if rows or not yielded:
            yield _frame(header, rows, lines)


def _decoded_lines(path: Path, handle: BinaryIO, encoding: str) -> Iterator[str]:
    # Decoding line by line lets an undecodable byte be reported with its line; splitting bytes on
    # 0x0A is safe because in an ASCII-compatible encoding that byte is always a line feed.
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    number = 0
    for number, raw in enumerate(handle, start=1):
        if b"\x00" in raw:
            _refuse_nul(path, raw, number)
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as error:
            raise ExtractError(
                f"{path.name}, line {number}: bytes {raw[error.start:error.end]!r} at byte {error.start + 1} of the "
                f"line cannot be decoded as {encoding}; expected {encoding} text "
                "(set the source's csv encoding if the file uses another)") from None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ExtractError(f"{path.name}, line {number}: the file ends inside a multi-byte character; "
                           f"expected complete {encoding} text") from None


def _refuse_nul(path: Path, raw: bytes, line: int) -> NoReturn:
    """Refuse a line holding a NUL byte (`raw`), naming it: no text in any encoding read here holds one. Between the
    letters, they are UTF-16 without a byte-order mark (read as UTF-8, junk column names or 'expected 2 fields');
    elsewhere a damaged file (a copy cut short and padded with zeros) or binary data, whose NULs loaded as values."""
    at = raw.find(b"\x00")
    nuls = sorted((raw[0::2].count(0), raw[1::2].count(0)))  # UTF-16's: at every other byte, one of the two
    why = ("NUL bytes between the letters are UTF-16 text without a byte-order mark (re-export as UTF-8)"
           if nuls[1] >= 2 and nuls[1] * 4 >= len(raw) and nuls[0] * 10 <= nuls[1] else
           "NUL bytes are no text (a damaged file, such as a copy cut short and padded with zeros, or binary "
           "data: send the export again)")
    raise ExtractError(f"{path.name}, line {line}: a NUL byte (0x00) at byte {at + 1} of the line; expected UTF-8 or "
                       f"8-bit text: {why}")


def _records(path: Path, lines: Iterable[str], dialect: CsvDialect, *,
             first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank record, `lines` starting at line `first_line`; a quoting
    error cites the record's first line."""
    # strict: a stray quote is an error citing its line, not a value silently swallowing the next ones.
    reader = csv.reader(lines, delimiter=dialect.delimiter, quotechar=dialect.quotechar, strict=True)
    end_of_previous = first_line - 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "field larger than field limit" in str(error):
                raise ExtractError(
                    f"{path.name}, line {end_of_previous + 1}: a value in the record starting here runs past "
                    f"{csv.field_size_limit():,} characters (a quote opened and never closed, or a value that long); "
                    "expected quoted values to be closed and values of at most that length") from None
            if "new-line character seen in unquoted field" in str(error):  # Python's words speak of opening files
                raise ExtractError(
                    f"{path.name}, line {end_of_previous + 1}: a carriage return (\\r) alone inside an unquoted value "
                    "(binary data, or text from an old Mac); expected lines ending in \\n or \\r\\n and line breaks "
                    "in values quoted") from None
            raise ExtractError(f"{path.name}, line {end_of_previous + 1}: malformed quoting in the record starting "
                               f"here ({error}); expected quoted values to be closed and followed by a delimiter") \
                from None
        start, end_of_previous = end_of_previous + 1, first_line - 1 + reader.line_num
        if record:
            yield start, record


Records = Iterator[tuple[int, list[str]]]


def _header(path: Path, lines: Iterator[str], dialect: CsvDialect) -> tuple[int, list[str], Records]:
    """The header's line and names, and the records below it, from the file's decoded `lines`.

    The lines above `header_row` are skipped, never parsed as records (a note may hold a stray quote).
    With the first records below, they must show the header where `header_row` says (`_header_seen`):
    a title above it, or a header that moved, is refused naming the header_row that reads the file."""
    header_row = dialect.header_row
    above = [(number, _fields(text, dialect)) for number, text in enumerate(islice(lines, header_row - 1), start=1)]
    records = _records(path, lines, dialect, first_line=header_row)
    head: list[tuple[int, list[str]]] = []
    failure: ExtractError | None = None
    try:
        for record in records:
            head.append(record)
            if len(head) > HEAD_RECORDS:
                break
    except ExtractError as error:  # raised where reading reaches it: after the header's own checks
        failure = error
    if not head:
        if failure:
            raise failure
        expected = f"line {header_row} naming the columns (header_row)" if header_row > 1 else \
            "a first line naming the columns"
        raise ExtractError(f"{path.name}: no header row; expected {expected}")
    line, names = head[0]
    _refuse_misplaced_header(path, [*((n, f) for n, f in above if f), *head], line, header_row, dialect.delimiter)
    if header_row > 1 and line != header_row:
        raise ExtractError(f"{path.name}, line {header_row}: the header row is blank; expected the column names "
                           f"on the line header_row names (the lines above it are skipped)")
    rest: Records = chain(head[1:], _raising(failure) if failure else records)
    return line, _header_names(path, line, names), rest


def _fields(text: str, dialect: CsvDialect) -> list[str]:
    """A skipped line's fields, read leniently (a note is no record); none for a blank line."""
    return next(csv.reader([text], delimiter=dialect.delimiter, quotechar=dialect.quotechar), [])


def _raising(error: ExtractError) -> Records:
    raise error
    yield  # a generator: raises when reached


def _refuse_misplaced_header(path: Path, head: list[tuple[int, list[str]]], line: int, header_row: int,
                             delimiter: str) -> None:
    """Refuse a header on `line` where the file's first lines (`head`: skipped lines, then records) show
    it on another: with `header_row` not given, a title above it; given, a header that moved."""
    seen = _header_seen(head)
    if seen is None or seen == line:
        return
    how = f"set header_row: {seen} (the mapping's options:, or --option header_row={seen})"
    if seen > line:
        titles = [fields for number, fields in head if line <= number < seen]
        wide = len(dict(head)[seen])
        fewer = "fewer fields" if all(len(fields) < wide for fields in titles) else "fewer fields filled"
        span = f"line {line} has" if seen == line + 1 else f"lines {line}-{seen - 1} have"
        unnamed = [i for i, name in enumerate(titles[0], start=1) if not name.strip()] \
            if len(titles) == 1 and len(titles[0]) == wide else []
        if header_row == 1 and unnamed and len(unnamed) <= wide / 2:  # a header leaving some unnamed, not a title
            raise ExtractError(f"{path.name}: line {line}, the header, leaves column{'s' * (len(unnamed) > 1)} "
                               f"{', '.join(map(str, unnamed))} without a name, where line {seen} fills "
                               f"{'them' if len(unnamed) > 1 else 'it'}: expected a name for every column; "
                               f"or is line {line} a title above the header? {how}")
        if header_row == 1:
            # A one-column file whose values hold the delimiter ("Smith, John") looks the same
            one_column = (f"; or a one-column file whose values hold {delimiter!r}: set delimiter: to a character "
                          "they never hold (--option delimiter='|')") if all(len(f) == 1 for f in titles) else ""
            raise ExtractError(f"{path.name}: {span} {fewer} than line {seen}: a title above the header? {how}"
                               f"{one_column}")
        raise ExtractError(f"{path.name}: {span} {fewer} than line {seen}: has the header moved down (another title "
                           f"line above it)? expected the column names on line {header_row} (header_row); "
                           f"if the export now puts them on line {seen}, {how}")
    raise ExtractError(f"{path.name}, line {seen}, above header_row {header_row}: as many fields filled as a header "
                       f"or a record: has the header moved up? expected only titles or notes above line "
                       f"{header_row}; if the export now puts the column names on line {seen}, {how}")


def _header_seen(head: list[tuple[int, list[str]]]) -> int | None:
    """The line a file's first lines ((line, fields)) show as its header: the first filling more than half as
    many fields as the fullest of them (a sheet's rule: title lines fill one), when the line after it has as
    many fields (a ragged record is no header); None when they show none."""
    filled = [(number, len(fields), sum(1 for value in fields if value.strip())) for number, fields in head]
    fullest = max((count for _number, _width, count in filled), default=0)
    for index, (number, width, count) in enumerate(filled):
        if count > fullest // 2:
            after = filled[index + 1] if index + 1 < len(filled) else None
            return number if after is None or after[1] == width else None
    return None


def _column_name(name: str) -> str:
    """A header field as the column's name: without blanks around it, nor the BOM that survives when the file
    is read with an explicit "utf-8" override. Staging and `rtw forget` (`without_patients`) name columns so."""
    return name.strip().lstrip("\ufeff").strip()


def _header_names(path: Path, line: int, names: list[str]) -> list[str]:
    header = [_column_name(name) for name in names]
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            raise ExtractError(f"{path.name}, line {line}: header column {position} has no name; "
                               "expected every column named (a trailing delimiter?)")
        if name in seen:  # by position: a file without its header row has a patient's record for names
            raise ExtractError(f"{path.name}, line {line}: header column {position} repeats the name of column "
                               f"{seen[name]}; expected unique column names (or is line {line} a record, the "
                               "header row missing?)")
        if name == LINE_COLUMN:
            raise ExtractError(f"{path.name}, line {line}: header column {position} is '{LINE_COLUMN}', "
                               "a name the reader reserves for line numbers")
        seen[name] = position
    return header


def _frame(header: list[str], rows: list[list[str]], lines: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    frame[LINE_COLUMN] = pd.Series(lines, dtype="int64")
    return frame


def stage_csv(path: Path, out_path: Path, dialect: CsvDialect, *, lineage: dict[str, str] | None = None,
              chunk_rows: int = 50_000) -> StageResult:
    """Stage a delimited file to one Parquet file: source columns as strings, `_line`, lineage constants.

    Written under a temporary name in the same folder and renamed into place, so a failure
    never leaves half a file where a reader would look.
    """
    lineage = dict(lineage or {})
    with written_atomically(out_path) as temp:
        with path.open("rb") as handle:  # the header, checked whichever reader stages the records
            header_line, header, _records_below = _header(path, _decoded_lines(path, handle, dialect.encoding),
                                                          dialect)
        schema = _staging_schema(path, header, lineage)
        rows = stage_one_line_records(path, temp, header, dialect.encoding, dialect.delimiter, dialect.quotechar,
                                      schema, lineage, header_line=header_line)
        if rows is None:
            rows = 0
            with staging_writer(temp, schema) as writer:
                for chunk in iter_csv_rows(path, dialect, chunk_rows=chunk_rows):
                    writer.write_table(pa.Table.from_pandas(chunk.assign(**lineage), schema=schema,
                                                            preserve_index=False))
                    rows += len(chunk)
    notices = [f"{path.name}: {dialect.describe()}"]
    if not rows:
        notices.append(f"{path.name}: header only, no records")
    return StageResult(rows=rows, notices=tuple(notices))


def _staging_schema(path: Path, columns: list[str], lineage: dict[str, str]) -> pa.Schema:
    clashes = sorted(set(lineage) & set(columns))
    if clashes:
        raise ExtractError(f"{path.name}: lineage column(s) {clashes} clash with the file's columns; "
                           "expected distinct names")
    source_columns = [name for name in columns if name != LINE_COLUMN]
    return pa.schema([pa.field(name, pa.string()) for name in source_columns]
                     + [pa.field(LINE_COLUMN, pa.int64())]
                     + [pa.field(key, pa.string()) for key in lineage])


class CsvOptions(BaseModel):
    """Reader options of a delimited file; each one not given is detected from the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    encoding: str | None = Field(None, description="e.g. cp1252, utf-8-sig, latin-1")
    delimiter: str | None = Field(None, description="e.g. ';', ',', a tab")
    decimal: str | None = Field(None, description="'.' or ','")
    date_format: str | None = Field(None, description="the date layout, for notices only")
    header_row: int | None = Field(
        None, ge=1, description="the line naming the columns (1-based); lines above it (a title, notes) are skipped, "
        "and still counted in line numbers. Default: line 1; a file whose first lines fill no more than half as many "
        "fields as a line below is refused naming the header_row that reads it, never read from another line")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str | None) -> str | None:
        """Refused when the mapping is read, not when the first file is (where it stopped the run)."""
        if encoding is not None:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(f"unknown encoding {encoding!r}; expected a code page such as cp1252, utf-8-sig, "
                                 "latin-1") from None
        return encoding

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, delimiter: str | None) -> str | None:
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError(f"{delimiter!r} is {len(delimiter)} characters; expected one, such as ';', ',' or a tab")
        return delimiter


class CsvAdapter(OneTableAdapter):
    """Per-form CSV (Ennov) and national registry files: one record set per file, named by the mapping."""

    format = "csv"
    description = "delimited text: per-form CSV exports, national registry files"
    suffixes = (".csv", ".txt", ".tsv")
    Options = CsvOptions

    def read_options(self, mapping: SourceMapping) -> CsvOptions:
        # `csv:` is the older spelling of this format's `options:`; both may be given.
        given = {k: v for k, v in mapping.csv.model_dump().items() if v is not None}
        return CsvOptions.model_validate({**given, **mapping.options})

    def stage(self, path: Path, out: Path, options: CsvOptions, lineage: dict[str, str]) -> StageResult:
        refuse_if_other_format(path, "a delimited text (CSV) file")
        return stage_csv(path, out, sniff_dialect(path, **options.model_dump()), lineage=lineage)

    def without_patients(self, path: Path, mapping: SourceMapping, erased: Callable[[str], bool]) -> bool:
        # Written back in the dialect it was read with (the mapping's options over what is detected).
        options = self.read_options(mapping).model_dump()
        try:
            dialect = sniff_dialect(path, **options)
            text = path.read_bytes().decode(dialect.encoding)
        except (ExtractError, UnicodeDecodeError):
            # A copy of an older export, staged under an earlier mapping (the registry moved from cp1252 to UTF-8
            # exports, and the mapping with it): read in the encoding its bytes tell, and written back in it.
            dialect = sniff_dialect(path, **{**options, "encoding": None})
            try:
                text = path.read_bytes().decode(dialect.encoding)
            except UnicodeDecodeError:
                raise ExtractError(f"{path.name}: cannot decode as {options.get('encoding') or dialect.encoding} "
                                   "(nor as detected) to remove the patient's rows") from None
        # The lines above the header row (a title, notes) are kept as they are; the header is the first row
        # below them that is not blank, as staging reads it.
        above = _start_of_line(text, dialect.header_row)
        rows = list(csv.reader(io.StringIO(text[above:], newline=""), delimiter=dialect.delimiter,
                               quotechar=dialect.quotechar))
        header = next((i for i, row in enumerate(rows) if row), 0)
        positions = [i for i, name in enumerate(rows[header] if rows else [])
                     if _column_name(name) == mapping.patient_key]
        kept = rows[:header + 1] + [r for r in rows[header + 1:] if not any(i < len(r) and r[i].strip()
                                                                            and erased(r[i]) for i in positions)]
        if len(kept) == len(rows):
            return False
        out = io.StringIO(newline="")
        csv.writer(out, delimiter=dialect.delimiter, quotechar=dialect.quotechar,
                   lineterminator="\r\n" if "\r\n" in text else "\n").writerows(kept)
        write_bytes(path, (text[:above] + out.getvalue()).encode(dialect.encoding))
        return True

    def describe(self, path: Path, options: CsvOptions | None = None) -> FormatDetails:
        # What staging will read: the options given over what is detected.
        dialect = sniff_dialect(path, **(options.model_dump() if options else {}))
        notes = (f"encoding {dialect.encoding}", f"delimiter {dialect.delimiter!r}",
                 f"decimal mark {dialect.decimal!r}", f"dates {dialect.date_format or 'none detected'}",
                 *([f"header on line {dialect.header_row}"] if dialect.header_row != 1 else []))
        return FormatDetails(notes=notes, encoding=dialect.encoding, delimiter=dialect.delimiter,
                             decimal=dialect.decimal)


def _start_of_line(text: str, line: int) -> int:
    """Where line `line` (1-based; a line ends at a line feed, as the reader splits them) starts in `text`."""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if not start:
            return len(text)
    return start


ADAPTER = CsvAdapter()
