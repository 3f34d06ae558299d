"""The nightly DAG on a troubled night: failed sources, a failed pull, a refused key; each told."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from dag_runs import (
    FIVE_SOURCES,
    DagRuns,
    Notified,
    airflow_db,
    asset_events,
    meta_runs,
    notifications,
    run_into,
    synthetic_home,
    task_states,
)
from few_sources import mappings_of
from status_runs import failed_night, last_runs
from typer.testing import CliRunner

from etl.cli import app
from etl.config import SOURCES_DIR


@pytest.fixture(scope="module")
def notified() -> Iterator[Notified]:
    with notifications() as servers:
        yield servers


@dataclass
class TroubledRuns(DagRuns):
    warehouse_before_refused: str = ""  # sha256 of the warehouse file before the refused run
    harmonised_before_refused: list[Path] = field(default_factory=list)
    status_after: str = ""  # what `rtw status` printed after the three nights


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory, notified) -> TroubledRuns:
    """A night with four kinds of trouble, each for one source: sacha_fr's ODM export cut in half (the
    source fails); esmart's harmonise crashes; crizotinib_imt's drop zone offers a file whose checksum
    does not match (its pull fails; its copy already in landing is loaded anyway); registry_it's export
    waits in its drop zone (pulled, then loaded), beside an upload that never ends (left for later by each pull:
    by more than RTW_LEFT_FOR_LATER_PULLS=1 from the second run on). iltb has no trouble."""
    root = tmp_path_factory.mktemp("failing")
    home = synthetic_home(root / "home", tmp_path_factory)
    odm = home.landing / "sacha_fr" / "SACHA_ODM_20261101.xml"
    odm.write_bytes(odm.read_bytes()[: odm.stat().st_size // 2])
    blocker = home.staging / "esmart" / "harmonised"  # a file where harmonise makes its folder: it crashes
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    sources = root / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    zones = {source_id: root / "zones" / source_id for source_id in ("crizotinib_imt", "registry_it")}
    for source_id, zone in zones.items():
        zone.mkdir(parents=True)
        with (sources / f"{source_id}.yaml").open("a") as mapping:
            mapping.write(f"\ndelivery:\n  url: {zone}\n  wait_minutes: 0\n")
    export = home.landing / "registry_it" / "TREP_export_20261101.csv"
    export.rename(zones["registry_it"] / export.name)
    (zones["registry_it"] / UPLOADING).write_bytes(b"")  # a sender that never finishes its upload
    workbook = home.landing / "crizotinib_imt" / "CRIZOTINIB_IMT_export_20261101.xlsx"
    shutil.copy2(workbook, zones["crizotinib_imt"] / workbook.name)
    (zones["crizotinib_imt"] / f"{workbook.name}.sha256").write_text(f"{'0' * 64}  {workbook.name}\n")
    # The mappings from the Airflow Variable (docs/deployment.md), which every task and sensor must read;
    # retries a second apart (Airflow caps every retry delay at max_task_retry_delay).
    pulling = {"AIRFLOW_VAR_RTW_SOURCES_DIR": str(sources), "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": "1",
               "RTW_LEFT_FOR_LATER_PULLS": "1"}
    runs = TroubledRuns(home, [], [], [])
    run_into(home, notified, runs, extra_env=pulling)
    run_into(home, notified, runs, extra_env=pulling)  # again: only the two failed sources are planned
    # Then a run with another pseudonymisation key (and the checkout's mapping of iltb alone: no pull fails, and
    # plan_run's key guard comes before any source's; four sources more were twelve mapped tasks to no end):
    # plan_run refuses it, nothing is published.
    runs.warehouse_before_refused = hashlib.sha256(home.warehouse.read_bytes()).hexdigest()
    runs.harmonised_before_refused = sorted(home.staging.glob("*/harmonised/*"))
    run_into(home, notified, runs, extra_env=mappings_of(root / "refused_sources", "iltb")
             | {"AIRFLOW_VAR_RTW_PSEUDONYM_KEY": "another key " + "0" * 32})
    status = CliRunner().invoke(app, ["status", "--home", str(home.root)], env={"COLUMNS": "1000"})
    assert status.exit_code == 0, status.output
    runs.status_after = status.output
    return runs


LOADED = ["crizotinib_imt", "iltb", "registry_it"]  # of the troubled night's first run
UPLOADING = "TREP_export_20261102.csv"  # 0 bytes in registry_it's drop zone, every night
FAILED = ["esmart", "sacha_fr"]


@pytest.mark.airflow
def test_a_failed_source_fails_its_task_and_the_run_after_the_others_are_published(failed_run):
    home, run = failed_run.home, failed_run.runs[0]
    assert not run.succeeded
    assert airflow_db(home, "SELECT state FROM dag_run ORDER BY id") == [("failed",)] * 3
    states = task_states(home, latest=False)
    assert states["verdict[sacha_fr]"] == "failed" and states["verdict[esmart]"] == "failed"
    assert states["source.harmonise[esmart]"] == "failed"  # the crash shows on its own task too
    assert states["publish"] == "success"
    assert {states[f"verdict[{s}]"] for s in ("iltb", "registry_it")} == {"success"}
    (_, _, status, changed, _, failed, message), _again = meta_runs(home)  # the third published nothing
    assert (status, changed, failed) == ("completed_with_failures", LOADED, FAILED)
    assert "SACHA_ODM_20261101.xml" in message
    # The crashed task (a process of its own) recorded as `rtw run` records it.
    blocker = home.staging / "esmart" / "harmonised"
    assert f"esmart: harmonise crashed: FileExistsError: [Errno 17] File exists: '{blocker}'" in message
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT list(DISTINCT source_id ORDER BY source_id) FROM core.diagnosis").fetchone()[0] \
            == LOADED
    finally:
        con.close()
    log = run.output
    assert "sacha_fr: not loaded (failed): SACHA_ODM_20261101.xml" in log


@pytest.mark.airflow
def test_a_failed_run_sends_one_mail_naming_the_run_the_sources_their_reasons_and_the_report(failed_run):
    first = failed_run.mails[0]
    assert len(first) == 1, first
    run_id = meta_runs(failed_run.home)[0][0]
    dag_run_id = airflow_db(failed_run.home, "SELECT run_id FROM dag_run ORDER BY id")[0][0]
    text = first[0]
    assert run_id in text and dag_run_id in text
    assert "sacha_fr (failed): SACHA_ODM_20261101.xml" in text
    assert "esmart (failed): harmonise crashed: FileExistsError" in text
    assert str(failed_run.home.reports / run_id / "index.html") in text
    assert "Loaded: crizotinib_imt, iltb, registry_it" in text
    [post] = failed_run.posts[0]
    assert post["run_id"] == run_id and post["dag_run_id"] == dag_run_id
    assert sorted(s["source_id"] for s in post["sources"]) == ["crizotinib_imt", *FAILED]


@pytest.mark.airflow
def test_exports_are_pulled_from_drop_zones_before_the_import_and_a_failed_pull_is_retried_then_told(failed_run):
    home, run = failed_run.home, failed_run.runs[0]
    states = task_states(home, latest=False, tries=True)
    assert states["pull.pull_export[registry_it]"] == ("success", 1)
    assert states["pull.pull_export[crizotinib_imt]"] == ("failed", 4)  # 3 retries
    assert {states[f"pull.wait_for_export[{s}]"][0] for s in FIVE_SOURCES} == {"success"}
    assert (home.landing / "registry_it" / "TREP_export_20261101.csv").is_file()  # pulled, then loaded
    assert states["verdict[crizotinib_imt]"][0] == "failed"  # loaded from landing, but its pull failed
    log = run.output
    assert "registry_it: new in " in log  # the sensor read the mappings of the Variable too
    assert "crizotinib_imt: its pull failed: crizotinib_imt: " in log
    [mail] = failed_run.mails[0]
    assert "- crizotinib_imt (pull failed): its pull failed: crizotinib_imt: " in mail and "sha256" in mail
    assert "registry_it" not in mail.split("Loaded:")[0]


@pytest.mark.airflow
def test_a_run_where_only_failing_sources_changed_records_them_and_announces_nothing(failed_run):
    # One outcome handed over (sacha_fr's), one crash: the case where Airflow hands a lone value.
    assert not failed_run.runs[1].succeeded
    _first, (run_id, _, status, changed, unchanged, failed, message) = meta_runs(failed_run.home)[:2]
    assert (status, changed, failed) == ("completed_with_failures", [], FAILED)
    assert unchanged == LOADED
    assert "harmonise crashed: FileExistsError" in message
    [mail] = failed_run.mails[1]
    assert run_id in mail and "esmart (failed)" in mail and "sacha_fr (failed)" in mail
    assert len(asset_events(failed_run.home)) == 1  # the first run's: this one changed nothing


@pytest.mark.airflow
def test_a_run_that_fails_before_publishing_is_told_naming_the_task_that_failed_and_why(failed_run):
    assert not failed_run.runs[2].succeeded
    assert "KeyMismatch: the pseudonymisation key differs from the one this warehouse was built with" \
        in failed_run.runs[2].output
    assert len(meta_runs(failed_run.home)) == 2  # nothing published, nothing harmonised
    assert hashlib.sha256(failed_run.home.warehouse.read_bytes()).hexdigest() == failed_run.warehouse_before_refused
    assert sorted(failed_run.home.staging.glob("*/harmonised/*")) == failed_run.harmonised_before_refused
    dag_run_id = airflow_db(failed_run.home, "SELECT run_id FROM dag_run ORDER BY id DESC")[0][0]
    [mail] = failed_run.mails[2]
    assert f"Run (none: it failed before publishing), Airflow DAG run {dag_run_id}." in mail
    assert "The run failed: the task plan_run failed: KeyMismatch: the pseudonymisation key differs from the one " \
           "this warehouse was built with (fingerprint " in mail
    assert "the warehouse is unchanged" in mail
    [post] = failed_run.posts[2]
    assert post["run_id"] is None and post["cause"].startswith("the task plan_run failed: KeyMismatch")


@pytest.mark.airflow
def test_the_nights_are_listed_in_order_the_refused_one_with_its_task_and_why(failed_run):
    # The nights that published with failures are listed as they published, without a failed task; the refused
    # one, which plan_run recorded, with its task and why, newest first.
    rows = last_runs(failed_run.status_after)
    published = [run_id for run_id, *_ in meta_runs(failed_run.home)]
    assert [(r[1], r[2], r[3], r[4]) for r in rows[1:]] == [
        (run_id, "airflow", "completed_with_failures", "") for run_id in reversed(published)], failed_run.status_after
    status, step, reason = failed_night(rows)
    assert (rows[0][2], status, step) == ("airflow", "failed", "plan_run"), failed_run.status_after
    assert "the pseudonymisation key differs from the one this warehouse was built with" in reason


@pytest.mark.airflow
def test_a_run_that_loaded_some_sources_announces_them_and_the_failed_ones(failed_run):
    run_id = meta_runs(failed_run.home)[0][0]
    event = asset_events(failed_run.home)[0]
    assert event["run_id"] == run_id and event["status"] == "completed_with_failures"
    assert event["sources_changed"] == LOADED
    assert event["sources_failed"] == FAILED


@pytest.mark.airflow
def test_a_file_left_for_later_too_many_pulls_in_a_row_fails_its_source_verdict_not_its_pull(failed_run):
    """The pull logged it as an error and stayed green, and the run's verdicts said nothing: a sender whose upload
    never ends was seen only by whoever read the pull's log or `rtw status`."""
    home = failed_run.home
    second = airflow_db(home, "SELECT run_id FROM dag_run ORDER BY id")[1][0]
    states = dict(airflow_db(home, "SELECT task_id || coalesce('[' || rendered_map_index || ']', ''), state FROM "
                                   f"task_instance WHERE run_id = '{second}'"))
    assert states["pull.pull_export[registry_it]"] == "success"  # it pulled what was ready
    assert states["verdict[registry_it]"] == "failed" and states["verdict[iltb]"] == "success"
    assert task_states(home, latest=False)["verdict[registry_it]"] == "success"  # one pull only: not yet
    waiting = (f"{UPLOADING} has been left for later in the drop zone by 2 pulls in a row, since ")
    said = [line for line in failed_run.runs[1].output.splitlines()  # the verdict's, not the pull's log
            if f"registry_it: {waiting}" in line and "; landing held nothing new: its data is unchanged" in line]
    assert said and "(more than RTW_LEFT_FOR_LATER_PULLS=1): it is empty (0 bytes)" in said[0]
    [mail] = failed_run.mails[1]
    assert f"- registry_it (files waiting in its drop zone): {waiting}" in mail
    assert "registry_it" not in failed_run.mails[0][0].split("Loaded:")[0]
