"""The Excel adapter on small workbooks made here (openpyxl .xlsx, hand-made .ods and .xlsb), like registry forms."""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.extract.errors import ExtractError
from etl.extract.excel import (
    ADAPTER,
    ExcelOptions,
    _says,
    cell_text,
    column_letter,
    detect_header_row,
    read_workbook_sheets,
    stage_workbook,
)
from etl.extract.excel_shown import shown_by

LINEAGE = {"source_file": "imt.xlsx", "source_file_sha256": "0" * 64}


def _workbook(tmp_path: Path, sheets: dict[str, list[list[object]]], name: str = "imt.xlsx") -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def _stage(path: Path, **options: object) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    out = path.parent / "staged" / ADAPTER.staged_name("ab" * 32)
    result = ADAPTER.stage(path, out, ExcelOptions.model_validate(options), LINEAGE)
    record_sets = ADAPTER.record_sets(out, "ignored")
    assert result.rows == sum(len(frame) for frame in record_sets.values())
    return record_sets, result.notices


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.drop(columns=list(LINEAGE)).to_dict("records")


ENROLMENT = [
    ["patient", "birth_date", "enrolled_at", "age", "lvef", "alk_rearranged", "visit_time", "centre"],
    ["IMT-001", dt.date(2012, 3, 4), dt.datetime(2019, 5, 3, 10, 20, 30), 7, 64.5, True, dt.time(8, 30), "00123"],
    ["IMT-002", dt.datetime(2010, 1, 2), dt.datetime(2019, 6, 1), 9.0, 0.1 + 0.2, False, None, " Milano "],
    [],
    ["IMT-003", None, None, None, None, None, None, "03/05/2019"],
]


def test_types_become_the_text_the_sheet_shows(tmp_path: Path) -> None:
    record_sets, notices = _stage(_workbook(tmp_path, {"Enrolment": ENROLMENT}))
    frame = record_sets["Enrolment"]
    assert list(frame.columns) == [*ENROLMENT[0], "_line", "source_file", "source_file_sha256"]
    assert _records(frame) == [
        {"patient": "IMT-001", "birth_date": "2012-03-04", "enrolled_at": "2019-05-03T10:20:30", "age": "7",
         "lvef": "64.5", "alk_rearranged": "TRUE", "visit_time": "08:30:00", "centre": "00123", "_line": 2},
        {"patient": "IMT-002", "birth_date": "2010-01-02", "enrolled_at": "2019-06-01", "age": "9",
         "lvef": "0.3", "alk_rearranged": "FALSE", "visit_time": "", "centre": " Milano ", "_line": 3},
        {"patient": "IMT-003", "birth_date": "", "enrolled_at": "", "age": "", "lvef": "",
         "alk_rearranged": "", "visit_time": "", "centre": "03/05/2019", "_line": 5},
    ]
    assert frame["_line"].dtype == "int64"
    assert (frame["source_file_sha256"] == "0" * 64).all()
    assert notices == ("imt.xlsx: sheet 'Enrolment': 3 rows", "imt.xlsx: sheet 'Enrolment': 1 blank row(s) skipped")


def test_a_date_formatted_to_show_its_month_or_year_is_staged_as_shown(tmp_path: Path) -> None:
    """A hunt: `12/2021` typed into Excel is the date 2021-12-01 shown `mmm-yy`; it staged as that day, and
    loaded as an exact date (precision day) nobody gave."""
    rows = [["patient", "diagnosed", "custom", "year", "day", "month_and_time", "text", "typed_in_full"],
            ["IMT-001", dt.datetime(2021, 12, 1), dt.datetime(2021, 11, 1), dt.datetime(2020, 1, 1),
             dt.datetime(2021, 12, 3), dt.datetime(2021, 12, 3, 10, 30), "12/2021", dt.datetime(2021, 12, 17)]]
    path = _workbook(tmp_path, {"Diagnosis": rows, "Other": [["patient", "diagnosed"], ["IMT-002",
                                                                                        dt.datetime(2019, 5, 1)]]})
    book = openpyxl.load_workbook(path)
    sheet = book["Diagnosis"]
    formats = {"B2": "mmm-yy", "C2": r'[$-409]MMMM\ YYYY;@', "D2": "yyyy", "E2": '"on "dd/mm/yyyy',
               "F2": "mm/yyyy hh:mm", "G2": "@", "H2": "mmm-yy"}
    for cell, number_format in formats.items():
        sheet[cell].number_format = number_format
    book["Other"]["B2"].number_format = "MM/YYYY"
    book.save(path)
    record_sets, notices = _stage(path)
    assert _records(record_sets["Diagnosis"]) == [
        {"patient": "IMT-001", "diagnosed": "2021-12", "custom": "2021-11", "year": "2020", "day": "2021-12-03",
         "month_and_time": "2021-12-03T10:30:00", "text": "12/2021", "typed_in_full": "2021-12-17", "_line": 2}]
    assert _records(record_sets["Other"]) == [{"patient": "IMT-002", "diagnosed": "2019-05", "_line": 2}]
    assert ("imt.xlsx: sheet 'Diagnosis': 3 date cell(s) formatted to show a month and year, or a year, and no "
            "day, and holding the first day Excel stores for one typed in: staged as shown (2021-12, 2021; read with "
            "a `%Y-%m` or `%Y` date format)") in notices


