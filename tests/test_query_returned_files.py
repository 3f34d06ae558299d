"""Returned query files that are hostile or were saved again by a spreadsheet: refused with one line that
names the file, or read back as sent.

The files are written with the writers rtw queries uses, then touched as an attacker or a spreadsheet would.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from test_query_answers import SENT, _expected

from etl.quality.queries import HEADER, _write_csv, _write_xlsx, cell_text, row_key
from etl.quality.responses import (
    MAX_RETURNED_BYTES,
    ImportSummary,
    ResponseFileError,
    ReturnedRow,
    _Item,
    _xlsx_sheets,
    check_rows,
    read_returned,
)
from etl.transform.pseudonym import PseudonymKey

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


# A query about a date, as sent: the cells shown, the identity the row key covers.
DATED = ["P-0001", "registry_it", "FOLLOW_UP", 12, "follow_up", "contact_date", "2027-11-16",
         "XT-DATE-NOT-AFTER-EXPORT", "error", "A date is after the export", "on or before the export"]
IDENTITY = ("XT-DATE-NOT-AFTER-EXPORT", "registry_it", "r-12", "contact_date")
KEY = PseudonymKey(b"test-key-0123456789abcdef0123456789")


def _sent_item(cells: list[object]) -> _Item:
    return _Item(batch_id="Q1", row_key=row_key(KEY, "Q1", IDENTITY, cells), rule_id=IDENTITY[0],
                 source_id=IDENTITY[1], source_record_key=IDENTITY[2], field=IDENTITY[3], value_hash="h",
                 cells=tuple(cell_text(c) for c in cells), centre_id="IT-X01", sent_at=datetime.now(UTC))


def _checked(path: Path, item: _Item) -> tuple[int, list[str]]:
    """(answers taken, problems) of the returned file, checked against the one row sent."""
    summary = ImportSummary(path.name)  # answered cannot_determine: no rule needed
    taken = check_rows(list(read_returned(path)), path.name, {("Q1", item.row_key): item}, {"Q1"}, {}, KEY, summary)
    return len(taken), [p.message for p in summary.problems]


def _workbook(path: Path, item: _Item, cells: list[object]) -> None:
    _write_xlsx(path, [[*cells, "cannot_determine", None, "Q1", item.row_key]], "IT-X01")


def test_a_workbook_whose_spreadsheet_typed_a_date_and_a_number_is_read_as_sent(tmp_path):
    """The CSV opened in Excel or LibreOffice (which read `2027-11-16` as a date and 12 as a number) and saved
    as XLSX: the date came back a date cell, read as '2027-11-16 00:00:00', and every such row was refused
    as 'value changed'; a writer that keeps numbers as floats gave the line as '12.0'."""
    item = _sent_item(DATED)
    path = tmp_path / "answers.xlsx"
    _workbook(path, item, DATED)
    book = load_workbook(path)
    book.active.cell(row=2, column=HEADER.index("value") + 1, value=datetime(2027, 11, 16))
    book.active.cell(row=2, column=HEADER.index("line") + 1, value=12.0)
    book.save(path)
    assert _checked(path, item) == (1, [])


@pytest.mark.parametrize("written", ["16/11/2027", "11/16/2027", "16.11.2027"])
def test_a_csv_saved_again_by_a_spreadsheet_with_its_dates_in_the_locale_s_layout_is_read_as_sent(tmp_path, written):
    """Excel saves a date it read from the CSV in the locale's short layout (French, US, German)."""
    item = _sent_item(DATED)
    sent = tmp_path / "sent.xlsx"
    _workbook(sent, item, DATED)
    rows = load_workbook(sent).active.iter_rows(values_only=True)
    table = [["" if v is None else str(v) for v in row] for row in rows]
    table[1][HEADER.index("value")] = written
    path = tmp_path / "answers.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    assert _checked(path, item) == (1, [])


def _returned_value(tmp_path: Path, value: str, returned: str) -> tuple[int, list[str]]:
    """(answers taken, problems) of a workbook that returns the query about `value` with `returned` in its place."""
    cells = [*DATED[:6], value, *DATED[7:]]
    item = _sent_item(cells)
    path = tmp_path / "answers.xlsx"
    _workbook(path, item, [*cells[:6], returned, *cells[7:]])
    return _checked(path, item)


