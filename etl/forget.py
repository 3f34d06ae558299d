"""Consent withdrawal: erase one source patient from everything under the home (`rtw forget`).

The request names the centre's own patient number; it is turned into the keyed source pseudonym at
once and never printed, logged or stored. Erasure is:

- the live warehouse, in one atomic publish: the patient's stage rows (found by the record-key
  prefix `<pseudonym>|`), the dq rows citing them, their removal audit, the queries sent about them
  and the centre's answers (which name their query by row key only); core and marts rebuilt
  from stage as publish does, so core.patient loses the person unless another source still links
  them; the rows move to `rows_superseded` in meta.source_file (rows_read still adds up); the runs'
  own record (meta.run, run_note, source_notice: a notice may name another patient too) keeps its rows,
  the patient named "(an erased patient)" there;
- what a killed run left (its next warehouse, a whole copy of the live one; GX's batch files): removed
  first, as crash repair would at the next run;
- the files: archive copies of every export the home keeps (a snapshot superseded nights ago too,
  whose staged copy is gone), rewritten by their adapter where the format allows
  (`SourceAdapter.without_patients`: CSV rows, ODM SubjectData; other formats deleted when they
  hold the patient, read again to tell when no staged copy does; a copy that cannot be rewritten is deleted,
  a warning says which; landing/ keeps the export), the staged raw Parquet, the
  harmonised Parquet of every run, every kept marts set (without the rows of a person another
  source still links, too: they hold the patient's contribution; once the set without the patient
  is written, the sets from before the erasure are deleted, as their aggregates count the patient),
  and the reports (CSV query lists
  rewritten; pages, workbooks and Data Docs that cite the patient deleted, the latest report
  rebuilt), and the public export in <home>/public (its aggregates count the patient: removed, and
  `rtw forget` says to run `rtw export --public` again);
- the patient's number in file names (a file per patient, `Fall_123456_Verlauf.csv`): an archive copy
  or tombstone so named is renamed with `{patient}` in its place, and a hash-named tombstone keeps the
  export in landing/ from being archived again (`landing.erased_export`); the pull ledger keeps such a
  file by digests keyed by the pseudonymisation key, without its path (etl/pull/ledger.py `unnamed`), so
  it is not pulled again; a file of
  the patient sent again afterwards is renamed so by the run that harmonises it (`hide_erased_numbers`).
  Only where the name reads the number as one: a snapshot whose date is written as it (`export_20261101.csv`)
  keeps its name (`file_names.reads_as_patient_number`). The report files an upgrade still has to rewrite
  with the names as shown are rewritten first: their clear names are read from the archive copies';
- the file steps are done after the publish: until they are, a note under the home (`_Pending`) keeps the
  persons whose rows go, and `rtw forget` for a patient erased already does them again (an erasure killed, or
  a step failed);
- what was written before a `rtw rekey` (issue history, queries and answers, reports) names the patient by
  their pseudonym under the key of the day: erased and scrubbed by the patient's pseudonym under every kept
  key too (`_former_pseudonyms`);
- `meta.erasure`, by pseudonym only: harmonise reads it and leaves the patient out of every later
  run while the centre's exports still hold them (`drop_erased`), after `rtw rekey` too: each
  pseudonym is checked under the key it was made under (`Erasures`); an export naming them (their records,
  or an ODM increment's Remove of them: `exports_holding`) loses them from its archive and staged copies.

A patient another source links (same EUPID, or linkage) is erased from this source only: consent is
given per study. Those records are named (`linked_elsewhere`, by pseudonym and centre) so the data
manager can ask whether the withdrawal covers them and erase each with its own `rtw forget`.

Gotcha: raw files hold the clear patient number, so they are matched by recomputing the pseudonym
of each row's patient key; derived files only ever hold pseudonyms and patient ids.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import itertools
import json
import logging
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import crash, fsio, runlock
from etl.config import SOURCES_DIR, Home, connect_duckdb
from etl.extract.adapter import STAGED_NAME, adapter_for, record_column
from etl.extract.errors import ExtractError
from etl.extract.file_names import (
    NAME_RUNS,
    PATIENT,
    SEPARATORS,
    PatientNumbers,
    joined_alike,
    key_shape,
    reads_as_patient_number,
    runs_into_letters,
)
from etl.extract.landing import ERASED_SUFFIX, archive_copies, erased_export
from etl.link.model import load_config
from etl.link.run import link_sources
from etl.load.warehouse import rebuild_derived, source_tables, swap_in_next
from etl.schema import in_warehouse, reading
from etl.transform.carry_over import recount_memo
from etl.transform.harmonise import HarmoniseError
from etl.transform.keyguard import guard_key, record_fingerprint
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.pseudonym import (
    PseudonymKey,
    key_file_readings,
    load_key,
    names_a_patient,
    normalise_patient_key,
    source_pseudonym,
)
from etl.transform.records import patient_columns, staged_patient_keys

if TYPE_CHECKING:  # the pull's transports: imported where used
    from etl.pull.ledger import Ledger

log = logging.getLogger("rtw")


class ForgetError(ValueError):
    """The erasure cannot be done as asked (unknown source, no such patient, no warehouse)."""


@dataclass
class ForgetResult:
    run_id: str
    source_id: str
    records_removed: int = 0
    person_removed: bool = False
    loaded: bool = True  # False: recorded ahead of the patient's first load (`not_loaded`)
    files_rewritten: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    public_withdrawn: bool = False  # <home>/public (rtw export --public) counted the patient: removed
    resumed: bool = False  # erased already: the file steps were done again (an erasure stopped after its publish)
    # The person's records in other sources (`source:pseudonym (centre C)`): they stay, consent is per study
    linked_elsewhere: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Marks:
    """What identifies the patient in derived data: never the clear key."""

    pseudonym: str
    patient_ids: tuple[str, ...] = ()  # only those no other source still links
    # Persons another source still links: their person-level rows in a kept marts set (patient_summary,
    # survival, ...) hold the patient's contribution (a source, an enrolment date) under the person's id.
    persons_kept: tuple[str, ...] = ()
    # The patient's pseudonyms under the keys rtw rekey retired (`_former_pseudonyms`): the issue history, the
    # queries, the centre's answers and the reports written before a rekey name the patient so.
    former: tuple[str, ...] = ()

    @property
    def pseudonyms(self) -> tuple[str, ...]:
        return (self.pseudonym, *self.former)

    @property
    def prefixes(self) -> list[str]:
        return [f"{p}|" for p in self.pseudonyms]

    def tokens(self) -> list[str]:
        return [*self.pseudonyms, *self.patient_ids]

    def of_history(self) -> _Marks:
        """For kept marts sets: the surviving persons' rows go too (history; the next set is derived
        from the warehouse without the patient, and so is the set forget exports)."""
        return _Marks(self.pseudonym, (*self.patient_ids, *self.persons_kept), former=self.former)


# --- the erasure list, read by harmonise ---------------------------------------------------------

class ErasureKeyMissing(HarmoniseError):
    """Erasures were made under a key whose kept file is gone: they cannot be enforced."""


@dataclass
class Erasures:
    """A source's erasures by the fingerprint of the key each pseudonym was made under.

    A pseudonym is an HMAC under one key, and the erased patient's clear number is gone from every
    copy forget scrubbed: after `rtw rekey` an erasure can only be recognised by computing each
    patient's pseudonym under the key it was made under again, from the old key file rekey kept
    beside the key file (`pseudonym.key.<time>.old`). `pseudonym in erasures` is true for an erased
    pseudonym under any key, and for the current pseudonym of an erased patient found by `drop_erased`.
    """

    source_id: str
    by_key: dict[str | None, set[str]]  # None: a warehouse that records no key (the harmonising key)
    key_file: Path
    found: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return any(self.by_key.values())

    def __contains__(self, pseudonym: object) -> bool:
        return pseudonym in self.found or any(pseudonym in p for p in self.by_key.values())

    def keyed(self, key: PseudonymKey) -> list[tuple[PseudonymKey, set[str]]]:
        """Each key an erasure was made under, with its pseudonyms; `key` is the one harmonising.
        Refuses (ErasureKeyMissing) when a key's file is gone: those patients would silently come back."""
        current = key.fingerprint()
        kept = {k.fingerprint(): k for k in _kept_keys(self.key_file)} if set(self.by_key) - {None, current} else {}
        keyed: list[tuple[PseudonymKey, set[str]]] = []
        for fingerprint, pseudonyms in sorted(self.by_key.items(), key=lambda item: item[0] or ""):
            found = key if fingerprint in (None, current) else kept.get(fingerprint or "")
            if found is None:
                raise ErasureKeyMissing(
                    f"{len(pseudonyms)} erasure(s) of {self.source_id} (rtw forget) were made under the key with "
                    f"fingerprint {(fingerprint or '')[:8]}, and no key file in {self.key_file.parent} has it: those "
                    f"patients cannot be kept out, so {self.source_id} is not loaded. Put that key's file back "
                    f"as {self.key_file.name}.<time>.old (mode 0600; rtw rekey kept it so), then run again")
            keyed.append((found, pseudonyms))
        return keyed


