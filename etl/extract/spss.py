"""SPSS data files as source files: `.sav` (uncompressed or bytecode-compressed) and `.zsav`, read with pyreadstat.

A file is one dataset and one record set (a national registry's cases, one form), named from the
file name by the mapping like a per-form CSV. `stage_spss` writes it to one Parquet file of
strings plus `_line` (the case number, from 1) and lineage; `read_spss_metadata` returns the
file's labels, formats, value labels and missing values without reading the data (for
`rtw profile` / `rtw scaffold`). They also go into the staged file's schema metadata (key
`rtw.spss`, JSON). What is done alike to SAS, SPSS and Stata files is in `readstat.py`.

Gotchas of the format:
- Every numeric is a double. A date, a datetime and a time are all counts of seconds: dates and
  datetimes since 1582-10-14 00:00:00 (the first day of the Gregorian calendar, less one), a time
  since midnight; only the variable's print format says which (`DATE11`, `ADATE10` (mm/dd/yyyy),
  `EDATE10` (dd.mm.yyyy), `SDATE10`, `JDATE7`, `DATETIME20`, `YMDHMS19`, `TIME8`, ...). Each
  becomes ISO text at the precision the format shows: `DATE11` -> `2019-05-03`, `MOYR8` ->
  `2019-05`, `DATETIME20` -> `2019-05-03T10:20:30`, `TIME8` -> `25:00:00` (`DTIME`, `MTIME` too:
  durations, written in hours). A quarter or week (`QYR`, `WKYR`) becomes its year: the warehouse
  keeps a date to the day, month or year. `WKDAY` and `MONTH` (1-7, 1-12) are numbers, not dates. A
  value outside years 1582-9999 is kept as its number (a notice says so). pyreadstat's own
  conversion is switched off, as for SAS: it knows no month, quarter or week formats.
- A date of 0 is SPSS's date 0, 1582-10-14: no date of a patient, but a date left empty and typed
  as 0 (or a computation over an empty date). It is staged as SPSS shows it (`1582-10-14`,
  `1582-10-14T00:00:00`), a text no other value has, so that a mapping's `null_values` can name it
  without emptying the zeros of other variables; a notice counts them per variable ("SPSS's date 0
  (1582-10-14): no date entered?"). Read as a core date it quarantines its record as a date before
  1900 (`XT-DATE-NOT-BEFORE-1900`, whose reason does not say date 0: the notice does). A time's 0 is
  midnight, not counted. SAS's and Stata's date 0, 1960-01-01, is counted alike (readstat.py).
- Other numerics become text: whole numbers without `.0`, others with up to 15 significant digits
  (what a double holds without binary noise), never in exponent notation. The print format's
  decimals (`F8.2`) are not applied: 3.5 is "3.5", not "3.50".
- Missing values: the system-missing value becomes "". User-missing values (the file's MISSING
  VALUES: codes such as 9 or 'NA', or a range 90 thru 99) are kept as delivered, as SPSS itself
  shows them: a registry's 9 'unknown' is a code like any other, which the mapping translates
  (`codes: {9: unknown}`) or lists in `null_values`. Nothing is emptied silently: SPSS treats them
  as missing in its statistics, the warehouse says what they mean.
- Value labels (1 'male', 2 'female') are not applied: the data keeps the codes, and the labels are
  shown by `rtw profile` and drafted by `rtw scaffold` as each variable's code list (not for a
  variable of measure *scale*, whose labels name only its sentinels, e.g. 999 'not known'). Codes
  and missing values are written as the data are: a date's `0 'not known'` is `1582-10-14`, its
  day 0, as the value in the data is.
- String values: SPSS pads them with blanks, which readstat trims.
- Encoding: a file declares its own (a character-encoding record, else a code page in its header;
  UTF-8 since SPSS 16 in Unicode mode), and readstat decodes with it. The `encoding` option
  overrides it (iconv names: latin1, cp1252, utf-8), for a file that declares it wrongly. Text that
  does not decode is reported with its variable and case.
- A cut file: readstat refuses a compressed file cut anywhere, and an uncompressed one holding
  fewer cases than its header declares (readstat takes a count from 2**30 on for 'not said', so the
  count read here is the header's own); a file that does not declare its number of cases (-1: rare,
  from streaming writers) is read to its end, where readstat drops a part case quietly: an
  uncompressed one's cases are of a fixed length, and one cut inside a case (or with bytes appended)
  is refused. Cut at a case boundary (or with whole cases appended) it cannot be told from a whole
  one (the source's `max_shrink` guard then holds it if it shrank). A header declaring fewer cases than the
  file holds would have readstat drop the rest quietly: the file is read once more from the case
  after the last declared one, its header's count seen as 'not said', and refused if one is there
  (a seek in an uncompressed file; a compressed one is decompressed again up to there, as a chunk's
  skip is).
- Bytes after the data (another file appended, or one sent again into the same name): readstat
  stops at the cases the header counts, or at the compressed data's end, and ignores them. Where the
  file says where it ends they are refused, naming the byte: an uncompressed file's counted cases have
  a fixed length (8 bytes a dictionary position), a .zsav's header says where its trailer is, and
  bytecode compression says it by its command bytes (8 to a block, each a value or padding, the 253s
  announcing 8 raw bytes after the block, 252 the data's end): the blocks are walked (not the values)
  to the one completing the counted cases, or holding the end code (a header counting no case: the
  data end where they start, or after the end code's own block there; a whole case there is refused
  as one more than counted, which pyreadstat would crash on). An uncompressed file not counting
  its cases says nothing beyond a part case, nor does bytecode compression not counting them with no
  end code (SPSS need not write one): another SPSS file after the dictionary (its header,
  `$FL2@(#) SPSS DATA FILE`) is looked for and refused; other bytes are not found. Both store text
  raw, so a text value holding that header is refused too, as another file appended (unless bytecode
  compression splits it with its command bytes). Walking the blocks takes 0.2 s CPU for 200,000 cases
  of 20 variables (1.0 s for 1,000,000), under a tenth of staging them, in ~20 MiB whatever the size.
- Some damage to the dictionary crashes readstat (a segmentation fault, which would stop the whole
  run): value labels given to a position that is no variable's (past the last, or a long string's
  continuation), a string wider than the positions that follow it, a variable type no file has. The
  dictionary is walked first and such a file refused, naming the variable or position. Labels of
  numbers given to a string variable crash it too, and cannot be caught so (their values cannot be
  told from text): the file is read in a child process (`isolated.py`), whose crash fails the file
  alone, saying the reader crashed on it.
- An SPSS *portable* file (`.por`, text, from SPSS's EXPORT) is refused, with why and what to ask
  for (a .sav), though pyreadstat reads one: its character set is ASCII (accented letters of names,
  centres and free text arrive as replacement characters; no `encoding` helps), and `read_por` reads
  user-missing values as empty and forgets the MISSING VALUES (its `user_missing` is not offered), so
  a 9 'unknown' would silently be no value. Value labels and dates it reads as a .sav's.
- Reading in chunks: readstat reaches a row offset by seeking in an uncompressed file, but by
  decompressing every case before it in a compressed one (bytecode cheaply, zlib less so);
  compressed files are therefore read in chunks four times larger (100,000 cases of 20 variables),
  and the skipping still grows with the file.

Throughput (`benchmarks/adapters.py --rows 200000 --formats spss`, 20 variables; a 2-core machine
shared with other jobs, so CPU seconds (user + sys, less the 0.5 s of imports) are given beside
the best of three wall times): staged and read back, 200,000 cases of a bytecode-compressed .sav
(SPSS's default) take 2.2 s CPU (6.7 s wall) against 0.7 s (1.6 s) for pyreadstat's bare
`read_sav`, ~3x; a .zsav 2.3 s against 0.8 s. At 1,000,000 cases: 11.2 s against 4.3 s (2.6x),
.zsav 12.4 s against 3.9 s (3.1x: the skipping). Staging peaks at 378 MiB (zsav 378) for 200,000
cases and 380 MiB (zsav 406) for 1,000,000, ~164 MiB of it the imported libraries; the bare read
peaks at 377 and 1,221 MiB.
"""

