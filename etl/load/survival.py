"""Kaplan-Meier estimates of the survival mart, and the survival plot of the report.

The per-patient times and events are SQL (warehouse/marts/60_survival.sql); the estimates are
computed here for every group at once, in a handful of vectorised steps. They are the product-limit
estimator with 95% exponential Greenwood intervals (on the log(-log) scale, so bounds stay within
0-1), computed with the very operations lifelines' KaplanMeierFitter uses: the tests hold them to
lifelines on every group of the marts' fixture. lifelines fitted one group at a time and took 2-3 s
to import, paid by every run that rebuilt the marts. Pure functions take and return frames; the
report's plot of them is etl/load/survival_plot.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ENDPOINTS = {"OS": ("os_days", "os_event"), "EFS": ("efs_days", "efs_event")}
GROUPINGS: dict[str, str | None] = {"all": None, "iccc3_group": "iccc3_group", "advice_group": "advice_group"}
# What kaplan_meier reads of marts.survival (fetching its other columns too took as long again).
TIMES_COLUMNS = ["origin", *(c for pair in ENDPOINTS.values() for c in pair), *filter(None, GROUPINGS.values())]
LANDMARK_YEARS = (1, 2, 3, 5)
DAYS_PER_YEAR = 365.25
Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile, as scipy.stats.norm.ppf(0.975) gives it
GROUP = ["origin", "endpoint", "grouping", "group_value"]
STEP_COLUMNS = [*GROUP, "time_days", "n_at_risk", "n_events", "n_censored", "survival", "ci_lower", "ci_upper"]
LANDMARK_COLUMNS = [*GROUP, "years", "time_days", "n_patients", "n_at_risk", "survival", "ci_lower", "ci_upper"]


def landmark_days(years: int) -> int:
    """A landmark in whole days: 1 year = 365 days, 5 years = 1826 days."""
    return round(years * DAYS_PER_YEAR)


def _patients(times: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per patient and group they count in: group (an integer), days, event (a patient without
    a known time, or without a value of a grouping, is in no group of it); and the groups, GROUP by
    group number, numbered in the order of their names, so that sorting by the number sorts by GROUP.
    Grouping by one integer instead of four strings is what makes the estimates fast."""
    names: list[tuple[str, str, str, str]] = []
    parts = []
    for endpoint, (days, event) in ENDPOINTS.items():
        known = times[times[days].notna()]
        for grouping, column in GROUPINGS.items():
            members = known if column is None else known[known[column].notna()]
            origins, origin_names = pd.factorize(members["origin"].astype(str))
            if column is None:
                values, value_names = np.zeros(len(members), dtype="int64"), pd.Index(["all"])
            else:
                values, value_names = pd.factorize(members[column].astype(str))
            local = origins * len(value_names) + values  # this part's groups, numbered after all before
            parts.append(pd.DataFrame({"group": local + len(names), "days": members[days].astype(float),
                                       "event": members[event].astype(bool)}))
            names += [(o, endpoint, grouping, v) for o in origin_names for v in value_names]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype="int64")
    rank[order] = np.arange(len(names))
    patients = pd.concat(parts, ignore_index=True)
    patients["group"] = rank[patients["group"].to_numpy()]
    groups = pd.DataFrame([names[i] for i in order], columns=GROUP)
    return patients, groups


