"""Synthetic exports -> `rtw run` -> a warehouse compared with the generator's truth, field by field."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import SMALL_RUN_KEY, SYNTHETIC_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_frame as _table

from etl import pipeline, timing
from etl.config import SOURCES_DIR, WAREHOUSE_SQL_DIR, Home, resolve_home
from etl.extract import adapter
from etl.load import warehouse
from etl.steps import SourceOutcome
from etl.synth import SOURCES, generate
from etl.transform.pseudonym import PseudonymKey, publish_record_key, record_id, source_pseudonym

pytestmark = pytest.mark.integration
KEY_TEXT = SYNTHETIC_RUN_KEY
KEY = PseudonymKey(KEY_TEXT.encode())
NOT_COMPARED = {"source_id", "source_record_key", "source_patient_key", "treatment_source_record_key"}


@pytest.fixture(scope="module")
def loaded(synthetic_run) -> tuple[Home, Path, dict[str, Any]]:
    return synthetic_run  # conftest.py: shared with test_linkage


def _text(value: Any) -> str:
    """One spelling per value, so a warehouse cell and a truth cell compare as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.6g}" if text not in {"nan"} else ""


TRUTH_TABLES = ["patient_source", "study_enrolment", "consent", "diagnosis", "molecular_alteration",
                "tumour_board_review", "treatment", "response_assessment", "adverse_event", "follow_up"]


@pytest.mark.parametrize("table", TRUTH_TABLES)
def test_every_clean_record_matches_the_truth_field_by_field(loaded, table):
    home, truth_dir, _ = loaded
    truth = pd.read_csv(truth_dir / f"{table}.csv", dtype=str, keep_default_na=False)
    assert len(truth) > 0, f"the generator wrote no truth for {table}"
    truth["published_key"] = [publish_record_key(KEY, s, k) for s, k in zip(truth.source_id, truth.source_record_key)]
    if "treatment_source_record_key" in truth:
        truth["treatment_id"] = [
            record_id(s, "treatment", publish_record_key(KEY, s, k)) if k else ""
            for s, k in zip(truth.source_id, truth.treatment_source_record_key)]
    warehouse = _table(home, f"SELECT * FROM core.{table}")
    by_key = {(r["source_id"], r["source_record_key"]): r for r in warehouse.to_dict("records")}
    compared = [c for c in truth.columns if c in warehouse.columns and c not in NOT_COMPARED]
    missing, mismatches = [], []
    for row in truth.to_dict("records"):
        found = by_key.get((row["source_id"], row["published_key"]))
        if found is None:
            missing.append(row["source_record_key"])
            continue
        for column in compared:
            if _text(found[column]) != _text(row[column]):
                mismatches.append(f"{row['source_id']} {row['source_record_key']} {column}: "
                                  f"warehouse {_text(found[column])!r}, truth {row[column]!r}")
    assert not missing, f"{len(missing)} clean {table} records not loaded, e.g. {missing[:5]}"
    assert not mismatches, f"{len(mismatches)} differences, e.g.\n" + "\n".join(mismatches[:15])
    # And nothing is loaded that is neither in the truth nor a known error.
    expected = set(zip(truth.source_id, truth.published_key)) | _injected(truth_dir)
    unexpected = set(by_key) - expected
    assert not unexpected, f"{len(unexpected)} {table} rows not in the truth, e.g. {sorted(unexpected)[:3]}"


def test_the_comparison_covers_every_source(loaded):
    """The exact comparison above is not vacuous for any source: each feeds the tables it maps."""
    _, truth_dir, _ = loaded
    fed = {table: set(pd.read_csv(truth_dir / f"{table}.csv", dtype=str, keep_default_na=False).source_id)
           for table in TRUTH_TABLES}
    everywhere = ("patient_source", "study_enrolment", "diagnosis", "follow_up")
    assert all(fed[table] == set(SOURCES) for table in everywhere), fed
    assert fed["treatment"] == fed["consent"] == set(SOURCES) - {"registry_it"}
    assert fed["molecular_alteration"] == {"iltb", "esmart", "crizotinib_imt"}
    assert fed["adverse_event"] == fed["response_assessment"] - {"iltb"} == {"sacha_fr", "esmart", "crizotinib_imt"}
    assert fed["tumour_board_review"] == {"iltb"}


