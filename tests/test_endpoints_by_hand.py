"""Endpoints worked out by hand on a few hand-made records, where an audit found the marts wrong: a response
assessed before its line started, and a patient seen (treated, assessed, relapsing) after the last follow-up
contact, whom overall survival censored at that contact."""

from __future__ import annotations

from datetime import date
from typing import Any

import endpoints_expected as expected
import pandas as pd
from test_origin_imputation import Warehouse

from etl.load.marts import build_marts
from etl.quality.validate import write_source_params


def _warehouse() -> Warehouse:
    warehouse = Warehouse()
    write_source_params(warehouse.con, {"registry": {"population_based": True}})
    return warehouse


def _person() -> Warehouse:
    """A warehouse of one patient, P1 (the one `_started` treats)."""
    warehouse = _warehouse()
    warehouse.patient("P1")
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
    warehouse = _person()
    _treatment(warehouse, "P1", "t1", "2022-06-01")
    _response(warehouse, "t1", "2022-05-01", "CR")
    _response(warehouse, "t1", "2022-07-01", "PD")
    _response(warehouse, "t1", "2022-05-01", "CR", "best")
    _response(warehouse, "t1", "2022-07-01", "PD", "best")
    assert _responses(warehouse) == {"cycle1": (date(2022, 7, 1), "PD"), "best": (date(2022, 7, 1), "PD")}
    # marts.left_out says why the two CRs are not counted: dated before the line, not another assessment of it.
    reasons = warehouse.con.execute("SELECT split_part(reason, ':', 1), n_rows FROM marts.left_out "
                                    "WHERE mart = 'response' AND n_rows > 0").fetchall()
    assert reasons == [("dated before its line started", 2)]


def test_a_response_on_the_day_the_line_started_or_without_a_date_counts():
    warehouse = _person()
    _treatment(warehouse, "P1", "t1", "2022-06-01")
    _response(warehouse, "t1", "2022-06-01", "PR")
    _response(warehouse, "t1", None, "CR", "best")
    assert _responses(warehouse) == {"cycle1": (date(2022, 6, 1), "PR"), "best": (None, "CR")}


# -- the end of follow-up -----------------------------------------------------------------------------------------

def _survival(warehouse: Warehouse) -> dict[tuple[str, str], tuple[Any, ...]]:
    build_marts(warehouse.con)
    rows = warehouse.con.execute("SELECT patient_id, origin, os_end_date, os_days, efs_event_type, efs_days "
                                 "FROM marts.survival").fetchall()
    return {(patient, origin): tuple(rest) for patient, origin, *rest in rows}


def _follow_up_end(warehouse: Warehouse, patient_id: str) -> date:
    [(end,)] = warehouse.con.execute("SELECT follow_up_end_date FROM marts.patient_summary WHERE patient_id = ?",
                                     [patient_id]).fetchall()
    return end


def test_a_patient_seen_after_the_last_follow_up_contact_is_followed_to_that_day():
    # Last follow-up form on 1 January 2021; treated from 1 March 2022 and assessed on 1 May 2022 (P1), or relapsed
    # on 1 June 2022 (P2), alive. Censored on 1 January 2021, P1 lost 16 months of follow-up, P2's event-free
    # survival (873 days) outlasted its overall survival (357), and P2's relapse origin ended before it began (a
    # "date error" left out of the estimates).
    warehouse = _warehouse()
    for patient_id in ("P1", "P2"):
        warehouse.patient(patient_id, last_contact="2021-01-01")
        _initial(warehouse, patient_id, "2020-01-10")
    _treatment(warehouse, "P1", "t1", "2022-03-01")
    _response(warehouse, "t1", "2022-05-01", "PR")
    warehouse.relapse("P2", "2022-06-01", "day")
    times = _survival(warehouse)
    assert times[("P1", "diagnosis")] == (date(2022, 5, 1), 842, None, 842)
    assert times[("P2", "diagnosis")] == (date(2022, 6, 1), 873, "relapse", 873)
    assert times[("P2", "relapse")] == (date(2022, 6, 1), 0, None, 0)
    assert _follow_up_end(warehouse, "P1") == date(2022, 5, 1)


