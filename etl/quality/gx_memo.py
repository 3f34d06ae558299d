"""What GX found in each source's rows, kept so that a run judges again only the rows that changed.

A GX rule judges a row by that row alone, or (uniqueness) by the rows of its source: every id the
suites hold unique is drawn from the source's id. So what GX found in one source's rows of a table
stands while the columns the table's rules read, the rows' centres, the rules and the code that
judges (ours and GX's) are what they were (a reloaded export's new lineage, or a person id linkage
rewrote, changes nothing GX reads). A run fingerprints each source's rows of each table, judges
only the sources whose fingerprint is not the one in dq.gx_judged, takes the others' denominators
and failures from dq.gx_denominator and dq.gx_failure, and then remembers what it judged. A nightly
run in which one source changed validates that source alone, and when no source's rows changed GX
is not even imported. Waivers, thresholds and the quarantine are applied to the findings
afterwards, every run, whichever run judged them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd

from etl import timing
from etl.quality.catalogue import Rule, fingerprint
from etl.quality.findings import KEY_COLUMNS, RuleRun
from etl.quality.gx_process import CENTRE, GxHere, Job, Judge, end_early, ready
from etl.quality.gx_suites import Batch, combined_runs
from etl.resources import code_digest
from etl.schema import among, rows_digest_by_source, sql_text

log = logging.getLogger(__name__)

END_AFTER_ROWS = 100_000  # GX's process ends after judging this many rows (Judging.written)
# ... or after judging rows of a stage this large: core and marts, built next over the whole warehouse,
# peak with it beside them (100,000 persons, one source 1% changed: 1,507 MiB for the process tree).
END_BESIDE_STAGE_ROWS = 1_000_000
IN_PROCESS_ROWS = 1_000_000  # from this many rows to judge, GX judges in the run's process (gx_process.GxHere)
_CODE = ("findings.py", "gx_memo.py", "gx_process.py", "gx_suites.py")  # what judges, beside the rules


@dataclass(frozen=True)
class TablePlan:
    """A table's sources by fingerprint, and which of them GX must judge this run."""

    table: str
    fingerprints: dict[str, str]  # source -> fingerprint of its rows, their centres and the table's rules
    reused: dict[str, str]  # source -> the run whose findings still hold
    columns: tuple[str, ...] = ()  # the columns the fingerprints cover (judged_columns)

    @property
    def to_judge(self) -> list[str]:
        return sorted(s for s in self.fingerprints if s not in self.reused)