def test_linked_persons_get_one_patient_id_and_their_demographics(loaded):
    home, truth_dir, _ = loaded
    links = pd.read_csv(truth_dir / "links.csv", dtype=str, keep_default_na=False)
    people = pd.read_csv(truth_dir / "patient.csv", dtype=str, keep_default_na=False).set_index("true_person_id")
    sources = _table(home, "SELECT source_id, source_patient_pseudonym, patient_id FROM core.patient_source")
    patient_of = {(r.source_id, r.source_patient_pseudonym): r.patient_id for r in sources.itertuples()}
    ids_of_person: dict[str, set[str]] = {}
    for link in links.itertuples():
        found = patient_of.get((link.source_id, source_pseudonym(KEY, link.source_id, link.source_patient_key)))
        if found:
            ids_of_person.setdefault(link.true_person_id, set()).add(found)
    assert all(len(ids) == 1 for ids in ids_of_person.values())
    linked = links.groupby("true_person_id").size()
    assert (linked > 1).sum() > 0, "the synthetic exports should contain linked persons"
    patients = _table(home, "SELECT * FROM core.patient").set_index("patient_id")
    # One row per person with any core record: also a person whose registration was held back.
    everyone = _table(home, " UNION ".join(f"SELECT patient_id FROM core.{t}" for t in TRUTH_TABLES))
    assert set(patients.index) == set(everyone.patient_id)
    assert {next(iter(i)) for i in ids_of_person.values()} <= set(patients.index)
    tainted = _persons_with_errors(truth_dir, links)
    differences = []
    for person, ids in ids_of_person.items():
        if person in tainted:
            continue
        row, expected = patients.loc[next(iter(ids))], people.loc[person]
        for column in ("sex", "birth_year", "birth_month", "country", "death_date"):
            if _text(row[column]) != _text(expected[column]):
                differences.append(f"{person} {column}: warehouse {_text(row[column])!r}, truth {expected[column]!r}")
    assert not differences, "\n".join(differences[:15])


def _persons_with_errors(truth_dir: Path, links: pd.DataFrame) -> set[str]:
    errors = pd.read_csv(truth_dir / "errors.csv", dtype=str, keep_default_na=False)
    person_of = {(r.source_id, r.source_patient_key): r.true_person_id for r in links.itertuples()}
    return {person_of.get((s, k.partition("|")[0]), "") for s, k in zip(errors.source_id, errors.source_record_key)}


def _first_copy(key: str) -> str:
    """The n-th repeat of a record is published as `<key>#<n>`; errors.csv names the record itself."""
    return re.sub(r"#\d+$", "", key)


def _injected(truth_dir: Path, kinds: set[str] | None = None) -> set[tuple[str, str]]:
    errors = pd.read_csv(truth_dir / "errors.csv", dtype=str, keep_default_na=False)
    if kinds is not None:
        errors = errors[errors.error_kind.isin(kinds)]
    return {(s, publish_record_key(KEY, s, k)) for s, k in zip(errors.source_id, errors.source_record_key)}


def test_injected_errors_that_cannot_be_harmonised_are_quarantined_and_clean_records_are_not(loaded):
    home, truth_dir, _ = loaded
    quarantine = _table(home, "SELECT source_id, source_record_key FROM dq.quarantine")
    held = {(s, _first_copy(k)) for s, k in zip(quarantine.source_id, quarantine.source_record_key)}
    keys = _injected(truth_dir, {"impossible_date", "invalid_code", "duplicate"})
    assert keys, "the synthetic exports should contain unharmonisable errors"
    assert keys <= held, f"{len(keys - held)} injected errors were loaded, e.g. {sorted(keys - held)[:3]}"
    assert held <= _injected(truth_dir), f"clean records quarantined: {sorted(held - _injected(truth_dir))[:3]}"


