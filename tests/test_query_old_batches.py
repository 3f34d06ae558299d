"""Batches sent before batches recorded their source (meta.query_batch.source_id null) count the same way
for --new-only, the reminders and the report: one of a single source's issues as sent to that source's
centre; one that mixed two sources' centres of one code (it went whole to one hospital, which cannot be
told) as sent to neither, so each centre is sent its queries as new, never as a reminder, but for a row
answered, which counts as sent to its own source's centre and answered. The import's "answered in a newer
batch" matches the query by its source and centre.

The old-style batch is built as test_query_centres builds it, on a copy of the shared synthetic run, and
dated 40 days back.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook
from test_query_centres import RESPONSE_COLUMN, SOURCE_COLUMN, _send_as_before, _shared_code, _sources_in
from test_query_roundtrip import KEY, _page_rows

from etl.config import Home, resolve_home
from etl.quality.queries import Selection, SentBatch, send_queries
from etl.quality.query_status import queries_as_of
from etl.quality.report import build_report, choose_run
from etl.quality.responses import import_responses

pytestmark = pytest.mark.integration
AGE = 40  # days since the old batch was sent


@pytest.fixture
def home(synthetic_run, tmp_path: Path) -> Home:
    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)
    return resolve_home(tmp_path / "home")


def _date_back(home: Home, batch_id: str) -> None:
    con = duckdb.connect(str(home.warehouse))
    try:
        con.execute(f"UPDATE meta.query_batch SET sent_at = sent_at - INTERVAL {AGE} DAY WHERE batch_id = ?",
                    [batch_id])
    finally:
        con.close()


def _query_table(home: Home) -> list[tuple[str | None, str, int, int, str]]:
    rows = _page_rows(build_report(home.warehouse, home.reports), "query-table")
    return [(r.get("data-source"), r["data-centre"], int(r["data-sent"]), int(r["data-open"]), r["data-oldest-age"])
            for r in rows]


def _send(home: Home, code: str, source: str, selection: Selection) -> SentBatch:
    return send_queries(home, code, KEY, source_id=source, selection=selection,
                        older_than_days=30 if selection is Selection.REMINDERS else None, now=datetime.now(UTC))


def test_an_old_batch_of_two_sources_counts_as_sent_to_neither_centre_everywhere(home):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    batch_id, _ = _send_as_before(home, code, [first, second])
    _date_back(home, batch_id)
    # Sent to neither: the report has no query of either centre, and no row is a reminder...
    assert _query_table(home) == []
    for source in (first, second):
        assert _send(home, code, source, Selection.REMINDERS).queries == 0
    # ...but every row is new, to each source's centre, and counted from its new batch.
    for source in (first, second):
        resent = _send(home, code, source, Selection.NEW_ONLY)
        assert (resent.queries, _sources_in(resent.xlsx)) == (counts[source], {source})
    assert _query_table(home) == [(first, code, counts[first], counts[first], "0"),
                                  (second, code, counts[second], counts[second], "0")]


def test_an_old_batch_of_one_source_counts_as_sent_to_its_centre_everywhere(home):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    batch_id, _ = _send_as_before(home, code, [first])
    _date_back(home, batch_id)
    assert _query_table(home) == [(first, code, counts[first], counts[first], str(AGE))]
    assert _send(home, code, first, Selection.NEW_ONLY).queries == 0
    reminders = _send(home, code, first, Selection.REMINDERS)
    assert (reminders.queries, _sources_in(reminders.xlsx)) == (counts[first], {first})
    # The other source's centre was sent nothing: nothing to remind it of, everything new.
    assert _send(home, code, second, Selection.REMINDERS).queries == 0
    assert _send(home, code, second, Selection.NEW_ONLY).queries == counts[second]


def _answer_rows_of(sent: Path, out: Path, source: str, response: str, limit: int | None = None) -> int:
    """Answer the rows of `source`'s issues in a returned workbook (the first `limit` of them); return how many."""
    book = load_workbook(sent)
    sheet = book.active
    numbers = [n for n, row in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2)
               if row[SOURCE_COLUMN] == source][:limit]
    for number in numbers:
        sheet.cell(row=number, column=RESPONSE_COLUMN, value=response)
    book.save(out)
    return len(numbers)


