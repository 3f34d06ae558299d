"""ICD-O-3 grades and unknown behaviours in `rtw scaffold`'s drafts, and the ICD-O-3 shape in `rtw profile`.

A grade column (grade, grado, Grad, graad, differentiation, differenziazione, ...) of digits 1-9, and a
morphology that writes ICD-O-3's 6th digit (9500/31), were drafted as a code list of the grades seen, or not
at all: the grade was lost. They are drafted `type: icdo3_grade`, but a CTCAE grade (an adverse event's, 1-5)
is not. A behaviour column holding 9 (unknown, as registries write it) was drafted `type: icdo3_behaviour`,
which refuses 9: every such record was held back. The profile now says what ICD-O-3 code a column is shaped
as, and the type the draft reads it with, so a data manager sees why.
"""

from __future__ import annotations

import lxml.html
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from etl.cli import app
from etl.extract.adapter import ColumnInfo
from etl.onboard.profile import is_ctcae_grade, profile_record_set
from etl.onboard.scaffold import draft_mapping, field_line, read_sources

GRADES = ["1"] * 6 + ["2"] * 5 + ["4"] * 3 + ["9"]  # a 4: no behaviour
LOW_GRADES = ["1"] * 6 + ["2"] * 6 + ["3"]  # 1-3: a behaviour or a grade by their shape, the name tells
WIDE = {"COLUMNS": "250"}


def _drafted(name: str, values: list[str], label: str | None = None, record_set: str = "REG") -> dict:
    infos = {name: ColumnInfo(label=label)} if label else None
    column = profile_record_set(record_set, pd.DataFrame({name: values}), infos).columns[0]
    spec, _ = field_line(column, None, True, ctcae=is_ctcae_grade(column, record_set))  # as draft_mapping does
    return yaml.safe_load(spec)


def _fields(text: str) -> list[str]:
    return [line.split("<field>: ")[1].split("  #")[0] for line in text.splitlines() if "<field>:" in line]


@pytest.mark.parametrize("values", [GRADES, LOW_GRADES])
@pytest.mark.parametrize("name", [
    "grade", "GRADE", "tumour_grade", "grado", "grado_istologico", "Grad", "Grading", "Tumorgrad",
    "graad", "differentiatiegraad", "differentiation", "différenciation", "differenziazione",
    "Differenzierung", "diferenciación",
])
def test_a_grade_column_is_drafted_as_an_icdo3_grade(name, values):
    assert _drafted(name, values) == {"column": name, "type": "icdo3_grade"}


def test_a_label_names_a_grade_as_a_name_does():
    assert _drafted("VAR7", GRADES, "Histological grade")["type"] == "icdo3_grade"
    assert _drafted("V12", LOW_GRADES, "Grado di differenziazione")["type"] == "icdo3_grade"


@pytest.mark.parametrize(("name", "label", "record_set"), [
    ("CTCAE grade", None, "AdverseEvents"),
    ("CTCAE grade", None, "Events"),  # the name says CTCAE
    ("AETOXGR", "Standard Toxicity Grade", "AE"),
    ("AE.GRADE", "AEGRADE", "AE"),
    ("ae_grade", None, "REG"),
    ("grado_tossicita", None, "REG"),
    ("Toxizitätsgrad", None, "REG"),
    ("grade", None, "AdverseEvents"),  # a grade on an adverse events' sheet
    ("Grad", None, "Nebenwirkungen"),
    ("grado", None, "Tossicita"),
])
def test_an_adverse_event_s_ctcae_grade_is_no_icdo3_grade(name, label, record_set):
    drafted = _drafted(name, ["1"] * 6 + ["2"] * 6 + ["3"] * 5, label, record_set)
    assert drafted.get("type") != "icdo3_grade"
    # Every CTCAE grade, as the shipped mappings list them: a list of the grades seen (1-3) would hold back the
    # first grade 4 or 5, the severe events a safety analysis looks for.
    assert drafted["codes"] == {str(grade): grade for grade in range(1, 6)}


@pytest.mark.parametrize(("name", "values"), [
    ("grade", ["G1"] * 6 + ["G2"] * 6),  # not digits: not read by the type
    ("grado", ["0"] * 6 + ["1"] * 6),  # a 0 is no grade
    ("stadio", GRADES),  # digits named otherwise
])
def test_a_column_not_named_and_shaped_like_a_grade_keeps_its_codes(name, values):
    assert "type" not in _drafted(name, values) and "codes" in _drafted(name, values)


