"""Returned query files as centres really send them back, and answers that come late, twice or out of order.

The reading tests write files with the writers rtw queries uses and touch them as a centre or Excel would.
The answer tests copy the shared synthetic run (IT-BO01 has two confirmable warnings of
XT-BASIS-VS-MORPHOLOGY, lines 44 and 95) and send, answer and import batches on the copy.
"""

from __future__ import annotations

import csv
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import lxml.html
import pytest
from conftest import SYNTHETIC_RUN_KEY
from openpyxl import load_workbook
from test_query_roundtrip import (
    BASIS,
    KEY,
    RULE_COLUMN,
    VALUE_COLUMN,
    _answer_xlsx,
    _change_basis_of_diagnosis,
    _issue,
    _page_rows,
    _query,
    _sheet_row,
)
from typer.testing import CliRunner, Result

from etl import pipeline
from etl.cli import app
from etl.config import Home, resolve_home
from etl.quality.code_pages import western_code_page
from etl.quality.queries import HEADER, Selection, SentBatch, _write_csv, _write_xlsx, _written, send_queries
from etl.quality.query_status import CentreQueries, per_centre, queries_as_of
from etl.quality.report import build_report, choose_run
from etl.quality.responses import ResponseFileError, import_responses, read_returned

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


FRENCH = "vérifié à la source: è, ç, ê, où; À revoir — Köln, España"


def test_a_csv_saved_again_by_excel_for_mac_reads_back(tmp_path):
    """Excel for Mac saves "Comma Separated Values" in Mac Roman: read as Windows-1252, é came back as Ž and è,
    ç, ê, ù made the file refused, told to give cp1250."""
    sent = [[*row[:COMMENT], FRENCH, *row[COMMENT + 1:]] for row in _sent_rows()]
    written = tmp_path / "queries.csv"
    _write_csv(written, sent)
    path = _resaved(written, tmp_path / "resaved.csv", "mac_roman")
    assert b"\xd1" in path.read_bytes()  # rtw's em dash, as Mac Roman writes it
    assert [r.cells for r in read_returned(path)] == [_expected(row) for row in sent]
    windows = _resaved(written, tmp_path / "windows.csv", "cp1252")  # the same text from Windows reads as it did
    assert [r.cells for r in read_returned(windows)] == [_expected(row) for row in sent]


@pytest.mark.parametrize(("text", "code_page"), [
    ("vérifié — à revoir, n° 3, 5 µg, 10 €", "cp1252"), ("vérifié — à revoir, n° 3, 5 µg", "mac_roman"),
    # Windows-1252 whose bytes Mac Roman reads as letters: read as it always was
    ("chart—value, Jan–Mar, Humira™, Dr Ó Briain, 2º ciclo, na hÉigipte, ‹BRAF›, dose‡, cœur, l’avis", "cp1252"),
    ("2º ciclo não realizado — ação", "mac_roman"), ("Straße, Größe: geprüft — ok", "mac_roman"),
    ("Hodnota je správna, netreba opraviť", None),  # Slovak (cp1250): ť is no Windows-1252 byte
    ("Kraków, Dvořák — ťažký", None),
])
def test_the_western_code_page_is_told_by_how_each_reads_the_text(text, code_page):
    encoded = text.encode(code_page or "cp1250")
    assert western_code_page(encoded) == code_page
    if code_page:
        assert encoded.decode(western_code_page(encoded)) == text


def test_a_cell_longer_than_a_spreadsheet_holds_is_cut_alike_in_both_files_and_reads_back(tmp_path):
    """openpyxl cuts a text cell at 32,767 characters (Excel's limit) when it writes the XLSX, so a row whose
    value, or the message quoting it, was longer read back as edited however untouched (a 1 MB date in
    an export): the cell is cut before it is written, alike in both files and in the row key's cells."""
    sent = [_written(cell) for cell in [*SENT[:6], "9" * 40_000, *SENT[7:]]]
    row = [*sent, "corrected", None, "Q1", "k" * 64]
    xlsx, csv_path = tmp_path / "queries.xlsx", tmp_path / "queries.csv"
    _write_xlsx(xlsx, [row], "IT-X01")
    _write_csv(csv_path, [row])
    for path in (xlsx, csv_path):
        assert [r.cells for r in read_returned(path)] == [_expected(row)], path.name
    assert 32_000 < len(sent[6]) <= 32_767 and sent[6].startswith("9" * 32_000) and "40,000 characters" in sent[6]


