"""The analysis marts: built inside publish, exported as Parquet for analysts, published with small cells withheld.

- `build_marts` runs warehouse/marts/*.sql in file-name order (each file one mart, its grain and
  definitions in its header) on the connection publish is building, so the marts swap in with
  core, atomically. Two marts need Python, the Kaplan-Meier estimates (etl/load/survival.py): their frames
  are computed from marts.survival and registered on the connection just before their SQL file.
  Told which core tables changed (and whether the sources' parameters did), it rebuilds only the marts
  that read one, or a mart whose rows changed, or anything else outside core and the marts (stage, dq
  and meta change with every publish).
- `export_parquet` writes every mart of the published warehouse to `<marts>/runs/<run_id>/` and
  then swaps the symlink `<marts>/current` to it with one rename. A reader who resolves `current`
  once (`os.path.realpath`) and reads from that folder reads one complete set of one run,
  never a half-written file or a mix of two runs; the last KEEP_RUNS sets stay for readers still
  on them. Each file carries the run id in its Parquet key-value metadata, and `_manifest.json`
  lists the set.
- `export_public` writes the aggregate marts for publication, small cells withheld (etl/load/suppression.py).
  A label a centre wrote is published when enough persons share it, so the CSV, opened in a
  spreadsheet, gets its text cells made text that is never run as a formula (etl/spreadsheet.py: a
  leading `'`); the Parquet keeps every value as it is.
- Two marts say what the others leave out: `held_back_endpoints` (deaths, relapses, progressions and
  responses of records held back in dq.quarantine, read from stage; follow-ups and diagnoses refused
  while being read, whose values stage does not keep, as endpoint `unknown`) and `left_out` (per mart
  and reason, the rows not counted).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from etl import fsio, timing
from etl.config import WAREHOUSE_SQL_DIR, connect_duckdb
from etl.load.countries import ISO_3166_ALPHA2
from etl.load.populations import default_population_file, read_child_population, write_child_population
from etl.load.suppression import (
    GroupTotals,
    PublicTable,
    Quantiles,
    Relation,
    Shrinking,
    TotalsOf,
    generalise,
    suppress_tables,
)
from etl.load.survival import LANDMARK_YEARS, TIMES_COLUMNS, kaplan_meier
from etl.load.survival_plot import plot_survival
from etl.quality.sql_checks import rule_functions_sql
from etl.quality.validate import write_source_params
from etl.schema import rows_digest, sql_text
from etl.spreadsheet import spreadsheet_text

__all__ = ["EXPORT_NOW", "MARTS_SQL_DIR", "MART_FUNCTIONS", "PUBLIC_TABLES", "SOURCE_PARAMS", "build_marts",
           "export_parquet", "export_public", "plot_survival"]

log = logging.getLogger(__name__)

MARTS_SQL_DIR = WAREHOUSE_SQL_DIR / "marts"
MART_FUNCTIONS = WAREHOUSE_SQL_DIR / "mart_functions.sql"  # temporary macros the marts share
EXPORT_NOW = WAREHOUSE_SQL_DIR / "export_now.sql"  # the one they share with core.patient's derivation
KEEP_RUNS = 3
MANIFEST = "_manifest.json"

# Frames a mart's SQL reads, by view name: Kaplan-Meier estimates from marts.survival, built before them.
_PYTHON_INPUTS = {"61_survival_km.sql": "kaplan_meier_steps", "62_survival_landmark.sql": "kaplan_meier_landmarks"}


@dataclass(frozen=True)
class _Mart:
    """A mart's SQL file and its text, the table it makes and the tables it reads (core.x, marts.y, ...)."""

    path: Path
    sql: str
    table: str
    reads: frozenset[str]


_READS = re.compile(r"\b((?:core|stage|dq|meta|marts)\.\w+)")
_MAKES = re.compile(r"CREATE OR REPLACE TABLE marts\.(\w+)")
_MACRO = re.compile(r"CREATE OR REPLACE TEMP MACRO (\w+)\s*\(")
_TEXT_OR_COMMENT = re.compile(r"('(?:[^']|'')*')|--[^\n]*")  # a literal (kept whole: '--' in it), or a comment
SOURCE_PARAMS = "stage.source_params"  # the sources' parameters: publish says when they changed
# whose changes build_marts is told or finds; the rest of stage, dq and meta change with every publish
_TRACKED = ("core.", "marts.", SOURCE_PARAMS)


