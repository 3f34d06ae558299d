"""A DAG run that fails between two of its tasks (a task failed, the run timed out) frees the home: its lease was
left live, no task of it at work to say it was gone, and `rtw run` refused for the lease's two hours ("the lease
lapses at ... (RTW_LEASE_TTL)"), only the next DAG run taking over. The DAG's on_failure_callback releases the
lease when it still names that DAG run, never another run's.

The callbacks are run as Airflow's DAG processor runs them for a DAG run that failed: the DAG parsed from its
folder, the context it builds (the DAG, the DAG run's id, the reason), in a process with the home's Airflow
environment (nobody to notify)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from etl import run_record, runlock
from etl.airflow_local import airflow_env
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
