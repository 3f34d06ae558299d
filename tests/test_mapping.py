import json
import re
from pathlib import Path

import pytest

from etl.config import REPO_ROOT, SOURCES_DIR
from etl.quality.params import PARAMS
from etl.transform.mapping import (
    CsvOptions,
    Delivery,
    FieldSpec,
    MappingError,
    PatientSpec,
    RuleOverride,
    SourceMapping,
    TableSpec,
    json_schema,
    load_mapping,
    load_mappings,
)

MINIMAL = """\
source_id: {sid}
title: a test registry
format: csv
files: "*.csv"
record_set: REG
patient_key: pid
record_key: "REG[{{rid}}]"
patient:
  from: REG
  fields:
    sex: {{column: sex, codes: {{1: male, 2: female}}}}
tables:
{tables}
"""


def _write(tmp_path: Path, tables: str, sid: str = "reg_test") -> Path:
    path = tmp_path / f"{sid}.yaml"
    path.write_text(MINIMAL.format(sid=sid, tables=tables))
    return path


def test_the_committed_mappings_are_valid():
    mappings = load_mappings(SOURCES_DIR)
    assert set(mappings) >= {"sacha_fr", "iltb", "registry_it"}
    assert mappings["registry_it"].csv.encoding == "cp1252"


def test_integer_code_keys_are_read_as_text(tmp_path):
    mapping = load_mapping(_write(tmp_path, "  follow_up:\n    from: REG\n    fields:\n"
                                             "      contact_date: {column: d, type: date}"))
    assert mapping.patient.fields["sex"].codes == {"1": "male", "2": "female"}


@pytest.mark.parametrize(("tables", "where"), [
    ("  treatment:\n    from: REG\n    fields:\n      start_date: {column: d, type: dat}",
     "tables.treatment.fields.start_date.type"),
    ("  treatment:\n    from: REG\n    fields:\n      start_day: {column: d, type: date}",
     "tables.treatment.fields.start_day: core.treatment has no such column"),
    ("  treatments:\n    from: REG\n    fields:\n      start_date: {column: d}",
     "tables.treatments: not a core table"),
    ("  treatment:\n    from: REG\n    fields:\n      start_date: {column: d, const: x}",
     "give exactly one of column, const"),
    ("  treatment:\n    from: REG\n    fields:\n      drug_name: {column: d, colour: red}",
     "tables.treatment.fields.drug_name.colour"),
    # A value its core column cannot hold (a hunt: a sex drafted `type: integer` crashed its source's harmonise).
    ("  treatment:\n    from: REG\n    fields:\n      drug_name: {column: d, type: integer}",
     "tables.treatment.fields.drug_name: type: integer, which core.treatment.drug_name (VARCHAR) cannot hold: "
     "read it as text (no type:; codes: to translate the source's codes)"),
    ("  treatment:\n    from: REG\n    fields:\n      line_number: {column: n, codes: {a: first}}",
     "tables.treatment.fields.line_number: code 'a' maps to 'first', which core.treatment.line_number (INTEGER) "
     "cannot hold: read it as integer"),
    ("  follow_up:\n    from: REG\n    fields:\n      contact_date: {column: d}",
     "tables.follow_up.fields.contact_date: text (no type:), which core.follow_up.contact_date (DATE) cannot hold: "
     "read it as date"),
])
def test_errors_name_the_file_and_the_key(tmp_path, tables, where):
    path = _write(tmp_path, tables)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
    assert where in str(caught.value)


def test_source_id_must_match_the_file_name(tmp_path):
    path = _write(tmp_path, "  follow_up:\n    from: REG\n    fields:\n      contact_date: {column: d}")
    renamed = path.rename(tmp_path / "other.yaml")
    with pytest.raises(MappingError, match="must match the file name 'other'"):
        load_mapping(renamed)


def test_broken_yaml_is_reported_with_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("source_id: [unclosed\n")
    with pytest.raises(MappingError, match=f"{path}: not valid YAML"):
        load_mapping(path)


