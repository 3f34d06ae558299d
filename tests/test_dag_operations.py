"""The nightly DAG as a data manager runs it: the home named by the Airflow Variable `rtw_home`, clean nights (a
first load of every format, one with nothing changed, one forced), a publish that fails, and a DAG run that finds
another still holding the home; each failure told once, with why, a clean night told to nobody."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dag_runs import (
    FIVE_SOURCES,
    DagRuns,
    Notified,
    airflow_db,
    asset_events,
    meta_runs,
    notifications,
    run_into,
    synthetic_home,
    task_states,
)
from status_runs import failed_night, last_runs
from typer.testing import CliRunner

from etl import runlock
from etl.airflow_local import DAG_ID, airflow_env
from etl.cli import app
from etl.config import SOURCES_DIR, Home
from etl.forget import forget
from etl.pull.ledger import read_ledger
from etl.pull.sensor import KEY_VARIABLE
from etl.transform.pseudonym import KEY_ENV

KEY = "operated-key-0123456789abcdef0123456789"
ERASED = "TREP-000007"  # registry_it's patient whose file is left in the drop zone after they are erased


@pytest.fixture(scope="module")
def notified() -> Iterator[Notified]:
    with notifications() as servers:
        yield servers


@dataclass
class OperatedRuns(DagRuns):
    clean_warehouse: Path = Path()  # a copy of the warehouse as the three clean nights left it
    clean_report: str = ""  # the run the latest report was of then, "" without its page (forget rewrites it)
    home_after_failed_publish: str = ""  # what `rtw run` met then: "free", or why it was refused
    holding_dag_run: str = ""  # the DAG run whose lease held the home during the third run
    lease_after: dict | None = None  # the lease after the third run
    status_after: str = ""  # what `rtw status` printed after the last run
    ledger_after_forget: bytes = b""  # registry_it's pull ledger once the patient was erased


def _home_for_rtw(home: Home) -> str:
    try:
        with runlock.run_lock(home, "rtw run"):
            return "free"
    except runlock.RunBusy as busy:
        return str(busy)


def _airflow(home: Home, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "airflow", *args], env=airflow_env(home) | env,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _one_patients_file(export: Path, zone: Path, patient: str) -> None:
    """The export into the drop zone, one patient's rows sent apart in a file named by their number."""
    header, *rows = export.read_bytes().splitlines(keepends=True)
    theirs = [row for row in rows if row.split(b";")[1] == patient.encode()]
    assert theirs
    (zone / export.name).write_bytes(b"".join([header, *(row for row in rows if row not in theirs)]))
    (zone / f"TREP_export_{patient}.csv").write_bytes(b"".join([header, *theirs]))
    export.unlink()


@pytest.fixture(scope="module")
def operated(tmp_path_factory, notified) -> OperatedRuns:
    """Five nights of a deployment that names its home by the Airflow Variable rtw_home (not env RTW_HOME) and
    keeps its key in the Variable rtw_pseudonym_key only (in Airflow's database: no env, no key file), whose
    registry_it delivers to a drop zone, one patient's rows in a file of their own: three clean nights (a first load
    of all five formats, one with nothing changed, one forced), then that patient erased (the file stays in the drop
    zone); a run whose publish runs out of memory (nothing changed: the publish that records the night opens the
    next warehouse all the same; forced, every source reloaded first told nothing more); a run while another DAG
    run (triggered, its plan run: it holds the home's lease) is still queued. The clean nights are the deployment's
    first: a home of their own would cost three more DAG runs."""
    root = tmp_path_factory.mktemp("operated")
    home = synthetic_home(root / "home", tmp_path_factory)
    sources, zone = root / "sources", root / "zone"
    shutil.copytree(SOURCES_DIR, sources)
    zone.mkdir()
    with (sources / "registry_it.yaml").open("a") as mapping:
        mapping.write(f"\ndelivery:\n  url: {zone}\n  wait_minutes: 0\n")
    _one_patients_file(home.landing / "registry_it" / "TREP_export_20261101.csv", zone, ERASED)
    env = {"RTW_HOME": "", "AIRFLOW_VAR_RTW_HOME": str(home.root), "AIRFLOW_VAR_RTW_SOURCES_DIR": str(sources),
           "RTW_RUN_WAIT": "2", KEY_ENV: ""}
    _airflow(home, env, "variables", "set", KEY_VARIABLE, KEY)
    runs = OperatedRuns(home, [], [], [])
    run_into(home, notified, runs, extra_env=env)
    run_into(home, notified, runs, extra_env=env)
    run_into(home, notified, runs, extra_env=env, conf={"force": True})
    runs.clean_warehouse = root / "clean-warehouse.duckdb"  # as the clean nights left it: the erasure rewrites it
    shutil.copy2(home.warehouse, runs.clean_warehouse)
    latest = home.reports / "latest"
    runs.clean_report = os.readlink(latest) if (latest / "index.html").is_file() else ""
    forget(home, "registry_it", ERASED, key_value=KEY, sources_dir=sources)
    runs.ledger_after_forget = read_ledger(home, "registry_it").path.read_bytes()
    run_into(home, notified, runs, extra_env=env | {"RTW_DUCKDB_MEMORY_LIMIT": "1MB"})
    runs.home_after_failed_publish = _home_for_rtw(home)
    # Another DAG run holds the home: triggered (no scheduler runs here: it stays queued), its plan run.
    triggered = json.loads(_airflow(home, env, "dags", "trigger", DAG_ID, "-o", "json").strip().splitlines()[-1])
    runs.holding_dag_run = triggered[0]["dag_run_id"]
    _airflow(home, env, "tasks", "test", DAG_ID, "plan_run", runs.holding_dag_run)
    run_into(home, notified, runs, extra_env=env)
    runs.lease_after = runlock.read_lease(home)
    status = CliRunner().invoke(app, ["status", "--home", str(home.root)], env={"COLUMNS": "1000"})
    assert status.exit_code == 0, status.output
    runs.status_after = status.output
    return runs


