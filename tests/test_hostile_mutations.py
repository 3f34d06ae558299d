"""Hostile exports, found by mutating a synthetic home's files and running the night: each fails its file
with an error naming the file, the sheet and what was expected, never the run (a process abort) nor a crash
of the extract step (a traceback on the terminal)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest
from test_extract_excel import _xlsb_record, _xlsb_text

from etl.extract.delimited import sniff_dialect, stage_csv
from etl.extract.errors import ExtractError
from etl.extract.excel import (
    binary_sheet_extent,
    sheet_extent,
    sheet_parts,
    stage_workbook,
    xls_sheet_extents,
)

SHEET = "xl/worksheets/sheet1.xml"
REPO = Path(__file__).resolve().parents[1]


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
    ("entity", "XmlError"),  # calamine's words (`unrecognized entity &xxe;`) may quote the sheet: its kind alone
    ("missing part", "WorksheetNotFound"),
    ("cut part", "XmlError"),
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
    with pytest.raises(ExtractError, match=rf"IMT_export\.xlsx, sheet 'Enrolment': not readable \({said}\); expected"):
        stage_workbook(path, tmp_path / "staged")


@pytest.mark.parametrize(("cells", "reach"), [
    ('<row><c r="XFD1048576"><v>1</v></c></row>', (1_048_576, 16_384)),  # the row by its cell (calamine's way)
    ("<row r='9'><c r='AB9'><v>1</v></c></row>", (9, 28)),  # quoted as XML allows
    ('<row\n r="9"><c\n r = "AB9"><v>1</v></c></row>', (9, 28)),
    ('<row r="1048576" ht="20" customHeight="1"/>', (2, 26)),  # a formatted empty row: calamine allocates none
    ('<row r="3"><c r="XFD3" s="1"/></row>', (2, 26)),  # nor for a formatted empty cell, nor its row
    # a hunt: a column formatted down to the sheet's end, as Excel writes it, was refused (62,914,560 cells)
    ('<row r="1048576" spans="1:1"><c r="A1048576" s="1"/></row>', (2, 26)),
    ('<row r="7"><c r="XFD7" s="1"></c>\n</row>', (2, 26)),
    ('<row r="9"><c><v>1</v></c></row>', (9, 26)),  # a cell of no reference: the row's
])
def test_a_sheets_reach_is_read_as_calamine_reads_its_cells(tmp_path: Path, cells: str, reach: tuple[int, int]) -> None:
    def edit(parts: dict[str, bytes]) -> None:
        parts[SHEET] = parts[SHEET].replace(b"</sheetData>", f"{cells}</sheetData>".encode())

    with zipfile.ZipFile(_workbook(tmp_path / "IMT_export.xlsx", edit)) as archive:
        assert sheet_extent(archive, SHEET) == reach


# -- .xlsb, .xls: hand-made (no library here writes them), as small as calamine reads them -----------------


def _xlsb(path: Path, cells: list[tuple[int, int, str]]) -> Path:
    """A binary workbook of one sheet 'Enrolment' of text cells (row, column: 0-based), rows in order."""
    last = struct.pack("<4I", 0, max(row for row, _, _ in cells), 0, max(column for _, column, _ in cells))
    # BrtWsDim: the used range, as calamine needs
    records = [_xlsb_record(0x81), _xlsb_record(0x94, last), _xlsb_record(0x91)]
    for row in sorted({row for row, _, _ in cells}):
        records.append(_xlsb_record(0x00, struct.pack("<IIHBBI", row, 0, 300, 0, 0, 0)))  # BrtRowHdr
        records += [_xlsb_record(0x06, struct.pack("<II", column, 0) + _xlsb_text(text))  # BrtCellSt
                    for r, column, text in cells if r == row]
    records += [_xlsb_record(0x92), _xlsb_record(0x82)]
    sheet = _xlsb_record(0x9C, struct.pack("<II", 0, 1) + _xlsb_text("rId1") + _xlsb_text("Enrolment"))  # BrtBundleSh
    relationships = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                     'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                     'officeDocument/2006/relationships/{}" Target="{}"/></Relationships>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_rels/.rels", relationships.format("officeDocument", "xl/workbook.bin"))
        archive.writestr("xl/workbook.bin",
                         _xlsb_record(0x83) + _xlsb_record(0x8F) + sheet + _xlsb_record(0x90) + _xlsb_record(0x84))
        archive.writestr("xl/_rels/workbook.bin.rels", relationships.format("worksheet", "worksheets/sheet1.bin"))
        archive.writestr("xl/worksheets/sheet1.bin", b"".join(records))
    return path


ENROLMENT = [(0, 0, "Patient ID"), (0, 1, "Site"), (1, 0, "P-1"), (1, 1, "FR-01")]


def _staged_in_a_child(path: Path) -> subprocess.CompletedProcess[str]:
    """Stage a workbook in a child process: a reader that aborts (calamine asking for a grid of GiBs) kills
    that process, not pytest's. It prints the refusal."""
    code = ("import sys; from pathlib import Path; from etl.extract.errors import ExtractError; "
            "from etl.extract.excel import stage_workbook\n"
            "try:\n    print('rows', stage_workbook(Path(sys.argv[1]), Path(sys.argv[2])).rows)\n"
            "except ExtractError as error:\n    print(error)\n")
    return subprocess.run([sys.executable, "-c", code, str(path), str(path.parent / "staged")], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_a_stray_value_in_a_binary_workbooks_last_cell_fails_the_file_not_the_process(tmp_path: Path) -> None:
    # calamine allocated the grid to XFD1048576 and aborted (SIGABRT): the guard read .xlsx parts only
    child = _staged_in_a_child(_xlsb(tmp_path / "IMT_export.xlsb", [*ENROLMENT, (1_048_575, 16_383, "x")]))
    assert child.returncode == 0, child.stderr[-400:]
    assert ("IMT_export.xlsb, sheet 'Enrolment': its cells reach row 1,048,576 and column XFD, a grid of up to "
            "17,179,869,184 cells, more than the 50,000,000") in child.stdout


def test_binary_sheet_extent_reads_records_across_blocks(tmp_path: Path) -> None:
    path = _xlsb(tmp_path / "IMT_export.xlsb", [*ENROLMENT, (5, 0, "P-2"), (70, 1, "x" * 200)])  # a 2-byte size
    with zipfile.ZipFile(path) as archive:
        part = sheet_parts(archive)["Enrolment"]
        for block in (1, 7, 11, 64, 1 << 20):
            with archive.open(part) as stream:
                assert binary_sheet_extent(stream, block) == (71, 2)
    assert stage_workbook(path, tmp_path / "staged").rows == 3


def _ole2(stream: bytes, declared: int | None = None) -> bytes:
    """A compound file (OLE2) holding one stream 'Workbook' in 512-byte sectors (FAT, directory, then the
    stream, at least 4,096 bytes: no mini stream); `declared`: the size its directory entry says."""
    stream = stream.ljust(4096, b"\0")
    stream += b"\0" * (-len(stream) % 512)
    count = len(stream) // 512
    fat = [0xFFFFFFFD, 0xFFFFFFFE, *range(3, count + 2), 0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<5H", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<9I", 0, 1, 1, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0) + struct.pack("<I", 0)
              + b"\xff" * 4 * 108)

    def entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
        encoded = name.encode("utf-16-le") + b"\0\0" if name else b""
        return (encoded.ljust(64, b"\0") + struct.pack("<HBB3I", len(encoded), kind, 1, 0xFFFFFFFF, 0xFFFFFFFF, child)
                + bytes(36) + struct.pack("<3I", start, size, 0))

    directory = (entry("Root Entry", 5, 1, 0xFFFFFFFE, 0) + entry("Workbook", 2, 0xFFFFFFFF, 2, declared or len(stream))
                 + entry("", 0, 0xFFFFFFFF, 0, 0) * 2)
    return header + struct.pack("<128I", *fat) + directory + stream


