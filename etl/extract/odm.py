"""Streaming, safe reader for CDISC ODM ClinicalData (EDC exports): one raw row per ItemData.

`iter_odm_items` yields every ItemData of every ClinicalData as an `OdmItem` (columns
`ODM_ROW_COLUMNS`: the keys of the data hierarchy, the raw value, the effective TransactionType,
the audit trail, the source line, its ItemGroupData's number in its subject); `stage_odm` writes
those rows to one Parquet file; `read_odm_metadata` returns the ItemDefs and CodeLists. Values stay
the strings written in the file (bad values included); typing and decoding happen later.

Gotchas of the format, all seen in real exports:
- Versions: ODM 1.3.x share the namespace `.../odm/v1.3`, ODM 2.0 uses `.../odm/v2.0`, ODM 1.1 and some
  1.3 tools use no namespace at all (1.1 with `<!DOCTYPE ODM SYSTEM "odm1-1-0.dtd">` and ISO-8859-1: a
  file declaring a one-byte encoding whose text is UTF-8, which XML allows and which would load every
  accented letter as two, is refused). Elements are matched by local name in the root's namespace, so
  vendor extensions (`redcap:*`, an embedded HL7 FHIR resource) and everything inside them are skipped
  while the ODM elements around them are still read; but an ODM ItemData inside a vendor element within
  ClinicalData refuses the file (its values would be lost unsaid). `ODMVersion` and `Granularity` are
  not trusted: ODM 2.0 examples declare `Granularity="Metadata"` and still carry ClinicalData.
- Where the value lives: `ItemData/@Value` (1.x); the text of the typed 1.x variants
  (`ItemDataInteger`, ..., `ItemDataBase64Binary` for REDCap file uploads), whose lower-cased suffix
  becomes `item_data_type`; the text of `<Value>` children (ODM 2.0, and 1.3.2 files borrowing 2.0
  constructs). Several `<Value>` children make ONE row, their texts joined by "|" (so a "|" inside a
  value is ambiguous). `IsNull="Yes"` gives value None and is_null True; an ItemData without any
  value gives None, an empty one "". XML turns a raw line break inside an attribute into a space,
  so REDCap's multi-line text in `Value="..."` arrives with spaces: no parser can undo that.
- TransactionType (Insert/Update/Remove/Upsert/Context) is inherited: an element without one takes
  its nearest ancestor's, and `transaction_type` is that effective value. A subject may be sent
  twice in one file (Insert, then Update): rows are reported as sent, never merged here. A
  container (SubjectData ... ItemGroupData) sent with `TransactionType="Remove"` usually has no
  ItemData, so it becomes a row of its own: its keys, no item_oid, transaction_type Remove.
- FileType `Transactional` (an EDC's nightly increment) holds only what changed since the file
  named by `PriorFileOID`; it must be applied on top of the snapshot it follows, never loaded as
  if it were the whole study (`OdmAdapter.combine`).
- AuditRecord may sit on the ItemData or on a container above it (ODM 1.1 puts it on FormData); like
  TransactionType, an ItemData without one takes its nearest container's. ODM 2.0 writes it after
  the data it audits and SiteRef may come late too, so a subject's rows are held until its
  SubjectData ends (subjects are small). AuditRecords referenced by ID are not resolved.
- Keys: SubjectKey, `SiteRef/@LocationOID`, StudyEventOID/RepeatKey, FormOID/RepeatKey,
  ItemGroupOID/RepeatKey (the innermost group when groups nest), all as written ("" included;
  REDCap writes `ItemGroupOID=""` for some sections). Classic REDCap projects have no
  StudyEventData. ODM 2.0 has no FormData: the ItemGroupData straight under StudyEventData is the
  form and also fills form_oid/form_repeat_key. CDISC Dataset-XML puts ItemGroupData straight under
  ClinicalData (no SubjectData: subject_key None, USUBJID is an ordinary item) and numbers records
  with `data:ItemGroupDataSeq`, used when there is no ItemGroupRepeatKey.
- REDCap: a checkbox field is one item per code (`race___1`), repeating instruments are
  FormRepeatKey, repeating events StudyEventRepeatKey; `redcap:*` attributes are ignored.
- Only ItemData under ClinicalData are rows; those under ReferenceData are skipped (a notice).
- An item nobody filled in has no ItemData, so an ItemOID absent from the data may still be right;
  one that no ItemDef of the file's MetaDataVersion declares is a misspelt mapping (or an export of
  another study version). Staging keeps the declared ItemOIDs in the staged file's metadata
  (`declared_item_oids`); an export without ItemDefs (ClinicalData only) cannot tell the two, and a
  notice says so.
- `line` is where the ItemData's start tag ends (libxml2's convention), counted by this reader:
  libxml2's own `sourceline` is wrong past line 65,535.
- Safety: nothing is expanded, fetched or loaded (no DTD, no network). A DOCTYPE declaring entities
  (billion laughs, external entities) is refused, and so is a reference to an undeclared entity,
  which libxml2 would silently turn into "". libxml2's limits stay on: a single value over 10 MB
  (a big REDCap file upload) is refused with an error rather than read.
"""

from __future__ import annotations

