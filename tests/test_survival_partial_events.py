"""A relapse or progression known only to its month or year, and a last contact so known, placed as an origin and a
death are: in the middle of the days they can be on, within what else is known of the patient. Each figure is
worked out by hand. Until this was fixed such an event ended event-free survival on its period's first day (up to a
year early), a last contact "in 2025" was placed on 2 July though a treatment started on 3 November, and a last
contact carried over from an earlier export was bounded by that export's day, not the day of the export it is in
now, as a fresh load of the same exports bounds it."""

from __future__ import annotations

from datetime import date
from typing import Any

import endpoints_expected as expected
from test_origin_imputation import Warehouse

from etl.load.marts import build_marts

OLD, NEW = "a" * 64, "b" * 64  # two exports of one series: the later replaced the earlier


def _enrolment(warehouse: Warehouse, patient_id: str, first_day: str, precision: str = "day") -> None:
    warehouse.insert("study_enrolment", enrolment_id=f"e{warehouse.n}", patient_id=patient_id, study_id="ILTB",
                     enrolment_date=first_day, enrolment_date_precision=precision)


def _contact(warehouse: Warehouse, patient_id: str, first_day: str, precision: str = "day", *,
             status: str | None = None, file: str = "0" * 64) -> None:
    warehouse.insert("follow_up", follow_up_id=f"f{warehouse.n}", patient_id=patient_id, contact_date=first_day,
                     contact_date_precision=precision, vital_status="alive", disease_status=status,
                     source_file_sha256=file)


def _exports(warehouse: Warehouse, old: str, new: str) -> None:
    """The export of `old` (the file the rows name), replaced by one of `new` in the same series."""
    for sha, status, day in ((OLD, "superseded", old), (NEW, "loaded", new)):
        warehouse.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, series, status, "
                              "exported_on) VALUES ('src', 'export.csv', ?, 'export', ?, ?)", [sha, status, day])


def _efs(warehouse: Warehouse, patient_id: str, origin: str = "enrolment") -> tuple[Any, ...]:
    row = warehouse.survival(patient_id, origin)
    return row["origin_date"].date(), row["efs_event_type"], row["efs_end_date"].date(), int(row["efs_days"])


def _last_contact(warehouse: Warehouse, patient_id: str) -> date:
    build_marts(warehouse.con)
    [(day,)] = warehouse.con.execute("SELECT last_contact_date FROM marts.patient_summary WHERE patient_id = ?",
                                     [patient_id]).fetchall()
    return day


# -- EFS events known only to their month or year --------------------------------------------------------------

def test_a_relapse_known_to_the_month_ends_event_free_survival_mid_month():
    warehouse = Warehouse()
    warehouse.patient("P1")
    _enrolment(warehouse, "P1", "2021-01-10")
    warehouse.relapse("P1", "2021-06-01", "month")  # "June 2021": 1 June + 29 // 2 days
    assert _efs(warehouse, "P1") == (date(2021, 1, 10), "relapse", date(2021, 6, 15), 156)


def test_a_progression_contact_known_to_the_year_is_placed_mid_year():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2023-01-01")
    _enrolment(warehouse, "P1", "2021-01-10")
    _contact(warehouse, "P1", "2022-01-01", "year", status="progression")  # 1 January + 364 // 2 days
    assert _efs(warehouse, "P1") == (date(2021, 1, 10), "progression", date(2022, 7, 2), 538)


def test_an_event_known_to_the_year_is_not_placed_after_a_later_event_known_to_the_day():
    # The first event happened between the first day of "2022" and 15 March, when the progression was seen.
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2023-01-01")
    _enrolment(warehouse, "P1", "2021-01-10")
    warehouse.relapse("P1", "2022-01-01", "year")
    _contact(warehouse, "P1", "2022-03-15", status="progression")  # 1 January + 73 // 2 days
    assert _efs(warehouse, "P1") == (date(2021, 1, 10), "relapse", date(2022, 2, 6), 392)