def test_the_issues_found_cover_the_injected_errors(loaded):
    """Issue 3's measure: issues cover >= 99% of truth/errors.csv (source + record key)."""
    home, truth_dir, summary = loaded
    issues = _table(home, f"SELECT source_id, source_record_key FROM dq.issue WHERE run_id = '{summary.run_id}'")
    found = {(s, _first_copy(k)) for s, k in zip(issues.source_id, issues.source_record_key)}
    injected = _injected(truth_dir)
    covered = len(injected & found) / len(injected)
    assert covered >= 0.99, f"issues cover {covered:.1%} of injected errors; missed e.g. {sorted(injected - found)[:3]}"


def test_issue_values_read_as_exported_not_as_pandas_prints_them(loaded):
    home, _, _ = loaded
    issues = _table(home, "SELECT rule_id, value FROM dq.issue WHERE value IS NOT NULL")
    assert len(issues) > 100 and issues.value.str.fullmatch(r"\d{4}-\d{2}-\d{2}").any()
    printed = issues[issues.value.str.contains(r"^(?:NaT|<NA>|nan|None)$|\d{2}:\d{2}:\d{2}$")]
    assert printed.empty, printed.head(10).to_string()


def test_every_source_row_is_accounted_for(loaded):
    home, _, _ = loaded
    files = _table(home, "SELECT * FROM meta.source_file")
    assert set(files.source_id) == set(SOURCES)
    assert (files.rows_read == files.rows_loaded + files.rows_quarantined + files.rows_superseded).all()
    assert (files.rows_read > 0).all()
    quarantined = _table(home, "SELECT source_file_sha256, count(*) AS n FROM dq.quarantine GROUP BY 1")
    counted = dict(zip(files.source_file_sha256, files.rows_quarantined))
    assert all(counted[sha] == n for sha, n in zip(quarantined.source_file_sha256, quarantined.n))


