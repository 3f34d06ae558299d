"""A diagnosis whose mapping reads no behaviour: the behaviour its morphology writes (`9470/3`) is kept, and a
histology written alone (`9470`), whose behaviour is truly unknown, is loaded unclassified, not assumed malignant,
with a warning naming the record and the missing field (DIAG-BEHAVIOUR-PRESENT) for the centre to complete.

Not assumed /3: the behaviour decides the ICCC-3 class (8260/0 at the thyroid is an adenoma, 999; 8260/3 a
carcinoma, XI(b)) and whether the tumour counts as malignant (incidence, survival from diagnosis), and the IARC
2017 table gives most rows Behavior IN 3 alone.
"""

from __future__ import annotations

import pytest
from rule_stage import catalogued, stage
from test_icdo3_columns import REGISTRY, _harmonised

from etl.quality.sql_checks import run_checks
from etl.transform.iccc3 import classify
from etl.transform.mapping import SourceMapping


def _without_behaviour() -> SourceMapping:
    raw = REGISTRY.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    del raw["tables"]["diagnosis"]["fields"]["icdo3_behaviour"]
    return SourceMapping.model_validate(raw)


@pytest.mark.parametrize(("morfologia", "behaviour", "iccc3_code"), [
    ("9470/3", "3", "033"), ("M-9470/3", "3", "033"), ("94703", "3", "033"), ("9421/1", "1", "032"),
    ("9470/33", "3", "033"), ("9470", None, None)])
def test_the_behaviour_the_morphology_writes_is_kept_when_the_mapping_reads_none(morfologia, behaviour, iccc3_code):
    # It was dropped: 9470/3 was loaded without a behaviour, no ICCC-3 class, and counted in no malignant count.
    result = _harmonised(_without_behaviour(), morfologia=morfologia, comportamento="", topografia="C71.6")
    assert result.rejections.empty, list(result.rejections.message)
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert (diagnosis["icdo3_morphology"], diagnosis["icdo3_behaviour"]) == (morfologia.lstrip("M-")[:4], behaviour)
    assert diagnosis["iccc3_code"] == iccc3_code  # a histology alone is not classified as if malignant


def test_the_behaviour_decides_the_class_so_an_unknown_one_is_not_assumed_malignant():
    assert classify("8260", "0", "C73.9").code == "999"
    assert classify("8260", "3", "C73.9").subgroup == "XI(b)"


def test_a_morphology_without_its_behaviour_is_flagged_naming_the_field_and_the_tumour():
    con = stage({"diagnosis": [
        {"source_record_key": "histology-alone", "icdo3_morphology": "8260", "icdo3_topography": "C73.9"},
        {"source_record_key": "site-unknown-too", "icdo3_morphology": "8260"},
        {"source_record_key": "with-behaviour", "icdo3_morphology": "8260", "icdo3_behaviour": "3",
         "icdo3_topography": "C73.9"},
        {"source_record_key": "no-morphology", "icdo3_topography": "C73.9"},  # DIAG-MORPHOLOGY-PRESENT's finding
    ]})
    [run] = run_checks(con, catalogued("DIAG-BEHAVIOUR-PRESENT"))
    assert run.error is None, run.error
    assert sorted(zip(run.failures.source_record_key, run.failures.field, run.failures.value)) == [
        ("histology-alone", "icdo3_behaviour", "8260 C73.9"), ("site-unknown-too", "icdo3_behaviour", "8260")]
