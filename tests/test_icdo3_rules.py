"""The SQL rules that judge ICD-O-3 codes (warehouse/checks/XT-*.sql), on hand-made records.

Each case is one diagnosis staged in the real DDL (tests/test_age_limits.py builds the stage) and
judged by the real rule: a tumour the rule means is flagged, a look-alike it does not mean is not.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from test_age_limits import _birthday, _flagged, _record, _stage

from etl.transform import iccc3

BIRTH = date(2008, 5, 20)


def _diagnosis(key: str, morphology: str, topography: str | None, age_years: int, **more: Any) -> dict[str, Any]:
    """A diagnosis `age_years` after BIRTH (on the birthday), its morphology written `9510/3`, classified
    as harmonise classifies it."""
    histology, _, behaviour = morphology.partition("/")
    classified = iccc3.classify(histology, behaviour, topography) if topography else None
    return _record("any", key, "diagnosis", "diagnosis_date", BIRTH, _birthday(BIRTH, age_years)) | {
        "icdo3_morphology": histology, "icdo3_behaviour": behaviour, "icdo3_topography": topography,
        "iccc3_code": classified and classified.code, "iccc3_extended": classified and classified.extended} | more


def _judged(rule_id: str, cases: list[tuple[str, dict[str, Any], bool]],
            rows: dict[str, list[dict[str, Any]]] | None = None) -> None:
    flagged = _flagged(_stage({"diagnosis": [row for _, row, _ in cases], **(rows or {})}, []), rule_id)
    assert set(flagged) == {key for key, _, expected in cases if expected}


EMBRYONAL = [  # (key, diagnosis, flagged)
    ("neuroblastoma-at-15", _diagnosis("neuroblastoma-at-15", "9500/3", "C74.9", 15), True),
    ("ganglioneuroblastoma-at-16", _diagnosis("ganglioneuroblastoma-at-16", "9490/3", "C48.0", 16), True),
    ("nephroblastoma-at-17", _diagnosis("nephroblastoma-at-17", "8960/3", "C64.9", 17), True),
    ("hepatoblastoma-at-15", _diagnosis("hepatoblastoma-at-15", "8970/3", "C22.0", 15), True),
    ("cystic-nephroblastoma-at-16", _diagnosis("cystic-nephroblastoma-at-16", "8959/3", "C64.9", 16), True),
    ("neuroblastoma-at-14", _diagnosis("neuroblastoma-at-14", "9500/3", "C74.9", 14), False),
    # a source that does not say which event it records gives its first diagnoses (as DIAG-AGE-REGISTRY reads it)
    ("no-event-type-at-16", _diagnosis("no-event-type-at-16", "9500/3", "C74.9", 16, event_type=None), True),
    ("relapse-at-16", _diagnosis("relapse-at-16", "9500/3", "C74.9", 16, event_type="relapse"), False),
    # the benign end of the same lines: a ganglioneuroma is a tumour of adolescents and adults
    ("ganglioneuroma-at-16", _diagnosis("ganglioneuroma-at-16", "9490/0", "C48.0", 16), False),
    ("mesoblastic-nephroma-at-15", _diagnosis("mesoblastic-nephroma-at-15", "8960/1", "C64.9", 15), False),
    ("retinocytoma-at-16", _diagnosis("retinocytoma-at-16", "9510/0", "C69.2", 16), False),
]


@pytest.mark.parametrize("case", EMBRYONAL, ids=lambda case: case[0])
def test_embryonal_age_flags_the_malignant_embryonal_tumours_only(case):
    _judged("XT-EMBRYONAL-AGE", [case])


RETINOBLASTOMA = [
    ("at-6", _diagnosis("at-6", "9510/3", "C69.2", 6), True),
    ("diffuse-at-7", _diagnosis("diffuse-at-7", "9513/3", "C69.2", 7), True),
    ("at-5", _diagnosis("at-5", "9510/3", "C69.2", 5), False),
    ("no-event-type-at-8", _diagnosis("no-event-type-at-8", "9510/3", "C69.2", 8, event_type=None), True),
    # a retinocytoma (retinoma) is benign and found at any age
    ("retinocytoma-at-9", _diagnosis("retinocytoma-at-9", "9510/0", "C69.2", 9), False),
    # a relapse is dated when it happens, years after the diagnosis at 2
    ("relapse-at-7", _diagnosis("relapse-at-7", "9510/3", "C69.6", 7, event_type="relapse"), False),
]


@pytest.mark.parametrize("case", RETINOBLASTOMA, ids=lambda case: case[0])
def test_retinoblastoma_age_flags_a_late_first_diagnosis_only(case):
    _judged("XT-RETINOBLASTOMA-AGE", [case])


ADULT_CARCINOMA = [
    ("colon-adenocarcinoma-at-15", _diagnosis("colon-adenocarcinoma-at-15", "8140/3", "C18.7", 15), True),
    ("lung-squamous-at-17", _diagnosis("lung-squamous-at-17", "8070/3", "C34.1", 17), True),
    ("breast-dcis-at-17", _diagnosis("breast-dcis-at-17", "8500/2", "C50.4", 17), True),
    ("colon-adenocarcinoma-at-20", _diagnosis("colon-adenocarcinoma-at-20", "8140/3", "C18.7", 20), False),
    # benign polyps and adenomas of children (juvenile polyposis, FAP) are no carcinoma
    ("colon-adenoma-at-12", _diagnosis("colon-adenoma-at-12", "8140/0", "C18.7", 12), False),
    ("polyposis-at-14", _diagnosis("polyposis-at-14", "8220/0", "C18.9", 14), False),
    # the childhood tumours of these organs: appendiceal and bronchial neuroendocrine tumours,
    # solid pseudopapillary neoplasm of the pancreas (adolescent girls)
    ("appendix-net-at-12", _diagnosis("appendix-net-at-12", "8240/3", "C18.1", 12), False),
    ("bronchial-carcinoid-at-16", _diagnosis("bronchial-carcinoid-at-16", "8240/3", "C34.0", 16), False),
    ("pancreas-spn-at-14", _diagnosis("pancreas-spn-at-14", "8452/3", "C25.1", 14), False),
]


@pytest.mark.parametrize("case", ADULT_CARCINOMA, ids=lambda case: case[0])
def test_adult_carcinoma_age_flags_adult_type_carcinomas_only(case):
    _judged("XT-ADULT-CARCINOMA-AGE", [case])



def _basis(key: str, morphology: str, topography: str | None, basis: str,
           flagged: bool = False) -> tuple[str, dict[str, Any], bool]:
    return key, _diagnosis(key, morphology, topography, 3, basis_of_diagnosis=basis), flagged


BASIS = [  # basis 0 death certificate, 1 clinical, 2 clinical investigation (imaging), 7 histology of the primary
    _basis("medulloblastoma-on-imaging", "9470/3", "C71.6", "2", flagged=True),
    _basis("neuroblastoma-clinical", "9500/3", "C74.9", "1", flagged=True),
    _basis("cerebral-glioma-on-imaging", "9380/3", "C71.0", "2", flagged=True),
    _basis("retinoblastoma-death-certificate", "9510/3", "C69.2", "0", flagged=True),
    _basis("neuroblastoma-histology", "9500/3", "C74.9", "7"),
    _basis("unspecified-on-imaging", "8000/3", "C71.9", "2"),
    # diagnosed without tissue as the standard of care: a retinoblastoma is not biopsied (the needle
    # seeds the tumour out of the eye), a diffuse pontine or optic pathway glioma is diagnosed on MRI
    _basis("retinoblastoma-on-fundoscopy", "9510/3", "C69.2", "1"),
    _basis("retinoblastoma-on-imaging", "9511/3", "C69.2", "2"),
    _basis("dipg-on-imaging", "9380/3", "C71.7", "2"),
    _basis("diffuse-midline-glioma-on-imaging", "9385/3", "C71.7", "2"),
    _basis("optic-pathway-glioma-on-imaging", "9380/3", "C72.3", "2"),
    _basis("glioma-without-site-on-imaging", "9380/3", None, "2", flagged=True),
]


@pytest.mark.parametrize("case", BASIS, ids=lambda case: case[0])
def test_basis_vs_morphology_spares_the_tumours_diagnosed_without_tissue(case):
    _judged("XT-BASIS-VS-MORPHOLOGY", [case])


SEX_SITE = [  # (sex, topography, flagged): C51-C58 female genital organs, C60-C63 male genital organs
    ("male", "C56.9", True), ("male", "C51.0", True), ("male", "C58.9", True),
    ("female", "C62.9", True), ("female", "C60.0", True), ("female", "C63.7", True),
    ("female", "C56.9", False), ("male", "C62.1", False), ("male", "C63.7", False),
    ("male", "C50.9", False), ("female", "C64.9", False), ("male", "C49.5", False),
    ("undetermined", "C56.9", False), ("unknown", "C62.9", False),
]


def test_sex_site_flags_a_genital_organ_of_the_other_sex():
    cases = [(f"{sex}-{site}", _diagnosis(f"{sex}-{site}", "8910/3", site, 3), flagged)
             for sex, site, flagged in SEX_SITE]
    registrations = [{"source_id": "any", "patient_id": row["patient_id"], "sex": sex,
                      "source_patient_pseudonym": row["patient_id"], "source_file_sha256": "0" * 64,
                      "source_record_key": row["patient_id"], "run_id": "r"}
                     for (sex, _, _), (_, row, _) in zip(SEX_SITE, cases, strict=True)]
    _judged("XT-SEX-SITE", cases, {"patient_source": registrations})
