"""The value labels of a column whose values `rtw profile` hides are never shown, nor drafted as codes.

A registry may label its patient numbers with the patients' names (`v1` labelled 'Número de paciente', its codes
labelled 'Nombre Apellido1', ...). The draft mapping gave such a column a code list of those names (an ODM item
named like an identifier with a CodeList too); the profile rebuilt the reader's notice of the value labels by its
own rules and listed the first six of a table of 25 per-patient labels that the night counts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat

from etl.extract.spss import stage_spss
from etl.onboard.profile import profile_file
from etl.onboard.reading import read_file
from etl.onboard.scaffold import draft_mapping, read_sources

NAMES = {float(i): f"Nombre Apellido{i}" for i in range(1, 7)}
PER_PATIENT = {float(i): f"Persona{i}" for i in range(1, 26)}  # a name per patient under a plain name


def _export(folder: Path) -> Path:
    frame = pd.DataFrame({"pat_nr": [float(i % 6 + 1) for i in range(12)], "v1": [float(i % 6 + 1) for i in range(12)],
                          "ref": [float(i % 6 + 1) for i in range(12)], "sexo": [1.0, 2.0] * 6})
    path = folder / "NRX_20261101.sav"
    pyreadstat.write_sav(frame, str(path), column_labels={"v1": "Número de paciente"}, variable_value_labels={
        "pat_nr": NAMES, "v1": NAMES, "ref": PER_PATIENT, "sexo": {1: "Hombre", 2: "Mujer"}})
    return path


def test_an_identifying_column_with_value_labels_is_drafted_without_them(tmp_path):
    draft = draft_mapping(read_sources([_export(tmp_path)], "nrx")).text
    assert "Apellido" not in draft
    v1 = [line for line in draft.splitlines() if '"v1"' in line]
    assert v1 and all("codes:" not in line and "6 value labels not shown" in line for line in v1), v1


def test_the_profile_says_the_value_labels_as_the_night_does(tmp_path):
    path = _export(tmp_path)
    labels = next(n for n in profile_file(read_file(path)).notices if "value labels, not applied" in n)
    night = next(n for n in stage_spss(path, tmp_path / "staged.parquet", lineage={
        "source_file": path.name, "source_file_sha256": "0" * 64}).notices if "value labels, not applied" in n)
    assert "Persona" not in labels and "Apellido" not in labels
    assert "ref: 25 value labels, not listed (more than 20: so long a table may name each patient" in labels
    assert "pat_nr: 6 value labels, not listed (identifier-like name)" in labels
    assert labels == night.replace("(an identifying variable)", "(identifier-like name)")


def test_a_hidden_column_s_labels_are_counted_under_the_reader_s_cap_of_variables(tmp_path):
    columns = {f"v{i:02d}": [1.0, 2.0] * 6 for i in range(14)}
    frame = pd.DataFrame({"pat_nr": [float(i % 6 + 1) for i in range(12)], **columns})
    path = tmp_path / "NRX_20261101.sav"
    pyreadstat.write_sav(frame, str(path), variable_value_labels={
        "pat_nr": NAMES, **{name: {1: "no", 2: "sí"} for name in columns}})
    labels = next(n for n in profile_file(read_file(path)).notices if "value labels, not applied" in n)
    assert "Apellido" not in labels and "v10 1 'no'" in labels and "v11" not in labels
    assert labels.endswith("; and 3 more (the staged file's metadata has all)"), labels