import difflib
import itertools
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from etl.config import connect_duckdb
from etl.extract.adapter import (
    LINEAGE_COLUMNS,
    ColumnInfo,
    FileHeader,
    FormatDetails,
    RecordSets,
    Removal,
    SourceAdapter,
    StageResult,
    compact_record_table,
    record_frame,
    refuse_if_other_format,
    staging_writer,
)
from etl.extract.odm_chunks import stage_in_parts
from etl.extract.odm_items import (
    ENTITY_CHECKPOINTS,
    ODM_ROW_COLUMNS,
    STAGING_SCHEMA,
    drop_finished,
    feed_pieces,
    read_item_batches,
    refuse_undeclared_entities,
    write_batches,
)
from etl.extract.odm_xml import (
    SAFE_PARSER,
    OdmFormatError,
    SubDocument,
    format_error,
    refuse_utf8_declared_otherwise,
    root_prefix,
)
from etl.fsio import write_bytes, written_atomically
from etl.memory import no_cyclic_gc
from etl.schema import sql_name, sql_text

if TYPE_CHECKING:
    from etl.transform.mapping import SourceMapping

__all__ = ["ADAPTER", "ODM_KEY_COLUMNS", "ODM_ROW_COLUMNS", "STAGING_SCHEMA", "ItemDef", "OdmFormatError", "OdmItem",
           "OdmMetadata", "StageResult", "SubDocument", "declared_item_oids", "iter_odm_items", "odm_record_sets",
           "odm_record_tables", "read_odm_metadata", "stage_odm", "undeclared_item"]


class OdmItem(NamedTuple):
    """One ItemData: grain of a staged ODM file."""

    study_oid: str | None
    metadata_version_oid: str | None
    subject_key: str | None
    site_oid: str | None
    study_event_oid: str | None
    study_event_repeat_key: str | None
    form_oid: str | None
    form_repeat_key: str | None
    item_group_oid: str | None
    item_group_repeat_key: str | None
    item_oid: str | None
    value: str | None
    is_null: bool
    item_data_type: str | None
    transaction_type: str | None
    audit_user: str | None
    audit_datetime: str | None
    audit_reason: str | None
    line: int
    clinical_data_index: int
    container: int  # its ItemGroupData's number in its subject: two sent with the same keys differ


assert OdmItem._fields == ODM_ROW_COLUMNS


@dataclass(frozen=True)
class ItemDef:
    oid: str
    name: str | None
    data_type: str | None
    code_list_oid: str | None


@dataclass(frozen=True)
class OdmMetadata:
    item_defs: dict[str, ItemDef]
    code_lists: dict[str, dict[str, str | None]]  # CodeList OID -> {coded value: decode text, None if none}


def _odm_elements(path: Path) -> Iterator[tuple[str, str | None, str | None, Any, int]]:
    """(event, local name, parent's local name, element, line) for each element of an ODM file, parsed safely.

    The local name is None outside the root's namespace (vendor extensions) and anywhere inside a vendor
    element. Once the caller has seen an element's end it is cleared and its finished siblings dropped,
    so memory does not grow with the file. The metadata and the header are read this way; the ItemData,
    where speed matters, by `odm_items.read_item_batches`, which follows the same rules.
    """
    parser = etree.XMLPullParser(**SAFE_PARSER)
    names: list[str | None] = [""]  # open elements; "" stands for the root's parent
    prefix: str | None = None  # "{namespace}" of the root, "" when it has none
    errors_seen = 0
    line = 1
    try:
        with path.open("rb") as handle:
            pieces = itertools.chain.from_iterable(pieces for pieces, _ in feed_pieces(handle))
            for chunk in itertools.chain(pieces, [b""]):
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
                for event, elem in parser.read_events():
                    if prefix is None:
                        prefix = root_prefix(path, elem, line)
                    if event == "start":
                        tag = elem.tag
                        if names[-1] is None:  # inside a vendor element everything is the vendor's
                            local = None
                        elif prefix:
                            local = tag[len(prefix):] if tag.startswith(prefix) else None
                        else:
                            local = None if tag[0] == "{" else tag
                        names.append(local)
                        yield event, local, names[-2], elem, line
                        continue
                    local = names.pop()
                    if local in ENTITY_CHECKPOINTS and len(parser.feed_error_log) > errors_seen:
                        errors_seen = refuse_undeclared_entities(path, parser.feed_error_log, errors_seen)
                    yield event, local, names[-1], elem, line
                    drop_finished(elem)
                line += chunk.endswith(b"\n")
    except etree.ParseError as error:
        raise format_error(path, error) from None


def iter_odm_items(path: Path, *, notices: list[str] | None = None,
                   document: SubDocument | None = None) -> Iterator[OdmItem]:
    """Stream every ItemData of every ClinicalData as an `OdmItem`, in document order.

    Raises OdmFormatError (naming file, line and column) for input that is not well-formed ODM.
    Notices (no ClinicalData, empty ClinicalData, skipped elements) are appended to `notices` once
    the file has been read to the end.
    """
    for batch in read_item_batches(path, notices=notices if notices is not None else [], document=document):
        yield from map(OdmItem._make, zip(*(column.to_pylist() for column in batch.columns), strict=True))


