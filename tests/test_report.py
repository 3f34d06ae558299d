"""The validation report, built from a fixture warehouse and rendered in real headless Chromium."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import dq_fixture
import duckdb
import lxml.html
import pytest
from dq_fixture import VALIDATED, issue_key, issues_of
from headless_chromium import dump_dom, screenshot

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.report import CheckResult, UnknownRun, build_report, rule_status, source_rule_status

LATEST, FINDINGS, PREVIOUS = dq_fixture.RUNS[-1].run_id, VALIDATED[2], VALIDATED[1]


def _render(page: Path, work: Path) -> tuple[lxml.html.HtmlElement, Path]:
    """The DOM Chromium builds from the page, and a screenshot of it."""
    dom = dump_dom(page, work)
    return lxml.html.fromstring(dom), screenshot(page, work, work / "report.png")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The default report (latest run) of the fixture warehouse, with GX Data Docs and two attachments."""
    root = tmp_path_factory.mktemp("report")
    warehouse = dq_fixture.build_warehouse(root / "warehouse.duckdb")
    data_docs = root / "gx" / "local_site" / "index.html"
    data_docs.parent.mkdir(parents=True)
    data_docs.write_text("<html><body>GX Data Docs</body></html>")
    dictionary, plot = root / "extras" / "data_dictionary.html", root / "extras" / "survival.svg"
    dictionary.parent.mkdir()
    dictionary.write_text("<html><body>core.diagnosis ...</body></html>")
    plot.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40"/></svg>')
    page = build_report(warehouse, root / "reports", data_docs=data_docs,
                        attachments=[("Data dictionary", dictionary), ("Overall survival", plot)])
    dom, shot = _render(page, root)
    return SimpleNamespace(root=root, warehouse=warehouse, reports=root / "reports", page=page, dom=dom, shot=shot,
                           data_docs=data_docs)


def _expected_statuses(run_number: int) -> dict[str, str]:
    """Run-level status per rule, recomputed from the fixture's check results."""
    seen: dict[str, set[str]] = defaultdict(set)
    for row in dq_fixture.check_results(run_number):
        seen[row["rule_id"]].add(row["status"])
    return {rule: next((s for s in ("error", "failed", "passed") if s in statuses), "not_applicable")
            for rule, statuses in seen.items()}


# -- statuses, without a browser -----------------------------------------------------------------
def test_a_rule_takes_its_worst_result_over_sources_and_centres():
    assert rule_status(["passed", "failed", "not_applicable"]) == "failed"
    assert rule_status(["failed", "error", "passed"]) == "error"
    assert rule_status(["not_applicable", "passed"]) == "passed"
    assert rule_status(["not_applicable"]) == "not_applicable"
    assert rule_status([]) == "not_applicable"


def test_on_a_source_failing_rows_are_summed_over_centres_before_the_threshold():
    def result(centre: str, failing: int, denominator: int, status: str) -> CheckResult:
        return CheckResult("R-X", "src", centre, failing, denominator, 0.05, status)

    small_centre_fails = [result("A", 3, 40, "failed"), result("B", 0, 55, "passed")]
    assert source_rule_status(small_centre_fails) == "passed"  # 3 / 95 = 3.2 % <= 5 %
    assert source_rule_status([result("A", 3, 40, "failed"), result("B", 2, 20, "passed")]) == "failed"
    assert source_rule_status([*small_centre_fails, result("C", 0, 0, "error")]) == "error"
    assert source_rule_status([result("A", 0, 40, "not_applicable")]) == "not_applicable"  # switched off
    assert source_rule_status([result("A", 1, 40, "not_applicable"), result("B", 0, 10, "passed")]) == "passed"


# -- the page in Chromium ------------------------------------------------------------------------
def test_the_latest_run_gets_the_page_and_latest_points_at_it(rendered):
    assert rendered.page == rendered.reports / LATEST / "index.html"
    latest = rendered.reports / "latest"
    assert latest.is_symlink() and os.readlink(latest) == LATEST  # relative: the folder can move
    assert (latest / "index.html").read_text(encoding="utf-8") == rendered.page.read_text(encoding="utf-8")
    assert rendered.dom.get_element_by_id("run-id").text == LATEST
    # Nothing changed in the latest run: the page says whose findings it shows.
    assert FINDINGS in rendered.dom.get_element_by_id("findings-run").text_content()