FOLLOW_UP = "  follow_up:\n    from: REG\n    fields:\n      contact_date: {column: d, type: date}\n"


def _extra(tmp_path: Path, text: str, tables: str = FOLLOW_UP) -> Path:
    path = _write(tmp_path, tables)
    path.write_text(path.read_text() + text)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_an_unknown_key_lists_the_keys_allowed_there(tmp_path):
    message = _refused(_write(tmp_path, "  follow_up:\n    from: REG\n    fields:\n"
                                        "      contact_date: {colum: d, type: date}"))
    assert "tables.follow_up.fields.contact_date.colum: unknown key; allowed here: column, const, template" in message
    assert "Extra inputs" not in message
    message = _refused(_extra(tmp_path, "date_formats: ['%d.%m.%Y']\n"))
    assert "date_formats: unknown key; allowed here: source_id, title, format" in message
    message = _refused(_extra(tmp_path, "", tables="  follow_up:\n    form: REG\n    fields: {}\n"))
    assert "tables.follow_up.form: unknown key; allowed here: from, join_on, fields, where" in message
    message = _refused(_extra(tmp_path, "options: {encodng: cp1252}\n"))
    assert "options.encodng: unknown option of format csv; allowed: encoding, delimiter, decimal" in message
    message = _refused(_extra(tmp_path, "quality:\n  RESP-MRD-RANGE: {treshold: 0.1}\n"))
    assert "quality.RESP-MRD-RANGE.treshold: unknown key; allowed here: threshold, enabled" in message


def test_date_formats_may_be_a_list_and_must_use_known_directives(tmp_path):
    mapping = load_mapping(_extra(tmp_path, "date_format: ['%d.%m.%Y', '%m.%Y', '%Y']\n"
                                            "unknown_date_parts: ['00', UK, '99', XX]\n"))
    assert mapping.date_formats() == ("%d.%m.%Y", "%m.%Y", "%Y")
    assert mapping.date_formats(mapping.tables["follow_up"].fields["contact_date"]) == ("%d.%m.%Y", "%m.%Y", "%Y")
    message = _refused(_extra(tmp_path, "date_format: ['%d.%m.%Y', '%B %Y']\n"))
    assert "date_format: '%B %Y': %B not understood" in message
    message = _refused(_extra(tmp_path, "", tables="  follow_up:\n    from: REG\n    fields:\n"
                                                   "      contact_date: {column: d, type: date, format: '%d.%m'}\n"))
    assert "tables.follow_up.fields.contact_date.format: '%d.%m': a date format needs %Y once" in message


def test_ignore_and_record_keys_name_record_sets_consistently(tmp_path):
    mapping = load_mapping(_extra(tmp_path, "ignore: [AUDIT]\nrecord_keys: {REG: 'R[{rid}]'}\n"))
    assert mapping.record_key_for("REG") == "R[{rid}]" and mapping.record_key_for("OTHER") == "REG[{rid}]"
    assert "ignore: REG is also mapped (from:)" in _refused(_extra(tmp_path, "ignore: [REG]\n"))
    assert "ignore: REG is also mapped (from:)" in _refused(_extra(tmp_path, "ignore: ['R*']\n"))
    assert "record_keys: AE is not a record set this mapping reads" in _refused(
        _extra(tmp_path, "record_keys: {AE: 'AE[{seq}]'}\n"))


def test_joined_sections_are_checked_when_the_mapping_loads(tmp_path):
    joined = "  follow_up:\n    from: [REG, FU2]\n    join_on: [pid, visit]\n    fields:\n" \
             "      contact_date: {column: d, type: date}\n"
    mapping = load_mapping(_write(tmp_path, joined))
    assert mapping.tables["follow_up"].record_sets() == ("REG", "FU2") and mapping.record_sets() == {"REG", "FU2"}
    twice = joined.replace("[REG, FU2]", "[REG, FU2, REG]")
    assert "a record set is listed twice" in _refused(_write(tmp_path, twice))
    alone = joined + "  treatment:\n    from: FU2\n    fields:\n      drug_name: {column: x}\n"
    assert "record set FU2 is joined as a section of REG" in _refused(_write(tmp_path, alone))
    single = "  follow_up:\n    from: REG\n    join_on: [pid]\n    fields: {}\n"
    assert "join_on joins the record sets of a list" in _refused(_write(tmp_path, single))


