"""Endpoints worked out by hand on a few hand-made records, where an audit found the marts wrong: a response
assessed before its line started, and a patient seen (treated, assessed, relapsing) after the last follow-up
contact, whom overall survival censored at that contact."""

from __future__ import annotations

from datetime import date
from typing import Any

from test_origin_imputation import Warehouse

from etl.load.marts import build_marts
from etl.quality.validate import write_source_params


def _warehouse() -> Warehouse:
    warehouse = Warehouse()
    write_source_params(warehouse.con, {"registry": {"population_based": True}})
    return warehouse


def _initial(warehouse: Warehouse, patient_id: str, day: str) -> None:
    warehouse.insert("diagnosis", source_id="registry", diagnosis_id=f"d{warehouse.n}", patient_id=patient_id,
                     event_type="initial", diagnosis_date=day, diagnosis_date_precision="day",
                     icdo3_morphology="8920", icdo3_behaviour="3", basis_of_diagnosis="7", iccc3_group="IX",
                     iccc3_subgroup="IX(b)")


def _treatment(warehouse: Warehouse, patient_id: str, treatment_id: str, day: str, drug: str = "crizotinib") -> None:
    warehouse.insert("treatment", treatment_id=treatment_id, patient_id=patient_id, line_number=1, drug_name=drug,
                     start_date=day, start_date_precision="day")


def _response(warehouse: Warehouse, treatment_id: str, day: str | None, response: str,
              timepoint: str = "cycle1") -> None:
    warehouse.insert("response_assessment", response_id=f"r{warehouse.n}", patient_id="P1", treatment_id=treatment_id,
                     assessment_date=day, timepoint=timepoint, response=response)


def _responses(warehouse: Warehouse) -> dict[str, tuple[Any, str]]:
    build_marts(warehouse.con)
    rows = warehouse.con.execute("SELECT timepoint, assessment_date, response FROM marts.response_line").fetchall()
    return {timepoint: (day, response) for timepoint, day, response in rows}


# -- responses of a treatment line ------------------------------------------------------------------------------

def test_a_response_assessed_before_the_line_started_is_no_response_to_it():
    # A CR dated a month before the first dose (a baseline filed under the line, or a date error) made the line
    # an objective response at cycle 1 and at best; the only assessment after the start is PD.
    warehouse = _warehouse()
    warehouse.patient("P1")
    _treatment(warehouse, "P1", "t1", "2022-06-01")
    _response(warehouse, "t1", "2022-05-01", "CR")
    _response(warehouse, "t1", "2022-07-01", "PD")
    _response(warehouse, "t1", "2022-05-01", "CR", "best")
    _response(warehouse, "t1", "2022-07-01", "PD", "best")
    assert _responses(warehouse) == {"cycle1": (date(2022, 7, 1), "PD"), "best": (date(2022, 7, 1), "PD")}


def test_a_response_on_the_day_the_line_started_or_without_a_date_counts():
    warehouse = _warehouse()
    warehouse.patient("P1")
    _treatment(warehouse, "P1", "t1", "2022-06-01")
    _response(warehouse, "t1", "2022-06-01", "PR")
    _response(warehouse, "t1", None, "CR", "best")
    assert _responses(warehouse) == {"cycle1": (date(2022, 6, 1), "PR"), "best": (None, "CR")}
