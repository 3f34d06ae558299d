"""Great Expectations in a process of its own, started early: where a run's GX suites run.

GX's import costs seconds of Python (3 s on this machine, with scipy.stats left until used:
`gx_suites.import_gx`), and its checkpoints are Python too. So a run whose changed exports are not tiny starts this
process as soon as it knows them (`start_early`): GX is imported on the other core while the run
extracts and harmonises. Once the stage is loaded, validation hands it a `Job`, the rows to judge
as Parquet files, one per batch (DuckDB writes them: the run holds no data frame of them), and goes
on with linkage and its SQL checks while GX judges, and with its issues while GX writes Data Docs.

The process serves one job after another (a test session validates many times) until its stdin
closes; the kernel ends it when the run's process ends, however that ends. Messages are pickled
both ways over its stdin and stdout; its own stdout goes to stderr, so a library's print cannot
garble them. Its log lines go to stderr, the run's. A process that dies fails the GX rules, each
with the reason, and the run goes on; an exception in GX fails the validation, as it would in the
run's process.

A registry so large that a second interpreter's memory beside the run's would pass the run's limit
(`gx_memo.IN_PROCESS_ROWS` rows to judge) is judged in the run's own process instead (`GxHere`), from
the same batches read straight from the run's connection, with the import done on a thread while
the source workers run.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb

from etl import fsio, interpreter, timing
from etl.config import connect_duckdb
from etl.quality.catalogue import Rule
from etl.quality.findings import RuleRun
from etl.quality.gx_suites import Batch, import_gx, new_context, run_suites, write_data_docs

log = logging.getLogger(__name__)

CENTRE = "_record_centre"  # a batch file's column holding each row's record's centre, for the denominators


@dataclass(frozen=True)
class Job:
    """The GX rules to run, and each table's batch files (a table missing: not in the warehouse)."""

    rules: Sequence[Rule]
    batch_files: dict[str, list[Path]]
    data_docs_dir: Path | None = None
    run_name: str | None = None  # the pipeline's run id, which the Data Docs show the validations under


@dataclass(frozen=True)
class Judged:
    runs: list[RuleRun]
    steps: list[timing.StepTime] = field(default_factory=list)


@dataclass(frozen=True)
class DocsWritten:
    steps: list[timing.StepTime] = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    """GX raised: the traceback, for the run to raise in turn."""

    error: str


class GxFailed(RuntimeError):
    """GX raised in its process (an error in a suite's setup, in writing Data Docs)."""


class GxProcess:
    """The run's side of the process: `submit` a job, then take its `runs` and wait for its Data Docs."""

    def __init__(self) -> None:
        # A plain interpreter (on the run's module path): the caller's main module is not imported again.
        self._process = subprocess.Popen(interpreter.code_command(_START, str(os.getpid())),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._job: Job | None = None
        self._ended = False
        self._send({"log_level": logging.getLogger().getEffectiveLevel(), "measure_memory": timing.measure_memory})

    @property
    def alive(self) -> bool:
        return not self._ended and self._process.poll() is None

    def _send(self, message: Any) -> None:
        assert self._process.stdin is not None
        pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._process.stdin.flush()

    def _receive(self) -> Judged | DocsWritten | Failed | None:
        """The next answer, or None when the process died or said something it would not say."""
        assert self._process.stdout is not None
        try:
            answer = pickle.load(self._process.stdout)
        except (EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError):
            return None
        return answer if isinstance(answer, (Judged, DocsWritten, Failed)) else None

    def _death(self) -> str:
        """Why the process gave no answer (it is ended if it lives on, talking nonsense)."""
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}" if code else "gave an answer it would not give")
        return f"the GX process {how} while judging; the run's log says why"

    def submit(self, job: Job) -> None:
        self._job = job
        with contextlib.suppress(OSError):  # it died: `runs` says so
            self._send(job)

    def runs(self) -> list[RuleRun]:
        """The job's rule runs, once GX has judged every batch (every rule errs if the process died)."""
        assert self._job is not None
        answer = self._receive()
        if isinstance(answer, Failed):
            raise GxFailed(answer.error)
        if not isinstance(answer, Judged):
            reason = self._death()
            log.error("%s: its %d rules could not run", reason, len(self._job.rules))
            return [RuleRun.failed_to_run(r.rule_id, reason) for r in self._job.rules]
        timing.recorded.extend(answer.steps)
        return answer.runs

    def docs_written(self) -> None:
        """Wait until the job's Data Docs are written (none asked, or the process died: at once)."""
        assert self._job is not None
        if self._job.data_docs_dir is None or not self.alive:
            return
        answer = self._receive()
        if isinstance(answer, Failed):
            raise GxFailed(answer.error)
        if isinstance(answer, DocsWritten):
            timing.recorded.extend(answer.steps)
        else:
            log.error("%s: the GX Data Docs may be incomplete", self._death())

    def end(self) -> None:
        """Let the process end once it has nothing more to say (the next validation starts another)."""
        self._ended = True
        if self._process.stdin is not None:
            self._process.stdin.close()

    def abandon(self) -> None:
        """End the process now, its answers untaken (the next validation starts another one)."""
        self._ended = True
        self._process.kill()
        self._process.wait()