def test_params_are_known_and_typed(tmp_path):
    mapping = load_mapping(_extra(tmp_path, "params: {min_age_years: 0, max_age_years: 18}\n"))
    assert mapping.params == {"min_age_years": 0, "max_age_years": 18}
    message = _refused(_extra(tmp_path, "params: {max_age_year: 18}\n"))
    assert "params: 'max_age_year' is not a known parameter; known: " in message and "max_age_years" in message
    assert "max_age_years is a number (years), not 'eighteen'" in _refused(
        _extra(tmp_path, "params: {max_age_years: eighteen}\n"))
    assert "requires_alk_ros1 is true or false" in _refused(_extra(tmp_path, "params: {requires_alk_ros1: 1}\n"))


@pytest.mark.parametrize(("quality", "message"), [
    ("quality:\n  ENR-AGE-SACHA: {threshold: 0.1}\n",
     "quality.ENR-AGE-SACHA: no such rule; did you mean ENR-AGE-"),
    ("quality:\n  CONF-DATE-VALID: {enabled: false}\n",
     "quality.CONF-DATE-VALID: cannot be switched off"),
    ("quality:\n  ENR-LVEF-ELIGIBLE: {threshold: 0.1}\n",
     "quality.ENR-LVEF-ELIGIBLE: the rule reads params min_lvef_percent, which this source does not set"),
    ("quality:\n  RESP-MRD-RANGE: {}\n", "quality.RESP-MRD-RANGE: an override sets threshold, enabled or both"),
    ("quality:\n  RESP-MRD-RANGE: {threshold: 2}\n", "quality.RESP-MRD-RANGE.threshold"),
])
def test_a_quality_override_that_cannot_apply_is_refused_with_a_pointed_error(tmp_path, quality, message):
    assert message in _refused(_extra(tmp_path, quality))


def test_a_quality_override_of_a_rule_the_source_can_use_is_accepted(tmp_path):
    mapping = load_mapping(_extra(tmp_path, "params: {min_lvef_percent: 50}\nquality:\n"
                                            "  ENR-LVEF-ELIGIBLE: {threshold: 0.1}\n"
                                            "  CONF-DATE-VALID: {threshold: 0.5}\n"))
    assert mapping.quality["ENR-LVEF-ELIGIBLE"].threshold == 0.1


# -- the reference: docs/mapping.md and docs/mapping.schema.json ------------------------------------
DOCS = REPO_ROOT / "docs"
# Each model's keys are documented as `### \`key\`` headings under its own `## ` section.
SECTIONS = {SourceMapping: "Top level", PatientSpec: "patient", TableSpec: "tables", FieldSpec: "fields",
            RuleOverride: "quality", CsvOptions: "csv",
            Delivery: "delivery"}
BASE = {"source_id": "doc_example", "title": "an example", "format": "csv", "files": "*.csv", "record_set": "REG",
        "patient_key": "pid", "record_key": "REG[{rid}]", "patient": {"from": "REG", "fields": {}}, "tables": {}}


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _merged(base: dict, fragment: dict) -> dict:
    out = dict(base)
    for key, value in fragment.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_the_json_schema_in_docs_is_current_and_accepts_the_shipped_mappings():
    import jsonschema
    import yaml

    committed = json.loads((DOCS / "mapping.schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m etl.transform.mapping --schema > docs/mapping.schema.json"
    for path in SOURCES_DIR.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), committed)


def test_every_key_of_the_model_is_documented_in_its_section():
    sections = _sections((DOCS / "mapping.md").read_text())
    missing = [f"{title}: {key}" for model, title in SECTIONS.items() for key in
               (f.alias or name for name, f in model.model_fields.items())
               if f"### `{key}`" not in sections.get(title, "")]
    assert not missing, f"document these keys in docs/mapping.md: {missing}"
    assert all(f"`{name}`" in sections["params"] for name in PARAMS), "docs/mapping.md, params: list every parameter"


