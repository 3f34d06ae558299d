"""Snapshot guards: a new export that would shrink its source sharply, or has no records, is held.

A partial or wrong export looks like any other file: the only sign is that it holds far fewer
records than the export it replaces. Such a file is held (the source keeps its last good data,
the run says why, with the numbers) until a data manager accepts it with `rtw accept SOURCE
FILE`, for when the shrink is real. An acceptance is bound to the file's content (its sha256)
and kept under `<home>/accepted/<source_id>/`; the run that loads the file records it in
`meta.file_acceptance`. It covers one replacement: once a later export supersedes the file, it is
withdrawn, and the same content sent again is judged (and accepted) again.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from pathlib import Path

from etl.extract.file_names import PATIENT
from etl.fsio import private_folder, write_text
from etl.steps import AcceptedFile, ExportFile, FileCounts, LoadedFile


def _folder(home_root: Path, source_id: str) -> Path:
    return home_root / "accepted" / source_id


_DEPARTURE = ".departure.json"  # a departure's acceptance, beside (never over) the same file's to load


def accept_file(home_root: Path, source_id: str, name: str, sha256: str, *, departure: bool = False) -> AcceptedFile:
    """Record a data manager's acceptance of one export file (by content), owner-only; `departure`: of
    a loaded file no longer delivered."""
    accepted = AcceptedFile(sha256=sha256, file_name=name, accepted_at=datetime.now(UTC),
                            accepted_by=getpass.getuser(), departure=departure)
    name = f"{sha256}{_DEPARTURE}" if departure else f"{sha256}.json"
    write_text(private_folder(_folder(home_root, source_id)) / name, accepted.model_dump_json())
    return accepted


def _acceptances(home_root: Path, source_id: str, departures: bool) -> dict[str, tuple[Path, AcceptedFile]]:
    """The source's acceptances of one kind, by sha256, with their files. The kind is the content's (a
    departure an earlier version stored as `<sha>.json` too) or the name's."""
    folder = _folder(home_root, source_id)
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.json")):
        accepted = AcceptedFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
        if (accepted.departure or path.name.endswith(_DEPARTURE)) == departures:
            found[accepted.sha256] = (path, accepted)
    return found


def accepted_files(home_root: Path, source_id: str, *, departures: bool = False) -> dict[str, AcceptedFile]:
    """The source's acceptances of files to load (or, with `departures`, to go), by sha256."""
    return {sha: accepted for sha, (_, accepted) in _acceptances(home_root, source_id, departures).items()}


def withdraw_departures(home_root: Path, source_id: str, delivered: AbstractSet[str]) -> list[str]:
    """Withdraw the departure acceptances of files delivered again (it covered one departure, not a
    later one): the sha256 of their files."""
    return list(_withdraw(home_root, source_id, delivered, departures=True))


def withdraw_acceptances(home_root: Path, source_id: str, superseded: AbstractSet[str]) -> dict[str, AcceptedFile]:
    """Withdraw the acceptances of files loaded and superseded since by a later export (it covered one
    replacement, not a later one: the same content sent again is judged again, and accepted again if
    right): the acceptances withdrawn, by sha256."""
    return _withdraw(home_root, source_id, superseded, departures=False)


def _withdraw(home_root: Path, source_id: str, shas: AbstractSet[str], departures: bool) -> dict[str, AcceptedFile]:
    withdrawn = {}
    for sha, (path, accepted) in _acceptances(home_root, source_id, departures).items():
        if sha in shas:
            path.unlink(missing_ok=True)
            withdrawn[sha] = accepted
    return withdrawn


def _named(name: str, sha256: str) -> str:
    """A file in a reason, by its name as shown; with its sha256 when that name hides a patient number
    (files shown alike are then told apart, and `rtw accept` takes the sha256)."""
    return f"{name} (sha256 {sha256[:12]})" if PATIENT in name else name


def accept_argument(name: str, sha256: str) -> str:
    """What `rtw accept` is given for a file a reason names: its name as shown, or the beginning of its
    sha256 when that name hides a patient number (rtw accept cannot find the file by it)."""
    return sha256[:12] if PATIENT in name else name


def gone_record_sets(before: Mapping[str, int], now: Mapping[str, int]) -> list[str]:
    """A record set (a form, a sheet, an item group) the live warehouse holds records of and this load
    has none of: an export job that left a form out, within any max_shrink. One reason for them all."""
    gone = sorted(s for s, n in before.items() if n and not now.get(s))
    if not gone:
        return []
    listed = ", ".join(f"{s} ({before[s]} records loaded)" for s in gone)
    return [f"no records of {listed} in the new export: a form left out of it"]


