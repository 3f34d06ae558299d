"""A small warehouse with meta.run and the dq tables, built from the real DDL, for the report and queries tests.

Four runs: three validated nightly runs and a fourth in which nothing changed (no rule reran).
Two sources with five centres (one bucket of registry records has no centre), ten rules over
every Kahn cell. Each issue below lists the validated runs it appears in, so from run to run
some issues are resolved, some new and some persist. Run 3 also has:
- XT-TREAT-AFTER-DIAG in error (its issue of runs 1-2 is then "not rechecked", not resolved);
- CONSENT-RECORDED not applicable (no rows in sacha_fr, switched off in registry_it);
- values a spreadsheet would run as formulas, at centre IT-RM02;
- a failed source (iltb) that has no results at all;
and FR-NAN03 is judged but has no issue. check_result rows are derived the way the engine
derives them (failed when failing > threshold x denominator), so the tests can recompute them.
Two held-back records carry endpoints (HELD_BACK_ENDPOINTS: a relapse, a death), staged beside a
clean death, and marts.held_back_endpoints is built from them with the real mart SQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pandas as pd

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality import issue_spans


class Rule(NamedTuple):
    rule_id: str
    category: str
    subcategory: str
    level: str
    severity: str
    threshold: float
    table_name: str
    field: str | None
    description: str
    expected: str


class Run(NamedTuple):
    run_id: str
    started_at: datetime
    validated: bool
    changed: list[str]
    unchanged: list[str]
    failed: list[str]


class Issue(NamedTuple):
    rule_id: str
    source_id: str
    centre_id: str | None
    patient: int
    record_set: str
    line: int
    field: str | None
    value: str | None
    message: str | None
    runs: frozenset[int]  # the validated runs (1, 2, 3) it is found in


RULES = [
    Rule("HAR-DATE-EXISTS", "conformance", "verification", "field", "error", 0.0, "diagnosis", "diagnosis_date",
         "A date must exist in the calendar.", "a real date, dd/mm/yyyy"),
    Rule("HAR-SEX-CODE", "conformance", "verification", "field", "error", 0.0, "patient", "sex",
         "Sex must be one of the study's codes.", "F, M or U"),
    Rule("DIAG-ICDO3-TOPOGRAPHY", "conformance", "validation", "field", "warning", 0.0, "diagnosis",
         "icdo3_topography", "The tumour site must be an ICD-O-3 topography code.", "C00.0 to C80.9"),
    Rule("DIAG-DATE-PRESENT", "completeness", "verification", "field", "warning", 0.05, "diagnosis",
         "diagnosis_date", "Every diagnosis has its date.", "the date of diagnosis"),
    Rule("TREAT-DRUG-PRESENT", "completeness", "verification", "field", "warning", 0.0, "treatment", "drug_name",
         "Every treatment names its drug.", "the drug's INN"),
    Rule("CONSENT-RECORDED", "completeness", "validation", "record", "warning", 0.0, "consent", None,
         "Every enrolled patient has a consent record.", "a consent form"),
    Rule("AGE-AT-DIAG-RANGE", "plausibility", "verification", "field", "warning", 0.0, "diagnosis",
         "age_at_diagnosis_days", "Age at diagnosis is between 0 and 25 years.", "0 to 25 years"),
    Rule("DEATH-AFTER-BIRTH", "plausibility", "verification", "record", "warning", 0.0, "patient", "death_date",
         "A patient dies after being born.", "a death date after the birth month"),
    Rule("LATERALITY-PAIRED", "plausibility", "validation", "field", "warning", 0.0, "diagnosis", "laterality",
         "Laterality is given for paired organs only.", "left, right or bilateral, for a paired organ"),
    Rule("XT-TREAT-AFTER-DIAG", "plausibility", "validation", "cross-table", "warning", 0.02, "treatment",
         "start_date", "A treatment starts on or after the diagnosis.", "a start date on or after the diagnosis"),
]
SEVERITY = {r.rule_id: r.severity for r in RULES}

# Records of each source and centre every rule judges (None: registry records without a centre).
CENTRES: dict[str, dict[str | None, int]] = {
    "sacha_fr": {"FR-PAR01": 40, "FR-LYO02": 30, "FR-NAN03": 25},
    "registry_it": {"IT-MI01": 50, "IT-RM02": 20, None: 5},
}
THRESHOLD_OVERRIDES = {("DIAG-DATE-PRESENT", "registry_it"): 0.2}
SWITCHED_OFF = {("CONSENT-RECORDED", "registry_it")}
NO_ROWS = {("CONSENT-RECORDED", "sacha_fr")}
RULE_ERRORS = {3: {"XT-TREAT-AFTER-DIAG": "Binder Error: Referenced column \"start_dt\" not found"}}

RUNS = [
    Run("20261101T020000Z-a1b2", datetime(2026, 11, 1, 2, 0, tzinfo=UTC), True, ["registry_it", "sacha_fr"], [], []),
    Run("20261102T020000Z-c3d4", datetime(2026, 11, 2, 2, 0, tzinfo=UTC), True, ["registry_it"], ["sacha_fr"], []),
    Run("20261103T020000Z-e5f6", datetime(2026, 11, 3, 2, 0, tzinfo=UTC), True, ["registry_it", "sacha_fr"], [],
        ["iltb"]),
    Run("20261104T020000Z-0a0b", datetime(2026, 11, 4, 2, 0, tzinfo=UTC), False, [],
        ["registry_it", "sacha_fr"], []),
]
VALIDATED = [r.run_id for r in RUNS if r.validated]  # run number n is VALIDATED[n - 1]

FORMULA_VALUES = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tC71.9", "C71\x07"]
ALL, ONLY_1, ONLY_2, ONLY_3, FROM_2 = (frozenset({1, 2, 3}), frozenset({1}), frozenset({2}), frozenset({3}),
                                       frozenset({2, 3}))
ISSUES = [
    Issue("HAR-DATE-EXISTS", "sacha_fr", "FR-PAR01", 1, "DIAG", 12, "diagnosis_date", "31/02/2019",
          "31/02/2019 is not a date", ALL),
    Issue("HAR-DATE-EXISTS", "sacha_fr", "FR-LYO02", 2, "DIAG", 40, "diagnosis_date", "00/13/2020",
          "00/13/2020 is not a date", ONLY_1),
    Issue("HAR-SEX-CODE", "registry_it", "IT-MI01", 3, "PATIENT", 5, "sex", "X", "X is not one of F, M, U", ONLY_2),
    Issue("DIAG-ICDO3-TOPOGRAPHY", "registry_it", "IT-MI01", 4, "DIAG", 8, "icdo3_topography", "C99.9", None, ALL),
    Issue("DIAG-DATE-PRESENT", "sacha_fr", "FR-PAR01", 5, "DIAG", 20, "diagnosis_date", None, None, ALL),
    Issue("DIAG-DATE-PRESENT", "sacha_fr", "FR-PAR01", 6, "DIAG", 21, "diagnosis_date", None, None, ALL),
    Issue("DIAG-DATE-PRESENT", "sacha_fr", "FR-PAR01", 7, "DIAG", 22, "diagnosis_date", None, None, ONLY_3),
    Issue("DIAG-DATE-PRESENT", "registry_it", "IT-RM02", 8, "DIAG", 3, "diagnosis_date", None, None, ALL),
    Issue("AGE-AT-DIAG-RANGE", "sacha_fr", "FR-LYO02", 9, "DIAG", 41, "age_at_diagnosis_days", "11323",
          "31 years at diagnosis", FROM_2),
    *[Issue("LATERALITY-PAIRED", "registry_it", "IT-MI01", patient, "DIAG", patient, "laterality", "X",
            "laterality X for site C71.9", ONLY_1) for patient in (10, 11, 12)],
    Issue("LATERALITY-PAIRED", "registry_it", None, 13, "DIAG", 2, "laterality", "L", "laterality for C16.0", ALL),
    Issue("XT-TREAT-AFTER-DIAG", "sacha_fr", "FR-PAR01", 14, "TREAT", 77, "start_date", "2018-01-01",
          "treatment starts 400 days before the diagnosis", frozenset({1, 2})),
    *[Issue("DIAG-ICDO3-TOPOGRAPHY", "registry_it", "IT-RM02", 15 + i, "DIAG", 30 + i, "icdo3_topography", value,
            "=not a topography code" if i == 0 else None, ONLY_3) for i, value in enumerate(FORMULA_VALUES)],
    Issue("HAR-SEX-CODE", "registry_it", "IT-RM02", 21, "PATIENT", 9, "sex", "3", "3 is not one of F, M, U", ONLY_3),
]
TABLES = {"DIAG": "diagnosis", "PATIENT": "patient", "TREAT": "treatment"}


# Endpoints carried by the last run's held-back records: (issue index in ISSUES, stage table, endpoint, values).
HELD_BACK_ENDPOINTS = [
    (0, "diagnosis", "relapse", {"diagnosis_id": "d-held", "event_type": "relapse"}),  # its date did not parse
    (len(ISSUES) - 1, "follow_up", "death", {"follow_up_id": "f-held", "vital_status": "dead",
                                              "death_date": "2026-10-01", "contact_date": "2026-10-01"}),
]


def pseudonym(patient: int) -> str:
    return hashlib.sha256(f"fixture-patient-{patient}".encode()).hexdigest()[:24]


def record_key(issue: Issue) -> str:
    return f"{pseudonym(issue.patient)}|{issue.record_set}[{issue.line}]"


def issues_of(run_number: int) -> list[Issue]:
    return [i for i in ISSUES if run_number in i.runs]


def issue_key(issue: Issue) -> tuple[str, str, str, str | None]:
    """What makes an issue the same issue in two runs."""
    return issue.rule_id, issue.source_id, record_key(issue), issue.field


def check_results(run_number: int) -> list[dict[str, Any]]:
    """dq.check_result rows of a validated run, derived as the engine derives them."""
    rows: list[dict[str, Any]] = []
    for rule in RULES:
        for source_id, centres in CENTRES.items():
            threshold = THRESHOLD_OVERRIDES.get((rule.rule_id, source_id), rule.threshold)
            base = {"rule_id": rule.rule_id, "source_id": source_id, "threshold": threshold}
            error = RULE_ERRORS.get(run_number, {}).get(rule.rule_id)
            if error or (rule.rule_id, source_id) in NO_ROWS:  # nothing judged: one row without centre
                rows.append({**base, "centre_id": None, "failing_rows": 0, "denominator": 0,
                             "status": "error" if error else "not_applicable",
                             "message": error or "no rows of this source to judge"})
                continue
            for centre_id, records in centres.items():
                failing = len({record_key(i) for i in issues_of(run_number) if i.rule_id == rule.rule_id
                               and i.source_id == source_id and i.centre_id == centre_id})
                off = (rule.rule_id, source_id) in SWITCHED_OFF
                rows.append({**base, "centre_id": centre_id, "failing_rows": failing, "denominator": records,
                             "status": "not_applicable" if off else "failed" if failing > threshold * records
                             else "passed",
                             "message": f"switched off in sources/{source_id}.yaml" if off else None})
    return rows


def build_warehouse(path: Path) -> Path:
    """Create the warehouse file at path from warehouse/meta.sql and dq.sql and fill it; return path."""
    con = duckdb.connect(str(path))
    try:
        for ddl in ("meta.sql", "dq.sql"):
            con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
        for run in RUNS:
            con.execute("INSERT INTO meta.run VALUES (?, 'airflow', ?, ?, ?, ?, ?, ?, ?, ?, 'rules-v1')", [
                run.run_id, run.started_at, run.started_at.replace(minute=12),
                "completed_with_failures" if run.failed else "completed", run.changed, run.unchanged, run.failed,
                "iltb: ILTB_TREAT.csv line 3: 9 fields, expected 12" if run.failed else None, run.validated])
        con.execute("INSERT INTO meta.source_notice VALUES (?, 'registry_it', ?)", [
            RUNS[-1].run_id, "registry_it: TREP_export_20260301.csv refused: it is a symbolic link <a href=x>"])
        con.executemany("INSERT INTO dq.check VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (*r[:6], r.table_name, r.field, r.description, r.expected, "gx", f"expectations/{r.table_name}.json",
             r.severity == "warning") for r in RULES])
        for number, run_id in enumerate(VALIDATED, start=1):
            con.executemany("INSERT INTO dq.check_result VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", [
                (run_id, r["rule_id"], r["source_id"], r["centre_id"], r["failing_rows"], r["denominator"],
                 round(100 * r["failing_rows"] / r["denominator"], 3) if r["denominator"] else None,
                 r["threshold"], r["status"], r["message"]) for r in check_results(number)])
            found = pd.DataFrame([
                (i.rule_id, SEVERITY[i.rule_id], i.source_id, i.centre_id, TABLES[i.record_set], record_key(i),
                 pseudonym(i.patient), i.record_set, i.line, i.field, i.value, i.message) for i in issues_of(number)],
                columns=list(issue_spans.ISSUE_COLUMNS))
            con.register("found", found)
            issue_spans.record(con, run_id, "found")  # as validation records them
            con.unregister("found")
        # The quarantine is rebuilt on every validated run: only the last one's records are in it.
        last = len(VALIDATED)
        held = [i for i in issues_of(last) if SEVERITY[i.rule_id] == "error"]
        con.executemany("INSERT INTO dq.quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (VALIDATED[-1], i.source_id, f"{i.source_id}_export.csv", "ab" * 32, record_key(i), i.record_set,
             i.line, i.centre_id, [TABLES[i.record_set]], [i.rule_id], [i.message]) for i in held])
        _stage_held_back_endpoints(con)
    finally:
        con.close()
    return path


def _stage_held_back_endpoints(con: duckdb.DuckDBPyConnection) -> None:
    """Stage the endpoint records (and a clean death, loaded) and build marts.held_back_endpoints."""
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    con.execute("CREATE SCHEMA stage")
    for table in ("follow_up", "diagnosis", "response_assessment"):
        con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    clean = (ISSUES[5], "follow_up", {"follow_up_id": "f-clean", "vital_status": "dead", "death_date": "2026-09-01"})
    for issue, table, values in [(ISSUES[i], table, values) for i, table, _, values in HELD_BACK_ENDPOINTS] + [clean]:
        row = {"source_id": issue.source_id, "source_file_sha256": "ab" * 32, "source_record_key": record_key(issue),
               "run_id": VALIDATED[-1], "patient_id": pseudonym(issue.patient), **values}
        con.execute(f"INSERT INTO stage.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))
    con.execute("CREATE SCHEMA marts")
    con.execute((WAREHOUSE_SQL_DIR / "marts" / "80_held_back_endpoints.sql").read_text())