def _code(sql: str) -> str:
    """SQL without its comments and string literals: a table a comment names (COMMENT ON ... IS '...', or a
    `-- as marts.survival reads them` after the code of its line) is not read."""
    return _TEXT_OR_COMMENT.sub(lambda found: "''" if found.group(1) else "", sql)


def _called(code: str, names: Collection[str]) -> set[str]:
    return {name for name in names if re.search(rf"\b{name}\s*\(", code)}


def _macro_reads(functions_sql: str) -> dict[str, frozenset[str]]:
    """The tables each macro of mart_functions.sql reads, with those of the macros it calls (a table macro such as
    efs_event() reads core tables): a mart that calls a macro reads them too."""
    parts = _MACRO.split(_code(functions_sql))
    bodies = dict(zip(parts[1::2], parts[2::2], strict=True))  # name -> its parameters and body
    reads = {name: set(_READS.findall(body)) for name, body in bodies.items()}
    calls = {name: _called(body, bodies) - {name} for name, body in bodies.items()}
    grown = True
    while grown:  # until every macro holds the reads of the macros it calls, however deep
        grown = False
        for name, called in calls.items():
            more = set().union(*(reads[other] for other in called)) - reads[name]
            reads[name] |= more
            grown = grown or bool(more)
    return {name: frozenset(tables) for name, tables in reads.items()}


def _functions_sql() -> str:
    """The macros the marts share: mart_functions.sql's and export_now.sql's."""
    return MART_FUNCTIONS.read_text(encoding="utf-8") + "\n" + EXPORT_NOW.read_text(encoding="utf-8")


def _marts(functions_sql: str | None = None) -> list[_Mart]:
    """The marts' files in build order, each with what it reads; functions_sql: _functions_sql() (read if not given)."""
    macros = _macro_reads(_functions_sql() if functions_sql is None else functions_sql)
    marts = []
    for path in sorted(MARTS_SQL_DIR.glob("*.sql")):
        sql = path.read_text()
        code = _code(sql)
        made = _MAKES.search(code)
        if made is None:
            raise ValueError(f"{path} makes no table marts.<name> (CREATE OR REPLACE TABLE marts.<name> AS ...)")
        reads = (set(_READS.findall(code)) | set().union(*(macros[name] for name in _called(code, macros)))
                 | ({"marts.survival"} if path.name in _PYTHON_INPUTS else set()))
        marts.append(_Mart(path, sql, made.group(1), frozenset(reads - {f"marts.{made.group(1)}"})))
    return marts


def build_marts(con: duckdb.DuckDBPyConnection, changed: Collection[str] | None = None) -> None:
    """(Re)build schema marts from core on this read-write connection, in the caller's transaction.

    changed: the core tables whose rows changed since the marts were built (core.<table>), and
    stage.source_params when the sources' parameters did: only the marts that read one, or a mart whose
    rows changed, or another table outside core and the marts, are built again. None: the schema is
    dropped and every mart built. A mart whose file was removed never lingers.
    """
    functions = _functions_sql()
    marts = _marts(functions)
    if changed is None:
        con.execute("DROP SCHEMA IF EXISTS marts CASCADE")
    for gone in sorted(set(_mart_names(con)) - {m.table for m in marts}):
        con.execute(f"DROP TABLE marts.{gone}")
    _ensure_quarantine_inputs(con)  # first: DuckDB binds a table macro when it is created, to the tables it reads
    con.execute(rule_functions_sql())  # an age in completed years, as the rules count it
    con.execute(functions)
    built, moved = set(_mart_names(con)), None if changed is None else set(changed)
    read = {table for m in marts for table in m.reads}
    estimates: dict[str, pd.DataFrame] | None = None  # one fit a group, for both marts that read them
    kept = []
    for mart in marts:
        name = f"marts.{mart.table}"
        if moved is not None and mart.table in built and all(
                t.startswith(_TRACKED) and t not in moved for t in mart.reads):
            kept.append(mart.table)
            continue
        with timing.step(f"mart {mart.table}"):
            rows = f"SELECT * FROM {name}"
            before = rows_digest(con, rows) if moved is not None and mart.table in built and name in read else None
            view = _PYTHON_INPUTS.get(mart.path.name)
            if view is None:
                con.execute(mart.sql)
            else:
                if estimates is None:
                    estimates = kaplan_meier(con.execute(f"SELECT {', '.join(TIMES_COLUMNS)} FROM marts.survival").df())
                con.register(view, estimates[view])
                try:
                    con.execute(mart.sql)
                finally:
                    con.unregister(view)
            if moved is not None and (before is None or rows_digest(con, rows) != before):
                moved.add(name)
    if kept:
        log.info("marts kept, nothing they read changed: %s", ", ".join(kept))


