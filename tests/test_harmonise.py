"""The mapping engine on three-row inline record sets."""

from datetime import date
from functools import partial

import pandas as pd
import pytest
from read_records import records_of

from etl.transform.harmonise import HarmoniseError, harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey, publish_record_key

KEY = PseudonymKey(b"k")
MAPPING = SourceMapping.model_validate({
    "source_id": "reg_test",
    "title": "test registry",
    "format": "csv",
    "files": "*.csv",
    "record_set": "REG",
    "date_format": "%d/%m/%Y",
    "unknown_date_parts": ["00"],
    "null_values": ["", "99/99/9999"],
    "decimal": ",",
    "patient_key": "pid",
    "record_key": "REG[{rid}]",
    "patient": {"from": "REG", "fields": {
        "sex": {"column": "sex", "codes": {"1": "male", "2": "female"}},
        "birth_date": {"column": "born", "type": "date"},
        "country": {"const": "IT"},
    }},
    "tables": {
        "diagnosis": {"from": "REG", "fields": {
            "diagnosis_date": {"column": "diag", "type": "date", "required": True},
            "age_at_diagnosis_days": {"age_at": "diagnosis_date"},
            "icdo3_morphology": {"column": "morph", "type": "icdo3_histology"},
            "icdo3_behaviour": {"column": "morph", "type": "icdo3_behaviour"},
            "icdo3_topography": {"column": "topo", "type": "icdo3_topography"},
            "tumour_size_mm": {"column": "size", "type": "decimal", "scale": 10},
        }},
    },
})


_frame = partial(records_of, file_name="reg.csv")


CLEAN = {"rid": "1", "pid": "P1", "sex": "2", "born": "00/05/2010", "diag": "17/03/2015",
         "morph": "8370/3", "topo": "C740", "size": "4,5"}


def test_a_clean_record_is_harmonised_and_pseudonymised():
    result = harmonise_source(MAPPING, {"REG": _frame([CLEAN])}, KEY, "run-1")
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert diagnosis["diagnosis_date"] == date(2015, 3, 17)
    assert diagnosis["diagnosis_date_precision"] == "day"
    assert diagnosis["age_at_diagnosis_days"] == (date(2015, 3, 17) - date(2010, 5, 15)).days
    assert (diagnosis["icdo3_morphology"], diagnosis["icdo3_behaviour"]) == ("8370", "3")
    assert diagnosis["icdo3_topography"] == "C74.0"
    assert diagnosis["tumour_size_mm"] == 45.0
    assert diagnosis["iccc3_group"] == "XI" and bool(diagnosis["is_very_rare"])
    assert diagnosis["source_record_key"] == publish_record_key(KEY, "reg_test", "P1|REG[1]")
    assert "P1" not in diagnosis["patient_id"] + diagnosis["source_record_key"]
    patient = result.tables["patient_source"].iloc[0]
    assert (patient["sex"], patient["birth_year"], patient["birth_month"], patient["country"]) == (
        "female", 2010, 5, "IT")
    assert "birth_date" not in result.tables["patient_source"].columns
    assert result.rejections.empty
    assert result.records.iloc[0]["centre_id"] is None or isinstance(result.records.iloc[0]["centre_id"], str)
    assert result.file_counts == {"f" * 64: {"rows_read": 1, "rows_loaded": 1, "rows_quarantined": 0}}


def test_values_that_cannot_be_harmonised_quarantine_the_whole_record_with_every_reason():
    bad = {**CLEAN, "rid": "2", "pid": "P2", "sex": "7", "diag": "31/02/2015", "born": "31/02/2010"}
    result = harmonise_source(MAPPING, {"REG": _frame([CLEAN, bad])}, KEY, "run-1")
    assert len(result.tables["diagnosis"]) == 1 and len(result.tables["patient_source"]) == 1
    held = result.records[result.records.source_record_key.isin(result.rejections.source_record_key)].iloc[0]
    assert held["line"] == 3 and held["record_set"] == "REG"
    assert held["target_tables"] == ["diagnosis", "patient_source"]
    assert set(result.rejections.rule_id) == {"CONF-CODE-IN-LIST", "CONF-DATE-VALID"}
    assert "31/02/2010" not in set(result.rejections.value)  # shown as <hidden>
    reasons = " | ".join(result.rejections.message)
    assert "sex (sex): code '7' is not in the code list (1, 2)" in reasons
    assert "diagnosis_date (diag): '31/02/2015' is not a real date (expected dd/mm/yyyy)" in reasons
    assert "birth_date (born): '<hidden>' is not a real date" in reasons
    assert "31/02/2010" not in reasons  # a birth date is never echoed, even a broken one
    assert result.file_counts["f" * 64] == {"rows_read": 2, "rows_loaded": 1, "rows_quarantined": 1}