def test_a_file_neither_utf8_nor_windows_1252_is_refused_with_its_name(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\r\n\x81\r\n")
    with pytest.raises(ResponseFileError, match=r"answers\.csv: neither UTF-8 nor Windows-1252"):
        list(read_returned(path))


def _resaved(written: Path, path: Path, encoding: str) -> Path:
    """The CSV as Excel saves it again in a `;` locale, in the code page `encoding`, without a BOM."""
    with written.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    return path


CENTRAL_EUROPEAN = "Łódź: dr Dvořák ověřil, Győr — ťažký prípad"  # cp1250; "ť" is no Windows-1252 byte


def test_a_csv_saved_in_the_central_european_code_page_reads_back_when_the_import_is_told_so(tmp_path):
    """Polish, Czech and Hungarian Excel save "CSV" in cp1250: read as Windows-1252, "ł", "ř" and "ő" came
    back as other letters ("£odzi", "Dvoøák"), and "ť" made the whole file refused."""
    sent = [[*row[:COMMENT], CENTRAL_EUROPEAN, *row[COMMENT + 1:]] for row in _sent_rows()]
    written = tmp_path / "queries.csv"
    _write_csv(written, sent)
    path = _resaved(written, tmp_path / "resaved.csv", "cp1250")
    with pytest.raises(ResponseFileError, match=r"resaved\.csv: neither UTF-8 nor Windows-1252.*--encoding cp1250"):
        list(read_returned(path))
    assert [r.cells for r in read_returned(path, "cp1250")] == [_expected(row) for row in sent]
    assert [r.cells for r in read_returned(written, "utf-8")] == [_expected(row) for row in sent]


def test_an_encoding_that_is_unknown_or_not_the_file_s_is_refused_with_the_file_s_name(tmp_path):
    written = tmp_path / "answers.csv"
    _write_csv(written, [[*row[:COMMENT], CENTRAL_EUROPEAN, *row[COMMENT + 1:]] for row in _sent_rows()])  # UTF-8
    with pytest.raises(ResponseFileError, match=r"answers\.csv: unknown encoding 'cp9999'"):
        list(read_returned(written, "cp9999"))
    with pytest.raises(ResponseFileError, match=r"answers\.csv: starts with a UTF-8 byte-order mark, so it is UTF-8"):
        list(read_returned(written, "cp1250"))
    resaved = _resaved(written, tmp_path / "resaved.csv", "cp1250")
    with pytest.raises(ResponseFileError, match=r"resaved\.csv: not utf-8 text"):
        list(read_returned(resaved, "utf-8"))


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


def test_answers_on_a_sheet_without_the_hidden_columns_refuse_the_file_naming_the_sheet_and_the_columns(tmp_path):
    """A centre answers on a filtered range pasted to a new sheet: Excel pastes the visible cells only, without the
    hidden columns that match an answer to its query. A sheet of notes without answers is no matter."""
    path = tmp_path / "queries.xlsx"
    _write_xlsx(path, [[*r[:RESPONSE], None, None, *r[COMMENT + 1:]] for r in _sent_rows()], "IT-BO01")
    book = load_workbook(path)
    book.create_sheet("notes").append(["nothing to read here"])
    pasted = book.create_sheet("answers")
    for row in book["queries"].iter_rows(max_col=COMMENT + 1, values_only=True):
        pasted.append(row)
    book.save(path)
    assert len(list(read_returned(path))) == 2  # the pasted sheet's answers not filled in yet
    pasted.cell(row=3, column=COMMENT + 1, value="checked")
    book.save(path)
    with pytest.raises(ResponseFileError, match=r"^queries\.xlsx sheet 'answers' row 1: holds answers, but not the "
                                                r"columns 'query batch', 'row key', by which an answer is matched"):
        list(read_returned(path))


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


@pytest.fixture
def home(synthetic_run, tmp_path: Path) -> Home:
    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)
    return resolve_home(tmp_path / "home")


def _waivers(home: Home) -> list[tuple[str, str]]:
    return [tuple(r) for r in _query(home, "SELECT batch_id, value_hash FROM meta.waiver WHERE centre_id = 'IT-BO01'")]


def _answer(batch: SentBatch, out: Path, response: str, comment: str | None = None) -> Path:
    _answer_xlsx(batch.xlsx, out, {(BASIS, 44): (response, comment)})
    return out


