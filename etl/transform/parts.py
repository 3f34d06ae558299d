"""Harmonise a large source in parts of whole patients, each written to Parquet as it is done.

Everything harmonise decides about a record depends on its own patient only: ages need the
patient's birth date, records without a centre take the patient's, a duplicate repeats a key that
starts with the patient key, and joined sections share the patient key (where the mapping's
`join_on` holds it). So the patients can be cut into parts, harmonised one part at a time, and the
results appended: memory holds one part's work, not the whole source's, and the Parquet files are
what one pass would write (in another row order). The one exception, what a free text may not show
of the source's other patients (etl/transform/screen.py), is gathered first for the whole source,
from a few columns: the shapes of its patient keys and its patients' birth dates.

The record sets come as Arrow tables (etl/extract/adapter.py) and a part becomes pandas frames of
Python strings only when its turn comes: as strings, the whole source would take several times
the memory its harmonise does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from etl import schema
from etl.extract.adapter import is_text, record_column, record_frame
from etl.extract.file_names import PatientNumbers
from etl.frames import row_dicts
from etl.transform import carry_over
from etl.transform.harmonise import birth_dates, eupids_given, harmonise_source, ignored_notices, join_sections
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey
from etl.transform.records import SourcePatientKeys
from etl.transform.screen import TextScreen
from etl.transform.values import PartialDate

log = logging.getLogger(__name__)

# Source records per part: the harmonise step of a part peaks at a few KiB per record (iLTB at
# 100,000 persons: parts of 100,000 records peak 250 MiB above the record sets, of 25,000 under
# 100 MiB), and each part costs a few hundredths of a second more (7% of harmonise at 25,000).
PART_RECORDS = 25_000
# Output file -> the warehouse table its rows are loaded into (publish reads them by these names).
_STAGE_TABLES = {"records": "stage.record", "rejections": "stage.rejection", "link_keys": "stage.link_key"}


@dataclass
class HarmonisedSource:
    """What harmonising a source wrote: row counts, never the rows."""

    rows: dict[str, int]  # core table -> rows
    rejected: int  # source records quarantined
    file_counts: dict[str, dict[str, int]]  # sha256 -> rows_read / rows_loaded / rows_quarantined
    notices: list[str] = field(default_factory=list)
    parts: int = 1
    carried: int = 0  # source patients whose rows were carried over from the last load (etl/transform/carry_over.py)
    screen: TextScreen | None = None  # what no value or record key of the source may show: a removal's key too


def harmonise_to_folder(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], key: PseudonymKey,
                        run_id: str, folder: Path, *, part_records: int = PART_RECORDS,
                        previous: Path | None = None,
                        others: Callable[[], Iterable[frozenset[str]]] = tuple) -> HarmonisedSource:
    """Harmonise a source into `<table>.parquet`, records, rejections and link_keys.parquet in `folder`.

    previous: the folder of the source's last load, whose patients with unchanged records are
    carried over rather than harmonised again (etl/transform/carry_over.py). A file of it that cannot
    be read back (damaged on disk) carries nothing over: every patient is harmonised, with a warning.
    others: the other sources' keys' shapes (other_sources.py `other_source_shapes`), read when the screen is first
    used: they are screened out of the source's free text too."""
    try:
        return _harmonise_to_folder(mapping, record_sets, key, run_id, folder, part_records, previous, others)
    except carry_over.Unreadable as exc:
        log.warning("%s: the last load's harmonised rows cannot be read back (%s): every patient is "
                    "harmonised again", mapping.source_id, exc)
        for written in folder.glob("*.parquet"):
            written.unlink()
        return _harmonise_to_folder(mapping, record_sets, key, run_id, folder, part_records, None, others)


