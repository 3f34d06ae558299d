"""A departure (a loaded file no longer delivered) is accepted only when the run that held its source held it for
that file's departure: a source held for something else (a shrink, another form gone) says nothing of it."""

from __future__ import annotations

import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner
from warehouse_query import query_rows as _query

from etl import pipeline
from etl.cli import app
from etl.extract.guards import held_for_departure, held_series
from etl.steps import LoadedFile

KEY_TEXT = SMALL_RUN_KEY  # the key of the shared small run each test copies
WIDE = {"COLUMNS": "300"}


def test_a_departure_is_held_for_when_a_reason_names_that_file_in_its_series():
    loaded = {"a" * 64: LoadedFile("FU", 149, "ILTB_FU.csv"), "b" * 64: LoadedFile("RESP", 31, "ILTB_RESP.csv"),
              "c" * 64: LoadedFile("RESP", 5, "ILTB_RESP_{patient}.csv"), "d" * 64: LoadedFile("TREAT", 19, "T.csv")}
    message = "; ".join(held_series([], {}, {sha: f for sha, f in loaded.items() if f.series != "TREAT"}, set(), 0.1))
    assert [held_for_departure(message, f, sha) for sha, f in loaded.items()] == [True, True, True, False]
    assert not held_for_departure(message, LoadedFile("RESP", 31, "ILTB_FU.csv"), "a" * 64)  # another series's
    assert not held_for_departure(message, LoadedFile("FU", 149, "FU.csv"), "e" * 64)  # a name within another
    assert not held_for_departure(None, loaded["a" * 64], "a" * 64)


def test_held_series_given_the_departures_says_what_it_finds_itself():
    """The held guard (pipeline._held) reckons the departures first and hands them on, not reckoned twice; a
    departure accepted leaves its series out, another file of it still departing keeps the series."""
    from etl.extract.guards import departing

    loaded = {"a" * 64: LoadedFile("FU", 149, "ILTB_FU.csv"), "b" * 64: LoadedFile("RESP", 31, "ILTB_RESP.csv"),
              "c" * 64: LoadedFile("RESP", 5, "ILTB_RESP_2.csv"), "d" * 64: LoadedFile("EMPTY", 0, "E.csv")}
    departed = {"a" * 64, "b" * 64}
    gone = departing([], loaded, departed)
    assert gone == {"RESP": {"c" * 64: loaded["c" * 64]}}
    assert held_series([], {}, loaded, set(), 0.1, departed, gone=gone) == held_series([], {}, loaded, set(), 0.1,
                                                                                         departed)


def _accept(home, name: str):
    return CliRunner().invoke(app, ["accept", "iltb", name, "--home", str(home.root)], env=WIDE)


@pytest.mark.integration
def test_a_departure_is_refused_while_its_source_is_held_for_something_else(small_run, tmp_path):
    """The response form taken out of landing after a night that held iltb for its follow-up's shrink was
    accepted as gone: no run had found it missing, and the next run loaded iltb without it, unasked."""
    home = copy_of(small_run, tmp_path)
    folder = home.landing / "iltb"
    follow_up = folder / "ILTB_FU.csv"
    lines = follow_up.read_bytes().split(b"\r\n")
    follow_up.write_bytes(b"\r\n".join(lines[: len(lines) // 5]) + b"\r\n")
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == ["iltb"]  # held for the shrink
    (folder / "ILTB_RESP.csv").unlink()  # after that night: no run has found it missing

    refused = _accept(home, "ILTB_RESP.csv")
    assert refused.exit_code == 1, refused.output
    assert ("rtw: iltb: ILTB_RESP.csv is loaded, and iltb is held, but not for its absence (the last run found no "
            "export of it missing; rtw status says why it held iltb): nothing to accept") in refused.output
    assert not (home.root / "accepted" / "iltb").exists()

    assert _accept(home, "ILTB_FU.csv").exit_code == 0  # the shrink is real
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["iltb"] and "no export of ILTB_RESP.csv (series RESP" in (summary.message or "")
    departed = _accept(home, "ILTB_RESP.csv")  # now the night held iltb for it
    assert departed.exit_code == 0 and "the departure of ILTB_RESP.csv" in departed.output, departed.output
    assert pipeline.run(home, key_value=KEY_TEXT).sources_failed == []
    assert _query(home, "SELECT count(*) FROM core.response_assessment WHERE source_id = 'iltb'") == [(0,)]
