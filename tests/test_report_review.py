"""The validation report as a quality officer reads it: headline figures, wording after a failed
source, Data Docs links, printing. The fixture warehouse of dq_fixture, rendered in real headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import dq_fixture
import duckdb
import lxml.html
import pytest
from headless_chromium import dump_dom

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.report import build_report

LATEST = dq_fixture.RUNS[-1].run_id


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dq_fixture.build_warehouse(tmp_path_factory.mktemp("review") / "warehouse.duckdb")


def _copy(warehouse: Path, folder: Path) -> Path:
    copy = folder / "warehouse.duckdb"
    shutil.copyfile(warehouse, copy)
    return copy


def _page(warehouse: Path, folder: Path, run_id: str | None = None) -> lxml.html.HtmlElement:
    page = build_report(warehouse, folder / "reports", run_id)
    return lxml.html.fromstring(dump_dom(page, folder))


# -- the endpoints tile ----------------------------------------------------------------------------
def _hold_back_an_unread_follow_up(warehouse: Path) -> None:
    """A follow-up refused while being read (its date did not parse): held back, its values never staged,
    so marts.held_back_endpoints lists it as `unknown`, a possible death or progression."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("INSERT INTO dq.quarantine VALUES (?, 'sacha_fr', 'sacha_fr_export.csv', ?, ?, 'FU', 90, "
                    "'FR-LYO02', ['follow_up'], ['HAR-DATE-EXISTS'], ['31/02/2026 is not a date'])",
                    [dq_fixture.VALIDATED[-1], "ab" * 32, f"{dq_fixture.pseudonym(99)}|FU[90]"])
        con.execute((WAREHOUSE_SQL_DIR / "marts" / "80_held_back_endpoints.sql").read_text())
    finally:
        con.close()


def test_the_endpoints_tile_counts_known_endpoints_and_the_possible_ones_apart(warehouse, tmp_path):
    """At 2,000 persons the tile said 339 endpoints held back, 238 of them follow-ups and diagnoses
    refused while being read, whose endpoint is not known: a quality officer read 339 deaths, relapses,
    progressions and responses missing from the marts where 101 were."""
    copy = _copy(warehouse, tmp_path)
    _hold_back_an_unread_follow_up(copy)
    dom = _page(copy, tmp_path)
    rows = dom.xpath('//table[@id="held-back-endpoint-table"]/tbody/tr')
    by_endpoint = {r.get("data-endpoint"): int(r.get("data-records")) for r in rows}
    assert by_endpoint == {"relapse": 1, "death": 1, "unknown": 1}
    assert int(dom.get_element_by_id("held-back-endpoints-total").text) == 2
    assert int(dom.get_element_by_id("held-back-endpoints-possible").text) == 1


def test_without_unknown_endpoints_the_tile_says_nothing_of_possible_ones(warehouse, tmp_path):
    dom = _page(warehouse, tmp_path)
    assert int(dom.get_element_by_id("held-back-endpoints-total").text) == len(dq_fixture.HELD_BACK_ENDPOINTS)
    assert not dom.xpath('//*[@id="held-back-endpoints-possible"]')


# -- a run whose only news is a failed source ----------------------------------------------------------
FAILED_RUN = "20261105T020000Z-fa11"


