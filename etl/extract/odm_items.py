"""The ItemData reader behind ODM staging: one streaming pass, rows out as Arrow record batches.

`read_item_batches` is the hot loop of `etl.extract.odm` (whose docstring records the format's
gotchas; every one is honoured here, with the same rows, lines, errors and notices as before).
What makes it fast, since the XML parsing itself is libxml2's:
- one Python step per XML event, in one function: no generator between the parser and the rows;
- the plain `<ItemData>` (almost every event of an export) is tested first, by its full tag;
- a row is 7 values appended to one flat list, turned into columns by slicing once a batch;
- the keys of the data hierarchy are kept once per container (a "frame"), not once per row, and
  spread to the rows by Arrow's `take`;
- an ItemData is not cleared at its end: its ItemGroupData is, which frees it with its siblings;
- the libxml2 error log (a copy per look) is only looked at for undeclared entities once a DOCTYPE
  or an entity reference other than the five predefined ones has been fed.

What it shares with `odm_subjects`, the reader of plain exports, is in `odm_xml`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from lxml import etree

from etl.extract.odm_xml import (
    AUDIT,
    DATASET_XML_SEQ,
    ENTITY_REFERENCE,
    INDEX,
    KEYS,
    NAME,
    PARENT,
    ROW,
    SAFE_PARSER,
    SITE,
    TT,
    OdmFormatError,
    RowColumns,
    SubDocument,
    Text,
    format_error,
    item_attributes,
    root_prefix,
    row_columns,
)

ODM_ROW_COLUMNS: tuple[str, ...] = (
    "study_oid", "metadata_version_oid", "subject_key", "site_oid", "study_event_oid",
    "study_event_repeat_key", "form_oid", "form_repeat_key", "item_group_oid",
    "item_group_repeat_key", "item_oid", "value", "is_null", "item_data_type",
    "transaction_type", "audit_user", "audit_datetime", "audit_reason", "line", "clinical_data_index", "container",
)

STAGING_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in ODM_ROW_COLUMNS[:12]]
    + [pa.field("is_null", pa.bool_())]
    + [pa.field(name, pa.string()) for name in ODM_ROW_COLUMNS[13:18]]
    + [pa.field("line", pa.int64()), pa.field("clinical_data_index", pa.int32()), pa.field("container", pa.int32())])


FEED_BYTES = 1 << 20  # a file written on one line is still fed in bounded pieces
# Reads grow from this to FEED_BYTES: a reader that stops at the root's start tag (odm.read_odm_header,
# every night and every staging) read and cut a whole FEED_BYTES into lines, 0.7 ms of a 6 MiB export.
FIRST_READ_BYTES = 1 << 16
# Where a reference to an undeclared entity is looked for: ends of containers, before their rows go out.
ENTITY_CHECKPOINTS = frozenset({
    "ODM", "Study", "MetaDataVersion", "ItemDef", "CodeList", "ClinicalData", "SubjectData",
    "StudyEventData", "FormData", "ItemGroupData"})
_UNDECLARED_ENTITY = frozenset({"WAR_UNDECLARED_ENTITY", "ERR_UNDECLARED_ENTITY"})
_CONTAINERS = frozenset({"SubjectData", "StudyEventData", "FormData", "ItemGroupData"})
# A container's attributes that set keys, by container (an attribute of another container's is ignored).
_KEY_ATTRIBUTES_OF = {
    "SubjectData": frozenset({"SubjectKey"}),
    "StudyEventData": frozenset({"StudyEventOID", "StudyEventRepeatKey"}),
    "FormData": frozenset({"FormOID", "FormRepeatKey"}),
    "ItemGroupData": frozenset({"ItemGroupOID", "ItemGroupRepeatKey", "ItemGroupDataSeq", DATASET_XML_SEQ}),
}


def feed_pieces(handle: BinaryIO, document: SubDocument | None = None) -> Iterator[tuple[list[bytes], bool]]:
    """The file (or `document`) as lists of pieces to feed, each with whether it may hold an entity reference.

    A piece is a line (up to and including its b"\\n"), or part of one over FEED_BYTES; never empty
    (the parser takes that for the end). Lines are cut from large reads because reading them one by
    one costs more than parsing them.
    """
    if document is not None:
        if document.head:
            yield [document.head], b"&" in document.head and ENTITY_REFERENCE.search(document.head) is not None
        handle.seek(document.start)
        left = document.end - document.start
    else:
        left = -1
    rest, size, pending = b"", FIRST_READ_BYTES, False
    while left:
        read = size
        block = handle.read(read if left < 0 else min(read, left))
        size = min(2 * size, FEED_BYTES)
        if not block:
            break
        left = left - len(block) if left > 0 else left
        # `in` is a memchr; a reference in a line held back is said with the pieces that feed it
        pending = pending or (b"&" in block and ENTITY_REFERENCE.search(block) is not None)
        pieces = _lines(rest + block if rest else block)
        rest = b""
        if not pieces[-1].endswith(b"\n") and len(pieces[-1]) < read:  # a line longer than a read is fed as it is
            rest = pieces.pop()  # the line goes on in the next read
        if pieces:
            yield pieces, pending
            pending = False
    if rest:
        yield [rest], pending  # searched with the block it came in
    if document is not None and document.tail:
        yield [document.tail], False


def _lines(data: bytes) -> list[bytes]:
    """`data` cut after each b"\n", as readline cuts: a lone b"\r" ends no line (libxml2 would then see
    a document in other pieces, and might refuse it for another reason first)."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        pieces = [line + b"\n" for line in data.split(b"\n")]
        pieces[-1] = pieces[-1][:-1]
        if not pieces[-1]:
            pieces.pop()
        return pieces
    return data.splitlines(keepends=True)  # the same cuts, faster