def _former_pseudonyms(key_file: Path, key: PseudonymKey, source_id: str, patient_key: str) -> tuple[str, ...]:
    """The patient's pseudonyms under every kept key but `key` (the one in use): what was written before a rekey
    names them so. Only the kept keys can tell: the clear number is in none of those rows."""
    current = key.fingerprint()
    return tuple(sorted({source_pseudonym(kept, source_id, patient_key) for kept in _kept_keys(key_file)
                         if kept.fingerprint() != current}))


def _kept_keys(key_file: Path) -> list[PseudonymKey]:
    """The key file and the old key files rtw rekey kept beside it, each read with and without the blanks around
    its key (`key_file_readings`): an erasure's key is found by its fingerprint."""
    files = [key_file, *sorted(key_file.parent.glob(f"{key_file.name}.*.old"))]
    return [key for f in files if f.is_file() for key in key_file_readings(f)]


def erased_pseudonyms(warehouse: Path, source_id: str) -> Erasures:
    """The source's erasures (none when there is no warehouse or list yet), each under the key it was
    made under: its key_fingerprint; for an erasure recorded before that column, the key in use when
    it was made: meta.key_fingerprint's latest key recorded by then (no key recorded by then: a
    warehouse older than the key guard, whose first guarded run recorded the key it had)."""
    erasures = Erasures(source_id, {}, Home(warehouse.parent).key_file)
    if not warehouse.exists():
        return erasures
    con = connect_duckdb(warehouse, read_only=True)
    try:
        if not in_warehouse(con, "meta.erasure"):
            return erasures
        recorded = "e.key_fingerprint" if "key_fingerprint" in {c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'meta' AND table_name = 'erasure'"
        ).fetchall()} else "NULL"  # a warehouse not yet published by this version
        in_use = (f"coalesce({recorded}, (SELECT k.fingerprint FROM meta.key_fingerprint k WHERE k.recorded_at <= "
                  "e.erased_at ORDER BY k.recorded_at DESC LIMIT 1), (SELECT k.fingerprint FROM meta.key_fingerprint "
                  "k ORDER BY k.recorded_at LIMIT 1))") if in_warehouse(con, "meta.key_fingerprint") else "NULL"
        rows = con.execute(f"SELECT {in_use}, e.source_patient_pseudonym FROM meta.erasure e WHERE e.source_id = ?",
                           [source_id]).fetchall()
    finally:
        con.close()
    for fingerprint, pseudonym in rows:
        erasures.by_key.setdefault(fingerprint, set()).add(pseudonym)
    return erasures


def _erased_test(key: PseudonymKey, source_id: str, erased: Erasures | AbstractSet[str]) -> Callable[[str], bool]:
    """Whether a clear patient key is an erased patient's; a plain set holds pseudonyms under `key`."""
    if not isinstance(erased, Erasures):
        return lambda patient_key: source_pseudonym(key, source_id, patient_key) in erased
    keyed = erased.keyed(key)

    def is_erased(patient_key: str) -> bool:
        for under, pseudonyms in keyed:
            if source_pseudonym(under, source_id, patient_key) in pseudonyms:
                erased.found.add(source_pseudonym(key, source_id, patient_key))  # its pseudonym now
                return True
        return False

    return is_erased


def _is_erased(values: pd.Series, key: PseudonymKey, source_id: str,
               erased: Erasures | AbstractSet[str]) -> pd.Series:
    """Which values are the patient key of an erased patient (one HMAC per distinct key and key file, not per row)."""
    present = values.notna()
    texts = values[present].astype(str)
    is_erased = _erased_test(key, source_id, erased)
    hits = {t for t in texts.unique() if normalise_patient_key(t) and is_erased(t)}
    return (present & values.astype(str).isin(hits)).astype(bool)


def drop_erased(record_sets: dict[str, pa.Table], mapping: SourceMapping, key: PseudonymKey,
                erased: Erasures | AbstractSet[str]) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """The record sets without the erased patients' records, and how many were left out per file sha256."""
    if not erased:
        return record_sets, {}
    kept: dict[str, pa.Table] = {}
    dropped: dict[str, int] = {}
    for name, table in record_sets.items():
        if mapping.patient_key not in table.column_names or table.num_rows == 0:
            kept[name] = table
            continue
        gone = _is_erased(record_column(table, mapping.patient_key), key, mapping.source_id, erased).to_numpy()
        if gone.any():
            for sha, n in record_column(table, "source_file_sha256")[gone].value_counts().items():
                dropped[str(sha)] = dropped.get(str(sha), 0) + int(n)
        kept[name] = table.filter(pa.array(~gone))
    return kept, dropped


