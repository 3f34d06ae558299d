"""The cross-table date rules flag what their text says on the edge cases registries have: a date known
to the month or year (stored as its period's first day) is flagged only when every day it can be is
wrong, events on the same day pass, and a missing date is not taken for a wrong one.

Each rule runs as validation runs it, in DuckDB, on a hand-made stage (tests/rule_stage.py)."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rule_stage import flagged, stage

from etl import pipeline
from etl.config import resolve_home
from etl.synth import generate
from etl.transform.values import PartialDate, age_days

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


def test_an_end_known_to_the_month_of_the_start_is_not_before_it():
    """Error rules, which hold the record back: a line (an adverse event) that ended "in June 2023" may
    have ended on the 29th, when it started; one ended in May did not."""
    june, started = date(2023, 6, 1), date(2023, 6, 29)
    ends = {"in-june": (june, "month"), "in-2023": (date(2023, 1, 1), "year"), "same-day": (started, "day"),
            "ongoing": (None, None), "in-may": (date(2023, 5, 1), "month"), "day-before": (date(2023, 6, 28), "day")}
    con = stage({
        "treatment": [_treatment(k, started) | {"end_date": end, "end_date_precision": precision}
                      for k, (end, precision) in ends.items()],
        "adverse_event": [{"ae_id": k, "source_record_key": k, "onset_date": started, "end_date": end,
                           "end_date_precision": precision} for k, (end, precision) in ends.items()]})
    treatment = flagged(con, "TRT-END-AFTER-START")
    assert set(treatment) == set(flagged(con, "AE-END-AFTER-ONSET")) == {"in-may", "day-before"}
    assert treatment["in-may"] == "ends 2023-05-01 (known to the month), starts 2023-06-29"


def test_a_recommendation_known_to_the_month_of_the_submission_is_not_before_it():
    submitted = date(2021, 3, 10)
    recommended = {"in-march": (date(2021, 3, 1), "month"), "same-day": (submitted, "day"),
                   "in-february": (date(2021, 2, 1), "month"), "day-before": (date(2021, 3, 9), "day")}
    con = stage({"tumour_board_review": [
        {"review_id": k, "source_record_key": k, "board": "B", "submission_date": submitted,
         "recommendation_date": day, "recommendation_date_precision": precision}
        for k, (day, precision) in recommended.items()]})
    assert set(flagged(con, "XT-SUBMISSION-BEFORE-RECOMMENDATION")) == {"in-february", "day-before"}


_LINE_DATES = re.compile(r'(<ItemData ItemOID="TR.STDTC" Value="(\d{4}-\d{2})-\d{2}"/>\s*'
                         r'<ItemData ItemOID="TR.ENDTC" Value=")\d{4}-\d{2}-\d{2}(")')


def _end_in_the_month_it_started(odm: Path) -> tuple[date, date]:
    """Rewrite the first treatment line's end as the month of its start (ODM's truncated 2023-06), as a
    centre that knows only the month writes it; keep the export's mtime. Returns (start, end as stored)."""
    stat = odm.stat()
    text = odm.read_text(encoding="utf-8")
    match = _LINE_DATES.search(text)
    assert match, "the synthetic ODM should carry a treatment line with a start and an end"
    odm.write_text(text[:match.start()] + match.group(1) + match.group(2) + match.group(3) + text[match.end():],
                   encoding="utf-8")
    os.utime(odm, (stat.st_atime, stat.st_mtime))
    start = date.fromisoformat(re.search(r'TR.STDTC" Value="([\d-]+)"', match.group(0)).group(1))
    return start, start.replace(day=1)


