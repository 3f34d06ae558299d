"""Nightly import of every source into the Rare Tumour Warehouse.

all_sources -> pull.wait_for_export -> pull.pull_export (a mapped task group: one of each per
source) -> plan_run -> changed_sources -> source.extract -> source.harmonise (a mapped task group:
one of each per changed source) -> publish -> verdict (mapped: one per source) and announce_change.

- pull waits (deferred, no worker slot) for the night's export in the source's drop zone, up to the
  mapping's `delivery.wait_minutes`, then pulls what is new into landing/ (etl/pull, docs/pull.md);
  without a `delivery:` block both are instant no-ops. A failed pull is retried, then fails its
  task; plan_run (trigger rule all_done) goes on with what landing holds.
- publish (trigger rule all_done) validates every record against the rule catalogue inside the
  new warehouse file (error -> quarantine, warning -> issue), swaps the file in and writes the
  report. It publishes the sources that were harmonised; a changed source without an outcome (its
  extract or harmonise task crashed, timed out or was killed) is recorded as failed in the run
  record (meta.run.sources_failed) with the reason its task left, and keeps its last good data.
- verdict[<source>] fails when its source failed, was held or could not be pulled, or the night's pull left a
  file in its drop zone by more pulls in a row than RTW_LEFT_FOR_LATER_PULLS (the pull stays green), with a
  message naming the source and the reason: the run's failures show on the source's own task, and the DAG
  run is red. The first failed verdict sends one notification for all of them (etl/notify.py);
  publish, as it fails, tells of a plan or publish that failed, with why; the DAG's
  on_failure_callback tells of a run that failed otherwise (a task killed, a timeout).
- announce_change emits the `rtw_warehouse` Asset event, with the run id, status, changed and
  failed sources as its extra, only when the warehouse changed; otherwise it is skipped.

The DAG only declares: every step is a function of `etl.pipeline`, the same ones `rtw run`
calls, imported inside the tasks so parsing this file touches no database, no connection
and no data library. Tasks pass the typed step values of `etl.steps` as JSON (paths and
counts, never data).

One run at a time per home: a DAG run spans several processes, so no task can hold the home's
file lock for all of it. plan_run takes the lock, repairs what a killed run left, and writes a
lease (`<home>/.run.lease`, naming its DAG run); extract and harmonise keep its heartbeat fresh;
publish takes the lock again, checks the lease is still this run's, publishes and ends it (or, when
the publish fails, releases it: the home is free, and a retry of publish may take it back); the DAG's
on_failure_callback releases it too when the DAG run failed between two tasks (a task failed, a timeout): no
task of it is at work then to free the home (a DAG run marked failed by hand calls no DAG callback: the package's
Airflow listener plugin frees it then, etl/airflow_listener.py; one still at work on this host is left to free it
as it stops). `rtw run` sees the lease and waits or refuses
(etl/runlock.py); so does another DAG run's plan while the DAG run the lease names is still running:
`max_active_runs=1` keeps the scheduled and manual runs apart, but not a backfill's. Each extract, harmonise
and publish task says it is at work for its run while it is (`runlock.heartbeat`; publish from before it waits
for the home): once every one of those at work is gone (killed, out of memory, on this host), `rtw run` takes the
home over at once instead of waiting for the lease to lapse; so does the next run after a DAG run whose tasks all
run in one process (`airflow dags test`). A task's process is made owner-only (umask 077): the home holds identifiers.

Retries are for reading exports (pull, extract), not for publish or for steps a retry cannot
mend. Every task has an execution timeout and the run a `dagrun_timeout`. The param `force`
reloads every source even if unchanged. docs/operations.md says how to be notified.

Configuration, read at run time: the warehouse home from env `RTW_HOME` (else the Airflow
Variable `rtw_home`, else ./var); the mappings from the Airflow Variable `rtw_sources_dir` (else
env `RTW_SOURCES_DIR`, else the shipped ones; etl/resources.py); the pseudonymisation key from
the Airflow Variable `rtw_pseudonym_key` (so any secrets backend works), else env
`RTW_PSEUDONYM_KEY`, else the home's key file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, Variable, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from etl import notify
from etl.config import seconds_setting
from etl.pull.sensor import DropZoneSensor, home_setting, key_setting  # light at parse: pull loads in a task

# The warehouse's identity, the same wherever this file is parsed: consumers schedule on it by name.
WAREHOUSE = Asset(name="rtw_warehouse", uri="x-rtw://warehouse")

# Reading exports may meet a share, server or bucket that hiccups: retry, later each time (2 min, 4 min, ...).
READ_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(minutes=2),
                                "retry_exponential_backoff": 2.0, "max_retry_delay": timedelta(minutes=15)}
PULL_RETRIES: dict[str, Any] = {**READ_RETRIES, "retries": 3}
# The sensor waits up to the mapping's delivery.wait_minutes (default 6 h) for the night's export.
WAIT_TIMEOUT = timedelta(hours=8)
CRASH_KEY = "crash"  # the XCom a failed pull, extract or harmonise leaves for publish: why, for its source
# Who sends a task's process SIGTERM: Airflow's supervisor, when the task is marked failed or cleared, its DAG run
# is, its worker shuts down, or too many of its heartbeats in a row failed ([workers] max_failed_heartbeats: the API
# server out of reach); also when the process lingers past [core] task_success_overtime once its task succeeded (its
# work done, nothing stoppable left). 5 s later (fixed in Airflow 3) it sends SIGKILL.
AIRFLOW_STOP = ("Airflow stopped the task: marked failed or cleared, its worker shut down, or too many of its "
                "heartbeats failed (the API server out of reach)")
_REASON_CHARS = 500
_NAMED_WAITS = 5  # the files waiting too long a verdict names, those waiting longest; then how many more


def _home() -> Any:
    from etl.config import resolve_home

    os.umask(0o077)  # this task's process only: whatever it writes under the home is owner-only
    return resolve_home(home_setting()).ensure()  # env RTW_HOME, else the Variable rtw_home: as the sensor


def _sources_dir() -> Any:
    """The mappings: the Airflow Variable `rtw_sources_dir`, else env RTW_SOURCES_DIR, else the shipped ones."""
    from etl.resources import SOURCES_VARIABLE, sources_dir

    return sources_dir(Variable.get(SOURCES_VARIABLE, default=None))


def _wait_seconds() -> float:
    """How long plan and publish wait for a run holding the home (env RTW_RUN_WAIT, default 60 s)."""
    return seconds_setting("RTW_RUN_WAIT", 60, zero=True)


class StepFailed(RuntimeError):
    """A source's step failed for a reason it states (not a crash): the task fails, and is retried."""


