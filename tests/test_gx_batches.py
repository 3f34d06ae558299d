"""GX validates a stage table in batches of rows, and the findings are those of one whole-table pass;
a rerun judges only the sources whose rows changed, and finds what judging every source finds; core
is written by its difference from the admitted stage rows, and holds what a rebuild holds; linkage
keeps the last run's persons while nothing it links from changed. GX judges in a process of its own,
whose death errs the GX rules only, and whose answers never outlive their validation."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from processes import alive

from etl import pipeline, timing
from etl.config import Home, resolve_home
from etl.link import run as linkage
from etl.link.model import load_config
from etl.link.run import LINKAGE_WRITES
from etl.load import warehouse
from etl.quality import gx_memo, gx_process
from etl.quality import validate as validation
from etl.quality.catalogue import Rule, RuleMeta

FINDINGS = {
    "dq.check_result": "SELECT * EXCLUDE (run_id) FROM dq.check_result ORDER BY ALL",
    "dq.issue": "SELECT * EXCLUDE (run_id) FROM dq.issue ORDER BY ALL",
    "dq.quarantine": "SELECT * EXCLUDE (run_id) FROM dq.quarantine ORDER BY ALL",
}


@pytest.fixture(scope="module")
def first_run(small_run: Home) -> tuple[Home, str]:
    """The session's small run (40 persons, every source) and its run's id: read only, a test that changes it
    works on a copy."""
    con = duckdb.connect(str(small_run.warehouse), read_only=True)
    try:
        (run_id,), = con.execute("SELECT run_id FROM meta.run").fetchall()
    finally:
        con.close()
    return small_run, run_id


@pytest.mark.integration
def test_batches_of_a_few_rows_find_what_one_pass_finds(first_run, tmp_path, monkeypatch):
    home, run_id = first_run
    plan = _plan_writing_docs_to(home, run_id, tmp_path / "docs")

    batches_read = _count_batches(monkeypatch)

    def findings(rows: int) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
        copy = tmp_path / f"batches-{rows}.duckdb"
        shutil.copy(home.warehouse, copy)
        monkeypatch.setattr(validation, "GX_BATCH_ROWS", rows)
        batches_read.clear()
        con = duckdb.connect(str(copy))
        try:
            _forget_findings(con)  # else nothing would be judged again
            validation.validate(con, run_id, plan)
            return {table: con.execute(sql).fetchall() for table, sql in FINDINGS.items()}
        finally:
            con.close()

    con = duckdb.connect(str(home.warehouse), read_only=True)
    largest = con.execute("SELECT max(estimated_size) FROM duckdb_tables() WHERE schema_name = 'stage' "
                          "AND table_name IN ('follow_up', 'diagnosis', 'treatment')").fetchone()
    con.close()
    assert largest and largest[0] > 100
    rows = largest[0] // 3 + 1  # the largest tables span three batches, and a checkpoint run costs GX a second
    whole = findings(1_000_000)
    assert [t for t, _ in batches_read].count("follow_up") == 1
    batched = findings(rows)
    assert max([t for t, _ in batches_read].count(table) for table, _ in batches_read) == 3
    assert whole["dq.issue"] and whole == batched


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """(table, sources) of each batch GX is given from now on."""
    read: list[tuple[str, tuple[str, ...]]] = []
    batch_files = gx_memo._batch_files

    def counted(con: duckdb.DuckDBPyConnection, batches: gx_memo._Batches, *args):  # type: ignore[no-untyped-def]
        files = batch_files(con, batches, *args)
        assert sum(n for _, n in files) == batches.rows
        for path, _ in files:
            # only the columns the table's rules can read (those its fingerprint covers), and the centre
            assert pq.ParquetFile(path).schema_arrow.names == [*batches.plan.columns, gx_process.CENTRE]
            sources = duckdb.sql(f"SELECT DISTINCT source_id FROM read_parquet('{path}') ORDER BY 1").fetchall()
            read.append((batches.plan.table, tuple(s for (s,) in sources)))
        return files
    monkeypatch.setattr(gx_memo, "_batch_files", counted)
    return read


LINKS = "SELECT * FROM stage.patient_link ORDER BY ALL"
# The review list but the run naming it: a night that keeps the linkage makes the list its own.
CANDIDATES = "SELECT * EXCLUDE (run_id) FROM dq.link_candidate ORDER BY ALL"


def _rows_not_of_their_person(con: duckdb.DuckDBPyConnection) -> int:
    """Stage rows whose patient_id is not their source patient's person (stage.patient_link)."""
    return sum(con.execute(
        f"SELECT count(*) FROM stage.{table} t JOIN stage.record r USING (source_id, source_record_key) "
        "JOIN (SELECT DISTINCT source_id, source_patient_pseudonym, patient_id FROM stage.patient_link) l "
        "ON l.source_id = r.source_id AND l.source_patient_pseudonym = r.patient_pseudonym "
        "WHERE t.patient_id IS DISTINCT FROM l.patient_id").fetchone()[0] for table in warehouse.source_tables())


