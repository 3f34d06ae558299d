"""Cross-table rules: the SQL files under warehouse/checks/, run against the stage tables.

A check's query names tables without a schema (`diagnosis`, `follow_up`, ...): it runs with the
search path set to `stage`, so it judges the records before they are admitted to core. It
returns the failing records as `source_id, source_record_key` and, optionally, `field`, `value`,
`message` and, for a rule that judges several tables, `table_name` (else the rule's `table`).
Its denominator is every row of its `table`, or those matching its `scope`.

Before the checks run, the temporary view `recorded_date` is built from the DDL: one row per
date a stage record states, whatever its table. A rule about every date (not after the export,
not before 1900) is then one query, and a date column added to core later is judged without an
edit. It is temporary so that the published warehouse never holds a view over a stage that a
later version reshapes. So are the macros the rules share (warehouse/rule_functions.sql, e.g.
`completed_years`, the age as protocols count it).

Rules with `phase: admitted` run in a second pass, after the quarantine is built, over the
schema `admitted`: one view per stage table holding the records that reach core (stage minus
dq.quarantine), and the view `core_reference`, one row per reference a record makes to another
core record of its source (from the DDL: a column named after another core table's primary key;
patient_id is a reference to the same source's registration, core.patient_source). The schema is
dropped when the pass ends, so the published warehouse never holds it.

Every rule judges a source's records by that source's records alone (its queries join on
source_id). So either pass can judge some sources only (`sources`): its tables are then views of
those sources' rows (the schema `judged` for the first pass), and the other sources' findings are
the ones remembered (etl/quality/rule_memo.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Set
from functools import cache

import duckdb
import pandas as pd

from etl import schema
from etl.quality.catalogue import Rule
from etl.quality.findings import FAILURE_COLUMNS, RuleRun, count_judged, shown
from etl.resources import warehouse_sql_dir
from etl.schema import among

# A failing record may also name its table (rules over several tables); NULL: the rule's `table`.
ISSUE_COLUMNS = [*FAILURE_COLUMNS, "table_name"]

# The columns of the view recorded_date: `value` is the date compared, `shown` the value as recorded.
RECORDED_DATE = (("source_id", "VARCHAR"), ("source_file_sha256", "VARCHAR"), ("source_record_key", "VARCHAR"),
                 ("table_name", "VARCHAR"), ("field", "VARCHAR"), ("value", "DATE"), ("shown", "VARCHAR"))


def rule_functions_sql() -> str:
    """The temporary macros every SQL rule may call (warehouse/rule_functions.sql)."""
    return (warehouse_sql_dir() / "rule_functions.sql").read_text(encoding="utf-8")


def recorded_date_columns() -> dict[str, list[tuple[str, str]]]:
    """Core table -> its dates as (column, kind), read from the DDL.

    Kind `date` is a DATE column; kind `year` an INTEGER `*_year` column (birth_year: birth dates
    are coarsened to a year before they reach core). core.patient is left out: it is derived
    from the other tables after validation, never staged.
    """
    dated: dict[str, list[tuple[str, str]]] = {}
    for table in schema.tables("core"):
        if table == "patient":
            continue
        for column, kind in schema.column_types(f"core.{table}"):
            if kind == "DATE":
                dated.setdefault(table, []).append((column, "date"))
            elif kind == "INTEGER" and column.endswith("_year"):
                dated.setdefault(table, []).append((column, "year"))
    return dated


def recorded_date_sql(present: Mapping[str, Set[str]], schema_name: str = "stage") -> str:
    """The statement creating the view `recorded_date` over the tables of `schema_name` (`present`:
    table -> columns).

    A year is read as 1 January of that year, as a year-precision date is stored, so it is "after
    the export" only in a later year; it is clamped to 1-9999 so that a wild value still compares
    (it is shown as written). A table or column the stage lacks (a partial stage in a test, a
    warehouse not yet upgraded) is skipped rather than failing every date rule.
    """
    parts = []
    for table, dates in recorded_date_columns().items():
        columns = present.get(table, set())
        if not {"source_id", "source_record_key"} <= columns:
            continue
        sha = "source_file_sha256" if "source_file_sha256" in columns else "NULL::VARCHAR"
        for column, kind in dates:
            if column not in columns:
                continue
            value = (f'make_date(least(greatest("{column}", 1), 9999)::INTEGER, 1, 1)' if kind == "year"
                     else f'"{column}"::DATE')
            parts.append(f"SELECT source_id, {sha} AS source_file_sha256, source_record_key, "
                         f"'{table}' AS table_name, '{column}' AS field, {value} AS value, "
                         f'"{column}"::VARCHAR AS shown FROM {schema_name}."{table}" WHERE "{column}" IS NOT NULL')
    if not parts:  # nothing staged yet: an empty view of the right shape
        parts = ["SELECT " + ", ".join(f"NULL::{kind} AS {name}" for name, kind in RECORDED_DATE) + " WHERE false"]
    return "CREATE OR REPLACE TEMP VIEW recorded_date AS\n" + "\nUNION ALL\n".join(parts)


def write_recorded_dates(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the temporary view recorded_date over the stage tables as they are on this connection."""
    con.execute(recorded_date_sql(_stage_columns(con)))