EDITED = "column 'value' changed since the query was sent; only 'response' and 'comment' may be filled in"


@pytest.mark.parametrize(("value", "returned"), [("2027-11-16", "17/11/2027"), ("12345678901234567890", "1.23457E+19"),
                                                 ("29/02/2013", "2013-03-01 00:00:00"), ("19", "19.5"),
                                                 ("03/04/2027", "04/03/2027"), ("03.04.2027", "04.03.2027"),
                                                 ("03/04/2027", "4/3/2027")])
def test_a_cell_a_spreadsheet_could_not_have_re_typed_so_is_still_refused_as_edited(tmp_path, value, returned):
    """A day and month swapped (03/04 -> 04/03) read as unedited: each is some day order's reading of the other."""
    assert _returned_value(tmp_path, value, returned) == (0, [EDITED])


@pytest.mark.parametrize(("value", "returned"), [("2027-04-03", "03/04/2027"), ("2027-04-03", "4/3/2027"),
                                                 ("03/04/2027", "2027-04-03 00:00:00"),
                                                 ("03/04/2027", "2027-03-04 00:00:00")])
def test_a_date_one_day_order_re_types_and_the_other_edits_is_refused_saying_why(tmp_path, value, returned):
    """2027-04-03 saved back day-first is 03/04/2027, and a month-first spreadsheet writes 4 March so: which
    one saved the file is not known, and taking it as re-typed would hide the edit."""
    assert _returned_value(tmp_path, value, returned) == (0, [
        f"{EDITED} ('value': a spreadsheet reading the date month-first or day-first would make it another day, so "
        "a re-typing cannot be told from an edit; ask the centre for the XLSX as it was sent, or for a CSV with the "
        "dates left as they were)"])


@pytest.mark.parametrize(("value", "returned"), [("03/04/2027", "3/4/2027"), ("2027-04-03", "03.04.2027"),
                                                 ("16/11/2027", "2027-11-16 00:00:00"), ("04/04/2027", "2027-04-04"),
                                                 ("03.04.2027", "2027-04-03 00:00:00")])
def test_a_date_every_day_order_reads_as_the_day_sent_is_read_as_sent(tmp_path, value, returned):
    assert _returned_value(tmp_path, value, returned) == (1, [])


NUMBER_UNSURE = (f"{EDITED} ('value': a spreadsheet reading the number with a decimal point or a decimal comma would "
                 "make it another number, so a re-typing cannot be told from an edit; ask the centre for the XLSX as "
                 "it was sent, or for a CSV with the numbers left as they were)")


@pytest.mark.parametrize(("value", "returned"), [("1,234", "1.234"), ("1.234", "1,234"), ("12,345", "12.345"),
                                                 ("1234", "1.234"), ("1234", "1,234"), ("1,234", "1234"),
                                                 ("12", "12.000")])
def test_a_number_one_decimal_mark_re_types_and_the_other_edits_is_refused_saying_why(tmp_path, value, returned):
    """1,234 back as 1.234 read as unedited (a comma was taken for a decimal point): with a decimal point it
    is 1234 made 1.234. Which decimal mark the spreadsheet used is not known, so it is refused, as is 1234
    back as 1.234 (a decimal-comma spreadsheet grouping, or an edit to 1.234)."""
    assert _returned_value(tmp_path, value, returned) == (0, [NUMBER_UNSURE])


@pytest.mark.parametrize(("value", "returned"), [("0012", "12"), ("12", "12,0"), ("12,5", "12.5"),
                                                 ("1234,5", "1 234,5"), ("1234,5", "1\u202f234,5"),
                                                 ("1234.5", "1,234.5"), ("1234567", "1.234.567"), ("-0,5", "-.5")])
def test_a_number_every_decimal_mark_reads_as_the_one_sent_is_read_as_sent(tmp_path, value, returned):
    assert _returned_value(tmp_path, value, returned) == (1, [])


