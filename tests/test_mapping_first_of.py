"""`first_of`: a field read from the first of several columns or templates that gives the record a value. A
registry writing a full birth date for some children and a year and a month for all had to map one of them:
the full date left the others without a birth date (unlinked), the template cost the linked ones their day."""

from datetime import date
from functools import partial
from pathlib import Path

import pytest
import yaml
from read_records import records_of

from etl.transform.harmonise import birth_dates, harmonise_source
from etl.transform.mapping import MappingError, load_mapping
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"k")
BIRTH = {"type": "date", "required": True, "first_of": [
    {"column": "fecha_nacimiento", "format": "%d/%m/%Y"},
    {"template": "{anio_nacimiento}-{mes_nacimiento}", "format": "%Y-%m"}]}


def _mapping(tmp_path: Path, birth: object = BIRTH, **fields: object) -> Path:
    path = tmp_path / "registry_es.yaml"
    path.write_text(yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": "csv", "files": "*.csv", "record_set": "REG",
        "patient_key": "id_paciente", "record_key": "REG[{id_paciente}]", "date_format": "%d/%m/%Y",
        "patient": {"from": "REG", "fields": {"birth_date": birth, **fields}},
        "tables": {"diagnosis": {"from": "REG", "fields": {
            "diagnosis_date": {"column": "fecha_diagnostico", "type": "date"},
            "age_at_diagnosis_days": {"age_at": "diagnosis_date"}}}}}, allow_unicode=True))
    return path


_frame = partial(records_of, file_name="reti.csv")


def _child(number: int, full: str, year: str, month: str, **more: str) -> dict[str, str]:
    return {"id_paciente": f"ES{number:04d}", "fecha_nacimiento": full, "anio_nacimiento": year,
            "mes_nacimiento": month, "fecha_diagnostico": "01/06/2015", **more}


def test_the_first_alternative_giving_a_value_is_read_with_its_own_format_and_precision(tmp_path):
    mapping = load_mapping(_mapping(tmp_path))
    rows = [_child(1, "03/05/2010", "2010", "5"), _child(2, "", "2011", "07"), _child(3, "", "", "")]
    result = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1")

    patients = result.tables["patient_source"].sort_values("birth_year")
    assert patients[["birth_year", "birth_month"]].values.tolist() == [[2010, 5], [2011, 7]]
    # The full date where it is given: a day-precise birth linkage compares; the year and month elsewhere.
    assert result.link_keys.birth_token.notna().tolist().count(True) == 1
    assert sorted(result.tables["diagnosis"].age_at_diagnosis_days) == [  # from the 15th of the birth month
        (date(2015, 6, 1) - date(2011, 7, 15)).days, (date(2015, 6, 1) - date(2010, 5, 15)).days]
    assert result.rejections[["rule_id", "message"]].values.tolist() == [[
        "CONF-REQUIRED-PRESENT",
        "birth_date (first_of: fecha_nacimiento, {anio_nacimiento}-{mes_nacimiento}): required but empty"]]
    births = birth_dates(mapping, [{k: v for k, v in row.items()} for row in rows])
    assert [(b.value, b.precision) for b in births] == [(date(2010, 5, 3), "day"), (date(2011, 7, 1), "month")]


def test_a_value_its_alternative_cannot_read_quarantines_the_record_naming_that_alternative(tmp_path):
    """A broken full date is not replaced by the year and month silently: the record is held back, and the
    message names the alternative by its place, as a mapping error names it."""
    mapping = load_mapping(_mapping(tmp_path))
    rows = [_child(1, "31/02/2010", "2010", "02"), _child(2, "", "2011", "13")]
    result = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1")

    assert result.tables["patient_source"].empty
    assert sorted(result.rejections.message) == [
        "birth_date (first_of.0: fecha_nacimiento): '<hidden>' is not a real date (expected dd/mm/yyyy)",
        "birth_date (first_of.1: {anio_nacimiento}-{mes_nacimiento}): '<hidden>' is not a real date "
        "(expected yyyy-mm)"]
    assert set(result.rejections.rule_id) == {"CONF-DATE-VALID"}


