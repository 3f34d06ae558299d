"""The table macros two marts share (warehouse/mart_functions.sql), each worked out by hand on a core holding only what
a test inserts, and how build_marts creates them: after the tables they read, from files it reads once."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_origin_imputation import Warehouse

from etl.load import marts
from etl.load.marts import build_marts
from etl.quality.sql_checks import rule_functions_sql
from etl.quality.validate import write_source_params


def _with_macros(warehouse: Warehouse) -> Warehouse:
    write_source_params(warehouse.con, {"registry": {"population_based": True}, "trial": {"max_age_years": 18}})
    warehouse.con.execute(rule_functions_sql())
    warehouse.con.execute(marts.MART_FUNCTIONS.read_text(encoding="utf-8"))
    return warehouse


def _known_origins() -> Warehouse:
    """A core of two patients whose origins its diagnoses, progressions and treatments bound."""
    warehouse = Warehouse()
    # P1: an initial diagnosis "2021" (its last day 31 December); a progression seen on its first day (no event after
    # it) and on 1 June; treatments started on 10 March and, a date error, in 2020 (bounds nothing).
    warehouse.insert("diagnosis", diagnosis_id="d1", patient_id="P1", event_type="initial",
                     diagnosis_date="2021-01-01", diagnosis_date_precision="year")
    for day in ("2021-01-01", "2021-06-01"):
        warehouse.insert("follow_up", follow_up_id=f"f{warehouse.n}", patient_id="P1", contact_date=day,
                         disease_status="progression")
    for day in ("2021-03-10", "2020-05-01"):
        warehouse.insert("treatment", treatment_id=f"t{warehouse.n}", patient_id="P1", start_date=day)
    # P2: a treatment started on the day of its diagnosis bounds it (a diagnosis's day, not an event's).
    warehouse.insert("diagnosis", diagnosis_id="d2", patient_id="P2", event_type="initial",
                     diagnosis_date="2022-05-01", diagnosis_date_precision="day")
    warehouse.insert("treatment", treatment_id="t2", patient_id="P2", start_date="2022-05-01")
    return warehouse


def test_an_origin_is_known_by_the_first_event_after_it_and_by_diagnoses_the_first_last_day_on_or_after_it():
    rows = _with_macros(_known_origins()).con.execute(
        "SELECT origin.patient_id, origin.by_diagnoses, bound.known_on::VARCHAR "
        "FROM (VALUES ('P1', DATE '2021-01-01', true), ('P1', DATE '2021-01-01', false), "
        "             ('P2', DATE '2022-05-01', true), ('P2', DATE '2022-05-01', false), "
        "             ('P3', DATE '2022-05-01', true)) AS origin (patient_id, first_day, by_diagnoses) "
        "CROSS JOIN LATERAL origin_known_by(origin.patient_id, origin.first_day, origin.by_diagnoses) AS bound "
        "ORDER BY ALL").fetchall()
    assert rows == [("P1", False, "2021-06-01"), ("P1", True, "2021-03-10"),
                    ("P2", False, None), ("P2", True, "2022-05-01"), ("P3", True, None)]


def test_the_cases_incidence_counts_are_those_of_the_population_based_sources_only():
    warehouse = Warehouse()
    for source_id in ("registry", "trial"):
        warehouse.insert("diagnosis", source_id=source_id, diagnosis_id=f"d-{source_id}", patient_id="P1",
                         event_type="initial", diagnosis_date="2021-03-10", iccc3_group="IX")
    registered = _with_macros(warehouse).con.execute(
        "SELECT source_id, patient_id FROM incidence_registered()").fetchall()
    assert registered == [("registry", "P1")]


def test_the_marts_build_from_core_alone_with_their_macros_read_once(monkeypatch: pytest.MonkeyPatch):
    # A warehouse without stage: the sources' parameters incidence_registered() reads are made before the macros.
    warehouse = Warehouse()
    warehouse.patient("P1")
    reads: list[str] = []
    read_text = Path.read_text

    def counted(path: Path, encoding: str | None = None, errors: str | None = None) -> str:
        reads.append(path.name)
        return read_text(path, encoding, errors)

    monkeypatch.setattr(Path, "read_text", counted)
    build_marts(warehouse.con)
    assert warehouse.con.execute("SELECT count(*) FROM marts.patient_summary").fetchone() == (1,)
    assert (reads.count(marts.MART_FUNCTIONS.name), reads.count(marts.EXPORT_NOW.name)) == (1, 1)
