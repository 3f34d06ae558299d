"""Publishing the warehouse: build the next DuckDB file beside the live one, then swap it in.

The live `warehouse.duckdb` is never written in place. Publish copies it to a private
next-file (`rtw run` makes that copy ahead, while it prepares the sources: etl/load/next_copy.py),
replaces there the `stage` rows of the sources that changed, validates every stage
record against the rule catalogue, rebuilds `core` from `stage` minus the records held back
(and `core.patient` from it), rebuilds the analysis `marts`, records the run, checkpoints, and
renames the next-file over the live one. A rename is
atomic: an analyst holding the old file open keeps reading the old file's inode undisturbed,
and a crash at any point leaves the last good warehouse in place. One publish at a time is
enforced with a lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
import pyarrow.parquet as pq

from etl import crash, fsio, memory, run_record, runlock, schema, timing
from etl.config import DUCKDB_MEMORY_LIMIT, WAREHOUSE_SQL_DIR, Home, connect_duckdb, set_memory_limit
from etl.extract.file_names import PATIENT, gone_file_name
from etl.link.model import LinkageConfig, load_config
from etl.link.run import LINKAGE_WRITES, link_sources
from etl.load import next_copy
from etl.load.dictionary import apply_comments
from etl.load.marts import EXPORT_NOW, MART_FUNCTIONS, MARTS_SQL_DIR, SOURCE_PARAMS, build_marts
from etl.load.populations import population_digest, write_child_population
from etl.quality import issue_spans
from etl.quality.sql_checks import rule_functions_sql
from etl.quality.validate import QualityPlan, start_judging, validate
from etl.resources import code_digest, code_files
from etl.schema import among, core_columns, drop_temp_tables, rows_digest
from etl.steps import ExportFile, FileCounts, LoadedFile, SourceOutcome, SourceStatus
from etl.transform.keyguard import RekeyError, record_fingerprint

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
SCHEMA_FILES = ("core.sql", "meta.sql", "dq.sql")
EVOLVING_SCHEMA_FILES = ("meta.sql", "dq.sql", "stage.sql")  # idempotent: re-run on every publish


@contextmanager
def _publish_lock(warehouse: Path) -> Iterator[None]:
    fd = fsio.open_private(warehouse.with_name(warehouse.name + ".lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
        yield
    finally:
        os.close(fd)


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    for name in SCHEMA_FILES:
        ddl = (WAREHOUSE_SQL_DIR / name).read_text()
        con.execute(schema.unindexed(ddl) if name == "core.sql" else ddl)  # core's keys: _check_keys


def _ensure_stage(con: duckdb.DuckDBPyConnection) -> None:
    issue_spans.from_rows(con)  # a warehouse from before the spans
    for name in EVOLVING_SCHEMA_FILES:
        con.execute((WAREHOUSE_SQL_DIR / name).read_text())
    _add_new_columns(con, [(f"{s}.{t}", f"{s}.{t}") for s in ("core", "meta", "dq", "stage") for t in schema.tables(s)])
    for table in source_tables():
        con.execute(f"CREATE TABLE IF NOT EXISTS stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    _add_new_columns(con, [(f"stage.{t}", f"core.{t}") for t in source_tables()])


def _add_new_columns(con: duckdb.DuckDBPyConnection, targets: Sequence[tuple[str, str]]) -> None:
    """A warehouse built by an older version gains the columns the DDL has since added (as NULL): each
    (table, like) of `targets` takes the columns the DDL gives `like`. (One look at the catalogue for
    all: a look per table cost an unchanged run half a second.)"""
    have: dict[str, set[str]] = {}
    for table, column in con.execute("SELECT schema_name || '.' || table_name, column_name FROM duckdb_columns() "
                                     "WHERE database_name = current_database()").fetchall():
        have.setdefault(table, set()).add(column)
    for target, model in targets:
        present = have.get(target)
        for column, kind in schema.column_types(model):
            if present and column not in present:
                con.execute(f'ALTER TABLE {target} ADD COLUMN "{column}" {kind}')


def source_tables() -> list[str]:
    """Core tables the sources feed directly (core.patient is derived from them)."""
    return [t for t in core_columns() if t != "patient"]


def read_source_state(warehouse: Path, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, dict[str, Any]]:
    """meta.source of the live warehouse (empty if there is none yet), read-only (through `con`, a
    connection to it, if given)."""
    with schema.reading(warehouse, con) as live:
        rows = [] if live is None else live.execute(
            "SELECT source_id, fingerprint, status, last_loaded_run_id FROM meta.source").fetchall()
    return {r[0]: {"fingerprint": r[1], "status": r[2], "last_loaded_run_id": r[3]} for r in rows}


def _live_rows(warehouse: Path, sql: str, parameters: list[Any]) -> list[Any]:
    """The rows of a query of the live warehouse (none when there is no warehouse yet)."""
    with schema.reading(warehouse) as live:
        return [] if live is None else live.execute(sql, parameters).fetchall()


def read_loaded_files(warehouse: Path, source_id: str) -> dict[str, LoadedFile]:
    """The source's loaded files in the live warehouse, by sha256."""
    rows = _live_rows(warehouse, "SELECT source_file_sha256, series, rows_read - rows_superseded, file_name, "
                                 "rows_loaded FROM meta.source_file WHERE source_id = ? AND status = 'loaded'",
                      [source_id])
    return {sha: LoadedFile(series, int(records), name, int(loaded)) for sha, series, records, name, loaded in rows}


class RecordedFile(NamedTuple):
    """A source's file as the live warehouse records it (meta.source_file)."""

    name: str
    series: str
    exported_on: date | None  # None: recorded by a version that did not record it
    status: str  # loaded / superseded / failed / held


def read_recorded_files(warehouse: Path, source_id: str) -> dict[str, RecordedFile]:
    """The source's files the live warehouse records, by sha256: what extract judges by (the loaded exports,
    those superseded), in one read (a connection costs some 20 ms a source a night)."""
    rows = _live_rows(warehouse, "SELECT source_file_sha256, file_name, series, exported_on, status "
                                 "FROM meta.source_file WHERE source_id = ?", [source_id])
    return {sha: RecordedFile(name, series, exported_on, status) for sha, name, series, exported_on, status in rows}