def _harmonise_to_folder(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], key: PseudonymKey,
                         run_id: str, folder: Path, part_records: int, previous: Path | None,
                         others: Callable[[], Iterable[frozenset[str]]]) -> HarmonisedSource:
    notices = ignored_notices(mapping, {name: _lineage_of(table) for name, table in record_sets.items()
                                        if mapping.is_ignored(name)})
    tables = {name: table for name, table in record_sets.items() if not mapping.is_ignored(name)}
    keys = SourcePatientKeys(mapping, tables)  # read once: by the screen, the carry-over and the cut into parts
    screen = source_screen(mapping, tables, keys, others)  # every part's free text: by every patient of the source
    patients = carry_over.patients(mapping, tables, key, previous, screen, keys)
    rows = patients.fresh_rows if patients is not None else None
    parts = part_count(mapping, tables, part_records, rows)
    out = HarmonisedSource(rows={}, rejected=0, file_counts={}, notices=notices, parts=parts,
                           carried=patients.carried_patients if patients is not None else 0, screen=screen)
    writers: dict[str, pq.ParquetWriter] = {}
    written: dict[str, int] = {}  # rows per file name
    counted = []
    try:
        for part in split_by_patient(mapping, tables, parts, keys, rows):
            result = harmonise_source(mapping, part, key, run_id, screen=screen)
            del part  # the next part is made while this name still holds the last one
            outputs = {**result.tables, "records": result.records, "rejections": result.rejections,
                       "link_keys": result.link_keys}
            for name, frame in outputs.items():
                _write(writers, written, folder, name,
                       pa.Table.from_pandas(frame, schema=_schema_of(name, list(frame.columns)), preserve_index=False))
            out.rejected += int(result.rejections["source_record_key"].nunique())
            _add_counts(out.file_counts, result.file_counts)
            out.notices += result.notices
            counted.append(result.patient_counts)
            del result, outputs  # likewise, while the next part is harmonised
        if patients is not None:
            for name, rows_carried in carry_over.carried_rows(patients):
                _write(writers, written, folder, name, rows_carried)
                if name == "rejections":
                    out.rejected += len(set(rows_carried.column("source_record_key").to_pylist()))
            _add_counts(out.file_counts, patients.carried_file_counts())
            carry_over.write_memo(patients, counted, folder, written)
    finally:
        for writer in writers.values():
            writer.close()
    out.rows = {name: n for name, n in written.items() if name not in _STAGE_TABLES}
    return out


def source_screen(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], keys: SourcePatientKeys,
                  others: Callable[[], Iterable[frozenset[str]]] = tuple) -> TextScreen:
    """What a free text of the source may not show, whichever part or night harmonises it: the shapes of
    every patient key of the source (`keys`: its record sets') and of the other sources' (`others`), every
    patient's birth date and EUPID (each read when first needed)."""
    return TextScreen(PatientNumbers(lambda: keys.distinct), lambda: source_births(mapping, record_sets),
                      lambda: eupids_given(mapping, _patient_rows(mapping, record_sets, "eupid")), others)


def source_births(mapping: SourceMapping, record_sets: Mapping[str, pa.Table]) -> list[PartialDate]:
    """The birth dates the source's patient records give, as harmonise reads them (one it refuses as each day its
    text may be read as)."""
    found = set(birth_dates(mapping, _patient_rows(mapping, record_sets, "birth_date")))
    return sorted(found, key=lambda b: (b.value, b.precision))


def _patient_rows(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], field: str) -> list[dict[str, str]]:
    """The patient records' distinct values of the columns that give their `field`, read from those columns and
    the ones that join sections: not the records."""
    spec = mapping.patient.fields.get(field)
    if spec is None:
        return []
    joins = {key for part in (mapping.patient, *mapping.tables.values()) if len(part.record_sets()) > 1
             for key in part.join_keys()}
    needed = spec.columns() | joins | {"source_file_sha256"}
    frames, _ = join_sections(mapping, {name: record_frame(table.select([c for c in table.column_names
                                                                         if c in needed]))
                                        for name, table in record_sets.items()})
    head = frames.get(mapping.patient.head)
    if head is None:
        return []
    # A missing column is empty, as `_Engine.records` reads ODM's (an item nobody filled in is left out of the
    # export: a first_of's full date where no child has one); harmonise refuses it from other formats.
    head = head.assign(**{column: "" for column in spec.columns() - set(head.columns)})
    return row_dicts(head[sorted(spec.columns())].astype(str).drop_duplicates())