@pytest.mark.integration
def test_a_treatment_ended_in_the_month_it_started_is_loaded_with_its_precision(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=20, seed=5)
    (odm,) = (home.landing / "sacha_fr").glob("*.xml")
    start, end = _end_in_the_month_it_started(odm)
    summary = pipeline.run(home, key_value="rules-dates-key")
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        (key,) = con.execute("SELECT source_record_key FROM stage.treatment WHERE source_id = 'sacha_fr' "
                             "AND start_date = ? AND end_date = ?", [start, end]).fetchone()
        issues = con.execute("SELECT rule_id FROM dq.issue WHERE run_id = ? AND source_record_key = ?",
                             [summary.run_id, key]).fetchall()
        assert ("TRT-END-AFTER-START",) not in issues
        # Loaded, not held back as ending before it started, and known to end in that month.
        assert con.execute("SELECT end_date_precision FROM core.treatment WHERE source_record_key = ?",
                           [key]).fetchall() == [("month",)]
    finally:
        con.close()


BORN_IN_JUNE_2019 = date(2019, 6, 15)  # ages count from the 15th of the birth month (harmonise's age_days)


def _aged(key: str, on: str, day: date, precision: str) -> dict[str, Any]:
    age = {"enrolment_date": "age_at_enrolment_days", "diagnosis_date": "age_at_diagnosis_days"}[on]
    row = {"source_record_key": key, on: day, f"{on}_precision": precision, age: (day - BORN_IN_JUNE_2019).days}
    if on == "enrolment_date":
        return row | {"enrolment_id": key, "study_id": "S"}
    return row | {"diagnosis_id": key, "event_type": "initial"}


def test_a_lower_age_limit_is_judged_on_the_last_day_a_date_known_to_the_month_or_year_can_be():
    """Born in June 2019, enrolled (diagnosed) "in June 2020", "in 2020" or on 14 June 2020 (born on the 1st):
    may be 1 already; in May 2020 not yet. The upper limit is judged on the first day (never flagged wrongly)."""
    days = {"june-2020": (date(2020, 6, 1), "month"), "in-2020": (date(2020, 1, 1), "year"),
            "may-2020": (date(2020, 5, 1), "month"), "14-june-2020": (date(2020, 6, 14), "day")}
    for on, rule_id, table, limit in (("enrolment_date", "ENR-AGE-ELIGIBLE", "study_enrolment", "min_age_years"),
                                      ("diagnosis_date", "DIAG-AGE-REGISTRY", "diagnosis",
                                       "min_age_at_diagnosis_years")):
        con = stage({table: [_aged(k, on, day, precision) for k, (day, precision) in days.items()]}, {limit: 1})
        assert set(flagged(con, rule_id)) == {"may-2020"}, rule_id
    upper = stage({"study_enrolment": [_aged("june-2020", "enrolment_date", date(2020, 6, 1), "month"),
                                       _aged("july-2020", "enrolment_date", date(2020, 7, 1), "month")]},
                  {"max_age_years": 0})
    assert set(flagged(upper, "ENR-AGE-ELIGIBLE")) == {"july-2020"}  # June 2020 may be before the 1st birthday


def test_a_person_in_two_sources_is_judged_in_each_source_by_that_sources_records():
    """Linked, the person has one patient_id in both sources; a rule queries a centre only about what its
    own source says (another source's death, diagnosis or fusion is not the centre's to answer)."""
    other = {"source_id": "other"}
    con = stage({
        "follow_up": [_follow_up("died-elsewhere", date(2019, 6, 1), "dead", date(2019, 6, 1), "day") | other],
        "diagnosis": [_diagnosis(date(2019, 5, 20)) | other],
        "molecular_alteration": [{"alteration_id": "m1", "source_record_key": "m1", "alteration_type": "fusion",
                                  "gene_symbol": "EML4", "partner_gene": "ALK"} | other],
        "treatment": [_treatment("treated-after-death-elsewhere", date(2019, 7, 1))],
        "study_enrolment": [_enrolment("enrolled-before-diagnosis-elsewhere", date(2019, 5, 1))]},
        {"requires_alk_ros1": True})
    assert flagged(con, "XT-TREATMENT-NOT-AFTER-DEATH") == {}
    assert flagged(con, "XT-ENROLMENT-AFTER-DIAGNOSIS") == {}
    assert set(flagged(con, "XT-ALK-ROS1-REQUIRED")) == {"enrolled-before-diagnosis-elsewhere"}


