"""The fast path of CSV staging: Arrow's multithreaded CSV reader, for files whose every record is one line.

Most exports are such files, and for them a record's line is simply its index plus the header's line
plus one (the lines above the header, a title or notes, are skipped as lines), so Arrow's reader, which
knows no lines, can stage them. Whether a file is one is only
known once read, so the file is checked as it streams, and any doubt hands it back to the
record-by-record reader of `etl.extract.delimited`, whose errors name the line:
- bytes that do not decode in the dialect's encoding;
- a row Arrow cannot split into the header's fields (a ragged row, a quoted line break);
- a line holding the quote character whose fields Python's strict csv reads otherwise, or not at
  all (a stray quote): those few lines are read both ways and must agree;
- a count of records other than the count of lines after the header (a blank line, a record
  spanning lines);
- more than half its lines holding the quote character (beyond a few), or more than QUOTED_LINES_MOST;
- a header spanning lines (a quoted line break in a column's name: its second line would be read as a
  record) or a carriage return alone, which ends a row for Arrow and no line here (lines would be
  misnumbered where a blank line makes the counts agree);
- a NUL byte, or a record whose first value is the first column's name (the header again, two exports
  joined): the record reader refuses the file naming the line, or reads the record.
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from etl.extract.adapter import staging_writer

_BLOCK = 1 << 23
# Lines holding the quote character are kept and read again here: a file quoting most of its lines (R's, many
# EDCs' exports quote every value) is read faster and in less memory by the record reader alone (18 MiB,
# 400,000 lines: 0.97 s and 213 MiB against 2.50 s and 278 MiB both ways), one quoting a tenth of them faster
# here (35 MiB, 1,000,000 lines: 1.41 s against 2.42 s); beyond QUOTED_LINES_MOST the kept lines' memory counts.
QUOTED_LINES_MOST, _QUOTED_FEW = 500_000, 10_000


def _scan(path: Path, encoding: str, quotechar: bytes) -> tuple[int, dict[int, bytes]] | None:
    """(lines, {line number: raw line} of the lines holding the quote character), or None when the
    file does not decode, holds a carriage return alone, or more quoted lines than it keeps."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines, has_quote, last = 0, False, b""
    with path.open("rb") as handle:
        try:
            while block := handle.read(_BLOCK):
                decoder.decode(block)
                # a carriage return alone: in the block, or ending the last one (whose line feed may open this one)
                alone = block.count(b"\r") - block.count(b"\r\n") - (block[-1:] == b"\r")
                if alone or (last == b"\r" and block[:1] != b"\n"):
                    return None
                if b"\x00" in block:  # the record reader names its line
                    return None
                lines += block.count(b"\n")
                has_quote = has_quote or quotechar in block
                last = block[-1:]
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return None
    if last == b"\r":
        return None
    quoted: dict[int, bytes] = {}
    if has_quote:  # most files quote nothing; the others few lines
        most = min(QUOTED_LINES_MOST, max(_QUOTED_FEW, lines // 2))
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if quotechar in raw:
                    if len(quoted) == most:
                        return None
                    quoted[number] = raw
    return lines + (last not in (b"", b"\n")), quoted


def stage_one_line_records(path: Path, out: Path, header: list[str], encoding: str, delimiter: str,
                           quotechar: str, schema: pa.Schema, lineage: dict[str, str], *,
                           header_line: int = 1) -> int | None:
    """Stage `path` to `out` (Parquet of `schema`: string columns, `_line`, lineage) and return its
    record count, or None when the file is not one whose every record is one line (`out` is then
    to be overwritten by the record-by-record reader). `header` is on line `header_line`: the lines
    up to it are skipped (Arrow skips lines, blank ones included, ignoring quotes)."""
    if any("\n" in name or "\r" in name for name in header):  # the header spans lines
        return None
    scanned = _scan(path, encoding, quotechar.encode(encoding))
    if scanned is None:
        return None
    lines, quoted = scanned
    text_encoding = "utf8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding
    reader_options = pa_csv.ReadOptions(column_names=header, skip_rows=header_line, encoding=text_encoding,
                                        block_size=1 << 22)
    parse_options = pa_csv.ParseOptions(delimiter=delimiter, quote_char=quotechar, double_quote=True,
                                        escape_char=False, newlines_in_values=False, ignore_empty_lines=True)
    convert_options = pa_csv.ConvertOptions(column_types={name: pa.string() for name in header}, null_values=[],
                                            strings_can_be_null=False, quoted_strings_can_be_null=False)
    constants = [pa.array([value], pa.string()) for value in lineage.values()]
    rows = 0
    try:
        with staging_writer(out, schema) as writer:
            for batch in pa_csv.open_csv(path, reader_options, parse_options, convert_options):
                first_line = rows + header_line + 1
                if not _agrees(batch, first_line, quoted, encoding, delimiter, quotechar) or \
                        _header_again(batch, header[0]):
                    return None
                numbers = pa.array(np.arange(first_line, first_line + batch.num_rows, dtype=np.int64))
                repeated = [c.take(np.zeros(batch.num_rows, dtype=np.int32)) for c in constants]
                writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, numbers, *repeated], schema=schema))
                rows += batch.num_rows
            if rows == 0:
                writer.write_table(schema.empty_table())
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return rows if rows == lines - header_line else None


def _header_again(batch: pa.RecordBatch, first_name: str) -> bool:
    """Whether a record may repeat the header (its first value the first column's name): the record reader tells."""
    # trimmed as the header's names are, and of a byte-order mark: two UTF-8 exports joined put one mid-file
    values = pc.utf8_trim(batch.column(0), characters=" \t\r\n\u00a0\ufeff")
    return batch.num_rows > 0 and pc.any(pc.equal(values, first_name)).as_py()


def _agrees(batch: pa.RecordBatch, first_line: int, quoted: dict[int, bytes], encoding: str, delimiter: str,
            quotechar: str) -> bool:
    """Whether Python's strict csv reads the batch's quote-holding lines as Arrow did."""
    for line in range(first_line, first_line + batch.num_rows):
        raw = quoted.get(line)
        if raw is None:
            continue
        try:
            fields = next(csv.reader([raw.decode(encoding)], delimiter=delimiter, quotechar=quotechar, strict=True))
        except (csv.Error, StopIteration):
            return False
        if fields != [column[line - first_line].as_py() for column in batch.columns]:
            return False
    return True
