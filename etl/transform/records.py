"""Record sets: staged raw rows regrouped into one frame per form, the unit mappings address.

- ODM: staged rows are one per ItemData; a record is one ItemGroupData, so rows are pivoted
  per ItemGroupOID into one column per ItemOID, keeping the ODM keys as `_`-prefixed columns.
  Items sent with TransactionType `Remove` are dropped (the EDC withdrew them).
- CSV: a staged file already is one record per row; its record set is named from the file
  name (Ennov per-form exports) or given by the mapping (one-file registries).

Every record keeps `_line` (where it starts in the export) and the file's lineage columns.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from etl.transform.mapping import SourceMapping

ODM_KEY_COLUMNS = {
    "subject_key": "_subject_key",
    "site_oid": "_site_oid",
    "study_event_oid": "_study_event_oid",
    "study_event_repeat_key": "_study_event_repeat_key",
    "form_oid": "_form_oid",
    "form_repeat_key": "_form_repeat_key",
    "item_group_oid": "_item_group_oid",
    "item_group_repeat_key": "_item_group_repeat_key",
}
_REPEAT_KEYS = {"study_event_repeat_key", "form_repeat_key", "item_group_repeat_key"}
LINEAGE_COLUMNS = ("source_file", "source_file_sha256")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def odm_record_sets(staged: Path) -> dict[str, pd.DataFrame]:
    """Pivot one staged ODM file into a frame per ItemGroupOID."""
    con = duckdb.connect()
    try:
        con.execute(
            # A view cannot take prepared parameters, so the path goes in as a quoted literal.
            f"CREATE TEMP VIEW items AS SELECT * FROM read_parquet({_sql_text(str(staged))}) "
            "WHERE coalesce(transaction_type, '') <> 'Remove'")
        groups = con.execute(
            "SELECT item_group_oid, list(DISTINCT item_oid ORDER BY item_oid) FROM items "
            "GROUP BY item_group_oid ORDER BY item_group_oid").fetchall()
        record_sets = {}
        for group_oid, item_oids in groups:
            keys = ", ".join(
                f"coalesce({c}, '1') AS {a}" if c in _REPEAT_KEYS else f"{c} AS {a}"
                for c, a in ODM_KEY_COLUMNS.items())
            group_by = ", ".join(str(i + 1) for i in range(len(ODM_KEY_COLUMNS) + len(LINEAGE_COLUMNS)))
            # arg_max by line: if an item is sent twice in one record, the later one wins.
            pivots = ", ".join(
                f"arg_max(coalesce(value, ''), line) FILTER (WHERE item_oid = {_sql_text(oid)}) AS {_quote(oid)}"
                for oid in item_oids)
            frame = con.execute(
                f"SELECT {keys}, {', '.join(LINEAGE_COLUMNS)}, min(line) AS _line, {pivots} "
                f"FROM items WHERE item_group_oid IS NOT DISTINCT FROM ? GROUP BY {group_by} ORDER BY _line",
                [group_oid]).df()
            record_sets[group_oid or "(no item group)"] = frame.fillna("")
        return record_sets
    finally:
        con.close()


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def csv_record_set_name(mapping: SourceMapping, file_name: str) -> str | None:
    """The record set a CSV file feeds, from its name; None if the name does not fit the pattern."""
    if mapping.record_set:
        return mapping.record_set
    assert mapping.record_set_from_file is not None
    match = re.fullmatch(mapping.record_set_from_file, file_name)
    return match.group("record_set") if match else None


def csv_record_sets(staged: Path, record_set: str) -> dict[str, pd.DataFrame]:
    frame = pd.read_parquet(staged)
    return {record_set: frame}


def load_record_sets(mapping: SourceMapping, staged_files: list[tuple[Path, str]]) -> dict[str, pd.DataFrame]:
    """All record sets of a source from its staged files ((parquet path, original file name) pairs)."""
    collected: dict[str, list[pd.DataFrame]] = {}
    for staged, file_name in staged_files:
        if mapping.format == "odm":
            sets = odm_record_sets(staged)
        else:
            name = csv_record_set_name(mapping, file_name) or Path(file_name).stem
            sets = csv_record_sets(staged, name)
        for name, frame in sets.items():
            collected.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            for name, frames in collected.items()}
