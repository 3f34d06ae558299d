"""The nightly import as steps: plan, extract, harmonise (per source), publish (once).

`rtw run` calls these in sequence (a large run prepares its sources in worker processes, two at a
time); the Airflow DAG calls the very same functions as tasks,
extract and harmonise mapped over sources. Steps exchange the small typed values of
`etl.steps` (paths and counts, never data frames; JSON for XCom), so they can run in separate
processes or on separate workers.
A source that fails (unreadable file, invalid mapping) is recorded as failed and keeps its
last good data; the other sources go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from etl import crash, fsio, interpreter, memory, publish_outputs, repair, run_record, runlock, schema, timing
from etl.config import SOURCES_DIR, Home, bytes_setting, connect_duckdb, duckdb_threads, read_time_limit
from etl.extract import landing
from etl.extract.adapter import STAGED_NAME, Removal, SourceAdapter, StageResult, adapter_for, readers_digest
from etl.extract.errors import ExtractError
from etl.extract.file_names import (
    PatientNumbers,
    QuotedNames,
    placed,
    sheets_among,
    sheets_placed,
    sheets_shown,
    shown_file_name,
    shown_record_sets,
)
from etl.extract.guards import (
    accept_argument,
    accepted_files,
    departing,
    gone_record_sets,
    held_series,
    withdraw_acceptances,
    withdraw_departures,
)
from etl.forget import (
    drop_erased,
    erased_pseudonyms,
    exports_holding,
    hide_erased_numbers,
    scrub_export_copies,
)
from etl.load import next_copy
from etl.load.populations import population_file, read_child_population
from etl.load.warehouse import (
    KeyViolation,
    RecordedFile,
    publish,
    read_loaded_files,
    read_loaded_record_sets,
    read_recorded_files,
    read_source_state,
)
from etl.quality import gx_memo, gx_process, issue_spans
from etl.quality.validate import QualityPlan, quality_plan
from etl.resources import code_digest
from etl.steps import AcceptedFile, ExportFile, FileCounts, LoadedFile, RunPlan, RunSummary, SourceOutcome, SourceStatus
from etl.transform import carry_over
from etl.transform.harmonise import HarmoniseError
from etl.transform.keyguard import guard_key
from etl.transform.mapping import MappingError, SourceMapping, load_mapping
from etl.transform.other_sources import (
    keep_shapes,
    other_source_shapes,
    screen_missed,
    source_shapes,
    write_screened_with,
)
from etl.transform.parts import harmonise_to_folder
from etl.transform.pseudonym import PseudonymKey, load_key, published_key
from etl.transform.records import load_current_records, with_file_names
from etl.transform.screen import TextScreen

log = logging.getLogger("rtw")


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def _mapping_path(source_id: str, sources_dir: Path) -> Path:
    return sources_dir / f"{source_id}.yaml"


@cache
def intake_code_digest() -> str:
    """The code and libraries that turn a source's exports into its stage rows. An upgrade of them
    loads every source again at the next run (harmonise still carries over the patients it would
    harmonise as before: etl/transform/carry_over.py), so the warehouse is never what an earlier
    version made of exports this version would read otherwise."""
    here = Path(__file__).parent
    steps = code_digest([here / "pipeline.py", here / "steps.py", here / "load" / "warehouse.py"])
    # The readers' and harmonise's own digests (what staged copies and carried-over patients are kept
    # under) are part of it: whatever makes either redo its work reloads the source.
    return hashlib.sha256(f"{readers_digest()}|{carry_over.code_digest()}|{steps}".encode()).hexdigest()


def _fingerprint(mapping_path: Path, files: list[landing.LandingFile]) -> str:
    """What a source's load is made of: its mapping, its exports (each with its export day) and the code
    that reads them. The same bytes sent again with a later modification time are a later export when
    their name holds no day (landing.export_day): the rules bound dates by it (XT-DATE-NOT-AFTER-EXPORT),
    so the source is loaded again, as a first run on that export would judge it."""
    digest = hashlib.sha256(mapping_path.read_bytes() + intake_code_digest().encode())
    for f in sorted(files, key=lambda f: (f.sha256, f.exported_on)):
        digest.update(f"{f.sha256}:{f.exported_on.isoformat()}".encode())
    return digest.hexdigest()


def plan(home: Home, *, sources_dir: Path = SOURCES_DIR, run_id: str | None = None,
         force: bool = False, key_value: str | None = None, rotate_key: bool = False,
         live: duckdb.DuckDBPyConnection | None = None) -> RunPlan:
    """Which sources changed since the last load (by file hashes and mapping), and the run id.

    First the key guard: a key other than the warehouse's (KeyMismatch) stops the run here, before
    anything is harmonised under it. `rotate_key` is for `rtw rekey` only. `live`: a read-only
    connection to the live warehouse the caller holds (repair's)."""
    run_id = run_id or new_run_id()
    read_time_limit(0)  # a wrong RTW_READ_SECONDS stops the run here, named, not each source's reading
    duckdb_threads()  # and a wrong RTW_DUCKDB_THREADS
    with schema.reading(home.warehouse, live) as live:
        guard_key(home, run_id, key_value, rotate=rotate_key, live=live)
        state = read_source_state(home.warehouse, live)
    changed, unchanged, notices = [], [], {}
    shapes = cache(lambda: source_shapes(home, sources_dir))  # read once, when a source asks
    for path in sorted(sources_dir.glob("*.yaml")):
        source_id = path.stem
        try:
            mapping = load_mapping(path)
        except MappingError:
            changed.append(source_id)  # extract reports the mapping error as this source's failure
            continue
        found = landing.discover(home.landing, mapping)
        numbers = PatientNumbers.staged(home.staging, mapping)  # read only if a notice names a file
        notices[source_id] = [found.shown(notice, numbers) for notice in found.notices]
        for waiting in found.waiting_notices:
            log.warning("%s", found.shown(waiting, numbers))
        if found.problems:
            changed.append(source_id)  # extract holds the source and reports why
            continue
        # Superseded files count too: an older export re-sent late is recorded as superseded, not missed.
        fingerprint = _fingerprint(path, [*found.current, *found.superseded])
        previous = state.get(source_id, {})
        loaded = previous.get("status") == "loaded"
        if found.series_only_waiting and (loaded_files := _held_files(home, source_id, found.series_only_waiting)):
            unchanged.append(source_id)  # a loaded form's only export is still being written: the source keeps its data
            if any(f.sha256 not in loaded_files for f in found.current):  # another export's change waits with it
                said = found.shown(_change_waits(source_id, found), numbers)
                log.warning("%s", said)
                notices[source_id].append(said)
        elif not force and previous.get("fingerprint") == fingerprint and loaded and not _screen_missed(
                home, source_id, mapping, previous.get("last_loaded_run_id"), shapes):
            unchanged.append(source_id)
        else:
            changed.append(source_id)
    for folder in unmapped_landing(home, sources_dir):
        said = (f"{folder.name}: landing folder {folder} has no mapping {sources_dir / (folder.name + '.yaml')}: "
                "its files are not read (RTW_SOURCES_DIR, when set, replaces the shipped mappings folder)")
        log.warning("%s", said)
        notices[folder.name] = [said]
    return RunPlan(run_id=run_id, started_at=datetime.now(UTC), changed=changed, unchanged=unchanged,
                   notices=notices)


def _screen_missed(home: Home, source_id: str, mapping: SourceMapping, last_load: str | None,
                   shapes: Callable[[], Mapping[str, frozenset[str]]]) -> bool:
    """Whether the source's last load has a free text holding a number shaped like another source's keys, which
    were not known when it was harmonised (etl/transform/other_sources.py): loaded again, it is screened anew."""
    if not last_load:
        return False
    why = screen_missed(source_id, mapping, home.staging / source_id / "harmonised" / last_load, shapes())
    if why is None:
        return False
    log.warning("%s: %s", source_id, why)
    return True


def unmapped_landing(home: Home, sources_dir: Path) -> list[Path]:
    """Landing folders no mapping of `sources_dir` reads: a source whose exports arrive but are never
    loaded (a mapping folder that replaced the shipped one, a misspelt source id) must not go unnoticed."""
    if not home.landing.is_dir():
        return []
    mapped = {p.stem for p in sources_dir.glob("*.yaml")}
    return sorted(f for f in home.landing.iterdir()
                  if f.is_dir() and not f.name.startswith(".") and f.name not in mapped)


def _change_waits(source_id: str, found: landing.SourceFiles) -> str:
    """What a source kept as it was for a loaded form's export still being written says of its other changes."""
    names = [name for name, series in zip(found.waiting, found.waiting_series, strict=True)
             if series in found.series_only_waiting]
    return (f"{source_id}: its other exports changed, and wait with the source until {', '.join(names)} "
            f"{'is' if len(names) == 1 else 'are'} complete: the warehouse holds that form, which a run reading "
            "the source now would lose")


def _held_files(home: Home, source_id: str, series: Sequence[str]) -> dict[str, LoadedFile]:
    """The source's loaded files (by sha256) when the live warehouse holds a file of any of its `series`
    (whatever last night's status: a held source keeps its loaded files), else {}. A form never loaded waits
    without stopping the others."""
    loaded = read_loaded_files(home.warehouse, source_id)
    return loaded if any(f.series in series for f in loaded.values()) else {}


def _export_file(f: landing.LandingFile, numbers: PatientNumbers) -> ExportFile:
    return ExportFile(name=shown_file_name(f.name, numbers), sha256=f.sha256, size_bytes=f.size_bytes,
                      series=f.series, exported_on=f.exported_on)


def _failed(outcome: SourceOutcome, message: str) -> SourceOutcome:
    log.error("%s: %s", outcome.source_id, message)
    return outcome.fail(message)


def as_recorded(outcomes: Sequence[SourceOutcome], summary: RunSummary) -> list[SourceOutcome]:
    """The outcomes handed to publish as its run recorded them: a source publish failed itself (its harmonised files
    gone, its rows holding a core key twice) failed, with the reason it recorded, where it came harmonised."""
    return [o.fail(summary.failed_reasons.get(o.source_id) or "failed in publish")
            if o.source_id in summary.sources_failed and not o.failed else o for o in outcomes]


def _without_key_violation(outcomes: list[SourceOutcome], violation: KeyViolation) -> list[SourceOutcome]:
    """The outcomes with the sources loaded this night whose rows held a core key twice failed, each keeping its
    last good data: one source's fault never stops the others. Raises the violation again when none of them
    was loaded this night (the fault is in the live warehouse: nothing to leave out)."""
    at_fault = {o.source_id for o in outcomes if o.status is SourceStatus.HARMONISED} & set(violation.sources)
    if not at_fault:
        raise violation
    said = str(violation).removesuffix("; nothing was published")
    why = f"its rows hold a key of the warehouse twice ({said}): a fault of the warehouse's code, to report; " \
          "its last good data kept"
    return [_failed(o, why) if o.source_id in at_fault else o for o in outcomes]


def extract_source(home: Home, run_id: str, source_id: str, *, sources_dir: Path = SOURCES_DIR) -> SourceOutcome:
    """Archive and stage the source's current files (a file already staged is not read again).

    The outcome names every file as shown (etl/extract/file_names.py), once the current files are
    staged and so their patient keys known: a file's name may hold a patient number."""
    started = time.perf_counter()
    outcome = SourceOutcome(source_id=source_id, run_id=run_id, status=SourceStatus.EXTRACTED)
    try:
        mapping_path = _mapping_path(source_id, sources_dir)
        mapping = load_mapping(mapping_path)
    except MappingError as exc:
        return _failed(outcome, str(exc))
    adapter = adapter_for(mapping.format)
    found = landing.discover(home.landing, mapping)
    numbers = PatientNumbers.staged(home.staging, mapping)
    if found.problems:  # held: the source keeps its last good data until its files can be applied
        problem = found.shown("; ".join(found.problems), numbers)
        return _failed(_not_read(outcome, found, numbers, problem), problem)
    recorded = read_recorded_files(home.warehouse, source_id)  # one read of the warehouse for both judges
    _withdraw_spent_acceptances(home, source_id, {sha for sha, f in recorded.items() if f.status == "superseded"})
    if older := _older_exports(home, mapping, found, recorded):
        reasons = [found.shown(reason, numbers) for _, reason in older]
        return held_outcome(_not_read(outcome, found, numbers, "; ".join(reasons)), reasons,
                            [accept_argument(shown_file_name(f.name, numbers), f.sha256) for f, _ in older])
    options = adapter.read_options(mapping)
    staged: list[tuple[landing.LandingFile, Path, StageResult | None]] = []
    unread: tuple[landing.LandingFile, str] | None = None
    for f in found.current:
        try:
            staged.append((f, *_stage(home, adapter, options, f)))
        except (ExtractError, OSError) as exc:  # OSError: the file vanished or cannot be copied to the archive
            sheets = exc.quoted if isinstance(exc, ExtractError) else ()  # a sheet, too
            unread = (f, sheets_shown(str(exc), sheets, numbers, sheets_among(options)))
            break
    outcome.superseded = [_export_file(s, numbers) for s in found.superseded]
    outcome.landing_notices = [found.shown(notice, numbers) for notice in found.notices]
    outcome.notices = list(outcome.landing_notices)
    for f, path, result in staged:
        entry = _export_file(f, numbers).model_copy(update={"staged": str(path)})
        if result is None:
            log.info("%s: %s already staged", source_id, entry.name)
        else:
            # A sheet's name may hold a patient number like a file's: shown with {patient}, and its place in
            # the workbook, as rtw profile and rtw check show it, so that a sheet per patient's notices differ.
            # Made once per file: a workbook of a sheet per patient has a notice per sheet.
            names, places = QuotedNames(result.quoted), sheets_placed(result.quoted, numbers, sheets_among(options))
            entry.rows_staged = result.rows
            entry.notices = [found.shown(names.shown(placed(n, places), numbers), numbers) for n in result.notices]
            log.info("%s: staged %s (%s rows)", source_id, entry.name, result.rows)
        outcome.notices += entry.notices
        outcome.files.append(entry)
    if unread is not None:
        message = found.shown(unread[1], numbers)
        outcome.files = [_export_file(unread[0], numbers).model_copy(update={"message": message})]
        return _failed(outcome, message)
    if not outcome.files:
        said = "".join(f"; {notice.removeprefix(f'{source_id}: ')}" for notice in outcome.notices)
        return _failed(outcome, f"no export files in {home.landing / source_id}{said}")
    outcome.fingerprint = _fingerprint(mapping_path, [*found.current, *found.superseded])
    outcome.seconds_extract = round(time.perf_counter() - started, 3)
    return outcome


def _not_read(outcome: SourceOutcome, found: landing.SourceFiles, numbers: PatientNumbers,
              message: str) -> SourceOutcome:
    """The outcome of a source whose current files are not read tonight (`message`: why), its files listed."""
    outcome.files = [_export_file(f, numbers).model_copy(update={"message": message}) for f in found.current]
    outcome.superseded = [_export_file(s, numbers) for s in found.superseded]
    outcome.landing_notices = [found.shown(notice, numbers) for notice in found.notices]
    outcome.notices = list(outcome.landing_notices)
    return outcome


def _older_exports(home: Home, mapping: SourceMapping, found: landing.SourceFiles,
                   recorded: dict[str, RecordedFile]) -> list[tuple[landing.LandingFile, str]]:
    """The current exports written before the one of their series the warehouse loaded (`recorded`: the
    source's files it records, by sha256), earlier exports sent again under a fixed name, or under a newer name
    with the bytes of one it loaded and replaced since, each with why the source must be held for it
    (landing.older_than_loaded). The landing folder cannot tell, whether the pull landed
    the file or a data manager dropped it: the warehouse can."""
    source_id = mapping.source_id
    accepted = set(accepted_files(home.root, source_id))
    loaded = {sha: f for sha, f in recorded.items() if f.status == "loaded"}
    loaded_series = {f.series for f in loaded.values()}
    judged = [f for f in found.current if f.sha256 not in accepted and f.sha256 not in loaded
              and not mapping.is_ignored(f.series) and f.series in loaded_series]
    if not judged:
        return []
    # A loaded export's written instant (its archive copy's CreationDateTime) tells only against a new
    # export of its series that states one too (landing.written_before): read only then.
    timed = {f.series for f in judged if f.header.created is not None}
    judged_series = {f.series for f in judged}
    read = adapter_for(mapping.format).file_header
    exports = {sha: landing.LoadedExport(f.name, f.series, f.exported_on, landing.archived_header(
        home.archive, source_id, sha, read).created if f.series in timed else None)
               for sha, f in loaded.items() if f.series in judged_series}
    replaced = {sha: landing.LoadedExport(f.name, f.series, f.exported_on) for sha, f in recorded.items()
                if f.status == "superseded"}
    return landing.older_than_loaded(judged, exports, accepted, replaced)


def _withdraw_spent_acceptances(home: Home, source_id: str, superseded: set[str]) -> None:
    """Withdraw the acceptances of files loaded and superseded since (`superseded`: the sha256 of the source's
    files the warehouse records superseded; guards.withdraw_acceptances): the same content sent again is
    judged as any export, held again if it must be, and accepted again."""
    for accepted in withdraw_acceptances(home.root, source_id, superseded).values():
        log.info("%s: %s, accepted, loaded and superseded since: its acceptance is withdrawn", source_id,
                 accepted.file_name)


def _stage(home: Home, adapter: SourceAdapter, options: BaseModel, f: landing.LandingFile
           ) -> tuple[Path, StageResult | None]:
    """Archive a current file and stage it; the staged copy, and what staging said (None: staged before).
    Its lineage names it as delivered: staging holds clear identifiers, and harmonise names it as shown."""
    staged = home.staging / f.source_id / adapter.staged_as(f.sha256, options)
    landing.archive(f, home.archive)
    if staged.exists() and not adapter.staged_whole(staged):
        log.warning("%s: the staged copy %s cannot be read back: staged again", f.source_id, staged.name)
        _remove(staged)
    if staged.exists():
        return staged, None
    result = adapter.stage(f.path, staged, options, {"source_file": f.name, "source_file_sha256": f.sha256})
    crash.crash_point("extracted")
    return staged, result


def harmonise_extracted(home: Home, extracted: SourceOutcome, *, key_value: str | None = None,
                        sources_dir: Path = SOURCES_DIR) -> SourceOutcome:
    """Harmonise a staged source into Parquet under staging/: core tables, every record, rejections."""
    if extracted.status is not SourceStatus.EXTRACTED:
        return extracted
    started = time.perf_counter()
    source_id, run_id = extracted.source_id, extracted.run_id
    key = load_key(home.key_file, key_value)
    staged = [(Path(f.staged), f.series, f.name, f.sha256) for f in extracted.files if f.staged]
    if missing := [str(path) for path, _, _, _ in staged if not path.exists()]:
        return _failed(extracted, f"staged file {missing[0]} is missing{_NOT_SHARED}")
    out = home.staging / source_id / "harmonised" / run_id
    try:
        mapping = load_mapping(_mapping_path(source_id, sources_dir))
        record_sets = load_current_records(mapping, staged)
        names = {f.sha256: f.name for f in extracted.files}  # as shown: the staged lineage has them as delivered
        # Patients erased on withdrawal of consent (rtw forget) stay out while the exports still hold them;
        # they count as superseded, so rows_read = loaded + quarantined + superseded still holds.
        erased = erased_pseudonyms(home.warehouse, source_id)
        frames = shown_record_sets(with_file_names(record_sets.frames, names),
                                   PatientNumbers.staged(home.staging, mapping))  # a sheet per patient
        frames, left_out = drop_erased(frames, mapping, key, erased)
        if erased:  # a file of an erased patient sent again: archived and pulled under a name the key tells
            hide_erased_numbers(home, mapping, key, erased)
        superseded = dict(record_sets.superseded)
        for sha, n in left_out.items():
            superseded[sha] = superseded.get(sha, 0) + n
        # An acceptance keeps the name it was given (rtw accept): recorded under the name shown.
        accepted = {sha: a.model_copy(update={"file_name": names.get(sha, a.file_name)})
                    for sha, a in accepted_files(home.root, source_id).items()}
        for sha in withdraw_departures(home.root, source_id, set(names)):
            log.warning("%s: %s is delivered again: the acceptance of its departure is withdrawn", source_id,
                        names[sha])
        loaded = read_loaded_files(home.warehouse, source_id)  # what the guards and the acceptances judge by
        departed = {sha: a.model_copy(update={"file_name": loaded[sha].name if sha in loaded else a.file_name})
                    for sha, a in accepted_files(home.root, source_id, departures=True).items()}
        last_load = read_source_state(home.warehouse).get(source_id, {}).get("last_loaded_run_id")
        with fsio.written_atomically(out, folder=True) as folder:  # publish never finds half a source
            result = harmonise_to_folder(mapping, frames, key, run_id, folder, previous=(
                home.staging / source_id / "harmonised" / last_load if last_load else None),
                others=lambda: other_source_shapes(home, source_id, sources_dir))
            if result.screen is not None:
                write_screened_with(folder, result.screen)
            # An export still naming them (their records, or the removal the centre was asked for: an ODM
            # increment's Remove is no record) loses them from its archive copy and staged rows too.
            if holding := {*left_out, *exports_holding([(sha, path) for path, _, _, sha in staged], mapping, key,
                                                       erased)}:
                scrub_export_copies(home, mapping, key, erased, holding)
            counts = _file_counts(result.file_counts, superseded)
            held, to_accept = _held(home, mapping, loaded, extracted.files, counts, accepted, departed,
                                    folder / "records.parquet")
            if held:
                raise _Held(held, to_accept)  # a held load leaves no harmonised files behind
            if result.screen is not None:
                keep_shapes(home, source_id, _mapping_path(source_id, sources_dir), result.screen)
            removals = [r for r in _removal_rows(source_id, run_id, key, record_sets.removed, result.screen)
                        if r["source_record_key"].partition("|")[0] not in erased]  # an erased patient leaves no audit
            pq.write_table(pa.Table.from_pylist(removals, schema=schema.arrow_schema("meta.record_removal")),
                           folder / "removals.parquet")
    except _Held as held_back:
        return held_outcome(extracted, held_back.reasons, held_back.to_accept)
    except (MappingError, HarmoniseError, ExtractError) as exc:
        return _failed(extracted, str(exc))
    crash.crash_point("harmonised")
    log.info("%s: harmonised %s; %d records rejected%s%s", source_id,
             ", ".join(f"{t} {n}" for t, n in result.rows.items()), result.rejected,
             f" ({result.parts} parts of whole patients)" if result.parts > 1 else "",
             f"; {result.carried} patients with unchanged records carried over from the last load"
             if result.carried else "")
    return extracted.model_copy(update={
        "status": SourceStatus.HARMONISED, "harmonised_dir": str(out),
        "file_counts": counts,
        "accepted": [*(a for sha, a in accepted.items() if sha in names),  # the acceptances it acts on
                     *(a for sha, a in departed.items() if sha in loaded)],
        "rows": result.rows, "rejected": result.rejected,
        "notices": [*extracted.notices, *result.notices],
        "seconds_harmonise": round(time.perf_counter() - started, 3)})


class _Held(Exception):
    """The load must be held (etl/extract/guards.py): the harmonised folder is thrown away."""

    def __init__(self, reasons: list[str], to_accept: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons, self.to_accept = reasons, to_accept


_NOT_SHARED = (": the task before this one wrote it on a worker that does not share this home "
               "(every worker must see the same RTW_HOME, on shared storage); nothing of the source is published")


def missing_harmonised(outcome: SourceOutcome) -> str | None:
    """Why a harmonised source cannot be published as it claims: a Parquet file missing, or holding
    other rows than harmonise wrote (publish would otherwise load the source as empty or cut)."""
    folder = Path(outcome.harmonised_dir or "")
    expected = {f"{table}.parquet": n for table, n in outcome.rows.items()}
    for name in ("records.parquet", "rejections.parquet", "removals.parquet", *expected):
        path = folder / name
        if not path.is_file():
            return f"harmonised file {path} is missing{_NOT_SHARED}"
        if name in expected and (found := pq.ParquetFile(path).metadata.num_rows) != expected[name]:
            return f"harmonised file {path} holds {found} rows where harmonise wrote {expected[name]}"
    return None


def _held(home: Home, mapping: SourceMapping, loaded_files: dict[str, LoadedFile], files: list[ExportFile],
          counts: dict[str, FileCounts], accepted: dict[str, AcceptedFile], departed: dict[str, AcceptedFile],
          records: Path) -> tuple[list[str], list[str]]:
    """Why this load must be held (a sharp shrink, no records, a form gone), judged against the live
    warehouse (`loaded_files`), and what rtw accept is given to let it load (accept_argument: the new exports
    judged, the loaded files gone); `records`: the harmonised records of this load. `accepted`: exports
    accepted to load, `departed`: loaded files accepted to go (none of them delivered: withdraw_departures)."""
    loaded = {sha: f for sha, f in loaded_files.items()
              if not mapping.is_ignored(f.series)}  # a form the mapping ignores holds nothing
    judged = [f for f in files if not mapping.is_ignored(f.series)]
    gone = departing(judged, loaded, set(departed))
    reasons = held_series(judged, counts, loaded, set(accepted), mapping.max_shrink, set(departed),
                          _unread(home, mapping, judged) if gone else frozenset(), gone)
    new = [f for f in judged if f.sha256 not in loaded and f.sha256 not in accepted]
    if new:  # a new export, not accepted
        now = pq.read_table(records, columns=["record_set"]).column("record_set").value_counts().to_pylist()
        before: dict[str, int] = {}
        for (record_set, sha), n in read_loaded_record_sets(home.warehouse, mapping.source_id).items():
            if not mapping.is_ignored(record_set) and sha not in departed:  # a departed form's records go
                before[record_set] = before.get(record_set, 0) + n
        reasons += gone_record_sets(before, {c["values"]: c["counts"] for c in now})
    # held_series gives one reason a series gone: any other is the new exports'
    to_accept = [accept_argument(f.name, f.sha256) for f in new] if len(reasons) > len(gone) else []
    return reasons, to_accept + [accept_argument(f.name, sha) for in_series in gone.values()
                                 for sha, f in in_series.items()]


def _unread(home: Home, mapping: SourceMapping, files: list[ExportFile]) -> set[str]:
    """The files in the source's landing folder the night did not read, by their names as shown: one the
    mapping's files: pattern no longer takes (its export renamed, or in another format) is not missing."""
    folder = home.landing / mapping.source_id
    numbers = PatientNumbers.staged(home.staging, mapping)
    return {shown_file_name(p.name, numbers) for p in (folder.iterdir() if folder.is_dir() else ())
            if p.is_file()} - {f.name for f in files}


def held_outcome(outcome: SourceOutcome, reasons: list[str], to_accept: Sequence[str]) -> SourceOutcome:
    """The source held (`reasons`), the message saying what to accept (`to_accept`: what rtw accept is given):
    every file at once, as the next run takes every acceptance made before it."""
    commands = "; ".join(f"rtw accept {outcome.source_id} {shlex.quote(a)}" for a in to_accept)
    what = (f"accept all {len(to_accept)} ({commands}), then run again: the next run takes them together"
            if len(to_accept) > 1 else f"accept it ({commands}) and run again")
    message = f"held, its last good data kept: {'; '.join(reasons)}. If this is right, {what}"
    log.error("%s: %s", outcome.source_id, message)
    return outcome.model_copy(update={"status": SourceStatus.HELD, "message": message})


def _removal_rows(source_id: str, run_id: str, key: PseudonymKey, removed: Sequence[Removal],
                  screen: TextScreen | None) -> list[dict[str, Any]]:
    """The audit of records an increment deleted, by pseudonym: the clear patient key never leaves, and a local
    part showing a number of the source's patient-key shape or a birth date is a keyed digest, as harmonise
    publishes it (`publish_keys`). Harmonise hides the record's own patient's birth date alone; the deleted
    record's patient may be gone, so any birth date the `screen` knows is hidden here: a record keyed by a day that
    is another patient's birth date is audited under a digest its published key does not have (privacy first)."""
    shows = screen.holds if screen is not None else None
    return [{"source_id": source_id, "source_record_key": published_key(key, source_id, r.patient_key, r.local_key,
                                                                        shows),
             "record_set": r.record_set, "level": r.level, "source_file": r.file_name,
             "source_file_sha256": r.file_sha256, "run_id": run_id} for r in removed]


def _file_counts(loaded: dict[str, dict[str, int]], superseded: dict[str, int]) -> dict[str, FileCounts]:
    """Per file: its records now loaded or quarantined, plus those a later increment replaced."""
    counts = {sha: FileCounts(**c) for sha, c in loaded.items()}
    for sha, n in superseded.items():
        c = counts.setdefault(sha, FileCounts())
        c.rows_read += n
        c.rows_superseded += n
    return counts


def quality_plan_for(home: Home, run_id: str, *, sources_dir: Path = SOURCES_DIR) -> QualityPlan:
    """The rule catalogue with every source's overrides; GX Data Docs go into the run's report folder.

    A mapping that does not load has failed its source in extract; it must not stop the others."""
    mappings = []
    for path in sorted(sources_dir.glob("*.yaml")):
        try:
            mappings.append(load_mapping(path))
        except MappingError:
            continue
    return quality_plan(mappings, data_docs_dir=home.reports / run_id / "data_docs")


def publish_run(home: Home, planned: RunPlan, outcomes: Sequence[SourceOutcome], *, trigger: str,
                sources_dir: Path = SOURCES_DIR, after_swap: Callable[[], None] = lambda: None) -> RunSummary:
    """Validate and publish the changed sources atomically and return the run summary. `after_swap`: called as the
    new warehouse goes live, no stop between the two (the DAG's publish: a stop after it finds its run published)."""
    # The objects alive when publish begins are left out of its collections (memory.settled): in the DAG's
    # publish task, Airflow's, the DAG's and the libraries' (210,000 objects) took 0.3-0.5 s a collection, two
    # at least a night at 20,000 persons. `run`, settled already, calls _publish_run: freezing there would keep
    # the prepared sources' garbage cycles until the run ends.
    with memory.settled():
        return _publish_run(home, planned, outcomes, trigger=trigger, sources_dir=sources_dir, after_swap=after_swap)


def _publish_run(home: Home, planned: RunPlan, outcomes: Sequence[SourceOutcome], *, trigger: str,
                 sources_dir: Path, after_swap: Callable[[], None] = lambda: None) -> RunSummary:
    """`after_swap`: called as the new warehouse goes live, no stop between the two (swap_in_next)."""
    run_id = planned.run_id
    notes: list[str] = []  # outputs that could not be written: recorded, never blocking the publish
    outcomes = [_failed(o, problem) if o.status is SourceStatus.HARMONISED and (problem := missing_harmonised(o))
                else o for o in outcomes]
    harmonised = [o for o in outcomes if o.status is SourceStatus.HARMONISED]
    prepared = {o.source_id for o in outcomes}  # the others' notices are the plan's: unchanged, or no mapping
    if harmonised and sum(n for o in harmonised for n in o.rows.values()) < gx_memo.IN_PROCESS_ROWS:
        gx_process.start_early()  # GX imported in its process while stage loads and linkage runs
    quality = quality_plan_for(home, run_id, sources_dir=sources_dir)
    if quality.data_docs_dir is not None:  # GX writes them during validation: check the place first
        docs = quality.data_docs_dir
        if publish_outputs.attempt(notes, "the GX Data Docs folder", lambda: fsio.private_folder(docs)) is None:
            quality = dataclasses.replace(quality, data_docs_dir=None)
    summaries: list[RunSummary] = []
    with timing.step("publish"):
        while True:
            try:
                publish(home.warehouse, run_id, outcomes, trigger=trigger, started_at=planned.started_at,
                        unchanged=planned.unchanged, quality=quality,
                        populations=read_child_population(population_file(home.root)),
                        notices={s: said for s, said in planned.notices.items() if s not in prepared},
                        read_back=lambda con: summaries.append(_summary(con, home, run_id)), after_swap=after_swap)
                break
            except KeyViolation as violation:  # nothing was published: again, without the sources at fault
                outcomes = _without_key_violation(outcomes, violation)
    crash.crash_point("after_swap")
    for outcome in outcomes:
        if outcome.status is SourceStatus.HARMONISED and outcome.harmonised_dir:
            _keep_only(home, outcome.source_id, Path(outcome.harmonised_dir))
            _drop_stale_staged(home, outcome)
    summary = summaries[0]
    # What the landing folders said (refused, waiting, ignored files): a data manager must see it. What the
    # readers noted about the files they read is in meta.source_notice and the report, not printed.
    # A changed source's are its extract's: they show names once its files' patient keys are known.
    landing_notices = planned.notices | {o.source_id: o.landing_notices for o in outcomes
                                         if o.source_id in planned.notices and o.landing_notices is not None}
    summary.notices = [n for source in sorted(landing_notices) for n in landing_notices[source]]
    # The warehouse is published: what follows derives from it, and a failure there is a note, never
    # an undone publish (etl/publish_outputs.py); the next run's repair writes what is missing.
    if summary.validated or summary.sources_failed:
        with publish_outputs.published(home.warehouse) as live:
            if summary.validated:  # else the Parquet marts of the last validated run stand
                with timing.step("export marts"):
                    publish_outputs.export_marts(home, notes)
                crash.crash_point("outputs")
            # A failed source is news even when nothing was revalidated: the page names it and why.
            with timing.step("report"):
                summary.report = publish_outputs.write_report(home, run_id, notes, with_pages=summary.validated,
                                                              live=live)
    if quality.data_docs_dir is not None:  # made before validation, which may have judged nothing anew
        _remove_empty(quality.data_docs_dir, up_to=home.reports)
    if notes:
        publish_outputs.record_notes(home.warehouse, run_id, notes)
        summary.notes = notes
    return summary


def _remove_empty(folder: Path, up_to: Path) -> None:
    """Remove `folder` if no file is in it, and then each parent left empty below `up_to`: a run that wrote
    no Data Docs and no report leaves no empty folder among the reports."""
    for inner in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        with contextlib.suppress(OSError):  # not empty: a file is there
            inner.rmdir()
    while folder != up_to and folder.is_relative_to(up_to):
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            return
        folder = folder.parent


def _keep_only(home: Home, source_id: str, published: Path) -> None:
    """Remove the source's other harmonised folders once `published` is: none is read again (the next
    load carries its unchanged patients over from this one), and each holds a copy of the source."""
    folders = home.staging / source_id / "harmonised"
    if published.parent.resolve() != folders.resolve():
        return  # not where this home's harmonise writes: nothing here is ours to remove
    for folder in folders.iterdir():
        if folder.name != published.name and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _drop_stale_staged(home: Home, outcome: SourceOutcome) -> None:
    """Remove the staged copies of the source's exports that are no longer current once its outcome is
    published: a superseded export is never harmonised again (each night's registry export left its copy
    behind, 1.3 MB at 100,000 persons), and one that comes back is staged again from landing."""
    current = {Path(f.staged).name for f in outcome.files if f.staged}
    folder = home.staging / outcome.source_id
    for staged in folder.iterdir() if folder.is_dir() else ():
        if staged.name not in current and STAGED_NAME.fullmatch(staged.name) and not staged.is_symlink():
            _remove(staged)


def _remove(staged: Path) -> None:
    """A staged artefact, a file or a folder."""
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise LookupError(f"the warehouse has no answer to: {sql}")
    return row


def summarise(home: Home, run_id: str | None = None) -> RunSummary:
    """Rows per core table, quarantined rows and the run's status (the last run's by default), read
    from the warehouse."""
    con = connect_duckdb(home.warehouse, read_only=True)
    try:
        return _summary(con, home, run_id)
    finally:
        con.close()


def _summary(con: duckdb.DuckDBPyConnection, home: Home, run_id: str | None) -> RunSummary:
    if run_id is None:
        run_id = _one(con, "SELECT run_id FROM meta.run ORDER BY started_at DESC LIMIT 1")[0]
    run = _one(con, "SELECT status, sources_changed, sources_unchanged, sources_failed, message, validated "
               "FROM meta.run WHERE run_id = ?", [run_id])
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'core' ORDER BY table_name").fetchall()]
    rows = {t: _one(con, f"SELECT count(*) FROM core.{t}")[0] for t in tables}
    quarantined = dict(con.execute(
        "SELECT source_id, count(*) FROM dq.quarantine GROUP BY 1 ORDER BY 1").fetchall())
    issues = issue_spans.latest_by_severity(con)
    latest = home.reports / "latest" / "index.html"
    reasons = dict(con.execute("SELECT source_id, message FROM meta.source WHERE last_attempt_run_id = ? "
                               "AND status <> 'loaded' AND message IS NOT NULL", [run_id]).fetchall())
    return RunSummary(run_id=run_id, status=run[0], sources_changed=run[1] or [], sources_unchanged=run[2] or [],
                      sources_failed=run[3] or [], message=run[4], failed_reasons=reasons, validated=bool(run[5]),
                      rows=rows,
                      quarantined=quarantined, issues=issues, warehouse=str(home.warehouse),
                      report=str(latest) if latest.exists() else None)


def prepare_source(home: Home, run_id: str, source_id: str, key_value: str | None, sources_dir: Path,
                   say: Callable[[str], None] = log.info) -> tuple[SourceOutcome, list[timing.StepTime]]:
    """Extract and harmonise one source, and the steps it took (timed here, in a worker or not).

    What neither step expected (a bug, a damaged file under the home) fails this source only, as the
    death of a worker process or a DAG task does: the others are published. The outcome says which
    step and exception, as the DAG's task would (`crash_reason`); its whole text goes to the log only."""
    first = len(timing.recorded)
    extracted = SourceOutcome(source_id=source_id, run_id=run_id, status=SourceStatus.EXTRACTED)
    step = "extract"
    try:
        say(f"{source_id}: extracting")
        with timing.step(f"extract {source_id}"):
            extracted = extract_source(home, run_id, source_id, sources_dir=sources_dir)
        step = "harmonise"
        say(f"{source_id}: harmonising")
        with timing.step(f"harmonise {source_id}"):
            outcome = harmonise_extracted(home, extracted, key_value=key_value, sources_dir=sources_dir)
    except Exception as exc:
        if run_record.stop_behind(exc) is not None:  # a stop made DuckDB's "Query interrupted": no crash
            raise
        log.error("%s: %s failed: %s: %s", source_id, step, type(exc).__name__, exc, exc_info=True)
        outcome = _failed(extracted, crash_reason(home, step, source_id, exc, sources_dir))
    return outcome, timing.recorded[first:]


def crash_reason(home: Home, step: str, source_id: str, exc: BaseException, sources_dir: Path) -> str:
    """Why a source's step crashed, as meta.run and the notification say it, whether `rtw run` or a DAG task
    ran it: the step and the exception as `run_record.said` says it (its first line only for an error of
    the system or the project's own), the source's patient numbers hidden as in its file names."""
    try:
        numbers = PatientNumbers.staged(home.staging, load_mapping(_mapping_path(source_id, sources_dir)))
        return f"{step} crashed: {run_record.said(exc, numbers)}"
    except Exception:  # its mapping or staged keys unreadable: any long number is taken for a patient's
        return f"{step} crashed: {run_record.said(exc)}"


# A run whose changed sources' exports hold this much is prepared in worker processes, two sources
# at a time (this machine's two cores; harmonise is Python, one core a source). Below it a worker's
# start (its imports) costs more than it saves.
PARALLEL_MIN_BYTES = 64 << 20  # env RTW_PARALLEL_MIN_BYTES, read as a run decides
PARALLEL_SOURCES = 2
# GX's process is started with the run when a source changed (GX_EARLY_MIN_BYTES: any export): its
# import (~3 s of Python) outlasts the preparing of a small source, so begun with validation it was
# waited for (a 2,000-person registry's nightly rerun: 3.44 -> 3.16 s, 20,000 persons 4.19 -> 3.98 s,
# three runs each). Begun in vain when the changed sources fail. From GX_HERE_MIN_BYTES (some 60,000
# persons) GX will judge in the run's own process (gx_memo.IN_PROCESS_ROWS), imported meanwhile on a
# thread.
GX_EARLY_MIN_BYTES = 1
GX_HERE_MIN_BYTES = 200 << 20


def _export_bytes(home: Home, source_ids: Sequence[str]) -> int:
    return sum(f.stat().st_size for s in source_ids if (home.landing / s).is_dir()
               for f in (home.landing / s).iterdir() if f.is_file())


def _prepare_in_workers(home: Home, planned: RunPlan, key_value: str | None, sources_dir: Path,
                        say: Callable[[str], None]) -> list[SourceOutcome]:
    """Each changed source in a process of its own (etl/source_worker.py), two at a time, the largest
    first: the sources run side by side, and the memory a source's harmonise leaves behind goes with
    its process. A process that dies (out of memory, killed) fails its own source, never the others.
    A run told to stop (run_record.Stopped) stops its workers too: waited for, they held it for their sources'
    whole harmonise (a scheduler's SIGTERM reaches the run's process only)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    working: list[subprocess.Popen[str]] = []
    starting, stopping = threading.Lock(), False  # stopping: read and set under starting

    def one(source_id: str) -> tuple[SourceOutcome, list[timing.StepTime]]:
        say(f"{source_id}: extracting and harmonising (worker process)")
        job = {"home": str(home.root), "run_id": planned.run_id, "source_id": source_id, "key_value": key_value,
               "sources_dir": str(sources_dir), "log_level": logging.getLogger().getEffectiveLevel(),
               "measure_memory": timing.measure_memory}
        # A plain interpreter (`-m`, on the run's module path): the caller's main module is not imported again.
        # The job, key included, goes on stdin, never on the command line; log lines go to the run's stderr.
        with starting:
            if stopping:
                return _failed(SourceOutcome(source_id=source_id, run_id=planned.run_id, status=SourceStatus.FAILED),
                               "not prepared: the run was told to stop"), []
            worker = subprocess.Popen(interpreter.module_command("etl.source_worker", str(os.getpid())),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            working.append(worker)
        answer, _ = worker.communicate(json.dumps(job))
        try:
            if worker.returncode != 0:
                raise ValueError(worker.returncode)
            done = json.loads(answer.strip().splitlines()[-1])
            return SourceOutcome.model_validate(done["outcome"]), [timing.StepTime(**s) for s in done["steps"]]
        except (IndexError, TypeError, KeyError, ValueError):  # no answer, or not one it would give
            failed = SourceOutcome(source_id=source_id, run_id=planned.run_id, status=SourceStatus.EXTRACTED)
            how = (f"was killed by signal {-worker.returncode}" if worker.returncode < 0
                   else f"exited with status {worker.returncode}" if worker.returncode else "gave no answer")
            return _failed(failed, f"its extract and harmonise process {how}; the run's log says why"), []

    order = sorted(planned.changed, key=lambda s: -_export_bytes(home, [s]))
    with ThreadPoolExecutor(max_workers=PARALLEL_SOURCES) as threads:
        try:
            # A stop waits till every source is handed to the pool: one acting as the pool starts a thread found
            # that thread not yet the pool's, which then went on unwaited for, saying its source failed after
            # the run had said its last word.
            with run_record.stops_held():
                results = threads.map(one, order)
            prepared = dict(zip(order, results, strict=True))
        except BaseException:  # told to stop: no worker starts, those at work end with it (the pool waits for them)
            with starting:
                stopping = True
                for worker in working:
                    worker.terminate()
            threads.shutdown(wait=False, cancel_futures=True)  # the sources not begun are not begun
            raise
    for _, steps in prepared.values():
        timing.recorded.extend(steps)
    return [prepared[source_id][0] for source_id in planned.changed]


class RunStopped(RuntimeError):
    """`rtw run` was told to stop (run_record.Stopped) and did: an error like any that ends a run, said in one line."""


def run(home: Home, *, key_value: str | None = None, sources_dir: Path = SOURCES_DIR, force: bool = False,
        progress: Callable[[str], None] | None = None, wait: float = 0.0) -> RunSummary:
    """The whole nightly import in this process: what `rtw run` does.

    Raises runlock.RunBusy when another run still holds the home after `wait` seconds, RunStopped when told to
    stop (SIGTERM, Ctrl-C)."""
    say = progress or log.info
    run_id = new_run_id()
    # Told to stop (SIGTERM, Ctrl-C), it stops where it is, lets go of what it holds and says so (run_record.Stopped).
    night = run_record.Night(home, run_id, "cli")
    try:
        return _run(home, night, key_value=key_value, sources_dir=sources_dir, force=force, say=say, wait=wait)
    except run_record.Stopped as stop:
        raise RunStopped(f"{stop} in step {night.step}; nothing of it was published: the warehouse is the last "
                         "good one, and the next run loads what this one would have") from None


def _run(home: Home, night: run_record.Night, *, key_value: str | None, sources_dir: Path, force: bool,
         say: Callable[[str], None], wait: float) -> RunSummary:
    run_id = night.run_id
    # Owner-only whatever the caller's umask: libraries (DuckDB, Arrow, GX) write files too.
    # One run at a time (etl/runlock.py): a second one waits up to `wait` seconds, then RunBusy.
    # What it does until it publishes is recorded in the home, and why it fails, for rtw status: a run that
    # fails (another run holding the home too) or is killed cannot write the warehouse (etl/run_record.py).
    # The objects alive when it begins (the libraries', ~87,000) are left out of its garbage collections
    # (memory.settled): walking them was 40-70 ms of a 0.23 s unchanged night at 2,000 persons, and publish's
    # two collections 0.13-0.8 s (an idle to a busy machine) of a 1%-changed night at 20,000; the night's own
    # garbage is collected as before.
    with night.stoppable(), night.failing(), fsio.private_umask(), \
            runlock.run_lock(home.ensure(), run_id, wait=wait), memory.settled(), contextlib.ExitStack() as reads:
        night.begin("repair")
        # One read of the live warehouse for repair, plan and preparing the sources (a connection costs ~20 ms of a
        # nothing-changed night)
        live = reads.enter_context(schema.reading(home.warehouse))
        for line in repair.repair(home, live):  # what a killed run left behind, before anything new
            say(line)
        # publish's copy of the warehouse is made meanwhile (etl/load/next_copy.py)
        with next_copy.copy_ahead(home.warehouse, run_id):
            night.reached("plan")
            with timing.step("plan"):
                planned = plan(home, sources_dir=sources_dir, force=force, key_value=key_value, run_id=run_id,
                               live=live)
            say(f"run {planned.run_id}: changed {', '.join(planned.changed) or 'none'}, "
                f"unchanged {', '.join(planned.unchanged) or 'none'}")  # names, not a list's repr
            exports = _export_bytes(home, planned.changed)
            in_workers = (exports >= bytes_setting("RTW_PARALLEL_MIN_BYTES", PARALLEL_MIN_BYTES)
                          and len(planned.changed) > 1)
            if GX_EARLY_MIN_BYTES <= exports < GX_HERE_MIN_BYTES:  # GX's process imports it while sources are prepared
                gx_process.start_early()
            elif in_workers:  # GX will judge here: this process only waits on its workers meanwhile
                gx_process.import_meanwhile()
            if in_workers:
                reads.close()  # the workers connect themselves; held here, its pages would only stay in memory
                night.reached(f"extract and harmonise {', '.join(planned.changed)} (worker processes)")
                outcomes = _prepare_in_workers(home, planned, key_value, sources_dir, say)
            else:
                outcomes = []
                for source_id in planned.changed:
                    night.reached(f"extract and harmonise {source_id}")
                    outcomes.append(prepare_source(home, planned.run_id, source_id, key_value, sources_dir, say)[0])
            # Held open while the sources are prepared: harmonise's reads of the live warehouse (its loaded files,
            # its state, the erased patients) are then DuckDB's open database, not a connect each (25-190 ms at
            # 20,000 persons). Closed before publish: DuckDB would serve this file for the path publish swaps anew.
            reads.close()
            night.reached("publish")  # before it is said: killed once said, the run is recorded in publish
            say("publishing the warehouse")
            return _publish_run(home, planned, outcomes, trigger="cli", sources_dir=sources_dir,
                                after_swap=night.published)
