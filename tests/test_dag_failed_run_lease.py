"""A DAG run that fails between two of its tasks (a task failed, the run timed out) frees the home: its lease was
left live, no task of it at work to say it was gone, and `rtw run` refused for the lease's two hours ("the lease
lapses at ... (RTW_LEASE_TTL)"), only the next DAG run taking over. The DAG's on_failure_callback releases the
lease when it still names that DAG run, never another run's.

The callbacks are run as Airflow's DAG processor runs them for a DAG run that failed: the DAG parsed from its
folder, the context it builds (the DAG, the DAG run's id, the reason), in a process with the home's Airflow
environment (nobody to notify).

A DAG run marked failed by hand (the UI's "Mark as failed", the REST API) calls no DAG callback: the package's
listener plugin (etl/airflow_listener.py) frees the home then. The real API server's app marks it failed, with
the plugin loaded from the package's entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from dag_runs import copy_migrated_db

from etl import run_record, runlock
from etl.airflow_local import DAG_ID, airflow_env
from etl.config import REPO_ROOT, Home

CALLBACKS = """
import sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).dags["rtw_nightly_import"]
callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
for callback in callbacks:  # as the DAG processor runs them (airflow/dag_processing/processor.py), each on its own
    callback({"dag": dag, "run_id": sys.argv[2], "reason": "timed_out"})
print("CALLED", len(callbacks))
"""
FAILED = "scheduled__2026-12-06T02:00:00+00:00"
OTHER = "backfill__2026-12-01T02:00:00+00:00"
# The API server's app (Airflow's, as `airflow api-server` serves it), every user an admin: no login. Each DAG run
# named is created, then marked failed by hand, in that order; what the home's lease is after each is said.
MARK_FAILED = """
import json, sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app
from etl import runlock
from etl.config import resolve_home
api, runs = TestClient(create_app()), f"/api/v2/dags/{sys.argv[1]}/dagRuns"
for dag_run_id in sys.argv[2:]:
    api.post(runs, json={"dag_run_id": dag_run_id, "logical_date": None}).raise_for_status()
said = {"plugins": api.get("/api/v2/plugins").json()["plugins"], "marked": []}
for dag_run_id in sys.argv[2:]:
    marked = api.patch(f"{runs}/{dag_run_id}", json={"state": "failed"})
    lease = runlock.read_lease(resolve_home())
    said["marked"].append([dag_run_id, marked.status_code, marked.json().get("state"), lease])
