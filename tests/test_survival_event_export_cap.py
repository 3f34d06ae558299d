"""A relapse or progression known only to its month or year happened on or before the day of the export that gives
it: marts.survival places it in the middle of the days it can be on, not after that export (the one its record is
in now, as a last contact and a death are bounded). Each figure is worked out by hand. Until this was fixed a
relapse "2026" in an export of 1 June 2026 was placed on 2 July, a month after the export said it had happened,
and event-free survival was that much too long. The bound is read from meta.source_file (export_now()), so
marts.survival is built again on every publish: a new export of the same rows moves it."""

from __future__ import annotations

from datetime import date
from typing import Any

import endpoints_expected as expected
import pandas as pd
from test_origin_imputation import Warehouse

from etl.load.marts import build_marts

# The export file rows name by default (loaded), an earlier export of its series, another source's export.
LOADED, EARLIER, OTHER = "0" * 64, "a" * 64, "c" * 64


def _export(warehouse: Warehouse, sha: str, day: str, *, status: str = "loaded", source_id: str = "src") -> None:
    warehouse.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, series, status, "
                          "exported_on) VALUES (?, 'export.csv', ?, 'export', ?, ?)", [source_id, sha, status, day])


def _enrolled(warehouse: Warehouse, patient_id: str = "P1") -> None:
    # Followed to 20 December: the end of follow-up, which bounds an event too, lies past the exports these tests
    # date, so the export is the bound they see.
    warehouse.patient(patient_id, last_contact="2026-12-20")
    warehouse.insert("study_enrolment", enrolment_id=f"e{warehouse.n}", patient_id=patient_id, study_id="ILTB",
                     enrolment_date="2025-01-10", enrolment_date_precision="day")


def _efs(warehouse: Warehouse, patient_id: str = "P1") -> tuple[Any, ...]:
    row = warehouse.survival(patient_id, "enrolment")
    return row["efs_event_type"], row["efs_end_date"].date(), int(row["efs_days"])


def test_a_relapse_known_to_the_year_of_its_export_is_not_placed_after_the_export():
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.relapse("P1", "2026-01-01", "year")
    _export(warehouse, LOADED, "2026-06-01")  # 1 January to 1 June: 1 January + 151 // 2 days, not 2 July
    assert _efs(warehouse) == ("relapse", date(2026, 3, 17), 431)


def test_a_progression_known_to_the_month_of_its_export_is_not_placed_after_the_export():
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.insert("follow_up", follow_up_id="f1", patient_id="P1", contact_date="2026-06-01",
                     contact_date_precision="month", vital_status="alive", disease_status="progression")
    _export(warehouse, LOADED, "2026-06-10")  # 1 to 10 June: 1 June + 9 // 2 days, not the 15th
    assert _efs(warehouse) == ("progression", date(2026, 6, 5), 511)


def test_an_event_carried_over_from_an_earlier_export_is_bounded_by_the_export_it_is_in_now():
    # The row names the export of 1 March that first gave it; a fresh load of the same exports names the one of 1 June.
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.insert("diagnosis", diagnosis_id="d1", patient_id="P1", event_type="relapse",
                     diagnosis_date="2026-01-01", diagnosis_date_precision="year", source_file_sha256=EARLIER)
    _export(warehouse, EARLIER, "2026-03-01", status="superseded")
    _export(warehouse, LOADED, "2026-06-01")
    assert _efs(warehouse) == ("relapse", date(2026, 3, 17), 431)


def test_an_event_is_bounded_by_its_own_export_not_by_a_later_one_of_another_source():
    # A registry's relapse "2026" exported on 1 June, a hospital's progression on 10 December exported the next day:
    # the relapse happened by 1 June, whatever else the patient's sources say later.
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.relapse("P1", "2026-01-01", "year")
    warehouse.insert("follow_up", source_id="hospital", follow_up_id="f1", patient_id="P1", contact_date="2026-12-10",
                     contact_date_precision="day", vital_status="alive", disease_status="progression",
                     source_file_sha256=OTHER)
    _export(warehouse, LOADED, "2026-06-01")
    _export(warehouse, OTHER, "2026-12-11", source_id="hospital")
    assert _efs(warehouse) == ("relapse", date(2026, 3, 17), 431)


def test_an_export_dated_before_the_event_or_not_dated_bounds_nothing_it_cannot():
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.relapse("P1", "2026-01-01", "year")
    _export(warehouse, LOADED, "2025-12-01")  # a date error: the event stays on its period's first day
    assert _efs(warehouse) == ("relapse", date(2026, 1, 1), 356)
    # Not dated: bounded by the end of follow-up alone, 20 December (1 January + 353 // 2 days)
    warehouse.con.execute("UPDATE meta.source_file SET exported_on = NULL")
    assert _efs(warehouse) == ("relapse", date(2026, 6, 26), 532)


def test_a_new_export_of_the_same_rows_builds_survival_again():
    # build_marts is told no core table changed: survival reads the export days (meta.source_file) and is built
    # again on every publish, holding what building every mart holds.
    warehouse = Warehouse()
    _enrolled(warehouse)
    warehouse.relapse("P1", "2026-01-01", "year")
    _export(warehouse, LOADED, "2026-06-01")
    build_marts(warehouse.con)
    warehouse.con.execute("UPDATE meta.source_file SET status = 'superseded'")
    _export(warehouse, "b" * 64, "2026-08-01")  # a later export of the series repeats the rows unchanged
    build_marts(warehouse.con, changed=set())
    [(day,)] = warehouse.con.execute("SELECT efs_end_date FROM marts.survival WHERE origin = 'enrolment'").fetchall()
    assert day == date(2026, 4, 17)  # 1 January + 212 // 2 days


def test_the_pandas_restatement_bounds_an_event_by_its_export_alike():
    # endpoints_expected, as test_marts holds marts.survival to it over the synthetic warehouse
    files = pd.DataFrame({"source_id": ["src", "src", "src"], "source_file_sha256": [EARLIER, LOADED, OTHER],
                          "series": ["export", "export", None], "status": ["superseded", "loaded", "superseded"],
                          "exported_on": pd.to_datetime(["2026-03-01", "2026-06-01", "2026-02-01"])})
    exports = expected.export_now(files)
    assert exports == {("src", EARLIER): date(2026, 6, 1), ("src", LOADED): date(2026, 6, 1), ("src", OTHER): None}
    assert expected.event_last_day(date(2026, 1, 1), "year", None, exports["src", EARLIER]) == date(2026, 6, 1)
    assert expected.event_last_day(date(2026, 1, 1), "year", date(2026, 4, 1), date(2026, 6, 1)) == date(2026, 4, 1)
    assert expected.event_last_day(date(2026, 1, 1), "year", None, date(2025, 12, 1)) == date(2026, 1, 1)
    assert expected.event_last_day(date(2026, 1, 1), "year", None, None) == date(2026, 12, 31)
