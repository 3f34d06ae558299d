"""The report's survival plot: Kaplan-Meier curves of marts.survival_km drawn as SVG.

Six panels, OS and EFS (columns) from three time zeros (rows): by ICCC-3 group from enrolment (the
studies' patients), by ICCC-3 group from diagnosis (the patients a population-based registry registered:
the registries' measure, EUROCARE's) and by board advice from the recommendation. Each panel's title and
time axis name its origin; each curve is a step line over its 95% band. A panel with no group large
enough to draw says so (a warehouse without a population-based registry follows no one from diagnosis).

The SVG is written here, a few hundred lines of text, in hundredths of a second: matplotlib took two
seconds of every validated run to import and draw a PNG, at any size. A vector page also stays sharp
at any zoom in the report. Each panel carries its origin, endpoint and grouping, and each curve its
group, in data- attributes, so a reader (or a test) can find them.

A registry's curve has a step per distinct event time, thousands at 100,000 persons: the steps
within one horizontal pixel are drawn as one (the last one's value), which looks the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd

from etl import fsio
from etl.config import connect_duckdb
from etl.load.survival import DAYS_PER_YEAR, ENDPOINTS

# The rows of panels: (origin, grouping). Advice groups exist only from the recommendation (before it, the
# followed group would have immortal time); marts.survival follows from diagnosis only the patients of a
# population-based registry (a study enrols after the diagnosis: its patients would survive too long).
ROWS = (("enrolment", "iccc3_group"), ("diagnosis", "iccc3_group"), ("recommendation", "advice_group"))
GROUPINGS = {"iccc3_group": "ICCC-3 group", "advice_group": "board advice"}
# Why an origin may have no one to draw, beside too few patients per group.
WHY_NOBODY = {"diagnosis": ("followed from diagnosis: only the patients", "a population-based registry registered")}
WIDTH, HEIGHT = 1200, 70 + 415 * len(ROWS)
# matplotlib's "tab10", the colours analysts know from their own plots
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
Y_TOP = 1.02  # a little room above survival 1


@dataclass(frozen=True)
class Panel:
    """Where a panel's plotting area lies in the picture, and the years its time axis spans."""

    left: float
    top: float
    width: float
    height: float
    years: float

    def x(self, years: np.ndarray) -> np.ndarray:
        return self.left + years / self.years * self.width

    def y(self, survival: np.ndarray) -> np.ndarray:
        return self.top + (1 - survival / Y_TOP) * self.height


def plot_survival(warehouse: Path, out: Path, *, min_patients: int = 10, max_years: float = 10) -> Path:
    """An SVG of OS and EFS curves (with 95% bands) by ICCC-3 group from enrolment and from diagnosis, and
    by board advice from the recommendation, for the report.

    Groups with fewer than `min_patients` patients are left out: their curves are mostly noise. The
    time axis stops at `max_years`: registries follow patients for decades, relapses for a few years.
    """
    shown = " OR ".join("(origin = ? AND grouping = ?)" for _ in ROWS)
    con = connect_duckdb(warehouse, read_only=True)
    try:
        steps = con.execute(f"SELECT * FROM marts.survival_km WHERE {shown} "
                            "ORDER BY origin, endpoint, grouping, group_value, time_days",
                            [value for row in ROWS for value in row]).df()
    finally:
        con.close()
    with fsio.written_atomically(out) as target:
        target.write_text(survival_svg(steps, min_patients=min_patients, max_years=max_years), encoding="utf-8")
    return out


