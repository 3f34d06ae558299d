"""A centre is a source's centre: queries to a code two sources use (iltb's FR04, sacha_fr's FR04: two
hospitals) go to one of them, named, and are counted per source and centre; batches sent before batches
recorded their source (which held both sources' issues) keep working.

Each test copies the shared synthetic run, in which iltb and sacha_fr number their centres alike and both
have open issues at some codes (SHARED: the first such code).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import SYNTHETIC_RUN_KEY
from openpyxl import load_workbook
from test_query_roundtrip import KEY, _page_rows, _query
from typer.testing import CliRunner, Result

from etl.cli import app
from etl.config import Home, resolve_home
from etl.quality.findings import value_hash
from etl.quality.queries import (
    HEADER,
    AmbiguousCentre,
    Centre,
    Selection,
    _query_rows,
    _write_files,
    cell_text,
    row_key,
    send_queries,
)
from etl.quality.report import build_report, choose_run
from etl.quality.responses import import_responses

pytestmark = pytest.mark.integration
SOURCE_COLUMN, RESPONSE_COLUMN = HEADER.index("source"), HEADER.index("response") + 1  # openpyxl counts from 1


@pytest.fixture
def home(synthetic_run, tmp_path: Path) -> Home:
    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)
    return resolve_home(tmp_path / "home")


def _shared_code(home: Home) -> tuple[str, dict[str, int]]:
    """A centre code with open issues in two sources of the latest run, and its open issues per source."""
    rows = _query(home, "SELECT centre_id, source_id, count(*) FROM dq.issue WHERE run_id = (SELECT max(run_id) "
                        "FROM dq.issue) AND centre_id IN (SELECT centre_id FROM dq.issue GROUP BY 1 "
                        "HAVING count(DISTINCT source_id) > 1) GROUP BY 1, 2 ORDER BY 1, 2")
    code = rows[0][0]
    counts = {source: n for centre, source, n in rows if centre == code}
    assert len(counts) == 2, counts
    return code, counts


def _queries_cli(home: Home, *options: str) -> Result:
    return CliRunner().invoke(app, ["queries", "--home", str(home.root), *options],
                              env={"RTW_PSEUDONYM_KEY": SYNTHETIC_RUN_KEY, "COLUMNS": "400"})


def _sources_in(path: Path) -> set[str]:
    return {row[SOURCE_COLUMN] for row in load_workbook(path).active.iter_rows(min_row=2, values_only=True)}


def _batches(home: Home) -> list[tuple[str, str | None, str]]:
    return [tuple(r) for r in _query(home, "SELECT batch_id, source_id, centre_id FROM meta.query_batch ORDER BY 1")]


def test_a_centre_code_of_several_sources_is_refused_naming_each_and_how_to_choose(home):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    result = _queries_cli(home, "--centre", code)
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"centre '{code}' is a centre of 2 sources" in message
    assert f"{first} ({counts[first]} open issues), {second} ({counts[second]} open issues)" in message
    assert f"--source {first}" in message and f"--centre {first}:{code}" in message
    assert _batches(home) == []  # nothing sent, nothing recorded
    with pytest.raises(AmbiguousCentre):
        send_queries(home, code, KEY)


def test_a_batch_holds_the_issues_of_one_source_s_centre_and_records_the_source(home):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    by_option = send_queries(home, code, KEY, source_id=first)
    result = _queries_cli(home, "--centre", f"{second}:{code}")
    assert result.exit_code == 0, result.output
    assert f"{counts[second]} queries for centre {code} of {second}" in " ".join(result.output.split())
    (by_name,) = [b for b in _batches(home) if b[0] != by_option.batch_id]
    assert by_option.centre == Centre(first, code) and by_option.queries == counts[first]
    assert _sources_in(by_option.xlsx) == {first}
    assert sorted(_batches(home)) == sorted([(by_option.batch_id, first, code), (by_name[0], second, code)])
    items = _query(home, "SELECT b.source_id, i.source_id, count(*) FROM meta.query_item i "
                         "JOIN meta.query_batch b USING (batch_id) GROUP BY ALL ORDER BY 1")
    assert items == [(first, first, counts[first]), (second, second, counts[second])]
    assert load_workbook(by_option.xlsx).properties.title == f"Data queries for centre {code} of {first}"


def test_the_report_and_the_selections_keep_to_the_source_s_centre(home):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    sent = send_queries(home, code, KEY, source_id=first)
    # The other source's centre was sent nothing yet: all its queries are new, none of them a reminder.
    new_only = send_queries(home, code, KEY, source_id=second, selection=Selection.NEW_ONLY)
    assert (new_only.queries, _sources_in(new_only.xlsx)) == (counts[second], {second})
    again = send_queries(home, f"{first}:{code}", KEY, selection=Selection.NEW_ONLY)
    assert again.queries == 0
    reminders = send_queries(home, code, KEY, source_id=first, selection=Selection.REMINDERS, older_than_days=0)
    assert (reminders.queries, _sources_in(reminders.xlsx)) == (sent.queries, {first})
    rows = _page_rows(build_report(home.warehouse, home.reports), "query-table")
    assert [(r.get("data-source"), r["data-centre"], int(r["data-sent"]), int(r["data-open"])) for r in rows] == [
        (first, code, counts[first], counts[first]), (second, code, counts[second], counts[second])]


def _send_as_before(home: Home, code: str, sources: list[str]) -> tuple[str, Path]:
    """A batch as rtw queries recorded it before batches recorded their source, in a warehouse of that
    version (meta.query_batch without source_id): every source's issues at the code, in one workbook."""
    batch_id = f"Q20261101T090000Z-{code}-0a0b"
    con = duckdb.connect(str(home.warehouse))
    try:
        con.execute("ALTER TABLE meta.query_batch DROP COLUMN source_id")
        choice = choose_run(con)
        rows = [row for source in sources for row in _query_rows(con, choice, Centre(source, code))]
        xlsx, _ = _write_files(home.reports / choice.run_id / "queries", f"queries_{batch_id}", rows,
                               Centre(sources[0], code), batch_id, KEY)
        con.execute("INSERT INTO meta.query_batch VALUES (?, ?, ?, now(), 'officer', 'all', NULL, ?)",
                    [batch_id, code, choice.findings_run_id, xlsx.name])
        con.executemany("INSERT INTO meta.query_item VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (batch_id, row_key(KEY, batch_id, r.identity, r.cells), r.rule_id, r.source_id, r.source_record_key,
             r.field, value_hash(r.value), r.severity, json.dumps([cell_text(c) for c in r.cells])) for r in rows])
    finally:
        con.close()
    return batch_id, xlsx


