"""rtw profile and rtw scaffold name a file, and its record sets, as the nightly run shows them.

They run on a file a data manager points at, before any mapping says which column is the patient
key: the values of the columns named like one give the numbers' shapes, and any run of six or more
digits that is not a date counts too. What they print, the profile page (its name too) and the
draft mapping hold no patient number; the draft reads the files as a run will.
"""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl
from typer.testing import CliRunner

from etl.cli import app

NUMBERS = re.compile(r"123456|654321|00012|00034")
WIDE = {"COLUMNS": "200"}


def _visits(path: Path, number: str) -> Path:
    path.write_text(f"PATNR;VISDAT;WERT\n{number};01.02.2024;3\n{number};01.03.2024;4\n", encoding="utf-8")
    return path


def _workbook(path: Path) -> Path:
    """A register with a sheet per patient."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for number in ("123456", "654321"):
        sheet = workbook.create_sheet(f"Pat_{number}")
        sheet.append(["PATNR", "VISDAT", "WERT"])
        sheet.append([number, "2024-02-01", 3])
    workbook.save(path)
    return path


def _texts(folder: Path) -> str:
    return "\n".join(f"{p.name}\n{p.read_text(encoding='utf-8')}" for p in sorted(folder.rglob("*")) if p.is_file())


def test_a_profile_names_the_file_and_its_page_without_the_number(tmp_path):
    home = tmp_path / "home"
    for export in (_visits(tmp_path / "Fall_123456_Verlauf.csv", "P123456"),  # no key shape: a long number
                   _visits(tmp_path / "patient-ILTB-00012.csv", "ILTB-00034"),  # the key column's shape
                   _workbook(tmp_path / "Verlauf_20261101.xlsx")):
        result = CliRunner().invoke(app, ["profile", str(export), "--home", str(home)], env=WIDE)
        assert result.exit_code == 0, result.output
        assert not NUMBERS.search(result.output), result.output
    pages = home / "reports" / "profiles"
    assert sorted(p.name for p in pages.iterdir()) == [
        "Fall_{patient}_Verlauf.html", "Verlauf_20261101.html", "patient-{patient}.html"]
    assert "Pat_{patient}" in _texts(pages) and not NUMBERS.search(_texts(pages))


def test_a_draft_holds_no_patient_number_and_reads_the_files_as_a_run_does(tmp_path):
    from etl.onboard.scaffold import draft_mapping, read_sources, validate_draft

    files = [_visits(tmp_path / f"patient-ILTB-{n}.csv", f"ILTB-{n}") for n in ("00012", "00034")]
    per_patient = draft_mapping(read_sources(files))
    assert 'files: "patient-*.csv"' in per_patient.text and not NUMBERS.search(per_patient.text)
    assert validate_draft(per_patient) == []
    sheets = draft_mapping(read_sources([_workbook(tmp_path / "Verlauf_20261101.xlsx")]))
    assert 'from: "Pat_{patient}"' in sheets.text and not NUMBERS.search(sheets.text)
