"""Referential integrity: what reaches core refers only to what reaches core, and what is held back is said.

A tiny warehouse from the real DDL, validated with the real rules: a future-dated follow-up (which
also reports a valid death), a future-dated treatment (with a response and an adverse event pointing
at it) and a registration with a birth year after the export are held back by XT-DATE-NOT-AFTER-EXPORT.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from etl.load import warehouse
from etl.quality.catalogue import CatalogueError, load_catalogue, sql_rule
from etl.quality.sql_checks import core_references
from etl.quality.validate import QualityPlan, validate

SHA = "ab" * 32
RULES = ("XT-DATE-NOT-AFTER-EXPORT", "XT-PATIENT-KNOWN", "XT-TREATMENT-KNOWN")


def _key(patient: str, local: str) -> str:
    return f"{patient}|{local}"


# (table, values): p1 is registered, p2's registration is held back (born after the export).
RECORDS: list[tuple[str, dict[str, Any]]] = [
    ("patient_source", {"patient_id": "p1", "source_patient_pseudonym": "s1", "link_method": "exact",
                        "sex": "female", "birth_year": 2012, "source_record_key": _key("p1", "REG")}),
    ("patient_source", {"patient_id": "p2", "source_patient_pseudonym": "s2", "link_method": "exact",
                        "sex": "male", "birth_year": 2030, "source_record_key": _key("p2", "REG")}),
    ("diagnosis", {"diagnosis_id": "d1", "patient_id": "p1", "event_type": "initial", "diagnosis_date": "2020-01-01",
                   "source_record_key": _key("p1", "DIAG")}),
    ("diagnosis", {"diagnosis_id": "d2", "patient_id": "p2", "event_type": "initial", "diagnosis_date": "2021-01-01",
                   "source_record_key": _key("p2", "DIAG")}),
    ("follow_up", {"follow_up_id": "f2", "patient_id": "p2", "contact_date": "2021-06-01", "vital_status": "alive",
                   "source_record_key": _key("p2", "FU[1]")}),
    ("treatment", {"treatment_id": "t-ok", "patient_id": "p1", "line_number": 1, "drug_name": "drug a",
                   "start_date": "2020-02-01", "source_record_key": _key("p1", "TRT[1]")}),
    ("treatment", {"treatment_id": "t-future", "patient_id": "p1", "line_number": 2, "drug_name": "drug b",
                   "start_date": "2027-02-01", "source_record_key": _key("p1", "TRT[2]")}),
    ("response_assessment", {"response_id": "r1", "patient_id": "p1", "treatment_id": "t-future",
                             "timepoint": "cycle1", "response": "PR", "assessment_date": "2026-03-01",
                             "source_record_key": _key("p1", "RESP[1]")}),
    ("adverse_event", {"ae_id": "a1", "patient_id": "p1", "treatment_id": "t-future", "ctcae_grade": 3,
                       "source_record_key": _key("p1", "AE[1]")}),
    ("adverse_event", {"ae_id": "a2", "patient_id": "p1", "treatment_id": "t-ok", "ctcae_grade": 2,
                       "source_record_key": _key("p1", "AE[2]")}),
    # A contact date after the export holds the whole record back, with its valid death date.
    ("follow_up", {"follow_up_id": "f1", "patient_id": "p1", "contact_date": "2027-01-05", "vital_status": "dead",
                   "death_date": "2026-10-01", "source_record_key": _key("p1", "FU[1]")}),
]
HELD_BACK = {_key("p2", "REG"), _key("p1", "TRT[2]"), _key("p1", "FU[1]")}


@pytest.fixture(scope="module")
def validated() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse._create_schema(con)
    warehouse._ensure_stage(con)
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, rows_read, "
                "rows_loaded, rows_quarantined, rows_superseded, exported_on) "
                "VALUES ('src', ?, 'export.csv', 'loaded', ?, ?, 0, 0, DATE '2026-11-01')",
                [SHA, len(RECORDS), len(RECORDS)])
    for table, values in RECORDS:
        row = {"source_id": "src", "source_file_sha256": SHA, "run_id": "r1", **values}
        con.execute(f"INSERT INTO stage.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))
        con.execute("INSERT INTO stage.record (source_id, source_file_sha256, source_record_key, centre_id, "
                    "patient_pseudonym, target_tables) VALUES ('src', ?, ?, 'C1', ?, [?])",
                    [SHA, row["source_record_key"], row["patient_id"], table])
    rules = [r for r in load_catalogue(check_types=False) if r.rule_id in RULES]
    validate(con, "run-1", QualityPlan(rules))
    warehouse.rebuild_derived(con)
    return con


def _issues(con: duckdb.DuckDBPyConnection, rule_id: str) -> set[tuple[str, str, str, str]]:
    return set(con.execute("SELECT table_name, source_record_key, field, severity FROM dq.issue "
                           "WHERE rule_id = ?", [rule_id]).fetchall())


def test_the_future_dated_records_are_held_back(validated):
    held = {k for (k,) in validated.execute("SELECT source_record_key FROM dq.quarantine").fetchall()}
    assert held == HELD_BACK


def test_a_response_or_adverse_event_whose_treatment_is_held_back_is_flagged_after_the_quarantine(validated):
    assert _issues(validated, "XT-TREATMENT-KNOWN") == {
        ("response_assessment", _key("p1", "RESP[1]"), "treatment_id", "warning"),
        ("adverse_event", _key("p1", "AE[1]"), "treatment_id", "warning")}
    message = validated.execute("SELECT message FROM dq.issue WHERE rule_id = 'XT-TREATMENT-KNOWN' "
                                "AND table_name = 'adverse_event'").fetchone()[0]
    assert "AE[1]" in message and "treatment_id t-future is not in core.treatment" in message
    # The denominator is every treatment reference that reaches core (two adverse events, one response).
    result = validated.execute("SELECT failing_rows, denominator, status FROM dq.check_result "
                               "WHERE rule_id = 'XT-TREATMENT-KNOWN'").fetchall()
    assert result == [(2, 3, "failed")]


def test_every_record_of_a_patient_whose_registration_is_held_back_is_flagged(validated):
    assert _issues(validated, "XT-PATIENT-KNOWN") == {
        ("diagnosis", _key("p2", "DIAG"), "patient_id", "warning"),
        ("follow_up", _key("p2", "FU[1]"), "patient_id", "warning")}


def test_every_core_row_s_patient_is_in_core_patient(validated):
    dangling = validated.execute("""
        SELECT table_name, count(*) FROM (
            SELECT 'diagnosis' AS table_name, patient_id FROM core.diagnosis UNION ALL
            SELECT 'follow_up', patient_id FROM core.follow_up UNION ALL
            SELECT 'treatment', patient_id FROM core.treatment UNION ALL
            SELECT 'adverse_event', patient_id FROM core.adverse_event UNION ALL
            SELECT 'response_assessment', patient_id FROM core.response_assessment)
        WHERE patient_id NOT IN (SELECT patient_id FROM core.patient) GROUP BY ALL""").fetchall()
    assert dangling == []
    p2 = validated.execute("SELECT sex, birth_year, n_sources, source_record_key FROM core.patient "
                           "WHERE patient_id = 'p2'").fetchone()
    assert p2 == ("unknown", None, 1, _key("p2", "DIAG"))  # known from its diagnosis, demographics unknown


def test_the_second_phase_leaves_nothing_behind_in_the_warehouse(validated):
    assert validated.execute("SELECT count(*) FROM duckdb_schemas() WHERE schema_name = 'admitted'").fetchone() == (0,)


def test_the_marts_say_what_they_leave_out(validated):
    left_out = {(mart, reason.split(" (")[0]): n for mart, reason, n in validated.execute(
        "SELECT mart, reason, n_rows FROM marts.left_out").fetchall()}
    assert left_out[("adverse_events", "points to a treatment that is not in core")] == 1
    assert left_out[("response", "points to a treatment that is not in core")] == 1
    assert left_out[("survival", "death carried by a record held back in dq.quarantine, not in core otherwise")] == 1
    assert validated.execute("SELECT n_events FROM marts.adverse_events WHERE drug_name = 'drug a'").fetchone() == (1,)


def test_a_held_back_death_is_counted_as_a_held_back_endpoint(validated):
    # The patient is alive in core: the only record of the death is held back.
    assert validated.execute("SELECT vital_status FROM core.patient WHERE patient_id = 'p1'").fetchone() == ("unknown",)
    rows = validated.execute("SELECT source_id, centre_id, endpoint, n_records, n_patients, n_missed, "
                             "source_record_keys, rule_ids FROM marts.held_back_endpoints").fetchall()
    assert rows == [("src", "C1", "death", 1, 1, 1, [_key("p1", "FU[1]")], ["XT-DATE-NOT-AFTER-EXPORT"])]


def test_every_reference_between_core_tables_is_judged_by_a_rule():
    references = core_references()
    assert ("response_assessment", "treatment_id", "treatment") in references
    assert ("adverse_event", "treatment_id", "treatment") in references
    patients = {table for table, column, target in references if column == "patient_id"}
    assert patients >= {"diagnosis", "follow_up", "treatment", "study_enrolment", "consent", "molecular_alteration",
                        "tumour_board_review", "response_assessment", "adverse_event"}
    scopes = {r.meta.scope for r in load_catalogue(check_types=False) if r.meta.table == "core_reference"}
    assert scopes == {"field = 'patient_id'", "field <> 'patient_id'"}  # together: every reference


def test_a_rule_judged_after_the_quarantine_can_only_warn(tmp_path):
    rule = tmp_path / "XT-ADMITTED-ERROR.sql"
    rule.write_text("-- rule_id: XT-ADMITTED-ERROR\n-- category: conformance\n-- subcategory: verification\n"
                    "-- level: cross-table\n-- severity: error\n-- threshold: 0\n-- phase: admitted\n"
                    "-- table: core_reference\n-- description: An admitted-phase rule that would hold records back.\n"
                    "SELECT source_id, source_record_key FROM core_reference\n")
    with pytest.raises(CatalogueError, match=r"phase: admitted.*only be a warning"):
        sql_rule(rule)