def test_an_error_cell_or_a_formula_never_computed_is_staged_as_excel_shows_it_not_as_empty(tmp_path: Path) -> None:
    """A hunt: calamine reads an error cell, and a formula a program wrote without its value, as empty: a centre's
    #DIV/0! LVEF and a size =58 loaded NULL without a word. A formula with its value keeps the value."""
    path = _workbook(tmp_path, {"Enrolment": [["patient", "lvef", "size", "note"], ["IMT-001", 1, "=58", "=A2"],
                                              ["IMT-002", 2, 3, "x"], ["IMT-003", 4, 5, "y"]]})
    book = openpyxl.load_workbook(path)
    sheet = book["Enrolment"]
    sheet["B2"].value, sheet["B2"].data_type = "#DIV/0!", "e"
    sheet["C3"].value, sheet["C3"].data_type = "#N/A", "e"
    book.save(path)
    _rewritten(path, "xl/worksheets/sheet1.xml", b"<f>A2</f><v></v>", b"<f>A2</f><v>IMT-001</v>")  # computed
    record_sets, notices = _stage(path)
    assert [(r["lvef"], r["size"], r["note"]) for r in _records(record_sets["Enrolment"])] == [
        ("#DIV/0!", "=58", "IMT-001"), ("2", "#N/A", "x"), ("4", "5", "y")]
    assert ("imt.xlsx: sheet 'Enrolment': 3 cell(s) hold an Excel error (#N/A, #DIV/0!, ...) or a formula whose value "
            "was never computed: staged as Excel shows them (the error, or =the formula), not as empty, so that a "
            "field they feed refuses them (a workbook saved by Excel keeps its formulas' values)") in notices


def test_a_month_cell_without_its_reference_is_found_by_its_place(tmp_path: Path) -> None:
    """OOXML lets a writer leave out a cell's or row's reference (`r`); calamine reads such a sheet by order."""
    path = _workbook(tmp_path, {"Diagnosis": [["patient", "diagnosed"], ["IMT-001", dt.datetime(2021, 12, 1)],
                                              ["IMT-002", dt.datetime(2020, 3, 1)]]})
    book = openpyxl.load_workbook(path)
    for cell in ("B2", "B3"):
        book["Diagnosis"][cell].number_format = "mmm-yy"
    book.save(path)
    with zipfile.ZipFile(path) as packed:
        parts = {info.filename: packed.read(info) for info in packed.infolist()}
    sheet = next(name for name in parts if name.startswith("xl/worksheets/sheet"))
    parts[sheet] = re.sub(rb'<(c|row) r="[A-Z]*\d+"', rb"<\1", parts[sheet])
    with zipfile.ZipFile(path, "w") as packed:
        for name, data in parts.items():
            packed.writestr(name, data)
    record_sets, _ = _stage(path)
    assert list(record_sets["Diagnosis"]["diagnosed"]) == ["2021-12", "2020-03"]


@pytest.mark.parametrize(("number_format", "shown"), [
    ("mmm-yy", "month"), ("MM/YYYY", "month"), ("[$-407]MMMM YYYY;@", "month"), ("yyyy", "year"), ("yy", "year"),
    ('"Year "yyyy', "year"), ('"d"yyyy', "year"), ("dd/mm/yyyy", None), ("d-mmm-yy", None), ("mm/yyyy hh:mm", None),
    ("mmm", None), ("h:mm", None), ("General", None), ("0.00", None), ("#,##0", None),
    ("0000", 4), ("00;-00", 2), ("0", None), ('"IT-"0000', None), ("0000.0", None)])
def test_a_format_shows_a_month_or_a_year_without_a_day_or_leading_zeros(number_format: str,
                                                                        shown: str | int | None) -> None:
    assert shown_by(number_format) == shown


def test_a_number_formatted_to_show_leading_zeros_is_staged_with_them(tmp_path: Path) -> None:
    """A hunt: a centre typed 0042 (Excel stores 42) and formatted the column 0000, as on another sheet the number
    was typed as text: calamine gave 42 there, and the patient was two, one of them of no enrolment."""
    path = _workbook(tmp_path, {"Enrolment": [["patient", "lvef"], ["0042", 64]],
                                "Follow-up": [["patient", "visit"], [42, 1], [7, 2], [42.5, 3], [-3, 4], ["x", 5]]})
    book = openpyxl.load_workbook(path)
    for row in range(2, 7):
        book["Follow-up"][f"A{row}"].number_format = "0000"
    book.save(path)
    record_sets, notices = _stage(path)
    assert list(record_sets["Follow-up"]["patient"]) == ["0042", "0007", "42.5", "-3", "x"]
    assert list(record_sets["Follow-up"]["visit"]) == ["1", "2", "3", "4", "5"]
    assert ("imt.xlsx: sheet 'Follow-up': 2 number cell(s) formatted to show leading zeros (0000): staged as shown "
            "(0042, not 42)") in notices


def test_one_record_set_per_sheet_in_workbook_order(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"Eligibility": [["patient", "lvef"], ["IMT-001", 64]],
                                "Response (RECIST)": [["patient", "response"], ["IMT-001", "PR"], ["IMT-002", "SD"]],
                                "Notes": []})
    record_sets, notices = _stage(path)
    assert list(record_sets) == ["Eligibility", "Response (RECIST)"]
    assert record_sets["Response (RECIST)"]["response"].tolist() == ["PR", "SD"]
    assert "imt.xlsx: sheet 'Notes' is empty: no record set" in notices
    staged = tmp_path / "staged" / ("ab" * 32)
    assert sorted(p.name for p in staged.iterdir()) == ["001.parquet", "002.parquet", "sheets.json"]
    assert [str(t) for t in pq.read_schema(staged / "002.parquet").types] == ["string", "string", "int64",
                                                                               "string", "string"]


