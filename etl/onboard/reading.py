"""Reading a file for onboarding: its record sets through the format's adapter, and its own metadata.

A file is staged by its adapter exactly as the nightly run stages it, but into a private temporary
folder (mode 0700, removed afterwards): nothing is written to the home, and only the record sets
are held in memory, whatever the file's size.

What a format declares about its columns (a CSV's dialect, SAS labels and formats, ODM ItemDefs
and CodeLists) comes from a describer per format, registered in `_DESCRIBERS`; a format without
one is still profiled, from its values alone.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.extract.adapter import LINE_COLUMN, LINEAGE_COLUMNS, SourceAdapter, adapter_for_file
from etl.extract.landing import sha256_of

#: columns the adapters add to every record set: lineage, not data
BOOKKEEPING_COLUMNS = frozenset({LINE_COLUMN, *LINEAGE_COLUMNS})


@dataclass(frozen=True)
class ColumnInfo:
    """What the file itself says about one column (all optional)."""

    label: str | None = None  # SAS label, ODM ItemDef Name
    declared_type: str | None = None  # SAS format, ODM DataType
    codes: dict[str, str | None] | None = None  # ODM CodeList: coded value -> decode


@dataclass(frozen=True)
class FormatDetails:
    """The format's own description of a file: notes for the whole file, and per column."""

    notes: tuple[str, ...] = ()
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str | None = None


@dataclass(frozen=True)
class FileRead:
    """One file read for onboarding."""

    path: Path
    format: str
    sha256: str
    record_sets: dict[str, pd.DataFrame]
    notices: tuple[str, ...]
    details: FormatDetails


def read_file(path: Path, adapter: SourceAdapter | None = None, *, record_set: str | None = None,
              options: Any = None) -> FileRead:
    """Stage a file through its adapter into a temporary folder and return its record sets.

    Raises `ExtractError` (naming the file and the place) when the file cannot be read.
    """
    chosen = adapter or adapter_for_file(path)
    sha = sha256_of(path)
    reader_options = options if options is not None else chosen.Options()
    with tempfile.TemporaryDirectory(prefix="rtw-onboard-") as folder:
        staged = Path(folder) / chosen.staged_name(sha)
        result = chosen.stage(path, staged, reader_options, {"source_file": path.name, "source_file_sha256": sha})
        # Without a mapping, a one-record-set file's record set is named after the file.
        record_sets = chosen.record_sets(staged, record_set or path.stem)
        # Frames are in memory now; the staged copy (clear identifiers) goes with the folder.
    return FileRead(path, chosen.format, sha, record_sets, result.notices, describe_file(chosen.format, path))


def data_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a record set that hold the source's data (not lineage)."""
    return [str(c) for c in frame.columns if c not in BOOKKEEPING_COLUMNS]


# -- what each format declares ------------------------------------------------------------------
def _csv_details(path: Path) -> FormatDetails:
    from etl.extract.delimited import sniff_dialect

    dialect = sniff_dialect(path)
    notes = (f"encoding {dialect.encoding}", f"delimiter {dialect.delimiter!r}",
             f"decimal mark {dialect.decimal!r}", f"dates {dialect.date_format or 'none detected'}")
    return FormatDetails(notes=notes, encoding=dialect.encoding, delimiter=dialect.delimiter, decimal=dialect.decimal)


def _odm_details(path: Path) -> FormatDetails:
    from etl.extract.odm import read_odm_metadata

    metadata = read_odm_metadata(path)
    columns = {
        oid: ColumnInfo(label=item.name, declared_type=item.data_type,
                        codes=dict(metadata.code_lists.get(item.code_list_oid, {})) if item.code_list_oid else None)
        for oid, item in metadata.item_defs.items()}
    notes = (f"{len(metadata.item_defs)} ItemDefs, {len(metadata.code_lists)} CodeLists in the MetaDataVersion",)
    return FormatDetails(notes=notes, columns=columns)


def _sas_details(path: Path) -> FormatDetails:
    # The SAS module reads labels and formats without the data (pyreadstat metadataonly).
    module = importlib.import_module("etl.extract.sas")
    reader = getattr(module, "read_sas_metadata", None) or getattr(module, "sas_metadata", None)
    if reader is None:
        return FormatDetails()
    metadata = reader(path)
    labels: dict[str, Any] = dict(_attribute(metadata, "column_labels", "labels") or {})
    formats: dict[str, Any] = dict(_attribute(metadata, "column_formats", "formats") or {})
    columns = {str(name): ColumnInfo(label=labels.get(name) or None, declared_type=formats.get(name) or None)
               for name in {*labels, *formats}}
    # The adapter's own notices already name the dataset, its label, encoding and every format.
    encoding = _attribute(metadata, "file_encoding", "encoding")
    return FormatDetails(columns=columns, encoding=str(encoding) if encoding else None)


def _attribute(metadata: Any, *names: str) -> Any:
    """A metadata field by any of its names, whether the reader returns an object or a dict."""
    for name in names:
        value = metadata.get(name) if isinstance(metadata, dict) else getattr(metadata, name, None)
        if value is not None:
            return value
    return None


_DESCRIBERS: dict[str, Callable[[Path], FormatDetails]] = {
    "csv": _csv_details,
    "odm": _odm_details,
    "sas": _sas_details,
}


def describe_file(format_name: str, path: Path) -> FormatDetails:
    """What the file's format declares about it; empty for a format without a describer."""
    describer = _DESCRIBERS.get(format_name)
    return describer(path) if describer is not None else FormatDetails()
