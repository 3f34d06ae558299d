"""The rule catalogue and validation: rules from files, thresholds, overrides, quarantine and release."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from conftest import SMALL_RUN_KEY
from rule_stage import catalogued, gx_runs, stage
from shared_build import copy_of

from etl import pipeline
from etl.config import REPO_ROOT, SOURCES_DIR, Home, resolve_home
from etl.quality.catalogue import EXPECTATIONS_DIR, CatalogueError, load_catalogue, sql_rule
from etl.quality.sql_checks import RuleAbortedPublish, run_checks
from etl.steps import RunSummary
from etl.synth import generate
from etl.transform.mapping import load_mapping

KEY = "quality-test-key"


def _rows(home: Home, sql: str, params: list[object] | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


# -- the catalogue ----------------------------------------------------------------------------
def test_the_catalogue_has_forty_rules_across_every_kahn_category_and_level():
    rules = load_catalogue()
    assert len(rules) >= 40
    metas = [r.meta for r in rules]
    assert {m.category for m in metas} == {"conformance", "completeness", "plausibility"}
    assert {m.subcategory for m in metas} == {"verification", "validation"}
    assert {m.level for m in metas} == {"field", "record", "table", "cross-table"}
    assert {m.severity for m in metas} == {"error", "warning"}
    assert {r.engine for r in rules} == {"gx", "sql", "harmonise"}


def test_every_rule_harmonise_applies_iscatalogued():
    from etl.transform import harmonise
    applied = {v for k, v in vars(harmonise).items() if k.isupper() and isinstance(v, str) and v.startswith("CONF-")}
    catalogued = {r.rule_id for r in load_catalogue() if r.engine == "harmonise"}
    assert applied == catalogued


def test_every_source_override_names_a_known_rule():
    known = {r.rule_id for r in load_catalogue()}
    for path in SOURCES_DIR.glob("*.yaml"):
        assert set(load_mapping(path).quality) <= known, path.name


def test_a_malformed_rule_file_is_named_with_what_is_wrong(tmp_path):
    bad = tmp_path / "XT-BAD-RULE.sql"
    bad.write_text("-- rule_id: XT-BAD-RULE\n-- category: plausability\n-- subcategory: validation\n"
                   "-- level: record\n-- severity: warning\n-- threshold: 0\n-- table: diagnosis\n"
                   "-- description: A rule with a misspelt category.\nSELECT 1\n")
    with pytest.raises(CatalogueError, match=r"XT-BAD-RULE\.sql: category"):
        sql_rule(bad)
    suite = tmp_path / "diagnosis.json"
    suite.write_text(json.dumps({"meta": {"table": "diagnosis"}, "expectations": [{
        "type": "expect_column_values_to_be_betwen", "kwargs": {"column": "x", "min_value": 1},
        "meta": {"rule_id": "DIAG-TYPO", "category": "conformance", "subcategory": "verification",
                 "level": "field", "severity": "warning", "threshold": 0, "description": "A typo in the type."}}]}))
    with pytest.raises(CatalogueError, match=r"diagnosis\.json: expectations\[0\] \(DIAG-TYPO\)"):
        load_catalogue(tmp_path, tmp_path / "no-checks")



def test_the_catalogue_is_read_again_when_one_of_its_files_changed(tmp_path):
    checks = tmp_path / "checks"
    checks.mkdir()
    rule = checks / "XT-ONE-RULE.sql"
    header = ("-- rule_id: XT-ONE-RULE\n-- category: plausibility\n-- subcategory: validation\n-- level: record\n"
              "-- severity: {severity}\n-- threshold: 0\n-- table: diagnosis\n"
              "-- description: A rule read from its file.\nSELECT 1\n")
    rule.write_text(header.format(severity="warning"))
    assert [r.meta.severity for r in load_catalogue(tmp_path, checks)] == ["warning"]
    assert load_catalogue(tmp_path, checks) == load_catalogue(tmp_path, checks)  # read once, the same rules
    rule.write_text(header.format(severity="error"))
    assert [r.meta.severity for r in load_catalogue(tmp_path, checks)] == ["error"]
    (checks / "XT-TWO-RULE.sql").write_text(header.format(severity="warning").replace("XT-ONE", "XT-TWO"))
    assert [r.rule_id for r in load_catalogue(tmp_path, checks)] == ["XT-ONE-RULE", "XT-TWO-RULE"]

# -- validation on a real run -------------------------------------------------------------------
@pytest.fixture(scope="module")
def validated(small_run: Home) -> tuple[Home, str]:
    """The session's small run (40 persons, every source; read only) and its run's id."""
    (run_id,) = _rows(small_run, "SELECT run_id FROM meta.run").run_id
    return small_run, run_id


def test_every_rule_reports_for_every_source(validated):
    home, run_id = validated
    results = _rows(home, "SELECT * FROM dq.check_result WHERE run_id = ?", [run_id])
    n_rules = len(load_catalogue())
    per_source = results.groupby("source_id").rule_id.nunique().to_dict()
    assert {s: per_source[s] for s in ("iltb", "registry_it", "sacha_fr")} == dict.fromkeys(
        ["iltb", "registry_it", "sacha_fr"], n_rules)
    assert set(results.status) <= {"passed", "failed", "not_applicable", "error"}
    assert not (results.status == "error").any(), results[results.status == "error"].message.tolist()
    judged = results[results.denominator > 0]
    # DuckDB rounds half away from zero (1/64 -> 1.563), numpy half to even: compare within the rounding
    assert ((judged.percent - 100 * judged.failing_rows / judged.denominator).abs() <= 0.0005 + 1e-9).all()
    failed = judged.failing_rows > (judged.threshold * judged.denominator).round(9)
    assert (judged.status[failed] == "failed").all() and (judged.status[~failed] == "passed").all()
    # A rule reading a parameter judges only the sources that set it.
    lvef = results[(results.rule_id == "ENR-LVEF-ELIGIBLE")
                   & results.source_id.isin(["iltb", "registry_it", "sacha_fr"])]  # they set no LVEF threshold
    assert len(lvef) == 3 and (lvef.status == "not_applicable").all()
    assert lvef.message.str.contains("reads params min_lvef_percent, which sources/").all()
    trial = results[(results.source_id == "crizotinib_imt") & results.rule_id.isin(
        ["ENR-LVEF-ELIGIBLE", "ENR-AGE-ELIGIBLE", "XT-ALK-ROS1-REQUIRED"])]
    if not trial.empty:  # the trial that sets those params: its eligibility rules judge its rows
        assert set(trial.status) <= {"passed", "failed"} and (trial.denominator > 0).all()
    age = results[results.rule_id == "DIAG-AGE-REGISTRY"].groupby("source_id").status.agg(set).to_dict()
    assert age["registry_it"] <= {"passed", "failed"} and age["sacha_fr"] == age["iltb"] == {"not_applicable"}


def test_error_issues_are_quarantined_and_warnings_loaded(validated):
    home, run_id = validated
    issues = _rows(home, "SELECT * FROM dq.issue WHERE run_id = ?", [run_id])
    held = _rows(home, "SELECT source_id, source_record_key FROM dq.quarantine")
    errors = issues[issues.severity == "error"]
    assert set(zip(errors.source_id, errors.source_record_key)) == set(zip(held.source_id, held.source_record_key))
    warned = issues[issues.severity == "warning"][["source_id", "source_record_key", "table_name"]].dropna()
    table, group = next(iter(warned.groupby("table_name")))
    loaded = _rows(home, f"SELECT source_id, source_record_key FROM core.{table}")
    assert set(zip(group.source_id, group.source_record_key)) <= set(zip(loaded.source_id, loaded.source_record_key))
    assert issues.centre_id.notna().mean() > 0.95  # issues go back to centres


def test_validation_writes_gx_data_docs(validated):
    home, run_id = validated
    docs = home.reports / run_id / "data_docs" / "index.html"
    assert docs.exists()
    assert "core.diagnosis" in docs.read_text()
    tables = {json.loads(p.read_text()).get("meta", {}).get("table") for p in EXPECTATIONS_DIR.glob("*.json")} - {None}
    pages = {p.relative_to(docs.parent / "validations").parts[1] for p in (docs.parent / "validations").rglob("*.html")}
    assert pages == tables  # one validation result page per suite, built once after all of them ran
    shown = {table: "".join(p.read_text() for p in (docs.parent / "validations" / "core" / table).rglob("*.html"))
             for table in tables}
    failing = _rows(home, "SELECT DISTINCT c.table_name FROM dq.check_result r JOIN dq.check c USING (rule_id) "
                          "WHERE r.run_id = ? AND c.engine = 'gx' AND r.failing_rows > 0", [run_id]).table_name
    assert any("Unexpected Value" in shown[table] for table in failing)  # a failing rule's values, counted
    # not every failing row: those are the issues (dq.issue)
    assert not [table for table, page in shown.items() if "source_record_key" in page]


def _checks_with(tmp_path: Path, rules: dict[str, tuple[str, str]]) -> Path:
    """The shipped SQL rules and `rules` (rule id: the header after the category, the query)."""
    checks = tmp_path / "checks"
    shutil.copytree(REPO_ROOT / "warehouse" / "checks", checks)
    for rule_id, (header, query) in rules.items():
        (checks / f"{rule_id}.sql").write_text(
            f"-- rule_id: {rule_id}\n-- category: plausibility\n-- subcategory: validation\n{header}{query}\n")
    return checks


def _home_with_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule_id: str, header: str, query: str,
                    patients: int) -> Home:
    """A synthetic home, and the catalogue with one more SQL rule."""
    monkeypatch.setattr("etl.quality.catalogue.CHECKS_DIR", _checks_with(tmp_path, {rule_id: (header, query)}))
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=patients, seed=6)
    return home


# 50 records of one centre of a source, the largest; the rule below flags 29 of them, 58% exactly.
_FIFTY = ("source_record_key IN (SELECT DISTINCT source_record_key FROM record WHERE source_id || '/' || centre_id = "
          "(SELECT source_id || '/' || centre_id FROM record GROUP BY ALL ORDER BY count(*) DESC, 1 LIMIT 1) "
          "ORDER BY 1 LIMIT 50)")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, RunSummary]:
    """A first run (60 persons: a centre of 50 records at least) of two more SQL rules, one that cannot run and one
    failing as many rows as its threshold tolerates, and of iltb's own rule settings: their tests' one run."""
    folder = tmp_path_factory.mktemp("tuned")
    checks = _checks_with(folder, {
        "XT-BROKEN": ("-- level: cross-table\n-- severity: error\n-- threshold: 0\n-- table: diagnosis\n"
                      "-- description: A rule whose query names a table that does not exist.\n",
                      "SELECT source_id, source_record_key FROM no_such_table"),
        "XT-AT-THRESHOLD": (f"-- level: record\n-- severity: warning\n-- threshold: 0.58\n-- table: record\n"
                            f"-- scope: {_FIFTY}\n-- description: A rule failing as many rows as its threshold "
                            "tolerates.\n",
                            f"SELECT source_id, source_record_key FROM record WHERE {_FIFTY} "
                            "ORDER BY source_record_key LIMIT 29")})
    sources = folder / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    with (sources / "iltb.yaml").open("a") as handle:
        handle.write("quality:\n  RESP-MRD-RANGE: {enabled: false}\n  TBR-REASON-WHEN-NOT-FOLLOWED: {threshold: 1.0}\n")
    home = resolve_home(folder / "home").ensure()
    generate(home.root, patients=60, seed=6)
    responses = home.landing / "iltb" / "ILTB_RESP.csv"  # an MRD out of range: what the switched-off rule would find
    header, first, *rest = responses.read_bytes().split(b"\n")
    responses.write_bytes(b"\n".join([header, first.rsplit(b";", 1)[0] + b";150", *rest]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("etl.quality.catalogue.CHECKS_DIR", checks)
        return home, pipeline.run(home, key_value=KEY, sources_dir=sources)


def test_a_source_can_switch_a_rule_off_and_set_its_own_threshold(tuned):
    home, summary = tuned
    results = _rows(home, "SELECT * FROM dq.check_result WHERE run_id = ? AND source_id = 'iltb'",
                    [summary.run_id]).set_index("rule_id")
    switched_off = results.loc[["RESP-MRD-RANGE"]]
    assert (switched_off.status == "not_applicable").all()
    assert (switched_off.message == "switched off in sources/iltb.yaml").all()
    assert (results.loc[["TBR-REASON-WHEN-NOT-FOLLOWED"], "threshold"] == 1.0).all()
    mrd = _rows(home, "SELECT count(*) AS n FROM dq.issue WHERE rule_id = 'RESP-MRD-RANGE' AND source_id = 'iltb'")
    over = _rows(home, "SELECT count(*) AS n FROM stage.response_assessment WHERE source_id = 'iltb' "
                       "AND mrd_value > 100")
    assert mrd.n[0] == 0 and over.n[0] == 1  # the value it would have found, loaded


def test_a_rule_that_cannot_run_is_reported_as_error_and_the_load_goes_on(tuned):
    home, summary = tuned
    broken = _rows(home, "SELECT * FROM dq.check_result WHERE run_id = ? AND rule_id = 'XT-BROKEN'",
                   [summary.run_id])
    assert set(broken.status) == {"error"} and broken.message.str.contains("no_such_table").all()
    assert summary.rows["diagnosis"] > 0


def test_a_rule_that_fails_while_it_runs_fails_the_publish_naming_the_rule(tmp_path, monkeypatch):
    # A runtime error aborts DuckDB's transaction, so the run cannot go on: it must say which rule, and why.
    home = _home_with_rule(tmp_path, monkeypatch, "XT-ABORTS", (
        "-- level: record\n-- severity: warning\n-- threshold: 0\n-- table: diagnosis\n"
        "-- description: A rule whose query cannot convert the values it reads.\n"),
        "SELECT source_id, source_record_key FROM diagnosis WHERE CAST(source_record_key AS INTEGER) > 0", patients=20)
    with pytest.raises(RuleAbortedPublish, match=r"rule XT-ABORTS \(.*XT-ABORTS.sql\) failed while it ran: "
                                                 r"Conversion Error.*nothing of this run was published"):
        pipeline.run(home, key_value=KEY)
    assert not home.warehouse.exists()


def test_a_share_of_failing_rows_equal_to_the_threshold_is_tolerated(tuned):
    """29 of 50 is 58%, the threshold: tolerated, though 0.58 x 50 is 28.999999999999996 in floating point."""
    import dataclasses

    from etl.quality.report import CheckResult, source_rule_status

    home, summary = tuned
    judged = _rows(home, "SELECT * FROM dq.check_result WHERE run_id = ? AND rule_id = 'XT-AT-THRESHOLD' "
                         "AND denominator > 0", [summary.run_id])
    assert judged[["failing_rows", "denominator", "status"]].values.tolist() == [[29, 50, "passed"]]
    # The report sums a source's centres and judges them alike.
    row = judged.iloc[0]
    at_threshold = CheckResult("XT-AT-THRESHOLD", row.source_id, row.centre_id, 29, 50, 0.58, "passed")
    assert source_rule_status([at_threshold]) == "passed"
    assert source_rule_status([dataclasses.replace(at_threshold, failing_rows=30)]) == "failed"


def test_a_quarantined_record_corrected_in_the_next_export_is_released(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)
    export = next((home.landing / "registry_it").glob("*.csv"))
    lines = export.read_bytes().decode("cp1252").split("\r\n")
    header = lines[0].split(";")
    side, number = header.index("lateralita"), header.index("id_record")
    held_before = set(_rows(home, "SELECT source_record_key FROM dq.quarantine").source_record_key)
    # A record of a paired organ, not held back yet, whose centre sends an invalid laterality code.
    line = next(i for i, text in enumerate(lines[1:], 1) if text.split(";")[side].upper() in ("D", "S")
                and not any(k.endswith(f"|REG[{text.split(';')[number]}]") for k in held_before))
    fields = lines[line].split(";")
    right_side = fields[side]

    def sent(laterality: str) -> RunSummary:
        fields[side] = laterality
        lines[line] = ";".join(fields)
        export.write_bytes("\r\n".join(lines).encode("cp1252"))
        return pipeline.run(home, key_value=SMALL_RUN_KEY)

    first = sent("X")
    held = _rows(home, "SELECT q.source_record_key, i.value FROM dq.quarantine q JOIN dq.issue i "
                       "USING (source_id, source_record_key) WHERE i.run_id = ? AND q.source_id = 'registry_it' "
                       "AND i.rule_id = 'CONF-CODE-IN-LIST' AND i.field = 'laterality'", [first.run_id])
    assert list(held.value) == ["X"]
    second = sent(right_side)  # the centre answers the query
    assert second.sources_changed == ["registry_it"]
    still = _rows(home, "SELECT source_record_key FROM dq.quarantine WHERE source_id = 'registry_it'")
    assert not set(held.source_record_key) & set(still.source_record_key)
    released = _rows(home, "SELECT source_record_key FROM core.diagnosis WHERE source_id = 'registry_it'")
    assert set(held.source_record_key) <= set(released.source_record_key)


def test_adding_a_rule_file_revalidates_unchanged_sources(small_run, tmp_path, monkeypatch):
    home = copy_of(small_run, tmp_path)  # a first run with the shipped rules
    checks = tmp_path / "checks"
    shutil.copytree(REPO_ROOT / "warehouse" / "checks", checks)
    (checks / "XT-EVERY-DIAGNOSIS.sql").write_text(
        "-- rule_id: XT-EVERY-DIAGNOSIS\n-- category: plausibility\n-- subcategory: validation\n"
        "-- level: record\n-- severity: warning\n-- threshold: 1\n-- table: diagnosis\n"
        "-- description: A new rule that flags every diagnosis.\n"
        "SELECT source_id, source_record_key FROM diagnosis\n")
    monkeypatch.setattr("etl.quality.catalogue.CHECKS_DIR", checks)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_changed == []
    new = _rows(home, "SELECT count(*) AS n FROM dq.issue WHERE run_id = ? AND rule_id = 'XT-EVERY-DIAGNOSIS'",
                [summary.run_id])
    judged = _rows(home, "SELECT count(*) AS n FROM stage.diagnosis")  # loaded or held back: all judged
    assert new.n[0] == judged.n[0] >= summary.rows["diagnosis"]


def test_the_rule_page_in_docs_matches_the_catalogue():
    from etl.quality.catalogue import catalogue_markdown
    page = (REPO_ROOT / "docs" / "rules.md").read_text()
    assert page == catalogue_markdown(load_catalogue()), "regenerate: python -m etl.quality.catalogue > docs/rules.md"
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert f"a catalogue of {len(load_catalogue())} data-quality rules" in readme


def _rule(rule_id: str):
    return next(r for r in load_catalogue() if r.rule_id == rule_id)


def _stage(frames: dict[str, pd.DataFrame], params: dict[str, dict[str, object]]) -> duckdb.DuckDBPyConnection:
    from etl.quality.validate import write_source_params

    con = duckdb.connect()
    con.execute("CREATE SCHEMA stage")
    for table, frame in frames.items():
        con.register("_frame", frame)
        con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM _frame")
        con.unregister("_frame")
    write_source_params(con, params)  # type: ignore[arg-type]
    return con


def test_eligibility_rules_read_the_source_parameters_not_a_study_id():
    """A trial (min_lvef_percent, requires_alk_ros1, ages 0-18) and a registry without those params."""
    from etl.quality.sql_checks import run_checks

    enrolment = pd.DataFrame({
        "source_id": ["trial", "trial", "trial", "reg", "old"], "source_record_key": ["a", "b", "c", "d", "e"],
        "patient_id": ["p1", "p2", "p3", "p4", "p5"], "study_id": ["ANY"] * 5,
        "age_at_enrolment_days": [3000, 7000, 4000, 7000, 9000], "lvef_percent": [65.0, 70.0, 55.0, 40.0, None],
        "enrolment_date": pd.to_datetime(["2026-01-01"] * 5).date, "enrolment_date_precision": ["day"] * 5})
    molecular = pd.DataFrame({"source_id": ["trial", "trial", "trial"], "patient_id": ["p1", "p2", "p3"],
                              "alteration_type": ["fusion", "SNV", "fusion"], "gene_symbol": ["EML4", "ALK", "ROS1"],
                              "partner_gene": ["ALK", None, "CD74"]})
    params = {"trial": {"min_age_years": 0, "max_age_years": 18, "min_lvef_percent": 60, "requires_alk_ros1": True},
              "old": {"max_age_years": 25}}
    con = _stage({"study_enrolment": enrolment, "molecular_alteration": molecular}, params)
    runs = {r.rule_id: r for r in run_checks(con, [_rule(i) for i in (
        "ENR-AGE-ELIGIBLE", "ENR-LVEF-ELIGIBLE", "ENR-LVEF-PRESENT", "XT-ALK-ROS1-REQUIRED")])}
    assert all(r.error is None for r in runs.values()), [r.error for r in runs.values()]
    assert list(runs["ENR-AGE-ELIGIBLE"].failures.source_record_key) == ["b"]  # 'old' enrols up to 25: 9000 d ok
    assert ("age at enrolment at least 19 completed years (7000 days); the source enrols from 0 to 18 completed "
            "years") in runs["ENR-AGE-ELIGIBLE"].failures.message[0]
    assert list(runs["ENR-LVEF-ELIGIBLE"].failures.source_record_key) == ["c"]  # the registry's 40% is not judged
    assert list(runs["ENR-LVEF-PRESENT"].failures.source_record_key) == []  # 'old' asks for no LVEF
    assert list(runs["XT-ALK-ROS1-REQUIRED"].failures.source_record_key) == ["b"]


def test_a_rule_reading_params_is_not_applicable_to_a_source_that_sets_none(tmp_path):
    """Through the whole validation: the registry sets no LVEF threshold, so the LVEF rules do not judge it."""
    from etl.quality.validate import QualityPlan, validate

    enrolment = pd.DataFrame({"source_id": ["trial", "reg"], "source_record_key": ["a", "b"],
                              "patient_id": ["p1", "p2"], "age_at_enrolment_days": [3000, 3000],
                              "lvef_percent": [50.0, 40.0]})
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    from etl.config import WAREHOUSE_SQL_DIR
    for ddl in ("dq.sql", "stage.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    con.register("_e", enrolment)
    con.execute("CREATE TABLE stage.study_enrolment AS SELECT * FROM _e")
    con.execute("INSERT INTO stage.record (source_id, source_record_key, centre_id) "
                "VALUES ('trial', 'a', 'C1'), ('reg', 'b', 'C2')")
    validate(con, "run-1", QualityPlan([_rule("ENR-LVEF-ELIGIBLE")], params={"trial": {"min_lvef_percent": 60}}))
    results = con.execute("SELECT source_id, status, message, failing_rows FROM dq.check_result "
                          "ORDER BY source_id").fetchall()
    assert results == [("reg", "not_applicable", "reads params min_lvef_percent, which sources/reg.yaml does not set",
                        0), ("trial", "failed", None, 1)]
    assert con.execute("SELECT source_id, value FROM stage.source_param").fetchall() == [("trial", "60")]


def test_every_rule_param_is_documented_and_no_rule_names_a_source_or_study():
    import re

    rules = load_catalogue()
    text = "\n".join(json.dumps(r.expectation) + (r.query or "") + (r.meta.scope or "") for r in rules)
    assert not re.search(r"source_id\s*(==|=|IN)\s*\(?'", text), "a rule names a source id: use params"
    assert not re.search(r"study_id\s*(==|=|IN)\s*\(?'", text), "a rule names a study: use params"
    page = (REPO_ROOT / "docs" / "rules.md").read_text()
    for name in {p for r in rules for p in r.meta.params or []}:
        assert f"| `{name}` |" in page


def test_finding_values_are_shown_as_exported():
    from datetime import date

    from etl.quality.findings import shown

    assert [shown(v) for v in (None, float("nan"), pd.NaT, pd.NA, "", "NaT")] == [None, None, None, None, "", "NaT"]
    assert shown(pd.Timestamp("2017-11-16")) == "2017-11-16" == shown(date(2017, 11, 16))
    assert shown(pd.Timestamp("2017-11-16 08:30")) == "2017-11-16 08:30:00"
    assert [shown(45.0), shown(4.5), shown(7), shown(True)] == ["45", "4.5", "7", "True"]


def test_a_batch_counts_each_populations_denominators_as_records_per_source_and_centre():
    from etl.quality.findings import Denominators, judged_rows

    def same(found: pd.DataFrame, expected: pd.DataFrame) -> bool:
        return list(found.columns) == list(expected.columns) and _in_any_order(found) == _in_any_order(expected)

    keys = pd.DataFrame({"source_id": ["a", "a", "b", "a", "b", "c"], "source_record_key": [f"k{i}" for i in range(6)]})
    centres = pd.Series(["c1", None, "c1", "c1", None, "c2"])
    batch = Denominators(keys, centres)
    for rows in ([0, 1, 2, 3, 4, 5], [0, 3], [1, 4], [5], [], [2, 4, 0]):
        population = keys.iloc[rows]
        assert same(batch.of(population), judged_rows(population, centres[population.index])), rows
    assert same(batch.of(keys), pd.DataFrame({"source_id": ["a", "a", "b", "b", "c"],
                                               "centre_id": ["c1", None, "c1", None, "c2"],
                                               "denominator": [2, 1, 1, 1, 1]}))
    repeated = pd.DataFrame({"source_id": ["a", "a"], "source_record_key": ["k", "k"]})  # one record, two rows
    assert batch.of(keys.iloc[[]]).empty
    assert Denominators(repeated, pd.Series(["c1", "c1"])).of(repeated).denominator.tolist() == [1]


def test_sql_rules_of_one_table_and_scope_count_their_records_once(validated, tmp_path, monkeypatch):
    from etl.quality import sql_checks

    home, run_id = validated
    shutil.copy(home.warehouse, tmp_path / "copy.duckdb")
    rules = [r for r in pipeline.quality_plan_for(home, run_id).rules
             if r.engine == "sql" and r.meta.phase == "staged"]
    counted: list[str] = []
    count = sql_checks.count_judged
    monkeypatch.setattr(sql_checks, "count_judged", lambda con, population: counted.append(population) or
                        count(con, population))
    con = duckdb.connect(str(tmp_path / "copy.duckdb"))
    try:
        together = sql_checks.run_checks(con, rules)
        assert len(counted) == len({(r.meta.table, r.meta.scope) for r in rules}) < len(rules)
        alone = [sql_checks.run_checks(con, [rule])[0] for rule in rules]
    finally:
        con.close()
    assert [r.rule_id for r in together] == [r.rule_id for r in alone]
    for one, other in zip(together, alone, strict=True):
        assert one.error is None and _in_any_order(one.judged) == _in_any_order(other.judged)
        assert _in_any_order(one.failures) == _in_any_order(other.failures)
    assert sum(int(r.judged.denominator.sum()) for r in together) > 0


def _in_any_order(frame: pd.DataFrame) -> list[tuple]:  # type: ignore[type-arg]
    """A frame's rows, NULLs as None, sorted: to compare frames whatever their row order."""
    return sorted(map(tuple, frame.astype(object).where(frame.notna(), None).to_numpy().tolist()), key=str)