def stage_odm(path: Path, out_path: Path, *, lineage: dict[str, str] | None = None,
              batch_rows: int = 50_000) -> StageResult:
    """Stage an ODM file to one Parquet file: one row per ItemData (`ODM_ROW_COLUMNS`) plus lineage constants.

    The file appears at `out_path` only when complete (written beside it, then renamed).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    lineage = dict(lineage or {})
    clashes = sorted(set(lineage) & set(ODM_ROW_COLUMNS))
    if clashes:
        raise ValueError(f"lineage column(s) {clashes} clash with the ODM row columns")
    schema = pa.schema([*STAGING_SCHEMA, *(pa.field(key, pa.string()) for key in lineage)])
    refuse_utf8_declared_otherwise(path)
    # The ItemDefs come before the first ClinicalData: read up to it, a few ms whatever the file's size.
    try:
        item_oids = sorted(read_odm_metadata(path).item_defs)
    except OdmFormatError:
        item_oids = []  # the item reader below refuses the file, in its own words
    if item_oids:
        schema = schema.with_metadata({_ITEM_OIDS_KEY: json.dumps(item_oids)})
    with written_atomically(out_path) as temp:
        staged = stage_in_parts(path, temp, schema, lineage, batch_rows)
        if staged is None:  # not a plain export: one pass
            notices: list[str] = []
            with staging_writer(temp, schema) as writer, no_cyclic_gc():
                rows = write_batches(writer, read_item_batches(path, notices=notices, batch_rows=batch_rows),
                                     schema, lineage)
            staged = StageResult(rows=rows, notices=tuple(notices))
    if not item_oids and staged.rows:
        staged = replace(staged, notices=(*staged.notices, _NO_ITEM_DEFS.format(name=path.name)))
    return staged


_ITEM_OIDS_KEY = b"odm:item_oids"  # the staged file's metadata: the ItemDef OIDs of the export, as JSON
_NO_ITEM_DEFS = ("{name}: no ItemDef in a MetaDataVersion (ClinicalData only): a mapped ItemOID absent from the "
                 "data cannot be told from an item nobody filled in, so a misspelt one would load empty")


def declared_item_oids(staged: Path) -> frozenset[str] | None:
    """The ItemOIDs the ItemDefs of a staged export declare; None when it has none (ClinicalData only)."""
    said = (pq.read_schema(staged).metadata or {}).get(_ITEM_OIDS_KEY)
    return frozenset(json.loads(said)) if said is not None else None


def undeclared_item(item_oid: str, declared: Collection[str]) -> str | None:
    """Why a mapped ItemOID that no record carries is a mapping error: no ItemDef of the export declares it,
    with the nearest declared ItemOIDs as a hint. None when it is declared (an item nobody filled in) or when
    the export declares nothing (it cannot be told: today's reading, empty)."""
    if not declared or item_oid in declared:
        return None
    nearest = difflib.get_close_matches(item_oid, sorted(declared), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(nearest)}?)" if nearest else ""
    return (f"ItemOID {item_oid} is not declared by any ItemDef of the export{hint}: a misspelt ItemOID, or an "
            "export of another study version")


def read_odm_metadata(path: Path, *, metadata_version_oid: str | None = None) -> OdmMetadata:
    """ItemDefs and CodeLists of the file's MetaDataVersion(s), read before the first ClinicalData.

    With several MetaDataVersions and no `metadata_version_oid`, they are merged and a later
    definition of an OID replaces an earlier one. A CodeListItem's decode is its first
    TranslatedText, or the English one when there are several; an EnumeratedItem has none (None).
    """
    item_defs: dict[str, ItemDef] = {}
    code_lists: dict[str, dict[str, str | None]] = {}
    wanted = False
    item_def: list[str | None] | None = None  # [oid, name, data_type, code_list_oid]
    code_list: dict[str, str | None] | None = None
    coded_value: str | None = None
    decode_lang: str | None = None
    for event, local, parent, elem, _line in _odm_elements(path):
        if event == "start":
            if local == "ClinicalData":
                break  # ODM puts the metadata first
            if local == "MetaDataVersion":
                wanted = metadata_version_oid is None or elem.get("OID") == metadata_version_oid
            elif not wanted:
                continue
            elif local == "ItemDef":
                item_def = [elem.get("OID"), elem.get("Name"), elem.get("DataType"), None]
            elif local == "CodeListRef" and parent == "ItemDef" and item_def is not None:
                item_def[3] = elem.get("CodeListOID")
            elif local == "CodeList":
                code_list = code_lists[elem.get("OID")] = {}
            elif local in ("CodeListItem", "EnumeratedItem") and code_list is not None:
                coded_value, decode_lang = elem.get("CodedValue"), None
                if coded_value is not None:
                    code_list[coded_value] = None
        elif not wanted:
            continue
        elif local == "ItemDef" and item_def is not None:
            oid, name, data_type, code_list_oid = item_def
            if oid is not None:
                item_defs[oid] = ItemDef(oid, name, data_type, code_list_oid)
            item_def = None
        elif local == "TranslatedText" and parent == "Decode" and code_list is not None and coded_value is not None:
            lang = elem.get("{http://www.w3.org/XML/1998/namespace}lang")
            english = (lang or "").lower().startswith("en")
            if code_list[coded_value] is None or (english and not (decode_lang or "").lower().startswith("en")):
                code_list[coded_value], decode_lang = elem.text or "", lang
        elif local in ("CodeListItem", "EnumeratedItem"):
            coded_value = None
        elif local == "CodeList":
            code_list = None
    return OdmMetadata(item_defs=item_defs, code_lists=code_lists)


# -- the ODM source adapter -------------------------------------------------------------------
# A record is one ItemGroupData: staged rows (one per ItemData) are pivoted per ItemGroupOID into
# one column per ItemOID, with the ODM keys as `_`-prefixed columns. Items sent with
# TransactionType `Remove` are dropped (the EDC withdrew them); an increment's are its items sent empty.

ODM_KEY_COLUMNS = {
    "subject_key": "_subject_key",
    "site_oid": "_site_oid",
    "study_event_oid": "_study_event_oid",
    "study_event_repeat_key": "_study_event_repeat_key",
    "form_oid": "_form_oid",
    "form_repeat_key": "_form_repeat_key",
    "item_group_oid": "_item_group_oid",
    "item_group_repeat_key": "_item_group_repeat_key",
}
_REPEAT_KEYS = {"study_event_repeat_key", "form_repeat_key", "item_group_repeat_key"}
# What a key left out is wherever records are keyed (a snapshot's, an increment's, a Remove's): a repeat key
# ODM's default, "1"; any other "" (a classic REDCap project has no StudyEventData, its records' event is "").
_KEY_LEFT_OUT = {c: "1" if c in _REPEAT_KEYS else "" for c in ODM_KEY_COLUMNS}


