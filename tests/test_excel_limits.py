"""A workbook bigger than the reader holds fails its file with a message saying what is too big, whatever its
kind: an .ods's refusal comes from calamine itself (it bounds an .ods's repeated rows and cells as it opens it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_extract_excel import _ods, _ods_cell

from etl.extract.errors import ExtractError
from etl.extract.excel import stage_workbook

#: A header, a million empty rows written once (number-rows-repeated), then a patient number 1,000 cells to
#: the right: calamine counts the grid to it, 1,048,571 rows of 1,001 cells.
STRAY_ODS_ROWS = (
    "<table:table-row>" + _ods_cell("patient") + "</table:table-row>"
    '<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/>'
    "</table:table-row>"
    '<table:table-row><table:table-cell table:number-columns-repeated="1000"/>' + _ods_cell("PAT-4711")
    + "</table:table-row>")


def test_an_opendocument_sheet_beyond_the_cell_limit_is_refused_saying_what_is_too_big(tmp_path: Path) -> None:
    """It read "not a readable workbook: a zip archive that calamine cannot read as one (Cell limit exceeded
    (...)); expected a complete ... file (... truncated in transfer?)": a damaged file, which it is not."""
    path = _ods(tmp_path / "registry.ods", STRAY_ODS_ROWS)
    with pytest.raises(ExtractError) as refused:
        stage_workbook(path, tmp_path / "staged")
    assert str(refused.value) == (
        "registry.ods: a sheet's cells (its repeated rows and cells counted) reach a grid of 1,049,619,571 cells, "
        "more than the 100,000,000 the reader (python-calamine) holds; expected the table alone: a value far below "
        "or right of it (a stray keystroke) is cleared by deleting the rows and columns past the table and saving")
    assert "PAT-4711" not in str(refused.value)
    assert not (tmp_path / "staged").exists()


def test_an_opendocument_sheet_of_empty_repeated_rows_and_cells_is_read(tmp_path: Path) -> None:
    """Formatting applied to whole rows and columns repeats empty ones to the sheet's end: no grid, no refusal."""
    rows = STRAY_ODS_ROWS.replace(_ods_cell("PAT-4711"), "")
    result = stage_workbook(_ods(tmp_path / "registry.ods", rows), tmp_path / "staged")
    assert result.rows == 0


def _stray(rows: int, columns: int) -> str:
    """A header and a value at row `rows`, column `columns`, empty cells between: a grid calamine allocates whole
    (32 bytes a cell) as it opens the workbook, though the file is a few hundred bytes."""
    return ("<table:table-row>" + _ods_cell("patient") + "</table:table-row>"
            f'<table:table-row table:number-rows-repeated="{rows - 2}"><table:table-cell '
            f'table:number-columns-repeated="{columns}"/></table:table-row>'
            f'<table:table-row><table:table-cell table:number-columns-repeated="{columns - 1}"/>'
            + _ods_cell("PAT-4711") + "</table:table-row>")


def test_a_workbook_whose_grid_the_reader_cannot_allocate_fails_its_file_not_the_run(tmp_path: Path) -> None:
    """60 million cells, below calamine's own limit: it asks for 3 GiB as it opens the workbook and, refused,
    aborts the process (a Rust allocation failure, nothing to catch): the run's, every source's. The adapter
    reads in a child of its own (etl/extract/isolated.py): here a process that may hold 1 GiB more than it has
    stages the file and goes on, the file refused."""
    from etl.extract.excel import ADAPTER

    path = _ods(tmp_path / "registry.ods", _stray(60_000, 1_000))
    out = tmp_path / "staged" / ADAPTER.staged_name("ab" * 32)
    script = textwrap.dedent(f"""
        import os, resource
        from pathlib import Path
        from etl.extract.errors import ExtractError
        from etl.extract.excel import ADAPTER, ExcelOptions
        held = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (held + (1 << 30), held + (1 << 30)))
        try:
            ADAPTER.stage(Path({str(path)!r}), Path({str(out)!r}), ExcelOptions(), {{}})
        except ExtractError as refused:
            print(refused)
        """)
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(root), "RUST_BACKTRACE": "0"})
    assert child.returncode == 0, child.stderr[-500:]
    assert child.stdout.strip() == (
        "registry.ods: the reader (python-calamine) crashed on the file (SIGABRT): it is damaged, or not the Excel "
        "or OpenDocument workbook it claims to be; expected a complete Excel or OpenDocument workbook (ask for it "
        "again, written anew)")
    assert not out.exists()


def test_rtw_profile_of_a_workbook_the_reader_cannot_allocate_says_why(tmp_path: Path) -> None:
    """`rtw profile` reads a workbook through the adapter's staging, in a child of its own: calamine's abort on
    the grid above ends that child, and the command says why on one line, exit 1, where an abort of its own
    process would end it without a word."""
    path = _ods(tmp_path / "registry.ods", _stray(60_000, 1_000))
    script = textwrap.dedent(f"""
        import os, resource, sys
        from etl.cli import main
        import etl.extract.excel, etl.onboard.pages, etl.onboard.profile, etl.onboard.reading
        held = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (held + (1 << 30), held + (1 << 30)))
        sys.argv = ["rtw", "profile", {str(path)!r}, "--home", {str(tmp_path / "home")!r}]
        main()
        """)
    root = Path(__file__).resolve().parents[1]
    command = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(root), "RUST_BACKTRACE": "0", "COLUMNS": "400"})
    assert command.returncode == 1, command.stderr[-500:]
    assert command.stdout.strip() == (
        "rtw: registry.ods: the reader (python-calamine) crashed on the file (SIGABRT): it is damaged, or not the "
        "Excel or OpenDocument workbook it claims to be; expected a complete Excel or OpenDocument workbook (ask "
        "for it again, written anew)")