def _count_scorings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The features linkage scores from now on, one entry per scoring."""
    scored: list[int] = []
    score_pairs = linkage.score_pairs

    def counted(features, config, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(len(features))
        return score_pairs(features, config, **kwargs)
    monkeypatch.setattr(linkage, "score_pairs", counted)
    return scored


def _started_early(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], gx_process.GxProcess]]:
    """From now on, runs start GX's process early whatever their size; each start: the validation steps
    timed before it, and the process."""
    gx_process.end_early()
    monkeypatch.setattr(pipeline, "GX_EARLY_MIN_BYTES", 0)
    starts: list[tuple[list[str], gx_process.GxProcess]] = []
    start_early, first = gx_process.start_early, len(timing.recorded)

    def recorded() -> None:
        start_early()
        if not starts:
            assert gx_process._ready is not None
            starts.append(([s.name for s in timing.recorded[first:] if s.name.startswith("validate")],
                           gx_process._ready))
    monkeypatch.setattr(gx_process, "start_early", recorded)
    return starts


def _forget_findings(con: duckdb.DuckDBPyConnection) -> None:
    for table in ("gx_judged", "gx_denominator", "gx_failure", "rule_judged", "rule_denominator", "rule_failure"):
        con.execute(f"DELETE FROM dq.{table}")


def _rerun_findings(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    return {table: con.execute(sql.replace("ORDER BY", "WHERE run_id = $run ORDER BY") if "run_id" in sql else sql,
                               {"run": run_id}).fetchall()
            for table, sql in FINDINGS.items()}


def _later_contacts(export: Path) -> None:
    """A later last contact on some records, and on the first one a death known to the month only (a GX
    finding: FU-DEATH-DATE-COMPLETE)."""
    lines = export.read_bytes().split(b"\r\n")
    header = lines[0].split(b";")
    contact, vital, death = (header.index(name) for name in (b"data_ultimo_contatto", b"stato_vitale", b"data_decesso"))
    for i in range(1, len(lines), 5):
        fields = lines[i].split(b";")
        if len(fields) == len(header):
            fields[contact] = b"30/10/2026"
            if i == 1:
                fields[vital], fields[death] = b"M", b"00/10/2026"
            lines[i] = b";".join(fields)
    export.write_bytes(b"\r\n".join(lines))


@pytest.mark.integration
def test_a_rerun_judges_only_the_changed_source_and_finds_what_judging_all_finds(first_run, tmp_path, monkeypatch):
    shutil.copytree(first_run[0].root, tmp_path / "home", symlinks=True)
    home, first = resolve_home(tmp_path / "home"), first_run[1]
    batches_read, scorings = _count_batches(monkeypatch), _count_scorings(monkeypatch)
    _later_contacts(next((home.landing / "registry_it").glob("*.csv")))
    started_early = _started_early(monkeypatch)
    rerun = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert rerun.sources_changed == ["registry_it"]
    # GX's process was started with the run, before any validation step, and judged.
    assert [steps for steps, _ in started_early] == [[]] and gx_process._ready is started_early[0][1]
    assert batches_read and {sources for _, sources in batches_read} == {("registry_it",)}
    # Only follow-up changed: its other tables' new lineage (the export's sha256) is nothing GX reads.
    assert {table for table, _ in batches_read} == {"follow_up"}
    assert scorings == []  # later contacts link no one anew

    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        remembered = _rerun_findings(con, rerun.run_id)
        judged_by = {(table, source): run for table, source, run in con.execute(
            "SELECT table_name, source_id, run_id FROM dq.gx_judged").fetchall()}
        assert _rows_not_of_their_person(con) == 0
        assert set(_core_differs_from_admitted_stage(con).values()) == {0}
    finally:
        con.close()
    assert [judged for judged, run in judged_by.items() if run == rerun.run_id] == [("follow_up", "registry_it")]
    every_source = {source for _, source in judged_by}
    # The report links this run's Data Docs (registry_it) and those of the run that judged the others.
    page = (home.reports / rerun.run_id / "index.html").read_text()
    assert (home.reports / first / "data_docs" / "index.html").is_file()
    assert 'id="data-docs" href="data_docs/index.html"' in page
    assert f'class="earlier-data-docs" href="../{first}/data_docs/index.html"' in page

    # Every source judged again from scratch finds the same, the new finding included.
    copy = tmp_path / "all-judged.duckdb"
    shutil.copy(home.warehouse, copy)
    plan = pipeline.quality_plan_for(home, rerun.run_id)
    con = duckdb.connect(str(copy))
    try:
        kept_links = con.execute(LINKS).fetchall()
        con.execute("DELETE FROM dq.link_scored")
        linkage.link_sources(con, rerun.run_id, load_config(), warehouse.source_tables())
        assert len(scorings) == 1 and con.execute(LINKS).fetchall() == kept_links
        assert _rows_not_of_their_person(con) == 0

        _forget_findings(con)
        batches_read.clear()
        validation.validate(con, rerun.run_id, plan)
        assert {s for _, sources in batches_read for s in sources} == every_source
        assert _rerun_findings(con, rerun.run_id) == remembered
        new_finding = ("SELECT count(*) FROM dq.issue i JOIN dq.check USING (rule_id) WHERE run_id = ? AND "
                       "engine = 'gx' AND source_id = 'registry_it' AND i.field = 'death_date_precision'")
        assert con.execute(new_finding, [rerun.run_id]).fetchone() == (1,)

        # A rule changed: its table is judged again for every source, the other tables are not.
        changed = next(r for r in plan.rules if r.engine == "gx" and r.meta.table == "follow_up")
        rules = [dataclasses.replace(r, meta=r.meta.model_copy(update={"threshold": 0.5})) if r is changed else r
                 for r in plan.rules]
        batches_read.clear()
        validation.validate(con, rerun.run_id, dataclasses.replace(plan, rules=rules))
        assert {t for t, _ in batches_read} == {"follow_up"}
        assert {s for _, sources in batches_read for s in sources} == every_source & {
            s for (s,) in con.execute("SELECT DISTINCT source_id FROM stage.follow_up").fetchall()}
    finally:
        con.close()


def _core_differs_from_admitted_stage(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Per source table, the rows in core but not in stage minus the quarantine, or the other way round."""
    differences = {}
    for table in warehouse.source_tables():
        admitted = (f"SELECT * FROM stage.{table} ANTI JOIN dq.quarantine USING (source_id, source_record_key)")
        core = f"SELECT * FROM core.{table}"
        row = con.execute(f"SELECT (SELECT count(*) FROM ({core} EXCEPT ALL {admitted})) + "
                          f"(SELECT count(*) FROM ({admitted} EXCEPT ALL {core}))").fetchone()
        differences[table] = row[0] if row else -1
    return differences