def _status(home: Home) -> dict[int, str | None]:
    """Line -> the answer query_status counts for IT-BO01's basis queries (in the latest run's findings)."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        run = choose_run(con).findings_run_id
        lines = dict(con.execute("SELECT source_record_key, line FROM dq.issue WHERE run_id = ? AND rule_id = ? "
                                 "AND centre_id = 'IT-BO01'", [run, BASIS]).fetchall())
        queries = queries_as_of(con, run, datetime.now(UTC))
    finally:
        con.close()
    return {lines[q.source_record_key]: q.response for q in queries
            if q.rule_id == BASIS and q.source_record_key in lines}


def _import_cli(home: Home, path: Path, *options: str) -> Result:
    return CliRunner().invoke(app, ["responses", "import", str(path), "--home", str(home.root), *options],
                              env={"RTW_PSEUDONYM_KEY": SYNTHETIC_RUN_KEY, "COLUMNS": "400"})


@pytest.mark.integration
def test_a_confirmation_after_a_withdrawal_is_recorded_and_waives_again(home, tmp_path):
    batch = send_queries(home, "IT-BO01", KEY)
    first = import_responses(home, _answer(batch, tmp_path / "a.xlsx", "confirmed", "checked"), KEY)
    assert (first.recorded, first.waivers_added) == (1, 1) and len(_waivers(home)) == 1
    withdrawn = _import_cli(home, _answer(batch, tmp_path / "b.xlsx", "cannot_determine"))
    assert withdrawn.exit_code == 0 and "1 waivers withdrawn" in withdrawn.stdout
    assert _waivers(home) == []
    again = import_responses(home, _answer(batch, tmp_path / "c.xlsx", "confirmed", "checked"), KEY)
    assert (again.recorded, again.already_imported, again.waivers_added) == (1, 0, 1) and len(_waivers(home)) == 1
    assert _status(home)[44] == "confirmed"
    assert import_responses(home, tmp_path / "c.xlsx", KEY).already_imported == 1  # the latest answer, again


@pytest.mark.integration
def test_rtw_responses_import_reads_a_central_european_csv_with_its_code_page_given(home, tmp_path):
    batch = send_queries(home, "IT-BO01", KEY)
    with batch.csv.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    table[1][RESPONSE], table[1][COMMENT] = "cannot_determine", CENTRAL_EUROPEAN
    answers = tmp_path / "odpowiedzi.csv"
    with answers.open("w", encoding="cp1250", newline="") as handle:
        csv.writer(handle, delimiter=";").writerows(table)
    refused = _import_cli(home, answers)
    assert refused.exit_code == 1 and "--encoding cp1250" in refused.stdout
    done = _import_cli(home, answers, "--encoding", "cp1250")
    assert done.exit_code == 0, done.stdout
    assert "1 answers recorded" in done.stdout
    assert _query(home, "SELECT response, comment FROM meta.query_response") == [("cannot_determine", CENTRAL_EUROPEAN)]


@pytest.mark.integration
def test_a_row_answered_twice_differently_is_refused_and_the_same_answer_taken_once(home, tmp_path, caplog):
    batch = send_queries(home, "IT-BO01", KEY)
    out = tmp_path / "answers.xlsx"
    rows = _answer_xlsx(batch.xlsx, out, {(BASIS, 44): ("confirmed", None), (BASIS, 95): ("corrected", "done")})
    book = load_workbook(out)
    sheet = book.active
    for line, response in ((44, "corrected"), (95, "corrected")):  # the centre duplicated two rows
        copied = [c.value for c in sheet[rows[f"{BASIS}@{line}"]]]
        copied[RESPONSE] = response
        sheet.append(copied)
    book.save(out)
    last = sheet.max_row
    with caplog.at_level(logging.INFO, logger="etl.quality.responses"):
        summary = import_responses(home, out, KEY)
    first = rows[f"{BASIS}@44"]
    assert [(p.row_number, p.message) for p in summary.problems] == [
        (first, f"answers the same query as row {last - 1} differently ('corrected' there, 'confirmed' here); "
                "neither row is taken: keep one of them"),
        (last - 1, f"answers the same query as row {first} differently ('confirmed' there, 'corrected' here); "
                   "neither row is taken: keep one of them")]
    assert (summary.recorded, summary.repeated, summary.waivers_added) == (1, 1, 0) and _waivers(home) == []
    assert _query(home, "SELECT response, comment FROM meta.query_response") == [("corrected", "done")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # the command line prints them once


@pytest.mark.integration
def test_an_old_batch_answered_late_does_not_override_a_newer_batch(home, tmp_path):
    old, new = send_queries(home, "IT-BO01", KEY), send_queries(home, "IT-BO01", KEY)
    assert import_responses(home, _answer(new, tmp_path / "new.xlsx", "confirmed"), KEY).waivers_added == 1
    late = import_responses(home, _answer(old, tmp_path / "old.xlsx", "cannot_determine"), KEY)
    (warning,) = late.warnings
    assert str(warning) == (f"old.xlsx row {_sheet_row(old.xlsx, BASIS, 44)}: answers batch {old.batch_id}, but the "
                            f"same query was answered 'confirmed' in batch {new.batch_id}, sent later: the newer "
                            "answer stands and this one is not taken")
    assert (late.recorded, late.superseded, late.waivers_withdrawn, late.problems) == (0, 1, 0, [])
    assert [b for b, _ in _waivers(home)] == [new.batch_id] and _status(home)[44] == "confirmed"


@pytest.mark.integration
def test_a_late_answer_from_a_record_s_former_centre_keeps_the_waiver_its_new_centre_made(home, tmp_path):
    """The record moves to another centre (the registry recodes it): its new centre confirms the finding, then the
    former centre's answer to the batch sent before comes back; it is recorded, the waiver stays."""
    old = send_queries(home, "IT-BO01", KEY)
    (other,) = _query(home, "SELECT min(centre_id) FROM dq.issue WHERE source_id = 'registry_it' AND centre_id "
                            "NOT IN ('IT-BO01') AND centre_id IS NOT NULL")[0]
    export = next((home.landing / "registry_it").glob("*.csv"))
    lines = export.read_bytes().split(b"\r\n")
    fields = lines[44 - 1].split(b";")
    fields[2] = other.encode()  # codice_centro
    lines[44 - 1] = b";".join(fields)
    export.write_bytes(b"\r\n".join(lines))
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    new = send_queries(home, f"registry_it:{other}", KEY)
    assert import_responses(home, _answer(new, tmp_path / "new.xlsx", "confirmed"), KEY).waivers_added == 1
    late = import_responses(home, _answer(old, tmp_path / "old.xlsx", "cannot_determine"), KEY)
    (warning,) = late.warnings
    assert str(warning) == (f"old.xlsx row {_sheet_row(old.xlsx, BASIS, 44)}: the same finding was answered "
                            f"'confirmed' in batch {new.batch_id} of centre {other}, sent later: this answer is "
                            "recorded, but the newer one stands for the waiver")
    assert (late.recorded, late.superseded, late.waivers_withdrawn, late.problems) == (1, 0, 0, [])
    assert _query(home, "SELECT centre_id, batch_id FROM meta.waiver") == [(other, new.batch_id)]


