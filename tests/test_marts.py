"""Every mart equals the same figures computed independently, in pandas, from the core tables.

The expected frames below never read a mart nor its SQL: they restate each mart's definition
(the header of its warehouse/marts/*.sql) over the core tables, and the Kaplan-Meier estimates
are recomputed with lifelines directly on per-patient times recomputed here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import duckdb
import endpoints_expected as expected
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from lifelines import KaplanMeierFitter
from marts_fixture import CORE_TABLES, MartsWarehouse, built_warehouse
from scipy.stats import binomtest

from etl.config import WAREHOUSE_SQL_DIR
from etl.load.marts import build_marts, export_parquet
from etl.load.populations import read_child_population, write_child_population
from etl.quality.sql_checks import rule_functions_sql
from etl.quality.validate import write_source_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


@pytest.fixture(scope="module")
def core(built: MartsWarehouse) -> dict[str, pd.DataFrame]:
    return built.core()


@pytest.fixture(scope="module")
def latest_export(built: MartsWarehouse) -> pd.Timestamp:
    """The last day a date in the marts can be: the latest export loaded (earlier than 1900 neither)."""
    return pd.Timestamp(built.query("SELECT max(exported_on) AS d FROM meta.source_file WHERE status = 'loaded'").d[0])


def possible_year(dates: pd.Series, latest: pd.Timestamp) -> pd.Series:
    """The year of each date that can be true (1900 to the latest export); NaN for the others, as unknown."""
    return dates.dt.year.where(dates.between(pd.Timestamp("1900-01-01"), latest))


# -- comparing frames --------------------------------------------------------------------------------

def _norm(value: Any) -> Any:
    """One spelling per value, so a DuckDB cell and a pandas cell compare equal when they mean the same."""
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(_norm(v) for v in value)
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        return round(float(value), 9)
    return value


def _rows(frame: pd.DataFrame, key: list[str], columns: Iterable[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = {}
    for record in frame.to_dict("records"):
        rows[tuple(_norm(record[k]) for k in key)] = {c: _norm(record[c]) for c in columns}
    assert len(rows) == len(frame), f"the key {key} is not unique"
    return rows


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, key: list[str],
                tolerance: dict[str, float] | None = None) -> None:
    """The mart holds exactly the expected rows (by key) with the expected values in every expected column."""
    columns = [c for c in expected.columns if c not in key]
    missing_columns = set(columns) - set(actual.columns)
    assert not missing_columns, f"mart lacks columns {sorted(missing_columns)}"
    got, want = _rows(actual, key, columns), _rows(expected, key, columns)
    missing, unexpected = sorted(set(want) - set(got), key=str), sorted(set(got) - set(want), key=str)
    assert not missing and not unexpected, (f"rows differ: {len(missing)} missing, e.g. {missing[:3]}; "
                                            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
    tolerance = tolerance or {}
    differences = []
    for row_key, expected_row in want.items():
        for column, value in expected_row.items():
            found = got[row_key][column]
            if column in tolerance and value is not None and found is not None:
                same = abs(found - value) <= tolerance[column]
            else:
                same = found == value or (isinstance(value, float) and isinstance(found, float)
                                          and math.isclose(found, value, rel_tol=1e-9, abs_tol=1e-9))
            if not same:
                differences.append(f"{row_key} {column}: mart {found!r}, expected {value!r}")
    assert not differences, f"{len(differences)} differences, e.g.\n" + "\n".join(differences[:15])


def _days(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier).dt.days


# -- the patient's first diagnosis, the shared definition of "disease" -------------------------------

EVENT_ORDER = {"initial": 0, "relapse": 1, "progression": 2}


def first_diagnoses(core: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per patient, the first diagnosis: of the initial diagnoses the one that must have come first (the earliest
    last day it can be on, of equal ones the most precise, as marts.survival chooses its origins); the relapse or
    progression that must have come first only when its last day is before that one's first day, or when no initial
    diagnosis is dated."""
    diagnosis = core["diagnosis"].assign(
        event_rank=lambda d: d.event_type.map(EVENT_ORDER).fillna(3),
        is_initial=lambda d: d.event_type == "initial", is_undated=lambda d: d.diagnosis_date.isna(),
        last_day=lambda d: _period_ends(d.diagnosis_date, d.diagnosis_date_precision),
        precision_rank=lambda d: d.diagnosis_date_precision.fillna("day").map(expected.PRECISION_RANK))
    of_kind = diagnosis.sort_values(["patient_id", "is_undated", "last_day", "precision_rank", "diagnosis_date",
                                     "event_rank", "diagnosis_id"], na_position="last").drop_duplicates(
        ["patient_id", "is_initial"])
    of_kind = of_kind.assign(before=of_kind.diagnosis_date.where(of_kind.is_initial, of_kind.last_day),
                             is_later=~of_kind.is_initial)
    ordered = of_kind.sort_values(["patient_id", "is_undated", "before", "is_later"], na_position="last")
    return ordered.drop_duplicates("patient_id").set_index("patient_id")


def known_by(core: dict[str, pd.DataFrame]) -> dict[str, list[date]]:
    """Per patient, the last day each of their diagnoses and treatment starts can be on (its day when known to the
    day): a first diagnosis known only to its month or year is placed not after one on or after its period's first
    day."""
    diagnosis, treatment = core["diagnosis"], core["treatment"]
    known = pd.concat([
        pd.DataFrame({"patient_id": diagnosis.patient_id,
                      "known_on": _period_ends(diagnosis.diagnosis_date, diagnosis.diagnosis_date_precision)}),
        pd.DataFrame({"patient_id": treatment.patient_id,
                      "known_on": _period_ends(treatment.start_date, treatment.start_date_precision)})]).dropna()
    return {p: [d.date() for d in days.known_on] for p, days in known.groupby("patient_id")}


def _period_ends(first_days: pd.Series, precisions: pd.Series) -> pd.Series:
    return pd.Series([pd.Timestamp(expected.period_end(pd.Timestamp(d).date(), p or "day")) if pd.notna(d) else pd.NaT
                      for d, p in zip(first_days, precisions.where(precisions.notna(), None), strict=True)],
                     index=first_days.index, dtype="datetime64[ns]")


def efs_event_days(core: dict[str, pd.DataFrame]) -> dict[str, list[date]]:
    """Per patient, the dates of their relapses and progressions (diagnoses, and follow-up contacts with disease status
    progression) as given: an origin known only to its month or year is placed not after one dated after its
    period's first day."""
    diagnosis, follow_up = core["diagnosis"], core["follow_up"]
    relapses = diagnosis[diagnosis.event_type.isin(["relapse", "progression"])]
    progressions = follow_up[follow_up.disease_status == "progression"]
    days = pd.concat([pd.DataFrame({"patient_id": relapses.patient_id, "day": relapses.diagnosis_date}),
                      pd.DataFrame({"patient_id": progressions.patient_id, "day": progressions.contact_date})]).dropna()
    return {p: [d.date() for d in rows.day] for p, rows in days.groupby("patient_id")}


def follow_up_start(core: dict[str, pd.DataFrame], summary: pd.DataFrame) -> pd.Series:
    """The first diagnosis, placed in its period when known only to its month or year: not before the birth,
    not after the last day a diagnosis or treatment start can be on (on or after its period's first day), nor a
    relapse or progression dated after that day, nor after the end of follow-up. summary: patient_id,
    first_diagnosis_date(_precision), follow_up_end_date."""
    patient = core["patient"].set_index("patient_id")
    known_of, events_of = known_by(core), efs_event_days(core)
    starts = []
    for patient_id, first_day, precision, end in zip(summary.patient_id, summary.first_diagnosis_date,
                                                     summary.first_diagnosis_date_precision,
                                                     summary.follow_up_end_date):
        if pd.isna(first_day):
            starts.append(pd.NaT)
            continue
        later = [d for d in known_of.get(patient_id, []) if d >= first_day.date()]
        later += [d for d in events_of.get(patient_id, []) if d > first_day.date()]
        bounds = [*later, *([end.date()] if pd.notna(end) else [])]
        born = expected.birth_first_day(patient.birth_year[patient_id], patient.birth_month[patient_id])
        starts.append(pd.Timestamp(expected.placed_date(first_day.date(), precision, born,
                                                        min(bounds) if bounds else None)))
    return pd.Series(pd.to_datetime(pd.Series(starts, dtype=object)).to_numpy(), index=summary.index)


