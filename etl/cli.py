"""`rtw`: the command line of the Rare Tumour Warehouse.

Exit code 0 when a run completed, even with quarantined records or a failed source (both are
recorded in the warehouse); non-zero with a one-line reason when it could not run at all.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from etl import fsio
from etl.config import Home, connect_duckdb, resolve_home
from etl.terminal import log_to_terminal, plain

if TYPE_CHECKING:
    from etl.extract.file_names import PatientNumbers
    from etl.steps import LoadedFile, RunSummary

app = typer.Typer(help="Rare Tumour Warehouse: nightly import of paediatric rare-tumour data.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=False)
HomeOption = Annotated[Path | None, typer.Option("--home", help="Runtime home (default: $RTW_HOME or ./var)")]
STRICT_FAILED = 3  # rtw run --strict: published, but a source failed or was held
MAX_PATIENTS = 1_000_000  # synthetic persons: ten times a European registry's decade (a mistyped count filled a disk)


def _fail(message: str) -> None:
    # Messages quote exports: never markup. One line whatever the width (cron and pipes have 80 columns).
    console.print(plain(f"rtw: {message}", "red"), soft_wrap=True)
    raise typer.Exit(code=1)


def _mappings_folder() -> Path:
    """The mappings (env RTW_SOURCES_DIR, else the shipped ones), read when the command runs. A folder
    named but missing is refused, as the DAG refuses it: a typo otherwise ran a night that read no
    mapping (every source kept as it was, exit 0) and a pull that pulled nothing and said nothing."""
    from etl.resources import sources_dir

    try:
        return sources_dir()
    except FileNotFoundError as exc:
        _fail(str(exc))
        raise  # _fail has exited


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write landing/ and truth/ into")],
    patients: Annotated[int, typer.Option(min=1, max=MAX_PATIENTS, help="Number of distinct persons")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files")] = 42,
    error_rate: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of records with an injected error")] = 0.02,
    partial_starts: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of treatment lines a source starts "
                                                  "only in a month or year")] = 0.0,
    drugless_treatments: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of treatments a source gives "
                                                       "without their drug (SACHA, ILTB, crizotinib; the shipped "
                                                       "mappings quarantine them)")] = 0.0,
    restarted_lines: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of treatment lines a source gives "
                                                   "as two, paused and restarted within days")] = 0.0,
) -> None:
    """Write realistic synthetic exports of every source, with their ground truth."""
    from etl.synth import generate

    started = time.perf_counter()
    summary = generate(out, patients=patients, seed=seed, error_rate=error_rate, partial_starts=partial_starts,
                       drugless_treatments=drugless_treatments, restarted_lines=restarted_lines)
    console.print(f"synthetic exports for {patients} persons in {out / 'landing'} "
                  f"(truth in {out / 'truth'}), {time.perf_counter() - started:.1f}s")
    console.print(summary)


@app.command()
def run(home: HomeOption = None,
        force: Annotated[bool, typer.Option(help="Reload every source even if unchanged")] = False,
        wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for another run of this "
                                            "home to finish before giving up")] = 0,
        strict: Annotated[bool, typer.Option(help="Exit 3 when a source failed or was held (for cron: the others "
                                             "were still published)")] = False) -> None:
    """Run the nightly import in this process (the same steps as the Airflow DAG)."""
    from etl import pipeline
    from etl.runlock import RunBusy

    log_to_terminal(logging.WARNING)
    rtw_home = resolve_home(home)
    mappings = _mappings_folder()
    if not rtw_home.root.exists():  # a first night, or a mistyped --home: either way worth a line
        console.print(plain(f"rtw: no home at {rtw_home.root} yet: making a new one", "yellow"), soft_wrap=True)
    started = time.perf_counter()
    try:
        summary = pipeline.run(rtw_home, sources_dir=mappings, force=force, wait=wait,
                               progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    except RunBusy as exc:  # not a failure of this home: said on one line, whatever the width
        console.print(plain(f"rtw: {exc}", "red"), soft_wrap=True)
        raise typer.Exit(code=1) from None
    except Exception as exc:  # a run that cannot complete: one line, non-zero exit
        _fail(f"the run could not complete: {exc}")
    _print_summary(summary, time.perf_counter() - started)
    # Published, but a derived output (marts, report) was not written: exit 0, said in red.
    for note in summary.notes:  # they may quote an exception's text
        console.print(plain(note, "red"), soft_wrap=True)
    if strict and summary.sources_failed:
        raise typer.Exit(code=STRICT_FAILED)


@app.command()
def demo(home: HomeOption = None,
         patients: Annotated[int, typer.Option(min=1, max=MAX_PATIENTS)] = 300,
         seed: Annotated[int, typer.Option()] = 42) -> None:
    """Generate synthetic exports and run the nightly DAG once with the real Airflow."""
    from etl import airflow_local, pipeline
    from etl.synth import generate

    rtw_home = resolve_home(home).ensure()
    started = time.perf_counter()
    with console.status(f"writing synthetic exports for {patients} persons to {rtw_home.landing}"):
        generate(rtw_home.root, patients=patients, seed=seed)
    console.print(f"synthetic exports written to {rtw_home.landing}")
    with console.status("running the nightly DAG with Airflow (SQLite metadata, no server)"):
        try:
            log = airflow_local.run_dag_once(rtw_home)
        except RuntimeError as exc:
            _fail(str(exc))
    console.print(f"Airflow run finished; log in {log}")
    _print_summary(pipeline.summarise(rtw_home), time.perf_counter() - started)


@app.command()
def accept(source: Annotated[str, typer.Argument(help="The source id, e.g. registry_it")],
           file: Annotated[str, typer.Argument(help="The held export: its name in landing/<source>/, or a path; "
                                               "a loaded file: its name as rtw status shows it, or its sha256")],
           home: HomeOption = None) -> None:
    """Accept an export the snapshot guard held (a real shrink): the next run loads it. A loaded file no
    longer in landing (a form the source stopped sending), its source held for it: the next run loads the
    source without it. A file not held is refused (exit 1), saying what it is: nothing is accepted."""
    from etl.extract.file_names import shown_file_name
    from etl.extract.guards import accept_file
    from etl.extract.landing import sha256_of
    from etl.load.warehouse import read_loaded_files
    from etl.schema import reading
    from etl.steps import LoadedFile

    rtw_home = resolve_home(home)
    folder = rtw_home.landing / source
    path = Path(file) if Path(file).is_absolute() or Path(file).exists() else folder / file
    if not folder.is_dir():
        from etl.pull.deliveries import UnknownSource, refuse_unknown

        try:  # a mistyped source id: said so, with the ones there are
            refuse_unknown([source], _mappings_folder())
        except UnknownSource as exc:
            _fail(str(exc))
        _fail(f"no landing folder for source '{source}' at {folder}")
    numbers = _patient_numbers(rtw_home, source)
    if not path.exists() and Path(file).name == file and (landed := _landing_file(folder, file)) is not None:
        path = landed  # given by its sha256: the name a message shows may hide a patient number
    if not path.exists() and Path(file).name == file:
        loaded = read_loaded_files(rtw_home.warehouse, source)
        gone = [(sha, f) for sha, f in loaded.items() if f.name == file or _is_sha256_of(file, sha)]
        if not gone:
            _fail(f"{shown_file_name(file, numbers)}: neither an export file in {folder} nor a file the warehouse "
                  f"holds of {source} (by its name as rtw status shows it, or its sha256)")
        if len(gone) > 1:  # files shown alike: their names held patient numbers
            _fail(f"{file} names {len(gone)} loaded files of {source}; give the sha256 of the one that is gone "
                  f"(rtw status lists them): {', '.join(sha[:12] for sha, _ in gone)}")
        if refused := _departure_refused(rtw_home, source, *gone[0]):
            _fail(refused)
        _accept_departure(rtw_home, source, gone)
        return
    if not path.is_file() or path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        _fail(f"{shown_file_name(path.name, numbers)}: not an export file in {folder}")
    shown = shown_file_name(path.name, numbers)
    sha256 = sha256_of(path)
    with reading(rtw_home.warehouse) as live:  # what the warehouse made of this content: held, loaded, ...
        found = live.execute("SELECT status, series, rows_read - rows_superseded, file_name FROM meta.source_file "
                             "WHERE source_id = ? AND source_file_sha256 = ?",
                             [source, sha256]).fetchone() if live is not None else None
    loaded_file = LoadedFile(found[1], int(found[2]), found[3]) if found is not None and found[0] == "loaded" else None
    if loaded_file is not None and not _departure_refused(rtw_home, source, sha256, loaded_file):
        # still in landing, but the mapping no longer reads it (its files: pattern changed): the run held the
        # source for its departure, and said that accepting it accepts that
        _accept_departure(rtw_home, source, [(sha256, loaded_file)])
        return
    if found is None or found[0] != "held":
        what = ("is not held: nothing to accept; no run has read it yet: the next run loads it, or holds it and "
                "says why" if found is None else "is already loaded: nothing to accept" if found[0] == "loaded"
                else f"is not held: nothing to accept; the warehouse records it {found[0]} (rtw status says why)")
        _fail(f"{source}: {shown} (sha256 {sha256[:12]}) {what}")
    accepted = accept_file(rtw_home.root, source, shown, sha256)
    console.print(f"{source}: {shown} accepted (sha256 {accepted.sha256[:12]}..., by {accepted.accepted_by}); "
                  "the next run loads it and records the acceptance in meta.file_acceptance", soft_wrap=True,
                  markup=False)


def _departure_refused(rtw_home: Home, source: str, sha256: str, loaded: LoadedFile) -> str | None:
    """Why the departure of a loaded file is not accepted (None: it is): a run must have held the source
    for it, its series delivering no export the mapping reads."""
    from etl.extract.guards import held_for_departure
    from etl.schema import reading

    with reading(rtw_home.warehouse) as live:  # a departure is accepted once a run held the source for it
        status, held_message = (live.execute("SELECT status, message FROM meta.source WHERE source_id = ?",
                                             [source]).fetchone() if live is not None else None) or (None, None)
    accept_when = ("a run that finds a loaded form's export missing holds the source and names the file; "
                   "accept its departure then")
    if status != "held":
        return (f"{source}: {loaded.name} is loaded, and {source} is not held for its absence: nothing to "
                f"accept ({accept_when})")
    if not held_for_departure(held_message, loaded, sha256):
        return (f"{source}: {loaded.name} is loaded, and {source} is held, but not for its absence (the "
                f"last run found no export of it missing; rtw status says why it held {source}): nothing to "
                f"accept ({accept_when})")
    return None


def _accept_departure(rtw_home: Home, source: str, gone: list[tuple[str, LoadedFile]]) -> None:
    """Accept the departure of loaded files (`gone`, by sha256: one name as shown may stand for several)."""
    from etl.extract.guards import accept_file

    for sha, f in gone:
        accept_file(rtw_home.root, source, f.name, sha, departure=True)
    records = sum(f.records for _, f in gone)
    console.print(f"{source}: the departure of {gone[0][1].name} (series {gone[0][1].series}, {records} records) "
                  "accepted; the next run loads the source without it", soft_wrap=True, markup=False)


def _landing_file(folder: Path, given: str) -> Path | None:
    """The export file in `folder` whose sha256 `given` is (or begins), if any."""
    from etl.extract.landing import sha256_of

    if len(given) < 12 or any(c not in "0123456789abcdef" for c in given.lower()):
        return None
    return next((p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()
                 and _is_sha256_of(given, sha256_of(p))), None)


def _is_sha256_of(given: str, sha256: str) -> bool:
    """Whether `given` is the sha256 of a file, or the beginning of it that rtw status shows."""
    return len(given) >= 12 and sha256.startswith(given.lower())


def _patient_numbers(rtw_home: Home, source: str) -> PatientNumbers:
    """What patient numbers look like in the source's file names (etl/extract/file_names.py)."""
    from etl.config import SOURCES_DIR
    from etl.extract.file_names import PatientNumbers
    from etl.transform.mapping import MappingError, load_mapping

    try:
        return PatientNumbers.staged(rtw_home.staging, load_mapping(SOURCES_DIR / f"{source}.yaml"))
    except (MappingError, OSError):  # no mapping: no key known, any long number is taken for one
        return PatientNumbers.of([])