@pytest.mark.parametrize(("value", "returned"), [("1234.5", "1'234.5"), ("1234567", "1\u2019234\u2019567"),
                                                 ("-1234,5", "-1'234.5"), ("1'234", "1234"),
                                                 ("1\u2019234.50", "1 234,5")])
def test_a_number_a_swiss_spreadsheet_grouped_with_an_apostrophe_is_read_as_sent(tmp_path, value, returned):
    """Swiss and Liechtenstein locales group with an apostrophe, ASCII or typographic (U+2019): such a file
    saved again was refused as edited."""
    assert _returned_value(tmp_path, value, returned) == (1, [])


def test_a_csv_a_swiss_excel_saved_again_is_read_as_sent(tmp_path):
    """Excel in Switzerland saves `;`-separated Windows-1252, its grouping the typographic apostrophe (0x92)."""
    cells = [*DATED[:6], "1234.5", *DATED[7:]]
    item = _sent_item(cells)
    table = [list(HEADER), [*cells[:6], "1\u2019234.5", *cells[7:], "cannot_determine", "", "Q1", item.row_key]]
    path = tmp_path / "answers.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    assert b"1\x92234.5" in path.read_bytes()
    assert _checked(path, item) == (1, [])


@pytest.mark.parametrize(("value", "returned", "problem"), [("1.234", "1'234", NUMBER_UNSURE),
                                                            ("1'234", "1.234", NUMBER_UNSURE),
                                                            ("1\u2019234", "1,234", NUMBER_UNSURE),
                                                            ("1234", "12'34", EDITED), ("1234.5", "1'234,5", EDITED)])
def test_an_apostrophe_grouped_number_is_refused_where_another_convention_reads_another(tmp_path, value, returned,
                                                                                       problem):
    """1.234 is 1234 only with a decimal comma: 1'234 for it is a re-typing or an edit to 1234, refused saying why,
    as 1.234 for 1'234 is; an apostrophe out of place, or one with a decimal comma, is no locale's writing."""
    assert _returned_value(tmp_path, value, returned) == (0, [problem])


def _returned_number(tmp_path: Path, value: str, number: float) -> tuple[int, list[str]]:
    """(answers taken, problems) of a workbook that returns the query about `value` with an XLSX number cell."""
    cells = [*DATED[:6], value, *DATED[7:]]
    item = _sent_item(cells)
    path = tmp_path / "answers.xlsx"
    _workbook(path, item, cells)
    book = load_workbook(path)
    book.active.cell(row=2, column=HEADER.index("value") + 1, value=number)
    book.save(path)
    return _checked(path, item)


@pytest.mark.parametrize(("value", "number"), [("12.3450", 12.345), ("12,3450", 12.345), ("1234,5", 1234.5),
                                               ("0012", 12), ("1 234", 1234), ("1.5", 1.5), ("19", 19),
                                               ("1e+16", 1e16)])
def test_an_xlsx_number_cell_is_read_as_its_value_whichever_decimal_mark_typed_it(tmp_path, value, number):
    """A CSV re-typed by a spreadsheet and saved as XLSX: its number cell is its value, in no locale's writing.
    Compared as the text Python writes (12.345), a decimal comma read it as 12345 and refused it."""
    assert _returned_number(tmp_path, value, number) == (1, [])


@pytest.mark.parametrize(("value", "number"), [("1.234", 1.234), ("12.345", 12.345), ("-123.456", -123.456)])
def test_an_xlsx_number_cell_python_writes_as_the_text_sent_is_still_compared_as_its_value(tmp_path, value, number):
    """A decimal comma reads 1.234 sent as 1234: a number cell 1.234 is what a decimal-point spreadsheet makes of
    it, or 1,234 typed by a centre that read 1234. Python writes it '1.234', the text sent, so it was taken
    unread (and its row key verified), while 1,234 sent and come back 1.234 was refused."""
    assert _returned_number(tmp_path, value, number) == (0, [NUMBER_UNSURE])