from __future__ import annotations

import functools
import io
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

__all__ = ["ADAPTER", "SPSS_METADATA_KEY", "SpssAdapter", "SpssMetadata", "SpssOptions", "iter_spss_chunks",
           "read_spss_metadata", "stage_spss", "staged_spss_metadata"]

#: key of the staged Parquet schema metadata holding the file's labels, formats and codes (JSON)
SPSS_METADATA_KEY = b"rtw.spss"
_WHAT = "SPSS data file (.sav, .zsav)"  # what a file that crashes the reader claims to be

_SPSS_EPOCH = np.datetime64("1582-10-14T00:00:00", "ms")
_PORTABLE = b"SPSSPORT"  # after a 200-byte splash and a 256-byte character table
# Why a portable file is refused, though pyreadstat reads one (see the module docstring).
_PORTABLE_UNSAFE = ("its text is ASCII only (a letter such as ë or ø comes out as a replacement character) and "
                    "pyreadstat reads its user-missing values as empty, dropping which values the file declares "
                    "missing (a 9 'unknown' would load as no value)")
_HEADER_BYTES = 176
_MAGIC = (b"$FL2", b"$FL3")  # how a .sav's and a .zsav's header begin
_PRODUCT = b"@(#) SPSS DATA FILE"  # how every writer's header begins its product name, after the magic
_ANOTHER_FILE = re.compile(rb"\$FL[23]" + re.escape(_PRODUCT))  # another SPSS file's header
_CASES_AT = 80  # where the header's case count is (4 bytes)
_COMPRESSION = {0: "sav", 1: "sav (compressed)", 2: "zsav"}

