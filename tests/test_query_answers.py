"""Returned query files as centres really send them back: written with the writers rtw queries uses,
then touched as a centre or Excel would."""

from __future__ import annotations

import csv

import pytest
from openpyxl import load_workbook

from etl.quality.queries import HEADER, _write_csv, _write_xlsx
from etl.quality.responses import ResponseFileError, read_returned

RESPONSE, COMMENT = HEADER.index("response"), HEADER.index("comment")
# Cells as rtw writes them: a rule description with quotes and an em dash, a comment with line breaks.
SENT = ["P-0001", "registry_it", "PATIENT", 12, "patient", "age", "19", "ENR-AGE-ELIGIBLE", "error",
        'Age at enrolment must be within the registry\'s "0-18" range — 19 is not', "0-18"]
COMMENT_TEXT = "asked the ward\nwill check chart\N{LINE SEPARATOR}tomorrow"


def _sent_rows() -> list[list[object]]:
    answered = [*SENT, "confirmed", COMMENT_TEXT, "Q1", "k" * 64]
    return [answered, [*SENT[:3], 13, *SENT[4:], None, None, "Q1", "j" * 64]]


def _expected(row: list[object]) -> dict[str, str]:
    return {name: "" if value is None else str(value) for name, value in zip(HEADER, row, strict=True)}


def test_an_unedited_csv_reads_back_cell_for_cell(tmp_path):
    path = tmp_path / "queries.csv"
    _write_csv(path, _sent_rows())
    rows = list(read_returned(path))
    assert [(r.sheet, r.number) for r in rows] == [(None, 2), (None, 3)]
    assert [r.cells for r in rows] == [_expected(row) for row in _sent_rows()]


def test_a_csv_saved_again_by_excel_on_windows_reads_back(tmp_path):
    """Excel in a French or German locale: `;`-separated, Windows-1252, no BOM."""
    sent = [[*row[:COMMENT], "vérifié\nà revoir", *row[COMMENT + 1:]] for row in _sent_rows()]
    written = tmp_path / "queries.csv"
    _write_csv(written, sent)
    with written.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    path = tmp_path / "resaved.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    assert b"\x97" in path.read_bytes()  # the em dash, not UTF-8
    assert [r.cells for r in read_returned(path)] == [_expected(row) for row in sent]


def test_a_file_neither_utf8_nor_windows_1252_is_refused_with_its_name(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\r\n\x81\r\n")
    with pytest.raises(ResponseFileError, match=r"answers\.csv: neither UTF-8 nor Windows-1252"):
        list(read_returned(path))


def test_answers_on_a_copied_sheet_are_read_and_named_by_sheet(tmp_path):
    path = tmp_path / "queries.xlsx"
    sent = _sent_rows()
    _write_xlsx(path, [[*r[:RESPONSE], None, None, *r[COMMENT + 1:]] for r in sent], "IT-BO01")
    book = load_workbook(path)
    copy = book.copy_worksheet(book["queries"])
    copy.title = "answers"
    copy.cell(row=2, column=RESPONSE + 1, value="confirmed")
    book.create_sheet("notes").append(["nothing to read here"])
    book.save(path)
    answered = [(r.sheet, r.number, r.cells["response"]) for r in read_returned(path)]
    assert answered == [("queries", 2, ""), ("queries", 3, ""), ("answers", 2, "confirmed"), ("answers", 3, "")]


def test_a_sheet_without_the_query_columns_is_named(tmp_path):
    path = tmp_path / "queries.xlsx"
    _write_xlsx(path, _sent_rows(), "IT-BO01")
    book = load_workbook(path)
    book["queries"].delete_cols(RESPONSE + 1)
    book["queries"].title = "Feuil1"
    book.save(path)
    with pytest.raises(ResponseFileError, match=r"queries\.xlsx sheet 'Feuil1' row 1: the columns 'response' are "
                                                r"missing"):
        list(read_returned(path))
