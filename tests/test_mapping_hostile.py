"""Mappings a data manager may write without seeing what YAML or the parser makes of them: each is refused
when it loads, naming the file, the key (and line) and what to write instead; values are read as written."""

import json
import re
import unicodedata
from pathlib import Path

import pytest

from etl.quality.catalogue import CatalogueError, gx_rules
from etl.transform import iccc3
from etl.transform.mapping import (
    ICCC3_COLUMNS,
    MappingError,
    _check_quality,
    _check_vocabularies,
    _rule_catalogue,
    load_mapping,
)
from etl.transform.values import ValueRejected, map_code, parse_date

MAPPING = """\
source_id: reg_test
title: a test registry
format: csv
files: "*.csv"
record_set: REG
patient_key: pid
record_key: "REG[{{rid}}]"
date_format: {date_format}
patient:
  from: REG
  fields:
    sex: {{column: sex, codes: {sex_codes}}}
tables:
  diagnosis:
    from: REG
    fields:
      diagnosis_date: {{column: diag, type: date}}
      {field}
"""


def _load(tmp_path: Path, *, sex_codes: str = '{"1": male, "2": female}', date_format: str = '"%d/%m/%Y"',
          field: str = "laterality: {column: side}") -> object:
    path = tmp_path / "reg_test.yaml"
    path.write_text(MAPPING.format(sex_codes=sex_codes, date_format=date_format, field=field))
    return load_mapping(path)


def _refused(tmp_path: Path, **given: str) -> str:
    with pytest.raises(MappingError) as caught:
        _load(tmp_path, **given)
    assert str(tmp_path / "reg_test.yaml") in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(("codes", "expected"), [
    ("{01: male, 02: female}", "line 12: YAML reads the code 01 as the number 1, so it would match a source value '1'"),
    ("{010: male}", "YAML reads the code 010 as the number 8"),  # octal
    ("{yes: male, no: female}", "YAML reads the code yes as the yes/no value true"),
    ("{1.10: male}", "YAML reads the code 1.10 as the number 1.1"),
    ("{12:30: male}", "YAML reads the code 12:30 as the number 750"),
    ("{~: male}", "YAML reads the code ~ as null (no value)"),
])
def test_a_code_yaml_reads_as_a_number_yes_no_or_null_is_refused_with_its_line(tmp_path, codes, expected):
    message = _refused(tmp_path, sex_codes=codes)
    assert "patient.fields.sex.codes: " in message
    assert expected in message


def test_a_text_value_yaml_reads_as_yes_no_is_refused_and_quoted_codes_load(tmp_path):
    # Unquoted, no is false: a text column given a yes/no value crashed the source's harmonise.
    message = _refused(tmp_path, field="disease_label: {column: label, codes: {N: no, D: right}}")
    assert "tables.diagnosis.fields.disease_label.codes.N: line 18: YAML reads no as the yes/no value false" in message
    mapping = _load(tmp_path, sex_codes='{"01": male, "no": female, 1: unknown, 2019-03-01: male}',
                    field='disease_label: {column: label, codes: {N: "no", D: right}}')
    assert mapping.patient.fields["sex"].codes == {"01": "male", "no": "female", "1": "unknown", "2019-03-01": "male"}


@pytest.mark.parametrize("codes", ["{M: male, m: female}", '{"M ": male, M: female}',
                                   '{"\u00e9": male, "e\u0301": female}'])
def test_two_codes_matched_as_one_with_two_values_are_refused(tmp_path, codes):
    assert "are one code" in _refused(tmp_path, sex_codes=codes)
    _load(tmp_path, sex_codes=codes.replace("female", "male"))  # the same value twice is harmless


def test_a_code_matches_whatever_unicode_form_or_spaces_the_source_writes():
    codes = {"Non noto": "unknown", "\u00e9tranger": "abroad"}
    assert map_code("Non\u00a0noto", codes) == "unknown"  # a non-breaking space, as spreadsheets export
    assert map_code(unicodedata.normalize("NFD", "\u00e9tranger"), codes) == "abroad"
    assert map_code("  NON  NOTO ", codes) == "unknown"
    with pytest.raises(ValueRejected, match="is not in the code list"):
        map_code("Nonnoto", codes)


