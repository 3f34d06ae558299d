"""The SQL rules and harmonise's checks judge again only the sources whose stage rows changed (the
admitted phase also those whose quarantine changed), and a validation that reuses the other sources'
findings finds what judging every source finds. Core then compares the rows of those sources only."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_gx_batches import _core_differs_from_admitted_stage

from etl import pipeline
from etl.load import warehouse
from etl.quality import gx_memo, rule_memo
from etl.quality import validate as validation
from etl.quality.findings import value_hash
from etl.quality.validate import QualityPlan

FINDINGS = {
    "dq.check_result": "SELECT * EXCLUDE (run_id) FROM dq.check_result WHERE run_id = $run ORDER BY ALL",
    "dq.issue": "SELECT * EXCLUDE (run_id) FROM dq.issue WHERE run_id = $run ORDER BY ALL",
    "dq.waived_issue": "SELECT * EXCLUDE (run_id) FROM dq.waived_issue WHERE run_id = $run ORDER BY ALL",
    "dq.quarantine": "SELECT * EXCLUDE (run_id) FROM dq.quarantine ORDER BY ALL",
}
MEMO = ("rule_judged", "rule_denominator", "rule_failure", "gx_judged", "gx_denominator", "gx_failure")


@pytest.fixture
def validated(synthetic_run: Any, tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, QualityPlan, str]]:
    """A copy of the shared run's warehouse, the run's quality plan (Data Docs to tmp_path) and its run id."""
    home, _, summary = synthetic_run
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(home.warehouse, copy)
    plan = dataclasses.replace(pipeline.quality_plan_for(home, summary.run_id), data_docs_dir=tmp_path / "docs")
    con = duckdb.connect(str(copy))
    try:
        yield con, plan, summary.run_id
    finally:
        con.close()


def _judged_sources(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Collection[str] | None]]:
    """(phase, sources) of each pass of the SQL rules from now on; sources None: every source."""
    passes: list[tuple[str, Collection[str] | None]] = []

    def spy(phase: str, run: Callable[..., Any]) -> Callable[..., Any]:
        def spied(con, rules, sources=None):  # type: ignore[no-untyped-def]
            passes.append((phase, None if sources is None else tuple(sources)))
            return run(con, rules, sources)
        return spied
    monkeypatch.setattr(validation, "run_checks", spy("staged", validation.run_checks))
    monkeypatch.setattr(validation, "run_admitted_checks", spy("admitted", validation.run_admitted_checks))
    return passes


def _findings(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: con.execute(sql, {"run": run_id} if "$run" in sql else {}).fetchall()
            for table, sql in FINDINGS.items()}


def _judged_by(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    return {(phase, source): run for phase, source, run in
            con.execute("SELECT phase, source_id, run_id FROM dq.rule_judged").fetchall()}


def _admitted(con: duckdb.DuckDBPyConnection, admitted_from: dict[str, str],
              monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, ...] | None]:
    """Admit the validated stage to core (as publish does after validation): the sources whose core rows
    were compared, and core then holds what stage minus the quarantine holds."""
    compared: set[tuple[str, ...] | None] = set()
    admit_difference = warehouse._admit_difference

    def spied(con, table, sources=None):  # type: ignore[no-untyped-def]
        compared.add(None if sources is None else tuple(sources))
        return admit_difference(con, table, sources)
    with monkeypatch.context() as patched:
        patched.setattr(warehouse, "_admit_difference", spied)
        warehouse._admit_to_core(con, admitted_from=admitted_from)
    assert set(_core_differs_from_admitted_stage(con).values()) == {0}
    return compared


def _judged_anew(con: duckdb.DuckDBPyConnection, plan: QualityPlan, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """What validating `run_id` again finds with nothing remembered, on a copy of `con`'s warehouse."""
    (path,) = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    con.execute("CHECKPOINT")
    copy = Path(path).with_name("judged-anew.duckdb")
    shutil.copy(path, copy)
    with duckdb.connect(str(copy)) as anew:
        for table in MEMO:
            anew.execute(f"DELETE FROM dq.{table}")
        validation.validate(anew, run_id, plan)
        return _findings(anew, run_id)


