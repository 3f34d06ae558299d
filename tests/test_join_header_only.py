"""A joined record set holding its header only (AE.csv before the first adverse event) is judged as one with
records: the night (`join_sections`) and `rtw check` refuse the same columns, with the same message, whether
it has no record or one."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.onboard.check import check_record_sets
from etl.transform.harmonise import HarmoniseError, join_sections
from etl.transform.mapping import SourceMapping

MAPPING = SourceMapping.model_validate({  # a registry whose adverse events come in a section of their own
    "source_id": "reg", "title": "registry", "format": "csv", "files": "*.csv", "record_set": "REG",
    "patient_key": "pid", "record_key": "REG[{rid}]",
    "patient": {"from": "REG", "fields": {"sex": {"column": "sex", "codes": {"1": "male", "2": "female"}}}},
    "tables": {"adverse_event": {"from": ["REG", "AE"], "join_on": ["pid", "rid"], "where": {"serious": ["1"]},
                                 "fields": {"term": {"column": "term"}}}}})
MAPPING_FILE = "sources/reg.yaml"


def _frame(**columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({**columns, "_line": [2], "source_file": ["reg.csv"], "source_file_sha256": ["f" * 64]})


REGISTRY = _frame(pid=["P1"], rid=["1"], sex=["2"])


def _events(records: int, **columns: str) -> pd.DataFrame:
    events = _frame(pid=["P1"], rid=["1"], term=["rash"], serious=["1"], **{c: [v] for c, v in columns.items()})
    return events.iloc[:records]


BROKEN = {  # what a data manager's mapping or export gets wrong, and what the night says of it
    "a column in both": (lambda events: events.assign(sex="1"),
                         "from: [REG, AE]: AE and REG both have column(s) sex; a joined record cannot take"),
    "a join_on column missing": (lambda events: events.rename(columns={"rid": "RID"}),
                                 "from: [REG, AE]: cannot join on rid: not a column of AE; set join_on:"),
}


@pytest.mark.parametrize("records", [0, 1], ids=["header only", "one record"])
@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_a_section_is_refused_alike_with_its_header_only_or_with_records_by_the_night_and_rtw_check(broken, records):
    # A header-only AE.csv used to skip the night's checks: its columns were added to the head unchecked.
    breaking, said = BROKEN[broken]
    record_sets = {"REG": REGISTRY, "AE": breaking(_events(records))}
    with pytest.raises(HarmoniseError) as refused:
        join_sections(MAPPING, record_sets)
    assert str(refused.value).startswith(f"{MAPPING_FILE}: {said}")
    errors = [(f.where, f.message) for f in check_record_sets(MAPPING, record_sets) if f.severity == "error"]
    assert errors == [(MAPPING_FILE, str(refused.value).removeprefix(f"{MAPPING_FILE}: "))]


@pytest.mark.parametrize("head", ["header only", "missing"])
def test_a_section_without_a_join_on_column_is_refused_when_its_head_has_no_record(head):
    # It stopped the night with a bare KeyError ('rid' not in index), and rtw check said nothing.
    record_sets = {"AE": _events(1).rename(columns={"rid": "RID"})}
    if head == "header only":
        record_sets["REG"] = REGISTRY.iloc[:0]
    with pytest.raises(HarmoniseError, match=r"cannot join on rid: not a column of AE"):
        join_sections(MAPPING, record_sets)
    assert [f.message for f in check_record_sets(MAPPING, record_sets) if f.where == MAPPING_FILE] == [
        "from: [REG, AE]: cannot join on rid: not a column of AE; set join_on: to the columns that identify one "
        "record in every listed record set"]


def test_a_header_only_section_joins_nothing_and_its_columns_reach_the_head_empty():
    frames, strays = join_sections(MAPPING, {"REG": REGISTRY, "AE": _events(0)})
    assert strays == {} and set(frames) == {"REG"}
    assert frames["REG"][["pid", "sex", "term", "serious"]].to_dict("records") == [
        {"pid": "P1", "sex": "2", "term": "", "serious": ""}]
