"""Snapshot guards: an export that would shrink its source sharply, or has no records, is held until accepted."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner, Result
from warehouse_query import query_rows as _query

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.steps import RunSummary

pytestmark = pytest.mark.integration
KEY_TEXT = SMALL_RUN_KEY  # the key of the shared small run each test copies


def _registry_rows(home) -> int:
    return _query(home, "SELECT count(*) FROM core.study_enrolment WHERE source_id = 'registry_it'")[0][0]


@pytest.fixture
def loaded(small_run, tmp_path):
    """A copy of the session's small run (40 persons, every source loaded) and registry_it's export in it."""
    home = copy_of(small_run, tmp_path)
    (export,) = (home.landing / "registry_it").glob("*.csv")
    return home, export


def _cut_in_half(export: Path) -> bytes:
    lines = export.read_bytes().split(b"\r\n")
    cut = b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n"
    export.write_bytes(cut)
    return cut


@dataclass(frozen=True)
class _Accepted:
    """On a copy of the small run, one export cut in half: held one night, accepted with rtw accept, loaded the
    next. What each step said, and what the warehouse held after it."""

    home: Home
    before: int  # what `rows` counts, before the cut
    held: RunSummary
    held_rows: int
    accepted: Result
    summary: RunSummary
    rows: int


def _accept_a_cut(small_run, folder: Path, source: str, name: str, rows) -> _Accepted:
    home = copy_of(small_run, folder)
    before = rows(home)
    _cut_in_half(home.landing / source / name)
    held = pipeline.run(home, key_value=KEY_TEXT)
    held_rows = rows(home)
    accepted = CliRunner().invoke(app, ["accept", source, name, "--home", str(home.root)])
    summary = pipeline.run(home, key_value=KEY_TEXT)
    return _Accepted(home, before, held, held_rows, accepted, summary, rows(home))


@pytest.fixture(scope="module")
def registry_cut_accepted(small_run, tmp_path_factory) -> _Accepted:
    (export,) = (small_run.landing / "registry_it").glob("*.csv")
    return _accept_a_cut(small_run, tmp_path_factory.mktemp("registry_cut"), "registry_it", export.name,
                         _registry_rows)


def test_an_export_with_only_its_header_is_held_and_the_source_keeps_its_data(loaded):
    home, export = loaded
    before = _registry_rows(home)
    export.write_bytes(export.read_bytes().split(b"\r\n")[0] + b"\r\n")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["registry_it"] and summary.status == "completed_with_failures"
    assert "held" in (summary.message or "") and "has no records" in (summary.message or "")
    assert "rtw accept registry_it" in (summary.message or "")
    assert _registry_rows(home) == before
    assert _query(home, "SELECT status FROM meta.source WHERE source_id = 'registry_it'") == [("held",)]
    assert ("held",) in _query(home, "SELECT status FROM meta.source_file WHERE source_id = 'registry_it'")


def test_an_export_whose_records_harmonise_would_all_hold_back_is_held_and_the_source_keeps_its_data(loaded):
    """As many records as before, but the patient-number column came out empty: loaded, every record of the source
    would leave core for the quarantine in one night. Held like a shrink; accepted, it loads."""
    home, export = loaded
    before = _registry_rows(home)
    lines = export.read_bytes().split(b"\r\n")
    rows = [line.split(b";") for line in lines[1:] if line]
    export.write_bytes(b"\r\n".join([lines[0], *(b";".join([row[0], b"", *row[2:]]) for row in rows), b""]))
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["registry_it"] and summary.status == "completed_with_failures"
    assert f"would load 0 records where {before} are loaded: harmonise holds back {len(rows)} of its {len(rows)}" \
        in (summary.message or ""), summary.message
    assert _registry_rows(home) == before
    accepted = CliRunner().invoke(app, ["accept", "registry_it", export.name, "--home", str(home.root)])
    assert accepted.exit_code == 0, accepted.output
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    assert _registry_rows(home) == 0  # what the data manager accepted: every record held back


def test_an_export_cut_in_half_is_held_until_a_data_manager_accepts_it(registry_cut_accepted):
    night = registry_cut_accepted
    (export,) = (night.home.landing / "registry_it").glob("*.csv")
    assert night.held.sources_failed == ["registry_it"]
    assert "more than the 10% allowed" in (night.held.message or "")
    assert night.held_rows == night.before

    assert night.accepted.exit_code == 0 and "accepted" in night.accepted.output
    assert night.summary.sources_failed == [] and "registry_it" in night.summary.sources_changed
    assert 0 < night.rows < night.before
    assert _query(night.home, "SELECT file_name, departure FROM meta.file_acceptance") == [(export.name, False)]


def test_a_cut_export_accepted_replaced_and_sent_again_is_held_again_and_can_be_accepted_again(
        small_run, registry_cut_accepted, tmp_path):
    """An acceptance covers one replacement: the full export back supersedes the cut one, and the cut one
    sent again is judged by the shrink guard as any export (held), then accepted and loaded again."""
    night = registry_cut_accepted
    assert night.held.sources_failed == ["registry_it"] and night.accepted.exit_code == 0
    assert night.summary.sources_failed == [] and night.rows < night.before
    home, before = copy_of(night.home, tmp_path), night.before
    (export,) = (home.landing / "registry_it").glob("*.csv")
    full, cut = (small_run.landing / "registry_it" / export.name).read_bytes(), export.read_bytes()
    export.write_bytes(full)  # the full export back: it grows the source, so it loads
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _registry_rows(home) == before
    export.write_bytes(cut)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["registry_it"] and "more than the 10% allowed" in (summary.message or "")
    assert _registry_rows(home) == before
    accepted = CliRunner().invoke(app, ["accept", "registry_it", export.name, "--home", str(home.root)])
    assert accepted.exit_code == 0 and "accepted" in accepted.output, accepted.output
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == [] and _registry_rows(home) < before
    assert _query(home, "SELECT file_name, departure FROM meta.file_acceptance") == [(export.name, False)] * 2


def test_accept_refuses_a_file_outside_the_landing_folder(loaded, tmp_path):
    home, _ = loaded
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("x")
    refused = CliRunner().invoke(app, ["accept", "registry_it", str(outside), "--home", str(home.root)])
    assert refused.exit_code == 1 and "not an export file" in " ".join(refused.output.split())  # lines wrap


def _iltb_follow_up(home) -> int:
    return _query(home, "SELECT count(*) FROM core.follow_up WHERE source_id = 'iltb'")[0][0]


@dataclass(frozen=True)
class _FollowUpGone:
    """On a copy of the small run, ILTB_FU.csv taken out of landing: the night that held iltb for it, and the
    follow-ups the warehouse held before and after."""

    home: Home
    before: int
    held: RunSummary
    kept: int


@pytest.fixture(scope="module")
def follow_up_gone(small_run, tmp_path_factory) -> _FollowUpGone:
    home = copy_of(small_run, tmp_path_factory.mktemp("follow_up_gone"))
    before = _iltb_follow_up(home)
    (home.landing / "iltb" / "ILTB_FU.csv").unlink()
    held = pipeline.run(home, key_value=KEY_TEXT)
    return _FollowUpGone(home, before, held, _iltb_follow_up(home))


@dataclass(frozen=True)
class _FollowUpDeparted:
    """Then, on a copy, the departure accepted the night ILTB_ENROL.csv is new too, and a night after."""

    home: Home
    accepted: Result
    summary: RunSummary
    follow_ups: int
    acceptances: list[tuple]
    next_night: RunSummary


@pytest.fixture(scope="module")
def follow_up_departed(follow_up_gone, tmp_path_factory) -> _FollowUpDeparted:
    home = copy_of(follow_up_gone.home, tmp_path_factory.mktemp("follow_up_departed"))
    enrol = home.landing / "iltb" / "ILTB_ENROL.csv"
    enrol.write_bytes(enrol.read_bytes() + b"\r\n")
    accepted = CliRunner().invoke(app, ["accept", "iltb", "ILTB_FU.csv", "--home", str(home.root)])
    summary = pipeline.run(home, key_value=KEY_TEXT)
    follow_ups = _iltb_follow_up(home)
    acceptances = _query(home, "SELECT file_name, departure FROM meta.file_acceptance WHERE source_id = 'iltb'")
    return _FollowUpDeparted(home, accepted, summary, follow_ups, acceptances, pipeline.run(home, key_value=KEY_TEXT))


def test_a_form_missing_from_a_delivery_holds_the_source_until_its_departure_is_accepted(follow_up_gone,
                                                                                        follow_up_departed):
    gone, departed = follow_up_gone, follow_up_departed
    assert gone.held.sources_failed == ["iltb"] and gone.held.status == "completed_with_failures"
    assert "no export of ILTB_FU.csv (series FU" in (gone.held.message or "")
    assert gone.kept == gone.before > 0  # not dropped as "superseded"

    # The same night another form of the delivery is new: accepting the departure is still all it takes.
    accepted = departed.accepted
    assert accepted.exit_code == 0 and "departure of ILTB_FU.csv" in " ".join(accepted.output.split())
    summary = departed.summary
    assert summary.sources_failed == [] and "iltb" in summary.sources_changed, summary.message
    assert departed.follow_ups == 0
    assert departed.acceptances == [("ILTB_FU.csv", True)]
    assert departed.next_night.sources_failed == []  # gone for good: nothing held after


@pytest.fixture(scope="module")
def follow_up_cut_accepted(small_run, tmp_path_factory) -> _Accepted:
    return _accept_a_cut(small_run, tmp_path_factory.mktemp("follow_up_cut"), "iltb", "ILTB_FU.csv", _iltb_follow_up)


def _loaded_after_the_shrink(night: _Accepted, folder: Path) -> Home:
    """A copy of the home whose follow-up form, cut in half, was held and accepted and is loaded."""
    assert night.held.sources_failed == ["iltb"]  # the shrink
    assert night.accepted.exit_code == 0
    assert night.summary.sources_failed == []
    return copy_of(night.home, folder)


def test_a_form_accepted_once_for_a_shrink_is_still_held_when_it_goes_missing(follow_up_cut_accepted, tmp_path):
    home = _loaded_after_the_shrink(follow_up_cut_accepted, tmp_path)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"
    kept = _iltb_follow_up(home)
    follow_up.unlink()
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["iltb"] and "no export of ILTB_FU.csv" in (summary.message or "")
    assert _iltb_follow_up(home) == kept > 0
    assert CliRunner().invoke(app, ["accept", "iltb", "ILTB_FU.csv", "--home", str(home.root)]).exit_code == 0
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    assert _query(home, "SELECT file_name, departure FROM meta.file_acceptance WHERE source_id = 'iltb' "
                        "ORDER BY departure") == [("ILTB_FU.csv", False), ("ILTB_FU.csv", True)]  # both, kept apart


def test_a_form_still_being_written_keeps_its_source_as_it_was(loaded, monkeypatch):
    home, _ = loaded
    before = _iltb_follow_up(home)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"
    follow_up.write_bytes(follow_up.read_bytes())  # rewritten in place: changed seconds ago
    monkeypatch.setenv("RTW_QUIET_SECONDS", "3600")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert "iltb" in summary.sources_unchanged and summary.sources_failed == []
    assert _iltb_follow_up(home) == before > 0
    assert any("ILTB_FU.csv not read yet" in n for n in summary.notices)
    assert not any("other exports changed" in n for n in summary.notices), summary.notices  # none did


def test_another_form_s_change_waiting_for_a_form_still_being_written_is_said(loaded, monkeypatch):
    """A hunt: the finished change of one form waited for another form still being written, and the run said only
    that the other was not read yet."""
    home, _ = loaded
    follow_up, treatment = home.landing / "iltb" / "ILTB_FU.csv", home.landing / "iltb" / "ILTB_TREAT.csv"
    follow_up.write_bytes(follow_up.read_bytes())  # being rewritten as the run starts
    lines = treatment.read_bytes().split(b"\r\n")
    treatment.write_bytes(b"\r\n".join(lines[:-3] + lines[-2:]))  # a treatment row less, written an hour ago
    os.utime(treatment, (time.time() - 7200, time.time() - 7200))
    monkeypatch.setenv("RTW_QUIET_SECONDS", "3600")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert "iltb" in summary.sources_unchanged and summary.sources_failed == []
    assert any("iltb: its other exports changed, and wait with the source until ILTB_FU.csv is complete" in n
               for n in summary.notices), summary.notices


def test_a_new_form_whose_file_never_settles_waits_without_stopping_the_others(loaded):
    home, _ = loaded
    folder = home.landing / "iltb"
    (folder / "ILTB_QOL.csv").write_bytes((folder / "ILTB_FU.csv").read_bytes().split(b"\r\n")[0] + b"\r\n")
    (folder / "ILTB_QOL.csv.sha256").write_text("deadbeef  ILTB_QOL.csv\n")  # damaged: it waits, every night
    lines = (folder / "ILTB_FU.csv").read_bytes().split(b"\r\n")
    (folder / "ILTB_FU.csv").write_bytes(b"\r\n".join(lines[:-3] + lines[-2:]))  # a follow-up row less
    before = _iltb_follow_up(home)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert "iltb" in summary.sources_changed and summary.sources_failed == []
    assert _iltb_follow_up(home) == before - 1


def test_a_loaded_form_still_being_written_keeps_a_source_held_last_night_as_it_was(loaded, monkeypatch):
    home, _ = loaded
    advice = home.landing / "iltb" / "ILTB_ADVICE.csv"
    aside = home.root / "ILTB_ADVICE.csv"
    advice.rename(aside)
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == ["iltb"]  # held: a form missing
    aside.rename(advice)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"
    follow_up.write_bytes(follow_up.read_bytes())  # being rewritten as the run starts
    monkeypatch.setenv("RTW_QUIET_SECONDS", "3600")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert "iltb" in summary.sources_unchanged and summary.sources_failed == [], summary.message


def test_rtw_run_strict_exits_3_when_a_source_was_held_and_the_others_are_still_published(loaded):
    home, export = loaded
    export.write_bytes(export.read_bytes().split(b"\r\n")[0] + b"\r\n")
    env = {"RTW_PSEUDONYM_KEY": KEY_TEXT, "RTW_QUIET_SECONDS": "0"}
    plain = CliRunner().invoke(app, ["run", "--home", str(home.root)], env=env)
    assert plain.exit_code == 0 and "failed sources: registry_it" in " ".join(plain.output.split())
    strict = CliRunner().invoke(app, ["run", "--strict", "--home", str(home.root)], env=env)
    assert strict.exit_code == 3 and "failed sources: registry_it" in " ".join(strict.output.split())


def test_a_departure_accepted_covers_that_departure_only(small_run, follow_up_gone, tmp_path):
    home = copy_of(follow_up_gone.home, tmp_path)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"
    original = (small_run.landing / "iltb" / "ILTB_FU.csv").read_bytes()
    assert follow_up_gone.held.sources_failed == ["iltb"]
    assert CliRunner().invoke(app, ["accept", "iltb", "ILTB_FU.csv", "--home", str(home.root)]).exit_code == 0
    follow_up.write_bytes(original)  # back before the next run: the form stays, the acceptance is withdrawn
    kept = pipeline.run(home, key_value=KEY_TEXT)
    assert kept.sources_failed == [] and _iltb_follow_up(home) > 0
    assert _query(home, "SELECT count(*) FROM meta.file_acceptance WHERE departure")[0][0] == 0
    follow_up.unlink()  # gone again later: held again, nobody accepted this departure
    again = pipeline.run(home, key_value=KEY_TEXT)
    assert again.sources_failed == ["iltb"] and "no export of ILTB_FU.csv" in (again.message or "")


def test_a_departed_form_delivered_again_smaller_than_its_successor_is_held_as_a_shrink(
        small_run, follow_up_departed, tmp_path):
    assert follow_up_departed.summary.sources_failed == []  # the form departed
    home = copy_of(follow_up_departed.home, tmp_path)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"
    original = (small_run.landing / "iltb" / "ILTB_FU.csv").read_bytes()
    lines = original.split(b"\r\n")
    header, rows = lines[0], [line for line in lines[1:] if line]
    bigger = [header, *rows, *(row.replace(b";", b"9;", 1) for row in rows)]  # another export, twice the rows
    follow_up.write_bytes(b"\r\n".join(bigger) + b"\r\n")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    # the departed form again, re-exported (not the bytes loaded once: those are held as an earlier export sent
    # again): half of what is loaded now
    follow_up.write_bytes(b"\r\n".join([header, *rows[:-1]]) + b"\r\n")
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["iltb"] and "more than the 10% allowed" in (summary.message or "")
    follow_up.write_bytes(original)  # the bytes themselves
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["iltb"] and "ILTB_FU.csv holds the bytes of ILTB_FU.csv" in (summary.message
                                                                                                   or "")


def test_acceptances_an_earlier_version_stored_keep_their_kind_and_count_once(loaded, follow_up_cut_accepted):
    import duckdb

    from etl.extract.guards import accept_file, accepted_files, withdraw_acceptances, withdraw_departures

    home, _ = loaded
    legacy = accept_file(home.root, "iltb", "ILTB_OLD.csv", "a" * 64, departure=True)
    folder = home.root / "accepted" / "iltb"
    (folder / f"{legacy.sha256}.departure.json").rename(folder / f"{legacy.sha256}.json")  # as stored before
    assert list(accepted_files(home.root, "iltb", departures=True)) == [legacy.sha256]
    assert accepted_files(home.root, "iltb") == {}
    assert withdraw_departures(home.root, "iltb", {legacy.sha256}) == [legacy.sha256]
    assert not any(folder.iterdir())
    held = accept_file(home.root, "iltb", "ILTB_FU.csv", "b" * 64)  # what extract logs of it, read once
    assert withdraw_acceptances(home.root, "iltb", {held.sha256, "c" * 64}) == {held.sha256: held}
    assert not any(folder.iterdir())

    home = _loaded_after_the_shrink(follow_up_cut_accepted, home.root.parent / "shrink")
    with duckdb.connect(str(home.warehouse)) as con:  # an older warehouse: the column added, NULL
        con.execute("UPDATE meta.file_acceptance SET departure = NULL")
    enrol = home.landing / "iltb" / "ILTB_ENROL.csv"
    enrol.write_bytes(enrol.read_bytes() + b"\r\n")  # iltb read again, ILTB_FU.csv and its acceptance with it
    assert "iltb" in pipeline.run(home, key_value=KEY_TEXT).sources_changed
    assert _query(home, "SELECT count(*) FROM meta.file_acceptance WHERE source_id = 'iltb'")[0][0] == 1


def _acceptances(home) -> list[str]:
    folder = home.root / "accepted"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json")) if folder.exists() else []


def test_accept_of_a_file_not_held_says_so_does_nothing_and_exits_1(loaded):
    """It said "accepted; the next run loads it" of any file, a loaded one too, and recorded an acceptance."""
    home, export = loaded
    wide = {"COLUMNS": "300"}
    loaded_file = CliRunner().invoke(app, ["accept", "registry_it", export.name, "--home", str(home.root)], env=wide)
    assert loaded_file.exit_code == 1, loaded_file.output
    assert loaded_file.output.startswith(f"rtw: registry_it: {export.name} (sha256 ")
    assert "is already loaded: nothing to accept" in loaded_file.output

    lines = export.read_bytes().split(b"\r\n")
    export.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")  # a shrink no run has read yet
    unread = CliRunner().invoke(app, ["accept", "registry_it", export.name, "--home", str(home.root)], env=wide)
    assert unread.exit_code == 1, unread.output
    assert "is not held: nothing to accept; no run has read it yet: the next run loads it, or holds it and says " \
           "why" in unread.output

    (home.landing / "iltb" / "ILTB_FU.csv").unlink()  # a form missing, no run has seen it yet
    departed = CliRunner().invoke(app, ["accept", "iltb", "ILTB_FU.csv", "--home", str(home.root)], env=wide)
    assert departed.exit_code == 1, departed.output
    assert "iltb: ILTB_FU.csv is loaded, and iltb is not held for its absence: nothing to accept" in departed.output
    assert _acceptances(home) == []

    pipeline.run(home, key_value=KEY_TEXT)  # both held now: accepting them is what it takes
    for source, name in (("registry_it", export.name), ("iltb", "ILTB_FU.csv")):
        accepted = CliRunner().invoke(app, ["accept", source, name, "--home", str(home.root)], env=wide)
        assert accepted.exit_code == 0 and "accepted" in accepted.output, accepted.output
    assert len(_acceptances(home)) == 2