def _biff8(kind: int, data: bytes = b"") -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _xls_stream(cells: list[tuple[int, int, str]]) -> bytes:
    """An .xls's Workbook stream (BIFF8): the globals naming one sheet 'Enrolment', then its text cells (LABEL)."""
    bof = struct.pack("<4H2I", 0x0600, 0x0005, 0, 1997, 0, 6)
    name = b"Enrolment"
    globals_size = len(_biff8(0x0809, bof)) + 4 + 8 + len(name) + len(_biff8(0x000A))
    globals_ = (_biff8(0x0809, bof) + _biff8(0x0085, struct.pack("<I4B", globals_size, 0, 0, len(name), 0) + name)
                + _biff8(0x000A))
    sheet = _biff8(0x0809, struct.pack("<4H2I", 0x0600, 0x0010, 0, 1997, 0, 6))
    sheet += b"".join(_biff8(0x0204, struct.pack("<4HB", row, column, 0, len(text), 0) + text.encode("latin-1"))
                      for row, column, text in cells)
    return globals_ + sheet + _biff8(0x000A)


def test_a_workbook_calamine_panics_on_fails_its_file(tmp_path: Path) -> None:
    # its stream said to be under 4,096 bytes (in the mini stream) where there is none: calamine's index out of
    # bounds is a panic, which pyo3 raises as a BaseException: past `except Exception`, the night's end
    path = tmp_path / "IMT_export.xls"
    path.write_bytes(_ole2(_xls_stream(ENROLMENT), declared=200))
    with pytest.raises(ExtractError, match=r"IMT_export\.xls: not a readable workbook: an OLE2 \(Office\) file that "
                                           r"calamine cannot read as one \(PanicException: index out of bounds"):
        stage_workbook(path, tmp_path / "staged")
    path.write_bytes(_ole2(_xls_stream(ENROLMENT)))
    assert stage_workbook(path, tmp_path / "staged").rows == 1


