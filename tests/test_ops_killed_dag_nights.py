"""DAG nights killed (`kill -9`, out of memory) before they published, and a wait for an export that failed,
as `rtw status` and the next run see them. `airflow dags test` runs all the tasks in one process, its own,
as `rtw demo` and `make run` do: a task killed ends the DAG run, and nothing of it is left to end its lease.

Each home holds the sources its nights are about (few_sources): a kill is the same for one source as for five."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dag_runs import meta_runs, synthetic_home, task_states
from few_sources import few_sources
from status_runs import failed_night, last_runs

from etl import runlock
from etl.airflow_local import run_dag
from etl.config import REPO_ROOT, Home
from etl.crash import CRASH_ENV

pytestmark = pytest.mark.airflow

RTW = str(Path(sys.executable).with_name("rtw"))


def _rtw(home: Home, *args: str, mappings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "1000", "RTW_PSEUDONYM_KEY": "killed-nights-key-0123456789abcdef",
           "RTW_SOURCES_DIR": mappings["AIRFLOW_VAR_RTW_SOURCES_DIR"]}  # the DAG's mappings
    env.pop(CRASH_ENV, None)
    return subprocess.run([RTW, *args, "--home", str(home.root)], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=600, check=False)


def _record(home: Home, run_id: str) -> dict:
    return json.loads((home.root / "runs" / f"{run_id}.json").read_text())


def test_a_dag_run_killed_in_extract_is_shown_killed_there_and_rtw_run_takes_the_home_over(tmp_path, tmp_path_factory):
    """It showed `running` in plan_run, and held the home, until its lease lapsed two hours later. One source
    (iltb): its extract is the first."""
    home = synthetic_home(tmp_path / "home", tmp_path_factory)
    one_source = few_sources(home, tmp_path / "sources", "iltb")
    killed = run_dag(home, env=one_source | {CRASH_ENV: "extracted"})  # the first extract task kill -9s its process
    assert not killed.succeeded
    lease = runlock.read_lease(home)
    assert lease is not None and runlock.holds(home, lease["run_id"]) is False
    status = _rtw(home, "status", mappings=one_source)
    assert status.returncode == 1 and "no warehouse yet" in status.stdout
    state, step, reason = failed_night(last_runs(status.stdout), lease["run_id"])
    assert (state, step[:len("source.extract[")]) == ("killed", "source.extract[")
    assert reason.startswith("ended without a word: killed")
    done = _rtw(home, "run", mappings=one_source)
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert f"takes the home over from run {lease['run_id']}, Airflow DAG run {lease['dag_run_id']}: " in said
    assert f"by its process pid {lease['pid']} on {lease['host']} alone, and that process is gone" in said
    assert [r[1:3] for r in meta_runs(home)] == [("cli", "completed")]
    assert (_record(home, lease["run_id"])["status"], runlock.read_lease(home)) == ("killed", None)


def test_a_dag_run_whose_publish_was_killed_leaves_the_home_to_the_next_night_at_once_and_rtw_status_shows_both(
        tmp_path, tmp_path_factory):
    """A night whose publish was killed: its lease, kept fresh by tasks of other processes, lives two hours
    (RTW_LEASE_TTL): by it alone the night was shown running that long; the publish task's process is recorded,
    and it is gone. The next DAG run's plan_run waited for the lease (the killed DAG run is `running` in Airflow's
    records: nothing is left to end it), then failed naming it.

    That next night also waits for an export that fails (one DAG run for both: another source than those it
    publishes): its verdict and the notification said it; `rtw status` showed the night
    `completed_with_failures` for the source not loaded only, as its pull, which never ran, recorded nothing.

    Two sources: registry_it, whose wait fails, and iltb, published beside it."""
    home = synthetic_home(tmp_path / "home", tmp_path_factory)
    sources = tmp_path / "sources"
    two_sources = few_sources(home, sources, "iltb", "registry_it")
    killed = run_dag(home, env=two_sources | {CRASH_ENV: "before_swap"})  # the publish task kill -9s its process
    assert not killed.succeeded
    lease = runlock.read_lease(home)
    assert lease is not None  # the home stays held until the lease lapses
    status = _rtw(home, "status", mappings=two_sources)
    assert status.returncode == 1 and "no warehouse yet" in status.stdout
    assert failed_night(last_runs(status.stdout))[:2] == ["killed", "publish"]

    zone = tmp_path / "zones" / "registry_it"
    zone.mkdir(parents=True)
    with (sources / "registry_it.yaml").open("a") as mapping:
        mapping.write(f"\ndelivery:\n  url: {zone}\n  wait_minutes: 0\n")
    export = home.landing / "registry_it" / "TREP_export_20261101.csv"
    export.rename(zone / export.name)  # waiting in the drop zone; its name holds a number: staged keys are read
    staged = home.staging / "registry_it"
    staged.mkdir(parents=True, exist_ok=True)
    (staged / f"{'ab' * 32}.parquet").write_bytes(b"not parquet")  # the sensor's look crashes reading it
    night = run_dag(home, env=two_sources | {"RTW_RUN_WAIT": "0"})
    assert not night.succeeded  # registry_it's wait failed: the others were published
    said = " ".join(night.output.split())
    assert f"takes the home over from run {lease['run_id']}" in said
    states = task_states(home)
    # Every task succeeded but registry_it's wait and what hangs on it: a takeover that broke another would show
    assert {task: state for task, state in states.items() if state != "success"} == {
        "pull.wait_for_export[registry_it]": "failed", "verdict[registry_it]": "failed",
        "pull.pull_export": "upstream_failed"}  # registry_it's (a task that never ran has no map index name)
    assert (states["plan_run"], states["publish"], states["verdict[iltb]"]) == ("success",) * 3
    assert [r[1:3] for r in meta_runs(home)] == [("airflow", "completed_with_failures")]
    assert _record(home, lease["run_id"])["status"] == "killed"
    # The verdict (and the notification) say why the wait failed, as the sensor recorded it: they said only
    # "its pull did not run: waiting for its drop zone failed (see pull.wait_for_export)".
    assert ("registry_it: waiting for its export in its drop zone failed: ArrowInvalid (its text, which may quote "
            "an export's value, is in the task's log); its pull did not run, the import went on with what landing "
            "held; not loaded (") in said
    assert "see pull.wait_for_export" not in said
    status = _rtw(home, "status", mappings=two_sources)
    assert status.returncode == 0, status.stdout + status.stderr
    newest, oldest = last_runs(status.stdout)
    statuses = [line.split("│")[4].strip() for line in status.stdout.split("Source files")[0].splitlines()
                if line.startswith("│")]
    assert statuses == ["completed_with_failures", "pull failed", "killed"]  # said under the run's status
    assert ("pull failed: registry_it: waiting for its export in its drop zone failed: ArrowInvalid (its text, "
            "which may quote an export's value, is in the task's log); its pull did not run, the import went on "
            "with what landing held") in newest[-1]
    assert (oldest[1], oldest[3], oldest[4]) == (lease["run_id"], "killed", "publish")
