"""Kaplan-Meier estimates of the survival mart, with lifelines, and the survival plot of the report.

The per-patient times and events are SQL (warehouse/marts/60_survival.sql); the estimates are
not, because a product-limit estimator with Greenwood confidence intervals is easy to get subtly
wrong by hand: lifelines' KaplanMeierFitter computes them (95% intervals, exponential Greenwood,
i.e. on the log(-log) scale, so bounds stay within 0-1). Pure functions take and return frames;
only `plot_survival` reads the warehouse and writes a file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

if TYPE_CHECKING:
    from lifelines import KaplanMeierFitter

ENDPOINTS = {"OS": ("os_days", "os_event"), "EFS": ("efs_days", "efs_event")}
GROUPINGS: dict[str, str | None] = {"all": None, "iccc3_group": "iccc3_group", "advice_group": "advice_group"}
LANDMARK_YEARS = (1, 2, 3, 5)
DAYS_PER_YEAR = 365.25
STEP_COLUMNS = ["origin", "endpoint", "grouping", "group_value", "time_days", "n_at_risk", "n_events",
                "n_censored", "survival", "ci_lower", "ci_upper"]
LANDMARK_COLUMNS = ["origin", "endpoint", "grouping", "group_value", "years", "time_days", "n_patients",
                    "n_at_risk", "survival", "ci_lower", "ci_upper"]


def landmark_days(years: int) -> int:
    """A landmark in whole days: 1 year = 365 days, 5 years = 1826 days."""
    return round(years * DAYS_PER_YEAR)


def _groups(times: pd.DataFrame) -> Iterator[tuple[tuple[str, str, str, str], pd.Series, pd.Series]]:
    """Every (origin, endpoint, grouping, group) with the durations and events of its patients."""
    for origin, by_origin in times.groupby("origin", sort=True):
        for endpoint, (days, event) in ENDPOINTS.items():
            known = by_origin[by_origin[days].notna()]
            for grouping, column in GROUPINGS.items():
                members = [("all", known)] if column is None else list(known.groupby(column, sort=True))
                for group, patients in members:
                    if len(patients):
                        key = (str(origin), endpoint, grouping, str(group))
                        yield key, patients[days].astype(float), patients[event].astype(bool)


def _fit(durations: pd.Series, events: pd.Series) -> KaplanMeierFitter:
    from lifelines import KaplanMeierFitter  # 2-3 s to import: only runs that rebuild the marts pay it

    return KaplanMeierFitter(alpha=0.05).fit(durations, events, label="km")


def kaplan_meier(times: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The Kaplan-Meier step function of every group (one row per distinct time, time 0 included) and
    its survival at 1, 2, 3 and 5 years (none once nobody is at risk any more), from one fit a group.

    `times` is marts.survival: origin, os_days/os_event, efs_days/efs_event, iccc3_group, advice_group.
    Returns the frames the marts read, by view name: kaplan_meier_steps, kaplan_meier_landmarks.
    """
    steps, landmarks = [], []
    for (origin, endpoint, grouping, group), durations, events in _groups(times):
        fitter = _fit(durations, events)
        table = fitter.event_table
        bounds = fitter.confidence_interval_survival_function_
        survival = fitter.survival_function_["km"]
        steps.append(pd.DataFrame({
            "origin": origin, "endpoint": endpoint, "grouping": grouping, "group_value": group,
            "time_days": table.index.astype(float), "n_at_risk": table["at_risk"].astype(int).to_numpy(),
            "n_events": table["observed"].astype(int).to_numpy(),
            "n_censored": table["censored"].astype(int).to_numpy(),
            "survival": survival.loc[table.index].astype(float).to_numpy(),
            "ci_lower": bounds["km_lower_0.95"].loc[table.index].astype(float).to_numpy(),
            "ci_upper": bounds["km_upper_0.95"].loc[table.index].astype(float).to_numpy()}))
        for years in LANDMARK_YEARS:
            days = landmark_days(years)
            at_risk = int((durations >= days).sum())
            estimate: tuple[float | None, ...] = (None, None, None)
            if at_risk:
                # The step function is right-continuous: its value at `days` is the last step at or before it.
                step = bounds.loc[:days].iloc[-1]
                estimate = (float(fitter.survival_function_at_times(days).iloc[0]),
                            float(step["km_lower_0.95"]), float(step["km_upper_0.95"]))
            landmarks.append((origin, endpoint, grouping, group, years, days, len(durations), at_risk, *estimate))
    return {"kaplan_meier_steps": pd.concat(steps, ignore_index=True)[STEP_COLUMNS] if steps
            else pd.DataFrame(columns=STEP_COLUMNS),
            "kaplan_meier_landmarks": pd.DataFrame(landmarks, columns=LANDMARK_COLUMNS)}


def plot_survival(warehouse: Path, out: Path, *, origin: str = "enrolment", min_patients: int = 10,
                  max_years: float = 10) -> Path:
    """A PNG of OS and EFS curves (with 95% bands) by ICCC-3 group and by board advice, for the report.

    Groups with fewer than `min_patients` patients are left out: their curves are mostly noise. The
    time axis stops at `max_years`: registries follow patients for decades, relapses for a few years.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker or in CI
    import matplotlib.pyplot as plt

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        # Advice groups exist only from the recommendation (before it, the followed group would have immortal time).
        steps = con.execute("SELECT * FROM marts.survival_km WHERE (origin = ? AND grouping = 'iccc3_group') "
                            "OR (origin = 'recommendation' AND grouping = 'advice_group') "
                            "ORDER BY endpoint, grouping, group_value, time_days", [origin]).df()
    finally:
        con.close()
    figure, axes = plt.subplots(2, 2, figsize=(12, 9), sharex=True, sharey=True, squeeze=False)
    titles = {"iccc3_group": f"by ICCC-3 group (from {origin})",
              "advice_group": "by board advice (from recommendation)"}
    for row, endpoint in enumerate(ENDPOINTS):
        for column, grouping in enumerate(titles):
            ax = axes[row][column]
            curves = steps[(steps.endpoint == endpoint) & (steps.grouping == grouping)]
            for group, curve in curves.groupby("group_value", sort=True):
                size = int(curve.n_at_risk.iloc[0])
                if size < min_patients:
                    continue
                years = curve.time_days / DAYS_PER_YEAR
                (line,) = ax.step(years, curve.survival, where="post", label=f"{group} (n={size})")
                ax.fill_between(years, curve.ci_lower, curve.ci_upper, step="post", alpha=0.15,
                                color=line.get_color())
            ax.set_title(f"{endpoint} {titles[grouping]}")
            ax.set_ylim(0, 1.02)
            ax.set_xlim(0, max_years)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="lower left")
            if row == 1:
                ax.set_xlabel("years since time zero")
            if column == 0:
                ax.set_ylabel("survival probability")
    figure.suptitle("Kaplan-Meier estimates with 95% confidence bands")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