def run_check(con: duckdb.DuckDBPyConnection, rule: Rule, counted: dict[str, pd.DataFrame] | None = None) -> RuleRun:
    """The rule's denominators and failures. `counted`: the denominators of the populations counted
    before, by their query (the rules of one table and scope judge the same records: counting them
    was four fifths of the SQL rules' time)."""
    assert rule.query is not None and rule.meta.table is not None
    where = f"WHERE {rule.meta.scope}" if rule.meta.scope else ""
    population = f"SELECT source_id, source_record_key FROM {rule.meta.table} {where}"
    counted = {} if counted is None else counted
    try:
        if population not in counted:
            counted[population] = count_judged(con, population)
        judged = counted[population].copy()
        found = con.execute(rule.query).df()
    except duckdb.Error as exc:
        _refuse_aborted(con, rule, exc)
        return RuleRun.failed_to_run(rule.rule_id, f"{rule.definition}: {str(exc).splitlines()[0]}")
    missing = {"source_id", "source_record_key"} - set(found.columns)
    if missing:
        return RuleRun.failed_to_run(rule.rule_id,
                                     f"{rule.definition}: the query returns no {', '.join(sorted(missing))}")
    if "field" not in found.columns:
        found["field"] = rule.meta.field
    for column in ("value", "message", "table_name"):
        if column not in found.columns:
            found[column] = None
    found["value"] = [shown(v) for v in found["value"]]
    return RuleRun(rule.rule_id, judged, found[ISSUE_COLUMNS])


class RuleAbortedPublish(RuntimeError):
    """A rule's query failed while it ran (out of memory, a value it could not convert): DuckDB then
    aborts the transaction, and with it the publish. A rule that fails to compile only errs."""


def _refuse_aborted(con: duckdb.DuckDBPyConnection, rule: Rule, exc: duckdb.Error) -> None:
    try:
        con.execute("SELECT 1")
    except duckdb.TransactionException:
        raise RuleAbortedPublish(
            f"rule {rule.rule_id} ({rule.definition}) failed while it ran: {str(exc).splitlines()[0]}; DuckDB "
            "aborted the publish's transaction, so nothing of this run was published") from exc


def run_checks(con: duckdb.DuckDBPyConnection, rules: list[Rule],
               sources: Collection[str] | None = None) -> list[RuleRun]:
    """Run rules of phase `staged` over every stage record, or the records of `sources`."""
    if sources is None:
        write_recorded_dates(con)
        return _run_in(con, "stage", rules)
    with _views(con, "judged", sources, held_back=False) as present:
        con.execute(recorded_date_sql(present, "judged"))
        return _run_in(con, "judged", rules)


def _run_in(con: duckdb.DuckDBPyConnection, schema: str, rules: list[Rule]) -> list[RuleRun]:
    """Run the rules with their unqualified table names read from `schema`, and the rule functions."""
    con.execute(rule_functions_sql())
    con.execute(f"SET search_path = '{schema}'")
    try:
        counted: dict[str, pd.DataFrame] = {}  # the tables do not change while the rules run
        return [run_check(con, rule, counted) for rule in rules]
    finally:
        with contextlib.suppress(duckdb.TransactionException):  # aborted: the publish fails, saying why
            con.execute("RESET search_path")


