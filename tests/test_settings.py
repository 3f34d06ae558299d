"""Settings read from the environment: a wrong value is refused naming the setting and what is expected, at the
point a run would first need it (float()'s and int()'s own errors named none)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from etl import pipeline, runlock
from etl.config import (
    REPO_ROOT,
    Home,
    SettingError,
    bytes_setting,
    connect_duckdb,
    count_setting,
    duckdb_threads,
    read_time_limit,
)
from etl.extract.landing import quiet_seconds_default


def test_the_read_time_limit_grows_with_the_file_and_its_setting_is_checked(monkeypatch: pytest.MonkeyPatch,
                                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("RTW_READ_SECONDS", raising=False)
    assert read_time_limit(0) == 600
    assert read_time_limit(2_500_000) == 625
    monkeypatch.setenv("RTW_READ_SECONDS", "1.5")
    assert read_time_limit(0) == 1.5
    for wrong in ("ten", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("RTW_READ_SECONDS", wrong)
        with pytest.raises(SettingError, match=rf"^RTW_READ_SECONDS='{wrong}' is not a number of seconds above 0"):
            read_time_limit(0)
    monkeypatch.setenv("RTW_READ_SECONDS", "ten")
    with pytest.raises(SettingError, match=r"^RTW_READ_SECONDS='ten'"):  # the run stops as it plans, not each source
        pipeline.plan(Home(tmp_path))


def test_the_quiet_period_setting_is_checked_and_may_be_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    assert quiet_seconds_default() == 0
    for wrong in ("ten", "-1", "inf"):
        monkeypatch.setenv("RTW_QUIET_SECONDS", wrong)
        with pytest.raises(SettingError, match=rf"^RTW_QUIET_SECONDS='{wrong}' is not a number of seconds 0 or more"):
            quiet_seconds_default()


def test_the_parallel_threshold_setting_is_checked_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read with int() as etl.pipeline was imported: "invalid literal for int()", naming no setting, for any command.
    monkeypatch.setenv("RTW_PARALLEL_MIN_BYTES", "64MB")
    with pytest.raises(SettingError, match=r"^RTW_PARALLEL_MIN_BYTES='64MB' is not a whole number of bytes"):
        bytes_setting("RTW_PARALLEL_MIN_BYTES", pipeline.PARALLEL_MIN_BYTES)
    monkeypatch.setenv("RTW_PARALLEL_MIN_BYTES", "0")
    assert bytes_setting("RTW_PARALLEL_MIN_BYTES", pipeline.PARALLEL_MIN_BYTES) == 0
    monkeypatch.setenv("RTW_PARALLEL_MIN_BYTES", "²")  # a digit to str.isdigit, not to int()
    with pytest.raises(SettingError, match=r"^RTW_PARALLEL_MIN_BYTES='²' is not a whole number of bytes"):
        bytes_setting("RTW_PARALLEL_MIN_BYTES", pipeline.PARALLEL_MIN_BYTES)


@pytest.mark.parametrize(("read", "least", "words"), [(bytes_setting, 0, "a whole number of bytes"),
                                                      (count_setting, 1, "a whole number of 1 or more")])
def test_a_whole_number_setting_is_ascii_digits_from_its_least(monkeypatch: pytest.MonkeyPatch, read, least: int,
                                                                words: str) -> None:
    monkeypatch.setenv("RTW_SOME_WHOLE", f" {least} ")
    assert read("RTW_SOME_WHOLE", 7) == least
    for wrong in (str(least - 1), "²", "\u0663", "3.0", "1e3"):  # "\u0663": an Arabic-Indic 3, which int() reads
        monkeypatch.setenv("RTW_SOME_WHOLE", wrong)
        with pytest.raises(SettingError) as refused:
            read("RTW_SOME_WHOLE", 7)
        assert str(refused.value) == f"RTW_SOME_WHOLE={wrong!r} is not {words} (e.g. 7)"


def test_a_wrong_lease_setting_fails_the_task_that_beats_not_its_thread(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Read in the heartbeat's thread, it ended the thread with a traceback and the task ran on, its lease unrenewed.
    monkeypatch.setenv("RTW_LEASE_TTL", "2h")
    with pytest.raises(SettingError, match=r"^RTW_LEASE_TTL='2h'"), runlock._beating(Home(tmp_path), "run-1"):
        pass


def test_every_setting_the_code_reads_is_in_the_settings_table() -> None:
    # One place a data manager finds them all (docs/operations.md, "Settings"); a setting added to the code and
    # not to the table fails here.
    read = {name for folder in ("etl", "dags") for path in (REPO_ROOT / folder).rglob("*.py")
            for name in re.findall(r"[\"'](RTW_[A-Z_]+)[\"']", path.read_text(encoding="utf-8"))}
    read -= {name for name in read if name.startswith("RTW_TEST_")}  # the tests' crash points
    section = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8").split("## Settings\n", 1)[1]
    listed = set(re.findall(r"^\| `(RTW_[A-Z_]+)` \|", section.split("\n## ", 1)[0], flags=re.M))
    assert read == listed


def test_duckdb_s_threads_are_the_setting_s_on_every_connection_and_a_wrong_one_stops_the_run_as_it_plans(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RTW_DUCKDB_THREADS", raising=False)
    assert duckdb_threads() is None
    with connect_duckdb() as con, duckdb.connect() as own:  # DuckDB's own choice: one a core
        assert con.execute("SELECT current_setting('threads')").fetchone() == \
            own.execute("SELECT current_setting('threads')").fetchone()
    monkeypatch.setenv("RTW_DUCKDB_THREADS", " 3 ")
    warehouse = tmp_path / "w.duckdb"
    with connect_duckdb(warehouse) as con:
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    with connect_duckdb(warehouse, read_only=True) as con:
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    monkeypatch.setenv("RTW_DUCKDB_THREADS", "0")
    with pytest.raises(SettingError, match=r"^RTW_DUCKDB_THREADS='0' is not a whole number of 1 or more \(e\.g\. 1\)"):
        pipeline.plan(Home(tmp_path))
