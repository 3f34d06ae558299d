"""A DAG task Airflow itself stops (the task marked failed or cleared, its DAG run marked failed, its worker shut down)
stops where it is and says so. Airflow 3's supervisor sends the task's process SIGTERM, then SIGKILL 5 s later; the
task runner's SIGTERM handler only calls the operator's on_kill (nothing, for a @task) and lets the task run on. The
publish task then went on publishing after it was told to stop, or was killed mid-publish, recorded as killed by
kill -9 with its copy of the warehouse left behind. Now it stops at the signal (run_record.Night.stoppable): its night
recorded stopped by Airflow in publish, nothing of it published, no copy left, and the home free at once.

`airflow dags test` runs every task in its own process, through the same task runner (its SIGTERM handler in place):
the signal is sent there, as the supervisor sends it to a task's process, once publish is building the next
warehouse.

A publish Airflow stops once its warehouse went live has published its run: the notification says so, with each
source as judged, and that the marts and report were not written (the next run writes them). It had said the task
publish failed, "Run (none: it failed before publishing)", "the warehouse is unchanged". That stop comes at a fixed
point: the publish task's process sends itself SIGTERM as the new warehouse goes live (pipeline.publish_run's
after_swap), where the stop is held till the swap is done (run_record.stops_held) and then delivered, as the
supervisor's would be in that moment. The hook is put in by a `sitecustomize` on the tasks' PYTHONPATH.

Both stops are publish's: each DAG run loads one source (registry_it, its mappings folder holding it alone), where
five added seconds of extract, harmonise and validation before publish and told nothing more of the stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dag_runs import DagRuns, notifications, run_into, synthetic_home
from few_sources import few_sources

from etl import run_record, runlock
from etl.airflow_local import DAG_ID, airflow_env
from etl.config import Home
from etl.crash import HOLD_ENV
from etl.repair import stale_temporaries

pytestmark = pytest.mark.airflow

# Wraps etl.pipeline.publish_run, once imported, so that its after_swap ends by sending this process SIGTERM.
STOP_AS_IT_GOES_LIVE = '''
import importlib.abc, importlib.machinery, os, signal, sys

class _Wrap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "etl.pipeline":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            publish_run = module.publish_run

            def stopped_as_it_goes_live(*args, after_swap=lambda: None, **kwargs):
                def swapped():
                    after_swap()
                    os.kill(os.getpid(), signal.SIGTERM)
                return publish_run(*args, after_swap=swapped, **kwargs)

            module.publish_run = stopped_as_it_goes_live
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Wrap())
'''


def _one_source_home(root: Path, factory: pytest.TempPathFactory) -> tuple[Home, dict[str, str]]:
    """synthetic_home's exports of registry_it alone, and the environment that maps it alone (the Variable
    rtw_sources_dir)."""
    home = synthetic_home(root / "home", factory)
    return home, few_sources(home, root / "sources", "registry_it")


def _dag_run_stopped_in_publish(home: Home, env: dict[str, str]) -> str:
    """`airflow dags test` sent SIGTERM as soon as publish's next warehouse appears, its publish held before the
    swap (etl/crash.py) till then: a stop acted on late would find it published; its output."""
    log = home.airflow / "stopped.log"
    held = {HOLD_ENV: "before_swap"}
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "airflow", "dags", "test", DAG_ID],
                               env=airflow_env(home) | env | held, stdout=out, stderr=subprocess.STDOUT)
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
    home, one_source = _one_source_home(tmp_path, tmp_path_factory)
    said = _dag_run_stopped_in_publish(home, one_source)
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


def test_a_publish_stopped_once_its_warehouse_went_live_tells_it_published(tmp_path, tmp_path_factory):
    home, one_source = _one_source_home(tmp_path, tmp_path_factory)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STOP_AS_IT_GOES_LIVE)
    python_path = os.pathsep.join([str(hook), airflow_env(home)["PYTHONPATH"]])
    runs = DagRuns(home, [], [], [])
    with notifications() as notified:
        run_into(home, notified, runs, extra_env=one_source | {"PYTHONPATH": python_path})
    [run] = runs.runs
    assert not run.succeeded and home.warehouse.exists(), run.output[-3000:]  # published, then stopped
    [mail] = runs.mails[0]
    [post] = runs.posts[0]
    live_run = post["run_id"]
    assert live_run and live_run in mail, mail
    assert "(none: it failed before publishing)" not in mail and "the warehouse is unchanged" not in mail
    assert (f"The run failed: the task publish published run {live_run}, then was stopped by SIGTERM (Airflow stopped "
            "the task: ") in mail
    assert "before it wrote the marts and the report (the next run writes them)" in mail
    assert post["loaded"] == ["registry_it"], post  # the sources it loaded, as judged
    assert not list((home.root / run_record.RECORDS).glob("*.json"))  # published: no night left failed
    assert runlock.read_lease(home) is None  # the lease ended: the home is free