def test_each_alternative_reads_with_its_own_code_list_checked_when_the_mapping_loads(tmp_path):
    sex = {"first_of": [{"column": "sexo_codigo", "codes": {"1": "male", "2": "female"}},
                        {"column": "sexo", "codes": {"Hombre": "male", "Mujer": "female"}}]}
    mapping = load_mapping(_mapping(tmp_path, sex=sex))
    rows = [_child(1, "03/05/2010", "", "", sexo_codigo="2", sexo="Hombre"),
            _child(2, "04/05/2010", "", "", sexo_codigo="", sexo="Hombre")]
    result = harmonise_source(mapping, {"REG": _frame(rows)}, KEY, "run-1")
    assert sorted(result.tables["patient_source"].sex) == ["female", "male"]

    sex["first_of"][1]["codes"]["Mujer"] = "mujer"
    with pytest.raises(MappingError) as refused:
        load_mapping(_mapping(tmp_path, sex=sex))
    message = str(refused.value)
    assert "patient.fields.sex.first_of.1.codes: code 'Mujer' maps to 'mujer', which core.patient_source.sex " \
           "does not hold" in message


@pytest.mark.parametrize(("birth", "expected"), [
    ({"type": "date", "first_of": [{"column": "fecha_nacimiento"}]},
     "patient.fields.birth_date: first_of: give two alternatives or more"),
    ({"type": "date", "first_of": [{"column": "fecha_nacimiento"}, {"const": "2010-01-01"}]},
     "patient.fields.birth_date: first_of.1: an alternative reads a column: or a template:"),
    ({"type": "date", "first_of": [{"column": "fecha_nacimiento"}, {"column": "anio_nacimiento", "type": "integer"}]},
     "patient.fields.birth_date: first_of.1: type integer, but the field's is date"),
    ({"type": "date", "format": "%Y", "first_of": [{"column": "fecha_nacimiento"}, {"column": "anio_nacimiento"}]},
     "patient.fields.birth_date: first_of: format is given in each alternative"),
    ({"first_of": [{"column": "fecha_nacimiento", "type": "date", "required": True},
                   {"column": "anio_nacimiento", "type": "date"}]},
     "patient.fields.birth_date: first_of.0: required is the field's"),
    ({"type": "date", "first_of": [{"column": "fecha_nacimiento"}, {"column": "anio_nacimiento", "format": "%Q"}]},
     "patient.fields.birth_date.first_of.1.format: '%Q': %Q not understood"),
    ({"type": "date", "column": "fecha_nacimiento", "first_of": [{"column": "a"}, {"column": "b"}]},
     "give exactly one of column, const, template, age_at, ref, first_of"),
    # type on one alternative only: not the other's type text, which nobody wrote, refused
    ({"first_of": [{"column": "fecha_nacimiento", "type": "date", "format": "%d/%m/%Y"},
                   {"template": "{anio_nacimiento}-{mes_nacimiento}", "format": "%Y-%m"}]},
     "patient.fields.birth_date: first_of: type is given on some alternatives only, or differs (first_of.0: date): "
     "give type beside first_of"),
    ({"first_of": [{"column": "fecha_nacimiento", "type": "date"}, {"column": "anio_nacimiento", "type": "integer"}]},
     "first_of: type is given on some alternatives only, or differs (first_of.0: date, first_of.1: integer): give "
     "type beside first_of"),
])
def test_an_alternative_that_cannot_work_is_refused_naming_it(tmp_path, birth, expected):
    with pytest.raises(MappingError) as refused:
        load_mapping(_mapping(tmp_path, birth))
    message = str(refused.value)
    assert expected in message


def test_the_type_given_on_the_alternatives_alike_is_the_field_s(tmp_path):
    birth = {"first_of": [{"column": "fecha_nacimiento", "type": "date"},
                          {"template": "{anio_nacimiento}-{mes_nacimiento}", "type": "date", "format": "%Y-%m"}]}
    spec = load_mapping(_mapping(tmp_path, birth)).patient.fields["birth_date"]
    assert spec.type == "date" and spec.columns() == {"fecha_nacimiento", "anio_nacimiento", "mes_nacimiento"}


def test_an_export_without_a_column_of_an_alternative_fails_the_source_naming_it(tmp_path):
    from etl.transform.harmonise import HarmoniseError

    mapping = load_mapping(_mapping(tmp_path))
    frame = _frame([_child(1, "03/05/2010", "2010", "5")]).drop(columns=["mes_nacimiento"])
    with pytest.raises(HarmoniseError, match=r"has no column mes_nacimiento"):
        harmonise_source(mapping, {"REG": frame}, KEY, "run-1")


