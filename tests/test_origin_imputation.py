"""A survival origin (and the first diagnosis that starts patient_summary's follow-up) known only to its
month or year is placed in the middle of the days it can be on, as registries impute an incidence date and
as core.patient places a partial death: not before the birth, not after the end of follow-up (and, for the
first diagnosis, not after a diagnosis or treatment known to the day). Each figure is worked out by hand.
Until this was fixed such an origin was the first day of its period: a time from "2021" was up to a year
too long. And marts.left_out says what the survival and incidence marts leave out, and why."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import endpoints_expected as expected
import pytest

from etl.config import WAREHOUSE_SQL_DIR
from etl.load.marts import build_marts
from etl.load.populations import read_child_population, write_child_population
from etl.quality.validate import write_source_params


class Warehouse:
    """An in-memory warehouse whose core holds exactly what a test inserts."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        for ddl in ("core.sql", "meta.sql"):
            self.con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
        self.n = 0

    def insert(self, table: str, source_id: str = "src", **values: Any) -> None:
        self.n += 1
        row = {"source_id": source_id, "source_file_sha256": "0" * 64, "run_id": "r1",
               "source_record_key": f"{table}-{self.n}", **values}
        self.con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         list(row.values()))

    def patient(self, patient_id: str, *, last_contact: str | None = "2022-12-31", died: str | None = None,
                born: tuple[int, int | None] = (2010, 6)) -> None:
        self.insert("patient", patient_id=patient_id, vital_status="dead" if died else "alive", death_date=died,
                    death_date_precision="day" if died else None, last_contact_date=last_contact,
                    birth_year=born[0], birth_month=born[1], n_sources=1)

    def relapse(self, patient_id: str, first_day: str, precision: str, source_id: str = "src") -> None:
        self.insert("diagnosis", source_id=source_id, diagnosis_id=f"d{self.n}", patient_id=patient_id,
                    event_type="relapse", diagnosis_date=first_day, diagnosis_date_precision=precision)

    def survival(self, patient_id: str, origin: str = "relapse") -> dict[str, Any]:
        build_marts(self.con)
        [row] = self.con.execute("SELECT * FROM marts.survival WHERE patient_id = ? AND origin = ?",
                                 [patient_id, origin]).df().to_dict("records")
        return row


def _origin(row: dict[str, Any]) -> tuple[date, str, int]:
    return row["origin_date"].date(), row["origin_date_precision"], int(row["os_days"])


# -- the survival origins ------------------------------------------------------------------------------------

def test_a_relapse_known_to_the_month_is_placed_mid_month():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-01-01")
    warehouse.relapse("P1", "2021-03-01", "month")  # "March 2021": 31 days, the 16th is their middle
    assert _origin(warehouse.survival("P1")) == (date(2021, 3, 16), "month", 291)


def test_a_relapse_known_to_the_year_is_placed_mid_year():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-01-01")
    warehouse.relapse("P1", "2021-01-01", "year")  # 1 January + 364 // 2 days
    assert _origin(warehouse.survival("P1")) == (date(2021, 7, 2), "year", 183)


def test_a_relapse_known_to_the_month_is_not_placed_after_a_death_in_that_month():
    warehouse = Warehouse()
    warehouse.patient("P1", died="2021-03-10")
    warehouse.relapse("P1", "2021-03-01", "month")  # 1 to 10 March: 1 March + 9 // 2 days
    row = warehouse.survival("P1")
    assert _origin(row) == (date(2021, 3, 5), "month", 5)
    assert (row["efs_event_type"], row["efs_days"]) == ("death", 5)


def test_a_relapse_known_to_the_year_is_not_placed_after_the_last_contact_that_year():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2021-04-30")
    warehouse.relapse("P1", "2021-01-01", "year")  # 1 January to 30 April: 1 January + 119 // 2 days
    assert _origin(warehouse.survival("P1")) == (date(2021, 3, 1), "year", 60)


def test_an_origin_known_to_the_year_of_the_birth_is_not_placed_before_the_birth():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-01-01", born=(2021, 6))
    warehouse.relapse("P1", "2021-01-01", "year")  # 1 June (born in June) to 31 December
    assert _origin(warehouse.survival("P1")) == (date(2021, 9, 15), "year", 108)


