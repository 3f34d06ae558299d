"""Plausible time: no date after its export or before 1900 reaches core, and no mart shows a year that cannot exist.

Three layers: the two rules on a hand-made stage (every date column of every table, the year of
birth, the boundaries); the marts on a hand-made core in which such dates slipped through (a
source switched the rules off); and a real run from synthetic exports in which one registry row
is registered in 2150 and another diagnosed in 1850.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from etl import pipeline, schema
from etl.config import WAREHOUSE_SQL_DIR, resolve_home
from etl.load.marts import build_marts
from etl.quality.catalogue import load_catalogue
from etl.quality.sql_checks import recorded_date_columns, run_checks
from etl.synth import generate
from etl.transform.pseudonym import PseudonymKey, publish_record_key

AFTER_EXPORT = "XT-DATE-NOT-AFTER-EXPORT"
BEFORE_1900 = "XT-DATE-NOT-BEFORE-1900"
EXPORTED_ON = date(2026, 11, 1)


def _rules(*rule_ids: str) -> list[Any]:
    return [r for r in load_catalogue(check_types=False) if r.rule_id in rule_ids]


# -- the rules on a hand-made stage --------------------------------------------------------------

def test_every_date_column_of_the_ddl_is_judged():
    """Read from the DDL: a date column added to core later is judged without touching a rule."""
    judged = {(table, column) for table, dates in recorded_date_columns().items() for column, _ in dates}
    in_ddl = {(table, column) for table in schema.tables("core") if table != "patient"
              for column, kind in schema.column_types(f"core.{table}") if kind == "DATE"}
    assert in_ddl <= judged
    assert {("study_enrolment", "enrolment_date"), ("diagnosis", "diagnosis_date"), ("follow_up", "contact_date"),
            ("treatment", "start_date"), ("adverse_event", "end_date"), ("patient_source", "birth_year")} <= judged
    assert ("study_enrolment", "age_at_enrolment_days") not in judged


def _stage() -> duckdb.DuckDBPyConnection:
    """Stage copies of every core table (as publish makes them) and one export of 2026-11-01."""
    con = duckdb.connect()
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
    con.execute("CREATE SCHEMA stage")
    for table in schema.tables("core"):
        if table != "patient":
            con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    con.execute((WAREHOUSE_SQL_DIR / "stage.sql").read_text())  # stage.record: where each record is now
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, exported_on) "
                "VALUES ('src', 'f1', 'export_20261101.csv', 'loaded', ?)", [EXPORTED_ON])
    return con


def _insert(con: duckdb.DuckDBPyConnection, table: str, key: str, **values: Any) -> None:
    row = {"source_id": "src", "source_file_sha256": "f1", "source_record_key": key, "run_id": "r1", **values}
    con.execute(f"INSERT INTO stage.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()))
    con.execute("INSERT INTO stage.record (source_id, source_file_sha256, source_record_key) VALUES (?, ?, ?)",
                [row["source_id"], row["source_file_sha256"], key])


def _found(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple[str, str, str, str]]]:
    runs = run_checks(con, _rules(AFTER_EXPORT, BEFORE_1900))
    assert all(r.error is None for r in runs), [r.error for r in runs]
    return {r.rule_id: {(k, t, f, v) for k, t, f, v in zip(r.failures.source_record_key, r.failures.table_name,
                                                             r.failures.field, r.failures.value)} for r in runs}


def test_a_date_after_the_export_or_before_1900_fails_in_any_table_with_its_field_and_value():
    con = _stage()
    base = {"patient_id": "p"}
    _insert(con, "study_enrolment", "enrol-2150", enrolment_id="e1", study_id="S", enrolment_date="2150-01-01", **base)
    _insert(con, "diagnosis", "diag-1850", diagnosis_id="d1", diagnosis_date="1850-06-01", **base)
    _insert(con, "consent", "consent-late", consent_id="c1", study_id="S", consent_date="2026-01-01",
            withdrawal_date="2026-11-02", **base)  # the day after the export
    _insert(con, "adverse_event", "ae-both", ae_id="a1", onset_date="1899-12-31", end_date="2027-01-01", **base)
    _insert(con, "patient_source", "born-late", source_patient_pseudonym="s1", link_method="exact",
            birth_year=2027, **base)
    _insert(con, "patient_source", "born-early", source_patient_pseudonym="s2", link_method="exact",
            birth_year=1899, **base)
    # On the boundaries: the export day itself, 1 January 1900, born in the export year or in 1900.
    _insert(con, "follow_up", "contact-export-day", follow_up_id="f1", contact_date="2026-11-01",
            death_date="1900-01-01", **base)
    _insert(con, "patient_source", "born-export-year", source_patient_pseudonym="s3", link_method="exact",
            birth_year=2026, **base)
    _insert(con, "patient_source", "born-1900", source_patient_pseudonym="s4", link_method="exact",
            birth_year=1900, **base)
    found = _found(con)
    assert found[AFTER_EXPORT] == {("enrol-2150", "study_enrolment", "enrolment_date", "2150-01-01"),
                                   ("consent-late", "consent", "withdrawal_date", "2026-11-02"),
                                   ("ae-both", "adverse_event", "end_date", "2027-01-01"),
                                   ("born-late", "patient_source", "birth_year", "2027")}
    assert found[BEFORE_1900] == {("diag-1850", "diagnosis", "diagnosis_date", "1850-06-01"),
                                  ("ae-both", "adverse_event", "onset_date", "1899-12-31"),
                                  ("born-early", "patient_source", "birth_year", "1899")}
    run = next(r for r in run_checks(con, _rules(AFTER_EXPORT)))
    message = run.failures.set_index("source_record_key").message["enrol-2150"]
    assert message == ("study_enrolment.enrolment_date 2150-01-01 is after the export of 2026-11-01 "
                       "(export_20261101.csv)")


def test_each_record_is_judged_against_its_own_export():
    """A date is impossible only after the export it came in: an older file's record is held to its older date."""
    con = _stage()
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, exported_on) "
                "VALUES ('src', 'f0', 'export_20250101.csv', 'loaded', DATE '2025-01-01')")
    _insert(con, "follow_up", "new-file", follow_up_id="f1", patient_id="p", contact_date="2026-06-01")
    _insert(con, "follow_up", "old-file", follow_up_id="f2", patient_id="p", contact_date="2026-06-01",
            source_file_sha256="f0")
    assert {k for k, *_ in _found(con)[AFTER_EXPORT]} == {"old-file"}