@pytest.mark.integration
def test_a_validation_judges_again_only_the_changed_sources_and_finds_what_judging_all_finds(validated, monkeypatch):
    con, plan, first = validated
    sources = {s for (s,) in con.execute("SELECT DISTINCT source_id FROM stage.record").fetchall()}
    assert _judged_by(con) == {(phase, s): first for phase in ("staged", "admitted") for s in sources}
    passes = _judged_sources(monkeypatch)

    # registry_it: a registration gone (its records now name an unknown patient: the admitted phase) and a
    # diagnosis dated before 1900 (the staged phase).
    gone = con.execute("""
        DELETE FROM stage.patient_source WHERE source_id = 'registry_it' AND source_record_key = (
            SELECT min(p.source_record_key) FROM stage.patient_source p
            WHERE p.source_id = 'registry_it'
              AND (SELECT count(*) FROM stage.patient_source q WHERE q.source_id = p.source_id
                   AND q.patient_id = p.patient_id) = 1
              AND EXISTS (SELECT 1 FROM stage.follow_up f WHERE f.source_id = p.source_id
                          AND f.patient_id = p.patient_id AND f.source_record_key NOT IN
                              (SELECT source_record_key FROM dq.quarantine WHERE source_id = 'registry_it')))
        """).fetchone()
    dated = con.execute("UPDATE stage.diagnosis SET diagnosis_date = DATE '1890-05-01' WHERE source_id = 'registry_it' "
                        "AND source_record_key = (SELECT max(source_record_key) FROM stage.diagnosis "
                        "WHERE source_id = 'registry_it' AND diagnosis_date IS NOT NULL)").fetchone()
    assert gone == (1,) and dated == (1,)
    admitted_from = validation.validate(con, "rerun", plan)["admitted_from"]
    assert passes == [("staged", ("registry_it",)), ("admitted", ("registry_it",))]
    assert _admitted(con, admitted_from, monkeypatch) == {("registry_it",)}
    assert _judged_by(con) == {(phase, s): "rerun" if s == "registry_it" else first
                               for phase in ("staged", "admitted") for s in sources}
    found = _findings(con, "rerun")
    new = con.execute("SELECT DISTINCT rule_id, source_id FROM (SELECT rule_id, source_id, source_record_key "
                      "FROM dq.issue WHERE run_id = 'rerun' EXCEPT SELECT rule_id, source_id, source_record_key "
                      "FROM dq.issue WHERE run_id = ?) ORDER BY ALL", [first]).fetchall()
    assert new == [("XT-DATE-NOT-BEFORE-1900", "registry_it"), ("XT-PATIENT-KNOWN", "registry_it")]
    assert found == _judged_anew(con, plan, "rerun")

    # A centre confirms an error (a waiver): the record leaves the quarantine, so the admitted phase
    # judges its source again; the staged phase reuses every source.
    waived = con.execute("SELECT source_id, source_record_key, rule_id, field, value FROM dq.issue "
                         "WHERE run_id = 'rerun' AND rule_id = 'ENR-AGE-ELIGIBLE' ORDER BY ALL LIMIT 1").fetchone()
    assert waived, "the shared run has an age at enrolment out of range"
    con.execute("INSERT INTO meta.waiver (source_id, source_record_key, rule_id, field, value_hash, batch_id, "
                "confirmed_at) VALUES (?, ?, ?, ?, ?, 'batch', now())", [*waived[:4], value_hash(waived[4])])
    passes.clear()
    admitted_from = validation.validate(con, "waived", plan)["admitted_from"]
    assert passes == [("admitted", (waived[0],))]
    assert _admitted(con, admitted_from, monkeypatch) == {(waived[0],)}
    assert con.execute("SELECT count(*) FROM core.study_enrolment WHERE source_id = ? AND source_record_key = ?",
                       waived[:2]).fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM dq.waived_issue WHERE run_id = 'waived'").fetchone() == (1,)
    assert _findings(con, "waived") == _judged_anew(con, plan, "waived")

    # Another plan (a rule's threshold): every source is judged again, by the stage itself.
    changed = next(r for r in plan.rules if r.rule_id == "XT-DATE-NOT-BEFORE-1900")
    rules = [dataclasses.replace(r, meta=r.meta.model_copy(update={"threshold": 0.5})) if r is changed else r
             for r in plan.rules]
    passes.clear()
    validation.validate(con, "replanned", dataclasses.replace(plan, rules=rules))
    assert passes == [("staged", None), ("admitted", None)]
    assert set(_judged_by(con).values()) == {"replanned"}


@pytest.mark.integration
def test_a_rule_that_errs_is_reported_and_nothing_judged_with_it_is_remembered(validated, monkeypatch):
    con, plan, _ = validated
    broken = next(r for r in plan.rules if r.rule_id == "XT-SEX-SITE")
    rules = [dataclasses.replace(r, query="SELECT no_such_column FROM diagnosis") if r is broken else r
             for r in plan.rules]
    validation.validate(con, "broken", dataclasses.replace(plan, rules=rules))
    status = con.execute("SELECT DISTINCT status FROM dq.check_result WHERE run_id = 'broken' "
                         "AND rule_id = 'XT-SEX-SITE'").fetchall()
    assert status == [("error",)]
    # Its phase is judged again next run; the admitted phase, whose rules all ran, is remembered.
    assert {phase for phase, _ in _judged_by(con)} == {"admitted"}
    passes = _judged_sources(monkeypatch)
    validation.validate(con, "mended", plan)
    assert passes == [("staged", None), ("admitted", None)]
    assert _findings(con, "mended") == _judged_anew(con, plan, "mended")


@pytest.mark.integration
def test_an_upgrade_of_the_code_that_judges_judges_every_source_again(validated, monkeypatch):
    con, plan, first = validated
    passes = _judged_sources(monkeypatch)
    validation.validate(con, "same code", plan)
    assert passes == [] and set(_judged_by(con).values()) == {first}

    monkeypatch.setattr(rule_memo, "_code_digest", lambda: "the SQL rules upgraded")
    monkeypatch.setattr(gx_memo, "_code_digest", lambda: "the GX suites upgraded")
    validation.validate(con, "upgraded", plan)
    assert passes == [("staged", None), ("admitted", None)]
    assert set(_judged_by(con).values()) == {"upgraded"}
    gx_judged = con.execute("SELECT DISTINCT run_id FROM dq.gx_judged").fetchall()
    assert gx_judged == [("upgraded",)]
