"""Source adapters: one per export format, behind one small interface.

An adapter turns one export file into *record sets* (one frame per form, dataset, sheet or
ItemGroup) of raw string values with lineage, in two steps:

- `stage(path, out, options, lineage)`: read the file once (streaming where the format
  allows) and write what it holds to Parquet at `out`; the artefact appears only when
  complete. Unreadable input raises `ExtractError` naming the file and the place. `options`
  are the format's own reader options (`Options`, from the mapping's `options:`).
- `record_tables(staged, record_set)`: the staged artefact as Arrow tables, one per record set,
  each with `_line` (where the record starts: a line, a row of a sheet, an observation) and the
  lineage columns `source_file`, `source_file_sha256`. `record_set` names the file's record
  set for formats with one record set a file (from the mapping; the file stem otherwise).
  `record_sets(staged, record_set)` gives the same as pandas frames (`record_frame`).

Record sets stay Arrow tables until harmonise takes them, a part of whole patients at a time
(etl/transform/parts.py): as Python strings a large source's raw values take several times the
memory (a 100,000-person ODM export: 659 MiB of object strings).

Neither step needs a mapping, so `rtw profile` reads a file before any mapping exists.

Adding a format is adding one module in `etl/extract/` that defines a module-level
`ADAPTER`, and its line in `FORMAT_MODULES`; the registry finds it, and a mapping's `format:` may
then name it.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from etl.extract.errors import ExtractError
from etl.resources import code_digest, code_files

if TYPE_CHECKING:
    from etl.transform.mapping import SourceMapping

LINE_COLUMN = "_line"
# SourceAdapter.staged_as, a file or a folder (a file's SHA-256 alone: as staged before the reading was in the name)
STAGED_NAME = re.compile(r"[0-9a-f]{64}(\.[0-9a-f]{16})?(\.parquet)?")
LINEAGE_COLUMNS = ("source_file", "source_file_sha256")
# The libraries the readers read with (their versions are part of how a file was read: staged_as).
READER_LIBRARIES = ("lxml", "pyarrow", "pandas", "numpy", "duckdb", "pyreadstat", "python-calamine")


@dataclass(frozen=True)
class StageResult:
    """What staging one export file wrote: its record count and the format's notices."""

    rows: int
    notices: tuple[str, ...]
    #: reader options the file calls for that were not given (an Excel sheet with merged cells in its
    #: data rows: merged_cells: fill), for `rtw scaffold` to draft; a notice says each too
    advised_options: Mapping[str, Any] = field(default_factory=dict)
    #: names besides the file's that the notices quote (an Excel workbook's sheets): they may hold a patient
    #: number, and are shown as file names are (etl/extract/file_names.py)
    quoted: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileHeader:
    """What a file says of itself before it is read: a whole snapshot, or an increment in a chain."""

    increment: bool = False  # applies on top of the file before it instead of replacing it
    file_oid: str | None = None
    prior_file_oid: str | None = None  # the file an increment follows
    created: datetime | None = None  # when the source system wrote it, if the file says


@dataclass(frozen=True)
class Removal:
    """A record an increment deleted: kept for the audit (by pseudonym once harmonised)."""

    record_set: str
    patient_key: str
    local_key: str
    level: str  # the element the removal was written at, e.g. SubjectData, ItemGroupData
    file_name: str
    file_sha256: str


@dataclass(frozen=True)
class RecordSets:
    """A source's current records, by record set, from all its current files (Arrow: compact)."""

    frames: dict[str, pa.Table]
    removed: tuple[Removal, ...] = ()
    superseded: dict[str, int] = field(default_factory=dict)  # by file sha256: records a later file replaced


@dataclass(frozen=True)
class ColumnInfo:
    """What a file itself says about one of its columns (all optional)."""

    label: str | None = None  # SAS label, ODM ItemDef Name
    declared_type: str | None = None  # SAS format, ODM DataType
    codes: dict[str, str | None] | None = None  # ODM CodeList: coded value -> decode
    temporal: str | None = None  # ReadStat: what a date or time format's values were converted to (ISO text)


