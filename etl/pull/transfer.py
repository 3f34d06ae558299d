"""Moving one remote file to a local temporary: streamed, counted, hashed; retried when cut.

A transfer is complete when the file is still as the listing showed it once read (the same size and
version: a file rewritten or grown meanwhile may be a mix of two versions or half an upload, and is left
for the next pull), as many bytes arrived as the listing announced and, when the source gives a
checksum, when the sha256 matches. A dropped connection or a short file is retried on
a fresh connection, with a growing pause; a checksum mismatch, a refused zip or missing
credentials are not (trying again would give the same answer) and fail the file at once, and
a file that changed while it was read is left for the next pull.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import BaseModel, ConfigDict

from etl.pull.credentials import CredentialsError
from etl.pull.dropzone import DropZone, Gone, RemoteFile, RemoteRefused
from etl.pull.room import lacking_room
from etl.pull.unzip import ZipRefused

log = logging.getLogger("rtw")
T = TypeVar("T")
Progress = Callable[[RemoteFile, int], None]


class PullPolicy(BaseModel):
    """How hard a pull tries: attempts per file (and for the listing), the first pause, doubled after each."""

    model_config = ConfigDict(frozen=True)

    attempts: int = 3
    backoff_seconds: float = 2.0
    chunk_bytes: int = 1 << 20
    keep_free_bytes: int = 1 << 30  # what a download must leave free in landing/ (the night's run needs room)


class ChecksumMismatch(ValueError):
    """The downloaded bytes are not those the source's checksum declares."""


class TransferCutShort(OSError):
    """Fewer (or more) bytes arrived than the drop zone listed."""


class NoRoom(OSError):
    """The file is larger than landing/ can take: refused before a byte is written."""


class ChangedWhileRead(Exception):  # not an error: the sender is not done with it
    """The remote file's size or version changed (or it went) while it was read: not landed this time."""


class TransferFailed(RuntimeError):
    """Every attempt failed; the message gives the last reason."""


class Settled(Exception):  # not an error: an answer that ends the attempts
    """Raised by an attempt that found its answer early (e.g. the bytes were pulled before)."""


# Answers that another attempt would only repeat.
REFUSALS: tuple[type[Exception], ...] = (ChecksumMismatch, ZipRefused, CredentialsError, RemoteRefused, NoRoom,
                                         ChangedWhileRead, Settled)


def download(zone: DropZone, remote: RemoteFile, temp: Path, *, expected_sha256: str | None,
             policy: PullPolicy, progress: Progress | None = None) -> str:
    """Stream `remote` into `temp` (which exists, owner-only); its sha256 once size and checksum are right."""
    if (lacking := lacking_room(temp.parent, remote.size, policy.keep_free_bytes)) is not None:
        raise NoRoom(f"it is {remote.size} bytes, and landing has {lacking}")
    digest = hashlib.sha256()
    written = 0
    with _opened(zone, remote) as handle, temp.open("wb") as out:
        # Read no further than its listed size and a byte: the room judged was for that (a file grown, or a sparse
        # terabyte swapped in, since the listing would fill landing's disk before its change was seen).
        while written <= remote.size and (chunk := handle.read(min(policy.chunk_bytes, remote.size + 1 - written))):
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            if progress is not None:
                progress(remote, written)
    _unchanged(zone, remote)  # before the count: a file that grew is being uploaded, not cut short
    if written != remote.size:
        raise TransferCutShort(f"{written} of {remote.size} bytes arrived")
    sha256 = digest.hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise ChecksumMismatch(f"its sha256 {sha256} does not match the {expected_sha256} its checksum declares "
                               "(damaged, or replaced during the transfer)")
    return sha256


def _opened(zone: DropZone, remote: RemoteFile) -> BinaryIO:
    """The listed file, opened. One gone since the listing (taken back by its sender, deleted to be uploaded
    again) is ChangedWhileRead, as one that goes while it is read is: not a failure, nor tried again."""
    try:
        return zone.open(remote)
    except Gone:
        raise ChangedWhileRead("it was removed after it was listed") from None


def _unchanged(zone: DropZone, remote: RemoteFile) -> None:
    """ChangedWhileRead unless the file is as listed (size and version: S3 ETag, else modification time).
    The quiet period judged the listing; a sender may have started writing since (an upload restarted
    in place keeps the size), and a checksum, when there is one, is not always there to tell."""
    now = zone.stat(remote)
    if now is None:
        raise ChangedWhileRead("it was removed while it was read")
    if (now.size, now.version) != (remote.size, remote.version):
        raise ChangedWhileRead(f"it changed while it was read (size {remote.size} -> {now.size} bytes, version "
                               f"{remote.version} -> {now.version})")


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def retrying(policy: PullPolicy, action: Callable[[], T], *, what: str, on_error: Callable[[], None],
             said: Callable[[str], str] = lambda line: line) -> T:
    """`action()`, tried up to `policy.attempts` times; `on_error` (drop the connection) after each failure.
    `said`: how a failed attempt is logged (the files named as shown: etl/extract/file_names.py)."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except REFUSALS:
            raise
        except Exception as error:  # any transport error is worth another attempt
            on_error()
            if attempt == policy.attempts:
                raise TransferFailed(f"{_reason(error)} (gave up after {policy.attempts} attempts)") from error
            pause = policy.backoff_seconds * 2 ** (attempt - 1)
            failed = f"{what}: attempt {attempt} failed ({_reason(error)}); trying again in {pause:.1f} s"
            log.warning("%s", said(failed))
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