def read_loaded_record_sets(warehouse: Path, source_id: str) -> dict[tuple[str, str], int]:
    """The source's records in the live warehouse by record set (form, sheet, item group) and file."""
    rows = _live_rows(warehouse, "SELECT record_set, source_file_sha256, count(*) FROM stage.record "
                                 "WHERE source_id = ? AND record_set IS NOT NULL GROUP BY 1, 2", [source_id])
    return {(record_set, sha): n for record_set, sha, n in rows}


def _replace_source(con: duckdb.DuckDBPyConnection, outcome: SourceOutcome) -> None:
    """The source's stage rows become its harmonised files' rows."""
    source_id = outcome.source_id
    assert outcome.harmonised_dir is not None
    folder = Path(outcome.harmonised_dir)
    for table in [*source_tables(), "record", "rejection", "link_key"]:
        parquet = folder / f"{_PARQUET_NAMES.get(table, table)}.parquet"
        if parquet.exists():
            _replace_difference(con, table, source_id, parquet)
        else:
            con.execute(f"DELETE FROM stage.{table} WHERE source_id = ?", [source_id])


def _replace_difference(con: duckdb.DuckDBPyConnection, table: str, source_id: str, parquet: Path) -> None:
    """Make the source's rows of stage.<table> the rows of `parquet` by deleting and inserting only the
    rows that differ (by the hash of every column but those linkage writes, equal rows counted): a
    patient carried over (etl/transform/carry_over.py) keeps their rows, and the commit writes what
    changed. When most rows differ (a first load, a new export of another layout) the source's rows
    are deleted and all inserted, as DuckDB deletes a listed row at a time."""
    staged_columns = [c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = 'stage' "
        "AND table_name = ? ORDER BY column_index", [table]).fetchall() if c not in LINKAGE_WRITES]
    files = "read_parquet(?, file_row_number = true)"
    every = f"SELECT * EXCLUDE (file_row_number) FROM {files}"
    staged = con.execute(f"SELECT count(*) FROM stage.{table} WHERE source_id = ?", [source_id]).fetchone()
    if not staged or not staged[0] or not set(staged_columns) <= set(pq.read_schema(parquet).names):
        _refill(con, table, source_id, every, [str(parquet)])  # nothing to keep (or a column the files lack)
        return
    compared = ", ".join(f'"{c}"' for c in staged_columns)
    numbered = f"hash({compared}) AS _h, row_number() OVER (PARTITION BY hash({compared})) AS _n"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE arriving_row AS SELECT file_row_number AS _f, {numbered} "
                    f"FROM {files}", [str(parquet)])
        con.execute(f"CREATE OR REPLACE TEMP TABLE staged_row AS SELECT rowid AS _r, {numbered} "
                    f"FROM stage.{table} WHERE source_id = ?", [source_id])
        con.execute("CREATE OR REPLACE TEMP TABLE stale_row AS SELECT _r FROM staged_row ANTI JOIN arriving_row "
                    "USING (_h, _n)")
        stale = con.execute("SELECT count(*) FROM stale_row").fetchone() or (0,)
        if stale[0] > _MOST_TO_DELETE * staged[0]:
            _refill(con, table, source_id, every, [str(parquet)])
            return
        if stale[0]:
            con.execute(f"DELETE FROM stage.{table} WHERE rowid IN (SELECT _r FROM stale_row)")
        con.execute(f"INSERT INTO stage.{table} BY NAME {every} WHERE file_row_number IN "
                    "(SELECT _f FROM arriving_row ANTI JOIN staged_row USING (_h, _n))", [str(parquet)])
    finally:
        drop_temp_tables(con, "arriving_row", "staged_row", "stale_row")


def _refill(con: duckdb.DuckDBPyConnection, table: str, source_id: str, rows: str, params: list[Any] | None = None
            ) -> None:
    con.execute(f"DELETE FROM stage.{table} WHERE source_id = ?", [source_id])
    con.execute(f"INSERT INTO stage.{table} BY NAME {rows}", params)


_PARQUET_NAMES = {"record": "records", "rejection": "rejections", "link_key": "link_keys"}


def _record_removals(con: duckdb.DuckDBPyConnection, outcome: SourceOutcome, *, rekeyed: bool = False) -> None:
    """Keep the audit of removals: a chain is re-applied on every load, a removal is recorded once.
    `rekeyed` (rtw rekey's publish): the source's removals are recorded anew, under the new pseudonyms (those
    under the old key would stay beside them, each removal audited twice), each with the run that first applied
    it: the same removal's, else the first of its increment's."""
    assert outcome.harmonised_dir is not None
    parquet = Path(outcome.harmonised_dir) / "removals.parquet"
    if rekeyed:
        con.execute("CREATE OR REPLACE TEMP TABLE removal_before AS SELECT *, regexp_replace(source_record_key, "
                    "'^[^|]*', '') AS local_part FROM meta.record_removal WHERE source_id = ?", [outcome.source_id])
        con.execute("DELETE FROM meta.record_removal WHERE source_id = ?", [outcome.source_id])
        try:
            if parquet.exists():
                con.execute("""
                    INSERT INTO meta.record_removal BY NAME SELECT * REPLACE (coalesce(
                        (SELECT min(b.run_id) FROM removal_before b WHERE b.source_file_sha256 = new.source_file_sha256
                         AND b.record_set IS NOT DISTINCT FROM new.record_set AND b.level IS NOT DISTINCT FROM new.level
                         AND b.local_part = regexp_replace(new.source_record_key, '^[^|]*', '')),
                        (SELECT min(b.run_id) FROM removal_before b
                         WHERE b.source_file_sha256 = new.source_file_sha256),
                        new.run_id) AS run_id) FROM read_parquet(?) new""", [str(parquet)])
        finally:
            drop_temp_tables(con, "removal_before")
    elif parquet.exists():
        con.execute("INSERT INTO meta.record_removal BY NAME SELECT * FROM read_parquet(?) new "
                    "WHERE NOT EXISTS (SELECT 1 FROM meta.record_removal old WHERE old.source_id = new.source_id "
                    "AND old.source_record_key = new.source_record_key "
                    "AND old.source_file_sha256 = new.source_file_sha256)", [str(parquet)])