def refuse_undeclared_entities(path: Path, log: Any, seen: int) -> int:
    """Raise for the first undeclared entity logged after entry `seen`; else return how many are logged."""
    for entry in list(log)[seen:]:
        if entry.type_name in _UNDECLARED_ENTITY:
            raise OdmFormatError(f"{path.name} line {entry.line}, column {entry.column}: {entry.message}; "
                                 "expected plain text or a character reference (&#233;), external DTDs are not read")
    return len(log)


def drop_finished(elem: Any) -> None:
    """Free a finished element and its finished earlier siblings, so memory does not grow with the file."""
    elem.clear()
    while elem.getprevious() is not None:
        del elem.getparent()[0]


def _open_frame(local: str, elem: Any, parent: list[Any], frames: list[list[Any]]) -> tuple[list[Any], str | None]:
    """The frame a container opens, and its own TransactionType. Attributes are read in one `items()`
    (lxml's `get` parses its argument each time: four of them cost more than the rest of a frame)."""
    keys, wanted = parent[KEYS], _KEY_ATTRIBUTES_OF[local]
    own_tt = oid = repeat_key = seq = dataset_seq = None
    for name, value in elem.items():
        if name == "TransactionType":
            own_tt = value
        elif name in wanted:
            if name == "ItemGroupDataSeq":
                seq = value
            elif name == DATASET_XML_SEQ:
                dataset_seq = value
            elif name.endswith("RepeatKey"):
                repeat_key = value
            else:
                oid = value
    if local == "SubjectData":
        keys = (*keys[:2], oid, *keys[3:])
    elif local == "StudyEventData":
        keys = (*keys[:3], oid, repeat_key, *keys[5:])
    elif local == "FormData":
        keys = (*keys[:5], oid, repeat_key, *keys[7:])
    else:  # ItemGroupData
        if repeat_key is None:
            repeat_key = seq if seq is not None else dataset_seq
        if parent[NAME] == "StudyEventData":  # ODM 2.0: the form is the group straight under the event
            keys = (*keys[:5], oid, repeat_key, oid, repeat_key)
        else:
            keys = (*keys[:7], oid, repeat_key)
    site = [None] if local == "SubjectData" else parent[SITE]
    frame = [parent, local, parent[TT] if own_tt is None else own_tt, site, None, len(frames), keys]
    frames.append(frame)
    return frame, own_tt


