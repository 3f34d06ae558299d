"""SAS datasets as source files: `.xpt` (SAS transport, XPORT v5/v8) and `.sas7bdat`, read with pyreadstat.

A file is one dataset and one record set (an SDTM domain: DM, EX, RS, AE, ...), named from the
file name by the mapping like a per-form CSV. `stage_sas` writes it to one Parquet file of
strings plus `_line` (the observation number, from 1) and lineage; `read_sas_metadata` returns
the dataset's labels and formats without reading the data (for `rtw profile` / `rtw scaffold`).
The labels and formats also go into the staged file's schema metadata (key `rtw.sas`, JSON).
What is done alike to SAS, SPSS and Stata files is in `readstat.py`.

Gotchas of the format:
- Every numeric is a double. A date is a count of days since 1960-01-01, a datetime a count of
  seconds since 1960-01-01T00:00:00, a time seconds since midnight; only the variable's display
  format says which (`DATE9.`, `YYMMDD10.`, `E8601DA.`, `DATETIME20.`, `E8601DT.`, `TIME8.`, ...).
  pyreadstat's own conversion is switched off: it misses month and year formats (`MONYY7.`,
  `YEAR4.`), reads the datetime format `DTDATE.` as days, and wraps times past 24 h. Here each
  temporal format becomes an ISO string at the precision the format shows: `DATE9.` ->
  `2019-05-03`, `MONYY7.` -> `2019-05`, `YEAR4.` -> `2019`, `DATETIME20.` -> `2019-05-03T10:20:30`,
  `TIME8.` -> `25:00:00`. A value outside years 1582-9999 is kept as its number (a notice says so).
  A date of 0 is SAS's date 0, 1960-01-01: staged so, and counted by a notice ("no date entered?"),
  since read as a core date it would load as 1 January 1960 (readstat.py).
- Other numerics become text: whole numbers without `.0`, others with no more significant digits
  than the variable's storage length holds (8 bytes: 15; a `LENGTH 4` variable keeps ~6 digits, so
  0.1 stored in 4 bytes is "0.1", not "0.0999999642"), never in exponent notation.
- Missing numerics (`.` and the special missing values `.A`-`.Z`, `._`) become "": pyreadstat
  does not tell them apart in XPORT files.
- Character values are as delivered, trailing blanks trimmed (SAS pads them). SDTM `--DTC`
  variables are ISO 8601 text, often partial (`2019-05`, `2019`, `2019---15`): kept as written,
  the mapping parses them with their precision.
- Encoding: an XPORT file does not declare one (UTF-8 is assumed); a sas7bdat declares one,
  sometimes wrongly. The `encoding` option overrides both (iconv names: latin1, cp1252, utf-8).
  Text that does not decode is reported with its variable and observation.
- An XPORT file may hold several datasets (a "library"); readstat reads only the first, so such
  a file is refused rather than half read. A `.xpt` written by `PROC CPORT` (not the XPORT engine)
  is another format altogether, and is refused with what to ask for.
- XPORT has no row index, and readstat reaches a row offset by reading every observation before
  it (chunked reading would be quadratic). Observations are fixed-length and packed after the
  `OBS` header record, so each chunk of a v5 file is read through a window that shows readstat
  the file's header followed by the observations from the chunk's first on. (v8 states its
  observation count in that record, so a window would lie: v8 is read by row offset.) readstat
  reads that count only as a limit, and does not report it: it is read here and checked against
  the observations the file's size holds, so that a v8 file cut at a record between observations,
  or holding more than it states, is refused rather than staged as a whole file of fewer.
- The last 80-byte record is padded with blanks (fewer than 80), which readstat cannot tell from
  all-blank observations (text variables only, all empty) shorter than 80 bytes: it drops every such
  observation at the end of the file. In a file that does not count them (v5, or v8 stating 0), those
  the padding cannot hold are observations, and are kept; those it could hold are dropped, as SAS drops
  them (no reader can know). After the last whole observation, blanks of 80 bytes or more, or any other
  byte, are a cut observation, refused.
- A sas7bdat is its header and the pages it counts, each of the length it states: readstat ignores
  bytes after the last page (another file appended, or one sent again into the same name), and such a
  file is refused, as is one cut short (readstat said only 'unreadable'), by every read of it (staging,
  and the metadata read `read_sas_metadata`, `ADAPTER.describe`, for their direct callers: `rtw profile`
  and `rtw scaffold` stage a file before describing it).
- User formats (value labels such as `SEXF.`) live in a separate catalog (.sas7bcat) that is not
  read: coded values stay codes, and the format name is kept in the metadata.

Throughput (`benchmarks/adapters.py`, 500,000 x 20): ~74,000 records/s from XPORT and ~88,000 from
sas7bdat, staged and read back, 2.0-2.4x the time of pyreadstat's bare read; staging peaks at the
same memory for 100,000 or 500,000 observations.
"""

