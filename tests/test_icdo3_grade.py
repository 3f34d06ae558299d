"""An ICD-O-3 morphology with its 6th digit, the grade (`9500/31`), through the mapping engine.

Registries write the grade or differentiation after the behaviour, separated as they like; the
record is loaded with the histology and behaviour the code gives, and a digit that is no ICD-O-3
grade quarantines it with the reason naming the value.
"""

from __future__ import annotations

import pandas as pd
import pytest

from etl.transform.harmonise import ICDO3_BEHAVIOUR, ICDO3_MORPHOLOGY, harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"grade-test")
MAPPING = SourceMapping.model_validate({
    "source_id": "reg_grade", "title": "a registry that writes the grade", "format": "csv", "files": "*.csv",
    "record_set": "REG", "date_format": "%d/%m/%Y", "patient_key": "pid", "record_key": "REG[{rid}]",
    "patient": {"from": "REG", "fields": {"sex": {"column": "sex", "codes": {"1": "male", "2": "female"}}}},
    "tables": {"diagnosis": {"from": "REG", "fields": {
        "diagnosis_date": {"column": "diag", "type": "date", "required": True},
        "icdo3_morphology": {"column": "morph", "type": "icdo3_histology", "required": True},
        "icdo3_behaviour": {"column": "morph", "type": "icdo3_behaviour"},
        "icdo3_topography": {"column": "topo", "type": "icdo3_topography"},
    }}},
})


def _harmonised(morph: str, topo: str = "C74.9"):
    frame = pd.DataFrame([{"rid": "1", "pid": "P1", "sex": "2", "diag": "17/03/2015", "morph": morph, "topo": topo}])
    frame = frame.assign(_line=2, source_file="reg.csv", source_file_sha256="a" * 64)
    return harmonise_source(MAPPING, {"REG": frame}, KEY, "run-1")


@pytest.mark.parametrize("morph", ["9500/31", "9500/3 1", "9500/3-1", "9500/3.1", "950031", "M-9500/31"])
def test_a_neuroblastoma_written_with_its_grade_is_loaded_and_classified(morph):
    result = _harmonised(morph)
    assert result.rejections.empty, list(result.rejections.message)
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert (diagnosis["icdo3_morphology"], diagnosis["icdo3_behaviour"]) == ("9500", "3")
    assert (diagnosis["iccc3_code"], diagnosis["iccc3_subgroup"]) == ("041", "IV(a)")


def test_a_grade_digit_that_is_no_grade_quarantines_the_record_naming_it():
    result = _harmonised("9500/30")
    assert result.tables["diagnosis"].empty
    reasons = result.rejections.set_index("field")
    assert set(reasons["rule_id"]) == {ICDO3_MORPHOLOGY, ICDO3_BEHAVIOUR}
    assert reasons.loc["icdo3_morphology", "value"] == "9500/30"
    assert "icdo3_morphology (morph): morphology '9500/30': grade '0' is not an ICD-O-3 grade" in \
        reasons.loc["icdo3_morphology", "message"]
