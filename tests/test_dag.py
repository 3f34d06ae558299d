"""The Airflow DAG: it imports cleanly, parses without a database or data libraries, and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from etl.airflow_local import airflow_env, run_dag_once
from etl.config import REPO_ROOT, resolve_home

DAGS = REPO_ROOT / "dags"

PARSE_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in ("pandas", "duckdb", "great_expectations", "pyarrow", "etl.pipeline") if m in sys.modules)
dag = bag.dags.get("rtw_nightly_import")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "heavy": heavy,
    "tasks": sorted(t.task_id for t in dag.tasks) if dag else [],
    "schedule": getattr(dag, "schedule", None) if dag else None,
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = resolve_home(tmp_path_factory.mktemp("parse-home"))
    env = airflow_env(home)
    # A metadata DB that cannot exist: parsing must not need it.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent-dir/airflow.db"
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_dag_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert parsed["dags"] == ["rtw_nightly_import"]


def test_parsing_touches_no_database_and_no_data_library(parsed):
    assert parsed["heavy"] == []


def test_the_dag_has_the_documented_shape(parsed):
    assert parsed["tasks"] == ["changed_sources", "extract", "harmonise", "plan_run", "publish"]
    assert parsed["schedule"] == "0 2 * * *"


# ODM, per-form CSV, national CSV, Excel, SAS: one DAG run loads every format.
FIVE_SOURCES = ["crizotinib_imt", "esmart", "iltb", "registry_it", "sacha_fr"]


@pytest.mark.airflow
def test_one_real_dag_run_builds_the_warehouse_and_a_second_skips_unchanged_sources(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    from etl.synth import generate

    generate(home.root, patients=40, seed=4)  # a seed whose 40 persons reach all five sources
    run_dag_once(home)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        runs = con.execute("SELECT trigger, status, sources_changed FROM meta.run").fetchall()
        assert runs == [("airflow", "completed", FIVE_SOURCES)]
        assert con.execute("SELECT count(DISTINCT source_id) FROM core.diagnosis").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM core.patient").fetchone()[0] > 30
        # Validation ran inside the DAG: every rule judged every source, marts built.
        assert con.execute("SELECT count(DISTINCT rule_id) FROM dq.check_result").fetchone()[0] == \
            con.execute("SELECT count(*) FROM dq.check").fetchone()[0] >= 40
        assert con.execute("SELECT count(*) FROM marts.patient_summary").fetchone()[0] > 30
    finally:
        con.close()
    run_dag_once(home)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        latest = con.execute("SELECT sources_changed, sources_unchanged FROM meta.run "
                             "ORDER BY started_at DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert latest == ([], FIVE_SOURCES)
    assert (home.reports / "latest" / "index.html").is_file()


def test_the_dag_file_is_where_the_readme_says(tmp_path):
    assert (DAGS / "nightly_import.py").is_file()
    assert "dags/nightly_import.py" in (REPO_ROOT / "README.md").read_text()


def test_parse_does_not_read_the_home(tmp_path):
    # Parsing with an RTW_HOME that does not exist must not create it (no I/O at parse time).
    home = resolve_home(tmp_path / "never-created")
    env = airflow_env(home)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env=env, capture_output=True,
                   check=True, timeout=300)
    assert sorted(p.name for p in home.root.iterdir()) == ["airflow"]