def test_a_relapse_known_to_the_month_after_the_last_contact_is_dated_one_way_from_every_origin():
    # Last contact 1 January 2021; a relapse "in June 2022", alive. The follow-up ended on 1 June (the relapse's
    # first day), the diagnosis origin placed the relapse on 15 June and lifted OS there, and the relapse origin,
    # held to 1 June, ran OS 14 days and EFS 0. The relapse is now placed as the last contact is (15 June, the end
    # of follow-up), and from either origin on the same day, within 1 to 15 June.
    warehouse = _warehouse()
    warehouse.patient("P1", last_contact="2021-01-01")
    _initial(warehouse, "P1", "2020-01-10")
    warehouse.relapse("P1", "2022-06-01", "month")
    times = _survival(warehouse)
    assert times[("P1", "diagnosis")] == (date(2022, 6, 15), 887, "relapse", 880)
    assert times[("P1", "relapse")] == (date(2022, 6, 15), 7, None, 7)
    assert _follow_up_end(warehouse, "P1") == date(2022, 6, 15)


def test_a_relapse_known_to_the_year_of_the_last_contact_is_not_placed_after_it_as_an_event():
    # Last contact 30 April 2021, a relapse "in 2021": as an origin placed within 1 January to 30 April (1 March);
    # as an event it fell on 2 July, event-free survival outlasting overall survival (censored on 30 April).
    warehouse = _warehouse()
    warehouse.patient("P1", last_contact="2021-04-30")
    _initial(warehouse, "P1", "2020-01-10")
    warehouse.relapse("P1", "2021-01-01", "year")
    times = _survival(warehouse)
    assert times[("P1", "diagnosis")] == (date(2021, 4, 30), 476, "relapse", 416)
    assert times[("P1", "relapse")] == (date(2021, 4, 30), 60, None, 60)


def test_a_treatment_start_known_to_the_year_after_the_last_contact_is_placed_mid_year():
    warehouse = _warehouse()
    warehouse.patient("P1", last_contact="2024-06-01")
    _initial(warehouse, "P1", "2024-01-10")
    warehouse.insert("treatment", treatment_id="t1", patient_id="P1", line_number=1, drug_name="crizotinib",
                     start_date="2025-01-01", start_date_precision="year")
    build_marts(warehouse.con)
    assert _follow_up_end(warehouse, "P1") == date(2025, 7, 2)


def test_a_patient_without_a_dated_contact_keeps_an_unknown_end_and_a_death_date_wins():
    warehouse = _warehouse()
    warehouse.patient("P1", last_contact=None)
    warehouse.patient("P2", last_contact="2021-01-01", died="2021-02-01")
    for patient_id in ("P1", "P2"):
        _initial(warehouse, patient_id, "2020-01-10")
        _treatment(warehouse, patient_id, f"t{patient_id}", "2020-02-01")
    times = _survival(warehouse)
    assert times[("P1", "diagnosis")] == (None, None, None, None)
    assert times[("P2", "diagnosis")] == (date(2021, 2, 1), 388, "death", 388)


# -- treatment lines given to the month or year ------------------------------------------------------------------

def _started(warehouse: Warehouse, source_id: str, treatment_id: str, first_day: str, precision: str,
             line_number: int = 1, drug: str | None = "crizotinib") -> None:
    warehouse.insert("treatment", source_id=source_id, treatment_id=treatment_id, patient_id="P1",
                     line_number=line_number, drug_name=drug, start_date=first_day, start_date_precision=precision)


