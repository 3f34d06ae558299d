from pathlib import Path

import pytest

from etl.config import SOURCES_DIR
from etl.transform.mapping import MappingError, load_mapping, load_mappings

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
    assert set(mappings) == {"sacha_fr", "iltb", "registry_it"}
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