@cache
def core_references() -> tuple[tuple[str, str, str], ...]:
    """(table, column, referenced table) for every reference between core tables, read from the DDL.

    A column named after the single-column primary key of another core table refers to it;
    patient_id refers to the patient's registration in the same source (core.patient_source),
    since core.patient is derived from the records after validation.
    """
    keys = {columns[0]: table for table, columns in schema.primary_keys("core").items() if len(columns) == 1}
    found = [(table, column) for table in sorted(schema.tables("core")) for column in schema.columns(f"core.{table}")]
    references = []
    for table, column in found:
        target = "patient_source" if keys.get(column) == "patient" else keys.get(column)
        if target is None or target == table or table == "patient":
            continue
        references.append((table, column, target))
    return tuple(references)


def core_reference_sql(present: Mapping[str, Set[str]]) -> str:
    """The view admitted.core_reference: one row per reference an admitted record makes, and whether
    the referenced record reached core too (`is_known`)."""
    parts = []
    for table, column, target in core_references():
        if not {"source_id", "source_record_key", column} <= present.get(table, set()) or target not in present:
            continue
        same = "t.source_id = r.source_id AND " + ("t.patient_id = r.patient_id" if target == "patient_source"
                                                   else f't."{column}" = r."{column}"')
        parts.append(f"SELECT r.source_id, r.source_record_key, '{table}' AS table_name, '{column}' AS field, "
                     f"r.\"{column}\"::VARCHAR AS value, '{target}' AS target_table, "
                     f"EXISTS (SELECT 1 FROM admitted.\"{target}\" t WHERE {same}) AS is_known "
                     f'FROM admitted."{table}" r WHERE r."{column}" IS NOT NULL')
    if not parts:
        parts = ["SELECT NULL::VARCHAR AS source_id, NULL::VARCHAR AS source_record_key, NULL::VARCHAR AS table_name, "
                 "NULL::VARCHAR AS field, NULL::VARCHAR AS value, NULL::VARCHAR AS target_table, "
                 "NULL::BOOLEAN AS is_known WHERE false"]
    return "CREATE OR REPLACE VIEW admitted.core_reference AS\n" + "\nUNION ALL\n".join(parts)


def _stage_columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    present: dict[str, set[str]] = {}
    for table, column in con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE "
                                     "database_name = current_database() AND schema_name = 'stage' "
                                     "AND NOT internal").fetchall():
        present.setdefault(table, set()).add(column)
    return present


def run_admitted_checks(con: duckdb.DuckDBPyConnection, rules: list[Rule],
                        sources: Collection[str] | None = None) -> list[RuleRun]:
    """Run rules of phase `admitted` over the records that reach core (dq.quarantine must be built),
    or those of `sources`."""
    if not rules:
        return []
    with _views(con, "admitted", sources, held_back=True) as present:
        con.execute(core_reference_sql(present))
        return _run_in(con, "admitted", rules)


@contextlib.contextmanager
def _views(con: duckdb.DuckDBPyConnection, schema_name: str, sources: Collection[str] | None, *,
           held_back: bool) -> Iterator[dict[str, set[str]]]:
    """The schema `schema_name` of one view per stage table (yields its tables' columns): the rows of
    `sources` (None: all), without the records dq.quarantine holds back if `held_back`. Dropped after."""
    present = _stage_columns(con)
    con.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
    con.execute(f"CREATE SCHEMA {schema_name}")
    try:
        for table, columns in sorted(present.items()):
            rows = f'SELECT * FROM stage."{table}"'
            if held_back and {"source_id", "source_record_key"} <= columns:
                rows += " ANTI JOIN dq.quarantine USING (source_id, source_record_key)"
            if sources is not None and "source_id" in columns:
                rows += f" WHERE {among('source_id', sorted(sources))}"
            con.execute(f'CREATE VIEW {schema_name}."{table}" AS {rows}')
        yield present
    finally:
        with contextlib.suppress(duckdb.TransactionException):
            con.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
