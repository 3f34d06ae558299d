"""The Kaplan-Meier estimates against figures worked out by hand, not against lifelines (test_marts holds
them to lifelines): ties, the interval's log(-log) transform at S = 1, S between and S = 0, and the
landmarks at the edge of the follow-up."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from etl.load.survival import kaplan_meier

Z_95 = 1.96  # to four places; the hand figures below are rounded to six


def _os(days: list[float], died: list[bool]) -> dict[str, pd.DataFrame]:
    times = pd.DataFrame({"origin": "enrolment", "os_days": days, "os_event": died, "efs_days": float("nan"),
                          "efs_event": False, "iccc3_group": "IX", "advice_group": None})
    return {name: frame[(frame.endpoint == "OS") & (frame.grouping == "all")].reset_index(drop=True)
            for name, frame in kaplan_meier(times).items()}


def _log_log_interval(survival: float, greenwood: float) -> tuple[float, float]:
    """exp(-exp(log(-log S) +/- z * sqrt(greenwood) / |log S|)): the exponential Greenwood 95% interval."""
    spread = Z_95 * math.sqrt(greenwood) / abs(math.log(survival))
    centre = math.log(-math.log(survival))
    return math.exp(-math.exp(centre + spread)), math.exp(-math.exp(centre - spread))


def test_deaths_come_before_the_censorings_of_their_day_and_the_interval_is_on_the_log_log_scale():
    # Day 5: 1 death and 1 censored of 7; day 10: 2 deaths and 1 censored of 5; day 12: censored; day 20: the last dies.
    steps = _os([5, 5, 10, 10, 10, 12, 20], [True, False, True, True, False, False, True])["kaplan_meier_steps"]
    assert steps[["time_days", "n_at_risk", "n_events", "n_censored"]].values.tolist() == [
        [0, 7, 0, 0], [5, 7, 1, 1], [10, 5, 2, 1], [12, 2, 0, 1], [20, 1, 1, 0]]
    survival = [1, 6 / 7, 6 / 7 * 3 / 5, 18 / 35, 0]
    assert steps.survival.tolist() == pytest.approx(survival, abs=1e-12)
    # Greenwood: the sum of d / (n (n - d)) over the event times so far
    for row, greenwood in ((1, 1 / 42), (2, 1 / 42 + 2 / 15), (3, 1 / 42 + 2 / 15)):
        lower, upper = _log_log_interval(survival[row], greenwood)
        assert (steps.ci_lower[row], steps.ci_upper[row]) == (pytest.approx(lower, abs=1e-4),
                                                              pytest.approx(upper, abs=1e-4))
    assert (steps.ci_lower[1], steps.ci_upper[1]) == (pytest.approx(0.334054, abs=1e-6),
                                                      pytest.approx(0.978561, abs=1e-6))
    assert (steps.ci_lower[0], steps.ci_upper[0]) == (1.0, 1.0)  # S = 1: no uncertainty yet
    assert (steps.ci_lower[4], steps.ci_upper[4]) == (0.0, 0.0)  # S = 0: undefined on log(-log), 0 to 0 as lifelines


def test_a_death_on_the_origin_day_is_a_step_at_time_0():
    steps = _os([0, 0, 3, 7], [True, False, True, False])["kaplan_meier_steps"]
    assert steps[["time_days", "n_at_risk", "n_events", "n_censored"]].values.tolist() == [
        [0, 4, 1, 1], [3, 2, 1, 0], [7, 1, 0, 1]]
    assert steps.survival.tolist() == pytest.approx([3 / 4, 3 / 8, 3 / 8], abs=1e-12)


@pytest.mark.parametrize(("last_day", "last_died", "one_year"), [
    (365, False, 0.5),  # followed to the landmark day itself: the estimate is known there
    (364, False, None),  # censored the day before: nothing is known at 1 year
    (365, True, 0.0),  # the last patient dies on the landmark day
    (300, True, 0.0),  # ... or before it: the curve reached 0 and stays there
])
def test_a_landmark_is_given_only_where_the_follow_up_reaches_it(last_day, last_died, one_year):
    marks = _os([100, last_day], [True, last_died])["kaplan_meier_landmarks"].set_index("years")
    assert marks.time_days.tolist() == [365, 730, 1096, 1826]
    if one_year is None:
        assert pd.isna(marks.survival[1]) and pd.isna(marks.ci_lower[1])
    else:
        assert marks.survival[1] == one_year
    assert marks.n_at_risk[1] == int(last_day >= 365)
