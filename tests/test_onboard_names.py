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


def test_a_file_that_cannot_be_read_is_named_without_the_number_and_still_found(tmp_path):
    """A reader's refusal printed by profile and scaffold named the file (and a sheet) as delivered, a patient
    number in it. Now as the run names them, with what finds them again: the file's place among those given,
    the sheet's in its workbook; the line, row and what was expected stay."""
    good = _visits(tmp_path / "Fall_654321_Verlauf.csv", "654321")
    bad = tmp_path / "Fall_123456_Verlauf.csv"
    bad.write_text("PATNR;VISDAT;WERT\n123456;01.02.2024;3\n123456;01.03.2024\n", encoding="utf-8")
    profiled = CliRunner().invoke(app, ["profile", str(bad), "--home", str(tmp_path / "home")], env=WIDE)
    drafted = CliRunner().invoke(app, ["scaffold", str(good), str(bad), "--out", "-"], env=WIDE)
    for result in (profiled, drafted):
        assert result.exit_code == 1 and not NUMBERS.search(result.output), result.output
        assert "Fall_{patient}_Verlauf.csv" in result.output and "line 3: expected 3 fields, found 2" in result.output
    assert "Fall_{patient}_Verlauf.csv (file 2 of the 2 given), line 3" in drafted.output


def test_a_sheet_that_cannot_be_read_is_named_without_the_number_and_its_place_in_the_workbook(tmp_path):
    workbook = _workbook(tmp_path / "register.xlsx")
    for command in (["profile", str(workbook), "--home", str(tmp_path / "home")], ["scaffold", str(workbook),
                                                                                    "--out", "-"]):
        result = CliRunner().invoke(app, [*command, "--option", "header_row=3"], env=WIDE)
        assert result.exit_code == 1 and not NUMBERS.search(result.output), result.output
        assert "sheet 'Pat_{patient}' (sheet 1 of the workbook): the header row 3 is past" in result.output


def test_a_reader_option_refused_says_which_and_the_format_s_options_on_one_line(tmp_path):
    """pydantic's own text ran over several lines, printed with literal \\n, and a link; now one line."""
    workbook = _workbook(tmp_path / "register.xlsx")
    result = CliRunner().invoke(app, ["profile", str(workbook), "--home", str(tmp_path / "home"),
                                      "--option", "header_row=x", "--option", "bogus=1"], env=WIDE)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "rtw: --option header_row: Input should be a valid integer, unable to parse string as an integer; "
        "--option bogus: not an option of this format (excel reader options: header_row, sheets, merged_cells; "
        "docs/adapters.md)")


def test_the_notices_of_sheets_per_patient_say_which_sheet_each_is(tmp_path):
    """Both sheets of a sheet-per-patient workbook read `sheet 'Pat_{patient}': 1 rows`: which notice was which
    could not be told. Each now says its sheet's place, as a refusal does, and one row is a row."""
    from etl.onboard.reading import read_file

    workbook = _workbook(tmp_path / "Verlauf_20261101.xlsx")
    assert read_file(workbook).notices == (
        "Verlauf_20261101.xlsx: sheet 'Pat_{patient}' (sheet 1 of the workbook): 1 row",
        "Verlauf_20261101.xlsx: sheet 'Pat_{patient}' (sheet 2 of the workbook): 1 row")
    result = CliRunner().invoke(app, ["profile", str(workbook), "--home", str(tmp_path / "home")], env=WIDE)
    assert "sheet 'Pat_{patient}' (sheet 2 of the workbook): 1 row\n" in result.output
    assert not NUMBERS.search(result.output)


def test_rtw_check_places_a_sheet_per_patient_it_cannot_read_as_profile_does(tmp_path, monkeypatch):
    """`rtw check` named the sheet of a refusal `sheet 'Pat_{patient}', cell D1: ...`, which of the patients'
    sheets to open could not be told; `rtw profile` says `(sheet 2 of the workbook)`, and now check does too."""
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")  # the workbook was just written
    sources, landing = tmp_path / "sources", tmp_path / "landing" / "kr_sheets"
    sources.mkdir()
    landing.mkdir(parents=True)
    (sources / "kr_sheets.yaml").write_text(
        'source_id: kr_sheets\ntitle: A register with a sheet per patient\nformat: excel\nfiles: "Verlauf_*.xlsx"\n'
        "patient_key: PATNR\nrecord_key: \"{record_set}[{VISDAT}]\"\npatient: {from: \"Pat_{patient}\", fields: {}}\n"
        "tables:\n  follow_up:\n"
        "    from: \"Pat_{patient}\"\n    fields:\n      contact_date: {column: VISDAT, type: date}\n")
    path = _workbook(landing / "Verlauf_20261101.xlsx")
    workbook = openpyxl.load_workbook(path)
    workbook["Pat_654321"]["D1"] = "VISDAT"  # the header repeats a name on the second patient's sheet
    workbook.save(path)
    from etl.onboard.check import check_source

    report = check_source("kr_sheets", sources, tmp_path / "landing")
    refused = [f.message for f in report.errors if "header repeats" in f.message]
    assert len(refused) == 1 and "sheet 'Pat_{patient}' (sheet 2 of the workbook), cell D1" in refused[0], refused
    assert not NUMBERS.search(" ".join(f.where + f.message for f in report.findings))
