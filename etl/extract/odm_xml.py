"""What both ODM readers share (`odm_items`, the one-pass reader of any ODM, and `odm_subjects`,
the reader of plain exports): libxml2's safe settings, the form of an error, and the rows as they
are kept while a file is read, turned into columns once a batch.

Only lxml is imported (no pyarrow), so `odm_subjects` starts fast in a second process.
"""

from __future__ import annotations

import codecs
import contextlib
import mmap
import re
from array import array
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import is_
from pathlib import Path
from typing import Any, NamedTuple

from lxml import etree

from etl.extract.errors import ExtractError


class OdmFormatError(ExtractError):
    """The file is not well-formed XML, not ODM, or uses XML features refused for safety."""


# resolve_entities=False keeps entity references unexpanded, load_dtd/no_network keep libxml2 from
# fetching anything, huge_tree=False keeps libxml2's limits on depth, text size and entity amplification.
SAFE_PARSER: dict[str, Any] = {
    "events": ("start", "end"), "resolve_entities": False, "no_network": True, "load_dtd": False,
    "dtd_validation": False, "huge_tree": False, "remove_comments": True, "remove_pis": True}
SAFE_TREE_PARSER = {name: value for name, value in SAFE_PARSER.items() if name != "events"}  # for etree.XMLParser
# An "&" that is neither a character reference nor one of XML's five entities: only after one has been
# fed can libxml2 have logged an undeclared entity (a cut "&am" counts: better one look too many).
ENTITY_REFERENCE = re.compile(rb"&(?!(?:lt|gt|amp|apos|quot);|#)")
DATASET_XML_SEQ = "{http://www.cdisc.org/ns/Dataset-XML/v1.0}ItemGroupDataSeq"


@dataclass(frozen=True)
class SubDocument:
    """Part of an ODM file parsed as a document of its own (`etl.extract.odm_chunks`): `head` (the
    file's XML declaration, root and ClinicalData start tags), the file's bytes [start, end), then
    `tail` (the closing tags)."""

    head: bytes
    start: int
    end: int
    tail: bytes
    first_line: int  # the file's line of byte `start`


_DECLARED = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_DECODED_BLOCK = 1 << 23


def refuse_utf8_declared_otherwise(path: Path) -> None:
    """Refuse a file declaring a one-byte encoding (ISO-8859-1, windows-1252) whose non-ASCII bytes are all UTF-8
    characters: XML allows it, and every accented letter would load as two ('é' as 'Ã©'). A text in the declared
    encoding is almost never valid UTF-8 beyond ASCII, so this refuses no file written as it says."""
    with path.open("rb") as handle:
        declared = _DECLARED.match(handle.read(256).removeprefix(b"\xef\xbb\xbf"))
        if declared is None or not _one_byte(declared.group(1).decode("ascii")) or handle.seek(0, 2) == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            first = re.search(rb"[\x80-\xff]", data)
            if first is None:
                return
            decoder = codecs.getincrementaldecoder("utf-8")()
            try:  # ASCII before the first: decoded from there, in blocks
                for start in range(first.start(), len(data), _DECODED_BLOCK):
                    decoder.decode(data[start:start + _DECODED_BLOCK])
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return
            line = 1 + sum(data[start:min(start + _DECODED_BLOCK, first.start())].count(b"\n")
                           for start in range(0, first.start(), _DECODED_BLOCK))
    encoding = declared.group(1).decode("ascii")
    raise OdmFormatError(f"{path.name} line {line}: the file declares encoding=\"{encoding}\", but its text is UTF-8 "
                         f"(each accented letter would load as two, 'é' as 'Ã©'); expected the declaration to name "
                         "the encoding the text is written in (export it again declaring UTF-8)")


def _one_byte(encoding: str) -> bool:
    """Whether `encoding` (as an XML declaration names it: `ISO-8859-1`, `ISO_8859-1`, `ISO-LATIN-1`, `l1`,
    `CP819`, `windows-1252`, `koi8-r`) writes a character beyond ASCII in one byte: most such bytes read alone as one
    character (a multi-byte encoding's lead bytes do not; ASCII reads none). False for a name Python does not
    know: libxml2 reads the file, or refuses it, in its own words."""
    encoding = re.sub(r"(?i)^iso[-_]?latin[-_]?", "latin", encoding)  # libxml2's ISO-LATIN-1, which Python lacks
    try:
        codecs.lookup(encoding)
    except LookupError:
        return False
    alone = 0
    for byte in range(128, 256):
        with contextlib.suppress(UnicodeDecodeError):
            alone += len(bytes([byte]).decode(encoding)) == 1
    return alone >= 96


def root_prefix(path: Path, root: Any, line: int) -> str:
    """`{namespace}` of the root (or ""), after checking it is <ODM> and its DOCTYPE declares no entity."""
    name = etree.QName(root)
    if name.localname != "ODM":
        raise OdmFormatError(f"{path.name} line {line}: the root element is <{name.localname}>, "
                             "expected <ODM> (a CDISC ODM export)")
    dtd = root.getroottree().docinfo.internalDTD
    entities = [entity.name for entity in dtd.iterentities()] if dtd is not None else []
    if entities:
        raise OdmFormatError(
            f"{path.name} line {line}: the DOCTYPE declares entities ({', '.join(entities[:5])}); "
            "ODM never needs them and they are refused for safety (entity expansion, file disclosure)")
    return f"{{{name.namespace}}}" if name.namespace else ""


