"""Validation: run the whole rule catalogue over the stage tables and fill the dq schema.

Every engine's findings (GX suites, SQL checks, harmonise's own conformance checks) are
reduced to the same two sets per rule, the records judged and the records failing, and from
there one code path writes `dq.check`, `dq.check_result` (per source and centre, against the
threshold), `dq.issue` (per failing record) and `dq.quarantine` (records failing an
error-severity rule, held back from core). A rule that cannot run is reported as `error` and
the others go on; a failed rule never stops the load of clean records.

Two phases. First every rule of phase `staged` (GX suites, harmonise's checks, most SQL rules)
judges every stage record, and its errors build dq.quarantine. Then the SQL rules of phase
`admitted` judge what actually reaches core (stage minus the quarantine): a response whose
treatment was held back, a record whose patient's registration was. They only warn (the
catalogue refuses an admitted-phase error), so the second pass never changes the quarantine.

Waivers: a finding a centre confirmed as true (meta.waiver, from `rtw responses import`) is
matched by record, rule, field and the hash of its value where the findings become issues, so
every engine honours it: it goes to dq.waived_issue instead of dq.issue (so no query, and for a
confirmable error no quarantine) and counts in dq.check_result.waived_rows. A changed value no
longer matches: the issue is open again.

Source parameters (`params:` in each mapping) are written to `stage.source_param` before the
rules run. A rule that reads parameters judges only the sources that set one of them; for the
others its result is `not_applicable`, saying which parameters it reads, and it raises no issue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from etl import timing
from etl.quality import gx_memo, issue_spans, rule_memo
from etl.quality.catalogue import THRESHOLD_DIGITS, Rule, fingerprint, load_catalogue
from etl.quality.findings import FAILURE_COLUMNS, JUDGED_COLUMNS, RuleRun, count_judged, value_hash_sql
from etl.quality.params import ParamValue, is_set, param_text, typed_view_sql
from etl.quality.sql_checks import (
    ISSUE_COLUMNS,
    core_references,
    recorded_date_columns,
    rule_functions_sql,
    run_admitted_checks,
    run_checks,
)
from etl.schema import among, in_warehouse
from etl.transform.mapping import SourceMapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityPlan:
    """The rules to run and each source's overrides (`quality:` in sources/<source>.yaml)."""

    rules: Sequence[Rule]
    overrides: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)  # source -> rule -> ...
    data_docs_dir: Path | None = None
    params: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=dict)  # source -> name -> value

    @property
    def fingerprint(self) -> str:
        # A changed parameter changes what the rules find, and so does a date column or a reference added
        # to the DDL (the date and reference rules judge every one): validation must run again.
        return fingerprint(self.rules, {"overrides": self.overrides, "params": self.params,
                                        "date_columns": recorded_date_columns(),
                                        "references": core_references(), "functions": rule_functions_sql()})


def quality_plan(mappings: Sequence[SourceMapping], *, data_docs_dir: Path | None = None,
                 rules: Sequence[Rule] | None = None) -> QualityPlan:
    # GX checks the expectation types when it runs them; a run with nothing to validate skips its import.
    rules = list(load_catalogue(check_types=False) if rules is None else rules)
    known = {r.rule_id for r in rules}
    overrides: dict[str, dict[str, dict[str, Any]]] = {}
    for mapping in mappings:
        for rule_id, override in mapping.quality.items():
            if rule_id not in known:
                log.warning("sources/%s.yaml: quality override for unknown rule %s ignored",
                            mapping.source_id, rule_id)
                continue
            overrides.setdefault(mapping.source_id, {})[rule_id] = override.model_dump(exclude_none=True)
    params = {m.source_id: dict(m.params) for m in mappings if m.params}
    return QualityPlan(rules, overrides, data_docs_dir, params)


