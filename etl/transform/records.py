"""Record sets: a source's staged files regrouped into one frame per form, the unit mappings address.

Each format's adapter (etl/extract) says what a record is: an ODM ItemGroupData, a CSV row, a
SAS observation, a row of an Excel sheet. Record sets of the same name from several current
files of a source (per-form exports) are concatenated here. Every record keeps `_line` (where
it starts in the export) and the file's lineage columns. The current records are Arrow tables,
compact until harmonise takes them a part at a time (etl/transform/parts.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from etl import memory
from etl.extract.adapter import RecordSets, adapter_for, record_column, record_frame, record_set_of_file
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import normalise_patient_key


def load_current_records(mapping: SourceMapping, staged_files: list[tuple[Path, str, str]]) -> RecordSets:
    """A source's current records from its staged files ((staged path, file name, sha256), in chain order)."""
    adapter = adapter_for(mapping.format)
    current = adapter.combine([(staged, record_set_of_file(mapping, name) or Path(name).stem, name, sha)
                               for staged, name, sha in staged_files])
    memory.release_arrow()  # what staging and reading freed, before harmonise needs the room
    return current


def load_record_sets(mapping: SourceMapping, staged_files: list[tuple[Path, str]]) -> dict[str, pd.DataFrame]:
    """The record sets of staged files ((staged path, file name) pairs) taken as one snapshot."""
    tables = load_current_records(mapping, [(staged, name, "") for staged, name in staged_files]).frames
    return {name: record_frame(table) for name, table in tables.items()}


def patient_keys(mapping: SourceMapping, table: pa.Table) -> pd.Series:
    """Each record's normalised patient key (`normalise_patient_key`), None where it has none: what
    harmonise tells patients apart by. Each distinct key is normalised once."""
    codes, keys = pd.factorize(record_column(table, mapping.patient_key).astype(str), use_na_sentinel=False)
    nulls = set(mapping.null_values)
    normalised = np.array([None if key.strip() in nulls else normalise_patient_key(key) for key in keys], dtype=object)
    return pd.Series(normalised[codes], dtype=object)
