"""Kaplan-Meier landmarks once nobody is at risk: 0 after a final event, undefined after a final censoring."""

from __future__ import annotations

import pandas as pd

from etl.load.survival import kaplan_meier


def test_a_landmark_after_the_last_patient_s_event_is_0_and_after_a_censoring_none():
    # Three patients from relapse: an event at 100 days, censored at 200, then at 300 days
    # OS: the last one dies, S = 2/3 * (1 - 1/1) = 0; EFS: the last one is censored, S stays 2/3 to 300 days.
    times = pd.DataFrame({"origin": ["relapse"] * 3, "os_days": [100.0, 200.0, 300.0], "os_event": [True, False, True],
                          "efs_days": [100.0, 200.0, 300.0], "efs_event": [True, False, False],
                          "iccc3_group": ["I"] * 3, "advice_group": [None] * 3})
    marks = kaplan_meier(times)["kaplan_meier_landmarks"]
    marks = marks[marks.grouping == "all"].set_index(["endpoint", "years"])
    os_year = marks.loc[("OS", 1)]
    assert (os_year.n_patients, os_year.n_at_risk) == (3, 0)
    assert (os_year.survival, os_year.ci_lower, os_year.ci_upper) == (0.0, 0.0, 0.0)  # lifelines: 0, 0 to 0
    assert (marks.loc["OS"].survival == 0.0).all()  # and at every later landmark
    assert marks.loc["EFS"][["survival", "ci_lower", "ci_upper"]].isna().all().all()  # beyond the last follow-up
