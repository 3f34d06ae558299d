"""A large run prepares its sources in worker processes, two at a time (etl/pipeline.py): the same
warehouse as one process builds, the steps timed, and a worker that dies fails its source loudly."""

import shutil
from pathlib import Path

import duckdb
import pytest

from etl import pipeline, timing
from etl.config import Home, resolve_home
from etl.crash import CRASH_ENV
from etl.steps import SourceStatus
from etl.synth import generate

KEY = "parallel-sources-key"
_RUN_COLUMNS = {"run_id", "first_run_id", "last_run_id", "loaded_at", "created_at", "started_at", "finished_at",
                "fingerprint"}  # dq.rule_judged's: of stage rows, which hold their run id


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports")
    generate(root, patients=60, seed=5)
    return root


def _home(exports: Path, where: Path) -> Home:
    shutil.copytree(exports, where)
    return resolve_home(where).ensure()


def _differences(one: Path, other: Path) -> list[str]:
    """Tables of core, stage, dq and marts whose rows differ (run ids and times aside)."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{one}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{other}' AS b (READ_ONLY)")
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'a' "
                             "AND schema_name IN ('core', 'stage', 'dq', 'marts') ORDER BY 1, 2").fetchall()
        differ = []
        for schema, table in tables:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'a' AND schema_name = ? "
                "AND table_name = ?", [schema, table]).fetchall() if c not in _RUN_COLUMNS]
            listed = ", ".join(f'"{c}"' for c in columns)
            changed = con.execute(f"SELECT count(*) FROM (SELECT {listed} FROM a.{schema}.{table} EXCEPT ALL "
                                  f"SELECT {listed} FROM b.{schema}.{table})").fetchone()
            added = con.execute(f"SELECT count(*) FROM (SELECT {listed} FROM b.{schema}.{table} EXCEPT ALL "
                                f"SELECT {listed} FROM a.{schema}.{table})").fetchone()
            if (changed and changed[0]) or (added and added[0]):
                differ.append(f"{schema}.{table}")
        return differ
    finally:
        con.close()


def test_workers_build_the_warehouse_one_process_builds(exports, tmp_path, monkeypatch) -> None:
    alone = _home(exports, tmp_path / "alone")
    pipeline.run(alone, key_value=KEY)
    monkeypatch.setenv("RTW_PARALLEL_MIN_BYTES", "0")
    monkeypatch.setattr(timing, "recorded", [])
    side_by_side = _home(exports, tmp_path / "side_by_side")
    said: list[str] = []
    summary = pipeline.run(side_by_side, key_value=KEY, progress=said.append)
    assert summary.sources_failed == [] and len(summary.sources_changed) == 5
    assert sum("(worker process)" in line for line in said) == 5
    steps = {step.name for step in timing.recorded}
    assert {f"{kind} {source}" for kind in ("extract", "harmonise") for source in summary.sources_changed} <= steps
    assert _differences(alone.warehouse, side_by_side.warehouse) == []


def test_a_worker_that_dies_fails_its_source_and_the_run_says_why(exports, tmp_path, monkeypatch) -> None:
    home = _home(exports, tmp_path / "home")
    monkeypatch.setenv("RTW_PARALLEL_MIN_BYTES", "0")
    monkeypatch.setenv(CRASH_ENV, "harmonised")  # every worker is killed as its harmonised files are written
    planned = pipeline.plan(home, key_value=KEY)
    outcomes = pipeline._prepare_in_workers(home, planned, KEY, pipeline.SOURCES_DIR, lambda line: None)
    assert [o.source_id for o in outcomes] == planned.changed
    for outcome in outcomes:
        assert outcome.status is SourceStatus.FAILED
        assert "its extract and harmonise process was killed by signal 9" in (outcome.message or "")
