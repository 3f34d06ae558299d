"""The validation report rendered in real headless Chromium, and the query lists sent to centres."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook

from etl import pipeline
from etl.config import Home, resolve_home
from etl.quality.queries import UnknownCentre, safe_cell, write_centre_queries
from etl.quality.report import build_report, rule_status
from etl.synth import generate

KEY = "report-test-key"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is needed for the report tests: apt-get install chromium (.ci/run does)"
    return found


def _render(page: Path, tmp_path: Path) -> tuple[str, Path]:
    """The DOM Chromium builds from the page, and a screenshot of it."""
    shot = tmp_path / "report.png"
    profile = tmp_path / "profile"
    base = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return dom.stdout, shot


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Home, list[str]]:
    """A first import, then a corrected registry export: some issues resolved, others persisting."""
    home = resolve_home(tmp_path_factory.mktemp("report")).ensure()
    generate(home.root, patients=300, seed=42)
    first = pipeline.run(home, key_value=KEY)
    bad = _query(home, "SELECT DISTINCT value FROM dq.issue WHERE run_id = ? AND source_id = 'registry_it' "
                       "AND field = 'laterality'", [first["run_id"]])
    export = next((home.landing / "registry_it").glob("*.csv"))
    text = export.read_text(encoding="cp1252")
    for (value,) in bad:
        text = text.replace(f";{value};", ";D;")  # the centre answered the queries: right side
    export.write_text(text, encoding="cp1252")
    second = pipeline.run(home, key_value=KEY)
    return home, [first["run_id"], second["run_id"]]


def _query(home: Home, sql: str, params: list[object]) -> list[tuple]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_rule_status_takes_the_worst_result():
    assert rule_status(["passed", "failed", "not_applicable"]) == "failed"
    assert rule_status(["failed", "error"]) == "error"
    assert rule_status(["not_applicable", "passed"]) == "passed"
    assert rule_status([]) == "not_applicable"


def test_the_report_renders_in_chromium_with_grid_centres_and_changes(two_runs, tmp_path):
    home, (first, second) = two_runs
    page = build_report(home.warehouse, home.reports)
    assert page == home.reports / second / "index.html"
    assert (home.reports / "latest").resolve() == (home.reports / second).resolve()
    dom, shot = _render(page, tmp_path)
    assert f'id="run-id">{second}<' in dom
    # The grid: per Kahn cell, rules counted from dq.check.
    expected = dict(((c, s), n) for c, s, n in _query(
        home, "SELECT category, subcategory, count(*) FROM dq.check GROUP BY ALL", []))
    cells = re.findall(r'data-category="(\w+)" data-subcategory="(\w+)"\s+data-passed="(\d+)" data-failed="(\d+)" '
                       r'data-total="(\d+)"', dom)
    assert len(cells) == 6
    assert {(c, s): int(t) for c, s, _, _, t in cells if int(t)} == expected
    # Per centre: every centre with records judged in the run is listed.
    centres = {c for (c,) in _query(home, "SELECT DISTINCT centre_id FROM dq.check_result WHERE run_id = ? "
                                          "AND denominator > 0 AND centre_id IS NOT NULL", [second])}
    listed = set(re.findall(r'<tr data-centre="([^"]+)"', dom))
    assert centres <= listed and len(centres) > 20
    # Changes: the corrected laterality codes are resolved, the rest persist.
    keys = "SELECT DISTINCT rule_id, source_id, source_record_key, field FROM dq.issue WHERE run_id = ?"
    now, before = set(_query(home, keys, [second])), set(_query(home, keys, [first]))
    assert before - now, "the corrected export should resolve issues"
    assert re.search(rf'data-kind="resolved">{len(before - now)}<', dom)
    assert re.search(rf'data-kind="new">{len(now - before)}<', dom)
    assert re.search(rf'data-kind="persisting">{len(now & before)}<', dom)
    assert dom.count('class="run-point"') == 2  # one point per validated run
    assert 'href="data_docs/index.html"' in dom
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?://', dom)  # offline: nothing fetched
    assert shot.stat().st_size > 10_000


def test_queries_for_a_centre_are_safe_and_readable(two_runs, tmp_path):
    home, (_, second) = two_runs
    centre, expected = _query(home, "SELECT centre_id, count(*) FROM dq.issue WHERE run_id = ? AND centre_id "
                                    "IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1", [second])[0]
    xlsx, csv_path = write_centre_queries(home.warehouse, tmp_path, centre)
    sheet = load_workbook(xlsx).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "patient pseudonym" and len(rows) == expected + 1
    with csv_path.open(encoding="utf-8-sig") as handle:
        assert len(list(csv.reader(handle))) == expected + 1
    with pytest.raises(UnknownCentre, match="not among the centres"):
        write_centre_queries(home.warehouse, tmp_path, "XX-NOWHERE")


def test_formula_like_text_is_neutralised_in_both_files(two_runs, tmp_path):
    home, (_, second) = two_runs
    for dangerous in ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx"]:
        assert safe_cell(dangerous) == "'" + dangerous
    assert safe_cell("9500/3") == "9500/3" and safe_cell(None) == ""
    # A hostile value that reached an issue is written as text.
    work = tmp_path / "warehouse.duckdb"
    shutil.copy(home.warehouse, work)
    con = duckdb.connect(str(work))
    centre = con.execute("SELECT centre_id FROM dq.issue WHERE run_id = ? AND centre_id IS NOT NULL LIMIT 1",
                         [second]).fetchone()[0]
    con.execute("UPDATE dq.issue SET value = '=cmd|'' /C calc''!A0' WHERE run_id = ? AND centre_id = ?",
                [second, centre])
    con.close()
    xlsx, csv_path = write_centre_queries(work, tmp_path / "out", centre)
    cells = [c for row in load_workbook(xlsx).active.iter_rows(min_row=2) for c in row]
    assert all(c.data_type == "s" for c in cells if c.value)
    assert not any(str(c.value).startswith("=") for c in cells)
    assert "'=cmd" in csv_path.read_text(encoding="utf-8-sig")
