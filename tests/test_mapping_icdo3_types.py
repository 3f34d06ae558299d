"""An ICD-O-3 field (icdo3_morphology, icdo3_behaviour, icdo3_topography) is read from a column with its own type.

Without it the field was text: `icdo3_behaviour: {column: comportamento}` loaded, and one record's behaviour 6
(a metastatic site) reached the ICCC-3 step unchecked and crashed the whole source's harmonise ("harmonise
crashed: IcdO3Error: row 0 ..."), holding every record back; a constant was loaded as unchecked as that, and a
constant morphology crashed it too. The mapping is refused when it loads, naming the file, the field and the
type to write; typed, the code is checked and only its record is quarantined.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_icdo3_columns import REGISTRY, _harmonised

from etl.config import SOURCES_DIR
from etl.transform.harmonise import ICDO3_BEHAVIOUR
from etl.transform.mapping import ICDO3_FIELD_TYPES, MappingError, load_mapping


def _registry_with(tmp_path: Path, field: str, spec: str) -> Path:
    """sources/registry_it.yaml with the diagnosis field `field` given as `spec`."""
    text = (SOURCES_DIR / "registry_it.yaml").read_text(encoding="utf-8")
    lines = [f"      {field}: {spec}" if line.startswith(f"      {field}: ") else line for line in text.splitlines()]
    path = tmp_path / "registry_it.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("field", "spec", "expected"), [
    ("icdo3_behaviour", "{column: comportamento}",
     "tables.diagnosis.fields.icdo3_behaviour: an ICD-O-3 code is read with type: icdo3_behaviour (this field's "
     "type: text, the default)"),
    ("icdo3_morphology", "{column: morfologia, type: text, required: true}",
     "tables.diagnosis.fields.icdo3_morphology: an ICD-O-3 code is read with type: icdo3_histology (this field's "
     "type: text)"),
    ("icdo3_topography", "{column: topografia, type: icdo3_histology}",
     "tables.diagnosis.fields.icdo3_topography: an ICD-O-3 code is read with type: icdo3_topography"),
    ("icdo3_behaviour", "{const: '6', type: icdo3_behaviour}",
     "tables.diagnosis.fields.icdo3_behaviour: an ICD-O-3 code is read from a column"),
    ("icdo3_morphology", "{const: '8825', type: icdo3_histology}",
     "tables.diagnosis.fields.icdo3_morphology: an ICD-O-3 code is read from a column"),
])
def test_an_icdo3_field_without_its_type_or_column_is_refused_naming_the_file_field_and_type(tmp_path, field, spec,
                                                                                            expected):
    path = _registry_with(tmp_path, field, spec)
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
    if "type:" in expected:
        assert f"write type: {ICDO3_FIELD_TYPES[field]}" in str(caught.value)


@pytest.mark.parametrize(("spec", "said"), [
    ("{const: '3', type: icdo3_behaviour}", "a constant (const:) would be loaded unchecked"),
    ("{age_at: diagnosis_date, type: icdo3_behaviour}", "age_at: gives an age in days, not a code"),
    ("{ref: patient, key: '{id_paziente}', type: icdo3_behaviour}", "ref: gives the key of another core record"),
])
def test_an_icdo3_field_given_no_column_is_told_what_it_was_given(tmp_path, spec, said):
    # Before, an age_at: or a ref: was called "a constant" too.
    with pytest.raises(MappingError) as caught:
        load_mapping(_registry_with(tmp_path, "icdo3_behaviour", spec))
    assert "an ICD-O-3 code is read from a column (column: or template:)" in str(caught.value)
    assert said in str(caught.value)


@pytest.mark.parametrize("comportamento", ["6", "9"])
def test_a_typed_behaviour_6_or_9_quarantines_its_record_only(comportamento):
    # What the refused mapping is told to write: the value is refused record by record, the source loads.
    result = _harmonised(REGISTRY, morfologia="8260", comportamento=comportamento, topografia="C73.9")
    assert result.tables["diagnosis"].empty
    assert list(result.rejections.rule_id) == [ICDO3_BEHAVIOUR]
    assert result.rejections.iloc[0]["message"] == (
        f"icdo3_behaviour (comportamento): behaviour '{comportamento}' is not an ICD-O-3 behaviour code (0, 1, 2, 3)")
