"""A DAG publish Airflow stops once its warehouse went live has published its run: the notification says so, with
each source as judged, and that the marts and report were not written (the next run writes them). It had said the
task publish failed, "Run (none: it failed before publishing)", "the warehouse is unchanged".

The stop comes at a fixed point: the publish task's process sends itself SIGTERM as the new warehouse goes live
(pipeline.publish_run's after_swap), where the stop is held till the swap is done (run_record.stops_held) and then
delivered, as the supervisor's would be in that moment. The hook is put in by a `sitecustomize` on the tasks'
PYTHONPATH; `airflow dags test` runs the DAG with its task runner and its SIGTERM handler as a worker does."""

from __future__ import annotations

import os

import pytest
from dag_runs import DagRuns, notifications, run_into, synthetic_home

from etl import run_record, runlock
from etl.airflow_local import airflow_env

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


def test_a_publish_stopped_once_its_warehouse_went_live_tells_it_published(tmp_path, tmp_path_factory):
    home = synthetic_home(tmp_path / "home", tmp_path_factory)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STOP_AS_IT_GOES_LIVE)
    python_path = os.pathsep.join([str(hook), airflow_env(home)["PYTHONPATH"]])
    runs = DagRuns(home, [], [], [])
    with notifications() as notified:
        run_into(home, notified, runs, extra_env={"PYTHONPATH": python_path})
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
    assert post["loaded"], post  # the sources it loaded, as judged
    assert not list((home.root / run_record.RECORDS).glob("*.json"))  # published: no night left failed
    assert runlock.read_lease(home) is None  # the lease ended: the home is free
