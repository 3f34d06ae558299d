"""The record walks that read a sheet's reach before calamine loads it, on a part or stream cut inside its last
record (a transfer stopped short, a hostile writer).

An .xls's Workbook stream: the walk reads a record's fields only where they lie in the stream. A cell whose row
and column are there counts, so a stray value is refused though its text is cut; one cut before them, or a
sheet's name cut, counts nothing; neither reads past the stream's end (the walk reads fields in place, no longer
from a copy of each record cut to what is left). The .xls is built as test_hostile_mutations builds one (no
library here writes one); its stream is 4,096 bytes at least, so that the compound file holds it in sectors of
its own, and its directory entry gives the cut length.

A small .xls's stream is read from the compound file's mini stream.

An .xlsb's sheet part: a record is read once 10 bytes of it lie whole (its head, 2 bytes or more, and a cell's
4-byte column); one cut shorter is left out, and calamine refuses the sheet for it. A merged range cut is left out.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from test_extract_excel import _xlsb_record, _xlsb_text
from test_hostile_mutations import ENROLMENT, _biff8, _ole2, _staged_in_a_child, _xls_stream, _xlsb

from etl.extract.excel import binary_merged_ranges, binary_sheet_extent, stage_workbook, xls_sheet_extents

FOLLOW_UP = [(row, column, f"P-{row}" if column == 0 else "FR-01") for row in range(1, 300) for column in range(2)]
STRAY = _biff8(0x0204, struct.pack("<4HB", 65_535, 65_535, 0, 1, 0) + b"x")  # LABEL: row, column, style, text
RUN = _biff8(0x00BE, struct.pack("<7H", 299, 0, 15, 15, 15, 15, 3))  # MULBLANK: row, first column, styles, last
NAME = _biff8(0x0085, struct.pack("<I4B", 0, 0, 0, 5, 0) + b"Other")  # BOUNDSHEET: offset, state, name


def _cut_after(tmp_path: Path, last: bytes, kept: int) -> Path:
    """An .xls of sheet 'Enrolment' (300 rows, 2 columns) whose stream ends `kept` bytes into `last`'s data."""
    stream = _xls_stream([*ENROLMENT, *FOLLOW_UP])[:-4]  # the sheet's EOF left out: `last` is the last record
    stream += last[:4 + kept]
    path = tmp_path / "IMT_export.xls"
    path.write_bytes(_ole2(stream, declared=len(stream)))
    return path


@pytest.mark.parametrize(("last", "kept", "reach"), [
    (STRAY, 2, (300, 2)),  # its row only: not a cell
    (STRAY, 4, (65_536, 65_536)),  # its row and column, its text cut: counted
    (STRAY, 8, (65_536, 65_536)),
    (RUN, 4, (300, 2)),  # a run's row and first column
    (RUN, 6, (300, 16)),  # a run's last column is its last 2 bytes: those left (a style index, 15)
    (NAME, 6, (300, 2)),  # a sheet's name cut before it: no sheet
], ids=["cell-row", "cell-column", "cell-text", "run-first-column", "run-style", "sheet-name"])
def test_a_stream_cut_in_its_last_record_is_read_as_far_as_the_record_lies(tmp_path: Path, last: bytes, kept: int,
                                                                           reach: tuple[int, int]) -> None:
    assert xls_sheet_extents(_cut_after(tmp_path, last, kept)) == {"Enrolment": reach}


def test_a_stray_value_in_a_cut_last_record_fails_the_file_not_the_process(tmp_path: Path) -> None:
    child = _staged_in_a_child(_cut_after(tmp_path, STRAY, 4))
    assert child.returncode == 0, child.stderr[-400:]
    assert ("IMT_export.xls, sheet 'Enrolment': its cells reach row 65,536 and column CRXP, a grid of up to "
            "4,294,967,296 cells") in child.stdout