@pytest.mark.parametrize(("text", "fmt"), [
    ("201912", "%Y%m%d"),  # read as 2 January 2019
    ("2019123", "%Y%m%d"),  # 3 December or 23 January
    ("1122019", "%d%m%Y"),  # 11 February or 1 December
])
def test_a_compact_date_reads_two_digit_days_and_months_only(text, fmt):
    with pytest.raises(ValueRejected, match="is not a date written"):
        parse_date(text, fmt)


def test_a_compact_date_written_whole_and_a_separated_one_digit_day_are_read():
    assert parse_date("20190517", "%Y%m%d").value.isoformat() == "2019-05-17"
    assert parse_date("01122019", "%d%m%Y").value.isoformat() == "2019-12-01"
    assert parse_date("UK052019", "%d%m%Y").precision == "month"
    assert parse_date("5/1/2019", "%d/%m/%Y").value.isoformat() == "2019-01-05"
    assert parse_date("2019-5", "%Y-%m-%d").precision == "month"


@pytest.mark.parametrize("formats", ['["%d/%m/%Y", "%m/%d/%Y"]', '["%m%d%Y", "%Y", "%d%m%Y"]'])
def test_date_formats_giving_day_and_month_in_either_order_are_refused(tmp_path, formats):
    message = _refused(tmp_path, date_format=formats)
    assert "date_format: " in message and "give day and month in either order" in message
    field = f"report_date: {{column: r, type: date, format: {formats}}}"
    assert "fields.report_date.format: " in _refused(tmp_path, field=field)


def test_date_formats_of_one_order_load():
    # dd.mm.yyyy beside mm/yyyy and yyyy, or dots beside slashes, read no value two ways.
    for formats in (["%d.%m.%Y", "%m.%Y", "%Y"], ["%d.%m.%Y", "%m/%d/%Y"]):
        assert parse_date("03.04.2019", tuple(formats)).value.isoformat() == "2019-04-03"


@pytest.mark.parametrize(("field", "expected"), [
    ("diagnosis_date_precision: {const: year}", "the precision of diagnosis_date, filled by harmonise"),
    ("diagnosis_id: {column: rid}", "the row's id"),
    ("patient_id: {column: pid}", "the person's pseudonym"),
    ("source_record_key: {column: rid}", "the record's lineage"),
    ("run_id: {const: r1}", "the record's lineage"),
    ("iccc3_group: {const: XII}", "derived from the morphology and topography"),
])
def test_a_field_harmonise_fills_itself_is_refused(tmp_path, field, expected):
    message = _refused(tmp_path, field=field)
    assert f"tables.diagnosis.fields.{field.split(':')[0]}: " in message
    assert expected in message


def test_the_iccc3_columns_a_mapping_may_not_fill_are_those_iccc3_derives():
    assert list(ICCC3_COLUMNS) == iccc3.FRAME_COLUMNS


VITAL_STATUS = "  follow_up:\n    from: REG\n    fields:\n      vital_status: {{column: vs, codes: {codes}}}\n"


def test_a_code_list_value_its_core_column_does_not_hold_is_refused_unless_its_rule_is_off(tmp_path):
    path = tmp_path / "reg_test.yaml"
    text = MAPPING.format(sex_codes='{"1": male}', date_format='"%d/%m/%Y"', field="laterality: {column: side}")
    path.write_text(text + VITAL_STATUS.format(codes="{V: alive, M: deceased}"))
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert (f"{path}: tables.follow_up.fields.vital_status.codes: code 'M' maps to 'deceased', which "
            "core.follow_up.vital_status does not hold (FU-VITAL-STATUS-CODE: alive, dead, lost or opted_out)"
            in str(caught.value))
    path.write_text(text + VITAL_STATUS.format(codes="{V: alive, M: dead, X: null}"))
    assert load_mapping(path).tables["follow_up"].fields["vital_status"].codes == {"V": "alive", "M": "dead", "X": None}
    path.write_text(text + VITAL_STATUS.format(codes="{V: alive, M: deceased}")
                    + "quality: {FU-VITAL-STATUS-CODE: {enabled: false}}\n")
    assert load_mapping(path).tables["follow_up"].fields["vital_status"].codes["M"] == "deceased"
    path.write_text(text.replace('{"1": male}', '{"1": male, "2": femme}'))
    with pytest.raises(MappingError, match=r"patient.fields.sex.codes: code '2' maps to 'femme', which core"):
        load_mapping(path)


