"""The query round trip on a real run: send a centre its queries, answer them in the workbook as a centre
would (openpyxl), import the answers, run again; then change a confirmed value in the export and run again.

One copy of the shared synthetic run (conftest.synthetic_run: registry_it centre IT-BO01 has two warnings
of XT-BASIS-VS-MORPHOLOGY, lines 44 and 95, and a sex code error, CONF-CODE-IN-LIST, line 49), rerun twice.
"""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import lxml.html
import pytest
from conftest import SYNTHETIC_RUN_KEY
from openpyxl import load_workbook
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.config import Home, resolve_home
from etl.quality.catalogue import HARMONISE_RULES, CatalogueError, harmonise_rules, load_catalogue
from etl.quality.queries import (
    HEADER,
    QueryKeyError,
    Selection,
    send_queries,
    warehouse_key,
    write_centre_queries,
)
from etl.quality.query_status import AgePoint, age_trend
from etl.quality.report import build_report
from etl.quality.responses import import_responses
from etl.transform.pseudonym import PseudonymKey

pytestmark = pytest.mark.integration
KEY = PseudonymKey(SYNTHETIC_RUN_KEY.encode())
RULE_COLUMN, LINE_COLUMN, VALUE_COLUMN = HEADER.index("rule id"), HEADER.index("line"), HEADER.index("value")
RESPONSE, COMMENT = HEADER.index("response") + 1, HEADER.index("comment") + 1  # openpyxl columns count from 1
BASIS = "XT-BASIS-VS-MORPHOLOGY"


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def _query(home: Home, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return _rows(con, sql, params)
    finally:
        con.close()


def _sheet_row(path: Path, rule_id: str, line: int) -> int:
    """The sheet row (1-based, header = 1) of the query about `rule_id` at export line `line`."""
    sheet = load_workbook(path).active
    for number, row in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2):
        if row[RULE_COLUMN] == rule_id and row[LINE_COLUMN] == line:
            return number
    raise AssertionError(f"no row of {rule_id} at line {line} in {path.name}")


def _answer_xlsx(sent: Path, out: Path, answers: dict[tuple[str, int], tuple[str, str | None]]) -> dict[str, int]:
    """Fill the response (and comment) column as a centre does in Excel; return answer -> sheet row."""
    book = load_workbook(sent)
    sheet = book.active
    where = {}
    for (rule_id, line), (response, comment) in answers.items():
        number = _sheet_row(sent, rule_id, line)
        sheet.cell(row=number, column=RESPONSE, value=response)
        if comment:
            sheet.cell(row=number, column=COMMENT, value=comment)
        where[f"{rule_id}@{line}"] = number
    book.save(out)
    return where


def _issue(home: Home, run_id: str, rule_id: str, line: int, table: str = "dq.issue") -> list[tuple[Any, ...]]:
    return _query(home, f"SELECT centre_id, source_record_key, value FROM {table} WHERE run_id = ? AND rule_id = ? "
                        "AND source_id = 'registry_it' AND line = ?", [run_id, rule_id, line])


def _page_rows(page: Path, table_id: str) -> list[dict[str, str]]:
    dom = lxml.html.fromstring(page.read_text(encoding="utf-8"))
    return [dict(row.attrib) for row in dom.xpath(f'//table[@id="{table_id}"]/tbody/tr')]


def _change_basis_of_diagnosis(home: Home, line: int, basis: str) -> None:
    """The registry re-exports with the basis of diagnosis of one record changed (a new value, still flagged)."""
    export = next((home.landing / "registry_it").glob("*.csv"))
    lines = export.read_bytes().split(b"\r\n")
    fields = lines[line - 1].split(b";")
    fields[11] = basis.encode()  # base_diagnosi
    lines[line - 1] = b";".join(fields)
    export.write_bytes(b"\r\n".join(lines))


def test_warnings_are_confirmable_errors_only_where_their_rule_says_and_conformance_never():
    rules = {r.rule_id: r for r in load_catalogue(check_types=False)}
    assert all(r.meta.is_confirmable for r in rules.values() if r.meta.severity == "warning")
    confirmable_errors = {r.rule_id for r in rules.values() if r.meta.severity == "error" and r.meta.is_confirmable}
    assert confirmable_errors == {"DIAG-AGE-REGISTRY", "ENR-AGE-ELIGIBLE", "ENR-LVEF-ELIGIBLE"}
    assert not any(r.meta.is_confirmable for r in rules.values() if r.engine == "harmonise")