def test_the_header_gives_the_run_and_its_totals(rendered):
    dom = rendered.dom
    latest_issues = issues_of(3)
    assert dom.get_element_by_id("sources-unchanged").text == "registry_it, sacha_fr"
    assert dom.get_element_by_id("sources-failed").text == "none"
    assert int(dom.get_element_by_id("issues-total").text) == len(latest_issues) == 15
    held = {dq_fixture.record_key(i) for i in latest_issues if dq_fixture.SEVERITY[i.rule_id] == "error"}
    assert int(dom.get_element_by_id("held-back-total").text) == len(held) == 2
    statuses = _expected_statuses(3)
    assert int(dom.get_element_by_id("rules-failed").text) == list(statuses.values()).count("failed") == 6
    assert int(dom.get_element_by_id("rules-error").text) == 1
    assert int(dom.get_element_by_id("rules-total").text) == len(dq_fixture.RULES)


def test_the_run_s_notices_are_listed_as_text(rendered):
    (notice,) = rendered.dom.xpath('//*[@id="notices"]//li')
    assert notice.get("data-source") == "registry_it" and notice.text.endswith("symbolic link <a href=x>")
    assert not notice.xpath(".//a")  # a file name is text, never markup


def test_the_kahn_grid_counts_rules_by_run_level_status(rendered):
    statuses = _expected_statuses(3)
    category = {r.rule_id: (r.category, r.subcategory) for r in dq_fixture.RULES}
    expected: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rule_id, status in statuses.items():
        expected[category[rule_id]][status] += 1
        expected[category[rule_id]]["total"] += 1
    cells = rendered.dom.xpath('//table[@id="kahn-grid"]//td[@data-category]')
    assert len(cells) == 6
    for cell in cells:
        want = expected[(cell.get("data-category"), cell.get("data-subcategory"))]
        got = {k: int(cell.get(f"data-{k.replace('_', '-')}")) for k in
               ("passed", "failed", "error", "not_applicable", "total")}
        assert got == {k: want[k] for k in got}, (cell.get("data-category"), cell.get("data-subcategory"))
    # The fixture's story, spelt out: the cross-table rule is in error, consent is not applicable.
    plausibility = rendered.dom.xpath('//td[@data-category="plausibility"][@data-subcategory="validation"]')[0]
    assert (plausibility.get("data-failed"), plausibility.get("data-error")) == ("1", "1")


def test_per_source_sums_centres_before_comparing_with_the_threshold(rendered):
    rows = {r.get("data-source"): r for r in rendered.dom.xpath('//table[@id="source-summary"]//tr[@data-source]')}
    assert set(rows) == {"sacha_fr", "registry_it"}
    counts = {s: tuple(int(rows[s].get(f"data-{k}")) for k in ("passed", "failed", "error", "not-applicable"))
              for s in rows}
    assert counts == {"sacha_fr": (6, 2, 1, 1), "registry_it": (5, 3, 1, 1)}
    # FR-PAR01 misses 3 of 40 diagnosis dates (7.5 % > 5 %), sacha_fr as a whole 3 of 95: passed.
    cell = rendered.dom.xpath('//table[@id="source-rules"]//tr[@data-rule="DIAG-DATE-PRESENT"]'
                              '/td[@data-source="sacha_fr"]')[0]
    assert cell.get("data-status") == "passed"
    rule_row = rendered.dom.xpath('//table[@id="rule-table"]//tr[@data-rule="DIAG-DATE-PRESENT"]')[0]
    assert rule_row.get("data-status") == "failed"


def test_per_centre_lists_every_centre_with_its_issues_and_failed_rules(rendered):
    rows = {(r.get("data-source"), r.get("data-centre") or None): r
            for r in rendered.dom.xpath('//table[@id="per-centre"]/tbody/tr')}
    expected_centres = {(s, c) for s, centres in dq_fixture.CENTRES.items() for c in centres}
    assert set(rows) == expected_centres
    failed_rules: dict[tuple[str, str | None], int] = defaultdict(int)
    for result in dq_fixture.check_results(3):
        failed_rules[(result["source_id"], result["centre_id"])] += result["status"] == "failed"
    for (source_id, centre_id), row in rows.items():
        issues = [i for i in issues_of(3) if (i.source_id, i.centre_id) == (source_id, centre_id)]
        held = {i.patient for i in issues if dq_fixture.SEVERITY[i.rule_id] == "error"}
        assert int(row.get("data-records")) == dq_fixture.CENTRES[source_id][centre_id]
        assert int(row.get("data-issues")) == len(issues), centre_id
        assert int(row.get("data-held-back")) == len(held), centre_id
        assert int(row.get("data-rules-failed")) == failed_rules[(source_id, centre_id)], centre_id
    assert rows[("sacha_fr", "FR-NAN03")].get("data-issues") == "0"
    assert "(no centre)" in rows[("registry_it", None)].text_content()


