""".xlsb merged cells read as an .xlsx's: calamine gives no merged ranges of an .xlsb, so one was read unfilled
without the notice an .xlsx gets (a patient number merged over a patient's rows quarantined the rows below the
first, unexplained), and `merged_cells: fill` was refused. Its BrtMergeCell records are read here.

The .xlsb is built record by record (test_extract_excel._xlsb: no library here writes one), the .xlsx with
openpyxl, from the same rows and ranges.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest
from test_extract_excel import _xlsb, _xlsb_record

from etl.extract.excel import binary_merged_ranges, binary_sheet_extent, read_staged_workbook, stage_workbook

ROWS: list[list[str | None]] = [["patient", "centre", "visit"], ["P1", "FR-01", "1"], [None, None, "2"],
                                [None, None, "3"], ["P2", "FR-02", "1"], [None, None, "2"]]
#: first row, last row, first column, last column (0-based), as a BrtMergeCell holds them
MERGES = [(1, 3, 0, 0), (1, 3, 1, 1), (4, 5, 0, 0), (4, 5, 1, 1)]


def _xlsx(path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Follow up"
    for row in ROWS:
        sheet.append(row)
    for first, last, left, right in MERGES:
        sheet.merge_cells(start_row=first + 1, end_row=last + 1, start_column=left + 1, end_column=right + 1)
    book.save(path)
    return path


def _staged(path: Path, out: Path, merged_cells: str) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """(columns of sheet 'Follow up', notices with the file name left out, options advised)."""
    result = stage_workbook(path, out, merged_cells=merged_cells)  # type: ignore[arg-type]
    table = read_staged_workbook(out)["Follow up"]
    columns = {name: table.column(name).to_pylist() for name in ("patient", "centre", "visit")}
    return columns, [n.removeprefix(path.name) for n in result.notices], dict(result.advised_options)


@pytest.mark.parametrize("merged_cells", ["top_left", "fill"])
def test_an_xlsb_with_merged_cells_is_staged_as_the_same_xlsx(tmp_path: Path, merged_cells: str) -> None:
    binary = _staged(_xlsb(tmp_path / "registry.xlsb", ROWS, MERGES), tmp_path / "b", merged_cells)
    assert binary == _staged(_xlsx(tmp_path / "registry.xlsx"), tmp_path / "x", merged_cells)
    columns, notices, _advised = binary
    if merged_cells == "fill":
        assert columns["patient"] == ["P1", "P1", "P1", "P2", "P2"]
        assert columns["centre"] == ["FR-01", "FR-01", "FR-01", "FR-02", "FR-02"]
        assert ": sheet 'Follow up': merged cells A2:A4, B2:B4, A5:A6, B5:B6 filled: every cell of a range reads its " \
               "top-left value (merged_cells: fill)" in notices
    else:
        assert columns["patient"] == ["P1", "", "", "P2", ""]
        assert any("merged cells A2:A4, B2:B4, A5:A6, B5:B6 in the data rows" in n for n in notices)


def test_the_merged_ranges_of_an_xlsb_part_are_read_across_blocks(tmp_path: Path) -> None:
    """A BrtMergeCell record cut by a block is read whole with the next one."""
    path = _xlsb(tmp_path / "registry.xlsb", ROWS, MERGES)
    with zipfile.ZipFile(path) as archive:
        part = archive.read("xl/worksheets/sheet1.bin")
    for block in (1, 7, 19, 23, 1 << 20):
        merged = bytearray()
        assert binary_sheet_extent(io.BytesIO(part), block, merged) == (6, 3)
        assert binary_merged_ranges(merged).tolist() == [[2, 0, 4, 0], [2, 1, 4, 1], [5, 0, 6, 0], [5, 1, 6, 1]]


def test_a_merged_range_past_the_sheets_end_is_cut_at_it() -> None:
    """A hostile range to column 4,294,967,295 would have a fill walk every column of it."""
    merged = bytearray(b"".join(n.to_bytes(4, "little") for n in (1, 2, 0, 0xFFFFFFFF)))
    merged += b"".join(n.to_bytes(4, "little") for n in (5, 3, 0, 0))  # last row before the first: no range
    assert binary_merged_ranges(merged).tolist() == [[2, 0, 3, 16_383]]


def test_a_part_without_merged_cells_gives_none(tmp_path: Path) -> None:
    path = _xlsb(tmp_path / "registry.xlsb", ROWS, [])
    with zipfile.ZipFile(path) as archive:
        merged = bytearray()
        binary_sheet_extent(io.BytesIO(archive.read("xl/worksheets/sheet1.bin")), merged=merged)
    assert binary_merged_ranges(merged).shape == (0, 4)
    assert _xlsb_record(0xB0)[:2] == b"\xb0\x01"  # the record type as two 7-bit bytes, as the reader takes it


def test_filling_finds_a_range_s_named_columns_without_walking_its_width():
    """A hostile workbook's merged ranges span every column (A:XFD, 16,384 each; 10,000 of them took 6 s, a million
    some minutes): filling finds the named columns a range covers by bisection. Here ranges as wide as no sheet is
    would never end if walked."""
    import threading

    import numpy as np

    from etl.extract.excel import _FillDown

    wide = 1 << 40
    ranges = np.array([[2, 0, 3, wide], [2, 5, 2, wide]] * 500, dtype=np.int64)
    filler = _FillDown(ranges, first_column=0, kept=[0, 2, 7])
    records = [["", "", ""], ["", "", ""]]
    done = threading.Thread(target=lambda: [filler.fill(n, ["P1", "x", "y", "", "", "z", "", "w"], r)
                                            for n, r in zip((2, 3), records, strict=True)], daemon=True)
    done.start()
    done.join(60)
    assert not done.is_alive()
    assert records == [["P1", "P1", "z"], ["P1", "P1", "P1"]]