def _ole2_small(stream: bytes) -> bytes:
    """A compound file holding a 'Workbook' stream under 4,096 bytes, as one is kept: in the mini stream, 64-byte
    sectors chained by the mini FAT, here last to first (512-byte sectors: FAT, directory, mini FAT, then the
    mini stream's)."""
    count = -(-len(stream) // 64)
    order = list(reversed(range(count)))  # the stream's n-th 64 bytes are in mini sector order[n]
    mini = bytearray(64 * count)
    for n, sector in enumerate(order):
        mini[64 * sector:64 * sector + 64] = stream[64 * n:64 * n + 64].ljust(64, b"\0")
    mini_fat = [0xFFFFFFFF] * 128
    for sector, following in zip(order, [*order[1:], 0xFFFFFFFE]):
        mini_fat[sector] = following
    container = -(-len(mini) // 512)
    fat = [0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFE, *range(4, 3 + container), 0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<5H", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<9I", 0, 1, 1, 0, 4096, 2, 1, 0xFFFFFFFE, 0) + struct.pack("<I", 0)
              + b"\xff" * 4 * 108)

    def entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
        encoded = name.encode("utf-16-le") + b"\0\0"
        return (encoded.ljust(64, b"\0") + struct.pack("<HBB3I", len(encoded), kind, 1, 0xFFFFFFFF, 0xFFFFFFFF, child)
                + bytes(36) + struct.pack("<3I", start, size, 0))

    directory = (entry("Root Entry", 5, 1, 3, len(mini)) + entry("Workbook", 2, 0xFFFFFFFF, order[0], len(stream))
                 + bytes(256))
    return (header + struct.pack("<128I", *fat) + directory + struct.pack("<128I", *mini_fat)
            + bytes(mini).ljust(512 * container, b"\0"))


def test_a_small_xls_is_read_from_the_mini_stream(tmp_path: Path) -> None:
    path = tmp_path / "IMT_export.xls"
    path.write_bytes(_ole2_small(_xls_stream([*ENROLMENT, (6, 1, "FR-02")])))
    assert xls_sheet_extents(path) == {"Enrolment": (7, 2)}
    assert stage_workbook(path, tmp_path / "staged").rows == 2  # calamine reads it alike


# -- .xlsb ------------------------------------------------------------------------------------------------------
SHEET_PART = "xl/worksheets/sheet1.bin"
STRAY_ROW = _xlsb_record(0x00, struct.pack("<IIHBBI", 1_048_575, 0, 300, 0, 0, 0))  # BrtRowHdr: the sheet's last row
STRAY_CELL = _xlsb_record(0x06, struct.pack("<II", 16_383, 0) + _xlsb_text("x"))  # BrtCellSt: column, style, text
MERGE = _xlsb_record(0xB0, struct.pack("<4I", 1, 1, 0, 1))  # BrtMergeCell: A2:B2


def _xlsb_cut(tmp_path: Path, last: bytes) -> Path:
    """test_hostile_mutations' .xlsb of sheet 'Enrolment' whose part ends in `last` (its closing records left out)."""
    path = _xlsb(tmp_path / "IMT_export.xlsb", ENROLMENT)
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts[SHEET_PART] = parts[SHEET_PART].removesuffix(_xlsb_record(0x92) + _xlsb_record(0x82)) + last
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(("kept", "refused"), [
    (8, "not readable (OSError)"),  # its head, column and half its style: under 10 bytes, left out; calamine
    (10, "its cells reach row 1,048,576 and column XFD"),  # refuses the record. 10: its text cut, counted
])
def test_a_stray_value_in_a_cut_last_xlsb_record_fails_the_file_not_the_process(tmp_path: Path, kept: int,
                                                                                 refused: str) -> None:
    child = _staged_in_a_child(_xlsb_cut(tmp_path, STRAY_ROW + STRAY_CELL[:kept]))
    assert child.returncode == 0, child.stderr[-400:]
    assert f"IMT_export.xlsb, sheet 'Enrolment': {refused}" in child.stdout


@pytest.mark.parametrize("block", [1, 7, 1 << 20])
def test_a_cut_last_merged_range_of_an_xlsb_is_left_out(tmp_path: Path, block: int) -> None:
    with zipfile.ZipFile(_xlsb_cut(tmp_path, MERGE + MERGE[:-4])) as archive:
        part = archive.read(SHEET_PART)
    merged = bytearray()
    assert binary_sheet_extent(io.BytesIO(part), block, merged) == (2, 2)
    assert binary_merged_ranges(merged).tolist() == [[2, 0, 2, 1]]
