"""`rtw scaffold` drafts ICD-O-3 columns with their types, not as a list of the codes one file holds.

A registry's morphology, topography and behaviour columns hold codes from a list of hundreds: drafted as
`codes: {8825/3: 8825/3, ...}` from the codes seen at least 5 times, every rarer code (the next export's,
or this one's masked) was held back as a code not in the list. A column named or labelled like one (in
our sources' languages) whose values are shaped like its codes is drafted `type: icdo3_histology`,
`icdo3_topography` or `icdo3_behaviour`, which reads any code.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from etl.onboard.profile import profile_column
from etl.onboard.scaffold import field_line


def _drafted(name: str, values: list[str], label: str | None = None) -> dict:
    from etl.extract.adapter import ColumnInfo

    info = ColumnInfo(label=label) if label else None
    spec, _ = field_line(profile_column(name, pd.Series(values), info), None, True)
    return yaml.safe_load(spec)


MORPHOLOGIES = ["8825/3"] * 6 + ["9500/3"] * 5 + ["8825/1", "9364/3"]
TOPOGRAPHIES = ["C74.0"] * 6 + ["C49.4"] * 5 + ["C71.6", "C38.1"]
BEHAVIOUR_CODES = '{"0": "0", "1": "1", "2": "2", "3": "3", "9": null}'  # 9, unknown: no value


@pytest.mark.parametrize(("name", "values", "expected"), [
    ("MORPH", MORPHOLOGIES, "icdo3_histology"),
    ("morfologia", ["8720"] * 6 + ["8370"] * 5 + ["9364"], "icdo3_histology"),  # the histology alone
    ("histologie", [v.replace("/", "") for v in MORPHOLOGIES], "icdo3_histology"),  # 88253
    ("istologia", MORPHOLOGIES, "icdo3_histology"),
    ("Morphologie_ICD_O", MORPHOLOGIES, "icdo3_histology"),
    ("TOPO", TOPOGRAPHIES, "icdo3_topography"),
    ("topografia", [v.replace(".", "") for v in TOPOGRAPHIES], "icdo3_topography"),  # without the dot
    ("topografía", TOPOGRAPHIES, "icdo3_topography"),
    ("primary_site", TOPOGRAPHIES, "icdo3_topography"),
    ("Lokalisation", TOPOGRAPHIES, "icdo3_topography"),
    ("localizzazione", TOPOGRAPHIES, "icdo3_topography"),
    ("comportamento", ["3"] * 12 + ["1"], "icdo3_behaviour"),
    ("comportement", ["3"] * 6 + ["2"] * 5, "icdo3_behaviour"),
    ("gedrag", ["3"] * 11, "icdo3_behaviour"),
    ("Dignität", ["3"] * 11, "icdo3_behaviour"),
])
def test_an_icdo3_column_is_drafted_with_its_type_and_no_code_list(name, values, expected):
    # A behaviour's codes are ICD-O-3's, not those seen: 9 (unknown) read as no value (test_onboard_grades.py).
    unknown = {"codes": {"0": "0", "1": "1", "2": "2", "3": "3", "9": None}} if expected == "icdo3_behaviour" else {}
    assert _drafted(name, values) == {"column": name, "type": expected, **unknown}


def test_a_label_names_the_code_as_a_name_does():
    assert _drafted("DXMORPH", MORPHOLOGIES, "ICD-O-3 Morphology")["type"] == "icdo3_histology"
    assert _drafted("VAR12", TOPOGRAPHIES, "Primary tumour site (ICD-O-3)")["type"] == "icdo3_topography"


@pytest.mark.parametrize(("name", "values"), [
    ("SITE", ["NL01"] * 6 + ["GB01"] * 6),  # a centre, named like a site
    ("site", ["C01"] * 6 + ["C02"] * 6),  # centres numbered like a category
    ("sede", ["Milano"] * 6 + ["Roma"] * 6),
    ("stadio", ["3"] * 6 + ["2"] * 6),  # digits named otherwise (a stage): a code list still
    ("sesso", ["1"] * 6 + ["2"] * 6),
    ("morph_reviewed", ["Y"] * 6 + ["N"] * 6),  # named like a morphology, not shaped like one
    ("istotipo", ["neuroblastoma"] * 6 + ["ganglioneuroma"] * 6),
])
def test_a_column_named_or_shaped_like_icdo3_but_not_both_keeps_its_codes(name, values):
    assert "type" not in _drafted(name, values) and "codes" in _drafted(name, values)


def test_the_shape_allows_a_few_errors_and_not_more():
    from etl.onboard.profile import icdo3_shape

    assert icdo3_shape({"8825/3": 18, "9999": 1, "NK": 1}) == "morphology"  # 9999: a data error, still a shape
    assert icdo3_shape({"C74.0": 8, "unknown": 2}) is None
    assert icdo3_shape({"C74.0": 5, "C740": 5, "C71": 1}) == "topography"  # a missing subsite: an error
    assert icdo3_shape({"C01": 6, "C02": 6}) is None  # centres numbered C01, C02: no sites
    assert icdo3_shape({"2019": 10}) is None  # a year is no morphology
    assert icdo3_shape({"8720": 10, "8720/3": 1}) == "histology"  # the behaviour in a column of its own


def test_the_behaviour_a_morphology_writes_is_drafted_as_a_field_of_its_own(tmp_path):
    """`9500/3` read as icdo3_histology gives 9500 and drops the 3: a draft whose morphology column writes the
    behaviour, in a record set without a behaviour column, drafts it as a second field of that column (as the
    shipped mappings read DXMORPH twice); without it the warehouse had no behaviour and no ICCC-3 class."""
    from etl.onboard.scaffold import draft_mapping, read_sources

    export = tmp_path / "REG_Casi_20261101.csv"
    cases = {"cod_paz": [f"PZ-{100 + i}" for i in range(13)], "MORPH": MORPHOLOGIES, "TOPO": TOPOGRAPHIES}
    pd.DataFrame(cases).to_csv(export, index=False)
    fields = [line for line in draft_mapping(read_sources([export])).text.splitlines() if "<field>:" in line]
    assert [f.split("<field>: ")[1].split("  #")[0] for f in fields] == [
        '{column: "MORPH", type: icdo3_histology}', '{column: "MORPH", type: icdo3_behaviour}',
        '{column: "TOPO", type: icdo3_topography}']
    pd.DataFrame({**cases, "comportamento": ["3"] * 13}).to_csv(export, index=False)  # a column of its own
    text = draft_mapping(read_sources([export])).text
    assert '{column: "MORPH", type: icdo3_behaviour}' not in text
    assert '{column: "comportamento", type: icdo3_behaviour, codes: ' + BEHAVIOUR_CODES + '}' in text


def test_a_draft_s_icdo3_fields_read_a_code_the_file_did_not_hold(tmp_path):
    """The draft's fields, uncommented into a diagnosis table, read a rarer morphology and an undotted site of
    the next export: `rtw check` finds nothing to hold back; the code list drafted before missed them."""
    from etl.onboard.check import check_source
    from etl.onboard.scaffold import draft_mapping, read_sources

    rows = 13
    frame = pd.DataFrame({"cod_paz": [f"PZ-{100 + i}" for i in range(rows)], "morfologia": MORPHOLOGIES,
                          "comportamento": ["3"] * rows, "topografia": TOPOGRAPHIES})
    export = tmp_path / "REG_Casi_20261101.csv"
    frame.to_csv(export, sep=";", index=False)
    text = draft_mapping(read_sources([export], "reg_casi")).text
    fields = [line.split("<field>: ")[1].split("  #")[0] for line in text.splitlines() if "<field>:" in line]
    assert fields == ['{column: "morfologia", type: icdo3_histology}',
                      '{column: "comportamento", type: icdo3_behaviour, codes: ' + BEHAVIOUR_CODES + '}',
                      '{column: "topografia", type: icdo3_topography}']
    landing = tmp_path / "landing" / "reg_casi"
    landing.mkdir(parents=True)
    frame.assign(morfologia=["9364/3"] * rows, topografia=["C381"] * rows).to_csv(
        landing / "REG_Casi_20261102.csv", sep=";", index=False)
    table = ("tables:\n  diagnosis:\n    from: REG_Casi\n    fields:\n"
             "      icdo3_morphology: " + fields[0] + "\n      icdo3_behaviour: " + fields[1]
             + "\n      icdo3_topography: " + fields[2] + "\n")
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "reg_casi.yaml").write_text(text.replace("tables: {}\n", table))
    report = check_source("reg_casi", sources, tmp_path / "landing")
    assert report.usable and report.findings == (), report.findings