def test_data_docs_show_a_hostile_value_as_text_never_run_it(tmp_path):
    """GX writes the unexpected values it stores into its pages as they are: an export's value must
    reach the Data Docs as text, never as markup a browser runs."""
    import lxml.html
    from headless_chromium import dump_dom

    from etl.quality import gx_suites

    hostile = ['<script>document.title = "run"</script>', '"><img src=x onerror="document.title = \'run\'">',
               "NM_000546.6:c.215C>G & <b>bold</b>"]
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": [f"EVENT[{i}]" for i in range(3)],
                         "hgvs": hostile})
    rules = [r for r in load_catalogue(check_types=False) if r.rule_id == "MOL-HGVS-SYNTAX"]
    context = gx_suites.new_context(tmp_path / "docs")
    batch = gx_suites.Batch(rows, pd.Series(["IT-X01"] * len(rows)))
    (run,) = gx_suites.run_suites(context, lambda t: iter([batch]) if t == "molecular_alteration" else None, rules)
    gx_suites.write_data_docs(context, tmp_path / "docs")
    assert sorted(run.failures.value) == sorted(hostile)  # the issues keep the values as exported
    (page,) = (tmp_path / "docs" / "validations").rglob("*.html")
    dom = lxml.html.fromstring(dump_dom(page, tmp_path))
    assert dom.findtext(".//title") != "run"
    assert not [s for s in dom.iter("script") if "run" in (s.text or "")] and not dom.xpath("//img[@onerror]")
    assert not dom.xpath("//b[text()='bold']")
    shown = {cell.text_content() for cell in dom.iter("td")}
    assert set(hostile) <= shown  # each value shown as the centre wrote it