def test_sentinels_are_null_but_a_required_empty_field_is_not_accepted():
    rows = [{**CLEAN, "size": "", "born": "99/99/9999"}, {**CLEAN, "rid": "2", "pid": "P2", "diag": "99/99/9999"}]
    result = harmonise_source(MAPPING, {"REG": _frame(rows)}, KEY, "run-1")
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert diagnosis["tumour_size_mm"] is None and diagnosis["age_at_diagnosis_days"] is None
    assert result.rejections.message.tolist() == ["diagnosis_date (diag): required but empty"]
    assert result.rejections.rule_id.tolist() == ["CONF-REQUIRED-PRESENT"]


def test_a_repeated_record_key_is_quarantined_as_a_duplicate():
    result = harmonise_source(MAPPING, {"REG": _frame([CLEAN, CLEAN])}, KEY, "run-1")
    assert len(result.tables["diagnosis"]) == 1
    duplicate = result.rejections.iloc[0]
    assert duplicate["rule_id"] == "CONF-KEY-UNIQUE" and duplicate["message"].startswith("duplicate: record key ")
    assert "already read at line 2" in duplicate["message"]
    assert duplicate["source_record_key"].endswith("#2")  # the second copy, distinct from the loaded first


def test_a_record_repeated_with_its_patient_number_in_another_case_is_the_same_record():
    """One patient, one pseudonym, one published key: the copy keyed `p1` is a duplicate of the record keyed `P1`,
    never a second row holding the same key (core's key then failed the whole night's publish)."""
    result = harmonise_source(MAPPING, {"REG": _frame([CLEAN, {**CLEAN, "pid": CLEAN["pid"].lower()}])}, KEY, "run-1")
    assert len(result.tables["diagnosis"]) == len(result.tables["patient_source"]) == 1
    assert result.rejections.rule_id.tolist() == ["CONF-KEY-UNIQUE"]
    assert result.rejections.source_record_key.iloc[0] == f"{result.tables['diagnosis'].source_record_key.iloc[0]}#2"


def test_a_patient_s_record_giving_another_sex_or_birth_date_than_their_first_is_held_back():
    """A hunt: a registry's second row of a patient (a second tumour) born six years earlier, or of another sex, was
    loaded; the patient's demographics were silently the first row's and its ages counted from a birth it does not
    give. A birth date known to the month agrees with a day in it; one left empty agrees with any."""
    rows = [CLEAN,  # born "00/05/2010": May 2010
            {**CLEAN, "rid": "2", "born": "17/05/2010"},  # within May 2010: agrees
            {**CLEAN, "rid": "3", "born": ""},  # not given
            {**CLEAN, "rid": "4", "born": "27/03/2004"},
            {**CLEAN, "rid": "5", "sex": "1"}]
    result = harmonise_source(MAPPING, {"REG": _frame(rows)}, KEY, "run-1")
    assert len(result.tables["diagnosis"]) == 3 and len(result.tables["patient_source"]) == 1
    held = result.rejections.sort_values("source_record_key")
    assert held.rule_id.tolist() == ["CONF-PATIENT-AGREES"] * 2
    first = result.tables["patient_source"].source_record_key.iloc[0]
    assert held.message.tolist() == [
        f"birth_date (born): not the birth date the patient's record {first} gives (both hidden); expected the "
        "patient's records to agree",
        f"sex (sex): 'male', where the patient's record {first} gives 'female'; expected the patient's records to "
        "agree"]
    assert "2004" not in " ".join(held.value.astype(str))
    assert result.file_counts["f" * 64] == {"rows_read": 5, "rows_loaded": 3, "rows_quarantined": 2}