class GxHere:
    """The same judging in the run's own process, for a registry so large that a second interpreter
    beside the run would pass its memory limit (100,000 persons: 1,645 MiB peak, against 1,421 MiB
    judged here). Nothing overlaps: GX judges as the job is submitted, its batches read straight from
    the run's connection (`batches_of`: no batch files), and an exception is GX's own."""

    def __init__(self, batches_of: Callable[[str], Iterator[Batch] | None]) -> None:
        self._batches_of = batches_of
        self._job: Job | None = None
        self._context: Any = None
        self._runs: list[RuleRun] = []

    def submit(self, job: Job) -> None:
        self._job = job
        self._context = new_context(job.data_docs_dir)
        self._runs = run_suites(self._context, self._batches_of, job.rules, run_name=job.run_name)

    def runs(self) -> list[RuleRun]:
        assert self._job is not None
        return self._runs

    def docs_written(self) -> None:
        if self._job is not None and self._job.data_docs_dir is not None and self._context is not None:
            write_data_docs(self._context, self._job.data_docs_dir)

    def end(self) -> None:
        self._context = None

    abandon = end


Judge = GxProcess | GxHere


def import_meanwhile() -> None:
    """Import GX on a thread of its own, for a run that will judge here: its import takes seconds of
    Python, which a run can spend while it only waits on its source workers. Not beside Python work:
    both would share the interpreter lock (measured: linkage at 2,000 persons went from 0.75 to 2.3 s)."""
    threading.Thread(target=import_gx, name="import-gx", daemon=True).start()


_ready: GxProcess | None = None


def start_early() -> None:
    """Start the process now (if none is running), for this process's next validation to take."""
    global _ready
    if _ready is None or not _ready.alive:
        _ready = GxProcess()


def ready() -> GxProcess:
    """The process started early, still alive, or a new one (kept for the validations after)."""
    start_early()
    assert _ready is not None
    return _ready


def end_early() -> None:
    """End the process started early, if any (a run about to judge here wants its memory back)."""
    global _ready
    if _ready is not None:
        _ready.end()
        _ready = None


# -- judging (in the GX process, or here) ---------------------------------------------------------


def _batches(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> Iterator[Batch]:
    for path in paths:
        frame = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
        centres = frame.pop(CENTRE)
        yield Batch(frame, centres)


def _judged(job: Job) -> tuple[Any, list[RuleRun]]:
    """A new GX context and the job's rule runs (the context holds their results, for the Data Docs)."""
    context = new_context(job.data_docs_dir)
    with connect_duckdb() as con:  # reads the batch files
        return context, run_suites(context, lambda table: _batches(con, job.batch_files[table])
                                   if table in job.batch_files else None, job.rules, run_name=job.run_name)


def _serve(job: Job, answer: IO[bytes]) -> None:
    def send(message: Judged | DocsWritten | Failed) -> None:
        pickle.dump(message, answer, protocol=pickle.HIGHEST_PROTOCOL)
        answer.flush()

    first = len(timing.recorded)
    try:
        context, runs = _judged(job)
    except Exception:
        send(Failed(traceback.format_exc()))
        return
    # The runs go while the Data Docs are written: the run waits for them, not for the docs.
    judged = pickle.dumps(Judged(runs, timing.recorded[first:]), protocol=pickle.HIGHEST_PROTOCOL)
    sender = threading.Thread(target=lambda: (answer.write(judged), answer.flush()), name="send-runs")
    sender.start()
    first = len(timing.recorded)
    try:
        if job.data_docs_dir is not None:
            write_data_docs(context, job.data_docs_dir)
        failed = None
    except Exception:
        failed = Failed(traceback.format_exc())
    sender.join()
    if job.data_docs_dir is not None:
        send(failed or DocsWritten(timing.recorded[first:]))
    timing.recorded.clear()


# The process's first lines, before any import that takes time: the kernel is asked to end it as soon
# as the run's process ends, however it ends (Linux; bound to the thread that started it, the run's
# own), so a run over before GX is imported does not leave it importing for nothing, nor its caller
# waiting on the stderr they share. Then the process serves (`main`, by its module's name: the answers
# are pickled by their classes' module).
_START = """
import gc
gc.disable()  # until GX is imported: the collections its ~180,000 objects set off find no garbage
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except AttributeError:
    pass
if os.getppid() != int(sys.argv[1]):  # the run ended before the request was made
    sys.exit(0)
from etl.quality.gx_process import main
main()
"""


def main() -> None:
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a library's print goes to the log, not into an answer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run, whose end ends this process
    jobs = sys.stdin.buffer
    try:
        settings = pickle.load(jobs)
    except EOFError:  # the run ended before it said anything
        return
    logging.basicConfig(level=settings["log_level"], format="%(levelname)s %(message)s", stream=sys.stderr)
    timing.measure_memory = settings["measure_memory"]
    import_gx()  # now, while the run still extracts
    # The collector, off since the process started (_START), back on with what the imports made left
    # out of its collections (they live as long as the process): else its first full collection walks
    # them all during the first job (2,000 persons: GX awaited 1.10-1.12 s without, 0.70-0.89 s with).
    gc.freeze()
    gc.enable()
    while True:
        try:
            job = pickle.load(jobs)
        except EOFError:
            return
        with fsio.private_umask():
            _serve(job, answer)