def test_sheets_option_reads_only_those(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"Readme": [["This workbook holds", None, "the IMT trial"], [None, "x", "y"]],
                                "AE": [["patient", "term"], ["IMT-001", "Nausea"]]})
    record_sets, _notices = _stage(path, sheets=["AE"])
    assert list(record_sets) == ["AE"]
    with pytest.raises(ExtractError, match=r"imt\.xlsx: no sheet named 'Adverse events'; expected one of "
                                           r"'Readme', 'AE' \(the source's `options: sheets:`\)"):
        _stage(path, sheets=["Adverse events"])


def test_header_row_skips_title_rows(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"Follow-up": [["Crizotinib IMT trial: follow-up form"], ["exported 2026-11-30"],
                                              ["patient", "contact_date"], ["IMT-001", dt.date(2021, 1, 5)]]})
    record_sets, _notices = _stage(path, header_row=3)
    assert _records(record_sets["Follow-up"]) == [{"patient": "IMT-001", "contact_date": "2021-01-05", "_line": 4}]


def test_header_row_is_found_below_title_lines_on_each_sheet(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {
        "Enrolment": [["Crizotinib IMT trial - CRF export: Enrolment"], ["Exported 01/11/2026; 2 records"],
                      ["Patient ID", "Record", "Site", "LVEF (%)"], ["IMT-001", 1, "FR-01", 66],
                      ["IMT-002", 1, "GB-01", None]],
        "FollowUp": [["Patient ID", "Visit date"], ["IMT-001", dt.date(2026, 3, 10)]]})
    record_sets, notices = _stage(path)
    assert _records(record_sets["Enrolment"]) == [
        {"Patient ID": "IMT-001", "Record": "1", "Site": "FR-01", "LVEF (%)": "66", "_line": 4},
        {"Patient ID": "IMT-002", "Record": "1", "Site": "GB-01", "LVEF (%)": "", "_line": 5}]
    assert _records(record_sets["FollowUp"]) == [{"Patient ID": "IMT-001", "Visit date": "2026-03-10", "_line": 2}]
    assert ("imt.xlsx: sheet 'Enrolment': column names found on row 3, the rows above skipped "
            "(set `options: header_row:` to choose another)") in notices
    assert not any("FollowUp': column names found" in notice for notice in notices)
    with pytest.raises(ExtractError, match=r"sheet 'Enrolment', cell B3: a value under a header cell "
                                           r"with no name \(row 1\)"):
        _stage(path, header_row=1)


@pytest.mark.parametrize(("rows", "expected"), [
    ([["Title", "", ""], ["Exported", "", ""], ["a", "b", "c"], ["x", "y", ""]], 3),
    ([["a", "b", "c", "d"], ["1", "", "", ""], ["2", "3", "4", "5"]], 1),
    ([["patient"], ["IMT-001"]], 1),
    ([["", ""], ["", "patient"], ["", "IMT-001"]], 2),
    ([["Notes on the export", "see below"], ["id", "date", "grade", "term"], ["1", "2", "3", "4"]], 2),
    ([["", ""], ["", ""]], None),
])
def test_detect_header_row(rows: list[list[object]], expected: int | None) -> None:
    assert detect_header_row(enumerate(rows, start=1)) == expected


def test_header_row_errors_name_sheet_and_row(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"Follow-up": [["patient"], ["IMT-001"]]})
    with pytest.raises(ExtractError, match=r"sheet 'Follow-up': the header row 5 is past the sheet's last row \(2\)"):
        _stage(path, header_row=5)
    workbook = openpyxl.Workbook()
    workbook.active.title = "Follow-up"
    workbook.active["A3"] = "patient"
    workbook.active["A4"] = "IMT-001"
    workbook.save(path)
    with pytest.raises(ExtractError, match=r"sheet 'Follow-up', row 1: the header row is blank; expected column "
                                           r"names there \(the first filled row is 3"):
        _stage(path, header_row=1)
    assert _records(_stage(path, header_row=3)[0]["Follow-up"]) == [{"patient": "IMT-001", "_line": 4}]
    assert _records(_stage(path)[0]["Follow-up"]) == [{"patient": "IMT-001", "_line": 4}]
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ExcelOptions(header_row=0)


