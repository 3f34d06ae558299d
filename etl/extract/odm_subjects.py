"""The plain export's reader: a part of the file parsed whole, its subjects' trees walked in C or in Python.

`odm_items.read_item_batches` reads any ODM with one Python step per XML event, start and end
(four for a line of `<ItemData .../>`, with the line fed on its own to count lines). A plain
export, what EDC systems write every night, needs none of that: here libxml2 parses a part of
`odm_chunks.PART_LINES` lines at once, and each subject's tree is walked in Python, an ItemData
(most of it) costing one iteration and two `get`s. Rows, keys and audit trails are those of
`read_item_batches` (`odm_xml.row_columns` makes them), lines are libxml2's `sourceline`, exact in
a document under 65,535 lines (beyond, libxml2 guesses from the next text): `odm_chunks` cuts the
file into parts that are shorter.

The subjects are walked in C (`_odm_walk.c`, compiled with the package by hatch_build.py), which
writes the columns of these rows without a Python step per ItemData, and hands back to this walk,
from the subject where its batch started, anything it does not read exactly as this walk does (an
element out of place, a DTD): this walk is the reference, and reads everything where the C walk
could not be compiled.

Only lxml is imported: run as `python -m etl.extract.odm_subjects` (etl/interpreter.py), told on stdin (JSON) the
file's PATH, where to write OUT and WHERE its parts lie, it is the second process of `odm_chunks`, which starts in
a twentieth of a second.

Plain means: ClinicalData holds only SubjectData, SubjectData holds SiteRef, AuditRecord and
StudyEventData, StudyEventData FormData, FormData ItemGroupData, ItemGroupData `<ItemData>`
(not its typed variants, not ODM 2.0's `<Value>` children); AuditRecords anywhere in that
hierarchy; no entity reference but XML's five, no vendor element. Anything else raises
`NotPlain`, and the file goes to `read_item_batches`, whose rows, errors and notices are the
reference.
"""

from __future__ import annotations

import gc
import json
import marshal
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import Any

from lxml import etree

from etl.extract.odm_xml import (
    AUDIT,
    DATASET_XML_SEQ,
    ENTITY_REFERENCE,
    INDEX,
    KEYS,
    ROW,
    SAFE_TREE_PARSER,
    SITE,
    TT,
    RowColumns,
    SubDocument,
    Text,
    format_error,
    item_attributes,
    root_prefix,
    row_columns,
)


def _c_walk() -> ModuleType | None:
    """The C walk (compiled with the package by hatch_build.py), if it was compiled against the lxml and
    libxml2 imported here (it reads their structures); else None: every subject is read in Python."""
    try:
        from etl.extract import _odm_walk
    except ImportError:  # an install that could not compile it
        return None
    imported, compiled = (etree.__version__, ".".join(map(str, etree.LIBXML_VERSION))), (
        _odm_walk.LXML_VERSION, _odm_walk.LIBXML_VERSION)
    if imported != compiled:
        import logging  # here only: the second process starts sooner without it

        logging.getLogger(__name__).warning(
            "ODM's C walk was compiled against lxml %s (libxml2 %s), not the lxml %s (libxml2 %s) imported: "
            "ODM subjects are read in Python, more slowly, until the package is installed again",
            *compiled, *imported)
        return None
    return _odm_walk


_odm_walk = _c_walk()


def walks_in_c() -> bool:
    """Whether subjects are walked in C (and so without holding the GIL)."""
    return _odm_walk is not None


class NotPlain(Exception):
    """The part holds something only the general reader reads; the message says what."""


# One part is parsed at once (libxml2's push parser, fed piece by piece, takes half as long again),
# without the indentation between elements, which no row reads (an element holding only blanks
# keeps them): a tenth less to parse.
_PARSER = {**SAFE_TREE_PARSER, "remove_blank_text": True}
# Attribute names whose absence from a part lets its rows be read with fewer calls.
_RARE_ATTRIBUTES = (b"TransactionType", b"ItemGroupDataSeq", b"IsNull")