def test_an_event_known_to_the_year_is_not_placed_after_the_death():
    warehouse = Warehouse()
    warehouse.patient("P1", died="2022-05-01")
    _enrolment(warehouse, "P1", "2021-01-10")
    warehouse.relapse("P1", "2022-01-01", "year")  # 1 January to 1 May: 1 January + 120 // 2 days
    assert _efs(warehouse, "P1") == (date(2021, 1, 10), "relapse", date(2022, 3, 2), 416)


def test_an_origin_and_an_event_known_only_to_their_periods_keep_the_event_after_the_origin():
    # Enrolled "in 2021", relapsed "in June 2021": the enrolment before 1 June (1 January + 151 // 2 days), the
    # relapse mid-June; a time of 90 days, not 0 nor a lost event.
    warehouse = Warehouse()
    warehouse.patient("P1")
    _enrolment(warehouse, "P1", "2021-01-01", "year")
    warehouse.relapse("P1", "2021-06-01", "month")
    assert _efs(warehouse, "P1") == (date(2021, 3, 17), "relapse", date(2021, 6, 15), 90)


def test_an_event_whose_period_holds_the_origin_is_still_no_event():
    # "2021" may be the relapse a study enrolled the patient for on 10 March: nothing says it came after.
    warehouse = Warehouse()
    warehouse.patient("P1")
    _enrolment(warehouse, "P1", "2021-03-10")
    warehouse.relapse("P1", "2021-01-01", "year")
    assert _efs(warehouse, "P1") == (date(2021, 3, 10), None, date(2022, 12, 31), 661)


# -- the last contact ----------------------------------------------------------------------------------------

def test_a_last_contact_known_to_the_year_is_not_placed_before_a_treatment_started_that_year():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2025-01-01")
    _contact(warehouse, "P1", "2025-01-01", "year")
    warehouse.insert("treatment", treatment_id="t1", patient_id="P1", start_date="2025-11-03",
                     start_date_precision="day")  # 3 November + 58 // 2 days, not 2 July
    assert _last_contact(warehouse, "P1") == date(2025, 12, 2)
    # an assessment after the year (dated after the last follow-up row) leaves the treatment the latest in it
    warehouse.insert("response_assessment", response_id="a1", patient_id="P1", assessment_date="2026-02-01")
    assert _last_contact(warehouse, "P1") == date(2025, 12, 2)


def test_a_last_contact_known_to_the_month_is_not_placed_before_a_response_or_a_relapse_in_it():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2025-03-01")
    _contact(warehouse, "P1", "2025-03-01", "month")
    warehouse.insert("response_assessment", response_id="a1", patient_id="P1", assessment_date="2025-03-21")
    assert _last_contact(warehouse, "P1") == date(2025, 3, 26)  # 21 March + 10 // 2 days
    warehouse.relapse("P1", "2025-03-25", "day")
    assert _last_contact(warehouse, "P1") == date(2025, 3, 28)  # 25 March + 6 // 2 days


def test_a_last_contact_carried_over_from_an_earlier_export_is_bounded_by_the_export_it_is_in_now():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2026-01-01")
    _contact(warehouse, "P1", "2026-01-01", "year", file=OLD)
    _exports(warehouse, "2026-11-02", "2026-11-04")  # 1 January + 307 // 2 days, as a fresh load of the later one
    assert _last_contact(warehouse, "P1") == date(2026, 6, 3)


def test_the_pandas_restatement_places_the_first_event_alike():
    # endpoints_expected.first_efs_event, as test_marts holds marts.survival to it over the synthetic warehouse
    events = [(date(2022, 1, 1), "year", "relapse", 0, date(2022, 12, 31)),
              (date(2022, 3, 15), "day", "progression", 1, date(2022, 3, 15))]
    assert expected.first_efs_event(events) == ("relapse", date(2022, 2, 6))
    assert expected.first_efs_event([]) is None
