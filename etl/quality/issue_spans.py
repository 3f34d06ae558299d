"""dq.issue kept as spans of runs: a validated run stores the issues that are new or gone.

Every validated run finds its issues anew, and nearly all of them are the last run's: at 100,000
persons some 110,000 issues, 10 MiB a run when each run kept its own rows. A year of nightly runs
would have made the warehouse, which every run copies, several times larger. So dq.validation
numbers the validated runs, dq.issue_span holds each issue once per unbroken series of runs that
found it alike (every column equal), and the view dq.issue spreads the spans over the runs again:
readers see one row per run x issue, as before.

A run's issues are handed over whole (`record`): the spans the run no longer finds end with the
validation before it, and the issues no open span holds start one. A rolled-back publish takes its
validation number and its spans with it. What is counted across runs is counted from the spans
(`issues_per_run`, `latest_by_severity`), and what is spread over runs is read from them (`spans_sql`),
also in a warehouse from before them, not yet published to: this module alone tells the two apart.
"""

from __future__ import annotations

from typing import NamedTuple

import duckdb

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.findings import value_hash_sql
from etl.schema import in_warehouse

ISSUE_COLUMNS = ("rule_id", "severity", "source_id", "centre_id", "table_name", "source_record_key",
                 "patient_pseudonym", "record_set", "line", "field", "value", "message")
_COLUMNS = ", ".join(ISSUE_COLUMNS)
# Two issues are one when every column is equal, NULLs included.
_ALIKE = " AND ".join(f"s.{c} IS NOT DISTINCT FROM i.{c}" for c in ISSUE_COLUMNS)

_NUMBER = "INSERT INTO dq.validation SELECT ?, coalesce(max(number), 0) + 1 FROM dq.validation"
_RECORD = f"""
CREATE OR REPLACE TEMP TABLE _gone AS
    SELECT s.rowid AS r FROM dq.issue_span s ANTI JOIN {{issues}} i ON {_ALIKE} WHERE s.last_validation IS NULL;
UPDATE dq.issue_span SET last_validation = (SELECT max(number) - 1 FROM dq.validation)
    WHERE rowid IN (SELECT r FROM _gone);
INSERT INTO dq.issue_span
    SELECT (SELECT max(number) FROM dq.validation), NULL, {", ".join(f"i.{c}" for c in ISSUE_COLUMNS)}
    FROM {{issues}} i ANTI JOIN (SELECT * FROM dq.issue_span WHERE last_validation IS NULL) s ON {_ALIKE};
DROP TABLE _gone;
"""


def record(con: duckdb.DuckDBPyConnection, run_id: str, issues: str) -> None:
    """Record `run_id` as the next validated run and `issues` (a table or view with ISSUE_COLUMNS,
    each issue once) as every issue it found. The latest validated run validated again (as tests do)
    has its issues replaced."""
    number, latest = con.execute("SELECT (SELECT number FROM dq.validation WHERE run_id = ?), "
                                 "(SELECT max(number) FROM dq.validation)", [run_id]).fetchone() or (None, None)
    if number is None:
        con.execute(_NUMBER, [run_id])
    elif number == latest:  # undone: the spans it began go, those it ended are open again
        con.execute("DELETE FROM dq.issue_span WHERE first_validation = ?", [number])
        con.execute("UPDATE dq.issue_span SET last_validation = NULL WHERE last_validation = ?", [number - 1])
    else:
        raise ValueError(f"run {run_id} is not the latest validated run: its issues cannot be recorded again")
    con.execute(_RECORD.format(issues=issues))


_FROM_ROWS = f"""
INSERT INTO dq.validation
SELECT run_id, row_number() OVER (ORDER BY started_at NULLS LAST, run_id) FROM (
    SELECT run_id, min(started_at) AS started_at FROM (
        SELECT run_id, started_at FROM meta.run WHERE validated
        UNION ALL SELECT DISTINCT run_id, NULL FROM dq.issue_by_run
    ) GROUP BY run_id
);
INSERT INTO dq.issue_span
SELECT min(number), CASE WHEN max(number) < (SELECT max(number) FROM dq.validation) THEN max(number) END,
       {_COLUMNS}
FROM (SELECT i.*, v.number, v.number - dense_rank() OVER (PARTITION BY {_COLUMNS} ORDER BY v.number) AS series
      FROM dq.issue_by_run i JOIN dq.validation v USING (run_id))
GROUP BY series, {_COLUMNS};
DROP TABLE dq.issue_by_run;
"""