def test_a_confirmable_conformance_rule_is_refused_by_the_catalogue(tmp_path):
    rules = tmp_path / HARMONISE_RULES
    rules.write_text('{"rules": [{"rule_id": "CONF-DATE-VALID", "category": "conformance", "subcategory": '
                     '"verification", "level": "field", "severity": "error", "threshold": 0, "confirmable": true, '
                     '"description": "A date does not exist."}]}')
    with pytest.raises(CatalogueError, match=r"harmonise\.json \(CONF-DATE-VALID\): .* can never be confirmable"):
        harmonise_rules(rules)


@pytest.fixture(scope="module")
def answered(synthetic_run, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Queries sent to three centres, answered (one workbook tampered with), imported, and a rerun."""
    shared, _, first = synthetic_run
    root = tmp_path_factory.mktemp("roundtrip")
    shutil.copytree(shared.root, root / "home", symlinks=True)
    home = resolve_home(root / "home")
    state = SimpleNamespace(home=home, first_run=first.run_id, work=root)
    state.batch = {centre: send_queries(home, centre, KEY) for centre in ("IT-BO01", "IT-MI01", "IT-MI02")}

    # IT-BO01 answers in Excel: one rare combination confirmed, one corrected, and a sex code "confirmed",
    # which its rule does not allow.
    state.bo_file = root / "IT-BO01 answered.xlsx"
    state.bo_rows = _answer_xlsx(state.batch["IT-BO01"].xlsx, state.bo_file, {
        (BASIS, 44): ("confirmed", "checked with the pathologist: clinical diagnosis"),
        (BASIS, 95): ("corrected", None),
        ("CONF-CODE-IN-LIST", 49): ("confirmed", None)})
    state.bo_import = import_responses(home, state.bo_file, KEY)

    # IT-MI02 confirms an age outside the registry's range (confirmable although an error) and a diagnosis
    # before birth (never confirmable), and answers a third query with a word not in the list.
    state.mi02_file = root / "IT-MI02 answered.xlsx"
    state.mi02_rows = _answer_xlsx(state.batch["IT-MI02"].xlsx, state.mi02_file, {
        ("DIAG-AGE-REGISTRY", 71): ("confirmed", None), ("DIAG-AFTER-BIRTH", 71): ("confirmed", None),
        ("FU-DEATH-DATE-WHEN-DEAD", 67): ("yes", "it is right")})
    state.mi02_import = import_responses(home, state.mi02_file, KEY)

    # IT-MI01 answers in the CSV: one row answered as sent, one whose value cell was edited, and a row
    # pasted from a workbook made with another key (a foreign workbook).
    sent_csv = state.batch["IT-MI01"].csv
    with sent_csv.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    foreign_xlsx, _ = write_centre_queries(home.warehouse, root / "foreign", "IT-MI01", key=PseudonymKey(b"other"),
                                           batch_id=state.batch["IT-MI01"].batch_id)
    foreign = [("" if v is None else str(v)) for v in next(load_workbook(foreign_xlsx).active.iter_rows(
        min_row=2, values_only=True))]
    by_line = {int(row[LINE_COLUMN]): row for row in table[1:]}
    by_line[65][RESPONSE - 1] = "confirmed"
    by_line[78][RESPONSE - 1], by_line[78][VALUE_COLUMN] = "confirmed", "2 with 8000"
    foreign[RESPONSE - 1] = "confirmed"
    state.mi01_file = root / "IT-MI01 answered.csv"
    with state.mi01_file.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([table[0], by_line[65], by_line[78], foreign])
    state.mi01_import = import_responses(home, state.mi01_file, KEY)

    # The same file imported again (through the command line): nothing new, the refused row still refused.
    state.reimport = CliRunner().invoke(app, ["responses", "import", str(state.bo_file), "--home", str(home.root)],
                                        env={"RTW_PSEUDONYM_KEY": SYNTHETIC_RUN_KEY, "COLUMNS": "400"})

    state.rerun = pipeline.run(home, key_value=SYNTHETIC_RUN_KEY)
    state.new_only = send_queries(home, "IT-BO01", KEY, selection=Selection.NEW_ONLY)
    state.reminders = send_queries(home, "IT-BO01", KEY, selection=Selection.REMINDERS, older_than_days=0)
    state.page = build_report(home.warehouse, home.reports)
    return state


@pytest.fixture(scope="module")
def changed(answered: SimpleNamespace) -> SimpleNamespace:
    """After the round trip: the registry changes the value IT-BO01 confirmed, and the nightly run follows."""
    home = answered.home
    _change_basis_of_diagnosis(home, 44, "1")
    state = SimpleNamespace(rerun=pipeline.run(home, key_value=SYNTHETIC_RUN_KEY))
    state.new_only = send_queries(home, "IT-BO01", KEY, selection=Selection.NEW_ONLY)
    state.page = build_report(home.warehouse, home.reports)
    return state


def test_sending_records_the_batch_and_every_row(answered):
    home, batch = answered.home, answered.batch["IT-BO01"]
    sheet = list(load_workbook(batch.xlsx).active.iter_rows(min_row=2, values_only=True))
    recorded = _query(home, "SELECT centre_id, run_id, selection, file_name FROM meta.query_batch WHERE batch_id = ?",
                      [batch.batch_id])
    assert recorded == [("IT-BO01", answered.first_run, "all", batch.xlsx.name)]
    items = _query(home, "SELECT rule_id, row_key FROM meta.query_item WHERE batch_id = ? ORDER BY row_key",
                   [batch.batch_id])
    assert sorted(r[RULE_COLUMN] for r in sheet) == sorted(r[0] for r in items) == sorted(
        [BASIS, BASIS, "CONF-CODE-IN-LIST"])
    assert sorted(r[-1] for r in sheet) == [r[1] for r in items] and {r[-2] for r in sheet} == {batch.batch_id}
    for path in (batch.xlsx, batch.csv):  # pseudonymous keys only; the key itself never in a file
        text = path.read_bytes()
        assert b"TREP-0" not in text and SYNTHETIC_RUN_KEY.encode() not in text


def test_answers_are_checked_row_by_row_and_the_good_rows_taken(answered):
    bo, mi02, mi01 = answered.bo_import, answered.mi02_import, answered.mi01_import
    assert (bo.rows, bo.recorded, bo.waivers_added) == (3, 2, 1)
    (refused,) = bo.problems
    assert str(refused).startswith(f"{answered.bo_file.name} row {answered.bo_rows['CONF-CODE-IN-LIST@49']}: ")
    assert "CONF-CODE-IN-LIST cannot be confirmed" in refused.message

    assert (mi02.recorded, mi02.waivers_added) == (1, 1)  # the age outside the range: confirmable
    problems = {p.row_number: p.message for p in mi02.problems}
    assert "DIAG-AFTER-BIRTH cannot be confirmed" in problems[answered.mi02_rows["DIAG-AFTER-BIRTH@71"]]
    assert "response 'yes' is not one of corrected, confirmed, cannot_determine" in problems[
        answered.mi02_rows["FU-DEATH-DATE-WHEN-DEAD@67"]]

    assert (mi01.rows, mi01.recorded, mi01.waivers_added) == (3, 1, 1)
    edited, foreign = mi01.problems
    assert (edited.file_name, edited.row_number, foreign.row_number) == (answered.mi01_file.name, 3, 4)
    assert "column 'value' changed since the query was sent" in edited.message
    assert "is not one of batch" in foreign.message and "another workbook" in foreign.message


def test_answers_are_recorded_with_who_and_when_and_a_reimport_adds_nothing(answered):
    home = answered.home
    responses = _query(home, "SELECT batch_id, response, comment, file_name, imported_by, imported_at IS NOT NULL "
                             "FROM meta.query_response ORDER BY batch_id, response")
    assert len(responses) == 4  # 2 of IT-BO01, 1 of IT-MI01, 1 of IT-MI02, and no duplicate from the re-import
    assert all(r[4] and r[5] for r in responses)
    assert ("checked with the pathologist: clinical diagnosis" in {r[2] for r in responses})
    assert answered.reimport.exit_code == 1  # one row refused, again; the good ones were already there
    assert "0 answers recorded, 2 already imported" in answered.reimport.stdout
    assert f"{answered.bo_file.name} row {answered.bo_rows['CONF-CODE-IN-LIST@49']}:" in answered.reimport.stdout
    assert _query(home, "SELECT count(*) FROM meta.waiver")[0][0] == 3


def test_confirmed_findings_are_waived_on_the_next_run_and_not_queried_again(answered):
    home, run_id = answered.home, answered.rerun.run_id
    assert answered.rerun.validated and answered.rerun.sources_changed == []  # the waivers alone revalidated
    assert _issue(home, run_id, BASIS, 44) == []
    ((centre, _, value),) = _issue(home, run_id, BASIS, 44, "dq.waived_issue")
    assert (centre, value) == ("IT-BO01", "2 with 8430")
    assert _issue(home, run_id, BASIS, 95) != []  # corrected, but not in the export yet
    counts = _query(home, "SELECT failing_rows, waived_rows, denominator FROM dq.check_result WHERE run_id = ? "
                          "AND rule_id = ? AND source_id = 'registry_it' AND centre_id = 'IT-BO01'", [run_id, BASIS])
    before = _query(home, "SELECT failing_rows, denominator FROM dq.check_result WHERE run_id = ? AND rule_id = ? "
                          "AND source_id = 'registry_it' AND centre_id = 'IT-BO01'", [answered.first_run, BASIS])
    assert counts == [(before[0][0] - 1, 1, before[0][1])]  # every row still accounted for
    # Not queried again: a new-only batch has nothing; reminders carry the corrected-but-present one and
    # the unanswered sex code, not the confirmed one.
    assert answered.new_only.queries == 0
    reminded = sorted((r[RULE_COLUMN], r[LINE_COLUMN]) for r in load_workbook(answered.reminders.xlsx).active.iter_rows(
        min_row=2, values_only=True))
    assert reminded == [("CONF-CODE-IN-LIST", 49), (BASIS, 95)]


def test_a_confirmed_error_is_released_only_where_its_rule_allows(answered):
    home, run_id = answered.home, answered.rerun.run_id
    assert _issue(home, run_id, "DIAG-AGE-REGISTRY", 71) == []
    assert len(_issue(home, run_id, "DIAG-AGE-REGISTRY", 71, "dq.waived_issue")) == 1
    # The same record's diagnosis before birth could not be confirmed: the record stays held back, for it alone.
    held = _query(home, "SELECT rule_ids FROM dq.quarantine WHERE source_id = 'registry_it' AND line = 71")
    assert held == [(["DIAG-AFTER-BIRTH"],)]


def test_the_report_counts_equal_an_independent_count(answered):
    """Expected from what the test sent and answered, and from dq.issue (presence), not from the report's code."""
    home, run_id = answered.home, answered.rerun.run_id
    present = {(rule, line) for rule, line in _query(
        home, "SELECT rule_id, line FROM dq.issue WHERE run_id = ? AND source_id = 'registry_it'", [run_id])}
    sent = {}
    for centre, batch in answered.batch.items():
        sent[centre] = [(r[RULE_COLUMN], r[LINE_COLUMN]) for r in load_workbook(batch.xlsx).active.iter_rows(
            min_row=2, values_only=True)]
    taken = {"IT-BO01": {(BASIS, 44): "confirmed", (BASIS, 95): "corrected"},
             "IT-MI02": {("DIAG-AGE-REGISTRY", 71): "confirmed"}, "IT-MI01": {(BASIS, 65): "confirmed"}}
    rows = {r["data-centre"]: r for r in _page_rows(answered.page, "query-table")}
    assert set(rows) == set(sent)
    for centre, queries in sent.items():
        answers = taken[centre]
        still_open = [q for q in queries if q not in answers and q in present]
        expected = {"data-sent": len(queries), "data-answered": len(answers),
                    "data-confirmed": sum(a == "confirmed" for a in answers.values()),
                    "data-corrected-still-present": sum(a == "corrected" and q in present for q, a in answers.items()),
                    "data-reopened": 0, "data-open": len(still_open),
                    "data-oldest-age": 0 if still_open else ""}  # every batch was sent today
        assert {k: rows[centre][k] for k in expected} == {k: str(v) for k, v in expected.items()}, centre
    assert sorted(r["data-record"] for r in _page_rows(answered.page, "waiver-table")) == sorted(
        r[0] for r in _query(home, "SELECT source_record_key FROM meta.waiver"))
    assert {r["data-status"] for r in _page_rows(answered.page, "waiver-table")} == {"waived"}
    dom = lxml.html.fromstring(answered.page.read_text(encoding="utf-8"))
    assert dom.get_element_by_id("waived-total").text_content() == str(_query(
        home, "SELECT count(*) FROM dq.waived_issue WHERE run_id = ?", [run_id])[0][0])
    still = dom.get_element_by_id("corrected-still-present")
    assert "answered corrected but still present" in " ".join(still.text_content().split())
    ((_, record_key, _),) = _issue(home, run_id, BASIS, 95)
    assert [(r.get("data-rule"), r.get("data-record")) for r in still.xpath(".//tbody/tr")] == [(BASIS, record_key)]
    # The changes since the previous run count the confirmed findings as waived, not as resolved.
    waived_now = {(r, k) for r, k in _query(home, "SELECT rule_id, source_record_key FROM dq.waived_issue "
                                                  "WHERE run_id = ?", [run_id])}
    changes = {b.get("data-kind"): int(b.text) for b in dom.xpath('//*[@id="changes"]//b[@data-kind]')}
    assert changes["waived"] == len(waived_now) == 3 and changes["resolved"] == 0
    points = dom.xpath('//g[@class="query-age-point"]')
    assert points[-1].get("data-open") == str(sum(int(r["data-open"]) for r in rows.values()))
    assert b"TREP-0" not in answered.page.read_bytes()


def test_the_age_of_open_queries_counts_from_the_first_batch_sent(answered):
    """A run described as of a moment before any batch was sent had no query open; after, as the page says."""
    run_id = answered.rerun.run_id
    con = duckdb.connect(str(answered.home.warehouse), read_only=True)
    try:
        (started,) = con.execute("SELECT started_at FROM meta.run WHERE run_id = ?", [run_id]).fetchone()
        assert age_trend(con, [run_id], now=datetime(2000, 1, 1, tzinfo=UTC)) == [
            AgePoint(run_id, started, 0, None, None)]
        (point,) = age_trend(con, [run_id])
    finally:
        con.close()
    rows = _page_rows(answered.page, "query-table")
    assert point.still_open == sum(int(r["data-open"]) for r in rows) > 0


def test_a_changed_value_reopens_its_issue_and_is_queried_again(answered, changed):
    home, run_id = answered.home, changed.rerun.run_id
    assert changed.rerun.sources_changed == ["registry_it"]
    ((centre, _, value),) = _issue(home, run_id, BASIS, 44)
    assert (centre, value) == ("IT-BO01", "1 with 8430")  # open again, with the new value
    assert _issue(home, run_id, BASIS, 44, "dq.waived_issue") == []
    assert len(_issue(home, run_id, "DIAG-AGE-REGISTRY", 71, "dq.waived_issue")) == 1  # other waivers hold
    rows = list(load_workbook(changed.new_only.xlsx).active.iter_rows(min_row=2, values_only=True))
    assert [(r[RULE_COLUMN], r[LINE_COLUMN], r[VALUE_COLUMN]) for r in rows] == [(BASIS, 44, "1 with 8430")]
    waivers = {r["data-record"]: r["data-status"] for r in _page_rows(changed.page, "waiver-table")}
    assert waivers[_query(home, "SELECT source_record_key FROM meta.waiver WHERE centre_id = 'IT-BO01'")[0][0]] == (
        "lapsed: value changed, issue open again")
    bo = next(r for r in _page_rows(changed.page, "query-table") if r["data-centre"] == "IT-BO01")
    assert bo["data-reopened"] == "1"


def test_workbooks_are_made_and_read_with_the_warehouse_key_only(answered):
    assert warehouse_key(answered.home, SYNTHETIC_RUN_KEY).fingerprint() == KEY.fingerprint()
    with pytest.raises(QueryKeyError, match="differs from the one this warehouse was built with") as raised:
        warehouse_key(answered.home, "another key")
    assert "another key" not in str(raised.value) and SYNTHETIC_RUN_KEY not in str(raised.value)


def test_new_only_and_reminders_are_one_choice(tmp_path):
    result = CliRunner().invoke(app, ["queries", "--centre", "IT-BO01", "--new-only", "--reminders-older-than", "30",
                                      "--home", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "give one of them" in result.stdout
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_a_waiver_imported_after_a_run_is_not_shown_lapsed_on_that_run_s_page(answered, tmp_path):
    """The page of a run whose finding a centre confirmed afterwards (the latest page, until the next run)
    showed the waiver 'lapsed: value changed, issue open again' beside a query counted answered and not
    reopened: the run found the issue with the very value confirmed, and the waiver takes effect at the next
    run. Only a value other than the one confirmed lapses it (test_a_changed_value_reopens_...)."""
    from etl.quality.query_status import WAIVED_NEXT_RUN, waivers

    con = duckdb.connect(str(answered.home.warehouse), read_only=True)
    try:
        (rerun_started,) = con.execute("SELECT started_at FROM meta.run WHERE run_id = ?",
                                       [answered.rerun.run_id]).fetchone()
        statuses = {w["status"] for w in waivers(con, answered.first_run, rerun_started)}
    finally:
        con.close()
    assert statuses == {WAIVED_NEXT_RUN}
    page = build_report(answered.home.warehouse, tmp_path / "reports", answered.first_run)
    cells = lxml.html.fromstring(page.read_text(encoding="utf-8")).xpath('//table[@id="waiver-table"]//tbody/tr/td[7]')
    assert cells and {" ".join(c.text_content().split()) for c in cells} == {WAIVED_NEXT_RUN}
    assert not any("failed" in (c.get("class") or "") for c in cells)
