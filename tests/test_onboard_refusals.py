"""A file `rtw profile` and `rtw scaffold` cannot read is refused with no patient number in the message: a
registry's CSV delivered named as an SPSS, Stata or SAS file (a rename, a wrong `Save as`) began its
refusal with the file's first 24 bytes, its first row and the patient number in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app

# A headerless export: the first bytes are a patient's row.
ROWS = b"1234567;F;2011-03-04\n7654321;M;2012-01-02\n"


@pytest.mark.parametrize(("name", "what"), [("NRT_cases.sav", "an SPSS data file"),
                                            ("NRT_cases.dta", "a Stata dataset"),
                                            ("NRT_cases.xpt", "a SAS transport file")])
@pytest.mark.parametrize("command", ["profile", "scaffold"])
def test_a_csv_named_as_a_dataset_is_refused_without_its_first_row(tmp_path: Path, name: str, what: str,
                                                                   command: str) -> None:
    path = tmp_path / name
    path.write_bytes(ROWS)
    result = CliRunner().invoke(app, [command, str(path), "--out" if command == "scaffold" else "--home",
                                      str(tmp_path / "out.yaml" if command == "scaffold" else tmp_path)],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert f"{name}: not {what}" in result.output
    assert "it is plain text (a CSV or tab-separated file named like a dataset?)" in result.output
    assert "1234567" not in result.output and "2011" not in result.output


@pytest.mark.parametrize(("name", "what"), [("NRT_cases.sav", "an SPSS data file"), ("NRT_cases.xlsx",
                                                                                    "an Excel or OpenDocument")])
def test_a_utf16_csv_named_as_a_dataset_or_workbook_is_refused_without_its_first_row(tmp_path: Path, name: str,
                                                                                      what: str) -> None:
    """A CSV saved as Unicode text (UTF-16, a NUL after each letter) was refused with its first 16 bytes by the
    Excel adapter: a patient number read through its NULs."""
    path = tmp_path / name
    path.write_bytes(ROWS.decode().encode("utf-16"))
    result = CliRunner().invoke(app, ["profile", str(path), "--home", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert f"{name}: not {what}" in result.output
    assert "it is UTF-16 text (a CSV saved as Unicode text?)" in result.output
    assert "\\x001\\x00" not in result.output and "1\\x002" not in result.output
