"""Where the queries to centres stand: sent, answered, confirmed, still open and how old, per centre.

A centre is a source's centre (each source numbers its own: iltb's FR04 and sacha_fr's FR04 are two
hospitals), so queries are counted per source and centre code. What was sent to which centre is read in
one place, sent_items_sql, for the report, the reminders, --new-only and the import alike
(etl/quality/queries.py, responses.py): a batch sent before batches recorded their source
(meta.query_batch.source_id null) counts as sent to its rows' source's centre when its rows are of one
source; one that held two sources' issues at one code went whole to one of the hospitals, which cannot be
told, so its unanswered rows count as sent to neither (each centre is sent those queries again, as new).
A row of it that was answered is a query that reached a centre: it counts as sent to its own source's
centre, from the batch's day (its age) but only once its answer was imported (a page of an earlier moment
does not show it), and its answer counts as any other.

Read from meta.query_batch / query_item / query_response / waiver and the findings of a run
(dq.issue, dq.waived_issue), for the report and the reminders (etl/quality/queries.py). A query is an
issue as identified across runs (rule, source, record, field) sent to a centre, however many batches
carried it; its age counts from the first batch. An answer is about a value: the one shown in the row it
answers. As of a moment `as_of` (the report of the latest run: now; of an older run: the start of the
run after it, so its page shows what was known before the next run), against the findings of the run:
- answered: a response imported by then (the latest one to the newest batch answered: rows of two
  batches answered in one file are imported at the same moment), which stands: given for the value the
  run finds, or the issue is gone;
- reopened: answered, but the run finds the issue with another value than the one answered (a
  confirmed value changed, so its waiver lapsed; a correction that is still wrong or a new error; a
  new value to look at): the answer no longer stands, and the query is open again;
- open: not answered (or reopened), and still among the run's issues; a query whose issue is gone is
  closed;
- corrected but still present: answered `corrected`, yet the issue is still there with that value.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from etl.quality import issue_spans
from etl.quality.findings import value_hash_sql
from etl.schema import in_warehouse

# The rows each source's centre was sent. A batch's source is the one it recorded or, in a batch sent before
# batches recorded it, the one source of its rows; rows of an old batch of two sources match neither unless
# answered: an answered row counts for its own source's centre from when its first answer was imported.
_SENT_ITEMS = """
SELECT b.centre_id, i.batch_id, i.row_key, i.rule_id, i.source_id, i.source_record_key,
       coalesce(i.field, '') AS field, i.value_hash, b.sent_at,
       CASE WHEN i.source_id = coalesce({batch_source}, o.only_source) THEN b.sent_at
            ELSE a.first_answered END AS counted_from
FROM meta.query_item i JOIN meta.query_batch b USING (batch_id)
LEFT JOIN (SELECT batch_id, min(source_id) AS only_source FROM meta.query_item GROUP BY batch_id
           HAVING count(DISTINCT source_id) = 1) o USING (batch_id)
LEFT JOIN (SELECT batch_id, row_key, min(imported_at) AS first_answered FROM meta.query_response
           GROUP BY ALL) a USING (batch_id, row_key)
