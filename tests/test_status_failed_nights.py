"""A night that did not publish, as `rtw status` shows it: a publish that failed, a killed run, a home
another run held, a first night without a warehouse. Each is a real `rtw run` in its own process, on a
copy of the hostile suite's loaded home (hostile_home.py); status reads the run's record in the home
(etl/run_record.py), as only a publish writes the warehouse."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
from hostile_home import export, home_fixtures, rtw, run_count
from status_runs import PUBLISH_FAILS, PUBLISH_REASON, failed_night, last_runs
from warehouse_query import query_rows as query

from etl import runlock
from etl.config import resolve_home
from etl.crash import CRASH_ENV
from etl.extract.file_names import PatientNumbers
from etl.run_record import said
from etl.synth import generate

pytestmark = pytest.mark.integration


loaded, home = home_fixtures()


def _runs(home: Path) -> list[list[str]]:
    done = rtw(home, "status", env={"COLUMNS": "1000"})
    assert done.returncode == 0, done.stdout + done.stderr
    return last_runs(done.stdout)


def test_a_run_whose_publish_fails_is_listed_with_its_step_and_why_in_order_with_the_published(home, loaded):
    failed = rtw(home, env=PUBLISH_FAILS)
    assert failed.returncode == 1 and "Memory must have a number" in failed.stdout, failed.stdout + failed.stderr
    assert run_count(home) == loaded.runs  # nothing published
    done = rtw(home)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _runs(home)
    assert [r[3] for r in rows[:3]] == ["completed", "failed", "completed"]  # newest first, the failed between
    status, step, reason = failed_night(rows)
    assert (status, step) == ("failed", "publish") and reason.startswith(PUBLISH_REASON)
    assert rows[1][2] == "cli" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[1][0])


def test_a_killed_run_is_listed_as_killed_in_the_step_it_died_in(home, loaded):
    killed = rtw(home, env={CRASH_ENV: "before_swap"})
    assert killed.returncode == -signal.SIGKILL
    assert failed_night(_runs(home))[:2] == ["killed", "publish"]
    assert rtw(home).returncode == 0  # the next run takes the home: the record says killed from now on
    [record] = [json.loads(p.read_text()) for p in (home / "runs").glob("*.json")]
    assert (record["status"], record["step"]) == ("killed", "publish")
    assert failed_night(_runs(home), record["run_id"])[:2] == ["killed", "publish"]


def test_a_run_that_found_the_home_held_is_listed_naming_the_holder(home, loaded):
    with runlock.run_lock(resolve_home(home), "20261104T020000Z-beef"):
        refused = rtw(home)
    assert refused.returncode == 1
    status, step, reason = failed_night(_runs(home))
    assert (status, step) == ("failed", "take the home")
    assert reason.startswith("another run (20261104T020000Z-beef, pid ") and reason.endswith("holds this home")


def test_a_first_night_that_failed_is_listed_without_a_warehouse(tmp_path):
    generate(tmp_path, patients=10, seed=3)
    failed = rtw(tmp_path, env=PUBLISH_FAILS)
    assert failed.returncode == 1 and not (tmp_path / "warehouse.duckdb").exists()
    status = rtw(tmp_path, "status", env={"COLUMNS": "1000"})
    assert status.returncode == 1 and "no warehouse yet" in status.stdout  # as before, after the nights
    assert failed_night(last_runs(status.stdout))[:2] == ["failed", "publish"]


def test_a_source_whose_harmonise_crashes_under_rtw_run_is_recorded_as_the_dag_records_it(home, loaded):
    """The step and the exception's first line, as a DAG task leaves them (test_dag_troubles.py): rtw run
    said only the exception's type, "its extract and harmonise failed unexpectedly (FileExistsError)".
    Beside it another source fails otherwise: each reason names its source, once (the run's message joined
    the reasons alone, and a data manager could not tell which source failed why)."""
    blocker = home / "staging" / "esmart" / "harmonised"  # a file where harmonise makes its folder
    shutil.rmtree(blocker)
    blocker.write_text("not a folder")
    trep = export(home, "registry_it")
    trep.write_bytes(b"id_record;;sesso\r\n1;2;F\r\n")  # a header column without a name
    done = rtw(home, "run", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    [(failed, message)] = query(home, "SELECT sources_failed, message FROM meta.run ORDER BY started_at DESC LIMIT 1")
    assert failed == ["esmart", "registry_it"]
    assert message == (f"esmart: harmonise crashed: FileExistsError: [Errno 17] File exists: '{blocker}'; "
                       f"registry_it: {trep.name}, line 1: header column 2 has no name; expected every column named "
                       "(a trailing delimiter?)")
    assert f"failed sources: {message}" in " ".join(done.stdout.split())  # as rtw run prints it: each named once
    assert _runs(home)[0][-1] == message


@pytest.mark.parametrize("width", [120, 200])
def test_a_run_s_sources_are_listed_by_name_in_a_table_that_fits_the_terminal(home, width):
    """They were Python lists ("['crizotinib_imt', 'esmart', ...]") in three columns of nine, which wrapped
    a name a line at 150 columns."""
    done = rtw(home, "status", env={"COLUMNS": str(width)})
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("Source files", 1)[0]
    assert max(map(len, table.splitlines())) <= width
    assert not {"[", "'"} & set(table)
    if width == 200:
        assert "changed: crizotinib_imt, esmart, iltb, registry_it, sacha_fr" in table


def test_a_reason_hides_patient_numbers_and_keeps_run_ids():
    crash = FileNotFoundError(2, "No such file", "/h/staging/.x.20261104T020000Z-beef.partial/Fall_123456_Verlauf.csv")
    assert said(crash, PatientNumbers.of(["123456"])) == (
        "FileNotFoundError: [Errno 2] No such file: '/h/staging/.x.20261104T020000Z-beef.partial/"
        "Fall_{patient}_Verlauf.csv'")
    from etl.transform.harmonise import HarmoniseError

    assert said(HarmoniseError("bad\x1b[2J file 7654321.csv\nsecond line")) == (
        "HarmoniseError: bad\\x1b[2J file {patient}.csv")
    held = HarmoniseError("held by Airflow DAG run manual__2026-12-05T11:03:41.119659+00:00")  # a time, kept
    assert said(held) == f"HarmoniseError: {held}"


def test_a_reason_never_quotes_the_text_of_an_error_that_may_hold_an_export_s_value():
    """A library's or a bug's message may quote what it met: a date of birth, a name."""
    shown = said(ValueError("time data '12/03/2011' does not match format '%Y-%m-%d'"))
    assert shown == "ValueError (its text, which may quote an export's value, is in the run's log)"