@contextmanager
def _source_step(step: str, source_id: str) -> Iterator[None]:
    """Name the task by its source, and leave publish the reason if the step fails or crashes."""
    context = get_current_context()
    context["source_id"] = source_id  # type: ignore[typeddict-unknown-key]  # for map_index_template
    try:
        yield
    except BaseException as exc:  # a timeout (AirflowTaskTimeout) too: the task fails, publish says why
        reason = (_first_line(exc) if isinstance(exc, StepFailed) else f"{step} {exc}" if _is_stop(exc)
                  else _crash_reason(step, source_id, exc))
        context["ti"].xcom_push(key=CRASH_KEY, value={"source_id": source_id, "reason": reason})
        raise


def _crash_reason(step: str, source_id: str, exc: BaseException) -> str:
    """As `rtw run` says it (meta.run, the notification): the step, the exception's type and first line."""
    from etl import pipeline

    return pipeline.crash_reason(_home(), step, source_id, exc, _sources_dir())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:_REASON_CHARS]


def _said(exc: BaseException) -> str:
    from etl import run_record

    return run_record.said(exc)


def _night(run_id: str, step: str) -> Any:
    """This DAG run's record in the home (etl/run_record.py), which `rtw status` reads: a night that fails
    before it publishes cannot be recorded in the warehouse."""
    from etl import run_record

    return run_record.Night(_home(), run_id, "airflow", step=step, dag_run_id=get_current_context()["run_id"])