# The clean nights: ODM, per-form CSV, national CSV, Excel, SAS: one DAG run loads every format.

@pytest.mark.airflow
def test_a_real_dag_run_builds_the_warehouse_and_a_second_skips_unchanged_sources(operated):
    assert [r.succeeded for r in operated.runs[:3]] == [True, True, True]
    runs = meta_runs(operated.home)
    assert [r[1:6] for r in runs[:2]] == [("airflow", "completed", FIVE_SOURCES, [], []),
                                          ("airflow", "completed", [], FIVE_SOURCES, [])]
    con = duckdb.connect(str(operated.clean_warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT source_id) FROM core.diagnosis").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM core.patient").fetchone()[0] > 30
        # Validation ran inside the DAG: every rule judged every source, marts built.
        assert con.execute("SELECT count(DISTINCT rule_id) FROM dq.check_result").fetchone()[0] == \
            con.execute("SELECT count(*) FROM dq.check").fetchone()[0] >= 40
        assert con.execute("SELECT count(*) FROM marts.patient_summary").fetchone()[0] > 30
    finally:
        con.close()
    assert operated.clean_report == runs[2][0]  # the forced night wrote its report


@pytest.mark.airflow
def test_the_force_param_reloads_every_source(operated):
    assert meta_runs(operated.home)[2][3] == FIVE_SOURCES


@pytest.mark.airflow
def test_clean_runs_are_green_and_tell_nobody(operated):
    assert operated.mails[:3] == [[], [], []] and operated.posts[:3] == [[], [], []]
    states = task_states(operated.home, nth=2)
    assert {states[f"verdict[{s}]"] for s in FIVE_SOURCES} == {"success"}


@pytest.mark.airflow
def test_asset_events_carry_the_run_and_fire_only_when_the_warehouse_changed(operated):
    first, _unchanged, forced, _erasure = meta_runs(operated.home)
    events = asset_events(operated.home)
    # none for the run that changed nothing, nor for the failed ones after the erasure
    assert [e["run_id"] for e in events] == [first[0], forced[0]]
    assert events[0]["status"] == "completed" and events[0]["sources_changed"] == FIVE_SOURCES
    assert events[0]["sources_failed"] == [] and events[0]["dag_run_id"].startswith("manual__")
    assert task_states(operated.home, nth=2)["announce_change"] == "success"  # the forced run


@pytest.mark.airflow
def test_the_drop_zone_sensor_reads_the_pull_ledger_of_the_home_the_variable_names(operated):
    # With the home named by the Variable only, the sensor read ./var's ledger (empty): last night's export,
    # pulled already, looked new, and the wait for tonight's ended at once.
    first, second = operated.runs[0].output, operated.runs[1].output
    assert "registry_it: new in " in first
    assert (operated.home.landing / "registry_it" / "TREP_export_20261101.csv").is_file()  # pulled, then loaded
    assert "registry_it: nothing new in " in second
    assert "registry_it: new in " not in second