def follow_up_end(core: dict[str, pd.DataFrame]) -> pd.Series:
    """By patient_id: the death date of a dead patient, else the last day the patient is known alive (the last
    contact, or a later diagnosis, treatment start or response assessment, as given); unknown without a contact."""
    patient = core["patient"].set_index("patient_id")
    seen = pd.concat([core["diagnosis"].set_index("patient_id").diagnosis_date,
                      core["treatment"].set_index("patient_id").start_date,
                      core["response_assessment"].set_index("patient_id").assessment_date]).dropna()
    last_seen = seen.groupby(level=0).max().reindex(patient.index)
    alive_to = patient.last_contact_date.where(patient.last_contact_date.isna(),
                                               pd.concat([patient.last_contact_date, last_seen], axis=1).max(axis=1))
    dead_on = patient.death_date.where(patient.vital_status == "dead")
    return dead_on.fillna(alive_to)


def test_patient_summary(built, core, latest_export):
    patient = core["patient"].set_index("patient_id")
    first = first_diagnoses(core)
    diagnosis, sources, enrolment = core["diagnosis"], core["patient_source"], core["study_enrolment"]
    birth_year = patient.birth_year.where(patient.birth_year.between(1900, latest_export.year))
    expected = pd.DataFrame({"patient_id": patient.index, "sex": patient.sex, "birth_year": birth_year,
                             "country": patient.country}).reset_index(drop=True)
    fd = first.reindex(expected.patient_id)
    expected["first_diagnosis_date"] = fd.diagnosis_date.to_numpy()
    expected["first_diagnosis_event_type"] = fd.event_type.to_numpy()
    expected["age_at_first_diagnosis_days"] = fd.age_at_diagnosis_days.to_numpy()
    expected["age_at_first_diagnosis_years"] = (fd.age_at_diagnosis_days / 365.25).to_numpy()
    for column in ("icdo3_morphology", "iccc3_code", "iccc3_group", "iccc3_subgroup", "is_very_rare"):
        expected[column] = fd[column].to_numpy()
    relapses = diagnosis[diagnosis.event_type.isin(["relapse", "progression"])].groupby("patient_id").size()
    expected["n_relapses"] = expected.patient_id.map(relapses).fillna(0).astype(int)
    expected["n_sources"] = patient.n_sources.to_numpy()
    def sorted_set(frame: pd.DataFrame, column: str) -> pd.Series:
        lists = frame.dropna(subset=[column]).groupby("patient_id")[column].agg(lambda s: sorted(set(s)))
        return expected.patient_id.map(lists).map(lambda v: v if isinstance(v, list) else [])

    expected["sources"] = sorted_set(sources, "source_id")
    expected["centres"] = sorted_set(sources, "centre_id")
    expected["studies"] = sorted_set(enrolment, "study_id")
    expected["first_enrolment_date"] = expected.patient_id.map(enrolment.groupby("patient_id").enrolment_date.min())
    for column in ("vital_status", "death_date", "last_contact_date"):
        expected[column] = patient[column].to_numpy()
    expected["follow_up_end_date"] = expected.patient_id.map(follow_up_end(core)).to_numpy()
    expected["first_diagnosis_date_precision"] = fd.diagnosis_date_precision.fillna("day").where(
        fd.diagnosis_date.notna()).to_numpy()
    expected["follow_up_days"] = _days(expected.follow_up_end_date, follow_up_start(core, expected))
    expected["follow_up_years"] = expected.follow_up_days / 365.25
    mart = built.query("SELECT * FROM marts.patient_summary")
    assert len(mart) == len(patient)
    assert_same(mart, expected, ["patient_id"],
                tolerance={"age_at_first_diagnosis_years": 0.05 + 1e-9, "follow_up_years": 0.005 + 1e-9})
    # The synthetic persons include linked ones, dead ones and ones without follow-up: every branch is exercised.
    assert (mart.n_sources > 1).any() and (mart.vital_status == "dead").any() and mart.follow_up_days.isna().any()


# -- board advice ------------------------------------------------------------------------------------

def board_reviews(core: dict[str, pd.DataFrame], latest: pd.Timestamp) -> pd.DataFrame:
    """The per-review endpoints of the target board, from the core tables."""
    review = core["tumour_board_review"].copy()
    enrolment = core["study_enrolment"].groupby(["patient_id", "study_id"]).enrolment_date.min()
    review["enrolment_date"] = [enrolment.get((p, b), pd.NaT) for p, b in zip(review.patient_id, review.board)]
    review["enrolment_date"] = pd.to_datetime(review.enrolment_date)
    treatment = core["treatment"].dropna(subset=["start_date"])
    treatment = treatment.assign(precision=treatment.start_date_precision.fillna("day"))
    treatment["last_day"] = _period_ends(treatment.start_date, treatment.precision)
    treatments = treatment.groupby("patient_id")
    starts, advised = [], []
    for patient_id, recommended, agents in zip(review.patient_id, review.recommendation_date,
                                               review.recommended_agents):
        given = treatments.get_group(patient_id) if patient_id in treatments.groups else treatment.iloc[:0]
        # started on or after the recommendation: not surely before it (the last day it can be on is not)
        after = given[given.last_day >= recommended] if pd.notna(recommended) else given.iloc[:0]
        starts.append(_came_first(after))
        wanted = set(agents.split("|")) if isinstance(agents, str) else set()
        advised.append(_came_first(after[after.drug_name.isin(wanted)]))
    review["treatment_start_date"] = pd.to_datetime(pd.Series(starts, index=review.index, dtype="object"))
    review["advised_treatment_start_date"] = pd.to_datetime(pd.Series(advised, index=review.index, dtype="object"))
    disease = first_diagnoses(core).iccc3_subgroup
    review["iccc3_subgroup"] = review.patient_id.map(disease).fillna("unknown")
    review["recommendation_year"] = possible_year(review.recommendation_date, latest)
    review["days_enrolment_to_submission"] = _days(review.submission_date, review.enrolment_date)
    review["days_submission_to_recommendation"] = _days(review.recommendation_date, review.submission_date)
    review["days_enrolment_to_recommendation"] = _days(review.recommendation_date, review.enrolment_date)
    # none from a start known only to its month or year that may precede the recommendation (its first day does)
    review["days_recommendation_to_treatment"] = _days(review.treatment_start_date, review.recommendation_date).where(
        review.treatment_start_date >= review.recommendation_date)
    review["days_recommendation_to_advised_treatment"] = _days(
        review.advised_treatment_start_date, review.recommendation_date).where(
        review.advised_treatment_start_date >= review.recommendation_date)
    review["days_enrolment_to_treatment"] = _days(review.treatment_start_date, review.enrolment_date)
    return review


def _came_first(treatments: pd.DataFrame) -> Any:
    """The start, of treatments (start_date, precision), that must have come first (expected.came_first)."""
    starts = list(zip(treatments.start_date, treatments.precision))
    return min(starts, key=lambda start: expected.came_first(*start))[0] if starts else pd.NaT


BOARD_ADVICE_COLUMNS = [
    "review_id", "patient_id", "board", "iccc3_subgroup", "enrolment_date", "submission_date", "recommendation_date",
    "recommendation_year", "priority_rank", "recommendation_type", "recommended_agents", "advice_followed",
    "reason_not_followed", "treatment_start_date", "advised_treatment_start_date", "days_enrolment_to_submission",
    "days_submission_to_recommendation", "days_enrolment_to_recommendation", "days_recommendation_to_treatment",
    "days_recommendation_to_advised_treatment", "days_enrolment_to_treatment"]


def test_board_advice_per_review(built, core, latest_export):
    expected = board_reviews(core, latest_export)
    mart = built.query("SELECT * FROM marts.board_advice")
    assert_same(mart, expected[BOARD_ADVICE_COLUMNS], ["review_id"])
    key = ["person", "board", "submission_date", "recommendation_date"]
    groups = mart.rename(columns={"patient_id": "person"})[[*key, "advice_group"]].drop_duplicates()
    assert_same(groups, core_board(core)[[*key, "advice_group"]], key)
    assert mart.days_recommendation_to_treatment.notna().sum() > 20
    assert (mart.days_recommendation_to_treatment.dropna() >= 0).all()