from __future__ import annotations

import functools
import io
import math
import mmap
import re
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from etl.extract import readstat
from etl.extract.adapter import FormatDetails, OneTableAdapter, StageResult
from etl.extract.errors import ExtractError
from etl.extract.readstat import CHUNK_CELLS, Dataset, EncodingOptions, Precision, Shown, Variable

__all__ = ["ADAPTER", "SAS_METADATA_KEY", "SasAdapter", "SasMetadata", "SasOptions", "SasVariable",
           "read_sas_metadata", "stage_sas", "staged_sas_metadata"]

#: key of the staged Parquet schema metadata holding the dataset's labels and formats (JSON)
SAS_METADATA_KEY = b"rtw.sas"
_WHAT = "SAS dataset (.xpt, .sas7bdat)"  # what a file that crashes the reader claims to be

_XPORT_V5 = b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"
_XPORT_V8 = b"HEADER RECORD*******LIBV8   HEADER RECORD!!!!!!!"
_XPORT_MEMBERS = (b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!",
                  b"HEADER RECORD*******MEMBV8  HEADER RECORD!!!!!!!")
_SAS7BDAT = bytes(12) + b"\xc2\xea\x81\x60\xb3\x14\x11\xcf\xbd\x92\x08\x00\x09\xc7\x31\x8c\x18\x1f\x10\x11"
_XPORT_V5_OBS = b"HEADER RECORD*******OBS     HEADER RECORD!!!!!!!"
_XPORT_V8_OBS = b"HEADER RECORD*******OBSV8   HEADER RECORD!!!!!!!"  # then the observation count, 15 digits
_XPORT_OBS = re.compile(re.escape(_XPORT_V5_OBS) + b"|" + re.escape(_XPORT_V8_OBS))
_CPORT = b"**COMPRESSED**"
_SAS7BDAT_HEADER = 216  # the header's bytes up to its page count, 64-bit and aligned
_ALIGNED = 0x33  # a sas7bdat's alignment byte: 4 bytes of padding (byte 32: a 64-bit file; 35: before the lengths)

# A SAS format: optional `$`, a name ending in a letter, width, decimals ("DATE9.", "E8601DA10.", "8.2").
_FORMAT = re.compile(r"\$?([A-Z][A-Z0-9_]*[A-Z_])?(\d+)?(?:\.(\d*))?")

def _formats(value: Shown, unit: Precision, *names: str) -> dict[str, tuple[Shown, Precision]]:
    return dict.fromkeys(names, (value, unit))


_SUFFIXED = ("", "B", "C", "D", "N", "P", "S")  # separator variants: DDMMYYB (blank), ...C (colon), ...
# What a temporal format's values count (days or seconds) and the precision it shows.
_TEMPORAL_FORMATS: dict[str, tuple[Shown, Precision]] = {
    **_formats("date", "D", "DATE", "E8601DA", "IS8601DA", "B8601DA", "ND8601DA", "WEEKDATE", "WEEKDATX",
               "WORDDATE", "WORDDATX", "NLDATE", "NLDATEL", "NLDATEM", "NLDATES", "NLDATEW", "EURDFDD",
               "EURDFDE", "EURDFWKX", "JULIAN",
               *(f"{stem}{s}" for stem in ("DDMMYY", "MMDDYY", "YYMMDD") for s in _SUFFIXED)),
    **_formats("date", "M", "MONYY", "YYMON", "NLDATEYM", "EURDFMY",
               *(f"{stem}{s}" for stem in ("YYMM", "MMYY") for s in _SUFFIXED)),
    **_formats("date", "Y", "YEAR"),
    **_formats("datetime", "s", "DATETIME", "E8601DT", "IS8601DT", "B8601DT", "E8601DZ", "IS8601DZ",
               "B8601DZ", "DATEAMPM", "MDYAMPM", "NLDATM"),
    **_formats("datetime", "D", "DTDATE", "E8601DN", "B8601DN", "DTWKDATX"),
    **_formats("datetime", "M", "DTMONYY"),
    **_formats("datetime", "Y", "DTYEAR"),
    **_formats("time", "s", "TIME", "HHMM", "TOD", "TIMEAMPM", "E8601TM", "IS8601TM", "B8601TM", "NLTIME"),
}