# What a print format's values show (they all count seconds) and to which precision.
_TEMPORAL_FORMATS: dict[str, tuple[Shown, Precision]] = {
    **dict.fromkeys(("DATE", "ADATE", "EDATE", "SDATE", "JDATE"), ("date", "D")),
    "MOYR": ("date", "M"),
    **dict.fromkeys(("QYR", "WKYR"), ("date", "Y")),
    **dict.fromkeys(("DATETIME", "YMDHMS"), ("datetime", "s")),
    **dict.fromkeys(("TIME", "DTIME", "MTIME"), ("time", "s")),
}


class SpssMetadata(Dataset):
    """An SPSS file's own description: label, encoding, variables, value labels, missing values."""

    package = "SPSS"


class SpssOptions(EncodingOptions):
    """Reader options of an SPSS file."""


# -- reading --------------------------------------------------------------------------------------
class _Data(NamedTuple):
    start: int  # the byte where the data start, after the dictionary
    case_length: int  # bytes of a case in an uncompressed file (8 per dictionary position)


class _Header(NamedTuple):
    file_format: str  # 'sav', 'sav (compressed)' or 'zsav'
    cases: int | None  # how many cases the header declares; None: it does not say (-1)
    order: str  # the byte order ('<', '>')
    data: _Data | None  # None: a dictionary left to readstat to judge


def _file_format(path: Path) -> str:
    """'sav', 'sav (compressed)' or 'zsav' from the header; a clear error for anything else."""
    return _header(path).file_format