@app.command()
def status(home: HomeOption = None) -> None:
    """The last runs (those that failed before publishing too), and the state of every source file."""
    from etl import run_record
    from etl.pull.nights import read_pulls

    rtw_home = resolve_home(home)
    pulls = read_pulls(rtw_home)
    if not rtw_home.warehouse.exists():
        if (nights := run_record.unpublished(rtw_home, set())) or pulls:
            _print_runs([], nights, pulls)
        _fail(f"no warehouse yet at {rtw_home.warehouse}; run 'rtw run' first")
    con = connect_duckdb(rtw_home.warehouse, read_only=True)
    try:
        published = con.execute(
            "SELECT epoch(started_at), run_id, trigger, status, sources_changed, sources_unchanged, sources_failed, "
            # One more than shown: when the oldest shown began to pull (etl/pull/nights.py).
            "message FROM meta.run ORDER BY started_at DESC LIMIT ?", [_RUNS_SHOWN + 1]).fetchall()
        all_published = {run_id for (run_id,) in con.execute("SELECT run_id FROM meta.run").fetchall()}
        _print_runs(published, run_record.unpublished(rtw_home, all_published), pulls)
        _print_query(con, "Source files", "SELECT source_id, file_name, left(source_file_sha256, 12) AS sha256, "
                     "status, rows_read, rows_loaded, "
                     "rows_quarantined, rows_superseded, left(coalesce(message, ''), 80) AS message "
                     "FROM meta.source_file ORDER BY source_id, file_name, last_run_id")
        _print_query(con, "Latest notices of each source",
                     "SELECT source_id, notice FROM meta.source_notice n WHERE run_id = (SELECT max(run_id) "
                     "FROM meta.source_notice m WHERE m.source_id = n.source_id) ORDER BY source_id, notice")
    finally:
        con.close()


