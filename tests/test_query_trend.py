"""The report's query trend (open queries and their age at each validated run) read in one query for all runs
equals what the page of each run counts (queries_as_of as of that run's moment), on a copy of the shared
synthetic run with batches sent days apart, answers imported and values changed between validated runs, and
a run that validated nothing in between (the moment of the run before it is that run's start). One centre's
queries, read for its reminders, are that centre's of all, also where two sources use one centre code.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import SYNTHETIC_RUN_KEY
from test_query_roundtrip import BASIS, KEY, _answer_xlsx, _change_basis_of_diagnosis

from etl import pipeline
from etl.config import resolve_home
from etl.quality.queries import Selection, send_queries
from etl.quality.query_status import AgePoint, _median, age_trend, as_of_for, queries_as_of
from etl.quality.report import validated_runs
from etl.quality.responses import import_responses

pytestmark = pytest.mark.integration


def _a_shared_code(warehouse: Path) -> list[tuple[str, str]]:
    """The centres (source, code) of a code two sources use: two hospitals."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        centres = con.execute(
            "SELECT DISTINCT source_id, centre_id FROM dq.issue WHERE centre_id = (SELECT min(centre_id) FROM "
            "(SELECT centre_id FROM dq.issue GROUP BY 1 HAVING count(DISTINCT source_id) > 1)) ORDER BY 1").fetchall()
    finally:
        con.close()
    assert len(centres) == 2, centres
    return centres


def _per_run(con: duckdb.DuckDBPyConnection, runs: list[str], now: datetime) -> list[AgePoint]:
    """The trend as each run's page counts its queries: queries_as_of once per run."""
    started = dict(con.execute("SELECT run_id, started_at FROM meta.run").fetchall())
    points = []
    for run_id in runs:
        ages = [q.age_days for q in queries_as_of(con, run_id, as_of_for(con, run_id, now)) if q.is_open]
        points.append(AgePoint(run_id, started.get(run_id), len(ages), _median(ages), max(ages, default=None)))
    return points


