"""A DAG task Airflow itself stops (the task marked failed or cleared, its DAG run marked failed, its worker shut down)
stops where it is and says so. Airflow 3's supervisor sends the task's process SIGTERM, then SIGKILL 5 s later; the
task runner's SIGTERM handler only calls the operator's on_kill (nothing, for a @task) and lets the task run on. The
publish task then went on publishing after it was told to stop, or was killed mid-publish, recorded as killed by
kill -9 with its copy of the warehouse left behind. Now it stops at the signal (run_record.Night.stoppable): its night
recorded stopped by Airflow in publish, nothing of it published, no copy left, and the home free at once.

`airflow dags test` runs every task in its own process, through the same task runner (its SIGTERM handler in place):
the signal is sent there, as the supervisor sends it to a task's process, once publish is building the next
warehouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dag_runs import synthetic_home

from etl import run_record, runlock
from etl.airflow_local import DAG_ID, airflow_env
from etl.config import Home
from etl.repair import stale_temporaries

pytestmark = pytest.mark.airflow


def _dag_run_stopped_in_publish(home: Home) -> str:
    """`airflow dags test` sent SIGTERM as soon as publish's next warehouse appears; its output."""
    log = home.airflow / "stopped.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "airflow", "dags", "test", DAG_ID], env=airflow_env(home),
                               stdout=out, stderr=subprocess.STDOUT)
        try:
            while not list(home.root.glob(f".{home.warehouse.name}.*.next")):
                assert run.poll() is None, log.read_text(errors="replace")[-3000:]  # it ended before it published
                time.sleep(0.05)
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=600)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    return log.read_text(errors="replace")


def test_a_publish_airflow_stops_stops_says_so_leaves_no_copy_and_frees_the_home(tmp_path, tmp_path_factory):
    home = synthetic_home(tmp_path / "home", tmp_path_factory)
    said = _dag_run_stopped_in_publish(home)
    [record] = [json.loads(p.read_text()) for p in (home.root / "runs").glob("*.json")]
    assert (record["status"], record["step"]) == ("failed", "publish"), said[-3000:]
    assert record["reason"].startswith("stopped by SIGTERM (Airflow stopped the task: marked failed or cleared, its "
                                       "worker shut down, or too many of its heartbeats failed (the API server out of "
                                       "reach)) at ")
    assert record["reason"].endswith(": told to stop, it stopped in its step and published nothing")
    assert not home.warehouse.exists()  # nothing of it published
    with runlock.run_lock(home, "next-night"):  # the home is free at once: no two hours' lease, no process at work
        assert stale_temporaries(home) == []  # its copy of the warehouse went with it


def test_a_publish_stopped_as_its_warehouse_went_live_is_left_published(tmp_path):
    """The DAG's publish learns after the swap that it was published (meta.run holds its run) and says so
    (Night.published): its stop then records nothing, where it recorded the night failed, "published nothing"."""
    night = run_record.Night(Home(tmp_path / "home").ensure(), "20261206T000000Z", "airflow", step="publish")
    night.begin("publish")
    with pytest.raises(run_record.Stopped), night.failing(), night.stoppable("Airflow stopped the task"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("not stopped")
        except run_record.Stopped:  # as the DAG's publish does once it finds its run live
            night.published()
            raise
    assert not list((night.home.root / run_record.RECORDS).glob("*.json"))
