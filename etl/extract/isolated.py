"""A read by a native reader in a child process of its own: a file that crashes the reader fails that file, not the run.

ReadStat (C, under pyreadstat) crashes the process with a segmentation fault on some damaged files (SPSS
value labels of numbers given to a string variable, ...); calamine (Rust, under python-calamine) aborts it
when a workbook asks for more memory than there is (an .ods's repeated cells: a grid of 100 million cells
from a few hundred bytes, 3 GiB). Small sources are extracted in the run's own
process (etl/pipeline.py), so one such file in landing would stop the nightly run, every source, every
night it stays. `read_apart` runs a read (staging, or the metadata for `rtw profile`) in a child forked
from this process: it reads, writes the staged Parquet file and sends back its result, pickled, or the
exception it raised, through a pipe. A child killed by a signal becomes an `ExtractError` naming the
file and saying that the reader crashed on it; what it had half-written beside the staged file is
removed. A crash is read once more, in a new child, before the file is refused: a damaged file crashes the
reader again, while a crash that does not repeat was not the file's (a fork in a process with threads
inherits their libraries' state half-changed: the test suite met one, on a file read well before and
after; and once a crash that repeated in the second child, from a test worker's state, not the file's), and
refusing a good file would keep its night's data out. Where the child's Python was when it crashed is logged
(faulthandler's frames: code, never data). A child that has not answered within a
time limit (a damaged file can make a C parser loop: the run, every source, and the home's lock would wait
on it) is killed and fails its file the same way, read once only; the limit grows with the file's size
(etl/config.py `read_time_limit`, env RTW_READ_SECONDS).

Fork, not a fresh interpreter: the child has every module already imported (a fork of a run's
process takes some milliseconds, an interpreter's start and imports a second). The run's process has
threads (DuckDB's, GX's import, a thread pool), and the child holds only the thread that forked: it
touches nothing they may have locked. It reads with pyreadstat, numpy, pandas and Arrow (glibc's
malloc and Arrow's thread pools are made anew after a fork), imports nothing (what it reads and
stages with is imported before the fork, the caller's `prepare`: another thread may be importing a module,
holding its lock), logs nothing (a log handler's lock), opens no DuckDB connection, runs none of the
parent's signal handlers, and leaves with `os._exit`, running no atexit hook or finaliser of the
parent's objects. It dies with the process that forked it (PR_SET_PDEATHSIG): it holds that process's
descriptors, the home's lock among them (etl/runlock.py), and a run killed (`kill -9`) would otherwise
leave its reader staging on and the home held by a dead run until the read ends.

Where os.fork does not exist (Windows), or fails (EAGAIN: a limit on processes; ENOMEM), the read runs
in this process, as before (a fork that fails says so in the log): the file is read, without the
protection from a crash or the time limit; never after a crash, whose second read finding no process refuses
the file.
"""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import logging
import os
import pickle
import selectors
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

from etl.config import READ_SECONDS_PER_MB, READ_SECONDS_SETTING, read_time_limit
from etl.extract.errors import ExtractError
from etl.fsio import remove_path, temporaries

T = TypeVar("T")
log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# What a reader killed by one of these crashed on: a bad read or write of memory, an abort (a failed
# assertion, a heap found corrupt), bad arithmetic or code. Another (SIGTERM, SIGINT) was sent to stop it.
_CRASHES = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL})


def read_apart(path: Path, read: Callable[[], T], *, what: str, out: Path | None = None,
               reader: str = "ReadStat", prepare: Callable[[], object] | None = None) -> T:
    """`read()` (which reads `path`, a `what` such as 'SPSS data file', with `reader`; staging writes `out`, a
    file or a folder) in a forked child: its result, or the exception it raised. A child killed by a signal
    (the reader crashed, twice: a crash is read once more) raises an `ExtractError` naming the file, and
    anything it left half-written at or beside `out` is removed; so does a child that has not answered within
    `read_time_limit` of the file's size, killed. `prepare`: imports what the child would import on first use
    (it must import nothing), called before the fork."""
    if not hasattr(os, "fork"):
        return read()
    if prepare is not None:
        prepare()
    _prctl()  # looked up before the fork: the child only calls it (die_with)
    try:
        return _read_forked(path, read, what=what, out=out, reader=reader)
    except _Crashed as crashed:
        # The same bytes crash a reader again; a crash that does not repeat was not the file's (a native
        # library's state inherited through the fork, or a damaged page of memory) and must not refuse it.
        # Not named here: a delivered name may hold a patient number, which the refusal's message hides.
        log.warning("the reader (%s) crashed (%s): the file is read once more, in a new process (a second crash "
                    "refuses it)", reader, crashed.signal_name)
        try:
            return _read_forked(path, read, what=what, out=out, reader=reader, here_without_fork=False)
        except _NoFork:  # never in this process: a file that crashed a reader would end the run
            raise crashed from None


