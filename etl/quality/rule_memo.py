"""What the SQL rules and harmonise's checks found in each source, kept so that a run judges again
only the sources whose stage rows changed.

Each of these rules judges a source's records by that source's records alone (sql_checks). So what
a phase's rules found in a source stands while all they can read is what it was: every stage row of
the source (every column: linkage's person ids too, which the rules compare), its export files as
meta.source_file describes them (name, size, series, date), the stage tables of no source that a
rule names, the plan (rules, settings, parameters, the DDL's dates and references), the code that
runs the rules and DuckDB's version; for the admitted phase, also the source's records held in
dq.quarantine. A run
fingerprints each source, judges only those whose fingerprint is not the one in dq.rule_judged,
and takes the others' denominators and failures from dq.rule_denominator and dq.rule_failure.
As with GX's memo (gx_memo), findings are kept before waivers, thresholds and the quarantine,
which are applied to them every run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from etl.quality.catalogue import Rule
from etl.resources import code_digest
from etl.schema import in_warehouse, rows_digest_by_source

_CODE = ("findings.py", "rule_memo.py", "sql_checks.py", "validate.py")  # what judges, beside the plan
_FILES = "SELECT source_id, source_file_sha256, file_name, size_bytes, series, exported_on FROM meta.source_file"
_MEMO = ("rule_judged", "rule_denominator", "rule_failure")


@dataclass(frozen=True)
class SourcePlan:
    """A phase's sources by fingerprint, and which of them its rules must judge this run."""

    phase: str  # staged / admitted (a rule's phase)
    fingerprints: dict[str, str]  # source -> fingerprint of what the phase's rules read of it
    reused: dict[str, str]  # source -> the run whose findings still hold

    @property
    def to_judge(self) -> list[str]:
        return sorted(s for s in self.fingerprints if s not in self.reused)

    @property
    def sources(self) -> list[str] | None:
        """The sources to judge; None when that is every source (the rules read the stage itself)."""
        return self.to_judge if self.reused else None


def stage_sums(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule]) -> dict[str, str]:
    """Per source, the row sums of each stage table and of its files in meta.source_file; under '' those
    of the stage tables of no source that a rule's query names (the child population, which the marts
    write after the first validation, is read by none)."""
    tables = con.execute(
        "SELECT table_name, bool_or(column_name = 'source_id') FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = 'stage' AND NOT internal GROUP BY ALL ORDER BY 1").fetchall()
    queries = "\n".join(r.query or "" for r in rules)
    sums = {name: rows_digest_by_source(con, f'SELECT * FROM stage."{name}"' if sourced else
                                        f'SELECT \'\' AS source_id, * FROM stage."{name}"')
            for name, sourced in tables if sourced or re.search(rf"\b{re.escape(name)}\b", queries)}
    if in_warehouse(con, "meta.source_file"):
        sums["meta.source_file"] = rows_digest_by_source(con, _FILES)
    sources = sorted({s for found in sums.values() for s in found} | {""})
    return {s: "|".join(f"{name}={found.get(s, '')}" for name, found in sorted(sums.items())) for s in sources}


def with_quarantine(con: duckdb.DuckDBPyConnection, sums: dict[str, str]) -> dict[str, str]:
    """`sums` with each source's records held in dq.quarantine: what the admitted phase reads too."""
    held = rows_digest_by_source(con, "SELECT source_id, source_record_key FROM dq.quarantine")
    return {s: f"{found}|held={held.get(s, '')}" for s, found in sums.items()}


@cache
def _code_digest() -> str:
    return code_digest((Path(__file__).with_name(name) for name in _CODE), "duckdb")


def plan(con: duckdb.DuckDBPyConnection, phase: str, plan_fingerprint: str, sums: dict[str, str]) -> SourcePlan:
    """Fingerprint each source for `phase` (stage_sums, with_quarantine) and find those judged before."""
    common = hashlib.sha256(f"{phase}|{plan_fingerprint}|{sums.get('', '')}|{_code_digest()}".encode())
    prints = {s: hashlib.sha256(f"{common.hexdigest()}|{found}".encode()).hexdigest()
              for s, found in sums.items() if s}
    known = con.execute("SELECT source_id, fingerprint, run_id FROM dq.rule_judged WHERE phase = ?",
                        [phase]).fetchall()
    return SourcePlan(phase, prints, {s: run for s, print_, run in known if prints.get(s) == print_})


def keep(con: duckdb.DuckDBPyConnection, run_id: str, plan: SourcePlan, judged_now: Collection[str],
         erred: Collection[str]) -> None:
    """With the phase's findings of this run loaded (validate's temporary tables _judged and _failure):
    add the remembered findings of the sources reused (but of a rule that erred now), forget what no
    longer holds, and remember the findings of the rules `judged_now` over the sources judged, unless
    a rule erred (they are judged again next run)."""
    given = {"phase": plan.phase, "reused": sorted(plan.reused), "erred": sorted(erred)}
    recalled = "phase = $phase AND list_contains($reused, source_id) AND NOT list_contains($erred, rule_id)"
    con.execute("INSERT INTO _judged BY NAME SELECT rule_id, source_id, centre_id, denominator "
                f"FROM dq.rule_denominator WHERE {recalled}", given)
    con.execute("INSERT INTO _failure BY NAME SELECT rule_id, source_id, source_record_key, field, value, message, "
                f"table_name FROM dq.rule_failure WHERE {recalled}", given)
    for table in _MEMO:
        con.execute(f"DELETE FROM dq.{table} WHERE phase = $phase AND NOT list_contains($reused, source_id)",
                    {"phase": plan.phase, "reused": sorted(plan.reused)})
    if erred or not plan.to_judge:
        return
    con.executemany("INSERT INTO dq.rule_judged VALUES (?, ?, ?, ?)",
                    [(plan.phase, s, plan.fingerprints[s], run_id) for s in plan.to_judge])
    now = {"phase": plan.phase, "sources": plan.to_judge, "rules": sorted(judged_now)}
    judged = "list_contains($sources, source_id) AND list_contains($rules, rule_id)"
    con.execute("INSERT INTO dq.rule_denominator SELECT $phase, source_id, rule_id, centre_id, denominator "
                f"FROM _judged WHERE {judged}", now)
    con.execute("INSERT INTO dq.rule_failure SELECT $phase, source_id, rule_id, source_record_key, field, value, "
                f"message, table_name FROM _failure WHERE {judged}", now)