def test_a_wild_year_of_birth_is_judged_not_an_error_of_the_rule():
    con = _stage()
    for n, year in enumerate((0, -5, 99999, 2147483647)):
        _insert(con, "patient_source", f"wild-{year}", patient_id="p", source_patient_pseudonym=f"s{n}",
                link_method="exact", birth_year=year)
    found = _found(con)
    assert {k for k, *_ in found[AFTER_EXPORT]} == {"wild-99999", "wild-2147483647"}
    assert {k for k, *_ in found[BEFORE_1900]} == {"wild-0", "wild--5"}


def test_the_paediatric_birth_year_warning_leaves_impossible_years_to_the_errors():
    con = _stage()
    for n, year in enumerate((1850, 1950, 2020, 2030)):
        _insert(con, "patient_source", f"born-{year}", patient_id="p", source_patient_pseudonym=f"s{n}",
                link_method="exact", birth_year=year)
    (run,) = run_checks(con, _rules("XT-BIRTH-YEAR-PLAUSIBLE"))
    assert run.error is None and list(run.failures.source_record_key) == ["born-1950"]


def test_the_old_contact_and_treatment_rules_are_replaced_not_doubled():
    ids = {r.rule_id for r in load_catalogue(check_types=False)}
    assert {AFTER_EXPORT, BEFORE_1900} <= ids
    assert not ids & {"XT-CONTACT-NOT-AFTER-EXPORT", "XT-TREATMENT-NOT-AFTER-EXPORT"}


# -- the marts, when impossible dates reach core anyway ------------------------------------------

