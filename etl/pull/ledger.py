"""The ledger of what was pulled from a source's drop zone: `<home>/pulled/<source_id>.json`.

A remote file is known by its path, size and version (S3 ETag, else modification time); the
sha256 of what was downloaded is kept too, so a file re-uploaded unchanged (new time, same
content) is not landed twice. The ledger, not landing/, says what was pulled: cleaning landing/
does not make the drop zone's old files new again. Owner-only; rewritten atomically; one pull
of a source at a time (an exclusive lock beside it), so the DAG and `rtw pull` cannot land the
same file twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from etl import fsio
from etl.config import Home
from etl.pull.dropzone import RemoteFile


class PulledFile(BaseModel):
    """One remote file pulled (or recognised as already pulled), and what it landed as."""

    model_config = ConfigDict(frozen=True)

    remote_path: str
    size: int
    version: str
    sha256: str
    landed: list[str] = Field(default_factory=list, description="the landing file names (zip: its members)")
    pulled_at: datetime


def _key(remote_path: str, size: int, version: str) -> str:
    return f"{remote_path}|{size}|{version}"


class Ledger:
    """What one source's drop zone has given: read at the start of a pull, saved after each file."""

    def __init__(self, path: Path, entries: list[PulledFile]) -> None:
        self.path = path
        self.entries = entries
        self._keys = {_key(e.remote_path, e.size, e.version) for e in entries}
        self._contents = {(e.remote_path, e.sha256) for e in entries}

    def has(self, remote: RemoteFile) -> bool:
        """True when this version of the remote file was pulled already."""
        return _key(remote.path, remote.size, remote.version) in self._keys

    def has_content(self, remote: RemoteFile, sha256: str) -> bool:
        """True when this content was pulled from this remote path already (re-uploaded unchanged)."""
        return (remote.path, sha256) in self._contents

    def record(self, remote: RemoteFile, sha256: str, landed: list[str]) -> None:
        entry = PulledFile(remote_path=remote.path, size=remote.size, version=remote.version, sha256=sha256,
                           landed=landed, pulled_at=datetime.now(UTC))
        self.entries.append(entry)
        self._keys.add(_key(remote.path, remote.size, remote.version))
        self._contents.add((remote.path, sha256))
        fsio.write_text(self.path, json.dumps([e.model_dump(mode="json") for e in self.entries], indent=1))


def ledger_folder(home: Home) -> Path:
    return home.root / "pulled"


def read_ledger(home: Home, source_id: str) -> Ledger:
    """The source's ledger (empty when nothing was pulled yet); a damaged ledger is an error, not a
    fresh start: that would pull every old file again."""
    path = ledger_folder(home) / f"{source_id}.json"
    if not path.exists():
        return Ledger(path, [])
    try:
        entries = [PulledFile.model_validate(item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except (ValueError, TypeError, ValidationError) as exc:
        raise ValueError(f"{path}: the ledger of pulled files cannot be read ({exc.__class__.__name__}); "
                         "restore it from a backup: without it every file in the drop zone would be pulled "
                         "again") from None
    return Ledger(path, entries)


@contextmanager
def pulling(home: Home, source_id: str) -> Iterator[None]:
    """Hold the source's pull lock for the block; waits for another pull of the same source."""
    folder = fsio.private_folder(ledger_folder(home))
    fd = fsio.open_private(folder / f"{source_id}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
