"""Hostile exports, found by mutating a synthetic home's files and running the night: each fails its file
with an error naming the file, the sheet and what was expected, never the run (a process abort) nor a crash
of the extract step (a traceback on the terminal)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from etl.extract.errors import ExtractError
from etl.extract.excel import stage_workbook

SHEET = "xl/worksheets/sheet1.xml"


def _workbook(path: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """A two-row workbook (sheet 'Enrolment'), its parts then edited as a hostile writer would."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Enrolment"
    sheet.append(["Patient ID", "Site"])
    sheet.append(["P-1", "FR-01"])
    plain = io.BytesIO()
    book.save(plain)
    with zipfile.ZipFile(plain) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    edit(parts)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def _stray_cell(reference: str) -> Callable[[dict[str, bytes]], None]:
    def edit(parts: dict[str, bytes]) -> None:
        row = reference.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        parts[SHEET] = parts[SHEET].replace(
            b"</sheetData>", f'<row r="{row}"><c r="{reference}" t="inlineStr"><is><t>x</t></is></c></row>'
                             "</sheetData>".encode())
    return edit


def test_a_stray_value_in_the_sheets_last_cell_fails_the_file_not_the_process(tmp_path: Path) -> None:
    # calamine allocates the grid to XFD1048576 (512 GiB) and aborts the process: the night died with it
    path = _workbook(tmp_path / "IMT_export.xlsx", _stray_cell("XFD1048576"))
    with pytest.raises(ExtractError, match=r"IMT_export\.xlsx, sheet 'Enrolment': its cells reach row 1,048,576 "
                                           r"and column XFD.*expected the table alone"):
        stage_workbook(path, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_a_stray_value_far_down_one_column_is_still_read(tmp_path: Path) -> None:
    # a grid of 1,048,576 x 26 cells fits: the value is read like any other (a second record)
    path = _workbook(tmp_path / "IMT_export.xlsx", _stray_cell("B1048576"))
    assert stage_workbook(path, tmp_path / "staged").rows == 2


@pytest.mark.parametrize(("damage", "said"), [
    ("entity", "unrecognized entity"),
    ("missing part", "WorksheetNotFound"),
    ("cut part", "tag not closed"),
])
def test_a_sheet_calamine_cannot_read_fails_its_file_naming_the_sheet(tmp_path: Path, damage: str, said: str) -> None:
    def edit(parts: dict[str, bytes]) -> None:
        if damage == "entity":  # a DOCTYPE's external entity (XXE): refused, never resolved
            xml = parts[SHEET].decode()
            start = xml.index("<worksheet")
            parts[SHEET] = (xml[:start] + '<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
                            + xml[start:].replace("FR-01", "&xxe;")).encode()
        elif damage == "missing part":
            del parts[SHEET]
        else:
            parts[SHEET] = parts[SHEET][: len(parts[SHEET]) // 2]

    path = _workbook(tmp_path / "IMT_export.xlsx", edit)
    with pytest.raises(ExtractError, match=rf"IMT_export\.xlsx, sheet 'Enrolment': not readable \(.*{said}.*expected"):
        stage_workbook(path, tmp_path / "staged")