def test_a_gx_rule_over_a_pair_of_columns_shows_both_values_and_judges_rows_with_both(tmp_path):
    """A finding of a GX rule over a pair of columns (an end before its start) tells the centre which
    values disagree; a row GX skips (no end date) is not counted in the denominator."""
    from datetime import date

    from etl.quality.catalogue import gx_rules

    suite = tmp_path / "treatment.json"
    suite.write_text(json.dumps({"meta": {"table": "treatment"}, "expectations": [{
        "type": "expect_column_pair_values_a_to_be_greater_than_b",
        "kwargs": {"column_A": "end_date", "column_B": "start_date", "or_equal": True,
                   "ignore_row_if": "either_value_is_missing"},
        "meta": {"rule_id": "TRT-PAIR", "category": "plausibility", "subcategory": "verification", "level": "record",
                 "severity": "error", "threshold": 0, "description": "The treatment ends before it starts."}}]}))
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": ["ends-before", "same-day", "no-end"],
                         "start_date": [date(2019, 5, 20)] * 3,
                         "end_date": [date(2019, 5, 1), date(2019, 5, 20), None]})
    (run,) = gx_runs("treatment", rows, gx_rules(suite, check_types=False))
    assert run.error is None, run.error
    assert run.failures[["source_record_key", "value", "message"]].to_dict("records") == [
        {"source_record_key": "ends-before", "value": "2019-05-01 | 2019-05-20",
         "message": "end_date 2019-05-01, start_date 2019-05-20"}]
    assert run.judged.denominator.tolist() == [2]


