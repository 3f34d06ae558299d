"""A reviewer's decision that cannot take effect is refused when it is recorded (what the EUPIDs
decide), or said by the run that could not apply it; never accepted and then silently ignored."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline
from etl.config import Home
from etl.link.cluster import CLERICAL, PROBABILISTIC, Edge, SourcePatient, link_persons
from etl.link.decision import DecisionError, PatientRef, record_decision
from etl.link.run import unapplied_decisions

KEY = SMALL_RUN_KEY


def test_an_unlink_through_a_third_patient_is_said_not_applied() -> None:
    a = SourcePatient("sacha_fr", "a" * 24, "h_a", False)
    b = SourcePatient("iltb", "b" * 24, "h_b", False)  # resembles both
    c = SourcePatient("registry_it", "c" * 24, "h_c", False)
    decisions = {tuple(sorted((a.key, c.key))): "unlink"}
    edges = [Edge(a.key, b.key, 0.99, PROBABILISTIC), Edge(b.key, c.key, 0.97, PROBABILISTIC)]  # A-C: unlinked
    links = link_persons([a, b, c], edges)
    assert links[a.key].patient_id == links[c.key].patient_id
    (said,) = unapplied_decisions(decisions, links, [])  # type: ignore[arg-type]
    assert said[0] == "registry_it" or said[0] == "sacha_fr"
    assert f"unlink of registry_it:{'c' * 24} and sacha_fr:{'a' * 24} was not applied" in said[1]
    assert "still one person" in said[1]


def test_a_refused_reviewers_link_is_collected_with_why() -> None:
    a = SourcePatient("sacha_fr", "a" * 24, "eupid_1", True)
    b = SourcePatient("iltb", "b" * 24, "eupid_2", True)
    refused: list[tuple[Edge, str]] = []
    links = link_persons([a, b], [Edge(a.key, b.key, 1.0, CLERICAL)], refused)
    assert links[a.key].patient_id != links[b.key].patient_id
    assert [(e.left, e.right, why) for e, why in refused] == [(a.key, b.key, "their persons hold two different EUPIDs")]
    (said,) = unapplied_decisions({}, links, refused)
    assert said == ("sacha_fr", f"the reviewer's link of sacha_fr:{'a' * 24} and iltb:{'b' * 24} was not applied: "
                                "their persons hold two different EUPIDs, and a person has one EUPID and one patient "
                                "per source")


@pytest.fixture(scope="module")
def built(small_run: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of(small_run, tmp_path_factory.mktemp("link_decisions"))


def _patients(home: Home) -> list[tuple[str, str, str, bool, int]]:
    """(source, pseudonym, harmonised id, has EUPID, how many source patients its person holds)."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute("""
            SELECT DISTINCT k.source_id, k.source_patient_pseudonym, k.harmonised_patient_id, k.has_eupid,
                   count(DISTINCT l.source_id || l.source_patient_pseudonym) OVER (PARTITION BY l.patient_id)
            FROM stage.link_key k JOIN stage.patient_link l USING (source_id, source_patient_pseudonym)
            ORDER BY 1, 2""").fetchall()
    finally:
        con.close()


def test_what_the_eupids_decide_is_refused_when_recorded(built: Home) -> None:
    patients = _patients(built)
    with_eupid = [p for p in patients if p[3]]
    first = with_eupid[0]
    other = next(p for p in with_eupid if p[0] != first[0] and p[2] != first[2])
    with pytest.raises(DecisionError, match="hold two different EUPIDs, which are never one person"):
        record_decision(built, PatientRef(first[0], first[1]), PatientRef(other[0], other[1]), "link")
    shared = next((p, q) for p in with_eupid for q in with_eupid if p[0] < q[0] and p[2] == q[2])
    with pytest.raises(DecisionError, match=r"share an EUPID.*ask the centres to correct the EUPID"):
        record_decision(built, PatientRef(*shared[0][:2]), PatientRef(*shared[1][:2]), "unlink")
    con = duckdb.connect(str(built.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM meta.link_decision").fetchone() == (0,)
    finally:
        con.close()


def test_a_link_the_run_cannot_apply_is_said_in_its_log_and_notices(built: Home, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    home = copy_of(built, tmp_path)
    alone = [p for p in _patients(home) if not p[3] and p[4] == 1]
    x, x2 = [PatientRef(p[0], p[1]) for p in alone if p[0] == "iltb"][:2]
    y = next(PatientRef(p[0], p[1]) for p in alone if p[0] == "registry_it")
    record_decision(home, x, y, "link")
    record_decision(home, x2, y, "link")  # y cannot be one person with two iltb patients: one link loses
    with caplog.at_level(logging.WARNING):
        summary = pipeline.run(home, key_value=KEY)
    assert summary.status == "completed"
    warned = [r.getMessage() for r in caplog.records if "was not applied" in r.getMessage()]
    assert len(warned) == 1 and f"registry_it:{y.pseudonym}" in warned[0] and "a patient of iltb" in warned[0]
    assert _linkage_notices(home, summary.run_id) == warned  # "linkage: ..."
    # A night that keeps the persons (nothing linkage reads changed) says it again, as scoring again would.
    again = pipeline.run(home, key_value=KEY, force=True)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT run_id FROM dq.link_scored").fetchall() == [(summary.run_id,)]
    finally:
        con.close()
    assert _linkage_notices(home, again.run_id) == warned


def _linkage_notices(home: Home, run_id: str) -> list[str]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return [n for (n,) in con.execute("SELECT notice FROM meta.source_notice WHERE run_id = ? "
                                          "AND notice LIKE 'linkage:%'", [run_id]).fetchall()]
    finally:
        con.close()
