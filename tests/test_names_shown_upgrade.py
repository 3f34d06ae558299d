"""After an upgrade, no file name an earlier version recorded with a patient number keeps it: not that of a
file gone from landing before the upgrade, and not in the report files of earlier runs, whatever moment a
run was killed at (the rewrite of earlier reports is finished by the next run's repair)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from shared_build import built_once
from test_file_names import KEY, NUMBERS, _as_an_earlier_version_left_it, _case_file, _leaks, german_registry

from etl import pipeline
from etl.config import REPO_ROOT, Home, resolve_home
from etl.crash import CRASH_ENV
from etl.publish_outputs import show_names_in_earlier_reports, write_report
from etl.quality.report import build_report


def _per_patient(root: Path) -> tuple[Home, Path]:
    """test_file_names.per_patient's home and mappings, at `root`."""
    home, sources, folder = german_registry(root, "Fall_*_Verlauf.csv")
    for number in ("123456", "234567"):  # the later name is the current export, the other superseded
        _case_file(folder, number)
    (folder / "Fall_345678_Notiz.txt").write_text("not an export")  # named in a notice: matches no pattern
    return home, sources


def _nights_once(factory: pytest.TempPathFactory, name: str, nights: Callable[[Home, Path], str]) -> Callable[
        [Path], tuple[Home, Path, str]]:
    """per_patient's home after `nights` (which returns the last run's id), built once for the session; each
    test takes a copy: (home, mappings, the last run's id)."""

    def build(folder: Path) -> None:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("RTW_QUIET_SECONDS", "0")
            (folder / "run_id").write_text(nights(*_per_patient(folder)))

    built = built_once(factory, name, build)

    def copy(tmp_path: Path) -> tuple[Home, Path, str]:
        shutil.copytree(built, tmp_path / "nights", symlinks=True)
        root = tmp_path / "nights"
        return resolve_home(root / "home"), root / "sources", (root / "run_id").read_text()

    return copy


def _superseded_night(home: Home, sources: Path) -> str:
    folder = home.landing / "registry_de"
    later = (folder / "Fall_234567_Verlauf.csv").rename(home.root / "later.csv")
    pipeline.run(home, key_value=KEY, sources_dir=sources)  # Fall_123456 loaded, so archived
    later.rename(folder / "Fall_234567_Verlauf.csv")  # the next export supersedes it, left in landing
    return pipeline.run(home, key_value=KEY, sources_dir=sources).run_id


def _one_night(home: Home, sources: Path) -> str:
    return pipeline.run(home, key_value=KEY, sources_dir=sources).run_id


@pytest.fixture(scope="module")
def superseded_night(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], tuple[Home, Path, str]]:
    """Two nights: Fall_123456 alone, then Fall_234567 superseding it (both left in landing)."""
    return _nights_once(tmp_path_factory, "names-superseded-night", _superseded_night)


@pytest.fixture(scope="session")
def per_patient_night(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], tuple[Home, Path, str]]:
    """One night of per_patient's home (test_forget_file_names takes it too)."""
    return _nights_once(tmp_path_factory, "names-one-night", _one_night)


