"""The nightly DAG's Airflow plugin: a DAG run of it that failed, marked failed by hand too, frees the home at once.

A DAG run holds the home with a lease across its tasks (etl/runlock.py). When it fails between two of its tasks
(a task failed, the run timed out), no task of it is at work to free the home, and the lease held it for its
time-to-live (RTW_LEASE_TTL, two hours): `rtw run` refused, `rtw status` showed the night running. The DAG's
on_failure_callback frees it then. A DAG run marked failed by hand (the UI's "Mark as failed", or PATCH
/api/v2/dags/{dag_id}/dagRuns/{run_id} {"state": "failed"}) calls no DAG callback in Airflow 3: only the
listeners' `on_dag_run_failed`, in the API server's process. This plugin's listener frees the home there.

The scheduler calls the listener too for a DAG run that failed on its own, and the DAG's callback follows it (kept:
a deployment without the plugin frees the home so still): both call `free_home_of_failed_dag_run`, and the second
finds nothing to do (only a lease still naming the DAG run, not released yet, is released).

Airflow loads the plugin from the package's entry point (group `airflow.plugins`, pyproject.toml) in every
component where the package is installed, when the component starts: the API server and the scheduler must see
the home at the same path as the workers, and be restarted after an install (docs/deployment.md).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger("rtw")
_WAIT_SECONDS = 30  # for the home to be freed before the listener returns to Airflow


def free_home_of_failed_dag_run(dag_run_id: str, why: str, *, told_by: str) -> str | None:
    """A DAG run of the nightly DAG failed (`why`: Airflow's reason), as `told_by` (the DAG's callback, the listener)
    says: release its lease if it still names that DAG run (runlock.release_failed_dag_run), and record its night
    failed with the reason (run_record.record_dag_run_failed), where `rtw status` showed it running, then killed
    ("ended without a word"). The run id whose lease was released, else None.

    Never raises: it runs inside Airflow (the API server's request, the scheduler's loop, the DAG processor), and
    the lease's time-to-live still frees the home. What kept it from freeing the home is logged, with who told."""
    from etl import run_record, runlock
    from etl.config import resolve_home
    from etl.pull.sensor import home_setting

    try:
        home = resolve_home(home_setting())  # env RTW_HOME, else the Variable rtw_home: as the tasks
        if not home.root.is_dir():  # not made: a home that is not there (not mounted here) holds no lease
            return None
        released = runlock.release_failed_dag_run(home, dag_run_id)
        if released:
            log.info("DAG run %s failed: the lease of its run %s is released, the home is free (%s: %s)", dag_run_id,
                     released, told_by, why)
            run_record.record_dag_run_failed(home, released, dag_run_id, why)
        return released
    except (runlock.RunBusy, OSError) as exc:  # a publish of the run at work ends or releases the lease itself
        log.warning("DAG run %s failed (%s: %s), but its lease could not be released: %s", dag_run_id, told_by, why,
                    exc)
    except Exception:
        log.exception("DAG run %s failed (%s: %s), but freeing the home failed: the lease lapses after RTW_LEASE_TTL",
                      dag_run_id, told_by, why)
    return None


class DagRunFailedListener:
    """Airflow's `on_dag_run_failed`, for the nightly DAG's runs only."""

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        try:
            from etl.airflow_local import DAG_ID

            if dag_run.dag_id != DAG_ID:
                return
            # In a thread of its own: the scheduler calls this inside its transaction, on its thread's database
            # session, which reading the Variable rtw_home there would commit and close (Airflow's sessions are one a
            # thread); and a home on a mount that hangs holds neither the scheduler's loop nor the request long.
            freeing = threading.Thread(target=free_home_of_failed_dag_run, args=(str(dag_run.run_id), msg or "failed"),
                                       kwargs={"told_by": "Airflow's listener on_dag_run_failed"},
                                       name="rtw-free-home", daemon=True)
            freeing.start()
            freeing.join(_WAIT_SECONDS)
            if freeing.is_alive():
                log.warning("DAG run %s failed: freeing the home still waits after %d s; it goes on meanwhile",
                            dag_run.run_id, _WAIT_SECONDS)
        except Exception:  # Airflow would log it and go on; say here whose and why
            log.exception("the rtw listener on_dag_run_failed could not free the home (%s)", msg)


class RtwPlugin(AirflowPlugin):
    name = "rare_tumour_warehouse"
    listeners = [DagRunFailedListener()]  # noqa: RUF012  # AirflowPlugin declares it a plain class attribute