# --- raw files: archive copies and staged Parquet -----------------------------------------------

def exports_holding(staged: Iterable[tuple[str, Path]], mapping: SourceMapping, key: PseudonymKey,
                    erased: Erasures | AbstractSet[str]) -> set[str]:
    """The exports (sha256, staged copy) whose staged patient keys name an erased patient: in a record, or where no
    record is (an ODM increment's `TransactionType="Remove"`, which the centre sends as asked). Only their patient
    columns are read: a copy scrubbed once names nobody the next night."""
    if not erased:
        return set()
    is_erased = _erased_test(key, mapping.source_id, erased)
    return {sha for sha, path in staged if any(is_erased(k) for k in staged_patient_keys(path, mapping))}


def _erased_rows(table: pa.Table, mapping: SourceMapping, key: PseudonymKey,
                 erased: Erasures | AbstractSet[str]) -> pd.Series:
    """Which raw rows name an erased patient in any of the mapping's patient columns."""
    gone = pd.Series(False, index=range(table.num_rows))
    for column in [c for c in table.column_names if c in patient_columns(mapping)]:
        gone |= _is_erased(table.column(column).to_pandas(), key, mapping.source_id, erased).to_numpy()
    return gone


def _scrub_raw_parquet(path: Path, mapping: SourceMapping, key: PseudonymKey,
                       erased: Erasures | AbstractSet[str]) -> bool:
    table = pq.read_table(path)
    gone = _erased_rows(table, mapping, key, erased)
    if not gone.any():
        return False
    _write_parquet(path, table.filter(pa.array(~gone.to_numpy())))
    return True


def _copy_holds(home: Home, copy: Path, mapping: SourceMapping, key: PseudonymKey,
                erased: Erasures | AbstractSet[str]) -> bool:
    """Whether an archive copy no staged copy tells about (a superseded export, staged no longer) holds an
    erased patient: read again as its source reads it, into a private folder under the home."""
    adapter = adapter_for(mapping.format)
    options = adapter.read_options(mapping)
    # Under staging/, named as a temporary: a forget killed here leaves what crash repair clears.
    with tempfile.TemporaryDirectory(prefix=".forget-", suffix=fsio.TEMP_SUFFIX, dir=home.staging) as folder:
        out = Path(folder) / adapter.staged_name("copy")
        try:
            adapter.stage(copy, out, options, {"source_file": copy.name, "source_file_sha256": ""})
        except ExtractError as exc:
            raise ForgetError(f"it cannot be read to tell whether it holds the patient: {exc}") from None
        staged = [out] if out.is_file() else sorted(out.rglob("*.parquet"))
        return any(_erased_rows(pq.read_table(p), mapping, key, erased).any() for p in staged)


def _write_parquet(path: Path, table: pa.Table) -> None:
    with fsio.written_atomically(path) as temp:
        pq.write_table(table, temp)


def scrub_export_copies(home: Home, mapping: SourceMapping, key: PseudonymKey, erased: Erasures | AbstractSet[str],
                        shas: Iterable[str], holding: Iterable[str] | None = None, *,
                        staged_tells: bool = True) -> tuple[list[str], list[str]]:
    """Archive copies and staged files of these exports (by sha256) without the erased patients:
    (rewritten, deleted). Text copies are rewritten only where they hold the patient; a binary copy
    is deleted when its export is known to hold them (`holding`, default: all of `shas`), or its
    staged copy did, or (no staged copy, or `staged_tells` false: an erasure done again, whose staged copies
    may have lost the patient already) the copy read again does. Each copy on its own: one that cannot be
    rewritten, or read to tell, is deleted (a warning says which), as one holding the patient is."""
    rewritten: list[str] = []
    deleted: list[str] = []
    source_id = mapping.source_id
    looked_at = set(shas)
    holds = looked_at if holding is None else set(holding)
    adapter = adapter_for(mapping.format)
    is_erased = _erased_test(key, source_id, erased)
    for sha in sorted(looked_at):
        staged = home.staging / source_id
        held = False  # its staged copy held the patient: so does the export (a held or superseded one, too)
        parquets = sorted([*staged.glob(f"{sha}*.parquet"), *staged.glob(f"{sha}*/*.parquet")])
        for parquet in parquets:
            if _scrub_raw_parquet(parquet, mapping, key, erased):
                rewritten.append(str(parquet))
                held = True
        for copy in archive_copies(home.archive, source_id, sha):
            try:
                changed = adapter.without_patients(copy, mapping, is_erased)
                if changed is None and not (sha in holds or held or (parquets and staged_tells)):  # read it to tell
                    held = _copy_holds(home, copy, mapping, key, erased)
            except (ExtractError, ForgetError, ValueError, SyntaxError, csv.Error) as exc:  # XML: a SyntaxError
                log.warning("%s: the archive copy %s cannot be rewritten without the erased patient (%s): deleted, as "
                            "a copy holding them is; landing/ keeps the export", source_id, copy.name, exc)
                changed, held = None, True
            if changed is None and (sha in holds or held):  # a binary export (SAS, Excel): landing/ keeps it
                _delete_copy(home, source_id, sha, copy)
                deleted.append(str(copy))
            elif changed:
                rewritten.append(str(copy))
    return rewritten, deleted


def _delete_copy(home: Home, source_id: str, sha: str, copy: Path) -> None:
    """An archive copy deleted, behind its tombstone: the next run does not archive the export again from landing/
    (landing.archive), unless the hash's tombstone (its name carried the patient's number) keeps it already."""
    if not erased_export(home.archive, source_id, sha).exists():
        fsio.write_bytes(copy.with_name(copy.name + ERASED_SUFFIX), b"")
    copy.unlink()


# --- derived files: harmonised Parquet, marts, reports ------------------------------------------