def write_source_params(con: duckdb.DuckDBPyConnection, params: Mapping[str, Mapping[str, ParamValue]]) -> bool:
    """Replace stage.source_param with these sources' parameters and (re)create the typed view; whether they
    differ from those the warehouse held (marts read them: marts.survival which sources are population-based)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS stage")
    con.execute("CREATE TABLE IF NOT EXISTS stage.source_param "
                "(source_id VARCHAR NOT NULL, name VARCHAR NOT NULL, value VARCHAR)")
    rows = [(source_id, name, param_text(value)) for source_id, values in sorted(params.items())
            for name, value in sorted(values.items())]
    held = set(con.execute("SELECT source_id, name, value FROM stage.source_param").fetchall())
    con.execute("DELETE FROM stage.source_param")
    if rows:
        con.executemany("INSERT INTO stage.source_param VALUES (?, ?, ?)", rows)
    con.execute(typed_view_sql())
    return set(rows) != held


def _harmonise_runs(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], sources: Sequence[str] | None
                    ) -> list[RuleRun]:
    """Harmonise judged every record (of `sources`, None: all); its rejections are the failures (an
    uncatalogued rule id too)."""
    if sources == []:
        return []
    of_sources = "" if sources is None else f" WHERE {among('source_id', sources)}"
    every_record = count_judged(con, f"SELECT source_id, source_record_key FROM stage.record{of_sources}")
    rejections = con.execute("SELECT rule_id, source_id, source_record_key, field, value, message "
                             f"FROM stage.rejection{of_sources}").df()
    rule_ids = [r.rule_id for r in rules] + sorted(set(rejections.rule_id) - {r.rule_id for r in rules})
    return [RuleRun(rule_id, every_record, rejections[rejections.rule_id == rule_id][FAILURE_COLUMNS])
            for rule_id in rule_ids]


GX_BATCH_ROWS = 100_000  # rows of a stage table validated at once: memory holds one batch


def _write_catalogue(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule]) -> None:
    con.execute("DELETE FROM dq.check")
    if not rules:
        return
    con.executemany("INSERT INTO dq.check VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        (r.rule_id, r.meta.category, r.meta.subcategory, r.meta.level, r.meta.severity, r.meta.threshold,
         r.meta.table, r.meta.field, r.meta.description, r.meta.expected, r.engine, r.definition,
         r.meta.is_confirmable) for r in rules])


def _load_findings(con: duckdb.DuckDBPyConnection, runs: Sequence[RuleRun], plan: QualityPlan, *,
                   append: bool = False) -> None:
    """The rule runs' denominators, failures and errors, and the plan's settings, as temp tables for
    the SQL that writes dq.*; `append`: add these runs' findings to those loaded before."""
    judged = [r.judged.reindex(columns=JUDGED_COLUMNS).assign(rule_id=r.rule_id) for r in runs if r.error is None]
    # Only a rule over several tables names each failure's table; the others leave it to dq.check.
    failures = [r.failures.reindex(columns=ISSUE_COLUMNS).assign(rule_id=r.rule_id) for r in runs if r.error is None]
    judged_rows = pd.concat(judged, ignore_index=True) if judged else pd.DataFrame(
        columns=[*JUDGED_COLUMNS, "rule_id"])
    failure = pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(
        columns=[*ISSUE_COLUMNS, "rule_id"])
    errors = pd.DataFrame([(r.rule_id, r.error) for r in runs if r.error is not None],
                          columns=["rule_id", "error"])
    overrides = pd.DataFrame([(s, rule, o.get("threshold"), o.get("enabled"))
                              for s, rules in plan.overrides.items() for rule, o in rules.items()],
                             columns=["source_id", "rule_id", "threshold", "enabled"])
    rule_params = pd.DataFrame([(r.rule_id, name) for r in plan.rules for name in r.meta.params or []],
                               columns=["rule_id", "name"])
    params_set = pd.DataFrame([(s, name) for s, values in plan.params.items()
                               for name, value in values.items() if is_set(value)], columns=["source_id", "name"])
    tables = {"judged": judged_rows, "failure": failure, "rule_error": errors}
    if not append:
        tables |= {"override": overrides, "rule_param": rule_params, "param_set": params_set}
    for name, frame in tables.items():
        if not append:  # typed tables: an empty frame would otherwise give columns DuckDB cannot compare
            columns = ", ".join(f"{c} {_TYPES.get(c, 'VARCHAR')}" for c in frame.columns)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _{name} ({columns})")
        if not frame.empty:
            con.register(f"_{name}_frame", frame.astype(object).where(frame.notna(), None))
            con.execute(f"INSERT INTO _{name} BY NAME SELECT * FROM _{name}_frame")
            con.unregister(f"_{name}_frame")


_TYPES = {"threshold": "DOUBLE", "enabled": "BOOLEAN", "denominator": "BIGINT"}

