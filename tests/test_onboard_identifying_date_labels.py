"""The value labels of a birth date written as text: the reader counts them (a variable named like an identifier
and not converted as a date), and `rtw profile`, which calls the column a date, listed them all the same."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat

from etl.extract.spss import stage_spss
from etl.onboard.profile import profile_file
from etl.onboard.reading import read_file


def test_a_text_birth_date_s_labels_are_counted_by_the_profile_as_by_the_night(tmp_path: Path) -> None:
    path = tmp_path / "NRX_20261101.sav"
    frame = pd.DataFrame({"pat_nr": [f"P{i:02d}" for i in range(12)],
                          "dob": [f"{i + 1:02d}/03/2010" for i in range(11)] + ["99/99/9999"],
                          "sexo": [1.0, 2.0] * 6})
    pyreadstat.write_sav(frame, str(path), variable_value_labels={
        "pat_nr": {f"P{i:02d}": f"Nombre Apellido{i}" for i in range(12)}, "dob": {"99/99/9999": "no consta"},
        "sexo": {1: "Hombre", 2: "Mujer"}})
    labels = next(n for n in profile_file(read_file(path)).notices if "value labels, not applied" in n)
    night = next(n for n in stage_spss(path, tmp_path / "staged.parquet", lineage={
        "source_file": path.name, "source_file_sha256": "0" * 64}).notices if "value labels, not applied" in n)
    assert "no consta" not in labels and "Apellido" not in labels
    assert "dob: 1 value label, not listed (identifier-like name)" in labels
    assert labels == night.replace("(an identifying variable)", "(identifier-like name)")


def test_a_converted_birth_date_s_placeholder_labels_stay_listed_as_the_night_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "NRX_20261101.sav"
    day = 86_400.0
    frame = pd.DataFrame({"pat_nr": [f"P{i:02d}" for i in range(12)],
                          "dob": [13_000_000_000.0 + i * day for i in range(11)] + [265_000_000_000.0]})
    pyreadstat.write_sav(frame, str(path), variable_format={"dob": "DATE11"}, variable_value_labels={
        "pat_nr": {f"P{i:02d}": f"Nombre Apellido{i}" for i in range(12)}, "dob": {265_000_000_000.0: "no consta"}})
    labels = next(n for n in profile_file(read_file(path)).notices if "value labels, not applied" in n)
    assert "Apellido" not in labels and "'no consta'" in labels