def test_a_zip_member_failing_its_checksum_fails_the_file_naming_it(tmp_path: Path) -> None:
    # calamine's zip reader raised OSError('Invalid checksum') and the guard's BadZipFile: neither an ExtractError
    path = _xlsb(tmp_path / "IMT_export.xlsb", ENROLMENT)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("xl/workbook.bin")
    data[member.header_offset + 30 + len(member.filename) + 8] ^= 0x42
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"IMT_export\.xlsb: not a readable workbook"):
        stage_workbook(path, tmp_path / "staged")

    def flip_sheet_name(parts: dict[str, bytes]) -> None:
        parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b'name="Enrolment"', b'name="Enrolmenu"')

    path = _workbook(tmp_path / "IMT_export.xlsx", flip_sheet_name)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        original = archive.getinfo("xl/workbook.xml")
    with zipfile.ZipFile(io.BytesIO(_workbook(tmp_path / "plain.xlsx", lambda parts: None).read_bytes())) as archive:
        crc = archive.getinfo("xl/workbook.xml").CRC
    # the changed part with the plain part's checksum, as a byte flipped in transfer leaves it
    at = data.index(struct.pack("<I", original.CRC), original.header_offset)
    data[at:at + 4] = struct.pack("<I", crc)
    central = data.rindex(struct.pack("<I", original.CRC))
    data[central:central + 4] = struct.pack("<I", crc)
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"IMT_export\.xlsx: not a readable workbook: a part of its zip archive is "
                                           r"damaged \(BadZipFile: Bad CRC-32 for file 'xl/workbook\.xml'\)"):
        stage_workbook(path, tmp_path / "staged")


def test_a_stray_value_past_an_xls_sheets_last_column_fails_the_file_not_the_process(tmp_path: Path) -> None:
    # BIFF8 has 256 columns but a cell's column field holds 65,535: calamine allocated 65,536 x 65,536 cells as
    # it opened the workbook (every sheet of an .xls is read then) and aborted
    path = tmp_path / "IMT_export.xls"
    path.write_bytes(_ole2(_xls_stream([*ENROLMENT, (65_535, 65_535, "x")])))
    child = _staged_in_a_child(path)
    assert child.returncode == 0, child.stderr[-400:]
    assert ("IMT_export.xls, sheet 'Enrolment': its cells reach row 65,536 and column CRXP, a grid of up to "
            "4,294,967,296 cells") in child.stdout
    path.write_bytes(_ole2(_xls_stream([*ENROLMENT, (65_535, 1, "x")])))  # the format's last row: read
    assert xls_sheet_extents(path) == {"Enrolment": (65_536, 2)}
    assert stage_workbook(path, tmp_path / "staged").rows == 2


@pytest.mark.parametrize(("cells", "decimal"), [
    ("1.234,5;12.345;2.500", ","),  # a thousands point: 12.345 and 2.500 outvoted 1.234,5 for '.'
    ("1\u00a0234,5;12.345;2.5", ","),  # a no-break space groups thousands, as LibreOffice writes them
    ("1'234.5;12,5;3,5", "."),  # a Swiss apostrophe before a decimal point
    ("12.345;2.5;3,5", "."),  # no thousands separator: the most cells' mark, as before
])
def test_numbers_with_thousands_separators_decide_the_decimal_mark(tmp_path: Path, cells: str, decimal: str) -> None:
    path = tmp_path / "TREP_export.csv"
    path.write_text("patient;dose;weight;height\n" + "".join(f"P-{i};{cells}\n" for i in range(20)), encoding="utf-8")
    dialect = sniff_dialect(path)
    assert dialect.decimal == decimal
    stage_csv(path, tmp_path / "staged.parquet", dialect)  # staged verbatim: harmonise reads or refuses them
    assert pq.read_table(tmp_path / "staged.parquet")["dose"][0].as_py() == cells.split(";")[0]