def _add_counts(total: dict[str, dict[str, int]], counts: Mapping[str, Mapping[str, int]]) -> None:
    for sha, by_name in counts.items():
        into = total.setdefault(sha, dict.fromkeys(by_name, 0))
        for name, n in by_name.items():
            into[name] += n


def _lineage_of(table: pa.Table) -> pd.DataFrame:
    """What an ignored record set's notice needs: its rows' files (all of it when it has no lineage)."""
    return record_frame(table.select(["source_file"]) if "source_file" in table.column_names else table)


def part_count(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], part_records: int,
               rows: Mapping[str, np.ndarray] | None = None) -> int:
    """How many parts: one unless the source is large and every joined section carries the patient key.
    rows: the rows to harmonise of each record set (default all)."""
    records = sum(int(rows[name].sum()) if rows is not None else len(table) for name, table in record_sets.items())
    if records <= part_records or not mapping.joins_on_patient_key():
        return 1  # (a section joined on other keys could belong to another part's patient)
    return math.ceil(records / part_records)


def split_by_patient(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], parts: int,
                     keys: SourcePatientKeys, rows: Mapping[str, np.ndarray] | None = None
                     ) -> Iterator[dict[str, pd.DataFrame]]:
    """The record sets cut into `parts` by a hash of the normalised patient key, every record of a
    patient in one part, each part as pandas frames. Records with no patient key, and record sets
    without the key column, go to the first part; every part has every record set (maybe empty), so
    a missing column fails alike. keys: the record sets' patient keys (read once a run); rows: the rows to
    harmonise of each record set (default all)."""
    if parts == 1 and rows is None:
        yield {name: record_frame(table) for name, table in record_sets.items()}
        return
    buckets: dict[str, np.ndarray] = {}
    for name, table in record_sets.items():
        if parts == 1 or mapping.patient_key not in table.column_names:
            buckets[name] = np.zeros(len(table), dtype=np.int64)
            continue
        patient = keys.of(name)
        hashed = pd.util.hash_pandas_object(patient, index=False) % parts
        buckets[name] = hashed.where(patient.notna(), 0).to_numpy()
    # A non-text column holding a null (never `_line` as staged) is taken from the whole: a part has
    # the dtype the whole has (an integer column with a null anywhere is float64), whatever its own nulls.
    others = {name: {column: record_column(table, column).to_numpy()
                     for column, kind in zip(table.column_names, table.schema.types, strict=True)
                     if table.column(column).null_count and not is_text(kind)}
              for name, table in record_sets.items()}
    for index in range(parts):
        yield {name: _part_frame(table, (buckets[name] == index) & (rows[name] if rows is not None else True),
                                 others[name]) for name, table in record_sets.items()}


def _part_frame(table: pa.Table, chosen: np.ndarray, others: Mapping[str, np.ndarray]) -> pd.DataFrame:
    frame = record_frame(table.filter(pa.array(chosen)))
    for column, values in others.items():
        frame[column] = values[chosen]
    return frame


def _write(writers: dict[str, pq.ParquetWriter], written: dict[str, int], folder: Path, name: str,
           rows: pa.Table) -> None:
    """Append `rows` to `<name>.parquet`, whose schema its first rows set (the declared types of their columns)."""
    writer = writers.get(name)
    if writer is None:
        writer = writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", rows.schema)
    writer.write_table(rows.select(writer.schema.names).cast(writer.schema))
    written[name] = written.get(name, 0) + len(rows)


def _schema_of(name: str, columns: list[str]) -> pa.Schema:
    """The warehouse's Arrow types for the frame's columns: every part writes the same schema, even
    a part in which a column is all NULL (which pandas alone would type as null)."""
    declared = schema.arrow_schema(_STAGE_TABLES.get(name, f"core.{name}"))
    return pa.schema([declared.field(column) for column in columns])
