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
