"""The report's lists of records at a registry's scale: the page shows the first of each, every row is in a
CSV beside it. At 20,000 persons with every query answered, the findings answered corrected but still
present and the waivers made a 10 MB page of 21,000 rows that Chromium took 10-20 s to open. The fixture
warehouse of dq_fixture with more rows than the page lists added, rendered in real headless Chromium."""

from __future__ import annotations

import csv
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import dq_fixture
import duckdb
import lxml.html
import pytest
from headless_chromium import dump_dom

from etl.quality.findings import value_hash
from etl.quality.query_status import WAIVED_NEXT_RUN
from etl.quality.report import KEYS_LISTED, LIST_FILES, LISTED, build_report

FINDINGS = dq_fixture.VALIDATED[-1]
MORE = LISTED + 5  # rows of each list: more than the page lists
SENT = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _key(i: int) -> str:
    return f"{dq_fixture.pseudonym(1000 + i)}|DIAG[{i}]"


def _add_a_registry_s_lists(warehouse: Path) -> None:
    """MORE findings of the latest run answered corrected and still present, each also confirmed (a waiver
    that holds from the next run), two waivers of records no longer found, MORE pairs for clerical review,
    and an endpoint row of KEYS_LISTED + 3 held-back records."""
    con = duckdb.connect(str(warehouse))
    try:
        (number,) = con.execute("SELECT number FROM dq.validation WHERE run_id = ?", [FINDINGS]).fetchone() or (0,)
        con.executemany("INSERT INTO dq.issue_span VALUES (?, NULL, 'DIAG-DATE-PRESENT', 'warning', 'sacha_fr', "
                        "'FR-PAR01', 'diagnosis', ?, ?, 'DIAG', ?, 'diagnosis_date', 'x', NULL)",
                        [(number, _key(i), dq_fixture.pseudonym(1000 + i), i) for i in range(MORE)])
        con.execute("INSERT INTO meta.query_batch VALUES ('B1', 'FR-PAR01', ?, ?, 'qo', 'all', NULL, 'q.xlsx', "
                    "'sacha_fr')", [FINDINGS, SENT])
        con.executemany("INSERT INTO meta.query_item VALUES ('B1', ?, 'DIAG-DATE-PRESENT', 'sacha_fr', ?, "
                        "'diagnosis_date', ?, 'warning', '[]')",
                        [(f"r{i}", _key(i), value_hash("x")) for i in range(MORE)])
        con.executemany("INSERT INTO meta.query_response VALUES ('B1', ?, 'corrected', NULL, 'a.csv', 'ab', ?, "
                        "'qo', ?)", [(f"r{i}", i, SENT) for i in range(MORE)])
        waivers = [(_key(i), value_hash("x"), "qo") for i in range(MORE)]
        waivers += [(f"{dq_fixture.pseudonym(2000 + i)}|DIAG[{i}]", value_hash("y"), "=HYPERLINK(1)") for i in range(2)]
        con.executemany("INSERT INTO meta.waiver VALUES ('sacha_fr', ?, 'DIAG-DATE-PRESENT', 'diagnosis_date', ?, "
                        "'FR-PAR01', 'B1', ?, ?)", [(k, h, SENT, who) for k, h, who in waivers])
        con.executemany("INSERT INTO dq.link_candidate VALUES (?, 'sacha_fr', ?, 'registry_it', ?, ?, ?, ?, NULL)",
                        [(FINDINGS, f"L{i:03d}", f"R{i:03d}", 10.0 - i / 100, 0.9 - i / 1000,
                          json.dumps({"sex": "agree", "birth_date": "year agrees"})) for i in range(MORE)])
        con.execute("UPDATE marts.held_back_endpoints SET source_record_keys = ? WHERE endpoint = 'death'",
                    [[_key(i) for i in range(KEYS_LISTED + 3)]])
    finally:
        con.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("lists")
    warehouse = dq_fixture.build_warehouse(root / "warehouse.duckdb")
    _add_a_registry_s_lists(warehouse)
    path = build_report(warehouse, root / "reports")
    return SimpleNamespace(root=root, warehouse=warehouse, path=path,
                           dom=lxml.html.fromstring(dump_dom(path, root)))