def _admit_to_core(con: duckdb.DuckDBPyConnection, *, whole: bool = False,
                   admitted_from: Mapping[str, str] | None = None) -> set[str]:
    """core = stage minus the records held back; then the derived core.patient (every person with a
    core record), derived again for the persons whose core rows changed, or for all (`whole`: when
    patient.sql or the tables may have changed, and when a table was filled anew).

    Only the core rows of the sources whose admitted rows changed since core was last admitted from
    them (meta.core_admitted, `admitted_from`) are compared; all when not told, or not recorded.
    Returns the core tables whose rows changed (core.<table>)."""
    _drop_key_indexes(con)
    sources = None if whole else _changed_since_admitted(con, admitted_from)
    changed, refilled = set(), set()
    con.execute("CREATE OR REPLACE TEMP TABLE changed_person (patient_id VARCHAR)")
    try:
        for table in source_tables():
            admission = _admit_difference(con, table, sources)  # checks the keys of the rows it inserted
            whole = whole or admission is Admission.REFILLED
            if admission is not Admission.KEPT:
                changed.add(f"core.{table}")
            if admission is Admission.REFILLED:
                refilled.add(f"core.{table}")
        if _derive_patients(con, whole=whole):  # always when whole
            changed.add("core.patient")
    finally:
        drop_temp_tables(con, "changed_person")
    _check_keys(con, refilled | (changed & {"core.patient"}))
    con.execute("DELETE FROM meta.core_admitted")
    if admitted_from:
        con.executemany("INSERT INTO meta.core_admitted VALUES (?, ?)", sorted(admitted_from.items()))
    # Rule verdicts can change for a file that did not (a cross-table rule, a new rule): recount. A record
    # held back holds back the section rows it joined too, each counted in its own file (docs/mapping.md).
    con.execute("""
        UPDATE meta.source_file f SET rows_quarantined = q.n, rows_loaded = f.rows_read - f.rows_superseded - q.n
        FROM (SELECT f2.source_id, f2.source_file_sha256, count(q2.source_file_sha256) AS n
              FROM meta.source_file f2 LEFT JOIN (
                  SELECT h.source_id, unnest(list_prepend(h.source_file_sha256,
                                                          coalesce(map_values(r.section_file_sha256), []))
                                             ) AS source_file_sha256
                  FROM dq.quarantine h LEFT JOIN stage.record r USING (source_id, source_record_key)) q2
                ON q2.source_id = f2.source_id AND q2.source_file_sha256 = f2.source_file_sha256
              WHERE f2.status = 'loaded' GROUP BY ALL) q
        WHERE f.source_id = q.source_id AND f.source_file_sha256 = q.source_file_sha256""")
    return changed


class KeyViolation(RuntimeError):
    """Two rows of a core table hold one key: a fault of this code (harmonise refuses a record key read
    twice), which fails the publish. `sources`: the sources of those rows (the run publishes again without
    those it loaded this night: pipeline._publish_run)."""

    def __init__(self, message: str, sources: Iterable[str]):
        super().__init__(message)
        self.sources = sorted(sources)


def _check_keys(con: duckdb.DuckDBPyConnection, tables: Iterable[str], inserted: str | None = None) -> None:
    """The key core.sql declares for each of `tables` (core.<table>, whose rows changed) is unique:
    the warehouse does not index it (`schema.unindexed`).
    inserted: a temporary table of the rows just inserted into the one table of `tables`, whose keys
    alone are checked: the table's keys were unique before (checked by every publish), and deleting
    rows makes no key held twice (a 1%-changed registry night at 20,000 persons: 37 -> 16 ms)."""
    keys = schema.primary_keys("core")
    for table in sorted(tables):
        key = ", ".join(keys[table.removeprefix("core.")])
        among = "" if inserted is None else f" SEMI JOIN {inserted} USING ({key})"
        held_twice = con.execute(f"SELECT {key}, list(DISTINCT source_id) FROM {table}{among} GROUP BY {key} "
                                 "HAVING count(*) > 1").fetchall()
        if held_twice:
            shown = ", ".join(str(row[:-1]) for row in held_twice[:3])
            raise KeyViolation(f"{table}: more than one row holds the key ({key}) {shown}; nothing was published",
                               {source for row in held_twice for source in row[-1]})


def _drop_key_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """The core tables of a warehouse made before their keys were checked rather than indexed, made
    again without the index (once; rows as they were)."""
    for (table,) in con.execute(
            "SELECT DISTINCT table_name FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND schema_name = 'core' AND constraint_type = 'PRIMARY KEY' ORDER BY 1").fetchall():
        con.execute(f"ALTER TABLE core.{table} RENAME TO {table}_indexed")
        con.execute(schema.unindexed_definition(f"core.{table}"))
        con.execute(f"INSERT INTO core.{table} BY NAME SELECT * FROM core.{table}_indexed")
        con.execute(f"DROP TABLE core.{table}_indexed")


def _changed_since_admitted(con: duckdb.DuckDBPyConnection, admitted_from: Mapping[str, str] | None
                            ) -> list[str] | None:
    """The sources whose admitted rows are not those core was last admitted from (gone ones too);
    None, every source, when either is unknown."""
    recorded = dict(con.execute("SELECT source_id, fingerprint FROM meta.core_admitted").fetchall())
    if admitted_from is None or not recorded:
        return None
    changed = {s for s, found in admitted_from.items() if recorded.get(s) != found}
    return sorted(changed | (recorded.keys() - admitted_from.keys()))