def _scrub_derived_parquet(path: Path, marks: _Marks) -> bool:
    table = pq.read_table(path)
    if table.num_rows == 0:
        return False
    gone = pa.array([False] * table.num_rows)
    for name in table.column_names:
        if (cited := _rows_citing(table.column(name), marks)) is not None:
            gone = pc.or_(gone, cited)
    if not pc.any(gone).as_py():
        return False
    _write_parquet(path, table.filter(pc.invert(gone)))
    return True


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _rows_citing(column: pa.ChunkedArray | pa.Array, marks: _Marks) -> pa.ChunkedArray | pa.Array | None:
    """Which rows of a column cite the patient: a text naming a record of theirs or their pseudonym or person, or
    a list of texts holding one (marts.held_back_endpoints' source_record_keys: the row goes whole, as its counts
    count the patient). None for a column of neither type."""
    if _is_text(column.type):
        hit = pc.is_in(column, pa.array(marks.tokens()))
        for prefix in marks.prefixes:
            hit = pc.or_(hit, pc.starts_with(column, prefix))
        return pc.fill_null(hit, False)
    if (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) and _is_text(column.type.value_type):
        lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        cited = _rows_citing(pc.list_flatten(lists), marks)
        rows = pc.filter(pc.list_parent_indices(lists), cited)
        return pc.is_in(pa.array(range(len(lists)), pa.int64()), rows.cast(pa.int64()))
    return None


def _mentions(data: bytes, needles: list[bytes]) -> bool:
    return any(n in data for n in needles)


def _scrub_report_file(path: Path, marks: _Marks, needles: list[bytes]) -> str | None:
    """'rewritten', 'deleted' or None for one report file."""
    if path.suffix == ".parquet":
        return "rewritten" if _scrub_derived_parquet(path, marks) else None
    data = path.read_bytes()
    if path.suffix.lower() == ".xlsx":
        with zipfile.ZipFile(path) as workbook:  # compressed: look inside
            if not any(_mentions(workbook.read(m), needles) for m in workbook.namelist()):
                return None
        path.unlink()
        return "deleted"
    if not _mentions(data, needles):
        return None
    if path.suffix.lower() == ".csv" and (kept := _csv_without(data, needles)):  # a query list, a report's list
        fsio.write_bytes(path, kept)
        return "rewritten"
    path.unlink()  # a page cannot be rewritten safely: the latest report is rebuilt below
    return "deleted"


def _csv_without(data: bytes, needles: list[bytes]) -> bytes | None:
    """A report's CSV (UTF-8 with a BOM, the csv module's dialect) without the records that mention a needle, whole:
    a value quoted with a line break spans lines. None when it cannot be read so, or nothing would be left (the
    header never cites a patient)."""
    try:
        text = data.decode("utf-8")
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):
        return None
    kept = [r for r in records if not any(_mentions(value.encode(), needles) for value in r)]
    if not kept:
        return None
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n" if "\r\n" in text else "\n").writerows(kept)
    return out.getvalue().encode("utf-8")


# --- the warehouse -------------------------------------------------------------------------------

def _linked_elsewhere(con: duckdb.DuckDBPyConnection, source_id: str, pseudonym: str) -> list[str]:
    """The other source records linkage made one person with the patient: `source:pseudonym (centre C)`.
    Pseudonyms, never numbers: the data manager asks those centres for their number of the patient."""
    rows = con.execute("""
        SELECT DISTINCT o.source_id, o.source_patient_pseudonym, o.centre_id
        FROM stage.patient_source p JOIN stage.patient_source o USING (patient_id)
        WHERE p.source_id = ? AND p.source_patient_pseudonym = ?
          AND (o.source_id, o.source_patient_pseudonym) <> (p.source_id, p.source_patient_pseudonym)
        ORDER BY ALL""", [source_id, pseudonym]).fetchall()
    return [f"{other}:{alias}" + (f" (centre {centre})" if centre else "") for other, alias, centre in rows]


def _erase_in_warehouse(con: duckdb.DuckDBPyConnection, source_id: str, pseudonym: str, run_id: str,
                        started_at: datetime, former: tuple[str, ...] = ()) -> tuple[int, _Marks]:
    """`former`: the patient's pseudonyms under retired keys (`_Marks.former`)."""
    prefix = f"{pseudonym}|"
    # Per file, the rows of the patient's records: their own, and the section rows they joined, in the files
    # those came from (stage.record.section_file_sha256).
    rows_by_file = con.execute(
        "SELECT sha, count(*) FROM (SELECT unnest(list_prepend(source_file_sha256, "
        "coalesce(map_values(section_file_sha256), []))) AS sha FROM stage.record WHERE source_id = ? "
        "AND starts_with(source_record_key, ?)) GROUP BY 1", [source_id, prefix]).fetchall()
    (records,), = con.execute("SELECT count(*) FROM stage.record WHERE source_id = ? AND "
                              "starts_with(source_record_key, ?)", [source_id, prefix]).fetchall()
    person_ids = [r[0] for r in con.execute(
        "SELECT DISTINCT patient_id FROM stage.patient_source WHERE source_id = ? AND "
        "source_patient_pseudonym = ?", [source_id, pseudonym]).fetchall() if r[0]]
    # The records leave the file's loaded/quarantined counts and are counted superseded: rows_read holds.
    for sha, n in rows_by_file:
        con.execute("UPDATE meta.source_file SET rows_superseded = rows_superseded + ? WHERE source_id = ? "
                    "AND source_file_sha256 = ? AND status = 'loaded'", [n, source_id, sha])
    person_tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_columns() WHERE schema_name = "
                                               "'stage' AND column_name = 'patient_id'").fetchall()}
    stage_tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_columns() WHERE schema_name = "
                                              "'stage' AND column_name = 'source_record_key'").fetchall()]
    for table in stage_tables:
        con.execute(f"DELETE FROM stage.{table} WHERE source_id = ? AND starts_with(source_record_key, ?)",
                    [source_id, prefix])
    named = _Marks(pseudonym, former=former)  # what was kept from before a rekey names the patient by a former one
    pseudonyms = list(named.pseudonyms)
    _erase_answers(con, source_id, pseudonyms)
    for table in ("dq.quarantine", "dq.issue_span", "meta.record_removal"):
        con.execute(f"DELETE FROM {table} WHERE source_id = ? AND list_contains(?, split_part(source_record_key, "
                    "'|', 1))", [source_id, pseudonyms])
    con.execute("DELETE FROM dq.issue_span WHERE source_id = ? AND list_contains(?, patient_pseudonym)",
                [source_id, pseudonyms])
    # Re-link without the patient: a person whose id was drawn from the erased patient's key gets another
    # one, and the old id is swept below with the rest.
    validated = con.execute("SELECT run_id FROM meta.run WHERE validated ORDER BY finished_at DESC LIMIT 1").fetchone()
    link_sources(con, validated[0] if validated else run_id, load_config(), source_tables())
    rebuild_derived(con)  # core from stage, core.patient, marts: as publish does
    # The person stays if any other record still names them (another source, or one held in quarantine).
    linked = {r[0] for t in sorted(person_tables)
              for r in con.execute(f"SELECT DISTINCT patient_id FROM stage.{t}").fetchall()}
    marks = dataclasses.replace(named, patient_ids=tuple(p for p in person_ids if p not in linked),
                                persons_kept=tuple(p for p in person_ids if p in linked))
    _sweep(con, marks)
    _record_erasure(con, source_id, pseudonym, run_id)
    _record_run(con, run_id, started_at, source_id,
                f"consent withdrawal: one patient of {source_id} erased ({records} records)")
    return int(records), marks