def test_board_advice_summary_by_disease_and_year(built, core, latest_export):
    review = board_reviews(core, latest_export)
    # A recommendation date that cannot be true counts as none.
    review["recommended"] = review.recommendation_date.where(review.recommendation_year.notna())
    cases = (review.groupby(["patient_id", "board", "submission_date"], dropna=False)
             .agg(iccc3_subgroup=("iccc3_subgroup", "first"), recommended=("recommended", "min"),
                  is_advised=("recommendation_type", lambda s: bool((s.fillna("none") != "none").any())),
                  is_follow_known=("advice_followed", lambda s: bool(s.notna().any())),
                  is_followed=("advice_followed", lambda s: bool((s == True).any())))  # noqa: E712
             .reset_index())
    cases = cases[cases.recommended.notna()].assign(recommendation_year=lambda c: c.recommended.dt.year)
    rows = []
    for breakdown, dims in (("subgroup x year", ["iccc3_subgroup", "recommendation_year"]),
                            ("subgroup", ["iccc3_subgroup"]), ("year", ["recommendation_year"]), ("overall", [])):
        groups = cases.groupby(dims) if dims else [((), cases)]
        for values, group in groups:
            values = values if isinstance(values, tuple) else (values,)
            advised = group[group.is_advised]
            known = advised[advised.is_follow_known]
            followed = int(known.is_followed.sum())
            labels = dict(zip(dims, values))
            rows.append({"breakdown": breakdown, "iccc3_subgroup": labels.get("iccc3_subgroup"),
                         "recommendation_year": labels.get("recommendation_year"), "n_cases": len(group),
                         "n_advised": len(advised), "n_follow_known": len(known), "n_followed": followed,
                         "n_not_followed": len(known) - followed,
                         "proportion_followed": followed / len(known) if len(known) else None})
    mart = built.query("SELECT * FROM marts.board_advice_summary")
    assert_same(mart, pd.DataFrame(rows), ["breakdown", "iccc3_subgroup", "recommendation_year"])
    overall = mart[mart.breakdown == "overall"].iloc[0]
    assert overall.n_cases == core["tumour_board_review"].patient_id.nunique()  # one case per patient here
    assert 0 < overall.proportion_followed < 1


# -- actionable events, adverse events, response -----------------------------------------------------

def test_actionable_events(built, core):
    molecular = core["molecular_alteration"].copy()
    # The disease of a patient in core.patient (patient_summary's grain): an orphan record, whose
    # demographics were held back, has no known disease yet.
    known = first_diagnoses(core).iccc3_subgroup
    known = known[known.index.isin(core["patient"].patient_id)]
    molecular["iccc3_subgroup"] = molecular.patient_id.map(known).fillna("unknown")
    kind = molecular.alteration_type
    molecular["event_class"] = np.where(kind == "fusion", "fusion", np.where(kind == "surface_marker",
                                                                              "surface_marker", "gene"))
    fusion = molecular.gene_symbol + "::" + molecular.partner_gene
    molecular["event"] = np.where(kind == "fusion", fusion.fillna(molecular.alteration),
                                  np.where(kind == "surface_marker", molecular.alteration.fillna(molecular.gene_symbol),
                                           molecular.gene_symbol.fillna(molecular.alteration)))
    molecular["event"] = molecular.event.fillna("unknown")
    profiled = molecular.groupby(["source_id", "iccc3_subgroup"]).patient_id.nunique().rename("n_patients_profiled")
    actionable = molecular[molecular.is_actionable == True]  # noqa: E712
    expected = (actionable.groupby(["source_id", "iccc3_subgroup", "event_class", "event"])
                .agg(n_events=("patient_id", "size"), n_patients=("patient_id", "nunique")).reset_index()
                .join(profiled, on=["source_id", "iccc3_subgroup"]))
    expected["frequency"] = expected.n_patients / expected.n_patients_profiled
    mart = built.query("SELECT * FROM marts.actionable_events")
    assert_same(mart, expected, ["source_id", "iccc3_subgroup", "event_class", "event"])
    assert set(mart.event_class) == {"gene", "fusion", "surface_marker"}


def test_adverse_events(built, core):
    events, treatment = core["adverse_event"], core["treatment"]
    exposure = treatment[treatment.source_id.isin(set(events.source_id))].copy()
    exposure["access_route"] = exposure.access_route.fillna("unknown")
    # an event counts for every drug of its treatment's line in its source (a combination's for each of its drugs)
    against = events.merge(exposure[["treatment_id", "source_id", "line_number"]].rename(
        columns={"treatment_id": "against", "line_number": "line"}), left_on=["treatment_id", "source_id"],
        right_on=["against", "source_id"])
    lines = against.merge(exposure, on=["source_id", "patient_id"], suffixes=("", "_given"))
    lines = lines[(lines.treatment_id_given == lines.against) | (lines.line_number == lines.line)]
    attributed = lines.drop_duplicates(["ae_id", "drug_name", "access_route"])
    attributed["is_grade3plus"] = attributed.ctcae_grade >= 3
    attributed["is_serious"] = attributed.is_serious.fillna(False).astype(bool)
    rows = []
    for (drug, route), exposed in exposure.groupby(["drug_name", "access_route"]):
        harmed = attributed[(attributed.drug_name == drug) & (attributed.access_route == route)]
        n_exposed = exposed.patient_id.nunique()
        grade3 = harmed[harmed.is_grade3plus == True]  # noqa: E712
        serious = harmed[harmed.is_serious]
        rows.append({"drug_name": drug, "access_route": route, "n_patients_exposed": n_exposed,
                     "n_events": len(harmed), "n_events_grade3plus": len(grade3),
                     "n_patients_grade3plus": grade3.patient_id.nunique(),
                     "proportion_grade3plus": grade3.patient_id.nunique() / n_exposed,
                     "n_serious_events": len(serious), "n_patients_serious": serious.patient_id.nunique(),
                     "proportion_serious": serious.patient_id.nunique() / n_exposed})
    mart = built.query("SELECT * FROM marts.adverse_events")
    assert_same(mart, pd.DataFrame(rows), ["drug_name", "access_route"])
    assert mart.n_patients_grade3plus.sum() > 0 and set(mart.access_route) >= {"off_label", "compassionate"}


COMPLETE, PARTIAL = {"CR", "CRi"}, {"PR", "MLFS"}