def test_the_grade_a_morphology_writes_is_drafted_as_a_field_of_its_own(tmp_path):
    """`9500/31` read as icdo3_histology keeps 9500: its behaviour and its grade are drafted as fields of the
    same column, unless the record set has a column of its own for them."""
    export = tmp_path / "REG_Casi_20261101.csv"
    cases = {"cod_paz": [f"PZ-{100 + i}" for i in range(15)],
             "MORPH": ["9500/31"] * 6 + ["8825/39"] * 5 + ["9364/3"] * 4}
    pd.DataFrame(cases).to_csv(export, index=False)
    assert _fields(draft_mapping(read_sources([export])).text) == [
        '{column: "MORPH", type: icdo3_histology}', '{column: "MORPH", type: icdo3_behaviour}',
        '{column: "MORPH", type: icdo3_grade}']
    pd.DataFrame({**cases, "grado": GRADES}).to_csv(export, index=False)  # a grade column of its own
    assert _fields(draft_mapping(read_sources([export])).text) == [
        '{column: "MORPH", type: icdo3_histology}', '{column: "MORPH", type: icdo3_behaviour}',
        '{column: "grado", type: icdo3_grade}']
    pd.DataFrame({**cases, "MORPH": ["9500/3"] * 15}).to_csv(export, index=False)  # no grade written
    assert "icdo3_grade" not in draft_mapping(read_sources([export])).text


def test_a_behaviour_of_9_is_drafted_as_no_value_and_the_draft_holds_no_record_back(tmp_path, monkeypatch):
    """A registry's behaviour 9 (unknown) under `type: icdo3_behaviour` alone is refused: `rtw check` warned
    that those records would be quarantined. The draft reads 9 as no value through the field's codes (a
    source-wide `null_values: ["9"]` would blank a 9 in every column); the type still reads 0-3."""
    from etl.onboard.check import check_source

    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    rows = 14
    frame = pd.DataFrame({"cod_paz": [f"PZ-{100 + i}" for i in range(rows)], "morfologia": ["8720"] * rows,
                          "comportamento": ["3"] * 8 + ["9"] * 6, "grado": GRADES[:rows]})
    export = tmp_path / "REG_Casi_20261101.csv"
    frame.to_csv(export, sep=";", index=False)
    text = draft_mapping(read_sources([export], "reg_casi")).text
    morphology, behaviour, grade = _fields(text)
    assert yaml.safe_load(behaviour) == {"column": "comportamento", "type": "icdo3_behaviour",
                                         "codes": {"0": "0", "1": "1", "2": "2", "3": "3", "9": None}}
    landing = tmp_path / "landing" / "reg_casi"
    landing.mkdir(parents=True)
    frame.to_csv(landing / "REG_Casi_20261101.csv", sep=";", index=False)
    sources = tmp_path / "sources"
    sources.mkdir()
    table = (f"tables:\n  diagnosis:\n    from: REG_Casi\n    fields:\n      icdo3_morphology: {morphology}\n"
             f"      icdo3_behaviour: {behaviour}\n      grade: {grade}\n")
    (sources / "reg_casi.yaml").write_text(text.replace("tables: {}\n", table))
    report = check_source("reg_casi", sources, tmp_path / "landing")
    assert report.usable and report.findings == (), report.findings


def test_the_profile_shows_the_icdo3_shape_and_the_type_drafted(tmp_path):
    """The table and the page had no word of the ICD-O-3 shape scaffold drafts a column's type by: now a
    column says it (only where a column is shaped so; sex codes 1/2, shaped like behaviours, say nothing)."""
    rows = 15
    export = tmp_path / "REG_Casi_20261101.csv"
    pd.DataFrame({"cod_paz": [f"PZ-{100 + i}" for i in range(rows)], "sesso": ["1", "2", "1"] * 5,
                  "morfologia": ["9500/3"] * rows, "diagnosi": ["9500/3"] * rows, "topografia": ["C74.0"] * rows,
                  "comportamento": ["3"] * rows, "grado": GRADES}).to_csv(export, sep=";", index=False)
    page = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["profile", str(export), "--html", str(page),
                                      "--home", str(tmp_path / "home")], env=WIDE)
    assert result.exit_code == 0, result.output
    expected = {
        "sesso": "",
        "morfologia": "morphology 9500/3: icdo3_histology; it writes the behaviour too (icdo3_behaviour)",
        "diagnosi": "morphology 9500/3, not named like one: a code list",
        "topografia": "topography C74.0: icdo3_topography",
        "comportamento": "one digit (behaviour or grade): icdo3_behaviour",
        "grado": "one digit (grade): icdo3_grade",
    }
    assert "ICD-O-3" in result.output
    for text in expected.values():
        assert not text or text in result.output
    tree = lxml.html.fromstring(page.read_text(encoding="utf-8"))
    assert tree.xpath("//thead//th[text()='ICD-O-3']")
    shown = {row.get("data-column"): row.xpath("string(td[@class='icdo3'])").strip()
             for row in tree.xpath("//tr[@class='column']")}
    assert {name: shown[name] for name in expected} == expected