def _erase_answers(con: duckdb.DuckDBPyConnection, source_id: str, pseudonyms: list[str]) -> None:
    """The centre's answers to the patient's queries. An answer names its query by row key only, so the
    sweep, which finds the query rows by the record key, would leave it, and its comment is the centre's
    own words: they may quote the patient's number, a birth date or an EUPID."""
    if not in_warehouse(con, "meta.query_response"):
        return
    con.execute("DELETE FROM meta.query_response r WHERE EXISTS (SELECT 1 FROM meta.query_item i WHERE "
                "i.batch_id = r.batch_id AND i.row_key = r.row_key AND i.source_id = ? AND "
                "list_contains(?, split_part(i.source_record_key, '|', 1)))", [source_id, pseudonyms])


def _record_run(con: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime, source_id: str,
                message: str) -> None:
    last = con.execute("SELECT rules_fingerprint FROM meta.run WHERE validated ORDER BY finished_at DESC "
                       "LIMIT 1").fetchone()
    con.execute("INSERT INTO meta.run VALUES (?, 'forget', ?, ?, 'completed', ?, [], [], ?, false, ?)", [
        run_id, started_at, datetime.now(UTC), [source_id], message, last[0] if last else None])


def _record_erasure(con: duckdb.DuckDBPyConnection, source_id: str, pseudonym: str, run_id: str) -> None:
    """After record_fingerprint: with the fingerprint of the key in use, the one the pseudonym was made
    under (`erased_pseudonyms`; not told by clocks, which two hosts may not agree on)."""
    con.execute("INSERT INTO meta.erasure (source_id, source_patient_pseudonym, erased_at, run_id, key_fingerprint) "
                "SELECT ?, ?, ?, ?, (SELECT fingerprint FROM meta.key_fingerprint WHERE retired_run_id IS NULL)",
                [source_id, pseudonym, datetime.now(UTC), run_id])


# The runs' own record (what a run did, noticed or could not write): a row there is about the run, not the
# patient, and may name other patients too (a reviewer's link decision that was not applied names both).
_RUN_RECORD = frozenset({("meta", "run"), ("meta", "run_note"), ("meta", "source_notice")})
ERASED_PATIENT = "(an erased patient)"


def _sweep(con: duckdb.DuckDBPyConnection, marks: _Marks) -> None:
    """Whatever else still cites the patient (a check message, a mart): the safety net after the rebuild.
    A row of the runs' record keeps its place with the pseudonym replaced; any other row citing the patient goes."""
    columns = con.execute("SELECT c.schema_name, c.table_name, c.column_name FROM duckdb_columns() c JOIN "
                          "duckdb_tables() t USING (schema_name, table_name) WHERE c.data_type = 'VARCHAR' AND "
                          "c.schema_name IN ('stage', 'core', 'dq', 'meta', 'marts') AND NOT "
                          "(c.schema_name = 'meta' AND c.table_name = 'erasure')").fetchall()
    for schema_name, table, column in columns:
        if (schema_name, table) in _RUN_RECORD:
            for token in marks.tokens():
                con.execute(f'UPDATE {schema_name}.{table} SET "{column}" = replace("{column}", ?, ?) '
                            f'WHERE contains("{column}", ?)', [token, ERASED_PATIENT, token])
            continue
        # contains() finds a record key too (`<pseudonym>|...`)
        condition = " OR ".join([f'"{column}" IN (SELECT unnest(?))',
                                 *(f'contains("{column}", ?)' for _ in marks.pseudonyms)])
        con.execute(f'DELETE FROM {schema_name}.{table} WHERE {condition}', [marks.tokens(), *marks.pseudonyms])


# --- the command ---------------------------------------------------------------------------------