def test_no_mart_shows_a_year_that_cannot_exist():
    con = duckdb.connect()
    for ddl in ("core.sql", "meta.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, status, exported_on) "
                "VALUES ('src', 'f1', 'loaded', ?)", [EXPORTED_ON])
    lineage = {"source_id": "src", "source_file_sha256": "f1", "run_id": "r1"}

    def insert(table: str, **values: Any) -> None:
        row = {**lineage, "source_record_key": f"{table}-{sorted(values.items())}", **values}
        con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))

    insert("patient", patient_id="P1", birth_year=2150, n_sources=1)
    insert("patient", patient_id="P2", birth_year=1850, n_sources=1)
    insert("patient", patient_id="P3", birth_year=2015, n_sources=1)
    insert("diagnosis", diagnosis_id="d1", patient_id="P3", event_type="initial", diagnosis_date="1850-06-01")
    insert("diagnosis", diagnosis_id="d2", patient_id="P1", event_type="initial", diagnosis_date="2020-01-01")
    for enrolment_id, patient_id, day in (("e1", "P1", "2150-01-01"), ("e2", "P2", "1850-01-01"),
                                          ("e3", "P3", "2021-03-01"), ("e4", "P3", "2026-11-01")):
        insert("study_enrolment", enrolment_id=enrolment_id, patient_id=patient_id, study_id="TREP",
               enrolment_date=day)
    insert("tumour_board_review", review_id="r1", patient_id="P1", board="ILTB", submission_date="2150-01-01",
           recommendation_date="2150-02-01", recommendation_type="off_label")
    insert("tumour_board_review", review_id="r2", patient_id="P3", board="ILTB", submission_date="2022-01-01",
           recommendation_date="2022-02-01", recommendation_type="off_label")
    build_marts(con)

    def column(sql: str) -> list[Any]:
        return [v for (v,) in con.execute(sql).fetchall()]

    activity = con.execute("SELECT registration_year, n_registrations, n_with_diagnosis_date "
                           "FROM marts.registry_activity ORDER BY registration_year NULLS LAST").fetchall()
    # 2150 and 1850 are unknown years, still counted; the 1850 diagnosis times no registration.
    assert activity == [(2021, 1, 0), (2026, 1, 0), (None, 2, 0)]
    assert column("SELECT birth_year FROM marts.patient_summary ORDER BY patient_id") == [None, None, 2015]
    assert column("SELECT recommendation_year FROM marts.board_advice ORDER BY review_id") == [None, 2022]
    summary_years = set(column("SELECT recommendation_year FROM marts.board_advice_summary"))
    assert summary_years == {2022, None}  # NULL there means "all years"
    overall = column("SELECT n_cases FROM marts.board_advice_summary WHERE breakdown = 'overall'")
    assert overall == [1]  # a case whose only recommendation date cannot be true is not counted, as one without


# -- a real run from synthetic exports -----------------------------------------------------------

KEY_TEXT = "plausible-time-key"
KEY = PseudonymKey(KEY_TEXT.encode())


def _clean_registry_rows(truth: Path) -> list[str]:
    """id_record of registry rows with no injected error, loaded in full in the truth."""
    errors = pd.read_csv(truth / "errors.csv", dtype=str, keep_default_na=False)
    tainted = set(errors[errors.source_id == "registry_it"].source_record_key)
    keys = [set(pd.read_csv(truth / f"{t}.csv", dtype=str, keep_default_na=False)
                .query("source_id == 'registry_it'").source_record_key) for t in ("study_enrolment", "diagnosis")]
    clean = sorted((keys[0] & keys[1]) - tainted)
    return [k.split("REG[")[1].rstrip("]") for k in clean]


def _rewrite_registry(landing: Path, changes: dict[str, dict[str, str]]) -> dict[str, str]:
    """Set columns of the rows with these id_record; keep the file's encoding, dialect and export-day mtime.

    Returns id_record -> the clear record key (`<codice_paziente>|REG[<id>]`).
    """
    (path,) = landing.glob("TREP_export_*.csv")
    stat = path.stat()
    raw = path.read_bytes().decode("cp1252")
    rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter=";"))
    header = rows[0]
    keys = {}
    for row in rows[1:]:
        record = dict(zip(header, row))
        if record.get("id_record") in changes:
            for column, value in changes[record["id_record"]].items():
                row[header.index(column)] = value
            keys[record["id_record"]] = f"{record['codice_paziente']}|REG[{record['id_record']}]"
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    path.write_bytes(out.getvalue().encode("cp1252"))
    os.utime(path, (stat.st_atime, stat.st_mtime))  # delivered as it was: only its content changed
    assert set(keys) == set(changes)
    return keys