def _is_stop(exc: BaseException) -> bool:
    from etl import run_record

    return isinstance(exc, run_record.Stopped)


@contextmanager
def _at_work(run_id: str, step: str) -> Iterator[Any]:
    """An extract or harmonise task of the run at work (where the night was, should it be killed), stoppable: Airflow's
    SIGTERM stops it where it is (run_record.Night.stoppable), its forked readers ended with it, where Airflow's own
    handler let it run on until the SIGKILL. Publish, if the DAG run goes on to it, fails the source with the reason;
    if the DAG run is over (marked failed), nothing will publish: the night is recorded stopped and the home freed."""
    from etl import runlock

    night = _night(run_id, step)
    try:
        with runlock.heartbeat(night.home, run_id, step=step, runs=_dag_run_goes_on), night.stoppable(AIRFLOW_STOP):
            night.reached(step)
            yield night.home
    except BaseException as exc:
        if night.stopped is None:
            raise
        if not _dag_run_goes_on():
            _free_home(night.home, run_id)
            with night.failing():  # records it, and raises the stop (DuckDB may have made it "Query interrupted")
                raise
        night.raise_stop(exc)


@contextmanager
def _freed_if_stopped(night: Any) -> Iterator[None]:
    """publish told to stop: nothing of its run will publish now, so the home is freed (`_free_home`)."""
    try:
        yield
    except BaseException:
        if night.stopped is not None:
            _free_home(night.home, night.run_id)
        raise


def _free_home(home: Any, run_id: str) -> None:
    """Release the lease of a DAG run stopped by Airflow: the next run takes the home at once. Stopped cleanly, its
    tasks leave no process at work that is gone (etl/runlock.py), and the lease would hold the home two hours."""
    from etl import runlock

    lease = runlock.read_lease(home)
    if not lease or lease.get("run_id") != run_id or lease.get("released"):  # ended (published) or released already
        return
    # A moment's wait only: Airflow sends SIGKILL 5 s after its SIGTERM.
    with suppress(runlock.RunBusy), runlock.run_lock(home, run_id, wait=1, kind="airflow", lease=run_id):
        runlock.release_lease(home, run_id)


def _free_home_of_failed_run(context: Any) -> None:
    """The DAG's on_failure_callback, before its message: a DAG run that failed (a task failed, the run timed out)
    between two of its tasks left its lease live and no task of it at work (their stop frees the home, `_at_work`):
    `rtw run` refused for the lease's two hours, naming a run that had ended; only the next DAG run took over.
    Its lease is released, if it still names this DAG run, and its night recorded failed with the DAG run's reason
    (etl/airflow_listener.py, whose listener does the same for a DAG run marked failed by hand)."""
    from etl.airflow_listener import free_home_of_failed_dag_run

    free_home_of_failed_dag_run(str(context["run_id"]), str(context.get("reason") or "failed"),
                                told_by="the DAG's on_failure_callback")


def _dag_run_goes_on() -> bool:
    """Whether this task's DAG run is still running (only this task was stopped): its publish will come. When Airflow
    cannot say, it does: the lease's two hours decide."""
    ti = get_current_context()["ti"]
    return _dag_run_running(ti, ti.run_id, unknown=True)


def _dag_run_running(ti: Any, dag_run_id: str, *, unknown: bool) -> bool:
    """Whether a DAG run of this DAG is queued or running, as Airflow says; `unknown` when it cannot say (no such DAG
    run, the API server out of reach)."""
    try:
        state = ti.get_dagrun_state(dag_id=ti.dag_id, run_id=dag_run_id)
    except Exception:
        return unknown
    return str(getattr(state, "value", state)) in ("queued", "running")


@contextmanager
def _plan_step(run_id: str) -> Iterator[Any]:
    """plan_run, with the run's record: if it fails, leave why for the run's failure message, which publish
    sends, and in the home."""
    try:
        night = _night(run_id, "plan_run")
        with night.failing(), night.stoppable(AIRFLOW_STOP):
            yield night
    except BaseException as exc:
        get_current_context()["ti"].xcom_push(key=notify.FAILURE_KEY, value=_said(exc))
        raise


