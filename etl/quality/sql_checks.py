"""Cross-table rules: the SQL files under warehouse/checks/, run against the stage tables.

A check's query names tables without a schema (`diagnosis`, `follow_up`, ...): it runs with the
search path set to `stage`, so it judges the records before they are admitted to core. It
returns the failing records as `source_id, source_record_key` and, optionally, `field`, `value`
and `message`. Its denominator is every row of its `table`, or those matching its `scope`.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from etl.quality.catalogue import Rule
from etl.quality.findings import FAILURE_COLUMNS, RuleRun


def run_check(con: duckdb.DuckDBPyConnection, rule: Rule) -> RuleRun:
    assert rule.query is not None and rule.meta.table is not None
    where = f"WHERE {rule.meta.scope}" if rule.meta.scope else ""
    try:
        population = con.execute(f"SELECT source_id, source_record_key FROM {rule.meta.table} {where}").df()
        found = con.execute(rule.query).df()
    except duckdb.Error as exc:
        return RuleRun.failed_to_run(rule.rule_id, f"{rule.definition}: {str(exc).splitlines()[0]}")
    missing = {"source_id", "source_record_key"} - set(found.columns)
    if missing:
        return RuleRun.failed_to_run(rule.rule_id,
                                     f"{rule.definition}: the query returns no {', '.join(sorted(missing))}")
    if "field" not in found.columns:
        found["field"] = rule.meta.field
    for column in ("value", "message"):
        if column not in found.columns:
            found[column] = None
    found["value"] = [None if pd.isna(v) else str(v) for v in found["value"]]
    return RuleRun(rule.rule_id, population, found[FAILURE_COLUMNS])


def run_checks(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> list[RuleRun]:
    con.execute("SET search_path = 'stage'")
    try:
        return [run_check(con, rule) for rule in rules]
    finally:
        con.execute("RESET search_path")