def _add_a_run_in_which_a_source_failed(warehouse: Path) -> None:
    """A night in which sacha_fr's new export could not be read and nothing else changed: the rules do not
    rerun, sacha_fr keeps its last good data."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("INSERT INTO meta.run VALUES (?, 'airflow', '2026-11-05 02:00:00+00', '2026-11-05 02:03:00+00', "
                    "'completed_with_failures', [], ['registry_it'], ['sacha_fr'], "
                    "'sacha_fr: SACHA_ODM.xml line 6907: not well-formed XML', false, 'rules-v1')", [FAILED_RUN])
    finally:
        con.close()


def test_a_run_with_a_failed_source_is_not_said_to_have_changed_nothing(warehouse, tmp_path):
    """The page of a night whose new sacha_fr export could not be read said "no source and no rule changed"
    beside "failed: sacha_fr", and its trend point "nothing changed": a quality officer could not tell
    whether the centre's new export had been looked at."""
    copy = _copy(warehouse, tmp_path)
    _add_a_run_in_which_a_source_failed(copy)
    dom = _page(copy, tmp_path)
    assert dom.get_element_by_id("run-id").text == FAILED_RUN
    note = " ".join(dom.get_element_by_id("findings-run").text_content().split())
    assert "no source and no rule changed" not in note
    assert "sacha_fr could not be read and keeps its last good data" in note
    assert dq_fixture.VALIDATED[-1] in note
    (point,) = dom.xpath(f'//*[@class="run-point"][@data-run-id="{FAILED_RUN}"]')
    assert point.find("title").text.endswith("(rules not rerun: sacha_fr failed, nothing else changed)")
    # A night with nothing new still says so.
    (quiet,) = dom.xpath(f'//*[@class="run-point"][@data-run-id="{LATEST}"]')
    assert quiet.find("title").text.endswith("(rules not rerun: nothing changed)")


# -- printed ---------------------------------------------------------------------------------------------
_PRINT_PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("output"); probe.id = "print-probe";
  const clipped = [...document.querySelectorAll(".scroll")].filter(box => box.scrollWidth > box.clientWidth);
  const shown = element => element && element.getClientRects().length > 0;
  probe.textContent = JSON.stringify({
    page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth,
    clipped: clipped.map(box => box.firstElementChild.id),
    nav: shown(document.querySelector("nav")),
    filters: [...document.querySelectorAll("input[type=search]")].filter(shown).length});
  document.body.appendChild(probe); });</script>"""


def _laid_out_as_printed(page: Path, work: Path, width: int) -> dict:
    """How Chromium lays the page out with its print styles on a sheet `width` CSS pixels wide (A4 less
    its margins is some 720): a copy of the page with `@media print` made `@media all`, measured by a
    script. (Headless Chromium prints to PDF but cannot be asked to lay out for print and report.)"""
    import json
    import subprocess

    from headless_chromium import _chromium

    html = page.read_text(encoding="utf-8")
    probe = work / "printed.html"
    probe.write_text(html.replace("@media print", "@media all") + _PRINT_PROBE, encoding="utf-8")
    dom = subprocess.run([*_chromium(), f"--user-data-dir={work / 'chromium'}", f"--window-size={width},2000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(lxml.html.fromstring(dom.stdout).get_element_by_id("print-probe").text)


def test_printed_every_rule_keeps_all_its_columns(synthetic_run, tmp_path):
    """Printed or saved as PDF, the twelve columns of every rule sat in a box that scrolls on screen and
    was cut at the sheet's edge: rows judged, waived, percent, threshold and status were not on paper.
    The nav and filter boxes, of no use on paper, are left out. 718 pixels: an A4 sheet less Chromium's
    margins."""
    home, _, _ = synthetic_run
    printed = _laid_out_as_printed(build_report(home.warehouse, tmp_path / "reports"), tmp_path, 733)
    assert printed["window"] == 718  # the window less its scroll bar
    assert printed["clipped"] == []
    assert printed["page"] <= printed["window"]
    assert printed["nav"] is False and printed["filters"] == 0


# -- Data Docs ---------------------------------------------------------------------------------------------
def _judge(warehouse: Path, judged: list[tuple[str, str, str]]) -> None:
    """dq.gx_judged as GX's memo leaves it: per table and source, the run whose GX findings still hold."""
    con = duckdb.connect(str(warehouse))
    try:
        con.executemany("INSERT INTO dq.gx_judged VALUES (?, ?, 'fingerprint', ?)", judged)
    finally:
        con.close()