_RUNS_SHOWN = 10
_REASON_SHOWN = 400  # characters of a run's reason, for each source it names (a path, a URL may be long)


def _print_runs(published: list[tuple[Any, ...]], nights: list[Any], pulls: list[Any]) -> None:
    """The last runs, newest first: those meta.run records, and the nights that did not publish (failed,
    killed or still running: etl/run_record.py), with the step they ended in and why; and the pulls from
    drop zones that failed before each (etl/pull/nights.py). Then what those pulls left for later."""
    from datetime import UTC, datetime

    rows = [(started, run_id, trigger, run_status, "", _sources(changed, unchanged, failed),
             (message or "")[:_REASON_SHOWN * max(1, len(failed or ()))])
            for started, run_id, trigger, run_status, changed, unchanged, failed, message in published]
    rows += [(n.started_at.timestamp(), n.run_id, n.trigger, n.status, n.step, [], (n.reason or "")[:_REASON_SHOWN])
             for n in nights]
    rows = _with_failed_pulls(sorted(rows, key=lambda r: r[0]), pulls)
    table = Table(title="Last runs")
    table.add_column("started (UTC)", min_width=10)  # narrow: the time under the date
    table.add_column("run_id", no_wrap=True)  # read whole, or not at all
    table.add_column("trigger")
    table.add_column("status", overflow="fold")  # completed_with_failures, one word: folded, never cut
    table.add_column("step")
    # Lists and sentences: they share the room left and wrap in it; a path in a reason folds, never cut.
    table.add_column("sources", ratio=1)
    table.add_column("reason", ratio=1, overflow="fold")
    for started, *shown in rows[::-1][:_RUNS_SHOWN]:
        when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(when, *(Text("\n").join(map(plain, v)) if isinstance(v, list) else plain(v) for v in shown))
    console.print(table)
    _print_left_for_later(pulls)