def forget(home: Home, source_id: str, patient_key: str, *, key_value: str | None = None,
           sources_dir: Path = SOURCES_DIR, wait: float = 0.0, not_loaded: bool = False) -> ForgetResult:
    """Erase one source patient from the home (see the module docstring). Never logs the patient key.

    not_loaded: a patient the warehouse does not hold (only in an export not loaded yet: a new one in
    landing/, or a held load's) is recorded in meta.erasure ahead, so no run ever loads them, and the
    staged and archived copies of the source's exports lose them; without it such a patient is refused.

    A patient erased already (an erasure killed, or failed, after its publish) has the file steps done again
    (`ForgetResult.resumed`): what the warehouse no longer tells (the persons whose rows go) is read from the note
    the erasure left until its file steps were done (`_Pending`)."""
    from etl.load.marts import export_parquet
    from etl.pipeline import new_run_id

    mapping_path = sources_dir / f"{source_id}.yaml"
    if not mapping_path.exists():
        raise ForgetError(f"unknown source '{source_id}': no mapping {mapping_path}")
    if not normalise_patient_key(patient_key):
        raise ForgetError("the patient key is empty")
    if not home.warehouse.exists():
        raise ForgetError(f"no warehouse at {home.warehouse}")
    mapping = load_mapping(mapping_path)
    run_id = new_run_id()
    started_at = datetime.now(UTC)
    result = ForgetResult(run_id=run_id, source_id=source_id)
    with fsio.private_umask(), runlock.run_lock(home.ensure(), run_id, wait=wait):
        guard_key(home, run_id, key_value)  # a pseudonym under another key would match nobody
        key = load_key(home.key_file, key_value)
        pseudonym = source_pseudonym(key, source_id, patient_key)
        former = _former_pseudonyms(home.key_file, key, source_id, patient_key)
        try:  # under the key of each earlier erasure: one made before a rekey names another pseudonym
            erased_already = _erased_test(key, source_id, erased_pseudonyms(home.warehouse, source_id))(patient_key)
        except ErasureKeyMissing as exc:
            raise ForgetError(str(exc)) from None
        result.files_deleted += _remove_leftovers(home)
        pending = _Pending(home, source_id, pseudonym)
        shas: list[str] = []
        marks_found: list[_Marks] = []

        def erase(con: duckdb.DuckDBPyConnection) -> None:
            shas.extend(r[0] for r in con.execute(
                "SELECT DISTINCT source_file_sha256 FROM stage.record WHERE source_id = ? AND "
                "starts_with(source_record_key, ?)", [source_id, f"{pseudonym}|"]).fetchall())
            if not shas and not not_loaded:
                raise ForgetError(f"no patient with this key is loaded from {source_id} (check the number and the "
                                  "source); nothing was erased. If the patient is only in an export not loaded yet "
                                  "(in landing/, or a held load), record the erasure ahead with --not-loaded")
            record_fingerprint(con, home.warehouse, run_id)  # the key the guard approved, or abort
            if not shas:  # nothing loaded to erase: harmonise keeps the patient out from the next run on
                _record_erasure(con, source_id, pseudonym, run_id)
                _record_run(con, run_id, started_at, source_id,
                            f"consent withdrawal: one patient of {source_id} not loaded yet, erasure recorded ahead")
                return
            result.linked_elsewhere = _linked_elsewhere(con, source_id, pseudonym)
            removed, marks = _erase_in_warehouse(con, source_id, pseudonym, run_id, started_at, former)
            result.records_removed = removed
            marks_found.append(marks)
            pending.note(run_id, marks)  # before the publish: a forget killed after it finds what it must scrub

        if erased_already:  # its publish is done: the files are scrubbed again, each step as it would be the first time
            result.resumed = True
            log.info("this patient of %s was erased already (meta.erasure): the erasure's file steps are done again",
                     source_id)
            marks_found.append(dataclasses.replace(pending.marks() or _Marks(pseudonym), former=former))
        else:
            try:
                swap_in_next(home.warehouse, run_id, erase, compact=True)
            except BaseException:
                pending.clear(run_id)  # nothing was published
                raise
            crash.crash_point("after_swap")
        _show_names_in_earlier_reports(home)  # by the archive copies' clear names: before they are renamed
        _hide_number_in_names(home, source_id, patient_key, key)  # before the scrub: a copy it cannot read is named so
        # Older exports (superseded snapshots, a held load) may hold the patient too: every staged export is looked at.
        rewritten, deleted = scrub_export_copies(home, mapping, key, {pseudonym}, _exports_kept(home, source_id, shas),
                                                 shas, staged_tells=not erased_already)
        result.files_rewritten += rewritten
        result.files_deleted += deleted
        if not marks_found:  # never loaded: no derived file names the patient
            result.loaded = False
            return result
        marks = marks_found[0]
        result.person_removed = bool(marks.patient_ids)
        _scrub_derived_files(home, marks, result)
        try:
            exported = export_parquet(home.warehouse, home.marts)
        except Exception as exc:  # the erasure stands; the next run writes the marts again
            log.warning("the Parquet marts could not be exported after the erasure: %s", exc)
        else:
            result.files_deleted += _drop_sets_before(home.marts / "runs", exported[0].parent)
        # Done again, tables written since the erasure do not count the patient: they stay.
        withdrawn = _withdraw_public_export(home.public, _erased_at(home, source_id, pseudonym)
                                            if erased_already else None)
        result.files_deleted += withdrawn
        result.public_withdrawn = bool(withdrawn)
        _rebuild_latest_report(home)
        pending.clear()
    return result


_PENDING_PREFIX = ".forget-pending-"  # <home>/.forget-pending-<run>.json: `_Pending`


@dataclass(frozen=True)
class _Pending:
    """The note an erasure leaves under the home from its publish until its file steps are done: the persons whose
    rows the derived files lose (`_Marks`), which the warehouse no longer tells once the patient is gone from it.
    By pseudonym and person ids only, as the derived files hold them; one file per erasure run."""

    home: Home
    source_id: str
    pseudonym: str

    def _path(self, run_id: str) -> Path:
        return self.home.root / f"{_PENDING_PREFIX}{run_id}.json"

    def _notes(self) -> Iterator[tuple[Path, dict[str, object]]]:
        for path in sorted(self.home.root.glob(f"{_PENDING_PREFIX}*.json")):
            try:
                note = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(note, dict) and (note.get("source_id"), note.get("pseudonym")) == (self.source_id,
                                                                                            self.pseudonym):
                yield path, note

    def note(self, run_id: str, marks: _Marks) -> None:
        fsio.write_text(self._path(run_id), json.dumps({
            "source_id": self.source_id, "pseudonym": self.pseudonym, "patient_ids": list(marks.patient_ids),
            "persons_kept": list(marks.persons_kept)}))

    def marks(self) -> _Marks | None:
        for _path, note in self._notes():
            ids, kept = note.get("patient_ids"), note.get("persons_kept")
            if isinstance(ids, list) and isinstance(kept, list):
                return _Marks(self.pseudonym, tuple(map(str, ids)), tuple(map(str, kept)))
        log.info("no note of the persons the erasure took out of core.patient (its file steps were done, or an earlier "
                 "version made it): the derived files lose what cites the patient's pseudonym")
        return None

    def clear(self, run_id: str | None = None) -> None:
        """The note of `run_id`, or every note of this patient's erasure (its file steps done)."""
        for path in [self._path(run_id)] if run_id else [p for p, _ in self._notes()]:
            path.unlink(missing_ok=True)



def _erased_at(home: Home, source_id: str, pseudonym: str) -> datetime | None:
    """When the patient was erased (meta.erasure), for an erasure done again."""
    with reading(home.warehouse) as live:
        row = None if live is None else live.execute(
            "SELECT max(erased_at) FROM meta.erasure WHERE source_id = ? AND source_patient_pseudonym = ?",
            [source_id, pseudonym]).fetchone()
    return row[0] if row else None


def _remove_leftovers(home: Home) -> list[str]:
    """What a killed run left behind (crash repair clears it at the next run's start, which may be days
    away): its next warehouse, a whole copy of the live one with the patient in it, with its WAL, DuckDB's
    spill and GX's batch files; half-written copies under staging/ and archive/; the harmonised files of a run that
    never published (a killed rekey's are under a key never installed: the scrub would not find the patient in
    them). Under the run lock no live run owns any of it."""
    from etl.repair import stale_temporaries, unpublished_harmonised

    with reading(home.warehouse) as live:
        assert live is not None  # forget checked it exists
        leftovers = stale_temporaries(home) + unpublished_harmonised(home, live)
    for path in leftovers:
        fsio.remove_path(path)
    return [str(p) for p in leftovers]


def _exports_kept(home: Home, source_id: str, loaded: Iterable[str]) -> set[str]:
    """Every export of the source the home keeps a copy of: the staged ones by sha256 (superseded
    snapshots and a held load's too), and those only the archive keeps (a snapshot superseded before
    this staging, whose staged copy is gone) by the first 16 digits their copy is named by."""
    staged = home.staging / source_id
    exports = {*loaded, *(p.name[:64] for p in (staged.iterdir() if staged.is_dir() else ())
                          if STAGED_NAME.fullmatch(p.name))}
    archived = home.archive / source_id
    for copy in (archived.iterdir() if archived.is_dir() else ()):
        prefix, sep, _ = copy.name.partition("__")
        if sep and not copy.name.endswith(ERASED_SUFFIX) and not any(e.startswith(prefix) for e in exports):
            exports.add(prefix)
    return exports


