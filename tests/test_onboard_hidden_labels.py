"""The value labels of a column whose values `rtw profile` hides are never shown, nor drafted as codes.

A registry may label its patient numbers with the patients' names (`v1` labelled 'Número de paciente', its codes
labelled 'Nombre Apellido1', ...). The draft mapping gave such a column a code list of those names (an ODM item
named like an identifier with a CodeList too); the profile rebuilt the reader's notice of the value labels by its
own rules and listed the first six of a table of 25 per-patient labels that the night counts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat

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
