"""Stata datasets as source files: `.dta` (releases 104-119; Stata 14-18 write 118 or 119), read with pyreadstat.

A file is one dataset and one record set, named from the file name by the mapping like a
per-form CSV. `stage_stata` writes it to one Parquet file of strings plus `_line` (the observation
number, from 1) and lineage; `read_stata_metadata` returns the dataset's labels, formats and value
labels without reading the data (for `rtw profile` / `rtw scaffold`). They also go into the staged
file's schema metadata (key `rtw.stata`, JSON). What is done alike to SAS, SPSS and Stata files is
in `readstat.py`.

Gotchas of the format:
- Numbers are stored as byte, int, long (whole numbers), float (single precision) or double.
  Whole numbers are written without `.0`; a float as the shortest text that is the same single
  (0.1, not the 0.10000000149011612 of its double); a double with up to 15 significant digits;
  never in exponent notation. The display format's decimals (`%9.2f`) are not applied.
- A date is a count from 1960-01-01 whose unit the display format names: `%td` days, `%tc`
  milliseconds, `%tC` milliseconds counting the leap seconds (27 since 1972, taken off here),
  `%tm` months, `%tq` quarters, `%th` half-years, `%tw` Stata weeks (52 a year), `%ty` the year
  itself. Each becomes ISO text at the precision its display mask shows: `%td` and
  `%tdDD/NN/CCYY` -> `2019-05-03`, `%tdMon_CCYY` -> `2019-05`, `%tc` -> `2019-05-03T10:20:30`
  (with milliseconds where a value has them), `%tcDD/NN/CCYY` -> `2019-05-03`, `%tm` -> `2019-05`.
  A quarter, half-year or week becomes its year: the warehouse keeps a date to the day, month or
  year. A `%tc` shown as a clock only (`%tcHH:MM`) is written as the whole date-time. Business
  calendars (`%tb`) are not converted: their days are the calendar file's. A value outside years
  1582-9999 is kept as its number (a notice says so). A date of 0 (`%td`, `%tc`, `%tm`, ...) is
  Stata's date 0, 1960-01-01 (1960-01 for a month): staged so, and counted by a notice ("no date
  entered?"), since read as a core date it would load as that date (readstat.py); a `%ty` 0 is the
  year 0, kept as a number.
- Missing values: `.` becomes "". The extended missing values `.a`-`.z` (a study's 'not
  applicable', 'refused', ...) are kept as written (`.a`), like codes, which the mapping
  translates (`codes: {.a: unknown}`) or lists in `null_values`; a notice counts them.
- Value labels are not applied: the data keeps the codes, and the labels (`.a` ones too) are shown
  by `rtw profile` and drafted by `rtw scaffold` as each variable's code list, their codes written
  as the data are (a `%td`'s label on 2936549 is on `9999-12-31`). A variable may name a table the
  file does not hold (Stata allows it: `label values` before `label define`, or after `label drop`);
  readstat gives it no labels and says nothing, so a notice names the variable and the table.
- String values are as delivered: Stata does not pad them, so trailing blanks are the source's.
- Encoding: a release 118 or 119 file (Stata 14 and later) is UTF-8. Older releases declare none;
  readstat reads them as Windows-1252 (what Stata on Windows wrote) and a notice says so. The
  `encoding` option overrides both (iconv names: latin1, cp1252, utf-8, macintosh). Text that does
  not decode is reported with its variable and observation.
- A cut file: readstat reads every observation of a file cut in its value labels, which come last,
  and drops them quietly (an old release whose header declares fewer observations than it holds
  likewise: the rest are taken for value labels). So a file must end where it says: a release 117+
  file at the last offset of its map of sections; a release 113-115 file after its observations and
  the value label tables after them, each of the length it states (releases before 113, Stata 7 and
  older, are not checked). A file cut in its observations is refused by readstat too.
- Releases 120 and 121 (Stata 18 and later, for a dataset holding alias variables, made with
  frames) are not read by readstat: such a file is refused with its release and what to ask for
  (the dataset saved as release 118: `saveold "file.dta", version(14)`), not as a damaged file.
- Reading in chunks: observations have a fixed length, and readstat seeks to a row offset.

Throughput (`benchmarks/adapters.py --rows 200000 --formats stata`, 20 variables, release 119; a
2-core machine shared with other jobs, so CPU seconds (user + sys, less the 0.5 s of imports) are
given beside the best of three wall times): staged and read back, 200,000 observations take 2.3 s
CPU (4.4 s wall) against 0.7 s (1.6 s) for pyreadstat's bare `read_dta`, ~3x; 1,000,000 take 10.0 s
against 4.7 s (2.1x). Staging peaks at 237 MiB for 200,000 observations and 238 MiB for
1,000,000, ~164 MiB of it the imported libraries; the bare read peaks at 377 and 1,221 MiB.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from etl.extract import readstat
from etl.extract.adapter import FormatDetails, OneTableAdapter, StageResult
from etl.extract.errors import ExtractError
from etl.extract.readstat import Dataset, EncodingOptions, Precision, Variable

__all__ = ["ADAPTER", "STATA_METADATA_KEY", "StataAdapter", "StataMetadata", "StataOptions", "iter_stata_chunks",
           "read_stata_metadata", "stage_stata", "staged_stata_metadata"]

#: key of the staged Parquet schema metadata holding the dataset's labels, formats and codes (JSON)
STATA_METADATA_KEY = b"rtw.stata"
_WHAT = "Stata dataset (.dta)"  # what a file that crashes the reader claims to be

_XML_HEADER = re.compile(rb"<stata_dta><header><release>(\d{3})</release>")
_OLD_RELEASES = range(104, 116)  # binary header: release byte, byte order (1 or 2), file type 1
_XML_RELEASES = range(117, 120)  # what readstat reads of the releases with an XML-like header
_ALIAS_RELEASES = (120, 121)  # Stata 18's, for a dataset holding alias variables (frames); readstat reads neither
_UTF8_FROM = 118  # releases from Stata 14 on are UTF-8
_ASSUMED_ENCODING = "WINDOWS-1252"  # readstat's reading of an older release

# Display format: %[-~]t<unit><mask> (%td, %tcDD/NN/CCYY), or the old %d<mask> (days).
_DISPLAY = re.compile(r"%[-~]?(?:t([cCdwmqhyb])|(d))(.*)", re.S)
# A mask's codes, longest first, a `!` escaping the character after it.
_MASK_CODES = re.compile(r"!.|DAYNAME|Dayname|dayname|Month|month|Mon|mon|Day|day|Da|da|JJJ|jjj|CC|cc|YY|yy|NN|nn"
                         r"|DD|dd|HH|Hh|hH|hh|MM|mm|SS|ss|.", re.S)
_DAY_CODES = {"DD", "dd", "JJJ", "jjj"}
_MONTH_CODES = {"Mon", "mon", "Month", "month", "NN", "nn"}
_YEAR_CODES = {"CC", "cc", "YY", "yy"}
_CLOCK_CODES = {"HH", "Hh", "hH", "hh", "MM", "mm", "SS", "ss"}
_PERIODS_A_YEAR = {"m": 12, "q": 4, "h": 2, "w": 52, "y": 1}
# Bytes per value of releases 113-115's numeric types (byte, int, long, float, double); a string's type is its length.
_OLD_WIDTHS = {251: 1, 252: 2, 253: 4, 254: 4, 255: 8}

_DAY_MS = 86_400_000
# The leap seconds, each inserted at the end of these days (UTC); none since 2016, none announced.
_LEAP_DAYS = ("1972-06-30", "1972-12-31", "1973-12-31", "1974-12-31", "1975-12-31", "1976-12-31", "1977-12-31",
              "1978-12-31", "1979-12-31", "1981-06-30", "1982-06-30", "1983-06-30", "1985-06-30", "1987-12-31",
              "1989-12-31", "1990-12-31", "1992-06-30", "1993-06-30", "1994-06-30", "1995-12-31", "1997-06-30",
              "1998-12-31", "2005-12-31", "2008-12-31", "2012-06-30", "2015-06-30", "2016-12-31")
# Where each leap second starts on the %tC clock: the end of its day on %tc, plus the leap seconds before it.
_LEAP_STARTS = np.array([(np.datetime64(day, "D") + 1 - readstat.EPOCH_1960.astype("datetime64[D]")).astype(np.int64)
                         * _DAY_MS + 1000 * index for index, day in enumerate(_LEAP_DAYS)], dtype=np.float64)


class _Temporal(NamedTuple):
    unit: str  # what a value counts: c, C (milliseconds), d (days), w, m, q, h, y (periods)
    shown: Precision  # to which precision it is written


class StataMetadata(Dataset):
    """A Stata dataset's own description: label, variables, value labels."""

    package = "Stata"


