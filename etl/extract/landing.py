"""Landing discovery: which export files a source has, which are current, which are new.

Exports land in `landing/<source_id>/` exactly as delivered and are never modified. Files of
one *series* replace each other (the same Ennov form exported again, the next ODM snapshot);
the current file of a series is the one whose name sorts last (exports carry their date in
the name), ties broken by modification time, or, when every file says when it was written
(ODM CreationDateTime), the latest written. An increment (an ODM Transactional export) does
not replace: the current files are the last snapshot and the increments after it, each
following the one before (PriorFileOID). Older files of a series are superseded. Every
file is identified by its sha256, and copied once into `archive/<source_id>/`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from etl.extract.adapter import FileHeader, adapter_for
from etl.extract.errors import ExtractError
from etl.transform.mapping import SourceMapping

_CHUNK = 1 << 20
_NAME_DAY = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")


def export_day(name: str, mtime: float) -> date:
    """The day the source system wrote the file: a YYYYMMDD date in its name, else its modification day."""
    for match in _NAME_DAY.finditer(name):
        try:
            return date(*map(int, match.groups()))
        except ValueError:
            continue
    return datetime.fromtimestamp(mtime, UTC).date()


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def series_of(mapping: SourceMapping, file_name: str) -> str | None:
    """The series a file belongs to; None when the file does not fit the mapping's pattern."""
    return adapter_for(mapping.format).series(mapping, file_name)


def discover(landing_dir: Path, mapping: SourceMapping) -> SourceFiles:
    """The source's export files, split into current and superseded."""
    folder = landing_dir / mapping.source_id
    notices: list[str] = []
    by_series: dict[str, list[LandingFile]] = {}
    if not folder.is_dir():
        return SourceFiles((), (), (f"{mapping.source_id}: no landing folder {folder}",))
    adapter = adapter_for(mapping.format)
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        series = series_of(mapping, path.name) if path.match(mapping.files) else None
        if series is None:
            notices.append(f"{mapping.source_id}: {path.name} does not match '{mapping.files}'"
                           f"{' / ' + mapping.record_set_from_file if mapping.record_set_from_file else ''}; ignored")
            continue
        stat = path.stat()
        try:
            header = adapter.file_header(path)
        except ExtractError:
            header = FileHeader()  # unreadable: staging it will fail the source with the reason
        landing = LandingFile(mapping.source_id, path, sha256_of(path), stat.st_size, series,
                              export_day(path.name, stat.st_mtime), header)
        by_series.setdefault(series, []).append(landing)
    current: list[LandingFile] = []
    superseded: list[LandingFile] = []
    problems: list[str] = []
    for files in by_series.values():
        chain, older, problem = _chain(files)
        current += chain
        superseded += older
        problems += [f"{mapping.source_id}: {problem}"] if problem else []
    return SourceFiles(tuple(current), tuple(superseded), tuple(notices), tuple(problems))


def _chain(files: list[LandingFile]) -> tuple[list[LandingFile], list[LandingFile], str | None]:
    """A series' current files (its last snapshot, then the increments after it, in order), the older
    ones, and what breaks the chain (a missing increment, increments without a snapshot), if anything:
    then every file of the series is returned as current, for the source to be held with the reason."""
    if all(f.header.created is not None for f in files):
        files.sort(key=lambda f: (f.header.created, f.name))  # the file's own clock, when every file has one
    else:
        files.sort(key=lambda f: (f.name, f.path.stat().st_mtime_ns))
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


def archive(landing: LandingFile, archive_dir: Path) -> Path:
    """Copy a file into the immutable archive (once: the name carries its hash)."""
    target = archive_dir / landing.source_id / f"{landing.sha256[:16]}__{landing.name}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copy2(landing.path, partial)
        partial.replace(target)
    return target
