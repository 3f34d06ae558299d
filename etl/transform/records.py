"""Record sets: a source's staged files regrouped into one frame per form, the unit mappings address.

Each format's adapter (etl/extract) says what a record is: an ODM ItemGroupData, a CSV row, a
SAS observation, a row of an Excel sheet. Record sets of the same name from several current
files of a source (per-form exports) are concatenated here. Every record keeps `_line` (where
it starts in the export) and the file's lineage columns. The current records are Arrow tables,
compact until harmonise takes them a part at a time (etl/transform/parts.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import memory
from etl.extract.adapter import RecordSets, SourceAdapter, adapter_for, record_column, record_frame, record_set_of_file
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import normalise_patient_key


def load_current_records(mapping: SourceMapping, staged_files: list[tuple[Path, str, str, str]]) -> RecordSets:
    """A source's current records from its staged files ((staged path, series, file name as shown, sha256),
    in chain order). A one-record-set file's record set is its series: it is read from the name as
    delivered, which may hold a patient number and so never leaves extract (etl/extract/file_names.py)."""
    adapter = adapter_for(mapping.format)
    current = adapter.combine(staged_files)
    # A column no record holds may be one nobody filled in (ODM): the mapping is wrong only if no file declares it.
    declared = declared_columns(adapter, [staged for staged, *_ in staged_files])
    if declared:
        from etl.transform.harmonise import refuse_undeclared_items  # harmonise imports this module, through file_names

        refuse_undeclared_items(mapping, current.frames, declared, [name for _, _, name, _ in staged_files])
    memory.release_arrow()  # what staging and reading freed, before harmonise needs the room
    return current


def declared_columns(adapter: SourceAdapter, staged: Iterable[Path]) -> frozenset[str]:
    """The columns a source's staged files declare, taken together (ODM: the ItemDefs of every current file, an
    increment's with its snapshot's); empty for a format whose columns are not sparse, or when no file declares
    any (then an item nobody filled in cannot be told from a misspelt one). `rtw check` judges by them too."""
    if not adapter.sparse_columns:
        return frozenset()
    return frozenset().union(*(d for d in map(adapter.declared_columns, staged) if d is not None))


def load_record_sets(mapping: SourceMapping, staged_files: list[tuple[Path, str]]) -> dict[str, pd.DataFrame]:
    """The record sets of staged files ((staged path, file name) pairs) taken as one snapshot."""
    tables = load_current_records(mapping, [(staged, record_set_of_file(mapping, name) or Path(name).stem, name, "")
                                            for staged, name in staged_files]).frames
    return {name: record_frame(table) for name, table in tables.items()}


def patient_keys(mapping: SourceMapping, table: pa.Table) -> pd.Series:
    """Each record's normalised patient key (`normalise_patient_key`), None where it has none: what
    harmonise tells patients apart by. Each distinct key is normalised once."""
    codes, keys = pd.factorize(record_column(table, mapping.patient_key).astype(str), use_na_sentinel=False)
    nulls = set(mapping.null_values)
    normalised = np.array([None if key.strip() in nulls else normalise_patient_key(key) for key in keys], dtype=object)
    return pd.Series(normalised[codes], dtype=object)


class SourcePatientKeys:
    """Each record's normalised patient key (`patient_keys`) in every record set of a source, a record set's
    read when first asked and kept: the screen's key shapes, the carry-over's digests and the cut into parts
    all tell patients apart by them, and read once they cost a fifth of a second at 100,000 persons."""

    def __init__(self, mapping: SourceMapping, record_sets: Mapping[str, pa.Table]) -> None:
        self._mapping = mapping
        self._record_sets = record_sets
        self._keys: dict[str, pd.Series] = {}

    def of(self, record_set: str) -> pd.Series:
        """The record set's keys, row by row (the record set must have the patient key column)."""
        if record_set not in self._keys:
            self._keys[record_set] = patient_keys(self._mapping, self._record_sets[record_set])
        return self._keys[record_set]

    @functools.cached_property
    def distinct(self) -> set[str]:
        """Every patient key of the source, once (a record set without the key column has none)."""
        return {key for name, table in self._record_sets.items() if self._mapping.patient_key in table.column_names
                for key in self.of(name).dropna().unique()}


def patient_columns(mapping: SourceMapping) -> set[str]:
    # The adapters stage ODM's SubjectKey as `subject_key`; the record sets call it `_subject_key`.
    return {mapping.patient_key, mapping.patient_key.lstrip("_")}


def staged_patient_keys(staged: Path, mapping: SourceMapping) -> set[str]:
    """The clear patient keys in one staged export (a Parquet file, or a folder of them). Each column's
    distinct values are taken first: a large ODM export repeats its subject keys on millions of rows."""
    keys: set[str] = set()
    for part in [staged] if staged.is_file() else sorted(staged.glob("*.parquet")):
        for column in [c for c in pq.read_schema(part).names if c in patient_columns(mapping)]:
            values = pq.read_table(part, columns=[column]).column(0)
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            distinct = record_column(pa.table({column: values.unique()}), column)
            keys |= {t for t in distinct.dropna().astype(str) if normalise_patient_key(t)}
    return keys


def with_file_names(frames: dict[str, pa.Table], names: dict[str, str]) -> dict[str, pa.Table]:
    """The record sets with their lineage column `source_file` naming each file as `names` (by sha256)
    does: staging keeps a file's name as delivered, and it may hold a patient number
    (etl/extract/file_names.py). A row of a file not in `names` keeps its name."""
    shas, shown = pa.array(list(names), pa.string()), pa.array(list(names.values()), pa.string())
    renamed = {}
    for record_set, table in frames.items():
        if "source_file" not in table.column_names or "source_file_sha256" not in table.column_names:
            renamed[record_set] = table
            continue
        sha = table.column("source_file_sha256")
        if pa.types.is_dictionary(sha.type):
            sha = sha.cast(sha.type.value_type)
        delivered = table.column("source_file")
        encoded = pa.types.is_dictionary(delivered.type)
        name = pc.coalesce(pc.take(shown, pc.index_in(sha, value_set=shas)),
                           delivered.cast(delivered.type.value_type) if encoded else delivered)
        renamed[record_set] = table.set_column(table.schema.get_field_index("source_file"), "source_file",
                                               pc.dictionary_encode(name) if encoded else name)
    return renamed