def test_data_docs_links_say_which_tables_of_a_source_each_run_judged(warehouse, tmp_path):
    """A night in which only iltb's follow-up export changed: GX judged iltb's follow-ups again, and its
    other tables kept the findings of the run before. The page linked that run's Data Docs for "iltb, whose
    rows have not changed since", and this run's as "every expectation": a quality officer looking for
    iltb's follow-ups opened the stale page."""
    copy = _copy(warehouse, tmp_path)
    findings, earlier = dq_fixture.VALIDATED[-1], dq_fixture.VALIDATED[0]
    _judge(copy, [("diagnosis", "registry_it", findings), ("treatment", "registry_it", earlier),
                  ("patient", "registry_it", earlier), ("diagnosis", "sacha_fr", earlier),
                  ("treatment", "sacha_fr", earlier)])
    for run in (findings, earlier):
        docs = tmp_path / "reports" / run / "data_docs" / "index.html"
        docs.parent.mkdir(parents=True)
        docs.write_text("<html><body>GX Data Docs</body></html>")
    dom = _page(copy, tmp_path)
    assert dom.get_element_by_id("data-docs-scope").text == "registry_it (diagnosis)"
    (older,) = dom.xpath('//a[@class="earlier-data-docs"]/..')
    assert " ".join(older.text_content().split()) == (
        f"Great Expectations Data Docs of run {earlier}: registry_it (all but diagnosis), sacha_fr, whose rows "
        "have not changed since that run judged them")


# -- finding one's way ---------------------------------------------------------------------------------
def test_each_nav_link_lands_on_its_section_s_heading(warehouse, tmp_path):
    """"Per centre" led to the table itself, so the page scrolled past the section's heading and the
    filter box above the table: a keyboard or screen-reader user landed in the table with no way to
    know the box was there."""
    dom = _page(warehouse, tmp_path)
    links = dom.xpath("//nav/a/@href")
    for href in links:
        target = dom.get_element_by_id(href[1:])
        assert target.tag == "h2" or target[0].tag == "h2", (href, target.tag)
    assert "#clerical-review" in links


_FILTER_PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("output"); probe.id = "filter-probe";
  const shown = () => [...document.querySelectorAll("#rule-table tbody tr")].filter(r => !r.hidden)
                                                                            .map(r => r.dataset.rule);
  const box = document.querySelector('input[data-filter="rule-table"]');
  const list = document.querySelector('select[data-filter="rule-table"]');
  const seen = {};
  box.value = "error"; box.dispatchEvent(new Event("input")); seen.typed = shown();
  box.value = ""; box.dispatchEvent(new Event("input"));
  if (list) { list.value = "error"; list.dispatchEvent(new Event("change")); seen.in_error = shown();
              box.value = "plausibility"; box.dispatchEvent(new Event("input")); seen.both = shown();
              list.value = ""; list.dispatchEvent(new Event("change")); seen.plausibility = shown(); }
  probe.textContent = JSON.stringify(seen); document.body.appendChild(probe); });</script>"""


def test_rules_in_error_are_found_by_status_not_by_typing_error(warehouse, tmp_path):
    """Typing "error" in the rule filter, as the page invites ("Filter rules (id, category, status…)"), kept
    the rules of severity error, which hold records back, beside the rule in error, which could not run (at
    200 persons: 32 rules of severity error kept, none in error): a quality officer looking for rules to report
    to the data manager found the wrong ones. A status list beside the box chooses by status."""
    import json
    import subprocess

    from headless_chromium import _chromium

    page = build_report(warehouse, tmp_path / "reports")
    probe = tmp_path / "filtered.html"
    probe.write_text(page.read_text(encoding="utf-8") + _FILTER_PROBE, encoding="utf-8")
    dom = subprocess.run([*_chromium(), f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(lxml.html.fromstring(dom.stdout).get_element_by_id("filter-probe").text)
    severe = sorted(r.rule_id for r in dq_fixture.RULES if r.severity == "error")
    assert set(severe) < set(seen["typed"])  # typed, "error" keeps the rules of severity error, which passed
    assert seen.get("in_error") == ["XT-TREAT-AFTER-DIAG"]
    assert seen["both"] == ["XT-TREAT-AFTER-DIAG"]  # the box and the list together
    plausibility = sorted(r.rule_id for r in dq_fixture.RULES if r.category == "plausibility")
    assert sorted(seen["plausibility"]) == plausibility