@dataclass(frozen=True)
class FormatDetails:
    """A format's own description of a file, for onboarding: notes on the whole file, and per column."""

    notes: tuple[str, ...] = ()
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str | None = None


class NoOptions(BaseModel):
    """A format whose reader takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceAdapter(ABC):
    """Reads one export format. Subclasses set `format` and implement `stage` and `record_tables`."""

    format: ClassVar[str]
    description: ClassVar[str]
    #: file name endings this format is written with (for `rtw profile`, `rtw scaffold`)
    suffixes: ClassVar[tuple[str, ...]]
    #: the export names each file's record set (per-form CSV, one SAS dataset a file), so files
    #: of one record set replace each other; else a file is a whole snapshot of the source
    one_record_set_per_file: ClassVar[bool] = False
    #: a column the mapping names may be absent from the file (ODM leaves out items never filled)
    sparse_columns: ClassVar[bool] = False
    #: numbers arrive typed (an Excel number cell, a SAS numeric) and are written with a point,
    #: whatever decimal mark the source's text uses
    typed_numbers: ClassVar[bool] = False

    #: the reader options a mapping may give under `options:`; extra keys are refused
    Options: ClassVar[type[BaseModel]] = NoOptions

    def read_options(self, mapping: SourceMapping) -> BaseModel:
        """The mapping's `options:` checked against this format's `Options` (raises ValueError)."""
        return self.Options.model_validate(mapping.options)

    def staged_name(self, stem: str) -> str:
        """Name of a staged artefact (a file here, a folder for some formats) from its stem."""
        return f"{stem}.parquet"

    def staged_whole(self, staged: Path) -> bool:
        """Whether a staged artefact reads back: a file cut short or damaged on disk is staged again."""
        return parquet_whole(staged)

    def staged_as(self, sha256: str, options: BaseModel) -> str:
        """Name of the staged artefact of a file read with `options`, under `staging/<source_id>/`: the
        file's SHA-256 (first, so that every staged copy of an export is found by it), then a digest of
        how it was read (the options, the readers' code, the libraries they read with). New options in
        a mapping or an upgraded reader stage the file again, instead of reusing rows read otherwise."""
        reading = hashlib.sha256(f"{options.model_dump_json()}|{readers_digest()}".encode()).hexdigest()
        return self.staged_name(f"{sha256}.{reading[:16]}")

    def series(self, mapping: SourceMapping, file_name: str) -> str | None:
        """Files of one series replace each other; None when the file does not fit the mapping."""
        if not self.one_record_set_per_file:
            return mapping.source_id
        return record_set_of_file(mapping, file_name)

    def describe(self, path: Path, options: Any = None) -> FormatDetails:
        """What the file declares about itself (dialect, labels, code lists), read with the format's reader
        `options` when given (a text encoding overriding the file's); nothing for most formats."""
        return FormatDetails()

    def file_header(self, path: Path) -> FileHeader:
        """How the file relates to the others of its series; most formats only send snapshots."""
        return FileHeader()

    def declared_columns(self, staged: Path) -> frozenset[str] | None:
        """The columns a staged file's own metadata declares, those it holds no value of included (ODM's
        ItemDefs), for a format whose columns are sparse; None when the file declares none."""
        return None

    def combine(self, staged: Sequence[tuple[Path, str, str, str]]) -> RecordSets:
        """The record sets of a source's current files ((staged, record set, file name, sha256), in
        chain order), same-named ones concatenated, compact (`compact_record_table`). Formats with
        increments apply them here."""
        collected: dict[str, list[pa.Table]] = {}
        for path, record_set, _, _ in staged:
            for name, table in self.record_tables(path, record_set).items():
                collected.setdefault(name, []).append(table)
        return RecordSets({name: compact_record_table(concat_record_tables(tables))
                           for name, tables in collected.items()})

    def without_patients(self, path: Path, mapping: SourceMapping, erased: Callable[[str], bool]) -> bool | None:
        """Rewrite the export copy at `path` without the records of the patients whose key `erased`
        names (consent withdrawal, etl/forget.py): True if it changed, False if it held none of
        them, None when the format cannot be rewritten safely (the caller deletes the copy)."""
        return None

    @abstractmethod
    def stage(self, path: Path, out: Path, options: Any, lineage: dict[str, str]) -> StageResult:
        """Read an export file and write its raw rows, with lineage, to `out`."""

    @abstractmethod
    def record_tables(self, staged: Path, record_set: str) -> dict[str, pa.Table]:
        """The staged rows as one Arrow table of strings per record set."""

    def record_sets(self, staged: Path, record_set: str) -> dict[str, pd.DataFrame]:
        """The staged rows as one frame of strings per record set (`record_frame` of each table)."""
        return {name: record_frame(table) for name, table in self.record_tables(staged, record_set).items()}


class OneTableAdapter(SourceAdapter):
    """A format whose file is one record set (named by the mapping), staged as one Parquet file: per-form
    CSV, a SAS, SPSS or Stata dataset."""

    one_record_set_per_file = True

    def record_tables(self, staged: Path, record_set: str) -> dict[str, pa.Table]:
        return {record_set: pq.read_table(staged)}


def parquet_whole(path: Path) -> bool:
    """Whether a Parquet file's footer reads (a file cut short has none)."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def record_frame(table: pa.Table) -> pd.DataFrame:
    """A record set as harmonise reads it: text as Python strings (object columns), None for a null.

    Dictionary-encoded text (`compact_record_table`) is decoded first: pandas would make it Categorical."""
    plain = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    return (table if plain.equals(table.schema) else table.cast(plain)).to_pandas()


def record_column(table: pa.Table, name: str) -> pd.Series:
    """One column of a record set as harmonise reads it (`record_frame`)."""
    return record_frame(table.select([name]))[name]


def staging_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A writer of staged Parquet, which this run reads once, whole: LZ4 and no column statistics
    write it in half the time of the defaults (Snappy, statistics), at the same size. Dictionary
    pages for all but the line numbers and ODM's values, nearly all distinct, whose dictionaries were
    built only to be dropped (ODM at 100,000 persons staged 8% faster, in a tenth less space)."""
    return pq.ParquetWriter(path, schema, compression="lz4", write_statistics=False,
                            use_dictionary=[f.name for f in schema if f.name not in _MOSTLY_DISTINCT])


_MOSTLY_DISTINCT = {LINE_COLUMN, "line", "value"}  # the line numbers of delimited files and of ODM, ODM's values


def compact_record_table(table: pa.Table) -> pa.Table:
    """The record set with each text column that repeats its values (lineage, ODM keys, codes, dates)
    dictionary-encoded: a large source's record sets held whole are then a fraction of their text."""
    columns = []
    for column in table.columns:
        if is_text(column.type) and not pa.types.is_dictionary(column.type) and len(column):
            encoded = pc.dictionary_encode(column)
            column = encoded if encoded.nbytes < column.nbytes // 2 else column
        columns.append(column)
    return pa.table(columns, schema=pa.schema(
        [field.with_type(column.type) for field, column in zip(table.schema, columns, strict=True)],
        metadata=table.schema.metadata))


def is_text(kind: pa.DataType) -> bool:
    """A string column, plain (as staged) or dictionary-encoded (`compact_record_table`)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def concat_record_tables(tables: Sequence[pa.Table]) -> pa.Table:
    """Same-named record sets of several files as one; a column one file lacks is null in its rows."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def record_set_of_file(mapping: SourceMapping, file_name: str) -> str | None:
    """The record set a one-record-set file feeds, from the mapping; None if the name does not fit."""
    if mapping.record_set:
        return mapping.record_set
    if mapping.record_set_from_file is None:
        return None
    match = re.fullmatch(mapping.record_set_from_file, file_name)
    return match.group("record_set") if match else None


@cache
def readers_digest() -> str:
    """The readers (this package, its C walk's source included) and the libraries they read with."""
    return code_digest(code_files(Path(__file__).parent), *READER_LIBRARIES)


# Each format a mapping may name, with the module of this package whose ADAPTER reads it: a mapping is
# checked, and a night plans, with its own format's reader imported alone (all of them cost every night
# 35-55 ms). tests/test_format_names.py holds it to the modules that define an ADAPTER.
FORMAT_MODULES = {"csv": "delimited", "excel": "excel", "odm": "odm", "sas": "sas", "spss": "spss", "stata": "stata"}


@cache
def adapters() -> dict[str, SourceAdapter]:
    """Every adapter, by format name (`FORMAT_MODULES`: tests/test_format_names.py finds a module of this package
    defining an ADAPTER that the table misses)."""
    return {name: adapter_for(name) for name in FORMAT_MODULES}


def adapter_for(format_name: str) -> SourceAdapter:
    """The format's adapter, only its own module imported (`FORMAT_MODULES`)."""
    if format_name not in FORMAT_MODULES:
        raise ExtractError(f"no adapter for format '{format_name}' (known: {', '.join(sorted(FORMAT_MODULES))})")
    adapter: SourceAdapter = importlib.import_module(f"{__package__}.{FORMAT_MODULES[format_name]}").ADAPTER
    return adapter


def adapter_for_file(path: Path) -> SourceAdapter:
    """The adapter whose file suffix the path has (for commands given a bare file)."""
    name = path.name.lower()
    for adapter in adapters().values():
        if any(name.endswith(suffix) for suffix in adapter.suffixes):
            return adapter
    known = ", ".join(sorted(s for a in adapters().values() for s in a.suffixes))
    raise ExtractError(f"{path.name}: unknown file type; expected one of {known}")


# Magic numbers of formats that are plainly not text: an adapter refuses them with what they are.
_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (an .xlsx/.ods workbook or a zipped export)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 file (an old .xls workbook)"),
    (b"HEADER RECORD*******LIBRARY", "a SAS transport file (.xpt)"),
    (b"HEADER RECORD*******LIBV8", "a SAS transport file (.xpt, version 8)"),
    (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\xea\x81\x60", "a SAS dataset (.sas7bdat)"),
    (b"$FL2", "an SPSS data file (.sav)"),
    (b"$FL3", "an SPSS compressed data file (.zsav)"),
    (b"<stata_dta>", "a Stata dataset (.dta)"),
    # Stata releases 113-115 (Stata 8-12): release, byte order, file type 1, a zero byte
    *((bytes((release, order, 1, 0)), "a Stata dataset (.dta)") for release in (113, 114, 115) for order in (1, 2)),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file"),
)


def sniff_kind(path: Path) -> str | None:
    """What a file plainly is, from its first bytes, when that is a known binary format; else None."""
    with path.open("rb") as handle:
        head = handle.read(64)
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    return None


def what_it_is(path: Path, head: bytes, *, named_like: str, html: str, xml: str) -> str:
    """What a file that is not of its adapter's format is, from its first bytes, for the refusal: another known
    format, text (an HTML page, an XML document: `html`, `xml` say what such a one likely is; a CSV named like
    `named_like`), else its first four bytes. Never more of its text: a CSV's first lines may be a patient's
    row (the refusal is logged, kept in meta.source_file and printed by `rtw profile` and `rtw scaffold`)."""
    kind = sniff_kind(path)
    if kind is not None:
        return f"its first bytes are those of {kind}"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<html", b"<!doctype html", b"<table")):
        return f"it is an HTML page ({html})"
    if text.startswith(b"<?xml"):
        return f"it is an XML document ({xml})"
    if b"\x00" not in head:
        return f"it is plain text (a CSV or tab-separated file named like {named_like}?)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it is UTF-16 text (a CSV saved as Unicode text?)"
    return f"it begins with {head[:4]!r}"


def refuse_if_other_format(path: Path, expected: str) -> None:
    """Raise a clear error when the file is plainly of another format than the adapter reads."""
    kind = sniff_kind(path)
    if kind is not None:
        raise ExtractError(f"{path.name}: this is not {expected}: its first bytes are those of {kind}; "
                           "check the source's `format:` or the file delivered")