def test_no_direct_identifiers_reach_the_warehouse(loaded):
    home, truth_dir, _ = loaded
    links = pd.read_csv(truth_dir / "links.csv", dtype=str, keep_default_na=False)
    clear_keys = set(links.source_patient_key)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        columns = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                              "WHERE data_type = 'VARCHAR'").fetchall()
        assert not [c for c in columns if "birth_date" in c[2] or c[2] in {"eupid", "source_patient_key"}]
        for schema, table, column in columns:
            values = {v for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM {schema}.{table}').fetchall()}
            leaked = {v for v in values if v and v.split("|")[0] in clear_keys}
            assert not leaked, f"{schema}.{table}.{column} holds clear patient keys, e.g. {sorted(leaked)[:2]}"
    finally:
        con.close()


def test_no_age_and_its_date_give_a_birth_date_back(loaded):
    """An age in days and its event's date would give the birth date back (date - age): ages count from
    the 15th of the birth month (1 July of a year), what the warehouse publishes of a birth date."""
    home, _, _ = loaded
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        ages = con.execute("SELECT table_schema, table_name, column_name FROM information_schema.columns "
                           "WHERE column_name LIKE 'age_at_%_days' AND table_schema IN ('core', 'marts', 'stage')"
                           ).fetchall()
        assert len(ages) >= 3
        for schema, table, age in ages:
            event = age.removeprefix("age_at_").removesuffix("_days") + "_date"
            birthdays = con.execute(f'SELECT DISTINCT strftime("{event}" - "{age}"::INTEGER, \'%m-%d\') '
                                    f'FROM {schema}.{table} WHERE "{age}" IS NOT NULL').fetchall()
            assert birthdays and {d[-2:] for (d,) in birthdays} <= {"15", "01"}, (schema, table, birthdays[:5])
            assert {d for (d,) in birthdays if d.endswith("01")} <= {"07-01"}
    finally:
        con.close()


def _content_digest(home: Home) -> dict[str, str]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                             "WHERE schema_name IN ('core', 'dq') ORDER BY 1, 2").fetchall()
        digests = {}
        for schema, table in tables:
            rows = con.execute(f"SELECT * FROM {schema}.{table} ORDER BY ALL").fetchall()
            digests[f"{schema}.{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return digests
    finally:
        con.close()


def test_a_second_run_on_unchanged_files_skips_them_and_changes_nothing(loaded, tmp_path):
    shutil.copytree(loaded[0].root, tmp_path / "home", symlinks=True)  # the shared home is read only
    home = resolve_home(tmp_path / "home")
    before, reports = _content_digest(home), sorted(home.reports.iterdir())
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_changed == [] and summary.sources_unchanged == sorted(SOURCES)
    assert _content_digest(home) == before
    assert sorted(home.reports.iterdir()) == reports  # no empty folder for the Data Docs it had nothing to put in


def _core_rows_digest(home: Home) -> dict[str, str]:
    """Per core table, its rows but for the run that loaded them."""
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return {table: hashlib.sha256(repr(con.execute(
            f"SELECT * EXCLUDE (run_id) FROM core.{table} ORDER BY ALL").fetchall()).encode()).hexdigest()
            for (table,) in con.execute("SELECT table_name FROM duckdb_columns() WHERE schema_name = 'core' "
                                        "AND column_name = 'run_id' ORDER BY 1").fetchall()}


def test_an_upgrade_loads_every_source_and_derives_every_mart_again_and_changes_no_row(loaded, tmp_path,
                                                                                     monkeypatch):
    shutil.copytree(loaded[0].root, tmp_path / "home", symlinks=True)  # the shared home is read only
    home = resolve_home(tmp_path / "home")
    before = _core_rows_digest(home)
    marts = sorted(p.stem.split("_", 1)[1] for p in (WAREHOUSE_SQL_DIR / "marts").glob("*.sql"))

    def built_marts() -> list[str]:
        return sorted(s.name.removeprefix("mart ") for s in timing.recorded if s.name.startswith("mart "))

    # The code that reads exports upgraded: every source is loaded again, at the first run after.
    monkeypatch.setattr(pipeline, "intake_code_digest", lambda: "the intake upgraded")
    timing.recorded.clear()
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_changed == sorted(SOURCES) and summary.sources_failed == []
    assert pipeline.run(home, key_value=KEY_TEXT).sources_changed == []
    # The code that derives core and the marts upgraded: every mart is built again.
    timing.recorded.clear()
    pipeline.run(home, key_value=KEY_TEXT)
    assert built_marts() == []
    monkeypatch.setattr(warehouse, "derive_code_digest", lambda: "the derivation upgraded")
    pipeline.run(home, key_value=KEY_TEXT)
    assert built_marts() == marts
    assert _core_rows_digest(home) == before


def test_new_reader_options_or_an_upgraded_reader_stage_the_export_again(loaded, tmp_path, monkeypatch):
    shutil.copytree(loaded[0].root, tmp_path / "home", symlinks=True)
    home = resolve_home(tmp_path / "home")

    def staged(outcome: SourceOutcome) -> tuple[str, bool]:
        """The staged copy's name, and whether it was staged now (not an earlier run's)."""
        (export,) = outcome.files
        assert export.staged is not None
        return Path(export.staged).name, export.rows_staged is not None

    name, now = staged(pipeline.extract_source(home, "again", "registry_it"))
    assert not now  # the shared run's copy: the same file, read alike
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    mapping = sources / "registry_it.yaml"
    mapping.write_text(mapping.read_text().replace("encoding: cp1252", "encoding: latin-1"))
    summary = pipeline.run(home, key_value=KEY_TEXT, sources_dir=sources)
    assert summary.sources_changed == ["registry_it"] and summary.sources_failed == []
    (now_staged,) = (home.staging / "registry_it").glob("*.parquet")  # the copy read otherwise is gone
    assert now_staged.name[:64] == name[:64] and now_staged.name != name
    assert staged(pipeline.extract_source(home, "again", "registry_it", sources_dir=sources)) == (now_staged.name,
                                                                                                  False)
    monkeypatch.setattr(adapter, "readers_digest", lambda: "the readers upgraded")
    upgraded, now = staged(pipeline.extract_source(home, "upgraded", "registry_it", sources_dir=sources))
    assert now and upgraded not in {name, now_staged.name}


@pytest.mark.parametrize("source_id", ["registry_it", "crizotinib_imt"])  # a staged file, a workbook's folder
def test_a_staged_copy_damaged_on_disk_is_staged_again(loaded, tmp_path, caplog, source_id):
    shutil.copytree(loaded[0].root, tmp_path / "home", symlinks=True)
    home = resolve_home(tmp_path / "home")
    (staged,) = [p for p in (home.staging / source_id).iterdir() if p.name != "harmonised"]
    damaged = next(staged.glob("*.parquet")) if staged.is_dir() else staged
    damaged.write_bytes(damaged.read_bytes()[:-100])
    outcome = pipeline.extract_source(home, "again", source_id)
    (export,) = outcome.files
    assert export.staged == str(staged) and export.rows_staged
    assert adapter.parquet_whole(damaged)
    assert any("cannot be read back: staged again" in r.getMessage() for r in caplog.records)
    assert pipeline.harmonise_extracted(home, outcome, key_value=KEY_TEXT).status.value == "harmonised"


def test_a_changed_export_replaces_that_source_only(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)
    before = _table(home, "SELECT source_id, count(*) AS n FROM core.follow_up GROUP BY 1").set_index("source_id").n
    fu = home.landing / "iltb" / "ILTB_FU.csv"
    lines = fu.read_bytes().split(b"\r\n")
    fu.write_bytes(b"\r\n".join([*lines[:-2], b""]))  # the centre deleted its last follow-up record
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_changed == ["iltb"]
    after = _table(home, "SELECT source_id, count(*) AS n FROM core.follow_up GROUP BY 1").set_index("source_id").n
    assert after["iltb"] == before["iltb"] - 1 and after["sacha_fr"] == before["sacha_fr"]
    files = _table(home, "SELECT * FROM meta.source_file WHERE file_name = 'ILTB_FU.csv' ORDER BY status")
    assert list(files.status) == ["loaded", "superseded"]
    old = files[files.status == "superseded"].iloc[0]
    assert old.rows_superseded == old.rows_read and old.rows_loaded == 0


def test_one_unreadable_export_does_not_stop_the_others(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=30, seed=9)
    odm = next((home.landing / "sacha_fr").glob("*.xml"))
    odm.write_bytes(odm.read_bytes()[: odm.stat().st_size // 2])  # a transfer cut in half
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.sources_failed == ["sacha_fr"]
    assert odm.name in summary.message and "line" in summary.message
    assert summary.rows["diagnosis"] > 0
    state = _table(home, "SELECT status FROM meta.source_file WHERE source_id = 'sacha_fr'")
    assert list(state.status) == ["failed"]


def test_trial_eligibility_violations_are_flagged_by_the_eligibility_rules(tmp_path):
    """The crizotinib trial's eligibility (LVEF > 60%, an ALK/ROS1 fusion, age under 18) judges real rows."""
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=250, seed=4, error_rate=0.2)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    errors = pd.read_csv(home.root / "truth" / "errors.csv", dtype=str, keep_default_na=False)
    ineligible = errors[errors.error_kind == "ineligible"]
    assert set(ineligible.field) == {"lvef_percent", "age_at_enrolment_days", "molecular_alteration"}
    assert set(ineligible.source_id) == {"crizotinib_imt"}
    issues = _table(home, f"SELECT source_id, source_record_key, rule_id FROM dq.issue "
                          f"WHERE run_id = '{summary.run_id}'")
    rules_of: dict[tuple[str, str], set[str]] = {}
    for row in issues.itertuples():
        rules_of.setdefault((row.source_id, _first_copy(row.source_record_key)), set()).add(row.rule_id)
    expected = {"lvef_percent": "LVEF", "age_at_enrolment_days": "AGE", "molecular_alteration": "ALK"}
    for error in ineligible.itertuples():
        published = publish_record_key(KEY, error.source_id, error.source_record_key)
        rules = rules_of.get((error.source_id, published), set())
        assert any(expected[error.field] in rule for rule in rules), (error.source_record_key, error.field, rules)


def test_every_reference_in_core_resolves_or_is_flagged_and_the_marts_say_what_they_miss(loaded):
    """Issue 10: core refers only to core; what dangles is a warning a quality officer can query back."""
    home, _, summary = loaded
    references = " UNION ALL ".join(f"SELECT '{t}' AS table_name, source_id, source_record_key, patient_id "
                                    f"FROM core.{t}" for t in TRUTH_TABLES)
    orphans = _table(home, f"SELECT * FROM ({references}) "
                           "WHERE patient_id NOT IN (SELECT patient_id FROM core.patient)")
    assert orphans.empty, orphans.head()
    issues = _table(home, f"SELECT rule_id, table_name, source_id, source_record_key, field, severity "
                          f"FROM dq.issue WHERE run_id = '{summary.run_id}' "
                          "AND rule_id IN ('XT-PATIENT-KNOWN', 'XT-TREATMENT-KNOWN')")
    assert set(issues.severity) <= {"warning"}
    flagged = {rule: set(zip(group.table_name, group.source_id, group.source_record_key))
               for rule, group in issues.groupby("rule_id")}
    unregistered = _table(home, f"SELECT table_name, source_id, source_record_key FROM ({references}) r "
                                "WHERE table_name <> 'patient_source' AND NOT EXISTS (SELECT 1 "
                                "FROM core.patient_source p WHERE p.source_id = r.source_id "
                                "AND p.patient_id = r.patient_id)")
    assert set(map(tuple, unregistered.to_numpy())) == flagged.get("XT-PATIENT-KNOWN", set())
    dangling = _table(home, """
        SELECT 'response_assessment' AS table_name, source_id, source_record_key FROM core.response_assessment
        WHERE treatment_id IS NOT NULL AND treatment_id NOT IN (SELECT treatment_id FROM core.treatment)
        UNION ALL
        SELECT 'adverse_event', source_id, source_record_key FROM core.adverse_event
        WHERE treatment_id IS NOT NULL AND treatment_id NOT IN (SELECT treatment_id FROM core.treatment)""")
    assert set(map(tuple, dangling.to_numpy())) == flagged.get("XT-TREATMENT-KNOWN", set())
    left_out = _table(home, "SELECT mart, n_rows FROM marts.left_out WHERE reason LIKE 'points to a treatment%'")
    # The response mart reports cycle 1 and best response: those are the ones it says it leaves out.
    reported = _table(home, "SELECT count(*) AS n FROM core.response_assessment WHERE timepoint IN ('cycle1', 'best') "
                            "AND treatment_id NOT IN (SELECT treatment_id FROM core.treatment)")
    assert dict(zip(left_out.mart, left_out.n_rows)) == {
        "adverse_events": (dangling.table_name == "adverse_event").sum(), "response": reported.n[0]}
    assert dangling.size > 0, "the synthetic exports should hold back some treatments"
    # Every death a held-back follow-up reports is listed, by its record key, as a held-back endpoint.
    deaths = _table(home, "SELECT source_record_key FROM stage.follow_up SEMI JOIN dq.quarantine "
                          "USING (source_id, source_record_key) WHERE vital_status = 'dead' OR death_date IS NOT NULL")
    listed = _table(home, "SELECT unnest(source_record_keys) AS key FROM marts.held_back_endpoints "
                          "WHERE endpoint = 'death'")
    assert set(deaths.source_record_key) == set(listed.key)
