"""Landing discovery: which export files a source has, which are current, which are new.

Exports land in `landing/<source_id>/` exactly as delivered and are never modified. Files of
one *series* replace each other (the same Ennov form exported again, the next ODM snapshot);
the current file of a series is the one whose name sorts last (exports carry their date in
the name; a name downloaded again, `x (1).csv`, just after `x.csv`), ties broken by modification
time, or, when every file says when it was written (ODM CreationDateTime), the latest written.
An increment (an ODM Transactional export) does not replace: the current files are the last
snapshot and the increments after it, each following the one before (PriorFileOID). Older files
of a series are superseded. Every file is identified by its sha256, and copied once into
`archive/<source_id>/`.

A source that delivers under one fixed name (`registry.csv`, `export.xml`) leaves nothing in landing to
order by: an older export sent again by mistake is the series' only file, so its current one. It is told by
its export day (or its CreationDateTime) against the export the warehouse loaded (`older_than_loaded`), and
held rather than loaded over newer data.

A file named as an upload tool names its temporary or an office program its lock file
(`upload_temporary`: `x.csv.part`, `~$x.csv`) is never an export, whatever the mapping's `files`
glob takes in: the pull never lands one, and the reader never reads one copied in by hand.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from etl import fsio
from etl.config import seconds_setting
from etl.extract.adapter import FileHeader, adapter_for
from etl.extract.errors import ExtractError
from etl.extract.file_names import PatientNumbers, QuotedNames
from etl.transform.mapping import SourceMapping

_CHUNK = 1 << 20
_NAME_DAY = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")
_LATEST_ZONE = timezone(timedelta(hours=14))  # where a day begins first (Kiribati, Line Islands)
_NO_INSTANT = datetime.min.replace(tzinfo=UTC)


def export_day(name: str, mtime: float, created: datetime | None = None) -> date:
    """The day the source system wrote the file: the latest YYYYMMDD date in its name, else the day the
    file says it was written (an ODM's CreationDateTime, in the writer's own time zone), else the latest
    day its modification time is anywhere (UTC+14). The latest date of a name: it may carry an earlier one
    too (a protocol version's, the start of the period exported), and every record dated after it would
    fail XT-DATE-NOT-AFTER-EXPORT, an error. A file time is an instant, and a copy's (a pull, a transfer)
    at that, while a centre dates its records by its own day, in a time zone the warehouse does not know:
    written at 00:30 in Paris on 2 November, the file is 1 November in UTC, and a record of 2 November
    would be held back."""
    days = []
    for match in _NAME_DAY.finditer(name):
        with contextlib.suppress(ValueError):  # 20261131 is no day
            days.append(date(*map(int, match.groups())))
    if days:
        return max(days)
    return created.date() if created is not None else datetime.fromtimestamp(mtime, _LATEST_ZONE).date()


@dataclass(frozen=True)
class LandingFile:
    source_id: str
    path: Path
    sha256: str
    size_bytes: int
    series: str
    exported_on: date
    header: FileHeader = field(default_factory=FileHeader)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SourceFiles:
    current: tuple[LandingFile, ...]
    superseded: tuple[LandingFile, ...]
    notices: tuple[str, ...]
    problems: tuple[str, ...] = ()  # why the current files cannot be loaded: the source is held
    waiting: tuple[str, ...] = ()  # files still being written: read by a later run
    waiting_series: tuple[str, ...] = ()  # the series of each of them
    waiting_notices: tuple[str, ...] = ()  # why each of them waits: the plan logs it
    names: tuple[str, ...] = ()  # every name in the folder: what the notices and problems may quote

    def shown(self, text: str, numbers: PatientNumbers) -> str:
        """A notice or a message about these files with every name in it as shown (etl/extract/file_names.py)."""
        return self._quoted.shown(text, numbers)

    @functools.cached_property
    def _quoted(self) -> QuotedNames:
        return QuotedNames(self.names)

    @property
    def series_only_waiting(self) -> list[str]:
        """The series whose only files are still being written: read now, the source would lose them."""
        current = {f.series for f in self.current}
        return sorted(set(self.waiting_series) - current)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def series_of(mapping: SourceMapping, file_name: str) -> str | None:
    """The series a file belongs to; None when the file does not fit the mapping's pattern."""
    return adapter_for(mapping.format).series(mapping, file_name)


# What upload tools and browsers name a file while they write it (WinSCP .filepart, curl and Firefox .part,
# Chrome .crdownload, ...), or editors their backups; dotfiles (rsync's, LibreOffice's .~lock) are left out already.
_TEMPORARY_SUFFIXES = (".filepart", ".part", ".partial", ".crdownload", ".download", ".uploading", ".upload",
                       ".tmp", ".temp", ".swp", ".lock", "~")


def upload_temporary(name: str) -> tuple[str, str] | None:
    """Why a file (or zip member) of this name is an upload's temporary or a lock file, never an export,
    and the name of the file it stands for; None for any other name. The glob of the exports may well
    take it in (`*.csv` takes Excel's `~$export.csv`, `EXPORT_*` takes `EXPORT_1.csv.part`). One rule for
    the pull (etl/pull/deliveries.py) and the landing reader."""
    if name.startswith("~$"):  # Office's owner file, 162 bytes, while the file is open in Excel or Word
        return "a lock file (~$: the file is open in Excel or Word), never an export", name[2:]
    if name.startswith("~"):  # Word's ~WRL0001.tmp and the like
        return "a temporary file (~), never an export", name[1:]
    folded = name.casefold()
    for suffix in _TEMPORARY_SUFFIXES:
        if folded.endswith(suffix) and len(name) > len(suffix):
            return (f"an upload's temporary name ({suffix}), never an export: the file is taken once the upload "
                    "renames it to its own name"), name[:-len(suffix)]
    return None


def named_as_export(mapping: SourceMapping, name: str) -> bool:
    """Whether a file (or zip member) of this name is named as one of the source's exports: its `files` glob
    and its series (`record_set_from_file`) take it. An upload's temporary may be too: `temporary_export`."""
    return PurePosixPath(name).match(mapping.files) and series_of(mapping, name) is not None


def temporary_export(name: str, fits: Callable[[str], bool]) -> str | None:
    """Why a file of this name is an upload's temporary or a lock file of one of the source's exports (its
    name, or that of the file it stands for, `fits` them), or None: said where it is passed over, any other
    name being passed over as it would be anyway. One rule for the landing reader (a file copied in by hand
    with its export) and the pull (a drop zone's file or zip member; `fits` a zip delivery's glob there)."""
    if (temporary := upload_temporary(name)) is None:
        return None
    why, finished = temporary
    return why if fits(name) or fits(finished) else None


def quiet_seconds_default() -> float:
    """How long a landing file must stay unchanged before it is read: env `RTW_QUIET_SECONDS`, else 60 s."""
    return seconds_setting("RTW_QUIET_SECONDS", 60, zero=True)


def _refusal(folder: Path, path: Path) -> str | None:
    """Why a landing entry is not read at all: links, devices and anything outside the folder are refused."""
    if path.is_symlink():
        return "a symbolic link (exports are delivered as files, never linked in)"
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        return "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
    if not path.resolve().is_relative_to(folder.resolve()):
        return "outside the landing folder"
    return None


def _unstable(path: Path, file_stat: os.stat_result, quiet_seconds: float, now: float) -> str | None:
    """Why a file may still be being written, or None when it is complete.

    Complete means: a done-marker `<name>.done` sits beside it, not older than the file (one left by an
    earlier delivery says nothing of a file being rewritten), or a manifest `<name>.sha256` whose
    checksum the file matches; else its size and modification time have not changed for the quiet period.
    """
    done = path.with_name(path.name + ".done")
    with contextlib.suppress(OSError):
        if done.is_file() and done.stat().st_mtime >= file_stat.st_mtime:
            return None
    manifest = path.with_name(path.name + ".sha256")
    if manifest.is_file():
        declared = manifest.read_text(encoding="ascii", errors="replace").split()
        if declared and declared[0].lower() == sha256_of(path):
            return None
        return f"its checksum does not match {manifest.name} (still arriving, or damaged)"
    age = now - file_stat.st_mtime
    if abs(age) < quiet_seconds:  # a clock a little ahead counts too; a date far off is a copy's, not a write's
        return (f"it changed {max(age, 0):.0f} s ago, within the quiet period of {quiet_seconds:.0f} s "
                f"(it may still be being written; a {path.name}.done marker written after it declares it complete)")
    return None


def discover(landing_dir: Path, mapping: SourceMapping, *, quiet_seconds: float | None = None,
             now: float | None = None) -> SourceFiles:
    """The source's export files, split into current and superseded.

    A file still being written (see `_unstable`) waits for the next run, with a notice: its series
    keeps its previous file meanwhile (a series with no other file keeps the source unchanged: the
    plan). An unreadable file is a problem that holds the source.
    """
    folder = landing_dir / mapping.source_id
    notices: list[str] = []
    problems: list[str] = []
    waiting: list[tuple[str, str, str]] = []  # (name, series, notice)
    by_series: dict[str, list[LandingFile]] = {}
    if not folder.is_dir():
        return SourceFiles((), (), (f"{mapping.source_id}: no landing folder {folder}",))
    adapter = adapter_for(mapping.format)
    quiet = quiet_seconds_default() if quiet_seconds is None else quiet_seconds
    clock = time.time() if now is None else now
    paths = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    is_export = functools.partial(named_as_export, mapping)
    for path in paths:
        if (refused := _refusal(folder, path)) is not None:
            if path.match(mapping.files) or not path.is_dir():
                notices.append(f"{mapping.source_id}: {path.name} refused: {refused}")
            continue
        if path.name.endswith((".done", ".sha256")):
            continue  # markers of the files beside them
        if (temporary := temporary_export(path.name, is_export)) is not None:
            notices.append(f"{mapping.source_id}: {path.name} not read: {temporary}")
            continue
        series = series_of(mapping, path.name) if path.match(mapping.files) else None
        if series is None:
            notices.append(f"{mapping.source_id}: {path.name} does not match '{mapping.files}'"
                           f"{' / ' + mapping.record_set_from_file if mapping.record_set_from_file else ''}; ignored")
            continue
        try:
            file_stat = path.stat()
            if (unstable := _unstable(path, file_stat, quiet, clock)) is not None:
                notices.append(f"{mapping.source_id}: {path.name} not read yet: {unstable}")
                waiting.append((path.name, series, notices[-1]))
                continue
            digest = sha256_of(path)
        except OSError as error:
            problems.append(f"{mapping.source_id}: {path.name} cannot be read ({error.strerror or error}); "
                            "expected a readable file: the source keeps its last good data")
            continue
        try:
            header = adapter.file_header(path)
        except ExtractError:
            header = FileHeader()  # unreadable: staging it will fail the source with the reason
        landing = LandingFile(mapping.source_id, path, digest, file_stat.st_size, series,
                              export_day(path.name, file_stat.st_mtime, header.created), header)
        by_series.setdefault(series, []).append(landing)
    current: list[LandingFile] = []
    superseded: list[LandingFile] = []
    for files in by_series.values():
        chain, older, problem = _chain(files)
        for again in (f for f in chain if download_order(f.name)[1]):
            if first := [f.name for f in older if download_order(f.name)[0] == download_order(again.name)[0]]:
                notices.append(f"{mapping.source_id}: {again.name} read as a later download of {', '.join(first)}, "
                               "which it supersedes")
        current += chain
        superseded += older
        problems += [f"{mapping.source_id}: {problem}"] if problem else []
    current = _without_copies(mapping.source_id, current, notices)
    return SourceFiles(tuple(current), tuple(superseded), tuple(notices), tuple(problems),
                       tuple(name for name, _, _ in waiting), tuple(series for _, series, _ in waiting),
                       tuple(notice for _, _, notice in waiting), tuple(p.name for p in paths))


def _without_copies(source_id: str, current: list[LandingFile], notices: list[str]) -> list[LandingFile]:
    """The current files less byte-identical copies of one of them under another name (a file copied
    in landing/): a copy would be read as that file, its records named after it, and counted once."""
    first: dict[str, str] = {}  # sha256 -> the name kept
    for f in sorted(current, key=lambda f: f.name):
        if f.sha256 in first:
            notices.append(f"{source_id}: {f.name} set aside: the same bytes as {first[f.sha256]} (a copy)")
        else:
            first[f.sha256] = f.name
    return [f for f in current if first[f.sha256] == f.name]


# A browser's or a file manager's name for a second download of one name: "x (1).csv", "x(2).csv"
_DOWNLOADED_AGAIN = re.compile(r"(?P<stem>.+?) ?\((?P<n>[1-9]\d{0,2})\)(?P<extension>(?:\.[A-Za-z0-9]+)*)")


def download_order(name: str) -> tuple[str, int]:
    """Where a name sorts among its series' names: as the name it was downloaded again under, just after it
    ("TREP_export_20261101 (1).csv" after TREP_export_20261101.csv, (2) after (1)): by its name alone, the space
    sorting before the dot, a same-day corrected export downloaded again was set aside unread."""
    again = _DOWNLOADED_AGAIN.fullmatch(name)
    return (again["stem"] + again["extension"], int(again["n"])) if again else (name, 0)


def _chain(files: list[LandingFile]) -> tuple[list[LandingFile], list[LandingFile], str | None]:
    """A series' current files (its last snapshot, then the increments after it, in order), the older
    ones, and what breaks the chain (a missing increment, increments without a snapshot), if anything:
    then every file of the series is returned as current, for the source to be held with the reason."""
    if all(f.header.created is not None for f in files):
        files.sort(key=lambda f: (f.header.created, f.name))  # the file's own clock, when every file has one
    else:
        files.sort(key=lambda f: (download_order(f.name), f.path.stat().st_mtime_ns))
    snapshots = [i for i, f in enumerate(files) if not f.header.increment]
    if not snapshots:
        return files, [], (f"{len(files)} transactional export(s) ({files[0].name}, ...) but no snapshot to apply "
                           "them to; expected a full (Snapshot) export first")
    chain = files[snapshots[-1]:]
    for before, after in itertools.pairwise(chain):
        if after.header.prior_file_oid is not None and after.header.prior_file_oid != before.header.file_oid:
            return files, [], (
                f"{after.name} follows PriorFileOID {after.header.prior_file_oid!r}, but the export before it is "
                f"{before.name} (FileOID {before.header.file_oid!r}): an increment is missing. The source keeps its "
                "last good data until the missing export arrives or a new snapshot restarts the chain")
    return chain, files[:snapshots[-1]], None


@dataclass(frozen=True)
class LoadedExport:
    """An export the live warehouse holds loaded, as a new export of its series is judged against it."""

    name: str  # as shown (meta.source_file)
    series: str
    exported_on: date | None  # None: recorded by a version that did not record it
    created: datetime | None = None  # what the archived copy says of when it was written (an ODM's CreationDateTime)


def written_before(export: LandingFile, loaded: LoadedExport) -> bool:
    """Whether `export` was written before `loaded`: by the instants both files state (an ODM's
    CreationDateTime), else by their export days. A day is no order within it: an export of the same day
    is not earlier (a same-day re-export, a correction)."""
    if export.header.created is not None and loaded.created is not None:
        return export.header.created < loaded.created
    return loaded.exported_on is not None and export.exported_on < loaded.exported_on


def _written(export: LandingFile | LoadedExport) -> str:
    created = export.header.created if isinstance(export, LandingFile) else export.created
    return f"written {created.isoformat()}" if created is not None else f"exported {export.exported_on}"


def older_than_loaded(current: Sequence[LandingFile], loaded: Mapping[str, LoadedExport],
                      accepted: AbstractSet[str], replaced: Mapping[str, LoadedExport] | None = None
                      ) -> list[tuple[LandingFile, str]]:
    """The current exports that must not be loaded, each with why: written before an export the warehouse
    loaded of its series (`loaded`, by sha256), an older export sent again under a name that cannot tell, or
    the bytes of one it loaded and then replaced with a later export (`replaced`: those it records superseded,
    by sha256), judged by the day recorded of them whatever their name says now (yesterday's export copied in
    under tomorrow's name). One reason a file; empty when none. A file loaded already, or accepted (`accepted`:
    sha256s, `rtw accept`), is not judged, nor one of a series the warehouse holds nothing of. Names are as
    delivered: SourceFiles.shown shows them."""
    held = []
    for export in current:
        if export.sha256 in loaded or export.sha256 in accepted:
            continue
        then = (replaced or {}).get(export.sha256)
        of_series = [(sha, f) for sha, f in loaded.items() if f.series == export.series]
        newer = [(sha, f) for sha, f in of_series if then is not None and then.exported_on is not None
                 and f.exported_on is not None and then.exported_on < f.exported_on]
        by_bytes = bool(newer)
        newer = newer or [(sha, f) for sha, f in of_series if written_before(export, f)]
        if not newer:
            continue
        sha, latest = max(newer, key=lambda n: (n[1].exported_on or date.min, n[1].created or _NO_INSTANT))
        if by_bytes and then is not None:
            held.append((export, (
                f"{export.name} holds the bytes of {then.name} (exported {then.exported_on}), which the warehouse "
                f"loaded and then replaced with {latest.name} (exported {latest.exported_on}): an earlier export "
                "sent again, which would replace newer data. Have the newer export sent again, or remove this file "
                "(or accept it, if its data are the right ones): the source keeps its last good data meanwhile")))
            continue
        held.append((export, (
            f"{export.name} ({_written(export)}) is older than {latest.name} ({_written(latest)}), the "
            "export of its series the warehouse loaded: an earlier export sent again, which would "
            f"replace newer data. Have the newer export sent again (its copy is archive/{export.source_id}/"
            f"{sha[:16]}__*), or remove this file: the source keeps its last good data meanwhile")))
    return held


def archived_header(archive_dir: Path, source_id: str, sha256: str, read: Callable[[Path], FileHeader]) -> FileHeader:
    """What the archive copy of an export (`archive`) says of itself, read by `read` (an adapter's file_header);
    an empty FileHeader when no copy is left (`rtw forget` deleted it) or it cannot be read."""
    for copy in archive_copies(archive_dir, source_id, sha256):
        with contextlib.suppress(ExtractError, OSError):
            return read(copy)
    return FileHeader()


ERASED_SUFFIX = ".erased"


def archive_copies(archive_dir: Path, source_id: str, sha256: str) -> list[Path]:
    """The archive copies of an export (`archive`: one a name it was delivered under), in name order; the
    tombstones `rtw forget` left of copies it deleted are not copies."""
    return [copy for copy in sorted((archive_dir / source_id).glob(f"{sha256[:16]}__*"))
            if not copy.name.endswith(ERASED_SUFFIX)]


def erased_export(archive_dir: Path, source_id: str, sha256: str) -> Path:
    """The tombstone of an export whose copy `rtw forget` renamed or deleted because its name carried the
    erased patient's number: named by the hash alone, so no name keeps the number."""
    return archive_dir / source_id / f"{sha256[:16]}{ERASED_SUFFIX}"


def archive(landing: LandingFile, archive_dir: Path) -> Path:
    """Copy a file into the immutable archive (once: the name carries its hash).

    A copy `rtw forget` had to delete (a binary export holding an erased patient) leaves a
    tombstone `<copy>.erased`: the export still in landing/ is not archived again. A copy whose name
    carried the erased patient's number is renamed with `{patient}` in its place (or deleted), and its
    tombstone is `erased_export`'s: the export is not archived again under its name either. The same export
    sent again under another name (the same bytes, a new date in the name) is archived from its earlier copy,
    which `rtw forget` may have rewritten without the patient, or, any of its copies deleted, not at all.
    """
    target = archive_dir / landing.source_id / f"{landing.sha256[:16]}__{landing.name}"
    if target.exists() or _erased_before(archive_dir, landing):
        return target
    earlier = archive_copies(archive_dir, landing.source_id, landing.sha256)
    fsio.copy_file(earlier[0] if earlier else landing.path, target)  # owner-only: copies hold clear identifiers
    return target


def _erased_before(archive_dir: Path, landing: LandingFile) -> bool:
    """Whether `rtw forget` deleted a copy of the export, under any name it was delivered under."""
    folder, prefix = archive_dir / landing.source_id, landing.sha256[:16]
    return erased_export(archive_dir, landing.source_id, landing.sha256).exists() or \
        any(folder.glob(f"{prefix}__*{ERASED_SUFFIX}"))
