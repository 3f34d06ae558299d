"""GX Data Docs open without the internet and tell no one they were opened: every style and script their
pages load is a file in their folder (etl/quality/data_docs.py). Real GX, real headless Chromium with the
network cut off; what it asked for comes from its net log."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

import lxml.html
import pandas as pd
import pytest
from headless_chromium import open_offline

from etl.quality.catalogue import load_catalogue
from etl.quality.data_docs import local_page, make_self_contained, outside_left
from etl.quality.gx_process import GxHere, Job
from etl.quality.gx_suites import Batch

RUN_ID = "20261206T020000Z-0d0c"
TABLES = {  # two tables, one rule each: one fails, one passes
    "molecular_alteration": ("MOL-HGVS-SYNTAX", "hgvs", ["NM_000546.6:c.215C>G", "c.215C>G", "not a variant"]),
    "diagnosis": ("DIAG-MORPHOLOGY-FORMAT", "icdo3_morphology", ["9510", "8960", "9500"]),
}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The Data Docs GX writes where the pipeline has them written: the run's report folder."""
    folder = tmp_path_factory.mktemp("data-docs") / "reports" / RUN_ID / "data_docs"
    batches = {table: Batch(pd.DataFrame({"source_id": "registry_x", "source_record_key": [f"R[{i}]" for i in range(3)],
                                          column: values}), pd.Series(["IT-X01"] * 3))
               for table, (_, column, values) in TABLES.items()}
    rules = [r for r in load_catalogue(check_types=False) if r.rule_id in {rule for rule, _, _ in TABLES.values()}]
    assert len(rules) == len(TABLES)
    judge = GxHere(lambda table: iter([batches[table]]) if table in batches else None)
    judge.submit(Job(rules, {}, folder, RUN_ID))
    judge.docs_written()
    pages = sorted((folder / "validations").rglob("*.html"))
    assert len(pages) == len(TABLES)
    return SimpleNamespace(folder=folder, index=folder / "index.html", pages=pages)


# The validation results on GX's index: its first tab, a table bootstrap-table draws from the page's data.
_INDEX = """(() => {
  const table = document.querySelector("#Validation-Results table[data-toggle=table]");
  const rows = [...table.querySelectorAll("tbody tr")];
  const suites = document.querySelector("#Expectation-Suites");
  const shown = {errors: window.pageErrors, border: getComputedStyle(table).borderCollapse,
                 width: table.getBoundingClientRect().width, room: table.parentElement.getBoundingClientRect().width,
                 links: rows.map((row) => row.dataset.href), suitesShown: getComputedStyle(suites).display,
                 icons: [...table.querySelectorAll("i.fas")].map((i) => getComputedStyle(i, "::before").content)};
  document.querySelector("#Expectation-Suites-tab").click();  // the other tab, as a click shows it
  return new Promise((done) => setTimeout(() => done(Object.assign(shown, {
    suitesOnClick: getComputedStyle(suites).display,
    suites: [...suites.querySelectorAll("tbody tr")].map((row) => row.textContent.trim())})), 1000));
})()"""

# A validation page: its statistics table and its expectations, each with its status icon.
_PAGE = """(() => {
  const table = document.querySelector("table.table");
  return {errors: window.pageErrors, border: getComputedStyle(table).borderCollapse,
          cells: [...table.querySelectorAll("td")].map((cell) => getComputedStyle(cell).borderTopStyle),
          icons: [...document.querySelectorAll("i.fas")].map((i) => getComputedStyle(i, "::before").content),
          moreInfo: getComputedStyle(document.querySelector(".collapse")).display};
})()"""


def test_the_index_asks_for_nothing_outside_its_folder_and_lists_every_validation(docs, tmp_path):
    """GX's pages loaded Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from five CDNs and its logo
    from S3 with the time in its address: 16 requests to 7 hosts for each page a quality officer opened,
    telling them when and from where; offline, the index listed no validation at all (a script draws it)."""
    outside, shown = open_offline(docs.index, tmp_path, _INDEX)
    assert outside == []
    assert shown["errors"] == []
    assert shown["border"] == "collapse"  # Bootstrap's table, not the browser's default ("separate")
    assert len(shown["links"]) == len(docs.pages)
    assert {(docs.folder / link).resolve() for link in shown["links"]} == {p.resolve() for p in docs.pages}
    assert sorted(shown["icons"]) == ['"✔"', '"✖"']  # passed and failed, drawn without Font Awesome
    assert shown["suitesShown"] == "none" and shown["suitesOnClick"] == "block"
    assert sorted(shown["suites"]) == sorted(f"core.{table}" for table in TABLES)


def test_a_validation_page_asks_for_nothing_outside_its_folder_and_is_laid_out(docs, tmp_path):
    failed = next(p for p in docs.pages if "molecular_alteration" in p.parts)
    outside, shown = open_offline(failed, tmp_path, _PAGE)
    assert outside == []
    assert shown["errors"] == []
    assert shown["border"] == "collapse" and set(shown["cells"]) == {"solid"}  # Bootstrap's .table borders
    assert '"✖"' in shown["icons"] and "none" not in shown["icons"]
    assert shown["moreInfo"] == "none"  # "Show more info..." folded, as Bootstrap's collapse keeps it