def read_subject_columns(path: Path, document: SubDocument, *, batch_rows: int = 50_000) -> Iterator[RowColumns]:
    """The rows of `odm_items.read_item_batches(path, document=document)`, in batches of about `batch_rows`.

    Raises NotPlain for what is not a plain export, OdmFormatError for what is not well-formed."""
    with path.open("rb") as handle:
        handle.seek(document.start)
        data = handle.read(document.end - document.start)
    if b"&" in data and ENTITY_REFERENCE.search(data):
        raise NotPlain("an entity reference other than XML's five")
    try:
        root = etree.fromstring(document.head + data + document.tail, etree.XMLParser(**_PARSER))
    except etree.ParseError as error:
        raise format_error(path, error) from None
    # The document's line L is the file's line first_line + L - 1 - (the head's lines).
    shift = document.first_line - 1 - document.head.count(b"\n")
    prefix = root_prefix(path, root, shift + (root.sourceline or 1))
    if len(root) != 1 or root[0].tag != prefix + "ClinicalData":
        raise NotPlain("the part is not one ClinicalData")
    subjects = _Subjects(root[0], prefix, shift, rare_attributes=any(name in data for name in _RARE_ATTRIBUTES))
    del data
    start = 0
    if _odm_walk is not None:
        clinical, namespace = root[0], prefix[1:-1] or None
        study, version = subjects.clinical_frame[KEYS][:2]
        while start >= 0:
            read = _odm_walk.read(clinical, namespace, study, version, shift, batch_rows, start,
                                  not subjects.rare_attributes)
            if read is None:
                break  # those subjects are read in Python, below
            start, columns = read[0], _c_columns(*read[1:])
            if columns.rows:
                subjects.rows += columns.rows
                yield columns
        else:
            if not subjects.rows:
                raise NotPlain("no ItemData")  # the general reader has a notice for it
            return
    for subject in islice(root[0], start, None):
        if subject.tag != subjects.subject_tag:
            raise NotPlain(f"a <{subject.tag}> in ClinicalData")
        subjects.read(subject)
        if len(subjects.flat) >= batch_rows * ROW:
            yield subjects.batch()
    if not subjects.rows:
        raise NotPlain("no ItemData")  # the general reader has a notice for it
    if subjects.flat:
        yield subjects.batch()


def _c_columns(rows: int, frames: int, frame_index: bytes, keys: list[Text], sites: Text, audits: list[Text],
               item_oid: Text, value: Text, is_null: bytes, transaction_type: Text | None, line: bytes) -> RowColumns:
    """`_odm_walk.read`'s columns as `_Subjects.batch` gives them: a part holds no item data type and one
    ClinicalData; a lean part no TransactionType (None)."""
    no_value: Text = (b"\0" * (rows - 1), list(range(rows))) if rows else (b"", [])
    return RowColumns(rows, frames, frame_index, keys, sites, audits, item_oid, value, is_null, no_value,
                      no_value if transaction_type is None else transaction_type, line, bytes(4 * rows))


