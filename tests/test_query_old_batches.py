"""Batches sent before batches recorded their source (meta.query_batch.source_id null) count the same way
for --new-only, the reminders and the report: one of a single source's issues as sent to that source's
centre; one that mixed two sources' centres of one code (it went whole to one hospital, which cannot be
told) as sent to neither, so each centre is sent its queries as new, never as a reminder.

The old-style batch is built as test_query_centres builds it, on a copy of the shared synthetic run, and
dated 40 days back.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from test_query_centres import _send_as_before, _shared_code, _sources_in
from test_query_roundtrip import KEY, _page_rows

from etl.config import Home, resolve_home
from etl.quality.queries import Selection, SentBatch, send_queries
from etl.quality.report import build_report

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