def core_board(core: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The board submissions and their advice groups, restated from core (endpoints_expected.submissions)."""
    reviews = core["tumour_board_review"].rename(columns={"patient_id": "person"})
    reviews["advice_followed"] = [None if pd.isna(v) else bool(v) for v in reviews.advice_followed]
    return expected.submissions(reviews)


def core_person_lines(core: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each person's line once, whichever sources report it, restated from core."""
    treatment = core["treatment"].rename(columns={"patient_id": "person"})
    treatment["source_line"] = [str(int(n)) if pd.notna(n) else t
                                for n, t in zip(treatment.line_number, treatment.treatment_id)]
    treatment["treatment_key"] = treatment.treatment_id
    return expected.person_lines(treatment)


def core_response_lines(core: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """marts.response_line restated from core: each person's line once, whichever sources report it."""
    assessed = core["response_assessment"].rename(columns={"treatment_id": "treatment_key", "response_id": "order"})
    return expected.response_lines(core_person_lines(core), assessed, core_board(core))


def test_treatment_lines_from_core(built, core):
    answered = expected.answered_lines(core_person_lines(core), core_board(core))
    wanted = pd.DataFrame({"treatment_ids": [tuple(sorted(keys)) for keys in answered.treatment_keys],
                           "patient_id": answered.person, "regimen": answered.drugs.map(expected.regimen),
                           "start_date": answered.start_date, "start_date_precision": answered.start_date_precision,
                           "n_sources": answered.n_sources, "advice_group": answered.advice_group,
                           "recommendation_date": answered.recommendation_date})
    mart = built.query("SELECT * FROM marts.treatment_line")
    assert_same(mart, wanted, ["treatment_ids"])
    assert not mart.line_id.duplicated().any()
    # Every treatment in one line, and the assessed lines are these lines.
    assert sorted(t for ids in mart.treatment_ids for t in ids) == sorted(core["treatment"].treatment_id)
    assessed = built.query("SELECT DISTINCT line_id, patient_id, regimen, start_date, n_sources, advice_group "
                           "FROM marts.response_line")
    assert len(assessed) == len(assessed.merge(mart, on=list(assessed.columns)))


def test_response_by_regimen_and_advice(built, core):
    assessed = core_response_lines(core)
    rows = []
    for (regimen, advice, timepoint), group in assessed.groupby(["regimen", "advice_group", "timepoint"]):
        response = group.response
        counts = {"n_complete": response.isin(COMPLETE).sum(), "n_partial": response.isin(PARTIAL).sum(),
                  "n_stable": (response == "SD").sum(), "n_progression": (response == "PD").sum(),
                  "n_no_response": (response == "NR").sum()}
        n = len(group)
        responders = counts["n_complete"] + counts["n_partial"]
        interval = binomtest(int(responders), n).proportion_ci(confidence_level=0.95, method="wilson")
        rows.append({"regimen": regimen, "advice_group": advice, "timepoint": timepoint, "n_assessed": n, **counts,
                     "n_not_evaluable": n - sum(counts.values()), "n_objective_response": responders,
                     "orr": responders / n, "orr_ci_lower": interval.low, "orr_ci_upper": interval.high})
    mart = built.query("SELECT * FROM marts.response")
    assert_same(mart, pd.DataFrame(rows), ["regimen", "advice_group", "timepoint"],
                tolerance={"orr_ci_lower": 1e-9, "orr_ci_upper": 1e-9})
    assert set(mart.advice_group) == {"followed", "not_followed", "not_compared"}
    assert (mart.regimen.str.contains(" + ", regex=False)).any(), "combinations are one regimen"


def test_the_wilson_interval_is_held_to_0_1_and_null_without_a_denominator():
    con = duckdb.connect()
    con.execute(rule_functions_sql())  # period_end, which mart_functions.sql's placed_date reads
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())  # which its table macros read
    write_source_params(con, {})  # and the sources' parameters (incidence_registered())
    con.execute((WAREHOUSE_SQL_DIR / "mart_functions.sql").read_text())
    rows = con.execute("SELECT n, wilson_lower(0.0, n), wilson_upper(1.0, n) FROM range(1, 200) AS t(n)").fetchall()
    assert all(low == 0.0 and high == 1.0 for _, low, high in rows), [r for r in rows if r[1] != 0.0 or r[2] != 1.0]
    assert con.execute("SELECT wilson_lower(0.5, 0), wilson_upper(NULL, 5)").fetchone() == (None, None)


def test_board_response_from_core(built, core):
    answered = expected.answered_lines(core_person_lines(core), core_board(core))
    wanted = expected.board_response(core_board(core), answered, core_response_lines(core))
    mart = built.query("SELECT * FROM marts.board_response")
    assert_same(mart, wanted, ["advice_group", "timepoint"], tolerance={"orr_ci_lower": 1e-9, "orr_ci_upper": 1e-9})


# -- survival ----------------------------------------------------------------------------------------

def survival_times(core: dict[str, pd.DataFrame], population_based: set[str],
                   exports: dict[tuple[str, str], date | None]) -> pd.DataFrame:
    """Per patient and origin: OS and EFS times and events, restated from the core tables. population_based: the
    sources with the parameter population_based, whose patients have the origin diagnosis; exports: the day of the
    export each file's records are in now (endpoints_expected.export_now)."""
    diagnosis, patient = core["diagnosis"], core["patient"].set_index("patient_id")
    relapses = diagnosis[diagnosis.event_type.isin(["relapse", "progression"]) & diagnosis.diagnosis_date.notna()]
    enrolment = core["study_enrolment"].dropna(subset=["enrolment_date"])

    ended = follow_up_end(core)
    dead_on = ended.where(patient.vital_status == "dead")
    ends = {p: (expected.birth_first_day(y, m), ended[p].date() if pd.notna(ended[p]) else None)
            for p, y, m in zip(patient.index, patient.birth_year, patient.birth_month)}

    event_days = efs_event_days(core)

    def earliest(rows: pd.DataFrame, day: str, origin: str) -> pd.DataFrame:
        """Each patient's date that must have come first, placed in its period when partial, not after a relapse
        or progression dated after its first day."""
        first = expected.first_given(pd.DataFrame({"person": rows.patient_id, "first_day": rows[day],
                                                   "precision": rows[f"{day}_precision"], "tie": ""}))
        placed = []
        for person, d, p in zip(first.person, first.first_day, first.precision):
            born, end = ends.get(person, (None, None))
            placed.append(expected.placed_date(d.date(), p, born,
                                               expected.origin_bound(d.date(), end, event_days.get(person, []))))
        return pd.DataFrame({"patient_id": first.person, "origin_date": pd.to_datetime(pd.Series(placed)),
                             "origin_date_precision": first.precision, "origin": origin})

    origins = pd.concat([earliest(relapses, "diagnosis_date", "relapse"),
                         earliest(enrolment, "enrolment_date", "enrolment")])
    # From the recommendation, grouped by that submission's advice; who died before it is left out.
    recommended = expected.recommendation_origin(core_board(core), dead_on, ends, event_days)
    advice_of = dict(zip(recommended.person, recommended.advice_group))
    origins = pd.concat([origins, pd.DataFrame({"patient_id": recommended.person, "origin": "recommendation",
                                                "origin_date": recommended.origin_date,
                                                "origin_date_precision": recommended.origin_date_precision})])
    # From the first malignant initial diagnosis, of the patients a population-based registry registered.
    registered = set(diagnosis.patient_id[diagnosis.source_id.isin(population_based)
                                          & (diagnosis.event_type == "initial")])
    diagnosed = expected.diagnosis_origin(diagnosis.rename(columns={"patient_id": "person"}), registered, dead_on,
                                          ends, known_by(core), event_days)
    origins = pd.concat([origins, pd.DataFrame({"patient_id": diagnosed.person, "origin": "diagnosis",
                                                "origin_date": diagnosed.origin_date,
                                                "origin_date_precision": diagnosed.origin_date_precision})])
    origins = origins[origins.patient_id.isin(patient.index)]  # vital status lives in core.patient
    follow_up = core["follow_up"]
    progressions = follow_up[(follow_up.disease_status == "progression") & follow_up.contact_date.notna()]
    columns = ["patient_id", "event_date", "precision", "event_type", "rank", "source_id", "source_file_sha256"]
    disease_events = pd.concat([
        relapses.assign(event_date=relapses.diagnosis_date, precision=relapses.diagnosis_date_precision,
                        rank=np.where(relapses.event_type == "relapse", 0, 1)),
        progressions.assign(event_date=progressions.contact_date, precision=progressions.contact_date_precision,
                            event_type="progression", rank=1),
    ])[columns]
    events_of = {p: e for p, e in disease_events.groupby("patient_id")}
    first = first_diagnoses(core)
    rows = []
    for patient_id, origin, origin_date, precision in zip(origins.patient_id, origins.origin, origins.origin_date,
                                                          origins.origin_date_precision):
        person = patient.loc[patient_id]
        dead = person.vital_status == "dead"
        death = ended[patient_id] if dead else pd.NaT
        os_end = ended[patient_id]
        mine = events_of.get(patient_id, disease_events.iloc[:0])
        died_on = death.date() if dead and pd.notna(death) else None
        candidates = [(d.date(), p or "day", t, r,
                       expected.event_last_day(d.date(), p or "day", died_on, exports.get((source, sha))))
                      for d, p, t, r, source, sha in zip(mine.event_date,
                                                         mine.precision.where(mine.precision.notna(), None),
                                                         mine.event_type, mine["rank"], mine.source_id,
                                                         mine.source_file_sha256) if d > origin_date]
        if died_on is not None:
            candidates.append((died_on, "day", "death", 2, died_on))
        placed = expected.first_efs_event(candidates)
        event = (pd.Timestamp(placed[1]), 0, placed[0]) if placed else ((pd.NaT, 2, "death") if dead else None)
        efs_end = event[0] if event else ended[patient_id]
        group = first.iccc3_group.get(patient_id)
        rows.append({
            "patient_id": patient_id, "origin": origin, "origin_date": origin_date, "origin_date_precision": precision,
            "iccc3_group": group if isinstance(group, str) else "unknown",
            "advice_group": advice_of[patient_id] if origin == "recommendation" else None,
            "os_event": bool(dead), "os_end_date": os_end,
            "os_days": (os_end - origin_date).days if pd.notna(os_end) and os_end >= origin_date else None,
            "efs_event": event is not None, "efs_event_type": event[2] if event else None, "efs_end_date": efs_end,
            "efs_days": (efs_end - origin_date).days if pd.notna(efs_end) and efs_end >= origin_date else None,
        })
    times = pd.DataFrame(rows)
    # A living patient is censored not before a relapse or progression they lived through, from any origin.
    lived_to = times[times.efs_event & ~times.os_event].groupby("patient_id").efs_end_date.max()
    later = ~times.os_event & times.os_end_date.notna() & (times.patient_id.map(lived_to) > times.os_end_date)
    times.loc[later, "os_end_date"] = times.patient_id[later].map(lived_to)
    times.loc[later, "os_days"] = [(end - start).days if end >= start else None
                                   for end, start in zip(times.os_end_date[later], times.origin_date[later])]
    return times


@pytest.fixture(scope="module")
def times(built: MartsWarehouse, core: dict[str, pd.DataFrame]) -> pd.DataFrame:
    population_based = built.query("SELECT source_id FROM stage.source_params WHERE population_based")
    exports = expected.export_now(built.query("SELECT * FROM meta.source_file"))
    return survival_times(core, set(population_based.source_id), exports)


def test_survival_times_per_patient(built, times):
    mart = built.query("SELECT * FROM marts.survival")
    assert_same(mart, times, ["patient_id", "origin"])
    assert set(mart.origin) == {"relapse", "enrolment", "recommendation", "diagnosis"}
    assert mart.efs_event_type.notna().any()
    diagnosed = mart[mart.origin == "diagnosis"]
    assert diagnosed.os_event.any() and (diagnosed.origin_date_precision != "day").any()


def _groups(times: pd.DataFrame) -> Iterable[tuple[tuple[str, str, str, str], pd.DataFrame, str, str]]:
    for origin in ("relapse", "enrolment", "recommendation", "diagnosis"):
        for endpoint, days, event in (("OS", "os_days", "os_event"), ("EFS", "efs_days", "efs_event")):
            known = times[(times.origin == origin) & times[days].notna()]
            yield (origin, endpoint, "all", "all"), known, days, event
            for grouping in ("iccc3_group", "advice_group"):
                for value, members in known.groupby(grouping):
                    yield (origin, endpoint, grouping, value), members, days, event


def test_kaplan_meier_estimates_equal_lifelines_on_the_per_patient_times(built, times):
    rows = []
    for (origin, endpoint, grouping, value), members, days, event in _groups(times):
        fitter = KaplanMeierFitter().fit(members[days].astype(float), members[event].astype(bool))
        table, bounds = fitter.event_table, fitter.confidence_interval_survival_function_
        for time in table.index:
            rows.append({"origin": origin, "endpoint": endpoint, "grouping": grouping, "group_value": value,
                         "time_days": float(time), "n_at_risk": table.at[time, "at_risk"],
                         "n_events": table.at[time, "observed"], "n_censored": table.at[time, "censored"],
                         "survival": fitter.survival_function_.iloc[:, 0][time],
                         "ci_lower": bounds.iloc[:, 0][time], "ci_upper": bounds.iloc[:, 1][time]})
    mart = built.query("SELECT * FROM marts.survival_km")
    assert_same(mart, pd.DataFrame(rows), ["origin", "endpoint", "grouping", "group_value", "time_days"])


def test_survival_landmarks_equal_lifelines(built, times):
    rows = []
    for (origin, endpoint, grouping, value), members, days, event in _groups(times):
        durations = members[days].astype(float)
        fitter = KaplanMeierFitter().fit(durations, members[event].astype(bool))
        for years, landmark in ((1, 365), (2, 730), (3, 1096), (5, 1826)):
            at_risk = int((durations >= landmark).sum())
            # beyond the last follow-up: defined only when an event took the curve to 0
            known = at_risk > 0 or fitter.survival_function_.iloc[-1, 0] == 0
            bounds = fitter.confidence_interval_survival_function_
            step = bounds[bounds.index <= landmark].iloc[-1]
            rows.append({"origin": origin, "endpoint": endpoint, "grouping": grouping, "group_value": value,
                         "years": years, "time_days": landmark, "n_patients": len(members), "n_at_risk": at_risk,
                         "survival": float(fitter.predict(landmark)) if known else None,
                         "ci_lower": float(step.iloc[0]) if known else None,
                         "ci_upper": float(step.iloc[1]) if known else None})
    mart = built.query("SELECT * FROM marts.survival_landmark")
    assert_same(mart, pd.DataFrame(rows), ["origin", "endpoint", "grouping", "group_value", "years"])
    os_all = mart[(mart.origin == "enrolment") & (mart.endpoint == "OS") & (mart.grouping == "all")]
    assert os_all.survival.is_monotonic_decreasing and (os_all.ci_lower <= os_all.survival).all()


EDGE_CASES = {  # durations, events: what a registry's follow-up can hand the estimator
    "ties, censored at an event time": ([5, 5, 5, 8, 8, 12, 20, 20], [1, 1, 0, 1, 0, 1, 0, 1]),
    "everyone dies": ([3, 7, 7, 30], [1, 1, 1, 1]),
    "nobody dies": ([10, 400, 800], [0, 0, 0]),
    "one patient": ([365], [1]),
    "deaths on day 0": ([0, 0, 4, 900, 2000], [1, 0, 1, 0, 1]),
    "a negative time (an event before the origin)": ([-3, 2, 2, 50], [1, 0, 1, 1]),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_kaplan_meier_is_bit_for_bit_lifelines_at_the_edges(case):
    from etl.load.survival import kaplan_meier

    durations, events = EDGE_CASES[case]
    times = pd.DataFrame({"origin": "enrolment", "os_days": durations, "os_event": events,
                          "efs_days": np.nan, "efs_event": False, "iccc3_group": "IX", "advice_group": None})
    estimates = kaplan_meier(times)
    steps = estimates["kaplan_meier_steps"]
    steps = steps[(steps.grouping == "all") & (steps.endpoint == "OS")]
    fitter = KaplanMeierFitter().fit(pd.Series(durations, dtype=float), pd.Series(events, dtype=bool))
    table, bounds = fitter.event_table, fitter.confidence_interval_survival_function_
    assert steps.time_days.tolist() == table.index.astype(float).tolist()
    assert steps.n_at_risk.tolist() == table.at_risk.tolist() and steps.n_events.tolist() == table.observed.tolist()
    assert steps.n_censored.tolist() == table.censored.tolist()
    assert steps.survival.tolist() == fitter.survival_function_.iloc[:, 0].tolist()  # equal, not close
    assert steps.ci_lower.tolist() == bounds.iloc[:, 0].tolist()
    assert steps.ci_upper.tolist() == bounds.iloc[:, 1].tolist()
    marks = estimates["kaplan_meier_landmarks"]
    for mark in marks[(marks.grouping == "all") & (marks.endpoint == "OS")].itertuples():
        if mark.n_at_risk:
            assert mark.survival == fitter.predict(mark.time_days)
        elif fitter.survival_function_.iloc[-1, 0] == 0:  # an event took the last patient: 0 for good
            assert (mark.survival, mark.ci_lower, mark.ci_upper) == (0.0, 0.0, 0.0)
        else:  # beyond a censored last follow-up the curve is not defined
            assert pd.isna(mark.survival)
    # A group is as its own fit: the ICCC-3 group holds everyone here.
    by_group = estimates["kaplan_meier_steps"]
    assert by_group[by_group.grouping == "iccc3_group"].survival.tolist() == steps.survival.tolist()


# -- registry activity -------------------------------------------------------------------------------

def test_registry_activity(built, core, latest_export):
    enrolment = core["study_enrolment"].copy()
    # A date that cannot be true (before 1900, after the latest export) counts as unknown.
    possible = enrolment.enrolment_date.between(pd.Timestamp("1900-01-01"), latest_export)
    enrolment["enrolment_date"] = enrolment.enrolment_date.where(possible)
    country = core["patient"].set_index("patient_id").country
    enrolment["country"] = enrolment.patient_id.map(country).fillna("unknown")
    enrolment["centre_id"] = enrolment.centre_id.fillna("unknown")
    enrolment["registration_year"] = enrolment.enrolment_date.dt.year
    diagnosis = core["diagnosis"]
    diagnosis = diagnosis[diagnosis.diagnosis_date >= pd.Timestamp("1900-01-01")]
    days = []
    # Dates known to the month or year placed mid-period: a diagnosis not after the registration's last day (the
    # latest export's at most), which it must not be surely after; the registration not before the diagnosis.
    for patient_id, source_id, registered, given in zip(enrolment.patient_id, enrolment.source_id,
                                                       enrolment.enrolment_date, enrolment.enrolment_date_precision):
        if pd.isna(registered):
            days.append(None)
            continue
        last = min(expected.period_end(registered.date(), given), latest_export.date())
        mine = diagnosis[(diagnosis.patient_id == patient_id) & (diagnosis.source_id == source_id)
                         & (diagnosis.diagnosis_date.dt.date <= last)]
        placed = [(expected.placed_date(d.date(), p, None, last), d.date()) for d, p
                  in zip(mine.diagnosis_date, mine.diagnosis_date_precision)]
        if not placed:
            days.append(None)
            continue
        diagnosed, first = max(placed)
        days.append((expected.placed_date(registered.date(), given, first, last) - diagnosed).days)
    enrolment["days"] = pd.Series(days, index=enrolment.index, dtype="float")
    rows = []
    for (study, centre, nation, year), group in enrolment.groupby(["study_id", "centre_id", "country",
                                                                    "registration_year"], dropna=False):
        known = group.days.dropna()
        rows.append({"study_id": study, "centre_id": centre, "country": nation, "registration_year": year,
                     "n_registrations": len(group), "n_patients": group.patient_id.nunique(),
                     "n_with_diagnosis_date": len(known),
                     "days_to_registration_p25": known.quantile(0.25) if len(known) else None,
                     "days_to_registration_median": known.median() if len(known) else None,
                     "days_to_registration_p75": known.quantile(0.75) if len(known) else None})
    mart = built.query("SELECT * FROM marts.registry_activity")
    assert_same(mart, pd.DataFrame(rows), ["study_id", "centre_id", "country", "registration_year"])
    assert mart.n_registrations.sum() == len(core["study_enrolment"])


# -- the marts as Parquet ----------------------------------------------------------------------------

def test_parquet_export_is_one_complete_set_behind_a_current_link(built, tmp_path):
    marts_dir = tmp_path / "marts"
    first = export_parquet(built.warehouse, marts_dir)
    second = export_parquet(built.warehouse, marts_dir)
    current = marts_dir / "current"
    assert current.is_symlink() and current.resolve() == second[0].parent != first[0].parent
    names = set(built.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts'").table_name)
    assert {p.stem for p in second} == names
    manifest = json.loads((current / "_manifest.json").read_text())
    for path in second:
        table = pq.read_table(current / path.name)
        assert table.num_rows == manifest["rows"][path.stem]
        assert table.schema.metadata[b"run_id"].decode() == manifest["run_id"]
    mart = built.query("SELECT * FROM marts.board_advice_summary")
    exported = pd.read_parquet(current / "board_advice_summary.parquet")
    pd.testing.assert_frame_equal(exported, mart, check_dtype=False)
    for _ in range(3):
        export_parquet(built.warehouse, marts_dir)
    assert len([p for p in (marts_dir / "runs").iterdir()]) == 3  # older sets are pruned
    assert not [p for p in marts_dir.rglob(".*") if p.name != ".current"]  # no partial leftovers
    assert os.path.realpath(current).startswith(str((marts_dir / "runs").resolve()))


# -- the definitions' edge cases, on a hand-made warehouse of two patients ---------------------------

def _tiny_warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for ddl in ("core.sql", "meta.sql"):  # the marts read the latest export date from meta.source_file
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    lineage = {"source_id": "src", "source_file_sha256": "0" * 64, "run_id": "r1"}

    def insert(table: str, **values: Any) -> None:
        row = {**lineage, "source_record_key": f"{table}-{len(values)}-{sorted(values.items())}", **values}
        con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))

    # P1 relapsed, died on an unknown date (last contact 2021-06-01); a progression seen on the relapse day.
    insert("patient", patient_id="P1", sex="female", vital_status="dead", last_contact_date="2021-06-01", n_sources=1)
    insert("patient_source", patient_id="P1", source_patient_pseudonym="s1", centre_id="C1", link_method="exact")
    insert("diagnosis", diagnosis_id="d1", patient_id="P1", event_type="initial", diagnosis_date="2020-01-01",
           iccc3_group="III", iccc3_subgroup="III(b)")
    insert("diagnosis", diagnosis_id="d2", patient_id="P1", event_type="relapse", diagnosis_date="2020-06-01",
           iccc3_group="III", iccc3_subgroup="III(b)")
    insert("follow_up", follow_up_id="f1", patient_id="P1", contact_date="2020-06-01", disease_status="progression")
    insert("study_enrolment", enrolment_id="e1", patient_id="P1", study_id="SACHA", enrolment_date="2020-06-05")
    # P2: the board advised drug a or b; a combination b + c started the very day of the recommendation.
    insert("patient", patient_id="P2", vital_status="alive", last_contact_date="2023-01-01", n_sources=1)
    insert("patient_source", patient_id="P2", source_patient_pseudonym="s2", centre_id="C2", link_method="exact")
    insert("diagnosis", diagnosis_id="d3", patient_id="P2", event_type="initial", diagnosis_date="2021-12-01",
           iccc3_group="I", iccc3_subgroup="I(a)")
    insert("study_enrolment", enrolment_id="e2", patient_id="P2", study_id="ILTB", enrolment_date="2022-02-01")
    insert("tumour_board_review", review_id="r1", patient_id="P2", board="ILTB", submission_date="2022-02-20",
           recommendation_date="2022-03-01", priority_rank=1, recommendation_type="off_label",
           recommended_agents="drug a|drug b", advice_followed=True)
    for treatment_id, drug in (("t1", "drug b"), ("t2", "drug c")):
        insert("treatment", treatment_id=treatment_id, patient_id="P2", line_number=1, drug_name=drug,
               access_route="off_label", start_date="2022-03-01")
    insert("response_assessment", response_id="x1", patient_id="P2", treatment_id="t1", timepoint="cycle1",
           response="MLFS", assessment_date="2022-04-01")
    insert("response_assessment", response_id="x2", patient_id="P2", treatment_id="t1", timepoint="cycle1",
           response="PD", assessment_date="2022-05-01")
    insert("adverse_event", ae_id="a1", patient_id="P2", treatment_id="t1", ctcae_grade=3, is_serious=True)
    insert("follow_up", follow_up_id="f2", patient_id="P2", contact_date="2023-01-01", disease_status="progression")
    build_marts(con)
    return con


def test_the_definitions_hold_at_their_edges():
    con = _tiny_warehouse()

    def row(sql: str) -> dict[str, Any]:
        found = con.execute(sql).df().to_dict("records")
        assert len(found) == 1, sql
        return {k: _norm(v) for k, v in found[0].items()}

    p1 = row("SELECT * FROM marts.patient_summary WHERE patient_id = 'P1'")
    assert (p1["follow_up_end_date"], p1["follow_up_days"], p1["n_relapses"]) == (date(2021, 6, 1), 517, 1)
    advice = row("SELECT * FROM marts.board_advice")
    assert advice["treatment_start_date"] == advice["advised_treatment_start_date"] == date(2022, 3, 1)
    assert (advice["days_recommendation_to_treatment"], advice["days_enrolment_to_recommendation"]) == (0, 28)
    assert row("SELECT * FROM marts.board_advice_summary WHERE breakdown = 'overall'")["proportion_followed"] == 1.0
    response = row("SELECT * FROM marts.response")
    assert (response["regimen"], response["advice_group"], response["n_partial"], response["orr"]) == (
        "drug b + drug c", "followed", 1, 1.0)  # the earlier of two cycle-1 assessments; MLFS is a response
    toxicity = con.execute("SELECT drug_name, n_patients_exposed, n_patients_grade3plus, n_patients_serious "
                           "FROM marts.adverse_events ORDER BY drug_name").fetchall()
    assert toxicity == [("drug b", 1, 1, 1), ("drug c", 1, 1, 1)]  # the combination's event counts for both drugs
    relapse = row("SELECT * FROM marts.survival WHERE patient_id = 'P1' AND origin = 'relapse'")
    # Died on an unknown date: at the last contact. The progression on the relapse day is not after it.
    assert (relapse["os_event"], relapse["os_days"], relapse["efs_event_type"], relapse["efs_days"]) == (
        True, 365, "death", 365)
    enrolled = row("SELECT * FROM marts.survival WHERE patient_id = 'P2' AND origin = 'enrolment'")
    # Advice groups only from the recommendation: from the enrolment the followed group would get immortal time.
    assert (enrolled["advice_group"], enrolled["os_event"], enrolled["efs_event_type"], enrolled["efs_days"]) == (
        None, False, "progression", 334)
    recommended = row("SELECT * FROM marts.survival WHERE patient_id = 'P2' AND origin = 'recommendation'")
    assert (recommended["advice_group"], recommended["origin_date"], recommended["efs_days"]) == (
        "followed", date(2022, 3, 1), 306)
    registry = row("SELECT * FROM marts.registry_activity WHERE study_id = 'SACHA'")
    assert registry["days_to_registration_median"] == 4  # from the relapse, the latest diagnosis before it


def _insert(con: duckdb.DuckDBPyConnection, table: str, **values: Any) -> None:
    row = {"source_id": "src", "source_file_sha256": "0" * 64, "run_id": "r1",
           "source_record_key": f"{table}-{sorted(values.items())}", **values}
    con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def _not_followed(con: duckdb.DuckDBPyConnection, patient_id: str, *, priority_rank: int = 1,
                  recommendation_type: str = "trial", recommended_agents: str = "drug a") -> None:
    """A patient submitted to the ILTB board on 2022-05-01, advised on 2022-05-10, the advice not followed."""
    _insert(con, "patient", patient_id=patient_id, vital_status="alive", last_contact_date="2023-01-01", n_sources=1)
    _insert(con, "tumour_board_review", review_id=f"r-{patient_id}", patient_id=patient_id, board="ILTB",
            submission_date="2022-05-01", recommendation_date="2022-05-10", priority_rank=priority_rank,
            recommendation_type=recommendation_type, recommended_agents=recommended_agents, advice_followed=False)


def test_a_submission_s_line_is_treated_whether_or_not_it_was_assessed():
    con = _tiny_warehouse()
    # P3: a control; the line after the recommendation has no assessment (yet).
    _not_followed(con, "P3")
    _insert(con, "treatment", treatment_id="t3", patient_id="P3", line_number=1, drug_name="drug d",
            start_date="2022-06-01")
    build_marts(con)
    counts = con.execute("SELECT advice_group, timepoint, n_submissions, n_treated, n_assessed "
                         "FROM marts.board_response ORDER BY ALL").fetchall()
    assert counts == [("followed", "best", 1, 1, 0), ("followed", "cycle1", 1, 1, 1),
                      ("not_followed", "best", 1, 1, 0), ("not_followed", "cycle1", 1, 1, 0)]
    # Both lines are in marts.treatment_line, which n_treated counts; only P2's, assessed, in marts.response_line.
    lines = con.execute("SELECT patient_id, regimen, advice_group, recommendation_date, treatment_ids "
                        "FROM marts.treatment_line ORDER BY patient_id").fetchall()
    assert lines == [("P2", "drug b + drug c", "followed", date(2022, 3, 1), ["t1", "t2"]),
                     ("P3", "drug d", "not_followed", date(2022, 5, 10), ["t3"])]
    assert con.execute("SELECT DISTINCT patient_id FROM marts.response_line").fetchall() == [("P2",)]


def test_a_line_one_source_gives_without_its_drug_is_the_line_another_names_on_the_same_start():
    con = _tiny_warehouse()
    _insert(con, "patient", patient_id="P5", vital_status="alive", last_contact_date="2023-01-01", n_sources=2)
    _insert(con, "treatment", treatment_id="t-named", patient_id="P5", line_number=1, drug_name="crizotinib",
            start_date="2022-06-01")
    _insert(con, "treatment", treatment_id="t-unnamed", patient_id="P5", line_number=1, drug_name=None,
            start_date="2022-06-01", source_id="other")
    _insert(con, "treatment", treatment_id="t-later", patient_id="P5", line_number=2, drug_name=None,
            start_date="2022-09-01", source_id="other")
    _insert(con, "response_assessment", response_id="x5", patient_id="P5", treatment_id="t-unnamed",
            timepoint="best", response="PR", assessment_date="2022-08-01", source_id="other")
    build_marts(con)
    lines = con.execute("SELECT regimen, n_sources, treatment_ids FROM marts.treatment_line WHERE patient_id = 'P5' "
                        "ORDER BY start_date").fetchall()
    assert lines == [("crizotinib", 2, ["t-named", "t-unnamed"]), ("unknown", 1, ["t-later"])]
    assessed = con.execute("SELECT regimen, response FROM marts.response_line WHERE patient_id = 'P5'").fetchall()
    assert assessed == [("crizotinib", "PR")]


def test_a_line_s_best_overall_response_is_the_best_its_sources_give_and_after_cycle_1_the_earliest():
    con = _tiny_warehouse()
    # P2's line (t1 + t2): its board registry says best NE (May), another source best CR (June), a third PR.
    for response_id, treatment_id, response, day in (("b1", "t1", "NE", "2022-05-01"), ("b2", "t2", "CR", "2022-06-01"),
                                                     ("b3", "t2", "PR", "2022-04-15")):
        _insert(con, "response_assessment", response_id=response_id, patient_id="P2", treatment_id=treatment_id,
                timepoint="best", response=response, assessment_date=day, source_id=f"source-{response_id}")
    build_marts(con)
    assessed = con.execute("SELECT timepoint, response, assessment_date, is_objective_response "
                           "FROM marts.response_line WHERE patient_id = 'P2' ORDER BY timepoint").fetchall()
    # cycle1 stays the earliest of two assessments (MLFS in April, not PD in May)
    assert assessed == [("best", "CR", date(2022, 6, 1), True), ("cycle1", "MLFS", date(2022, 4, 1), True)]
    best = con.execute("SELECT n_assessed, n_complete, n_not_evaluable FROM marts.response WHERE timepoint = 'best'")
    assert best.fetchall() == [(1, 1, 0)]


def test_a_line_s_cycle_1_response_is_the_earliest_evaluable_one_of_its_sources():
    con = _tiny_warehouse()
    # P2's line, assessed MLFS in April and PD in May: another source found cycle 1 not evaluable in March.
    _insert(con, "response_assessment", response_id="c0", patient_id="P2", treatment_id="t2", timepoint="cycle1",
            response="NE", assessment_date="2022-03-01", source_id="source-c0")
    build_marts(con)
    assessed = con.execute("SELECT response, assessment_date FROM marts.response_line "
                           "WHERE patient_id = 'P2' AND timepoint = 'cycle1'").fetchall()
    assert assessed == [("MLFS", date(2022, 4, 1))]  # not the NE, which would count as a non-response


def test_a_line_whose_treatments_name_no_drug_is_a_line_of_regimen_unknown():
    con = _tiny_warehouse()
    # P3 and P4, controls: the line after each recommendation names no drug (TRT-DRUG-PRESENT only warns).
    for patient_id in ("P3", "P4"):
        _not_followed(con, patient_id)
        _insert(con, "treatment", treatment_id=f"t-{patient_id}", patient_id=patient_id, line_number=1,
                drug_name=None, start_date="2022-06-01")
    _insert(con, "response_assessment", response_id="x3", patient_id="P3", treatment_id="t-P3", timepoint="cycle1",
            response="PR", assessment_date="2022-07-01")
    build_marts(con)
    lines = con.execute("SELECT patient_id, regimen, advice_group, line_id IS NOT NULL FROM marts.treatment_line "
                        "WHERE patient_id IN ('P3', 'P4') ORDER BY patient_id").fetchall()
    assert lines == [("P3", "unknown", "not_followed", True), ("P4", "unknown", "not_followed", True)]
    control = con.execute("SELECT n_submissions, n_treated, n_assessed, n_objective_response FROM marts.board_response "
                          "WHERE advice_group = 'not_followed' AND timepoint = 'cycle1'").fetchall()
    assert control == [(2, 2, 1, 1)]
    response = con.execute("SELECT regimen, n_assessed FROM marts.response WHERE advice_group = 'not_followed'")
    assert response.fetchall() == [("unknown", 1)]
    # Only P2's later cycle-1 assessment is another of a line already counted.
    repeats = con.execute("SELECT n_rows FROM marts.left_out WHERE mart = 'response' "
                          "AND reason LIKE 'another assessment%'").fetchall()
    assert repeats == [(1,)]


def test_board_advice_restated_takes_a_start_known_only_to_the_month_of_the_recommendation():
    # The synthetic run has no treatment started "in" the month of a later recommendation, so board_reviews, which
    # took the first start whose stored first day was on or after the recommendation, agreed with the mart by luck.
    con = _tiny_warehouse()
    _insert(con, "patient", patient_id="P6", vital_status="alive", last_contact_date="2023-01-01", n_sources=1)
    _insert(con, "tumour_board_review", review_id="r-P6", patient_id="P6", board="ILTB", submission_date="2022-03-01",
            recommendation_date="2022-03-15", priority_rank=1, recommendation_type="off_label",
            recommended_agents="crizotinib", advice_followed=True)
    for treatment_id, drug, first_day, precision in (("t6a", "crizotinib", "2022-03-01", "month"),
                                                      ("t6b", "vincristine", "2022-03-16", "day"),
                                                      ("t6c", "vincristine", "2022-02-01", "month")):
        _insert(con, "treatment", treatment_id=treatment_id, patient_id="P6", line_number=1, drug_name=drug,
                start_date=first_day, start_date_precision=precision)
    build_marts(con)
    core = {table: con.execute(f"SELECT * FROM core.{table}").df() for table in CORE_TABLES}
    latest = pd.Timestamp(con.execute("SELECT current_date").fetchone()[0])  # no export loaded: the mart's bound
    mart = con.execute("SELECT * FROM marts.board_advice").df()
    assert_same(mart, board_reviews(core, latest)[BOARD_ADVICE_COLUMNS], ["review_id"])
    p6 = mart[mart.patient_id == "P6"].iloc[0]
    # 16 March came first ("March" may be the 31st); crizotinib "in March" follows, without a number of days.
    assert (p6.treatment_start_date.date(), p6.advised_treatment_start_date.date()) == (date(2022, 3, 16),
                                                                                      date(2022, 3, 1))
    assert (p6.days_recommendation_to_treatment, pd.isna(p6.days_recommendation_to_advised_treatment)) == (1, True)


def test_a_submission_whose_priority_1_advice_is_not_in_core_is_not_known():
    con = _tiny_warehouse()
    # P3's first-choice review was held back: only the second choice, standard treatment, reached core.
    _not_followed(con, "P3", priority_rank=2, recommendation_type="standard", recommended_agents="drug d")
    build_marts(con)
    assert con.execute("SELECT advice_group FROM marts.board_advice WHERE patient_id = 'P3'").fetchall() == [
        ("not_known",)]
    reviews = con.execute("SELECT patient_id AS person, board, submission_date, recommendation_date, priority_rank, "
                          "recommendation_type, recommended_agents, advice_followed "
                          "FROM core.tumour_board_review").df()
    assert dict(zip(expected.submissions(reviews).person, expected.submissions(reviews).advice_group)) == {
        "P2": "followed", "P3": "not_known"}


def test_a_country_with_cases_but_no_population_figures_has_its_cases_and_no_incidence(tmp_path):
    con = _tiny_warehouse()
    write_source_params(con, {"registry_it": {"population_based": True}, "registry_fr": {"population_based": True}})
    table = tmp_path / "child_population.csv"  # Italy only
    table.write_text("country,year,age_band,population,source\nIT,2020,0-17,1000000,x\nIT,2021,0-17,1000000,x\n")
    write_child_population(con, read_child_population(table))
    for source_id in ("registry_it", "registry_fr"):
        con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, exported_on) "
                    "VALUES (?, 'export.csv', ?, 'loaded', DATE '2022-06-01')", [source_id, source_id])
    # One Italian case; French cases in 2020 (aged 8), 2021 (aged 18) and 2022 (after the period: not counted).
    for patient_id, country, year, age_days in (("I1", "IT", 2020, 3000), ("F1", "FR", 2020, 3000),
                                                ("F2", "FR", 2021, 6600), ("F3", "FR", 2022, 3000)):
        _insert(con, "patient", patient_id=patient_id, country=country, n_sources=1)
        _insert(con, "diagnosis", source_id=f"registry_{country.lower()}", diagnosis_id=f"d-{patient_id}",
                patient_id=patient_id, event_type="initial", diagnosis_date=f"{year}-05-01",
                age_at_diagnosis_days=age_days, iccc3_group="XI", iccc3_subgroup="XI(b)", is_very_rare=True)
    build_marts(con)
    rows = con.execute("SELECT country, age_band, first_year, last_year, n_years, n_cases, person_years, "
                       "incidence_per_million, is_very_rare_by_incidence FROM marts.incidence "
                       "WHERE level = 'subgroup' ORDER BY country").fetchall()
    assert rows == [("FR", None, 2020, 2021, 0, 2, None, None, None),
                    ("IT", "0-17", 2020, 2021, 2, 1, 2_000_000, 0.5, True)]  # 1 case / 2 million person-years