def test_a_response_whose_criteria_are_not_given_is_not_judged_as_a_solid_tumours():
    """A leukaemia response (CRi) without its criteria is one of the source's codes (harmonise checks
    those), not a wrong RECIST category to hold back; with solid-tumour criteria it is."""
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": ["no-criteria", "recist", "leukaemia"],
                         "criteria": [None, "RECIST1.1", "leukaemia"], "response": ["CRi", "CRi", "CRi"]})
    runs = gx_runs("response_assessment", rows, catalogued("RESP-SOLID-CODE", "RESP-LEUKAEMIA-CODE"))
    assert {r.rule_id: list(r.failures.source_record_key) for r in runs} == {"RESP-SOLID-CODE": ["recist"],
                                                                             "RESP-LEUKAEMIA-CODE": []}
    assert {r.rule_id: int(r.judged.denominator.sum()) for r in runs} == {"RESP-SOLID-CODE": 1,
                                                                         "RESP-LEUKAEMIA-CODE": 1}


def test_hgvs_descriptions_on_a_protein_mitochondrial_or_non_coding_reference_are_hgvs():
    written = {"coding": "NM_000546.6:c.743G>A", "protein": "NP_000537.3:p.Arg248Gln",
               "mitochondrial": "NC_012920.1:m.3243A>G", "non-coding": "NR_003051.3:n.100A>G",
               "ensembl-protein": "ENSP00000269305.4:p.Arg248Gln", "no-reference": "p.R248Q",
               "no-prefix": "NM_000546.6:743G>A"}
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": list(written), "hgvs": list(written.values())})
    (run,) = gx_runs("molecular_alteration", rows, catalogued("MOL-HGVS-SYNTAX"))
    assert set(run.failures.source_record_key) == {"no-reference", "no-prefix"}