def test_of_the_relapses_sources_give_the_one_that_must_have_come_first_is_the_origin():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-01-01")
    warehouse.relapse("P1", "2021-01-01", "year")
    warehouse.relapse("P1", "2021-03-10", "day", source_id="other")  # consistent with "2021": the first relapse
    assert _origin(warehouse.survival("P1")) == (date(2021, 3, 10), "day", 297)
    warehouse.relapse("P1", "2020-01-01", "year", source_id="third")  # must have come before 10 March 2021
    assert _origin(warehouse.survival("P1")) == (date(2020, 7, 1), "year", 549)  # 2020 is a leap year


def test_an_enrolment_known_to_the_month_is_placed_mid_month_and_a_recommendation_too():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2023-01-01")
    warehouse.insert("study_enrolment", enrolment_id="e1", patient_id="P1", study_id="ILTB",
                     enrolment_date="2022-02-01", enrolment_date_precision="month")
    warehouse.insert("tumour_board_review", review_id="r1", patient_id="P1", board="ILTB",
                     submission_date="2022-02-20", recommendation_date="2022-03-01",
                     recommendation_date_precision="month", priority_rank=1, recommendation_type="trial",
                     recommended_agents="drug a", advice_followed=False)
    assert _origin(warehouse.survival("P1", "enrolment")) == (date(2022, 2, 14), "month", 321)  # 28 days
    recommended = warehouse.survival("P1", "recommendation")
    assert _origin(recommended) == (date(2022, 3, 16), "month", 291)
    assert recommended["advice_group"] == "not_followed"


def test_a_death_in_the_month_of_a_recommendation_known_to_the_month_keeps_the_patient_at_risk():
    # Died 10 March; the advice came "in March": it may have come first, so the patient stays (as before),
    # and the recommendation is placed between 1 and 10 March, never after the death.
    warehouse = Warehouse()
    warehouse.patient("P1", died="2022-03-10")
    warehouse.insert("tumour_board_review", review_id="r1", patient_id="P1", board="ILTB",
                     submission_date="2022-02-20", recommendation_date="2022-03-01",
                     recommendation_date_precision="month", priority_rank=1, recommendation_type="trial",
                     recommended_agents="drug a", advice_followed=False)
    assert _origin(warehouse.survival("P1", "recommendation")) == (date(2022, 3, 5), "month", 5)


# -- an event in a partial origin's own period ----------------------------------------------------------------

def _progression_contact(warehouse: Warehouse, patient_id: str, day: str) -> None:
    warehouse.insert("follow_up", follow_up_id=f"f{warehouse.n}", patient_id=patient_id, contact_date=day,
                     contact_date_precision="day", vital_status="alive", disease_status="progression")


def _efs(row: dict[str, Any]) -> tuple[date, str | None, int]:
    return row["origin_date"].date(), row["efs_event_type"], int(row["efs_days"])


def test_a_progression_in_the_year_of_a_relapse_known_to_the_year_counts_and_the_relapse_is_placed_before_it():
    # Until this was fixed the relapse was placed on 2 July and the progression of 10 March, before it, was lost:
    # censored at the last contact, 547 days, for a patient who progressed.
    warehouse = Warehouse()
    warehouse.patient("P1")
    warehouse.relapse("P1", "2021-01-01", "year")
    _progression_contact(warehouse, "P1", "2021-03-10")  # 1 January to 10 March: 1 January + 68 // 2 days
    assert _efs(warehouse.survival("P1")) == (date(2021, 2, 4), "progression", 34)


def test_a_relapse_in_the_month_of_an_enrolment_known_to_the_month_counts():
    warehouse = Warehouse()
    warehouse.patient("P1")
    warehouse.insert("study_enrolment", enrolment_id="e1", patient_id="P1", study_id="ILTB",
                     enrolment_date="2021-03-01", enrolment_date_precision="month")
    warehouse.relapse("P1", "2021-03-10", "day")  # 1 to 10 March: 1 March + 9 // 2 days
    assert _efs(warehouse.survival("P1", "enrolment")) == (date(2021, 3, 5), "relapse", 5)


def test_the_same_relapse_known_to_the_month_from_two_sources_is_no_event_and_does_not_move_the_origin():
    warehouse = Warehouse()
    warehouse.patient("P1")
    warehouse.relapse("P1", "2021-03-01", "month")
    warehouse.relapse("P1", "2021-03-01", "month", source_id="other")
    warehouse.relapse("P1", "2021-01-01", "year", source_id="third")  # "2021": it too may be that relapse
    assert _efs(warehouse.survival("P1")) == (date(2021, 3, 16), None, 655)


