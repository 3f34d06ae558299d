"""Crash repair, at the start of every run, under the run lock (so no live run owns what it touches).

A run killed at any point leaves the last good warehouse in place (publish swaps it in with one
rename), but it can leave behind:
- temporaries: `.warehouse.duckdb.<run>.next` (its `.wal`, the `.partial` copy it is made from) of a
  publish cut short, `*.partial` of etl/fsio.py, `*.tmp` and the `.latest.*` / `.current.*` links
  of older versions. They are removed from the home's own folders; landing/ is left alone (a drop
  zone may be delivering into it under a temporary name) and so is airflow/.
- the harmonised files of a run that never published (killed before its publish, a rekey's among them, whose
  rows are under a key never installed, where `rtw forget` would not find a patient): removed;
- derived outputs behind the warehouse: killed after the swap, `marts/current` and
  `reports/latest` still show the run before. They are brought in line with the live warehouse's
  last validated run: the marts are exported again, `latest` points at that run's page, which is
  written if it is missing; and the report files of earlier runs show the file names a run renamed
  in the history (publish_outputs.show_names_in_earlier_reports: done once per such run, whenever).

Tests crash real runs where they need to with the hook of etl/crash.py.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import duckdb

from etl import fsio
from etl.config import Home
from etl.load.warehouse import _publish_lock
from etl.publish_outputs import attempt, export_marts, show_names_in_earlier_reports, write_report
from etl.schema import reading

log = logging.getLogger("rtw")

_TEMPORARY_SUFFIXES = (fsio.TEMP_SUFFIX, ".tmp")
_OLD_LINK_PREFIXES = (".latest.", ".current.")  # symlink temporaries written before etl/fsio.py



def _is_temporary(path: Path) -> bool:
    name = path.name
    return name.endswith(_TEMPORARY_SUFFIXES) or (name.startswith(_OLD_LINK_PREFIXES) and path.is_symlink())


def stale_temporaries(home: Home) -> list[Path]:
    """Temporaries dead runs left in the home (call under the run lock: no live run has any)."""
    live = home.warehouse.name  # the next-file, and the copy of the live file it was being made of
    found = sorted([*home.root.glob(f".{live}.*.next*"), *home.root.glob(f"..{live}.*.next.*{fsio.TEMP_SUFFIX}")])
    for folder in (home.archive, home.staging, home.marts, home.reports, home.key_file.parent):
        for root, folders, files in os.walk(folder):  # symlinks to folders are not followed
            for name in [*files, *folders]:
                path = Path(root, name)
                if _is_temporary(path):
                    found.append(path)
            folders[:] = [f for f in folders if not _is_temporary(Path(root, f))]
    return found


def unpublished_harmonised(home: Home, con: duckdb.DuckDBPyConnection) -> list[Path]:
    """The harmonised folders (`staging/<source>/harmonised/<run>`) of runs the live warehouse (on `con`) never
    recorded: no run of theirs is in meta.run, nor a source's last load. None is read again (a load carries over
    from its source's last one). Call under the run lock: no live run has any."""
    published = {r for (r,) in con.execute("SELECT run_id FROM meta.run UNION SELECT last_loaded_run_id FROM "
                                           "meta.source WHERE last_loaded_run_id IS NOT NULL").fetchall()}
    return sorted(f for f in home.staging.glob("*/harmonised/*")
                  if f.is_dir() and not f.is_symlink() and f.name not in published)


def _validated_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The live warehouse's last validated run and every run after it, oldest first."""
    rows = con.execute("""
        WITH last AS (SELECT started_at FROM meta.run WHERE validated ORDER BY started_at DESC LIMIT 1)
        SELECT run_id FROM meta.run WHERE started_at >= (SELECT started_at FROM last)
        ORDER BY started_at, run_id""").fetchall()
    return [run_id for (run_id,) in rows]


def _marts_run(home: Home) -> str | None:
    try:
        manifest = json.loads((home.marts / "current" / "_manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("run_id") if isinstance(manifest, dict) else None


def _latest_report_run(home: Home) -> str | None:
    latest = home.reports / "latest"
    if not latest.is_symlink() or not (latest / "index.html").is_file():
        return None
    return Path(os.readlink(latest)).name


def repair(home: Home, live: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """Remove dead runs' temporaries and bring the marts and the report in line with the live
    warehouse; return what was done (empty when nothing was amiss). Failures are notes, not errors.
    `live`: a read-only connection to the live warehouse the caller holds (the run's, for its plan too)."""
    done: list[str] = []
    # Under the publish lock too: a command outside the run lock (rtw forget) may be mid-publish.
    with _publish_lock(home.warehouse):
        stale = stale_temporaries(home)
        for path in stale:
            fsio.remove_path(path)
    if stale:
        # By folder: a temporary copy of an export bears its name, which may hold a patient number.
        folders = sorted({str(p.parent.relative_to(home.root)) for p in stale})
        done.append(f"repair: removed {len(stale)} temporary file(s) of dead runs in "
                    + ", ".join(folders[:5]) + (", ..." if len(folders) > 5 else ""))
    if not home.warehouse.exists():
        return done
    notes: list[str] = []
    # One read of the live warehouse for what follows (a connection costs some 20 ms of every run).
    with reading(home.warehouse, live) as con:
        assert con is not None  # it exists
        if unpublished := unpublished_harmonised(home, con):
            for folder in unpublished:
                fsio.remove_path(folder)
            done.append("repair: removed the harmonised files of runs that never published: "
                        + ", ".join(str(f.relative_to(home.staging)) for f in unpublished))
        current = _validated_runs(con)
        if current:
            _bring_in_line(home, con, current, done, notes)
            # A run killed after renaming files in the history, before the report files of earlier runs showed it.
            if rewritten := attempt(notes, "the file names in the reports of earlier runs",
                                    lambda: show_names_in_earlier_reports(home, con)):
                done.append(f"repair: {len(rewritten)} report file(s) of earlier runs still named exports with "
                            "patient numbers an earlier version recorded; now without them")
    for line in done + notes:
        log.warning("%s", line)
    return done + notes


def _bring_in_line(home: Home, live: duckdb.DuckDBPyConnection, current: list[str], done: list[str],
                   notes: list[str]) -> None:
    """Export the marts and point reports/latest at the live warehouse's last validated run where they lag
    (`live`: repair's connection to it, which writing a missing report reads through too)."""
    validated = current[0]
    if _marts_run(home) not in current:
        export_marts(home, notes)
        done.append(f"repair: marts/current was behind the warehouse; exported the marts of run {validated}")
    if _latest_report_run(home) not in current:
        page = home.reports / validated / "index.html"
        if page.is_file():
            try:
                fsio.swap_symlink(home.reports / "latest", validated)
                done.append(f"repair: reports/latest pointed at an older run; now at run {validated}")
            except OSError as exc:
                notes.append(f"repair: reports/latest could not be pointed at run {validated}: {exc}")
        elif write_report(home, validated, notes, with_pages=True, live=live):
            done.append(f"repair: the report of run {validated} was missing; written")
