"""The data dictionary: every table and column commented, and the committed docs equal to what the schema generates."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from typing import Any

import duckdb
import pytest
from marts_fixture import MartsWarehouse, built_warehouse

from etl.config import REPO_ROOT
from etl.load.dictionary import (
    SCHEMAS,
    apply_comments,
    dictionary_markdown,
    read_warehouse_catalog,
    split_comment,
    write_dictionary_page,
)

DOCS = REPO_ROOT / "docs" / "data-dictionary.md"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


def test_a_comment_splits_into_meaning_unit_and_codes():
    assert split_comment("Age at enrolment. Unit: days.") == ("Age at enrolment.", "days", "")
    assert split_comment("Sex. Codes: female / male.") == ("Sex.", "", "female / male")
    assert split_comment("Share. Unit: proportion (0-1). Codes: RECIST1.1 / RANO.") == (
        "Share.", "proportion (0-1)", "RECIST1.1 / RANO")
    assert split_comment(None) == ("", "", "")


def test_every_table_and_column_has_a_meaning(built):
    tables = read_warehouse_catalog(built.warehouse)
    assert {t.schema for t in tables} == set(SCHEMAS)
    assert {"core.patient", "marts.survival_km", "dq.quarantine", "meta.run"} <= {t.qualified_name for t in tables}
    undocumented = [t.qualified_name for t in tables if not t.description]
    undocumented += [f"{t.qualified_name}.{c.name}" for t in tables for c in t.columns if not c.meaning]
    assert not undocumented, f"add a COMMENT ON for: {undocumented}"
    units = {c.unit for t in tables for c in t.columns}
    assert {"days", "years", "patients", "proportion (0-1)"} <= units
    codes = {f"{t.qualified_name}.{c.name}": c.codes for t in tables for c in t.columns}
    assert codes["core.patient.sex"] == "female / male / undetermined / unknown"


def test_comments_can_be_applied_again_on_every_publish(built, tmp_path):
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy2(built.warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        apply_comments(con)
        apply_comments(con)
    finally:
        con.close()
    assert read_warehouse_catalog(copy) == read_warehouse_catalog(built.warehouse)


def test_the_committed_dictionary_is_what_the_schema_generates(built):
    generated = dictionary_markdown(read_warehouse_catalog(built.warehouse))
    assert DOCS.read_text() == generated, (
        "docs/data-dictionary.md is stale: regenerate it with "
        "`python -m etl.load.dictionary var/warehouse.duckdb > docs/data-dictionary.md` after a run")


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.ids += [value or "" for name, value in attrs if name == "id"]
        self.cells += tag == "td"


def test_the_report_page_lists_every_table_and_column(built, tmp_path):
    page = write_dictionary_page(built.warehouse, tmp_path / "report" / "dictionary.html")
    parser = _Sections()
    parser.feed(page.read_text())
    tables = read_warehouse_catalog(built.warehouse)
    assert parser.ids == [t.qualified_name for s in SCHEMAS for t in tables if t.schema == s]
    assert parser.cells == 5 * sum(len(t.columns) for t in tables)
    assert "&lt;patient pseudonym&gt;" in page.read_text() and "<script" not in page.read_text()


def test_the_module_prints_the_markdown(built, capsys):
    from etl.load.dictionary import main

    assert main([str(built.warehouse)]) == 0
    assert capsys.readouterr().out == DOCS.read_text()
    assert main([]) == 2