def test_the_yaml_examples_in_the_reference_validate(tmp_path):
    import yaml

    blocks = re.findall(r"```yaml\n(.*?)```", (DOCS / "mapping.md").read_text(), flags=re.S)
    assert len(blocks) > 40
    for i, block in enumerate(blocks):
        fragment = yaml.safe_load(block)
        whole = fragment if {"source_id", "title", "patient"} <= set(fragment) else _merged(BASE, fragment)
        path = tmp_path / f"{whole['source_id']}.yaml"
        path.write_text(yaml.safe_dump(whole, allow_unicode=True))
        try:
            load_mapping(path)
        except MappingError as exc:
            raise AssertionError(f"docs/mapping.md, YAML example {i + 1}:\n{block}\n{exc}") from None


def _excel(tmp_path: Path, options: str) -> Path:
    """A workbook source's mapping with `options` given on one line (line 18 of the file)."""
    path = _extra(tmp_path, options)
    text = path.read_text().replace("format: csv\nfiles: \"*.csv\"", "format: excel\nfiles: \"*.xlsx\"")
    path.write_text(text)
    assert text.splitlines()[17] == options.rstrip("\n")
    return path


def test_merged_cells_is_an_excel_option_top_left_by_default(tmp_path):
    from etl.extract.adapter import adapter_for

    adapter = adapter_for("excel")
    assert adapter.read_options(load_mapping(_excel(tmp_path, "params: {}\n"))).merged_cells == "top_left"
    mapping = load_mapping(_excel(tmp_path, "options: {header_row: 2, merged_cells: fill}\n"))
    assert adapter.read_options(mapping).merged_cells == "fill"
    assert "options.merged_cells: unknown option of format csv" in _refused(
        _extra(tmp_path, "options: {merged_cells: fill}\n"))


@pytest.mark.parametrize(("options", "expected"), [
    ("options: {merged_cells: fil}", "options.merged_cells: Input should be 'top_left' or 'fill'"),
    ("options: {merge_cells: fill}", "options.merge_cells: unknown option of format excel; allowed: header_row, "
                                     "sheets, merged_cells (did you mean merged_cells?)"),
])
def test_a_merged_cells_typo_is_refused_naming_the_file_and_line(tmp_path, options, expected):
    from etl.onboard.check import mapping_findings

    path = _excel(tmp_path, options + "\n")
    assert f"{path}: {expected}" in _refused(path)  # the nightly run: the file and the key
    mapping, findings = mapping_findings(path)  # rtw check: the file and the line
    assert mapping is None
    assert [(f.where, f.message) for f in findings] == [(f"{path}, line 18", expected)]


def test_the_json_schema_gives_each_format_its_reader_options(tmp_path):
    import jsonschema
    import yaml

    from etl.extract.adapter import adapters

    schema = json_schema()
    assert schema["properties"]["format"]["enum"] == sorted(adapters())
    assert schema["$defs"]["options_excel"]["properties"]["merged_cells"]["enum"] == ["top_left", "fill"]
    raw = yaml.safe_load(_excel(tmp_path, "options: {merged_cells: fill}\n").read_text())
    jsonschema.validate(raw, schema)
    for typo in ({"merged_cells": "fil"}, {"merge_cells": "fill"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**raw, "options": typo}, schema)
    jsonschema.validate({**raw, "format": "csv", "options": {"encoding": "cp1252"}}, schema)


def test_every_reader_option_is_named_in_the_reference():
    from etl.extract.adapter import adapters

    options = _sections((DOCS / "mapping.md").read_text())["Top level"].split("### `options`")[1].split("### ")[0]
    missing = [f"{name}: {key}" for name, adapter in adapters().items() for key in adapter.Options.model_fields
               if f"`{key}`" not in options]
    assert not missing, f"docs/mapping.md, options: name these reader options: {missing}"