def test_a_batch_sent_before_batches_recorded_their_source_keeps_working(home, tmp_path):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    batch_id, xlsx = _send_as_before(home, code, [first, second])
    # It went whole to one of the two hospitals, which cannot be told: the report, read from the warehouse as
    # that version left it, counts its queries sent to neither (test_query_old_batches: nor do the reminders).
    assert _page_rows(build_report(home.warehouse, home.reports), "query-table") == []
    # Its answers are imported (the import upgrades the warehouse: the batch's source stays unknown).
    book = load_workbook(xlsx)
    sheet = book.active
    number = next(n for n, row in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2)
                  if row[SOURCE_COLUMN] == second)
    sheet.cell(row=number, column=RESPONSE_COLUMN, value="cannot_determine")
    book.save(tmp_path / "answered.xlsx")
    summary = import_responses(home, tmp_path / "answered.xlsx", KEY)
    assert (summary.recorded, summary.problems) == (1, [])
    assert _batches(home) == [(batch_id, None, code)]
    # --new-only sends each source's centre its queries again, but the one answered (test_query_old_batches).
    for source, answered in ((first, 0), (second, 1)):
        resent = send_queries(home, code, KEY, source_id=source, selection=Selection.NEW_ONLY)
        assert (resent.queries, _sources_in(resent.xlsx)) == (counts[source] - answered, {source})
    # The answer to the old batch counts for the query it answers, at its own source's centre.
    rows = _page_rows(build_report(home.warehouse, home.reports), "query-table")
    assert [(r["data-source"], int(r["data-sent"]), int(r["data-answered"]), int(r["data-open"])) for r in rows] == [
        (first, counts[first], 0, counts[first]), (second, counts[second], 1, counts[second] - 1)]


def test_a_batch_of_one_source_sent_before_batches_recorded_their_source_counts_as_sent_to_its_centre(home):
    code, counts = _shared_code(home)
    first = sorted(counts)[0]
    _send_as_before(home, code, [first])
    resent = send_queries(home, code, KEY, source_id=first, selection=Selection.NEW_ONLY)
    assert resent.queries == 0
