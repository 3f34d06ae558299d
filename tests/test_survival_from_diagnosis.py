"""Overall and event-free survival from the initial diagnosis (marts.survival, origin diagnosis), worked out by
hand on small cases: a diagnosis known to the day, the month or the year; a death in the month of the diagnosis;
no contact; and who is left out, and why (marts.left_out). The pandas restatement (endpoints_expected) places
the same days."""

from __future__ import annotations

from datetime import date
from typing import Any

import endpoints_expected as expected
import pandas as pd
import pytest
from test_origin_imputation import Warehouse

from etl.load.marts import build_marts
from etl.quality.validate import write_source_params

REGISTRY = "registry"  # population-based, as TREP


def _warehouse() -> Warehouse:
    warehouse = Warehouse()
    write_source_params(warehouse.con, {REGISTRY: {"population_based": True}, "trial": {"max_age_years": 18}})
    return warehouse


def _initial(warehouse: Warehouse, patient_id: str, first_day: str | None, precision: str = "day", *,
             behaviour: str = "3", basis: str | None = "7", source_id: str = REGISTRY) -> None:
    warehouse.insert("diagnosis", source_id=source_id, diagnosis_id=f"d{warehouse.n}", patient_id=patient_id,
                     event_type="initial", diagnosis_date=first_day, diagnosis_date_precision=precision,
                     icdo3_morphology="8920", icdo3_behaviour=behaviour, basis_of_diagnosis=basis,
                     iccc3_group="IX", iccc3_subgroup="IX(b)")


def _diagnosis_rows(warehouse: Warehouse) -> dict[str, dict[str, Any]]:
    build_marts(warehouse.con)
    rows = warehouse.con.execute("SELECT * FROM marts.survival WHERE origin = 'diagnosis'").df()
    return {row["patient_id"]: row for row in rows.to_dict("records")}


def _left_out(warehouse: Warehouse, mart: str) -> dict[str, int]:
    return {reason: n for reason, n in warehouse.con.execute(
        "SELECT reason, n_rows FROM marts.left_out WHERE mart = ?", [mart]).fetchall()}


def _times(row: dict[str, Any]) -> tuple[date, str, Any, Any, Any]:
    days = None if pd.isna(row["os_days"]) else int(row["os_days"])
    return row["origin_date"].date(), row["origin_date_precision"], bool(row["os_event"]), days, row["efs_event_type"]


@pytest.fixture(scope="module")
def warehouse() -> Warehouse:
    warehouse = _warehouse()
    # Known to the day; died two years later (2020 is a leap year: 366 + 365 days).
    warehouse.patient("DAY", died="2021-05-03")
    _initial(warehouse, "DAY", "2019-05-03")
    # Known to the month (May 2019): 1 May + 30 // 2 days; alive at the last contact, 31 December 2022.
    warehouse.patient("MONTH")
    _initial(warehouse, "MONTH", "2019-05-01", "month")
    # Known to the year (2019), a treatment started on 1 March 2019: 1 January + 59 // 2 days.
    warehouse.patient("YEAR")
    _initial(warehouse, "YEAR", "2019-01-01", "year")
    warehouse.insert("treatment", treatment_id="t1", patient_id="YEAR", drug_name="x", start_date="2019-03-01")
    # Known to the month (March 2021), died on 10 March: between 1 and 10 March, 1 March + 9 // 2 days.
    warehouse.patient("SAME_MONTH", died="2021-03-10")
    _initial(warehouse, "SAME_MONTH", "2021-03-01", "month")
    # Never contacted: a row, its time unknown (left out of the estimates, counted in marts.left_out).
    warehouse.patient("NO_CONTACT", last_contact=None)
    _initial(warehouse, "NO_CONTACT", "2020-02-02")
    # Left out: died before the diagnosis; not malignant (IMT 8825/1); known only to a trial, which enrolled
    # them after the diagnosis; a death certificate only; no date.
    warehouse.patient("DIED_BEFORE", died="2020-12-31")
    _initial(warehouse, "DIED_BEFORE", "2021-01-01")
    warehouse.patient("NOT_MALIGNANT")
    _initial(warehouse, "NOT_MALIGNANT", "2019-05-03", behaviour="1")
    warehouse.patient("TRIAL_ONLY")
    _initial(warehouse, "TRIAL_ONLY", "2019-05-03", source_id="trial")
    warehouse.patient("DCO", died="2020-04-04")
    _initial(warehouse, "DCO", "2020-04-04", basis="0")
    warehouse.patient("UNDATED")
    _initial(warehouse, "UNDATED", None)
    return warehouse