def test_changes_since_the_previous_run_are_new_resolved_persisting(rendered):
    now, before = {issue_key(i) for i in issues_of(3)}, {issue_key(i) for i in issues_of(2)}
    in_error = set(dq_fixture.RULE_ERRORS[3])
    gone = before - now
    expected = {"new": len(now - before), "persisting": len(now & before),
                "resolved": len({k for k in gone if k[0] not in in_error}),
                "not_rechecked": len({k for k in gone if k[0] in in_error})}
    assert expected == {"new": 8, "persisting": 7, "resolved": 1, "not_rechecked": 1}
    changes = rendered.dom.get_element_by_id("changes")
    assert changes.get_element_by_id("previous-run").text == PREVIOUS
    shown = {b.get("data-kind"): int(b.text) for b in changes.xpath('.//b[@data-kind]')}
    assert shown == expected
    total = changes.xpath('.//tfoot/tr/td')
    assert [int(td.text) for td in total[1:]] == [expected[k] for k in ("new", "resolved", "persisting",
                                                                        "not_rechecked")]
    per_rule = {tr.get("data-rule"): [int(td.text) for td in tr.xpath("td")[1:]]
                for tr in changes.xpath(".//tbody/tr")}
    assert per_rule["DIAG-ICDO3-TOPOGRAPHY"] == [6, 0, 1, 0]
    assert per_rule["XT-TREAT-AFTER-DIAG"] == [0, 0, 0, 1]


def test_the_trend_has_one_point_per_run(rendered):
    points = rendered.dom.xpath('//svg[@id="trend-chart"]//*[@class="run-point"]')
    assert [p.get("data-run-id") for p in points] == [r.run_id for r in dq_fixture.RUNS]
    statuses = [_expected_statuses(n) for n in (1, 2, 3)]
    expected_failed = [list(s.values()).count("failed") for s in statuses]
    assert [int(p.get("data-issues")) for p in points] == [len(issues_of(n)) for n in (1, 2, 3)] + [15]
    assert [int(p.get("data-rules-failed")) for p in points] == [*expected_failed, expected_failed[-1]]
    assert [p.get("data-validated") for p in points] == ["true", "true", "true", "false"]


def test_every_rule_is_listed_with_its_threshold_and_status(rendered):
    rows = {r.get("data-rule"): r for r in rendered.dom.xpath('//table[@id="rule-table"]/tbody/tr')}
    assert {r: row.get("data-status") for r, row in rows.items()} == _expected_statuses(3)
    consent = rows["CONSENT-RECORDED"].text_content()
    assert "switched off in sources/registry_it.yaml" in consent and "no rows of this source" in consent
    assert "Binder Error" in rows["XT-TREAT-AFTER-DIAG"].text_content()
    assert "registry_it: 20 %" in rows["DIAG-DATE-PRESENT"].text_content()  # the source's own threshold