def item_attributes(elem: Any) -> tuple[str | None, str | None, bool, str | None]:
    """(ItemOID, Value, IsNull="Yes", its own TransactionType) of an ItemData, read in one `items()`
    (lxml's `get` parses its argument each time: four of them cost more)."""
    oid = value = transaction_type = None
    null = False
    for name, text in elem.items():
        if name == "ItemOID":
            oid = text
        elif name == "Value":
            value = text
        elif name == "IsNull":
            null = text == "Yes"
        elif name == "TransactionType":
            transaction_type = text
    return oid, value, null, transaction_type


def format_error(path: Path, error: etree.ParseError) -> OdmFormatError:
    """libxml2's refusal as an error naming the file, line and column."""
    at_line, column = error.position
    message = str(error.msg or error).split(f", line {at_line}, column")[0].strip()
    limit = any(sign in message for sign in ("XML_PARSE_HUGE", "Resource limit", "amplification"))
    return OdmFormatError(f"{path.name} line {max(at_line, 1)}, column {max(column, 1)}: "
                          f"{'over a parser safety limit' if limit else 'not well-formed XML'}: {message}")


# A frame is an open ClinicalData container, a list for speed:
# [parent frame, local name, effective TransactionType, its subject's site (a list of one, shared by
#  the subject's frames, as SiteRef may come late; None outside a subject), AuditRecord, index in the
#  batch's frame table, keys (study, metadata version, subject, event, event repeat, form, form
#  repeat, group, group repeat)]. Nothing points back at a frame, so no reference cycle is made and
#  the cyclic garbage collector can stay off while a file is read (`no_cyclic_gc`).
PARENT, NAME, TT, SITE, AUDIT, INDEX, KEYS = range(7)
ROW = 7  # a row in the flat list: item_oid, value, is_null, item_data_type, transaction_type, line, frame index


# A text column packed: its values in UTF-8, joined by NUL (which no XML text can hold, so none is
# ever read), null values as "" there; and the positions of the nulls.
Text = tuple[bytes, list[int]]


class RowColumns(NamedTuple):
    """A batch of rows packed for Arrow (`odm_items.columns_batch`), in Python's built-in types only, so
    that marshal carries it between processes fast: text columns as `Text`, numbers as machine ints.
    The keys and sites are given once per frame, each row's frame by its index."""

    rows: int
    frames: int
    frame_index: bytes  # int32 per row
    keys: list[Text]  # the 9 keys of the frames: study ... group repeat
    sites: Text  # of the frames
    audits: list[Text]  # user, date-time, reason per row; [] when no row has one
    item_oid: Text
    value: Text
    is_null: bytes  # a byte per row, 0 or 1
    item_data_type: Text
    transaction_type: Text
    line: bytes  # int64 per row
    clinical_data_index: bytes  # int32 per row


def _text(values: list[str | None]) -> Text:
    try:  # mostly no null: a TypeError says there is one
        return "\0".join(values).encode(), []  # type: ignore[arg-type]
    except TypeError:  # the nulls found in C: most such columns are null but for a few rows (audit trails)
        nulls = list(compress(count(), map(is_, values, repeat(None))))
        if len(nulls) == len(values):  # a column no row has (a plain export's item types)
            return b"\0" * (len(values) - 1), nulls
        return "\0".join([value or "" for value in values]).encode(), nulls


def row_columns(flat: list[Any], frames: list[list[Any]], own_audits: dict[int, list[str | None]],
                segments: list[tuple[int, int]], *, inherited_audits: bool | None = None) -> RowColumns:
    """The rows in `flat` as columns; a row's keys, site and inherited AuditRecord come from its frame,
    its clinical_data_index from `segments` ((rows so far, index) per flush).

    inherited_audits: whether a frame above a row may hold an AuditRecord (None: look at `frames`,
    which then holds every frame)."""
    rows = len(flat) // ROW
    frame_index = flat[6::ROW]
    audits: list[list[str | None]] = []
    if inherited_audits is None:
        inherited_audits = any(frame[AUDIT] is not None for frame in frames)
    if inherited_audits:  # nearest AuditRecord, like TransactionType
        found = []
        for row, index in enumerate(frame_index):
            audit, frame = own_audits.get(row), frames[index]
            while audit is None and frame is not None:
                audit, frame = frame[AUDIT], frame[PARENT]
            found.append(audit or (None, None, None))
        audits = [list(column) for column in zip(*found, strict=True)]
    elif own_audits:  # few: filled in place
        for part in range(3):
            column: list[str | None] = [None] * rows
            for row, audit in own_audits.items():
                column[row] = audit[part]
            audits.append(column)
    indexes = array("i")
    done = 0
    for end, clinical_data_index in segments:
        indexes.extend(array("i", [clinical_data_index]) * (end - done))
        done = end
    keys = zip(*(frame[KEYS] for frame in frames), strict=True)
    return RowColumns(rows, len(frames), array("i", frame_index).tobytes(), [_text(list(column)) for column in keys],
                      _text([frame[SITE][0] if frame[SITE] is not None else None for frame in frames]),
                      [_text(column) for column in audits], _text(flat[0::ROW]), _text(flat[1::ROW]),
                      bytes(flat[2::ROW]), _text(flat[3::ROW]), _text(flat[4::ROW]), array("q", flat[5::ROW]).tobytes(),
                      indexes.tobytes())