def test_data_away_from_a1_keeps_sheet_row_numbers_and_cell_names(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "AE"
    sheet["C3"], sheet["D3"] = "patient", "grade"
    sheet["C4"], sheet["D4"] = "IMT-001", 2
    sheet["C6"], sheet["E6"] = "IMT-002", "stray"
    path = tmp_path / "imt.xlsx"
    workbook.save(path)
    with pytest.raises(ExtractError, match=r"imt\.xlsx, sheet 'AE', cell E6: a value under a header cell "
                                           r"with no name \(row 3\)"):
        _stage(path, header_row=3)
    sheet["E6"] = None
    workbook.save(path)
    record_sets, _notices = _stage(path, header_row=3)
    assert _records(record_sets["AE"]) == [{"patient": "IMT-001", "grade": "2", "_line": 4},
                                           {"patient": "IMT-002", "grade": "", "_line": 6}]


def test_unnamed_empty_columns_and_blank_trailing_rows_are_dropped(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Diagnosis"
    sheet.append(["patient", None, "morphology", None])
    sheet.append(["IMT-001", None, "8825/1", None])
    sheet.append(["IMT-002", "  ", "8825/3", None])
    sheet["A10"] = "   "  # a blank cell somebody typed a space into, past the data
    sheet["D12"] = " "  # so does a space past the data, in a column with no name
    path = tmp_path / "imt.xlsx"
    workbook.save(path)
    record_sets, notices = _stage(path)
    assert _records(record_sets["Diagnosis"]) == [{"patient": "IMT-001", "morphology": "8825/1", "_line": 2},
                                                  {"patient": "IMT-002", "morphology": "8825/3", "_line": 3}]
    assert "imt.xlsx: sheet 'Diagnosis': column(s) B, D have no name and no value: left out" in notices
    assert any(n.startswith("imt.xlsx: sheet 'Diagnosis': ") and "blank row(s) skipped" in n for n in notices)


def test_repeated_or_reserved_header_names_are_errors(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"AE": [["patient", "grade", "grade"], ["IMT-001", 1, 2]]})
    with pytest.raises(ExtractError, match=r"imt\.xlsx, sheet 'AE', cell C1: the header repeats the name of column B; "
                                           "expected unique column names"):
        _stage(path)
    path = _workbook(tmp_path, {"AE": [["patient", "_line"], ["IMT-001", 1]]})
    with pytest.raises(ExtractError, match=r"cell B1: the header is '_line', a name the reader reserves"):
        _stage(path)
    path = _workbook(tmp_path, {"AE": [["patient", "source_file"], ["IMT-001", "x.xlsx"]]})
    with pytest.raises(ExtractError, match=r"sheet 'AE': column\(s\) \['source_file'\] clash with the lineage"):
        _stage(path)


def test_header_names_are_trimmed_and_line_breaks_become_spaces(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"Eligibility": [[" patient ", "LVEF\n(%)", 2019], ["IMT-001", 64, "yes"]]})
    frame = _stage(path)[0]["Eligibility"]
    assert list(frame.columns)[:3] == ["patient", "LVEF (%)", "2019"]