RESPONSE = ("  response_assessment:\n    from: REG\n    fields:\n      criteria: {{const: leukaemia}}\n"
            "      response: {{column: resp, codes: {codes}}}\n")


def test_a_rule_judging_some_rows_only_does_not_refuse_a_code_list_value(tmp_path):
    # RESP-SOLID-CODE judges rows whose criteria are not leukaemia: a leukaemia source switching off
    # RESP-LEUKAEMIA-CODE was refused naming the solid tumour rule, which never judges it.
    path = tmp_path / "reg_test.yaml"
    text = MAPPING.format(sex_codes='{"1": male}', date_format='"%d/%m/%Y"', field="laterality: {column: side}")
    path.write_text(text + RESPONSE.format(codes="{b: CRi}") + "quality: {RESP-LEUKAEMIA-CODE: {enabled: false}}\n")
    assert load_mapping(path).tables["response_assessment"].fields["response"].codes == {"b": "CRi"}
    # Which rows a conditioned rule judges depends on each record's values: its value set does not bind.
    path.write_text(text + RESPONSE.format(codes="{b: CRi, x: excellent}"))
    assert load_mapping(path).tables["response_assessment"].fields["response"].codes["x"] == "excellent"


@pytest.mark.parametrize(("table", "field", "value"), [
    ("follow_up", "disease_status", "NED"), ("adverse_event", "relatedness", "possible"),
    ("adverse_event", "outcome", "resolved"), ("tumour_board_review", "treatment_intent", "cure"),
    ("response_assessment", "criteria", "RECIST")])
def test_a_code_list_value_no_vocabulary_holds_is_refused_in_every_coded_column(tmp_path, table, field, value):
    # A hunt: disease_status `NULL: NED` passed rtw check and loaded NED on every row, no issue raised: only the
    # columns an in-set rule judged were checked.
    path = tmp_path / "reg_test.yaml"
    text = MAPPING.format(sex_codes='{"1": male}', date_format='"%d/%m/%Y"', field="laterality: {column: side}")
    coded = f"      {field}: {{column: x, codes: {{a: {value}}}}}\n"
    path.write_text(text + f"  {table}:\n    from: REG\n    fields:\n{coded}")
    with pytest.raises(MappingError, match=rf"{field}.codes: code 'a' maps to '{value}', which core.{table}.{field} "
                                           "does not hold"):
        load_mapping(path)


def _with_follow_up(tmp_path: Path, codes: str, more: str = "") -> Path:
    path = tmp_path / "reg_test.yaml"
    text = MAPPING.format(sex_codes='{"1": male}', date_format='"%d/%m/%Y"', field="laterality: {column: side}")
    path.write_text(text + VITAL_STATUS.format(codes=codes) + more)
    return path


def _vital_status_rule(tmp_path: Path, **meta: object) -> list:
    suite = {"name": "core.follow_up", "meta": {"table": "follow_up"}, "expectations": [{
        "type": "expect_column_values_to_be_in_set", "kwargs": {"column": "vital_status", "value_set": ["alive"]},
        "meta": {"rule_id": "FU-TEST-CODE", "category": "conformance", "subcategory": "verification",
                 "level": "field", "severity": "error", "threshold": 0, "description": "a test rule", **meta}}]}
    (tmp_path / "follow_up.json").write_text(json.dumps(suite))
    return gx_rules(tmp_path / "follow_up.json", check_types=False)


def test_a_rule_judging_the_sources_setting_its_params_only_does_not_refuse_a_code_list_value(tmp_path):
    path = _with_follow_up(tmp_path, "{V: alive, M: dead}")
    mapping = load_mapping(path)
    with pytest.raises(MappingError, match=r"code 'M' maps to 'dead', which .* does not hold \(FU-TEST-CODE"):
        _check_vocabularies(mapping, path, lambda: _vital_status_rule(tmp_path))
    _check_vocabularies(mapping, path, lambda: _vital_status_rule(tmp_path, params=["max_age_years"]))