WHERE i.source_id = coalesce({batch_source}, o.only_source) OR a.first_answered IS NOT NULL
"""


def sent_items_sql(con: duckdb.DuckDBPyConnection) -> str:
    """A query of the rows sent to each source's centre (centre_id, batch_id, row_key, the issue identity
    with field '' for none, value_hash, sent_at, and counted_from: when the row became known as sent to the
    centre, sent_at but for an answered row of an old batch of two sources). A warehouse of an earlier version has no
    meta.query_batch.source_id until its next publish, and the report reads it as it is."""
    recorded = con.execute("SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() AND "
                           "schema_name = 'meta' AND table_name = 'query_batch' AND column_name = 'source_id'"
                           ).fetchone()
    return _SENT_ITEMS.format(batch_source="b.source_id" if recorded and recorded[0] else "NULL::VARCHAR")


_QUERIES = """
WITH sent AS (
    SELECT * FROM ({sent_items}) WHERE counted_from <= $as_of {of_centre}
), answered AS (   -- one row per query: its latest answer by then to the newest batch answered, and the value
    SELECT s.centre_id, s.rule_id, s.source_id, s.source_record_key, s.field,
           arg_max({{'response': r.response, 'value_hash': s.value_hash}}, (s.sent_at, r.imported_at)) AS answer
    FROM sent s JOIN meta.query_response r USING (batch_id, row_key)
    WHERE r.imported_at <= $as_of
    GROUP BY 1, 2, 3, 4, 5
), present AS (    -- the run's open findings of each issue identity at each centre, and the values they have (an
                   -- issue whose record moved to another centre is no more the first centre's query)
    SELECT centre_id, rule_id, source_id, source_record_key, coalesce(field, '') AS field,
           list(DISTINCT {issue_value_hash}) AS value_hashes
    FROM dq.issue WHERE run_id = $run {of_source} GROUP BY ALL
), queries AS (   -- one row per query (centre x issue identity)
    SELECT s.centre_id, s.rule_id, s.source_id, s.source_record_key, s.field, min(s.sent_at) AS first_sent
    FROM sent s GROUP BY 1, 2, 3, 4, 5
), judged AS (
    SELECT q.*, a.answer, p.value_hashes,
           coalesce(NOT list_contains(p.value_hashes, a.answer.value_hash), false) AS is_answer_for_another_value
    FROM queries q
    LEFT JOIN answered a USING (centre_id, rule_id, source_id, source_record_key, field)
    LEFT JOIN present p USING (centre_id, rule_id, source_id, source_record_key, field)
)
SELECT centre_id, rule_id, source_id, source_record_key, nullif(field, '') AS field, first_sent,
       CASE WHEN NOT is_answer_for_another_value THEN answer.response END AS response,
       value_hashes IS NOT NULL AS is_present,
       floor(extract(epoch FROM ($as_of - first_sent)) / 86400)::INTEGER AS age_days,
       CASE WHEN is_answer_for_another_value THEN answer.response END AS answer_for_another_value