def _named(frame: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its group numbers replaced by the GROUP columns."""
    index = frame["group"].to_numpy()
    named = {c: groups[c].to_numpy(dtype=object)[index] for c in GROUP}
    return pd.DataFrame({**named, **{c: frame[c].to_numpy() for c in frame.columns if c != "group"}})


def _event_table(patients: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Every group's event table, by group and time, as lifelines builds one: group, days, removed (leaving at that
    time), observed (their events), and each group's first row (its time zero, min(0, earliest): a row of its own when
    everyone's time is later), where all its patients enter. Counted without pandas group-bys or a merge: the
    times are numbered in order, so a group and a time number make one integer, a group's after the previous ones."""
    times, days = pd.factorize(patients["days"].to_numpy(), sort=True)
    key = patients["group"].to_numpy() * len(days) + times
    present, row, removed = np.unique(key, return_inverse=True, return_counts=True)
    observed = np.bincount(row[patients["event"].to_numpy()], minlength=len(present))
    group, time = np.divmod(present, len(days))
    days = days[time]
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    zero = first[days[first] > 0]
    group, days = np.insert(group, zero, group[zero]), np.insert(days, zero, 0.0)
    removed, observed = np.insert(removed, zero, 0), np.insert(observed, zero, 0)
    return group, days, removed, observed, np.flatnonzero(np.r_[True, group[1:] != group[:-1]])


def _steps(patients: pd.DataFrame) -> pd.DataFrame:
    """Every group's event table (one row per distinct time, and its time zero: min(0, earliest)) with
    the estimate and its bounds at each time, in the order and with the operations of lifelines."""
    group, days, removed, observed, first = _event_table(patients)
    rows = np.diff(np.r_[first, len(group)])  # each group's number of rows
    # at risk at a time: everyone who entered, less those removed at an earlier time (of the group)
    earlier = np.cumsum(removed) - removed
    at_risk = np.repeat(np.add.reduceat(removed, first), rows) - (earlier - np.repeat(earlier[first], rows))
    deaths = observed
    key = pd.Series(group)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the sums along each group stay pandas' (compensated: np.cumsum's differ in the last bits, and the tests hold
        # these to lifelines bit for bit); the rest is numpy's, as pandas' was
        log_survival = pd.Series(np.log(at_risk - deaths) - np.log(at_risk)).groupby(key, sort=False).cumsum()
        population = at_risk.astype("uint64")
        variance = deaths / (population * (population - deaths))
        greenwood = pd.Series(np.where(variance == np.inf, 0.0, variance)).groupby(key, sort=False).cumsum()
        survival = np.exp(log_survival.to_numpy())
        v = np.log(survival)
        spread = Z_95 * np.sqrt(greenwood.to_numpy()) / v
        lower = np.exp(-np.exp(np.log(-v) - spread))
        upper = np.exp(-np.exp(np.log(-v) + spread))
    return pd.DataFrame({
        "group": group, "time_days": days, "n_at_risk": at_risk, "n_events": deaths, "n_censored": removed - deaths,
        "survival": survival, "ci_lower": np.where(np.isnan(lower), 1.0, lower),
        "ci_upper": np.where(np.isnan(upper), 1.0, upper)})


def _landmarks(patients: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Each group's estimate at 1, 2, 3 and 5 years: the step function's value at the landmark (the
    last step at or before it); none once nobody is at risk any more, unless the curve reached 0.
    `steps` is by group and time (_steps): a group's last step at or before a landmark is its first step's row
    plus the number of its steps at or before it, less one (every group has one, its time zero)."""
    group, days = patients["group"].to_numpy(), patients["days"].to_numpy()
    size = int(group.max()) + 1
    n_patients = np.bincount(group, minlength=size)
    present = np.flatnonzero(n_patients)  # the groups with patients, in order
    step_group, step_days = steps["group"].to_numpy(), steps["time_days"].to_numpy()
    first = np.searchsorted(step_group, present)
    marks = []
    for years in LANDMARK_YEARS:  # four landmarks, every group at once
        at = landmark_days(years)
        n_steps = np.bincount(step_group[step_days <= at], minlength=size)[present]
        row = first + n_steps - 1
        n_at_risk = np.bincount(group[days >= at], minlength=size)[present]
        marks.append(pd.DataFrame({"group": present, "years": years, "time_days": at,
                                   "n_patients": n_patients[present], "n_at_risk": n_at_risk,
                                   **{c: steps[c].to_numpy()[row] for c in ("survival", "ci_lower", "ci_upper")}}))
    found = pd.concat(marks, ignore_index=True)
    # Nobody at risk: past the last follow-up the curve is not defined when that was censored; once
    # an event took the last patient it stays at 0, the estimate (as lifelines gives it).
    beyond = (found["n_at_risk"] == 0) & (found["survival"] > 0)
    found.loc[beyond, ["survival", "ci_lower", "ci_upper"]] = np.nan
    return found.sort_values(["group", "years"], kind="stable", ignore_index=True)[
        ["group", *LANDMARK_COLUMNS[len(GROUP):]]]


def kaplan_meier(times: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The Kaplan-Meier step function of every group (one row per distinct time, time 0 included) and
    its survival at 1, 2, 3 and 5 years (none once nobody is at risk any more, unless the curve reached 0).

    `times`: the TIMES_COLUMNS of marts.survival (origin, os_days/os_event, efs_days/efs_event, iccc3_group,
    advice_group).
    Returns the frames the marts read, by view name: kaplan_meier_steps, kaplan_meier_landmarks.
    """
    patients, groups = _patients(times)
    if patients.empty:
        return {"kaplan_meier_steps": pd.DataFrame(columns=STEP_COLUMNS),
                "kaplan_meier_landmarks": pd.DataFrame(columns=LANDMARK_COLUMNS)}
    steps = _steps(patients)
    return {"kaplan_meier_steps": _named(steps, groups), "kaplan_meier_landmarks": _named(_landmarks(patients, steps),
                                                                                          groups)}