def _header(path: Path) -> _Header:
    """The file's kind and declared case count, from its header; a clear error for anything else."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head[:4] in _MAGIC:
        if len(head) < _HEADER_BYTES:
            raise ExtractError(f"{path.name}: truncated: {len(head)} bytes, less than the {_HEADER_BYTES}-byte header "
                               "of an SPSS data file; expected the complete file")
        layout = struct.unpack("<i", head[64:68])[0]
        order = "<" if layout in (2, 3) else ">"  # the layout code is 2 or 3 in the writer's byte order
        compression, _weight, cases = struct.unpack(f"{order}iii", head[72:_CASES_AT + 4])
        data = _check_dictionary(path, order)
        return _Header(_COMPRESSION.get(compression, "sav"), cases if cases >= 0 else None, order, data)
    what = f"an {_WHAT}"
    if not head:
        raise ExtractError(f"{path.name}: not {what}: the file is empty")
    if _PORTABLE in head:
        raise ExtractError(f"{path.name}: not {what}: it is an SPSS portable file (.por), which is not read: "
                           f"{_PORTABLE_UNSAFE}; ask for the data saved as .sav (File > Save As > SPSS Statistics)")
    found = readstat.what_it_is(path, head)
    raise ExtractError(f"{path.name}: not {what}: {found}; expected '$FL2' (.sav) or '$FL3' (.zsav)")


def _check_dictionary(path: Path, order: str) -> _Data | None:
    """Where the data start, after the dictionary, and how long an uncompressed case is. What of a damaged
    dictionary readstat crashes the process on (a segmentation fault, which would stop the run and every
    other source) is refused first: a variable whose type is no number (0), string width
    (1-255) or continuation (-1), or a string not followed by the continuations its width takes (one per
    8 bytes past the first 8); value labels given to a position that is no variable's first (past the
    last, or a long string's continuation). Its records: variables (type 2, one per 8-byte position),
    value labels (3) and the positions they are for (4), documents (6), extensions (7), its end (999, and 4
    bytes of filler). A record of another type, or a dictionary cut short, is left to readstat, which refuses
    either (None)."""
    positions, firsts, owed = 0, set(), 0  # owed: continuations the last variable's width still takes
    string = ""  # the last string variable: its name and width, as a refusal says them
    with path.open("rb") as handle:
        handle.seek(_HEADER_BYTES)

        def ints(count: int) -> tuple[int, ...] | None:
            raw = handle.read(4 * count)
            return struct.unpack(f"{order}{count}i", raw) if len(raw) == 4 * count else None

        def skip(size: int) -> bool:  # False for a size no file has: left to readstat
            return size >= 0 and handle.seek(size, io.SEEK_CUR) >= 0

        while (kind := ints(1)) is not None:
            if kind[0] == 2:
                raw = handle.read(28)  # type, has a label, missing values, print and write formats, name
                if len(raw) < 28:
                    return None
                width, labelled, missing = struct.unpack(f"{order}3i", raw[:12])
                positions += 1
                name = raw[20:28].decode("latin-1").strip()
                if owed and width != -1:
                    raise _owed(path, string, owed)
                if not -1 <= width <= 255 or (width == -1 and not owed):
                    raise ExtractError(f"{path.name}: variable {name!r} (dictionary position {positions}) is of type "
                                       f"{width}; expected 0 (a number) or a string width of 1-255 (damaged in "
                                       "transfer, or written by a faulty program?)")
                if width == -1:  # a string's continuation
                    owed -= 1
                else:
                    firsts.add(positions)
                    owed = max(0, (width + 7) // 8 - 1)
                    string = f"{name!r} ({width} characters wide)"
                label = ints(1) if labelled else (0,)
                if label is None or not skip((label[0] + 3) // 4 * 4) or not skip(8 * abs(missing)):
                    return None
            elif owed:
                raise _owed(path, string, owed)
            elif kind[0] == 3:
                count = ints(1)
                for _label in range(count[0] if count else 0):
                    length = handle.read(9)[8:]  # the value (8 bytes), the label's length
                    if not length or not skip((length[0] + 8) // 8 * 8 - 1):
                        return None
            elif kind[0] == 4:
                count = ints(1)
                given = ints(count[0]) if count and 0 <= count[0] <= positions else None
                wrong = [index for index in given or () if index not in firsts]
                if wrong:
                    raise ExtractError(f"{path.name}: value labels are given to dictionary position {wrong[0]}, which "
                                       f"is no variable's (the file's {len(firsts)} variables take positions "
                                       f"1-{positions}); expected value labels of its own variables (damaged in "
                                       "transfer, or written by a faulty program?)")
            elif kind[0] == 6:
                lines = ints(1)
                if lines is None or not skip(80 * lines[0]):
                    return None
            elif kind[0] == 7:
                sizes = ints(3)  # subtype, size, count
                if sizes is None or sizes[1] < 0 or not skip(sizes[1] * sizes[2]):
                    return None
            elif kind[0] == 999:
                return _Data(handle.tell() + 4, 8 * positions)
            else:  # a record readstat will judge
                return None
    return None


def _owed(path: Path, string: str, owed: int) -> ExtractError:
    return ExtractError(f"{path.name}: string variable {string} lacks {owed} of the dictionary positions its width "
                        "takes (one per 8 bytes); expected a width that its positions hold (damaged in transfer, or "
                        "written by a faulty program?)")


def _read(path: Path, file_format: str, *, where: str = "", **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    import pyreadstat  # here, not above: every run discovers this adapter, few read SPSS

    # user_missing: a user-missing value is read as delivered (9), not as NaN
    return readstat.read_with(pyreadstat.read_sav, path, "SPSS", file_format, where=where, user_missing=True,
                              **kwargs)


def read_spss_metadata(path: Path, encoding: str | None = None) -> SpssMetadata:
    """An SPSS file's label, encoding and its variables' labels, formats, value labels and missing
    values, without the data."""
    return readstat.read_apart(path, functools.partial(_metadata_only, path, encoding), what=_WHAT)


def _metadata_only(path: Path, encoding: str | None) -> SpssMetadata:
    return _read_metadata(path, encoding)[0]


def _read_metadata(path: Path, encoding: str | None) -> tuple[SpssMetadata, Any]:
    """The file's description, and pyreadstat's metadata it was made from."""
    file_format = _file_format(path)
    _frame, meta = _read(path, file_format, metadataonly=True, encoding=encoding)
    return _metadata(file_format, meta), meta


def _metadata(file_format: str, meta: Any) -> SpssMetadata:
    variables = readstat.declared_variables(meta, _temporal_text)
    codes = readstat.declared_codes(meta, variables, _as_text)
    missing = {name: tuple(_missing_text(entry, variables[name]) for entry in ranges)
               for name, ranges in meta.missing_ranges.items() if ranges and name in variables}
    return SpssMetadata(file_format=file_format, table_name=meta.table_name or None,
                        file_label=meta.file_label or None, file_encoding=meta.file_encoding or None,
                        variables=variables, rows=meta.number_rows, codes=codes, missing=missing)


def _missing_text(entry: dict[str, Any], variable: Variable) -> str:
    """A MISSING VALUES entry as SPSS writes it, its values as the data are staged: 9, 'NA', 90 thru 99,
    lowest thru -1, 9999-12-31."""
    low, high = entry["lo"], entry["hi"]
    if isinstance(low, str):
        return repr(low) if low == high else f"{low!r} thru {high!r}"
    return _bound(low, variable) if low == high else f"{_bound(low, variable)} thru {_bound(high, variable)}"


def _bound(value: float, variable: Variable) -> str:
    if abs(value) >= 1e300:  # LOWEST, HIGHEST: the largest double
        return "lowest" if value < 0 else "highest"
    return readstat.code_text(value, variable, _as_text)


def _temporal(spss_format: str | None) -> tuple[Shown, Precision] | None:
    name = (spss_format or "").upper().rstrip("0123456789.")
    return _TEMPORAL_FORMATS.get(name)


def _temporal_text(spss_format: str | None) -> str | None:
    temporal = _temporal(spss_format)
    return readstat.describe_temporal(*temporal) if temporal else None


def iter_spss_chunks(path: Path, *, encoding: str | None = None,
                     chunk_rows: int | None = None) -> Iterator[tuple[int, pd.DataFrame, SpssMetadata]]:
    """Stream an SPSS file as (first case number, raw frame, metadata), `chunk_rows` at a time."""
    header = _header(path)
    file_format, declared = header.file_format, header.cases
    _check_end(path, header)
    _frame, meta = _read(path, file_format, metadataonly=True, encoding=encoding)
    metadata = _metadata(file_format, meta)
    if metadata.rows is None and declared is not None:
        # readstat takes a count from 2**30 on for 'not said' (-1), and would read what the file holds
        metadata = replace(metadata, rows=declared)
    cells = CHUNK_CELLS if file_format == "sav" else 4 * CHUNK_CELLS  # compressed: fewer decompressions to skip
    size = chunk_rows or readstat.chunk_rows(len(metadata.variables), cells)

    def read_rows(offset: int, size: int, encoding: str | None) -> pd.DataFrame:
        frame, _meta = _read(path, file_format, where=readstat.from_observation(offset), row_offset=offset,
                             row_limit=size, encoding=encoding)
        return frame

    # Text is expected in the encoding given, else the one declared.
    expected = encoding or metadata.file_encoding or "UTF-8"
    for first, frame in readstat.read_in_chunks(path, metadata.rows, size, read_rows, encoding=encoding,
                                                expected_encoding=expected):
        yield first, frame, metadata
    if declared is not None:
        _check_nothing_after(path, file_format, declared, encoding)


def _check_end(path: Path, header: _Header) -> None:
    """Bytes after the data (another file appended, or one sent again into the same name): readstat stops
    at the cases the header counts, or at the compressed data's end, and ignores them. An uncompressed file's
    cases are of a fixed length; a .zsav's header, after the dictionary, says where its trailer starts and
    how long it is, unless its header does not count its cases (-1: `_check_whole_cases`). Bytecode compression
    says where its data end only by its command bytes (`_check_bytecode_end`)."""
    if header.data is None:
        return
    size = path.stat().st_size
    if header.file_format == "sav (compressed)":
        _check_bytecode_end(path, header, size)
        return
    if header.file_format == "sav" and header.cases is None:
        _check_whole_cases(path, header.data, size)
        return
    said = (_cases_end(path, header, size) if header.file_format == "sav"
            else _trailer_end(path, header.order, header.data.start))
    if said is not None and size > said.end:
        raise readstat.bytes_after(path, size, said.end, said.last, said.where)


def _check_whole_cases(path: Path, data: _Data, size: int) -> None:
    """An uncompressed file that does not count its cases (-1) is read to its end, where readstat drops a part
    case quietly: the file cut inside a case, or bytes appended to it, which its size betrays (cases are of a
    fixed length). Whole cases cut off or appended are not betrayed; another SPSS file appended is, by its header."""
    _check_no_file_after(path, data.start)
    if not data.case_length or size < data.start:
        return  # no variables, or a file cut in its dictionary's last bytes: left to readstat
    whole, rest = divmod(size - data.start, data.case_length)
    if rest:
        raise ExtractError(f"{path.name}: ends inside a case: case {whole + 1:,} holds {rest:,} of its "
                           f"{data.case_length:,} bytes (the cases follow the dictionary from byte {data.start:,}; "
                           "the header does not count them: -1); expected whole cases (the file cut short in "
                           "transfer, or bytes appended to it?)")


def _check_bytecode_end(path: Path, header: _Header, size: int) -> None:
    """Bytes after bytecode-compressed data, which say where they end only by their command bytes: walked
    (`_bytecode_stream`), they end with the block completing the cases the header counts (where they start, when it
    counts none), or with the block holding the end code (252). A file whose stream goes on in whole cases to its
    end is left to `_check_nothing_after` ("case 41 follows them"; refused here when the header counts none:
    pyreadstat's read of them crashes); bytes after whole cases past the counted ones and their end code are
    refused as after the end code. One whose stream ends before its counted cases is left to readstat (a cut file);
    a file neither counting its cases nor ending its stream (no 252) is read to its end, and only another SPSS
    file is looked for in it."""
    assert header.data is not None
    per_case = header.data.case_length // 8
    needed = None if header.cases is None else header.cases * per_case
    stream = _bytecode_stream(path, header.data.start, size, needed)
    if needed is None:
        if not stream.end_code:
            _check_no_file_after(path, header.data.start)
            return
        end, where = stream.end, _end_code_end(stream)
    else:
        if stream.completing is None or not per_case:
            return  # cut short (readstat refuses it), or no variables
        end, where = _counted_end(header, stream, per_case)
        more = stream.values - needed
        if more and more % per_case == 0:  # whole cases after those counted
            if stream.end == size:
                if not needed:  # pyreadstat's read of them crashes (IndexError)
                    raise _more_cases(path, 0)
                return  # `_check_nothing_after` refuses them as such
            if stream.end_code:  # the bytes after their end code, not the cases, are what does not belong
                end, where = stream.end, _end_code_end(stream)
    if end >= size:
        return
    _check_no_file_after(path, end)
    raise readstat.bytes_after(path, size, end, "its compressed data", where)


def _end_code_end(stream: _Stream) -> str:
    return f"their end code is in the command block at byte {stream.last:,}; they end at byte {stream.end:,}"


def _counted_end(header: _Header, stream: _Stream, per_case: int) -> tuple[int, str]:
    """Where bytecode-compressed data counting their cases end, and how that is known: after the block completing
    them, or the end code's own block after it (PSPP writes it so); where they start when they count none."""
    assert header.data is not None and stream.completing is not None
    closing = stream.closing  # the end code in a block of its own after the cases'
    if header.cases == 0:
        start = header.data.start
        if closing is None:
            return start, f"its header counts no case; its data start and end at byte {start:,}"
        return closing, (f"its header counts no case; its data, from byte {start:,}, are their end code's own "
                         f"block; they end at byte {closing:,}")
    completing, end = stream.completing
    where = (f"the command block completing its {header.cases:,} case(s) of {per_case:,} value(s) starts at byte "
             f"{completing:,}")
    if closing is not None:
        end, where = closing, where + ", their end code's own block follows it"
    return end, f"{where}; they end at byte {end:,}"


class _Stream(NamedTuple):
    """What the command blocks of bytecode-compressed data say of where the data end."""

    values: int  # how many of the cases' values (8-byte positions) they fill, to the end code or the file's end
    last: int  # the byte where the last block starts
    end: int  # the byte after it and the raw values it announces
    end_code: bool  # whether the last block holds the end code (252), after which nothing is read
    completing: tuple[int, int] | None  # where the block filling the `needed`-th value starts and ends (0: `start`)
    closing: int | None  # where the block after that one ends, when it is the last and holds the end code alone


_BLOCKS_AT_ONCE = 1 << 18  # 8-byte units looked at together: 2 MiB of the file


def _bytecode_stream(path: Path, start: int, size: int, needed: int | None,
                     at_once: int = _BLOCKS_AT_ONCE) -> _Stream:
    """The command blocks of bytecode-compressed data from `start`, in order, to the end code (252) or the
    file's end. A block is 8 command bytes, each a value of a case (1-251 a number, 253 a value of 8 raw bytes
    following the block, 254 eight blanks, 255 the system-missing value), 0 (nothing: padding) or 252 (the
    data's end): only the 253s say where the next block starts, so blocks are found one after another, the
    command bytes counted by numpy `at_once` 8-byte units at a time (what is kept of them does not grow with
    the file)."""
    units = (size - start) // 8
    filled = blocks = 0  # values filled and blocks found so far
    # The block filling the `needed`-th value: its index, start, end, and the values filled to it. A header counting
    # no case needs none: the data may end where they start, block 0 then following them.
    completing: tuple[int, int, int, int] | None = (-1, start, start, 0) if needed == 0 else None
    last, end, end_code = start, start, False
    unit = 0  # the 8-byte unit, from `start`, where the next block starts
    with path.open("rb") as handle:
        while unit < units and not end_code:
            handle.seek(start + 8 * unit)
            window = np.frombuffer(handle.read(8 * min(at_once, units - unit)), dtype=np.uint8).reshape(-1, 8)
            skips = (1 + np.count_nonzero(window == 253, axis=1)).tolist()
            chain, first, held, position = [], unit, len(skips), 0
            while position < held:
                chain.append(position)
                position += skips[position]
            unit = first + position
            found = window[chain]
            ended = np.logical_or.accumulate(found == 252, axis=1)  # codes from the end code on are not read
            if ended[:, -1].any():
                kept = int(np.argmax(ended[:, -1])) + 1
                found, ended, chain, end_code = found[:kept], ended[:kept], chain[:kept], True
            starts = start + 8 * (first + np.array(chain, dtype=np.int64))
            ends = starts + 8 * (1 + np.count_nonzero((found == 253) & ~ended, axis=1))
            values = np.count_nonzero((found != 0) & ~ended, axis=1)
            running = filled + np.cumsum(values)
            if needed is not None and completing is None and running[-1] >= needed:
                at = int(np.searchsorted(running, needed))
                completing = (blocks + at, int(starts[at]), int(ends[at]), int(running[at]))
            filled, blocks = int(running[-1]), blocks + len(chain)
            last, end = int(starts[-1]), int(ends[-1])
    if completing is None:
        return _Stream(filled, last, end, end_code, None, None)
    index, begins, stops, filled_to = completing
    # the end code's own block: the last, right after the completing one, adding no value
    closing = end if end_code and blocks == index + 2 and filled == filled_to else None
    return _Stream(filled, last, end, end_code, (begins, stops), closing)


class _End(NamedTuple):
    end: int  # the byte where the file ends by what it says
    last: str  # what ends there ("its last case")
    where: str  # how that is known


def _cases_end(path: Path, header: _Header, size: int) -> _End | None:
    """Where an uncompressed file's counted cases end; None when it does not count them, or when whole cases
    follow them (not another SPSS file): a header counting too few, or cases appended, which
    `_check_nothing_after` refuses as such ("case 41 follows them")."""
    data = header.data
    if header.cases is None or data is None or not data.case_length:
        return None
    end = data.start + header.cases * data.case_length
    with path.open("rb") as handle:
        handle.seek(end)
        after = handle.read(4)
    if size > end and (size - end) % data.case_length == 0 and after not in _MAGIC:
        return None
    return _End(end, "its last case", f"its {header.cases:,} case(s) of {data.case_length:,} bytes, after the "
                f"dictionary, end at byte {end:,}")


def _trailer_end(path: Path, order: str, start: int) -> _End | None:
    """Where a .zsav ends: after the trailer its zlib header (after the dictionary) places."""
    with path.open("rb") as handle:
        handle.seek(start)
        raw = handle.read(24)
    if len(raw) < 24:
        return None  # readstat refuses it
    header_at, trailer, trailer_length = struct.unpack(f"{order}3q", raw)
    if header_at != start:
        return None  # not the zlib header: readstat refuses it
    end = trailer + trailer_length
    return _End(end, "its compressed data", f"their trailer ({trailer_length:,} bytes) ends at byte {end:,}")


def _check_no_file_after(path: Path, start: int) -> None:
    """Another SPSS file after the data start, found by its header (`$FL2` or `$FL3`, then the product name
    every writer begins so): what a file not counting its cases lets be known of bytes after the data, when it is
    uncompressed, or bytecode-compressed without an end code."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = _ANOTHER_FILE.search(data, max(start - 4, 0))
        if found is None:
            return
        at, header = found.start(), found.group().decode("ascii")
    raise ExtractError(f"{path.name}: holds another SPSS data file from byte {at:,} on (its header, {header!r}, "
                       "after this file's data); expected the file to end before it (another file appended to it, or "
                       "one sent again into the same name?)")


def _check_nothing_after(path: Path, file_format: str, declared: int, encoding: str | None) -> None:
    """A header declaring fewer cases than the file holds: readstat reads as many as declared and drops the
    rest quietly. Read again as a file that does not say (-1: to its end), the file has no case after them."""
    with _UncountedView(path) as view:
        frame, _meta = _read(path, file_format, source=view, where=readstat.from_observation(declared),
                             row_offset=declared, row_limit=1, encoding=encoding)
    if len(frame):
        raise _more_cases(path, declared)


def _more_cases(path: Path, declared: int) -> ExtractError:
    return ExtractError(f"{path.name}: holds more cases than the {declared:,} its header declares (case "
                        f"{declared + 1:,} follows them); expected a header that counts them all (damaged in "
                        "transfer, or written by a faulty program?)")


class _UncountedView(io.RawIOBase):
    """An SPSS file whose header's case count reads as -1 ('not said'), for readstat to read it to its end."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("rb")
        self._head = self._file.read(_CASES_AT + 4)[:_CASES_AT] + struct.pack("<i", -1)  # -1 in either byte order
        self._file.seek(0)

    def close(self) -> None:
        self._file.close()
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        start = self._file.tell()
        count = self._file.readinto(buffer)
        if start < len(self._head) and count:
            end = min(len(self._head), start + count)
            memoryview(buffer)[:end - start] = self._head[start:end]
        return count


# -- values to text -------------------------------------------------------------------------------
def _as_text(variable: Variable, values: np.ndarray) -> tuple[np.ndarray, int]:
    temporal = _temporal(variable.format)
    if temporal is None:
        return readstat.numbers_as_text(values), 0
    return readstat.temporal_as_text(values, *temporal, count_ms=1_000, epoch=_SPSS_EPOCH)


# -- staging --------------------------------------------------------------------------------------
def stage_spss(path: Path, out: Path, *, lineage: dict[str, str] | None = None, encoding: str | None = None,
               chunk_rows: int | None = None) -> StageResult:
    """Stage an SPSS file to one Parquet file: variables as text, `_line`, lineage; labels and codes in
    the metadata. All or nothing: the file appears at `out` only when complete. Read in a child process
    (etl/extract/isolated.py): a file that crashes ReadStat fails on its own."""
    chunks = functools.partial(iter_spss_chunks, path, encoding=encoding, chunk_rows=chunk_rows)  # read in the child
    staged = readstat.stage_apart(path, out, chunks, _as_text, lineage, SPSS_METADATA_KEY, what=_WHAT)
    return StageResult(rows=staged.rows, notices=tuple(staged.notices(path)))


def staged_spss_metadata(staged: Path) -> SpssMetadata | None:
    """The labels, formats and codes kept in a staged SPSS file's schema; None for a file staged otherwise."""
    return readstat.staged_metadata(staged, SPSS_METADATA_KEY, SpssMetadata)


class SpssAdapter(OneTableAdapter):
    """SPSS .sav and .zsav files: one dataset, one record set per file, named by the mapping."""

    format = "spss"
    typed_numbers = True
    description = "SPSS data files (.sav, .zsav), e.g. a national registry's cases"
    suffixes = (".sav", ".zsav", ".por")  # .por only to be refused with the reason, not as an unknown file type
    Options = SpssOptions

    def stage(self, path: Path, out: Path, options: SpssOptions, lineage: dict[str, str]) -> StageResult:
        return stage_spss(path, out, lineage=lineage, encoding=options.encoding)

    def describe(self, path: Path, options: SpssOptions | None = None) -> FormatDetails:
        # Labels, formats and code lists come without the data (the staging notices name them too), their
        # text decoded as staging decodes it. The encoding is not given back: the file declares it (or the
        # options did), and a draft mapping need not repeat it. Read in a child process, as staging is.
        encoding = options.encoding if options else None
        return readstat.read_apart(path, functools.partial(_format_details, path, encoding), what=_WHAT)


def _format_details(path: Path, encoding: str | None) -> FormatDetails:
    metadata, meta = _read_metadata(path, encoding)
    scale = {name for name, measure in meta.variable_measure.items() if measure == "scale"}
    return FormatDetails(columns=readstat.column_details(metadata, without_codes=scale))


ADAPTER = SpssAdapter()