def _key_read(column: str, table: str = "") -> str:
    """How a key column of the staged rows is read as a record's key: `_KEY_LEFT_OUT` when it is null."""
    return f"coalesce({table}{column}, {sql_text(_KEY_LEFT_OUT[column])})"


def odm_record_tables(staged: Path, *, keep_absent: bool = False) -> dict[str, pa.Table]:
    """Pivot one staged ODM file into a table per ItemGroupOID.

    An item a record does not carry is "" (an ItemData nobody filled is left out of an export),
    or null with `keep_absent`, so that an increment's absent items can keep earlier values."""
    return _record_tables(staged, keep_absent=keep_absent)


def _record_tables(staged: Path, *, keep_absent: bool, cuts: pa.Table | None = None) -> dict[str, pa.Table]:
    """`odm_record_tables`. With `cuts`, an increment's container Removes (their keys, `_CUT_KEYS`, their
    staged row `at`, and `stretch`, which Remove of the subject each is, from 1), a record's sendings are
    merged only within a stretch between two Removes of its subject that delete it, and `_stretch` says
    which (0 before the first): the Removes apply between the stretches (`apply_transactions`). An
    increment's ItemData Remove is its item sent empty, in its place in the document; `_withdrawn_only`
    marks a record that only withdraws items (it adds no record), `_sent_again` how many of its sendings a
    later one in its stretch replaced."""
    # One thread: each thread's share of a pivot's hash table is memory (~40 MiB at 100,000 persons), and
    # a large run prepares two sources side by side on this machine's two cores anyway.
    con = duckdb.connect(config={"threads": 1})
    try:
        # Keyed as the records are everywhere: an absent StudyEventOID and StudyEventOID="" are one record.
        keyed = ", ".join(f"{_key_read(c)} AS {c}" for c in ODM_KEY_COLUMNS)
        # A view cannot take prepared parameters, so the path goes in as a quoted literal.
        rows, stretch = f"read_parquet({sql_text(str(staged))}, file_row_number = true) i", ""
        increment, kept = cuts is not None, "coalesce(transaction_type, '') <> 'Remove'"
        if increment:  # an item withdrawn is the item sent empty
            keyed += f", CASE WHEN {kept} THEN value ELSE '' END AS value"
        stretched = cuts is not None and cuts.num_rows > 0
        if stretched:  # a row's stretch: the last Remove of its subject before it that deletes its record
            # Joined once into a table (the rows after a Remove of their record only): in the view, every
            # query on it would read the staged file a second time for the join.
            con.register("_cuts", cuts)
            con.execute(f"CREATE TEMP TABLE _stretches AS SELECT i.file_row_number, max(c.stretch) AS stretch "
                        f"FROM {rows} JOIN _cuts c ON {_ENCLOSES} GROUP BY i.file_row_number")
            rows += " LEFT JOIN _stretches c USING (file_row_number)"
            stretch = ", coalesce(c.stretch, 0) AS _stretch"
        con.execute(
            f"CREATE TEMP VIEW items AS SELECT i.* REPLACE ({keyed}){stretch} FROM {rows} "
            f"WHERE item_oid IS NOT NULL{'' if increment else f' AND {kept}'}")
        groups = con.execute(
            "SELECT item_group_oid, list(DISTINCT item_oid ORDER BY item_oid) FROM items "
            "GROUP BY item_group_oid ORDER BY item_group_oid").fetchall()
        record_sets = {}
        for group_oid, item_oids in groups:
            table = _pivot(con, group_oid, item_oids, copies=False, increment=increment, stretched=stretched)
            twice = _sent_twice(table, item_oids)
            if increment:  # the record is the sendings merged; each earlier one is counted
                table = _with_sent_again(con, table, group_oid, stretched=stretched, twice=twice)
            elif twice and not keep_absent:
                table = _pivot(con, group_oid, item_oids, copies=True)
            table = table.drop_columns(["_items"])
            # Compacted group by group: DuckDB's result buffers go before the next group's are made.
            record_sets[group_oid or "(no item group)"] = _owned(compact_record_table(
                table if keep_absent else _nulls_as_empty(table)))
        return record_sets
    finally:
        con.close()


def _pivot(con: duckdb.DuckDBPyConnection, group_oid: str | None, item_oids: Sequence[str], *,
           copies: bool, increment: bool = False, stretched: bool = False) -> pa.Table:
    """One ItemGroupOID's records, a column per item, with `_items`, how many items each gathered.
    With `copies`, a record whose keys were sent twice is as many records (`_copies`); else an item
    sent twice in one record keeps its later value (what an increment means): later in the document, as
    the staged rows follow it (an export written on one line gives both sendings one `line`). `stretched`:
    a record is one per stretch between its subject's Removes in an increment, with its `_stretch`;
    `increment`: with `_withdrawn_only`, whether it only withdraws items (`_record_tables`)."""
    keys = ", ".join([*(f"{c} AS {a}" for c, a in ODM_KEY_COLUMNS.items()), *(["_stretch"] if stretched else [])])
    group_by = ", ".join(str(i + 1) for i in range(len(ODM_KEY_COLUMNS) + stretched + len(LINEAGE_COLUMNS)))
    pivots = ", ".join(
        f"arg_max(coalesce(value, ''), file_row_number) FILTER (WHERE item_oid = {sql_text(oid)}) "
        f"AS {sql_name(oid)}" for oid in item_oids)
    withdrawn = ", bool_and(coalesce(transaction_type, '') = 'Remove') AS _withdrawn_only" if increment else ""
    rows = "(SELECT *, 1 AS _copy FROM items WHERE item_group_oid IS NOT DISTINCT FROM $group)"
    if copies:
        con.register("_copies", _copies(con, group_oid, stretched=stretched))
        rows = ("(SELECT i.*, coalesce(c.copy, 1) AS _copy FROM items i LEFT JOIN _copies c USING (file_row_number) "
                "WHERE i.item_group_oid IS NOT DISTINCT FROM $group)")
    try:
        return con.execute(
            f"SELECT {keys}, {', '.join(LINEAGE_COLUMNS)}, min(line) AS _line, count(*) AS _items, {pivots}{withdrawn} "
            f"FROM {rows} GROUP BY {group_by}, _copy ORDER BY _line", {"group": group_oid}).to_arrow_table()
    finally:
        if copies:
            con.unregister("_copies")