def test_a_diagnosis_without_morphology_is_a_missing_morphology_not_an_unusual_combination():
    """DIAG-MORPHOLOGY-PRESENT asks for the missing histology; DIAG-ICCC3-DERIVED judges the combinations
    of a histology, which a diagnosis without one has not."""
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": ["no-morphology", "unusual", "classified"],
                         "icdo3_morphology": [None, "8140", "9510"], "icdo3_behaviour": [None, "3", "3"],
                         "iccc3_group": [None, None, "V"]})
    runs = gx_runs("diagnosis", rows, catalogued("DIAG-MORPHOLOGY-PRESENT", "DIAG-ICCC3-DERIVED"))
    assert {r.rule_id: set(r.failures.source_record_key) for r in runs} == {
        "DIAG-MORPHOLOGY-PRESENT": {"no-morphology"}, "DIAG-ICCC3-DERIVED": {"unusual"}}


def test_gx_data_docs_tolerate_a_share_of_failing_rows_equal_to_the_threshold(tmp_path):
    """The Data Docs judge a rule as the report does: 29 missing of 50 is within a 58% threshold."""
    from etl.quality import gx_suites
    from etl.quality.catalogue import gx_rules

    suite = tmp_path / "treatment.json"
    suite.write_text(json.dumps({"meta": {"table": "treatment"}, "expectations": [{
        "type": "expect_column_values_to_not_be_null", "kwargs": {"column": "drug_name"},
        "meta": {"rule_id": "TRT-DRUG-58", "category": "completeness", "subcategory": "verification", "level": "field",
                 "severity": "warning", "threshold": 0.58, "description": "The drug is missing, 58% tolerated."}}]}))
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": [f"line-{i}" for i in range(50)],
                         "drug_name": [None] * 29 + ["crizotinib"] * 21})
    context = gx_suites.new_context(None)
    batch = gx_suites.Batch(rows, pd.Series(["IT-X01"] * len(rows)))
    gx_suites.run_suites(context, lambda t: iter([batch]) if t == "treatment" else None,
                         gx_rules(suite, check_types=False))
    store = context.validation_results_store
    assert [result.success for key in store.list_keys() for result in store.get(key).results] == [True]