def _derive_patients(con: duckdb.DuckDBPyConnection, *, whole: bool) -> bool:
    """core.patient from every core row of each person (patient.sql): all persons, or those in
    changed_person (a person's row depends on their own core rows only, and a partial death on the export its
    record is in now: _EXPORT_BOUNDED_DEATHS). True when the rows of those
    persons changed (a new adverse event changes none): always when `whole`."""
    before = None
    con.execute(rule_functions_sql())  # period_end: a partial death's last day, as the rules judge it
    if whole:
        _emptied(con, "patient")
        scope = ""
    else:
        con.execute(_EXPORT_BOUNDED_DEATHS)
        scope = " WHERE patient_id IN (SELECT patient_id FROM changed_person)"
        before = rows_digest(con, f"SELECT * FROM core.patient{scope}")
        con.execute(f"DELETE FROM core.patient{scope}")
    views = {"patient_record": f"SELECT * FROM ({_patient_record_sql()}){scope}",
             "patient_registration": f"SELECT * FROM core.patient_source{scope}",
             "patient_contact": f"SELECT * FROM core.follow_up{scope}",
             "patient_alive_on": f"SELECT * FROM ({_ALIVE_ON}){scope}"}
    try:
        for name, query in views.items():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {query}")
        con.execute(EXPORT_NOW.read_text(encoding="utf-8"))  # the export a row's record is in now
        con.execute((WAREHOUSE_SQL_DIR / "patient.sql").read_text())
    finally:
        for name in views:
            con.execute(f"DROP VIEW IF EXISTS {name}")
    return before is None or rows_digest(con, f"SELECT * FROM core.patient{scope}") != before


# The persons of a death known to its month or year: patient.sql places it not after the export its record is in
# now, which moves when the source's next export carries the row over unchanged, or the same file is sent again
# dated later (a name without a day: its modification time). Whether the export bounded it before is in no table
# once meta.source_file has the new date, so they are derived again on every load (few: one row each).
_EXPORT_BOUNDED_DEATHS = """
    INSERT INTO changed_person
    SELECT patient_id FROM core.follow_up WHERE death_date_precision IN ('month', 'year')"""


# The share of a table's rows past which emptying it and inserting every row costs less than deleting them.
_MOST_TO_DELETE = 0.25


class Admission(Enum):
    """What admitting the stage rows did to a core table."""

    KEPT = "kept"  # no row differed
    CHANGED = "changed"  # the rows that differed deleted and inserted
    REFILLED = "refilled"  # emptied and filled anew


def _admit_difference(con: duckdb.DuckDBPyConnection, table: str, sources: Sequence[str] | None = None
                      ) -> Admission:
    """Make core.<table> the stage rows not held back by deleting and inserting only the rows that
    differ (by the hash of every column): a night in which one source changed a little changes a
    little of core, and the commit writes little (100,000 persons, nothing changed: core 7.8 -> 2.7 s,
    the commit 7.4 -> 1.0 s). A reloaded source's rows all differ (their file and run), and DuckDB
    deletes row by row: past a quarter of the table (a new rule, the largest source reloaded) the table
    is emptied and filled instead, and an empty one (a first load) is filled. The persons of the rows
    deleted and inserted go to changed_person, and the keys of those inserted are checked (_check_keys);
    REFILLED: the table was filled anew (every person may have changed), its keys for the caller to check.
    `sources`: compare only their rows (None: all)."""
    columns = ", ".join(f'"{c}"' for c in core_columns()[table])
    person = "patient_id" if "patient_id" in core_columns()[table] else "NULL::VARCHAR"
    admitted = (f"SELECT {columns} FROM stage.{table} "
                "ANTI JOIN dq.quarantine USING (source_id, source_record_key)")
    of_sources = "" if sources is None else f" WHERE {among('source_id', sources)}"
    (present,) = con.execute(f"SELECT count(*) FROM core.{table}").fetchone() or (0,)
    if not present:  # a first load: nothing to compare (at 100,000 persons core took 2.3 s, not 3.3 s)
        (inserted,) = con.execute(f"INSERT INTO core.{table} BY NAME {admitted}").fetchone() or (0,)
        return Admission.REFILLED if inserted else Admission.KEPT
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE admitted_row AS SELECT hash({columns}) AS h, {person} AS p "
                    f"FROM ({admitted}{of_sources})")
        con.execute(f"CREATE OR REPLACE TEMP TABLE core_row AS SELECT rowid AS r, hash({columns}) AS h, {person} AS p "
                    f"FROM core.{table}{of_sources}")
        con.execute("CREATE OR REPLACE TEMP TABLE stale_row AS SELECT r, p FROM core_row ANTI JOIN admitted_row "
                    "USING (h)")
        (stale,) = con.execute("SELECT count(*) FROM stale_row").fetchone() or (0,)
        if stale > _MOST_TO_DELETE * present:
            _emptied(con, table)
            con.execute(f"INSERT INTO core.{table} BY NAME {admitted}")
            return Admission.REFILLED
        con.execute("INSERT INTO changed_person SELECT p FROM stale_row UNION "
                    "SELECT p FROM admitted_row ANTI JOIN core_row USING (h)")
        if stale:
            con.execute(f"DELETE FROM core.{table} WHERE rowid IN (SELECT r FROM stale_row)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE new_row AS SELECT * FROM ({admitted}{of_sources}) "
                    f"WHERE hash({columns}) NOT IN (SELECT h FROM core_row)")
        (inserted,) = con.execute(f"INSERT INTO core.{table} BY NAME SELECT * FROM new_row").fetchone() or (0,)
        if inserted:
            _check_keys(con, [f"core.{table}"], inserted="new_row")
        return Admission.CHANGED if stale or inserted else Admission.KEPT
    finally:
        drop_temp_tables(con, "admitted_row", "core_row", "stale_row", "new_row")