def _with_failed_pulls(rows: list[tuple[Any, ...]], pulls: list[Any]) -> list[tuple[Any, ...]]:
    """The runs, oldest first, each with the failed pulls it went on without (a source's last pull since the
    run before started failed: its status says so, its reason names the source and why), then a row of its
    own for each failed pull no run has followed yet. A night whose only failure was a pull published
    `completed`: the warehouse records what was imported, not what was pulled."""
    from datetime import UTC, datetime

    from etl.pull.nights import failed_before

    def at(started: float | None) -> datetime | None:
        return None if started is None else datetime.fromtimestamp(started, UTC)

    shown = []
    for before, (started, run_id, trigger, run_status, step, sources, reason) in zip(
            [None, *(r[0] for r in rows)], rows, strict=False):
        if failed := failed_before(pulls, at(before), at(started)):
            run_status = [run_status, "pull failed"]
            pulled = [f"pull failed: {(p.failure or '')[:_REASON_SHOWN]}" for p in failed]
            reason = "; ".join([reason, *pulled] if reason else pulled)
        shown.append((started, run_id, trigger, run_status, step, sources, reason))
    last = rows[-1][0] if rows else None
    return shown + [(p.at.timestamp(), "", "pull", "failed", "pull", [], (p.failure or "")[:_REASON_SHOWN])
                    for p in failed_before(pulls, at(last), None)]


_LEFT_SHOWN = 5  # files left for later shown of each source, those waiting longest


