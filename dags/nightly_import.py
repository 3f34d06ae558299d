"""Nightly import of every source into the Rare Tumour Warehouse.

plan_run -> extract (mapped, one per changed source) -> harmonise (mapped) -> publish.
publish validates every record against the rule catalogue inside the new warehouse file
(error -> quarantine, warning -> issue; a failed rule never stops the load of clean records),
swaps the file in and writes the validation report.
The DAG only declares: every step is a function of `etl.pipeline`, the same ones `rtw run`
calls, imported inside the tasks so parsing this file touches no database, no connection
and no data library. Tasks pass the typed step values of `etl.steps` as JSON (paths and
counts, never data).

One run at a time per home: a DAG run spans several processes, so no task can hold the home's
file lock for all of it. plan_run takes the lock, repairs what a killed run left, and writes a
lease (`<home>/.run.lease`); extract and harmonise keep its heartbeat fresh; publish takes the
lock again, checks the lease is still this run's, publishes and ends it. `rtw run` and other DAG
runs see the lease and wait or refuse (etl/runlock.py); `max_active_runs=1` keeps two DAG runs
apart as well. A task's process is made owner-only (umask 077): the home holds identifiers.

Configuration, read at run time: the warehouse home from env `RTW_HOME` (else the Airflow
Variable `rtw_home`, else ./var), the pseudonymisation key from the Airflow Variable
`rtw_pseudonym_key` (so any secrets backend works), else env `RTW_PSEUDONYM_KEY`, else the
home's key file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Asset, Variable, dag, task

# Static at parse time (an env read, no I/O): the Asset names the warehouse file.
WAREHOUSE = Asset(
    name="rtw_warehouse",
    uri=(Path(os.environ.get("RTW_HOME", "var")).resolve() / "warehouse.duckdb").as_uri(),
)


def _home() -> Any:
    from etl.config import resolve_home

    os.umask(0o077)  # this task's process only: whatever it writes under the home is owner-only
    return resolve_home(os.environ.get("RTW_HOME") or Variable.get("rtw_home", default=None)).ensure()


def _wait_seconds() -> float:
    """How long plan and publish wait for a run holding the home (env RTW_RUN_WAIT, default 60 s)."""
    return float(os.environ.get("RTW_RUN_WAIT", "60"))


@dag(
    dag_id="rtw_nightly_import",
    description="Pull the night's exports, harmonise them and publish the warehouse",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["rare-tumour-warehouse"],
    doc_md=__doc__,
)
def nightly_import() -> None:
    @task
    def plan_run() -> dict[str, Any]:
        from etl import pipeline, repair, runlock

        # The key guard runs here: a key other than the warehouse's fails this task, before any harmonising.
        key = Variable.get("rtw_pseudonym_key", default=None)
        home, run_id = _home(), pipeline.new_run_id()
        with runlock.run_lock(home, run_id, wait=_wait_seconds(), kind="airflow", lease="replace"):
            repair.repair(home)
            planned = pipeline.plan(home, key_value=key, run_id=run_id)
            runlock.take_lease(home, run_id)  # holds the home until publish, across tasks
        return planned.model_dump(mode="json")

    @task
    def changed_sources(planned: dict[str, Any]) -> list[dict[str, str]]:
        return [{"run_id": planned["run_id"], "source_id": s} for s in planned["changed"]]

    @task(map_index_template="{{ task.op_kwargs['source']['source_id'] }}")
    def extract(source: dict[str, str]) -> dict[str, Any]:
        from etl import pipeline, runlock

        home = _home()
        with runlock.heartbeat(home, source["run_id"]):
            return pipeline.extract_source(home, source["run_id"], source["source_id"]).model_dump(mode="json")

    @task(map_index_template="{{ task.op_kwargs['extracted']['source_id'] }}")
    def harmonise(extracted: dict[str, Any]) -> dict[str, Any]:
        from etl import pipeline, runlock
        from etl.steps import SourceOutcome

        key = Variable.get("rtw_pseudonym_key", default=None)
        outcome = SourceOutcome.model_validate(extracted)
        home = _home()
        with runlock.heartbeat(home, outcome.run_id):
            return pipeline.harmonise_extracted(home, outcome, key_value=key).model_dump(mode="json")

    @task(outlets=[WAREHOUSE], trigger_rule="all_done")
    def publish(planned: dict[str, Any], outcomes: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate, publish atomically, report."""
        from etl import pipeline, runlock
        from etl.steps import RunPlan, SourceOutcome

        if planned is None:  # all_done: it runs after a failed plan too, which has said why
            raise RuntimeError("nothing to publish: plan_run failed (its log says why); the warehouse is unchanged")
        home, run_plan = _home(), RunPlan.model_validate(planned)
        # Refuses (RunBusy) when this run's lease was lost: its outcomes may be older than what is live.
        with runlock.run_lock(home, run_plan.run_id, wait=_wait_seconds(), kind="airflow", lease=run_plan.run_id):
            summary = pipeline.publish_run(home, run_plan, [SourceOutcome.model_validate(o) for o in outcomes or []],
                                           trigger="airflow")
            runlock.end_lease(home, run_plan.run_id)
        return summary.model_dump(mode="json")

    planned = plan_run()
    extracted = extract.expand(source=changed_sources(planned))
    publish(planned, harmonise.expand(extracted=extracted))


nightly_import()
