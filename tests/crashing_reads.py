"""Reads that end their process as a damaged file ends a reader's, for the tests of etl/extract/isolated.py: module
functions (and functools.partial over them), which pickle, as the fresh interpreter of a crash's second read needs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from etl.fsio import written_atomically

# Set in a test's own process: every process forked from it inherits it (a native library's state half-changed
# by a fork), a fresh interpreter does not.
INHERITED = {"broken": False}


def crash(number: int = signal.SIGSEGV) -> None:
    os.kill(os.getpid(), number)


def exit_3() -> None:
    os._exit(3)


def crash_writing(out: Path, number: int = signal.SIGSEGV) -> None:
    """A reader that crashes with half its staged file written."""
    with written_atomically(out) as temp:
        temp.write_bytes(b"PAR1 half")
        crash(number)


def noted_then(readers: Path, run: int, ending: str) -> None:
    """Notes its pid in `readers`, then ends as `ending` (crash, exit_3) says, unless it is the run's process
    `run` (read there, the tests would end: it reads, and the pids tell)."""
    with readers.open("a") as noted:
        noted.write(f"{os.getpid()}\n")
    if os.getpid() != run:
        globals()[ending]()


def crash_where_inherited() -> str:
    """Crashes in a process whose INHERITED state is broken; reads elsewhere."""
    if INHERITED["broken"]:
        crash(signal.SIGBUS)
    return "read"
