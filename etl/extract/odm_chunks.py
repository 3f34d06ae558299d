"""The fast path of ODM staging: a plain export read subject by subject, in parts, on two cores.

A plain export is what EDC systems write every night: one ClinicalData, no DOCTYPE, no
ReferenceData items, each SubjectData starting a line, in an encoding that writes the markup as
ASCII does (UTF-8, ISO-8859-*; not UTF-7, whose "+AFQ-ransactionType" the looks at bytes would
miss). Such a file is cut before SubjectData lines into an even number of parts alike, of some
PART_LINES lines at most (under MAX_PART_LINES: `odm_subjects` takes its lines from libxml2, which
counts an element's line only to 65,535), and each part is parsed as a document of its own (the
file's declaration and start tags, the part, the closing tags; `odm_xml.SubDocument`) by
`odm_subjects`.

Below PROCESS_MIN_BYTES the parts are read on two threads, a few ahead of the one this thread writes
(lxml's parse and the C walk run without the GIL). From it, and where subjects are walked in Python
(which holds the GIL), the later half of the parts is read by a second process, whose rows (packed
columns, `odm_xml.RowColumns`) are written after the first half's: a process of its own reads faster
there than a thread, and below it its start (its imports) costs more than it gains. (The prolog
before the first subject is a part of its own, read by the one-pass reader, so its content is
checked as in the whole file.)

Nothing is believed: a cut that does not fall between two subjects at the top level of ClinicalData
(inside a comment, a CDATA section, a subject) leaves a part unclosed, which libxml2 refuses.
Any refusal, anything `odm_subjects` does not read itself, and any notice a part raises (the
prolog's empty ClinicalData aside), sends the whole file to the one-pass reader, whose rows, errors
and notices are the reference.
"""

from __future__ import annotations

import json
import logging
import marshal
import mmap
import os
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pyarrow as pa

from etl import fsio, interpreter
from etl.extract import odm_subjects
from etl.extract.adapter import StageResult, staging_writer
from etl.extract.odm_items import columns_batch, read_item_batches, write_batches
from etl.extract.odm_subjects import read_subject_columns
from etl.extract.odm_xml import RowColumns, SubDocument
from etl.memory import no_cyclic_gc

log = logging.getLogger(__name__)

