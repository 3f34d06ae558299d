"""The cross-table date rules flag what their text says on the edge cases registries have: a date known
to the month or year (stored as its period's first day) is flagged only when every day it can be is
wrong, events on the same day pass, and a missing date is not taken for a wrong one.

Each rule runs as validation runs it, in DuckDB, on a hand-made stage (tests/rule_stage.py)."""

from __future__ import annotations

from datetime import date
from typing import Any

from rule_stage import flagged, stage

DIAGNOSED = date(2019, 5, 20)


def _diagnosis(day: date = DIAGNOSED, precision: str = "day") -> dict[str, Any]:
    return {"diagnosis_id": "d1", "source_record_key": "d1", "diagnosis_date": day,
            "diagnosis_date_precision": precision, "event_type": "initial"}


def _treatment(key: str, start: date | None, precision: str | None = "day", drug: str = "crizotinib") -> dict[str, Any]:
    return {"treatment_id": key, "source_record_key": key, "start_date": start, "start_date_precision": precision,
            "drug_name": drug}


def _enrolment(key: str, day: date, precision: str = "day") -> dict[str, Any]:
    return {"enrolment_id": key, "source_record_key": key, "study_id": "S", "enrolment_date": day,
            "enrolment_date_precision": precision}


def test_a_treatment_known_to_the_month_or_year_of_the_diagnosis_is_not_before_it():
    con = stage({"diagnosis": [_diagnosis()], "treatment": [
        _treatment("in-may", date(2019, 5, 1), "month"),    # may be 20-31 May
        _treatment("in-2019", date(2019, 1, 1), "year"),
        _treatment("same-day", DIAGNOSED),
        _treatment("undated", None, None),                  # TRT-START-PRESENT's finding, not this one's
        _treatment("in-april", date(2019, 4, 1), "month"),  # surely before: flagged
        _treatment("day-before", date(2019, 5, 19))]})
    assert set(flagged(con, "XT-TREATMENT-AFTER-DIAGNOSIS")) == {"in-april", "day-before"}


def test_a_treatment_is_judged_against_the_first_day_a_diagnosis_known_to_the_month_can_be():
    con = stage({"diagnosis": [_diagnosis(date(2019, 5, 1), "month")], "treatment": [
        _treatment("2-may", date(2019, 5, 2)), _treatment("30-april", date(2019, 4, 30))]})
    assert set(flagged(con, "XT-TREATMENT-AFTER-DIAGNOSIS")) == {"30-april"}


def test_an_enrolment_known_to_the_month_or_year_of_the_diagnosis_is_not_before_it():
    con = stage({"diagnosis": [_diagnosis()], "study_enrolment": [
        _enrolment("in-may", date(2019, 5, 1), "month"), _enrolment("in-2019", date(2019, 1, 1), "year"),
        _enrolment("same-day", DIAGNOSED), _enrolment("in-april", date(2019, 4, 1), "month"),
        _enrolment("in-2018", date(2018, 1, 1), "year")]})
    assert set(flagged(con, "XT-ENROLMENT-AFTER-DIAGNOSIS")) == {"in-april", "in-2018"}


def _review(key: str, recommended: date | None, agents: str = "crizotinib") -> dict[str, Any]:
    return {"review_id": key, "source_record_key": key, "board": "B", "recommendation_date": recommended,
            "recommended_agents": agents, "advice_followed": True, "patient_id": key}


def test_advice_followed_by_a_treatment_known_to_the_month_of_the_recommendation_or_undated_is_not_flagged():
    reviews = {"month-start": date(2019, 5, 1), "undated-start": None, "undated-advice": None,
               "earlier-month": date(2019, 4, 1), "other-drug": DIAGNOSED}
    starts = {"month-start": (date(2019, 5, 1), "month"), "undated-start": (None, None),
              "undated-advice": (date(2019, 6, 3), "day"), "earlier-month": (date(2019, 3, 1), "month"),
              "other-drug": (date(2019, 6, 3), "day")}
    con = stage({
        "tumour_board_review": [_review(k, date(2019, 5, 10) if k != "undated-advice" else None) for k in reviews],
        "treatment": [_treatment(k, start, precision, "larotrectinib" if k == "other-drug" else "crizotinib")
                      | {"patient_id": k} for k, (start, precision) in starts.items()]})
    # Started in May 2019 (maybe after the 10th), with no date, or advised on no known day: may be right.
    assert set(flagged(con, "XT-ADVICE-FOLLOWED-TREATMENT")) == {"earlier-month", "other-drug"}


def _follow_up(key: str, seen: date, status: str | None, died: date | None = None,
               died_precision: str | None = None) -> dict[str, Any]:
    return {"follow_up_id": key, "source_record_key": key, "contact_date": seen, "contact_date_precision": "day",
            "vital_status": status, "death_date": died, "death_date_precision": died_precision}


def test_a_contact_after_the_death_is_flagged_from_the_next_day_whatever_its_status_but_dead():
    died = date(2019, 6, 1)
    con = stage({"follow_up": [
        _follow_up("death-reported-later", date(2019, 6, 15), "dead", died, "day"),  # the day the centre learnt
        _follow_up("seen-on-the-day", died, "alive"),
        _follow_up("seen-next-day", date(2019, 6, 2), "alive"),
        _follow_up("seen-10-days-after", date(2019, 6, 11), "alive"),
        _follow_up("lost-after", date(2019, 7, 1), "lost"),
        _follow_up("no-status-after", date(2019, 8, 1), None)]})
    assert set(flagged(con, "XT-NOTHING-AFTER-DEATH")) == {"seen-next-day", "seen-10-days-after", "lost-after",
                                                           "no-status-after"}
