"""`rtw check` reads a column's or template's values as the nightly run does (harmonise's public `given_reader`):
a template whose parts are all `null_values` gives no value, and an empty column or template gives one when ""
is not among `null_values`. Check used to read them its own way: it called `NK-NK` a date no format reads (an
error: the mapping unusable) where the night loaded every record, and said nothing of the empty values the night
quarantines when a mapping's `null_values` leaves "" out."""

from __future__ import annotations

import pandas as pd
from reg_mapping import reg_mapping

from etl.onboard.check import check_record_sets
from etl.transform.harmonise import harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey

_PATIENT = """
patient:
  from: REG
  fields:
    birth_date: {type: date, required: true, template: "{anio}-{mes}", format: "%Y-%m"}
    sex: {column: sexo, codes: {H: male, M: female}}
"""
_TEMPLATE = "record set REG, template {anio}-{mes} (patient.fields.birth_date)"
_COLUMN = "record set REG, column sexo (patient.fields.sex)"


def _mapping(nulls: list[str]) -> SourceMapping:
    return reg_mapping(_PATIENT, null_values=nulls)


def _registry(unknown: str) -> pd.DataFrame:
    """Eight patients, the first six with an unknown year, month and sex written `unknown`."""
    rows = 8
    return pd.DataFrame({
        "pid": [f"P{i}" for i in range(rows)], "rec": [str(i) for i in range(rows)],
        "anio": [unknown] * 6 + ["2011", "2012"], "mes": [unknown] * 6 + ["04", "05"],
        "sexo": [unknown] * 6 + ["H", "M"],
    }).assign(_line=range(2, rows + 2), source_file="REG_1.csv", source_file_sha256="0" * 64)


def _night(mapping: SourceMapping, frame: pd.DataFrame) -> pd.Series:
    """The rules the nightly run quarantines each field's values for (`<field> <rule>` per rejection)."""
    rejections = harmonise_source(mapping, {"REG": frame}, PseudonymKey(b"k" * 32), "run").rejections
    return (rejections["field"] + " " + rejections["rule_id"]).value_counts()


def test_a_template_whose_parts_are_all_null_values_gives_no_value_in_check_as_at_night():
    mapping, frame = _mapping(["", "NK"]), _registry("NK")
    found = {f.where: f for f in check_record_sets(mapping, {"REG": frame})}
    # NK-NK is no value: required but empty, never a date no format reads (an error before: mapping unusable).
    assert found[_TEMPLATE].severity == "warning"
    assert found[_TEMPLATE].message.startswith("required but empty in 6 of 8 records (REG_1.csv:2, ")
    assert [f for f in found.values() if f.severity == "error"] == []
    assert _COLUMN not in found  # an NK column was no value already
    assert _night(mapping, frame).to_dict() == {"birth_date CONF-REQUIRED-PRESENT": 6}


def test_an_empty_value_is_read_when_null_values_leaves_out_the_empty_text_in_check_as_at_night():
    mapping, frame = _mapping(["NK"]), _registry("")
    found = {f.where: f.message for f in check_record_sets(mapping, {"REG": frame})}
    # The night reads "-" and "" as values and quarantines them: check says so, counting them as it does.
    assert found[_TEMPLATE].startswith("6 of 8 values are dates no declared format reads: shape '-' ×6; at ")
    assert found[_COLUMN].startswith("6 of 8 values are codes the code list misses: ")
    assert _night(mapping, frame).to_dict() == {"birth_date CONF-DATE-VALID": 6, "sex CONF-CODE-IN-LIST": 6}