# Where a second process starts to read faster than two threads (measured, ODM parts staged:
# 5.8 MiB 0.081 against 0.096 s, 14 MiB 0.195 against 0.215 s, 29 MiB alike, 54 MiB 0.76 against 0.73 s).
PROCESS_MIN_BYTES = 16 << 20
READ_AHEAD = 4  # parts read on threads ahead of the one written: their rows are what that holds
# libxml2 knows the line of an element only up to 65,535 (`odm_subjects`): a part is cut shorter.
PART_LINES, MAX_PART_LINES = 20_000, 60_000
# A part is read whole into a tree (some 15 times its bytes), READ_AHEAD of them at once: a file of long lines
# (every subject on one, or a gigabyte of no line at all) is cut by bytes too, and one whose subject alone is
# longer is read in one pass, which streams (its memory flat). 20,000 lines of an EDC's export are some 1.4 MB.
MAX_PART_BYTES = 4 << 20
LEAD_BYTES = 3 << 19
_CLOSE = b"</ClinicalData></ODM>\n"
_SUBJECT_LINE = re.compile(rb"\n[ \t]*<SubjectData[\s>]")
_ATTRIBUTES = rb"""(?:\s+[^\s=>/]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*>"""
_ROOT = re.compile(rb"<ODM" + _ATTRIBUTES)
_CLINICAL_DATA = re.compile(rb"<ClinicalData" + _ATTRIBUTES)
_DECLARATION = re.compile(rb"<\?xml[^>]*\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
# Encodings that write XML's markup as ASCII does, so that the looks for names and tags above hold.
_ASCII_MARKUP = re.compile(rb"(?i)utf-?8|(?:us-)?ascii|iso-?8859-\d+|latin-?1|(?:windows|cp)-?125\d")


def plan_parts(path: Path) -> list[SubDocument] | None:
    """The prolog, then the subjects in parts under MAX_PART_LINES lines and MAX_PART_BYTES each, of a plain
    export; or None."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return None
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _plan(data)


def _plan(data: mmap.mmap) -> list[SubDocument] | None:
    clinical = data.find(b"<ClinicalData")
    if (clinical < 0 or data.find(b"<ClinicalData", clinical + 1) >= 0 or data.find(b"<!DOCTYPE", 0, clinical) >= 0
            or data.find(b"<ItemData", 0, clinical) >= 0):
        return None
    root, start_tag = _ROOT.search(data, 0, clinical), _CLINICAL_DATA.match(data, clinical)
    declaration = _DECLARATION.match(data)
    first = _SUBJECT_LINE.search(data, clinical)
    if root is None or start_tag is None or first is None or _commented(data, root.start()):
        return None
    encoding = _ENCODING.search(declaration.group()) if declaration else None
    if encoding and not _ASCII_MARKUP.fullmatch(encoding.group(1)):
        return None  # markup in other bytes than ASCII's (UTF-7: "+AFQ-ransactionType"): no byte look holds
    head = (declaration.group() + b"\n" if declaration else b"") + root.group() + b"\n" + start_tag.group() + b"\n"
    start = first.start() + 1
    line = 1 + _line_breaks(data, 0, start)
    parts = [SubDocument(b"", 0, start, _CLOSE, 1)]
    # Parts of at most about PART_LINES lines, by the mean length of the first subjects' lines; each cut is
    # made before a SubjectData line.
    sample = data[start:start + (1 << 20)]
    line_bytes = max(1, len(sample) // max(1, sample.count(b"\n")))
    # (half the most bytes: each cut is made at the first subject after its step)
    step, target = _part_bytes(len(data) - start, min(PART_LINES * line_bytes, MAX_PART_BYTES // 2)), start
    while start < len(data):
        # Each cut sought a step after the last one's target (cuts at whole subjects stay alike), or half a step
        # past a part that overshot it (a subject longer than a step): no run of one-subject parts after it.
        target = max(target + step, start + step // 2)
        cut_at = _SUBJECT_LINE.search(data, target)
        end = cut_at.start() + 1 if cut_at else len(data)
        lines = _line_breaks(data, start, end)
        if lines >= MAX_PART_LINES:  # longer lines here than on average: the last cut that keeps it short
            last = None
            for match in _SUBJECT_LINE.finditer(data, start, _line_start(data, start, MAX_PART_LINES - 1)):
                last = match
            if last is None:
                return None  # a subject as long as a part
            end = last.start() + 1
            lines = _line_breaks(data, start, end)
        if end - start > MAX_PART_BYTES:
            return None  # a subject longer than a part may be
        parts.append(SubDocument(head, start, end, b"" if end == len(data) else _CLOSE, line))
        start, line = end, line + lines
    return parts


def _commented(data: mmap.mmap, at: int) -> bool:
    """Whether `at` lies in a comment: the `<ODM` found first is in one, not the root (a hunt: one binding a
    vendor's prefix to ODM's namespace made the parts' head read vendor ItemData as ODM's)."""
    opened = data.rfind(b"<!--", 0, at)
    return opened >= 0 and data.find(b"-->", opened + 4, at) < 0


def _part_bytes(subjects: int, most: int) -> int:
    """The length of each part of `subjects` bytes: parts of at most `most` bytes, as many as that makes
    rounded up to an even number, all alike. Two threads then read the last two together; cut by `most`,
    a 5.8 MiB export (2,000 persons) made seven parts and a stub, and one thread read the seventh alone
    while the other waited (8 ms of its 90)."""
    count = -(-subjects // most)
    return -(-subjects // (count + count % 2))


def _line_start(data: mmap.mmap, start: int, lines: int) -> int:
    """Where the line `lines` lines after the one at `start` begins (the end of data if sooner)."""
    at = start
    while lines > 0:
        block = data[at:at + (8 << 20)]
        if not block:
            return len(data)
        breaks = block.count(b"\n")
        if breaks >= lines:
            for _ in range(lines):
                at = data.find(b"\n", at) + 1
            return at
        lines -= breaks
        at += len(block)
    return at


def _line_breaks(data: mmap.mmap, start: int, end: int) -> int:
    """b"\\n" bytes in data[start:end], a block at a time: a slice of a mapping is a copy."""
    return sum(data[at:min(at + (8 << 20), end)].count(b"\n") for at in range(start, end, 8 << 20))


def _second_process(path: Path, parts: list[SubDocument], out: Path, batch_rows: int) -> subprocess.Popen[str] | None:
    """A process reading `parts` to `out` (`odm_subjects`, a plain interpreter importing only lxml:
    nothing of the caller's main module is imported again, and a daemon, such as a Celery pool
    process, may start it). It is told where the parts lie, and the file's size and time, which it
    checks instead of planning again."""
    if (os.cpu_count() or 1) < 2:
        return None
    seen = path.stat()
    where = {"parts": [{"head": p.head.decode("latin-1"), "start": p.start, "end": p.end,
                        "tail": p.tail.decode("latin-1"), "first_line": p.first_line} for p in parts],
             "size": seen.st_size, "mtime_ns": seen.st_mtime_ns, "batch_rows": batch_rows}
    # The file's name on stdin, not the command line, which any user of the machine sees (a delivered name may
    # hold a patient number).
    with tempfile.TemporaryFile() as job:
        job.write(json.dumps({"path": str(path), "out": str(out), "where": where}).encode())
        job.seek(0)
        return subprocess.Popen(interpreter.module_command(odm_subjects.__name__), stdin=job,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _halves(parts: list[SubDocument]) -> tuple[list[SubDocument], list[SubDocument]]:
    """The parts in two runs that end together, the first with the prolog. This process also writes the
    second's rows (some 0.3 of reading them) and the second starts later (its imports, while this one
    reads some LEAD_BYTES): this one reads (LEAD_BYTES + 0.7 of the file) / 1.7."""
    share = (LEAD_BYTES + 0.7 * parts[-1].end) / 1.7
    for at, part in enumerate(parts):
        if at > 1 and part.end - share > share - part.start:
            return parts[:at], parts[at:]
    return parts, []


def _batches(path: Path, parts: Sequence[SubDocument], notices: list[str],
             batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
    for part in parts:
        if part.head:  # subjects
            yield from map(columns_batch, read_subject_columns(path, part, batch_rows=batch_rows))
        else:  # the prolog, read by the reference reader: its checks and notices
            yield from read_item_batches(path, notices=notices, document=part, batch_rows=batch_rows)


def _read_ahead(path: Path, parts: Sequence[SubDocument], notices: list[str],
                batch_rows: int) -> Generator[pa.RecordBatch, None, None]:
    """`_batches`, each part read on one of two threads, up to READ_AHEAD parts ahead of the one whose
    batches are taken. Closed early, it waits for the parts being read and reads no more."""
    def read(part: SubDocument) -> list[pa.RecordBatch]:
        return list(_batches(path, [part], notices, batch_rows))

    pool = ThreadPoolExecutor(2, thread_name_prefix="odm-part")
    reading: deque[Future[list[pa.RecordBatch]]] = deque()
    try:
        for part in parts:
            reading.append(pool.submit(read, part))
            if len(reading) > READ_AHEAD:
                yield from reading.popleft().result()
        while reading:
            yield from reading.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)  # waits for the parts being read


def _marshalled_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The batches the second process wrote: each its length in 8 bytes, then its `RowColumns` marshalled."""
    with path.open("rb") as handle:
        while size := handle.read(8):
            yield columns_batch(RowColumns(*marshal.loads(handle.read(int.from_bytes(size, "little")))))


