"""What each pull of a source came to, for `rtw status`: `<home>/pulled/<source_id>.pulls.jsonl`.

The warehouse records what was imported, not what was pulled: a night whose only failure was a pull
(a drop zone out of reach, a checksum refused) published `completed`, and only its verdict and the
notification said otherwise. So every pull of a source with a drop zone (`rtw pull`, the DAG's
pull_export, each retry) adds a line here: when, and why it failed, if it did; and so does a failed wait
for the source's export (the DAG's wait_for_export, etl/pull/sensor.py), after which its pull never ran.
`rtw status` gives a run the pulls made since the run before it started (the night's pull precedes its
import): a source whose last pull among them failed is named, with why; a failed pull no run has
followed yet is listed on its own. The reason is the pull's message, whose file names are shown as everywhere
(etl/extract/file_names.py) and which never quotes a credential. Only the newest lines are kept.

A pull that listed the drop zone also records the files it left there for a later pull (`left`: still uploading,
waiting for a checksum, declared but not delivered, a link, 0 bytes ...), by their names as shown, each with since
when it waits: the first of the pulls in a row that left a file of that name (a pull that did not list the drop
zone, or a failed wait, breaks no row; one that listed it without that file does). A sender that never finishes
its upload is seen in `rtw status` the next morning, not only in a task's log; once a row is longer than
RTW_LEFT_FOR_LATER_PULLS pulls (etl/config.py), each pull logs it as an error. Two files whose names are shown
alike (a file per patient's, `{patient}` in place of the number) are one name here: the older one's since holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from etl import fsio
from etl.config import LEFT_FOR_LATER_PULLS, LEFT_FOR_LATER_PULLS_SETTING, Home, SettingError, count_setting
from etl.pull.ledger import ledger_folder, pulling

log = logging.getLogger("rtw")

KEPT = 100  # the newest pulls kept of each source
LEFT_KEPT = 100  # the files left for later kept of each pull, those waiting longest: a drop zone of old leftovers
_SUFFIX = ".pulls.jsonl"


class LeftFile(BaseModel):
    """A file a pull left in the drop zone for a later one: its name as shown, why, the first pull of those in a
    row that left it, and how many pulls those are."""

    name: str
    reason: str
    since: datetime
    pulls: int = 1


class PullNight(BaseModel):
    """One pull of one source: when it ended, why it failed (None: it did not), and the files it left for later,
    those waiting longest first (None: it did not list the drop zone; a line of an earlier version), with how many
    more there were than it kept."""

    source_id: str
    at: datetime
    failure: str | None = None
    left: list[LeftFile] | None = None
    left_more: int = 0


def record_pull(home: Home, source_id: str, failure: str | None,
                left: Sequence[tuple[str, str]] | None = None) -> None:
    """Add a pull to the source's lines: never the pull's failure a second time, a line that cannot be
    written (the disk full) is logged. `left`: the files it left for later, (name as shown, reason); None when it
    did not list the drop zone. A file left by more pulls in a row than RTW_LEFT_FOR_LATER_PULLS is logged as
    an error (the Airflow task's log)."""
    path = ledger_folder(home) / f"{source_id}{_SUFFIX}"
    now = datetime.now(UTC)
    try:  # of two pulls at once (the DAG's, rtw pull), each adds its line; not under the pull lock, which a pull
        with pulling(home, source_id, lock="nights.lock"):  # still at it holds (this one said it was busy)
            kept = path.read_text(encoding="utf-8").splitlines()[-(KEPT - 1):] if path.exists() else []
            waiting = None if left is None else _waiting(_last_left(kept), left, now)
            line = PullNight(source_id=source_id, at=now, failure=failure,
                             left=None if waiting is None else waiting[:LEFT_KEPT],
                             left_more=max(len(waiting or ()) - LEFT_KEPT, 0)).model_dump_json()
            fsio.write_text(path, "".join(f"{old}\n" for old in [*kept, line]))
    except OSError as exc:
        log.warning("%s: the pull could not be recorded for rtw status: %s", source_id, exc)
        return
    _warn_long_waits(source_id, waiting or [])


def _last_left(lines: Sequence[str]) -> list[LeftFile]:
    """What the last pull that listed the drop zone left for later (none recorded: nothing)."""
    return next((pull.left for pull in reversed(_parse(lines)) if pull.left is not None), [])


def _waiting(before: Sequence[LeftFile], left: Sequence[tuple[str, str]], now: datetime) -> list[LeftFile]:
    """The files left now, each waiting since the first pull of the row that left it (the last pull's left it
    too: its row goes on), those waiting longest first."""
    earlier = {f.name: f for f in reversed(before)}  # a name twice: the first kept, the longest waiting
    waiting = [LeftFile(name=name, reason=reason, since=earlier[name].since, pulls=earlier[name].pulls + 1)
               if name in earlier else LeftFile(name=name, reason=reason, since=now) for name, reason in left]
    return sorted(waiting, key=lambda f: (f.since, f.name))


def _warn_long_waits(source_id: str, waiting: Sequence[LeftFile]) -> None:
    """Each file left by more pulls in a row than the setting allows, logged as an error: a sender whose upload
    never ends, a checksum never sent, a link never replaced wants a word with the sender."""
    if not waiting:  # nothing to measure: a setting it cannot read is not said by every pull of every source
        return
    most = most_left_pulls(source_id)
    for left in waiting:
        if left.pulls > most:
            log.error("%s: %s", source_id, long_wait_said(left, most))


def long_wait_said(left: LeftFile, most: int) -> str:
    """A file left by more pulls in a row than `most`, as the pull's log and the DAG's verdict say it."""
    return (f"{left.name} has been left for later in the drop zone by {left.pulls} pulls in a row, since "
            f"{left.since:%Y-%m-%d %H:%M} UTC (more than {LEFT_FOR_LATER_PULLS_SETTING}={most}): {left.reason}")


def long_waits(home: Home, source_id: str, since: datetime) -> tuple[list[LeftFile], int]:
    """The files the source's last pull since `since` that listed its drop zone left there by more pulls in a row
    than RTW_LEFT_FOR_LATER_PULLS, those waiting longest first, and that setting (the DAG's verdict: the night's
    pull stays green, the source's verdict fails). None such pull: none."""
    path = ledger_folder(home) / f"{source_id}{_SUFFIX}"
    listed = [p for p in _read(path) if p.at >= since and p.left is not None] if path.is_file() else []
    most = most_left_pulls()  # unreadable: the pull has said so, in its log
    if not listed:
        return [], most
    return [left for left in max(listed, key=lambda p: p.at).left or [] if left.pulls > most], most


def most_left_pulls(source_id: str | None = None) -> int:
    """How many pulls in a row may leave a file for later: RTW_LEFT_FOR_LATER_PULLS, or its default when the
    setting cannot be read, which is logged as an error for the pull of `source_id` (None: not logged, as by
    rtw status, which only marks the long waits; the pull says so)."""
    try:
        return count_setting(LEFT_FOR_LATER_PULLS_SETTING, LEFT_FOR_LATER_PULLS)
    except SettingError as exc:  # the pull is done and recorded: only its warning is at stake
        if source_id is not None:
            log.error("%s: %s; %d taken", source_id, exc, LEFT_FOR_LATER_PULLS)
        return LEFT_FOR_LATER_PULLS


def left_at_last_pull(pulls: Sequence[PullNight]) -> dict[str, PullNight]:
    """Each source's last pull that listed its drop zone and left files there for later, by source: what waits
    now, as far as the pulls know (`pulls` oldest first, as `read_pulls` gives them)."""
    last = {pull.source_id: pull for pull in pulls if pull.left is not None}
    return {source_id: last[source_id] for source_id in sorted(last) if last[source_id].left}


def read_pulls(home: Home) -> list[PullNight]:
    """Every source's recorded pulls, oldest first (a line not ours is passed over)."""
    folder = ledger_folder(home)
    paths = sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []
    return sorted((pull for path in paths for pull in _read(path)), key=lambda p: p.at)


def _read(path: Path) -> list[PullNight]:
    return _parse(path.read_text(encoding="utf-8").splitlines())


def _parse(lines: Iterable[str]) -> list[PullNight]:
    """The pulls of a source's lines, oldest first (a line not ours is passed over)."""
    pulls = []
    for line in lines:
        try:
            pulls.append(PullNight.model_validate_json(line))
        except ValidationError:
            continue
    return pulls


def last_failure(home: Home, source_id: str, since: datetime) -> str | None:
    """Why the source's last pull recorded since `since` failed; None when it did not, or none was recorded
    (the DAG's verdict: its wait for the export failed, and the sensor recorded why)."""
    path = ledger_folder(home) / f"{source_id}{_SUFFIX}"
    pulls = [p for p in _read(path) if p.at >= since] if path.is_file() else []
    return max(pulls, key=lambda p: p.at).failure if pulls else None


def failed_before(pulls: Sequence[PullNight], since: datetime | None, until: datetime | None) -> list[PullNight]:
    """The sources whose last pull in (since, until] failed (None: open on that side), by source: what a run
    started at `until` went on without, the run before it having started at `since`."""
    last: dict[str, PullNight] = {}
    for pull in pulls:
        if (since is None or pull.at > since) and (until is None or pull.at <= until):
            last[pull.source_id] = pull
    return [last[s] for s in sorted(last) if last[s].failure is not None]
