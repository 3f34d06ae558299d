"""A last contact known only to its month or year is placed in the middle of the days it can be on, within what else
is known of the patient. Each figure is worked out by hand. Until this was fixed a last contact "in 2025" was placed
on 2 July though a treatment started on 3 November, and a last contact carried over from an earlier export was
bounded by that export's day, not the day of the export it is in now, as a fresh load of the same exports bounds
it."""

from __future__ import annotations

from datetime import date

from test_origin_imputation import Warehouse

from etl.load.marts import build_marts

OLD, NEW = "a" * 64, "b" * 64  # two exports of one series: the later replaced the earlier


def _contact(warehouse: Warehouse, patient_id: str, first_day: str, precision: str = "day", *,
             file: str = "0" * 64) -> None:
    warehouse.insert("follow_up", follow_up_id=f"f{warehouse.n}", patient_id=patient_id, contact_date=first_day,
                     contact_date_precision=precision, vital_status="alive", source_file_sha256=file)


def _exports(warehouse: Warehouse, old: str, new: str) -> None:
    """The export of `old` (the file the rows name), replaced by one of `new` in the same series."""
    for sha, status, day in ((OLD, "superseded", old), (NEW, "loaded", new)):
        warehouse.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, series, status, "
                              "exported_on) VALUES ('src', 'export.csv', ?, 'export', ?, ?)", [sha, status, day])


def _last_contact(warehouse: Warehouse, patient_id: str) -> date:
    build_marts(warehouse.con)
    [(day,)] = warehouse.con.execute("SELECT last_contact_date FROM marts.patient_summary WHERE patient_id = ?",
                                     [patient_id]).fetchall()
    return day


def test_a_last_contact_known_to_the_year_is_not_placed_before_a_treatment_started_that_year():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2025-01-01")
    _contact(warehouse, "P1", "2025-01-01", "year")
    warehouse.insert("treatment", treatment_id="t1", patient_id="P1", start_date="2025-11-03",
                     start_date_precision="day")  # 3 November + 58 // 2 days, not 2 July
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