def test_an_eupid_that_is_no_one_s_links_no_one_and_is_told():
    fields = MAPPING.model_dump(by_alias=True, exclude_none=True)
    fields["patient"]["fields"]["eupid"] = {"column": "eupid"}
    rows = [{**CLEAN, "eupid": "NK"}, {**CLEAN, "rid": "2", "pid": "P2", "eupid": "EU00000000"},
            {**CLEAN, "rid": "3", "pid": "P3", "eupid": "EU7F3K9Q2M"}]
    result = harmonise_source(SourceMapping.model_validate(fields), {"REG": _frame(rows)}, KEY, "run-1")
    assert result.tables["patient_source"].link_method.tolist() == ["unlinked", "unlinked", "eupid"]
    assert result.notices == ["reg_test: 2 patient record(s) give an EUPID that is no one's (fewer than 8 letters "
                              "and digits, or one symbol repeated: a 'not known' such as NK or EU00000000; not "
                              "shown): linked without it (list the source's code under null_values)"]


def test_a_record_set_nobody_maps_is_quarantined_not_lost():
    result = harmonise_source(MAPPING, {"REG": _frame([CLEAN]), "NEWFORM": _frame([CLEAN])}, KEY, "run-1")
    assert result.rejections.message.tolist() == [
        "record set NEWFORM is not mapped in sources/reg_test.yaml (map it under tables:, or list it under ignore:)"]
    assert result.rejections.rule_id.tolist() == ["CONF-FORM-MAPPED"]


def test_a_missing_mapped_column_fails_the_source_with_the_file_and_column():
    frame = _frame([CLEAN]).drop(columns=["topo"])
    with pytest.raises(HarmoniseError, match=r"^reg.csv \(record set REG\) has no column topo"):
        harmonise_source(MAPPING, {"REG": frame}, KEY, "run-1")  # the source's name is said once, before it


def _with(**changes: object) -> SourceMapping:
    return SourceMapping.model_validate({**MAPPING.model_dump(by_alias=True, exclude_none=True), **changes})


def test_an_ignored_record_set_is_neither_loaded_nor_quarantined_and_its_rows_are_counted_in_a_notice():
    mapping = _with(ignore=["AUD*"])
    audit = _frame([CLEAN, {**CLEAN, "rid": "2"}]).assign(source_file="audit.csv")
    result = harmonise_source(mapping, {"REG": _frame([CLEAN]), "AUDIT": audit}, KEY, "run-1")
    assert result.rejections.empty and set(result.records.record_set) == {"REG"}
    assert result.notices == ["reg_test: record set AUDIT ignored (ignore: in sources/reg_test.yaml): "
                              "2 records not loaded (audit.csv: 2)"]


def test_several_date_formats_are_tried_in_order_with_their_precision():
    mapping = _with(date_format=["%d/%m/%Y", "%m/%Y", "%Y"], unknown_date_parts=["00", "UK", "99"])
    rows = [{**CLEAN, "rid": str(i), "pid": f"P{i}", "diag": diag}
            for i, diag in enumerate(["17/03/2015", "03/2015", "2015", "UK/03/2015", "99/99/2015"], 1)]
    result = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1")
    diagnosis = result.tables["diagnosis"].sort_values("diagnosis_date_precision")
    assert sorted(zip(diagnosis.diagnosis_date, diagnosis.diagnosis_date_precision)) == [
        (date(2015, 1, 1), "year"), (date(2015, 1, 1), "year"), (date(2015, 3, 1), "month"),
        (date(2015, 3, 1), "month"), (date(2015, 3, 17), "day")]
    bad = harmonise_source(mapping, {"REG": _frame([{**CLEAN, "diag": "2015/03/17"}])}, KEY, "run-1")
    assert bad.rejections.message.tolist() == [
        "diagnosis_date (diag): '2015/03/17' is not a date written dd/mm/yyyy, mm/yyyy or yyyy"]


def test_a_record_set_can_have_its_own_record_key_template():
    mapping = _with(record_keys={"REG": "DIAG[{rid}]/{morph}"})
    result = harmonise_source(mapping, {"REG": _frame([CLEAN])}, KEY, "run-1")
    assert result.tables["diagnosis"].iloc[0]["source_record_key"] == publish_record_key(
        KEY, "reg_test", "P1|DIAG[1]/8370/3")