class Judging:
    """GX judging the changed sources' rows, in its process while the run goes on (validation takes the
    `runs` when it needs them, `keep`s the findings, then waits until the Data Docs are `written`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, plans: dict[str, TablePlan],
                 judged_now: Sequence[Rule], process: Judge | None = None, folder: Path | None = None,
                 ends: bool = False):
        self._con, self._run_id, self._plans = con, run_id, plans
        self._judged_now, self._process, self._folder, self._ends = judged_now, process, folder, ends
        self._answered = process is None
        self._fresh: list[RuleRun] = []

    def runs(self) -> list[RuleRun]:
        """What GX judged now, where the rows changed: one run per rule (its error, if it erred).
        `keep` adds what was found before in the other rows."""
        self._fresh = combined_runs([self._process.runs()]) if self._process else []
        return self._fresh

    def keep(self) -> None:
        """With the run's findings loaded (validate's temporary tables _judged and _failure): add those
        remembered for the sources not judged again (not of a rule that erred now), forget what no
        longer holds, and remember what was judged now for the next run."""
        with timing.step("validate GX findings kept"):
            _recall(self._con, self._plans, [r.rule_id for r in self._fresh if r.error is not None])
            _forget_stale(self._con, self._plans)
            _remember(self._con, self._run_id, self._plans, self._judged_now, self._fresh)

    def written(self) -> None:
        """Wait until GX has written the Data Docs of what it judged. A process that judged many rows,
        or judged beside a large stage, ends then: its memory goes back to the system before core and
        marts (a small one stays, for the next validation in this process to skip the import)."""
        if self._process:
            self._process.docs_written()
            if self._ends:
                self._process.end()
        self._answered = True

    def close(self) -> None:
        """Remove the batch files; a process whose answers were not all taken is ended, so that the
        next validation never reads them as its own."""
        if not self._answered and self._process:
            self._process.abandon()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)


def judge(con: duckdb.DuckDBPyConnection, run_id: str, rules: Sequence[Rule], *, batch_rows: int,
          data_docs_dir: Path | None = None, unless_reading: Collection[str] = ()) -> Judging | None:
    """Start judging every GX rule over the sources whose rows changed (module docstring): their rows go
    to GX's process as batch files, and GX judges while the run goes on; from IN_PROCESS_ROWS rows, GX
    judges them here and now, read from `con`. None, nothing started, when a rule reads one of the
    columns `unless_reading` (which the run has yet to write)."""
    stage = dict(con.execute(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = 'stage'").fetchall())
    tables = sorted({r.meta.table for r in rules if r.meta.table})
    with timing.step("validate GX fingerprints"):
        centres = rows_digest_by_source(con, "SELECT source_id, source_record_key, centre_id FROM stage.record")
        plans = {t: _plan(con, t, [r for r in rules if r.meta.table == t], centres) for t in tables if t in stage}
    if any(set(p.columns) & set(unless_reading) for p in plans.values()):
        return None
    # A table missing from stage goes to GX as well, whose runner reports its rules as errors.
    judged_now = [r for r in rules if r.meta.table not in plans or plans[r.meta.table].to_judge]
    reused = sorted({(s, run) for p in plans.values() for s, run in p.reused.items()})
    if reused:
        log.info("GX findings reused for rows unchanged since they were judged: %s",
                 ", ".join(f"{s} (run {run})" for s, run in reused))
    if not judged_now:  # nothing changed that GX reads: GX is not even imported
        return Judging(con, run_id, plans, judged_now)
    batches = {t: _Batches.of(con, plans[t], batch_rows, kept_together([r for r in rules if r.meta.table == t]))
               for t in sorted({r.meta.table for r in judged_now if r.meta.table in plans})}
    rows = sum(b.rows for b in batches.values())
    if rows >= IN_PROCESS_ROWS:  # judged now, from this connection: no batch files
        here = _here(lambda table: batches[table].frames(con) if table in batches else None)
        here.submit(Job(judged_now, {}, data_docs_dir, run_id))
        return Judging(con, run_id, plans, judged_now, here, ends=True)
    folder = _batch_folder(con)
    try:
        with timing.step("validate GX batches written"):
            files = {t: _batch_files(con, b, folder) for t, b in batches.items()}
        process = ready()
        process.submit(Job(judged_now, {t: [path for path, _ in written] for t, written in files.items()},
                           data_docs_dir, run_id))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    ends = rows >= END_AFTER_ROWS or sum(stage.values()) >= END_BESIDE_STAGE_ROWS
    return Judging(con, run_id, plans, judged_now, process, folder, ends)


def _plan(con: duckdb.DuckDBPyConnection, table: str, table_rules: Sequence[Rule],
          centres: dict[str, str]) -> TablePlan:
    """Fingerprint each source's rows of `table` (the columns its rules read) and its records' centres
    with the table's rules, and find the sources judged before."""
    columns = [c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'stage' AND table_name = ? "
        "ORDER BY column_index", [table]).fetchall()]
    rules_digest = fingerprint(table_rules, {"code": _code_digest(), "columns": columns})
    judged = judged_columns(columns, table_rules)
    quoted = ", ".join(f'"{c}"' for c in judged)
    rows = rows_digest_by_source(con, f"SELECT {quoted} FROM stage.{table}")
    prints = {source: hashlib.sha256(f"{rules_digest}|{rows_sum}|{centres.get(source)}".encode()).hexdigest()
              for source, rows_sum in rows.items()}
    known = con.execute("SELECT source_id, fingerprint, run_id FROM dq.gx_judged WHERE table_name = ?",
                        [table]).fetchall()
    reused = {source: run for source, print_, run in known if prints.get(source) == print_}
    return TablePlan(table, prints, reused, tuple(judged))


@cache
def _code_digest() -> str:
    """What turns rows into GX's findings: the batches, the suites, the findings' form, GX, and the libraries GX
    judges the batches with (pandas evaluates a rule's row_condition; pyarrow reads the batches)."""
    return code_digest((Path(__file__).with_name(name) for name in _CODE), "great_expectations", "pandas", "pyarrow")


def judged_columns(columns: Sequence[str], table_rules: Sequence[Rule]) -> list[str]:
    """The columns GX's findings on a table can depend on: those its rules name (column, column_list,
    column_A, in a row condition, ...) and the keys findings are given by; every column when a rule
    judges the table as a whole (expect_table_*)."""
    expectations = [r.expectation or {} for r in table_rules]
    if any(str(e.get("type", "")).startswith("expect_table_") for e in expectations):
        return list(columns)
    named = json.dumps(expectations)
    return [c for c in columns if c in KEY_COLUMNS or re.search(rf"\b{re.escape(c)}\b", named)]


