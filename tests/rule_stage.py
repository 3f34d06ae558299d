"""A hand-made stage to run the catalogue's SQL rules on: every core table's columns from the real DDL
(warehouse/core.sql), a few records of one source, its params and its export's date. The rules run as
validation runs them (etl/quality/sql_checks.py), in DuckDB. A GX rule runs on a frame of a few records
as validation runs its suite (etl/quality/gx_suites.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from etl import schema
from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.catalogue import Rule, load_catalogue
from etl.quality.findings import RuleRun
from etl.quality.sql_checks import run_checks
from etl.quality.validate import write_source_params

SOURCE = "src"
EXPORTED_ON = date(2026, 11, 1)


def stage(rows: Mapping[str, Sequence[Mapping[str, Any]]], params: Mapping[str, Any] | None = None,
          exported_on: date | None = EXPORTED_ON) -> duckdb.DuckDBPyConnection:
    """A stage holding `rows` (table -> records; each record's source is SOURCE and its patient p1 unless
    it says otherwise), the source's `params` and one export file of `exported_on`."""
    con = duckdb.connect()
    for ddl in ("core.sql", "meta.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    con.execute("CREATE SCHEMA stage")
    for table in schema.tables("core"):
        if table != "patient":
            con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, exported_on) "
                "VALUES (?, 'f1', 'export.csv', 'loaded', ?)", [SOURCE, exported_on])
    for table, records in rows.items():
        for record in records:
            row = {"source_id": SOURCE, "patient_id": "p1", "source_file_sha256": "f1", "run_id": "r1", **record}
            con.execute(f"INSERT INTO stage.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))
    # where each record is now, as harmonise writes it (a rule judging by its export reads the file there)
    con.execute((WAREHOUSE_SQL_DIR / "stage.sql").read_text())
    con.execute("INSERT INTO stage.record (source_id, source_file_sha256, source_record_key) SELECT DISTINCT "
                "source_id, source_file_sha256, source_record_key FROM (" + " UNION ALL ".join(
                    f"SELECT source_id, source_file_sha256, source_record_key FROM stage.{table}"
                    for table in rows) + ")" if rows else "SELECT 1")
    write_source_params(con, {SOURCE: dict(params or {})})
    return con


def carried_over(con: duckdb.DuckDBPyConnection, exported_on: date) -> duckdb.DuckDBPyConnection:
    """The stage `con` as if its rows were carried over from an earlier export, of `exported_on`: their
    lineage names that export (f0), while stage.record still says they are in the export now (f1)."""
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, exported_on) "
                "VALUES (?, 'f0', 'earlier_export.csv', 'loaded', ?)", [SOURCE, exported_on])
    for table in schema.tables("core"):
        if table != "patient":
            con.execute(f"UPDATE stage.{table} SET source_file_sha256 = 'f0'")
    return con


def catalogued(*rule_ids: str) -> list[Rule]:
    return [r for r in load_catalogue(check_types=False) if r.rule_id in rule_ids]


def flagged(con: duckdb.DuckDBPyConnection, rule_id: str) -> dict[str, str | None]:
    """The records the rule flags: source_record_key -> its message."""
    [rule] = catalogued(rule_id)
    [run] = run_checks(con, [rule])
    assert run.error is None, run.error
    return dict(zip(run.failures.source_record_key, run.failures.message, strict=True))


def gx_runs(table: str, rows: pd.DataFrame, rules: list[Rule]) -> list[RuleRun]:
    """The rules of `table` run by GX over `rows`, one batch of one centre."""
    from etl.quality import gx_suites

    batch = gx_suites.Batch(rows, pd.Series(["IT-X01"] * len(rows)))
    return gx_suites.run_suites(gx_suites.new_context(None), lambda t: iter([batch]) if t == table else None, rules)


def gx_flagged(table: str, rule_id: str, rows: pd.DataFrame) -> set[str]:
    """The records of `rows` (source SOURCE unless they say otherwise) the GX rule flags."""
    [run] = gx_runs(table, rows.assign(source_id=rows.get("source_id", SOURCE)), catalogued(rule_id))
    assert run.error is None, run.error
    return set(run.failures.source_record_key)