def _print_left_for_later(pulls: list[Any]) -> None:
    """The files each source's last pull left in its drop zone for later (etl/pull/nights.py), those waiting longest
    first, with why and since when (the first of the pulls in a row that left it); a file landed or gone since is
    not among them. Nothing at all when no pull left any: most sources have no drop zone."""
    from datetime import UTC

    from etl.pull.nights import left_at_last_pull, most_left_pulls

    if not (last := left_at_last_pull(pulls)):
        return
    most = most_left_pulls()
    table = Table(title="Left for later in the drop zones (at each source's last pull)")
    for column in ("source_id", "file_name", "waiting since (UTC)", "pulls"):
        table.add_column(column, overflow="fold")
    table.add_column("reason", ratio=1, overflow="fold")
    for source_id, pull in last.items():
        assert pull.left is not None
        for left in pull.left[:_LEFT_SHOWN]:
            pulls_shown = f"{left.pulls} (more than {most})" if left.pulls > most else str(left.pulls)
            table.add_row(*map(plain, (source_id, left.name, f"{left.since.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                                       pulls_shown, left.reason[:_REASON_SHOWN])))
        if (more := len(pull.left) - _LEFT_SHOWN + pull.left_more) > 0:
            table.add_row(plain(source_id), plain(f"and {more} more"), "", "", "")  # the pull's log names them all
    console.print(table)


def _sources(changed: list[str] | None, unchanged: list[str] | None, failed: list[str] | None) -> list[str]:
    """A published run's sources by what became of them, by name (a list's repr, brackets and quotes, wrapped
    badly): a line each of those changed, unchanged and failed, none for an empty one."""
    kinds = (("changed", changed), ("unchanged", unchanged), ("failed", failed))
    return [f"{kind}: {', '.join(names)}" for kind, names in kinds if names]


WaitOption = Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for a run of this home")]


@contextmanager
def _holding(rtw_home: Home, command: str, wait: float) -> Iterator[None]:
    """Hold the home's run lock while a command writes what a run also writes (the report's `latest`,
    the marts' `current`): a run in progress is waited for up to `wait` seconds, then named."""
    from etl.runlock import RunBusy, run_lock

    try:
        with fsio.private_umask(), run_lock(rtw_home, f"rtw {command}", wait=wait):
            yield
    except RunBusy as exc:
        _fail(f"{exc}; try again when it has finished, or give --wait SECONDS")


@app.command()
def report(home: HomeOption = None,
           run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest validated run)")]
           = None, wait: WaitOption = 0) -> None:
    """(Re)write the HTML validation report of a run."""
    from etl.quality.report import build_report

    rtw_home = resolve_home(home)
    if not rtw_home.warehouse.exists():
        _fail(f"no warehouse yet at {rtw_home.warehouse}; run 'rtw run' first")
    with _holding(rtw_home, "report", wait):
        try:
            page = build_report(rtw_home.warehouse, rtw_home.reports, run_id)
        except ValueError as exc:
            _fail(str(exc))
    console.print(f"validation report: {page}")


@app.command()
def queries(centre: Annotated[str, typer.Option(
                "--centre", help="Centre (site) code, e.g. IT-MI01, or SOURCE:CODE, e.g. sacha_fr:FR04")],
            source: Annotated[str | None, typer.Option(
                "--source", help="The source whose centre code it is, e.g. sacha_fr: needed when several sources "
                                 "use the code (each numbers its own centres)")] = None,
            home: HomeOption = None,
            run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest run)")]
            = None,
            new_only: Annotated[bool, typer.Option("--new-only", help="Only issues not sent to the centre before")]
            = False,
            reminders_older_than: Annotated[int | None, typer.Option(
                "--reminders-older-than", min=0, metavar="DAYS",
                help="Only queries first sent more than DAYS days ago and still unanswered")] = None,
            wait: WaitOption = 0) -> None:
    """Send a centre of a source its open issues: XLSX and CSV with a response column, recorded as a query batch."""
    from etl.quality.queries import Selection, send_queries, warehouse_key
    from etl.runlock import RunBusy

    if new_only and reminders_older_than is not None:
        _fail("--new-only and --reminders-older-than choose different queries: give one of them")
    selection = (Selection.NEW_ONLY if new_only else Selection.REMINDERS if reminders_older_than is not None
                 else Selection.ALL)
    rtw_home = resolve_home(home)
    if not rtw_home.warehouse.exists():
        _fail(f"no warehouse yet at {rtw_home.warehouse}; run 'rtw run' first")
    try:  # an unknown run or centre, or a code of several sources: the message lists the known ones
        sent = send_queries(rtw_home, centre, warehouse_key(rtw_home), source_id=source, run_id=run_id,
                            selection=selection, older_than_days=reminders_older_than, wait=wait)
    except (ValueError, RunBusy) as exc:
        _fail(str(exc))
    console.print(f"batch {sent.batch_id}: {sent.queries} queries for centre {sent.centre.centre_id} of "
                  f"{sent.centre.source_id} in {sent.xlsx} and {sent.csv}", soft_wrap=True, markup=False)


responses_app = typer.Typer(help="Answers centres send back to their queries.", no_args_is_help=True)
app.add_typer(responses_app, name="responses")


@responses_app.command("import")
def responses_import(file: Annotated[Path, typer.Argument(
                         help="A returned query workbook (.xlsx), its .csv, or the .txt Excel saves as Unicode text")],
                     home: HomeOption = None,
                     wait: WaitOption = 0,
                     encoding: Annotated[str | None, typer.Option(
                         "--encoding", metavar="CODE_PAGE",
                         help="The code page a returned CSV was saved in when it is not UTF-8, e.g. cp1250 (Polish, "
                              "Czech, Hungarian Excel); default: Windows-1252, or Mac Roman for what Excel for Mac "
                              "saves. An XLSX, and Excel's Unicode text (UTF-16, .txt or renamed .csv), need none")]
                     = None) -> None:
    """Import a centre's answers: each row checked, confirmed findings waived from the next run on."""
    from etl.quality.queries import warehouse_key
    from etl.quality.responses import import_responses
    from etl.runlock import RunBusy

    rtw_home = resolve_home(home)
    try:  # a file that cannot be read at all, or no usable key: one line; bad rows are listed below
        summary = import_responses(rtw_home, file, warehouse_key(rtw_home), wait=wait, encoding=encoding)
    except (ValueError, RunBusy) as exc:
        _fail(str(exc))
    for problem in summary.problems:
        console.print(str(problem), style="red", soft_wrap=True, markup=False)  # cells may hold [brackets]
    for warning in summary.warnings:
        console.print(str(warning), style="yellow", soft_wrap=True, markup=False)
    rare = "".join(f", {n} {what}" for n, what in [(summary.repeated, "repeated in the file"),
                                                   (summary.superseded, "superseded by a newer batch's answer")] if n)
    not_found = (f"{summary.waivers_not_found} waivers for a value no longer found (they take effect only if it comes "
                 "back), " if summary.waivers_not_found else "")
    console.print(f"{file.name}: {summary.rows} rows; {summary.recorded} answers recorded, {summary.already_imported} "
                  f"already imported{rare}, {summary.unanswered} unanswered, {len(summary.problems)} refused; "
                  f"{summary.waivers_added} waivers added (they take effect at the next run), {not_found}"
                  f"{summary.waivers_withdrawn} waivers withdrawn", soft_wrap=True, markup=False)
    if summary.problems:  # the good rows are recorded; the exit code says that some were not
        raise typer.Exit(code=1)


@app.command()
def export(home: HomeOption = None,
           public: Annotated[bool, typer.Option(
               "--public", help="Aggregate marts with small cells suppressed, rare written labels as 'other'")] = False,
           out: Annotated[Path | None, typer.Option(help="Folder for --public (default: <home>/public)")] = None,
           min_cell: Annotated[int, typer.Option(min=1, help="Smallest count shown in --public")] = 5,
           wait: WaitOption = 0) -> None:
    """Export the marts: Parquet to <home>/marts/current/, or with --public CSV + Parquet for publication."""
    from etl.load.marts import export_parquet, export_public

    rtw_home = resolve_home(home)
    if out is not None and not public:  # the marts' Parquet sets live in the home: another folder would be ignored
        _fail(f"--out {out} is where --public writes; without --public the marts go to {rtw_home.marts / 'current'}")
    if not rtw_home.warehouse.exists():
        _fail(f"no warehouse yet at {rtw_home.warehouse}; run 'rtw run' first")
    with _holding(rtw_home, "export", wait):
        try:
            if public:
                folder = out or rtw_home.public
                written = export_public(rtw_home.warehouse, folder, min_cell)
                message = (f"{len(written)} files for publication in {folder} (counts below {min_cell} withheld, "
                           f"labels fewer than {min_cell} persons share as 'other')")
            else:
                written = export_parquet(rtw_home.warehouse, rtw_home.marts)
                message = f"{len(written)} Parquet marts in {rtw_home.marts / 'current'}"
        except LookupError as exc:
            _fail(str(exc))
    console.print(message)


PatientArgument = Annotated[str, typer.Argument(help="SOURCE:PSEUDONYM, as the report's clerical review list names "
                                                  "the patient")]


def _decide(first: str, second: str, decision: str, home: Path | None, note: str | None) -> None:
    from etl.link.decision import DecisionError, parse_patient, record_decision
    from etl.runlock import RunBusy

    rtw_home = resolve_home(home)
    try:
        run_id = record_decision(rtw_home, parse_patient(first), parse_patient(second), decision, note=note)
    except (DecisionError, RunBusy) as exc:
        _fail(str(exc))
    console.print(f"{decision} recorded in meta.link_decision (run {run_id}); it takes effect at the next run")


@app.command()
def link(first: PatientArgument, second: PatientArgument, home: HomeOption = None,
         note: Annotated[str | None, typer.Option("--note", help="Why (kept with the decision)")] = None) -> None:
    """A reviewer's decision: the two source patients are one person (from the clerical review list)."""
    _decide(first, second, "link", home, note)


@app.command()
def unlink(first: PatientArgument, second: PatientArgument, home: HomeOption = None,
           note: Annotated[str | None, typer.Option("--note", help="Why (kept with the decision)")] = None) -> None:
    """A reviewer's decision: the two source patients are different persons, whatever the score says."""
    _decide(first, second, "unlink", home, note)


@app.command()
def forget(source: Annotated[str, typer.Option("--source", help="The source id, e.g. registry_it")],
           patient: Annotated[str, typer.Option("--patient", help="The centre's own patient number (never "
                                                "printed, logged or stored)")],
           home: HomeOption = None,
           yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
           not_loaded: Annotated[bool, typer.Option("--not-loaded", help="The patient is not loaded yet (only in a "
                                                    "new export in landing/, or a held load): record the erasure "
                                                    "ahead, so no run loads them")] = False) -> None:
    """Erase a patient who withdrew consent: warehouse, archive, staging, marts and reports, and every later run.

    The erasure is recorded in meta.erasure by keyed pseudonym only. landing/ is the centre's drop zone
    and is not touched: the patient stays out while its exports still hold them.
    """
    from etl.forget import ForgetError
    from etl.forget import forget as erase
    from etl.runlock import RunBusy
    from etl.transform.keyguard import KeyMismatch

    log_to_terminal(logging.WARNING)
    rtw_home = resolve_home(home)
    if not yes and not typer.confirm(f"Erase this patient of {source} from {rtw_home.root}? This cannot be undone"):
        _fail("nothing erased")
    try:
        done = erase(rtw_home, source, patient, not_loaded=not_loaded)
    except (ForgetError, KeyMismatch, RunBusy) as exc:
        _fail(str(exc))
    if done.resumed:  # erased already: an erasure stopped after its publish (killed, or a file step failed)
        console.print(f"{source}: this patient was erased already (meta.erasure); the erasure's file steps were done "
                      f"again: {len(done.files_rewritten)} files rewritten, {len(done.files_deleted)} deleted. "
                      "landing/ is untouched: ask the centre to drop the patient from its exports")
    elif not done.loaded:
        console.print(f"{source}: this patient is not loaded in the warehouse; the erasure is recorded ahead in "
                      f"meta.erasure (run {done.run_id}): no run will load them, and {len(done.files_rewritten)} "
                      f"staged or archived files were rewritten, {len(done.files_deleted)} deleted. landing/ is "
                      "untouched: ask the centre to drop the patient from its exports")
        return
    else:
        person = "the person is gone from core.patient" if done.person_removed else \
            "the person stays in core.patient through another source"
        console.print(f"{source}: patient erased in run {done.run_id} ({done.records_removed} records; {person}); "
                      f"{len(done.files_rewritten)} files rewritten, {len(done.files_deleted)} deleted; recorded "
                      "in meta.erasure by pseudonym. landing/ is untouched: ask the centre to drop the patient "
                      "from its exports")
    if done.linked_elsewhere:  # consent is given per study: what to do is the data manager's call
        console.print(f"[yellow]{source}: the patient was linked to {', '.join(done.linked_elsewhere)}, kept:[/yellow] "
                      "consent is given per study. If the withdrawal covers those studies too, erase each with "
                      "rtw forget --source SOURCE --patient <that centre's number for the patient>")
    if done.public_withdrawn:
        console.print(f"{rtw_home.public} counted the patient and is removed: run 'rtw export --public' again "
                      "(with the --min-cell you publish with); copies of it already sent out still count them")


@app.command()
def rekey(new_key_file: Annotated[Path, typer.Option("--new-key-file", help="File holding the new key "
                                                     "(at least 32 characters, e.g. 64 hex digits)")],
          home: HomeOption = None,
          without_old_key: Annotated[bool, typer.Option(
              "--without-old-key", help="The current key is lost (neither RTW_PSEUDONYM_KEY nor the key file): "
                                        "rotate without it, dropping the reviewers' link decisions")] = False) -> None:
    """Rotate the pseudonymisation key: re-key every source in one publish, then replace the key file.

    The current key, from RTW_PSEUDONYM_KEY or else the key file (as runs take it), is kept as
    secrets/pseudonym.key.<UTC time>.old (0600). A run with the old key is refused afterwards.
    """
    import shlex

    from etl.transform.keyguard import RekeyError, rotate_key
    from etl.transform.pseudonym import KEY_ENV

    log_to_terminal(logging.WARNING)
    rtw_home = resolve_home(home)
    try:
        done = rotate_key(rtw_home, new_key_file, progress=lambda m: console.print(f"[dim]{m}[/dim]"),
                          without_old_key=without_old_key)
    except RekeyError as exc:
        _fail(str(exc))
    old = (done.old_fingerprint or "none recorded")[:8]
    kept = f"; the old key is kept as {done.old_key_file}" if done.old_key_file else ""
    if done.finished:  # killed after its publish: the warehouse was re-keyed already
        console.print(f"finished the rekey of run {done.run_id}, which stopped after re-keying the warehouse: key "
                      f"fingerprint {old} -> {done.new_fingerprint[:8]}; {rtw_home.key_file} now holds the new "
                      f"key{kept}.")
    else:
        console.print(f"re-keyed {len(done.sources)} sources in run {done.run_id}: key fingerprint {old} -> "
                      f"{done.new_fingerprint[:8]}; {rtw_home.key_file} now holds the new key{kept}.")
    if done.old_key_from_env:  # the key file is not what runs read: whoever sets the env must change it
        console.print(f"[bold]{KEY_ENV} still holds the old key, and the next run refuses it[/bold]: set it to the "
                      f"new key ({KEY_ENV}=\"$(cat {shlex.quote(str(new_key_file))})\"), and the Airflow Variable "
                      "rtw_pseudonym_key too if the DAG reads the key from it, or unset them so runs read the key "
                      f"file; then store {new_key_file} safely or delete it")
    else:
        console.print("If the DAG reads the key from the Airflow Variable rtw_pseudonym_key, set it to the new key "
                      f"before the next run; then store {new_key_file} safely or delete it")
    if done.decisions_converted or done.decisions_dropped:
        console.print(f"{done.decisions_converted} reviewer decisions (rtw link / unlink) now name the new "
                      f"pseudonyms; {len(done.decisions_dropped)} dropped, as they name a patient rekey could not "
                      "find (record them again from the next report's review list if the patient comes back):")
        for dropped in done.decisions_dropped:
            console.print(f"  dropped: {dropped}")


@app.command()
def dictionary(home: HomeOption = None,
               out: Annotated[Path | None, typer.Option(help="Markdown file (default: print)")] = None) -> None:
    """The data dictionary of the warehouse (every table and column, with meaning, unit, codes)."""
    from etl.load.dictionary import dictionary_markdown, read_warehouse_catalog

    rtw_home = resolve_home(home)
    if not rtw_home.warehouse.exists():
        _fail(f"no warehouse yet at {rtw_home.warehouse}; run 'rtw run' first")
    text = dictionary_markdown(read_warehouse_catalog(rtw_home.warehouse))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"data dictionary: {out}")