def number_in_names(patient_key: str) -> re.Pattern[str] | None:
    """The patient's number as a file name writes it: whole (not inside a longer run of digits, nor of
    letters, but after letters when its own letters come first: `PatID1234` for ID1234), in any case, '-', '_'
    and ' ' alike, as etl/extract/file_names.py finds numbers; None for a number too short to name anyone
    there (`names_a_patient`)."""
    if not names_a_patient(patient_key):
        return None
    return re.compile(key_shape(patient_key, literal=True), re.IGNORECASE)


def _show_names_in_earlier_reports(home: Home) -> None:
    """The report files of earlier runs an upgrade's rename in the history still has to rewrite (its run was
    killed before, or the rewrite failed: publish_outputs.show_names_in_earlier_reports), rewritten now. The
    rewrite reads each file's clear name from its archive copy's: once the patient's copy is renamed with
    `{patient}`, no later run finds the clear name, and the pages would keep the number."""
    from etl.publish_outputs import show_names_in_earlier_reports

    try:
        show_names_in_earlier_reports(home)
    except Exception as exc:  # the erasure goes on: the names in archive/ and the ledger must go too
        log.warning("the report files of earlier runs could not be rewritten with the file names as shown (%s): "
                    "those naming the erased patient's file keep its name as delivered", exc)


def _hide_number_in_names(home: Home, source_id: str, patient_key: str, key: PseudonymKey) -> None:
    """The patient's number out of the names the home keeps of the source's files: archive copies and
    tombstones, and the pull ledger (its remote paths and landing names; the file kept by digests under
    `key`). landing/ is the centre's."""
    from etl.pull.ledger import LedgerKey, read_ledger, unnamed  # the pull's transports: not for every run's import

    if not names_a_patient(patient_key):  # too short to name anyone in a file name: not looked for
        return
    shown = _numbers_renamed(home, source_id, [patient_key], _names_kept(home, source_id, read_ledger(home, source_id)))
    unnamed(home, source_id, shown, LedgerKey.of(key))  # whether or not a name changes: keys an earlier version's lines


def hide_erased_numbers(home: Home, mapping: SourceMapping, key: PseudonymKey,
                        erased: Erasures | AbstractSet[str]) -> int:
    """An erased patient's number out of the names the home keeps of the source's files, as `rtw forget` takes
    it out: for a file of the patient sent again after the erasure (a changed re-delivery of
    `Fall_123456_Verlauf.csv`), which the pull landed and recorded, and the run archived, under its name (they
    hold no key to tell the number by). Each part of a name shaped like a number (`_numbers_in_name`) is
    pseudonymised and compared with the erasures; the names of landing/, archive/ and the pull ledger are
    looked at. How many erased patients' numbers the names held (where they read as numbers:
    `_shown_without`)."""
    from etl.pull.ledger import LedgerKey, keyed, read_ledger, unnamed  # the pull's transports: not every run's

    source_id = mapping.source_id
    ledger = read_ledger(home, source_id)
    if ledger.unkeyed:  # an earlier version's lines of erased patients' files: keyed, now that the key is at hand
        keyed(home, source_id, LedgerKey.of(key))
    names = _names_kept(home, source_id, ledger)
    is_erased = _erased_test(key, source_id, erased)
    numbers = {number for name in names if PATIENT not in name for number in _numbers_in_name(name)}
    found = sorted(n for n in numbers if any(is_erased(written) for written in _as_keys(n)))  # as a name writes it
    found = [n for n in found if _read_as_number(n, names)]  # a date of a snapshot's name: none
    if not found:
        return 0
    shown = _numbers_renamed(home, source_id, found, names)
    if any(shown(n) != n for entry in ledger.entries for n in (entry.remote_path, *entry.landed)):
        unnamed(home, source_id, shown, LedgerKey.of(key))
    return len({joined_alike(n) for n in found})


def _numbers_renamed(home: Home, source_id: str, numbers: list[str], names: set[str]) -> Callable[[str], str]:
    """The source's archive copies and tombstones named by any of the erased `numbers` (as a key or a name writes
    them, each long enough to name anyone: `number_in_names`) renamed where their names read them as patient
    numbers; how a name is shown without them, for the pull ledger (`_shown_without`)."""
    patterns = [n.pattern for n in map(number_in_names, numbers) if n]
    if not patterns:  # no number long enough to name anyone: an empty pattern would match everywhere
        return lambda name: name
    shown = _shown_without(re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE), numbers, names)
    _archive_renamed(home, source_id, shown)
    return shown


def _read_as_number(number: str, names: set[str]) -> bool:
    """Whether some name of the source reads `number` as a patient number where it writes it (`_shown_without`)."""
    pattern = number_in_names(number)
    if pattern is None:
        return False
    shown = _shown_without(pattern, [number], names)
    return any(shown(name) != name for name in names)


def _names_kept(home: Home, source_id: str, ledger: Ledger) -> set[str]:
    """The names of the source's files in landing/, archive/ (without the hash; a tombstone's without its
    suffix too) and the pull ledger."""
    landing, archive = home.landing / source_id, home.archive / source_id
    names = {p.name for p in (landing.iterdir() if landing.is_dir() else ())}
    archived = {p.name.partition("__")[2] for p in (archive.iterdir() if archive.is_dir() else ())}
    names |= archived | {n.removesuffix(ERASED_SUFFIX) for n in archived}
    return names | {n for entry in ledger.entries for n in (entry.remote_path, *entry.landed)}


def _shown_without(number: re.Pattern[str], keys: Iterable[str], names: Iterable[str]) -> Callable[[str], str]:
    """How a name is shown without the erased numbers `number` matches (written as `keys`): in each place where
    the name reads it as a patient number, not a date of a snapshot's (`file_names.reads_as_patient_number`,
    the other `names` of the source telling a file per patient)."""
    numbers = PatientNumbers.of(keys)
    siblings = sorted(set(names))

    @functools.cache  # the same names are shown to check and then to rename, in archive/ and the ledger
    def shown(name: str) -> str:
        return number.sub(lambda m: PATIENT if reads_as_patient_number(name, m.span(), numbers, siblings)
                          else m.group(), name)

    return shown


_LONGEST_NUMBER_RUNS = 5  # runs of digits or letters a number holds at most (IMT-FR01-001: four)
_KEY_LETTERS = 6  # letters a key's own run of letters holds at most (ID, IMT, ILTB): cut from a longer run