FROM judged
ORDER BY source_id, centre_id, source_record_key, rule_id, field
"""


# The open queries of _QUERIES at every run asked for at once, each run as of its moment (as_of_for: the start
# of the next run, else now), in one pass: a query per run made the nightly report slower by each run. What was
# sent and answered is read once, as steps in time: from when each query counts as sent (and its first batch
# by then), from when each answer stands (the latest usable by then, as _QUERIES orders them). Only the issues
# ever sent are spread over the runs that found them (from the spans of dq.issue, by run number, as
# issue_spans.spans_sql reads them), and each takes the steps in force at its run's moment (ASOF joins).
_AGE_TREND = """
WITH items AS (
    SELECT s.*, dense_rank() OVER (ORDER BY centre_id, rule_id, source_id, source_record_key, field) AS query,
           dense_rank() OVER (ORDER BY centre_id, rule_id, source_id, source_record_key, field) AS issue
    FROM ({sent_items}) s
), sent_from AS (  -- from when a query counts as sent, and its first batch sent by then
    SELECT query, counted_from AS since, any_value(first_sent) AS first_sent
    FROM (SELECT query, counted_from, min(sent_at) OVER (PARTITION BY query ORDER BY counted_from) AS first_sent
          FROM items)
    GROUP BY ALL
), answered_from AS (  -- from when an answer stands: the latest by batch sent, then import, usable by then
    SELECT query, since, any_value(answer) AS answer
    FROM (SELECT i.query, greatest(i.counted_from, r.imported_at) AS since,
                 arg_max({{'response': r.response, 'value_hash': i.value_hash}}, (i.sent_at, r.imported_at))
                     OVER (PARTITION BY i.query ORDER BY greatest(i.counted_from, r.imported_at)) AS answer
          FROM items i JOIN meta.query_response r USING (batch_id, row_key))
    GROUP BY ALL
), starts AS (     -- each start and the next one after it, as as_of_for finds it
    SELECT started_at, lead(started_at) OVER (ORDER BY started_at) AS next_started
    FROM (SELECT DISTINCT started_at FROM meta.run WHERE started_at IS NOT NULL)
), moments AS (
    SELECT v.run_id, r.started_at, coalesce(n.next_started, $now) AS as_of, k.number
    FROM (SELECT unnest($runs::VARCHAR[]) AS run_id) v
    LEFT JOIN meta.run r USING (run_id) LEFT JOIN starts n USING (started_at) LEFT JOIN ({numbers}) k USING (run_id)
), found AS (      -- the issues ever sent that each run found, and the values it found them with
    SELECT m.run_id, m.as_of, i.issue, list(DISTINCT s.value_hash) AS value_hashes
    FROM ({spans}) s
    JOIN (SELECT DISTINCT issue, centre_id, rule_id, source_id, source_record_key, field FROM items) i
      ON i.rule_id = s.rule_id AND i.source_id = s.source_id AND i.source_record_key = s.source_record_key
     AND i.field = coalesce(s.field, '') AND i.centre_id = s.centre_id
    JOIN moments m ON m.number BETWEEN s.first_number AND s.last_number
    GROUP BY ALL
), judged AS (
    SELECT f.run_id, f.as_of, f.value_hashes, q.query
    FROM found f JOIN (SELECT DISTINCT issue, query FROM items) q USING (issue)
), open AS (       -- as Query.is_open: sent by then, and no answer by then stands for a value the run finds
    SELECT j.run_id, floor(extract(epoch FROM (j.as_of - s.first_sent)) / 86400)::INTEGER AS age_days
    FROM judged j ASOF JOIN sent_from s ON j.query = s.query AND j.as_of >= s.since
    ASOF LEFT JOIN answered_from a ON j.query = a.query AND j.as_of >= a.since
    WHERE (CASE WHEN NOT coalesce(NOT list_contains(j.value_hashes, a.answer.value_hash), false)
                THEN a.answer.response END) IS NULL
)
SELECT m.run_id, any_value(m.started_at), count(o.age_days)::INTEGER, median(o.age_days), max(o.age_days)
FROM moments m LEFT JOIN open o USING (run_id)
GROUP BY m.run_id
"""


@dataclass(frozen=True)
class Query:
    """One query to a centre (of the query's source), as of a moment."""

    centre_id: str  # the source's own centre code
    rule_id: str
    source_id: str
    source_record_key: str  # pseudonymised
    field: str | None
    first_sent: datetime
    response: str | None  # the answer that stands: for the value the run finds (or the last, if the issue is gone)
    is_present: bool  # still among the run's issues
    age_days: int
    answer_for_another_value: str | None = None  # the latest answer, when it was for a value the run no longer finds

    @property
    def is_reopened(self) -> bool:
        return self.answer_for_another_value is not None

    @property
    def is_open(self) -> bool:
        """Still found, and no answer stands for the value found (none, or one given for another value)."""
        return self.response is None and self.is_present

    @property
    def is_corrected_still_present(self) -> bool:
        return self.response == "corrected" and self.is_present


@dataclass(frozen=True)
class CentreQueries:
    """A centre's queries counted: the report's table."""

    source_id: str
    centre_id: str  # the source's own centre code
    sent: int
    answered: int
    confirmed: int
    corrected_still_present: int
    reopened: int
    still_open: int
    median_age_days: float | None  # of the open ones
    oldest_age_days: int | None


@dataclass(frozen=True)
class AgePoint:
    """Open queries at one validated run, and their age."""

    run_id: str
    started_at: datetime | None
    still_open: int
    median_age_days: float | None
    oldest_age_days: int | None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def has_query_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """A warehouse of a version before the query round trip has none of its tables until its next publish."""
    return all(in_warehouse(con, f"meta.{table}") for table in ("query_batch", "query_item", "query_response",
                                                                   "waiver"))


def queries_as_of(con: duckdb.DuckDBPyConnection, findings_run_id: str, as_of: datetime,
                  centre: tuple[str, str] | None = None) -> list[Query]:
    """The queries as of `as_of` against the run's findings; of one centre (source, centre code) only, if
    given: read in the query, not filtered after (the reminders of a centre, etl/quality/queries.py)."""
    if not has_query_tables(con):
        return []
    sql = _QUERIES.format(sent_items=sent_items_sql(con), issue_value_hash=value_hash_sql("value"),
                          of_centre="AND source_id = $source AND centre_id = $centre" if centre else "",
                          of_source="AND source_id = $source" if centre else "")
    params: dict[str, Any] = {"run": findings_run_id, "as_of": as_of}
    if centre:
        params["source"], params["centre"] = centre
    return [Query(*row) for row in con.execute(sql, params).fetchall()]


def per_centre(queries: list[Query]) -> list[CentreQueries]:
    """The queries counted per source and centre code, by source then centre."""
    by_centre: dict[tuple[str, str], list[Query]] = {}
    for query in queries:
        by_centre.setdefault((query.source_id, query.centre_id), []).append(query)
    summary = []
    for (source_id, centre_id), centre in sorted(by_centre.items()):
        ages = [q.age_days for q in centre if q.is_open]
        summary.append(CentreQueries(
            source_id, centre_id, len(centre), sum(q.response is not None for q in centre),
            sum(q.response == "confirmed" for q in centre),
            sum(q.is_corrected_still_present for q in centre), sum(q.is_reopened for q in centre),
            len(ages), _median(ages), max(ages, default=None)))
    return summary


def as_of_for(con: duckdb.DuckDBPyConnection, run_id: str, now: datetime | None = None) -> datetime:
    """The moment a run's page describes: the start of the next run, or now for the latest run."""
    later = con.execute("SELECT min(started_at) FROM meta.run WHERE started_at > (SELECT started_at FROM meta.run "
                        "WHERE run_id = ?)", [run_id]).fetchone()
    return later[0] if later and later[0] is not None else (now or datetime.now(UTC))


def age_trend(con: duckdb.DuckDBPyConnection, validated: list[str], now: datetime | None = None) -> list[AgePoint]:
    """Open queries and their age at each validated run (as of the start of the run after it), all runs in one
    query (_AGE_TREND): the report is built every night, and a query per run made it slower by each run."""
    if not has_query_tables(con):
        return []
    found_by_run = issue_spans.spans_sql(con)
    sql = _AGE_TREND.format(sent_items=sent_items_sql(con), numbers=found_by_run.numbers, spans=found_by_run.spans)
    found = {run_id: (started_at, still_open, median_age, oldest) for run_id, started_at, still_open, median_age, oldest
             in con.execute(sql, {"runs": list(dict.fromkeys(validated)), "now": now or datetime.now(UTC)}).fetchall()}
    return [AgePoint(run_id, *found[run_id]) for run_id in validated]


WAIVED_NEXT_RUN = "confirmed after this run judged it: waived from the next run on"
# A waiver the run found open with the value confirmed was imported after the run judged it (the report of
# the latest run describes now): it takes effect at the next run. Found with another value, it lapsed.
_WAIVERS = f"""
WITH waived AS (SELECT DISTINCT source_id, source_record_key, rule_id, coalesce(field, '') AS field
                FROM dq.waived_issue WHERE run_id = $run),
reopened AS (SELECT source_id, source_record_key, rule_id, coalesce(field, '') AS field,
                    list(DISTINCT {value_hash_sql('value')}) AS value_hashes
             FROM dq.issue WHERE run_id = $run GROUP BY ALL)
SELECT w.source_id, w.centre_id, w.rule_id, w.field, w.source_record_key, w.batch_id, w.confirmed_at,
       w.imported_by,
       CASE WHEN v.rule_id IS NOT NULL THEN 'waived'
            WHEN list_contains(o.value_hashes, w.value_hash) THEN '{WAIVED_NEXT_RUN}'
            WHEN o.rule_id IS NOT NULL THEN 'lapsed: value changed, issue open again'
            ELSE 'not found in this run' END AS status
FROM meta.waiver w
LEFT JOIN waived v ON v.source_id = w.source_id AND v.source_record_key = w.source_record_key
      AND v.rule_id = w.rule_id AND v.field = coalesce(w.field, '')
LEFT JOIN reopened o ON o.source_id = w.source_id AND o.source_record_key = w.source_record_key
      AND o.rule_id = w.rule_id AND o.field = coalesce(w.field, '')
WHERE w.confirmed_at <= $as_of
ORDER BY w.source_id, w.centre_id, w.source_record_key, w.rule_id, w.field
"""


def waivers(con: duckdb.DuckDBPyConnection, findings_run_id: str, as_of: datetime) -> list[dict[str, Any]]:
    """Every waiver by then, with whether the run waived it, found it changed (lapsed) or not at all."""
    if not has_query_tables(con):
        return []
    cursor = con.execute(_WAIVERS, {"run": findings_run_id, "as_of": as_of})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