def test_incidence_counts_an_age_in_completed_years_on_the_calendar(tmp_path):
    """Diagnosed on the 18th birthday (born 15 March 2000, the anchor of a birth known to the month): 18, out
    of a 0-17 band. age_days / 365.25 made 6,574 days 17.998 years, so such a child was counted."""
    con = _tiny_warehouse()
    write_source_params(con, {"registry_it": {"population_based": True}})
    table = tmp_path / "child_population.csv"
    table.write_text("country,year,age_band,population,source\nIT,2018,0-17,1000000,x\n")
    write_child_population(con, read_child_population(table))
    con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, exported_on) "
                "VALUES ('registry_it', 'export.csv', 'it', 'loaded', DATE '2019-06-01')")
    for patient_id, diagnosed in (("I1", date(2018, 3, 15)), ("I2", date(2018, 3, 14))):  # 18, then 17
        _insert(con, "patient", patient_id=patient_id, country="IT", n_sources=1)
        _insert(con, "diagnosis", source_id="registry_it", diagnosis_id=f"d-{patient_id}", patient_id=patient_id,
                event_type="initial", diagnosis_date=diagnosed.isoformat(),
                age_at_diagnosis_days=(diagnosed - date(2000, 3, 15)).days, iccc3_group="XI",
                iccc3_subgroup="XI(b)", is_very_rare=True)
    build_marts(con)
    assert con.execute("SELECT n_cases FROM marts.incidence WHERE level = 'subgroup'").fetchall() == [(1,)]


