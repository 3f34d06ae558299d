"""One definition per schema: the DDL in `warehouse/*.sql` is the truth.

Column lists and Arrow schemas are read from DuckDB's own catalogue after running the DDL in
an in-memory database, so code that writes Parquet or frames for a table can never drift
from the table it is loaded into.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from etl.config import WAREHOUSE_SQL_DIR, connect_duckdb

# The DDL files that define tables, in the order they must run.
DDL_FILES = ("core.sql", "meta.sql", "dq.sql", "stage.sql")
# core.sql declares each table's key as its PRIMARY KEY; the warehouse makes the tables without it
# (`unindexed`) and publish checks the keys instead. DuckDB rewrites a table's whole key index when a
# row of it changes: a 1% change of core.follow_up at 100,000 persons took 0.61 s with the index and
# 0.13 s without (the commit 0.43 -> 0.04 s), and filling core on a first load 5.3 s against 2.3 s.
_KEY_CLAUSE = re.compile(r" PRIMARY KEY(?=,|\n)|,\s*PRIMARY KEY \([^)]*\)")


@cache
def _catalogue() -> duckdb.DuckDBPyConnection:
    con = connect_duckdb()
    for name in DDL_FILES:
        con.execute((WAREHOUSE_SQL_DIR / name).read_text())
    return con


def unindexed(ddl: str) -> str:
    """DDL as the warehouse runs it: the keys it declares (PRIMARY KEY) left out."""
    return _KEY_CLAUSE.sub("", ddl)


@cache
def _unindexed_catalogue() -> duckdb.DuckDBPyConnection:
    con = connect_duckdb()
    con.execute(unindexed((WAREHOUSE_SQL_DIR / "core.sql").read_text()))
    return con


def unindexed_definition(table: str) -> str:
    """The CREATE TABLE of core table `schema.table` as the warehouse makes it (`unindexed`)."""
    schema, name = table.split(".")
    found = _unindexed_catalogue().execute(
        "SELECT sql FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, name]).fetchone()
    if found is None:
        raise LookupError(f"{table} is not a table of core.sql")
    return str(found[0])


@cache
def _tables_columns() -> dict[str, tuple[tuple[str, str], ...]]:
    """(column, DuckDB type) of every table the DDL defines, in DDL order, by `schema.table` (one
    catalogue query for all: a query per table cost an unchanged run 0.08 s)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in _catalogue().execute(
            "SELECT schema_name || '.' || table_name, column_name, data_type FROM duckdb_columns() "
            "ORDER BY schema_name, table_name, column_index").fetchall():
        found.setdefault(table, []).append((column, kind))
    return {table: tuple(typed) for table, typed in found.items()}


def column_types(table: str) -> tuple[tuple[str, str], ...]:
    """(column, DuckDB type) of `schema.table`, in their DDL order."""
    try:
        return _tables_columns()[table]
    except KeyError:
        raise KeyError(f"no table {table} in the warehouse DDL ({', '.join(DDL_FILES)})") from None


@cache
def columns(table: str) -> tuple[str, ...]:
    """Column names of `schema.table`, in their DDL order."""
    return tuple(column for column, _ in column_types(table))


@cache
def tables(schema: str) -> tuple[str, ...]:
    """The tables the DDL defines in a schema."""
    return tuple(t for (t,) in _catalogue().execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY table_oid", [schema]).fetchall())


@cache
def primary_keys(schema: str) -> dict[str, tuple[str, ...]]:
    """The primary key columns of each table of a schema that has one."""
    return {table: tuple(columns) for table, columns in _catalogue().execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE schema_name = ? AND constraint_type = 'PRIMARY KEY'", [schema]).fetchall()}


@cache
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema DuckDB gives `schema.table`: what Parquet written for it must match."""
    columns(table)  # a clear error for an unknown table
    return _catalogue().execute(f"SELECT * FROM {table} LIMIT 0").arrow().schema


@contextlib.contextmanager
def reading(warehouse: Path, con: duckdb.DuckDBPyConnection | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """`con`, or else a read-only connection to `warehouse` for the block; None when there is no
    warehouse yet. (A connection costs some 20 ms: a run's plan reads several things through one.)"""
    if con is not None or not warehouse.exists():
        yield con
        return
    own = connect_duckdb(warehouse, read_only=True)
    try:
        yield own
    finally:
        own.close()


def in_warehouse(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the database on `con` has `schema.table` (a warehouse an older version wrote may not have
    it until its next publish)."""
    schema, name = table.split(".")
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                        "AND schema_name = ? AND table_name = ?", [schema, name]).fetchone()
    return bool(found and found[0])


def sql_text(text: str) -> str:
    """`text` as an SQL string literal, for the statements that take no parameters (COPY, a view)."""
    return "'" + text.replace("'", "''") + "'"


def sql_name(name: str) -> str:
    """`name` as a quoted SQL identifier: a source's column named anything (`Stadium "FIGO"`, an ODM ItemOID)."""
    return '"' + name.replace('"', '""') + '"'


def rows_digest(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The count and the sum of the row hashes of `query`: the same for the same rows in any order,
    different (but for a 2**-64 chance) when a value changes, a row comes or goes."""
    return str(con.execute(f"SELECT count(*), sum(hash(r)::HUGEINT) FROM ({query}\n) r").fetchone())


def rows_digest_by_source(con: duckdb.DuckDBPyConnection, query: str) -> dict[str, str]:
    """`rows_digest` of the rows of `query` of each source_id, written "count:sum" (the form the
    fingerprints stored in dq.rule_judged and dq.gx_judged hold)."""
    return {source: f"{n}:{total}" for source, n, total in con.execute(
        f"SELECT source_id, count(*), sum(hash(r)::HUGEINT) FROM ({query}) r GROUP BY ALL").fetchall()}


def among(column: str, texts: Iterable[str]) -> str:
    """SQL: `column` is one of `texts` (false for none): an IN list of constants, a filter DuckDB pushes
    into the table scan (one source's rows of stage.record at 100,000 persons: 1.0 ms, 2.5 ms with
    list_contains, 12.5 ms for all)."""
    listed = ", ".join(sql_text(t) for t in texts)
    return f"{column} IN ({listed})" if listed else "false"


def drop_temp_tables(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Drop temporary tables, unless the transaction is aborted: then the error that aborted it is the
    one to report, and the tables go with the connection."""
    with contextlib.suppress(duckdb.TransactionException):
        for name in names:
            con.execute(f"DROP TABLE IF EXISTS {name}")


def core_columns() -> dict[str, list[str]]:
    """Column names of every core table, in DDL order (a fresh dict: callers may change it)."""
    return {t: list(columns(f"core.{t}")) for t in tables("core")}