def test_the_first_diagnosis_is_placed_before_a_progression_in_its_year_in_both_marts():
    warehouse = _registry()
    warehouse.patient("P1")
    _malignant(warehouse, "P1", "2021-01-01", "year")
    _progression_contact(warehouse, "P1", "2021-03-10")  # 1 January to 10 March
    row = warehouse.survival("P1", "diagnosis")
    assert _efs(row) == (date(2021, 2, 4), "progression", 34)
    assert _follow_up(warehouse, "P1")[2] == int(row["os_days"]) == (date(2022, 12, 31) - date(2021, 2, 4)).days


# -- one first diagnosis in marts.patient_summary and marts.survival ----------------------------------------

def _registry() -> Warehouse:
    warehouse = Warehouse()
    write_source_params(warehouse.con, {"registry": {"population_based": True}})
    return warehouse


def _malignant(warehouse: Warehouse, patient_id: str, first_day: str, precision: str, source_id: str = "registry",
               group: str = "II") -> None:
    warehouse.insert("diagnosis", source_id=source_id, diagnosis_id=f"d{warehouse.n}", patient_id=patient_id,
                     event_type="initial", diagnosis_date=first_day, diagnosis_date_precision=precision,
                     icdo3_behaviour="3", iccc3_group=group)


def _first_diagnosis(warehouse: Warehouse, patient_id: str) -> tuple[date, str, str, str]:
    [row] = warehouse.con.execute("SELECT first_diagnosis_date, first_diagnosis_date_precision, "
                                  "first_diagnosis_event_type, iccc3_group FROM marts.patient_summary "
                                  "WHERE patient_id = ?", [patient_id]).fetchall()
    return row


def test_the_summary_and_survival_choose_the_same_first_diagnosis_when_sources_differ_in_precision():
    # Until this was fixed the summary took the registry's "2021" (its first day, 1 January, is the earliest), with
    # its ICCC-3 group, and survival from diagnosis the hospital's 10 March 2021, under the registry's group.
    warehouse = _registry()
    warehouse.patient("P1")
    _malignant(warehouse, "P1", "2021-01-01", "year", group="II")
    _malignant(warehouse, "P1", "2021-03-10", "day", source_id="hospital", group="III")
    row = warehouse.survival("P1", "diagnosis")
    assert _first_diagnosis(warehouse, "P1") == (date(2021, 3, 10), "day", "initial", "III")
    assert (_origin(row), row["iccc3_group"]) == ((date(2021, 3, 10), "day", 661), "III")
    assert _follow_up(warehouse, "P1")[2] == 661


def test_a_relapse_is_the_first_diagnosis_only_when_it_must_have_come_before_the_initial_one():
    warehouse = _registry()
    warehouse.patient("P1")
    _malignant(warehouse, "P1", "2021-03-01", "month")
    warehouse.relapse("P1", "2021-03-10", "day")  # may be after "March 2021": the initial diagnosis comes first
    build_marts(warehouse.con)
    assert _first_diagnosis(warehouse, "P1")[:3] == (date(2021, 3, 1), "month", "initial")
    warehouse.relapse("P1", "2020-11-01", "month")  # before March 2021 whatever its day
    build_marts(warehouse.con)
    assert _first_diagnosis(warehouse, "P1")[:3] == (date(2020, 11, 1), "month", "relapse")


# -- the last contact ---------------------------------------------------------------------------------------

def _contact(warehouse: Warehouse, patient_id: str, first_day: str, precision: str) -> None:
    warehouse.insert("follow_up", follow_up_id=f"f{warehouse.n}", patient_id=patient_id, contact_date=first_day,
                     contact_date_precision=precision, vital_status="alive")


def _last_contact(warehouse: Warehouse, patient_id: str) -> tuple[date, str, date]:
    [row] = warehouse.con.execute("SELECT last_contact_date, last_contact_date_precision, follow_up_end_date "
                                  "FROM marts.patient_summary WHERE patient_id = ?", [patient_id]).fetchall()
    return row


def test_a_last_contact_known_to_the_month_censors_mid_month():
    # Until this was fixed a patient last seen "in March 2022" was censored on 1 March, up to a month early.
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-03-01")  # core.patient: the latest contact's first day
    _contact(warehouse, "P1", "2022-03-01", "month")
    _contact(warehouse, "P1", "2021-11-20", "day")
    warehouse.relapse("P1", "2021-03-10", "day")
    row = warehouse.survival("P1")
    assert _last_contact(warehouse, "P1") == (date(2022, 3, 16), "month", date(2022, 3, 16))
    assert (row["os_end_date"].date(), row["os_days"], row["efs_end_date"].date(), row["efs_days"]) == (
        date(2022, 3, 16), 371, date(2022, 3, 16), 371)