def _copies(con: duckdb.DuckDBPyConnection, group_oid: str | None, *, stretched: bool = False) -> pa.Table:
    """Which sending of its keys each item of a record sent twice belongs to (file_row_number -> copy):
    in document order, a new copy starts with the ItemGroupData in which an item comes again under the
    same keys, or at the item itself when it comes again in one ItemGroupData. The first copy is the
    record; harmonise holds the others back as duplicate keys, as for any format. ItemGroupData with
    the same keys and no item in common are one record, sent in parts. `stretched`: the stretch between
    its subject's Removes is a key too (a record sent again after a Remove is another record)."""
    columns = [*ODM_KEY_COLUMNS, *(["_stretch"] if stretched else [])]
    keys = ", ".join(columns)
    same = " AND ".join(f"i.{c} IS NOT DISTINCT FROM d.{c}" for c in columns)
    rows = con.execute(
        f"SELECT {', '.join(f'i.{c}' for c in columns)}, i.container, i.item_oid, i.file_row_number "
        f"FROM items i SEMI JOIN (SELECT {keys} FROM items WHERE item_group_oid IS NOT DISTINCT FROM $group "
        f"GROUP BY {keys}, item_oid HAVING count(*) > 1) d ON {same} "
        f"WHERE i.item_group_oid IS NOT DISTINCT FROM $group ORDER BY i.file_row_number", {"group": group_oid}
    ).fetchall()
    # Each row's ItemGroupData: its rows are consecutive in the staged file and share a container
    # number (numbered within a subject's rows: a subject sent twice numbers from 0 again).
    elements: list[int] = []
    items_of: list[set[str]] = []  # each ItemGroupData's items
    last: dict[tuple[Any, ...], tuple[Any, int, int]] = {}  # a record's keys -> its last container, row, element
    for *record, container, item_oid, number in rows:
        key = tuple(record)
        before = last.get(key)
        if before is not None and before[:2] == (container, number - 1):
            element = before[2]
        else:
            element = len(items_of)
            items_of.append(set())
        items_of[element].add(item_oid)
        last[key] = (container, number, element)
        elements.append(element)
    copy_of: dict[tuple[Any, ...], tuple[int, int, set[str]]] = {}  # keys -> its copy now, element, items in it
    numbers, copies = [], []
    for (*record, _, item_oid, number), element in zip(rows, elements, strict=True):
        key = tuple(record)
        copy, current, seen = copy_of.get(key, (0, -1, set()))
        if element != current and (not copy or items_of[element] & seen):
            copy, seen = copy + 1, set()  # an ItemGroupData that sends again what the copy holds: the next copy
        elif item_oid in seen:
            copy, seen = copy + 1, set()  # an item sent twice in one ItemGroupData
        seen.add(item_oid)
        copy_of[key] = (copy, element, seen)
        numbers.append(number)
        copies.append(copy)
    return pa.table({"file_row_number": pa.array(numbers, pa.int64()), "copy": pa.array(copies, pa.int64())})


def _with_sent_again(con: duckdb.DuckDBPyConnection, table: pa.Table, group_oid: str | None, *, stretched: bool,
                     twice: bool) -> pa.Table:
    """An increment's records of one ItemGroupOID with `_sent_again`, how many of each record's sendings a later
    one replaced (its copies but one, `_copies`): `apply_transactions` counts them for the records it keeps."""
    if not twice:
        return table.append_column("_sent_again", pa.array([0] * table.num_rows, pa.int64()))
    columns = [*ODM_KEY_COLUMNS, *(["_stretch"] if stretched else [])]
    aliases = [*ODM_KEY_COLUMNS.values(), *(["_stretch"] if stretched else [])]
    con.register("_copies", _copies(con, group_oid, stretched=stretched))
    con.register("_records", table)
    try:
        return con.execute(
            f"SELECT r.*, coalesce(a._sent_again, 0) AS _sent_again FROM _records r LEFT JOIN ("
            f"SELECT {', '.join(f'{c} AS {a}' for c, a in zip(columns, aliases, strict=True))}, "
            "max(c.copy) - 1 AS _sent_again FROM items i JOIN _copies c USING (file_row_number) "
            f"GROUP BY {', '.join(columns)}) a ON "
            f"{' AND '.join(f'r.{a} IS NOT DISTINCT FROM a.{a}' for a in aliases)} ORDER BY r._line").to_arrow_table()
    finally:
        con.unregister("_copies")
        con.unregister("_records")