@pytest.fixture(scope="module")
def history(synthetic_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three validated runs: queries sent days apart and answered between them, values changed, reopened."""
    root = tmp_path_factory.mktemp("trend")
    shutil.copytree(synthetic_run[0].root, root / "home", symlinks=True)
    home = resolve_home(root / "home")
    today = datetime.now(UTC)
    bo = send_queries(home, "IT-BO01", KEY, now=today - timedelta(days=9))
    send_queries(home, "IT-MI01", KEY, now=today - timedelta(days=4))
    for source, code in _a_shared_code(home.warehouse):
        send_queries(home, code, KEY, source_id=source, now=today - timedelta(days=3))
    _answer_xlsx(bo.xlsx, root / "bo.xlsx", {(BASIS, 44): ("confirmed", None), (BASIS, 95): ("corrected", None)})
    import_responses(home, root / "bo.xlsx", KEY)
    _change_basis_of_diagnosis(home, 44, "1")  # the confirmed value changes: the query is open again
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)  # nothing changed: a run that validates nothing
    again = send_queries(home, "IT-BO01", KEY, selection=Selection.NEW_ONLY, now=today - timedelta(days=2))
    send_queries(home, "IT-MI02", KEY, now=today - timedelta(days=1))
    _answer_xlsx(again.xlsx, root / "again.xlsx", {(BASIS, 44): ("cannot_determine", None)})
    import_responses(home, root / "again.xlsx", KEY)
    _change_basis_of_diagnosis(home, 95, "2")
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    return home.warehouse


@pytest.mark.parametrize("days_later", [0, 30])
def test_the_trend_of_all_runs_at_once_equals_each_run_s_own_count(history, days_later):
    now = datetime.now(UTC) + timedelta(days=days_later)
    con = duckdb.connect(str(history), read_only=True)
    try:
        runs = validated_runs(con)
        (runs_recorded,) = con.execute("SELECT count(*) FROM meta.run").fetchone()
        trend, expected = age_trend(con, runs, now=now), _per_run(con, runs, now)
    finally:
        con.close()
    assert len(runs) == 3 and runs_recorded == 4
    assert trend == expected
    # Open queries at every run, not alike at each, of several ages: counts, medians and the oldest all compared.
    assert all(p.still_open for p in expected) and len({(p.still_open, p.median_age_days) for p in expected}) > 1
    assert all(p.median_age_days != p.oldest_age_days for p in expected)


def test_a_run_asked_twice_or_not_validated_has_its_point_as_each_run_s_own_count(history):
    now = datetime.now(UTC)
    con = duckdb.connect(str(history), read_only=True)
    try:
        runs = [run_id for (run_id,) in con.execute("SELECT run_id FROM meta.run ORDER BY started_at").fetchall()]
        asked = [runs[-1], *runs, runs[1]]
        trend, expected = age_trend(con, asked, now=now), _per_run(con, asked, now)
    finally:
        con.close()
    assert trend == expected and len(trend) == 6


def test_a_warehouse_from_before_the_issue_spans_has_the_same_trend(history, tmp_path):
    """A warehouse not yet published to since dq.issue became spans keeps a row per run and issue."""
    old = tmp_path / "old.duckdb"
    shutil.copy(history, old)
    con = duckdb.connect(str(old))
    try:
        con.execute("CREATE TABLE dq.issue_rows AS SELECT * FROM dq.issue")
        con.execute("DROP VIEW dq.issue")
        con.execute("DROP TABLE dq.issue_span")
        con.execute("ALTER TABLE dq.issue_rows RENAME TO issue")
        runs, now = validated_runs(con), datetime.now(UTC)
        trend, expected = age_trend(con, runs, now=now), _per_run(con, runs, now)
    finally:
        con.close()
    assert trend == expected and all(p.still_open for p in expected)


@pytest.mark.parametrize("days_later", [0, 30])
def test_one_centre_s_queries_are_that_centre_s_of_all(history, days_later):
    as_of = datetime.now(UTC) + timedelta(days=days_later)
    con = duckdb.connect(str(history), read_only=True)
    try:
        run_id = validated_runs(con)[-1]
        every = queries_as_of(con, run_id, as_of)
        centres = sorted({(q.source_id, q.centre_id) for q in every})
        each = {centre: queries_as_of(con, run_id, as_of, centre) for centre in [*centres, ("iltb", "XX99")]}
    finally:
        con.close()
    assert {*_a_shared_code(history), ("registry_it", "IT-BO01")} <= set(centres)
    for centre in centres:
        assert each[centre] == [q for q in every if (q.source_id, q.centre_id) == centre] != []
    assert each[("iltb", "XX99")] == []
    assert any(q.is_open for q in each[("registry_it", "IT-BO01")])


def test_a_query_whose_record_moved_to_another_centre_is_not_the_first_centre_s_open_query(history, tmp_path):
    """A hunt: a patient transferred from IT-MI01 to another centre; the run found their issues there only, yet
    IT-MI01's queries stayed open (sent 3, still open 3, and no reminder possible), counted beside the new centre's:
    one issue open twice. The issue is the same; the query was to a centre that no longer has it."""
    moved = tmp_path / "moved.duckdb"
    shutil.copy(history, moved)
    con = duckdb.connect(str(moved))
    try:
        run_id, now = validated_runs(con)[-1], datetime.now(UTC)
        mine = [q for q in queries_as_of(con, run_id, now, ("registry_it", "IT-MI01")) if q.is_open]
        record = mine[0].source_record_key
        open_before = sum(q.is_open for q in queries_as_of(con, run_id, now))
        con.execute("UPDATE dq.issue_span SET centre_id = 'IT-XX99' WHERE source_id = 'registry_it' "
                    "AND source_record_key = ?", [record])
        after = queries_as_of(con, run_id, now, ("registry_it", "IT-MI01"))
        trend, expected = age_trend(con, validated_runs(con), now=now), _per_run(con, validated_runs(con), now)
    finally:
        con.close()
    assert [q.is_present for q in after if q.source_record_key == record] == [False] * len(
        [q for q in mine if q.source_record_key == record])
    assert [q for q in after if q.is_open] == [q for q in mine if q.source_record_key != record]
    moved_queries = sum(q.source_record_key == record for q in mine)
    assert trend == expected and trend[-1].still_open == open_before - moved_queries