@pytest.mark.integration
def test_core_is_written_by_its_difference_and_holds_what_a_rebuild_holds(first_run, tmp_path, monkeypatch):
    copy = tmp_path / "rewritten.duckdb"
    shutil.copy(first_run[0].warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        keys = "SELECT source_id || '|' || source_record_key, rowid FROM core.follow_up"
        before = dict(con.execute(keys).fetchall())
        con.execute("BEGIN")
        # A few later contacts (of records in core: a held record's changes reach no core row), and another
        # record held back.
        changed = con.execute("UPDATE stage.follow_up SET contact_date = contact_date + 1 "
                              "WHERE contact_date IS NOT NULL AND hash(source_record_key) % 10 = 0 "
                              "AND source_id || '|' || source_record_key NOT IN "
                              "(SELECT source_id || '|' || source_record_key FROM dq.quarantine)").fetchone()
        held = con.execute("INSERT INTO dq.quarantine (run_id, source_id, source_record_key) "
                           "SELECT 'a run', source_id, source_record_key FROM stage.follow_up "
                           "ANTI JOIN dq.quarantine USING (source_id, source_record_key) "
                           "WHERE hash(source_record_key) % 10 = 1 LIMIT 1").fetchone()
        assert changed and 0 < changed[0] < len(before) // 4 and held == (1,)
        persons = "SELECT * FROM core.patient ORDER BY ALL"
        unchanged_persons = con.execute(persons).fetchall()
        warehouse._admit_to_core(con)
        assert set(_core_differs_from_admitted_stage(con).values()) == {0}
        after = dict(con.execute(keys).fetchall())
        kept = {key for key, rowid in after.items() if before.get(key) == rowid}
        assert len(after) == len(before) - 1 and len(kept) == len(before) - changed[0] - 1  # the others written anew
        # core.patient derived again for the persons whose rows changed is core.patient derived for all.
        derived_again = con.execute(persons).fetchall()
        assert derived_again != unchanged_persons  # later contacts, a record held back
        warehouse._derive_patients(con, whole=True)
        assert con.execute(persons).fetchall() == derived_again

        # Most rows changed: the table is emptied and filled, with the same result.
        con.execute("UPDATE stage.follow_up SET run_id = 'another run'")
        emptied: list[str] = []
        empty = warehouse._emptied
        monkeypatch.setattr(warehouse, "_emptied", lambda con, table: emptied.append(table) or empty(con, table))
        warehouse._admit_to_core(con)
        assert emptied == ["follow_up", "patient"]  # a table filled anew: core.patient is derived for all
        assert set(_core_differs_from_admitted_stage(con).values()) == {0}
    finally:
        con.close()


@pytest.mark.integration
def test_linkage_scores_again_only_when_a_feature_a_decision_the_model_or_the_code_changed(first_run, tmp_path,
                                                                                           monkeypatch):
    copy = tmp_path / "linked.duckdb"
    shutil.copy(first_run[0].warehouse, copy)
    scorings = _count_scorings(monkeypatch)
    con = duckdb.connect(str(copy))
    try:
        con.execute("BEGIN")
        # A review band wide enough that the small run has pairs to review: scored once under it, before counting.
        wide = load_config().model_copy(update={"review_threshold": 0.0001, "fingerprint": "a wide review band"})
        linkage.link_sources(con, "a run reviewing more", wide, warehouse.source_tables())
        scorings.clear()
        candidates = con.execute(CANDIDATES).fetchall()
        assert candidates
        linked = con.execute(LINKS).fetchall()
        assert linked
        # As a reload leaves them: rows naming harmonise's id where their person is another one.
        reloaded = sum(con.execute(
            f"UPDATE stage.{table} t SET patient_id = l.harmonised_patient_id "
            "FROM stage.record r, stage.patient_link l "
            "WHERE r.source_id = t.source_id AND r.source_record_key = t.source_record_key "
            "AND l.source_id = r.source_id AND l.source_patient_pseudonym = r.patient_pseudonym "
            "AND l.patient_id <> l.harmonised_patient_id").fetchone()[0] for table in warehouse.source_tables())
        assert reloaded > 0 and _rows_not_of_their_person(con) == reloaded
        linkage.link_sources(con, "a later run", wide, warehouse.source_tables())
        assert scorings == [] and con.execute(LINKS).fetchall() == linked
        assert _rows_not_of_their_person(con) == 0
        assert con.execute(CANDIDATES).fetchall() == candidates

        con.execute("UPDATE stage.patient_source SET centre_id = 'another centre' "
                    "WHERE rowid = (SELECT min(rowid) FROM stage.patient_source)")
        linkage.link_sources(con, "a later run", wide, warehouse.source_tables())
        assert len(scorings) == 1
        assert _rows_not_of_their_person(con) == 0
        linked = con.execute("SELECT DISTINCT a.source_id, a.source_patient_pseudonym, b.source_id, "
                             "b.source_patient_pseudonym FROM stage.patient_link a JOIN stage.patient_link b "
                             "USING (patient_id) WHERE a.source_id < b.source_id AND a.link_method = 'probabilistic' "
                             "ORDER BY ALL LIMIT 1").fetchone()
        assert linked is not None
        con.execute("INSERT INTO meta.link_decision VALUES (?, ?, ?, ?, 'unlink', 'a reviewer', now(), NULL)",
                    list(linked))
        linkage.link_sources(con, "a later run", wide, warehouse.source_tables())
        persons = con.execute("SELECT count(DISTINCT patient_id) FROM stage.patient_link WHERE (source_id, "
                              "source_patient_pseudonym) IN ((?, ?), (?, ?))", list(linked)).fetchone()
        assert persons == (2,) and _rows_not_of_their_person(con) == 0  # the rows of the split person too
        assert len(scorings) == 2
        linkage.link_sources(con, "a later run", wide, warehouse.source_tables())
        assert len(scorings) == 2
        monkeypatch.setattr(linkage, "_CODE", "linkage upgraded")
        linkage.link_sources(con, "a later run", wide, warehouse.source_tables())
        assert len(scorings) == 3
    finally:
        con.close()


@pytest.mark.integration
def test_a_finding_of_a_rule_over_two_columns_keeps_its_message_when_its_source_is_not_judged_again(first_run,
                                                                                                 tmp_path):
    """A GX rule over a column pair says both values (gx_suites._failures); a night that reuses the finding (its
    source unchanged) says them too, as judging anew does: the memo dropped the message, a GX finding of one
    column having none."""
    home, run_id = first_run
    ends_before_start = Rule(RuleMeta(
        rule_id="TRT-END-NOT-BEFORE-START-GX", category="plausibility", subcategory="verification", level="record",
        severity="error", threshold=0.0, table="treatment", field="end_date",
        description="A treatment ends before it starts."),
        engine="gx", definition="expectations/treatment.json",
        expectation={"type": "expect_column_pair_values_a_to_be_greater_than_b",
                     "kwargs": {"column_A": "end_date", "column_B": "start_date", "or_equal": True,
                                "ignore_row_if": "either_value_is_missing"}})
    plan = _plan_writing_docs_to(home, run_id, tmp_path / "docs")
    plan = dataclasses.replace(plan, rules=[*plan.rules, ends_before_start])
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(home.warehouse, copy)
    said = ("SELECT source_id, message FROM dq.issue WHERE run_id = ? AND rule_id = 'TRT-END-NOT-BEFORE-START-GX'")
    con = duckdb.connect(str(copy))
    try:
        con.execute("UPDATE stage.treatment SET end_date = start_date - 10 WHERE source_record_key = (SELECT "
                    "min(source_record_key) FROM stage.treatment WHERE source_id = 'esmart' "
                    "AND start_date IS NOT NULL)")
        validation.validate(con, "night 1", plan)
        judged = con.execute(said, ["night 1"]).fetchall()
        assert [source for source, _ in judged] == ["esmart"] and judged[0][1] and "start_date" in judged[0][1]
        # Only registry_it's rows change: esmart's findings are the remembered ones.
        con.execute("UPDATE stage.diagnosis SET diagnosis_date = diagnosis_date - 1 WHERE source_record_key = (SELECT "
                    "max(source_record_key) FROM stage.diagnosis WHERE source_id = 'registry_it' "
                    "AND diagnosis_date IS NOT NULL)")
        validation.validate(con, "night 2", plan)
        assert con.execute("SELECT run_id FROM dq.gx_judged WHERE table_name = 'treatment' AND source_id = 'esmart'"
                           ).fetchall() == [("night 1",)]
        assert con.execute(said, ["night 2"]).fetchall() == judged
    finally:
        con.close()


def test_a_fingerprint_covers_the_columns_the_rules_read_and_the_keys():
    plan = validation.quality_plan([])
    columns = ["follow_up_id", "patient_id", "contact_date", "vital_status", "death_date", "death_date_precision",
               "source_id", "source_file_sha256", "source_record_key", "run_id"]
    rules = [r for r in plan.rules if r.engine == "gx" and r.meta.table == "follow_up"]
    judged = gx_memo.judged_columns(columns, rules)
    assert {"contact_date", "vital_status", "death_date_precision", "source_id", "source_record_key"} <= set(judged)
    assert not {"patient_id", "source_file_sha256", "run_id", "death_date"} & set(judged)  # a SQL rule reads it
    whole_table = dataclasses.replace(rules[0], expectation={"type": "expect_table_row_count_to_be_between",
                                                             "kwargs": {"min_value": 1}})
    assert gx_memo.judged_columns(columns, [*rules, whole_table]) == columns


def test_a_uniqueness_rule_sees_every_row_of_a_value_in_one_batch_whatever_the_table_size():
    """GX judges uniqueness within a batch: twins far apart in a large table are given to it together
    (with rows of no value spread), and a rule judging a table as a whole gets it whole."""
    rules = [r for r in validation.quality_plan([]).rules if r.engine == "gx"]
    of = {t: [r for r in rules if r.meta.table == t] for t in ("diagnosis", "follow_up")}
    assert gx_memo.kept_together(of["diagnosis"]) == ("diagnosis_id",)
    assert gx_memo.kept_together(of["follow_up"]) == ()
    whole_table = dataclasses.replace(of["follow_up"][0], expectation={
        "type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}})
    assert gx_memo.kept_together([*of["follow_up"], whole_table]) is None
    row_after_row = dataclasses.replace(of["follow_up"][0], expectation={
        "type": "expect_column_values_to_be_increasing", "kwargs": {"column": "contact_date"}})
    assert gx_memo.kept_together([*of["follow_up"], row_after_row]) is None

    con = duckdb.connect()
    con.execute("CREATE SCHEMA stage")
    con.execute("CREATE TABLE stage.record AS SELECT 'reg' AS source_id, 'k' || i AS source_record_key, "
                "'C1' AS centre_id FROM range(1000) r(i)")
    # 1,000 rows, ids unique but every tenth repeated 500 rows on, and every hundredth missing
    con.execute("CREATE TABLE stage.diagnosis AS SELECT 'reg' AS source_id, 'k' || i AS source_record_key, "
                "CASE WHEN i % 100 = 99 THEN NULL WHEN i >= 500 AND i % 10 = 0 THEN 'd' || (i - 500) "
                "ELSE 'd' || i END AS diagnosis_id FROM range(1000) r(i) ORDER BY i")
    plan = gx_memo.TablePlan("diagnosis", {"reg": "x"}, {}, ("source_id", "source_record_key", "diagnosis_id"))
    for together, count in ((("diagnosis_id",), 8), ((), 8), (None, 1)):
        batches = gx_memo._Batches.of(con, plan, 125, together)
        frames = [con.execute(q).df() for q in batches.queries()]
        assert len(batches.within) == len(frames) == count and sum(len(f) for f in frames) == batches.rows == 1000
        assert max(len(f) for f in frames) < (1000 if together is not None else 1001)
        ids = pd.concat([f.assign(batch=n) for n, f in enumerate(frames)]).dropna(subset=["diagnosis_id"])
        split = ids.groupby("diagnosis_id")["batch"].nunique().gt(1).sum()
        assert (split == 0) if together != () else (split > 0)  # without the rule, twins fall apart
        if together:
            assert ids["diagnosis_id"].duplicated().sum() == 50
            nulls = [f["diagnosis_id"].isna().sum() for f in frames]
            assert sum(nulls) == 10 and max(nulls) < 10


def _plan_writing_docs_to(home: Home, run_id: str, docs: Path | None) -> validation.QualityPlan:
    """The run's quality plan, its Data Docs written to `docs`, not into the shared small run's reports."""
    return dataclasses.replace(pipeline.quality_plan_for(home, run_id), data_docs_dir=docs)


def _validated_again(home: Home, run_id: str, copy: Path, docs: Path | None = None) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """Every source judged again on a copy of the warehouse: its findings."""
    shutil.copy(home.warehouse, copy)
    plan = _plan_writing_docs_to(home, run_id, docs)
    con = duckdb.connect(str(copy))
    try:
        _forget_findings(con)
        validation.validate(con, run_id, plan)
        return {table: con.execute(sql).fetchall() for table, sql in FINDINGS.items()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def judged_again(first_run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    """The first run's findings, every source judged again."""
    home, run_id = first_run
    return _validated_again(home, run_id, tmp_path_factory.mktemp("judged") / "again.duckdb")


@pytest.mark.integration
def test_gx_judges_in_a_process_of_its_own_kept_for_the_next_validation_unless_it_grew_or_the_stage_is_large(
        first_run, judged_again, tmp_path, monkeypatch):
    home, run_id = first_run
    process = gx_process.ready()
    assert _validated_again(home, run_id, tmp_path / "one.duckdb", tmp_path / "docs") == judged_again
    assert gx_process.ready() is process and process.alive
    assert (tmp_path / "docs" / "index.html").is_file()
    assert not list(tmp_path.glob("*.gx"))  # the batch files are removed
    assert judged_again["dq.issue"]

    monkeypatch.setattr(gx_memo, "END_AFTER_ROWS", 1)  # as if it had judged a large registry
    assert _validated_again(home, run_id, tmp_path / "two.duckdb") == judged_again
    assert not process.alive and gx_process.ready() is not process

    monkeypatch.undo()
    process = gx_process.ready()
    monkeypatch.setattr(gx_memo, "END_BESIDE_STAGE_ROWS", 1)  # as if it had judged a little of a large registry
    assert _validated_again(home, run_id, tmp_path / "three.duckdb") == judged_again
    assert not process.alive


@pytest.mark.integration
def test_a_gx_process_that_dies_errs_the_gx_rules_and_the_next_validation_starts_another(
        first_run, judged_again, tmp_path, monkeypatch):
    home, run_id = first_run
    submit = gx_process.GxProcess.submit

    def submit_and_die(process: gx_process.GxProcess, job: gx_process.Job) -> None:
        submit(process, job)
        process._process.kill()
    monkeypatch.setattr(gx_process.GxProcess, "submit", submit_and_die)
    _validated_again(home, run_id, tmp_path / "killed.duckdb")
    con = duckdb.connect(str(tmp_path / "killed.duckdb"), read_only=True)
    try:
        results = con.execute("SELECT c.engine, r.status, r.message FROM dq.check_result r JOIN dq.check c "
                              "USING (rule_id) WHERE c.engine <> 'harmonise'").fetchall()
    finally:
        con.close()
    assert {(status, message) for engine, status, message in results if engine == "gx"} == {
        ("error", "the GX process was killed by signal SIGKILL while judging; the run's log says why")}
    assert {status for engine, status, _ in results if engine == "sql"} >= {"passed", "failed"}

    monkeypatch.setattr(gx_process.GxProcess, "submit", submit)
    assert _validated_again(home, run_id, tmp_path / "again.duckdb") == judged_again


@pytest.mark.integration
def test_a_validation_cut_short_leaves_no_answer_to_the_next_and_gx_raising_fails_it(
        first_run, judged_again, tmp_path, monkeypatch):
    home, run_id = first_run

    def broken(*args: object) -> None:
        raise RuntimeError("an SQL check broke")
    monkeypatch.setattr(validation, "run_checks", broken)
    with pytest.raises(RuntimeError, match="an SQL check broke"):
        _validated_again(home, run_id, tmp_path / "cut.duckdb")
    assert not list(tmp_path.glob("*.gx"))
    monkeypatch.undo()
    assert _validated_again(home, run_id, tmp_path / "after.duckdb") == judged_again

    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(gx_process.GxFailed, match="Traceback"):  # GX cannot write its Data Docs there
        _validated_again(home, run_id, tmp_path / "no-docs.duckdb", tmp_path / "a-file" / "docs")


@pytest.mark.integration
def test_a_registry_too_large_for_a_second_process_is_judged_here_and_finds_the_same(
        first_run, judged_again, tmp_path, monkeypatch):
    home, run_id = first_run
    process = gx_process.ready()
    monkeypatch.setattr(gx_memo, "IN_PROCESS_ROWS", 1)
    assert _validated_again(home, run_id, tmp_path / "here.duckdb", tmp_path / "docs") == judged_again
    assert not process.alive  # the process started early gave its memory back first
    assert (tmp_path / "docs" / "index.html").is_file() and not list(tmp_path.glob("*.gx"))


@pytest.mark.integration
def test_gx_begins_before_linkage_unless_a_rule_reads_what_linkage_writes(first_run, tmp_path):
    home, run_id = first_run
    shutil.copy(home.warehouse, tmp_path / "early.duckdb")
    plan = _plan_writing_docs_to(home, run_id, tmp_path / "docs")
    rules = [r for r in plan.rules if r.engine == "gx"]
    reads_person = dataclasses.replace(rules[0], expectation={
        "type": "expect_column_values_to_not_be_null", "kwargs": {"column": "patient_id"}})
    con = duckdb.connect(str(tmp_path / "early.duckdb"))
    try:
        _forget_findings(con)
        assert gx_memo.judge(con, run_id, [*rules, reads_person], batch_rows=validation.GX_BATCH_ROWS,
                             unless_reading=LINKAGE_WRITES) is None
        judging = validation.start_judging(con, run_id, plan, unless_reading=LINKAGE_WRITES)
        assert judging is not None
        try:
            assert {r.rule_id for r in judging.runs()} == {r.rule_id for r in rules}
            judging.written()
        finally:
            judging.close()
    finally:
        con.close()


def test_the_gx_process_ends_with_the_run_that_started_it(tmp_path):
    """A run over before GX is even imported does not leave it importing (nor keep its caller's pipes open)."""
    started = subprocess.run([sys.executable, "-c", "import os; from etl.quality import gx_process; "
                              "gx_process.start_early(); print(gx_process._ready._process.pid)"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    pid = int(started.stdout.strip())
    for _ in range(30):  # ended by the kernel at once; GX's import alone would take it seconds
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the GX process {pid} outlived the run that started it")


LAZY_PROBE = """
import sys
from etl.quality import gx_suites
gx_suites.import_gx()
print(type(sys.modules["scipy.stats"]).__name__)
from scipy import stats
print(round(float(stats.norm.ppf(0.975)), 6), type(sys.modules["scipy.stats"]).__name__)
"""


def test_gx_imports_scipy_stats_only_when_it_is_used():
    done = subprocess.run([sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["_LazyModule", "1.959964", "module"]


GX_LOG_PROBE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)  # an Airflow task's level
from etl.quality import gx_suites
gx_suites.import_gx()
gx_suites.new_context(None)
logging.getLogger("great_expectations").warning("a warning of GX still shows")
"""


def test_gx_says_only_its_warnings_in_a_run_that_logs_at_info():
    # Under Airflow (INFO) GX's process wrote its import's ~200 INFO lines to the task's stderr, which the
    # task log shows as errors: a publish that succeeded had hundreds of red lines.
    done = subprocess.run([sys.executable, "-c", GX_LOG_PROBE], capture_output=True, text=True, check=True)
    assert "great_expectations" not in done.stderr.replace("WARNING:great_expectations:a warning", "")
    assert "a warning of GX still shows" in done.stderr


def test_gx_findings_are_judged_again_when_gx_or_what_it_judges_with_is_upgraded(monkeypatch):
    from etl import resources

    before = gx_memo._code_digest.__wrapped__()
    real = resources.installed_version
    for library in ("great_expectations", "pandas", "pyarrow"):  # pandas evaluates a rule's row_condition
        monkeypatch.setattr(resources, "installed_version",
                            lambda name, upgraded=library: "upgraded" if name == upgraded else real(name))
        assert gx_memo._code_digest.__wrapped__() != before, library