def from_rows(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse made before the spans kept dq.issue as a table of every run's issues: its rows become
    spans, its validated runs are numbered (by start), and warehouse/dq.sql makes the view dq.issue in
    its place. Nothing to do in a warehouse with the spans."""
    (kind,) = con.execute("SELECT coalesce(any_value(table_type), '') FROM information_schema.tables WHERE "
                          "table_catalog = current_database() AND table_schema = 'dq' AND table_name = 'issue'"
                          ).fetchone() or ("",)
    if kind != "BASE TABLE":
        return
    con.execute("ALTER TABLE dq.issue RENAME TO issue_by_run")
    con.execute((WAREHOUSE_SQL_DIR / "dq.sql").read_text())
    con.execute(_FROM_ROWS)


# Per validation, the spans begun minus those ended before it, summed over the validations up to it:
# the spans are counted, never spread over the runs (a year of runs x 100,000 issues).
_PER_RUN = """
WITH delta AS (
    SELECT first_validation AS number, count(*) AS n FROM dq.issue_span GROUP BY ALL
    UNION ALL
    SELECT last_validation + 1, -count(*) FROM dq.issue_span WHERE last_validation IS NOT NULL GROUP BY ALL
)
SELECT v.run_id, sum(coalesce(sum(d.n), 0)) OVER (ORDER BY v.number)
FROM dq.validation v LEFT JOIN delta d USING (number)
GROUP BY v.run_id, v.number
"""


def issues_per_run(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many issues each validated run found."""
    spans = in_warehouse(con, "dq.issue_span")
    return dict(con.execute(_PER_RUN if spans else "SELECT run_id, count(*) FROM dq.issue GROUP BY 1").fetchall())


def latest_by_severity(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The latest validation's issues per severity (the open spans)."""
    latest = ("SELECT severity, count(*) FROM dq.issue_span WHERE last_validation IS NULL"
              if in_warehouse(con, "dq.issue_span") else
              "SELECT severity, count(*) FROM dq.issue WHERE run_id = (SELECT max(run_id) FROM dq.issue)")
    return dict(con.execute(f"{latest} GROUP BY 1 ORDER BY 1").fetchall())


class SpansSql(NamedTuple):
    """Queries of the issues as spans of runs: `numbers` the validated runs numbered (run_id, number), `spans`
    each issue's series of runs as numbers (first_number, last_number, rule_id, source_id, source_record_key,
    field, value_hash), for a reader that spreads them over the runs it asks about (the query trend,
    etl/quality/query_status.py)."""

    numbers: str
    spans: str


_SPANS = f"""
SELECT first_validation AS first_number,
       coalesce(last_validation, (SELECT max(number) FROM dq.validation)) AS last_number,
       rule_id, source_id, centre_id, source_record_key, field, {value_hash_sql('value')} AS value_hash
FROM dq.issue_span
"""
# A warehouse from before the spans, not yet published to, keeps a row per run and issue: each is a span of
# its run, the runs numbered by id (its dq.validation is made at its next publish, from_rows).
_RUN_NUMBERS_BEFORE_SPANS = ("SELECT run_id, row_number() OVER (ORDER BY run_id) AS number "
                             "FROM (SELECT DISTINCT run_id FROM dq.issue)")
_ROWS_BEFORE_SPANS = f"""
SELECT n.number AS first_number, n.number AS last_number, i.rule_id, i.source_id, i.centre_id, i.source_record_key,
       i.field, {value_hash_sql('i.value')} AS value_hash
FROM dq.issue i JOIN ({_RUN_NUMBERS_BEFORE_SPANS}) n USING (run_id)
"""


def spans_sql(con: duckdb.DuckDBPyConnection) -> SpansSql:
    """The runs numbered and the issues as spans of them, from dq.issue_span, or from dq.issue's rows in a
    warehouse from before the spans."""
    if in_warehouse(con, "dq.issue_span"):
        return SpansSql("SELECT run_id, number FROM dq.validation", _SPANS)
    return SpansSql(_RUN_NUMBERS_BEFORE_SPANS, _ROWS_BEFORE_SPANS)