class _Subjects:
    """The rows of the subjects read so far, as `odm_items` keeps them: frames (here only those rows
    point to) and a flat row list."""

    def __init__(self, clinical: Any, prefix: str, shift: int, *, rare_attributes: bool) -> None:
        self.shift = shift
        self.subject_tag = prefix + "SubjectData"
        self.tags = {prefix + name: name for name in (
            "SiteRef", "AuditRecord", "StudyEventData", "FormData", "ItemGroupData", "ItemData", "UserRef",
            "LocationRef", "DateTimeStamp", "ReasonForChange", "SourceID")}
        self.item_tag, self.audit_tag = prefix + "ItemData", prefix + "AuditRecord"
        study = (clinical.get("StudyOID"), clinical.get("MetaDataVersionOID"), *(None,) * 7)
        self.clinical_frame: list[Any] = [None, "ClinicalData", None, None, None, 0, study]
        self.frames: list[list[Any]] = []
        self.flat: list[Any] = []
        self.own_audits: dict[int, list[str | None]] = {}
        self.audited_containers = False
        self.rows = 0  # read so far
        # Without the rare attributes an ItemData is read by two `get`s (a third of `items()`'s cost).
        self.rare_attributes = rare_attributes

    def read(self, subject: Any) -> None:
        before = len(self.flat)
        if self.rare_attributes:
            self._container(subject, "SubjectData", self.clinical_frame)
        else:
            self._lean_subject(subject)
        self.rows += (len(self.flat) - before) // ROW

    def batch(self) -> RowColumns:
        batch = row_columns(self.flat, self.frames, self.own_audits, [(len(self.flat) // ROW, 0)],
                            inherited_audits=self.audited_containers)
        self.flat.clear()
        self.own_audits.clear()
        self.frames = []
        self.audited_containers = False
        return batch

    def _row_frame(self, frame: list[Any]) -> int:
        """The frame's index in the batch's frame table, where it goes once a row points to it."""
        if frame[INDEX] is None:
            frame[INDEX] = len(self.frames)
            self.frames.append(frame)
        return int(frame[INDEX])

    def _container(self, elem: Any, name: str, parent: list[Any]) -> None:
        """A container's frame and rows, then its children's, in document order."""
        keys = parent[KEYS]
        if name == "ItemGroupData":
            repeat_key = elem.get("ItemGroupRepeatKey")
            if repeat_key is None and self.rare_attributes:
                repeat_key = elem.get("ItemGroupDataSeq")
                if repeat_key is None:
                    repeat_key = elem.get(DATASET_XML_SEQ)
            keys = (*keys[:7], elem.get("ItemGroupOID"), repeat_key)
        elif name == "FormData":
            keys = (*keys[:5], elem.get("FormOID"), elem.get("FormRepeatKey"), *keys[7:])
        elif name == "StudyEventData":
            keys = (*keys[:3], elem.get("StudyEventOID"), elem.get("StudyEventRepeatKey"), *keys[5:])
        else:
            keys = (*keys[:2], elem.get("SubjectKey"), *keys[3:])
        own_tt = elem.get("TransactionType") if self.rare_attributes else None
        site = [None] if name == "SubjectData" else parent[SITE]
        frame = [parent, name, parent[TT] if own_tt is None else own_tt, site, None, None, keys]
        if own_tt == "Remove":  # a container removed by a transactional export: a row of its own
            self.flat.extend((elem.get("ItemOID"), elem.get("Value"), elem.get("IsNull") == "Yes", None, own_tt,
                              self.shift + elem.sourceline, self._row_frame(frame)))
        if name == "ItemGroupData":
            self._items(elem, frame)
            return
        inner, tags = _INNER[name], self.tags
        for child in elem:
            local = tags.get(child.tag)
            if local == inner:
                self._container(child, local, frame)
            elif local == "AuditRecord":
                frame[AUDIT] = self._audit(child)
                self.audited_containers = True
            elif local == "SiteRef" and name == "SubjectData" and not len(child):
                site[0] = child.get("LocationOID")
            else:
                raise NotPlain(f"a <{child.tag}> in {name}")

    def _lean_subject(self, subject: Any) -> None:
        """`_container` for a subject of a file without the rare attributes (no TransactionType, so no
        Remove; no IsNull, no ItemGroupDataSeq), unrolled: what most nightly exports are."""
        tags, item_tag, extend, frames, shift = self.tags, self.item_tag, self.flat.extend, self.frames, self.shift
        study, version = self.clinical_frame[KEYS][:2]
        subject_key = subject.get("SubjectKey")
        site: list[str | None] = [None]
        subject_frame = [self.clinical_frame, "SubjectData", None, site, None, None,
                         (study, version, subject_key, *(None,) * 6)]
        for event in subject:
            local = tags.get(event.tag)
            if local != "StudyEventData":
                if local == "SiteRef" and not len(event):
                    site[0] = event.get("LocationOID")
                else:
                    self._other_child(event, local, subject_frame)
                continue
            event_oid, event_repeat = event.get("StudyEventOID"), event.get("StudyEventRepeatKey")
            event_frame = [subject_frame, "StudyEventData", None, site, None, None,
                           (study, version, subject_key, event_oid, event_repeat, *(None,) * 4)]
            for form in event:
                local = tags.get(form.tag)
                if local != "FormData":
                    self._other_child(form, local, event_frame)
                    continue
                form_keys = (study, version, subject_key, event_oid, event_repeat, form.get("FormOID"),
                             form.get("FormRepeatKey"))
                form_frame = [event_frame, "FormData", None, site, None, None, (*form_keys, None, None)]
                for group in form:
                    local = tags.get(group.tag)
                    if local != "ItemGroupData":
                        self._other_child(group, local, form_frame)
                        continue
                    frame = [form_frame, "ItemGroupData", None, site, None, len(frames),
                             (*form_keys, group.get("ItemGroupOID"), group.get("ItemGroupRepeatKey"))]
                    frames.append(frame)
                    index = frame[INDEX]
                    for item in group:
                        if item.tag != item_tag:
                            self._other_child(item, tags.get(item.tag), frame)
                            continue
                        if len(item):
                            self._item_audit(item)
                        extend((item.get("ItemOID"), item.get("Value"), False, None, None, shift + item.sourceline,
                                index))

    def _other_child(self, child: Any, local: str | None, frame: list[Any]) -> None:
        """A container's child that is not the next container down: its AuditRecord, or not plain."""
        if local != "AuditRecord":
            raise NotPlain(f"a <{child.tag}> in {frame[1]}")
        frame[AUDIT] = self._audit(child)
        self.audited_containers = True

    def _items(self, group: Any, frame: list[Any]) -> None:
        """The ItemData of a group: the hot loop of a plain export."""
        extend, item_tag, shift, inherited = self.flat.extend, self.item_tag, self.shift, frame[TT]
        index = self._row_frame(frame) if len(group) else None
        for item in group:
            if item.tag != item_tag:
                if item.tag != self.audit_tag:
                    raise NotPlain(f"a <{item.tag}> in ItemGroupData")
                frame[AUDIT] = self._audit(item)
                self.audited_containers = True
                continue
            if len(item):
                self._item_audit(item)
            if not self.rare_attributes:
                extend((item.get("ItemOID"), item.get("Value"), False, None, inherited, shift + item.sourceline, index))
                continue
            oid, value, null, tt = item_attributes(item)
            extend((oid, None if null else value, null, None, inherited if tt is None else tt,
                    shift + item.sourceline, index))

    def _item_audit(self, item: Any) -> None:
        audit = None
        for child in item:
            if child.tag != self.audit_tag:
                raise NotPlain(f"a <{child.tag}> in ItemData")
            audit = self._audit(child)
        if audit is not None:
            self.own_audits[len(self.flat) // ROW] = audit

    def _audit(self, record: Any) -> list[str | None]:
        """[user, date-time, reason] of an AuditRecord, as `read_item_batches` reads them."""
        audit: list[str | None] = [None, None, None]
        for child in record:
            local = self.tags.get(child.tag)
            if len(child):
                raise NotPlain(f"a <{child.tag}> with elements in AuditRecord")
            if local == "UserRef":
                audit[0] = child.get("UserOID")
            elif local == "DateTimeStamp":
                audit[1] = child.text
            elif local == "ReasonForChange":
                audit[2] = child.text
            elif local not in ("LocationRef", "SourceID"):
                raise NotPlain(f"a <{child.tag}> in AuditRecord")
        return audit


_INNER = {"SubjectData": "StudyEventData", "StudyEventData": "FormData", "FormData": "ItemGroupData"}


def _stage_parts(path: Path, out: Path, where: dict[str, Any]) -> None:
    """The second process of `odm_chunks`: the rows of the parts `where` names, written to `out` batch
    by batch (its length in 8 bytes, then the batch marshalled), after checking the file's size and
    time instead of planning again."""
    seen = path.stat()
    if (seen.st_size, seen.st_mtime_ns) != (where["size"], where["mtime_ns"]):
        sys.exit("the file changed while it was staged")
    parts = [SubDocument(str(p["head"]).encode("latin-1"), int(p["start"]), int(p["end"]),
                         str(p["tail"]).encode("latin-1"), int(p["first_line"])) for p in where["parts"]]
    gc.disable()  # no reference cycle is made (`etl.memory.no_cyclic_gc`)
    with out.open("wb") as handle:
        for part in parts:
            for columns in read_subject_columns(path, part, batch_rows=int(where["batch_rows"])):
                data = marshal.dumps(tuple(columns))  # in one piece: `marshal.load` reads a file bit by bit
                handle.write(len(data).to_bytes(8, "little") + data)


if __name__ == "__main__":
    _job = json.loads(sys.stdin.read())  # the file, where to write, where its parts lie (odm_chunks)
    _stage_parts(Path(_job["path"]), Path(_job["out"]), _job["where"])