def test_an_answered_row_of_an_old_batch_of_two_sources_counts_for_its_own_source_s_centre_everywhere(home, tmp_path):
    """The answer was recorded but counted nowhere: the report showed the query unanswered (or not at all),
    and --new-only sent the centre the query it had just answered, as new."""
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    batch_id, xlsx = _send_as_before(home, code, [first, second])
    _date_back(home, batch_id)
    answered = _answer_rows_of(xlsx, tmp_path / "answered.xlsx", second, "cannot_determine", limit=1)
    summary = import_responses(home, tmp_path / "answered.xlsx", KEY)
    assert (answered, summary.recorded, summary.problems) == (1, 1, [])
    # The answered row counts as sent to its own source's centre, from the old batch, and answered;
    # the unanswered rows still count as sent to neither centre.
    assert _query_table(home) == [(second, code, 1, 0, "")]
    for source in (first, second):
        assert _send(home, code, source, Selection.REMINDERS).queries == 0
    assert _send(home, code, first, Selection.NEW_ONLY).queries == counts[first]
    assert _send(home, code, second, Selection.NEW_ONLY).queries == counts[second] - 1
    rows = _page_rows(build_report(home.warehouse, home.reports), "query-table")
    assert [(r["data-source"], int(r["data-sent"]), int(r["data-answered"]), int(r["data-open"])) for r in rows] == [
        (first, counts[first], 0, counts[first]), (second, counts[second], 1, counts[second] - 1)]


def test_an_answered_row_of_an_old_batch_of_two_sources_counts_only_from_when_its_answer_came(home, tmp_path):
    """Before its answer was imported, the row was sent to neither centre: a page of that moment shows nothing."""
    code, counts = _shared_code(home)
    batch_id, xlsx = _send_as_before(home, code, sorted(counts))
    _date_back(home, batch_id)
    _answer_rows_of(xlsx, tmp_path / "answered.xlsx", sorted(counts)[1], "cannot_determine", limit=1)
    before = datetime.now(UTC)
    import_responses(home, tmp_path / "answered.xlsx", KEY)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        run_id = choose_run(con).findings_run_id
        assert queries_as_of(con, run_id, before) == []
        assert len(queries_as_of(con, run_id, datetime.now(UTC))) == 1
    finally:
        con.close()


def test_an_answer_to_one_source_s_centre_is_not_taken_for_the_other_s_of_the_same_code(home, tmp_path):
    """Review finding: the newer answer that supersedes an older batch's was said to be matched by centre code
    alone. It is matched by the query, whose source is the item's: sacha_fr's FR04 answering a later batch
    leaves an answer to iltb's FR04's earlier batch standing."""
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    older = _send(home, code, first, Selection.ALL)
    newer = _send(home, code, second, Selection.ALL)
    _answer_rows_of(newer.xlsx, tmp_path / "second.xlsx", second, "cannot_determine")
    _answer_rows_of(older.xlsx, tmp_path / "first.xlsx", first, "cannot_determine")
    assert import_responses(home, tmp_path / "second.xlsx", KEY).recorded == counts[second]
    summary = import_responses(home, tmp_path / "first.xlsx", KEY)
    assert (summary.recorded, summary.superseded, summary.warnings) == (counts[first], 0, [])
    assert [(source, sent, still_open) for source, _, sent, still_open, _ in _query_table(home)] == [
        (first, counts[first], 0), (second, counts[second], 0)]


def test_an_answer_to_an_old_batch_of_two_sources_gives_way_only_to_a_newer_answer_of_its_own_source(home, tmp_path):
    code, counts = _shared_code(home)
    first, second = sorted(counts)
    batch_id, xlsx = _send_as_before(home, code, [first, second])
    _date_back(home, batch_id)
    newer = _send(home, code, first, Selection.ALL)
    _answer_rows_of(newer.xlsx, tmp_path / "newer.xlsx", first, "corrected")
    assert import_responses(home, tmp_path / "newer.xlsx", KEY).problems == []
    book = tmp_path / "old.xlsx"
    _answer_rows_of(xlsx, book, first, "cannot_determine", limit=1)
    _answer_rows_of(book, book, second, "cannot_determine", limit=1)
    summary = import_responses(home, book, KEY)
    assert (summary.recorded, summary.superseded) == (1, 1)  # second's row stands; first's gives way