#: A SAS variable's declaration (shared with the other ReadStat formats).
SasVariable = Variable


class SasMetadata(Dataset):
    """A SAS dataset's own description: name, label, encoding and one `SasVariable` per variable."""

    package = "SAS"


class SasOptions(EncodingOptions):
    """Reader options of a SAS dataset."""


# -- reading --------------------------------------------------------------------------------------
def _file_format(path: Path) -> str:
    """'XPORT v5', 'XPORT v8' or 'sas7bdat' from the first bytes; a clear error for anything else. Every read
    starts here (staging, and the metadata read, whose direct callers would otherwise take a damaged file as
    whole: `rtw profile` and `rtw scaffold` stage it first): a sas7bdat not ending where its pages do is
    refused here (`_check_pages`), which readstat's read of its metadata would not notice."""
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_XPORT_V5):
        return "XPORT v5"
    if head.startswith(_XPORT_V8):
        return "XPORT v8"
    if head.startswith(_SAS7BDAT):
        _check_pages(path)
        return "sas7bdat"
    what = "a SAS transport file (.xpt)" if path.suffix.lower() == ".xpt" else "a SAS dataset (.xpt or .sas7bdat)"
    if not head:
        raise ExtractError(f"{path.name}: not {what}: the file is empty")
    if head.startswith(_CPORT):
        raise ExtractError(f"{path.name}: not {what}: it is a SAS CPORT file (PROC CPORT), which only SAS reads; "
                           "ask for the dataset written with the XPORT engine (or as .sas7bdat)")
    found = readstat.what_it_is(path, head)
    raise ExtractError(f"{path.name}: not {what}: {found}; expected 'HEADER RECORD*******LIBRARY' (XPORT) "
                       "or the sas7bdat magic number")


def _xport_members(path: Path) -> int:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        count = 0
        for marker in _XPORT_MEMBERS:
            found = data.find(marker)
            while found >= 0:
                count += 1
                found = data.find(marker, found + 1)
        return count


