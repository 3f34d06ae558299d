"""The validation report: one offline HTML page per run, `<reports>/<run_id>/index.html`.

It only reads the warehouse (meta.run and the dq tables of warehouse/dq.sql): the Kahn grid,
per source and per centre, every rule against its threshold, what changed since the previous
validated run and a trend over runs. Everything is inside the page (inline CSS, inline SVG, a
few lines of inline script to filter tables), so it opens offline, from a file share or a mail.

Gotchas of the tables:
- A run in which no source and no rule changed does not rerun the rules (no dq.check_result
  rows): its page shows the findings of the latest validated run before it, still the open ones.
- dq.check is the catalogue as of the latest run: an older run may have results of a rule since
  removed, so catalogue columns can be missing for it.
- dq.quarantine holds the current warehouse only; for an older run the records held back are
  those with an error-severity issue, which is what the quarantine is built from.
- The queries to centres (etl/quality/query_status.py) are counted as of the start of the run after
  the page's run, or now on the latest run's page, so a page rebuilt after `rtw queries` shows them.
- The endpoints that held-back records carry (deaths, relapses, progressions, responses) come
  from marts.held_back_endpoints, which holds the current warehouse only: a page about an older
  run says so instead of listing them.
- The lists of records (findings answered corrected but still present, waivers, the record keys of
  the endpoints held back, the pairs for clerical review) grow with the registry: at 20,000 persons
  with every query answered they made a 10 MB page. The page shows the first LISTED of each (KEYS_LISTED
  keys an endpoint row), with how many there are; every row is in a CSV beside it (LIST_FILES).
"""

from __future__ import annotations

import csv
import functools
import html
import json
import logging
import math
import os
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from etl import fsio
from etl.config import connect_duckdb
from etl.quality import issue_spans
from etl.quality.catalogue import THRESHOLD_DIGITS
from etl.quality.query_status import (
    WAIVED_NEXT_RUN,
    AgePoint,
    age_trend,
    as_of_for,
    per_centre,
    queries_as_of,
    waivers,
)
from etl.schema import in_warehouse
from etl.spreadsheet import spreadsheet_text

log = logging.getLogger(__name__)

CATEGORIES = ("conformance", "completeness", "plausibility")
SUBCATEGORIES = ("verification", "validation")
STATUSES = ("passed", "failed", "error", "not_applicable")
_JUDGED = ("passed", "failed")  # results that measured something; error and not_applicable did not
_TEMPLATES = Path(__file__).parent / "templates"
_IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp"}
LISTED = 100  # rows of a list of records the page shows; the CSV beside it holds them all
KEYS_LISTED = 20  # record keys an endpoint row shows; held_back_records.csv holds them all


class UnknownRun(ValueError):
    """The run is not in meta.run, or no run up to it was validated."""


@dataclass(frozen=True)
class RunChoice:
    """Which run a page is about, and whose findings it shows."""

    run_id: str  # the run asked for
    findings_run_id: str  # the latest validated run at or before it (run_id itself when its rules ran)
    previous_run_id: str | None  # the validated run before findings_run_id, to compare with


@dataclass(frozen=True)
class CheckResult:
    """One dq.check_result row: a rule on one source and centre."""

    rule_id: str
    source_id: str
    centre_id: str | None
    failing_rows: int
    denominator: int
    threshold: float
    status: str
    message: str | None = None
    waived_rows: int = 0  # failing rows a centre confirmed as true (not in failing_rows)


@dataclass
class RuleLine:
    """A rule over the whole run: catalogue columns, summed counts, run-level status."""

    rule_id: str
    category: str | None
    subcategory: str | None
    level: str | None
    severity: str | None
    description: str | None
    threshold: float | None  # the catalogue's
    status: str
    failing_rows: int | None = None  # None: nothing was judged
    denominator: int | None = None
    waived_rows: int = 0
    overrides: list[tuple[str, float]] = field(default_factory=list)  # (source, threshold) differing
    notes: list[str] = field(default_factory=list)  # why not applicable, or the error

    @property
    def percent(self) -> float | None:
        if self.failing_rows is None or not self.denominator:
            return None
        return 100.0 * self.failing_rows / self.denominator


@dataclass(frozen=True)
class SourceRule:
    """A rule on one source: its centres' failing rows and denominators summed."""

    source_id: str
    rule_id: str
    failing_rows: int
    denominator: int
    threshold: float | None
    status: str

    @property
    def percent(self) -> float | None:
        return 100.0 * self.failing_rows / self.denominator if self.denominator else None


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    started_at: datetime | None
    issues: int
    rules_failed: int
    validated: bool  # False: the rules did not rerun, the point repeats the last validated run
    sources_failed: tuple[str, ...] = ()  # sources the run could not read (they kept their last good data)


# -- statuses -----------------------------------------------------------------------------------
def rule_status(statuses: Iterable[str]) -> str:
    """A rule's status over many results: error if any erred, else failed if any failed, else
    passed if any passed, else not_applicable."""
    seen = set(statuses)
    return next((s for s in ("error", "failed", "passed") if s in seen), "not_applicable")