def test_the_marts_build_on_an_empty_warehouse_as_on_a_first_publish():
    con = duckdb.connect()
    for ddl in ("core.sql", "meta.sql"):  # the marts read the latest export date from meta.source_file
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    build_marts(con)
    build_marts(con)  # and again: every publish rebuilds them
    counts = dict(con.execute("SELECT table_name, estimated_size FROM duckdb_tables() "
                              "WHERE schema_name = 'marts'").fetchall())
    assert set(counts) >= {"patient_summary", "board_advice", "survival_km", "registry_activity"}
    assert con.execute("SELECT n_cases, proportion_followed FROM marts.board_advice_summary").fetchall() == [(0, None)]


def test_a_recommendation_known_to_the_month_is_a_survival_origin_known_to_the_month():
    con = _tiny_warehouse()
    # P2's board recommendation was given 'in March 2022' (core keeps its precision since it has the column).
    con.execute("UPDATE core.tumour_board_review SET recommendation_date_precision = 'month' WHERE review_id = 'r1'")
    build_marts(con)
    assert con.execute("SELECT recommendation_date_precision FROM marts.board_advice").fetchall() == [("month",)]
    origin = con.execute("SELECT origin_date, origin_date_precision FROM marts.survival "
                         "WHERE patient_id = 'P2' AND origin = 'recommendation'").fetchall()
    # Known to the month: placed mid-month (1 March + 30 // 2 days), its precision kept (an analysis may leave it out).
    assert origin == [(date(2022, 3, 16), "month")]
