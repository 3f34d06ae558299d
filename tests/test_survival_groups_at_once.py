"""Every group of the Kaplan-Meier estimates is fitted at once (etl/load/survival.py counts the groups' times as one
array): each group's steps and landmarks are bit for bit lifelines' fit of that group alone, whatever the groups
beside it (one with a time 0 next to one whose time zero is a row of its own, a negative time, a group of one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter

from etl.load.survival import kaplan_meier

GROUPS = {  # (origin, ICCC-3 group): durations, events
    ("enrolment", "I"): ([0, 0, 4, 900, 2000], [1, 0, 1, 0, 1]),
    ("enrolment", "II"): ([5, 5, 5, 8, 8, 12, 20, 20], [1, 1, 0, 1, 0, 1, 0, 1]),
    ("enrolment", "IX"): ([365], [1]),
    ("relapse", "I"): ([-3, 2, 2, 50, 400, 800, 1200], [1, 0, 1, 1, 0, 0, 1]),
    ("relapse", "X"): ([10, 400, 800, 2000], [0, 0, 0, 1]),
}


def test_each_group_fitted_with_the_others_is_lifelines_fit_of_it_alone():
    times = pd.DataFrame([{"origin": origin, "iccc3_group": group, "os_days": float(days), "os_event": bool(event),
                           "efs_days": np.nan, "efs_event": False, "advice_group": None}
                          for (origin, group), (durations, events) in GROUPS.items()
                          for days, event in zip(durations, events, strict=True)])
    estimates = kaplan_meier(times)
    steps, marks = (estimates[name].query("endpoint == 'OS' and grouping == 'iccc3_group'")
                    for name in ("kaplan_meier_steps", "kaplan_meier_landmarks"))
    # groups without a patient (relapse x II, relapse x IX, enrolment x X) have no row
    assert sorted(set(zip(steps.origin, steps.group_value))) == sorted(GROUPS)
    assert sorted(set(zip(marks.origin, marks.group_value))) == sorted(GROUPS)
    for (origin, group), (durations, events) in GROUPS.items():
        mine = steps[(steps.origin == origin) & (steps.group_value == group)]
        fitter = KaplanMeierFitter().fit(pd.Series(durations, dtype=float), pd.Series(events, dtype=bool))
        table, bounds = fitter.event_table, fitter.confidence_interval_survival_function_
        assert mine.time_days.tolist() == table.index.astype(float).tolist()
        assert mine.n_at_risk.tolist() == table.at_risk.tolist()
        assert (mine.n_events.tolist(), mine.n_censored.tolist()) == (table.observed.tolist(), table.censored.tolist())
        assert mine.survival.tolist() == fitter.survival_function_.iloc[:, 0].tolist()  # equal, not close
        assert (mine.ci_lower.tolist(), mine.ci_upper.tolist()) == (bounds.iloc[:, 0].tolist(),
                                                                    bounds.iloc[:, 1].tolist())
        landmarks = marks[(marks.origin == origin) & (marks.group_value == group)]
        assert landmarks.years.tolist() == [1, 2, 3, 5]
        assert (landmarks.n_patients == len(durations)).all()
        for mark in landmarks.itertuples():
            assert mark.n_at_risk == sum(days >= mark.time_days for days in durations)
            if mark.n_at_risk or fitter.survival_function_.iloc[-1, 0] == 0:
                assert mark.survival == fitter.predict(mark.time_days)
            else:  # beyond a censored last follow-up the curve is not defined
                assert pd.isna(mark.survival)