def _merged(tmp_path: Path, rows: list[list[object]], merges: list[str], *, title: str = "Follow-up",
            origin: str = "A1") -> Path:
    """A one-sheet workbook with `rows` written from cell `origin` and the `merges` ranges merged."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    first = sheet[origin]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.cell(first.row + r, first.column + c, value)
    for merge in merges:
        sheet.merge_cells(merge)  # openpyxl keeps the top-left value and empties the rest, as Excel does
    path = tmp_path / "imt.xlsx"
    workbook.save(path)
    return path


# A registry's follow-up sheet: the patient number and centre written once, merged over the patient's
# rows; a diagnosis merged over two columns and two rows; a merged block running past a patient's last
# row (row 8: nothing of its own).
FOLLOW_UP = [
    ["patient", "centre", "diagnosis", "subtype", "visit", "status"],
    ["IMT-001", "Milano", "IMT", None, dt.date(2020, 1, 5), "CR"],
    [None, None, None, None, dt.date(2020, 7, 1), "CR"],
    [None, None, "relapse", "ALK+", dt.date(2021, 2, 3), "PD"],
    ["IMT-002", 7, "IMT", "ROS1+", dt.date(2020, 3, 4), "SD"],
    [None, None, None, None, dt.date(2020, 9, 9), None],
    [None, None, None, None, None, "PR"],
    [None, None, None, None, None, None],
    ["IMT-003", "Gent", None, None, dt.date(2021, 1, 1), "CR"],
]
FOLLOW_UP_MERGES = ["A2:A4", "B2:B4", "C2:D3", "A5:A8", "B5:B8"]


def test_merged_cells_keep_the_value_top_left_by_default(tmp_path: Path) -> None:
    record_sets, notices = _stage(_merged(tmp_path, FOLLOW_UP, FOLLOW_UP_MERGES))
    records = _records(record_sets["Follow-up"])
    assert [(r["patient"], r["centre"], r["diagnosis"], r["subtype"]) for r in records] == [
        ("IMT-001", "Milano", "IMT", ""), ("", "", "", ""), ("", "", "relapse", "ALK+"),
        ("IMT-002", "7", "IMT", "ROS1+"), ("", "", "", ""), ("", "", "", ""), ("IMT-003", "Gent", "", "")]
    assert [r["_line"] for r in records] == [2, 3, 4, 5, 6, 7, 9]
    assert ("imt.xlsx: sheet 'Follow-up': merged cells A2:A4, B2:B4, C2:D3, A5:A8, B5:B8 in the data rows: the "
            "value is in the top-left cell only, the others are empty (`options: {merged_cells: fill}` gives every "
            "cell of a range its value)") in notices
    assert ExcelOptions().merged_cells == "top_left"


@pytest.mark.parametrize("chunk_rows", [1, 2, 20_000])
def test_merged_cells_fill_gives_every_row_its_patient(tmp_path: Path, chunk_rows: int) -> None:
    path = _merged(tmp_path, FOLLOW_UP, FOLLOW_UP_MERGES)
    out = tmp_path / f"fill-{chunk_rows}"
    result = stage_workbook(path, out, merged_cells="fill", lineage=LINEAGE, chunk_rows=chunk_rows)
    records = _records(ADAPTER.record_sets(out, "x")["Follow-up"])
    assert [(r["patient"], r["centre"], r["diagnosis"], r["subtype"], r["status"], r["_line"]) for r in records] == [
        ("IMT-001", "Milano", "IMT", "IMT", "CR", 2),  # C2:D3: the range's value over its columns too
        ("IMT-001", "Milano", "IMT", "IMT", "CR", 3),
        ("IMT-001", "Milano", "relapse", "ALK+", "PD", 4),
        ("IMT-002", "7", "IMT", "ROS1+", "SD", 5),
        ("IMT-002", "7", "", "", "", 6),
        ("IMT-002", "7", "", "", "PR", 7),
        ("IMT-003", "Gent", "", "", "CR", 9)]  # row 8 holds only merged cells: a blank row, as before
    assert "imt.xlsx: sheet 'Follow-up': 1 blank row(s) skipped" in result.notices
    assert ("imt.xlsx: sheet 'Follow-up': merged cells A2:A4, B2:B4, C2:D3, A5:A8, B5:B8 filled: every cell of a "
            "range reads its top-left value (merged_cells: fill)") in result.notices
    assert result.advised_options == {}


def test_merged_cells_fill_a_table_away_from_a1_and_below_a_title(tmp_path: Path) -> None:
    rows: list[list[object]] = [["Follow-up export", None, None], [None, None, None],
                                ["patient", "visit", "status"], ["IMT-001", 1, "CR"], [None, 2, "PD"]]
    path = _merged(tmp_path, rows, ["C2:E2", "C5:C6"], origin="C2")  # the title merged over the table's width
    record_sets, notices = _stage(path, merged_cells="fill")
    assert [(r["patient"], r["visit"], r["_line"]) for r in _records(record_sets["Follow-up"])] == [
        ("IMT-001", "1", 5), ("IMT-001", "2", 6)]
    assert not [n for n in notices if "C2:E2" in n]  # above the header: not the data's, not filled, not listed


def test_a_merged_header_is_read_as_delivered(tmp_path: Path) -> None:
    # A name merged over two columns: the second column has no name (not the first's, which would repeat it).
    rows: list[list[object]] = [["patient", "response", None], ["IMT-001", "PR", "2020-05-01"]]
    with pytest.raises(ExtractError, match=r"cell C2: a value under a header cell with no name \(row 1: the cell is "
                                           r"part of merged cells B1:C1, whose text is in B1; unmerge them"):
        _stage(_merged(tmp_path, rows, ["B1:C1"]), merged_cells="fill")
    rows = [["patient", "response", None], ["IMT-001", "PR", None]]
    record_sets, _notices = _stage(_merged(tmp_path, rows, ["B1:C1"]), merged_cells="fill")
    assert list(record_sets["Follow-up"].columns)[:2] == ["patient", "response"]  # the empty column dropped
    # A name merged down from the header into the data rows: they are not filled with the column's name.
    rows = [["patient", "visit"], [None, 1], [None, 2], ["IMT-002", 1]]
    record_sets, notices = _stage(_merged(tmp_path, rows, ["A1:A3"]), merged_cells="fill")
    assert [r["patient"] for r in _records(record_sets["Follow-up"])] == ["", "", "IMT-002"]
    assert ("imt.xlsx: sheet 'Follow-up': merged cells A1:A3 run from the header row (or above it) into the data "
            "rows: the data rows are left empty, not filled with the header's text") in notices
    # A header over two rows, its first column merged down: header_row 2 reads the merge's empty cell.
    rows = [["patient", "visit", None], [None, "date", "status"], ["IMT-001", "2020-01-01", "CR"]]
    with pytest.raises(ExtractError, match=r"cell A3: a value under a header cell with no name \(row 2: the cell is "
                                           r"part of merged cells A1:A2, whose text is in A1"):
        _stage(_merged(tmp_path, rows, ["A1:A2", "B1:C1"]), header_row=2, merged_cells="fill")


def test_the_reader_advises_fill_for_merged_cells_in_the_data_rows(tmp_path: Path) -> None:
    path = _merged(tmp_path, FOLLOW_UP, FOLLOW_UP_MERGES)
    assert ADAPTER.stage(path, tmp_path / "a", ExcelOptions(), LINEAGE).advised_options == {"merged_cells": "fill"}
    plain = _workbook(tmp_path, {"Follow-up": FOLLOW_UP[:2]}, name="plain.xlsx")
    assert ADAPTER.stage(plain, tmp_path / "b", ExcelOptions(), LINEAGE).advised_options == {}


def test_a_changed_merged_cells_option_stages_the_workbook_again() -> None:
    sha = "ab" * 32
    names = {ADAPTER.staged_as(sha, ExcelOptions.model_validate(given))
             for given in ({}, {"merged_cells": "top_left"}, {"merged_cells": "fill"})}
    assert len(names) == 2 and all(name.startswith(sha) for name in names)
    assert ADAPTER.staged_as(sha, ExcelOptions()) == ADAPTER.staged_as(sha, ExcelOptions(merged_cells="top_left"))


def test_merged_cells_is_top_left_or_fill() -> None:
    with pytest.raises(ValueError, match="Input should be 'top_left' or 'fill'"):
        ExcelOptions.model_validate({"merged_cells": "fill_down"})


def test_hidden_sheets_are_read_and_said(tmp_path: Path) -> None:
    path = _workbook(tmp_path, {"AE": [["patient"], ["IMT-001"]], "Lists": [["code"], ["CR"], ["PR"]]})
    workbook = openpyxl.load_workbook(path)
    workbook["Lists"].sheet_state = "hidden"
    workbook.save(path)
    assert read_workbook_sheets(path) == [("AE", False), ("Lists", True)]
    _record_sets, notices = _stage(path)
    assert "imt.xlsx: sheet 'Lists': 2 rows (a hidden sheet)" in notices


def test_small_chunks_give_the_same_rows(tmp_path: Path) -> None:
    rows: list[list[object]] = [["patient", "visit"]]
    rows += [[f"IMT-{i:03d}", dt.date(2020, 1, 1) + dt.timedelta(days=i)] for i in range(7)]
    rows.insert(4, [])
    path = _workbook(tmp_path, {"Visits": rows})
    expected = _records(_stage(path)[0]["Visits"])
    for chunk_rows in (1, 2, 3, 7):
        out = tmp_path / f"chunked-{chunk_rows}"
        stage_workbook(path, out, lineage=LINEAGE, chunk_rows=chunk_rows)
        assert _records(ADAPTER.record_sets(out, "x")["Visits"]) == expected
    assert [r["_line"] for r in expected] == [2, 3, 4, 6, 7, 8, 9]


def test_header_only_sheet_is_an_empty_record_set(tmp_path: Path) -> None:
    record_sets, notices = _stage(_workbook(tmp_path, {"AE": [["patient", "term"]]}))
    assert record_sets["AE"].empty
    assert list(record_sets["AE"].columns) == ["patient", "term", "_line", "source_file", "source_file_sha256"]
    assert "imt.xlsx: sheet 'AE': 0 rows" in notices


def _ods(path: Path, rows: str = "") -> Path:
    """An OpenDocument spreadsheet as office programs write it: sheet 'Follow up' of `rows` (table-row
    elements), by default a header and one row of typed cells."""
    cell = '<table:table-cell office:value-type="{}" {}><text:p>{}</text:p></table:table-cell>'
    header = "".join(cell.format("string", "", name) for name in ("patient", "visit", "alive"))
    values = (cell.format("float", 'office:value="7"', "7") + cell.format("date", 'office:date-value="2020-02-29"', "")
              + cell.format("boolean", 'office:boolean-value="true"', "TRUE"))
    rows = rows or f"<table:table-row>{header}</table:table-row><table:table-row>{values}</table:table-row>"
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="Follow up">{rows}'
        "</table:table></office:spreadsheet></office:body></office:document-content>")
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>')
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _ods_cell(text: str = "", **spans: int) -> str:
    """A text cell, spanning `rows`/`columns` (a merged range's top-left), or `covered` by a merge."""
    if spans.pop("covered", 0):
        return "<table:covered-table-cell/>"
    spanned = " ".join(f'table:number-{kind}-spanned="{n}"' for kind, n in spans.items())
    return f'<table:table-cell office:value-type="string" {spanned}><text:p>{text}</text:p></table:table-cell>'


#: Written as LibreOffice writes it: the table starting in column B (an empty cell first), the patient and
#: centre merged over rows 2-4, a note merged across two columns on two identical rows written once
#: (number-rows-repeated), the used columns and rows padded with repeated empty cells.
MERGED_ODS_ROWS = (
    '<table:table-row><table:table-cell/>' + "".join(_ods_cell(n) for n in ("patient", "centre", "visit"))
    + '<table:table-cell table:number-columns-repeated="1020"/></table:table-row>'
    + '<table:table-row><table:table-cell/>' + _ods_cell("P1", rows=3, columns=1) + _ods_cell("X", rows=3)
    + _ods_cell("1") + "</table:table-row>"
    + "".join(f'<table:table-row><table:table-cell/>{_ods_cell(covered=1) * 2}{_ods_cell(v)}</table:table-row>'
              for v in ("2", "3"))
    + '<table:table-row table:number-rows-repeated="2"><table:table-cell/>' + _ods_cell("P2", columns=2)
    + _ods_cell(covered=1) + _ods_cell("1") + "</table:table-row>"
    + '<table:table-row table:number-rows-repeated="1048570"><table:table-cell table:number-columns-repeated="1024"/>'
    "</table:table-row>")


def test_merged_cells_of_an_opendocument_spreadsheet_are_filled_as_an_xlsx_s(tmp_path: Path) -> None:
    """calamine gives no merged ranges of an .ods: fill read it unfilled (the rows below a patient's first
    without a patient key), with a notice; its content.xml says them, and they are filled as an .xlsx's."""
    path = _ods(tmp_path / "registry.ods", MERGED_ODS_ROWS)
    record_sets, notices = _stage(path, merged_cells="fill")
    assert _records(record_sets["Follow up"]) == [
        {"patient": "P1", "centre": "X", "visit": "1", "_line": 2},
        {"patient": "P1", "centre": "X", "visit": "2", "_line": 3},
        {"patient": "P1", "centre": "X", "visit": "3", "_line": 4},
        {"patient": "P2", "centre": "P2", "visit": "1", "_line": 5},
        {"patient": "P2", "centre": "P2", "visit": "1", "_line": 6},
    ]
    assert ("registry.ods: sheet 'Follow up': merged cells B2:B4, C2:C4, B5:C5, B6:C6 filled: every cell of a range "
            "reads its top-left value (merged_cells: fill)") in notices
    result = ADAPTER.stage(path, tmp_path / "as_delivered", ExcelOptions(), LINEAGE)
    assert [r["patient"] for r in _records(ADAPTER.record_sets(tmp_path / "as_delivered", "x")["Follow up"])] == \
        ["P1", "", "", "P2", "P2"]
    assert result.advised_options == {"merged_cells": "fill"}
    assert ("registry.ods: sheet 'Follow up': merged cells B2:B4, C2:C4, B5:C5, B6:C6 in the data rows: the value "
            "is in the top-left cell only, the others are empty (`options: {merged_cells: fill}` gives every cell "
            "of a range its value)") in result.notices


@pytest.mark.parametrize("block", [1, 4, 9, 1 << 20])
def test_an_opendocument_spreadsheet_is_parsed_only_when_it_holds_a_span(block: int) -> None:
    assert _says(io.BytesIO(b'<table:table-cell table:number-rows-spanned="3">'), b"-spanned=", block)
    assert not _says(io.BytesIO(b"<table:table-cell><text:p>rows-spanned 3</text:p>"), b"-spanned=", block)


def _xlsb_record(kind: int, data: bytes = b"") -> bytes:
    """A BIFF12 record: its type and size as 7-bit varints, then its data."""
    head = bytes([kind & 0x7F | 0x80, kind >> 7]) if kind > 0x7F else bytes([kind])
    size, encoded = len(data), b""
    while not encoded or size:
        encoded += bytes([size & 0x7F | (0x80 if size > 0x7F else 0)])
        size >>= 7
    return head + encoded + data


def _xlsb_text(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def _xlsb(path: Path, rows: list[list[str | None]], merges: list[tuple[int, int, int, int]]) -> Path:
    """A binary workbook (.xlsb) of one sheet 'Follow up' of text cells, with merged cells (first row, last
    row, first column, last column; 0-based), as the BIFF12 records Excel writes: no library here writes one."""
    records = [_xlsb_record(0x81), _xlsb_record(0x94, struct.pack("<4I", 0, len(rows) - 1, 0, len(rows[0]) - 1)),
               _xlsb_record(0x91)]
    for number, cells in enumerate(rows):
        records.append(_xlsb_record(0x00, struct.pack("<IIHBBI", number, 0, 300, 0, 0, 0)))  # BrtRowHdr
        records += [_xlsb_record(0x06, struct.pack("<II", column, 0) + _xlsb_text(text))  # BrtCellSt
                    for column, text in enumerate(cells) if text is not None]
    records += [_xlsb_record(0x92), _xlsb_record(0xB1, struct.pack("<I", len(merges)))]
    records += [_xlsb_record(0xB0, struct.pack("<4I", *merge)) for merge in merges]  # BrtMergeCell
    records += [_xlsb_record(0xB2), _xlsb_record(0x82)]
    sheet = _xlsb_record(0x9C, struct.pack("<II", 0, 1) + _xlsb_text("rId1") + _xlsb_text("Follow up"))  # BrtBundleSh
    workbook = _xlsb_record(0x83) + _xlsb_record(0x8F) + sheet + _xlsb_record(0x90) + _xlsb_record(0x84)
    relationships = '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/{}" Target="{}"/></Relationships>'  # noqa: E501
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_rels/.rels", relationships.format("officeDocument", "xl/workbook.bin"))
        archive.writestr("xl/workbook.bin", workbook)
        archive.writestr("xl/_rels/workbook.bin.rels", relationships.format("worksheet", "worksheets/sheet1.bin"))
        archive.writestr("xl/worksheets/sheet1.bin", b"".join(records))
    return path


def test_opendocument_spreadsheet(tmp_path: Path) -> None:
    record_sets, _notices = _stage(_ods(tmp_path / "registry.ods"))
    assert _records(record_sets["Follow up"]) == [{"patient": "7", "visit": "2020-02-29", "alive": "TRUE", "_line": 2}]


@pytest.mark.parametrize(("content", "expected"), [
    (b"patient;visit\nIMT-001;2020-01-01\n", r"not an Excel or OpenDocument workbook: it is plain text \(a CSV"),
    (b"<html><body><table><tr><td>patient</td></tr></table></body></html>",
     r"not an Excel or OpenDocument workbook: it is an HTML page \(a web application's 'Excel export'\?\)"),
    (b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  ",
     r"not an Excel or OpenDocument workbook: its first bytes are those of a SAS transport file \(\.xpt\)"),
    (b"", r"not an Excel or OpenDocument workbook: the file is empty"),
])
def test_not_a_workbook(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "imt.xls"
    path.write_bytes(content)
    with pytest.raises(ExtractError, match=r"imt\.xls: " + expected):
        _stage(path)
    assert not (tmp_path / "staged").exists() or list((tmp_path / "staged").iterdir()) == []


def test_a_zip_that_is_not_a_workbook_and_a_truncated_workbook(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "export.xlsx", "w") as archive:
        archive.writestr("AE.csv", "patient,term\nIMT-001,Nausea\n")
    with pytest.raises(ExtractError, match=r"export\.xlsx: not a readable workbook: a zip archive that calamine "
                                           r"cannot read as one \(.*\); expected a complete"):
        _stage(tmp_path / "export.xlsx")
    path = _workbook(tmp_path, {"AE": ENROLMENT})
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ExtractError, match=r"imt\.xlsx: not a readable workbook"):
        _stage(path)


def test_a_failing_sheet_leaves_no_half_workbook(tmp_path: Path) -> None:
    good = _workbook(tmp_path, {"AE": [["patient"], ["IMT-001"]]}, name="good.xlsx")
    bad = _workbook(tmp_path, {"AE": [["patient"], ["IMT-001"]], "RS": [["patient", "patient"], ["IMT-001", "x"]]},
                    name="bad.xlsx")
    staged_dir = tmp_path / "staged"
    with pytest.raises(ExtractError, match="sheet 'RS', cell B1: the header repeats the name of column A"):
        stage_workbook(bad, staged_dir / "workbook", lineage=LINEAGE)
    assert list(staged_dir.iterdir()) == []
    stage_workbook(good, staged_dir / "workbook", lineage=LINEAGE)
    with pytest.raises(ExtractError):
        stage_workbook(bad, staged_dir / "workbook", lineage=LINEAGE)
    assert [p.name for p in staged_dir.iterdir()] == ["workbook"]
    assert list(ADAPTER.record_sets(staged_dir / "workbook", "x")) == ["AE"]


def test_restaging_replaces_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "staged" / "workbook"
    first = _workbook(tmp_path, {"AE": [["patient"], ["IMT-001"]], "RS": [["patient"], ["IMT-001"]]}, name="a.xlsx")
    stage_workbook(first, out, lineage=LINEAGE)
    second = _workbook(tmp_path, {"AE": [["patient"], ["IMT-002"]]}, name="b.xlsx")
    stage_workbook(second, out, lineage=LINEAGE)
    assert ADAPTER.record_sets(out, "x")["AE"]["patient"].tolist() == ["IMT-002"]
    assert list(ADAPTER.record_sets(out, "x")) == ["AE"]
    assert [p.name for p in out.parent.iterdir()] == ["workbook"]


def test_a_staged_workbook_is_whole_only_with_every_sheet_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "staged" / "workbook"
    book = _workbook(tmp_path, {"AE": [["patient"], ["IMT-001"]], "RS": [["patient"], ["IMT-001"]]}, name="a.xlsx")
    stage_workbook(book, out, lineage=LINEAGE)
    assert ADAPTER.staged_whole(out)
    first, second = sorted(out.glob("*.parquet"))
    second.write_bytes(second.read_bytes()[:-20])
    assert not ADAPTER.staged_whole(out)
    stage_workbook(book, out, lineage=LINEAGE)
    first.unlink()
    assert not ADAPTER.staged_whole(out)  # a sheet's rows gone with its file
    assert not ADAPTER.staged_whole(tmp_path / "nothing staged")


@pytest.mark.parametrize(("value", "text"), [
    ("x", "x"), (3.0, "3"), (-0.0, "0"), (64.5, "64.5"), (0.1 + 0.2, "0.3"), (1e-7, "0.0000001"),
    (1.5e20, "150000000000000000000"), (12, "12"), (True, "TRUE"), (False, "FALSE"), (None, ""),
    (dt.date(2019, 5, 3), "2019-05-03"), (dt.datetime(2019, 5, 3, 10, 20, 30), "2019-05-03T10:20:30"),
    (dt.datetime(2019, 5, 3, 10, 20, 30, 100_000), "2019-05-03T10:20:30.100"), (dt.time(8, 30), "08:30:00"),
    (dt.timedelta(hours=30, minutes=5), "30:05:00"), (dt.timedelta(seconds=-90), "-00:01:30"),
])
def test_cell_text(value: object, text: str) -> None:
    assert cell_text(value) == text


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_adapter_contract() -> None:
    assert ADAPTER.format == "excel"
    assert not ADAPTER.one_record_set_per_file
    assert {".xlsx", ".xls", ".ods"} <= set(ADAPTER.suffixes)
    assert ADAPTER.staged_name("ab" * 32) == "ab" * 32
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ExcelOptions.model_validate({"delimiter": ";"})


def _rewritten(path: Path, part: str, old: bytes, new: bytes) -> None:
    """The workbook with one of its parts' bytes replaced, the others as they were."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts[part] = parts[part].replace(old, new)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def test_two_sheets_of_one_name_are_refused_not_one_read_twice(tmp_path: Path) -> None:
    """A hunt: calamine finds a sheet by its name, so a workbook naming two sheets alike (Excel never writes one)
    staged the first twice and lost the second's rows without a word."""
    path = _workbook(tmp_path, {"DEMO": [["patient"], ["P001"]], "DEMO2": [["patient"], ["P002"], ["P003"]]})
    _rewritten(path, "xl/workbook.xml", b'name="DEMO2"', b'name="demo"')
    with pytest.raises(ExtractError, match=r"imt\.xlsx: two sheets are named 'demo' \(names compared ignoring "
                                           r"case\); expected each sheet named once") as refused:
        _stage(path)
    assert refused.value.quoted == ("DEMO", "demo")
    assert not (tmp_path / "staged").exists() or list((tmp_path / "staged").iterdir()) == []


def test_what_calamine_quotes_of_a_cell_it_cannot_read_is_left_out(tmp_path: Path) -> None:
    """A hunt: "not a readable workbook: ... (unrecognized entity `&P998877;`)" put a cell's text in the log."""
    rows = f"<table:table-row>{_ods_cell('patient')}{_ods_cell('name')}</table:table-row>" \
           f"<table:table-row>{_ods_cell('P001')}{_ods_cell('Rossi &amp; &P998877;')}</table:table-row>"
    with pytest.raises(ExtractError, match=r"registry\.ods: not a readable workbook: a zip archive that calamine "
                                           r"cannot read as one \(.*\[\.\.\.\].*\)") as refused:
        _stage(_ods(tmp_path / "registry.ods", rows))  # calamine reads an .ods's cells as it opens it
    assert "P998877" not in str(refused.value) and "Rossi" not in str(refused.value)
