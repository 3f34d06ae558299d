"""An ICD-O-3 code whose parts come from two columns, through the mapping engine.

The Italian registry (sources/registry_it.yaml) delivers the morphology in `morfologia` and the
behaviour in `comportamento`; a centre may still write the behaviour into the morphology too
(`8500/3`), and the two may disagree. Which one is right decides the ICCC-3 class (an in situ /2 is
not classified), so the record is quarantined naming both columns and values. The grade, ICD-O-3's
6th digit, is read by `type: icdo3_grade` into core.diagnosis.grade, and checked the same way.
"""

from __future__ import annotations

import pandas as pd
import pytest

from etl.config import SOURCES_DIR
from etl.transform.harmonise import ICDO3_BEHAVIOUR, ICDO3_MORPHOLOGY, HarmoniseResult, harmonise_source
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"icdo3-columns")
REGISTRY = load_mapping(SOURCES_DIR / "registry_it.yaml")
CASE = {"id_record": "1", "codice_paziente": "P1", "codice_centro": "IT01", "sesso": "2", "data_nascita": "00/05/2010",
        "eupid": "", "data_registrazione": "01/06/2015", "data_diagnosi": "17/03/2015", "morfologia": "8500",
        "comportamento": "3", "topografia": "C50.9", "lateralita": "S", "base_diagnosi": "7", "dimensione_cm": "",
        "data_ultimo_contatto": "01/06/2016", "stato_vitale": "V", "data_decesso": ""}


def _harmonised(mapping: SourceMapping, **values: str) -> HarmoniseResult:
    frame = pd.DataFrame([{**CASE, **values}]).assign(_line=2, source_file="TREP_export_20160601.csv",
                                                       source_file_sha256="b" * 64)
    return harmonise_source(mapping, {"REG": frame}, KEY, "run-1")


def _with_diagnosis_fields(**fields: dict[str, str]) -> SourceMapping:
    raw = REGISTRY.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
    raw["tables"]["diagnosis"]["fields"].update(fields)
    return SourceMapping.model_validate(raw)


@pytest.mark.parametrize(("morfologia", "written", "comportamento"), [
    ("8500/3", "3", "2"), ("85003", "3", "2"), ("M-8500/2", "2", "3"), ("8500/33", "3", "2")])
def test_a_behaviour_column_that_contradicts_the_morphology_quarantines_the_record_naming_both(morfologia, written,
                                                                                              comportamento):
    result = _harmonised(REGISTRY, morfologia=morfologia, comportamento=comportamento)
    assert result.tables["diagnosis"].empty and result.tables["follow_up"].empty
    reason = result.rejections.iloc[0]
    assert len(result.rejections) == 1
    assert (reason["rule_id"], reason["field"], reason["value"]) == (
        ICDO3_BEHAVIOUR, "icdo3_behaviour", f"{morfologia} vs {comportamento}")
    assert reason["message"] == (f"icdo3_behaviour (comportamento): behaviour '{comportamento}' contradicts "
                                 f"icdo3_morphology (morfologia) '{morfologia}', whose behaviour is {written}: "
                                 "correct one of them")
    assert result.file_counts["b" * 64] == {"rows_read": 1, "rows_loaded": 0, "rows_quarantined": 1}


@pytest.mark.parametrize(("morfologia", "comportamento", "behaviour"), [
    ("8500", "2", "2"), ("8500/2", "2", "2"), ("8500/3", "3", "3"), ("8500/3", "", "3"), ("8500/33", "3", "3")])
def test_a_behaviour_column_that_agrees_or_is_empty_loads_the_record(morfologia, comportamento, behaviour):
    result = _harmonised(REGISTRY, morfologia=morfologia, comportamento=comportamento)
    assert result.rejections.empty, list(result.rejections.message)
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert diagnosis["icdo3_morphology"] == "8500"
    assert diagnosis["icdo3_behaviour"] == behaviour  # an empty behaviour column leaves it to the morphology


