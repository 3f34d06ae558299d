"""dq.issue kept as spans of runs: a validated run stores the issues that are new or gone.

Every validated run finds its issues anew, and nearly all of them are the last run's: at 100,000
persons some 110,000 issues, 10 MiB a run when each run kept its own rows. A year of nightly runs
would have made the warehouse, which every run copies, several times larger. So dq.validation
numbers the validated runs, dq.issue_span holds each issue once per unbroken series of runs that
found it alike (every column equal), and the view dq.issue spreads the spans over the runs again:
readers see one row per run x issue, as before.

A run's issues are handed over whole (`record`): the spans the run no longer finds end with the
validation before it, and the issues no open span holds start one. A rolled-back publish takes its
validation number and its spans with it.
"""

from __future__ import annotations

import duckdb

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


def from_rows(con: duckdb.DuckDBPyConnection, create_schema: str) -> None:
    """A warehouse made before the spans kept dq.issue as a table of every run's issues: its rows become
    spans, its validated runs are numbered (by start), and `create_schema` (warehouse/dq.sql) makes
    the view dq.issue in its place. Nothing to do in a warehouse with the spans."""
    (kind,) = con.execute("SELECT coalesce(any_value(table_type), '') FROM information_schema.tables WHERE "
                          "table_catalog = current_database() AND table_schema = 'dq' AND table_name = 'issue'"
                          ).fetchone() or ("",)
    if kind != "BASE TABLE":
        return
    con.execute("ALTER TABLE dq.issue RENAME TO issue_by_run")
    con.execute(create_schema)
    con.execute(_FROM_ROWS)