@contextmanager
def _telling(*, plan_failed: bool) -> Iterator[dict[str, Any]]:
    """publish: if the run fails here (or failed in plan_run), send its one message, with why. The DAG's
    callback, which Airflow hands the last task to fail, named publish after a plan that failed, and
    never the reason (a key other than the warehouse's, another run holding the home, a disk full).
    What it yields publish fills when its run was published before it failed (stopped once its warehouse went
    live): the message then says so, with each source's verdict, where it said the run failed before any source
    could be judged, the warehouse unchanged."""
    published: dict[str, Any] = {}
    try:
        yield published
    except BaseException as exc:
        if published:
            notify.on_stopped_after_publishing(get_current_context(), published)
        else:
            notify.on_run_step_failure(get_current_context(), None if plan_failed else _said(exc))
        raise


@dag(
    dag_id="rtw_nightly_import",
    description="Pull the night's exports, harmonise them and publish the warehouse",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=10),  # the wait for exports (6 h by default) and the import
    default_args={"owner": "rtw-data-management", "retries": 0, "execution_timeout": timedelta(hours=1)},
    params={"force": Param(False, type="boolean",
                           description="Reload every source, even those whose exports and mapping are unchanged")},
    on_failure_callback=[_free_home_of_failed_run, notify.on_run_failure],
    tags=["rare-tumour-warehouse"],
    doc_md=__doc__,
)
def nightly_import() -> None:
    @task(execution_timeout=timedelta(minutes=5))
    def all_sources() -> list[str]:
        from etl.pull.deliveries import source_ids

        return source_ids(_sources_dir())

    @task(map_index_template="{{ source_id }}", **PULL_RETRIES)
    def pull_export(source_id: str) -> dict[str, Any]:
        """New exports from the source's drop zone into landing/ (a no-op without a `delivery:` block)."""
        from etl.pull import connection_id
        from etl.pull.sensor import connection_uri, pull_with_key

        with _source_step("pull", source_id):
            mappings = _sources_dir()
            uri = connection_uri(connection_id(source_id, sources_dir=mappings))
            # the key (the Variable's) tells an erased patient's file by the ledger's keyed digests
            outcome = pull_with_key(_home(), source_id, uri, mappings)
            if outcome.status.value == "failed":  # a dropped connection, a refused file: retried, then told
                raise StepFailed(f"its pull failed: {outcome.message}")
            return outcome.handed_over()

    @task_group
    def pull(source_id: str) -> Any:
        """One source: wait (deferred) for its night's export in its drop zone, then pull it."""
        waited = DropZoneSensor(task_id="wait_for_export", source_id=source_id,
                                sources_dir="{{ var.value.get('rtw_sources_dir', '') }}",
                                execution_timeout=WAIT_TIMEOUT, map_index_template="{{ task.source_id }}")
        pulled = pull_export(source_id)
        waited >> pulled
        return pulled

    # all_done: a source whose pull failed keeps what landing holds; the others go on.
    @task(execution_timeout=timedelta(minutes=20), trigger_rule="all_done")
    def plan_run() -> dict[str, Any]:
        from etl import pipeline, repair, runlock, schema

        with _plan_step(pipeline.new_run_id()) as night:  # why it fails: in the run's failure message, rtw status
            context = get_current_context()
            force = bool(context["params"].get("force", False))
            # The key guard runs here: a key other than the warehouse's fails this task, before any harmonising.
            key = key_setting()
            home, run_id = night.home, night.run_id
            with runlock.run_lock(home, run_id, wait=_wait_seconds(), kind="airflow", lease="replace",
                                  running=lambda lease: _still_running(lease, context)):
                night.begin("plan_run")
                with schema.reading(home.warehouse) as live:  # one read of the warehouse for both
                    repair.repair(home, live)
                    planned = pipeline.plan(home, key_value=key, run_id=run_id, force=force,
                                            sources_dir=_sources_dir(), live=live)
                runlock.take_lease(home, run_id, dag_run_id=context["run_id"])  # holds the home until publish
            return planned.model_dump(mode="json")

    @task(execution_timeout=timedelta(minutes=5))
    def changed_sources(planned: dict[str, Any]) -> list[dict[str, str]]:
        return [{"run_id": planned["run_id"], "source_id": s} for s in planned["changed"]]

    @task(map_index_template="{{ source_id }}", **READ_RETRIES)
    def extract(source: dict[str, str]) -> dict[str, Any]:
        with _source_step("extract", source["source_id"]), \
                _at_work(source["run_id"], f"source.extract[{source['source_id']}]") as home:
            from etl import pipeline  # stoppable first: this import takes seconds

            return pipeline.extract_source(home, source["run_id"], source["source_id"],
                                           sources_dir=_sources_dir()).model_dump(mode="json")

    @task(map_index_template="{{ source_id }}")
    def harmonise(extracted: dict[str, Any]) -> dict[str, Any]:
        from etl.steps import SourceOutcome

        with _source_step("harmonise", extracted["source_id"]):
            key = key_setting()
            outcome = SourceOutcome.model_validate(extracted)
            with _at_work(outcome.run_id, f"source.harmonise[{outcome.source_id}]") as home:
                from etl import pipeline  # stoppable first: this import takes seconds

                return pipeline.harmonise_extracted(home, outcome, key_value=key,
                                                    sources_dir=_sources_dir()).model_dump(mode="json")

    @task_group
    def source(changed: dict[str, str]) -> Any:
        """One changed source: a crash here fails this source only (publish records it as failed)."""
        return harmonise(extract(changed))

    @task(trigger_rule="all_done", execution_timeout=timedelta(hours=2))
    def publish(planned: dict[str, Any], outcomes: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
        """Validate, publish atomically, report; what every source came to."""
        from etl import run_record, runlock
        from etl.steps import RunPlan, SourceOutcome

        if planned is None:  # all_done: it runs after a failed plan too; the run's message says why plan failed
            with _telling(plan_failed=True):
                raise RuntimeError("nothing to publish: plan_run failed (its log says why); the warehouse is unchanged")
        with _telling(plan_failed=False) as published_before_stop:
            run_plan = RunPlan.model_validate(planned)
            night = _night(run_plan.run_id, run_record.DAG_PUBLISH)
            # Airflow's SIGTERM stops it where it is: its copy of the warehouse removed, the home freed, the night
            # recorded stopped, all before the SIGKILL 5 s later; Airflow's own handler let it run on till then.
            with night.failing(), night.stoppable(AIRFLOW_STOP), _freed_if_stopped(night):
                night.reached(run_record.DAG_PUBLISH)  # this process: if it dies, rtw status says killed at once
                from etl import pipeline  # stoppable first: this import takes seconds

                home = night.home
                handed = [SourceOutcome.model_validate(o) for o in _as_list(outcomes)]
                judged = handed + _without_outcome(run_plan, {o.source_id for o in handed})
                # Refuses (RunBusy) when this run's lease was lost: its outcomes may be older than what is live.
                with runlock.run_lock(home, run_plan.run_id, wait=_wait_seconds(), kind="airflow",
                                      lease=run_plan.run_id):
                    runlock.publishing(home, run_plan.run_id)  # killed now, the next run takes the home at once
                    went_live: list[bool] = []  # the new warehouse is live, as it goes (no stop between the two)
                    try:
                        summary = pipeline.publish_run(home, run_plan, judged, trigger="airflow",
                                                       sources_dir=_sources_dir(),
                                                       after_swap=lambda: went_live.append(True))
                    except BaseException:
                        # Stopped as the new warehouse went live (the stop waits for the rename, stops_held): the
                        # run is published; what follows the swap (marts, report) the next run's repair writes.
                        if night.stopped is not None and went_live:
                            night.published()
                            runlock.end_lease(home, run_plan.run_id)
                            published_before_stop |= _stopped_once_live(run_plan, judged, sources, night.stopped)
                        else:  # the warehouse is as it was: the home is free for `rtw run` (or a retry)
                            runlock.release_lease(home, run_plan.run_id)
                        raise
                    runlock.end_lease(home, run_plan.run_id)
            night.published()
        sources = sources or sorted({*run_plan.changed, *run_plan.unchanged})  # all_sources failed: what plan saw
        judged = pipeline.as_recorded(judged, summary)  # a source publish failed itself
        return {**summary.model_dump(mode="json"), "sources": sources,
                "verdicts": _verdicts(sources, judged, _pull_failures(sources), _long_waits(sources))}

    @task(map_index_template="{{ source_id }}", execution_timeout=timedelta(minutes=5),
          on_failure_callback=notify.on_source_failure)
    def verdict(source_id: str, published: dict[str, Any]) -> str:
        """Fail when this source's pull failed, a file waits too long in its drop zone, or it was not loaded (failed
        or held), saying why."""
        get_current_context()["source_id"] = source_id  # type: ignore[typeddict-unknown-key]
        judged = published["verdicts"].get(source_id) or {"status": "failed", "reason": "publish never judged it"}
        problems = [judged[k] for k in ("pull", "waiting") if judged.get(k)]
        if judged["status"] in notify.NOT_LOADED:
            problems.append(f"not loaded ({judged['status']}): {judged['reason']}; it keeps its last good data")
        elif problems:  # only the pull failed, or a file waits: say what the import did with what landing held
            problems.append("the exports already in landing were loaded" if judged["status"] == "harmonised"
                            else "landing held nothing new: its data is unchanged")
        if problems:
            raise AirflowFailException(f"{source_id}: {'; '.join(problems)}")
        return f"{source_id}: {judged['status']}"

    @task(outlets=[WAREHOUSE], execution_timeout=timedelta(minutes=5))
    def announce_change(published: dict[str, Any]) -> None:
        """The Asset event, with what changed, only when the warehouse did."""
        if not published["sources_changed"] and not published["validated"]:
            raise AirflowSkipException("the warehouse did not change: no asset event")
        context = get_current_context()
        context["outlet_events"][WAREHOUSE].extra = {
            "run_id": published["run_id"], "dag_run_id": context["run_id"], "status": published["status"],
            "sources_changed": published["sources_changed"], "sources_failed": published["sources_failed"],
            "validated": published["validated"], "report": published["report"]}

    sources = all_sources()
    planned = plan_run()
    pull.expand(source_id=sources) >> planned
    changed = changed_sources(planned)
    published = publish(planned, source.expand(changed=changed), sources)
    verdict.partial(published=published).expand(source_id=sources)
    announce_change(published)


def _still_running(lease: dict[str, Any], context: Any) -> bool:
    """Whether the DAG run a live lease names is another one, still queued or running (a backfill's runs
    are not kept apart by max_active_runs): its plan holds the home until its publish ends the lease."""
    dag_run_id = lease.get("dag_run_id")
    if not dag_run_id or dag_run_id == context["run_id"]:
        return False
    # Not said: no such DAG run (deleted, or of another Airflow), nothing will end the lease.
    return _dag_run_running(context["ti"], dag_run_id, unknown=False)


def _stopped_once_live(run_plan: Any, judged: list[Any], sources: list[str], stop: BaseException) -> dict[str, Any]:
    """What publish, stopped once its warehouse went live, tells (notify.on_stopped_after_publishing): its run, the
    sources it loaded, each source's verdict (its verdict tasks will not run: publish fails) and the stop. What its
    pulls left unsaid (Airflow's or the home's records unread in the seconds before the SIGKILL) is left out."""
    sources = sources or sorted({*run_plan.changed, *run_plan.unchanged})
    try:
        pull_failures, long_waits = _pull_failures(sources), _long_waits(sources)
    except Exception:
        pull_failures, long_waits = {}, {}
    return {"run_id": run_plan.run_id, "stop": str(stop), "sources": sources, "report": None,
            "sources_changed": sorted(o.source_id for o in judged if o.status.value == "harmonised"),
            "verdicts": _verdicts(sources, judged, pull_failures, long_waits)}


def _as_list(outcomes: Any) -> list[dict[str, Any]]:
    """The values of a mapped task as a list: Airflow 3.3 hands them over as the lone value itself, not
    a one-item list, when a single map index returned one (the others crashed)."""
    if isinstance(outcomes, dict):
        return [outcomes]
    return [o for o in outcomes or [] if o]


def _verdicts(sources: list[str], judged: list[Any], pull_failures: dict[str, str],
              long_waits: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What each source came to, for its verdict task and the notification: the import's status
    (unchanged, harmonised, failed, held) and why, why its pull failed, if it did, and which files wait too long in
    its drop zone, if some do."""
    unchanged = {"status": "unchanged", "reason": None, "pull": None, "waiting": None}
    verdicts: dict[str, dict[str, Any]] = {s: dict(unchanged) for s in sources}
    verdicts |= {o.source_id: {**unchanged, "status": o.status.value, "reason": o.message} for o in judged}
    for key, said in (("pull", pull_failures), ("waiting", long_waits)):
        for source_id, why in said.items():
            verdicts.setdefault(source_id, dict(unchanged))[key] = why
    return verdicts


def _long_waits(sources: list[str]) -> dict[str, str]:
    """The files the night's pull of each source left in its drop zone for later, by more pulls in a row than
    RTW_LEFT_FOR_LATER_PULLS (etl/pull/nights.py): the pull stays green, having pulled what was ready; the
    source's verdict fails, naming them, so that someone has a word with the sender."""
    from etl.pull.nights import long_wait_said, long_waits

    began = get_current_context()["dag_run"].start_date
    if began is None:
        return {}
    home, waits = _home(), {}
    for source_id in sources:
        files, most = long_waits(home, source_id, began)
        if files:
            named = [long_wait_said(f, most) for f in files[:_NAMED_WAITS]]
            more = f"; and {len(files) - _NAMED_WAITS} more as long" if len(files) > _NAMED_WAITS else ""
            waits[source_id] = f"{'; '.join(named)}{more}"
    return waits


def _pull_failures(sources: list[str]) -> dict[str, str]:
    """Why the pull of a source failed, for each source whose pull handed over no outcome: its crash, else why
    its wait for the export failed, as the sensor recorded it with the source's pulls (etl/pull/nights.py)."""
    ti = get_current_context()["ti"]
    pulled = {o["source_id"] for o in _as_list(ti.xcom_pull(task_ids="pull.pull_export"))}
    failed = {c["source_id"]: c["reason"] for c in _as_list(ti.xcom_pull(task_ids="pull.pull_export", key=CRASH_KEY))}
    return {s: failed.get(s) or _wait_failure(s) for s in sources if s not in pulled}


def _wait_failure(source_id: str) -> str:
    """Why the source's wait for its export failed this DAG run (its pull then never ran): what the sensor's
    failure callback recorded; unrecorded (its worker lost, the home's disk full), where to look."""
    from etl.pull.nights import last_failure

    began = get_current_context()["dag_run"].start_date
    recorded = last_failure(_home(), source_id, began) if began is not None else None
    if recorded is None:
        return "its pull did not run: waiting for its export in its drop zone failed (see pull.wait_for_export)"
    return recorded.removeprefix(f"{source_id}: ")  # the verdict and the notification name the source


def _without_outcome(run_plan: Any, handed: set[str]) -> list[Any]:
    """The changed sources whose tasks handed over no outcome, as failed, with the reason they left."""
    from etl.steps import SourceOutcome, SourceStatus

    if not set(run_plan.changed) - handed:
        return []
    # Every map index at once: asking one that has none would log an error for nothing.
    left = get_current_context()["ti"].xcom_pull(task_ids=["source.extract", "source.harmonise"], key=CRASH_KEY)
    reasons = {crash["source_id"]: crash["reason"] for crash in left or [] if crash}
    return [SourceOutcome(source_id=source_id, run_id=run_plan.run_id, status=SourceStatus.FAILED,
                          message=reasons.get(source_id, "its extract or harmonise task ended without an outcome "
                                                         "(killed, or its worker lost); see that task's log"))
            for source_id in run_plan.changed if source_id not in handed]


nightly_import()