def test_a_last_contact_known_to_the_year_is_not_placed_after_the_export_that_gave_it():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-01-01")
    _contact(warehouse, "P1", "2022-01-01", "year")
    warehouse.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, "
                          "exported_on) VALUES ('src', 'f.csv', ?, 'loaded', DATE '2022-05-01')", ["0" * 64])
    build_marts(warehouse.con)  # 1 January to 1 May: 1 January + 120 // 2 days
    assert _last_contact(warehouse, "P1") == (date(2022, 3, 2), "year", date(2022, 3, 2))


def test_a_last_contact_known_to_the_day_beside_one_known_to_the_month_on_its_first_day_stays_its_day():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact="2022-03-01")
    _contact(warehouse, "P1", "2022-03-01", "month")
    _contact(warehouse, "P1", "2022-03-01", "day")
    build_marts(warehouse.con)
    assert _last_contact(warehouse, "P1") == (date(2022, 3, 1), "day", date(2022, 3, 1))


# -- patient_summary's follow-up ------------------------------------------------------------------------------

def _follow_up(warehouse: Warehouse, patient_id: str) -> tuple[date, str, int]:
    build_marts(warehouse.con)
    [row] = warehouse.con.execute("SELECT first_diagnosis_date, first_diagnosis_date_precision, follow_up_days "
                                  "FROM marts.patient_summary WHERE patient_id = ?", [patient_id]).fetchall()
    return row


def _initial(warehouse: Warehouse, patient_id: str, first_day: str, precision: str) -> None:
    warehouse.insert("diagnosis", diagnosis_id=f"d{warehouse.n}", patient_id=patient_id, event_type="initial",
                     diagnosis_date=first_day, diagnosis_date_precision=precision)


@pytest.mark.parametrize(("first_day", "precision", "start"), [
    ("2019-05-01", "month", date(2019, 5, 16)),  # 1 May + 30 // 2 days
    ("2019-01-01", "year", date(2019, 7, 2)),  # 1 January + 364 // 2 days
    ("2019-05-03", "day", date(2019, 5, 3)),  # a day stays its day
])
def test_the_follow_up_starts_mid_period_from_a_first_diagnosis_known_to_the_month_or_year(first_day, precision,
                                                                                            start):
    warehouse = Warehouse()
    warehouse.patient("P1")  # last contact 31 December 2022
    _initial(warehouse, "P1", first_day, precision)
    assert _follow_up(warehouse, "P1") == (date.fromisoformat(first_day), precision,
                                           (date(2022, 12, 31) - start).days)


def test_the_follow_up_does_not_start_after_a_treatment_in_the_month_of_the_diagnosis():
    warehouse = Warehouse()
    warehouse.patient("P1")
    _initial(warehouse, "P1", "2019-05-01", "month")
    warehouse.insert("treatment", treatment_id="t1", patient_id="P1", drug_name="x", start_date="2019-05-10")
    assert _follow_up(warehouse, "P1")[2] == (date(2022, 12, 31) - date(2019, 5, 5)).days  # 1 to 10 May


def test_the_follow_up_does_not_start_after_a_relapse_known_to_the_day_in_the_year_of_the_diagnosis():
    warehouse = Warehouse()
    warehouse.patient("P1")
    _initial(warehouse, "P1", "2019-01-01", "year")
    warehouse.relapse("P1", "2019-03-01", "day")  # 1 January to 1 March: 1 January + 59 // 2 days
    warehouse.insert("treatment", treatment_id="t1", patient_id="P1", drug_name="x", start_date="2018-06-01")
    assert _follow_up(warehouse, "P1")[2] == (date(2022, 12, 31) - date(2019, 1, 30)).days  # the 2018 one: no bound


# -- the pandas restatement agrees ----------------------------------------------------------------------------

