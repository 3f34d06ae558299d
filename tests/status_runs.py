"""Reading `rtw status`'s last runs, for the tests of nights that did not publish (rtw run and the DAG)."""

from __future__ import annotations

# A setting DuckDB refuses when publish opens the next warehouse: the publish fails, the warehouse stands.
PUBLISH_FAILS = {"RTW_DUCKDB_MEMORY_LIMIT": "lots"}
PUBLISH_REASON = ("SettingError: RTW_DUCKDB_MEMORY_LIMIT='lots' is not a memory size DuckDB reads (e.g. 512MB, 2GB): "
                  "Parser Error: Memory must have a number")


def last_runs(said_on_terminal: str) -> list[list[str]]:
    """The rows of `rtw status`'s last runs (printed 1000 columns wide), newest first, as their cells."""
    table = said_on_terminal.split("Last runs", 1)[1].split("└", 1)[0]
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in table.splitlines()
            if line.startswith("│") and line[1:].strip().split("│")[0].strip()]


def failed_night(rows: list[list[str]], run_id: str | None = None) -> list[str]:
    """The newest night that did not publish (or `run_id`'s): its status, step and reason."""
    (row,) = [r for r in rows if r[3] in ("failed", "killed", "running") and run_id in (None, r[1])][:1]
    return [row[3], row[4], row[-1]]
