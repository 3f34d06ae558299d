"""Every example query of the README's analyst section runs on a real warehouse and answers its question correctly."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from marts_fixture import MartsWarehouse, built_warehouse

from etl.config import REPO_ROOT

DOC = REPO_ROOT / "README.md"
_QUESTION = re.compile(r"^### (\d+)\. (.+?)\n(.*?)(?=^##|\Z)", re.MULTILINE | re.DOTALL)
_SQL = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def example_queries() -> dict[int, tuple[str, str]]:
    """number -> (question, SQL) for every numbered section of the document."""
    found = {}
    for number, title, body in _QUESTION.findall(DOC.read_text()):
        sql = _SQL.findall(body)
        assert len(sql) == 1, f"question {number} should have exactly one ```sql block"
        found[int(number)] = (title, sql[0])
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


Check = Callable[[pd.DataFrame, MartsWarehouse], None]


def _patients_per_group(result: pd.DataFrame, built: MartsWarehouse) -> None:
    assert result.n_patients.sum() == built.query("SELECT count(*) AS n FROM core.patient").n[0]
    assert (result.n_very_rare <= result.n_patients).all() and result.n_very_rare.sum() > 0
    assert result.n_patients.is_monotonic_decreasing
    assert result.median_age_years.dropna().between(0, 30).all()


def _board_intervals(result: pd.DataFrame, built: MartsWarehouse) -> None:
    first_choice = built.query("SELECT count(*) AS n FROM core.tumour_board_review WHERE priority_rank = 1").n[0]
    assert result.n_cases.sum() == first_choice
    assert (result.median_days_to_recommendation >= 0).all()
    assert (result.p75_days_to_treatment.dropna() >= result.median_days_to_treatment.dropna()).all()
    assert result.recommendation_year.is_monotonic_increasing


def _proportion_followed(result: pd.DataFrame, built: MartsWarehouse) -> None:
    overall = built.query("SELECT * FROM marts.board_advice_summary WHERE breakdown = 'overall'").iloc[0]
    assert result.n_followed.sum() == overall.n_followed and result.n_follow_known.sum() == overall.n_follow_known
    assert result.proportion_followed.between(0, 1).all()
    assert set(result.iccc3_subgroup) <= {"I(a)", "I(b)", "I(c)", "I(d)", "I(e)", "unknown"}


def _reasons(result: pd.DataFrame, built: MartsWarehouse) -> None:
    not_followed = built.query("SELECT reason_not_followed FROM core.tumour_board_review "
                               "WHERE priority_rank = 1 AND advice_followed = false")
    assert result.n_cases.sum() == len(not_followed)
    recorded = not_followed.reason_not_followed.dropna().str.strip().value_counts()
    assert dict(zip(result.reason, result.n_cases)) == {**recorded.to_dict(),
                                                        "not recorded": not_followed.reason_not_followed.isna().sum()}


def _actionable(result: pd.DataFrame, built: MartsWarehouse) -> None:
    assert len(result) and (result.frequency >= 0.10).all()
    assert (result.n_patients <= result.n_patients_profiled).all()
    assert result.iccc3_subgroup.str.startswith("I(").all()  # the board sees leukaemias
    assert {"surface_marker", "fusion"} <= set(result.event_class)
    assert not result.duplicated(["source_id", "iccc3_subgroup", "event_class", "event"]).any()  # a row per source


def _toxicity(result: pd.DataFrame, built: MartsWarehouse) -> None:
    assert len(result) and (result.n_patients_exposed >= 5).all()
    assert set(result.access_route) <= {"off_label", "compassionate"}
    assert result.proportion_grade3plus.is_monotonic_decreasing
    assert (result.n_patients_grade3plus <= result.n_patients_exposed).all()


def _response_by_advice(result: pd.DataFrame, built: MartsWarehouse) -> None:
    # The board's control group is its own patients whose advice was not followed; other lines are not compared.
    assert list(result.advice_group) == ["followed", "not_compared", "not_followed"]
    # Each person's line once, whichever sources report it (marts.response_line).
    assessed = built.query("SELECT count(*) AS n FROM marts.response_line WHERE timepoint = 'cycle1'").n[0]
    assert result.n_assessed.sum() == assessed
    # DuckDB rounds halves away from zero (0.5625 -> 0.563), numpy to even (0.562).
    assert np.allclose(result.orr, result.n_responses / result.n_assessed, atol=0.0005 + 1e-9)


def _two_year_survival(result: pd.DataFrame, built: MartsWarehouse) -> None:
    assert len(result) > 2
    estimated = result.dropna(subset=["os_2_years"])
    assert ((estimated.ci_lower <= estimated.os_2_years) & (estimated.os_2_years <= estimated.ci_upper)).all()
    assert (result.n_at_risk <= result.n_patients).all()
    relapsed = built.query("SELECT count(*) AS n FROM marts.survival WHERE origin = 'relapse' AND os_days IS NOT NULL")
    assert result.n_patients.sum() == relapsed.n[0]


def _median_efs(result: pd.DataFrame, built: MartsWarehouse) -> None:
    # Advice groups start at the recommendation (docs/endpoints.md): grouping from the relapse, before the
    # advice existed, gave the followed group immortal time. The mart no longer offers it.
    assert not len(built.query("SELECT * FROM marts.survival_km WHERE origin = 'relapse' "
                               "AND grouping = 'advice_group'"))
    times = built.query("SELECT advice_group, efs_days, efs_event FROM marts.survival "
                        "WHERE origin = 'recommendation' AND efs_days IS NOT NULL")
    for group, members in times.groupby("advice_group"):
        fitter = KaplanMeierFitter().fit(members.efs_days.astype(float), members.efs_event.astype(bool))
        median = fitter.median_survival_time_
        row = result[result.advice_group == group].iloc[0]
        assert row.n_patients == len(members)
        if math.isinf(median):
            assert pd.isna(row.median_efs_days)
        else:
            assert row.median_efs_days == median, f"{group}: query {row.median_efs_days}, lifelines {median}"


def _registrations(result: pd.DataFrame, built: MartsWarehouse) -> None:
    per_study = built.query("SELECT study_id, year(enrolment_date) AS registration_year, count(*) AS n "
                            "FROM core.study_enrolment GROUP BY ALL")
    assert {"SACHA", "ILTB", "TREP"} <= set(result.columns)
    for study, year, n in per_study.itertuples(index=False):
        assert result.loc[result.registration_year == year, study].iloc[0] == n


def _five_year_survival_from_diagnosis(result: pd.DataFrame, built: MartsWarehouse) -> None:
    times = built.query("SELECT iccc3_group, os_days, os_event FROM marts.survival "
                        "WHERE origin = 'diagnosis' AND os_days IS NOT NULL")
    assert result.n_patients.sum() == len(times) > 0 and result.os_5_years.notna().any()
    for group, members in times.groupby("iccc3_group"):
        row = result[result.iccc3_group == group].iloc[0]
        assert row.n_patients == len(members)
        if pd.notna(row.os_5_years):
            fitter = KaplanMeierFitter().fit(members.os_days.astype(float), members.os_event.astype(bool))
            at_five = fitter.survival_function_at_times(round(5 * 365.25)).iloc[0]
            assert row.ci_lower <= row.os_5_years <= row.ci_upper
            assert abs(row.os_5_years - at_five) <= 0.0005 + 1e-9, f"{group}: {row.os_5_years}, lifelines {at_five}"


CHECKS: dict[int, Check] = {1: _patients_per_group, 2: _board_intervals, 3: _proportion_followed, 4: _reasons,
                            5: _actionable, 6: _toxicity, 7: _response_by_advice, 8: _two_year_survival,
                            9: _median_efs, 10: _registrations, 11: _five_year_survival_from_diagnosis}


def test_the_registrations_question_asks_for_what_its_query_adds_up():
    title, sql = example_queries()[10]
    # n_registrations adds up over centres and countries; n_patients of registry_activity would not.
    assert "registrations" in title and "patients" not in title and "sum(n_registrations)" in sql


def test_the_document_has_eleven_questions_each_with_a_check():
    assert sorted(example_queries()) == sorted(CHECKS) == list(range(1, 12))


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_example_query_answers_its_question(built, number):
    title, sql = example_queries()[number]
    result = built.query(sql)
    assert len(result), f"question {number} ({title}) returns nothing"
    CHECKS[number](result, built)
