"""The data dictionary, generated from the warehouse catalog, so the documentation cannot drift from the schema.

Every table and column carries a `COMMENT ON` (warehouse/comments.sql for core, meta and dq;
each warehouse/marts/*.sql for its mart). A comment states the meaning first and may end with
"Unit: ..." and then "Codes: a / b / c"; the dictionary splits those into columns of their own.
Output: Markdown for the repository (docs/data-dictionary.md) and an offline HTML page for the
report. Regenerate the Markdown with `python -m etl.load.dictionary var/warehouse.duckdb >
docs/data-dictionary.md`; tests/test_dictionary.py checks the committed file is current.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb

from etl import fsio
from etl.config import WAREHOUSE_SQL_DIR, connect_duckdb
from etl.schema import primary_keys

SCHEMAS = ("core", "marts", "meta", "dq")  # stage is internal to publish: not for analysts
SCHEMA_TITLES = {
    "core": "harmonised, pseudonymised records (one table per clinical entity)",
    "marts": "analysis tables, one per question of the studies",
    "meta": "run bookkeeping: what each nightly run loaded",
    "dq": "data quality: rules, results, issues and quarantined records",
}
COMMENTS_SQL = WAREHOUSE_SQL_DIR / "comments.sql"


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    data_type: str
    meaning: str
    unit: str
    codes: str


@dataclass(frozen=True)
class TableDoc:
    schema: str
    name: str
    description: str
    columns: tuple[ColumnDoc, ...]
    key: tuple[str, ...] = ()  # the columns that identify a row, as the DDL declares them

    @property
    def key_note(self) -> str:
        """What the key is, for a reader: core's keys are checked by each publish, not indexed."""
        if not self.key:
            return ""
        how = "unique, checked by each publish" if self.schema == "core" else "unique"
        return f"Key: {', '.join(self.key)} ({how})."

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


def apply_comments(con: duckdb.DuckDBPyConnection) -> None:
    """Comment every table and column of core, meta and dq (idempotent: run on every publish)."""
    con.execute(COMMENTS_SQL.read_text())


def split_comment(comment: str | None) -> tuple[str, str, str]:
    """(meaning, unit, codes) of a comment written "Meaning. Unit: days. Codes: a / b"."""
    text = (comment or "").strip()
    text, _, codes = text.partition("Codes: ")
    text, _, unit = text.partition("Unit: ")
    return text.strip(), unit.strip().removesuffix("."), codes.strip().removesuffix(".")


def read_catalog(con: duckdb.DuckDBPyConnection) -> list[TableDoc]:
    """Tables and columns of the documented schemas with their comments, in a stable order."""
    tables = con.execute(  # the views too (dq.issue): readers query them as tables
        "SELECT schema_name, table_name, comment FROM (SELECT schema_name, table_name, comment FROM duckdb_tables() "
        "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() WHERE NOT internal) "
        "WHERE schema_name IN ? ORDER BY list_position(?, schema_name), table_name",
        [list(SCHEMAS), list(SCHEMAS)]).fetchall()
    columns = con.execute(
        "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
        "WHERE schema_name IN ? ORDER BY schema_name, table_name, column_index", [list(SCHEMAS)]).fetchall()
    by_table: dict[tuple[str, str], list[ColumnDoc]] = {}
    for schema, table, name, data_type, comment in columns:
        by_table.setdefault((schema, table), []).append(ColumnDoc(name, data_type, *split_comment(comment)))
    return [TableDoc(schema, table, (comment or "").strip(), tuple(by_table.get((schema, table), [])),
                     _keys(schema).get(table, ()))
            for schema, table, comment in tables]


def _keys(schema: str) -> dict[str, tuple[str, ...]]:
    """The keys the DDL declares (marts have none: their grain is in their comment)."""
    return primary_keys(schema) if schema in ("core", "meta", "dq") else {}