def survival_svg(steps: pd.DataFrame, *, min_patients: int, max_years: float) -> str:
    """The picture of `steps` (rows of marts.survival_km, ordered by time within each group)."""
    title = "Kaplan-Meier estimates with 95% confidence bands"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img" aria-labelledby="title" font-family="DejaVu Sans, sans-serif" '
             'font-size="12">',
             f'<title id="title">{escape(title)}</title>',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="28" text-anchor="middle" font-size="16">{escape(title)}</text>']
    for row, (origin, grouping) in enumerate(ROWS):
        for column, endpoint in enumerate(ENDPOINTS):
            panel = Panel(left=80 + column * 580, top=70 + row * 415, width=500, height=340, years=max_years)
            curves = steps[(steps.origin == origin) & (steps.endpoint == endpoint) & (steps.grouping == grouping)]
            sized = [(str(group), int(curve.n_at_risk.iloc[0]), curve)
                     for group, curve in curves.groupby("group_value", sort=True)]
            drawn = [(group, size, curve) for group, size, curve in sized if size >= min_patients]
            if drawn:
                empty: tuple[str, ...] = ()
            else:
                empty = (f"no group of {min_patients} or more patients", *WHY_NOBODY.get(origin, ()))
            parts += _panel(panel, origin, endpoint, grouping, drawn, empty=empty, y_label=column == 0,
                            clip=f"panel-{row}-{column}")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(panel: Panel, origin: str, endpoint: str, grouping: str, curves: Sequence[tuple[str, int, pd.DataFrame]],
           *, empty: Sequence[str], y_label: bool, clip: str) -> list[str]:
    """A panel's axes and its curves: (group, patients, the group's steps) each; when there are none, the
    lines of `empty` in its middle, saying why."""
    left, top, right, bottom = panel.left, panel.top, panel.left + panel.width, panel.top + panel.height
    title = f"{endpoint} by {GROUPINGS[grouping]}, from {origin}"
    parts = [f'<g class="panel" data-origin={quoteattr(origin)} data-endpoint={quoteattr(endpoint)} '
             f'data-grouping={quoteattr(grouping)}>',
             f'<text x="{left + panel.width / 2}" y="{top - 10}" text-anchor="middle" font-size="13">'
             f'{escape(title)}</text>',
             f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{panel.width}" height="{panel.height}"/>'
             '</clipPath>']
    for tick in _year_ticks(panel.years):
        x = float(panel.x(np.array(tick)))
        parts += [f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#b0b0b0" stroke-opacity="0.5"/>',
                  f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>']
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = float(panel.y(np.array(tick)))
        parts += [f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#b0b0b0" stroke-opacity="0.5"/>',
                  f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>']
    parts.append(f'<text x="{left + panel.width / 2}" y="{bottom + 38}" text-anchor="middle">'
                 f'years since {escape(origin)}</text>')
    if y_label:
        parts.append(f'<text transform="translate({left - 48} {top + panel.height / 2}) rotate(-90)" '
                     'text-anchor="middle">survival probability</text>')
    parts.append(f'<g clip-path="url(#{clip})">')
    for index, (group, size, curve) in enumerate(curves):
        colour = PALETTE[index % len(PALETTE)]
        years = curve.time_days.to_numpy(dtype=float) / DAYS_PER_YEAR
        kept = _visible(panel, years)
        parts.append(f'<g class="curve" data-group={quoteattr(group)} data-n="{size}">')
        for lower, upper in _bands(panel, years, kept, curve.ci_lower.to_numpy(dtype=float),
                                   curve.ci_upper.to_numpy(dtype=float)):
            parts.append(f'<path class="band" d="M{upper} L{lower} Z" fill="{colour}" fill-opacity="0.15"/>')
        line = _steps(panel, years, kept, curve.survival.to_numpy(dtype=float))
        parts.append(f'<path class="line" d="M{line}" fill="none" stroke="{colour}" stroke-width="1.5"/></g>')
    parts.append("</g>")
    if empty:
        lines = "".join(f'<tspan x="{left + panel.width / 2}" dy="{0 if i == 0 else 18}">{escape(line)}</tspan>'
                        for i, line in enumerate(empty))
        middle = top + panel.height / 2 - 9 * (len(empty) - 1)
        parts.append(f'<text class="empty" x="{left + panel.width / 2}" y="{middle}" text-anchor="middle" '
                     f'fill="#5b6472">{lines}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{panel.width}" height="{panel.height}" fill="none" '
                 'stroke="black" stroke-width="0.8"/>')
    parts += _legend(panel, [f"{group} (n={size})" for group, size, _ in curves])
    parts.append("</g>")
    return parts


def _legend(panel: Panel, labels: Sequence[str]) -> list[str]:
    """The curves' labels in the lower left corner, where the curves have usually fallen away."""
    if not labels:
        return []
    height = 16 * len(labels) + 8
    left, top = panel.left + 8, panel.top + panel.height - 8 - height
    width = 28 + 7 * max(len(label) for label in labels)
    parts = [f'<g class="legend" font-size="11"><rect x="{left}" y="{top}" width="{width}" height="{height}" '
             'fill="white" fill-opacity="0.8" stroke="#cccccc"/>']
    for index, label in enumerate(labels):
        y = top + 12 + 16 * index
        colour = PALETTE[index % len(PALETTE)]
        parts += [f'<line x1="{left + 4}" y1="{y}" x2="{left + 22}" y2="{y}" stroke="{colour}" stroke-width="2"/>',
                  f'<text x="{left + 26}" y="{y + 4}">{escape(label)}</text>']
    parts.append("</g>")
    return parts


def _year_ticks(years: float) -> list[float]:
    step = 1.0 if years <= 5 else 2.0 if years <= 12 else 5.0
    return [step * i for i in range(int(years // step) + 1)]


def _visible(panel: Panel, years: np.ndarray) -> np.ndarray:
    """The steps that show: up to the axis's end, and the first past it (the line runs on to the edge);
    of several within one horizontal pixel, the last."""
    shown = np.flatnonzero(years <= panel.years)
    past = np.flatnonzero(years > panel.years)
    keep = np.concatenate([shown, past[:1]])
    pixel = np.floor(panel.x(years[keep]))
    last_in_pixel = np.append(pixel[1:] != pixel[:-1], True)
    last_in_pixel[0] = True  # time zero starts the line
    return keep[last_in_pixel]


def _steps(panel: Panel, years: np.ndarray, kept: np.ndarray, survival: np.ndarray) -> str:
    """The path (after its M) of a step function that holds each value until the next time, through
    the `kept` steps (`_visible`)."""
    xs, ys = panel.x(years[kept]), panel.y(survival[kept])
    points = [f"{xs[0]:.1f},{ys[0]:.1f}"]
    for x, y in zip(xs[1:], ys[1:], strict=True):
        points.append(f"H{x:.1f} V{y:.1f}")
    return " ".join(points)


def _bands(panel: Panel, years: np.ndarray, kept: np.ndarray, lower: np.ndarray,
           upper: np.ndarray) -> Iterator[tuple[str, str]]:
    """The band between two step functions through the `kept` steps, as (lower edge backwards, upper
    edge forwards) point lists, one pair for each run of times where both bounds are known (none once
    nobody is at risk)."""
    known = ~(np.isnan(lower[kept]) | np.isnan(upper[kept]))
    runs = np.split(kept, np.flatnonzero(np.diff(known.astype(np.int8))) + 1)
    for run in runs:
        if not len(run) or np.isnan(lower[run[0]]) or np.isnan(upper[run[0]]):
            continue
        end = kept[min(np.searchsorted(kept, run[-1]) + 1, len(kept) - 1)]  # the band reaches the next time
        xs = panel.x(np.append(years[run], years[end]))
        top, bottom = panel.y(upper[run]), panel.y(lower[run])
        forward = [f"{xs[i]:.1f},{top[i]:.1f} {xs[i + 1]:.1f},{top[i]:.1f}" for i in range(len(run))]
        backward = [f"{xs[i + 1]:.1f},{bottom[i]:.1f} {xs[i]:.1f},{bottom[i]:.1f}" for i in reversed(range(len(run)))]
        yield " ".join(backward), " ".join(forward)
