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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from etl import fsio
from etl.config import Home, connect_duckdb
from etl.extract.file_names import PATIENT
from etl.extract.landing import ERASED_SUFFIX
from etl.load.dictionary import write_dictionary_page
from etl.load.marts import export_parquet, plot_survival
from etl.load.warehouse import NAMES_SHOWN_NOTICE, RECORD_SETS_SHOWN_NOTICE, _publish_lock, record_set_in_clear
from etl.quality.report import UnknownRun, build_report, show_file_names
from etl.schema import reading

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


@contextmanager
def published(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection to the published warehouse, held while the outputs are written: DuckDB gives
    each output's own connection to it (the marts', the dictionary's, the plot's, the report's) this open
    database, at no cost, where each connected anew (25-190 ms at 20,000 persons). `schema.reading`, but
    None when it cannot be opened (after a publish that stands, a failure is an output's note, not a raise):
    each output then opens its own and says why it cannot. Close it before writing the warehouse."""
    try:
        con = connect_duckdb(warehouse, read_only=True)
    except (duckdb.Error, OSError):
        yield None
        return
    try:
        yield con
    finally:
        con.close()


def export_marts(home: Home, notes: list[str]) -> None:
    """The Parquet marts of the live warehouse into marts/current."""
    attempt(notes, "the Parquet marts", lambda: export_parquet(home.warehouse, home.marts))


def write_report(home: Home, run_id: str, notes: list[str], *, with_pages: bool,
                 live: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """The run's report (with the dictionary page and survival plot when with_pages) and reports/latest.
    `live`: a connection to the live warehouse the caller holds (repair's, publish's `published`), for the
    earlier reports' names."""
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

    report = attempt(notes, "the validation report", build)
    attempt(notes, "the file names in the reports of earlier runs", lambda: show_names_in_earlier_reports(home, live))
    return report


#: In reports/: the runs whose renames in the history the report files of every run show, a run id a line.
NAMES_SHOWN_FILE = ".names_shown"


def show_names_in_earlier_reports(home: Home, con: duckdb.DuckDBPyConnection | None = None) -> list[Path]:
    """When a run renamed files in the history (an upgrade from a version that wrote file names with
    their patient numbers: warehouse._rename_in_history), the report files of the runs are rewritten with
    each such file's name as shown; the files that changed. The clear names are those of the files' archive
    copies: the warehouse keeps none; a file gone from landing before the upgrade is renamed as its name reads
    (file_names.gone_file_name), and its archive copy names it in clear as well. Likewise a record set renamed
    in the history (warehouse._rename_record_sets_in_history: a sheet per patient), found in the pages by the
    shape of its name as shown now (`Verlauf_{patient}`: `Verlauf_` and a number).

    Resumable: the runs to show are those whose notice says they renamed and that reports/.names_shown does
    not list; a run is listed only once every report file shows its renames. A run killed between its swap
    and this, or a rewrite that failed, is done by the next run's repair; a rewrite done twice changes nothing.
    `con`: a connection to the live warehouse the caller holds (repair's), else one is opened."""
    done = _names_shown_runs(home)
    with reading(home.warehouse, con) as live:
        if live is None:
            return []
        renamed = live.execute(
            "SELECT run_id, source_id, contains(notice, ?) FROM meta.source_notice WHERE contains(notice, ?) "
            "OR contains(notice, ?) ORDER BY ALL", [NAMES_SHOWN_NOTICE, NAMES_SHOWN_NOTICE,
                                                    RECORD_SETS_SHOWN_NOTICE]).fetchall()
        pending = sorted({run_id for run_id, _, _ in renamed} - done)
        if not pending:
            return []
        sources = sorted({s for run_id, s, files in renamed if run_id in pending and files})
        # Record sets (a sheet per patient) an earlier version named in clear: by what they are shown as now.
        record_sets = [n for (n,) in live.execute(
            "SELECT DISTINCT record_set FROM stage.record WHERE contains(record_set, ?) AND list_contains(?, "
            "source_id) ORDER BY 1", [PATIENT, sorted({s for run_id, s, files in renamed
                                                      if run_id in pending and not files})]).fetchall()]
        shown_as = {(s, sha[:16]): name for s, sha, name in live.execute(
            "SELECT source_id, source_file_sha256, file_name FROM meta.source_file WHERE list_contains(?, source_id)",
            [sources]).fetchall()}
        # Every run: a renaming run's own page names its files as shown already, and is left as it is.
        runs = [r for (r,) in live.execute("SELECT run_id FROM meta.run ORDER BY 1").fetchall()]
    shown: dict[str, str] = {}
    for source_id in sources:
        for copy in sorted((home.archive / source_id).glob("*__*")):
            prefix, _, clear = copy.name.partition("__")
            name = shown_as.get((source_id, prefix))
            if name is not None and clear.removesuffix(ERASED_SUFFIX) != name:
                shown[clear.removesuffix(ERASED_SUFFIX)] = name
    changed = show_file_names(home.reports, shown, runs=runs,
                              in_clear={name: record_set_in_clear(name) for name in record_sets})
    if changed:
        log.info("the reports of %d earlier run(s): %d file(s) now name the exports without patient numbers",
                 len({p.relative_to(home.reports).parts[0] for p in changed}), len(changed))
    fsio.private_folder(home.reports)
    fsio.write_text(home.reports / NAMES_SHOWN_FILE, "".join(f"{r}\n" for r in sorted(done | set(pending))))
    return changed


def _names_shown_runs(home: Home) -> set[str]:
    try:
        return set((home.reports / NAMES_SHOWN_FILE).read_text(encoding="utf-8").split())
    except FileNotFoundError:
        return set()


def record_notes(warehouse: Path, run_id: str, notes: list[str]) -> None:
    """Append the notes to meta.run_note of the live warehouse (best effort: see the module doc)."""
    if not notes:
        return
    try:
        with _publish_lock(warehouse):
            con = connect_duckdb(warehouse)
            try:
                con.executemany("INSERT INTO meta.run_note VALUES (?, ?, ?)",
                                [[run_id, datetime.now(UTC), note] for note in notes])
            finally:
                con.close()
    except Exception as exc:  # a reader holds the file, or it predates meta.run_note
        log.warning("run %s: notes not recorded in meta.run_note (%s); they are in the run summary", run_id, exc)