def read_warehouse_catalog(warehouse: Path) -> list[TableDoc]:
    con = connect_duckdb(warehouse, read_only=True)
    try:
        return read_catalog(con)
    finally:
        con.close()


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: `|` would end the cell, `<x>` would vanish as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "\\<").replace(">", "\\>").replace("\n", " ")


def dictionary_markdown(tables: list[TableDoc]) -> str:
    """The dictionary as Markdown: one section per schema, one table of columns per table."""
    lines = ["# Data dictionary", "",
             "Every table and column of the warehouse with its meaning, unit and code list. Generated from the",
             "`COMMENT ON` statements in the warehouse catalog (`warehouse/comments.sql`, `warehouse/marts/*.sql`) by",
             "`python -m etl.load.dictionary WAREHOUSE`: edit the comments, not this file.", ""]
    for schema in SCHEMAS:
        in_schema = [t for t in tables if t.schema == schema]
        if not in_schema:
            continue
        lines += [f"## {schema}: {SCHEMA_TITLES[schema]}", ""]
        lines += [f"- [`{t.qualified_name}`](#{t.schema}{t.name}): {_cell(t.description)}" for t in in_schema]
        lines.append("")
        for table in in_schema:
            lines += [f"### {table.qualified_name}", "", _cell(" ".join(filter(None, (table.description,
                                                                                    table.key_note)))), "",
                      "| column | type | meaning | unit | codes |", "|---|---|---|---|---|"]
            lines += [f"| `{c.name}` | {c.data_type} | {_cell(c.meaning)} | {_cell(c.unit)} | {_cell(c.codes)} |"
                      for c in table.columns]
            lines.append("")
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2330; max-width: 1200px; }
h2 { border-bottom: 2px solid #1f5fa8; padding-bottom: .2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; font-size: .9rem; }
th, td { border: 1px solid #d5dae3; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef2f8; }
code { font-size: .85rem; }
"""


def dictionary_html(tables: list[TableDoc]) -> str:
    """The dictionary as one offline HTML page (no script, no CDN) for the report."""
    esc = html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Data dictionary - Rare Tumour Warehouse</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>Data dictionary</h1>",
             "<p>Every table and column of the warehouse with its meaning, unit and code list, generated from the "
             "comments in the warehouse catalog.</p>", '<nav id="contents"><ul>']
    parts += [f'<li><a href="#{esc(t.qualified_name)}"><code>{esc(t.qualified_name)}</code></a></li>' for t in tables]
    parts.append("</ul></nav>")
    for schema in SCHEMAS:
        in_schema = [t for t in tables if t.schema == schema]
        if not in_schema:
            continue
        parts.append(f"<h2>{esc(schema)}: {esc(SCHEMA_TITLES[schema])}</h2>")
        for table in in_schema:
            parts += [f'<section class="table-doc" id="{esc(table.qualified_name)}">',
                      f"<h3><code>{esc(table.qualified_name)}</code></h3>",
                      f"<p>{esc(' '.join(filter(None, (table.description, table.key_note))))}</p>",
                      "<table><thead><tr><th>column</th><th>type</th><th>meaning</th><th>unit</th><th>codes</th>"
                      "</tr></thead><tbody>"]
            parts += [f"<tr><td><code>{esc(c.name)}</code></td><td>{esc(c.data_type)}</td><td>{esc(c.meaning)}</td>"
                      f"<td>{esc(c.unit)}</td><td>{esc(c.codes)}</td></tr>" for c in table.columns]
            parts.append("</tbody></table></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_dictionary_page(warehouse: Path, out: Path) -> Path:
    """The HTML dictionary of a published warehouse, e.g. reports/<run_id>/dictionary.html."""
    fsio.private_folder(out.parent)
    return fsio.write_text(out, dictionary_html(read_warehouse_catalog(warehouse)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m etl.load.dictionary WAREHOUSE > docs/data-dictionary.md", file=sys.stderr)
        return 2
    sys.stdout.write(dictionary_markdown(read_warehouse_catalog(Path(args[0]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