# The index's suites searched and sorted as a reader does, counting what reads a cell's text anew.
_SEARCH_AND_SORT = """(() => {
  const text = jQuery.fn.text;
  let read = 0;
  jQuery.fn.text = function (...given) { read += given.length === 0; return text.apply(this, given); };
  const suites = document.querySelector("#Expectation-Suites");
  const rows = suites.querySelector("table[data-toggle=table] tbody");
  const shown = () => [...rows.querySelectorAll("tr")].map((row) => row.textContent.trim());
  const box = suites.querySelector(".rtw-table-search");
  box.value = " DIAG"; box.dispatchEvent(new Event("input"));
  const found = shown();
  box.value = ""; box.dispatchEvent(new Event("input"));
  suites.querySelector("th[data-field=expectation_suite_name]").click();  // sorted ascending already: descending
  return {errors: window.pageErrors, found: found, descending: shown(), read: read};
})()"""


def test_searching_and_sorting_the_index_reads_no_cell_anew(docs, tmp_path):
    """Each keystroke in a search box and each comparison of a sort parsed the cells' HTML again for
    their text: it is read once, when the table is drawn first."""
    outside, shown = open_offline(docs.index, tmp_path, _SEARCH_AND_SORT)
    assert outside == [] and shown["errors"] == []
    assert shown["found"] == ["core.diagnosis"]  # in any case, spaces around it ignored
    assert shown["descending"] == sorted((f"core.{table}" for table in TABLES), reverse=True)
    assert shown["read"] == 0


def test_every_asset_a_page_loads_is_a_file_in_the_folder(docs):
    """Whatever the browser: each stylesheet, script and image a page names is in the Data Docs folder."""
    folder = docs.folder.resolve()
    for page in docs.folder.rglob("*.html"):
        dom = lxml.html.fromstring(page.read_bytes())
        for address in dom.xpath("//script/@src | //link/@href | //img/@src"):
            assert not urlsplit(address).scheme and not address.startswith("//"), (page, address)
            target = (page.parent / urlsplit(address).path).resolve()
            if "favicon" not in address:  # GX names it one folder too high on a validation page
                assert target.is_relative_to(folder) and target.is_file(), (page, address)


def test_an_outside_asset_no_rule_knows_goes_and_is_reported_while_links_and_text_stay():
    page = """<head><link rel="preconnect" href="https://fonts.example.org">
<script src="https://code.jquery.com/jquery-3.7.1.min.js" integrity="sha384-x" crossorigin="anonymous"></script>
<style>.brand { background: url('https://assets.example.org/logo.png') no-repeat; }</style></head>
<body><a href="https://greatexpectations.io">GX</a><td>url(https://a.value.example.org)</td></body>"""
    dropped: set[str] = set()
    local = local_page(page, "../../", dropped)
    assert dropped == {"https://fonts.example.org"}
    assert '<script src="../../static/rtw/jquery.min.js"></script>' in local
    assert "fonts.example.org" not in local and "assets.example.org" not in local
    assert '<a href="https://greatexpectations.io">' in local and "url(https://a.value.example.org)" in local


@pytest.mark.parametrize(("tag", "local"), [
    ("<script src=https://code.jquery.com/jquery-3.7.1.min.js></script>",  # unquoted
     "<script src=../../static/rtw/jquery.min.js></script>"),
    ("<link rel='stylesheet' href='//cdn.example.org/bootstrap/4.5.3/bootstrap.min.css'>",  # single quotes
     "<link rel='stylesheet' href='../../static/rtw/bootstrap.min.css'>"),
])
def test_an_outside_asset_is_found_in_single_or_no_quotes(tag, local):
    """An unquoted address passed unchanged and unwarned: the page still asked the CDN for it."""
    dropped: set[str] = set()
    assert local_page(tag, "../../", dropped) == local
    assert dropped == set()


@pytest.mark.parametrize("style", ["style='background:url(https://x.org/a.png)'", "style=background:url(//x.org/a.png)",
                                   'style="background: url( \'https://x.org/a.png\' )"'])
def test_an_outside_url_in_a_style_attribute_goes_whatever_its_quotes(style):
    local = local_page(f"<div {style}>", "", set())
    assert "x.org" not in local and "background" in local


@pytest.mark.parametrize("rule", ['@import "https://fonts.example.org/css?family=Sans";',
                                  "@import url('//fonts.example.org/a.css') screen;", "@import 'https://x.org/a.css'"])
def test_an_outside_import_in_a_style_goes_and_the_rest_of_the_style_stays(rule):
    local = local_page(f"<style>{rule}\n.brand {{ color: red; }}</style>", "", set())
    assert "example.org" not in local and "x.org" not in local and "@import" not in local
    assert local.endswith(".brand { color: red; }</style>")


def test_a_data_href_is_no_address_and_its_tag_stays():
    """`\\bhref` matched `data-href`: a local stylesheet with an outside data- attribute was dropped whole."""
    tag = '<link data-href="https://x.org/a.css" href="static/s.css">'
    dropped: set[str] = set()
    assert local_page(tag, "", dropped) == tag
    assert dropped == set()


def test_an_outside_address_in_a_tag_no_rule_rewrites_is_warned(tmp_path, caplog):
    """What `local_page` does not rewrite (an <iframe>, a <source>) would still be asked for: a warning names it."""
    page = tmp_path / "validations" / "x.html"
    page.parent.mkdir()
    page.write_text('<body><iframe src="https://x.org/f"></iframe><video><source src=//x.org/v.mp4></video>'
                    '<a href="https://greatexpectations.io">GX</a></body>', encoding="utf-8")
    make_self_contained(tmp_path)
    warned = [r.getMessage() for r in caplog.records if "still asks for" in r.getMessage()]
    assert len(warned) == 2 and "https://x.org/f" in warned[1] and "//x.org/v.mp4" in warned[0]
    assert not any("greatexpectations" in message for message in warned)
    assert outside_left(local_page('<img src="https://x.org/logo-long.png">', "", set())) == []