@pytest.mark.parametrize(("first_day", "precision", "not_before", "not_after", "placed"), [
    (date(2021, 3, 1), "month", None, None, date(2021, 3, 16)),
    (date(2021, 6, 1), "month", None, None, date(2021, 6, 15)),
    (date(2021, 1, 1), "year", None, None, date(2021, 7, 2)),
    (date(2020, 1, 1), "year", None, None, date(2020, 7, 1)),
    (date(2021, 3, 1), "month", None, date(2021, 3, 10), date(2021, 3, 5)),
    (date(2021, 1, 1), "year", date(2021, 6, 1), None, date(2021, 9, 15)),
    (date(2021, 1, 1), "year", date(2022, 6, 1), None, date(2021, 7, 2)),  # a birth after the period bounds nothing
    (date(2021, 1, 1), "year", None, date(2020, 6, 1), date(2021, 1, 1)),  # an end before it: a date error, shown
    (date(2021, 1, 5), None, None, None, date(2021, 1, 5)),
])
def test_the_pandas_restatement_places_a_date_as_the_sql_does(first_day, precision, not_before, not_after, placed):
    assert expected.placed_date(first_day, precision, not_before, not_after) == placed
    con = Warehouse().con
    build_marts(con)  # loads the macros the marts share (on an empty core the marts are empty)
    [(sql,)] = con.execute("SELECT placed_date(?::DATE, ?::VARCHAR, ?::DATE, ?::DATE)",
                           [first_day, precision, not_before, not_after]).fetchall()
    assert sql == placed


# -- what the marts leave out, and why ------------------------------------------------------------------------

def _left_out(con: duckdb.DuckDBPyConnection, mart: str) -> dict[str, int]:
    return {reason.split(":")[0]: n for reason, n in con.execute(
        "SELECT reason, n_rows FROM marts.left_out WHERE mart = ?", [mart]).fetchall()}


def test_the_survival_marts_say_whom_they_leave_out_and_why():
    warehouse = Warehouse()
    warehouse.patient("P1", last_contact=None)  # never contacted: no end of follow-up
    warehouse.relapse("P1", "2021-03-01", "day")
    warehouse.insert("patient", patient_id="P2", vital_status="dead", last_contact_date=None, n_sources=1)
    warehouse.relapse("P2", "2021-03-01", "day")  # dead, the death undated, and no contact dated
    warehouse.patient("P3", last_contact="2020-01-01", died="2020-01-01")
    warehouse.relapse("P3", "2021-03-01", "day")  # dead before the relapse: a date error
    warehouse.patient("P4", died="2022-02-25")  # died before the advice came (1 March)
    warehouse.insert("tumour_board_review", review_id="r1", patient_id="P4", board="ILTB",
                     submission_date="2022-02-20", recommendation_date="2022-03-01", priority_rank=1,
                     recommendation_type="trial", recommended_agents="drug a", advice_followed=False)
    build_marts(warehouse.con)
    for mart in ("survival_km", "survival_landmark"):
        assert _left_out(warehouse.con, mart) == {"unknown OS time in marts.survival": 2,
                                                  "unknown EFS time in marts.survival": 2,
                                                  "negative OS time in marts.survival": 1,
                                                  "negative EFS time in marts.survival": 1}
    assert _left_out(warehouse.con, "survival")["died before the recommendation"] == 1
    assert warehouse.con.execute("SELECT count(*) FROM marts.survival WHERE origin = 'recommendation'").fetchall() == [
        (0,)]


def test_incidence_says_how_many_cases_it_leaves_out_for_an_unknown_age_or_one_outside_the_band(tmp_path):
    warehouse = Warehouse()
    write_source_params(warehouse.con, {"registry": {"population_based": True}})
    table = tmp_path / "child_population.csv"
    table.write_text("country,year,age_band,population,source\nIT,2020,0-17,1000000,x\nIT,2021,0-17,1000000,x\n")
    write_child_population(warehouse.con, read_child_population(table))
    warehouse.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, "
                          "exported_on) VALUES ('registry', 'r.csv', 'x', 'loaded', DATE '2022-06-01')")
    # counted (aged 8); no birth date (age unknown); aged 18; and a case of 2022, a year not counted at all
    for patient_id, year, age_days in (("I1", 2020, 3000), ("I2", 2020, None), ("I3", 2021, 6600),
                                       ("I4", 2022, None)):
        warehouse.insert("patient", patient_id=patient_id, country="IT", n_sources=1)
        warehouse.insert("diagnosis", source_id="registry", diagnosis_id=f"d-{patient_id}", patient_id=patient_id,
                         event_type="initial", diagnosis_date=f"{year}-05-01", age_at_diagnosis_days=age_days,
                         iccc3_group="XI", iccc3_subgroup="XI(b)", is_very_rare=True)
    build_marts(warehouse.con)
    assert warehouse.con.execute("SELECT n_cases FROM marts.incidence WHERE level = 'subgroup'").fetchall() == [(1,)]
    assert _left_out(warehouse.con, "incidence") == {
        "age at diagnosis unknown (no birth date)": 1,
        "age at diagnosis outside the age band of the population table (e.g. 18 in 0-17)": 1}
