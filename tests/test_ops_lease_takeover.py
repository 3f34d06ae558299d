"""A production DAG run (a process per task) killed between plan_run and publish: the next run takes the home
over once every process that was at work for it is gone, and only then; never one of another host or container.

Each task here is a process of its own, as under the LocalExecutor, Celery or Kubernetes: plan_run's takes the
lease and ends, an extract's works under the lease's heartbeat, publish waits for the home."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from task_processes import refused_for_dag_1, replaced_once_airflow_ended_it, task_process

from etl import runlock
from etl.config import REPO_ROOT, Home, resolve_home

_PLAN = ("import sys\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
         "home = resolve_home(sys.argv[1])\n"
         "with runlock.run_lock(home, 'dag-1', kind='airflow', lease='replace'):\n"
         "    runlock.take_lease(home, 'dag-1', dag_run_id='scheduled__2026-12-02T02:00:00+00:00')\n")
# An extract task: at work under its run's lease until killed (or, with a third argument, done at once).
_EXTRACT = ("import sys, time\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
            "with runlock.heartbeat(resolve_home(sys.argv[1]), 'dag-1', step=sys.argv[2]):\n"
            "    print('working', flush=True)\n"
            "    if len(sys.argv) < 4:\n        time.sleep(120)\n")
# A publish task: waits for the home (another holds its lock), then publishes.
_PUBLISH = ("import sys, time\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
            "home = resolve_home(sys.argv[1])\n"
            "print('waiting', flush=True)\n"
            "with runlock.run_lock(home, 'dag-1', kind='airflow', lease='dag-1', wait=120):\n"
            "    runlock.publishing(home, 'dag-1')\n    print('publishing', flush=True)\n    time.sleep(120)\n")


def _planned(root: Path) -> Home:
    """A home whose lease plan_run, a process now ended, took for run dag-1."""
    subprocess.run([sys.executable, "-c", _PLAN, str(root)], cwd=REPO_ROOT, check=True)
    home = resolve_home(root)
    assert runlock.read_lease(home)["run_id"] == "dag-1"
    return home


def test_a_dag_run_killed_in_extract_is_taken_over_once_its_last_working_process_is_gone(tmp_path, caplog):
    """Its lease named plan_run's process, gone as soon as plan_run ended, and never one of its extract tasks:
    `rtw run` was refused, and `rtw status` showed the night running, until the lease lapsed two hours later."""
    home = _planned(tmp_path)
    with task_process(_EXTRACT, str(tmp_path), "source.extract[registry_it]", "done", said="working") as done:
        done.wait()  # an extract that ended as a task ends: nothing of it is left at work
    with task_process(_EXTRACT, str(tmp_path), "source.extract[sacha_fr]", said="working"), \
            task_process(_EXTRACT, str(tmp_path), "source.extract[crizotinib]", said="working"):
        refused_for_dag_1(home)  # two at work
    with task_process(_EXTRACT, str(tmp_path), "source.extract[sacha_fr]", "done", said="working") as retry:
        retry.wait()  # Airflow retried one: the run goes on, what the killed two left says nothing of it now
    refused_for_dag_1(home)  # between two tasks
    with task_process(_EXTRACT, str(tmp_path), "source.harmonise[registry_it]", said="working") as killed:
        refused_for_dag_1(home)  # at work: it may write in the home yet
    assert not runlock.holds(home, "dag-1")  # every process at work for it is gone
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None
    [takeover] = [r.getMessage() for r in caplog.records if "takes the home over" in r.getMessage()]
    assert takeover.startswith("run cli takes the home over from run dag-1, Airflow DAG run "
                               "scheduled__2026-12-02T02:00:00+00:00: its lease (.run.lease), renewed ")
    assert (f"was held by the processes at work for it, pid {killed.pid} on {socket.gethostname()} "
            "(source.harmonise[registry_it]), and every one is gone") in takeover
    with pytest.raises(runlock.RunBusy), runlock.heartbeat(home, "dag-1"):
        pass  # a retry of a task of the killed run finds its lease gone


def test_a_dag_run_between_tasks_holds_the_home_until_its_lease_lapses(tmp_path):
    """No process of it at work (one task ended, the next not started yet): the heartbeat alone decides."""
    home = _planned(tmp_path)
    with task_process(_EXTRACT, str(tmp_path), "source.extract[registry_it]", "done", said="working") as done:
        done.wait()
    refused_for_dag_1(home)


def test_a_process_of_another_host_or_container_at_work_for_the_run_holds_the_home(tmp_path):
    home = _planned(tmp_path)
    with task_process(_EXTRACT, str(tmp_path), "source.extract[registry_it]", said="working"):
        pass  # killed
    [killed] = (tmp_path / runlock.AT_WORK).glob("*.json")
    at_work = json.loads(killed.read_text())
    elsewhere = [{**at_work, "host": "worker-2.example.org", "pid": 1},  # cannot be asked
                 {**at_work, "pid_namespace": "pid:[1]"}]  # another container's pid: means nothing here
    for other in elsewhere:
        (tmp_path / runlock.AT_WORK / "dag-1-other.json").write_text(json.dumps(other))
        refused_for_dag_1(home)
    (tmp_path / runlock.AT_WORK / "dag-1-other.json").unlink()
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None


def test_a_dag_plan_leaves_a_run_airflow_still_runs_to_airflow(tmp_path):
    """Its scheduler is alive (it runs this plan): it retries or fails the killed task, then publish ends the
    lease. A DAG run that has ended is replaced, as before."""
    home = _planned(tmp_path)
    with task_process(_EXTRACT, str(tmp_path), "source.extract[registry_it]", said="working"):
        pass  # killed
    replaced_once_airflow_ended_it(home)
    assert list((tmp_path / runlock.AT_WORK).glob("*.json")) == []  # the killed run's are forgotten


def test_a_publish_killed_while_waiting_for_the_home_leaves_it_to_the_next_run(tmp_path):
    """It named itself in the lease only once it held the home: killed while it waited (a report being written
    held the lock), the lease named plan_run's process and held the home two hours."""
    home = _planned(tmp_path)
    lock = os.open(tmp_path / runlock.LOCK_NAME, os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another holds the home's lock a while: publish waits for it
    try:
        with task_process(_PUBLISH, str(tmp_path), said="waiting"):
            for _ in range(1200):  # until it waits for the lock: never a timing
                if list((tmp_path / runlock.AT_WORK).glob("*.json")):
                    break
                time.sleep(0.05)
    finally:
        os.close(lock)
    assert runlock.read_lease(home)["run_id"] == "dag-1"
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None
