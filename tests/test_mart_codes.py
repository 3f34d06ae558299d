"""A column's documented code list (its comment's "Codes: a / b / c") holds every value the warehouse has."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
from marts_fixture import MartsWarehouse, built_warehouse

from etl.load.dictionary import read_warehouse_catalog


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> MartsWarehouse:
    return built_warehouse(tmp_path_factory, synthetic_run)


def test_every_study_a_source_registers_is_in_the_study_code_lists(built):
    columns = {"core.study_enrolment": "study_id", "core.consent": "study_id", "marts.registry_activity": "study_id",
               "marts.patient_summary": "studies"}
    catalog = {t.qualified_name: {c.name: c.codes for c in t.columns} for t in read_warehouse_catalog(built.warehouse)}
    con = duckdb.connect(str(built.warehouse), read_only=True)
    try:
        for table, column in columns.items():
            listed = {code.strip() for code in catalog[table][column].split(" / ")}
            values = "unnest(studies)" if column == "studies" else column
            found = {v for (v,) in con.execute(f"SELECT DISTINCT {values} FROM {table}").fetchall() if v is not None}
            assert found and found <= listed, f"{table}.{column}: {sorted(found - listed)} not in its Codes"
    finally:
        con.close()
