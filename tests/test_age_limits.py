"""Age limits as protocols mean them: "age 0-18" admits a patient up to the day before the 19th birthday.

Each study's limit is read from its real mapping (sources/<source>.yaml, `params:`); the rules run
on a tiny stage built from the real DDL, one record on the last eligible day and one on the next.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import duckdb
import pytest

from etl.config import SOURCES_DIR, WAREHOUSE_SQL_DIR
from etl.quality.catalogue import load_catalogue
from etl.quality.sql_checks import run_checks
from etl.quality.validate import write_source_params
from etl.transform import iccc3
from etl.transform.mapping import load_mapping

# (source, the rule judging its age limit, the table and the date the age is taken on, the limit in years)
STUDIES = [
    ("sacha_fr", "ENR-AGE-ELIGIBLE", "study_enrolment", "enrolment_date", 25),
    ("iltb", "ENR-AGE-ELIGIBLE", "study_enrolment", "enrolment_date", 18),
    ("esmart", "ENR-AGE-ELIGIBLE", "study_enrolment", "enrolment_date", 18),
    ("crizotinib_imt", "ENR-AGE-ELIGIBLE", "study_enrolment", "enrolment_date", 18),
    ("registry_it", "DIAG-AGE-REGISTRY", "diagnosis", "diagnosis_date", 18),
]
AGE_COLUMN = {"enrolment_date": "age_at_enrolment_days", "diagnosis_date": "age_at_diagnosis_days"}
LIMIT_PARAM = {"enrolment_date": "max_age_years", "diagnosis_date": "max_age_at_diagnosis_years"}


def _birthday(birth: date, years: int) -> date:
    """The birthday `years` after birth (29 February: 1 March in other years)."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return date(birth.year + years, 3, 1)


def _stage(rows: dict[str, list[dict[str, Any]]], sources: list[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory stage with the core tables' columns (from warehouse/core.sql) and the sources' real params."""
    con = duckdb.connect()
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    con.execute("CREATE SCHEMA stage")
    for table in dict.fromkeys(["study_enrolment", "diagnosis", *rows]):
        con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
        for row in rows.get(table, []):
            names = ", ".join(row)
            con.execute(f"INSERT INTO stage.{table} ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    write_source_params(con, {s: load_mapping(SOURCES_DIR / f"{s}.yaml").params for s in sources})
    return con


def _flagged(con: duckdb.DuckDBPyConnection, rule_id: str) -> dict[str, str]:
    rule = next(r for r in load_catalogue(check_types=False) if r.rule_id == rule_id)
    [run] = run_checks(con, [rule])
    assert run.error is None, run.error
    return dict(zip(run.failures.source_record_key, run.failures.message, strict=True))


def _record(source_id: str, key: str, table: str, on: str, birth: date, day: date) -> dict[str, Any]:
    row = {"source_id": source_id, "source_record_key": key, "patient_id": "p-" + key, on: day,
           AGE_COLUMN[on]: (day - birth).days, "source_file_sha256": "0" * 64, "run_id": "r"}
    if table == "study_enrolment":
        row |= {"enrolment_id": key, "study_id": source_id.upper()}
    else:
        row |= {"diagnosis_id": key, "event_type": "initial"}
    return row


@pytest.mark.parametrize(("source_id", "rule_id", "table", "on", "limit"), STUDIES, ids=[s[0] for s in STUDIES])
@pytest.mark.parametrize("birth", [date(2001, 6, 17), date(2004, 2, 29), date(2003, 12, 31)],
                         ids=["17-june", "29-february", "31-december"])
def test_the_last_eligible_day_passes_and_the_next_day_is_flagged(source_id, rule_id, table, on, limit, birth):
    params = load_mapping(SOURCES_DIR / f"{source_id}.yaml").params
    assert params[LIMIT_PARAM[on]] == limit  # the protocol's "0-18" (sacha_fr: "<= 25")
    next_birthday = _birthday(birth, limit + 1)
    last_day = next_birthday - timedelta(days=1)
    con = _stage({table: [_record(source_id, "last-eligible-day", table, on, birth, last_day),
                          _record(source_id, "next-day", table, on, birth, next_birthday),
                          _record(source_id, "limit-birthday", table, on, birth, _birthday(birth, limit)),
                          _record(source_id, "newborn", table, on, birth, birth)]}, [source_id])
    flagged = _flagged(con, rule_id)
    assert set(flagged) == {"next-day"}, (limit, last_day, flagged)
    assert f"{limit + 1} completed years" in flagged["next-day"]
    assert f"to {limit} completed years" in flagged["next-day"]


def test_the_limit_is_a_birthday_on_the_calendar_not_a_multiple_of_365_25_days():
    """Born 1 March 2001: the 19th birthday is 6940 days later (5 leap days), 19 x 365.25 = 6939.75."""
    birth = date(2001, 3, 1)
    con = _stage({"study_enrolment": [
        _record("iltb", "6939-days", "study_enrolment", "enrolment_date", birth, birth + timedelta(days=6939)),
        _record("iltb", "6940-days", "study_enrolment", "enrolment_date", birth, birth + timedelta(days=6940))]},
        ["iltb"])
    assert _birthday(birth, 19) == birth + timedelta(days=6940)
    assert set(_flagged(con, "ENR-AGE-ELIGIBLE")) == {"6940-days"}


def test_a_source_without_an_age_limit_is_not_judged_and_relapses_are_not_judged_by_the_registry_rule():
    birth = date(2000, 1, 1)
    late = date(2030, 1, 1)
    relapse = _record("registry_it", "relapse-at-30", "diagnosis", "diagnosis_date", birth, late) | {
        "event_type": "relapse"}
    con = _stage({"diagnosis": [relapse], "study_enrolment": [
        _record("registry_it", "enrolled-at-30", "study_enrolment", "enrolment_date", birth, late)]},
        ["registry_it"])
    assert _flagged(con, "DIAG-AGE-REGISTRY") == {}
    assert _flagged(con, "ENR-AGE-ELIGIBLE") == {}  # the registry limits the age at diagnosis only


@pytest.mark.parametrize(("rule_id", "morphology", "topography", "years", "flagged_from_birthday"), [
    ("XT-EMBRYONAL-AGE", "9500", "C74.9", 15, True),        # flagged from the 15th birthday on
    ("XT-RETINOBLASTOMA-AGE", "9510", "C69.2", 6, True),    # "after the age of 5": from the 6th birthday
    ("XT-ADULT-CARCINOMA-AGE", "8140", "C18.7", 20, False),  # flagged up to the day before the 20th birthday
])
def test_the_morphology_age_warnings_turn_on_a_birthday(rule_id, morphology, topography, years, flagged_from_birthday):
    birth = date(2005, 8, 9)
    birthday = _birthday(birth, years)
    classified = iccc3.classify(morphology, "3", topography)  # as harmonise classifies it
    rows = [_record("any", key, "diagnosis", "diagnosis_date", birth, day) | {
        "icdo3_morphology": morphology, "icdo3_behaviour": "3", "icdo3_topography": topography,
        "iccc3_code": classified.code, "iccc3_extended": classified.extended}
        for key, day in (("day-before", birthday - timedelta(days=1)), ("birthday", birthday))]
    con = _stage({"diagnosis": rows}, [])
    assert set(_flagged(con, rule_id)) == ({"birthday"} if flagged_from_birthday else {"day-before"})
