"""The columns each section of a mapping reads (`SourceMapping.needed_columns`): what the nightly run
and `rtw check` both judge a mapping's columns by."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.onboard.check import check_record_sets
from etl.transform.harmonise import HarmoniseError, harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey

MAPPING = SourceMapping.model_validate({
    "source_id": "reg", "title": "registry", "format": "csv", "files": "*.csv", "record_set": "REG",
    "patient_key": "pid", "record_key": "REG[{rid}]",
    "patient": {"from": "REG", "fields": {"sex": {"column": "sex", "codes": {"1": "male", "2": "female"}}}},
    "tables": {"adverse_event": {"from": ["REG", "AE"], "join_on": ["pid", "rid"], "where": {"serious": ["1"]},
                                 "fields": {"term": {"column": "term"}}}}})


def test_each_section_needs_its_keys_its_where_columns_and_its_fields_columns():
    assert MAPPING.needed_columns("patient") == {"pid": "patient_key", "rid": "record_key",
                                                 "sex": "patient.fields.sex"}
    assert MAPPING.needed_columns("tables.adverse_event") == {
        "pid": "patient_key", "rid": "record_key", "serious": "tables.adverse_event.where",
        "term": "tables.adverse_event.fields.term"}


def _frame(**columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({**columns, "_line": [2], "source_file": ["reg.csv"], "source_file_sha256": ["f" * 64]})


def test_a_where_column_missing_from_a_csv_fails_the_night_as_rtw_check_says():
    # It loaded no adverse event at all, silently: every record's missing value was not in the list.
    registry = _frame(pid=["P1"], rid=["1"], sex=["2"])
    events = _frame(pid=["P1"], rid=["1"], term=["rash"])
    with pytest.raises(HarmoniseError, match=r"^reg\.csv \(record set REG\) has no column serious, which "
                                             r"sources/reg\.yaml maps"):
        harmonise_source(MAPPING, {"REG": registry, "AE": events}, PseudonymKey(b"k"), "run-1")
    assert [(f.severity, f.where) for f in check_record_sets(MAPPING, {"REG": registry, "AE": events})
            if "serious" in f.where] == [("error", "record set REG+AE, column serious (tables.adverse_event.where)")]
    loaded = harmonise_source(MAPPING, {"REG": registry, "AE": events.assign(serious=["1"])},
                              PseudonymKey(b"k"), "run-1")
    assert loaded.tables["adverse_event"]["term"].tolist() == ["rash"]


def test_a_joined_record_set_with_a_header_only_loads_the_head_records_as_rtw_check_says():
    # No adverse event yet: AE.csv holds its header only. Its columns were dropped with it, and the night
    # refused the source for "no column serious, term" while rtw check found nothing wrong.
    registry = _frame(pid=["P1"], rid=["1"], sex=["2"])
    events = pd.DataFrame(columns=["pid", "rid", "term", "serious", "_line", "source_file", "source_file_sha256"])
    assert check_record_sets(MAPPING, {"REG": registry, "AE": events}) == []
    loaded = harmonise_source(MAPPING, {"REG": registry, "AE": events}, PseudonymKey(b"k"), "run-1")
    assert loaded.tables["adverse_event"].empty
    assert loaded.tables["patient_source"]["sex"].tolist() == ["female"]