_SETTINGS = """
CREATE OR REPLACE TEMP TABLE _setting AS
WITH reads AS (  -- rules that read source parameters, with the parameters listed
    SELECT rule_id, string_agg(name, ', ' ORDER BY name) AS params FROM _rule_param GROUP BY rule_id
)
SELECT c.rule_id, s.source_id, c.severity,
       coalesce(o.threshold::DOUBLE, c.threshold) AS threshold,
       coalesce(o.enabled::BOOLEAN, true) OR c.engine = 'harmonise' AS enabled,  -- unparseable: never loadable
       r.params IS NULL OR EXISTS (SELECT 1 FROM _rule_param rp JOIN _param_set ps USING (name)
                                   WHERE rp.rule_id = c.rule_id AND ps.source_id = s.source_id) AS applies,
       r.params
FROM dq.check c
CROSS JOIN (SELECT DISTINCT source_id FROM stage.record) s
LEFT JOIN _override o USING (rule_id, source_id)
LEFT JOIN reads r USING (rule_id)
"""

# A finding a centre confirmed (meta.waiver: same record, rule, field and value, a rule still
# confirmable) is waived: kept in dq.waived_issue, not in dq.issue, so it is neither queried again nor,
# for an error, quarantined. Every engine's findings pass here, so GX, SQL and harmonise rules alike.
_WAIVERS = """
CREATE OR REPLACE TEMP TABLE _waiver AS
SELECT w.source_id, w.source_record_key, w.rule_id, w.field, w.value_hash,
       arg_max(w.batch_id, w.confirmed_at) AS batch_id, max(w.confirmed_at) AS confirmed_at
FROM meta.waiver w JOIN dq.check c USING (rule_id)
WHERE c.confirmable
GROUP BY ALL
"""
_NO_WAIVERS = """
CREATE OR REPLACE TEMP TABLE _waiver (source_id VARCHAR, source_record_key VARCHAR, rule_id VARCHAR, field VARCHAR,
                                      value_hash VARCHAR, batch_id VARCHAR, confirmed_at TIMESTAMPTZ)
"""

_FINDINGS = f"""
CREATE OR REPLACE TEMP TABLE _finding AS
WITH found AS (
    SELECT DISTINCT f.rule_id, coalesce(c.severity, 'error') AS severity, f.source_id, r.centre_id,
           coalesce(f.table_name, c.table_name) AS table_name,
           f.source_record_key, r.patient_pseudonym, r.record_set, r.line, f.field, f.value, f.message
    FROM _failure f
    LEFT JOIN dq.check c USING (rule_id)
    LEFT JOIN stage.record r USING (source_id, source_record_key)
    LEFT JOIN _setting s USING (rule_id, source_id)
    WHERE coalesce(s.enabled AND s.applies, true)
      AND ($rules::VARCHAR[] IS NULL OR list_contains($rules::VARCHAR[], f.rule_id))
)
SELECT f.*, w.batch_id, w.confirmed_at
FROM found f LEFT JOIN _waiver w
  ON w.source_id = f.source_id AND w.source_record_key = f.source_record_key AND w.rule_id = f.rule_id
 AND w.field IS NOT DISTINCT FROM f.field AND w.value_hash = {value_hash_sql("f.value")}
"""

_ISSUE_COLUMNS = ", ".join(issue_spans.ISSUE_COLUMNS)
_WAIVED = (f"INSERT INTO dq.waived_issue SELECT ?, {_ISSUE_COLUMNS}, batch_id, confirmed_at FROM _finding "
           "WHERE batch_id IS NOT NULL")


def _write_issues(con: duckdb.DuckDBPyConnection, run_id: str, added: Sequence[Rule] = ()) -> None:
    """The run's issues (the temporary table _run_issue, recorded in dq.issue once complete) and its
    dq.waived_issue, from the findings loaded (_failure). `added`: only these rules' findings, added to
    the issues written before (the admitted phase's rules, judged after the others)."""
    con.execute(_FINDINGS, {"rules": [r.rule_id for r in added] if added else None})
    issues = f"SELECT {_ISSUE_COLUMNS} FROM _finding WHERE batch_id IS NULL"
    if added:
        con.execute(f"INSERT INTO _run_issue {issues}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _run_issue AS {issues}")
        con.execute("DELETE FROM dq.waived_issue WHERE run_id = ?", [run_id])
    con.execute(_WAIVED, [run_id])


