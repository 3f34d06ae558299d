"""A record key naming no column: one record set's, a record per patient. A registry whose one record set is
named by its export format (the .sav's RETI_ES_export, the workbook's sheet Pacientes) keyed its records by
`{record_set}`, the only key the mapping accepted without a record number; the format change gave every record
a new key, its open issues counted resolved and found again and its queries sent again. The onboarding page's
whole walk through a format change, keys kept, is tests/test_onboarding_journey.py's."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import yaml
from read_records import records_of

from etl.transform.harmonise import harmonise_source
from etl.transform.mapping import MappingError, load_mapping
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"k")


def _source(tmp_path: Path, record_set: str, **keys: object) -> Path:
    path = tmp_path / "registry_es.yaml"
    path.write_text(yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": "csv", "files": "*.csv", "record_set": record_set,
        "patient_key": "id_paciente", "record_key": "{record_set}", **keys,
        "patient": {"from": record_set, "fields": {"sex": {"column": "sexo"}}},
        "tables": {"follow_up": {"from": record_set, "fields": {"contact_date": {"column": "fecha", "type": "date"}}}},
    }))
    return path


_frame = partial(records_of, file_name="export")


ROWS = [{"id_paciente": f"28{i:04d}", "sexo": "M", "fecha": "2019-03-01"} for i in range(3)]


def test_a_record_set_keyed_by_the_former_record_set_s_name_keeps_every_record_s_key(tmp_path):
    before = harmonise_source(load_mapping(_source(tmp_path, "RETI_ES_export")),
                              {"RETI_ES_export": _frame(ROWS)}, KEY, "run-1")
    renamed = load_mapping(_source(tmp_path, "Pacientes", record_keys={"Pacientes": "RETI_ES_export"}))
    after = harmonise_source(renamed, {"Pacientes": _frame(ROWS)}, KEY, "run-2")

    assert after.rejections.empty
    assert sorted(after.records.source_record_key) == sorted(before.records.source_record_key)
    assert sorted(after.tables["follow_up"].follow_up_id) == sorted(before.tables["follow_up"].follow_up_id)


def test_a_second_record_of_a_patient_is_quarantined_saying_what_to_do(tmp_path):
    mapping = load_mapping(_source(tmp_path, "Pacientes", record_keys={"Pacientes": "REG"}))
    rows = [ROWS[0], {**ROWS[0], "fecha": "2020-03-01"}, ROWS[1]]
    result = harmonise_source(mapping, {"Pacientes": _frame(rows)}, KEY, "run-1")

    assert len(result.tables["follow_up"]) == 2
    ((rule, message),) = result.rejections[["rule_id", "message"]].values.tolist()
    assert rule == "CONF-KEY-UNIQUE"
    assert re.fullmatch(
        r"duplicate: record key \w+\|REG already read at line 2; record_keys\.Pacientes \('REG'\) names no column, "
        r"so Pacientes holds one record per patient: remove the repeat from the export, or, if the patient has "
        r"several records there, key them by a column that tells them apart \('REG\[\{column\}\]'; their keys "
        r"change\)", message), message
    assert "280000" not in message


def test_a_fixed_key_typed_with_a_patient_s_number_is_not_quoted_by_its_duplicate_s_message(tmp_path):
    """The published key hides a patient's number typed as a record set's key (a keyed digest): the hint of
    a repeat quoted the template as written."""
    mapping = load_mapping(_source(tmp_path, "Pacientes", record_keys={"Pacientes": "280001"}))
    rows = [ROWS[0], {**ROWS[0], "fecha": "2020-03-01"}, ROWS[1]]
    result = harmonise_source(mapping, {"Pacientes": _frame(rows)}, KEY, "run-1")

    ((message,),) = result.rejections[["message"]].values.tolist()
    assert "280001" not in message and "record_keys.Pacientes ('{patient}') names no column" in message
    assert not any("280001" in key for key in result.records.source_record_key)


@pytest.mark.parametrize(("keys", "expected"), [
    ({"record_key": "REG"}, "record_key: 'REG' names no column, so every record of a patient, in every record set, "
                            "would have that one key"),
    ({"record_keys": {"Pacientes": "REG", "Tratamientos": "REG"}},
     "record_keys.Tratamientos: 'REG' names no column and is record_keys.Pacientes's too"),
])
def test_a_key_naming_no_column_that_would_key_two_record_sets_alike_is_refused(tmp_path, keys, expected):
    with pytest.raises(MappingError) as refused:
        load_mapping(_two_record_sets(tmp_path, **keys))
    message = str(refused.value)
    assert expected in message


def _two_record_sets(tmp_path: Path, **keys: object) -> Path:
    path = _source(tmp_path, "Pacientes", **keys)
    text = yaml.safe_load(path.read_text())
    text["tables"]["treatment"] = {"from": "Tratamientos", "fields": {"drug_name": {"column": "farmaco"}}}
    text.pop("record_set")
    text["record_set_from_file"] = "(?P<record_set>.+)[.]csv"
    path.write_text(yaml.safe_dump(text))
    return path


def test_a_record_keyed_as_one_of_another_record_set_is_quarantined_naming_both_keys(tmp_path):
    """The key of the record set the .sav held, given to the new sheet while the old .sav still lands beside
    it (the onboarding page's own case), or another record set's name: a patient's records of both had one
    published key, neither flagged."""
    mapping = load_mapping(_two_record_sets(tmp_path, record_keys={"Pacientes": "Tratamientos"}))
    treated = [{"id_paciente": ROWS[0]["id_paciente"], "farmaco": "VCR"}]
    result = harmonise_source(mapping, {"Pacientes": _frame(ROWS), "Tratamientos": _frame(treated)}, KEY, "run-1")

    assert result.records.source_record_key.is_unique
    assert len(result.tables["patient_source"]) == 3 and result.tables["treatment"].empty
    ((rule, message),) = result.rejections[["rule_id", "message"]].values.tolist()
    assert rule == "CONF-KEY-UNIQUE"
    assert re.fullmatch(
        r"duplicate: record key \w+\|Tratamientos already read at line 2 of Pacientes; record_keys\.Pacientes "
        r"\('Tratamientos'\) and record_key \('\{record_set\}'\) give a record of Pacientes and one of Tratamientos "
        r"one key: give each record set its own under record_keys", message), message


def test_records_without_a_patient_key_are_not_told_to_remove_a_patient_s_repeat(tmp_path):
    """Under a key naming no column, every record with an empty patient key has one clear key: the second is
    a duplicate (its published key made unique) but not a patient's repeat, its missing key its finding."""
    mapping = load_mapping(_source(tmp_path, "Pacientes", record_keys={"Pacientes": "REG"}))
    rows = [{**ROWS[0], "id_paciente": ""}, {**ROWS[1], "id_paciente": ""}]
    result = harmonise_source(mapping, {"Pacientes": _frame(rows)}, KEY, "run-1")

    assert result.records.source_record_key.is_unique
    assert sorted(result.rejections.rule_id) == ["CONF-KEY-UNIQUE", "CONF-PATIENT-KEY-PRESENT",
                                                 "CONF-PATIENT-KEY-PRESENT"]
    assert not result.rejections.message.str.contains("one record per patient").any()


def test_a_second_record_of_a_patient_under_the_record_set_s_name_is_told_what_to_do(tmp_path):
    """`{record_set}` names no column either: a patient has one record per record set."""
    mapping = load_mapping(_source(tmp_path, "Pacientes"))
    result = harmonise_source(mapping, {"Pacientes": _frame([ROWS[0], ROWS[0]])}, KEY, "run-1")

    (message,) = result.rejections.message
    assert message.endswith("; record_key ('{record_set}') names no column, so Pacientes holds one record per "
                            "patient: remove the repeat from the export, or, if the patient has several records "
                            "there, key them by a column that tells them apart ('{record_set}[{column}]'; their "
                            "keys change)"), message