def columns_batch(columns: RowColumns) -> pa.RecordBatch:
    """Rows as a batch of STAGING_SCHEMA: the keys and site spread from the frames by Arrow's `take`."""
    rows, frames = columns.rows, columns.frames
    take = _numbers(columns.frame_index, pa.int32(), rows)
    keys = [_text_array(column, frames).take(take) for column in columns.keys]
    site = _text_array(columns.sites, frames).take(take)
    audits = [_text_array(column, rows) for column in columns.audits] or [pa.nulls(rows, pa.string())] * 3
    return pa.RecordBatch.from_arrays(
        [*keys[:3], site, *keys[3:], _text_array(columns.item_oid, rows), _text_array(columns.value, rows),
         _numbers(columns.is_null, pa.int8(), rows).cast(pa.bool_()), _text_array(columns.item_data_type, rows),
         _text_array(columns.transaction_type, rows), *audits, _numbers(columns.line, pa.int64(), rows),
         _numbers(columns.clinical_data_index, pa.int32(), rows), _containers(columns.frame_index, keys[2])],
        schema=STAGING_SCHEMA)


def _containers(frame_index: bytes, subject: pa.Array) -> pa.Array:
    """Each row's container (the ItemGroupData of an ItemData) numbered from 0 within its subject's run of
    rows in the batch, which tells two ItemGroupData sent with the same keys apart. A container's rows are
    consecutive and every reader cuts its batches between SubjectData elements; a run cut by a batch's end
    (a subject sent twice in a row) is numbered on by `write_batches`, so every reader numbers alike."""
    rows = len(subject)
    if not rows:
        return pa.array([], pa.int32())
    frames = np.frombuffer(frame_index, np.int32)
    new_container = np.ones(rows, bool)
    new_container[1:] = frames[1:] != frames[:-1]
    new_subject = np.ones(rows, bool)
    new_subject[1:] = pc.fill_null(pc.not_equal(subject[1:], subject[:-1]), True).to_numpy(zero_copy_only=False)
    counted = np.cumsum(new_container, dtype=np.int32)
    return pa.array(counted - np.maximum.accumulate(np.where(new_subject, counted, 0)), pa.int32())


def _containers_on(batch: pa.RecordBatch, last: _LastContainer) -> tuple[pa.RecordBatch, _LastContainer]:
    """The batch with the containers of its first subject's run numbered on from the last batch's `last`
    (subject, container) when that run goes on across the cut: numbered from 0 again, its first ItemGroupData
    was taken for the last one of the run before it, and their items for one record's (a hunt: the parallel
    reader merged a subject's second sending into its first where a part began between them). Also the
    batch's own last (subject, container)."""
    if not batch.num_rows:
        return batch, last
    subjects, at = batch.column("subject_key"), batch.schema.get_field_index("container")
    containers = batch.column(at).to_numpy(zero_copy_only=False)
    first = subjects[0].as_py()
    if last is not None and first is not None and first == last[0]:
        differs = pc.fill_null(pc.not_equal(subjects, first), True).to_numpy(zero_copy_only=False)
        run = int(differs.argmax()) if differs.any() else len(differs)
        containers = containers.copy()
        containers[:run] += last[1] + 1
        batch = batch.set_column(at, "container", pa.array(containers, pa.int32()))
    subject = subjects[-1].as_py()
    return batch, (subject, int(containers[-1])) if subject is not None else None


def _numbers(data: bytes, kind: pa.DataType, length: int) -> pa.Array:
    return pa.Array.from_buffers(kind, length, [None, pa.py_buffer(data)])


def _text_array(column: Text, length: int) -> pa.Array:
    joined, nulls = column
    if len(nulls) == length:  # no value (and none at all: "" would split into one)
        return pa.nulls(length, pa.string())
    offsets = pa.py_buffer(array("i", [0, len(joined)]).tobytes())
    values = pc.list_flatten(pc.split_pattern(
        pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(joined)]), "\0"))
    if nulls:
        null = np.zeros(len(values), dtype=bool)
        null[nulls] = True
        values = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), values)
    return values