def test_a_delivery_names_its_drop_zone_and_never_its_credentials(tmp_path):
    mapping = load_mapping(_extra(tmp_path, "delivery: {url: 'sftp://sftp.example.org:2222/out', connection: c}\n"))
    assert mapping.delivery is not None and mapping.delivery.kind == "sftp"
    assert mapping.delivery.delete_after_pull is False and mapping.delivery.checksum == "optional"
    assert load_mapping(_extra(tmp_path, "delivery: {url: 'file:///mnt/drop'}\n")).delivery.kind == "local"
    assert load_mapping(_extra(tmp_path, "delivery: {url: 's3://bucket/reg', endpoint_url: 'http://s3.local'}\n")
                        ).delivery.kind == "s3"
    assert "a password does not belong in the mapping" in _refused(
        _extra(tmp_path, "delivery: {url: 'sftp://me:secret@sftp.example.org/out', connection: c}\n"))
    assert "an SFTP drop zone needs connection:" in _refused(_extra(tmp_path, "delivery: {url: 'sftp://h/out'}\n"))
    assert "unknown drop zone" in _refused(_extra(tmp_path, "delivery: {url: 'ftp://h/out'}\n"))
    assert "an absolute path or file:///path" in _refused(_extra(tmp_path, "delivery: {url: 'drop/reg'}\n"))
    assert "endpoint_url is for an s3:// drop zone" in _refused(
        _extra(tmp_path, "delivery: {url: '/mnt/drop', endpoint_url: 'http://x'}\n"))
    assert "delivery.unzipp: unknown key; allowed here: url, connection" in _refused(
        _extra(tmp_path, "delivery: {url: '/mnt/drop', unzipp: true}\n"))


@pytest.mark.parametrize(("field", "expected"), [
    ("icdo3_morphology: {column: d, type: icdo3_histology, codes: {NB01: '9500/3', NB02: neuroblastoma}}",
     "tables.diagnosis.fields.icdo3_morphology.codes: code 'NB02' maps to 'neuroblastoma', which type "
     "icdo3_histology cannot read"),
    ("tumour_size_mm: {column: d, type: decimal, codes: {G: big}}",
     "tables.diagnosis.fields.tumour_size_mm.codes: code 'G' maps to 'big'"),
    ("tumour_size_mm: {column: d, scale: 10}",
     "tables.diagnosis.fields.tumour_size_mm: scale is read with type decimal only (this field's type: text)"),
    ("icdo3_morphology: {column: d, format: '%Y'}", "format is read with type date only"),
])
def test_a_code_list_or_key_the_field_s_type_cannot_use_is_refused_naming_the_field(tmp_path, field, expected):
    assert expected in _refused(_write(tmp_path, f"  diagnosis:\n    from: REG\n    fields:\n      {field}\n"))


def test_a_code_list_value_of_the_declared_type_loads(tmp_path):
    mapping = load_mapping(_write(tmp_path, "  diagnosis:\n    from: REG\n    fields:\n"
                                            "      icdo3_morphology: {column: d, type: icdo3_histology, "
                                            "codes: {NB01: '9500/3', X: null}}\n"))
    assert mapping.tables["diagnosis"].fields["icdo3_morphology"].codes == {"NB01": "9500/3", "X": None}


def test_a_key_given_twice_is_refused_naming_the_key_and_its_lines(tmp_path):
    path = _write(tmp_path, FOLLOW_UP)
    # A draft's `fields:` written twice: the fields uncommented under the first would be dropped.
    path.write_text(path.read_text().replace("  fields:\n    sex:", "  fields: {}\n  fields:\n    sex:"))
    message = _refused(path)
    assert "patient.fields: given twice (lines 10 and 11)" in message
    path.write_text(_write(tmp_path, FOLLOW_UP).read_text().replace(
        "{1: male, 2: female}", "{1: male, 2: female, '1': unknown}"))
    assert "patient.fields.sex.codes.1: given twice (lines 11 and 11)" in _refused(path)
