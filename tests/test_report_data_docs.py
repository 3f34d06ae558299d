"""GX Data Docs as the report links them: named after the pipeline's run, its index and each table's page.
Real GX, real headless Chromium."""

from __future__ import annotations

from types import SimpleNamespace

import dq_fixture
import lxml.html
import pandas as pd
import pytest
from headless_chromium import dump_dom

from etl.quality.catalogue import load_catalogue
from etl.quality.gx_process import GxHere, Job
from etl.quality.gx_suites import Batch
from etl.quality.report import build_report

RUN_ID = "20261205T020000Z-2500"  # a suffix dateutil reads as a 25-hour offset, which failed GX's page


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The Data Docs GX writes for one table's rule, where the pipeline has them written: the run's report folder."""
    root = tmp_path_factory.mktemp("data-docs")
    folder = root / "reports" / RUN_ID / "data_docs"
    rows = pd.DataFrame({"source_id": "registry_x", "source_record_key": [f"EVENT[{i}]" for i in range(3)],
                         "hgvs": ["NM_000546.6:c.215C>G", "c.215C>G", "not a variant"]})
    rules = [r for r in load_catalogue(check_types=False) if r.rule_id == "MOL-HGVS-SYNTAX"]
    judge = GxHere(lambda t: iter([Batch(rows, pd.Series(["IT-X01"] * 3))]) if t == "molecular_alteration" else None)
    judge.submit(Job(rules, {}, folder, RUN_ID))
    judge.docs_written()
    return SimpleNamespace(root=root, folder=folder)


def test_the_data_docs_name_the_pipeline_s_run(docs):
    """GX filed and showed every validation under the run name "__none__": nothing tied its pages to the
    run whose report links them, once copied or opened on their own."""
    (page,) = (docs.folder / "validations").rglob("*.html")
    assert f"run-{RUN_ID}" in page.relative_to(docs.folder).parts
    info = lxml.html.fromstring(page.read_bytes())
    rows = [[" ".join(cell.text_content().split()) for cell in row] for row in info.iter("tr")]
    assert ["Run Name", f"run-{RUN_ID}"] in rows
    assert not any("__none__" in p.read_text(encoding="utf-8") for p in docs.folder.rglob("*.html"))


def test_the_report_links_each_table_s_page_which_reads_without_a_network(docs, tmp_path):
    """The report links each table's page as well as GX's index (whose table a script draws: offline, Data
    Docs written before their assets were copied beside them listed no page), and says they read without a
    network."""
    warehouse = dq_fixture.build_warehouse(tmp_path / "warehouse.duckdb")
    page = build_report(warehouse, docs.root / "reports", data_docs=docs.folder / "index.html")
    dom = lxml.html.fromstring(dump_dom(page, tmp_path))
    assert "read without a network" in " ".join(dom.get_element_by_id("data-docs-network").text_content().split())
    (link,) = dom.xpath('//a[@class="data-docs-page"]')
    assert link.get("data-suite") == link.text == "core.molecular_alteration"
    table_page = (page.parent / link.get("href")).resolve()
    assert table_page.is_relative_to(docs.folder.resolve())
    # Chromium reads the page from disk; what it shows without the CDN's styles is what an offline officer sees.
    shown = lxml.html.fromstring(dump_dom(table_page, tmp_path))
    text = " ".join(shown.text_content().split())
    assert "Expectation Suite: core.molecular_alteration" in text and "Unsuccessful Expectations1" in text


def test_a_folder_of_data_docs_without_pages_gives_no_page_links(tmp_path):
    warehouse = dq_fixture.build_warehouse(tmp_path / "warehouse.duckdb")
    index = tmp_path / "gx" / "index.html"
    index.parent.mkdir()
    index.write_text("<html><body>GX Data Docs</body></html>")
    dom = lxml.html.fromstring(build_report(warehouse, tmp_path / "reports", data_docs=index).read_bytes())
    assert dom.get_element_by_id("data-docs") is not None and not dom.xpath('//a[@class="data-docs-page"]')
    assert dom.get_element_by_id("data-docs-network") is not None