def _emptied(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Empty core.<table> by dropping it and creating it again from its definition (its comments come
    back with apply_comments). A DELETE of every row costs DuckDB each row's delete marker, written out
    at the commit (with the key indexes core had then: at 20,000 persons core took 6.9 s and the commit
    7.6 s that way, 1.7 s and 2.4 s this way)."""
    con.execute(f"DROP TABLE core.{table}")
    con.execute(schema.unindexed_definition(f"core.{table}"))


# The dates each person was alive on, as the rules comparing a death with other dates see them
# (XT-DEATH-AFTER-DIAGNOSIS, XT-NOTHING-AFTER-DEATH, XT-TREATMENT-NOT-AFTER-DEATH): a death known only
# to its month or year is placed after them (patient.sql). A partial date is the first day of its period.
_ALIVE_ON = """
SELECT patient_id, contact_date AS alive_on FROM core.follow_up WHERE vital_status = 'alive'
UNION ALL SELECT patient_id, diagnosis_date FROM core.diagnosis
UNION ALL SELECT patient_id, start_date FROM core.treatment"""


def _patient_record_sql() -> str:
    """What the view patient_record that patient.sql reads selects: patient_id and lineage of every row of
    every core table with a patient_id, from the DDL (a table added later feeds core.patient unedited)."""
    lineage = "patient_id, source_id, source_file_sha256, source_record_key, run_id"
    return "\nUNION ALL\n".join(f"SELECT {lineage} FROM core.{table}" for table, columns in core_columns().items()
                                 if table != "patient" and "patient_id" in columns)


def _record_files(con: duckdb.DuckDBPyConnection, run_id: str, outcome: SourceOutcome) -> None:
    """meta.source_file: current files with their counts; files no longer current are superseded. A file
    loaded once, replaced, and current again (A, then B, then A again) on a night the source is held or
    failed is recorded so (`held`: rtw accept takes it), with the counts of its last load."""
    source_id = outcome.source_id
    current = {f.sha256 for f in outcome.files}
    failed = outcome.failed
    if not failed:
        # Rows of files that stop being current move, whole, to superseded (their quarantine too), and so
        # does one loaded once and held (or failed) since when it was sent again (_sent_again: the counts
        # of its load), no longer sent: superseded, as before.
        # A failed source keeps its last good data, so nothing it loaded before is superseded.
        con.execute(
            "UPDATE meta.source_file SET status = 'superseded', "
            # rows_superseded adds up: it may already hold records of erased patients (rtw forget)
            "rows_superseded = rows_superseded + rows_loaded + rows_quarantined, "
            "rows_loaded = 0, rows_quarantined = 0, "
            "last_run_id = ? WHERE source_id = ? AND NOT list_contains(?, source_file_sha256) "
            "AND (status = 'loaded' OR status IN ('held', 'failed') AND rows_read > 0)",
            [run_id, source_id, sorted(current)])
    _rename_in_history(con, run_id, source_id, outcome.files + outcome.superseded, every_file=not failed)
    for f in outcome.files + outcome.superseded:
        is_current = f.sha256 in current
        existing = con.execute("SELECT first_run_id FROM meta.source_file WHERE source_id = ? "
                               "AND source_file_sha256 = ?", [source_id, f.sha256]).fetchone()
        if existing and (failed or not is_current):
            # Known file: it keeps the counts it was last loaded with; the note changes. (Its name, if recorded
            # before names were shown without patient numbers, _rename_in_history has renamed.)
            con.execute("UPDATE meta.source_file SET last_run_id = ?, message = ? WHERE source_id = ? "
                        "AND source_file_sha256 = ?", [run_id, f.message, source_id, f.sha256])
            if is_current and _sent_again(con, source_id, f.sha256):
                con.execute("UPDATE meta.source_file SET status = ? WHERE source_id = ? AND source_file_sha256 = ?",
                            [outcome.status.value, source_id, f.sha256])
            continue
        counts = outcome.file_counts.get(f.sha256, FileCounts()) if is_current and not failed else FileCounts()
        status = "superseded" if not is_current else outcome.status.value if failed else "loaded"
        con.execute("DELETE FROM meta.source_file WHERE source_id = ? AND source_file_sha256 = ?",
                    [source_id, f.sha256])
        con.execute("INSERT INTO meta.source_file VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            source_id, f.sha256, f.name, f.size_bytes, f.series, status,
            existing[0] if existing else run_id, run_id, counts.rows_read, counts.rows_loaded,
            counts.rows_quarantined, counts.rows_superseded, f.message or (outcome.message if failed else None),
            f.exported_on])


def _sent_again(con: duckdb.DuckDBPyConnection, source_id: str, sha256: str) -> bool:
    """Whether a file the night did not load, current in landing, is one loaded once and replaced since (A,
    then B, then A again): what the night made of it is what it makes of a new file, held (rtw accept takes
    it) or failed, not superseded. One an acceptance loaded too: the acceptance was withdrawn when B
    superseded it (guards.withdraw_acceptances), so the night judged it as any export."""
    return con.execute("SELECT status = 'superseded' FROM meta.source_file WHERE source_id = ? "
                       "AND source_file_sha256 = ?", [source_id, sha256]).fetchone() == (True,)


#: what the notice of a run that renamed files in the history says (etl/publish_outputs.py looks for it)
NAMES_SHOWN_NOTICE = "file name(s) an earlier version recorded with a patient number are shown without it"


def _rename_in_history(con: duckdb.DuckDBPyConnection, run_id: str, source_id: str,
                       files: Sequence[ExportFile], *, every_file: bool) -> None:
    """A file recorded under another name than it is shown by now (before names were shown without
    patient numbers, etl/extract/file_names.py) is renamed in what earlier runs wrote of it too: their
    notices, removals and acceptances, and its row in meta.source_file (_record_files keeps that name). When
    `files` are every file of the source in landing, one recorded in clear and gone from landing since is
    renamed too, as its name reads (file_names.gone_file_name). A notice of the run says so: after the
    publish, the report pages of earlier runs are rewritten too (etl/publish_outputs.py), their clear names
    read from the archive copies' (landing.archive)."""
    recorded = dict(con.execute("SELECT source_file_sha256, file_name FROM meta.source_file WHERE source_id = ?",
                                [source_id]).fetchall())
    shown = {f.sha256: f.name for f in files}
    if every_file:
        siblings = {name for name in [*shown.values(), *recorded.values()] if PATIENT in name}
        shown |= {sha: gone_file_name(name, siblings) for sha, name in recorded.items() if sha not in shown}
    renamed = {sha: name for sha, name in shown.items() if recorded.get(sha) not in (None, name)}
    if renamed:
        con.execute("INSERT INTO meta.source_notice VALUES (?, ?, ?)", [
            run_id, source_id, f"{source_id}: {len(renamed)} {NAMES_SHOWN_NOTICE} (in the warehouse, and in the "
                               "report pages and query lists of earlier runs)"])
    for sha, name in renamed.items():
        old = recorded[sha]
        con.execute("UPDATE meta.source_notice SET notice = replace(notice, ?, ?) WHERE source_id = ? "
                    "AND contains(notice, ?)", [old, name, source_id, old])
        for table, column in (("source_file", "file_name"), ("record_removal", "source_file"),
                              ("file_acceptance", "file_name")):
            con.execute(f"UPDATE meta.{table} SET {column} = ? WHERE source_id = ? AND source_file_sha256 = ?",
                        [name, source_id, sha])


#: what the notice of a run that renamed record sets in the history says (etl/publish_outputs.py looks for it)
RECORD_SETS_SHOWN_NOTICE = "record set name(s) an earlier version recorded with a patient number are shown without it"


def record_set_in_clear(shown: str) -> re.Pattern[str]:
    """The names a record set shown as `shown` (`Verlauf_{patient}`) had before record sets were shown
    without patient numbers: `{patient}` as a run of letters, digits, '-' and '_' holding a digit."""
    before, _, after = shown.partition(PATIENT)
    return re.compile(rf"(?<![\w-]){re.escape(before)}(?=[\w-]*\d)[\w-]+?{re.escape(after)}(?![\w-])")


def _rename_record_sets_in_history(con: duckdb.DuckDBPyConnection, run_id: str, outcome: SourceOutcome) -> None:
    """A record set an earlier version recorded under its clear name (a sheet per patient, `Verlauf_123456`,
    before etl/extract/file_names.py's shown_record_sets) is renamed, as the source's records now name
    it (`Verlauf_{patient}`), in what earlier runs wrote of it: their notices, issue spans and removals
    (stage.record and dq.quarantine are the source's new rows). A notice of the run says so: after the
    publish, the report pages of earlier runs are rewritten too (etl/publish_outputs.py)."""
    source_id = outcome.source_id
    assert outcome.harmonised_dir is not None
    records = Path(outcome.harmonised_dir) / f"{_PARQUET_NAMES['record']}.parquet"
    if not records.exists():
        return
    shown = [n for (n,) in con.execute("SELECT DISTINCT record_set FROM read_parquet(?) WHERE contains(record_set, ?)",
                                       [str(records), PATIENT]).fetchall()]
    if not shown:
        return
    recorded = [n for (n,) in con.execute("SELECT DISTINCT record_set FROM stage.record WHERE source_id = ? AND "
                                          "record_set IS NOT NULL AND NOT contains(record_set, ?)",
                                          [source_id, PATIENT]).fetchall()]
    patterns = {name: record_set_in_clear(name) for name in shown}
    renamed = {old for old in recorded if any(p.fullmatch(old) for p in patterns.values())}
    if not renamed:
        return
    con.execute("INSERT INTO meta.source_notice VALUES (?, ?, ?)", [
        run_id, source_id, f"{source_id}: {len(renamed)} {RECORD_SETS_SHOWN_NOTICE} (in the warehouse, and in the "
                           "report pages and query lists of earlier runs)"])

    def shown_names(text: str | None) -> str | None:  # by the pattern: a sheet no longer sent is renamed too
        for name, pattern in patterns.items():
            text = None if text is None else pattern.sub(name.replace("\\", r"\\"), text)
        return text

    for table, columns in (("meta.source_notice", ("notice",)), ("dq.issue_span", ("record_set", "message")),
                           ("dq.waived_issue", ("record_set", "message")), ("meta.record_removal", ("record_set",))):
        rows = con.execute(f"SELECT DISTINCT {', '.join(columns)} FROM {table} WHERE source_id = ?",
                           [source_id]).fetchall()
        for row in rows:
            if (new := tuple(shown_names(v) for v in row)) != row:
                con.execute(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} WHERE source_id = ? AND "
                            + " AND ".join(f"{c} IS NOT DISTINCT FROM ?" for c in columns), [*new, source_id, *row])