class _Crashed(ExtractError):
    """The reading process was killed by a crash signal (_CRASHES), named `signal_name`."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class _NoFork(Exception):
    """No process could be started for a read that may not be done in this one."""


def _read_forked(path: Path, read: Callable[[], T], *, what: str, out: Path | None, reader: str,
                 here_without_fork: bool = True) -> T:
    """`read()` in a forked child, once (`read_apart`); in this process when no child can be started and
    `here_without_fork`, else _NoFork."""
    with tempfile.TemporaryFile() as frames:  # where the child's Python was when it crashed (faulthandler)
        return _read_forked_into(path, read, what=what, out=out, reader=reader, here_without_fork=here_without_fork,
                                 frames=frames)


def _read_forked_into(path: Path, read: Callable[[], T], *, what: str, out: Path | None, reader: str,
                      here_without_fork: bool, frames: IO[bytes]) -> T:
    limit = read_time_limit(_size(path))
    before = _written(out)
    parent = os.getpid()
    answers, answer = os.pipe()
    try:
        child = os.fork()
    except OSError as error:  # no process for it (EAGAIN: a limit on processes; ENOMEM): the file is still read
        os.close(answers)
        os.close(answer)
        if not here_without_fork:
            raise _NoFork from error
        log.warning("no process could be started to read a file (%s): read in the run's process, which a crash "
                    "of the reader (%s) on the file would end", error.strerror or error, reader)
        return read()
    if child == 0:
        _read_in_child(read, answers, answer, parent, frames.fileno())
    os.close(answer)
    try:
        said = _answer(answers, limit)
        if said is None:  # past its limit: a reader in a loop, or stuck, is stopped as a crashed one ends
            raise ExtractError(_past_limit(path, reader, limit))
        _pid, status = os.waitpid(child, 0)
    except BaseException:  # past its limit, or interrupted (Ctrl-C): the child goes with the read
        _end(child)
        _remove_written(out, before)
        raise
    if os.waitstatus_to_exitcode(status) != 0 or not said:  # minus the signal's number for a killed child
        _remove_written(out, before)
        message = _how_it_ended(path, what, reader, status)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CRASHES:
            frames.seek(0)
            log.warning("the reader (%s) crashed in: %s", reader, _where(frames.read()))
            raise _Crashed(message, signal.Signals(os.WTERMSIG(status)).name)
        raise ExtractError(message)
    outcome, value = pickle.loads(said)
    if outcome == "raised":
        raise value
    return value  # type: ignore[no-any-return]


def die_with(parent: int) -> None:
    """Ask the kernel to end this process (SIGKILL) as soon as `parent`, the process that started it, is gone, however
    it ends (Linux; elsewhere nothing): a parent killed with SIGKILL cannot end its children, and an orphan would go
    on with work nobody waits for (a read, a source's harmonise beside the next run's). Bound, by the kernel, to
    the thread of `parent` that started this process: it fires when that thread ends. A parent gone before the
    request was made: this process ends now. Call it first, before imports that take time."""
    if (prctl := _prctl()) is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """prctl, which the child calls to die with this process; None where there is none (not Linux)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except AttributeError:
        return None


def _where(dumped: bytes) -> str:
    """The innermost Python frames of a crashed child (faulthandler's dump: code's files, lines and functions,
    never data), for whoever finds out why the reader crashed."""
    lines = [line.strip() for line in dumped.decode("utf-8", "replace").splitlines() if line.strip().startswith("File")]
    return " <- ".join(lines[:4]) or "no Python frame (crashed outside Python's code)"


def _read_in_child(read: Callable[[], Any], answers: int, answer: int, parent: int, frames: int) -> NoReturn:
    """The child: the read, its result or exception sent pickled through `answer`; never returns."""
    code = 1
    try:
        die_with(parent)  # nobody waits for the read of a parent gone
        os.close(answers)
        _first_to_go_when_memory_runs_out()
        for number in (signal.SIGINT, signal.SIGTERM):  # not the parent's handlers (Airflow's, a run's)
            if signal.getsignal(number) is not signal.SIG_IGN:  # one ignored stays so (rtw run & from a script)
                signal.signal(number, signal.SIG_DFL)
        # A crash is the parent's to say, not a dump on stderr: where the child was goes to `frames`, for the log
        faulthandler.enable(file=frames, all_threads=False)
        try:
            said = pickle.dumps(("done", read()))
        except BaseException as error:  # every error goes to the parent, which raises it
            said = _pickled_error(error)
        with os.fdopen(answer, "wb") as pipe:
            pipe.write(said)
        code = 0
    finally:
        os._exit(code)


