"""Returned query files that are hostile or were saved again by a spreadsheet: refused with one line that
names the file, or read back as sent.

The files are written with the writers rtw queries uses, then touched as an attacker or a spreadsheet would.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from test_query_answers import SENT, _expected

from etl.quality.queries import HEADER, _write_csv, _write_xlsx
from etl.quality.responses import MAX_RETURNED_BYTES, ResponseFileError, _xlsx_sheets, read_returned

SHEET = "xl/worksheets/sheet1.xml"


def _answered_row() -> list[object]:
    return [*SENT, "confirmed", "checked", "Q1", "k" * 64]


def _rewritten(source: Path, target: Path, member: str, change) -> None:  # type: ignore[no-untyped-def]
    """A copy of the workbook `source` with one member's XML changed by `change(bytes) -> bytes`."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            copy.writestr(info.filename, change(data) if info.filename == member else data)


def test_a_workbook_that_unpacks_to_more_than_the_limit_is_refused_before_it_is_read(tmp_path):
    """A zip bomb: a few hundred KiB that unpack to more than the limit (here of blanks, which cost a parser
    little; of cells, such a file held the import for minutes and gigabytes)."""
    sent = tmp_path / "sent.xlsx"
    _write_xlsx(sent, [_answered_row()], "IT-X01")
    bomb = tmp_path / "answers.xlsx"
    padding = b" " * (MAX_RETURNED_BYTES + 1)
    _rewritten(sent, bomb, SHEET, lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + padding, 1))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ResponseFileError, match=r"^answers\.xlsx: .*more than the limit of .*\(a zip bomb\?\)"):
        list(read_returned(bomb))


def test_a_csv_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "answers.csv"
    _write_csv(path, [_answered_row()])
    with path.open("r+b") as handle:  # sparse: the size without writing it
        handle.truncate(MAX_RETURNED_BYTES + 1)
    with pytest.raises(ResponseFileError, match=r"^answers\.csv: .*more than the limit of"):
        list(read_returned(path))


def test_a_declared_sheet_size_does_not_pad_every_row_to_it(tmp_path):
    """A workbook may declare its size (<dimension ref="A1:XFD1048576"/>): read as declared, each row came
    padded to 16,384 cells, and one cell in the last row made a 10 KiB file a million such rows, read for
    hours."""
    sent = tmp_path / "sent.xlsx"
    _write_xlsx(sent, [_answered_row()], "IT-X01")
    declared = tmp_path / "answers.xlsx"
    _rewritten(sent, declared, SHEET, lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"',
                                                         xml))
    ((_, rows),) = _xlsx_sheets(declared)
    assert [len(row) for row in rows] == [len(HEADER), len(HEADER)]
    assert [r.cells for r in read_returned(declared)] == [_expected(_answered_row())]


def test_a_csv_cell_longer_than_the_csv_reader_takes_is_refused_with_the_file_and_line(tmp_path):
    """A comment of more than 131,072 characters stopped the import with a traceback (_csv.Error)."""
    path = tmp_path / "answers.csv"
    row = _answered_row()
    row[HEADER.index("comment")] = "x" * 200_000
    _write_csv(path, [_answered_row(), row])
    with pytest.raises(ResponseFileError, match=r"^answers\.csv line 3: .*field larger than field limit"):
        list(read_returned(path))


def test_a_workbook_whose_sheet_cannot_be_parsed_is_refused_with_its_name(tmp_path):
    sent = tmp_path / "sent.xlsx"
    _write_xlsx(sent, [_answered_row()], "IT-X01")
    broken = tmp_path / "answers.xlsx"
    _rewritten(sent, broken, SHEET, lambda xml: xml[: len(xml) // 2])
    with pytest.raises(ResponseFileError, match=r"^answers\.xlsx: not a readable \.xlsx workbook"):
        list(read_returned(broken))