def _sent_twice(table: pa.Table, item_oids: Sequence[str]) -> bool:
    """Whether a record gathered more items than it has columns filled: an item sent twice under its keys."""
    filled = [pc.cast(pc.is_valid(table[oid]), pa.int64()) for oid in item_oids]
    total = filled[0]
    for column in filled[1:]:
        total = pc.add(total, column)
    return bool(pc.any(pc.greater(table["_items"], total)).as_py())


def odm_record_sets(staged: Path) -> dict[str, pd.DataFrame]:
    """`odm_record_tables` as pandas frames (an item a record does not carry is "")."""
    return {name: record_frame(table) for name, table in odm_record_tables(staged).items()}


def _nulls_as_empty(table: pa.Table) -> pa.Table:
    """Every null text "" (what a pandas `fillna("")` of the frame gives); `_line` is never null."""
    return pa.table([pc.fill_null(column, "") if pa.types.is_string(column.type) or pa.types.is_large_string(
        column.type) else column for column in table.columns], names=table.column_names)


def _owned(table: pa.Table) -> pa.Table:
    """The table in Arrow's own memory. A column DuckDB exported keeps its whole result alive, every
    column of it, for as long as any one is held (the C data interface releases them together)."""
    memory = pa.default_cpu_memory_manager()
    return pa.table([pa.chunked_array([chunk.copy_to(memory) for chunk in column.chunks], column.type)
                     for column in table.columns], schema=table.schema)


def _refuse_other_studies(path: Path, staged: Path, study_oid: str) -> None:
    # Read as a dictionary, as it is stored: no string made per row, half the time.
    column = pq.read_table(staged, columns=["study_oid"], read_dictionary=["study_oid"]).column(0)
    studies = column.unique().to_pylist()
    others = sorted("(none)" if study is None else study for study in studies if study != study_oid)
    if others:
        staged.unlink()
        raise OdmFormatError(f"{path.name}: refused: its ClinicalData is of StudyOID "
                             f"{', '.join(repr(o) for o in others)}, the mapping declares {study_oid!r}; "
                             "a file of another study is never loaded as this source")


@dataclass(frozen=True)
class OdmHeader:
    """The root element's file attributes: what kind of export this is and where it sits in a chain."""

    namespace: str  # "" when the file has none
    file_type: str | None  # Snapshot / Transactional
    file_oid: str | None
    prior_file_oid: str | None
    created: datetime | None


def read_odm_header(path: Path) -> OdmHeader:
    """The attributes of the `<ODM>` root, read from its start tag only (cheap on any file size)."""
    for _event, _local, _parent, elem, line in _odm_elements(path):
        created = elem.get("CreationDateTime")
        try:
            stamp = datetime.fromisoformat(created) if created else None
        except ValueError:
            raise OdmFormatError(f"{path.name} line {line}: CreationDateTime {created!r} is not an ISO 8601 "
                                 "date-time") from None
        if stamp is not None and stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)  # ODM allows local times without an offset: read them as UTC
        return OdmHeader(etree.QName(elem).namespace or "", elem.get("FileType"), elem.get("FileOID"),
                         elem.get("PriorFileOID"), stamp)
    raise OdmFormatError(f"{path.name}: empty file; expected an <ODM> document")


# -- applying transactional exports --------------------------------------------------------------
_RECORD_KEYS = ("_subject_key", "_study_event_oid", "_study_event_repeat_key", "_form_oid", "_form_repeat_key",
                "_item_group_oid", "_item_group_repeat_key")
# The keys of a container Remove that say which records it deletes (`_ENCLOSES`, `_removed`): the records' own keys.
_CUT_KEYS = tuple(column.removeprefix("_") for column in _RECORD_KEYS)
# The element a container Remove is written at, by its depth: how many of `_CUT_KEYS` it sets.
_LEVELS = {7: "ItemGroupData", 5: "FormData", 3: "StudyEventData", 1: "SubjectData"}
_DEPTH = ("CASE WHEN item_group_oid IS NOT NULL THEN 7 WHEN form_oid IS NOT NULL THEN 5 "
          "WHEN study_event_oid IS NOT NULL THEN 3 ELSE 1 END")

# Which records a container Remove deletes, one rule for the staged rows after it (`_ENCLOSES`: which stretch a
# row falls in) and for the records held (`_removed`: which are deleted): those of its subject with its keys down
# to its element (`depth`), each read as a record's (`_key_read`: a key left out is "", a repeat key "1"); below
# its element, any. So a FormData Remove outside StudyEventData is of the event-less form ("" as the snapshot
# reads it), in an export with study events too, and a Remove without a subject key deletes nothing.
_ENCLOSES = " AND ".join([
    "i.file_row_number > c.at", f"{_key_read('subject_key', 'i.')} = c.subject_key",
    *(f"(c.depth <= {position} OR {_key_read(key, 'i.')} = c.{key})"
      for position, key in enumerate(_CUT_KEYS) if position)])


def _removals(staged: Path) -> pd.DataFrame:
    """Container Removes and item Removes of one staged file, in document order: their keys read as the records'
    (a subject key left out stays null), and `depth`, how many keys their element sets."""
    con = connect_duckdb()
    try:
        keys = ", ".join(f"{c if c == 'subject_key' else _key_read(c)} AS {c}" for c in _CUT_KEYS)
        return con.execute(
            f"SELECT {keys}, {_DEPTH} AS depth, item_oid, line, file_row_number "
            f"FROM read_parquet({sql_text(str(staged))}, file_row_number = true) "
            "WHERE transaction_type = 'Remove' ORDER BY file_row_number").df()
    finally:
        con.close()


