"""The fast path of ODM staging: a plain export parsed in two halves, on two cores.

A plain export is what EDC systems write every night: one ClinicalData, no DOCTYPE, no
ReferenceData items, each SubjectData starting a line. Such a file is cut before the SubjectData
line nearest its middle, and each half is parsed as a document of its own (the file's declaration
and start tags, the half, the closing tags; `odm.SubDocument`), the second by a second process;
the halves' Parquet is joined in file order. (The prolog before the first subject is a part of its
own, parsed with the first half, so its content is checked as in the whole file.)

Nothing is believed: a cut that does not fall between two subjects at the top level of ClinicalData
(inside a comment, a CDATA section, a subject) leaves a part unclosed, which libxml2 refuses.
Any refusal, and any notice a part raises (the prolog's empty ClinicalData aside), sends the whole
file to the one-pass reader, whose errors and notices are the reference.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl import fsio
from etl.extract import odm_part
from etl.extract.adapter import StageResult
from etl.extract.odm_items import SubDocument

log = logging.getLogger(__name__)

MIN_BYTES = 8 << 20  # below this one pass is fast enough, and a second process not worth starting
_CLOSE = b"</ClinicalData></ODM>\n"
_SUBJECT_LINE = re.compile(rb"\n[ \t]*<SubjectData[\s>]")
_ATTRIBUTES = rb"""(?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*>"""
_ROOT = re.compile(rb"<ODM" + _ATTRIBUTES)
_CLINICAL_DATA = re.compile(rb"<ClinicalData" + _ATTRIBUTES)
_DECLARATION = re.compile(rb"<\?xml[^>]*\?>")


def plan_parts(path: Path, *, min_bytes: int | None = None) -> list[SubDocument] | None:
    """The prolog and the two halves of a plain export, or None."""
    if path.stat().st_size < (MIN_BYTES if min_bytes is None else min_bytes):
        return None
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        clinical = data.find(b"<ClinicalData")
        if (clinical < 0 or data.find(b"<ClinicalData", clinical + 1) >= 0 or data.find(b"<!DOCTYPE", 0, clinical) >= 0
                or data.find(b"<ItemData", 0, clinical) >= 0):
            return None
        root, start_tag = _ROOT.search(data, 0, clinical), _CLINICAL_DATA.match(data, clinical)
        declaration = _DECLARATION.match(data)
        first = _SUBJECT_LINE.search(data, clinical)
        middle = _SUBJECT_LINE.search(data, max(clinical, len(data) // 2))
        if root is None or start_tag is None or first is None or middle is None or middle.start() <= first.start():
            return None
        first_subject, cut = first.start() + 1, middle.start() + 1
        head = (declaration.group() + b"\n" if declaration else b"") + root.group() + b"\n" + start_tag.group() + b"\n"
        first_line = 1 + _line_breaks(data, 0, first_subject)
        cut_line = first_line + _line_breaks(data, first_subject, cut)
        return [SubDocument(b"", 0, first_subject, _CLOSE, 1),
                SubDocument(head, first_subject, cut, _CLOSE, first_line),
                SubDocument(head, cut, len(data), b"", cut_line)]


def _line_breaks(data: mmap.mmap, start: int, end: int) -> int:
    """b"\\n" bytes in data[start:end], a block at a time: a slice of a mapping is a copy."""
    return sum(data[at:min(at + (8 << 20), end)].count(b"\n") for at in range(start, end, 8 << 20))


def _second_process(path: Path, half: SubDocument, out: Path, lineage: dict[str, str],
                    batch_rows: int) -> subprocess.Popen[str] | None:
    """A process staging the second half (a plain interpreter: nothing of the caller's main module is
    imported again, and a daemon, such as a Celery pool process, may start it). It is told where the
    half lies, and the file's size and time, which it checks instead of planning again."""
    if (os.cpu_count() or 1) < 2:
        return None
    seen = path.stat()
    where = {"head": half.head.decode("latin-1"), "start": half.start, "end": half.end, "first_line": half.first_line,
             "size": seen.st_size, "mtime_ns": seen.st_mtime_ns}
    return subprocess.Popen([sys.executable, "-m", odm_part.__name__, str(path), str(out), str(batch_rows),
                             json.dumps(lineage), json.dumps(where)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stage_in_parts(path: Path, out: Path, schema: pa.Schema, lineage: dict[str, str],
                   batch_rows: int) -> StageResult | None:
    """Stage a plain export to `out` in two halves, or return None (then `out` is to be written by the
    one-pass reader): not a plain export, or a part refused or noticed something."""
    parts = plan_parts(path)
    if parts is None:
        return None
    second = fsio.temp_name(out)
    other = _second_process(path, parts[2], second, lineage, batch_rows)
    try:
        with pq.ParquetWriter(out, schema) as writer:
            try:
                rows, notices = odm_part.write_parts(writer, path, parts[:2] if other else parts, schema, lineage,
                                                     batch_rows)
            except Exception as error:  # the one-pass reader will say exactly what is wrong, and where
                log.debug("%s: staged in one pass after a part failed: %s", path.name, error)
                return None
            if other is not None:
                said, complaint = other.communicate()
                if other.returncode != 0:
                    log.debug("%s: staged in one pass after a part failed: %s", path.name, complaint[-2000:])
                    return None
                more, more_notices = json.loads(said)
                rows, notices = rows + more, notices + more_notices
            # The prolog's ClinicalData holds no ItemData; any other notice is for the reference reader.
            if len(notices) != 1 or "holds no ItemData" not in notices[0]:
                log.debug("%s: staged in one pass for its notices: %s", path.name, notices)
                return None
            if other is not None:  # the second half's row groups, after the first's
                second_half = pq.ParquetFile(second)
                for group in range(second_half.num_row_groups):
                    writer.write_table(second_half.read_row_group(group))
    finally:
        if other is not None and other.poll() is None:
            other.kill()
            other.wait()
        second.unlink(missing_ok=True)
    return StageResult(rows=rows, notices=())