@pytest.mark.integration
def test_rows_of_two_batches_in_one_file_count_the_newer_batch(home, tmp_path):
    old, new = send_queries(home, "IT-BO01", KEY), send_queries(home, "IT-BO01", KEY)
    out = tmp_path / "both.xlsx"
    _answer_xlsx(old.xlsx, out, {(BASIS, 95): ("confirmed", None)})
    book = load_workbook(out)
    newer = next(r for r in load_workbook(new.xlsx).active.iter_rows(min_row=2, values_only=True)
                 if r[HEADER.index("rule id")] == BASIS and r[HEADER.index("line")] == 95)
    book.active.append([*newer[:RESPONSE], "cannot_determine", *newer[RESPONSE + 1:]])  # pasted below
    book.save(out)
    summary = import_responses(home, out, KEY)
    assert (summary.recorded, summary.waivers_added, summary.waivers_withdrawn) == (2, 1, 1)
    assert _waivers(home) == [] and _status(home)[95] == "cannot_determine"


@pytest.mark.integration
def test_a_confirmation_of_a_value_changed_since_is_no_waiver_that_takes_effect(home, tmp_path):
    batch = send_queries(home, "IT-BO01", KEY)
    _change_basis_of_diagnosis(home, 44, "1")
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    result = _import_cli(home, _answer(batch, tmp_path / "late.xlsx", "confirmed"))
    row = _sheet_row(batch.xlsx, BASIS, 44)
    assert result.exit_code == 0
    assert (f"late.xlsx row {row}: the value has changed since batch {batch.batch_id} was sent; this confirmation "
            "covers the old value only: send the centre its queries again") in result.stdout
    assert "1 answers recorded" in result.stdout and "0 waivers added" in result.stdout
    assert "1 waivers for a value no longer found (they take effect only if it comes back)" in result.stdout