def source_rule_status(results: Iterable[CheckResult]) -> str:
    """A rule's status on one source: failing rows and denominators summed over its centres, then
    compared with the threshold as the engine does (failed when failing > threshold x denominator).
    A small centre can fail a rule its source as a whole passes."""
    results = list(results)
    if any(r.status == "error" for r in results):
        return "error"
    judged = [r for r in results if r.status in _JUDGED]
    denominator = sum(r.denominator for r in judged)
    if denominator == 0:
        return "not_applicable"
    threshold = max(r.threshold for r in judged)  # one per source (after its override)
    tolerated = round(threshold * denominator, THRESHOLD_DIGITS)  # as the engine rounds it: 0.58 x 50 tolerates 29 rows
    return "failed" if sum(r.failing_rows for r in judged) > tolerated else "passed"


def summarise_rules(catalogue: dict[str, dict[str, Any]], results: Sequence[CheckResult],
                    *, with_unrun: bool) -> list[RuleLine]:
    """One line per rule with results (and, with_unrun, per catalogue rule without any)."""
    by_rule: dict[str, list[CheckResult]] = defaultdict(list)
    for result in results:
        by_rule[result.rule_id].append(result)
    rule_ids = sorted(set(by_rule) | (set(catalogue) if with_unrun else set()))
    lines = []
    for rule_id in rule_ids:
        meta = catalogue.get(rule_id, {})
        rows = by_rule.get(rule_id, [])
        judged = [r for r in rows if r.status in _JUDGED]
        line = RuleLine(rule_id, meta.get("category"), meta.get("subcategory"), meta.get("level"),
                        meta.get("severity"), meta.get("description"), meta.get("threshold"),
                        rule_status(r.status for r in rows))
        if judged:
            line.failing_rows = sum(r.failing_rows for r in judged)
            line.denominator = sum(r.denominator for r in judged)
            line.waived_rows = sum(r.waived_rows for r in judged)
        line.overrides = sorted({(r.source_id, r.threshold) for r in rows if r.threshold != line.threshold})
        line.notes = sorted({f"{r.source_id}: {r.message}" for r in rows if r.message and r.status not in _JUDGED})
        if not rows:
            line.notes = ["no result in this run"]
        if not meta:
            line.notes.append("no longer in the rule catalogue")
        lines.append(line)
    return lines


def kahn_grid(lines: Iterable[RuleLine]) -> dict[tuple[str, str], Counter[str]]:
    """Rules per Kahn category x subcategory, counted by run-level status (and `total`)."""
    grid: dict[tuple[str, str], Counter[str]] = {(c, s): Counter() for c in CATEGORIES for s in SUBCATEGORIES}
    for line in lines:
        cell = grid.get((line.category or "", line.subcategory or ""))
        if cell is not None:  # a rule no longer catalogued has no category to count under
            cell[line.status] += 1
            cell["total"] += 1
    return grid


def per_source(results: Sequence[CheckResult]) -> dict[str, dict[str, SourceRule]]:
    """source -> rule -> the rule's status on that source."""
    grouped: dict[tuple[str, str], list[CheckResult]] = defaultdict(list)
    for result in results:
        grouped[(result.source_id, result.rule_id)].append(result)
    sources: dict[str, dict[str, SourceRule]] = defaultdict(dict)
    for (source_id, rule_id), rows in sorted(grouped.items()):
        judged = [r for r in rows if r.status in _JUDGED]
        sources[source_id][rule_id] = SourceRule(
            source_id, rule_id, sum(r.failing_rows for r in judged), sum(r.denominator for r in judged),
            max((r.threshold for r in judged), default=None), source_rule_status(rows))
    return dict(sources)


# -- reading the warehouse ----------------------------------------------------------------------
def _records(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _runs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, bool]]:
    """Every run in meta.run, oldest first, and whether its rules ran (it has check results)."""
    return [(run_id, bool(validated)) for run_id, validated in con.execute("""
        SELECT run_id, run_id IN (SELECT DISTINCT run_id FROM dq.check_result) AS validated
        FROM meta.run ORDER BY started_at, run_id""").fetchall()]