# As `rtw scaffold` drafts a behaviour column: a 9, unknown as registries write it, is no value.
DRAFTED_BEHAVIOUR = {"column": "comportamento", "type": "icdo3_behaviour",
                     "codes": {"0": "0", "1": "1", "2": "2", "3": "3", "9": None}}


@pytest.mark.parametrize(("morfologia", "comportamento", "behaviour", "iccc3_code"), [
    ("9470/3", "9", "3", "033"), ("9470/3", "", "3", "033"), ("9470", "9", None, None), ("9470/3", "3", "3", "033")])
def test_a_behaviour_column_giving_no_value_leaves_the_behaviour_to_the_morphology(morfologia, comportamento,
                                                                                   behaviour, iccc3_code):
    # The morphology writes the tumour malignant: loaded without a behaviour, it had no ICCC-3 class and was
    # left out of every count of malignant tumours (incidence, survival from diagnosis).
    mapping = _with_diagnosis_fields(icdo3_behaviour=DRAFTED_BEHAVIOUR)
    result = _harmonised(mapping, morfologia=morfologia, comportamento=comportamento, topografia="C71.6")
    assert result.rejections.empty, list(result.rejections.message)
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert (diagnosis["icdo3_morphology"], diagnosis["icdo3_behaviour"]) == ("9470", behaviour)
    assert diagnosis["iccc3_code"] == iccc3_code


def test_a_grade_column_giving_no_value_leaves_the_grade_to_the_morphology():
    mapping = _with_diagnosis_fields(grade={"column": "grado", "type": "icdo3_grade"})
    result = _harmonised(mapping, morfologia="9500/31", grado="", comportamento="")
    assert result.rejections.empty, list(result.rejections.message)
    assert result.tables["diagnosis"].iloc[0][["icdo3_behaviour", "grade"]].tolist() == ["3", "1"]


@pytest.mark.parametrize(("morfologia", "grade"), [("9500/31", "1"), ("8500/3 3", "3"), ("8500/3-4", "4"),
                                                   ("8500/3.9", "9"), ("850032", "2"), ("8500/3", None),
                                                   ("8500", None)])
def test_the_grade_of_the_morphology_is_loaded_into_diagnosis_grade(morfologia, grade):
    mapping = _with_diagnosis_fields(grade={"column": "morfologia", "type": "icdo3_grade"})
    result = _harmonised(mapping, morfologia=morfologia, comportamento="")
    assert result.rejections.empty, list(result.rejections.message)
    assert result.tables["diagnosis"].iloc[0]["grade"] == grade


@pytest.mark.parametrize(("grado", "message"), [
    ("0", "grade (grado): grade '0' is not an ICD-O-3 grade (1-4 grade I-IV"),
    ("8500/30", "grade (grado): morphology '8500/30': grade '0' is not an ICD-O-3 grade (1-4 grade I-IV")])
def test_a_grade_that_is_no_icd_o_3_grade_is_refused_naming_it(grado, message):
    mapping = _with_diagnosis_fields(grade={"column": "grado", "type": "icdo3_grade"})
    result = _harmonised(mapping, grado=grado)
    assert result.tables["diagnosis"].empty
    reason = result.rejections.iloc[0]
    assert (reason["rule_id"], reason["field"], reason["value"]) == (ICDO3_MORPHOLOGY, "grade", grado)
    assert reason["message"].startswith(message)


def test_a_grade_column_that_contradicts_the_morphology_quarantines_the_record_naming_both():
    mapping = _with_diagnosis_fields(grade={"column": "grado", "type": "icdo3_grade"})
    result = _harmonised(mapping, morfologia="8500/33", grado="2")
    assert result.tables["diagnosis"].empty
    reason = result.rejections.iloc[0]
    assert (reason["rule_id"], reason["field"], reason["value"]) == (ICDO3_MORPHOLOGY, "grade", "8500/33 vs 2")
    assert reason["message"] == ("grade (grado): grade '2' contradicts icdo3_morphology (morfologia) '8500/33', "
                                 "whose grade is 3: correct one of them")
