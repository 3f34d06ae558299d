"""One real warehouse with its marts for the mart, export, dictionary and analyst-query tests.

Built once per test session (module-level cache: a fixture imported into several modules would be
built once per module) from the session's shared run of 400 persons (conftest.synthetic_run): a
copy of its published warehouse on which the marts are built again and the catalog commented, as
publish does. The shared run's own warehouse is left as published.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import SYNTHETIC_RUN_KEY

from etl.config import Home
from etl.load.dictionary import apply_comments
from etl.load.marts import build_marts

KEY_TEXT = SYNTHETIC_RUN_KEY
CORE_TABLES = ("patient", "patient_source", "study_enrolment", "diagnosis", "molecular_alteration",
               "tumour_board_review", "treatment", "response_assessment", "adverse_event", "follow_up")


@dataclass(frozen=True)
class MartsWarehouse:
    home: Home
    warehouse: Path  # the published warehouse with marts and comments

    def query(self, sql: str, params: list[object] | None = None) -> pd.DataFrame:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()

    def core(self) -> dict[str, pd.DataFrame]:
        return {table: self.query(f"SELECT * FROM core.{table}") for table in CORE_TABLES}


_BUILT: dict[str, MartsWarehouse] = {}


def add_marts(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("BEGIN TRANSACTION")
        build_marts(con)
        apply_comments(con)
        con.execute("COMMIT")
    finally:
        con.close()


def built_warehouse(factory: pytest.TempPathFactory, synthetic_run: tuple[Any, Path, Any]) -> MartsWarehouse:
    if "default" not in _BUILT:
        home = synthetic_run[0]
        warehouse = factory.mktemp("analysis") / "warehouse.duckdb"
        shutil.copy2(home.warehouse, warehouse)
        add_marts(warehouse)
        _BUILT["default"] = MartsWarehouse(home, warehouse)
    return _BUILT["default"]