_RESULTS = f"""
INSERT INTO dq.check_result
WITH judged AS (
    SELECT rule_id, source_id, centre_id, sum(denominator) AS denominator FROM _judged GROUP BY ALL
), failing AS (
    SELECT rule_id, source_id, centre_id, count(DISTINCT source_record_key) AS failing_rows
    FROM _run_issue GROUP BY ALL
), waived AS (
    SELECT rule_id, source_id, centre_id, count(DISTINCT source_record_key) AS waived_rows
    FROM dq.waived_issue WHERE run_id = $run GROUP BY ALL
), measured AS (
    SELECT j.rule_id, j.source_id, j.centre_id, coalesce(f.failing_rows, 0) AS failing_rows, j.denominator,
           coalesce(w.waived_rows, 0) AS waived_rows
    FROM judged j LEFT JOIN failing f
      ON f.rule_id = j.rule_id AND f.source_id = j.source_id AND f.centre_id IS NOT DISTINCT FROM j.centre_id
    LEFT JOIN waived w
      ON w.rule_id = j.rule_id AND w.source_id = j.source_id AND w.centre_id IS NOT DISTINCT FROM j.centre_id
)
SELECT $run, s.rule_id, s.source_id, m.centre_id,
       -- a rule reading parameters this source does not set judged none of its rows
       CASE WHEN s.applies THEN coalesce(m.failing_rows, 0) ELSE 0 END,
       CASE WHEN s.applies THEN coalesce(m.denominator, 0) ELSE 0 END,
       CASE WHEN s.applies AND m.denominator > 0 THEN round(100.0 * m.failing_rows / m.denominator, 3) END,
       s.threshold,
       CASE WHEN e.error IS NOT NULL THEN 'error'
            WHEN NOT s.enabled OR NOT s.applies OR coalesce(m.denominator, 0) = 0 THEN 'not_applicable'
            -- rounded: 0.58 x 50 is 28.999999999999996 in floating point, and 29 of 50 is within 58%
            WHEN m.failing_rows > round(s.threshold * m.denominator, {THRESHOLD_DIGITS}) THEN 'failed'
            ELSE 'passed' END,
       CASE WHEN e.error IS NOT NULL THEN e.error
            WHEN NOT s.enabled THEN 'switched off in sources/' || s.source_id || '.yaml'
            WHEN NOT s.applies THEN 'reads params ' || s.params || ', which sources/' || s.source_id
                                    || '.yaml does not set'
            WHEN coalesce(m.denominator, 0) = 0 THEN 'no rows of this source to judge' END,
       CASE WHEN s.applies THEN coalesce(m.waived_rows, 0) ELSE 0 END
FROM _setting s
LEFT JOIN measured m ON m.rule_id = s.rule_id AND m.source_id = s.source_id
LEFT JOIN _rule_error e ON e.rule_id = s.rule_id
"""

_QUARANTINE = """
INSERT INTO dq.quarantine
SELECT $run, i.source_id, r.source_file, r.source_file_sha256, i.source_record_key, r.record_set, r.line,
       r.centre_id, r.target_tables,
       list(DISTINCT i.rule_id ORDER BY i.rule_id),
       list(DISTINCT coalesce(i.message, i.rule_id || ': ' || c.description) ORDER BY
            coalesce(i.message, i.rule_id || ': ' || c.description))
FROM _run_issue i
LEFT JOIN stage.record r USING (source_id, source_record_key)
LEFT JOIN dq.check c USING (rule_id)
WHERE i.severity = 'error'
GROUP BY ALL
"""


def start_judging(con: duckdb.DuckDBPyConnection, run_id: str, plan: QualityPlan, *,
                  unless_reading: Collection[str] = ()) -> gx_memo.Judging | None:
    """GX's judging of the stage tables, begun ahead of `validate` (which takes it): None when there
    are no GX rules, or one reads a column of `unless_reading`, which the run is yet to write."""
    rules = [r for r in plan.rules if r.engine == "gx"]
    if not rules:
        return None
    return gx_memo.judge(con, run_id, rules, batch_rows=GX_BATCH_ROWS, data_docs_dir=plan.data_docs_dir,
                         unless_reading=unless_reading)


def _judged(run: Callable[[duckdb.DuckDBPyConnection, list[Rule], Sequence[str] | None], list[RuleRun]],
            con: duckdb.DuckDBPyConnection, rules: list[Rule], sources: rule_memo.SourcePlan) -> list[RuleRun]:
    """`run` (run_checks, run_admitted_checks) over the sources to judge; nothing when none is."""
    return run(con, rules, sources.sources) if rules and sources.to_judge else []


def _keep(con: duckdb.DuckDBPyConnection, run_id: str, sources: rule_memo.SourcePlan,
          judged_now: Sequence[RuleRun]) -> None:
    rule_memo.keep(con, run_id, sources, [r.rule_id for r in judged_now],
                   [r.rule_id for r in judged_now if r.error is not None])


