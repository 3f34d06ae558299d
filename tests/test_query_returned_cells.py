"""Returned cells a spreadsheet re-typed, or that only look re-typed: a boolean cell Excel made of the text
TRUE or FALSE, and a number grouped with two marks at once.

The workbooks are written with the writer rtw queries uses, then opened and saved as a spreadsheet would.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook
from test_query_returned_files import DATED, EDITED, KEY, _checked, _returned_value, _sent_item, _workbook

from etl.quality.queries import HEADER
from etl.quality.responses import ImportSummary, ResponseFileError, check_rows, read_returned

VALUE = HEADER.index("value")


def _returned_boolean(tmp_path: Path, value: str, boolean: bool) -> tuple[int, list[str]]:
    """(answers taken, problems) of the sent workbook whose `value` cell came back a boolean cell, as Excel
    stores a text TRUE or FALSE it read (<c t="b"><v>1</v></c>)."""
    cells = [*DATED[:VALUE], value, *DATED[VALUE + 1:]]
    item = _sent_item(cells)
    path = tmp_path / "answers.xlsx"
    _workbook(path, item, cells)
    book = load_workbook(path)
    book.active.cell(row=2, column=VALUE + 1, value=boolean)
    book.save(path)
    with zipfile.ZipFile(path) as archive:
        assert b't="b"' in archive.read("xl/worksheets/sheet1.xml")
    return _checked(path, item)


@pytest.mark.parametrize(("value", "boolean"), [("TRUE", True), ("FALSE", False), ("true", True), ("False", False)])
def test_a_text_true_or_false_excel_stored_as_a_boolean_cell_is_read_as_sent(tmp_path, value, boolean):
    """Excel reads TRUE or FALSE, in any case, as a boolean and writes it TRUE or FALSE: openpyxl gave the cell
    as Python's True, compared as 'True', and the untouched row was refused as edited."""
    assert _returned_boolean(tmp_path, value, boolean) == (1, [])


@pytest.mark.parametrize(("value", "boolean"), [("TRUE", False), ("false", True), ("1", True), ("yes", True),
                                                ("", False)])
def test_a_boolean_cell_of_another_value_is_refused_as_edited(tmp_path, value, boolean):
    assert _returned_boolean(tmp_path, value, boolean) == (0, [EDITED])


def test_a_csv_excel_saved_again_with_true_in_its_own_case_is_read_as_sent(tmp_path):
    """Saved again as CSV, Excel writes the boolean it read from `true` as TRUE."""
    cells = [*DATED[:VALUE], "true", *DATED[VALUE + 1:]]
    item = _sent_item(cells)
    table = [list(HEADER), [*cells[:VALUE], "TRUE", *cells[VALUE + 1:], "cannot_determine", "", "Q1", item.row_key]]
    path = tmp_path / "answers.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(table)
    assert _checked(path, item) == (1, [])


@pytest.mark.parametrize(("value", "returned"), [("1234567.8", "1.234 567,8"), ("1234567", "1.234\u00a0567"),
                                                 ("1234567,8", "1 234\u202f567,8"),
                                                 ("1234567.8", "1'234\u2019567.8"),
                                                 ("1234567.8", "1.234,567.8"), ("1234567.8", "1'234.567,8")])
def test_a_number_grouped_with_two_marks_is_no_re_typing_and_is_refused_as_edited(tmp_path, value, returned):
    """No locale groups one number with two marks: a dot and a space (1.234 567,8), a no-break space and a narrow
    one, both apostrophes. Each mark is some locale's, so each was read as a re-typing of the number sent
    (1.234,567.8 and 1'234.567,8, with a mark that is another's decimal mark, were no number already)."""
    assert _returned_value(tmp_path, value, returned) == (0, [EDITED])


@pytest.mark.parametrize(("value", "returned"), [("1234567,8", "1.234.567,8"), ("1234567,8", "1\u00a0234\u00a0567,8"),
                                                 ("1234567.8", "1\u2019234\u2019567.8"),
                                                 ("1234567.8", "1,234,567.8")])
def test_a_number_grouped_with_one_mark_throughout_is_read_as_sent(tmp_path, value, returned):
    assert _returned_value(tmp_path, value, returned) == (1, [])


def test_a_query_column_named_twice_refuses_the_file_naming_both_columns(tmp_path):
    """The `response` column copied and inserted at the end: which of the two the centre filled in is unknown (the
    last one was read, the answer in the first dropped)."""
    path = tmp_path / "answers.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[*HEADER, "response"], [*DATED, "confirmed", "", "Q1", "k", ""]])
    with pytest.raises(ResponseFileError, match=r"^answers\.csv row 1: the column 'response' is there 2 times "
                                                r"\(columns L, P\); keep the one sent$"):
        list(read_returned(path))


def test_cells_under_no_header_are_named_in_a_warning_and_the_row_still_taken(tmp_path):
    """An answer typed a column too far right, a note beyond the header on a row of its own: neither is read, and
    each row says which columns were not (not what they hold: it may name a patient)."""
    item = _sent_item(DATED)
    path = tmp_path / "answers.xlsx"
    _workbook(path, item, DATED)
    book = load_workbook(path)
    book.active.cell(row=2, column=len(HEADER) + 1, value="confirmed")
    book.active.cell(row=4, column=len(HEADER) + 2, value="see TREP-000001")
    book.save(path)
    summary = ImportSummary(path.name)
    taken = check_rows(list(read_returned(path)), path.name, {("Q1", item.row_key): item}, {"Q1"}, {}, KEY, summary)
    assert (len(taken), summary.rows, summary.problems) == (1, 1, [])
    assert [str(w) for w in summary.warnings] == [
        f"answers.xlsx row {n}: the cell in column {column}, under no header, is not read: an answer goes in column "
        "'response', a comment in 'comment'" for n, column in ((2, "P"), (4, "Q"))]
