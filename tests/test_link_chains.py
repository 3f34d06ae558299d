"""Chains of links (etl/link): records that no pair's evidence puts together must not become one person
through a third record. Twins of two sexes are held apart for a reviewer (review_when); a record giving
no sex matched both, and made them one child. Scored with the real Splink on tiny frames."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from test_link_evidence import _child, _features, _others

from etl.link.cluster import CLERICAL, PROBABILISTIC, Edge, SourcePatient, link_persons
from etl.link.model import load_config
from etl.link.run import link_scored, linking_edges, score_pairs, unapplied_decisions

FIRST_RELAPSE, SECOND_RELAPSE = pd.Timestamp("2017-01-10"), pd.Timestamp("2018-05-02")


def _linked(features: pd.DataFrame, tmp_path) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, str]]]:
    """Each record's person (by the name of its record), and the review list's evidence per pair."""
    config = load_config()
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    patients = [SourcePatient(r["source_id"], r["unique_id"], r["harmonised_patient_id"], False)
                for r in features.to_dict("records")]
    links, _, review = link_scored(patients, scored, {}, config, "run")
    return ({p[1]: link.patient_id for p, link in links.items()},
            {(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r): json.loads(r.evidence)
             for r in review.itertuples()})


def _twins_through_a_bridge(method: str, boy_p: float, girl_p: float) -> tuple[
        dict[Any, Any], list[tuple[Edge, str]], tuple[SourcePatient, SourcePatient, SourcePatient]]:
    """A boy and his twin sister held apart, each linked (by `method`) to a registry record without sex:
    the persons, the links clustering refused, and the three patients."""
    boy, girl = SourcePatient("esmart", "boy", "h1", False), SourcePatient("sacha_fr", "girl", "h2", False)
    bridge = SourcePatient("registry_it", "no-sex", "h3", False)
    refused: list[tuple[Edge, str]] = []
    links = link_persons([boy, girl, bridge], [Edge(boy.key, bridge.key, boy_p, method),
                                               Edge(bridge.key, girl.key, girl_p, method)],
                         refused, apart=[(boy.key, girl.key)])
    return links, refused, (boy, girl, bridge)


def test_patients_held_apart_are_never_one_person_through_others() -> None:
    links, refused, (boy, girl, bridge) = _twins_through_a_bridge(PROBABILISTIC, 0.99, 0.98)
    assert links[boy.key].patient_id == links[bridge.key].patient_id != links[girl.key].patient_id
    assert [(e.left, e.right) for e, _ in refused] == [(bridge.key, girl.key)]
    assert "held apart" in refused[0][1]


def test_a_record_without_sex_matching_twins_of_two_sexes_alike_is_reviewed_with_both(tmp_path) -> None:
    """A boy in ESMART, his twin sister in SACHA (held apart: two sexes), and a registry record of one of
    them that gives no sex: it matched both alike and made the twins one person."""
    config = load_config()
    features = _features(_child("esmart", "boy"), _child("sacha_fr", "girl", sex="female"),
                         _child("registry_it", "no-sex", sex=None), *_others(30))
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    assert linking_edges(scored, {}, config) == []
    persons, listed = _linked(features, tmp_path)
    assert len({persons["boy"], persons["girl"], persons["no-sex"]}) == 3
    assert listed[("boy", "no-sex")]["rival"] == "another patient of sacha_fr"
    assert listed[("no-sex", "girl")]["rival"] == "another patient of esmart"
    assert listed[("boy", "girl")]["sex"] == "disagree"


def test_a_chain_of_records_without_sex_does_not_join_twins_of_two_sexes(tmp_path) -> None:
    """Each twin's relapse date is in one record without sex (registry_it, iltb): each of those links to
    its twin, and their own link, weaker, would have joined the twins."""
    features = _features(
        _child("esmart", "boy", relapse_date=FIRST_RELAPSE),
        _child("registry_it", "his", sex=None, relapse_date=FIRST_RELAPSE),
        _child("iltb", "hers", sex=None, relapse_date=SECOND_RELAPSE),
        _child("sacha_fr", "girl", sex="female", relapse_date=SECOND_RELAPSE), *_others(30))
    persons, listed = _linked(features, tmp_path)
    assert persons["boy"] == persons["his"] != persons["hers"] == persons["girl"]
    assert listed[("hers", "his")]["refused"] == ("their persons hold two patients held apart for a reviewer "
                                                  "(review_when), esmart:boy and sacha_fr:girl")


def test_a_link_refused_for_two_patients_of_one_source_is_reviewed_not_dropped(tmp_path) -> None:
    """ESMART registers two children that SACHA and the registry each know once: each links to one, and
    the SACHA-registry pair, linked on its score, was refused by clustering and listed nowhere."""
    features = _features(
        _child("esmart", "a", relapse_date=FIRST_RELAPSE), _child("sacha_fr", "b", relapse_date=FIRST_RELAPSE),
        _child("registry_it", "c", relapse_date=SECOND_RELAPSE), _child("esmart", "d", relapse_date=SECOND_RELAPSE),
        *_others(30))
    persons, listed = _linked(features, tmp_path)
    assert persons["a"] == persons["b"] != persons["c"] == persons["d"]
    assert listed[("c", "b")]["refused"] == "their persons each hold a patient of esmart"


def test_a_record_matching_two_eupids_alike_is_reviewed_with_both(tmp_path) -> None:
    """ESMART and SACHA each export a EUPID, two different ones (two children), and a registry record
    without one matches both alike: it was linked to whichever sorted first."""
    features = _features(_child("esmart", "first", has_eupid=True, harmonised_patient_id="eupid-1"),
                         _child("sacha_fr", "second", has_eupid=True, harmonised_patient_id="eupid-2"),
                         _child("registry_it", "without"), *_others(30))
    config = load_config()
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    patients = [SourcePatient(r["source_id"], r["unique_id"], r["harmonised_patient_id"], r["has_eupid"])
                for r in features.to_dict("records")]
    links, _, review = link_scored(patients, scored, {}, config, "run")
    assert links[("registry_it", "without")].link_method == "unlinked"
    listed = {(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r): json.loads(r.evidence)
              for r in review.itertuples()}
    assert listed[("first", "without")]["rival"] == "another patient of sacha_fr"
    assert listed[("without", "second")]["rival"] == "another patient of esmart"


def test_a_link_refused_on_its_score_is_no_reviewers_decision_unapplied() -> None:
    a, b, c = (SourcePatient(s, n, f"h-{n}", False) for s, n in (("esmart", "a"), ("sacha_fr", "b"), ("esmart", "c")))
    refused: list[tuple[Edge, str]] = []
    links = link_persons([a, b, c], [Edge(a.key, b.key, 0.99, PROBABILISTIC), Edge(c.key, b.key, 0.98, PROBABILISTIC)],
                         refused)
    assert len(refused) == 1 and unapplied_decisions({}, links, refused) == []


def test_a_reviewers_link_joining_patients_held_apart_says_how_to_join_them() -> None:
    links, refused, _ = _twins_through_a_bridge(CLERICAL, 1.0, 1.0)
    (said,) = unapplied_decisions({}, links, refused)
    assert said[1].endswith("was not applied: their persons hold two patients held apart for a reviewer "
                            "(review_when), esmart:boy and sacha_fr:girl: link the two, if one child")


def test_a_record_matching_two_eupids_never_scored_together_is_reviewed_with_both(tmp_path) -> None:
    """The two EUPID records differ on their diagnosis, centre and country, so they were never scored
    together (under the review threshold); a registry record giving none of those matches both alike. It
    was linked to whichever sorted first, the other pair listed as refused, with no rival."""
    features = _features(
        _child("esmart", "first", has_eupid=True, harmonised_patient_id="eupid-1"),
        _child("sacha_fr", "second", has_eupid=True, harmonised_patient_id="eupid-2",
               diagnosis_date=pd.Timestamp("2019-09-01"), icdo3_topography="C71.0", centre_id="FR09", country="DE"),
        _child("registry_it", "without", diagnosis_date=pd.NaT, diagnosis_date_precision=None,
               icdo3_topography=None, centre_id=None, country=None),
        *_others(30))
    config = load_config()
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    assert {(r["id_l"], r["id_r"]) for r in scored} >= {("first", "without"), ("without", "second")}
    assert ("first", "second") not in {(r["id_l"], r["id_r"]) for r in scored}
    patients = [SourcePatient(r["source_id"], r["unique_id"], r["harmonised_patient_id"], r["has_eupid"])
                for r in features.to_dict("records")]
    links, refused, review = link_scored(patients, scored, {}, config, "run")
    assert links[("registry_it", "without")].link_method == "unlinked" and refused == []
    listed = {(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r): json.loads(r.evidence)
              for r in review.itertuples()}
    assert listed[("first", "without")]["rival"] == "another patient of sacha_fr"
    assert listed[("without", "second")]["rival"] == "another patient of esmart"


def test_a_reviewers_link_refused_for_patients_held_apart_names_them() -> None:
    """a1 and a2 share a EUPID, b is held apart from a1, a reviewer links a2 and b: the pair to link,
    if one child, is a1 and b (the reviewer's own pair was named)."""
    a1, a2 = SourcePatient("esmart", "a1", "eupid", True), SourcePatient("iltb", "a2", "eupid", True)
    b = SourcePatient("sacha_fr", "b", "h-b", False)
    refused: list[tuple[Edge, str]] = []
    links = link_persons([a1, a2, b], [Edge(a2.key, b.key, 1.0, CLERICAL)], refused, apart=[(a1.key, b.key)])
    (said,) = unapplied_decisions({(a2.key, b.key): "link"}, links, refused)
    assert said == ("iltb", "the reviewer's link of iltb:a2 and sacha_fr:b was not applied: their persons hold two "
                            "patients held apart for a reviewer (review_when), esmart:a1 and sacha_fr:b: link the "
                            "two, if one child")


def test_a_reviewers_link_refused_is_said_once_not_listed_for_review_too(tmp_path) -> None:
    """c-b scores above the link threshold and a reviewer linked it: its score made a second edge, refused
    with the reviewer's, so the pair was said in a notice and listed again with the decision 'link'."""
    features = _features(
        _child("esmart", "a", relapse_date=FIRST_RELAPSE), _child("sacha_fr", "b", relapse_date=FIRST_RELAPSE),
        _child("registry_it", "c", relapse_date=SECOND_RELAPSE), _child("esmart", "d", relapse_date=SECOND_RELAPSE),
        *_others(30))
    config = load_config()
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    patients = [SourcePatient(r["source_id"], r["unique_id"], r["harmonised_patient_id"], False)
                for r in features.to_dict("records")]
    decisions = {(("esmart", "a"), ("sacha_fr", "b")): "link", (("esmart", "d"), ("registry_it", "c")): "link",
                 (("registry_it", "c"), ("sacha_fr", "b")): "link"}
    links, refused, review = link_scored(patients, scored, decisions, config, "run")
    assert [(e.left[1], e.right[1], e.method) for e, _ in refused] == [("c", "b", CLERICAL)]
    assert links[("registry_it", "c")].link_method == links[("sacha_fr", "b")].link_method == CLERICAL
    (said,) = unapplied_decisions(decisions, links, refused)
    assert "link of registry_it:c and sacha_fr:b was not applied" in said[1]
    assert ("c", "b") not in set(zip(review.source_patient_pseudonym_l, review.source_patient_pseudonym_r))
