"""An .xls's reach read from a Workbook stream cut inside its last record (a transfer stopped short, a hostile
writer): the walk reads a record's fields only where they lie in the stream. A cell whose row and column are
there counts, so a stray value is refused though its text is cut; one cut before them, or a sheet's name cut,
counts nothing; neither reads past the stream's end (the walk reads fields in place, no longer from a copy of
each record cut to what is left).

The .xls is built as test_hostile_mutations builds one (no library here writes one); its stream is 4,096 bytes
at least, so that the compound file holds it in sectors of its own, and its directory entry gives the cut length.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from test_hostile_mutations import ENROLMENT, _biff8, _ole2, _staged_in_a_child, _xls_stream

from etl.extract.excel import xls_sheet_extents

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