def _local_key(keys: Sequence[Any]) -> str:
    """The default record key's local part: SE[1]/FORM[1]/IG[1], as far as the keys go."""
    parts = [f"{keys[i]}[{keys[i + 1]}]" for i in (1, 3, 5) if i < len(keys) and keys[i] is not None]
    return "/".join(parts)


def apply_transactions(chain: Sequence[tuple[Path, str, str]]) -> RecordSets:
    """Record sets of a snapshot with the transactional files after it applied in order.

    `chain`: (staged file, file name, sha256), the snapshot first. An item sent by an increment
    (Insert, Update, Upsert) replaces the record's value, a record it does not have is added; an
    item Remove is the item sent empty; a container Remove deletes every record under it, and the
    deletion is returned in `removed`. An increment applies in document order: what it sends between two of its
    Removes, then the next Remove. A record a later sending touches is counted as superseded in the file
    that held it before (the increment itself when it sent the record already, or sends it again after a
    Remove).
    """
    (first, first_name, _), increments = chain[0], chain[1:]
    if not (removes := _removals(first)).empty:  # read as it stands, it would lose those records unaccounted for
        raise OdmFormatError(
            f"{first_name}: line {removes['line'].iloc[0]}: TransactionType=\"Remove\" in a snapshot export, which "
            "holds every record as it is and removes none; expected FileType=\"Transactional\" for an export that "
            "removes records")
    if not increments:  # the nightly snapshot: its records stay Arrow, as read
        return RecordSets({name: _in_file_order(table) for name, table in odm_record_tables(first).items()})
    state = {name: frame.set_index(list(_RECORD_KEYS), drop=False) for name, frame in odm_record_sets(first).items()}
    removed: list[Removal] = []
    superseded: dict[str, int] = {}

    def supersede(frame: pd.DataFrame) -> None:
        for sha, count in frame["source_file_sha256"].value_counts().items():
            superseded[str(sha)] = superseded.get(str(sha), 0) + int(count)

    def send(record_set: str, sent: pd.DataFrame, sha: str) -> None:
        sent = sent.set_index(list(_RECORD_KEYS), drop=False)
        before = state.get(record_set)
        known = sent.index.isin(before.index) if before is not None else False
        sent = sent[~sent.pop("_withdrawn_only") | known]  # items withdrawn from no record: nothing to do
        if replaced := int(sent.pop("_sent_again").sum()):  # records sent twice: earlier sendings replaced here
            superseded[sha] = superseded.get(sha, 0) + replaced
        if before is None or sent.empty:
            if not sent.empty:
                state[record_set] = sent
            return
        again = before.index.isin(sent.index)
        supersede(before[again])
        # Values sent win; items the increment did not send keep the snapshot's value. Only the records sent are
        # combined: an increment with Removes sends in as many stretches, each would align the whole set.
        state[record_set] = pd.concat([before[~again], sent.combine_first(before[again])])[
            list(dict.fromkeys([*before.columns, *sent.columns]))]

    def remove(cuts: pd.DataFrame, file_name: str, sha: str) -> None:
        # One stretch's Removes, at most one per subject: all at once, one pass over each record set.
        deleted: list[tuple[int, Removal]] = []
        for record_set, frame in state.items():
            hit, by = _removed(frame, cuts)
            if not hit.any():
                continue
            supersede(frame[hit])
            columns = [*(frame[c] for c in _RECORD_KEYS), by["depth"], by["file_row_number"]]
            deleted.extend((at, Removal(record_set, str(k[0]), _local_key(k), _LEVELS[int(depth)], file_name, sha))
                           for *k, depth, at in zip(*(c.to_numpy()[hit] for c in columns), strict=True))
            state[record_set] = frame[~hit]
        removed.extend(r for _, r in sorted(deleted, key=lambda d: d[0]))  # as the Removes come in the document

    for staged, file_name, sha in increments:
        removes = _removals(staged)
        removes = removes[removes["item_oid"].isna()].copy()  # an ItemData Remove is its item sent empty
        # A Remove deletes only records of its subject: the file is applied in document order subject by
        # subject, all subjects at once: what each sent before its first Remove, its first Removes, and so on.
        removes["stretch"] = removes.groupby("subject_key", dropna=False).cumcount() + 1
        cuts = pa.table({**{c: pa.array(removes[c], pa.string()) for c in _CUT_KEYS},
                         "depth": pa.array(removes["depth"], pa.int64()),
                         "at": pa.array(removes["file_row_number"], pa.int64()), "stretch": removes["stretch"]})
        pivoted = _record_tables(staged, keep_absent=True, cuts=cuts)
        stretches = {name: _by_stretch(record_frame(table)) for name, table in pivoted.items()}
        last = int(removes["stretch"].max()) if len(removes) else 0  # the most Removes one subject has
        for stretch in range(last + 1):
            for record_set, parts in stretches.items():
                if stretch in parts:
                    send(record_set, parts[stretch], sha)
            if stretch < last:  # the Removes after this stretch: none after the last (none at all in most files)
                remove(removes[removes["stretch"] == stretch + 1], file_name, sha)
    frames = {name: frame.reset_index(drop=True).fillna("").sort_values(["source_file", "_line"], kind="stable")
              .reset_index(drop=True) for name, frame in state.items()}
    return RecordSets({name: compact_record_table(pa.Table.from_pandas(frame, preserve_index=False))
                       for name, frame in frames.items()}, tuple(_once(removed)), superseded)