ODM_KEYS = {"_subject_key": "S1", "_site_oid": "SITE1", "_study_event_oid": "SE.BASE", "_study_event_repeat_key": "1",
            "_form_oid": "F.DIAG", "_form_repeat_key": "1"}


def _odm(group: str, rows: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame([{**ODM_KEYS, "_item_group_oid": group, "_item_group_repeat_key": "1", **r} for r in rows])
    frame["_line"] = range(10, 10 + len(frame))
    frame["source_file"] = "odm.xml"
    frame["source_file_sha256"] = "e" * 64
    return frame


SECTIONS = SourceMapping.model_validate({
    "source_id": "redcap_test", "title": "sections", "format": "odm", "files": "*.xml",
    "patient": {"from": "IG.DEMO", "fields": {"sex": {"column": "SEX", "codes": {"1": "male", "2": "female"}}}},
    "tables": {"diagnosis": {"from": ["IG.DIAG_A", "IG.DIAG_B"], "fields": {
        "diagnosis_date": {"column": "DIAGDAT", "type": "date", "required": True},
        "icdo3_morphology": {"column": "MORPH", "type": "icdo3_histology"},
        "icdo3_topography": {"column": "TOPO", "type": "icdo3_topography"}}}},
})


def test_sections_of_one_form_are_joined_into_one_record_keeping_the_first_sections_key():
    demo = _odm("IG.DEMO", [{"SEX": "1"}, {"_subject_key": "S2", "SEX": "2"}])
    first = _odm("IG.DIAG_A", [{"DIAGDAT": "2019-05-02"}, {"_subject_key": "S2", "DIAGDAT": "2020-01-03"}])
    second = _odm("IG.DIAG_B", [{"MORPH": "8825/1", "TOPO": "C49.9"},  # S2 has no second section: empty columns
                                {"_subject_key": "S3", "MORPH": "9500/3"}])  # no first section: held back
    result = harmonise_source(SECTIONS, {"IG.DEMO": demo, "IG.DIAG_A": first, "IG.DIAG_B": second}, KEY, "run-1")
    diagnosis = result.tables["diagnosis"].set_index("diagnosis_date")
    assert diagnosis.loc[date(2019, 5, 2), ["icdo3_morphology", "icdo3_topography"]].tolist() == ["8825", "C49.9"]
    assert diagnosis.loc[date(2020, 1, 3), "icdo3_morphology"] is None
    assert diagnosis.loc[date(2019, 5, 2), "source_record_key"] == publish_record_key(
        KEY, "redcap_test", "S1|SE.BASE[1]/F.DIAG[1]/IG.DIAG_A[1]")
    assert result.rejections.rule_id.tolist() == ["CONF-SECTION-JOINED"]
    assert "section IG.DIAG_B has no IG.DIAG_A record with the same _subject_key" in result.rejections.message[0]
    # Every row is accounted for: 2 + 2 head and joined rows loaded, the lonely section quarantined.
    assert result.file_counts == {"e" * 64: {"rows_read": 6, "rows_loaded": 5, "rows_quarantined": 1}}


def test_tabular_sections_join_on_the_given_columns_and_a_column_in_both_is_refused():
    mapping = _with(tables={"diagnosis": {"from": ["REG", "PATH"], "join_on": ["pid", "rid"], "fields": {
        "diagnosis_date": {"column": "diag", "type": "date"},
        "icdo3_morphology": {"column": "morph", "type": "icdo3_histology"}}}})
    reg = _frame([{k: v for k, v in CLEAN.items() if k != "morph"}])
    path = _frame([{"pid": "P1", "rid": "1", "morph": "8370/3"}]).assign(source_file="path.csv",
                                                                         source_file_sha256="a" * 64)
    result = harmonise_source(mapping, {"REG": reg, "PATH": path}, KEY, "run-1")
    assert result.tables["diagnosis"].iloc[0]["icdo3_morphology"] == "8370"
    assert result.file_counts["a" * 64] == {"rows_read": 1, "rows_loaded": 1, "rows_quarantined": 0}
    with pytest.raises(HarmoniseError, match=r"PATH and REG both have column\(s\) sex"):
        harmonise_source(mapping, {"REG": reg, "PATH": path.assign(sex="1")}, KEY, "run-1")


def test_records_without_a_centre_column_take_their_patients_centre():
    # SDTM-like: the site is on the demographics record only; adverse events are routed by the patient.
    mapping = SourceMapping.model_validate({
        "source_id": "trial_test", "title": "trial", "format": "csv", "files": "*.csv",
        "record_set_from_file": r"(?P<record_set>[A-Z]+)\.csv", "date_format": "%Y-%m-%d",
        "patient_key": "USUBJID", "record_key": "{record_set}[{SEQ}]",
        "patient": {"from": "DM", "fields": {"centre_id": {"column": "SITEID", "case": "upper"}}},
        "tables": {"adverse_event": {"from": "AE", "fields": {"term": {"column": "AETERM"}}}},
    })
    demographics = _frame([{"USUBJID": "T-1", "SEQ": "1", "SITEID": "fr-01"}])
    events = _frame([{"USUBJID": "T-1", "SEQ": "1", "AETERM": "nausea"},
                     {"USUBJID": "T-9", "SEQ": "1", "AETERM": "fever"}])
    records = harmonise_source(mapping, {"DM": demographics, "AE": events}, KEY, "run-1").records
    centres = dict(zip(records.record_set + "/" + records.line.astype(str), records.centre_id))
    assert centres == {"DM/2": "FR-01", "AE/2": "FR-01", "AE/3": None}  # T-9 has no demographics record


_DUMPED = MAPPING.model_dump(by_alias=True, exclude_none=True)
NOTED = SourceMapping.model_validate({**_DUMPED, "tables": {**_DUMPED["tables"], "treatment": {
    "from": "REG", "fields": {"drug_name": {"column": "note"}, "start_date": {"column": "diag", "type": "date"}}}}})


def test_the_patient_s_own_number_never_leaves_harmonise_in_a_value_a_message_or_a_record_key():
    rows = [CLEAN | {"pid": "TREP-0007", "rid": "trep-0007-1", "note": "see file of TREP-0007"},
            CLEAN | {"pid": "TREP-0008", "rid": "8", "sex": "TREP-0008", "note": "ok"},
            CLEAN | {"pid": "07|0009", "rid": "9", "note": "ok"},
            CLEAN | {"pid": "P10", "rid": "10", "born": "03/04/2009", "diag": "2009-04-03T", "note": "ok"}]
    result = harmonise_source(NOTED, {"REG": _frame(rows)}, KEY, "run-1")
    shown = " ".join(str(v) for frame in [result.records, result.rejections, *result.tables.values()]
                     for v in frame.astype(str).to_numpy().ravel())
    assert "TREP-0007" not in shown.upper() and "TREP-0008" not in shown.upper()
    assert "07|0009" not in shown and "|0009" not in shown
    assert "2009-04-03" not in shown  # the birth date typed into the diagnosis date: refused, not echoed
    noted = result.rejections[result.rejections.rule_id == "CONF-TEXT-NO-PATIENT-KEY"]
    assert noted.value.tolist() == ["<hidden>"] and "holds the patient's own number" in noted.message.iloc[0]
    coded = result.rejections[result.rejections.rule_id == "CONF-CODE-IN-LIST"]
    assert coded.value.tolist() == ["<hidden>"]  # a code field holding the number: refused, not echoed
    keys = set(result.records.source_record_key)
    assert any(k.endswith("|REG[" + k.split("|")[0] + "-1]") for k in keys)  # the number, replaced by the pseudonym
    assert any(k.endswith("|REG[9]") for k in keys)  # a key with "|": pseudonymised whole


def test_a_code_list_translates_and_the_declared_type_then_reads_the_translated_value():
    # A registry writing its own diagnosis codes: NB01 is neuroblastoma, ICD-O-3 9500/3.
    mapping = _with(tables={"diagnosis": {"from": "REG", "fields": {
        "diagnosis_date": {"column": "diag", "type": "date", "codes": {"NEU": "17/03/2015"}},
        "icdo3_morphology": {"column": "morph", "type": "icdo3_histology", "codes": {"NB01": "9500/3"}},
        "icdo3_behaviour": {"column": "morph", "type": "icdo3_behaviour", "codes": {"NB01": "9500/3"}},
        "icdo3_topography": {"column": "topo", "type": "icdo3_topography", "codes": {"ADR": "C740"}},
        "tumour_size_mm": {"column": "size", "type": "decimal", "scale": 10, "codes": {"GROSS": "4,5", "KLEIN": 1}},
        # a text field's code list gives the harmonised value as written: `case` is for text read as written
        "event_type": {"column": "sex", "codes": {"1": "initial", "2": "initial"}, "case": "upper"}}}})
    rows = [{**CLEAN, "diag": "NEU", "morph": "NB01", "topo": "ADR", "size": "GROSS"},
            {**CLEAN, "rid": "2", "diag": "NEU", "morph": "NB01", "topo": "ADR", "size": "klein"}]
    result = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1")
    assert result.rejections.empty
    diagnosis = result.tables["diagnosis"].iloc[0]
    assert (diagnosis["icdo3_morphology"], diagnosis["icdo3_behaviour"]) == ("9500", "3")
    assert diagnosis["icdo3_topography"] == "C74.0" and diagnosis["event_type"] == "initial"
    assert diagnosis["diagnosis_date"] == date(2015, 3, 17)
    assert result.tables["diagnosis"].tumour_size_mm.tolist() == [45.0, 10.0]


@pytest.mark.parametrize("given", [{"options": {"decimal": ","}}, {"csv": {"decimal": ","}}, {"decimal": ","},
                                   {"options": {"decimal": ","}, "decimal": ","}])
def test_the_decimal_mark_is_read_from_options_csv_or_decimal(given):
    plain = {k: v for k, v in MAPPING.model_dump(by_alias=True, exclude_none=True).items() if k != "decimal"}
    mapping = SourceMapping.model_validate({**plain, **given})
    result = harmonise_source(mapping, {"REG": _frame([CLEAN])}, KEY, "run-1")
    assert result.rejections.empty and result.tables["diagnosis"].iloc[0]["tumour_size_mm"] == 45.0


def test_two_different_decimal_marks_are_refused():
    with pytest.raises(ValueError, match=r"decimal: '\.' but the reader's options give decimal ','"):
        _with(decimal=".", options={"decimal": ","})


def test_a_point_reads_as_the_number_a_reader_typed_and_a_thousands_group_in_text_is_refused():
    # A decimal-comma source: "1.200" written as text is more likely 1200 than 1.2; an Excel number
    # cell reaches harmonise written with a point (1.234 is a number, whatever its shape).
    rows = [{**CLEAN, "size": "67.5"}, {**CLEAN, "rid": "2", "size": "1.234"}]
    text = harmonise_source(MAPPING, {"REG": _frame(rows)}, KEY, "run-1")
    assert text.tables["diagnosis"].tumour_size_mm.tolist() == [675.0]  # cm, scale 10
    assert "'1.234' is not a number written with decimal mark ','" in " ".join(text.rejections["message"])
    workbook = harmonise_source(_with(format="excel", files="*.xlsx", options={}), {"REG": _frame(rows)}, KEY,
                                "run-1")
    assert workbook.rejections.empty and workbook.tables["diagnosis"].tumour_size_mm.tolist() == [675.0, 12.34]


WIDE = _with(tables={
    "treatment": {"from": "REG", "repeat": [1, 2, 3], "fields": {
        "drug_name": {"column": "chemo{repeat}_drug", "case": "lower"},
        "start_date": {"column": "chemo{repeat}_start", "type": "date"},
        "access_route": {"const": "standard"}}},
    "response_assessment": {"from": "REG", "repeat": [1, 2, 3], "fields": {
        "response": {"column": "chemo{repeat}_resp"},
        "treatment_id": {"ref": "treatment", "key": "REG[{rid}]/{repeat}"}}},
})


def _chemo(rid: str, pid: str, *groups: tuple[str, str, str]) -> dict[str, str]:
    """A wide case row: three chemotherapy column groups (drug, start, response), empty when not given."""
    row = {**CLEAN, "rid": rid, "pid": pid}
    for n, (drug, start, response) in enumerate([*groups, *[("", "", "")] * (3 - len(groups))], start=1):
        row.update({f"chemo{n}_drug": drug, f"chemo{n}_start": start, f"chemo{n}_resp": response})
    return row


def test_a_wide_record_gives_a_row_per_column_group_that_is_not_empty():
    rows = [_chemo("1", "P1", ("Vincristine", "01/04/2015", "PR"), ("IRINOTECAN", "00/09/2015", "")),
            _chemo("2", "P2")]
    result = harmonise_source(WIDE, {"REG": _frame(rows)}, KEY, "run-1")
    assert result.rejections.empty
    treatment = result.tables["treatment"]
    assert treatment[["drug_name", "start_date", "start_date_precision", "access_route"]].values.tolist() == [
        ["vincristine", date(2015, 4, 1), "day", "standard"], ["irinotecan", date(2015, 9, 1), "month", "standard"]]
    # One record: both rows carry its key; each row has an id of its own, which a ref of its group finds.
    assert set(treatment.source_record_key) == {publish_record_key(KEY, "reg_test", "P1|REG[1]")}
    assert treatment.treatment_id.nunique() == 2
    response = result.tables["response_assessment"]
    assert response[["response", "treatment_id"]].values.tolist() == [["PR", treatment.treatment_id[0]]]
    assert result.records.target_tables.map(list).tolist() == [
        ["patient_source", "response_assessment", "treatment"], ["patient_source"]]
    assert result.file_counts["f" * 64] == {"rows_read": 2, "rows_loaded": 2, "rows_quarantined": 0}


def test_a_value_no_group_can_read_quarantines_the_whole_record_naming_the_group_s_column():
    rows = [_chemo("1", "P1", ("vincristine", "01/04/2015", "PR"), ("irinotecan", "31/02/2015", "SD"))]
    result = harmonise_source(WIDE, {"REG": _frame(rows)}, KEY, "run-1")
    assert all(result.tables[t].empty for t in ("treatment", "response_assessment", "patient_source"))
    (reason,) = result.rejections.message
    assert reason.startswith("start_date (chemo2_start): ")
    assert result.file_counts["f" * 64]["rows_quarantined"] == 1


@pytest.mark.parametrize(("repeat", "fields", "message"), [
    ([], {"drug_name": {"column": "chemo{repeat}_drug"}}, "give at least one column group"),
    ([1, 1], {"drug_name": {"column": "chemo{repeat}_drug"}}, "a group is listed twice"),
    (["a/b"], {"drug_name": {"column": "chemo{repeat}_drug"}}, "'a/b' is not a group name"),
    ([1, 2], {"drug_name": {"column": "chemo_drug"}}, "no field reads a column of the group"),
])
def test_a_repeat_that_cannot_work_is_refused(repeat, fields, message):
    with pytest.raises(ValueError, match=message):
        _with(tables={"treatment": {"from": "REG", "repeat": repeat, "fields": fields}})


def test_a_where_naming_a_column_group_is_refused_it_judges_the_whole_record():
    # It read no column ('chemo{repeat}_type' is none), so it kept no record: the table was silently empty.
    with pytest.raises(ValueError, match="names a column group, but where: keeps or drops the whole record"):
        _with(tables={"treatment": {"from": "REG", "repeat": [1, 2], "where": {"chemo{repeat}_type": ["chemo"]},
                                    "fields": {"drug_name": {"column": "chemo{repeat}_drug"}}}})


def test_a_gene_symbol_takes_hgnc_s_case_with_its_open_reading_frame_in_lower_case():
    mapping = _with(tables={"molecular_alteration": {"from": "REG", "fields": {
        "gene_symbol": {"column": "gene", "case": "gene"}, "partner_gene": {"column": "partner", "case": "gene"}}}})
    rows = [{**CLEAN, "gene": "c11ORF95", "partner": "rela"}, {**CLEAN, "rid": "2", "gene": "eml4", "partner": "Alk"}]
    found = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1").tables["molecular_alteration"]
    assert found[["gene_symbol", "partner_gene"]].values.tolist() == [["C11orf95", "RELA"], ["EML4", "ALK"]]


@pytest.mark.parametrize(("written", "read"), [("Y", True), ("no", False), ("WAHR", True), ("falsch", False),
                                               (" Vrai ", True), ("FALSO", False), ("onwaar", False)])
def test_a_yes_no_field_reads_a_spreadsheet_s_true_and_false_in_its_language(written, read):
    # A German registry's Excel saved as CSV writes its TRUE as WAHR.
    mapping = _with(tables={"adverse_event": {"from": "REG", "fields": {"is_serious": {"column": "serious",
                                                                                       "type": "boolean"}}}})
    result = harmonise_source(mapping, {"REG": _frame([{**CLEAN, "serious": written}])}, KEY, "run-1")
    assert result.rejections.empty
    assert result.tables["adverse_event"]["is_serious"].tolist() == [read]


def test_a_yes_no_field_refuses_a_word_of_no_spreadsheet_naming_what_it_reads():
    mapping = _with(tables={"adverse_event": {"from": "REG", "fields": {"is_serious": {"column": "serious",
                                                                                       "type": "boolean"}}}})
    result = harmonise_source(mapping, {"REG": _frame([{**CLEAN, "serious": "ja"}])}, KEY, "run-1")
    assert result.tables["adverse_event"].empty
    assert "'ja' is not yes/no (expected one of Y, N, yes, no, true, false, 1, 0, or a spreadsheet's TRUE/FALSE" \
        in " ".join(result.rejections.message)


def test_where_keeps_the_records_whose_value_is_listed_as_a_code_list_matches_codes():
    """A hunt: `off_label` was not OFF_LABEL, and its record fed no table, counted loaded with no issue."""
    mapping = _with(tables={"treatment": {"from": "REG", "where": {"route": ["OFF_LABEL"]},
                                          "fields": {"drug_name": {"column": "drug"}}}})
    rows = [{**CLEAN, "rid": rid, "route": route, "drug": f"drug {rid}"}
            for rid, route in (("1", "OFF_LABEL"), ("2", "off_label"), ("3", " Off_Label "), ("4", "STANDARD"))]
    found = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1").tables["treatment"]
    assert sorted(found.drug_name) == ["drug 1", "drug 2", "drug 3"]


def test_a_required_field_whose_code_stands_for_no_value_is_quarantined_as_an_empty_one():
    """A hunt: `9` (unknown) mapped to null loaded NULL where an empty cell was quarantined."""
    mapping = _with(patient={"from": "REG", "fields": {
        "sex": {"column": "sex", "required": True, "codes": {"1": "male", "2": "female", "9": None}},
        "birth_date": {"column": "born", "type": "date"}}})
    result = harmonise_source(mapping, {"REG": _frame([CLEAN, {**CLEAN, "rid": "2", "pid": "P2", "sex": "9"}])},
                              KEY, "run-1")
    assert len(result.tables["patient_source"]) == 1
    (reason,) = result.rejections.itertuples()
    assert (reason.rule_id, reason.field) == ("CONF-REQUIRED-PRESENT", "sex")
    assert reason.message == "sex (sex): required, but its code '9' stands for no value"



def test_a_first_of_alternative_whose_code_stands_for_no_value_gives_way_to_the_next():
    """A review: `9` (unknown) in the first alternative loaded NULL though the second gave the value."""
    def sex(required: bool) -> SourceMapping:
        return _with(patient={"from": "REG", "fields": {
            "sex": {"required": required, "first_of": [
                {"column": "sex", "codes": {"1": "male", "2": "female", "9": None}},
                {"column": "sex2", "codes": {"M": "male", "F": "female", "U": None}}]},
            "birth_date": {"column": "born", "type": "date"}}})

    rows = [{**CLEAN, "rid": "1", "pid": "P1", "sex": "9", "sex2": "F"},
            {**CLEAN, "rid": "2", "pid": "P2", "sex": "9", "sex2": ""},
            {**CLEAN, "rid": "3", "pid": "P3", "sex": "2", "sex2": "M"}]
    result = harmonise_source(sex(True), {"REG": _frame(rows)}, KEY, "run-1")
    assert sorted(result.tables["patient_source"].sex) == ["female", "female"]
    (reason,) = result.rejections.itertuples()
    assert (reason.rule_id, reason.field) == ("CONF-REQUIRED-PRESENT", "sex")
    assert reason.message == "sex (first_of.0: sex): required, but its code '9' stands for no value"
    loaded = harmonise_source(sex(False), {"REG": _frame([*rows, {**CLEAN, "rid": "4", "pid": "P4", "sex": "9",
                                                                    "sex2": "U"}])}, KEY, "run-1")
    assert loaded.rejections.empty
    assert loaded.tables["patient_source"].sex.tolist() == ["female", None, "female", None]