def validated_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs whose rules ran, oldest first."""
    return [run_id for run_id, validated in _runs(con) if validated]


def choose_run(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> RunChoice:
    """The run to report on (default: the latest in meta.run) and the validated runs its page compares."""
    runs = _runs(con)
    if not runs:
        raise UnknownRun("the warehouse has no run yet: run 'rtw run' first")
    ids = [r for r, _ in runs]
    if run_id is None:
        run_id = ids[-1]
    elif run_id not in ids:
        raise UnknownRun(f"no run {run_id!r} in meta.run; the latest runs: {', '.join(reversed(ids[-5:]))}")
    validated = [r for r, v in runs[: ids.index(run_id) + 1] if v]
    if not validated:
        raise UnknownRun(f"the quality rules have not run yet at run {run_id}: no findings to report")
    return RunChoice(run_id, validated[-1], validated[-2] if len(validated) > 1 else None)


def _catalogue(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in _records(con, "SELECT * FROM dq.check")}


def _results(con: duckdb.DuckDBPyConnection, run_id: str) -> list[CheckResult]:
    return [CheckResult(*row) for row in con.execute(
        "SELECT rule_id, source_id, centre_id, failing_rows, denominator, threshold, status, message, "
        "coalesce(waived_rows, 0) FROM dq.check_result WHERE run_id = ? ORDER BY rule_id, source_id, centre_id",
        [run_id]).fetchall()]


# Records held back in a run: the quarantine (current run only) plus what it is built from.
_HELD = """
    SELECT source_id, centre_id, source_record_key FROM dq.quarantine WHERE run_id = $run
    UNION
    SELECT source_id, centre_id, source_record_key FROM dq.issue WHERE run_id = $run AND severity = 'error'
"""

_CENTRES = f"""
WITH judged AS (   -- one row per source x centre: the most records any rule judged there
    SELECT source_id, centre_id, max(denominator) AS records_checked,
           list(DISTINCT rule_id ORDER BY rule_id) FILTER (WHERE status = 'failed') AS rules_failed
    FROM dq.check_result WHERE run_id = $run GROUP BY ALL
), issues AS (
    SELECT source_id, centre_id, count(*) AS issues FROM dq.issue WHERE run_id = $run GROUP BY ALL
), held AS (
    SELECT source_id, centre_id, count(*) AS held_back FROM ({_HELD}) GROUP BY ALL
), centres AS (
    SELECT source_id, centre_id FROM judged UNION SELECT source_id, centre_id FROM issues
    UNION SELECT source_id, centre_id FROM held
)
SELECT c.source_id, c.centre_id, coalesce(j.records_checked, 0) AS records_checked,
       coalesce(i.issues, 0) AS issues, coalesce(h.held_back, 0) AS held_back,
       coalesce(j.rules_failed, []) AS rules_failed
FROM centres c
LEFT JOIN judged j ON j.source_id = c.source_id AND j.centre_id IS NOT DISTINCT FROM c.centre_id
LEFT JOIN issues i ON i.source_id = c.source_id AND i.centre_id IS NOT DISTINCT FROM c.centre_id
LEFT JOIN held h ON h.source_id = c.source_id AND h.centre_id IS NOT DISTINCT FROM c.centre_id
WHERE coalesce(j.records_checked, 0) + coalesce(i.issues, 0) + coalesce(h.held_back, 0) > 0
ORDER BY c.source_id, c.centre_id NULLS LAST
"""

# An issue is the same issue in two runs when rule, source, record and field are. One that is
# gone is resolved only if its rule judged that source again; an erring or switched-off rule
# says nothing about it. One the centre confirmed is waived (dq.waived_issue), not resolved.
_CHANGES = """
WITH now AS (SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = $now),
before AS (SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = $before),
rechecked AS (
    SELECT DISTINCT rule_id, source_id FROM dq.check_result WHERE run_id = $now AND status IN ('passed', 'failed')
), waived AS (
    SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.waived_issue WHERE run_id = $now
), paired AS (
    SELECT coalesce(n.rule_id, b.rule_id) AS rule_id, coalesce(n.source_id, b.source_id) AS source_id,
           n.rule_id IS NOT NULL AS is_now, b.rule_id IS NOT NULL AS was_before,
           EXISTS (SELECT 1 FROM waived w WHERE w.rule_id = b.rule_id AND w.source_id = b.source_id
                   AND w.source_record_key = b.source_record_key AND w.field IS NOT DISTINCT FROM b.field) AS is_waived
    FROM now n FULL JOIN before b
      ON n.rule_id = b.rule_id AND n.source_id = b.source_id AND n.source_record_key = b.source_record_key
     AND n.field IS NOT DISTINCT FROM b.field
)
SELECT p.rule_id,
       count(*) FILTER (WHERE is_now AND NOT was_before) AS new,
       count(*) FILTER (WHERE was_before AND NOT is_now AND NOT is_waived AND r.rule_id IS NOT NULL) AS resolved,
       count(*) FILTER (WHERE is_now AND was_before) AS persisting,
       count(*) FILTER (WHERE was_before AND NOT is_now AND NOT is_waived AND r.rule_id IS NULL) AS not_rechecked,
       count(*) FILTER (WHERE was_before AND NOT is_now AND is_waived) AS waived