@pytest.mark.parametrize(("value", "number", "problem"), [("12345", 12.345, EDITED), ("19", 19.5, EDITED),
                                                          ("1,234", 1234, NUMBER_UNSURE),
                                                          ("1,234", 1.234, NUMBER_UNSURE)])
def test_an_xlsx_number_cell_of_another_value_is_refused(tmp_path, value, number, problem):
    """12.345 typed for 12345 is an edit, not a number a decimal comma groups; 1234 for 1,234 is what a
    decimal-point spreadsheet makes of it, and a decimal-comma one makes it 1.234 (and the other way round): which
    made it is not known."""
    assert _returned_number(tmp_path, value, number) == (0, [problem])


def test_a_row_with_a_date_and_a_number_either_convention_could_have_made_says_both():
    cells = [*DATED[:6], "2027-04-03", *DATED[7:]]
    item = _sent_item(cells)
    row = ReturnedRow(None, 2, {**_expected([*cells, "cannot_determine", None, "Q1", item.row_key]),
                                "line": "12.000", "value": "03/04/2027"})
    summary = ImportSummary("answers.csv")
    assert check_rows([row], "answers.csv", {("Q1", item.row_key): item}, {"Q1"}, {}, KEY, summary) == []
    assert [p.message for p in summary.problems] == [
        "columns 'line', 'value' changed since the query was sent; only 'response' and 'comment' may be filled in "
        "('value': a spreadsheet reading the date month-first or day-first would make it another day; 'line': a "
        "spreadsheet reading the number with a decimal point or a decimal comma would make it another number, so a "
        "re-typing cannot be told from an edit; ask the centre for the XLSX as it was sent, or for a CSV with the "
        "dates and numbers left as they were)"]


def test_a_row_as_sent_whose_key_another_pseudonymisation_key_made_is_refused_as_rotated():
    """The cells are checked against those sent before the row key: a row only re-typed (its line a float) is
    still told apart from one whose key no longer verifies."""
    item = _sent_item(DATED)
    row = ReturnedRow(None, 2, {**_expected([*DATED, "cannot_determine", None, "Q1", item.row_key]), "line": "12.0"},
                      frozenset({"line"}))
    summary = ImportSummary("answers.xlsx")
    rotated = PseudonymKey(b"rotated-key-0123456789abcdef01234567")
    assert check_rows([row], "answers.xlsx", {("Q1", item.row_key): item}, {"Q1"}, {}, rotated, summary) == []
    assert [p.message for p in summary.problems] == [
        "the row key does not verify under the current pseudonymisation key (rotated since batch Q1 was sent?); "
        "send the centre its queries again"]