def test_a_morphology_without_behaviour_is_a_missing_behaviour_not_an_unusual_combination():
    """DIAG-BEHAVIOUR-PRESENT asks for the behaviour of a histology written alone (8260), which has no ICCC-3 group
    for want of it; DIAG-ICCC3-DERIVED flagged the same row again as an unusual combination."""
    diagnoses = [{"source_record_key": "no-behaviour", "icdo3_morphology": "8260", "icdo3_topography": "C73.9"},
                 {"source_record_key": "unusual", "icdo3_morphology": "8140", "icdo3_behaviour": "3",
                  "icdo3_topography": "C73.9"},
                 {"source_record_key": "classified", "icdo3_morphology": "9510", "icdo3_behaviour": "3",
                  "icdo3_topography": "C69.2", "iccc3_group": "V"}]
    rows = pd.DataFrame(diagnoses).assign(source_id="registry_x")
    (derived,) = gx_runs("diagnosis", rows, catalogued("DIAG-ICCC3-DERIVED"))
    (present,) = run_checks(stage({"diagnosis": diagnoses}), catalogued("DIAG-BEHAVIOUR-PRESENT"))
    assert present.error is None, present.error
    assert {r.rule_id: set(r.failures.source_record_key) for r in (derived, present)} == {
        "DIAG-ICCC3-DERIVED": {"unusual"}, "DIAG-BEHAVIOUR-PRESENT": {"no-behaviour"}}