FROM paired p LEFT JOIN rechecked r USING (rule_id, source_id)
GROUP BY p.rule_id ORDER BY p.rule_id
"""


def _changes(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> list[dict[str, Any]]:
    if choice.previous_run_id is None:
        return []
    return _records(con, _CHANGES.replace("$now", "$1").replace("$before", "$2"),
                    [choice.findings_run_id, choice.previous_run_id])


def _trend(con: duckdb.DuckDBPyConnection) -> list[TrendPoint]:
    """Issues and failed rules per run; a run that did not validate repeats the last that did."""
    issues = issue_spans.issues_per_run(con)
    statuses: dict[str, list[list[str]]] = defaultdict(list)  # run -> each rule's distinct statuses
    for run_id, rule_statuses in con.execute(
            "SELECT run_id, list(DISTINCT status) FROM dq.check_result GROUP BY run_id, rule_id").fetchall():
        statuses[run_id].append(rule_statuses)
    points: list[TrendPoint] = []
    last: TrendPoint | None = None
    for run_id, started_at, sources_failed in con.execute(
            "SELECT run_id, started_at, coalesce(sources_failed, []) FROM meta.run ORDER BY started_at, run_id"
            ).fetchall():
        if run_id in statuses:
            failed = sum(rule_status(s) == "failed" for s in statuses[run_id])
            last = TrendPoint(run_id, started_at, issues.get(run_id, 0), failed, True, tuple(sources_failed))
            points.append(last)
        elif last is not None:
            points.append(TrendPoint(run_id, started_at, last.issues, last.rules_failed, False,
                                     tuple(sources_failed)))
    return points


def _about_the_warehouse(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> bool:
    """Whether the page's findings are the warehouse's own (its latest validation), not an older run's."""
    return validated_runs(con)[-1] == choice.findings_run_id


