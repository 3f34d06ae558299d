"""The report's survival plot from both time zeros an analyst reads: enrolment (the studies') and
diagnosis (the population-based registries', EUROCARE's), each panel titled with its origin, and a
panel with nothing to draw saying why. Drawn by real headless Chromium."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from headless_chromium import dump_dom
from lxml import etree, html
from marts_fixture import MartsWarehouse, built_warehouse

from etl.load.survival import STEP_COLUMNS
from etl.load.survival_plot import HEIGHT, WIDTH, plot_survival, survival_svg

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


def _panels(svg: str) -> dict[tuple[str | None, str | None, str | None], etree._Element]:
    """(origin, endpoint, grouping) -> the panel."""
    root = etree.fromstring(svg.encode())
    return {(p.get("data-origin"), p.get("data-endpoint"), p.get("data-grouping")): p
            for p in root.iter(f"{SVG}g") if p.get("class") == "panel"}


def _groups(panel: etree._Element) -> set[str]:
    return {c.get("data-group") for c in panel.iter(f"{SVG}g") if c.get("class") == "curve"}


def _shown(svg_file: Any, work: Any) -> str | None:
    """What Chromium makes of the picture: "true WxH" when drawn (a broken picture is 0x0)."""
    page = work / f"{svg_file.stem}.html"
    page.write_text('<!DOCTYPE html><html><body onload="var i = document.getElementById(\'plot\'); '
                    'document.body.dataset.drawn = i.complete + \' \' + i.naturalWidth + \'x\' + i.naturalHeight">'
                    f'<img id="plot" src="{svg_file.name}"></body></html>')
    return html.fromstring(dump_dom(page, work)).body.get("data-drawn")


def test_the_plot_draws_survival_from_diagnosis_beside_survival_from_enrolment(built, tmp_path):
    """marts.survival_km has had the origin diagnosis (the registries' measure) since the marts learnt
    which sources are population-based; the plot still drew only the origin enrolment."""
    svg_file = plot_survival(built.warehouse, tmp_path / "survival.svg")
    panels = _panels(svg_file.read_text())
    large = built.query("SELECT origin, endpoint, group_value FROM marts.survival_km WHERE grouping = 'iccc3_group' "
                        "AND origin IN ('enrolment', 'diagnosis') GROUP BY ALL HAVING max(n_at_risk) >= 10")
    assert set(large.origin) == {"enrolment", "diagnosis"}  # the fixture has both to draw
    for origin in ("enrolment", "diagnosis"):
        for endpoint in ("OS", "EFS"):
            panel = panels[(origin, endpoint, "iccc3_group")]
            expected = set(large[(large.origin == origin) & (large.endpoint == endpoint)].group_value)
            assert _groups(panel) == expected, (origin, endpoint)
            title = panel.findtext(f"{SVG}text")
            assert title == f"{endpoint} by ICCC-3 group, from {origin}", title
    assert _shown(svg_file, tmp_path) == f"true {WIDTH}x{HEIGHT}"


def test_a_panel_with_nothing_to_draw_says_why(tmp_path):
    """A warehouse without a population-based registry has no one followed from diagnosis (and a new one
    nothing at all): its panels said nothing, empty boxes a reader took for a broken plot."""
    empty = pd.DataFrame({c: pd.Series(dtype="float64" if c in ("survival", "ci_lower", "ci_upper", "time_days")
                                       else "int64" if c.startswith("n_") else "object") for c in STEP_COLUMNS})
    svg = survival_svg(empty, min_patients=10, max_years=10)
    panels = _panels(svg)
    assert len(panels) == 6 and not any(_groups(p) for p in panels.values())
    for (origin, _, _), panel in panels.items():
        note = " ".join(panel.xpath(".//*[@class='empty']//text()"))
        assert "no group of 10 or more patients" in note, origin
        if origin == "diagnosis":
            assert "population-based registry" in note
    svg_file = tmp_path / "empty.svg"
    svg_file.write_text(svg)
    assert _shown(svg_file, tmp_path) == f"true {WIDTH}x{HEIGHT}"