def read_item_batches(path: Path, *, notices: list[str], document: SubDocument | None = None,
                      batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
    """Every ItemData of every ClinicalData (and every container sent with TransactionType Remove) as
    rows of STAGING_SCHEMA, in document order, in batches of about `batch_rows` (cut between subjects).

    Raises OdmFormatError (naming file, line and column) for input that is not well-formed ODM.
    Notices (no ClinicalData, empty ClinicalData, skipped elements) are appended to `notices`.
    """
    # The file is fed line by line because libxml2's own line numbers (`sourceline`) go wrong past
    # line 65,535 once finished elements are dropped; an event's line is the one where its tag ends.
    # Lines are counted as b"\n" bytes: exact for UTF-8 and ISO-8859-x, approximate for UTF-16.
    parser = etree.XMLPullParser(**SAFE_PARSER)
    feed, events = parser.feed, parser.read_events()
    prefix: str | None = None  # "{namespace}" of the root, "" when it has none
    item_tag = ""  # the plain ItemData's full tag, once the root is known
    watch_entities = False
    errors_seen = 0
    line = 1 if document is None else document.first_line - bool(document.head)

    clinical_data_index = -1
    rows_in_clinical_data = 0
    outside_clinical_data = 0
    foreign: dict[str, int] = {}
    frame: list[Any] | None = None  # innermost open container, None outside ClinicalData
    frames: list[list[Any]] = []  # the frames the batch's rows point to
    flat: list[Any] = []  # the rows read, ROW values each
    extend = flat.extend
    own_audits: dict[int, list[str | None]] = {}  # row -> an AuditRecord of the ItemData itself
    segments: list[tuple[int, int]] = []  # (rows flushed so far, their clinical_data_index)
    audit: list[str | None] | None = None  # the AuditRecord being read
    vendor: Any = None  # the vendor element being skipped, with all it holds
    item_elem: Any = None  # the plain ItemData being read: its end is known without asking its tag

    # The ItemData being read, until its end tag
    item_open = False
    item_oid: str | None = None
    item_value: str | None = None
    item_null = False
    item_type: str | None = None
    item_tt: str | None = None
    item_line = 0
    item_frame: list[Any] = []
    item_audit: list[str | None] | None = None
    item_values: list[str] | None = None

    try:
        with path.open("rb") as handle:
            for pieces, suspicious in _with_end(feed_pieces(handle, document)):
                if suspicious:
                    watch_entities = True
                for chunk in pieces:
                    if chunk:
                        feed(chunk)
                        # an undeclared entity is logged as its line is fed, and may end the events (no end
                        # tag of ENTITY_CHECKPOINTS comes), the log then replaced by a later, misleading error
                        if watch_entities and len(parser.feed_error_log) > errors_seen:
                            errors_seen = refuse_undeclared_entities(path, parser.feed_error_log, errors_seen)
                    else:
                        parser.close()
                    for event, elem in events:
                        if vendor is not None:  # inside a vendor element everything is the vendor's
                            if event == "end":
                                if elem is vendor:
                                    vendor = None
                                drop_finished(elem)
                            elif frame is not None and elem.tag.startswith(item_tag):
                                # ODM's own values under a container ODM does not know: skipped, they would be lost
                                raise OdmFormatError(
                                    f"{path.name}: line {line}: an ItemData inside <{vendor.tag}>, an element of "
                                    "another namespace, within ClinicalData; expected clinical data in ODM's own "
                                    "containers (a vendor extension around values is not read, and its values "
                                    "would be lost)")
                            elif frame is None and etree.QName(elem.tag).localname == "ClinicalData":
                                raise OdmFormatError(
                                    f"{path.name}: line {line}: a ClinicalData inside <{vendor.tag}>, an element of "
                                    "another namespace; expected ClinicalData in ODM's own elements (a vendor "
                                    "extension around it is not read: every value would be lost, the file said "
                                    "to hold no ClinicalData)")
                            continue
                        if elem is item_elem:  # the plain ItemData being read ends: its row is complete
                            item_elem = None
                            if frame is None:
                                drop_finished(elem)
                                continue
                            if item_values and item_value is None:
                                item_value = "|".join(item_values)
                            if item_audit is not None:
                                own_audits[len(flat) // ROW] = item_audit
                            extend((item_oid, None if item_null else item_value, item_null, None, item_tt, item_line,
                                    item_frame[INDEX]))
                            rows_in_clinical_data += 1
                            item_open = False
                            if frame[NAME] == "ClinicalData":  # no container will free it
                                drop_finished(elem)
                            continue
                        tag = elem.tag
                        if tag == item_tag:  # the plain ItemData: most events of an export
                            if event == "end":  # not the one being read: one inside it was
                                drop_finished(elem)
                            elif frame is None:
                                outside_clinical_data += 1
                            else:
                                item_open, item_frame, item_line, item_elem = True, frame, line, elem
                                item_type = item_audit = item_values = None
                                item_oid, item_value, item_null, item_tt = item_attributes(elem)
                                if item_tt is None:
                                    item_tt = frame[TT]
                            continue

                        if prefix is None:
                            prefix = root_prefix(path, elem, line)
                            item_tag = prefix + "ItemData"
                            watch_entities = watch_entities or bool(elem.getroottree().docinfo.doctype)
                        if prefix:
                            local = tag[len(prefix):] if tag.startswith(prefix) else None
                        else:
                            local = None if tag[0] == "{" else tag
                        if local is None:  # a vendor extension: skipped, but counted if it sits in the data
                            if event == "start" and etree.QName(tag).localname == "ClinicalData":
                                raise OdmFormatError(
                                    f"{path.name}: line {line}: a ClinicalData of namespace "
                                    f"{etree.QName(tag).namespace or '(none)'} in an ODM of namespace "
                                    f"{prefix[1:-1] or '(none)'}; expected the clinical data in its ODM's namespace "
                                    "(read as another's, every value would be lost, the file said to hold no "
                                    "ClinicalData)")
                            if frame is not None:
                                namespace = etree.QName(elem).namespace or "(none)"
                                foreign[namespace] = foreign.get(namespace, 0) + 1
                            vendor = elem  # (its start: a vendor element's end is met above)
                            continue

                        if event == "start":
                            if local == "ClinicalData":
                                clinical_data_index += 1
                                rows_in_clinical_data = 0
                                frame = [None, local, None, None, None, len(frames),
                                         (elem.get("StudyOID"), elem.get("MetaDataVersionOID"), *(None,) * 7)]
                                frames.append(frame)
                            elif frame is None:
                                if local.startswith("ItemData"):
                                    outside_clinical_data += 1
                            elif local in _CONTAINERS:
                                frame, own_tt = _open_frame(local, elem, frame, frames)
                                if own_tt == "Remove":
                                    # A container removed in a transactional export has no ItemData to carry the
                                    # news: it becomes a row of its own, with its keys and no item (item_oid None).
                                    extend((elem.get("ItemOID"), elem.get("Value"), elem.get("IsNull") == "Yes",
                                            None, own_tt, line, frame[INDEX]))
                                    rows_in_clinical_data += 1
                            elif local.startswith("ItemData"):  # a typed variant: ItemDataString, ...
                                item_open, item_frame, item_line = True, frame, line
                                item_oid, item_value = elem.get("ItemOID"), elem.get("Value")
                                item_null = elem.get("IsNull") == "Yes"
                                item_tt = elem.get("TransactionType", frame[TT])
                                item_type = local[len("ItemData"):].lower() or None
                                item_audit = item_values = item_elem = None
                            elif local == "AuditRecord":
                                audit = [None, None, None]
                                parent = _parent_name(elem, prefix)
                                if item_open and parent.startswith("ItemData"):
                                    item_audit = audit
                                elif parent in _CONTAINERS:
                                    frame[AUDIT] = audit
                            elif (local == "UserRef" and audit is not None
                                  and _parent_name(elem, prefix) == "AuditRecord"):
                                audit[0] = elem.get("UserOID")
                            elif (local == "SiteRef" and frame[SITE] is not None
                                  and _parent_name(elem, prefix) == "SubjectData"):
                                frame[SITE][0] = elem.get("LocationOID")
                            continue

                        # end events
                        if watch_entities and local in ENTITY_CHECKPOINTS and len(parser.feed_error_log) > errors_seen:
                            errors_seen = refuse_undeclared_entities(path, parser.feed_error_log, errors_seen)
                        if frame is None:
                            pass
                        elif local in _CONTAINERS:
                            frame = frame[PARENT]
                            if frame is not None and frame[NAME] == "ClinicalData":
                                # A subject (or Dataset-XML record) is complete: its rows may go out.
                                drop_finished(elem)
                                segments.append((len(flat) // ROW, clinical_data_index))
                                if len(flat) >= batch_rows * ROW:
                                    yield columns_batch(row_columns(flat, frames, own_audits, segments))
                                    flat.clear()
                                    own_audits.clear()
                                    segments.clear()
                                    frames = _reindexed(frame)
                                continue
                            elem.clear()  # its earlier siblings go with its subject
                            continue
                        elif item_open and local.startswith("ItemData"):  # a typed variant ends
                            if item_type is not None:
                                item_value = elem.text or ""
                            elif item_value is None and item_values:
                                item_value = "|".join(item_values)
                            if item_audit is not None:
                                own_audits[len(flat) // ROW] = item_audit
                            extend((item_oid, None if item_null else item_value, item_null, item_type, item_tt,
                                    item_line, item_frame[INDEX]))
                            rows_in_clinical_data += 1
                            item_open = False
                        elif local == "Value":
                            if item_open and _parent_name(elem, prefix).startswith("ItemData"):
                                if item_values is None:
                                    item_values = []
                                item_values.append(elem.text or "")
                        elif local == "DateTimeStamp" or local == "ReasonForChange":
                            if audit is not None and _parent_name(elem, prefix) == "AuditRecord":
                                audit[1 if local == "DateTimeStamp" else 2] = elem.text
                        elif local == "AuditRecord":
                            audit = None
                        elif local == "ClinicalData":
                            segments.append((len(flat) // ROW, clinical_data_index))
                            if rows_in_clinical_data == 0:
                                notices.append(f"{path.name}: ClinicalData {clinical_data_index} "
                                               f"(StudyOID {elem.get('StudyOID')!r}) holds no ItemData")
                            frame = None
                        drop_finished(elem)
                    line += chunk.endswith(b"\n")
    except etree.ParseError as error:
        raise format_error(path, error) from None

    flushed = segments[-1][0] if segments else 0
    if flushed:  # rows after the last complete subject never went out
        del flat[flushed * ROW:]
        yield columns_batch(row_columns(flat, frames, own_audits, segments))
    if clinical_data_index < 0:
        notices.append(f"{path.name}: no ClinicalData (metadata-only file)")
    if outside_clinical_data:
        notices.append(f"{path.name}: {outside_clinical_data} ItemData outside ClinicalData "
                       "(e.g. ReferenceData) skipped")
    for namespace, count in sorted(foreign.items()):
        notices.append(f"{path.name}: {count} element(s) of namespace {namespace} inside ClinicalData ignored")


def _with_end(pieces: Iterator[tuple[list[bytes], bool]]) -> Iterator[tuple[list[bytes], bool]]:
    """`pieces`, then the empty piece that tells the parser the document is complete."""
    yield from pieces
    yield [b""], False


def _parent_name(elem: Any, prefix: str) -> str:
    """The local name of an element's parent ("" for the root's): outside vendor elements, always ODM's."""
    parent = elem.getparent()
    return "" if parent is None else parent.tag[len(prefix):]


def _reindexed(frame: list[Any] | None) -> list[list[Any]]:
    """A new frame table holding the open frames, the only ones later rows can point to."""
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame[PARENT]
    chain.reverse()
    for index, open_frame in enumerate(chain):
        open_frame[INDEX] = index
    return chain


_LastContainer = tuple[str, int] | None  # a batch's last subject and container


def write_batches(writer: pq.ParquetWriter, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
                  lineage: dict[str, str]) -> int:
    """Write `batches` as rows of `schema` (the staging columns, then lineage constants); return how many."""
    rows = 0
    last: _LastContainer = None
    for batch in batches:
        batch, last = _containers_on(batch, last)
        constants = [pa.repeat(pa.scalar(value, pa.string()), batch.num_rows) for value in lineage.values()]
        writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, *constants], schema=schema))
        rows += batch.num_rows
    if rows == 0:  # still a readable file with the schema
        writer.write_table(schema.empty_table())
    return rows
