"""The report's survival plot (etl/load/survival_plot.py): the curves it draws are the mart's, and
Chromium shows the picture."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from headless_chromium import dump_dom
from lxml import etree, html
from marts_fixture import MartsWarehouse, built_warehouse

from etl.load.survival_plot import Panel, plot_survival, survival_svg

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


def _steps(group: str, days: list[float], survival: list[float], lower: list[float], upper: list[float], *,
           at_risk: int, endpoint: str = "OS", grouping: str = "iccc3_group",
           origin: str = "enrolment") -> pd.DataFrame:
    return pd.DataFrame({"origin": origin, "endpoint": endpoint, "grouping": grouping, "group_value": group,
                         "time_days": days, "n_at_risk": [at_risk - i for i in range(len(days))],
                         "survival": survival, "ci_lower": lower, "ci_upper": upper})


def _curves(svg: str) -> dict[tuple[str, str, str, str], etree._Element]:
    root = etree.fromstring(svg.encode())
    return {(panel.get("data-origin"), panel.get("data-endpoint"), panel.get("data-grouping"), curve.get("data-group")):
            curve
            for panel in root.iter(f"{SVG}g") if panel.get("class") == "panel"
            for curve in panel.iter(f"{SVG}g") if curve.get("class") == "curve"}


def _vertices(path: str) -> list[tuple[float, float]]:
    """The corners of a step line "x,y H x V y H x V y ..."."""
    first, *moves = path.split(" ")
    x, y = map(float, first.split(","))
    corners = [(x, y)]
    for move in moves:
        if move[0] == "H":
            x = float(move[1:])
        else:
            y = float(move[1:])
            corners.append((x, y))
    return corners


def test_a_curve_steps_through_its_estimates_in_the_panel_s_scale():
    days = [0.0, 365.25, 730.5, 1461.0]
    steps = pd.concat([
        _steps("I", days, [1.0, 0.9, 0.75, 0.5], [1.0, 0.8, 0.6, math.nan], [1.0, 0.95, 0.85, math.nan], at_risk=40),
        _steps("II", days[:2], [1.0, 0.5], [1.0, 0.2], [1.0, 0.8], at_risk=9),  # too few patients to draw
        _steps("followed", days[:2], [1.0, 0.6], [1.0, 0.5], [1.0, 0.7], at_risk=30, endpoint="EFS",
               grouping="advice_group", origin="recommendation")])
    svg = survival_svg(steps, min_patients=10, max_years=10)
    curves = _curves(svg)
    assert set(curves) == {("enrolment", "OS", "iccc3_group", "I"),
                           ("recommendation", "EFS", "advice_group", "followed")}
    curve = curves[("enrolment", "OS", "iccc3_group", "I")]
    assert curve.get("data-n") == "40"
    panel = Panel(left=80, top=70, width=500, height=340, years=10)  # the top left panel
    line = next(p for p in curve if p.get("class") == "line").get("d")[1:]
    expected = [(float(panel.x(np.array(years))), float(panel.y(np.array(s))))
                for years, s in zip([0, 1, 2, 4], [1.0, 0.9, 0.75, 0.5], strict=True)]
    assert np.allclose(_vertices(line), expected, atol=0.05)
    # The band stops where the bounds are unknown (nobody at risk any more).
    (band,) = [p.get("d") for p in curve if p.get("class") == "band"]
    ys = sorted({float(y) for y in re.findall(r",([\d.]+)", band)})
    assert ys == pytest.approx(sorted(float(panel.y(np.array(b))) for b in (1.0, 0.95, 0.85, 0.8, 0.6)), abs=0.05)
    legend = etree.fromstring(svg.encode()).xpath("//*[@class='legend']//text()")
    assert "I (n=40)" in legend and not any(text.startswith("II ") for text in legend)


def test_steps_past_the_axis_or_within_one_pixel_are_drawn_once():
    # 1,000 steps in the first day (all within one pixel), then one at 20 years, past the 10-year axis.
    days = [0.0, *np.linspace(0.1, 1, 1000), 20 * 365.25, 30 * 365.25]
    survival = list(np.linspace(1, 0.5, len(days)))
    steps = _steps("I", days, survival, survival, survival, at_risk=2000)
    (curve,) = _curves(survival_svg(steps, min_patients=10, max_years=10)).values()
    line = next(p for p in curve if p.get("class") == "line").get("d")[1:]
    corners = _vertices(line)
    # time zero, the last step of the first pixel, the first step past the axis (the line runs to the edge)
    assert len(corners) == 3
    assert corners[1][1] == pytest.approx(float(Panel(80, 70, 500, 340, 10).y(np.array(survival[1000]))), abs=0.05)


def test_the_plot_of_the_marts_draws_every_group_large_enough_and_chromium_shows_it(built, tmp_path):
    svg = plot_survival(built.warehouse, tmp_path / "survival.svg")
    steps = built.query("SELECT origin, endpoint, grouping, group_value, max(n_at_risk) AS n FROM marts.survival_km "
                        "WHERE (origin IN ('enrolment', 'diagnosis') AND grouping = 'iccc3_group') "
                        "OR (origin = 'recommendation' AND grouping = 'advice_group') GROUP BY ALL")
    large = {(r.origin, r.endpoint, r.grouping, r.group_value) for r in steps.itertuples() if r.n >= 10}
    assert large and set(_curves(svg.read_text())) == large
    page = tmp_path / "plot.html"
    page.write_text('<!DOCTYPE html><html><body onload="var i = document.getElementById(\'plot\'); '
                    'document.body.dataset.drawn = i.complete + \' \' + i.naturalWidth + \'x\' + i.naturalHeight">'
                    '<img id="plot" src="survival.svg"></body></html>')
    body = html.fromstring(dump_dom(page, tmp_path)).body
    assert body.get("data-drawn") == "true 1200x1315"  # a broken picture is 0x0
