"""An older export sent again under a fixed name (no day in it) is held, not loaded over newer data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from hashlib import sha256
from pathlib import Path

import pytest
from shared_build import copy_of
from typer.testing import CliRunner, Result
from warehouse_query import query_rows as _query

from etl import pipeline
from etl.cli import app
from etl.config import Home, resolve_home
from etl.extract.adapter import FileHeader
from etl.extract.landing import LandingFile, LoadedExport, older_than_loaded
from etl.steps import RunSummary
from etl.synth import generate

KEY_TEXT = "older-export-key"
NEWER_ODM = "2026-11-03T01:30:00Z"  # the first night's ODM, under the fixed name SACHA_ODM_export.xml
OLDER_ODM = 'CreationDateTime="2026-11-01T01:30:00Z"'  # as the synthetic export is written


def _export(name: str, day: date, created: datetime | None = None, sha: str = "new", series: str = "ENROL"
            ) -> LandingFile:
    return LandingFile("iltb", Path(name), sha, 1, series, day, FileHeader(created=created))


LOADED = {"loaded": LoadedExport("ILTB_ENROL.csv", "ENROL", date(2026, 11, 3))}


def test_an_export_of_an_earlier_day_than_the_loaded_one_is_held():
    ((_, reason),) = older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 10, 25))], LOADED, set())
    assert reason.startswith("ILTB_ENROL.csv (exported 2026-10-25) is older than ILTB_ENROL.csv "
                             "(exported 2026-11-03), the export of its series the warehouse loaded")
    assert "Have the newer export sent again (its copy is archive/iltb/loaded__*)" in reason


def test_the_reason_names_files_only_which_the_run_shows_not_their_series():
    """A series is cut from its file's name (Fall_123456_Verlauf.csv's is Fall_123456_Verlauf): the run shows the
    files' names without the patient's number (SourceFiles.shown), and a series named in the reason kept it."""
    series = "Fall_123456_Verlauf"
    loaded = {"loaded": LoadedExport(f"{series}.csv", series, date(2026, 11, 1))}
    ((_, reason),) = older_than_loaded([_export(f"{series}.csv", date(2026, 10, 1), series=series)], loaded, set())
    assert reason.count("123456") == 2 and reason.count(f"{series}.csv") == 2


def test_an_export_of_the_same_day_or_later_is_not_held():
    assert older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 11, 3))], LOADED, set()) == []  # a re-export
    assert older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 11, 4))], LOADED, set()) == []


def test_a_series_seen_for_the_first_time_an_accepted_or_a_loaded_export_is_not_held():
    assert older_than_loaded([_export("ILTB_FU.csv", date(2026, 10, 1), series="FU")], LOADED, set()) == []
    assert older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 10, 1))], LOADED, {"new"}) == []
    assert older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 10, 1), sha="loaded")], LOADED, set()) == []
    assert older_than_loaded([_export("ILTB_ENROL.csv", date(2026, 10, 1))], {}, set()) == []  # a first load


def test_the_bytes_of_an_export_loaded_and_replaced_are_judged_by_their_recorded_day_whatever_their_name():
    replaced = {"new": LoadedExport("ILTB_ENROL_1025.csv", "ENROL", date(2026, 10, 25))}
    ((_, reason),) = older_than_loaded([_export("ILTB_ENROL_1104.csv", date(2026, 11, 4))], LOADED, set(), replaced)
    assert reason.startswith("ILTB_ENROL_1104.csv holds the bytes of ILTB_ENROL_1025.csv (exported 2026-10-25), "
                             "which the warehouse loaded and then replaced with ILTB_ENROL.csv (exported 2026-11-03)")
    later = {"new": LoadedExport("ILTB_ENROL_1105.csv", "ENROL", date(2026, 11, 5))}  # sent back after an earlier
    assert older_than_loaded([_export("ILTB_ENROL_1105.csv", date(2026, 11, 5))], LOADED, set(), later) == []


def test_files_that_say_when_they_were_written_are_told_apart_within_a_day():
    written = datetime(2026, 11, 3, 1, 30, tzinfo=UTC)
    loaded = {"loaded": LoadedExport("export.xml", "ENROL", date(2026, 11, 3), written)}
    earlier = _export("export.xml", date(2026, 11, 3), written.replace(hour=0))
    later = _export("export.xml", date(2026, 11, 3), written.replace(hour=9))
    ((held, reason),) = older_than_loaded([earlier], loaded, set())
    assert held is earlier
    assert "(written 2026-11-03T00:30:00+00:00) is older than export.xml (written 2026-11-03T01:30:00+00:00)" in reason
    assert older_than_loaded([later], loaded, set()) == []


# -- a night ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def first_night(tmp_path_factory):
    """60 synthetic persons, the ODM delivered under a fixed name and written 3 November, loaded once."""
    home = resolve_home(tmp_path_factory.mktemp("older_exports") / "home").ensure()
    generate(home.root, patients=60, seed=11)
    (odm,) = (home.landing / "sacha_fr").glob("*.xml")
    (odm.parent / "SACHA_ODM_export.xml").write_text(
        odm.read_text(encoding="utf-8").replace(OLDER_ODM, f'CreationDateTime="{NEWER_ODM}"'), encoding="utf-8")
    odm.unlink()
    _set_day(home.landing / "iltb" / "ILTB_ENROL.csv", "2026-11-03")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []  # nothing loaded before: nothing held
    return home


def _set_day(path: Path, day: str, hour: int = 6) -> None:
    stamp = datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp()
    os.utime(path, (stamp, stamp))


def _enrolments(home) -> int:
    return _query(home, "SELECT count(*) FROM core.study_enrolment WHERE source_id = 'iltb'")[0][0]


def _older_enrolments(home) -> Path:
    """ILTB_ENROL.csv as exported on 25 October: one enrolment fewer (the last line)."""
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    export.write_bytes(export.read_bytes().rstrip(b"\r\n").rsplit(b"\n", 1)[0] + b"\n")
    _set_day(export, "2026-10-25")
    return export


def _loaded_enrolments(home) -> str:
    """The sha256 of the ILTB_ENROL.csv export the warehouse holds loaded."""
    return _query(home, "SELECT source_file_sha256 FROM meta.source_file WHERE file_name = 'ILTB_ENROL.csv' "
                        "AND status = 'loaded'")[0][0]


def _accounted(home) -> list[tuple]:
    """The files whose rows do not add up (rows_read = loaded + quarantined + superseded)."""
    return _query(home, "SELECT file_name FROM meta.source_file "
                        "WHERE rows_read <> rows_loaded + rows_quarantined + rows_superseded")


@pytest.fixture(scope="module")
def second_night(first_night, tmp_path_factory):
    """A night on a copy of the first with news of three sources, told apart by source: sacha_fr's ODM of
    1 November sent again under its fixed name by mistake, registry_it's next export, and iltb's ILTB_ENROL.csv
    re-exported the same day, one enrolment fewer, hours earlier by its clock. The home and its summary."""
    home = copy_of(first_night, tmp_path_factory.mktemp("second_night"))
    odm = home.landing / "sacha_fr" / "SACHA_ODM_export.xml"
    odm.write_text(odm.read_text(encoding="utf-8").replace(f'CreationDateTime="{NEWER_ODM}"', OLDER_ODM),
                   encoding="utf-8")  # the export of 1 November, sent again by mistake
    (registry,) = (home.landing / "registry_it").glob("*.csv")
    registry.rename(registry.with_name("TREP_export_20261103.csv"))  # the night's other news: loaded
    _set_day(_older_enrolments(home), "2026-11-03", hour=2)  # re-exported the same day: a day is no order
    return home, pipeline.run(home, key_value=KEY_TEXT)


@pytest.mark.integration
def test_an_older_odm_sent_again_under_its_fixed_name_is_held_and_the_other_sources_load(first_night, second_night):
    home, summary = second_night
    loaded = _query(first_night, "SELECT source_file_sha256 FROM meta.source_file WHERE source_id = 'sacha_fr'")
    assert summary.sources_failed == ["sacha_fr"] and "registry_it" in summary.sources_changed
    message = " ".join((summary.message or "").split())
    assert ("SACHA_ODM_export.xml (written 2026-11-01T01:30:00+00:00) is older than SACHA_ODM_export.xml "
            "(written 2026-11-03T01:30:00+00:00), the export of its series the warehouse loaded") in message
    assert "rtw accept sacha_fr" in message
    assert _query(home, "SELECT status FROM meta.source WHERE source_id = 'sacha_fr'") == [("held",)]
    assert _query(home, "SELECT source_file_sha256 FROM meta.source_file WHERE source_id = 'sacha_fr' "
                        "AND status = 'loaded'") == loaded  # the newer export stays loaded
    assert _query(home, "SELECT last_loaded_run_id FROM meta.source WHERE source_id = 'registry_it'") == [
        (summary.run_id,)]
    assert _accounted(home) == []


@pytest.mark.integration
def test_a_same_day_re_export_is_loaded(first_night, second_night):
    home, summary = second_night
    assert "iltb" not in summary.sources_failed and "iltb" in summary.sources_changed
    assert _enrolments(home) == _enrolments(first_night) - 1 and _accounted(home) == []


@dataclass(frozen=True)
class _Accepted:
    """ILTB_ENROL.csv of 25 October (one enrolment fewer) on a copy of the first night: held, accepted with
    rtw accept, loaded the next night. What each step said, and what the warehouse held after it."""

    home: Home
    held: RunSummary
    held_enrolments: int
    held_accounted: list[tuple]
    accepted: Result
    summary: RunSummary
    enrolments: int
    acceptances: list[tuple]
    accounted: list[tuple]


@pytest.fixture(scope="module")
def older_accepted(first_night, tmp_path_factory) -> _Accepted:
    home = copy_of(first_night, tmp_path_factory.mktemp("older_accepted"))
    export = _older_enrolments(home)
    held = pipeline.run(home, key_value=KEY_TEXT)
    held_enrolments, held_accounted = _enrolments(home), _accounted(home)
    accepted = CliRunner().invoke(app, ["accept", "iltb", export.name, "--home", str(home.root)])
    summary = pipeline.run(home, key_value=KEY_TEXT)
    return _Accepted(home, held, held_enrolments, held_accounted, accepted, summary, _enrolments(home),
                     _query(home, "SELECT file_name FROM meta.file_acceptance"), _accounted(home))


@pytest.mark.integration
def test_an_older_csv_export_is_held_until_a_data_manager_accepts_it(first_night, older_accepted, tmp_path):
    before, loaded, night = _enrolments(first_night), _loaded_enrolments(first_night), older_accepted
    assert night.held.sources_failed == ["iltb"]
    assert "ILTB_ENROL.csv (exported 2026-10-25) is older than ILTB_ENROL.csv (exported 2026-11-03)" in " ".join(
        (night.held.message or "").split())
    assert night.held_enrolments == before and night.held_accounted == []

    assert night.accepted.exit_code == 0 and "accepted" in night.accepted.output
    assert night.summary.sources_failed == [] and night.enrolments == before - 1
    assert night.acceptances == [("ILTB_ENROL.csv",)]
    assert night.accounted == []

    # The newer export comes again, then the older one: the acceptance was for one replacement, not for good.
    home = copy_of(night.home, tmp_path)
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    older = export.read_bytes()
    (newer,) = (home.archive / "iltb").glob(f"{loaded[:16]}__ILTB_ENROL.csv")
    export.write_bytes(newer.read_bytes())
    _set_day(export, "2026-11-03")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _enrolments(home) == before
    export.write_bytes(older)
    _set_day(export, "2026-10-25")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == ["iltb"] and _enrolments(home) == before


def _file_statuses(home) -> list[tuple]:
    return _query(home, "SELECT source_file_sha256, status FROM meta.source_file WHERE file_name = 'ILTB_ENROL.csv' "
                        "ORDER BY first_run_id, source_file_sha256")


@pytest.fixture(scope="module")
def sent_back(first_night, tmp_path_factory):
    """A (the first night's ILTB_ENROL.csv, 3 November), then B (one enrolment fewer, 5 November) loaded, then
    A sent again: held, the night's message offering rtw accept. The home, A's and B's bytes."""
    home = copy_of(first_night, tmp_path_factory.mktemp("sent_back"))
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    first = export.read_bytes()
    _set_day(_older_enrolments(home), "2026-11-05")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    newer = export.read_bytes()
    export.write_bytes(first)
    _set_day(export, "2026-11-03")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["iltb"]
    assert "accept it (rtw accept iltb ILTB_ENROL.csv) and run again" in (summary.message or "")
    return home, first, newer


def _sha(content: bytes) -> str:
    return sha256(content).hexdigest()


@pytest.mark.integration
def test_an_export_loaded_replaced_and_sent_again_is_held_and_can_be_accepted(first_night, sent_back, tmp_path):
    """A, then B, then A again: a registry's correction back to an export the warehouse loaded once."""
    before = _enrolments(first_night)
    home, first, newer = copy_of(sent_back[0], tmp_path), *sent_back[1:]
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    a, b = _sha(first), _sha(newer)
    assert _enrolments(home) == before - 1
    # What A is tonight: the current export, held (not a file a later one replaced); B stays loaded.
    assert dict(_file_statuses(home)) == {a: "held", b: "loaded"} and _accounted(home) == []

    accepted = CliRunner().invoke(app, ["accept", "iltb", export.name, "--home", str(home.root)])
    assert accepted.exit_code == 0 and "accepted" in accepted.output, accepted.output
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == [] and _enrolments(home) == before
    assert dict(_file_statuses(home)) == {a: "loaded", b: "superseded"} and _accounted(home) == []

    # A later export (B', 7 November) loads as any newer export does, A superseded.
    export.write_bytes(first.replace(b";initial", b";INITIAL", 1))
    _set_day(export, "2026-11-07")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _enrolments(home) == before
    assert first.count(b";initial") and dict(_file_statuses(home))[a] == "superseded" and _accounted(home) == []


@pytest.mark.integration
def test_an_export_sent_again_and_held_then_replaced_is_superseded_again(first_night, sent_back, tmp_path):
    before = _enrolments(first_night)
    home, first, newer = copy_of(sent_back[0], tmp_path), *sent_back[1:]
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    export.write_bytes(newer)  # the data manager has B sent again: A was a mistake
    _set_day(export, "2026-11-05")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _enrolments(home) == before - 1
    assert dict(_file_statuses(home)) == {_sha(first): "superseded", _sha(newer): "loaded"}
    assert _accounted(home) == []


@pytest.mark.integration
def test_an_export_loaded_by_an_acceptance_replaced_and_sent_again_is_held_and_can_be_accepted_again(
        first_night, older_accepted, tmp_path):
    """Its acceptance covered one replacement, and is withdrawn once B supersedes it: A sent again is held
    as any older export, and accepted again loads it, each acceptance in meta.file_acceptance."""
    before, first = _enrolments(first_night), (first_night.landing / "iltb" / "ILTB_ENROL.csv").read_bytes()
    assert older_accepted.held.sources_failed == ["iltb"] and older_accepted.accepted.exit_code == 0
    assert older_accepted.summary.sources_failed == []  # A, accepted and loaded
    home = copy_of(older_accepted.home, tmp_path)
    export = home.landing / "iltb" / "ILTB_ENROL.csv"
    older = export.read_bytes()
    export.write_bytes(first.replace(b";initial", b";INITIAL", 1))  # B, 7 November, with every enrolment
    _set_day(export, "2026-11-07")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _enrolments(home) == before
    export.write_bytes(older)
    _set_day(export, "2026-10-25")
    for _night in range(2):  # the old acceptance does not load it
        assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == ["iltb"] and _enrolments(home) == before
        assert dict(_file_statuses(home))[_sha(older)] == "held" and _accounted(home) == []
    accepted = CliRunner().invoke(app, ["accept", "iltb", export.name, "--home", str(home.root)])
    assert accepted.exit_code == 0 and "accepted" in accepted.output, accepted.output
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == [] and _enrolments(home) == before - 1
    assert dict(_file_statuses(home))[_sha(older)] == "loaded" and _accounted(home) == []
    assert [n for (n,) in _query(home, "SELECT run_id FROM meta.file_acceptance WHERE source_file_sha256 = ? "
                                       "ORDER BY accepted_at", [_sha(older)])][-1] == summary.run_id
    assert _query(home, "SELECT count(*) FROM meta.file_acceptance WHERE source_file_sha256 = ?",
                  [_sha(older)]) == [(2,)]


@pytest.mark.integration
def test_an_earlier_export_sent_again_under_a_later_name_is_held(first_night, tmp_path):
    """A hunt: registry_it's export of 1 November, replaced by that of 2 November, copied in again as
    TREP_export_20261103.csv: its name's day is the latest, and it replaced the newer data without a word."""
    home = copy_of(first_night, tmp_path)
    (first,) = (home.landing / "registry_it").glob("TREP_export_*.csv")
    earlier = first.read_bytes()
    later = first.with_name("TREP_export_20261102.csv")
    later.write_bytes(earlier.replace(b"/2026;", b"/2025;", 1))  # one date changed: another export
    assert later.read_bytes() != earlier
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    kept = _query(home, "SELECT source_file_sha256 FROM meta.source_file WHERE source_id = 'registry_it' "
                        "AND status = 'loaded'")
    assert kept == [(_sha(later.read_bytes()),)]
    first.with_name("TREP_export_20261103.csv").write_bytes(earlier)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["registry_it"]
    message = " ".join((summary.message or "").split())
    assert (f"TREP_export_20261103.csv holds the bytes of {first.name} (exported 2026-11-01), which the warehouse "
            "loaded and then replaced with TREP_export_20261102.csv (exported 2026-11-02)") in message
    assert "rtw accept registry_it TREP_export_20261103.csv" in message
    assert _query(home, "SELECT source_file_sha256 FROM meta.source_file WHERE source_id = 'registry_it' "
                        "AND status = 'loaded'") == kept  # the later export stays loaded
    assert _accounted(home) == []
