"""Nights of the DAG that did not publish, as `rtw status` shows them beside those that did: a publish that
failed on a first night (no warehouse yet), a harmonise task that crashed (recorded as `rtw run` records
it). The DAG's tasks are processes of their own: the night's record in the home (etl/run_record.py) is
written by plan_run and publish. A plan_run that found the home held is listed by test_dag_operations.py, whose
last night is refused by another DAG run's lease."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dag_runs import airflow_db, meta_runs, synthetic_home
from few_sources import few_sources
from status_runs import PUBLISH_FAILS, PUBLISH_REASON, failed_night, last_runs

from etl.airflow_local import DagRun, run_dag
from etl.config import REPO_ROOT, Home

pytestmark = pytest.mark.airflow

RTW = str(Path(sys.executable).with_name("rtw"))
NIGHTS_SOURCES = ("esmart", "iltb")


def _status(home: Home) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RTW, "status", "--home", str(home.root)], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"}, timeout=120, check=False)


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> tuple[Home, list[DagRun], list[subprocess.CompletedProcess[str]]]:
    """Two nights of two sources (the mappings from the Airflow Variable): esmart, whose harmonise crashes on the
    second night, and iltb, which publishes that night. What `rtw status` lists needs no more: each source more
    is five more tasks a night."""
    root = tmp_path_factory.mktemp("nights")
    home = synthetic_home(root / "home", tmp_path_factory)
    mappings = few_sources(home, root / "sources", *NIGHTS_SOURCES)
    runs, statuses = [run_dag(home, env=mappings | PUBLISH_FAILS)], [_status(home)]
    blocker = home.staging / "esmart" / "harmonised"  # a file where harmonise makes its folder: it crashes
    shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    runs.append(run_dag(home, env=mappings))
    statuses.append(_status(home))
    return home, runs, statuses


def test_a_dag_night_whose_publish_failed_is_listed_without_a_warehouse(nights):
    _, runs, (first, _) = nights
    assert not runs[0].succeeded
    assert first.returncode == 1 and "no warehouse yet" in first.stdout
    status, step, reason = failed_night(last_runs(first.stdout))
    assert (status, step) == ("failed", "publish") and reason.startswith(PUBLISH_REASON)


def test_dag_nights_are_listed_in_order_the_failed_with_their_task_and_why(nights):
    home, _, (_, last) = nights
    assert last.returncode == 0, last.stdout
    rows = last_runs(last.stdout)
    [published] = meta_runs(home)
    assert [(r[1] == published[0], r[2], r[3], r[4]) for r in rows] == [
        (True, "airflow", "completed_with_failures", ""), (False, "airflow", "failed", "publish")]
    dag_runs = [r for (r,) in airflow_db(home, "SELECT state FROM dag_run ORDER BY id")]
    assert dag_runs == ["failed", "failed"]


def test_a_crashed_harmonise_task_is_recorded_as_rtw_run_records_it(nights):
    home = nights[0]
    [(_, _, _, changed, _, failed, message)] = meta_runs(home)
    blocker = home.staging / "esmart" / "harmonised"
    assert (changed, failed) == (["iltb"], ["esmart"])
    assert message == f"esmart: harmonise crashed: FileExistsError: [Errno 17] File exists: '{blocker}'"