def test_the_page_works_offline_and_links_data_docs_and_attachments(rendered):
    for element in rendered.dom.iter():
        for attribute in ("src", "href"):
            value = (element.get(attribute) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (element.tag, value)
    assert "http://" not in "".join(rendered.dom.xpath("//style/text()"))
    folder = rendered.page.parent
    docs_href = rendered.dom.get_element_by_id("data-docs").get("href")
    assert not Path(docs_href).is_absolute() and (folder / docs_href).resolve() == rendered.data_docs.resolve()
    more = rendered.dom.xpath('//h2[@id="more"]/following-sibling::ul[1]//a/@href')
    assert {"more/data_dictionary.html", "more/survival.svg"} <= set(more)
    assert all((folder / href).is_file() for href in more)
    assert rendered.dom.xpath('//img[@src="more/survival.svg"]')
    assert rendered.shot.stat().st_size > 10_000


# -- other runs -----------------------------------------------------------------------------------
def test_the_first_run_has_no_previous_run_and_the_second_compares_with_it(rendered):
    reports = rendered.root / "older"
    first = lxml.html.fromstring(build_report(rendered.warehouse, reports, VALIDATED[0]).read_bytes())
    assert first.get_element_by_id("no-previous-run") is not None
    assert not first.xpath('//*[@data-kind]')
    second = lxml.html.fromstring(build_report(rendered.warehouse, reports, VALIDATED[1]).read_bytes())
    now, before = {issue_key(i) for i in issues_of(2)}, {issue_key(i) for i in issues_of(1)}
    shown = {b.get("data-kind"): int(b.text) for b in second.xpath('//*[@id="changes"]//b[@data-kind]')}
    assert shown == {"new": len(now - before), "resolved": len(before - now), "persisting": len(now & before)}
    assert second.get_element_by_id("sources-failed").text == "none"
    assert os.readlink(reports / "latest") == VALIDATED[1]


def test_rewriting_an_older_page_leaves_latest_on_the_newest(rendered):
    build_report(rendered.warehouse, rendered.reports, VALIDATED[2])
    assert os.readlink(rendered.reports / "latest") == LATEST
    page = lxml.html.fromstring((rendered.reports / VALIDATED[2] / "index.html").read_bytes())
    assert page.get_element_by_id("sources-failed").text == "iltb"
    assert not page.xpath('//*[@id="findings-run"]')


def test_an_unknown_run_or_one_before_any_validation_is_a_clear_error(rendered, tmp_path):
    with pytest.raises(UnknownRun, match="no run 'nope' in meta.run; the latest runs: " + LATEST):
        build_report(rendered.warehouse, tmp_path / "reports", "nope")
    fresh = tmp_path / "fresh.duckdb"
    con = duckdb.connect(str(fresh))
    for ddl in ("meta.sql", "dq.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    con.execute("INSERT INTO meta.run (run_id, started_at, validated) VALUES ('r1', now(), false)")
    con.close()
    with pytest.raises(UnknownRun, match="the quality rules have not run yet at run r1"):
        build_report(fresh, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_endpoints_carried_by_held_back_records_are_listed_with_their_record_keys(rendered):
    rows = rendered.dom.xpath('//table[@id="held-back-endpoint-table"]/tbody/tr')
    shown = {(r.get("data-endpoint"), r.get("data-source"), r.get("data-centre"), int(r.get("data-records")),
              int(r.get("data-missed"))) for r in rows}
    expected = {(endpoint, dq_fixture.ISSUES[i].source_id, dq_fixture.ISSUES[i].centre_id, 1, 1)
                for i, _, endpoint, _ in dq_fixture.HELD_BACK_ENDPOINTS}
    assert shown == expected  # the clean death is loaded, so it is not listed
    keys = {code.text for code in rendered.dom.xpath('//table[@id="held-back-endpoint-table"]//code')}
    assert keys == {dq_fixture.record_key(dq_fixture.ISSUES[i]) for i, *_ in dq_fixture.HELD_BACK_ENDPOINTS}
    assert rendered.dom.xpath('//nav/a[@href="#held-back-endpoints"]')
    assert int(rendered.dom.get_element_by_id("held-back-endpoints-total").text) == len(dq_fixture.HELD_BACK_ENDPOINTS)


def test_an_older_run_s_page_does_not_list_today_s_held_back_endpoints(rendered):
    older = lxml.html.fromstring(build_report(rendered.warehouse, rendered.root / "older-endpoints",
                                              VALIDATED[1]).read_bytes())
    assert older.get_element_by_id("held-back-endpoints-unavailable") is not None
    assert not older.xpath('//table[@id="held-back-endpoint-table"]')
    assert not older.xpath('//*[@id="held-back-endpoints-total"]')


@pytest.mark.parametrize("window_width", [1024, 1400])
def test_the_report_of_a_real_run_is_no_wider_than_the_window(synthetic_run, tmp_path, window_width):
    """A quality officer reads the page without scrolling sideways: long ODM record keys
    (`<pseudonym>|SE.FOLLOWUP[5]/F.FU[1]/IG.FU[1]`) and rule ids once pushed it wider than 1,400 pixels."""
    from headless_chromium import document_width

    home, _, _ = synthetic_run
    page_width, window = document_width((home.reports / "latest" / "index.html").resolve(), tmp_path, window_width)
    assert page_width <= window