def _record_source(con: duckdb.DuckDBPyConnection, run_id: str, outcome: SourceOutcome) -> None:
    failed = outcome.failed
    previous = con.execute("SELECT fingerprint, last_loaded_run_id FROM meta.source WHERE source_id = ?",
                           [outcome.source_id]).fetchone()
    con.execute("DELETE FROM meta.source WHERE source_id = ?", [outcome.source_id])
    con.execute("INSERT INTO meta.source VALUES (?, ?, ?, ?, ?, ?)", [
        outcome.source_id,
        previous[0] if failed and previous else (None if failed else outcome.fingerprint),
        previous[1] if failed and previous else (None if failed else run_id),
        run_id, outcome.status.value if failed else "loaded", outcome.message])


@cache
def derive_code_digest() -> str:
    """The code and libraries that derive core and the marts from stage (etl/load: the core rows by
    difference, the Kaplan-Meier estimates, ...): an upgrade of them derives everything again."""
    return code_digest(code_files(Path(__file__).parent), "duckdb", "pandas", "numpy")


def _definitions_fingerprint(quality: QualityPlan, linkage: LinkageConfig,
                             con: duckdb.DuckDBPyConnection | None = None) -> str:
    """Changes when a rule, a source's override, a mart, core.patient's derivation or the core tables,
    a column comment, the code that derives them, the linkage model, a reviewer's link decision (rtw
    link / unlink: it takes effect at the next run) or a centre's confirmation (meta.waiver, from rtw
    responses import: the next run waives it) changes."""
    digest = hashlib.sha256(f"{quality.fingerprint}|{derive_code_digest()}".encode())
    for path in [*sorted(MARTS_SQL_DIR.glob("*.sql")), MART_FUNCTIONS, EXPORT_NOW, WAREHOUSE_SQL_DIR / "comments.sql",
                 WAREHOUSE_SQL_DIR / "patient.sql", WAREHOUSE_SQL_DIR / "core.sql"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(b"linkage\0" + linkage.fingerprint.encode())
    if con is not None:
        decisions = con.execute("SELECT count(*), max(decided_at)::VARCHAR FROM meta.link_decision").fetchone()
        digest.update(repr(decisions).encode())
        waivers = con.execute("SELECT count(*), max(confirmed_at)::VARCHAR, "
                              "bit_xor(hash(source_id, source_record_key, rule_id, field, value_hash)) "
                              "FROM meta.waiver").fetchone()
        digest.update(b"waivers\0" + repr(waivers).encode())
    return digest.hexdigest()


def _last_rules_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute("SELECT rules_fingerprint FROM meta.run WHERE validated "
                      "ORDER BY finished_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def publish(warehouse: Path, run_id: str, outcomes: Sequence[SourceOutcome], *, trigger: str,
            started_at: datetime, unchanged: Sequence[str] = (), quality: QualityPlan | None = None,
            notices: Mapping[str, Sequence[str]] | None = None, populations: pd.DataFrame | None = None,
            read_back: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
            after_swap: Callable[[], None] = lambda: None) -> None:
    """Swap in a warehouse holding the harmonised outcomes of the changed sources, validated.

    read_back: called with the new warehouse, its run recorded, before it is committed (what the run
    summary says, read without connecting again).
    after_swap: called once it is live (swap_in_next).

    notices: what the landing folders of the sources without an outcome said: an unchanged source's
    (a refused or waiting file), a landing folder no mapping reads.
    populations: the child population table (etl/load/populations.py) marts.incidence divides by;
    None keeps the one the warehouse has (the shipped table in a new warehouse).

    Validation and the marts run when a source changed or a rule, mart or comment did; otherwise
    the warehouse keeps its content and only the run is recorded.
    """
    plan = quality or QualityPlan(rules=())
    linkage = load_config()  # a broken configuration fails the publish before anything is written

    def record(con: duckdb.DuckDBPyConnection) -> None:
        rekeyed = record_fingerprint(con, warehouse, run_id)  # the key plan approved; another one aborts the publish
        if rekeyed and any(o.failed for o in outcomes):  # a failed source would stay under the old key
            raise RekeyError("rekey stopped before publishing, the warehouse and the key file are unchanged: "
                             f"{run_message(o for o in outcomes if o.failed)}")
        harmonised = sorted(o.source_id for o in outcomes if o.status is SourceStatus.HARMONISED)
        with timing.step("load stage"):
            for outcome in outcomes:
                _load_outcome(con, run_id, outcome, rekeyed=rekeyed)
        said = {o.source_id: o.notices for o in outcomes} | dict(notices or {})
        for source_id, source_notices in said.items():
            for notice in dict.fromkeys(source_notices):
                con.execute("INSERT INTO meta.source_notice VALUES (?, ?, ?)", [run_id, source_id, notice])
        definitions = _definitions_fingerprint(plan, linkage, con)
        if populations is not None:  # new figures change the incidence mart: derive again
            definitions = hashlib.sha256(f"{definitions}|{population_digest(populations)}".encode()).hexdigest()
        # Nothing new to judge or derive: the warehouse keeps its content, only the run is recorded.
        redefined = _last_rules_fingerprint(con) != definitions
        validated = bool(harmonised) or redefined
        if validated:
            with timing.step("validate"):  # GX judges while linkage runs, unless a rule reads what linkage writes
                judging = start_judging(con, run_id, plan, unless_reading=LINKAGE_WRITES)
            try:
                with timing.step("linkage"):
                    summary = link_sources(con, run_id, linkage, source_tables())
            except BaseException:
                if judging:
                    judging.close()
                raise
            log.info("linkage: %d source patients, %d pairs scored (run %s), %d linked probabilistically, "
                     "%d by a reviewer, %d pairs to review", summary.source_patients, summary.pairs_scored,
                     summary.scored_in, summary.linked_probabilistic, summary.linked_clerical,
                     summary.review_candidates)
            memory.release(summary.source_patients)  # linkage's frames, before validation's batches
            with timing.step("validate"):
                validation = validate(con, run_id, plan, judging)
            memory.release(summary.source_patients)
            with timing.step("core and marts"):
                if populations is not None:
                    write_child_population(con, populations)
                rebuild_derived(con, whole=redefined, admitted_from=validation["admitted_from"],
                                params_changed=validation["params_changed"])
        failed = sorted(o.source_id for o in outcomes if o.failed)
        con.execute("INSERT INTO meta.run VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            run_id, trigger, started_at, datetime.now(UTC),
            "completed_with_failures" if failed else "completed",
            harmonised, sorted(unchanged), failed,
            run_message(outcomes), validated, definitions])
        if read_back is not None:
            read_back(con)

    swap_in_next(warehouse, run_id, record, after_swap=after_swap)


