"""Twins of one sex with one tumour (etl/link): born the same day at one centre, they agree on every
field linkage compares but what the data says apart, and a pair that may be the other twin waits for
a reviewer instead of making two children one person. Scored with the real Splink on tiny frames."""

from __future__ import annotations

import json

import pandas as pd
from test_link_evidence import _child, _features, _others

from etl.link.model import load_config
from etl.link.run import _review_list, linking_edges, score_pairs


def _scored(features: pd.DataFrame, tmp_path) -> list[dict]:
    return score_pairs(features, load_config(), spill_to=str(tmp_path / "spill")).to_dict("records")


def _listed(scored: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    review = _review_list(scored, {}, {}, load_config(), "run")
    return {(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r): json.loads(r.evidence)
            for r in review.itertuples()}


def test_twins_diagnosed_weeks_apart_each_in_one_source_are_reviewed_not_linked(tmp_path) -> None:
    """Two boys born the same day at one centre, each with a hepatoblastoma, the second diagnosed seven
    weeks after the first (his brother's diagnosis had him screened), one in each source: everything
    but the diagnosis date agrees, and they were one person. One child's diagnosis dated to the day by
    two sources weeks apart is rarer than twins (in the synthetic sources: never)."""
    config = load_config()
    features = _features(_child("esmart", "first"),
                         _child("sacha_fr", "second", diagnosis_date=pd.Timestamp("2016-04-20")), *_others(30))
    scored = _scored(features, tmp_path)
    (twins,) = [r for r in scored if (r["id_l"], r["id_r"]) == ("first", "second")]
    assert twins["match_probability"] >= config.link_threshold
    assert linking_edges(scored, {}, config) == []
    evidence = _listed(scored)[("first", "second")]
    assert (evidence["birth_date"], evidence["diagnosis_date"]) == ("agree", "months-apart")


def test_a_diagnosis_dated_to_the_month_by_one_source_still_links(tmp_path) -> None:
    """A registry dating the diagnosis to the day, a month after the first of the month another source
    gives: that is a date known to the month, not twins (the synthetic truth holds such pairs)."""
    config = load_config()
    features = _features(_child("esmart", "a", diagnosis_date=pd.Timestamp("2016-03-01"),
                                diagnosis_date_precision="month"),
                         _child("sacha_fr", "b", diagnosis_date=pd.Timestamp("2016-04-03")), *_others(30))
    scored = _scored(features, tmp_path)
    assert [(e.left[1], e.right[1]) for e in linking_edges(scored, {}, config)] == [("a", "b")]


def test_a_record_matching_both_twins_of_one_source_is_reviewed_with_both(tmp_path) -> None:
    """Both twins registered by SACHA, one of them also by ESMART: the ESMART record matches the two
    SACHA patients alike, and the person it joined was whichever sorted first. A source registers
    twins under two ids; one child twice, rarely: both pairs wait for a reviewer."""
    config = load_config()
    features = _features(_child("esmart", "twin"), _child("sacha_fr", "one"), _child("sacha_fr", "other"),
                         *_others(30))
    scored = _scored(features, tmp_path)
    assert all(r["match_probability"] >= config.link_threshold for r in scored if r["id_l"] == "twin")
    assert linking_edges(scored, {}, config) == []
    listed = _listed(scored)
    assert listed[("twin", "one")]["rival"] == listed[("twin", "other")]["rival"] == "another patient of sacha_fr"
    # A reviewer who knows which twin it is links them, or unlinks the other twin: the one left is linked.
    (edge,) = linking_edges(scored, {(("esmart", "twin"), ("sacha_fr", "other")): "link"}, config)
    assert (edge.right, edge.method) == (("sacha_fr", "other"), "clerical")
    (edge,) = linking_edges(scored, {(("esmart", "twin"), ("sacha_fr", "other")): "unlink"}, config)
    assert (edge.right, edge.method) == (("sacha_fr", "one"), "probabilistic")


def test_a_record_that_one_twin_matches_far_better_links_to_that_twin(tmp_path) -> None:
    """The ESMART record agrees with one SACHA twin to the diagnosis day and with the other seven weeks
    off: the first is 440 times likelier, well past the link threshold's 19 to 1, and linked."""
    config = load_config()
    features = _features(_child("esmart", "twin"), _child("sacha_fr", "same-day"),
                         _child("sacha_fr", "weeks-later", diagnosis_date=pd.Timestamp("2016-04-20")), *_others(30))
    scored = _scored(features, tmp_path)
    assert [(e.left[1], e.right[1]) for e in linking_edges(scored, {}, config)] == [("twin", "same-day")]
    assert _listed(scored)[("twin", "weeks-later")]["rival"] == "another patient of sacha_fr"


def test_review_when_read_as_conditions_each_field_alone_in_the_older_form(tmp_path) -> None:
    """A deployer's copy written before conditions (review_when: {field: labels}) holds a pair back on
    any one of its fields, as it did; a condition of the list holds one back when all its fields do."""
    text = load_config().model_dump(exclude={"fingerprint"})
    text["review_when"] = {"sex": ["disagree"], "centre": ["disagree"]}
    (tmp_path / "linkage.yaml").write_text(json.dumps(text))
    assert load_config(tmp_path / "linkage.yaml").review_when == [{"sex": ["disagree"]}, {"centre": ["disagree"]}]
    shipped = load_config().review_when
    assert {"birth_date": ["agree", "month-only"],
            "diagnosis_date": ["weeks-apart", "months-apart", "disagree"]} in shipped


def test_twins_matching_alike_are_reviewed_under_a_link_threshold_of_one_half(tmp_path) -> None:
    """A deployer's link_threshold of 0.5 (Splink's usual cut): the record's two pairs hold exactly half
    the Bayes factor each, neither below the threshold, so neither was contested and clustering linked
    the record to whichever twin sorted first. A pair stands out only with more than half."""
    config = load_config().model_copy(update={"link_threshold": 0.5})
    features = _features(_child("esmart", "twin"), _child("sacha_fr", "one"), _child("sacha_fr", "other"),
                         *_others(30))
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    assert linking_edges(scored, {}, config) == []