@pytest.mark.airflow
def test_an_erased_patients_file_left_in_the_drop_zone_is_not_pulled_again_with_the_key_in_the_variable(operated):
    # The pull task is given the key as the sensor is, from the Variable (key_setting): without it the file was
    # downloaded each night and known by its content only, and the sensor took it for a new export.
    home = operated.home
    assert not home.key_file.exists()  # the key was nowhere but in the Variable
    assert "registry_it: pulled 2 file(s) from " in operated.runs[0].output
    for night in operated.runs[1:]:  # the clean nights' and those after the erasure
        assert "registry_it: nothing new in " in night.output and "registry_it: new in " not in night.output
        assert "known by its content only" not in night.output
        assert ERASED not in night.output
    assert read_ledger(home, "registry_it").path.read_bytes() == operated.ledger_after_forget


@pytest.mark.airflow
def test_a_failed_publish_leaves_the_home_free_for_rtw_run(operated):
    # Its lease was kept for RTW_LEASE_TTL (2 h): `rtw run`, report, export, forget were refused, naming a run
    # that had ended, "try again when it has finished".
    assert not operated.runs[3].succeeded
    states = airflow_db(operated.home, "SELECT t.state FROM task_instance t JOIN dag_run d ON d.run_id = t.run_id "
                                       "WHERE t.task_id = 'publish' ORDER BY d.id")
    assert states[:4] == [("success",), ("success",), ("success",), ("failed",)]
    assert operated.home_after_failed_publish == "free"


@pytest.mark.airflow
def test_a_failed_publish_is_told_once_with_its_reason(operated):
    [mail] = operated.mails[3]
    assert "The run failed: the task publish failed: OutOfMemoryException: Out of Memory Error" in mail
    [post] = operated.posts[3]
    assert post["cause"].startswith("the task publish failed: OutOfMemoryException")


@pytest.mark.airflow
def test_a_dag_run_waits_for_another_still_holding_the_home_then_says_which(operated):
    # A backfill's runs are not kept apart by max_active_runs: a plan took over the lease of a DAG run
    # still running, which then failed at publish ("the lease ... expired").
    assert not operated.runs[4].succeeded
    assert task_states(operated.home)["plan_run"] == "failed"
    assert operated.lease_after is not None and operated.lease_after["dag_run_id"] == operated.holding_dag_run
    # the clean nights' and the erasure's: nothing else was published
    assert [trigger for _, trigger, *_ in meta_runs(operated.home)] == ["airflow", "airflow", "airflow", "forget"]
    assert f"holds this home: Airflow DAG run {operated.holding_dag_run}, by its lease" in operated.runs[4].output
    assert airflow_db(operated.home, "SELECT state FROM dag_run ORDER BY id")[-1] == ("failed",)


@pytest.mark.airflow
def test_a_dag_night_refused_at_plan_run_is_listed_first_with_its_task_and_why(operated):
    # The night's record is written by plan_run, which failed: `rtw status` lists it (newest first) beside the
    # night holding the home (its plan run's, running), the failed publish and the published nights, naming the
    # run that held the home.
    holder = operated.lease_after
    assert holder is not None
    rows = last_runs(operated.status_after)
    assert [(r[2], r[3]) for r in rows[:3]] == [("airflow", "failed"), ("airflow", "running"), ("airflow", "failed")]
    status, step, reason = failed_night(rows)
    assert (status, step) == ("failed", "plan_run")
    assert reason.startswith(f"another run ({holder['run_id']}, pid ")
    assert f"Airflow DAG run {operated.holding_dag_run}, by its lease" in reason
    assert rows[1][1] == holder["run_id"]
    assert failed_night(rows[2:])[:2] == ["failed", "publish"]
    assert [r[1] for r in rows[3:]] == [r[0] for r in reversed(meta_runs(operated.home))]  # the published


@pytest.mark.airflow
def test_a_plan_that_failed_is_told_once_naming_plan_run_and_why(operated):
    # Airflow hands the DAG's callback the last task to fail: publish, which runs after a failed plan (and
    # fails for want of one). The message said "the task publish failed (task_failure); its log says why".
    [mail] = operated.mails[4]
    assert "The run failed: the task plan_run failed: RunBusy: another run (" in mail
    assert f"holds this home: Airflow DAG run {operated.holding_dag_run}, by its lease" in mail
    assert "the task publish failed" not in mail