# Stage tables marts.held_back_endpoints reads (with dq.quarantine): the endpoints of held-back records.
_HELD_BACK_INPUTS = ("follow_up", "diagnosis", "response_assessment")


def _ensure_quarantine_inputs(con: duckdb.DuckDBPyConnection) -> None:
    """Every publish has dq.quarantine and the stage tables; a warehouse made without them (by hand, in
    a test) gets them empty, so that the marts build from core alone and hold no held-back endpoint,
    and the shipped child population table."""
    present = {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    if "dq.quarantine" not in present:
        con.execute((WAREHOUSE_SQL_DIR / "dq.sql").read_text())
    for table in _HELD_BACK_INPUTS:
        if f"stage.{table}" not in present:
            con.execute("CREATE SCHEMA IF NOT EXISTS stage")
            con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    if "stage.source_param" not in present:  # which sources are population-based (incidence_registered())
        write_source_params(con, {})
    if "stage.child_population" not in present:  # marts.incidence divides by the shipped table
        write_child_population(con, read_child_population(default_population_file()))


def _mart_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' ORDER BY table_name").fetchall()]


def _latest_run_id(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT run_id FROM meta.run ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchone()
    return row[0] if row else "no-run"


def _new_run_folder(runs: Path, run_id: str) -> Path:
    folder, n = runs / run_id, 1
    while folder.exists():  # the same run exported again: a new set beside the old one
        n += 1
        folder = runs / f"{run_id}.{n}"
    return folder


def export_parquet(warehouse: Path, marts_dir: Path) -> list[Path]:
    """Write every mart of the published warehouse as Parquet and make it the current set atomically.

    One export at a time: call it after publish (the publish lock makes that so when publish calls it).
    """
    runs = fsio.private_folder(marts_dir / "runs")
    con = connect_duckdb(warehouse, read_only=True)
    try:
        run_id, names = _latest_run_id(con), _mart_names(con)
        if not names:
            raise LookupError(f"{warehouse} has no marts: build them before exporting")
        folder = _new_run_folder(runs, run_id)
        with fsio.written_atomically(folder, folder=True) as partial:  # the set appears whole, fsynced
            _write_set(con, partial, run_id, names)
    finally:
        con.close()
    _point_current(marts_dir, folder)
    _prune(runs, keep={folder})
    return [folder / f"{name}.parquet" for name in names]


def _write_set(con: duckdb.DuckDBPyConnection, folder: Path, run_id: str, names: list[str]) -> None:
    """One Parquet file per mart, each tagged with the run, and the manifest of the set."""
    rows = {}
    for name in names:
        target = folder / f"{name}.parquet"
        con.execute(f"COPY (SELECT * FROM marts.{name}) TO {sql_text(str(target))} "
                    f"(FORMAT parquet, KV_METADATA {{run_id: '{run_id}', mart: '{name}'}})")
        rows[name] = pq.read_metadata(target).num_rows
    manifest = {"run_id": run_id, "exported_at": datetime.now(UTC).isoformat(), "rows": rows}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _point_current(marts_dir: Path, folder: Path) -> None:
    """Swap `current` to the new set with one rename, so a reader sees the old set or the new one."""
    fsio.swap_symlink(marts_dir / "current", folder.relative_to(marts_dir))


def _prune(runs: Path, keep: set[Path]) -> None:
    """Drop all but the newest KEEP_RUNS sets (readers still holding open files keep reading them)."""
    sets = sorted((p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in sets[KEEP_RUNS:]:
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)


_QUARTILES = ("days_to_registration_p25", "days_to_registration_median", "days_to_registration_p75")

# The aggregate marts as published. Relations name what a reader could recompute a count from.
PUBLIC_TABLES = (
    PublicTable(
        "board_advice_summary", dimensions=("iccc3_subgroup", "recommendation_year"),
        counts=("n_cases", "n_advised", "n_follow_known", "n_followed", "n_not_followed"),
        relations=(Relation("n_cases", ("n_advised",)), Relation("n_advised", ("n_follow_known",)),
                   Relation("n_follow_known", ("n_followed", "n_not_followed"), exact=True)),
        derived={"proportion_followed": ("n_followed", "n_follow_known")}, has_totals=True),
    PublicTable(
        "actionable_events", dimensions=("source_id", "iccc3_subgroup", "event_class", "event"),
        counts=("n_events", "n_patients", "n_patients_profiled"),
        relations=(Relation("n_patients_profiled", ("n_patients",)),),
        derived={"frequency": ("n_patients", "n_patients_profiled")},
        written={"event": frozenset()}, persons="n_patients"),
    PublicTable(
        "adverse_events", dimensions=("drug_name", "access_route"),
        counts=("n_patients_exposed", "n_events", "n_events_grade3plus", "n_patients_grade3plus",
                "n_serious_events", "n_patients_serious"),
        relations=(Relation("n_patients_exposed", ("n_patients_grade3plus",)),
                   Relation("n_patients_exposed", ("n_patients_serious",)),
                   Relation("n_events", ("n_events_grade3plus",)), Relation("n_events", ("n_serious_events",))),
        derived={"proportion_grade3plus": ("n_patients_grade3plus", "n_patients_exposed"),
                 "proportion_serious": ("n_patients_serious", "n_patients_exposed")},
        written={"drug_name": frozenset()}, persons="n_patients_exposed"),
    PublicTable(
        "response", dimensions=("regimen", "advice_group", "timepoint"),
        counts=("n_assessed", "n_complete", "n_partial", "n_stable", "n_progression", "n_no_response",
                "n_not_evaluable", "n_objective_response"),
        relations=(Relation("n_assessed", ("n_complete", "n_partial", "n_stable", "n_progression", "n_no_response",
                                           "n_not_evaluable"), exact=True),
                   Relation("n_objective_response", ("n_complete", "n_partial"), exact=True),
                   # The two above together: the responses withheld in both give way to the others shown.
                   Relation("n_assessed", ("n_objective_response", "n_stable", "n_progression", "n_no_response",
                                           "n_not_evaluable"), exact=True)),
        derived={column: ("n_objective_response", "n_assessed") for column in ("orr", "orr_ci_lower", "orr_ci_upper")},
        written={"regimen": frozenset()}, persons="n_assessed"),  # lines: one child in five lines of a regimen counts 5
    PublicTable(
        "board_response", dimensions=("advice_group", "timepoint"),
        counts=("n_submissions", "n_treated", "n_assessed", "n_objective_response"),
        relations=(Relation("n_submissions", ("n_treated",)), Relation("n_treated", ("n_assessed",)),
                   Relation("n_assessed", ("n_objective_response",))),
        derived={column: ("n_objective_response", "n_assessed") for column in ("orr", "orr_ci_lower", "orr_ci_upper")},
        # the same lines as response's, all regimens together: a regimen withheld there is not this less the others
        totals_of=(TotalsOf("response", on=("advice_group", "timepoint"),
                            counts=("n_assessed", "n_objective_response")),)),
    PublicTable(
        "registry_activity", dimensions=("study_id", "centre_id", "country", "registration_year"),
        counts=("n_registrations", "n_patients", "n_with_diagnosis_date"),
        relations=(Relation("n_registrations", ("n_with_diagnosis_date",)),),
        derived={column: ("n_with_diagnosis_date",) for column in _QUARTILES},
        written={"centre_id": frozenset(), "country": ISO_3166_ALPHA2}, persons="n_patients",
        # the quartiles of 5 registrations are the 2nd, 3rd and 4th delays: each of their quarters must hold min_cell
        quantiles=(Quantiles(_QUARTILES, over="n_with_diagnosis_date", bands=4),)),
    PublicTable(
        "survival_landmark", dimensions=("origin", "endpoint", "grouping", "group_value", "years"),
        counts=("n_patients", "n_at_risk"),
        # The estimate gives away the events before the landmark (with no censoring, n_patients * (1 - survival)),
        # and with n_at_risk the patients censored before it: every patient is at risk at the landmark (followed
        # for at least its days), or had an event or was censored before it. The step the estimate takes at the
        # landmark itself tells the events of that day, among those at risk.
        implied=("n_events", "n_censored", "n_events_at_landmark"),
        relations=(Relation("n_patients", ("n_at_risk",)),
                   Relation("n_patients", ("n_at_risk", "n_events", "n_censored"), exact=True),
                   Relation("n_at_risk", ("n_events_at_landmark",))),
        derived={column: ("n_patients", "n_at_risk", "n_events", "n_censored", "n_events_at_landmark")
                 for column in ("survival", "ci_lower", "ci_upper")},
        # the grouping 'all' row sums the ICCC-3 groups, and the advice groups, of its origin, endpoint and landmark
        group_totals=(GroupTotals("grouping", "all", within=("origin", "endpoint", "years")),),
        # at risk at 3 years less at 5 years: the patients with an event or censored in between; at risk of
        # death less at risk of an EFS event: the patients alive after a relapse or progression; and the events
        # by 5 years less those by 3, the EFS events less the deaths (a death ends event-free survival too)
        shrinking=(Shrinking("n_at_risk", "years", LANDMARK_YEARS,
                             within=("origin", "endpoint", "grouping", "group_value")),
                   Shrinking("n_at_risk", "endpoint", ("OS", "EFS"),
                             within=("origin", "grouping", "group_value", "years")),
                   Shrinking("n_events", "years", LANDMARK_YEARS[::-1],
                             within=("origin", "endpoint", "grouping", "group_value")),
                   Shrinking("n_events", "endpoint", ("EFS", "OS"),
                             within=("origin", "grouping", "group_value", "years")))),
)

# What export_public reads of each public mart: the mart, with the counts its estimates imply (PublicTable.implied).
_PUBLIC_ROWS = {"survival_landmark": """
    SELECT landmark.*,  -- before the landmark: as n_at_risk counts those followed for at least its days
        CAST(coalesce(sum(step.n_events) FILTER (WHERE step.time_days < landmark.time_days), 0) AS INTEGER)
            AS n_events,
        CAST(coalesce(sum(step.n_censored) FILTER (WHERE step.time_days < landmark.time_days), 0) AS INTEGER)
            AS n_censored,
        CAST(coalesce(sum(step.n_events) FILTER (WHERE step.time_days = landmark.time_days), 0) AS INTEGER)
            AS n_events_at_landmark
    FROM marts.survival_landmark AS landmark
    LEFT JOIN marts.survival_km AS step
        ON step.origin = landmark.origin AND step.endpoint = landmark.endpoint AND step.grouping = landmark.grouping
       AND step.group_value = landmark.group_value AND step.time_days <= landmark.time_days
    GROUP BY ALL
    ORDER BY landmark.origin, landmark.endpoint, landmark.grouping, landmark.group_value, landmark.years"""}


def export_public(warehouse: Path, out_dir: Path, min_cell: int = 5) -> list[Path]:
    """The aggregate marts for publication, as CSV and Parquet, with every count below min_cell withheld
    and every label a centre wrote that fewer than min_cell persons share read as "other". So are the survival
    estimates that tell fewer than min_cell events or censored patients by their landmark (the events are read
    from marts.survival_km), and quartiles over fewer than 4 * min_cell registrations.

    The per-patient marts (patient_summary, board_advice, treatment_line, response_line, survival) and the
    Kaplan-Meier step table (one step per event) are never published; survival is published as the landmark
    table, treatment lines as the response and board_response counts.
    """
    fsio.private_folder(out_dir)
    con = connect_duckdb(warehouse, read_only=True)
    try:
        missing = ({table.name for table in PUBLIC_TABLES} | {"survival_km"}) - set(_mart_names(con))
        if missing:
            raise LookupError(f"{warehouse} lacks the marts {sorted(missing)}: build them before exporting")
        frames = {table.name: con.execute(_PUBLIC_ROWS.get(table.name, f"SELECT * FROM marts.{table.name}")).df()
                  for table in PUBLIC_TABLES}
    finally:
        con.close()
    # suppressed together: board_response totals response's regimens
    shown = suppress_tables({table.name: generalise(frames[table.name], table, min_cell) for table in PUBLIC_TABLES},
                            PUBLIC_TABLES, min_cell)
    written = []
    for table in PUBLIC_TABLES:
        published = shown[table.name]
        csv_path, parquet_path = out_dir / f"{table.name}.csv", out_dir / f"{table.name}.parquet"
        with fsio.written_atomically(csv_path) as partial:
            _as_spreadsheet_cells(published).to_csv(partial, index=False)
        with fsio.written_atomically(parquet_path) as partial:
            pq.write_table(pa.Table.from_pandas(published, preserve_index=False), partial)
        written += [csv_path, parquet_path]
    return written



def _as_spreadsheet_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each text cell as a spreadsheet shows it and never runs it (numbers stay numbers)."""
    return frame.assign(**{str(name): column.map(lambda v: spreadsheet_text(v) if isinstance(v, str) else v)
                           for name, column in frame.items() if not pd.api.types.is_numeric_dtype(column)})
