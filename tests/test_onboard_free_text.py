"""Free text is told from codes by its column's name and its values' form, not by length alone.

A note of 40 characters or less that repeats (`città di Forlì` on six rows) was profiled as a code, its
text shown, and drafted as `codes:`, under which every other note would be held back as a code not
listed. A column named like notes, comments or remarks (in our sources' languages), or whose values
are sentences, is free text: `text`, no value shown, none drafted. Short code columns stay code lists.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from etl.cli import app
from etl.extract.adapter import ColumnInfo
from etl.onboard.profile import profile_column
from etl.onboard.scaffold import draft_mapping, field_line, read_sources

PLACE = "città di Forlì"


@pytest.mark.parametrize("name", ["note", "NOTES", "nota", "Notiz", "notitie", "commento", "AECOMMENT", "Kommentar",
                                  "comentario", "remarque", "Bemerkung", "Anmerkungen", "osservazioni",
                                  "observaciones", "opmerking", "toelichting", "altro_specificare", "COVAL"])
def test_a_column_named_like_notes_is_free_text_however_short_and_often_repeated(name):
    column = profile_column(name, pd.Series([PLACE] * 6 + [""] * 14))
    assert (column.kind, column.hidden_reason, column.top_values) == ("text", "free text", ())
    spec, note = field_line(column, None, True)
    assert yaml.safe_load(spec) == {"column": name} and PLACE not in note and "free text" in note


def test_a_label_says_free_text_as_a_name_does():
    column = profile_column("VAR7", pd.Series([PLACE] * 6), ColumnInfo(label="Other, specify"))
    assert column.hidden_reason == "free text" and column.top_values == ()


def test_sentences_are_free_text_under_any_name():
    sentences = ["Paziente trasferito, vedi cartella."] * 5 + ["Rivalutato dopo tre mesi"] * 6 + ["stabile"] * 6
    assert profile_column("esito", pd.Series(sentences)).hidden_reason == "free text"
    many_words = ["seguito anche presso il centro di residenza"] * 6 + ["nessuna"] * 6
    assert profile_column("esito", pd.Series(many_words)).hidden_reason == "free text"


@pytest.mark.parametrize(("name", "values"), [
    ("sex", ["M"] * 6 + ["F"] * 5),
    ("STATUS", ["ALIVE"] * 8 + ["DEAD"] * 5 + ["Lost to follow-up"] * 5),
    ("FOLLOWED", ["Y"] * 6 + ["N"] * 6),
    ("ARM", ["Arm A"] * 6 + ["Arm B"] * 6),
    ("ENDRSN", ["Completed as planned"] * 6 + ["Patient/parent decision"] * 5 + ["Toxicity"] * 5),
    ("Disease status", ["Stable disease"] * 6 + ["No evidence of disease"] * 5 + ["Progression"] * 5),
    ("MUTATION", ["NRAS p.G12D"] * 6 + ["KRAS p.G13D"] * 5),  # a full stop inside a word: no sentence
    ("provincia", ["Sevilla"] * 6 + ["Madrid"] * 5),
])
def test_short_codes_stay_code_lists(name, values):
    column = profile_column(name, pd.Series(values))
    assert column.kind == "code" and column.hidden_reason is None, column
    assert "codes" in yaml.safe_load(field_line(column, None, True)[0])


def test_a_registry_s_short_notes_are_neither_shown_nor_drafted(tmp_path):
    export = tmp_path / "REG_Casi_20261101.csv"
    pd.DataFrame({"cod_paz": [f"PZ-{100 + i}" for i in range(20)], "sesso": ["1", "2"] * 10,
                  "note": [PLACE] * 6 + ["vedi cartella"] * 5 + [""] * 9}).to_csv(export, sep=";", index=False)
    shown = CliRunner().invoke(app, ["profile", str(export), "--home", str(tmp_path / "home")],
                               env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert PLACE not in shown.output and "vedi cartella" not in shown.output and "(hidden: free text)" in shown.output
    text = draft_mapping(read_sources([export])).text
    assert PLACE not in text and '{column: "note"}  # values not shown (free text)' in text
    assert '{column: "sesso", codes: {"1": "1", "2": "2"}}' in text