@app.command()
def airflow(home: HomeOption = None) -> None:
    """Start a local Airflow (scheduler + UI) whose DAG imports into this home."""
    from etl import airflow_local

    airflow_local.standalone(resolve_home(home).ensure())


@app.command()
def pull(sources: Annotated[list[str] | None, typer.Argument(help="Source ids (default: every source)")] = None,
         home: HomeOption = None) -> None:
    """Pull new exports from the sources' drop zones into landing/ (credentials: env AIRFLOW_CONN_<ID>)."""
    from etl.pull import PullStatus, pull_all
    from etl.pull.deliveries import UnknownSource, refuse_unknown

    log_to_terminal(logging.ERROR)
    mappings = _mappings_folder()
    try:  # a mistyped source: refused before the home is touched (a failed pull of it was recorded, and shown)
        refuse_unknown(sources or [], mappings)
    except UnknownSource as exc:
        _fail(str(exc))
    outcomes = pull_all(resolve_home(home).ensure(), sources=sources or None, sources_dir=mappings)
    styles = {PullStatus.PULLED: "green", PullStatus.FAILED: "red"}
    for outcome in outcomes:  # a message is shown as it is: file names may hold [brackets], an ESC
        console.print(plain(outcome.message, styles.get(outcome.status, "dim")), soft_wrap=True)
    if any(outcome.status is PullStatus.FAILED for outcome in outcomes):
        raise typer.Exit(code=1)