def run_message(outcomes: Iterable[SourceOutcome]) -> str | None:
    """meta.run.message: why each source failed, each reason after its source's name (said once: a
    message that begins with it already is not named twice)."""
    said = [f"{o.source_id}: {o.message.removeprefix(f'{o.source_id}: ')}" for o in outcomes if o.message]
    return "; ".join(said) or None


def _load_outcome(con: duckdb.DuckDBPyConnection, run_id: str, outcome: SourceOutcome, *, rekeyed: bool = False
                  ) -> None:
    """A source's outcome into the warehouse: its stage rows, removals and accepted files when it was
    harmonised; its files and its status always. `rekeyed`: rtw rekey's publish (`_record_removals`)."""
    if outcome.status is SourceStatus.HARMONISED:
        _rename_record_sets_in_history(con, run_id, outcome)
        _replace_source(con, outcome)
        _record_removals(con, outcome, rekeyed=rekeyed)
        for accepted in outcome.accepted:  # each once, though a file stays current (and accepted) for nights:
            # another acceptance of the same content (sent again after a replacement) is another row
            con.execute("INSERT INTO meta.file_acceptance (source_id, source_file_sha256, file_name, accepted_at, "
                        "accepted_by, run_id, departure) SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS ("
                        "SELECT 1 FROM meta.file_acceptance WHERE source_id = ? AND source_file_sha256 = ? "
                        "AND coalesce(departure, false) = ? AND accepted_at IS NOT DISTINCT FROM ?)",
                        [outcome.source_id, accepted.sha256, accepted.file_name, accepted.accepted_at,
                         accepted.accepted_by, run_id, accepted.departure,
                         outcome.source_id, accepted.sha256, accepted.departure, accepted.accepted_at])
    _record_files(con, run_id, outcome)
    _record_source(con, run_id, outcome)


