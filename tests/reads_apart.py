"""Reads for the tests of etl/extract/isolated.py, some ending their process as a damaged file ends a reader's:
module functions (and functools.partial over them), which pickle, as `read_apart` asks of a read (a crash's second
read is a fresh interpreter's, to which the read is pickled)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from etl.fsio import written_atomically

# Set in a test's own process: every process forked from it inherits it (a native library's state half-changed
# by a fork), a fresh interpreter does not.
INHERITED = {"broken": False}


def crash(number: int = signal.SIGSEGV) -> None:
    os.kill(os.getpid(), number)


def exit_3() -> None:
    os._exit(3)


def stopped(number: int) -> None:
    """Stopped by a signal sent to it, as by someone on the machine (not a crash)."""
    os.kill(os.getpid(), number)
    time.sleep(10)


def crash_writing(out: Path, number: int = signal.SIGSEGV) -> None:
    """A reader that crashes with half its staged file written."""
    with written_atomically(out) as temp:
        temp.write_bytes(b"PAR1 half")
        crash(number)


def renamed_then_killed(out: Path) -> None:
    """A reader killed (SIGKILL) once its staged file is renamed in, before it could say so."""
    out.write_bytes(b"PAR1 whole")
    os.kill(os.getpid(), signal.SIGKILL)


def looping(out: Path) -> None:
    """A reader in a loop, as a damaged file can make a C parser, with half its staged file written."""
    with written_atomically(out) as temp:
        temp.write_bytes(b"PAR1 half")
        while True:
            time.sleep(1)


def failing() -> None:
    raise KeyError("no such variable")


def pid() -> int:
    return os.getpid()


def scores() -> tuple[str, ...]:
    """The out-of-memory scores of the reading process and of its parent."""
    return tuple(Path(f"/proc/{pid}/oom_score_adj").read_text().strip() for pid in ("self", os.getppid()))


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


def slow_crash_where_inherited(seconds: float) -> str:
    """Crashes after `seconds` in a process whose INHERITED state is broken; reads elsewhere."""
    if INHERITED["broken"]:
        time.sleep(seconds)
        crash(signal.SIGBUS)
    return "read"