# -- onboarding a new source: profile -> scaffold -> edit -> check -> run ----------------------
ReaderOptions = Annotated[list[str] | None, typer.Option(
    "--option", help="A reader option of the file's format, KEY=VALUE (repeatable), e.g. header_row=2 "
                     "(Excel) or encoding=cp1252 (CSV)")]


def _reader_options(given: list[str] | None) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    for item in given or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            _fail(f"--option {item!r}: expected KEY=VALUE, e.g. header_row=2")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None  # 2 -> int, [A, B] -> list
    return options


@app.command()
def profile(file: Annotated[Path, typer.Argument(help="An export file of any supported format")],
            home: HomeOption = None,
            html: Annotated[Path | None, typer.Option("--html", help="HTML page to write (default: "
                                                      "<home>/reports/profiles/<file stem, as shown>.html)")] = None,
            option: ReaderOptions = None) -> None:
    """Describe an export file before any mapping exists (terminal tables and an HTML page).

    Per record set and column: inferred type, share empty, distinct count and frequent values; values
    seen fewer than 5 times are masked. Nothing is written to the warehouse.
    """
    from etl.extract.adapter import adapter_for_file
    from etl.extract.errors import ExtractError
    from etl.onboard.pages import profile_tables, write_profile_page
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file, reader_options, shown_error

    if not file.is_file():
        _fail(f"{file}: {'a folder, not a file' if file.is_dir() else 'no such file'}")
    try:
        adapter = adapter_for_file(file)
        options = reader_options(adapter, _reader_options(option))
        result = profile_file(read_file(file, adapter, options=options))
    except ExtractError as exc:  # names as the run shows them: a patient number in the file's or a sheet's
        _fail(shown_error(exc, [file]))
    except ValueError as exc:
        _fail(str(exc))
    console.print(profile_tables(result))
    # Named after the file as shown: a patient number in its name would be in reports/.
    default = resolve_home(home).reports / "profiles" / f"{Path(result.file_name).stem}.html"
    page = write_profile_page(result, html or default)
    console.print(f"profile page: {page}")


@app.command()
def check(source: Annotated[str, typer.Argument(help="Source id: sources/<SOURCE>.yaml")],
          home: HomeOption = None,
          sources_dir: Annotated[Path | None, typer.Option(
              "--sources-dir", help="Folder of the mappings (default: $RTW_SOURCES_DIR, else the shipped "
                                    "mappings)")] = None) -> None:
    """Check a source's mapping against its current landing files, without publishing anything.

    Exit 0 when the mapping is usable (warnings allowed), 1 with the problems listed otherwise.
    """
    from etl.onboard.check import check_source
    from etl.onboard.pages import check_tables

    rtw_home = resolve_home(home)
    outcome = check_source(source, sources_dir or _mappings_folder(), rtw_home.landing, rtw_home.staging)
    console.print(check_tables(outcome))
    if not outcome.usable:
        raise typer.Exit(code=1)