def _centre_counts(home: Home, centre_id: str = "IT-BO01") -> CentreQueries:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        queries = queries_as_of(con, choose_run(con).findings_run_id, datetime.now(UTC))
    finally:
        con.close()
    return next(c for c in per_centre(queries) if c.centre_id == centre_id)


def _sent(batch: SentBatch) -> list[tuple[str, int, str]]:
    """(rule, line, value) of each row of a batch's workbook."""
    return [(r[RULE_COLUMN], r[HEADER.index("line")], r[VALUE_COLUMN])
            for r in load_workbook(batch.xlsx).active.iter_rows(min_row=2, values_only=True)]


@pytest.mark.integration
@pytest.mark.parametrize("response", ["cannot_determine", "corrected", "confirmed"])
def test_an_answer_covers_the_value_it_was_given_for_and_a_new_value_reopens_the_query(home, tmp_path, response):
    """IT-BO01 answers the query about '2 with 8430' (line 44); the next export has '1 with 8430'. The
    answer was counted for the new value: cannot_determine as answered (never open, never reminded),
    corrected as "corrected but still present". The query is open again, and says it reopened."""
    batch = send_queries(home, "IT-BO01", KEY)  # 44 and 95 of XT-BASIS-VS-MORPHOLOGY, 49 of CONF-CODE-IN-LIST
    assert import_responses(home, _answer(batch, tmp_path / "a.xlsx", response), KEY).recorded == 1
    answered = _centre_counts(home)
    assert (answered.answered, answered.reopened, answered.still_open) == (1, 0, 2)
    _change_basis_of_diagnosis(home, 44, "1")
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    reopened = _centre_counts(home)
    assert (reopened.sent, reopened.answered, reopened.confirmed, reopened.corrected_still_present,
            reopened.reopened, reopened.still_open) == (3, 0, 0, 0, 1, 3)
    assert _status(home)[44] is None  # no answer stands for the value found now
    resent = send_queries(home, "IT-BO01", KEY, selection=Selection.NEW_ONLY)
    assert _sent(resent) == [(BASIS, 44, "1 with 8430")]
    assert _centre_counts(home) == reopened  # sent again, not answered yet: still open
    reminders = send_queries(home, "IT-BO01", KEY, selection=Selection.REMINDERS, older_than_days=0)
    assert sorted((rule, line) for rule, line, _ in _sent(reminders)) == [
        ("CONF-CODE-IN-LIST", 49), (BASIS, 44), (BASIS, 95)]
    page = build_report(home.warehouse, home.reports)
    row = next(r for r in _page_rows(page, "query-table") if r["data-centre"] == "IT-BO01")
    assert (row["data-answered"], row["data-reopened"], row["data-open"]) == ("0", "1", "3")
    assert not lxml.html.fromstring(page.read_text(encoding="utf-8")).xpath('//*[@id="corrected-still-present"]')
    _answer_xlsx(resent.xlsx, tmp_path / "b.xlsx", {(BASIS, 44): ("cannot_determine", None)})
    assert import_responses(home, tmp_path / "b.xlsx", KEY).recorded == 1
    assert (_centre_counts(home).reopened, _centre_counts(home).still_open, _status(home)[44]) == (
        0, 2, "cannot_determine")


@pytest.mark.integration
def test_a_confirmation_of_a_finding_no_longer_found_is_counted_apart_from_the_waivers_added(home, tmp_path):
    """The export corrected line 44 (basis 7, histology: no finding) before the centre's confirmation came back:
    its waiver was counted among those that "take effect at the next run", which it never does."""
    batch = send_queries(home, "IT-BO01", KEY)
    _change_basis_of_diagnosis(home, 44, "7")
    pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    result = _import_cli(home, _answer(batch, tmp_path / "late.xlsx", "confirmed"))
    assert result.exit_code == 0, result.stdout
    assert ("1 answers recorded, 0 already imported, 2 unanswered, 0 refused; 0 waivers added (they take effect at "
            "the next run), 1 waivers for a value no longer found (they take effect only if it comes back), 0 "
            "waivers withdrawn") in result.stdout
    assert len(_waivers(home)) == 1  # the centre confirmed that value: should it come back, it is not asked again
    _change_basis_of_diagnosis(home, 44, "2")
    back = pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    assert [value for _, _, value in _issue(home, back.run_id, BASIS, 44, "dq.waived_issue")] == ["2 with 8430"]
