"""A DAG night that did not publish on a first night, as `rtw status` shows it: its publish failed, and there is no
warehouse yet. The DAG's tasks are processes of their own: the night's record in the home (etl/run_record.py) is
written by plan_run and publish. The nights listed beside published ones are test_dag_operations' (a failed
publish, a plan_run refused while another DAG run held the home) and test_dag_troubles' (nights published with
failures, a harmonise task that crashed, a plan_run refused for its key)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dag_runs import airflow_db, synthetic_home
from few_sources import few_sources
from status_runs import PUBLISH_FAILS, PUBLISH_REASON, failed_night, last_runs

from etl.airflow_local import run_dag
from etl.config import REPO_ROOT

pytestmark = pytest.mark.airflow

RTW = str(Path(sys.executable).with_name("rtw"))


def test_a_dag_night_whose_publish_failed_is_listed_without_a_warehouse(tmp_path, tmp_path_factory):
    """One source (iltb): what `rtw status` lists needs no more, each source more is five more tasks a night."""
    home = synthetic_home(tmp_path / "home", tmp_path_factory)
    mappings = few_sources(home, tmp_path / "sources", "iltb")
    assert not run_dag(home, env=mappings | PUBLISH_FAILS).succeeded
    assert airflow_db(home, "SELECT state FROM dag_run") == [("failed",)]
    first = subprocess.run([RTW, "status", "--home", str(home.root)], cwd=REPO_ROOT, capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "1000"}, timeout=120, check=False)
    assert first.returncode == 1 and "no warehouse yet" in first.stdout
    status, step, reason = failed_night(last_runs(first.stdout))
    assert (status, step) == ("failed", "publish") and reason.startswith(PUBLISH_REASON)