def test_the_rule_catalogue_is_read_once_and_each_check_reacts_to_an_unreadable_one_its_way(tmp_path):
    read = _rule_catalogue()
    assert read() is read()  # the vocabulary and quality checks of one mapping share one reading
    quality = "quality: {FU-VITAL-STATUS-CODE: {threshold: 0.1}}\n"
    with pytest.raises(MappingError, match="'M' maps to 'deceased'"):
        load_mapping(_with_follow_up(tmp_path, "{M: deceased}", quality))
    mapping = load_mapping(path := _with_follow_up(tmp_path, "{M: dead}", quality))
    unreadable = CatalogueError("expectations/follow_up.json: not JSON")
    _check_vocabularies(mapping, path, lambda: unreadable)  # validation reports it, for every source
    with pytest.raises(MappingError, match="quality: the rule catalogue cannot be read: expectations/follow_up"):
        _check_quality(mapping, path, lambda: unreadable)


@pytest.mark.parametrize("formats", ['["%d/%m/%Y", "%m/%d/%Y %H:%M"]', '["%d/%m/%Y %H:%M:%S", "%m/%d/%Y"]',
                                     '["%Y-%d-%mT%H:%M", "%Y-%m-%d"]'])
def test_a_date_time_format_swapping_day_and_month_of_a_date_format_is_refused(tmp_path, formats):
    # '%d/%m/%Y' read 03/04/2019 as 3 April and '%m/%d/%Y %H:%M' read '03/04/2019 10:00' as 4 March.
    message = _refused(tmp_path, date_format=formats)
    assert "date_format: " in message and "give day and month in either order" in message


def test_date_formats_differing_in_their_time_only_load(tmp_path):
    mapping = _load(tmp_path, date_format='["%d/%m/%Y", "%d/%m/%Y %H:%M", "%Y", "%Y %H:%M"]')
    assert parse_date("03/04/2019 10:00", mapping.date_formats(None)).value.isoformat() == "2019-04-03"


def test_a_day_or_a_month_beside_one_year_is_refused_saying_why(tmp_path):
    message = _refused(tmp_path, date_format='["%d/%Y", "%m/%Y"]')
    assert ("'%d/%Y' and '%m/%Y' (dd/yyyy, mm/yyyy) read a day or a month beside the year: 03/2019 "
            "could mean either, day 3 or March 2019" in message)


def test_the_coded_fields_are_walked_once_for_every_check(tmp_path):
    mapping = _load(tmp_path, field="laterality: {column: side, codes: {L: left}}")
    assert [(where, table, name) for where, table, name, _ in mapping.coded_fields()] == [
        ("patient", "patient_source", "sex"), ("tables.diagnosis", "diagnosis", "laterality")]


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t.replace("ILTB_(?P<record_set>[A-Z0-9]+)", "ILTB_(?P<record_set>[A-Z0-9+)"),
     r"record_set_from_file: not a regular expression \(unterminated character set"),
    (lambda t: t.replace("encoding: utf-8-sig", "encoding: klingon"), r"unknown encoding 'klingon'; expected a code"),
    (lambda t: t.replace('delimiter: ";"', 'delimiter: ";;"'), r"';;' is 2 characters; expected one"),
    (lambda t: t.replace("title:", "# \udcff\ntitle:", 1), r"not UTF-8 text \(byte \d+: invalid start byte\); save"),
])
def test_a_regex_encoding_delimiter_or_file_that_cannot_be_read_is_refused_when_the_mapping_loads(tmp_path, edit, said):
    """A CLI audit: these passed the mapping's checks and failed the run as a whole (a bad regex, a file not UTF-8),
    or printed a traceback when the first file was read (an encoding, a delimiter): now each is the mapping's."""
    from etl.config import SOURCES_DIR

    path = tmp_path / "iltb.yaml"
    path.write_bytes(edit((SOURCES_DIR / "iltb.yaml").read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(MappingError, match=said) as refused:
        load_mapping(path)
    assert str(path) in str(refused.value)


def test_a_field_written_as_a_list_says_the_keys_a_field_takes_not_a_class_name(tmp_path):
    """A CLI audit: `study_id: [TREP]` was told "Input should be a valid dictionary or instance of FieldSpec"."""
    from etl.config import SOURCES_DIR

    path = tmp_path / "registry_it.yaml"
    path.write_text(re.sub(r"(?m)^(\s*)study_id:.*$", r"\1study_id: [TREP]", (SOURCES_DIR / "registry_it.yaml")
                           .read_text(encoding="utf-8"), count=1), encoding="utf-8")
    with pytest.raises(MappingError, match=r"study_id: expected keys \(column, const, .*\), not a list") as refused:
        load_mapping(path)
    assert "FieldSpec" not in str(refused.value)
