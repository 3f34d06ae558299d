"""What a publish derives from the live warehouse: the Parquet marts, the dictionary page, the
survival plot and the validation report. Each is written on its own, after the swap.

The warehouse is the truth and is already published when these run, so a failure here (a full
disk, a reports folder that cannot be written) must neither block nor undo it: it is logged,
returned as a note for the run summary and recorded in `meta.run_note`, and crash repair at the
start of the next run writes what is missing (etl/repair.py).

`meta.run_note` is the one write to the live warehouse in place: a short transaction under the
publish lock, so `rtw forget` or another publish never copies it half-written. An analyst holding
the new file open makes it fail (DuckDB refuses a writer then); the note is still in the summary
and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from etl import fsio
from etl.config import Home
from etl.load.dictionary import write_dictionary_page
from etl.load.marts import export_parquet, plot_survival
from etl.load.warehouse import _publish_lock
from etl.quality.report import UnknownRun, build_report

log = logging.getLogger("rtw")

NOTE_PREFIX = "after publish: "
T = TypeVar("T")


def attempt(notes: list[str], what: str, write: Callable[[], T]) -> T | None:
    """write(), or None with a note saying what could not be written and why."""
    try:
        return write()
    except Exception as exc:  # any failure of a derived output: the published warehouse stands
        # One line for the operator; the traceback only when debugging.
        log.error("%s could not be written: %s", what, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        notes.append(f"{NOTE_PREFIX}{what} could not be written ({type(exc).__name__}: {exc}), "
                     "the warehouse is published and the next run retries")
        return None


def export_marts(home: Home, notes: list[str]) -> None:
    """The Parquet marts of the live warehouse into marts/current."""
    attempt(notes, "the Parquet marts", lambda: export_parquet(home.warehouse, home.marts))


def write_report(home: Home, run_id: str, notes: list[str], *, with_pages: bool) -> str | None:
    """The run's report (with the dictionary page and survival plot when with_pages) and reports/latest."""
    attachments: list[tuple[str, Path]] = []
    if with_pages:
        folder = attempt(notes, "the report folder", lambda: fsio.private_folder(home.reports / run_id))
        if folder is not None:
            for title, what, write in (
                    ("Data dictionary", "the data dictionary page",
                     lambda: write_dictionary_page(home.warehouse, folder / "dictionary.html")),
                    ("Survival (Kaplan-Meier)", "the survival plot",
                     lambda: plot_survival(home.warehouse, folder / "survival.svg"))):
                page = attempt(notes, what, write)
                if page is not None:
                    attachments.append((title, page))

    def build() -> str | None:
        try:
            return str(build_report(home.warehouse, home.reports, run_id, attachments=attachments))
        except UnknownRun as exc:  # nothing validated yet: no findings to show, not a failure
            log.warning("no report for run %s: %s", run_id, exc)
            return None

    return attempt(notes, "the validation report", build)


def record_notes(warehouse: Path, run_id: str, notes: list[str]) -> None:
    """Append the notes to meta.run_note of the live warehouse (best effort: see the module doc)."""
    if not notes:
        return
    try:
        with _publish_lock(warehouse):
            con = duckdb.connect(str(warehouse))
            try:
                con.executemany("INSERT INTO meta.run_note VALUES (?, ?, ?)",
                                [[run_id, datetime.now(UTC), note] for note in notes])
            finally:
                con.close()
    except Exception as exc:  # a reader holds the file, or it predates meta.run_note
        log.warning("run %s: notes not recorded in meta.run_note (%s); they are in the run summary", run_id, exc)