def _csv(page: SimpleNamespace, name: str) -> list[dict[str, str]]:
    link = page.dom.xpath(f'//p[@data-list="{name}"]/a/@href') or [LIST_FILES[name]]
    with (page.path.parent / link[0]).open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _said(page: SimpleNamespace, name: str) -> tuple[int, int]:
    (said,) = page.dom.xpath(f'//p[@data-list="{name}"]')
    return int(said.get("data-shown")), int(said.get("data-total"))


def test_findings_corrected_but_still_present_show_the_first_and_the_csv_holds_every_one(page):
    rows = page.dom.xpath('//details[@id="corrected-still-present"]//tbody/tr')
    assert len(rows) == LISTED
    assert _said(page, "corrected_still_present") == (LISTED, MORE)
    listed = _csv(page, "corrected_still_present")
    assert {r["record (pseudonymised key)"] for r in listed} == {_key(i) for i in range(MORE)}
    assert [r.get("data-record") for r in rows] == [r["record (pseudonymised key)"] for r in listed][:LISTED]


def test_waivers_that_no_longer_hold_are_listed_first_and_every_waiver_is_in_the_csv(page):
    rows = page.dom.xpath('//table[@id="waiver-table"]/tbody/tr')
    assert len(rows) == LISTED
    assert [r.get("data-status") for r in rows[:3]] == ["not found in this run"] * 2 + [WAIVED_NEXT_RUN]
    assert page.dom.xpath('//*[@id="waiver-counts"]//*[@data-not-holding]/@data-not-holding') == ["2"]
    assert _said(page, "waivers") == (LISTED, MORE + 2)
    listed = _csv(page, "waivers")
    assert len(listed) == MORE + 2
    assert [r["imported by"] for r in listed[:2]] == ["'=HYPERLINK(1)"] * 2  # never run as a formula


def test_an_endpoint_row_shows_its_first_record_keys_and_the_csv_every_held_back_record(page):
    (row,) = page.dom.xpath('//table[@id="held-back-endpoint-table"]/tbody/tr[@data-endpoint="death"]')
    assert len(row.xpath(".//code")) == KEYS_LISTED
    assert "and 3 more" in row.xpath('.//*[contains(@class, "more-keys")]')[0].text_content()
    deaths = [r for r in _csv(page, "held_back_endpoints") if r["endpoint"] == "death"]
    assert {r["record (pseudonymised key)"] for r in deaths} == {_key(i) for i in range(KEYS_LISTED + 3)}


def test_the_strongest_pairs_for_review_are_listed_and_the_csv_holds_every_pair(page):
    rows = page.dom.xpath('//table[@id="link-candidate-table"]/tbody/tr')
    assert [r.get("data-left") for r in rows] == [f"sacha_fr:L{i:03d}" for i in range(LISTED)]
    assert _said(page, "link_candidates") == (LISTED, MORE)
    listed = _csv(page, "link_candidates")
    assert [(r["patient 1"], r["patient 2"]) for r in listed] == [
        (f"sacha_fr:L{i:03d}", f"registry_it:R{i:03d}") for i in range(MORE)]
    assert listed[0]["evidence"] == "sex: agree; birth_date: year agrees"


def test_the_lists_beside_the_page_are_owner_only_and_an_emptied_list_s_csv_goes(page, tmp_path):
    folder = page.path.parent
    for name in LIST_FILES.values():
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    con = duckdb.connect(str(page.warehouse))
    try:
        con.execute("DELETE FROM dq.link_candidate")
    finally:
        con.close()
    build_report(page.warehouse, folder.parent)
    assert not (folder / LIST_FILES["link_candidates"]).exists()
    assert (folder / LIST_FILES["waivers"]).exists()