def _first_to_go_when_memory_runs_out() -> None:
    """The child is the one the kernel's out-of-memory killer takes, not the run: a workbook whose grid the
    machine can allocate but not hold (calamine holds an .ods's every sheet) grows the child, and the killer
    otherwise weighs the run's own memory (DuckDB's, the staged frames) against it. Raising one's own score
    needs no privilege; where there is no such file (not Linux), nothing changes."""
    try:
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as score:
            score.write("1000")
    except OSError:
        pass


def _pickled_error(error: BaseException) -> bytes:
    """The exception, pickled; one that is not a refusal carries the child's traceback as a note (the
    parent's log shows where it was raised). One that does not pickle is sent as a RuntimeError saying it."""
    if not isinstance(error, ExtractError):
        error.add_note("raised while reading, in the reading process:\n" + "".join(traceback.format_exception(error)))
    try:
        return pickle.dumps(("raised", error))
    except Exception:  # an exception holding what does not pickle
        return pickle.dumps(("raised", RuntimeError(f"{type(error).__name__}: {error}")))


def _how_it_ended(path: Path, what: str, reader: str, status: int) -> str:
    """Why the child gave no answer, as the source's failure says it."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        if number == signal.SIGKILL:  # the kernel's out-of-memory killer, or someone's kill -9
            return (f"{path.name}: the process reading it was killed ({name}: out of memory?); expected it to be "
                    "read when the machine has the memory")
        if number in _CRASHES:
            return (f"{path.name}: the reader ({reader}) crashed on the file ({name}): it is damaged, or not the "
                    f"{what} it claims to be; expected a complete {what} (ask for it again, written anew)")
        return (f"{path.name}: the process reading it was stopped ({name}: sent by someone or something on this "
                "machine, not by the file); expected it to be read when the run is not stopped")
    return (f"{path.name}: the process reading it ended without an answer (exit status "
            f"{os.waitstatus_to_exitcode(status)}); expected a complete {what}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone, or not there yet: the reader says so
        return 0


def _answer(answers: int, limit: float) -> bytes | None:
    """What the child sent through `answers`, read to the pipe's end (the child's exit closes it); None when
    it has not ended within `limit` seconds."""
    deadline = time.monotonic() + limit
    said = bytearray()
    with os.fdopen(answers, "rb", buffering=0) as pipe, selectors.DefaultSelector() as waiting:
        waiting.register(pipe, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not waiting.select(left):
                continue
            chunk = pipe.read(1 << 20)
            if not chunk:
                return bytes(said)
            said += chunk
    return None


def _past_limit(path: Path, reader: str, limit: float) -> str:
    """Why a reader was stopped: too long over the file, which may loop it or be larger than the limit allows."""
    seconds = f"{limit:.1f}".removesuffix(".0") if limit >= 1 else f"{limit:.2g}"  # a test's limit: not "0 s"
    return (f"{path.name}: the reader ({reader}) did not finish within {seconds} s: stopped; the file may "
            "be damaged (a reader in a loop) or too large for the limit, which is "
            f"{READ_SECONDS_SETTING} plus {READ_SECONDS_PER_MB:g} s a MB of the file: raise {READ_SECONDS_SETTING} "
            "for a file this large")


def _end(child: int) -> None:
    try:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    except ChildProcessError:  # already reaped
        pass


# -- what a killed child leaves ----------------------------------------------------------------------
def _written(out: Path | None) -> tuple[set[Path], os.stat_result | None]:
    """What is at and beside `out` before the child writes: its temporaries, and `out` itself."""
    if out is None:
        return set(), None
    found = temporaries(out)
    try:
        return found, out.stat()
    except FileNotFoundError:
        return found, None


def _remove_written(out: Path | None, before: tuple[set[Path], os.stat_result | None]) -> None:
    """Remove the temporaries a killed child left beside `out`, and `out` if it was renamed in (the child
    was killed before it could say it had): a staged file that no read answered for."""
    if out is None:
        return
    earlier, stat = before
    for temporary in temporaries(out) - earlier:
        remove_path(temporary)
    try:
        now = out.stat()
    except FileNotFoundError:
        return
    if stat is None or (now.st_ino, now.st_mtime_ns) != (stat.st_ino, stat.st_mtime_ns):
        remove_path(out)  # a file, or a workbook's folder of sheets