def stage_in_parts(path: Path, out: Path, schema: pa.Schema, lineage: dict[str, str],
                   batch_rows: int) -> StageResult | None:
    """Stage a plain export to `out` part by part (on two threads, or from PROCESS_MIN_BYTES the later
    half by a second process), or return None (then `out` is to be written by the one-pass reader): not
    a plain export, or a part refused or noticed something."""
    parts = plan_parts(path)
    if parts is None:
        return None
    # Threads read side by side only where the C walk lets go of the GIL; Python's walk holds it.
    on_threads = path.stat().st_size < PROCESS_MIN_BYTES and odm_subjects.walks_in_c()
    mine, theirs = (parts, []) if on_threads else _halves(parts)
    second = fsio.temp_name(out)
    other = _second_process(path, theirs, second, batch_rows) if theirs else None
    notices: list[str] = []
    read = _read_ahead if on_threads else _batches
    try:
        with staging_writer(out, schema) as writer, no_cyclic_gc():
            try:
                with closing(read(path, mine if other else parts, notices, batch_rows)) as batches:
                    rows = write_batches(writer, batches, schema, lineage)
            except Exception as error:  # the one-pass reader will say exactly what is wrong, and where
                log.debug("%s: staged in one pass after a part failed: %s", path.name, error)
                return None
            # The prolog's ClinicalData holds no ItemData; any other notice is for the reference reader.
            if len(notices) != 1 or "holds no ItemData" not in notices[0]:
                log.debug("%s: staged in one pass for its notices: %s", path.name, notices)
                return None
            if other is not None:
                _, complaint = other.communicate()
                try:
                    if other.returncode != 0:
                        raise ValueError(complaint[-2000:])
                    rows += write_batches(writer, _marshalled_batches(second), schema, lineage)
                except Exception as error:
                    log.debug("%s: staged in one pass after the second process failed: %s", path.name, error)
                    return None
    finally:
        if other is not None and other.poll() is None:
            other.kill()
            other.wait()
        second.unlink(missing_ok=True)
    return StageResult(rows=rows, notices=())
