"""A boolean sent in a query list, returned in another spreadsheet language's words: German or French Excel
shows a boolean cell as WAHR or VRAI and writes it so to a CSV, LibreOffice in its locale's words, and a
centre may type them as text. Those words are the boolean sent; any other is still an edit.

The workbooks are written with the writer rtw queries uses, then saved as a spreadsheet would.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from test_query_returned_cells import _returned_boolean
from test_query_returned_files import DATED, EDITED, _checked, _returned_value, _sent_item

from etl.extract.excel import cell_text
from etl.quality.queries import HEADER
from etl.spreadsheet import BOOLEAN_WORDS, EXCEL_BOOLEANS, spreadsheet_boolean

VALUE = HEADER.index("value")


@pytest.mark.parametrize(("value", "returned"), [
    ("TRUE", "WAHR"), ("FALSE", "FALSCH"), ("TRUE", "VRAI"), ("FALSE", "FAUX"), ("TRUE", "VERO"), ("FALSE", "FALSO"),
    ("TRUE", "VERDADERO"), ("TRUE", "WAAR"), ("FALSE", "ONWAAR"), ("true", "Wahr"), ("False", "faux"),
    ("TRUE", " vrai "), ("FALSE", "fałsz")])
def test_a_boolean_returned_in_another_languages_words_is_read_as_sent(tmp_path, value, returned):
    """A text WAHR, VRAI, ... (any case, blanks around) for a TRUE sent was refused as 'value changed'."""
    assert _returned_value(tmp_path, value, returned) == (1, [])


@pytest.mark.parametrize(("value", "returned"), [
    ("TRUE", "FALSCH"), ("FALSE", "VRAI"), ("true", "faux"), ("FALSE", "WAAR"), ("TRUE", "ONWAAR"),
    ("TRUE", "1"), ("TRUE", "ja"), ("TRUE", "oui"), ("TRUE", "T"), ("TRUE", "WAHRE"), ("TRUE", ""),
    ("maybe", "WAHR"), ("1", "VRAI")])
def test_another_boolean_or_a_word_no_spreadsheet_writes_for_one_is_still_refused_as_edited(tmp_path, value,
                                                                                           returned):
    assert _returned_value(tmp_path, value, returned) == (0, [EDITED])


def test_a_csv_german_excel_saved_again_is_read_as_sent(tmp_path):
    """German Excel reads the CSV's TRUE as a boolean and saves it as WAHR, `;`-separated, in Windows-1252."""
    cells = [*DATED[:VALUE], "TRUE", *DATED[VALUE + 1:]]
    item = _sent_item(cells)
    table = [list(HEADER), [*cells[:VALUE], "WAHR", *cells[VALUE + 1:], "cannot_determine", "geprüft", "Q1",
                            item.row_key]]
    path = tmp_path / "answers.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    assert _checked(path, item) == (1, [])


def test_a_text_wahr_german_excel_stored_as_a_boolean_cell_is_read_as_sent(tmp_path):
    """A German registry's `wahr`, which German Excel reads as a boolean: the XLSX holds the cell as true."""
    assert _returned_boolean(tmp_path, "wahr", True) == (1, [])


def test_no_word_is_one_languages_true_and_anothers_false():
    assert {word for word, value in BOOLEAN_WORDS.items() if value} & {w for w, v in BOOLEAN_WORDS.items() if not v} \
        == set()
    assert all(spreadsheet_boolean(word) is value for value, word in EXCEL_BOOLEANS.items())


def test_a_staged_boolean_is_written_as_a_returned_one_is_read():
    """One definition of Excel's words: what the Excel reader stages is what a returned list is compared with."""
    assert [cell_text(True), cell_text(False)] == [EXCEL_BOOLEANS[True], EXCEL_BOOLEANS[False]]


def test_reading_returned_files_does_not_load_the_workbook_reader():
    """responses takes Excel's words from etl/spreadsheet.py, not from the calamine reader of source files."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, etl.quality.responses; "
                             "print(sorted(m for m in sys.modules if m in ('python_calamine', 'etl.extract.excel')))"],
                            capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