def _unicode_text(sent: Path, path: Path, encoding: str, bom: bytes) -> Path:
    """The CSV as Excel saves it as "Unicode text" (UTF-16 after its byte-order mark, tab-separated), renamed .csv."""
    with sent.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    text = io.StringIO(newline="")
    csv.writer(text, delimiter="\t").writerows(table)
    path.write_bytes(bom + text.getvalue().encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("name", ["answers.csv", "answers.txt"])
def test_excel_s_unicode_text_with_or_without_its_byte_order_mark_or_named_txt_reads_back_as_sent(tmp_path, encoding,
                                                                                                   name):
    """Excel saves Unicode text as .txt, and was refused ('expected the returned .xlsx or .csv'). Renamed .csv and
    read as Windows-1252, every character came with a NUL and the file was refused as 'the columns ... are
    missing'; the byte-order mark says UTF-16, and the delimiter is sniffed, a tab. Without its byte-order mark (a
    tool that re-wrote it), UTF-16 was read as UTF-8, NULs and all, and refused alike: the NUL half of each of the
    header's ASCII characters tells UTF-16 and its order."""
    item = _sent_item(DATED)
    sent = tmp_path / "sent.csv"
    _write_csv(sent, [[*DATED, "cannot_determine", "Łódź — vérifié\tle 3", "Q1", item.row_key]])
    found = (r"starts with a UTF-16 byte-order mark, so it is UTF-16 text \(Excel's Unicode text\), not cp1250",
             r"every other byte of its start is NUL, so it is UTF-16 text \(Excel's Unicode text\) without a "
             r"byte-order mark, not cp1250")
    for bom, said in zip((codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF16_BE, b""), found,
                         strict=True):
        path = _unicode_text(sent, tmp_path / name, encoding, bom)
        assert _checked(path, item) == (1, [])
        assert [r.cells["comment"] for r in read_returned(path)] == ["Łódź — vérifié\tle 3"]
        assert [r.cells for r in read_returned(path, "utf-16")] == [r.cells for r in read_returned(path)]
        with pytest.raises(ResponseFileError, match=rf"^{re.escape(name)}: {said}; import it without an encoding$"):
            list(read_returned(path, "cp1250"))


@pytest.mark.parametrize(("name", "data", "message"), [
    ("answers.txt", b"patient\0pseudonym\0\0\0garbage", r"holds NUL bytes, so it is neither CSV text nor Excel's "
                                                         r"Unicode text \(UTF-16, its header first\); expected the "
                                                         r"returned \.xlsx, or its \.csv$"),
    ("answers.csv", b"PK\x03\x04\x14\0\0\0\x08\0", r"a zip file, such as an XLSX workbook, named \.csv; expected CSV "
                                                  r"text: if it is the returned workbook, name it \.xlsx$"),
    ("answers.ods", b"PK\x03\x04", r"expected the returned \.xlsx or \.csv of a query batch \(or the \.txt Excel "
                                    r"saves as Unicode text\)$")])
def test_a_file_that_cannot_be_recognised_as_a_returned_list_is_refused_naming_it_and_what_was_expected(
        tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ResponseFileError, match=rf"^{re.escape(name)}: {message}"):
        list(read_returned(path))


HOSTILE = "A" * 32_000  # a cell as long as a spreadsheet holds
SHORTENED = f"'{'A' * 60}…' (32,000 characters)"


def test_cell_text_a_refusal_quotes_is_shortened(tmp_path):
    """A returned batch id or response was quoted whole: a 32,000-character cell made a 32,000-character line."""
    item = _sent_item(DATED)
    path = tmp_path / "answers.csv"
    _write_csv(path, [[*DATED, HOSTILE, None, "Q1", item.row_key], [*DATED, "confirmed", None, HOSTILE, item.row_key]])
    taken, (response, batch) = _checked(path, item)
    assert taken == 0
    assert response == (f"response {SHORTENED} is not one of corrected, confirmed, cannot_determine (column "
                        "'response')")
    assert batch.startswith(f"query batch {SHORTENED} was not sent from this warehouse")


@pytest.mark.filterwarnings("ignore:Title is more than 31 characters")
def test_a_sheet_name_a_refusal_quotes_is_shortened(tmp_path):
    path = tmp_path / "answers.xlsx"
    _write_xlsx(path, [_answered_row()], "IT-X01")
    book = load_workbook(path)
    book["queries"].delete_cols(HEADER.index("response") + 1)
    book["queries"].title = "B" * 300  # Excel allows 31 characters; a hand-made file any number
    book.save(path)
    with pytest.raises(ResponseFileError) as refused:
        list(read_returned(path))
    assert str(refused.value).startswith(f"answers.xlsx sheet '{'B' * 60}…' (300 characters) row 1: the columns "
                                         "'response' are missing")


def test_a_broken_workbook_s_error_quoting_the_file_is_shortened(tmp_path):
    """openpyxl's error names what it did not find, as the file spells it: a sheet's relation id of 5,000 digits."""
    sent = tmp_path / "sent.xlsx"
    _write_xlsx(sent, [_answered_row()], "IT-X01")
    broken = tmp_path / "answers.xlsx"
    _rewritten(sent, broken, "xl/workbook.xml", lambda xml: xml.replace(b'r:id="rId1"', b'r:id="' + b"9" * 5000 + b'"'))
    with pytest.raises(ResponseFileError) as refused:
        list(read_returned(broken))
    assert str(refused.value) == (f"answers.xlsx: not a readable .xlsx workbook (KeyError: '{'9' * 199}… (5,002 "
                                  "characters))")