def rebuild_derived(con: duckdb.DuckDBPyConnection, *, whole: bool = False,
                    admitted_from: Mapping[str, str] | None = None, params_changed: bool = False) -> None:
    """core, core.patient and the marts from stage (after validation, and for `rtw forget`).
    whole: derive core.patient for every person, not only those whose core rows changed, and build
    every mart, not only those whose inputs changed.
    admitted_from: per source, the fingerprint of its admitted rows (validate's), to compare only the
    core rows of the sources whose fingerprint is not the one core was last admitted from.
    params_changed: the sources' parameters differ from those the marts were built from (validate's)."""
    with timing.step("core"):
        changed = _admit_to_core(con, whole=whole, admitted_from=admitted_from)
    with timing.step("marts"):
        build_marts(con, None if whole else changed | ({SOURCE_PARAMS} if params_changed else set()))
        apply_comments(con)


def change_warehouse(home: Home, run_id: str, change: Callable[[duckdb.DuckDBPyConnection], None], *,
                     wait: float = 0.0) -> None:
    """Apply `change` between nightly runs (a reviewer's link decision, a query batch, a centre's answers):
    under the run lock (waiting up to `wait` seconds, then runlock.RunBusy), to a copy swapped in."""
    with fsio.private_umask(), runlock.run_lock(home.ensure(), run_id, wait=wait):
        swap_in_next(home.warehouse, run_id, change)


def swap_in_next(warehouse: Path, run_id: str, change: Callable[[duckdb.DuckDBPyConnection], None], *,
                 compact: bool = False, after_swap: Callable[[], None] = lambda: None) -> None:
    """Apply `change` in one transaction to a copy of the live warehouse (a new one, with its schema,
    when there is none yet) and rename it in: under the publish lock, a reader never disturbed, the
    live file untouched if `change` raises.

    compact: swap in a fresh copy of the result instead, so deleted rows do not linger in free blocks
    of the file (an erasure must leave no bytes behind).
    after_swap: called once the new file is live, a stop signal held from its rename until it returns
    (run_record.stops_held): `rtw run` says itself published there (run_record.Night.published), never
    stopped between the two, told the warehouse is the last good one while its own is live."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with _publish_lock(warehouse):
        next_file = next_copy.next_file(warehouse, run_id)
        fresh = next_file.with_name(f"{next_file.name}.fresh")  # crash repair clears .next*
        fresh.unlink(missing_ok=True)
        existed = warehouse.exists()
        if not existed:
            next_file.unlink(missing_ok=True)
        elif not next_copy.take(warehouse, next_file):  # none made ahead, or of another file: none there now
            fsio.copy_file(warehouse, next_file)  # owner-only, whatever the live file's mode
        try:
            _change_and_swap(warehouse, next_file, fresh, change, existed=existed, compact=compact,
                             after_swap=after_swap)
        except BaseException:
            # A failed publish leaves nothing of its own (a full-size copy, its WAL, DuckDB's spill): on a
            # full disk the space is wanted now, not at the next run's repair.
            for leftover in (next_file, fresh):
                for path in (leftover, leftover.with_name(f"{leftover.name}.wal")):
                    path.unlink(missing_ok=True)
                shutil.rmtree(leftover.with_name(f"{leftover.name}.tmp"), ignore_errors=True)
            raise


def _change_and_swap(warehouse: Path, next_file: Path, fresh: Path,
                     change: Callable[[duckdb.DuckDBPyConnection], None], *, existed: bool, compact: bool,
                     after_swap: Callable[[], None]) -> None:
    """swap_in_next's work on the next file, once it holds the live warehouse (nothing when not `existed`)."""
    con = connect_duckdb(next_file)
    con.execute("SET enable_progress_bar = false")  # a long query would draw a bar into the run's log
    try:
        # Beyond it DuckDB spills to `<next file>.tmp`, which crash repair clears with the `.next` file.
        set_memory_limit(con, DUCKDB_MEMORY_LIMIT, "RTW_DUCKDB_MEMORY_LIMIT")
        if not existed:
            _create_schema(con)
        _ensure_stage(con)
        con.execute("BEGIN TRANSACTION")
        change(con)
        with timing.step("write the warehouse"):
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        if compact:
            name = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
            con.execute(f"ATTACH {schema.sql_text(str(fresh))} AS fresh")
            con.execute(f'COPY FROM DATABASE "{name}" TO fresh')
            con.execute("DETACH fresh")
    finally:
        con.close()
    if compact:
        os.replace(fresh, next_file)
    os.chmod(next_file, fsio.FILE_MODE)  # DuckDB created it under the umask
    fsio.fsync(next_file)
    crash.crash_point("before_swap")
    with run_record.stops_held():
        os.replace(next_file, warehouse)
        fsio.fsync(warehouse.parent)
        after_swap()
