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
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from etl.extract.adapter import FormatDetails, OneTableAdapter, StageResult, refuse_if_other_format, staging_writer
from etl.extract.errors import ExtractError
from etl.extract.one_line_csv import stage_one_line_records
from etl.fsio import write_bytes, written_atomically

if TYPE_CHECKING:
    from etl.transform.mapping import SourceMapping

DELIMITERS = (";", ",", "\t", "|")  # order breaks ties: European sources first
LINE_COLUMN = "_line"

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

    def __post_init__(self) -> None:
        # Dialects also come from YAML overrides: fail before reading, not halfway through a file.
        if len(self.delimiter) != 1 or len(self.quotechar) != 1 or self.delimiter == self.quotechar:
            raise ValueError(f"delimiter and quotechar must be two different single characters, "
                             f"got {self.delimiter!r} and {self.quotechar!r}")
        if self.decimal not in (".", ","):
            raise ValueError(f"decimal must be '.' or ',', got {self.decimal!r}")
        codecs.lookup(self.encoding)  # LookupError names an unknown encoding
        # Lines are split on the byte 0x0A before decoding, which needs an ASCII-compatible encoding.
        if not _ascii_compatible(self.encoding):
            raise ValueError(f"encoding {self.encoding!r} is not ASCII-compatible (UTF-16?); re-export as UTF-8")

    def describe(self) -> str:
        """One line for notices: "utf-8-sig, ';', decimal '.', dates %d/%m/%Y"."""
        return f"{self.encoding}, {self.delimiter!r}, decimal {self.decimal!r}, dates {self.date_format or 'none'}"


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
    encoding = given["encoding"] if "encoding" in given else _sniff_encoding(sample, truncated)
    if sample.startswith(_UTF8_BOM) and codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        # Read as the mapping says, the mark would become part of the first column's name ("ï»¿id").
        raise ExtractError(f"{path.name}: starts with a UTF-8 byte-order mark, but the mapping says the encoding is "
                           f"{encoding}; expected {encoding} text without the mark: the export was saved as UTF-8 "
                           f"(export it again as {encoding}, or set csv: {{encoding: utf-8-sig}} in the mapping)")
    quotechar = given.get("quotechar", '"')
    text = sample.decode(encoding, errors="replace")
    if truncated:  # the last line is probably cut
        text = text[: text.rfind("\n") + 1] or text
    delimiter = given["delimiter"] if "delimiter" in given else _sniff_delimiter(text, quotechar)
    # Each distinct cell once, with its count: a sample repeats its codes and dates (a 256 kB one holds
    # some 40,000 cells, 2,500 of them distinct), and the sniffing below is a Python step per cell.
    cells = Counter(cell.strip() for record in _parse_sample(text, delimiter, quotechar)[1:] for cell in record)
    decimal = given["decimal"] if "decimal" in given else _sniff_decimal(cells, delimiter)
    date_format = (given["date_format"] or None) if "date_format" in given else _sniff_date_format(cells)
    return CsvDialect(encoding, delimiter, decimal, date_format, quotechar)


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

    Parsing with each candidate (rather than counting characters) ignores delimiters in quotes.
    """
    best, best_score = DELIMITERS[0], (-1.0, 0)
    for candidate in DELIMITERS:
        counts = [len(record) for record in _parse_sample(text, candidate, quotechar)]
        if not counts or counts[0] < 2:
            continue
        score = (sum(count == counts[0] for count in counts) / len(counts), counts[0])
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

    The first record is the header. A file with a header and no records yields one empty frame,
    so callers still see its columns.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    with path.open("rb") as handle:
        records = _records(path, _decoded_lines(path, handle, dialect.encoding), dialect)
        header = _header(path, records)
        rows: list[list[str]] = []
        lines: list[int] = []
        yielded = False
        for line, record in records:
            if len(record) != len(header):
                raise ExtractError(
                    f"{path.name}, line {line}: expected {len(header)} fields, found {len(record)} "
                    f"(delimiter {dialect.delimiter!r}; is a delimiter or line break in a value unquoted?)")
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


def _records(path: Path, lines: Iterable[str], dialect: CsvDialect) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank record; a quoting error cites the record's first line."""
    # strict: a stray quote is an error citing its line, not a value silently swallowing the next ones.
    reader = csv.reader(lines, delimiter=dialect.delimiter, quotechar=dialect.quotechar, strict=True)
    end_of_previous = 0
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
            raise ExtractError(f"{path.name}, line {end_of_previous + 1}: malformed quoting in the record starting "
                               f"here ({error}); expected quoted values to be closed and followed by a delimiter") \
                from None
        start, end_of_previous = end_of_previous + 1, reader.line_num
        if record:
            yield start, record


def _header(path: Path, records: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(records, None)
    if first is None:
        raise ExtractError(f"{path.name}: no header row; expected a first line naming the columns")
    line, names = first
    # A BOM survives here when the file was read with an explicit "utf-8" override.
    header = [name.strip().lstrip("\ufeff").strip() for name in names]
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            raise ExtractError(f"{path.name}, line {line}: header column {position} has no name; "
                               "expected every column named (a trailing delimiter?)")
        if name in seen:
            raise ExtractError(f"{path.name}, line {line}: header column {position} repeats {name!r} "
                               f"(column {seen[name]}); expected unique column names")
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
            header = _header(path, _records(path, _decoded_lines(path, handle, dialect.encoding), dialect))
        schema = _staging_schema(path, header, lineage)
        rows = stage_one_line_records(path, temp, header, dialect.encoding, dialect.delimiter, dialect.quotechar,
                                      schema, lineage)
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
        dialect = sniff_dialect(path, **self.read_options(mapping).model_dump())
        try:
            text = path.read_bytes().decode(dialect.encoding)
        except UnicodeDecodeError:
            raise ExtractError(f"{path.name}: cannot decode as {dialect.encoding} to remove the patient's rows") \
                from None
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter,
                               quotechar=dialect.quotechar))
        positions = [i for i, name in enumerate(rows[0] if rows else []) if name.strip() == mapping.patient_key]
        kept = rows[:1] + [r for r in rows[1:] if not any(i < len(r) and r[i].strip() and erased(r[i])
                                                          for i in positions)]
        if len(kept) == len(rows):
            return False
        out = io.StringIO(newline="")
        csv.writer(out, delimiter=dialect.delimiter, quotechar=dialect.quotechar,
                   lineterminator="\r\n" if "\r\n" in text else "\n").writerows(kept)
        write_bytes(path, out.getvalue().encode(dialect.encoding))
        return True

    def describe(self, path: Path, options: Any = None) -> FormatDetails:
        dialect = sniff_dialect(path)
        notes = (f"encoding {dialect.encoding}", f"delimiter {dialect.delimiter!r}",
                 f"decimal mark {dialect.decimal!r}", f"dates {dialect.date_format or 'none detected'}")
        return FormatDetails(notes=notes, encoding=dialect.encoding, delimiter=dialect.delimiter,
                             decimal=dialect.decimal)


ADAPTER = CsvAdapter()
