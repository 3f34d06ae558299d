"""A DAG run's plan_run killed (kill -9, out of memory) once it has written the home's lease, before any task
of its run is at work: the next run takes the home over at once, saying which run it took over. Its lease
named plan_run's process, as it does once plan_run has ended, and nothing was at work for the run: `rtw run`
was refused, and the night shown running, until the lease lapsed two hours later.

plan_run runs here in a process of its own, as under the LocalExecutor, Celery or Kubernetes, taking the lease
as the DAG's task does (one test runs the DAG itself, `airflow dags test`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from dag_runs import copy_migrated_db, meta_runs
from few_sources import mappings_of
from status_runs import failed_night, last_runs
from task_processes import refused_for_dag_1, replaced_once_airflow_ended_it, task_process

from etl import runlock
from etl.airflow_local import run_dag
from etl.config import REPO_ROOT, Home, resolve_home
from etl.crash import CRASH_ENV

DAG_RUN = "scheduled__2026-12-02T02:00:00+00:00"
# plan_run: takes the home (a DAG plan replaces the lease of a DAG run that has ended), then the lease; with a
# second argument, it stays in the home until killed.
_PLAN = ("import sys, time\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
         "home = resolve_home(sys.argv[1]).ensure()\n"
         "with runlock.run_lock(home, 'dag-1', kind='airflow', lease='replace'):\n"
         f"    runlock.take_lease(home, 'dag-1', dag_run_id='{DAG_RUN}')\n"
         "    print('leased', flush=True)\n"
         "    if len(sys.argv) > 2:\n        time.sleep(120)\n")
RTW = str(Path(sys.executable).with_name("rtw"))


def _planned(root: Path, *, crash: str = "") -> Home:
    """A home whose lease plan_run took for run dag-1, its process killed at the crash point named, else ended."""
    env = {**os.environ, CRASH_ENV: crash}
    plan = subprocess.run([sys.executable, "-c", _PLAN, str(root)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, check=False)
    assert plan.returncode == (-signal.SIGKILL if crash else 0), plan.stderr
    home = resolve_home(root)
    assert runlock.read_lease(home)["run_id"] == "dag-1"
    return home


def _planning(root: Path) -> AbstractContextManager[subprocess.Popen[str]]:
    """plan_run at work, the lease written, in the home still; killed (kill -9) when the block ends."""
    return task_process(_PLAN, str(root), "stay", said="leased")


def test_a_plan_killed_once_it_wrote_the_lease_is_taken_over_by_the_next_run_saying_so(tmp_path, caplog):
    home = _planned(tmp_path, crash="leased")
    lease = runlock.read_lease(home)
    assert not runlock.holds(home, "dag-1")  # `rtw status`: nothing of it is left
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None
    [takeover] = [r.getMessage() for r in caplog.records if "takes the home over" in r.getMessage()]
    assert takeover.startswith(f"run cli takes the home over from run dag-1, Airflow DAG run {DAG_RUN}: its lease "
                               "(.run.lease), renewed ")
    assert (f"was held by the processes at work for it, pid {lease['pid']} on {socket.gethostname()} (plan_run), "
            "and every one is gone") in takeover
    assert list((tmp_path / runlock.AT_WORK).glob("*.json")) == []
    with pytest.raises(runlock.RunBusy), runlock.heartbeat(home, "dag-1", step="source.extract[esmart]"):
        pass  # an extract of the killed run finds its lease gone


def test_a_plan_at_work_or_ended_as_a_task_ends_holds_the_home(tmp_path):
    """At work, it holds the home's lock; ended, its run is between two tasks: the heartbeat alone decides."""
    with _planning(tmp_path):
        refused_for_dag_1(resolve_home(tmp_path))
    home = _planned(tmp_path / "ended")
    assert list((home.root / runlock.AT_WORK).glob("*.json")) == []  # nothing left to say it was killed
    refused_for_dag_1(home)


def test_a_killed_plan_of_another_host_or_container_or_whose_pid_lives_holds_the_home(tmp_path):
    home = _planned(tmp_path, crash="leased")
    [killed] = (tmp_path / runlock.AT_WORK).glob("*.json")
    plan = json.loads(killed.read_text())
    for other in [{**plan, "host": "worker-2.example.org", "pid": 1},  # cannot be asked
                  {**plan, "pid_namespace": "pid:[1]"},  # another container's pid: means nothing here
                  {**plan, **runlock.this_process()}]:  # alive, started when it was recorded
        killed.write_text(json.dumps(other))
        refused_for_dag_1(home)
    killed.write_text(json.dumps(plan))
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None


def test_the_next_dag_plan_leaves_a_run_airflow_still_runs_to_airflow(tmp_path):
    """Airflow fails the killed plan_run, and the DAG run with it: a DAG run that has ended is replaced."""
    home = _planned(tmp_path, crash="leased")
    replaced_once_airflow_ended_it(home)


@pytest.mark.airflow
def test_a_dag_run_killed_in_plan_run_is_taken_over_by_rtw_run(tmp_path, tmp_path_factory):
    """`airflow dags test` runs every task in its own process: killed in plan_run, the lease named that process,
    not yet alone (a later task says so), and nothing was at work for the run. A home without sources for the DAG
    run and `rtw run`: the lease is taken, and taken over, before any source is read, the same for none as for
    five (`rtw run` still publishes, its run recorded)."""
    home = resolve_home(tmp_path / "home").ensure()
    copy_migrated_db(home, tmp_path_factory)
    no_source = mappings_of(tmp_path / "sources")
    killed = run_dag(home, env=no_source | {CRASH_ENV: "leased"})
    assert not killed.succeeded
    lease = runlock.read_lease(home)
    assert lease is not None and not runlock.holds(home, lease["run_id"])
    env = {**os.environ, "COLUMNS": "1000", "RTW_PSEUDONYM_KEY": "killed-plan-key-0123456789abcdef01",
           "RTW_SOURCES_DIR": no_source["AIRFLOW_VAR_RTW_SOURCES_DIR"]}
    env.pop(CRASH_ENV, None)
    status = subprocess.run([RTW, "status", "--home", str(home.root)], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=env, check=False)
    assert failed_night(last_runs(status.stdout), lease["run_id"])[:2] == ["killed", "plan_run"]
    done = subprocess.run([RTW, "run", "--home", str(home.root)], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert f"takes the home over from run {lease['run_id']}, Airflow DAG run {lease['dag_run_id']}: " in said
    assert f"was held by the processes at work for it, pid {lease['pid']} on {lease['host']} (plan_run)" in said
    assert [r[1:3] for r in meta_runs(home)] == [("cli", "completed")]