def _log_reused(sources: rule_memo.SourcePlan) -> None:
    if sources.reused:
        log.info("SQL and harmonise findings reused for sources unchanged since they were judged: %s",
                 ", ".join(f"{s} (run {run})" for s, run in sorted(sources.reused.items())))


def validate(con: duckdb.DuckDBPyConnection, run_id: str, plan: QualityPlan,
             judging: gx_memo.Judging | None = None) -> dict[str, Any]:
    """Judge the stage tables; fill dq.check, dq.check_result, dq.issue and rebuild dq.quarantine.
    `judging`: GX's judging begun before (start_judging), else it begins here."""
    started = time.perf_counter()
    rules = list(plan.rules)
    by_engine = {engine: [r for r in rules if r.engine == engine] for engine in ("harmonise", "gx", "sql")}
    try:  # whatever happens, the judging is closed: its process never holds answers for the next validation
        _write_catalogue(con, rules)
        params_changed = write_source_params(con, plan.params)
        with timing.step("validate fingerprints"):
            stage = rule_memo.stage_sums(con, rules)
            staged = rule_memo.plan(con, "staged", plan.fingerprint, stage)
        _log_reused(staged)
        with timing.step("validate harmonise checks"):
            judged_now = _harmonise_runs(con, by_engine["harmonise"], staged.sources)
        # GX judges in its own process while the SQL rules run here, and writes its Data Docs meanwhile too.
        judging = judging or start_judging(con, run_id, plan)
        with timing.step("validate SQL checks"):
            judged_now += _judged(run_checks, con, [r for r in by_engine["sql"] if r.meta.phase == "staged"],
                                  staged)
        runs = []
        if judging:
            with timing.step("validate GX awaited"):
                runs += judging.runs()
        with timing.step("validate findings"):
            _load_findings(con, runs + judged_now, plan)
            if judging:
                judging.keep()
            _keep(con, run_id, staged, judged_now)
        with timing.step("validate issues and quarantine"):
            con.execute(_SETTINGS)
            con.execute(_WAIVERS if in_warehouse(con, "meta.waiver") else _NO_WAIVERS)
            con.execute("DELETE FROM dq.check_result WHERE run_id = ?", [run_id])
            _write_issues(con, run_id)
            con.execute("DELETE FROM dq.quarantine")
            con.execute(_QUARANTINE, {"run": run_id})
        admitted = [r for r in by_engine["sql"] if r.meta.phase == "admitted"]
        reached = rule_memo.plan(con, "admitted", plan.fingerprint, rule_memo.with_quarantine(con, stage))
        if admitted:  # second phase: judge what reaches core; its findings are added to the issues
            with timing.step("validate admitted checks"):
                judged_now = _judged(run_admitted_checks, con, admitted, reached)
                _load_findings(con, judged_now, plan, append=True)
                _keep(con, run_id, reached, judged_now)
                _write_issues(con, run_id, added=admitted)
        with timing.step("validate issues recorded"):
            issue_spans.record(con, run_id, "_run_issue")
        if judging:
            with timing.step("validate Data Docs awaited"):
                judging.written()
    finally:
        if judging:
            judging.close()
    with timing.step("validate results"):
        con.execute(_RESULTS, {"run": run_id})
    issues, held = con.execute(
        "SELECT (SELECT count(*) FROM _run_issue), (SELECT count(*) FROM dq.quarantine)").fetchone() or (0, 0)
    for table in ("judged", "failure", "rule_error", "override", "rule_param", "param_set", "setting", "waiver",
                  "finding", "run_issue"):
        con.execute(f"DROP TABLE IF EXISTS _{table}")
    failed = [r for (r,) in con.execute("SELECT DISTINCT rule_id FROM dq.check_result WHERE run_id = ? "
                                        "AND status IN ('failed', 'error') ORDER BY 1", [run_id]).fetchall()]
    seconds = round(time.perf_counter() - started, 3)
    log.info("validation: %d rules, %d issues, %d records held back, rules failed: %s (%.1f s)",
             len(rules), issues, held, ", ".join(failed) or "none", seconds)
    # admitted_from: per source, the fingerprint of what reaches core (its stage rows minus the quarantine);
    # params_changed: the sources' parameters differ from those the marts were last built from
    return {"rules": len(rules), "issues": issues, "quarantined": held, "rules_failed": failed, "seconds": seconds,
            "admitted_from": reached.fingerprints, "params_changed": params_changed}