@pytest.mark.integration
def test_a_file_gone_from_landing_before_the_upgrade_is_shown_without_its_number(superseded_night, tmp_path,
                                                                                   caplog):
    home, sources, last = superseded_night(tmp_path)
    folder = home.landing / "registry_de"
    pages = _as_an_earlier_version_left_it(home, last)
    with duckdb.connect(str(home.warehouse)) as con:  # the superseded export, quoted by the page too
        (gone,) = con.execute("SELECT file_name FROM meta.source_file WHERE status = 'superseded'").fetchone()
    page = home.reports / last / "index.html"
    page.write_text(page.read_text(encoding="utf-8") + f"<p>{gone}</p>", encoding="utf-8")
    (folder / gone).unlink()  # gone before the upgrade: only its archive copy is left
    assert "123456" in gone

    with caplog.at_level(logging.INFO, logger="rtw"):
        upgraded = pipeline.run(home, key_value=KEY, sources_dir=sources, force=True)  # an upgrade reloads all
    assert upgraded.sources_failed == [] and upgraded.notes == []
    assert [p for p in [*pages, page] if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
    assert _leaks(home, upgraded, caplog) == []



@pytest.mark.integration
def test_a_superseded_file_still_in_landing_is_shown_without_its_number(superseded_night, tmp_path, caplog):
    """The upgrade renames a known file that is no longer current (its counts kept, its row only updated) in
    meta.source_file too: warehouse._rename_in_history does, _record_files leaves the name as it finds it."""
    home, sources, last = superseded_night(tmp_path)
    folder = home.landing / "registry_de"
    _as_an_earlier_version_left_it(home, last)
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        (superseded,) = con.execute("SELECT file_name FROM meta.source_file WHERE status = 'superseded'").fetchone()
    assert "123456" in superseded and (folder / superseded).is_file()

    with caplog.at_level(logging.INFO, logger="rtw"):
        upgraded = pipeline.run(home, key_value=KEY, sources_dir=sources, force=True)  # an upgrade reloads all
    assert upgraded.sources_failed == [] and upgraded.notes == []
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("SELECT file_name, status FROM meta.source_file ORDER BY status").fetchall() == [
            ("Fall_{patient}_Verlauf.csv", "loaded"), ("Fall_{patient}_Verlauf.csv", "superseded")]
    assert _leaks(home, upgraded, caplog) == []

def _run_killed_at(home: Path, sources: Path, point: str) -> None:
    """An upgrade's run (it reloads every source) in its own process, SIGKILLed at `point` (etl/crash.py)."""
    script = ("import sys; from pathlib import Path; from etl import pipeline; from etl.config import resolve_home; "
              "pipeline.run(resolve_home(Path(sys.argv[1])), key_value=sys.argv[2], sources_dir=Path(sys.argv[3]), "
              "force=True)")
    done = subprocess.run([sys.executable, "-c", script, str(home.root), KEY, str(sources)], cwd=REPO_ROOT,
                          env={**os.environ, CRASH_ENV: point}, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


@pytest.mark.integration
def test_an_upgrade_killed_before_it_rewrote_the_earlier_reports_has_them_rewritten_by_the_next_run(
        per_patient_night, tmp_path, caplog):
    """Killed after the swap, before the report; someone writes the run's page (rtw report), so the page and
    reports/latest are in place: the next run's repair still rewrites the earlier runs' report files."""
    home, sources, earlier = per_patient_night(tmp_path)
    pages = _as_an_earlier_version_left_it(home, earlier)
    _run_killed_at(home, sources, "outputs")
    build_report(home.warehouse, home.reports)  # rtw report
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))]

    with caplog.at_level(logging.INFO, logger="rtw"):
        following = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
    assert _leaks(home, following, caplog) == []
    assert any("report file(s) of earlier runs still named exports" in r.getMessage() for r in caplog.records)
    assert show_names_in_earlier_reports(home) == []  # done, and recorded so: not again


@pytest.mark.parametrize(("name", "shown"), [
    ("patient-ILTB-00012.xlsx", "patient-{patient}.xlsx"),  # a sibling's shape: any number, letters too
    ("Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),
    ("patient-2026-11-01.xlsx", "patient-2026-11-01.xlsx"),  # a date is no patient's number
    ("Notiz_1234567.csv", "Notiz_{patient}.csv"),  # no sibling of its shape: a long number that is no date
    ("Notiz_20261101.csv", "Notiz_20261101.csv"),
    ("TREP_export_2026.csv", "TREP_export_2026.csv"),
    ("Fall_{patient}_7654321.csv", "Fall_{patient}_7654321.csv"),  # shown by a version that knew the keys
])
def test_a_file_gone_from_landing_is_shown_as_its_name_reads(name, shown):
    from etl.extract.file_names import gone_file_name

    assert gone_file_name(name, ["patient-{patient}.xlsx", "Fall_{patient}_Verlauf.csv"]) == shown


@pytest.mark.integration
def test_a_report_written_with_a_connection_shows_the_names_it_reads_through_it(per_patient_night, tmp_path):
    """Repair writes a missing report page while it holds a connection to the live warehouse: the names
    the reports of earlier runs are to show are read through that one (it opened a second). Here the
    connection given reads the upgrade's renames and the warehouse file still the state before it."""
    home, sources, earlier = per_patient_night(tmp_path)
    pages = _as_an_earlier_version_left_it(home, earlier)
    last = pipeline.run(home, key_value=KEY, sources_dir=sources)  # nothing new: the page written again below
    before = shutil.copy(home.warehouse, tmp_path / "before.duckdb")
    _run_killed_at(home, sources, "outputs")  # the renames recorded, the earlier runs' pages not rewritten
    upgraded = shutil.copy(home.warehouse, tmp_path / "upgraded.duckdb")
    shutil.copy(before, home.warehouse)
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))]

    notes: list[str] = []
    with duckdb.connect(str(upgraded), read_only=True) as live:
        assert write_report(home, last.run_id, notes, with_pages=False, live=live)
    assert notes == []
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