def held_series(files: list[ExportFile], counts: Mapping[str, FileCounts], loaded: Mapping[str, LoadedFile],
                accepted: set[str], max_shrink: float, departed: AbstractSet[str] = frozenset(),
                unread: AbstractSet[str] = frozenset(), gone: Mapping[str, dict[str, LoadedFile]] | None = None
                ) -> list[str]:
    """Why the new files of a source must be held, one reason per series; empty when none.

    `counts`: this load's records per file (sha256); `loaded`: the files loaded in the live warehouse
    (sha256). A series with a file not loaded before and not accepted is judged; a loaded series with
    no file now is held too (a form's export missing from a delivery), unless its departure was
    accepted (`departed`: `rtw accept` of its loaded file's name). `unread`: the names (as shown) of
    files in landing the mapping does not read, for a reason to say a missing file is there all the same.
    `gone`: departing(files, loaded, departed), when the caller has it already.
    """
    before_by_series: dict[str, int] = {}
    loaded_by_series: dict[str, int] = {}
    for f in loaded.values():
        before_by_series[f.series] = before_by_series.get(f.series, 0) + f.records
        loaded_by_series[f.series] = loaded_by_series.get(f.series, 0) + (f.loaded if f.loaded is not None else 0)
    reasons = []
    for series in sorted({f.series for f in files}):
        in_series = [f for f in files if f.series == series]
        new = [f for f in in_series if f.sha256 not in loaded and f.sha256 not in accepted]
        if not new:
            continue
        records = sum(counts[f.sha256].rows_read - counts[f.sha256].rows_superseded
                      for f in in_series if f.sha256 in counts)
        before = before_by_series.get(series, 0)
        names = ", ".join(_named(f.name, f.sha256) for f in new)
        if records == 0:
            reasons.append(f"{names} has no records (the series held {before}): an empty or cut export")
        elif before and records < (1 - max_shrink) * before:
            reasons.append(f"{names} would leave {records} records where {before} are loaded "
                           f"(-{1 - records / before:.0%}, more than the {max_shrink:.0%} allowed by max_shrink)")
        elif (was := loaded_by_series.get(series, 0)) and (admitted := records - sum(
                counts[f.sha256].rows_quarantined for f in in_series if f.sha256 in counts)) < (1 - max_shrink) * was:
            # As many records, but harmonise holds back most (a patient-number column come out empty, a new code
            # on every row): loaded, the source's good data would leave core for the quarantine in one night.
            reasons.append(f"{names} would load {admitted} records where {was} are loaded: harmonise holds back "
                           f"{records - admitted} of its {records} (-{1 - admitted / was:.0%}, more than the "
                           f"{max_shrink:.0%} allowed by max_shrink)")
    for series, leaving in (departing(files, loaded, departed) if gone is None else gone).items():
        there = [f.name for f in leaving.values() if f.name in unread]
        named = ", ".join(_named(f.name, sha) for sha, f in leaving.items())
        where = (f"in landing the mapping reads: {', '.join(there)} {'is' if len(there) == 1 else 'are'} there, "
                 "but the mapping's files: pattern no longer takes it, as when a source changes its export's name or "
                 "format" if there else "in landing: a file missing from the delivery")
        reasons.append(f"no export of {named} (series {series}, {before_by_series[series]} records loaded) "
                       f"{where} (if the source no longer sends it, accepting that file, by its name or sha256, "
                       "accepts its departure)")
    return reasons


def departing(files: list[ExportFile], loaded: Mapping[str, LoadedFile], departed: AbstractSet[str]
              ) -> dict[str, dict[str, LoadedFile]]:
    """The loaded files of each series with records that delivered no file now (`files`), by sha256, but
    those whose departure was accepted (`departed`): held_series holds the source for each such series."""
    delivered = {f.series for f in files}
    gone: dict[str, dict[str, LoadedFile]] = {}
    for sha, f in sorted(loaded.items(), key=lambda item: (item[1].series, _named(item[1].name, item[0]))):
        if f.series not in delivered:
            gone.setdefault(f.series, {})[sha] = f
    kept = {}
    for series, in_series in gone.items():
        left = {sha: f for sha, f in in_series.items() if sha not in departed}
        if left and sum(f.records for f in in_series.values()):
            kept[series] = left
    return kept


# A departure's reason, as held_series writes it: the files, by their names as shown, then their series.
_DEPARTURE_REASON = re.compile(r"no export of (?P<files>.+?) \(series (?P<series>.+?), \d+ records loaded\) in landing")


def held_for_departure(held_message: str | None, loaded: LoadedFile, sha256: str) -> bool:
    """Whether the run that held a source (its message, meta.source.message) held it for this loaded file's
    departure: the file is one a reason of held_series names, its series delivered no export that night. A
    source held for something else (a shrink, another form gone) says nothing of this file: whether it is
    still sent is for a run to find, which then holds the source for it."""
    named = _named(loaded.name, sha256)
    return any(found["series"] == loaded.series and f", {named}, " in f", {found['files']}, "
               for found in _DEPARTURE_REASON.finditer(held_message or ""))