print("SAID " + json.dumps(said))
"""


def _leased(home: Home, run_id: str, dag_run_id: str) -> run_record.Night:
    """The home held across tasks, as plan_run holds it: the lease, the night's record, and no task of the run at
    work after it."""
    night = run_record.Night(home, run_id, "airflow", dag_run_id=dag_run_id)
    with runlock.run_lock(home, run_id, kind="airflow", lease="replace"):
        night.begin("plan_run")
        runlock.take_lease(home, run_id, dag_run_id=dag_run_id)
    return night


def _dag_run_failed(home: Home, dag_run_id: str) -> str:
    env = {k: v for k, v in airflow_env(home).items() if not k.startswith(("AIRFLOW_VAR_RTW_NOTIFY", "AIRFLOW_CONN_"))}
    done = subprocess.run([sys.executable, "-c", CALLBACKS, str(REPO_ROOT / "dags"), dag_run_id], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0 and "CALLED 2" in done.stdout, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_dag_run_that_failed_between_its_tasks_frees_the_home_at_once(tmp_path):
    home = Home(tmp_path / "home").ensure()
    _leased(home, "20261206T020000Z-a1b2", FAILED)
    refused = pytest.raises(runlock.RunBusy, match=r"the lease lapses at .* \(RTW_LEASE_TTL\)")
    with refused, runlock.run_lock(home, "rtw-run"):  # `rtw run` the morning after: refused
        pass
    said = _dag_run_failed(home, FAILED)
    assert f"DAG run {FAILED} failed: the lease of its run 20261206T020000Z-a1b2 is released" in said
    assert runlock.read_lease(home)["released"]  # a retry of its publish (the run cleared) may take it back
    with runlock.run_lock(home, "rtw-run"):  # `rtw run` takes the home at once
        assert runlock.read_lease(home) is None


def test_a_dag_run_failed_while_a_task_of_it_is_at_work_leaves_the_home_to_that_task_s_stop(tmp_path):
    """Marked failed by hand, or timed out, mid-task: Airflow stops the task, whose stop frees the home; until it has,
    the home is not freed under it (a `rtw run` would take it while the task still writes its stage)."""
    home = Home(tmp_path / "home").ensure()
    _leased(home, "20261206T020000Z-a1b2", FAILED)
    with runlock.at_work(home, "20261206T020000Z-a1b2", "source.extract[esmart]"):  # this process: alive
        _dag_run_failed(home, FAILED)
        assert not runlock.read_lease(home).get("released")
    # The task gone; a file another host's task left (it cannot be asked whether that task lives) holds nothing
    (home.root / runlock.AT_WORK / "20261206T020000Z-a1b2-other.json").write_text(json.dumps(
        {"host": "another-host", "pid": 4242, "started": 1.0, "run_id": "20261206T020000Z-a1b2", "step": "extract"}))
    _dag_run_failed(home, FAILED)
    assert runlock.read_lease(home)["released"]


def test_a_failed_dag_run_never_releases_the_lease_of_another_run(tmp_path):
    home = Home(tmp_path / "home").ensure()
    _leased(home, "20261206T010000Z-c3d4", OTHER)  # a backfill's run holds the home: max_active_runs keeps not it
    _dag_run_failed(home, FAILED)
    lease = runlock.read_lease(home)
    assert lease is not None and lease["dag_run_id"] == OTHER and not lease.get("released")
    with pytest.raises(runlock.RunBusy, match=re.escape(f"Airflow DAG run {OTHER}")), runlock.run_lock(home, "rtw-run"):
        pass


def test_a_failed_dag_run_whose_lease_is_ended_leaves_the_home_as_it_is(tmp_path):
    home = Home(tmp_path / "home").ensure()  # publish ended the lease; then a verdict failed the DAG run
    _dag_run_failed(home, FAILED)
    assert not (home.root / runlock.LOCK_NAME).exists() and runlock.read_lease(home) is None


def test_the_night_of_a_dag_run_that_failed_between_its_tasks_is_recorded_failed_not_killed(tmp_path):
    """Its home freed, `rtw status` showed the night killed, "ended without a word", in the step it had reached."""
    home = Home(tmp_path / "home").ensure()
    _leased(home, "20261206T020000Z-a1b2", FAILED).reached("source.harmonise[registry_it]")
    _dag_run_failed(home, FAILED)
    [night] = run_record.unpublished(home, set())
    assert (night.status, night.step) == ("failed", "source.harmonise[registry_it]")
    assert night.reason.startswith(f"its Airflow DAG run {FAILED} failed (timed_out)")


def test_a_failed_dag_run_leaves_the_night_of_another_run_as_it_is(tmp_path):
    home = Home(tmp_path / "home").ensure()
    _leased(home, "20261206T010000Z-c3d4", OTHER)
    _dag_run_failed(home, FAILED)
    [night] = run_record.unpublished(home, set())
    assert night.status == "running"  # the backfill's run holds the home still


def test_a_dag_run_marked_failed_by_hand_frees_the_home_at_once(tmp_path, tmp_path_factory):
    """Marked failed through the REST API (as the UI's "Mark as failed" does), the DAG run that holds the home frees
    it: Airflow calls the package's listener (no DAG callback). Another DAG run marked failed first leaves it held."""
    home = Home(tmp_path / "home").ensure()
    copy_migrated_db(home, tmp_path_factory)
    marked, other = "manual__2026-12-07T09:00:00+00:00", "manual__2026-12-07T08:00:00+00:00"
    _leased(home, "20261207T020000Z-e5f6", marked).reached("source.extract[esmart]")
    env = airflow_env(home) | {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                               "_AIRFLOW_PROCESS_CONTEXT": "server"}  # as `airflow api-server` runs
    reserialized = subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env,
                                  capture_output=True, text=True, check=False, timeout=300)
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]
    done = subprocess.run([sys.executable, "-c", MARK_FAILED, DAG_ID, other, marked], env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0 and "SAID " in done.stdout, done.stderr[-3000:]
    said = json.loads(done.stdout.split("SAID ", 1)[1])

    # Loaded from the entry point the package's install registers (`make install`: pyproject.toml's)
    [plugin] = [p for p in said["plugins"] if p["name"] == "rare_tumour_warehouse"] or [said["plugins"]]
    assert plugin["source"].startswith("rare-tumour-warehouse==") and "group='airflow.plugins'" in plugin["source"]
    assert plugin["listeners"] == ["etl.airflow_listener.DagRunFailedListener"]
    (first, first_code, first_state, lease_after_other), (last, code, state, lease_after) = said["marked"]
    assert (first, first_code, first_state, last, code, state) == (other, 200, "failed", marked, 200, "failed")
    assert lease_after_other["dag_run_id"] == marked and not lease_after_other.get("released")  # not the other's
    assert lease_after["dag_run_id"] == marked and lease_after.get("released")
    said_in_log = done.stderr + done.stdout
    assert f"DAG run {marked} failed: the lease of its run 20261207T020000Z-e5f6 is released" in said_in_log
    with runlock.run_lock(home, "rtw-run"):  # `rtw run` takes the home at once, where it waited two hours
        assert runlock.read_lease(home) is None
    [night] = run_record.unpublished(home, set())  # `rtw status`: failed, where it showed it running
    assert (night.status, night.step) == ("failed", "source.extract[esmart]")
    assert night.reason.startswith(f"its Airflow DAG run {marked} failed (Dag Run's state was manually set to")