def _here(batches_of: Callable[[str], Iterator[Batch] | None]) -> GxHere:
    end_early()  # its memory is wanted here
    log.info("GX judges in this process: %s rows or more to judge", f"{IN_PROCESS_ROWS:,}")
    return GxHere(batches_of)


def _batch_folder(con: duckdb.DuckDBPyConnection) -> Path:
    """A new private folder for the batch files: beside the database being written (a publish's
    `.next` file, whose leftovers crash repair clears), or a temporary one for a database in memory."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    if row and row[0]:
        beside = Path(f"{row[0]}.gx")
        shutil.rmtree(beside, ignore_errors=True)
        beside.mkdir(mode=0o700)
        return beside
    return Path(tempfile.mkdtemp(prefix="rtw-gx-"))


# A rule of these kinds judges each row by itself (its columns): a table's rows can be split anyhow. A uniqueness
# rule judges a row by the others holding its value, which go to GX in the same batch; any other rule (a column's
# mean, a table's row count, compound uniqueness, values increasing row after row) judges the table as a whole,
# which is then one batch.
_ROW_BY_ROW = ("expect_column_values_to_", "expect_column_pair_values_", "expect_multicolumn_",
               "expect_select_column_values_to_be_unique_within_record")
_UNIQUE = "expect_column_values_to_be_unique"
_NEIGHBOURS = {"expect_column_values_to_be_increasing", "expect_column_values_to_be_decreasing"}  # each row's last


def kept_together(table_rules: Sequence[Rule]) -> tuple[str, ...] | None:
    """The columns whose equal values GX must judge in one batch (a uniqueness rule's); None: the whole
    table in one batch (a rule judging it as a whole, or two uniqueness rules, which no split serves)."""
    types = [(str(e.get("type", "")), (e.get("kwargs") or {}).get("column")) for e in
             (r.expectation or {} for r in table_rules)]
    unique = {str(column) for kind, column in types if kind == _UNIQUE}
    if len(unique) > 1 or not all(kind.startswith(_ROW_BY_ROW) and kind not in _NEIGHBOURS for kind, _ in types):
        return None
    return tuple(unique)


@dataclass(frozen=True)
class _Batches:
    """The rows to judge of a stage table in batches of about `size` rows, at least one (maybe empty, so every
    rule of the table is judged): in rowid order, or, for a uniqueness rule, by a hash of the column it reads,
    so that a duplicate is never split from its twin by a batch's edge, whatever the table's size."""

    plan: TablePlan
    within: tuple[str, ...]  # each batch's condition on the rows (t)
    rows: int

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, plan: TablePlan, size: int,
           together: tuple[str, ...] | None = ()) -> _Batches:
        """Read in one pass, before any batch: rows written in the open transaction number from 2**62."""
        found = con.execute(
            f"SELECT rowid, total FROM (SELECT rowid, row_number() OVER (ORDER BY rowid) - 1 AS n, "
            f"count(*) OVER () AS total FROM stage.{plan.table} WHERE {among('source_id', plan.to_judge)}) "
            "WHERE n % $size = 0 ORDER BY rowid", {"size": size}).fetchall()
        rows, starts = (found[0][1] if found else 0), [int(start) for start, _ in found]
        if together is None or len(starts) < 2:
            return cls(plan, ("true",), rows)
        if together:  # a null is unique to GX: a row without a value is placed by itself
            by = f'hash(coalesce(t."{together[0]}"::VARCHAR, t.rowid::VARCHAR)) % {len(starts)}'
            return cls(plan, tuple(f"{by} = {n}" for n in range(len(starts))), rows)
        return cls(plan, tuple(f"t.rowid >= {start}" + ("" if end is None else f" AND t.rowid < {end}")
                               for start, end in zip(starts, [*starts[1:], None], strict=True)), rows)

    def queries(self) -> Iterator[str]:
        """Each batch's query. A row has the columns the table's rules can read (the fingerprint's:
        GX's findings depend on no other), and its record's centre (stage.record holds one row per
        record key), for the denominators."""
        wanted = among("t.source_id", self.plan.to_judge)
        columns = ", ".join(f't."{c}"' for c in self.plan.columns)
        for within in self.within:
            yield (f"SELECT {columns}, r.centre_id AS {CENTRE} FROM stage.{self.plan.table} t LEFT JOIN stage.record r "
                   f"USING (source_id, source_record_key) WHERE {within} AND {wanted} "
                   "ORDER BY t.rowid")

    def frames(self, con: duckdb.DuckDBPyConnection) -> Iterator[Batch]:
        """The batches as data frames, for GX judging in this process: the very frames GX's process
        reads from the files (`_batch_files`)."""
        for query in self.queries():
            frame = con.execute(query).df()
            yield Batch(frame, frame.pop(CENTRE))


def _batch_files(con: duckdb.DuckDBPyConnection, batches: _Batches, folder: Path) -> list[tuple[Path, int]]:
    """The batches as Parquet files (with their counts), for GX's process."""
    files = []
    for n, query in enumerate(batches.queries()):
        path = folder / f"{batches.plan.table}-{n:05d}.parquet"
        written = con.execute(f"COPY ({query}) TO {sql_text(str(path))} (FORMAT parquet)").fetchone()
        files.append((path, written[0] if written else 0))
    return files


def _recall(con: duckdb.DuckDBPyConnection, plans: dict[str, TablePlan], erred: Sequence[str]) -> None:
    """Add the remembered findings of the sources not judged again to the run's, in SQL (at 100,000
    persons some 25,000 failures), but those of a rule that erred now: its error stands alone."""
    wanted = _reused(plans)
    if wanted.empty:
        return
    con.register("_gx_reused", wanted)
    try:
        kept = "SEMI JOIN _gx_reused USING (table_name, source_id) WHERE NOT list_contains($erred::VARCHAR[], rule_id)"
        con.execute("INSERT INTO _judged BY NAME SELECT rule_id, source_id, centre_id, denominator "
                    f"FROM dq.gx_denominator {kept}", {"erred": list(erred)})
        con.execute("INSERT INTO _failure BY NAME SELECT rule_id, source_id, source_record_key, field, value, message "
                    f"FROM dq.gx_failure {kept}", {"erred": list(erred)})
    finally:
        con.unregister("_gx_reused")


def _forget_stale(con: duckdb.DuckDBPyConnection, plans: dict[str, TablePlan]) -> None:
    """Drop what no longer holds: a source judged again, gone from stage, or a table without rules."""
    con.register("_gx_kept", _reused(plans))
    try:
        for table in ("gx_judged", "gx_denominator", "gx_failure"):
            con.execute(f"DELETE FROM dq.{table} t WHERE NOT EXISTS (SELECT 1 FROM _gx_kept k "
                        "WHERE k.table_name = t.table_name AND k.source_id = t.source_id)")
    finally:
        con.unregister("_gx_kept")


def _reused(plans: dict[str, TablePlan]) -> pd.DataFrame:
    return pd.DataFrame([(p.table, s) for p in plans.values() for s in p.reused],
                        columns=["table_name", "source_id"], dtype=object)


def _remember(con: duckdb.DuckDBPyConnection, run_id: str, plans: dict[str, TablePlan], judged_now: Sequence[Rule],
              fresh: Sequence[RuleRun]) -> None:
    """Keep what GX judged this run, per table and source; not a table one of whose rules erred (it is
    judged again next run)."""
    erred = {r.rule_id for r in fresh if r.error is not None}
    table_of = {r.rule_id: r.meta.table for r in judged_now}
    tables = {t for t in {r.meta.table for r in judged_now} - {table_of[rule] for rule in erred} if t in plans}
    judged = pd.DataFrame([(t, s, plans[t].fingerprints[s], run_id) for t in sorted(tables)
                           for s in plans[t].to_judge], columns=["table_name", "source_id", "fingerprint", "run_id"])
    denominators = [r.judged.assign(rule_id=r.rule_id, table_name=table_of[r.rule_id])
                    for r in fresh if r.error is None and table_of.get(r.rule_id) in tables]
    failures = [r.failures.assign(rule_id=r.rule_id, table_name=table_of[r.rule_id])  # message: of a column pair's
                for r in fresh if r.error is None and table_of.get(r.rule_id) in tables]
    for table, frames in (("gx_judged", [judged]), ("gx_denominator", denominators), ("gx_failure", failures)):
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if frame.empty:
            continue
        con.register("_gx_memo", frame.astype(object).where(frame.notna(), None))
        try:
            con.execute(f"INSERT INTO dq.{table} BY NAME SELECT * FROM _gx_memo")
        finally:
            con.unregister("_gx_memo")