def test_a_death_is_asked_for_its_date_only_when_no_record_of_the_source_gives_it():
    """The death form dates it, a later follow-up repeats "dead" without the date: nothing to ask. A person
    reported dead without a date in every record of the source is asked, whatever another source says."""
    con = stage({"follow_up": [
        _follow_up("death-form", date(2020, 3, 1), "dead", date(2020, 3, 1), "day"),
        _follow_up("later-follow-up", date(2021, 1, 1), "dead"),
        _follow_up("undated", date(2020, 5, 1), "dead") | {"patient_id": "p2"},
        _follow_up("undated-again", date(2021, 5, 1), "dead") | {"patient_id": "p2"},
        _follow_up("dated-elsewhere", date(2020, 5, 1), "dead", date(2020, 5, 1), "day")
        | {"patient_id": "p2", "source_id": "other"},
        _follow_up("alive", date(2020, 5, 1), "alive") | {"patient_id": "p3"}]})
    assert set(flagged(con, "FU-DEATH-DATE-WHEN-DEAD")) == {"undated", "undated-again"}



def _diagnosed_at(key: str, anchor: date, day: date, precision: str = "day") -> dict[str, Any]:
    """An initial diagnosis with its age as harmonise counts it, from the birth's anchor (values.py)."""
    return {"diagnosis_id": key, "source_record_key": key, "diagnosis_date": day, "diagnosis_date_precision": precision,
            "event_type": "initial", "age_at_diagnosis_days": age_days(PartialDate(day, precision), anchor)}


def test_an_age_limit_flags_only_an_age_surely_outside_it_whatever_day_of_the_known_birth_period():
    """Born "in 2001" (ages count from 1 July): diagnosed on 1 July 2020, the patient may have been born in
    December and be 18, within a 0-18 registry; on 1 January 2021 surely 19. Born in June 2001 (ages count
    from the 15th), diagnosed on 20 June 2020: may be born on the 30th, so 18; on 1 July 2020 surely 19.
    The lower limit alike: born "in 2019", diagnosed on 1 January 2020, may be 1 already."""
    in_2001, june_2001, in_2019 = PartialDate(date(2001, 1, 1), "year"), PartialDate(date(2001, 6, 1), "month"), \
        PartialDate(date(2019, 1, 1), "year")
    births = {"in-2001-july": (in_2001, date(2020, 7, 1)), "in-2001-january": (in_2001, date(2021, 1, 1)),
              "june-2001-20-june": (june_2001, date(2020, 6, 20)), "june-2001-1-july": (june_2001, date(2020, 7, 1)),
              "in-2019-january": (in_2019, date(2020, 1, 1)), "in-2019-december-2019": (in_2019, date(2019, 12, 31))}
    con = stage({"diagnosis": [_diagnosed_at(k, born, day) for k, (born, day) in births.items()]},
                {"min_age_at_diagnosis_years": 1, "max_age_at_diagnosis_years": 18})
    found = flagged(con, "DIAG-AGE-REGISTRY")
    assert set(found) == {"in-2001-january", "june-2001-1-july", "in-2019-december-2019"}
    assert "age at diagnosis at least 19 completed years" in str(found["in-2001-january"])
    assert "age at diagnosis at most 0 completed years" in str(found["in-2019-december-2019"])


def test_an_enrolment_age_limit_reads_the_birth_period_as_the_diagnosis_limit_does():
    """The same definition (warehouse/rule_functions.sql) for ENR-AGE-ELIGIBLE: born "in 2001", enrolled on
    1 July 2020 in a 0-18 trial may be 18; enrolled "in 2021" (from its first day) surely 19."""
    born = PartialDate(date(2001, 1, 1), "year")
    rows = [_enrolment("july-2020", date(2020, 7, 1)), _enrolment("in-2021", date(2021, 1, 1), "year")]
    rows = [r | {"age_at_enrolment_days": age_days(PartialDate(r["enrolment_date"], r["enrolment_date_precision"]),
                                                   born)} for r in rows]
    assert set(flagged(stage({"study_enrolment": rows}, {"max_age_years": 18}), "ENR-AGE-ELIGIBLE")) == {"in-2021"}
