"""The validation report: one offline HTML page per validated run, under <home>/reports/<run_id>/.

Read from the warehouse only (dq and meta): the Kahn grid, per-source and per-centre views,
every rule against its threshold, what changed since the previous validated run, a trend over
runs (inline SVG), and a link to the run's GX Data Docs. No CDN, no script: it opens anywhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, FileSystemLoader, select_autoescape

CATEGORIES = ("conformance", "completeness", "plausibility")
SUBCATEGORIES = ("verification", "validation")
_TEMPLATES = Path(__file__).parent / "templates"
# A rule's status over all sources and centres: the worst one wins.
_RANK = {"error": 3, "failed": 2, "passed": 1, "not_applicable": 0}


def rule_status(statuses: Sequence[str]) -> str:
    """error if any result erred, else failed if any failed, else passed if any passed."""
    return max(statuses, key=lambda s: _RANK[s], default="not_applicable")


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def validated_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs that validated, oldest first."""
    return [r for (r,) in con.execute(
        "SELECT run_id FROM meta.run WHERE run_id IN (SELECT DISTINCT run_id FROM dq.check_result) "
        "ORDER BY started_at, run_id").fetchall()]


def _trend_svg(points: list[dict[str, Any]]) -> str:
    width, height, pad = 720, 220, 40
    top = max([p["issues"] for p in points] + [1])
    step = (width - 2 * pad) / max(len(points) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        return pad + i * step, height - pad - (height - 2 * pad) * value / top

    issues = " ".join(f"{x:.1f},{y:.1f}" for i, p in enumerate(points) for x, y in [xy(i, p["issues"])])
    dots = "".join(f'<circle class="run-point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f5fa8">'
                   f'<title>{p["run_id"]}: {p["issues"]} issues, {p["failed"]} rules failed</title></circle>'
                   for i, p in enumerate(points) for x, y in [xy(i, p["issues"])])
    labels = "".join(f'<text x="{xy(i, 0)[0]:.1f}" y="{height - 12}" font-size="10" text-anchor="middle">'
                     f'{p["failed"]} failed</text>' for i, p in enumerate(points))
    return (f'<svg id="trend-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="issues per run">'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#99a"/>'
            f'<text x="{pad}" y="16" font-size="11">issues per run (max {top}); rules failed below</text>'
            f'<polyline points="{issues}" fill="none" stroke="#1f5fa8" stroke-width="2"/>{dots}{labels}</svg>')


def _context(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    runs = validated_runs(con)
    previous = runs[runs.index(run_id) - 1] if run_id in runs and runs.index(run_id) > 0 else None
    run = _records(con, "SELECT * FROM meta.run WHERE run_id = ?", [run_id])[0]
    results = _records(con, "SELECT r.*, c.category, c.subcategory FROM dq.check_result r "
                            "JOIN dq.check c USING (rule_id) WHERE r.run_id = ?", [run_id])
    statuses: dict[str, list[str]] = {}
    for r in results:
        statuses.setdefault(r["rule_id"], []).append(r["status"])
    rules = _records(con, """
        SELECT c.*, sum(r.failing_rows)::BIGINT AS failing, sum(r.denominator)::BIGINT AS denominator,
               round(100.0 * sum(r.failing_rows) / nullif(sum(r.denominator), 0), 2) AS percent,
               string_agg(DISTINCT r.message, '; ') AS message
        FROM dq.check c LEFT JOIN dq.check_result r ON r.rule_id = c.rule_id AND r.run_id = ?
        GROUP BY ALL ORDER BY c.category, c.rule_id""", [run_id])
    for rule in rules:
        rule["status"] = rule_status(statuses.get(rule["rule_id"], []))
    grid = {(c, s): {"passed": 0, "failed": 0, "total": 0} for c in CATEGORIES for s in SUBCATEGORIES}
    for rule in rules:
        cell = grid[(rule["category"], rule["subcategory"])]
        cell["total"] += 1
        cell["passed"] += rule["status"] == "passed"
        cell["failed"] += rule["status"] in ("failed", "error")
    sources = []
    for source_id in sorted({r["source_id"] for r in results}):
        per_rule: dict[str, list[str]] = {}
        for r in results:
            if r["source_id"] == source_id:
                per_rule.setdefault(r["rule_id"], []).append(r["status"])
        verdicts = [rule_status(s) for s in per_rule.values()]
        counts = con.execute("SELECT (SELECT count(*) FROM dq.issue WHERE run_id = ? AND source_id = ?), "
                             "(SELECT count(*) FROM dq.quarantine WHERE source_id = ?)",
                             [run_id, source_id, source_id]).fetchone() or (0, 0)
        sources.append({"source_id": source_id, **{s: verdicts.count(s) for s in _RANK},
                        "issues": counts[0], "quarantined": counts[1]})
    centres = _records(con, """
        WITH judged AS (SELECT source_id, centre_id, max(denominator) AS records,
                               string_agg(DISTINCT rule_id, ', ' ORDER BY rule_id) FILTER (WHERE status = 'failed')
                                   AS rules_failed
                        FROM dq.check_result WHERE run_id = $run GROUP BY ALL),
             issues AS (SELECT source_id, centre_id, count(*) AS issues FROM dq.issue WHERE run_id = $run GROUP BY ALL),
             held AS (SELECT source_id, centre_id, count(*) AS quarantined FROM dq.quarantine GROUP BY ALL)
        SELECT j.source_id, j.centre_id, j.records, coalesce(i.issues, 0) AS issues,
               coalesce(h.quarantined, 0) AS quarantined, coalesce(j.rules_failed, '') AS rules_failed
        FROM judged j
        LEFT JOIN issues i ON i.source_id = j.source_id AND i.centre_id IS NOT DISTINCT FROM j.centre_id
        LEFT JOIN held h ON h.source_id = j.source_id AND h.centre_id IS NOT DISTINCT FROM j.centre_id
        WHERE j.records > 0 ORDER BY j.source_id, j.centre_id""".replace("$run", "?"), [run_id, run_id])
    change_rows: list[dict[str, Any]] = []
    if previous:
        change_rows = _records(con, """
            WITH now AS (SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = ?),
                 before AS (SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = ?)
            SELECT coalesce(n.rule_id, b.rule_id) AS rule_id,
                   count(*) FILTER (WHERE b.rule_id IS NULL) AS new,
                   count(*) FILTER (WHERE n.rule_id IS NULL) AS resolved,
                   count(*) FILTER (WHERE n.rule_id IS NOT NULL AND b.rule_id IS NOT NULL) AS persisting
            FROM now n FULL JOIN before b ON n.rule_id = b.rule_id AND n.source_id = b.source_id
                AND n.source_record_key = b.source_record_key AND n.field IS NOT DISTINCT FROM b.field
            GROUP BY 1 HAVING count(*) FILTER (WHERE b.rule_id IS NULL OR n.rule_id IS NULL) > 0
            ORDER BY 1""", [run_id, previous])
    changes = {k: sum(r[k] for r in change_rows) for k in ("new", "resolved", "persisting")}
    if previous:  # rules whose issues all persisted are not listed, but they count
        changes["persisting"] = (con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue "
            "WHERE run_id = ? INTERSECT SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue "
            "WHERE run_id = ?)", [run_id, previous]).fetchone() or (0,))[0]
    trend = _records(con, """
        SELECT r.run_id, (SELECT count(*) FROM dq.issue i WHERE i.run_id = r.run_id) AS issues,
               (SELECT count(DISTINCT rule_id) FROM dq.check_result c WHERE c.run_id = r.run_id
                AND c.status IN ('failed', 'error')) AS failed
        FROM meta.run r WHERE r.run_id IN (SELECT DISTINCT run_id FROM dq.check_result)
        ORDER BY r.started_at, r.run_id""")
    totals = {"rules": len(rules), "failed": sum(r["status"] in ("failed", "error") for r in rules),
              "issues": sum(s["issues"] for s in sources), "quarantined": sum(s["quarantined"] for s in sources)}
    return {"run": run, "rules": rules, "grid": grid, "categories": CATEGORIES, "subcategories": SUBCATEGORIES,
            "sources": sources, "centres": centres, "previous": previous, "changes": changes,
            "change_rows": change_rows, "trend_svg": _trend_svg(trend), "totals": totals}


def _point_latest(reports_dir: Path, run_id: str) -> None:
    """reports/latest -> <run_id>, swapped atomically (a reader never sees it missing)."""
    temporary = reports_dir / f".latest.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_id, target_is_directory=True)
    os.replace(temporary, reports_dir / "latest")


def build_report(warehouse: Path, reports_dir: Path, run_id: str | None = None, *,
                 attachments: Sequence[tuple[str, Path]] = ()) -> Path:
    """Write <reports_dir>/<run_id>/index.html (default: the latest validated run) and point `latest` at it."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        runs = validated_runs(con)
        if not runs:
            raise ValueError(f"{warehouse} has no validated run to report on yet")
        run_id = run_id or runs[-1]
        if run_id not in runs:
            raise ValueError(f"run {run_id} was not validated; validated runs: {', '.join(runs[-5:])}")
        context = _context(con, run_id)
    finally:
        con.close()
    folder = reports_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for title, path in attachments:
        shutil.copy2(path, folder / path.name)
        links.append((title, path.name))
    docs = folder / "data_docs" / "index.html"
    environment = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = environment.get_template("report.html.j2").render(
        **context, data_docs="data_docs/index.html" if docs.exists() else None, attachments=links)
    page = folder / "index.html"
    page.write_text(html, encoding="utf-8")
    _point_latest(reports_dir, run_id)
    return page
