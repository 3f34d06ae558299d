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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from etl import fsio
from etl.config import Home
from etl.pull.ledger import ledger_folder

log = logging.getLogger("rtw")

KEPT = 100  # the newest pulls kept of each source
_SUFFIX = ".pulls.jsonl"


class PullNight(BaseModel):
    """One pull of one source: when it ended, and why it failed (None: it did not)."""

    source_id: str
    at: datetime
    failure: str | None = None


def record_pull(home: Home, source_id: str, failure: str | None) -> None:
    """Add a pull to the source's lines: never the pull's failure a second time, a line that cannot be
    written (the disk full) is logged."""
    path = ledger_folder(home) / f"{source_id}{_SUFFIX}"
    line = PullNight(source_id=source_id, at=datetime.now(UTC), failure=failure).model_dump_json()
    try:
        kept = path.read_text(encoding="utf-8").splitlines()[-(KEPT - 1):] if path.exists() else []
        fsio.private_folder(path.parent)
        fsio.write_text(path, "".join(f"{old}\n" for old in [*kept, line]))
    except OSError as exc:
        log.warning("%s: the pull could not be recorded for rtw status: %s", source_id, exc)


def read_pulls(home: Home) -> list[PullNight]:
    """Every source's recorded pulls, oldest first (a line not ours is passed over)."""
    folder = ledger_folder(home)
    paths = sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []
    return sorted((pull for path in paths for pull in _read(path)), key=lambda p: p.at)


def _read(path: Path) -> list[PullNight]:
    pulls = []
    for line in path.read_text(encoding="utf-8").splitlines():
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
