"""A sheet's header repeating a name is refused by the positions of the two columns, never the name: in a sheet
without its header row the "names" are the first patient's values (a patient number written twice, or a name), and
the error reaches the night's report and `rtw profile` / `rtw check`. The CSV reader says the same case by the
columns' numbers (etl/extract/delimited.py)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.extract.errors import ExtractError
from etl.extract.excel import stage_workbook

LINEAGE = {"source_file": "NRX_20261101.xlsx", "source_file_sha256": "0" * 64}


def _headerless(folder: Path) -> Path:
    """A sheet whose first row is a record: the patient's number in two columns (the case and its first visit)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Verlauf"
    sheet.append(["Zoë García", "NRX100001", "NRX100001", "12/03/2010"])
    sheet.append(["Luis Pérez", "NRX100002", "NRX100002", "01/04/2011"])
    path = folder / "NRX_20261101.xlsx"
    workbook.save(path)
    return path


def test_a_repeated_header_name_is_said_by_its_columns_letters(tmp_path: Path) -> None:
    with pytest.raises(ExtractError) as raised:
        stage_workbook(_headerless(tmp_path), tmp_path / "staged" / "workbook", lineage=LINEAGE)
    message = str(raised.value)
    assert "NRX100001" not in message and "García" not in message, message
    assert message == ("NRX_20261101.xlsx, sheet 'Verlauf', cell C1: the header repeats the name of column B; "
                       "expected unique column names (or is row 1 a record, the header row missing?)")


def test_rtw_profile_of_a_headerless_sheet_shows_no_value(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["profile", str(_headerless(tmp_path)), "--home", str(tmp_path)],
                                env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "cell C1: the header repeats the name of column B" in result.output
    assert "NRX100001" not in result.output, result.output
