"""Scoring tiny feature frames with the real Splink (etl/link/run.py score_pairs): what the clerical
review list says of a pair, and which pairs the shipped model scores and links."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from etl.link.model import LinkageConfig, LinkageConfigError, load_config
from etl.link.run import _review_list, linking_edges, score_pairs


def _child(source: str, name: str, **given: Any) -> dict[str, Any]:
    """One feature row (FEATURES_SQL's columns): a boy born in June 2015 with a hepatoblastoma."""
    row = {"source_id": source, "unique_id": name, "harmonised_patient_id": f"h-{source}-{name}", "has_eupid": False,
           "sex": "male", "birth_year": 2015, "birth_month": 6, "birth_token": "token-a", "birth_swapped_token": None,
           "country": "FR", "centre_id": "FR01", "diagnosis_date": pd.Timestamp("2016-03-01"),
           "diagnosis_date_precision": "day", "relapse_date": pd.NaT, "icdo3_morphology": "8970",
           "icdo3_topography": "C22.0"}
    return row | given


def _features(*rows: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["birth_year"] = frame.birth_year.astype("Int32")
    frame["birth_month"] = frame.birth_month.astype("Int32")
    frame["diagnosis_date"] = pd.to_datetime(frame.diagnosis_date)
    frame["relapse_date"] = pd.to_datetime(frame.relapse_date)
    return frame


def _others(count: int) -> list[dict[str, Any]]:
    """Children born in other years with other tumours: a morphology agreeing weighs by how rare it is
    among all the records (term frequency), and in a frame of three every morphology is common."""
    return [_child(("esmart", "sacha_fr")[n % 2], f"other-{n}", birth_year=2000 + n % 10, birth_token=f"t-{n}",
                   icdo3_morphology=f"{9000 + n}") for n in range(count)]


def _everything_reviewed() -> LinkageConfig:
    return load_config().model_copy(update={"review_threshold": 1e-9, "link_threshold": 1 - 1e-12})


def _evidence(features: pd.DataFrame, config: LinkageConfig, tmp_path) -> dict[tuple[str, str], dict[str, str]]:
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    review = _review_list(scored, {}, {}, config, "run")
    return {(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r): json.loads(r.evidence)
            for r in review.itertuples()}


def test_the_review_list_names_the_level_each_field_reached(tmp_path) -> None:
    """same-site weighs nothing (m = u), as a missing value does: it was shown as 'missing'."""
    config = _everything_reviewed()
    features = _features(
        _child("esmart", "a", icdo3_topography="C22.0"),
        _child("sacha_fr", "b", icdo3_topography="C22.1", relapse_date=pd.Timestamp("2017-01-01")),
        _child("sacha_fr", "c", icdo3_topography=None, birth_token="token-b",
               diagnosis_date=pd.Timestamp("2016-03-04")))
    evidence = _evidence(features, config, tmp_path)
    assert evidence[("a", "b")]["icdo3_topography"] == "same-site"
    assert evidence[("a", "b")]["relapse_date"] == "missing"
    assert evidence[("a", "c")]["icdo3_topography"] == "missing"
    assert evidence[("a", "c")]["birth_date"] == "same-month-other-day"
    assert evidence[("a", "c")]["diagnosis_date"] == "within-week"


def test_a_birth_date_known_to_the_year_only_is_scored_and_weighs_for_the_pair(tmp_path) -> None:
    """A trial's SDTM BRTHDTC may give the year only ('2015'): such a child was never scored, so never linked."""
    config = load_config()
    features = _features(
        _child("esmart", "a", birth_month=None, birth_token=None),
        _child("sacha_fr", "b"),
        _child("sacha_fr", "c", sex="female", icdo3_morphology="9500", icdo3_topography="C74.0",
               diagnosis_date=pd.Timestamp("2019-05-01")))
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill"))
    pair = scored[(scored.id_l == "a") & (scored.id_r == "b")]
    assert len(pair) == 1 and pair.match_probability.iloc[0] >= config.link_threshold
    evidence = _evidence(features, _everything_reviewed(), tmp_path)
    assert evidence[("a", "b")]["birth_date"] == "year-only"

def test_a_birth_known_to_the_year_only_is_compared_with_that_year_s_likely_children_only(tmp_path) -> None:
    """Compared with every child born that year in the other sources, a trial's year-only births made
    3.5 times the pairs of the month rule at 100,000 persons, and scoring took 44-65 s instead of 9-10 s:
    it is compared with those of its sex and year of diagnosis, or of its morphology, and a pair missing
    one (no diagnosis date, a diagnosis across New Year, a sex mistyped) is still scored."""
    config = _everything_reviewed().model_copy(update={"review_threshold": 1e-300})
    features = _features(
        _child("esmart", "a", birth_month=None, birth_token=None),
        _child("sacha_fr", "no-diagnosis-date", diagnosis_date=pd.NaT, diagnosis_date_precision=None),
        _child("sacha_fr", "across-new-year", diagnosis_date=pd.Timestamp("2015-12-30")),
        _child("sacha_fr", "other-sex", sex="female"),
        _child("sacha_fr", "other-tumour", icdo3_morphology="9500", icdo3_topography="C74.0"),
        _child("sacha_fr", "unlike", sex="female", icdo3_morphology="9500", icdo3_topography="C74.0",
               diagnosis_date=pd.Timestamp("2019-05-01")),
        _child("sacha_fr", "other-year", birth_year=2016, birth_token="token-c"))
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill"))
    assert sorted(scored.id_r[scored.id_l == "a"]) == ["across-new-year", "no-diagnosis-date", "other-sex",
                                                       "other-tumour"]


def test_twins_of_two_sexes_with_one_tumour_are_reviewed_not_linked(tmp_path) -> None:
    """Born the same day at the same centre, both with a hepatoblastoma diagnosed weeks apart, a boy in
    one source and a girl in the other: everything but sex agrees, and scored 0.999. One child whose sex
    a source mistyped is rarer than twins, so a pair whose sexes disagree waits for a reviewer."""
    config = load_config()
    features = _features(
        _child("esmart", "boy"),
        _child("sacha_fr", "girl", sex="female", diagnosis_date=pd.Timestamp("2016-04-20")),
        *_others(30))
    scored = score_pairs(features, config, spill_to=str(tmp_path / "spill")).to_dict("records")
    (twins,) = [r for r in scored if (r["id_l"], r["id_r"]) == ("boy", "girl")]
    assert twins["match_probability"] >= config.link_threshold
    assert linking_edges(scored, {}, config) == []
    review = _review_list(scored, {}, {}, config, "run")
    listed = [(r.source_patient_pseudonym_l, r.source_patient_pseudonym_r) for r in review.itertuples()]
    assert listed == [("boy", "girl")]
    assert json.loads(review.evidence.iloc[0])["sex"] == "disagree"
    # A reviewer who finds them one child links them.
    (edge,) = linking_edges(scored, {(("esmart", "boy"), ("sacha_fr", "girl")): "link"}, config)
    assert edge.method == "clerical"


def test_review_when_names_levels_the_model_has(tmp_path) -> None:
    text = load_config().model_dump(exclude={"fingerprint"})
    text["review_when"] = {"sex": ["differs"]}
    (tmp_path / "linkage.yaml").write_text(json.dumps(text))
    with pytest.raises(LinkageConfigError, match=r"sex has no level 'differs' \(its levels: missing, agree"):
        load_config(tmp_path / "linkage.yaml")


@pytest.mark.parametrize("weight", ["m", "u"])
def test_a_level_weighing_zero_is_refused_with_the_file(tmp_path, weight: str) -> None:
    """m or u of 0 would make a Bayes factor of 0 or infinity (a log of 0 in the match weight)."""
    text = load_config().model_dump(exclude={"fingerprint"})
    text["fields"]["sex"][1][weight] = 0
    (tmp_path / "linkage.yaml").write_text(json.dumps(text))
    with pytest.raises(LinkageConfigError, match=rf"(?s)linkage.yaml.*fields.sex.1.{weight}\n.*greater than 0"):
        load_config(tmp_path / "linkage.yaml")
