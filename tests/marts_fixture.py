"""One real warehouse with its marts for the mart, export, dictionary and analyst-query tests.

Built once per test session (module-level cache: a fixture imported into several modules would be
built once per module): synthetic exports for 400 persons -> `pipeline.run` -> a copy of the
published warehouse on which the marts are built and the catalog commented, as publish will do
once it calls `build_marts` and `apply_comments`. The pipeline's own warehouse is left as published.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from etl import pipeline
from etl.config import Home, resolve_home
from etl.load.dictionary import apply_comments
from etl.load.marts import build_marts
from etl.synth import generate

KEY_TEXT = "marts-test-key"
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


def built_warehouse(factory: pytest.TempPathFactory) -> MartsWarehouse:
    if "default" not in _BUILT:
        home = resolve_home(factory.mktemp("marts_home")).ensure()
        generate(home.root, patients=400, seed=11)
        pipeline.run(home, key_value=KEY_TEXT)
        warehouse = home.root / "analysis" / "warehouse.duckdb"
        warehouse.parent.mkdir()
        shutil.copy2(home.warehouse, warehouse)
        add_marts(warehouse)
        _BUILT["default"] = MartsWarehouse(home, warehouse)
    return _BUILT["default"]