def _by_stretch(frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """An increment's records of one record set by the stretch between its Removes they were sent in."""
    if "_stretch" not in frame.columns:  # a file without Removes: one stretch
        return {0: frame}
    parts = frame.groupby("_stretch", sort=False)
    return {cast(int, stretch): part.drop(columns="_stretch") for stretch, part in parts}


def _once(removed: Sequence[Removal]) -> list[Removal]:
    """Each record a file removed once (it may remove a record, send it again and remove it again)."""
    first: dict[tuple[str, str, str, str], Removal] = {}
    for r in removed:
        first.setdefault((r.record_set, r.patient_key, r.local_key, r.file_sha256), r)
    return list(first.values())


def _removed(frame: pd.DataFrame, cuts: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """Which records of `frame` one stretch's Removes delete (at most one Remove per subject: `cuts` by
    subject key), and each record's Remove (`by`), by the rule `_ENCLOSES` states: a record of the Remove's
    subject whose keys, as far as the Remove's element sets them, are the Remove's (both keyed alike)."""
    cuts = cuts[cuts["subject_key"].notna()].set_index("subject_key")
    subjects = frame["_subject_key"]
    by = cuts.reindex(subjects.to_numpy())
    hit = subjects.isin(cuts.index).to_numpy()
    depth = by["depth"].to_numpy()
    for position in range(1, len(_RECORD_KEYS)):
        hit &= (depth <= position) | (frame[_RECORD_KEYS[position]].to_numpy() == by[_CUT_KEYS[position]].to_numpy())
    return hit, by


def _in_file_order(table: pa.Table) -> pa.Table:
    """The records by file, then line (a stable sort, as for a chain); one file is in that order already."""
    keys = pa.table({"source_file": table["source_file"].cast(pa.string()), "_line": table["_line"]})
    order = pc.sort_indices(keys, sort_keys=[("source_file", "ascending"), ("_line", "ascending")])
    if pc.all(pc.equal(order, pa.array(range(len(table)), pa.uint64()))).as_py() is not False:
        return table
    return table.take(order)


ODM_NAMESPACES = {"1.3": "http://www.cdisc.org/ns/odm/v1.3", "2.0": "http://www.cdisc.org/ns/odm/v2.0", "none": ""}


class OdmOptions(BaseModel):
    """What every file of the source must be; a file that is not is refused, never loaded as if it were."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    study_oid: str | None = Field(None, description="the StudyOID of every ClinicalData")
    odm_version: Literal["1.3", "2.0", "none"] | None = Field(
        None, description="the ODM namespace: 1.3 (1.3.x), 2.0, or none (ODM 1.1 and tools that omit it)")


class OdmAdapter(SourceAdapter):
    format = "odm"
    description = "CDISC ODM 1.3 / 2.0 XML (EDC exports: Ennov, REDCap, OpenClinica, ...)"
    suffixes = (".xml", ".odm")
    sparse_columns = True
    Options = OdmOptions

    def read_options(self, mapping: SourceMapping) -> OdmOptions:
        # The mapping's top-level `study_oid:` is this format's option too.
        given = {"study_oid": mapping.study_oid} if mapping.study_oid else {}
        return OdmOptions.model_validate({**given, **mapping.options})

    def stage(self, path: Path, out: Path, options: OdmOptions, lineage: dict[str, str]) -> StageResult:
        refuse_if_other_format(path, "a CDISC ODM (XML) file")
        if options.odm_version is not None:
            namespace, expected = read_odm_header(path).namespace, ODM_NAMESPACES[options.odm_version]
            if namespace != expected:
                raise OdmFormatError(f"{path.name}: refused: its ODM namespace is {namespace or '(none)'!r}, "
                                     f"the mapping declares ODM {options.odm_version} ({expected or 'no namespace'})")
        result = stage_odm(path, out, lineage=lineage)
        if options.study_oid is not None:
            _refuse_other_studies(path, out, options.study_oid)
        return result

    def record_tables(self, staged: Path, record_set: str) -> dict[str, pa.Table]:
        return odm_record_tables(staged)

    def without_patients(self, path: Path, mapping: SourceMapping, erased: Callable[[str], bool]) -> bool:
        # The copy was staged already, so it parsed safely; still no entities, no DTD, no network.
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=False)
        tree = etree.parse(str(path), parser)
        gone = [s for s in tree.iter("{*}SubjectData", "SubjectData")
                if (s.get("SubjectKey") or "").strip() and erased(s.get("SubjectKey") or "")]
        for subject in gone:
            subject.getparent().remove(subject)
        if gone:
            write_bytes(path, etree.tostring(tree, xml_declaration=True, encoding=tree.docinfo.encoding or "UTF-8"))
        return bool(gone)

    def describe(self, path: Path, options: Any = None) -> FormatDetails:
        metadata = read_odm_metadata(path)
        columns = {
            oid: ColumnInfo(label=item.name, declared_type=item.data_type,
                            codes=dict(metadata.code_lists.get(item.code_list_oid, {})) if item.code_list_oid else None)
            for oid, item in metadata.item_defs.items()}
        notes = (f"{len(metadata.item_defs)} ItemDefs, {len(metadata.code_lists)} CodeLists in the MetaDataVersion",)
        return FormatDetails(notes=notes, columns=columns)

    def declared_columns(self, staged: Path) -> frozenset[str] | None:
        return declared_item_oids(staged)

    def file_header(self, path: Path) -> FileHeader:
        header = read_odm_header(path)
        return FileHeader(increment=(header.file_type or "").lower() == "transactional", file_oid=header.file_oid,
                          prior_file_oid=header.prior_file_oid, created=header.created)

    def combine(self, staged: Sequence[tuple[Path, str, str, str]]) -> RecordSets:
        # Files come in chain order (landing.discover): a snapshot, then its increments.
        return apply_transactions([(path, name, sha) for path, _, name, sha in staged])


ADAPTER = OdmAdapter()
