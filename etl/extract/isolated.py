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
removed. A crash is read once more, in a fresh interpreter, before the file is refused: a damaged file
crashes the reader again, while a crash that does not repeat was not the file's (a fork in a process with
threads inherits their libraries' state half-changed: the test suite met such crashes on files read well
before and after, once in two forked children in a row, from the test worker's state), and refusing a good
file would keep its night's data out. The fresh interpreter inherits nothing but files: the read is pickled
to it (a module's function, or a functools.partial of one), and it finds modules where the run does
(etl/interpreter.py). One that cannot start, or ends before it answers, leaves the
file refused on its first crash, the log saying why. Where the child's Python was when it crashed is
logged (faulthandler's frames: code, never data). A child that has not answered within a
time limit (a damaged file can make a C parser loop: the run, every source, and the home's lock would wait
on it) is killed and fails its file the same way, read once only; the limit grows with the file's size
(etl/config.py `read_time_limit`, env RTW_READ_SECONDS), and is the file's: a crash's second read has what
the first left of it (a file that crashed its reader at the end of its time would have had it twice).

Fork first, not a fresh interpreter: the child has every module already imported (a fork of a run's
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

import contextlib
import ctypes
import faulthandler
import functools
import logging
import os
import pickle
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol, TypeVar

from etl.config import READ_SECONDS_PER_MB, READ_SECONDS_SETTING, read_time_limit
from etl.extract.errors import ExtractError
from etl.fsio import remove_path, temporaries
from etl.interpreter import code_command

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
    (the reader crashed, twice: a crash is read once more, in a fresh interpreter) raises an `ExtractError`
    naming the file, and anything it left half-written at or beside `out` is removed; so does a child that has
    not answered within `read_time_limit` of the file's size, killed. `read` pickles (a module's function, or a
    functools.partial of one over values that pickle; pickled before the first read, so one that does not fails
    every time, not only after a crash): the fresh interpreter imports it. `prepare`: imports
    what the child would import on first use (it must import nothing), called before the fork."""
    if not hasattr(os, "fork"):
        return read()
    call = pickle.dumps(read)  # for a crash's second read; pickled now, so that a read that cannot be fails always
    if prepare is not None:
        prepare()
    _prctl()  # looked up before the fork: the child only calls it (die_with)
    limit = read_time_limit(_size(path))
    deadline = time.monotonic() + limit  # the file's, whichever reads it: a second read has what the first left
    try:
        return _read_once(path, functools.partial(_fork, read), what=what, out=out, reader=reader, limit=limit,
                          deadline=deadline)
    except _NoProcess as none:  # EAGAIN: a limit on processes; ENOMEM: the file is still read
        log.warning("no process could be started to read a file (%s): read in the run's process, which a crash "
                    "of the reader (%s) on the file would end", none.reason, reader)
        return read()
    except _Crashed as crashed:
        # The same bytes crash a reader again; a crash that does not repeat was not the file's (the state a
        # fork inherits, or a damaged page of memory) and must not refuse it. Not named here: a delivered name
        # may hold a patient number, which the refusal's message hides.
        log.warning("the reader (%s) crashed (%s): the file is read once more, in a new interpreter (a second "
                    "crash refuses it)", reader, crashed.signal_name)
        try:
            return _read_once(path, functools.partial(_start, call), what=what, out=out, reader=reader, limit=limit,
                              deadline=deadline)
        except _NoProcess as none:  # never in this process: a file that crashed a reader would end the run
            log.warning("no interpreter could be started for the second read (%s): the file is refused on its "
                        "first crash", none.reason)
            raise crashed from None
        except _NoAnswer as silent:  # the interpreter's trouble (its error is on stderr), not the file's
            log.warning("the interpreter of the second read ended without an answer (exit status %s): the file is "
                        "refused on its first crash", silent.code)
            raise crashed from None


class _Crashed(ExtractError):
    """The reading process was killed by a crash signal (_CRASHES), named `signal_name`."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class _NoAnswer(ExtractError):
    """The reading process ended without an answer, not killed by a signal: with exit status `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _NoProcess(Exception):
    """No process could be started for a read (fork or exec failed), for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Child(Protocol):
    """A reading process, forked (_Forked) or started afresh (subprocess.Popen)."""

    def wait(self) -> int:
        """Its exit code once it has ended: minus the signal's number for one killed by a signal."""

    def kill(self) -> None:
        """SIGKILL."""


# How a reading process is started: given the pipe's two ends and the file for its frames (faulthandler).
Start = Callable[[int, int, IO[bytes]], _Child]


def _read_once(path: Path, start: Start, *, what: str, out: Path | None, reader: str, limit: float,
               deadline: float) -> Any:
    """`read()` in a child `start` started, once (`read_apart`), stopped at `deadline` (time.monotonic's) if it has
    not answered: past the file's time `limit`; _NoProcess when none could be started."""
    before = _written(out)
    with tempfile.TemporaryFile() as frames:  # where the child's Python was when it crashed (faulthandler)
        answers, answer = os.pipe()
        try:
            child = start(answers, answer, frames)
        except BaseException as error:
            os.close(answers)
            if isinstance(error, OSError):
                raise _NoProcess(str(error.strerror or error)) from error
            raise
        finally:
            os.close(answer)
        try:
            said = _answer(answers, deadline - time.monotonic())
            if said is None:  # past its limit: a reader in a loop, or stuck, is stopped as a crashed one ends
                raise ExtractError(_past_limit(path, reader, limit))
            code = child.wait()
        except BaseException:  # past its limit, or interrupted (Ctrl-C): the child goes with the read
            _end(child)
            _remove_written(out, before)
            raise
        if code != 0 or not said:
            _remove_written(out, before)
            message = _how_it_ended(path, what, reader, code)
            if -code in _CRASHES:
                frames.seek(0)
                log.warning("the reader (%s) crashed in: %s", reader, _where(frames.read()))
                raise _Crashed(message, signal.Signals(-code).name)
            raise _NoAnswer(message, code) if code >= 0 else ExtractError(message)
    outcome, value = pickle.loads(said)
    if outcome == "raised":
        raise value
    return value


class _Forked:
    """A child forked from this process (`_fork`)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _fork(read: Callable[[], Any], answers: int, answer: int, frames: IO[bytes]) -> _Child:
    """A child forked to run `read`: every module already imported, a fork takes some milliseconds."""
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(answers)
        _read_in_child(read, answer, parent, frames.fileno())
    return _Forked(child)


def _start(call: bytes, answers: int, answer: int, frames: IO[bytes]) -> _Child:
    """A fresh interpreter running the pickled `call`: nothing of this process's state but its files (a
    second or so to start and import), on the run's module path (etl/interpreter.py)."""
    with tempfile.TemporaryFile() as pickled:
        pickled.write(call)
        pickled.seek(0)
        return subprocess.Popen(code_command(_STARTED, str(os.getpid()), str(answer), str(frames.fileno())),
                                stdin=pickled, pass_fds=(answer, frames.fileno()))


_STARTED = "from etl.extract.isolated import read_started; read_started(*map(int, sys.argv[1:]))"


def read_started(parent: int, answer: int, frames: int) -> NoReturn:
    """The fresh interpreter's read (`_start`): the call pickled on standard input; never returns."""
    die_with(parent)
    _read_in_child(functools.partial(_unpickled_call, sys.stdin.buffer), answer, parent, frames)


def _unpickled_call(pickled: IO[bytes]) -> object:
    read: Callable[[], object] = pickle.load(pickled)  # written by the run that started this one
    return read()


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


def _read_in_child(read: Callable[[], Any], answer: int, parent: int, frames: int) -> NoReturn:
    """The child: the read, its result or exception sent pickled through `answer`; never returns."""
    code = 1
    try:
        die_with(parent)  # nobody waits for the read of a parent gone
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


def _how_it_ended(path: Path, what: str, reader: str, code: int) -> str:
    """Why the child gave no answer (its exit `code`: minus the signal's number for one killed by a signal), as
    the source's failure says it."""
    if code < 0:
        number = -code
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        if number == signal.SIGKILL:  # the kernel's out-of-memory killer, or someone's kill -9
            return (f"{path.name}: the process reading it was killed ({name}: out of memory?); expected it to be "
                    "read when the machine has the memory")
        if number in _CRASHES:
            return (f"{path.name}: the reader ({reader}) crashed on the file ({name}): it is damaged, or not the "
                    f"{what} it claims to be; expected a complete {what} (ask for it again, written anew)")
        return (f"{path.name}: the process reading it was stopped ({name}: sent by someone or something on this "
                "machine, not by the file); expected it to be read when the run is not stopped")
    return (f"{path.name}: the process reading it ended without an answer (exit status {code}); expected a "
            f"complete {what}")


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


def _end(child: _Child) -> None:
    child.kill()
    with contextlib.suppress(ChildProcessError):  # already reaped
        child.wait()


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