class StataOptions(EncodingOptions):
    """Reader options of a Stata dataset."""


# -- reading --------------------------------------------------------------------------------------
def _release(path: Path) -> int:
    """The file's release (118 is Stata 14-18's) from its header; a clear error for anything else."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if found := _XML_HEADER.match(head):
        return _readable_release(path, int(found.group(1)))
    if len(head) >= 4 and head[0] in _OLD_RELEASES and head[1] in (1, 2) and head[2] == 1:
        return head[0]
    what = "a Stata dataset (.dta)"
    if not head:
        raise ExtractError(f"{path.name}: not {what}: the file is empty")
    found_text = readstat.what_it_is(path, head)
    raise ExtractError(f"{path.name}: not {what}: {found_text}; expected '<stata_dta>' (release 117-119) or the "
                       "binary header of release 104-115")


def _readable_release(path: Path, release: int) -> int:
    """The release, if readstat reads it; else an error saying how to save the dataset so that it does
    (readstat's own is 'not supported', which the reading error would take for a damaged file)."""
    if release in _XML_RELEASES:
        return release
    why = (", the release Stata 18 and later write for a dataset holding alias variables (frames)"
           if release in _ALIAS_RELEASES else "")
    raise ExtractError(f"{path.name}: a Stata dta {release} file{why}, which this reader (pyreadstat) cannot read; "
                       "expected release 104-119: ask for the dataset saved as release 118 (in Stata: "
                       "`saveold \"file.dta\", version(14)`), or 119 for more than 32,767 variables")


def _check_length(path: Path, release: int) -> None:
    """A file cut in its value labels, the last section, or whose header declares fewer observations than
    it holds: readstat reads the observations and drops the rest quietly. A release 117+ file says where
    it ends (its map of sections); in 113-115 the observations are followed by value label tables, each
    of the length it says."""
    size = path.stat().st_size
    end = _mapped_end(path, release) if release >= 117 else _labels_end(path, release, size) if release >= 113 else size
    if end is not None and end != size:
        raise ExtractError(f"{path.name}: {size:,} bytes, where the file's header and sections end at byte "
                           f"{end:,}; expected the complete file (truncated or damaged in transfer?)")


def _mapped_end(path: Path, release: int) -> int | None:
    """Where a release 117+ file ends by its map (the map's last offset); None without a readable map
    (readstat refuses such a file itself). The map follows the header, whose dataset label (which may
    say anything, `<map>` too) is stepped over by its length."""
    with path.open("rb") as handle:
        head = handle.read(2048)  # the header: at most 80 characters of label, 4 bytes each
    order, label = head.find(b"<byteorder>"), head.find(b"<label>")
    if order < 0 or label < 0:
        return None
    byte_order = "<" if head[order + 11:order + 14] == b"LSF" else ">"
    width = 1 if release == 117 else 2
    position = label + 7 + width + int.from_bytes(head[label + 7:label + 7 + width], "little" if byte_order == "<"
                                                  else "big")
    if not head.startswith(b"</label><timestamp>", position):
        return None
    position += 19
    position += 1 + head[position] if position < len(head) else 0
    if not head.startswith(b"</timestamp></header><map>", position) or len(head) < position + 26 + 14 * 8:
        return None
    return int(struct.unpack_from(f"{byte_order}14Q", head, position + 26)[-1])


def _labels_end(path: Path, release: int, size: int) -> int:
    """Where a release 113-115 file's last value label table ends: the descriptors (variable types,
    names, sort list, formats, value label names, labels), the expansion fields, the observations, then
    each table (its length, name and padding, then n, text length, n offsets, n values, the text)."""
    with path.open("rb") as handle:
        head = handle.read(109)
        if len(head) < 109:
            return 109
        order = "<" if head[1] == 2 else ">"  # 2: LOHI
        variables, observations = struct.unpack_from(f"{order}HI", head, 4)
        types = handle.read(variables)
        position = 109 + variables * (1 + 33 + 2 + (12 if release == 113 else 49) + 33 + 81) + 2
        while True:  # expansion fields, a zero type and length last
            handle.seek(position)
            field = handle.read(5)
            if len(field) < 5:
                return position
            kind, length = struct.unpack(f"{order}Bi", field)
            if length < 0:  # no field is: not a file that ends anywhere (and a loop, stepping back)
                return position
            position += 5
            if kind == 0 and length == 0:
                break
            position += length
        position += observations * sum(_OLD_WIDTHS.get(kind, kind) for kind in types)
        while position < size:
            handle.seek(position)
            table = handle.read(48)
            if len(table) < 48:
                return position + 48
            length = struct.unpack_from(f"{order}i", table)[0]
            entries, text = struct.unpack_from(f"{order}ii", table, 40)
            if entries < 0 or text < 0 or length != 8 + 8 * entries + text:
                return position  # not a table: no file ends here (one of length -40 looped here)
            position += 40 + length
    return position


def _read(path: Path, file_format: str, *, where: str = "", **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    import pyreadstat  # here, not above: every run discovers this adapter, few read Stata

    # user_missing: an extended missing value is read as its letter ('a'), not as NaN
    return readstat.read_with(pyreadstat.read_dta, path, "Stata", file_format, where=where, user_missing=True,
                              **kwargs)


def read_stata_metadata(path: Path, encoding: str | None = None) -> StataMetadata:
    """A Stata file's label and its variables' labels, formats and value labels, without the data."""
    return readstat.read_apart(path, functools.partial(_read_metadata, path, encoding), what=_WHAT)


def _read_metadata(path: Path, encoding: str | None) -> StataMetadata:
    release = _release(path)
    _frame, meta = _read(path, f"dta {release}", metadataonly=True, encoding=encoding)
    return _metadata(release, meta, encoding)


def _metadata(release: int, meta: Any, encoding: str | None) -> StataMetadata:
    variables = readstat.declared_variables(meta, _temporal_text)
    codes = readstat.declared_codes(meta, variables, _as_text)
    declared = "UTF-8" if release >= _UTF8_FROM else None
    return StataMetadata(file_format=f"dta {release}", table_name=meta.table_name or None,
                         file_label=meta.file_label or None, file_encoding=encoding or declared,
                         variables=variables, rows=meta.number_rows, codes=codes, unlabelled=_unlabelled(meta))


def _unlabelled(meta: Any) -> dict[str, str]:
    """Variables naming a value label table the file does not hold (variable -> table): readstat gives them
    no labels and says nothing. Stata itself allows it (`label values` before `label define`, or after
    `label drop`), so the file is read, and a notice names them."""
    held = meta.value_labels or {}
    return {name: table for name, table in (meta.variable_to_label or {}).items() if table and table not in held}


def _temporal(stata_format: str | None) -> _Temporal | None:
    found = _DISPLAY.fullmatch(stata_format or "")
    if found is None:
        return None
    unit, old_days, mask = found.groups()
    if old_days:  # %d: the days of Stata 9 and before, its mask in another language
        return _Temporal("d", "D")
    if unit == "b":  # a business calendar: days of its own
        return None
    if unit in _PERIODS_A_YEAR:
        return _Temporal(unit, "M" if unit == "m" else "Y")
    codes = set(_MASK_CODES.findall(mask))
    clocked = unit in ("c", "C")
    if clocked and (not mask or codes & _CLOCK_CODES):
        return _Temporal(unit, "s")
    shown: Precision = ("D" if codes & _DAY_CODES or not mask else "M" if codes & _MONTH_CODES
                        else "Y" if codes & _YEAR_CODES else "D")
    return _Temporal(unit, shown)


def _temporal_text(stata_format: str | None) -> str | None:
    temporal = _temporal(stata_format)
    if temporal is None:
        return None
    return readstat.describe_temporal("datetime" if temporal.unit in ("c", "C") else "date", temporal.shown)


def iter_stata_chunks(path: Path, *, encoding: str | None = None,
                      chunk_rows: int | None = None) -> Iterator[tuple[int, pd.DataFrame, StataMetadata]]:
    """Stream a Stata file as (first observation number, raw frame, metadata), `chunk_rows` at a time."""
    release = _release(path)
    file_format = f"dta {release}"
    _check_length(path, release)
    _frame, meta = _read(path, file_format, metadataonly=True, encoding=encoding)
    metadata = _metadata(release, meta, encoding)
    size = chunk_rows or readstat.chunk_rows(len(metadata.variables))

    def read_rows(offset: int, size: int, encoding: str | None) -> pd.DataFrame:
        frame, _meta = _read(path, file_format, where=readstat.from_observation(offset),
                             row_offset=offset, row_limit=size, encoding=encoding)
        return frame

    expected = encoding or ("UTF-8" if release >= _UTF8_FROM else _ASSUMED_ENCODING)
    for first, frame in readstat.read_in_chunks(path, metadata.rows, size, read_rows, encoding=encoding,
                                                expected_encoding=expected):
        yield first, frame, metadata


# -- values to text -------------------------------------------------------------------------------
def _as_text(variable: Variable, values: np.ndarray) -> tuple[np.ndarray, int]:
    temporal = _temporal(variable.format)
    if temporal is None:
        # Stored in fewer than 8 bytes: a float, or a byte/int/long, whose values are whole anyway.
        return (readstat.singles_as_text(values) if variable.length < 8 else readstat.numbers_as_text(values)), 0
    if temporal.unit in _PERIODS_A_YEAR:
        return periods_as_text(values, _PERIODS_A_YEAR[temporal.unit])
    if temporal.unit == "d":
        return readstat.temporal_as_text(values, "date", temporal.shown, count_ms=_DAY_MS)
    milliseconds = without_leap_seconds(values) if temporal.unit == "C" else values
    return readstat.temporal_as_text(milliseconds, "datetime", temporal.shown, count_ms=1)


def periods_as_text(values: np.ndarray, a_year: int) -> tuple[np.ndarray, int]:
    """Months (`a_year` 12) as 'YYYY-MM', quarters, half-years or weeks (4, 2, 52) since 1960 as their
    year, years (1) as themselves; also how many are outside years 1582-9999 (kept as numbers)."""
    out = np.full(len(values), "", dtype=object)
    present = np.isfinite(values)
    periods = np.floor(np.where(present, values, 0))
    years = periods if a_year == 1 else 1960 + np.floor(periods / a_year)
    in_range = present & (years >= 1582) & (years <= 9999)
    if a_year == 12:
        months = (periods % 12 + 1).astype(np.int64)
        out[in_range] = [f"{y:04d}-{m:02d}" for y, m in zip(years[in_range].astype(np.int64).tolist(),
                                                               months[in_range].tolist())]
    else:
        out[in_range] = [f"{y:04d}" for y in years[in_range].astype(np.int64).tolist()]
    outside = present & ~in_range
    out[outside] = readstat.numbers_as_text(values[outside])
    return out, int(outside.sum())


def without_leap_seconds(values: np.ndarray) -> np.ndarray:
    """%tC milliseconds (counting leap seconds) as %tc ones; a leap second itself (23:59:60) is the
    second before it (23:59:59), on its own day."""
    passed = np.searchsorted(_LEAP_STARTS, values, side="right")  # leap seconds begun by each value
    return values - 1000.0 * passed


# -- staging --------------------------------------------------------------------------------------
def stage_stata(path: Path, out: Path, *, lineage: dict[str, str] | None = None, encoding: str | None = None,
                chunk_rows: int | None = None) -> StageResult:
    """Stage a Stata dataset to one Parquet file: variables as text, `_line`, lineage; labels and codes
    in the metadata. All or nothing: the file appears at `out` only when complete. Read in a child process
    (etl/extract/isolated.py): a file that crashes ReadStat fails on its own."""
    chunks = functools.partial(iter_stata_chunks, path, encoding=encoding, chunk_rows=chunk_rows)  # read in the child
    staged = readstat.stage_apart(path, out, chunks, _as_text, lineage, STATA_METADATA_KEY, what=_WHAT)
    notices = staged.notices(path)
    if staged.metadata.file_encoding is None:
        notices.insert(1, f"{path.name}: a {staged.metadata.file_format} file does not say its encoding: text read "
                          "as Windows-1252; set the source's `options: encoding:` if it was written otherwise "
                          "(e.g. on a Mac: macintosh)")
    return StageResult(rows=staged.rows, notices=tuple(notices))


def staged_stata_metadata(staged: Path) -> StataMetadata | None:
    """The labels, formats and codes kept in a staged Stata file's schema; None for a file staged otherwise."""
    return readstat.staged_metadata(staged, STATA_METADATA_KEY, StataMetadata)


class StataAdapter(OneTableAdapter):
    """Stata .dta files: one dataset, one record set per file, named by the mapping."""

    format = "stata"
    typed_numbers = True
    description = "Stata datasets (.dta, releases 104-119)"
    suffixes = (".dta",)
    Options = StataOptions

    def stage(self, path: Path, out: Path, options: StataOptions, lineage: dict[str, str]) -> StageResult:
        return stage_stata(path, out, lineage=lineage, encoding=options.encoding)

    def describe(self, path: Path, options: StataOptions | None = None) -> FormatDetails:
        # Labels, formats and code lists come without the data (the staging notices name them too), their
        # text decoded as staging decodes it.
        metadata = read_stata_metadata(path, options.encoding if options else None)
        return FormatDetails(columns=readstat.column_details(metadata))


ADAPTER = StataAdapter()