def _read(path: Path, file_format: str, source: Any = None, **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    import pyreadstat  # here, not above: every run discovers this adapter, few read SAS (its import is 0.07 s)

    reader = pyreadstat.read_sas7bdat if file_format == "sas7bdat" else pyreadstat.read_xport
    return readstat.read_with(reader, path, "SAS", file_format, source, **kwargs)


def read_sas_metadata(path: Path, encoding: str | None = None) -> SasMetadata:
    """A SAS file's dataset name, label, encoding and its variables' labels and formats, without the data."""
    return readstat.read_apart(path, functools.partial(_read_metadata, path, encoding), what=_WHAT)


def _read_metadata(path: Path, encoding: str | None) -> SasMetadata:
    file_format = _file_format(path)
    _frame, meta = _read(path, file_format, metadataonly=True, encoding=encoding)
    return _metadata(file_format, meta)


def _metadata(file_format: str, meta: Any) -> SasMetadata:
    return SasMetadata(file_format=file_format, table_name=meta.table_name or None,
                       file_label=meta.file_label or None, file_encoding=meta.file_encoding or None,
                       variables=readstat.declared_variables(meta, _temporal_text), rows=meta.number_rows)


def _temporal(sas_format: str | None) -> tuple[Shown, Precision] | None:
    match = _FORMAT.fullmatch((sas_format or "").upper())
    return _TEMPORAL_FORMATS.get(match.group(1) or "") if match else None


def _temporal_text(sas_format: str | None) -> str | None:
    temporal = _temporal(sas_format)
    return readstat.describe_temporal(*temporal) if temporal else None


def iter_sas_chunks(path: Path, *, encoding: str | None = None,
                    chunk_rows: int | None = None) -> Iterator[tuple[int, pd.DataFrame, SasMetadata]]:
    """Stream a SAS file as (first observation number, raw frame, metadata), `chunk_rows` at a time."""
    file_format = _file_format(path)
    if file_format.startswith("XPORT"):
        _check_xport_shape(path)
    _frame, meta = _read(path, file_format, metadataonly=True, encoding=encoding)
    metadata = _metadata(file_format, meta)
    layout = _xport_layout(path, metadata) if file_format.startswith("XPORT") else None
    if layout is not None:
        _check_none_past_stated(path, layout)
        if metadata.rows is None and layout.stated is not None:
            metadata = replace(metadata, rows=layout.stated)
    window = layout if file_format == "XPORT v5" else None  # v8 states its count: a window would lie
    uncounted = layout if layout is not None and layout.stated is None else None  # v5, or v8 stating 0
    if uncounted is not None:  # the file's size is the count
        _check_whole_observations(path, uncounted)
    held = _held_observations(path, uncounted) if uncounted is not None else 0
    cells = CHUNK_CELLS if window is not None or file_format == "sas7bdat" else 4 * CHUNK_CELLS  # v8: fewer skips
    size = chunk_rows or readstat.chunk_rows(len(metadata.variables), cells)
    # One blank observation, read once readstat comes back short of those held: past that, it reads none.
    blank_one: list[pd.DataFrame] = []

    def read_rows(offset: int, size: int, encoding: str | None) -> pd.DataFrame:
        frame = blank_one[0].iloc[:0] if blank_one else _read_rows(path, file_format, window, offset, size, encoding)
        blank = min(offset + size, held) - (offset + len(frame))  # held, not read: readstat reached the end
        if blank > 0:
            if not blank_one:
                assert uncounted is not None  # only a file that does not count them holds more than read
                blank_one.append(_blank_observation(path, file_format, uncounted, encoding))
            frame = pd.concat([frame, blank_one[0].iloc[[0] * blank]], ignore_index=True)
        return frame

    for first, frame in readstat.read_in_chunks(path, metadata.rows, size, read_rows, encoding=encoding):
        yield first, frame, metadata


class _XportLayout(NamedTuple):
    data_start: int  # byte where the first observation starts
    observation_length: int  # bytes per observation (XPORT v5 and v8 pack them without gaps)
    stated: int | None  # the observation count a v8 file states; None in v5, or a v8 stating 0


def _xport_layout(path: Path, metadata: SasMetadata) -> _XportLayout | None:
    """Where the observations start (after the OBS or OBSV8 record), their length, and the count a v8 file's
    OBSV8 record states, which readstat reads only as a limit (it does not report it): a file cut at an 80-byte
    record between observations reads as a whole one of fewer, and observations past the count are dropped.
    A count of 0 is taken for a writer that does not count; no count (blanks), readstat refuses itself."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = _XPORT_OBS.search(data)
        if found is None:
            return None
        count = data[found.end():found.end() + 15].strip() if found.group() == _XPORT_V8_OBS else b""
    length = sum(variable.length for variable in metadata.variables.values())
    stated = (int(count) or None) if count.isdigit() else None
    return _XportLayout(found.start() + 80, length, stated) if length > 0 else None


class _XportWindow:
    """An XPORT file seen from observation `first` on: its header, then the observations from there.

    readstat reaches a row offset in XPORT by reading every observation before it, which makes
    chunked reading quadratic; handed this window it starts at the chunk directly. Reads are
    served from a 1 MiB block: readstat asks for one observation at a time, and seeks between.
    """

    _BLOCK = 1 << 20

    def __init__(self, path: Path, layout: _XportLayout, first: int) -> None:
        self._file = path.open("rb")
        self._head = layout.data_start
        self._skip = first * layout.observation_length
        self._size = path.stat().st_size - self._skip
        self._position = 0
        self._block_start, self._block = 0, b""

    def __enter__(self) -> _XportWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._size - self._position if size is None or size < 0 else min(size, self._size - self._position)
        parts = []
        while wanted > 0:
            start = self._position - self._block_start
            if not 0 <= start < len(self._block):
                self._load(self._position)
                start = 0
                if not self._block:
                    break
            part = self._block[start:start + wanted]
            parts.append(part)
            self._position += len(part)
            wanted -= len(part)
        return b"".join(parts)

    def _load(self, position: int) -> None:
        # A block never straddles the header's end, where the window jumps over the skipped observations.
        if position < self._head:
            self._file.seek(position)
            self._block = self._file.read(self._head - position)
        else:
            self._file.seek(position + self._skip)
            self._block = self._file.read(self._BLOCK)
        self._block_start = position


def _read_rows(path: Path, file_format: str, layout: _XportLayout | None, offset: int, size: int,
               encoding: str | None) -> pd.DataFrame:
    where = readstat.from_observation(offset)
    if layout is None or offset == 0:  # the first chunk needs no window
        frame, _meta = _read(path, file_format, row_offset=offset, row_limit=size, encoding=encoding, where=where)
        return frame
    with _XportWindow(path, layout, offset) as window:
        frame, _meta = _read(path, file_format, window, row_limit=size, encoding=encoding, where=where)
        return frame


def _check_xport_shape(path: Path) -> None:
    # readstat stops quietly at the end of a cut XPORT file: its fixed 80-byte records betray the cut.
    size = path.stat().st_size
    if size % 80:
        raise ExtractError(f"{path.name}: truncated: {size} bytes is not a whole number of the 80-byte records "
                           "XPORT is written in; expected the complete file")
    if (members := _xport_members(path)) > 1:
        raise ExtractError(f"{path.name}: an XPORT library of {members} datasets; expected one dataset per file "
                           "(ask for one .xpt per domain)")


def _check_pages(path: Path) -> None:
    """A sas7bdat is its header and its pages, each of the length the header states, as many as it counts:
    readstat reads the pages counted and ignores what follows them (another file appended, or one sent again
    into the same name), and refuses a file cut short only as unreadable. The header's alignment bytes say
    where the lengths are (a 64-bit file's count is 8 bytes), and its byte order."""
    with path.open("rb") as handle:
        head = handle.read(_SAS7BDAT_HEADER)
    if len(head) < _SAS7BDAT_HEADER:
        return  # readstat refuses it
    wide, aligned = head[32] == _ALIGNED, head[35] == _ALIGNED
    order = "<" if head[37] == 1 else ">"
    at = 196 + (4 if aligned else 0)
    header_length, page_length = struct.unpack_from(f"{order}II", head, at)
    pages = struct.unpack_from(f"{order}{'Q' if wide else 'I'}", head, at + 8)[0]
    end, size = header_length + pages * page_length, path.stat().st_size
    if size == end or header_length < 1024 or page_length < 1024:  # lengths no file has: readstat refuses them
        return
    layout = (f"its header ({header_length:,} bytes) and the {pages:,} page(s) of {page_length:,} bytes it counts "
              f"end at byte {end:,}")
    if size > end:
        raise readstat.bytes_after(path, size, end, "its last page", layout)
    raise ExtractError(f"{path.name}: truncated: {size:,} bytes, where {layout}; expected the complete file")


def _check_whole_observations(path: Path, layout: _XportLayout) -> None:
    """A cut at an 80-byte record inside an observation: readstat drops the part quietly. After the
    last whole observation, XPORT only pads the last record with blanks (fewer than 80)."""
    size = path.stat().st_size
    rest = (size - layout.data_start) % layout.observation_length
    if rest == 0:
        return
    with path.open("rb") as handle:
        handle.seek(size - rest)
        if rest >= 80 or handle.read(rest).strip(b" "):
            whole = (size - layout.data_start) // layout.observation_length
            raise ExtractError(f"{path.name}: truncated: observation {whole + 1} is cut short after {rest} of its "
                               f"{layout.observation_length} bytes; expected the complete file")


def _held_observations(path: Path, layout: _XportLayout) -> int:
    """The fewest observations a file that does not count them holds: after them, fewer than 80 bytes
    (the blanks padding the last record). readstat drops every all-blank observation at the end of a
    file of observations shorter than 80 bytes, taking them for that padding, though it holds fewer than
    80 bytes of them (SAS reads those as padding too: which of them were observations no reader can know)."""
    data = path.stat().st_size - layout.data_start
    return max(0, -(-(data - 79) // layout.observation_length))


def _blank_observation(path: Path, file_format: str, layout: _XportLayout, encoding: str | None) -> pd.DataFrame:
    """One all-blank observation, as readstat reads one between others: the file's header followed by one
    blank observation and one that is not (its text blank, its numbers what blank bytes are)."""
    with path.open("rb") as handle:
        head = handle.read(layout.data_start)
    observations = b" " * layout.observation_length + b"A" * layout.observation_length
    padded = observations + b" " * (-len(observations) % 80)
    frame, _meta = _read(path, file_format, io.BytesIO(head + padded), row_limit=1, encoding=encoding)
    return frame


def _check_none_past_stated(path: Path, layout: _XportLayout) -> None:
    """Observations past the count a v8 file states: readstat stops at the count and drops the rest quietly.
    After the last observation XPORT only pads the last 80-byte record with blanks, which are none."""
    size, stated = path.stat().st_size, layout.stated
    if stated is None or (size - layout.data_start) // layout.observation_length <= stated:
        return
    with path.open("rb") as handle:
        handle.seek(max(layout.data_start, size - 80))
        last = handle.read()
    padding = min(len(last) - len(last.rstrip(b" ")), 79)  # a whole blank record is no padding
    held = -(-(size - layout.data_start - padding) // layout.observation_length)
    if held > stated:
        raise ExtractError(f"{path.name}: holds {held:,} observations, more than the {stated:,} its header declares "
                           f"(observation {stated + 1:,} follows them); expected a header that counts "
                           "them all (damaged in transfer, or written by a faulty program?)")


# -- values to text -------------------------------------------------------------------------------
def _significant_digits(length: int) -> int:
    # A SAS numeric of `length` bytes keeps 8*length - 11 mantissa bits (IEEE and IBM alike).
    return max(1, math.floor((8 * min(max(length, 3), 8) - 11) * math.log10(2)))


def numbers_as_text(values: np.ndarray, length: int = 8) -> np.ndarray:
    """Doubles as text: whole numbers without ".0", others to the digits the storage length holds; NaN -> ""."""
    return readstat.numbers_as_text(values, _significant_digits(length))


def temporal_as_text(values: np.ndarray, value: Shown, unit: Precision) -> tuple[np.ndarray, int]:
    """SAS dates/datetimes/times as ISO text at the format's precision; also the count out of range."""
    return readstat.temporal_as_text(values, value, unit, count_ms=86_400_000 if value == "date" else 1_000)


def _as_text(variable: Variable, values: np.ndarray) -> tuple[np.ndarray, int]:
    temporal = _temporal(variable.format)
    if temporal is None:
        return numbers_as_text(values, variable.length), 0
    return temporal_as_text(values, *temporal)


# -- staging --------------------------------------------------------------------------------------
def stage_sas(path: Path, out: Path, *, lineage: dict[str, str] | None = None, encoding: str | None = None,
              chunk_rows: int | None = None) -> StageResult:
    """Stage a SAS dataset to one Parquet file: variables as text, `_line`, lineage; labels in the metadata.

    Written under a temporary name in the same folder and renamed into place, so a failure
    never leaves half a file where a reader would look. Read in a child process (etl/extract/isolated.py):
    a file that crashes ReadStat fails on its own.
    """
    chunks = functools.partial(iter_sas_chunks, path, encoding=encoding, chunk_rows=chunk_rows)  # read in the child
    staged = readstat.stage_apart(path, out, chunks, _as_text, lineage, SAS_METADATA_KEY, what=_WHAT)
    return StageResult(rows=staged.rows, notices=tuple(staged.notices(path)))


def staged_sas_metadata(staged: Path) -> SasMetadata | None:
    """The labels and formats kept in a staged SAS file's schema; None for a file staged otherwise."""
    return readstat.staged_metadata(staged, SAS_METADATA_KEY, SasMetadata)


class SasAdapter(OneTableAdapter):
    """SAS transport (.xpt) and sas7bdat files: one dataset, one record set per file, named by the mapping."""

    format = "sas"
    typed_numbers = True
    description = "SAS datasets: transport files (.xpt, XPORT v5/v8) and .sas7bdat (e.g. SDTM domains)"
    suffixes = (".xpt", ".sas7bdat")
    Options = SasOptions

    def stage(self, path: Path, out: Path, options: SasOptions, lineage: dict[str, str]) -> StageResult:
        return stage_sas(path, out, lineage=lineage, encoding=options.encoding)

    def describe(self, path: Path, options: SasOptions | None = None) -> FormatDetails:
        # Labels and formats come without the data (the staging notices name them too).
        metadata = read_sas_metadata(path, options.encoding if options else None)
        return FormatDetails(columns=readstat.column_details(metadata), encoding=metadata.file_encoding)


ADAPTER = SasAdapter()
