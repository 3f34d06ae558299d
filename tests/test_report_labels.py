"""The report's charts over runs and its long tables: what tells two runs of one day apart, and the
filter box of the endpoints held back, in real headless Chromium where it is behaviour."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import lxml.etree
import lxml.html

from etl.quality.query_status import AgePoint
from etl.quality.report import TrendPoint, query_age_svg, trend_svg


def _labels(svg: str) -> list[str]:
    """The run labels under a chart's axis, each as read (its lines joined by a space)."""
    root = lxml.etree.fromstring(svg.encode())
    return [" ".join(t.strip() for t in text.itertext() if t.strip())
            for text in root.iter("text") if text.get("text-anchor") == "middle"]


def test_two_runs_of_one_day_are_labelled_apart_in_both_charts():
    """A rerun the same day (a corrected export, a failed night run again) was labelled "05 Dec" like
    the night's run: the chart showed two points with one label, and nothing said which was which."""
    starts = [datetime(2026, 12, 4, 2, 0, tzinfo=UTC), datetime(2026, 12, 5, 2, 0, tzinfo=UTC),
              datetime(2026, 12, 5, 14, 30, tzinfo=UTC)]
    trend = [TrendPoint(f"run{i}", start, 3, 1, True) for i, start in enumerate(starts)]
    assert _labels(trend_svg(trend)) == ["04 Dec", "05 Dec 02:00", "05 Dec 14:30"]
    ages = [AgePoint(f"run{i}", start, 2, 4.0, 9) for i, start in enumerate(starts)]
    assert _labels(query_age_svg(ages)) == ["04 Dec", "05 Dec 02:00", "05 Dec 14:30"]


_ENDPOINT_FILTER_PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("output"); probe.id = "filter-probe";
  const shown = () => [...document.querySelectorAll("#held-back-endpoint-table tbody tr")].filter(r => !r.hidden)
                                                                                       .map(r => r.dataset.endpoint);
  const box = document.querySelector('input[data-filter="held-back-endpoint-table"]');
  const seen = {all: shown(), box: Boolean(box)};
  if (box) { box.value = "DEATH"; box.dispatchEvent(new Event("input")); seen.death = shown(); }
  probe.textContent = JSON.stringify(seen); document.body.appendChild(probe); });</script>"""


def test_the_endpoints_held_back_are_filtered_like_the_other_long_tables(tmp_path):
    """At a registry's scale the endpoints held back run to a row per endpoint, source and centre, each
    with its record keys; unlike the centres and the rules, the table had no box to find a centre's."""
    import dq_fixture
    from headless_chromium import _chromium

    from etl.quality.report import build_report

    page = build_report(dq_fixture.build_warehouse(tmp_path / "warehouse.duckdb"), tmp_path / "reports")
    probe = tmp_path / "filtered.html"
    probe.write_text(page.read_text(encoding="utf-8") + _ENDPOINT_FILTER_PROBE, encoding="utf-8")
    dom = subprocess.run([*_chromium(), f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(lxml.html.fromstring(dom.stdout).get_element_by_id("filter-probe").text)
    assert sorted(seen["all"]) == ["death", "relapse"]
    assert seen["box"] and seen["death"] == ["death"]  # typed in any case, as the other boxes
