"""dq.issue kept as spans of runs (etl/quality/issue_spans.py): each run's issues read back as they
were found, a run storing only what changed, and a warehouse from before the spans converted."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import SYNTHETIC_RUN_KEY

from etl import pipeline
from etl.config import WAREHOUSE_SQL_DIR, resolve_home
from etl.quality import issue_spans
from etl.quality.findings import value_hash

COLUMNS = list(issue_spans.ISSUE_COLUMNS)


def _issue(rule: str, record: str, *, centre: str | None = "C1", value: str | None = "x") -> tuple[Any, ...]:
    return (rule, "error", "iltb", centre, "diagnosis", f"p|{record}", "p", "DIAG", 3, "field", value, "wrong")


A, B, C = _issue("R1", "1"), _issue("R2", "2", centre=None, value=None), _issue("R1", "3")
RUNS = {"run-1": [A, B], "run-2": [A, C], "run-3": [A, B], "run-4": [], "run-5": [A]}


def _warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    for ddl in ("meta.sql", "dq.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    return con


def _record(con: duckdb.DuckDBPyConnection, run_id: str, issues: list[tuple[Any, ...]]) -> None:
    con.register("found", pd.DataFrame(issues, columns=COLUMNS).astype(object))
    issue_spans.record(con, run_id, "found")
    con.unregister("found")


def _issues_of(con: duckdb.DuckDBPyConnection, run_id: str) -> set[tuple[Any, ...]]:
    return set(con.execute(f"SELECT {', '.join(COLUMNS)} FROM dq.issue WHERE run_id = ?", [run_id]).fetchall())


def test_each_run_reads_back_its_issues_and_the_spans_hold_what_changed(tmp_path):
    con = _warehouse(tmp_path / "w.duckdb")
    for run_id, issues in RUNS.items():
        _record(con, run_id, issues)
    for run_id, issues in RUNS.items():
        assert _issues_of(con, run_id) == set(issues), run_id
    spans = con.execute("SELECT rule_id, source_record_key, first_validation, last_validation FROM dq.issue_span "
                        "ORDER BY ALL").fetchall()
    # A found by runs 1-3 and again by 5; B (NULL centre and value, equal all the same) by 1 and 3; C by 2.
    assert spans == [("R1", "p|1", 1, 3), ("R1", "p|1", 5, None), ("R1", "p|3", 2, 2), ("R2", "p|2", 1, 1),
                     ("R2", "p|2", 3, 3)]
    assert issue_spans.issues_per_run(con) == {run: len(issues) for run, issues in RUNS.items()}
    # The latest run validated again replaces its issues; an earlier one cannot.
    _record(con, "run-5", [B, C])
    assert _issues_of(con, "run-5") == {B, C} and _issues_of(con, "run-3") == {A, B}
    assert con.execute("SELECT count(*) FROM dq.issue_span").fetchone() == (6,)  # A's second span gone, B's and C's new
    with pytest.raises(ValueError, match="run-4 is not the latest"):
        _record(con, "run-4", [A])


def _warehouse_before_spans(path: Path) -> duckdb.DuckDBPyConnection:
    """A warehouse of RUNS as it was before the spans: dq.issue a table of every run's issues, the runs started
    in another order than their ids (run-5 first)."""
    con = duckdb.connect(str(path))
    con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
    con.execute("CREATE SCHEMA dq")
    con.execute("CREATE TABLE dq.issue (run_id VARCHAR, rule_id VARCHAR, severity VARCHAR, source_id VARCHAR, "
                "centre_id VARCHAR, table_name VARCHAR, source_record_key VARCHAR, patient_pseudonym VARCHAR, "
                "record_set VARCHAR, line BIGINT, field VARCHAR, value VARCHAR, message VARCHAR)")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for number, (run_id, issues) in enumerate(reversed(RUNS.items())):
        con.execute("INSERT INTO meta.run (run_id, started_at, validated) VALUES (?, ?, true)",
                    [run_id, start + timedelta(days=number)])
        for issue in issues:
            con.execute(f"INSERT INTO dq.issue VALUES (?, {', '.join('?' * len(COLUMNS))})", [run_id, *issue])
    con.execute("INSERT INTO meta.run (run_id, started_at, validated) VALUES ('unchanged', ?, false)",
                [start + timedelta(days=10)])
    return con


def test_a_warehouse_from_before_the_spans_is_converted_run_for_run(tmp_path):
    con = _warehouse_before_spans(tmp_path / "old.duckdb")
    # Run ids in another order than the runs: the runs are numbered by when they started.
    issue_spans.from_rows(con)
    (kind,) = con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'dq' "
                          "AND table_name = 'issue'").fetchone() or (None,)
    assert kind == "VIEW"
    assert con.execute("SELECT run_id FROM dq.validation ORDER BY number").fetchall() == [
        (run_id,) for run_id in reversed(RUNS)]
    for run_id, issues in RUNS.items():
        assert _issues_of(con, run_id) == set(issues), run_id
    # run-5 ran first here: A's spans are 1 (run-5) and 3-5 (run-3 .. run-1), B's 3 and 5, C's 4.
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE last_validation IS NULL) FROM dq.issue_span"
                       ).fetchone() == (5, 2)
    issue_spans.from_rows(con)  # converted once
    assert con.execute("SELECT count(*) FROM dq.issue_span").fetchone() == (5,)


def _spread(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple[Any, ...]]]:
    """Each run's issues (rule, record, field, value hash) as spans_sql's spans spread over its numbered runs."""
    found = issue_spans.spans_sql(con)
    spread: dict[str, set[tuple[Any, ...]]] = {}
    for run_id, *issue in con.execute(
            f"SELECT n.run_id, s.rule_id, s.source_record_key, s.field, s.value_hash FROM ({found.numbers}) n "
            f"JOIN ({found.spans}) s ON n.number BETWEEN s.first_number AND s.last_number").fetchall():
        spread.setdefault(run_id, set()).add(tuple(issue))
    return spread


def test_the_spans_spread_over_the_runs_give_each_run_its_issues_before_the_spans_too(tmp_path):
    expected = {run_id: {(i[0], i[5], i[9], value_hash(i[10])) for i in issues}
                for run_id, issues in RUNS.items() if issues}
    spans = _warehouse(tmp_path / "w.duckdb")
    for run_id, issues in RUNS.items():
        _record(spans, run_id, issues)
    assert _spread(spans) == expected
    assert _spread(_warehouse_before_spans(tmp_path / "old.duckdb")) == expected  # numbered otherwise, same issues


@pytest.fixture(scope="module")
def rerun(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> Path:
    """The shared 400-person run, copied, and run again in full (every source revalidated)."""
    home = resolve_home(tmp_path_factory.mktemp("spans") / "home")
    shutil.copytree(synthetic_run[0].root, home.root, symlinks=True)
    summary = pipeline.run(home, key_value=SYNTHETIC_RUN_KEY, force=True)
    assert summary.validated and summary.status == "completed", summary.message
    return home.warehouse


def test_a_run_that_finds_the_same_issues_stores_none_again(rerun):
    con = duckdb.connect(str(rerun), read_only=True)
    try:
        runs = [run_id for (run_id,) in con.execute("SELECT run_id FROM dq.validation ORDER BY number").fetchall()]
        assert len(runs) == 2
        first, second = (_issues_of(con, run_id) for run_id in runs)
        assert first and first == second
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE last_validation IS NULL) FROM dq.issue_span"
                           ).fetchone() == (len(first), len(first))
    finally:
        con.close()
