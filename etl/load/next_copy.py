"""The copy of the live warehouse that publish changes, made ahead while the run does other work.

Publish never writes the live file: it copies it to the run's next-file, changes the copy and
renames it in (etl/load/warehouse.py). At 100,000 persons that copy is 535 MB, 0.7-1.8 s with its
fsync, paid by every run, an unchanged one too. `copy_ahead` makes it in a thread while the run plans,
extracts and harmonises (the copy is the kernel's work: it holds no lock Python's other work needs),
and publish `take`s it only when the live file is still the one copied: the same inode, size and
modification time (every publish renames a new file in; a write in place changes the time). Else
publish copies again, as it would have without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from etl import fsio, timing

__all__ = ["copy_ahead", "next_file", "take"]

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int]  # inode, size, modification time (ns)


def next_file(warehouse: Path, run_id: str) -> Path:
    """Where the run's publish builds the next warehouse (crash repair clears `.<name>.*.next*`)."""
    return warehouse.with_name(f".{warehouse.name}.{run_id}.next")


def _stamp(path: Path) -> Stamp:
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


@dataclass
class _Ahead:
    target: Path
    copied_from: Stamp | None = None  # the live file the finished copy is of
    thread: threading.Thread = field(init=False)


_ahead: dict[Path, _Ahead] = {}


def _copy(warehouse: Path, ahead: _Ahead) -> None:
    try:
        before = _stamp(warehouse)
        fsio.copy_file(warehouse, ahead.target)
        if _stamp(warehouse) == before:  # else changed while copied: publish copies again
            ahead.copied_from = before
    except OSError as error:  # publish copies again and reports what fails then
        log.info("the warehouse could not be copied ahead of publish (%s); publish will copy it", error)


@contextmanager
def copy_ahead(warehouse: Path, run_id: str) -> Iterator[None]:
    """Copy the live warehouse to the run's next-file in a thread during the block; a copy publish did
    not take is removed at its end."""
    if not warehouse.exists():
        yield
        return
    ahead = _Ahead(next_file(warehouse, run_id))
    ahead.thread = threading.Thread(target=_copy, args=(warehouse, ahead), name="warehouse copy", daemon=True)
    _ahead[ahead.target] = ahead
    ahead.thread.start()
    try:
        yield
    finally:
        ahead.thread.join()
        if _ahead.pop(ahead.target, None) is not None:  # not taken: the run ended before its publish
            ahead.target.unlink(missing_ok=True)


def take(warehouse: Path, target: Path) -> bool:
    """True when `target` holds a copy made ahead of the live warehouse as it is now (call it under the
    publish lock); else nothing is at `target`."""
    ahead = _ahead.pop(target, None)
    if ahead is not None:
        with timing.step("warehouse copy awaited"):
            ahead.thread.join()
        if ahead.copied_from is not None and warehouse.exists() and _stamp(warehouse) == ahead.copied_from:
            return True
    target.unlink(missing_ok=True)
    return False