def _lines(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    """marts.treatment_line's lines, which endpoints_expected.py restates alike."""
    build_marts(warehouse.con)
    lines = warehouse.con.execute("SELECT start_date, n_sources, treatment_ids, advice_group "
                                  "FROM marts.treatment_line ORDER BY start_date, line_id").fetchall()
    treatments = warehouse.con.execute("SELECT patient_id AS person, source_id, CAST(line_number AS VARCHAR) "
                                       "AS source_line, drug_name, start_date, start_date_precision, "
                                       "treatment_id AS treatment_key FROM core.treatment").df()
    reviews = warehouse.con.execute("SELECT patient_id AS person, * FROM core.tumour_board_review").df()
    answered = expected.answered_lines(expected.person_lines(treatments), expected.submissions(reviews))
    restated = sorted((pd.Timestamp(start).date(), n, sorted(keys), group) for start, n, keys, group
                      in zip(answered.start_date, answered.n_sources, answered.treatment_keys, answered.advice_group))
    assert sorted(lines) == restated
    return lines


def test_a_line_one_source_gives_to_the_month_or_year_is_the_line_another_dates_within_it():
    # The board registry started crizotinib on 10 March 2022; SACHA says "March 2022" (stored 1 March), a national
    # registry "2022": matched on the exact stored start, one line became three, each counted in the response marts.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-10", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "registry", "t3", "2022-01-01", "year")
    _started(warehouse, "registry", "t4", "2022-04-01", "month", 2, "dabrafenib")  # other drugs: another line
    assert _lines(warehouse) == [(date(2022, 3, 10), 3, ["t1", "t2", "t3"], "not_compared"),
                                 (date(2022, 4, 1), 1, ["t4"], "not_compared")]
    assert warehouse.con.execute("SELECT start_date_precision FROM marts.treatment_line "
                                 "ORDER BY start_date").fetchall() == [("day",), ("month",)]


def test_lines_one_source_numbers_apart_stay_apart_though_one_is_given_to_the_year():
    # One source's line 1 "2022" and line 2 on 10 March 2022, the same drug: the source says they are two lines.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-01-01", "year")
    _started(warehouse, "sacha_fr", "t2", "2022-03-10", "day", line_number=2)
    assert _lines(warehouse) == [(date(2022, 1, 1), 1, ["t1"], "not_compared"),
                                 (date(2022, 3, 10), 1, ["t2"], "not_compared")]


def test_a_line_started_in_the_month_of_the_recommendation_answers_it():
    # Recommended on 15 March 2022, followed; the line is known to have started "in March 2022": not surely before
    # the recommendation (as a response is no response to a line only when surely before it), so it is the line
    # that answers the advice. Matched on its first day, 1 March, it was not, and the submission had no line.
    warehouse = _person()
    warehouse.insert("tumour_board_review", source_id="iltb", review_id="r1", patient_id="P1", board="ILTB",
                     submission_date="2022-03-01", recommendation_date="2022-03-15", priority_rank=1,
                     recommendation_type="off_label", recommended_agents="crizotinib", advice_followed=True)
    _started(warehouse, "iltb", "t1", "2022-03-01", "month")
    _started(warehouse, "iltb", "t2", "2022-02-01", "month", line_number=2, drug="vincristine")  # surely before
    assert _lines(warehouse) == [(date(2022, 2, 1), 1, ["t2"], "not_compared"),
                                 (date(2022, 3, 1), 1, ["t1"], "followed")]


def test_lines_one_source_gives_to_one_month_pair_with_the_lines_another_dates_within_it_in_order():
    # The board registry started crizotinib on 3 and on 20 March 2022 (lines 1 and 2); SACHA gives its lines 1 and 2
    # both as "March 2022". Each partial line took the single best precise line, 3 March, and one of them was kept:
    # line 2 stayed unmatched, three lines counted for two.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-03", "day")
    _started(warehouse, "iltb", "t2", "2022-03-20", "day", line_number=2)
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t4", "2022-03-01", "month", line_number=2)
    assert _lines(warehouse) == [(date(2022, 3, 3), 2, ["t1", "t3"], "not_compared"),
                                 (date(2022, 3, 20), 2, ["t2", "t4"], "not_compared")]


def test_two_lines_one_source_gives_to_one_month_stay_two_lines_with_their_own_responses():
    # The board registry restarted ruxolitinib as line 2 within November 2022, both lines given to the month: one
    # line held both, its cycle-1 response line 2's PD and its best line 1's NR. A second source's single "November
    # 2022" line is the first of them.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-11-01", "month", drug="ruxolitinib")
    _started(warehouse, "iltb", "t2", "2022-11-01", "month", line_number=2, drug="ruxolitinib")
    _started(warehouse, "sacha_fr", "t3", "2022-11-01", "month", drug="ruxolitinib")
    _response(warehouse, "t1", "2022-12-23", "NR")
    _response(warehouse, "t1", "2022-12-23", "NR", "best")
    _response(warehouse, "t2", "2022-12-20", "PD")
    _response(warehouse, "t2", "2022-12-20", "PD", "best")
    assert sorted(keys for _, _, keys, _ in _lines(warehouse)) == [["t1", "t3"], ["t2"]]
    assessed = warehouse.con.execute("SELECT list(treatment_ids), list(response ORDER BY timepoint) "
                                     "FROM marts.response_line JOIN marts.treatment_line USING (line_id) "
                                     "GROUP BY line_id ORDER BY 2").fetchall()
    assert [(keys[0], responses) for keys, responses in assessed] == [(["t1", "t3"], ["NR", "NR"]),
                                                                      (["t2"], ["PD", "PD"])]


def test_a_line_given_to_the_year_pairs_with_a_sources_second_line_given_to_the_month():
    # SACHA's lines 1 and 2 both "March 2022" are two starts; the registry's lines 1 and 2 both "2022" are those two.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month", line_number=2)
    _started(warehouse, "registry", "t3", "2022-01-01", "year")
    _started(warehouse, "registry", "t4", "2022-01-01", "year", line_number=2)
    assert sorted(keys for _, _, keys, _ in _lines(warehouse)) == [["t1", "t3"], ["t2", "t4"]]


def _board_advice(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    build_marts(warehouse.con)
    return warehouse.con.execute("SELECT treatment_start_date, advised_treatment_start_date, "
                                 "days_recommendation_to_treatment, days_recommendation_to_advised_treatment "
                                 "FROM marts.board_advice").fetchall()


def test_a_treatment_started_in_the_month_of_the_recommendation_is_the_next_treatment_without_a_negative_time():
    # Recommended on 15 March 2022, followed; crizotinib started "in March 2022" (stored 1 March). marts.treatment_line
    # made it the line that answers the advice, marts.board_advice found no treatment after it (1 March < 15 March).
    # It may have started before the 15th: no number of days, rather than -14 for want of a day.
    warehouse = _person()
    warehouse.insert("tumour_board_review", source_id="iltb", review_id="r1", patient_id="P1", board="ILTB",
                     submission_date="2022-03-01", recommendation_date="2022-03-15", priority_rank=1,
                     recommendation_type="off_label", recommended_agents="crizotinib", advice_followed=True)
    _started(warehouse, "iltb", "t1", "2022-03-01", "month")
    _started(warehouse, "iltb", "t2", "2022-02-01", "month", line_number=2, drug="vincristine")  # surely before
    assert _board_advice(warehouse) == [(date(2022, 3, 1), date(2022, 3, 1), None, None)]
    assert warehouse.con.execute("SELECT advice_group FROM marts.treatment_line "
                                 "WHERE start_date = DATE '2022-03-01'").fetchall() == [("followed",)]


def test_the_next_treatment_is_the_one_that_must_have_come_first():
    # After a recommendation of 15 March 2022: vincristine on 16 March, crizotinib "in March 2022". The one that
    # must have come first is vincristine (crizotinib may have started on the 31st), as marts.treatment_line orders
    # lines; the advised drug's start is March, given without a number of days.
    warehouse = _person()
    warehouse.insert("tumour_board_review", source_id="iltb", review_id="r1", patient_id="P1", board="ILTB",
                     submission_date="2022-03-01", recommendation_date="2022-03-15", priority_rank=1,
                     recommendation_type="off_label", recommended_agents="crizotinib", advice_followed=False)
    _started(warehouse, "iltb", "t1", "2022-03-01", "month")
    _started(warehouse, "iltb", "t2", "2022-03-16", "day", line_number=2, drug="vincristine")
    assert _board_advice(warehouse) == [(date(2022, 3, 16), date(2022, 3, 1), 1, None)]


# -- time from diagnosis to registration --------------------------------------------------------------------------

def _days_to_registration(enrolled: tuple[str, str], *diagnoses: tuple[str, str, str]) -> float | None:
    """marts.registry_activity's median for one registration (first day, precision) of the registry's diagnoses
    (event type, first day, precision)."""
    warehouse = _person()
    warehouse.insert("study_enrolment", source_id="registry", enrolment_id="e1", patient_id="P1", study_id="TREP",
                     enrolment_date=enrolled[0], enrolment_date_precision=enrolled[1])
    for event, day, precision in diagnoses:
        warehouse.insert("diagnosis", source_id="registry", diagnosis_id=f"d{warehouse.n}", patient_id="P1",
                         event_type=event, diagnosis_date=day, diagnosis_date_precision=precision)
    build_marts(warehouse.con)
    [(days,)] = warehouse.con.execute("SELECT days_to_registration_median FROM marts.registry_activity").fetchall()
    return days


def test_a_diagnosis_known_to_its_year_or_month_is_placed_before_the_registration():
    # "2021" before a registration of 15 June 2021 was timed from 1 January (165 days): it is placed mid-way between
    # 1 January and 15 June, 24 March. "June 2021" before 10 June 2021 was 9 days: placed on 5 June.
    assert _days_to_registration(("2021-06-15", "day"), ("initial", "2021-01-01", "year")) == 83
    assert _days_to_registration(("2021-06-10", "day"), ("initial", "2021-06-01", "month")) == 5
    # A diagnosis surely after the registration times none.
    assert _days_to_registration(("2021-06-10", "day"), ("initial", "2021-07-01", "month")) is None


def test_a_registration_known_to_its_year_is_timed_from_the_progression_that_led_to_it():
    # Registered "2021"; diagnosed 1 May 2019, progressed 10 March 2021. The progression was skipped (after 1
    # January, the stored day) and the time ran 611 days from 2019; the registration is placed mid-way between the
    # progression and the end of 2021, 5 August: 148 days.
    assert _days_to_registration(("2021-01-01", "year"), ("initial", "2019-05-01", "day"),
                                 ("progression", "2021-03-10", "day")) == 148


# -- adverse events of a combination ----------------------------------------------------------------------------

def test_an_event_recorded_against_an_arm_counts_for_each_of_its_drugs_not_a_later_line():
    # ESMART records an arm's events against its first drug (EX[1]): the grade-3 event of ribociclib + temozolomide
    # sat on ribociclib alone, temozolomide looking free of toxicity. A later line's drug is not of the event.
    warehouse = _person()
    for treatment_id, drug, line in (("t1", "ribociclib", 1), ("t2", "temozolomide", 1), ("t3", "olaparib", 2)):
        warehouse.insert("treatment", source_id="esmart", treatment_id=treatment_id, patient_id="P1",
                         line_number=line, drug_name=drug, start_date="2022-03-01", start_date_precision="day",
                         access_route="trial")
    warehouse.insert("adverse_event", source_id="esmart", ae_id="a1", patient_id="P1", treatment_id="t1",
                     term="Neutropenia", ctcae_grade=3)
    build_marts(warehouse.con)
    harmed = warehouse.con.execute("SELECT drug_name, n_patients_exposed, n_events, n_patients_grade3plus "
                                   "FROM marts.adverse_events ORDER BY drug_name").fetchall()
    assert harmed == [("olaparib", 1, 0, 0), ("ribociclib", 1, 1, 1), ("temozolomide", 1, 1, 1)]