@pytest.fixture(scope="module")
def impossible_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = resolve_home(tmp_path_factory.mktemp("plausible")).ensure()
    generate(home.root, patients=60, seed=8)
    enrolled, diagnosed = _clean_registry_rows(home.root / "truth")[:2]
    clear = _rewrite_registry(home.landing / "registry_it", {
        enrolled: {"data_registrazione": "01/01/2150"}, diagnosed: {"data_diagnosi": "01/06/1850"}})
    summary = pipeline.run(home, key_value=KEY_TEXT)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        def frame(sql: str) -> pd.DataFrame:
            return con.execute(sql).df()
        return {"summary": summary, "truth": home.root / "truth",
                "enrolled": publish_record_key(KEY, "registry_it", clear[enrolled]),
                "diagnosed": publish_record_key(KEY, "registry_it", clear[diagnosed]),
                "issues": frame(f"SELECT * FROM dq.issue WHERE run_id = '{summary.run_id}'"),
                "quarantine": frame("SELECT * FROM dq.quarantine"),
                "activity": frame("SELECT * FROM marts.registry_activity"),
                "enrolments": frame("SELECT source_record_key FROM core.study_enrolment"),
                "exported_on": frame("SELECT max(exported_on) AS d FROM meta.source_file").d[0]}
    finally:
        con.close()


@pytest.mark.integration
def test_an_enrolment_in_2150_and_a_diagnosis_in_1850_are_held_back_naming_rule_field_and_value(impossible_run):
    issues = impossible_run["issues"]
    for key, rule_id, table, field, value in (
            (impossible_run["enrolled"], AFTER_EXPORT, "study_enrolment", "enrolment_date", "2150-01-01"),
            (impossible_run["diagnosed"], BEFORE_1900, "diagnosis", "diagnosis_date", "1850-06-01")):
        mine = issues[(issues.source_record_key == key) & (issues.rule_id == rule_id)]
        assert len(mine) == 1, issues[issues.source_record_key == key][["rule_id", "field", "value"]]
        issue = mine.iloc[0]
        assert (issue.severity, issue.table_name, issue.field, issue.value) == ("error", table, field, value)
        assert f"{table}.{field} {value}" in issue.message
        held = impossible_run["quarantine"].query("source_record_key == @key")
        assert len(held) == 1 and rule_id in list(held.rule_ids.iloc[0])
        assert key not in set(impossible_run["enrolments"].source_record_key)


@pytest.mark.integration
def test_the_marts_show_neither_year(impossible_run):
    years = impossible_run["activity"].registration_year.dropna().astype(int)
    assert len(years) > 0
    assert years.between(1900, impossible_run["exported_on"].year).all(), sorted(set(years))


@pytest.mark.integration
def test_clean_synthetic_dates_raise_no_date_issue(impossible_run):
    """Only the two rows made impossible, and the generator's own future contact dates, fail a date rule."""
    issues = impossible_run["issues"]
    dated = issues[issues.rule_id.isin([AFTER_EXPORT, BEFORE_1900])]
    errors = pd.read_csv(impossible_run["truth"] / "errors.csv", dtype=str, keep_default_na=False)
    injected = {publish_record_key(KEY, s, k) for s, k in zip(errors.source_id, errors.source_record_key)}
    expected = injected | {impossible_run["enrolled"], impossible_run["diagnosed"]}
    unexpected = dated[~dated.source_record_key.str.replace(r"#\d+$", "", regex=True).isin(expected)]
    assert unexpected.empty, unexpected[["source_id", "rule_id", "table_name", "field", "value"]].head()
    future = errors[(errors.error_kind == "out_of_range") & (errors.field == "contact_date")]
    assert len(future) > 0, "the generator should inject future contact dates"
    caught = set(dated[dated.rule_id == AFTER_EXPORT].source_record_key)
    assert {publish_record_key(KEY, s, k) for s, k in zip(future.source_id, future.source_record_key)} <= caught