@app.command()
def scaffold(files: Annotated[list[Path], typer.Argument(help="One or more export files of the new source "
                                                         "(per-form exports: every form)")],
             source_id: Annotated[str | None, typer.Option("--source-id", help="Id of the new source "
                                                           "(default: from the file name)")] = None,
             out: Annotated[Path | None, typer.Option("--out", help="Where to write the draft "
                                                      "(default: <id>.yaml in $RTW_SOURCES_DIR, else in the "
                                                      "shipped mappings; '-' prints it)")] = None,
             force: Annotated[bool, typer.Option("--force", help="Replace an existing mapping file")] = False,
             option: ReaderOptions = None) -> None:
    """Draft a mapping from a file (or an ODM's metadata), with TODOs for what only you can decide."""
    from etl.extract.errors import ExtractError
    from etl.onboard.reading import shown_error
    from etl.onboard.scaffold import draft_mapping, read_sources, validate_draft
    from etl.transform.mapping import SOURCE_ID_PATTERN

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"not a file (none there, or a folder): {', '.join(missing)}")
    try:
        draft = draft_mapping(read_sources(files, source_id, _reader_options(option)))
    except ExtractError as exc:  # names as the run shows them: a patient number in a file's or a sheet's
        _fail(shown_error(exc, files))
    except ValueError as exc:
        _fail(str(exc))
    if out is not None and str(out) == "-":
        sys.stdout.write(draft.text)
        return
    if re.fullmatch(SOURCE_ID_PATTERN, draft.source_id) is None:  # it names a file: ../x would be written elsewhere
        _fail(f"source id {draft.source_id!r}: expected lower-case letters, digits and '_', starting with a letter "
              "(e.g. registry_fr); give --source-id")
    target = out or _mappings_folder() / f"{draft.source_id}.yaml"
    if target.exists() and not force:
        _fail(f"{target} exists; give --out elsewhere or --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(draft.text, encoding="utf-8")
    problems = validate_draft(draft)
    console.print(f"draft mapping: {target} ({draft.todos} TODOs to complete)", markup=False)
    if problems:
        console.print(plain("it does not validate yet: " + "; ".join(problems), "yellow"))  # [a-z] is no markup
    else:
        console.print(f"it validates as a mapping; complete the TODOs, then: {_check_command(draft.source_id, target)}",
                      soft_wrap=True, markup=False)  # one line to copy; a folder's [brackets] are no markup


def _check_command(source_id: str, mapping_file: Path) -> str:
    """The `rtw check` that reads the draft where it was written: `rtw check` finds <source_id>.yaml in
    the mappings folder, so a draft written elsewhere (--out DIR/x.yaml) needs --sources-dir DIR, and
    one named otherwise than its source_id must be renamed first."""
    from etl.resources import chosen_sources_dir

    folder = mapping_file.parent  # written to, so a folder: never the one $RTW_SOURCES_DIR names if it is none
    is_default = folder.resolve() == chosen_sources_dir().resolve()
    command = f"rtw check {source_id}" + ("" if is_default else f" --sources-dir {shlex.quote(str(folder))}")
    if mapping_file.name != f"{source_id}.yaml":
        return f"rename it {source_id}.yaml (a mapping's file is named by its source_id), then {command}"
    return command


def _print_query(con: Any, title: str, sql: str) -> None:
    result = con.execute(sql)
    table = Table(title=title)
    for column in result.description:
        table.add_column(column[0])
    for row in result.fetchall():  # notices and messages quote exports: plain text
        table.add_row(*(plain(v) for v in row))
    console.print(table)


def _print_summary(summary: RunSummary, seconds: float) -> None:
    table = Table(title=f"Run {summary.run_id}: {summary.status} in {seconds:.1f}s")
    table.add_column("core table")
    table.add_column("rows", justify="right")
    for name, count in summary.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    quarantined = summary.quarantined
    console.print("quarantined records: " + (", ".join(f"{s} {n:,}" for s, n in quarantined.items()) or "none"))
    if summary.sources_unchanged:
        console.print(f"unchanged, skipped: {', '.join(summary.sources_unchanged)}")
    if summary.sources_failed:  # the message quotes the export (a StudyOID, a column name): plain text
        # It names each failed source before its reason (meta.run.message): naming them first said each twice.
        console.print(plain(f"failed sources: {summary.message or ', '.join(summary.sources_failed)}", "red"))
    for notice in summary.notices:  # they quote landing files and folders by their names: plain text
        console.print(plain(f"notice {notice}", "yellow"), soft_wrap=True)
    issues = summary.issues
    console.print("open issues: " + (", ".join(f"{n:,} {sev}s" for sev, n in issues.items()) or "none"))
    console.print(f"warehouse: {summary.warehouse}")
    if summary.report:
        console.print(f"validation report: {summary.report}")


def main() -> None:
    """The `rtw` command: a file or folder the command cannot use (not writable, a file where a folder is wanted, a
    disk full) or a warehouse file DuckDB cannot read is said in one line, not a traceback; env RTW_TRACEBACK=1
    shows where it arose (docs/operations.md)."""
    import os

    import duckdb

    try:
        app()
    except (OSError, duckdb.Error) as exc:
        if os.environ.get("RTW_TRACEBACK"):
            raise
        what = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
        kind = "the warehouse cannot be used" if isinstance(exc, duckdb.Error) else "a file or folder cannot be used"
        console.print(plain(f"rtw: {kind}: {what} (RTW_TRACEBACK=1 shows where)", "red"), soft_wrap=True)
        sys.exit(1)