def test_a_column_group_s_alternatives_are_read_per_group(tmp_path):
    path = tmp_path / "registry_es.yaml"
    path.write_text(yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": "csv", "files": "*.csv", "record_set": "REG",
        "patient_key": "id_paciente", "record_key": "REG[{id_paciente}]", "date_format": "%d/%m/%Y",
        "patient": {"from": "REG", "fields": {"sex": {"column": "sexo"}}},
        "tables": {"treatment": {"from": "REG", "repeat": [1, 2], "fields": {
            "drug_name": {"column": "farmaco{repeat}"},
            "start_date": {"type": "date", "first_of": [
                {"column": "inicio{repeat}"}, {"column": "anio{repeat}", "format": "%Y"}]}}}}}))
    row = {"id_paciente": "ES0001", "sexo": "M", "farmaco1": "VCR", "inicio1": "02/03/2015", "anio1": "2015",
           "farmaco2": "ACT", "inicio2": "", "anio2": "2016"}
    result = harmonise_source(load_mapping(path), {"REG": _frame([row])}, KEY, "run-1")
    treatment = result.tables["treatment"].sort_values("drug_name")
    assert treatment[["drug_name", "start_date", "start_date_precision"]].values.tolist() == [
        ["ACT", date(2016, 1, 1), "year"], ["VCR", date(2015, 3, 2), "day"]]


def test_an_icd_o_3_code_read_from_the_first_of_two_columns_is_typed_and_its_parts_compared(tmp_path):
    path = tmp_path / "registry_es.yaml"
    path.write_text(yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": "csv", "files": "*.csv", "record_set": "REG",
        "patient_key": "id_paciente", "record_key": "REG[{id_paciente}]",
        "patient": {"from": "REG", "fields": {"sex": {"column": "sexo"}}},
        "tables": {"diagnosis": {"from": "REG", "fields": {
            "icdo3_morphology": {"type": "icdo3_histology", "first_of": [{"column": "morfologia"},
                                                                         {"column": "morfologia_cie_o_2"}]},
            "icdo3_behaviour": {"column": "comportamiento", "type": "icdo3_behaviour"}}}}}))
    rows = [{"id_paciente": "ES0001", "sexo": "M", "morfologia": "8970/3", "morfologia_cie_o_2": "",
             "comportamiento": ""},
            {"id_paciente": "ES0002", "sexo": "M", "morfologia": "", "morfologia_cie_o_2": "8960/3",
             "comportamiento": ""},
            {"id_paciente": "ES0003", "sexo": "M", "morfologia": "", "morfologia_cie_o_2": "8960/3",
             "comportamiento": "2"}]
    result = harmonise_source(load_mapping(path), {"REG": _frame(rows)}, KEY, "run-1")

    diagnosis = result.tables["diagnosis"].sort_values("icdo3_morphology")
    assert diagnosis[["icdo3_morphology", "icdo3_behaviour"]].values.tolist() == [["8960", "3"], ["8970", "3"]]
    assert result.rejections.message.tolist() == [
        "icdo3_behaviour (comportamiento): behaviour '2' contradicts icdo3_morphology (first_of.1: morfologia_cie_o_2) "
        "'8960/3', whose behaviour is 3: correct one of them"]



def test_a_record_has_the_centre_its_own_first_of_gives(tmp_path):
    """The centre a record names itself routes its queries: read as the patient record's centre_id is (a
    first_of, a template), not only from a column; a record naming none has its patient's."""
    path = tmp_path / "registry_es.yaml"
    path.write_text(yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": "csv", "files": "*.csv",
        "record_set_from_file": "(?P<record_set>.+)[.]csv", "patient_key": "id_paciente",
        "record_key": "{record_set}[{linea}]",
        "patient": {"from": "REG", "fields": {"centre_id": {
            "first_of": [{"column": "centro"}, {"template": "ES-{hospital}"}]}}},
        "tables": {"treatment": {"from": "TRAT", "fields": {"drug_name": {"column": "farmaco"}}}}}))
    patients = [{"id_paciente": "ES0001", "linea": "1", "centro": "ES01", "hospital": ""}]
    treated = [{"id_paciente": "ES0001", "linea": "1", "farmaco": "VCR", "centro": "", "hospital": "05"},
               {"id_paciente": "ES0001", "linea": "2", "farmaco": "ACT", "centro": "", "hospital": ""}]
    result = harmonise_source(load_mapping(path), {"REG": _frame(patients), "TRAT": _frame(treated)}, KEY, "run-1")

    assert result.records[["record_set", "centre_id"]].values.tolist() == [
        ["REG", "ES01"], ["TRAT", "ES-05"], ["TRAT", "ES01"]]