@pytest.mark.parametrize(("patient_id", "times"), [
    ("DAY", (date(2019, 5, 3), "day", True, 731, "death")),
    ("MONTH", (date(2019, 5, 16), "month", False, 1325, None)),  # 16 May 2019 to 31 December 2022
    ("YEAR", (date(2019, 1, 30), "year", False, 1431, None)),  # 30 January 2019 to 31 December 2022
    ("SAME_MONTH", (date(2021, 3, 5), "month", True, 5, "death")),
    ("NO_CONTACT", (date(2020, 2, 2), "day", False, None, None)),
])
def test_os_from_the_diagnosis_worked_out_by_hand(warehouse, patient_id, times):
    assert _times(_diagnosis_rows(warehouse)[patient_id]) == times


def test_the_diagnosis_origin_leaves_out_whom_it_cannot_follow_from_the_diagnosis_and_says_why(warehouse):
    assert set(_diagnosis_rows(warehouse)) == {"DAY", "MONTH", "YEAR", "SAME_MONTH", "NO_CONTACT"}
    left_out = {reason: n for reason, n in _left_out(warehouse, "survival").items() if "origin diagnosis" in reason}
    assert {reason.split(":")[0].split(" (")[0]: n for reason, n in left_out.items()} == {
        "a malignant initial diagnosis no population-based registry registered": 1,
        "no initial diagnosis known to be malignant": 1,
        "malignant initial diagnosis known from a death certificate only": 1,
        "malignant initial diagnosis without a date": 1,
        "died before the initial diagnosis": 1}
    unknown = "unknown OS time in marts.survival: no date ends the follow-up (no contact dated, nor a death)"
    assert _left_out(warehouse, "survival_km")[unknown] == 1  # NO_CONTACT


def test_the_estimates_from_the_diagnosis_are_by_iccc3_group_and_never_by_advice(warehouse):
    steps = warehouse.con.execute("SELECT grouping, group_value, time_days, n_at_risk, n_events, survival "
                                  "FROM marts.survival_km WHERE origin = 'diagnosis' AND endpoint = 'OS' "
                                  "ORDER BY grouping, time_days").fetchall()
    # Four known times: deaths at 5 and 731 days, censored at 1325 and 1431; the group IX holds them all.
    all_steps = [s[2:5] for s in steps if s[0] == "all"]
    assert all_steps == [(0.0, 4, 0), (5.0, 4, 1), (731.0, 3, 1), (1325.0, 2, 0), (1431.0, 1, 0)]
    assert [s[5] for s in steps if s[0] == "all"] == pytest.approx([1, 3 / 4, 3 / 4 * 2 / 3, 1 / 2, 1 / 2], abs=1e-12)
    assert {s[:2] for s in steps} == {("all", "all"), ("iccc3_group", "IX")}
    one_year = warehouse.con.execute("SELECT n_patients, n_at_risk, survival FROM marts.survival_landmark WHERE "
                                     "origin = 'diagnosis' AND endpoint = 'OS' AND grouping = 'all' AND years = 1"
                                     ).fetchall()
    assert one_year == [(4, 3, pytest.approx(0.75, abs=1e-12))]


def test_the_pandas_restatement_places_and_leaves_out_as_the_sql_does(warehouse):
    rows = _diagnosis_rows(warehouse)
    con = warehouse.con
    diagnoses = con.execute("SELECT patient_id AS person, source_id, event_type, diagnosis_date, "
                            "diagnosis_date_precision, icdo3_behaviour, basis_of_diagnosis FROM core.diagnosis").df()
    patient = con.execute("SELECT * FROM core.patient").df().set_index("patient_id")
    death_dates = patient.death_date.where(patient.vital_status == "dead")
    end = death_dates.fillna(patient.last_contact_date)
    ends = {p: (expected.birth_first_day(patient.birth_year[p], patient.birth_month[p]),
                end[p].date() if pd.notna(end[p]) else None) for p in patient.index}
    known_on = {"YEAR": [date(2019, 3, 1)]}  # its treatment; the other diagnoses known to the day are their own
    known_on.update({p: [d.date()] for p, d, precision in zip(diagnoses.person, diagnoses.diagnosis_date,
                                                              diagnoses.diagnosis_date_precision)
                     if precision == "day" and pd.notna(d)})
    registered = set(diagnoses.person[(diagnoses.source_id == REGISTRY) & (diagnoses.event_type == "initial")])
    origins = expected.diagnosis_origin(diagnoses, registered, death_dates, ends, known_on)
    assert {p: (d.date(), precision) for p, d, precision in zip(origins.person, origins.origin_date,
                                                                 origins.origin_date_precision)} == {
        p: (row["origin_date"].date(), row["origin_date_precision"]) for p, row in rows.items()}