def _numbers_in_name(name: str) -> Iterator[str]:
    """Each part of a name a patient number may be, as the name writes it: whole runs of digits and of letters,
    joined by '-', '_', ' ' or nothing, holding a digit, long enough to name anyone (`names_a_patient`); and such
    a part from the last letters of its first run (`_numbers_after_letters`), as `rtw forget` finds a key whose letters
    come first run into letters (`PatID1234` holds ID1234: `key_shape(literal=True)`)."""
    runs = NAME_RUNS.findall(name)
    for start, first in enumerate(runs):
        if not first.isalnum():
            continue
        for end in _number_ends(runs, start):
            yield "".join(runs[start:end])
            if first.isalpha():
                yield from _numbers_after_letters(first, runs[start + 1:end])


def _numbers_after_letters(letters: str, rest: list[str]) -> Iterator[str]:
    """The numbers a part starting with a run of `letters` may hold run into letters: the part from each of the
    run's last letters, in any case as a file name's screen takes them (PatID, patid, PatientILTB, verlaufit),
    that `runs_into_letters` takes (two, or one before six digits), up to `_KEY_LETTERS`. Each is one more HMAC
    per separator written, every night, for every such name: the bounds keep them few (docs/privacy.md)."""
    for cut in range(max(len(letters) - _KEY_LETTERS, 1), len(letters)):
        if runs_into_letters([letters[cut:], *rest]) and names_a_patient(number := letters[cut:] + "".join(rest)):
            yield number


def _number_ends(runs: list[str], start: int) -> Iterator[int]:
    """Where a number starting at `runs[start]` may end (`_numbers_in_name`): past each run of it that makes a
    part holding a digit and long enough to name anyone."""
    held = 0
    for end in range(start, len(runs)):
        run = runs[end]
        if not run.isalnum():
            if run in SEPARATORS and end + 1 < len(runs) and runs[end + 1].isalnum() and runs[end - 1].isalnum():
                continue
            break
        held += 1
        if held > _LONGEST_NUMBER_RUNS:
            break
        part = "".join(runs[start:end + 1])
        if any(c.isdigit() for c in part) and names_a_patient(part):
            yield end + 1


def _as_keys(number: str) -> Iterator[str]:
    """The ways a patient key may write a number a name writes: '-', '_' and ' ' stand for each other."""
    pieces = re.split(f"([{SEPARATORS}])", number)
    for separators in itertools.product(SEPARATORS, repeat=len(pieces) // 2):
        yield "".join(p if i % 2 == 0 else separators[i // 2] for i, p in enumerate(pieces))


def _archive_renamed(home: Home, source_id: str, shown: Callable[[str], str]) -> None:
    """The source's archive copies and tombstones whose name `shown` shows otherwise, renamed. A copy is shown
    with `{patient}` (the rest of its name tells the file still) behind a tombstone named by the hash
    (written first: no run archives the export again under its name); a tombstone becomes that one."""
    folder = home.archive / source_id
    changed = False
    for entry in sorted(folder.iterdir()) if folder.is_dir() else ():
        prefix, sep, name = entry.name.partition("__")
        if not sep or shown(name) == name or entry.is_symlink() or not entry.is_file():
            continue
        tombstone = erased_export(home.archive, source_id, prefix)
        if not tombstone.exists():
            fsio.write_bytes(tombstone, b"")
        changed = True
        if name.endswith(ERASED_SUFFIX):
            entry.unlink()
            continue
        # A copy already so named holds the same bytes: the same export, scrubbed alike
        entry.replace(entry.with_name(f"{prefix}__{shown(name)}"))
    if changed:
        fsio.fsync(folder)


def _scrub_derived_files(home: Home, marks: _Marks, result: ForgetResult) -> None:
    # Derived files hold pseudonyms and patient ids only (a short clear number would match other bytes).
    needles = [t.encode() for t in marks.tokens()]
    harmonised = sorted(home.staging.glob("*/harmonised/**/*.parquet"))
    for path in harmonised:  # the other sources' records of a surviving person stay: later runs carry them over
        if _scrub_derived_parquet(path, marks):
            result.files_rewritten.append(str(path))
    for path in sorted(home.marts.glob("runs/**/*.parquet")):
        if _scrub_derived_parquet(path, marks.of_history()):
            result.files_rewritten.append(str(path))
    for folder in sorted({p.parent for p in harmonised if str(p) in result.files_rewritten}):
        recount_memo(folder)  # the next load carries the other patients over from it still
    if home.reports.is_dir():
        for path in sorted(p for p in home.reports.rglob("*") if p.is_file() and not p.is_symlink()):
            outcome = _scrub_report_file(path, marks, needles)
            if outcome == "rewritten":
                result.files_rewritten.append(str(path))
            elif outcome == "deleted":
                result.files_deleted.append(str(path))


def _drop_sets_before(runs: Path, erased_in: Path) -> list[str]:
    """The kept marts sets other than the one written after the erasure. Their aggregates (counts,
    survival curves) still count the patient, which no rewrite can take out: a set from before the
    erasure goes whole, once a set without the patient is current."""
    dropped = []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".") and p != erased_in):
        shutil.rmtree(folder)
        dropped.append(str(folder))
    return dropped


def _withdraw_public_export(public: Path, erased_at: datetime | None = None) -> list[str]:
    """The tables of the public export (rtw export --public) removed: like a marts set's, its aggregates
    count the patient. It is not written again here: what is published, and with which smallest cell
    (--min-cell, recorded nowhere), is the data manager's call, so `rtw forget` says to export it again.
    Every table goes, one an older version wrote too (written before `erased_at`, when given: an erasure done
    again); the folder, if nothing else is in it."""
    if not public.is_dir():
        return []
    tables = sorted(p for p in public.iterdir() if p.suffix in (".csv", ".parquet") and p.is_file()
                    and (erased_at is None or p.stat().st_mtime < erased_at.timestamp()))
    for path in tables:
        path.unlink()
    if not any(public.iterdir()):
        public.rmdir()
    return [str(p) for p in tables]


def _rebuild_latest_report(home: Home) -> None:
    """reports/latest must point at a page: rebuild the last validated run's page from the live warehouse."""
    from etl.quality.report import build_report

    con = connect_duckdb(home.warehouse, read_only=True)
    try:
        row = con.execute("SELECT run_id FROM meta.run WHERE validated ORDER BY finished_at DESC LIMIT 1").fetchone()
    finally:
        con.close()
    if row is None:
        return
    try:
        build_report(home.warehouse, home.reports, row[0])
    except Exception as exc:  # the erasure stands; the next run writes the report again
        log.warning("the report could not be rebuilt after the erasure: %s", exc)