def _held_back_endpoints(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> list[dict[str, Any]] | None:
    """marts.held_back_endpoints when the page is about the current warehouse's findings; None otherwise
    (an older run, or a warehouse without the mart)."""
    if not in_warehouse(con, "marts.held_back_endpoints") or not _about_the_warehouse(con, choice):
        return None
    return _records(con, "SELECT * FROM marts.held_back_endpoints ORDER BY endpoint, source_id, centre_id")


def _gx_judged_by(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> dict[str, list[str]]:
    """The runs whose GX findings the page shows, with what each judged (judged_labels): when the page
    is about the current warehouse, the findings of a source's table whose rows did not change are those
    of the run that judged them (etl/quality/gx_memo.py), and so are their Data Docs."""
    if not in_warehouse(con, "dq.gx_judged") or not _about_the_warehouse(con, choice):
        return {}
    return judged_labels(con.execute("SELECT run_id, source_id, table_name FROM dq.gx_judged").fetchall())


def judged_labels(judged: Iterable[tuple[str, str, str]]) -> dict[str, list[str]]:
    """run -> what its Data Docs hold, from (run, source, table) rows: a source whose every table that run
    judged is named alone (`iltb`); else with the tables (`iltb (follow_up)`), or those it did not judge
    when fewer (`iltb (all but follow_up)`). A source named alone in two runs would send a reader to the
    older one for rows that changed since."""
    tables: dict[str, set[str]] = defaultdict(set)
    by_run: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for run_id, source_id, table in judged:
        tables[source_id].add(table)
        by_run[run_id][source_id].add(table)
    labels: dict[str, list[str]] = {}
    for run_id in sorted(by_run):
        labels[run_id] = []
        for source_id, judged_here in sorted(by_run[run_id].items()):
            others = tables[source_id] - judged_here
            if not others:
                labels[run_id].append(source_id)
            elif len(others) < len(judged_here):
                labels[run_id].append(f"{source_id} (all but {', '.join(sorted(others))})")
            else:
                labels[run_id].append(f"{source_id} ({', '.join(sorted(judged_here))})")
    return labels


def _source_summaries(run: dict[str, Any], sources: dict[str, dict[str, SourceRule]],
                      centres: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per source: its rule statuses counted, open issues, records held back, and what the run did to it."""
    in_run = {s: state for state in ("changed", "unchanged", "failed") for s in run[f"sources_{state}"] or []}
    summaries = []
    for source_id in sorted(set(sources) | set(in_run)):
        statuses = Counter(rule.status for rule in sources.get(source_id, {}).values())
        summaries.append({
            "source_id": source_id, "in_run": in_run.get(source_id, "–"), **{s: statuses[s] for s in STATUSES},
            "issues": sum(c["issues"] for c in centres if c["source_id"] == source_id),
            "held_back": sum(c["held_back"] for c in centres if c["source_id"] == source_id)})
    return summaries


def _link_candidates(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> list[dict[str, Any]] | None:
    """The clerical review list (dq.link_candidate), strongest first; None when the report is of an
    older run (the list holds the latest linkage only)."""
    rows = _records(con, "SELECT * FROM dq.link_candidate ORDER BY match_probability DESC, source_id_l, "
                         "source_patient_pseudonym_l, source_id_r, source_patient_pseudonym_r")
    if rows and rows[0]["run_id"] != choice.findings_run_id:
        return None
    for row in rows:
        row["evidence"] = json.loads(row["evidence"])
    return rows


def _read_report(con: duckdb.DuckDBPyConnection, choice: RunChoice) -> dict[str, Any]:
    findings = choice.findings_run_id
    run = _records(con, "SELECT * FROM meta.run WHERE run_id = ?", [choice.run_id])[0]
    results = _results(con, findings)
    lines = summarise_rules(_catalogue(con), results, with_unrun=validated_runs(con)[-1] == findings)
    sources = per_source(results)
    centres = _records(con, _CENTRES.replace("$run", "$1"), [findings])
    changes = _changes(con, choice)
    statuses = Counter(line.status for line in lines)
    endpoints = _held_back_endpoints(con, choice)
    as_of = as_of_for(con, choice.run_id)
    queries = queries_as_of(con, findings, as_of)
    waived = con.execute("SELECT count(*) FROM dq.waived_issue WHERE run_id = ?", [findings]).fetchone()
    return {
        "choice": choice, "run": run, "rules": lines, "grid": kahn_grid(lines), "sources": sources,
        "source_summaries": _source_summaries(run, sources, centres), "centres": centres, "changes": changes,
        "change_totals": {k: sum(r[k] for r in changes)
                          for k in ("new", "resolved", "persisting", "not_rechecked", "waived")},
        "trend": _trend(con),
        "held_back_endpoints": endpoints,
        "link_candidates": _link_candidates(con, choice),
        "query_centres": per_centre(queries), "queries_as_of": as_of,
        "corrected_still_present": [q for q in queries if q.response == "corrected" and q.is_present],
        "waivers": _attention_first(waivers(con, findings, as_of)), "waived_next_run": WAIVED_NEXT_RUN,
        "query_trend": age_trend(con, validated_runs(con)),
        "notices": _records(con, "SELECT source_id, notice FROM meta.source_notice WHERE run_id = ? "
                                 "ORDER BY source_id, notice", [choice.run_id]),
        "totals": {"rules": len(lines), **{s: statuses[s] for s in STATUSES},
                   "issues": sum(c["issues"] for c in centres), "held_back": sum(c["held_back"] for c in centres),
                   "waived": waived[0] if waived else 0,
                   **_endpoint_totals(endpoints)},
    }


def _attention_first(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The waivers that no longer hold (lapsed, not found) before those that do, each in its order: the page
    shows the first LISTED of thousands."""
    return sorted(found, key=lambda w: w["status"] in ("waived", WAIVED_NEXT_RUN))


def _endpoint_totals(endpoints: Sequence[dict[str, Any]] | None) -> dict[str, int | None]:
    """Records held back that carry an endpoint, and those that may (refused while being read, endpoint
    `unknown`): counted together, a follow-up with a wrong date would read as a death held back."""
    if endpoints is None:
        return {"endpoints_held_back": None, "endpoints_possibly_held_back": None}
    unknown = sum(e["n_records"] for e in endpoints if e["endpoint"] == "unknown")
    return {"endpoints_held_back": sum(e["n_records"] for e in endpoints) - unknown,
            "endpoints_possibly_held_back": unknown}


# -- rendering ----------------------------------------------------------------------------------
def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "–"


def _share(value: float | None) -> str:
    """A percentage for people: 2.5 %, 0.04 %, 100 %."""
    if value is None:
        return "–"
    if 0 < value < 0.005:  # a few failing rows among many must not read as 0 %
        return "< 0.01 %"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " %"


def _shared_days(points: Sequence[TrendPoint | AgePoint]) -> set[str]:
    """The days (UTC) on which more than one of the chart's runs started."""
    days = Counter(p.started_at.astimezone(UTC).strftime("%Y-%m-%d") for p in points if p.started_at)
    return {day for day, runs in days.items() if runs > 1}


def _run_label(point: TrendPoint | AgePoint, i: int, count: int, x: float, axis_y: int, shared_days: set[str]) -> str:
    """The run's date under the axis, for at most 12 runs of a chart and the last; else nothing. A run
    started on a day with another (a rerun after a corrected export) has its time below: one label
    for two points did not say which was which."""
    if i % (math.ceil(count / 12) or 1) and i != count - 1:
        return ""
    if point.started_at is None:
        return f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle">{html.escape(point.run_id[:8])}</text>'
    started = point.started_at.astimezone(UTC)
    time = (f'<tspan x="{x:.1f}" dy="12">{started:%H:%M}</tspan>'
            if started.strftime("%Y-%m-%d") in shared_days else "")
    return f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle">{started:%d %b}{time}</text>'


def _why_not_rerun(point: TrendPoint) -> str:
    """A run whose rules did not rerun either had nothing new or could not read what was new."""
    if point.sources_failed:
        return f"{', '.join(point.sources_failed)} failed, nothing else changed"
    return "nothing changed"


def trend_svg(points: Sequence[TrendPoint]) -> str:
    """Two stacked line charts, open issues and rules failed per run, as inline SVG (no script, no font)."""
    width, left, right = 760, 56, 24
    panels = {"issues": ("open issues", 24, 112, "#1f5fa8"), "rules_failed": ("rules failed", 168, 80, "#b3261e")}
    axis_y = 168 + 80 + 18
    step = (width - left - right) / max(len(points) - 1, 1)
    shared_days = _shared_days(points)
    peaks = {key: max([getattr(p, key) for p in points] + [1]) for key in panels}

    def x(i: int) -> float:
        return left + i * step if len(points) > 1 else (left + width - right) / 2

    def y(key: str, value: int) -> float:
        _, top, height, _ = panels[key]
        return top + height - height * value / peaks[key]

    parts = [f'<svg id="trend-chart" viewBox="0 0 {width} {axis_y + 24}" width="{width}" height="{axis_y + 24}" '
             f'role="img" aria-label="open issues and rules failed per run" font-size="11">']
    for key, (title, top, height, colour) in panels.items():
        line = " ".join(f"{x(i):.1f},{y(key, getattr(p, key)):.1f}" for i, p in enumerate(points))
        parts.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{title}</text>'
                     f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peaks[key]}</text>'
                     f'<text x="{left - 6}" y="{top + height + 4}" text-anchor="end">0</text>'
                     f'<line x1="{left}" y1="{top + height}" x2="{width - right}" y2="{top + height}" stroke="#99a"/>'
                     f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for i, p in enumerate(points):
        run_id = html.escape(p.run_id)
        note = "" if p.validated else f" (rules not rerun: {html.escape(_why_not_rerun(p))})"
        dots = "".join(  # hollow when the rules did not rerun in that run
            f'<circle cx="{x(i):.1f}" cy="{y(key, getattr(p, key)):.1f}" r="4" stroke="{colour}" '
            f'stroke-width="1.5" fill="{colour if p.validated else "#fff"}"/>'
            for key, (_, _, _, colour) in panels.items())
        parts.append(f'<g class="run-point" data-run-id="{run_id}" data-issues="{p.issues}" '
                     f'data-rules-failed="{p.rules_failed}" data-validated="{str(p.validated).lower()}">'
                     f'<title>{run_id}: {p.issues} open issues, {p.rules_failed} rules failed{note}</title>{dots}</g>')
        parts.append(_run_label(p, i, len(points), x(i), axis_y, shared_days))
    parts.append("</svg>")
    return "".join(parts)


def query_age_svg(points: Sequence[AgePoint]) -> str:
    """Median and oldest age of the open queries per validated run, in days, as inline SVG."""
    width, left, right, top, height = 760, 56, 24, 24, 120
    axis_y = top + height + 18
    step = (width - left - right) / max(len(points) - 1, 1)
    shared_days = _shared_days(points)
    peak = max([p.oldest_age_days or 0 for p in points] + [1])

    def x(i: int) -> float:
        return left + i * step if len(points) > 1 else (left + width - right) / 2

    def y(days: float) -> float:
        return top + height - height * days / peak

    parts = [f'<svg id="query-age-chart" viewBox="0 0 {width} {axis_y + 24}" width="{width}" height="{axis_y + 24}" '
             f'role="img" aria-label="age of open queries per run, in days" font-size="11">',
             f'<text x="{left}" y="{top - 8}" font-weight="bold">age of open queries (days): '
             f'<tspan fill="#1f5fa8">median</tspan>, <tspan fill="#b3261e">oldest</tspan></text>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>'
             f'<text x="{left - 6}" y="{top + height + 4}" text-anchor="end">0</text>'
             f'<line x1="{left}" y1="{top + height}" x2="{width - right}" y2="{top + height}" stroke="#99a"/>']
    for key, colour in (("median_age_days", "#1f5fa8"), ("oldest_age_days", "#b3261e")):
        line = " ".join(f"{x(i):.1f},{y(getattr(p, key) or 0):.1f}" for i, p in enumerate(points))
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for i, p in enumerate(points):
        run_id = html.escape(p.run_id)
        median = "–" if p.median_age_days is None else f"{p.median_age_days:g}"
        oldest = "–" if p.oldest_age_days is None else str(p.oldest_age_days)
        parts.append(f'<g class="query-age-point" data-run-id="{run_id}" data-open="{p.still_open}" '
                     f'data-median="{median}" data-oldest="{oldest}"><title>{run_id}: {p.still_open} open queries, '
                     f'median age {median} days, oldest {oldest} days</title>'
                     f'<circle cx="{x(i):.1f}" cy="{y(p.median_age_days or 0):.1f}" r="4" fill="#1f5fa8"/>'
                     f'<circle cx="{x(i):.1f}" cy="{y(p.oldest_age_days or 0):.1f}" r="4" fill="#b3261e"/></g>')
        parts.append(_run_label(p, i, len(points), x(i), axis_y, shared_days))
    parts.append("</svg>")
    return "".join(parts)


@functools.cache  # compiled once a process: a process that runs many nights (a test session) compiles it once
def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(when=_when, share=_share)
    return environment


def _place_attachments(attachments: Sequence[tuple[str, Path]], folder: Path) -> list[dict[str, Any]]:
    """Copy each attachment into <folder>/more/ (unless it already lies under folder); return the links."""
    links: list[dict[str, Any]] = []
    taken: set[str] = set()
    for title, path in attachments:
        if not path.is_file():  # a missing extra page must not cost the quality officers their report
            log.warning("report attachment %r: %s is not a file; left out", title, path)
            continue
        if path.resolve().is_relative_to(folder.resolve()):
            href = _relative_href(path, folder)
        else:
            name, copies = path.name, 1
            while name in taken:  # two attachments named alike: number the later ones
                copies += 1
                name = f"{copies}-{path.name}"
            taken.add(name)
            fsio.copy_file(path, folder / "more" / name)
            href = f"more/{name}"
        links.append({"title": title, "href": href, "is_image": path.suffix.lower() in _IMAGE_SUFFIXES})
    return links


# The CSVs beside the page, each every row of a list the page shows the first LISTED of.
LIST_FILES = {"corrected_still_present": "corrected_still_present.csv", "waivers": "waivers.csv",
              "held_back_endpoints": "held_back_records.csv", "link_candidates": "link_candidates.csv"}


def _list_rows(context: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Each list of records of the page, whole, as (header, rows) for its CSV: the columns of its table,
    an endpoint row's record keys one a line."""
    return {
        "corrected_still_present": (
            ("centre", "source", "record (pseudonymised key)", "rule", "field", "first sent (days ago)"),
            [(q.centre_id, q.source_id, q.source_record_key, q.rule_id, q.field, q.age_days)
             for q in context["corrected_still_present"]]),
        "waivers": (
            ("centre", "source", "record (pseudonymised key)", "rule", "field", "confirmed at", "imported by",
             "batch", "in this run"),
            [(w["centre_id"], w["source_id"], w["source_record_key"], w["rule_id"], w["field"],
              _when(w["confirmed_at"]), w["imported_by"], w["batch_id"], w["status"]) for w in context["waivers"]]),
        "held_back_endpoints": (
            ("endpoint", "source", "centre", "record (pseudonymised key)", "held back by"),
            [(e["endpoint"], e["source_id"], e["centre_id"], key, " ".join(e["rule_ids"]))
             for e in context["held_back_endpoints"] or [] for key in e["source_record_keys"]]),
        "link_candidates": (
            ("patient 1", "patient 2", "match probability", "match weight", "evidence", "decision"),
            [(f"{c['source_id_l']}:{c['source_patient_pseudonym_l']}",
              f"{c['source_id_r']}:{c['source_patient_pseudonym_r']}", f"{c['match_probability']:.3f}",
              f"{c['match_weight']:.1f}", "; ".join(f"{k}: {v}" for k, v in c["evidence"].items()), c["decision"])
             for c in context["link_candidates"] or []]),
    }


def _write_lists(folder: Path, context: Mapping[str, Any]) -> None:
    """Every row of each list of records the page shows in part, as a CSV beside the page (UTF-8 with a
    BOM, cells a spreadsheet never runs as formulas, as the query lists); an empty list's CSV of an
    earlier writing of the page goes."""
    for name, (header, rows) in _list_rows(context).items():
        path = folder / LIST_FILES[name]
        if not rows:
            path.unlink(missing_ok=True)
            continue
        with fsio.written_atomically(path) as partial, partial.open("w", newline="", encoding="utf-8-sig") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows([["" if v is None else spreadsheet_text(v) if isinstance(v, str) else v for v in row]
                              for row in rows])


def _relative_href(target: Path, folder: Path) -> str:
    return Path(os.path.relpath(target.resolve(), folder.resolve())).as_posix()


def data_docs_pages(index: Path, folder: Path) -> list[dict[str, str]]:
    """The validation pages of the Data Docs whose index is `index`, as links from `folder`: a table's suite
    (`core.diagnosis`), and its batch when it has several, each page's href: a shortcut past the index (whose
    table a script draws: Data Docs written before etl/quality/data_docs.py loaded it from a CDN, and offline
    their index listed no page). GX files them under
    validations/<suite's name, a folder per dot>/<run name>/<time>/<batch>.html."""
    found = sorted((path.relative_to(index.parent / "validations").parts, path)
                   for path in (index.parent / "validations").rglob("*.html"))
    per_suite = Counter(".".join(parts[:-3]) for parts, _ in found)
    pages, seen = [], Counter[str]()
    for parts, path in found:
        suite = ".".join(parts[:-3])
        seen[suite] += 1
        label = suite if per_suite[suite] == 1 else f"{suite} (batch {seen[suite]})"
        pages.append({"suite": suite, "label": label, "href": _relative_href(path, folder)})
    return pages


def _point_latest(reports_dir: Path, run_id: str, newer_runs: Sequence[str]) -> None:
    """reports/latest -> <run_id> (relative), swapped atomically so a reader never finds it missing.
    Rewriting an older run's page leaves `latest` on a newer run that has a page."""
    latest = reports_dir / "latest"
    if latest.is_symlink() and os.readlink(latest) in newer_runs and (latest / "index.html").exists():
        return
    fsio.swap_symlink(latest, run_id)


def build_report(warehouse: Path, reports_dir: Path, run_id: str | None = None, *,
                 data_docs: Path | None = None, attachments: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write <reports_dir>/<run_id>/index.html (default: the latest run in meta.run), point
    <reports_dir>/latest at it and return the page.

    data_docs: a GX Data Docs index.html to link to (default: <reports_dir>/<findings run>/data_docs/
    index.html when it exists, where the pipeline writes them; beside it, those of the earlier runs
    whose GX findings still hold for sources that did not change). attachments: (title, file) pages or
    images copied next to the page and linked under "More".
    """
    con = connect_duckdb(warehouse, read_only=True)
    try:
        choice = choose_run(con, run_id)
        context = _read_report(con, choice)
        ids = [r for r, _ in _runs(con)]
        judged = _gx_judged_by(con, choice)
    finally:
        con.close()
    folder = fsio.private_folder(reports_dir / choice.run_id)
    docs = data_docs or reports_dir / choice.findings_run_id / "data_docs" / "index.html"
    if data_docs is not None and not data_docs.is_file():
        log.warning("GX Data Docs %s not found; the report does not link them", data_docs)
    earlier = [{"run_id": run, "sources": sources, "href": _relative_href(path, folder),
                "pages": data_docs_pages(path, folder)}
               for run, sources in judged.items() if run != choice.findings_run_id
               if (path := reports_dir / run / "data_docs" / "index.html").is_file()]
    page_html = _environment().get_template("report.html.j2").render(
        **context, trend_svg=trend_svg(context["trend"]), query_age_svg=query_age_svg(context["query_trend"]),
        categories=CATEGORIES, subcategories=SUBCATEGORIES,
        data_docs=_relative_href(docs, folder) if docs.is_file() else None, earlier_data_docs=earlier,
        data_docs_pages=data_docs_pages(docs, folder) if docs.is_file() else [],
        data_docs_scope=judged.get(choice.findings_run_id, []),
        attachments=_place_attachments(attachments, folder), generated_at=datetime.now(UTC),
        listed=LISTED, keys_listed=KEYS_LISTED, list_files=LIST_FILES)
    _write_lists(folder, context)  # before the page that links them
    page = fsio.write_text(folder / "index.html", page_html)  # a reader never sees half a page
    _point_latest(reports_dir, choice.run_id, ids[ids.index(choice.run_id) + 1:])
    return page


# -- file names an earlier version wrote in clear -------------------------------------------------
_TEXT_SUFFIXES = {".html", ".csv", ".json", ".txt"}  # a page, a query list, GX's Data Docs data


def show_file_names(reports_dir: Path, shown: Mapping[str, str], *, runs: Iterable[str],
                    in_clear: Mapping[str, re.Pattern[str]] | None = None) -> list[Path]:
    """The report files of `runs` with each file name a version before names were shown wrote in clear
    (a key of `shown`) written as it is shown now (its value, etl/extract/file_names.py): pages, query
    lists and the workbooks' cells. The files that changed. Longest names first: none is cut inside another.
    `in_clear`: names shown now (a record set `Verlauf_{patient}`) by the pattern of what they were written
    before (`Verlauf_123456`, not known one by one: the warehouse never kept them)."""
    if not shown and not in_clear:
        return []
    texts = {**shown, **{html.escape(clear): html.escape(name) for clear, name in shown.items()}}
    pattern = re.compile("|".join(re.escape(n) for n in sorted(texts, key=lambda n: (-len(n), n))).encode()) \
        if texts else None
    patterns = [(clear, html.escape(name)) for name, clear in sorted((in_clear or {}).items())]

    def rewritten(data: bytes) -> bytes:
        if pattern is not None:
            data = pattern.sub(lambda m: texts[m.group().decode()].encode(), data)
        if patterns:
            text = data.decode("utf-8", "surrogateescape")
            for clear, name in patterns:
                text = clear.sub(name.replace("\\", r"\\"), text)
            data = text.encode("utf-8", "surrogateescape")
        return data

    changed = []
    for run_id in runs:
        folder = reports_dir / run_id
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) \
                if folder.is_dir() and not folder.is_symlink() else []:
            suffix = path.suffix.lower()
            if suffix == ".xlsx":
                if _show_in_workbook(path, rewritten):
                    changed.append(path)
            elif suffix in _TEXT_SUFFIXES and (data := path.read_bytes()) != (new := rewritten(data)):
                fsio.write_bytes(path, new)
                changed.append(path)
    return changed


def _show_in_workbook(path: Path, rewritten: Callable[[bytes], bytes]) -> bool:
    """A workbook (a zip of XML parts) with each part rewritten; False when no part changes."""
    with zipfile.ZipFile(path) as workbook:
        parts = [(info, workbook.read(info)) for info in workbook.infolist()]
    new = [(info, rewritten(data)) for info, data in parts]
    if all(a[1] == b[1] for a, b in zip(parts, new, strict=True)):
        return False
    with fsio.written_atomically(path) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as workbook:
        for info, data in new:
            workbook.writestr(info, data)
    return True
