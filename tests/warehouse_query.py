"""Read-only queries of a test's warehouse, as an analyst would run them (the tests' one helper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from etl.config import Home


def _warehouse(where: Home | Path) -> Path:
    """A Home, a home's root folder or the warehouse file itself."""
    if isinstance(where, Home):
        return where.warehouse
    return where / "warehouse.duckdb" if where.is_dir() else where


def query_frame(where: Home | Path, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(_warehouse(where)), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def query_rows(where: Home | Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(_warehouse(where)), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
