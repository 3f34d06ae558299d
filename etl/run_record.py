"""The record of a night that did not publish: what `rtw status` shows beside the warehouse's runs.

A run that publishes is recorded in the warehouse (meta.run); one that fails before (a step that
raises, a key refused, a disk full, another run holding the home) or is killed cannot be: only a
publish writes the warehouse. So every run, `rtw run` and the DAG's alike, keeps a record in the home,
`runs/<run_id>.json`: written when it takes the home (step `plan`, or the DAG's `plan_run`), moved on at
each step, and removed once its publish is done. A run that fails rewrites it as failed, with the step
and the first line of why (`said`); a run that could not take the home leaves one too. A record still
`running` whose run no longer holds the home (etl/runlock.py: neither its process nor its DAG run's
lease is alive, or the one process its lease names is gone, or every process at work for it is) ended
without a word: killed (kill -9, out of memory, a power cut) in the step it names; the next run to take
the home writes it so. A process is gone when its pid is not alive on this host, or is alive with
another start time (reused: the record keeps its start, `runlock.process_start`). A DAG run's lease
lives two hours after its last task: a record in the DAG's publish whose process (publish records its
own) is gone is killed at once, as publish is the run's last step and one process.
A killed record says when its step began (`step_at`), the last the run was heard of. `rtw run` told
to stop (SIGTERM, Ctrl-C: `Night.stoppable`) stops where it is and is recorded failed, stopped by that
signal, in its step.

A reason quotes the first line of an error of the system or of this project's own only (another's may
quote an export's value: its type is said, its text goes to the log); what it quotes passes
`etl/terminal.py`'s `printable` and has each patient number hidden as file names are
(etl/extract/file_names.py): a path may hold one.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from pydantic import BaseModel, ValidationError

from etl import fsio, runlock
from etl.config import Home
from etl.terminal import printable

if TYPE_CHECKING:
    from etl.extract.file_names import PatientNumbers

log = logging.getLogger("rtw")

RECORDS = "runs"  # <home>/runs/<run_id>.json
KEPT = 100  # the newest records of nights that did not publish kept; older ones are removed
TAKING = "take the home"  # the step of a run that found the home held by another
KILLED = "ended without a word: killed (kill -9, out of memory, a power cut); the run's log may say more"
_REASON_CHARS = 500
DAG_PUBLISH = "publish"  # the DAG's publish task (dags/nightly_import.py), the step its record names
# Times a reason quotes, never a patient's number: a run id's stamp (etl/pipeline.py, new_run_id) and an
# ISO time with its microseconds (an Airflow DAG run id, manual__2026-12-05T11:03:41.119659+00:00).
_RUN_STAMP = re.compile(r"(\d{8}T\d{6}Z|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?)")


# SIGTERM: a scheduler's timeout (Airflow's, systemd's TimeoutStopSec), a shutdown, `kill`; SIGINT: Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """The run was told to stop (a signal of STOP_SIGNALS) and stops where it is. A BaseException, as
    KeyboardInterrupt is: no step's `except Exception` takes it for that step's failure and goes on to publish."""

    def __init__(self, signal_name: str, at: datetime, sender: str = "") -> None:
        said_by = f"{signal_name} ({sender})" if sender else signal_name
        super().__init__(f"stopped by {said_by} at {at:%Y-%m-%d %H:%M:%S} UTC")


@contextmanager
def stops_held() -> Iterator[None]:
    """While the block runs, a signal of STOP_SIGNALS waits for its end and is delivered then, to the handler it
    would have met: a block that must not be cut short (the new warehouse renamed in and the run said published,
    etl/load/warehouse.py) is not, and a stop arriving in it finds the run done. Blocking the signal
    (pthread_sigmask) would not do: the kernel gives it to another thread of the process (a library's pool), and
    Python runs its handler in the main thread all the same. Python's handlers run in the main thread only: from
    another, the block is not cut short by them and runs as it would without. A signal ignored stays ignored, and a
    handler not set from Python is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before: dict[int, Any] = {}
    try:
        # Swapped in inside the try: a signal pending while one is swapped (signal.signal runs it first) leaves
        # those already swapped to the finally, never holding for good.
        for number in STOP_SIGNALS:
            if signal.getsignal(number) not in (None, signal.SIG_IGN):
                before[number] = signal.signal(number, lambda number, _frame: held.append(number))
        yield
    finally:
        with ExitStack() as restored:  # every handler put back (each even if another's raised), then what arrived
            restored.callback(_sent_again, held)  # read once they are back: one arriving as they go back is in it
            for swapped, handler in before.items():
                restored.callback(signal.signal, swapped, handler)


def _sent_again(held: list[int]) -> None:
    for arrived in dict.fromkeys(held):
        signal.raise_signal(arrived)


def stop_behind(exc: BaseException) -> BaseException | None:
    """The stop an error was raised from: a signal handler's exception (Stopped, KeyboardInterrupt, Airflow's
    AirflowTaskTimeout and AirflowTaskTerminated: none an Exception) that DuckDB turned into its own
    RuntimeError("Query interrupted"), raised from it. The error is then the stop's doing, not a failure of the
    source at hand; None for any other."""
    cause = exc.__cause__
    return cause if cause is not None and not isinstance(cause, Exception) else None


class NightRecord(BaseModel):
    """One run that has not published (yet): where it got to and, when it failed, why."""

    run_id: str
    trigger: str  # cli / airflow
    dag_run_id: str | None = None
    started_at: datetime
    step: str  # the step it is in, or failed in: plan, extract and harmonise <source>, publish, a DAG task
    step_at: datetime | None = None  # when it went on to `step`: a killed run's last word (`_killed`)
    status: Literal["running", "failed", "killed"] = "running"
    reason: str | None = None
    ended_at: datetime | None = None
    pid: int
    host: str
    started: str | None = None  # the process's start (runlock.process_start): its pid reused is not it
    pid_namespace: str | None = None  # a container's pid means nothing in another's


# Airflow stopping a DAG task, said as what happened: their text is a pid or nothing (and could pass for an export's).
_AIRFLOW_STOPS = {"AirflowTaskTimeout": "the task ran past its execution_timeout, and Airflow stopped it there",
                  "AirflowTaskTerminated": "Airflow terminated the task"}


def _in_words(exc: BaseException) -> bool:
    """Whether an exception's text may be a reason: one of the system (a file, the disk, memory) or of
    this project's own (its messages name files, columns and keys, never an export's value). Any other's
    text may quote a value it met (a library's "could not convert '12/03/2011'...", a bug's): a date of
    birth or a name would reach the warehouse and the notification; its text goes to the log only."""
    import duckdb

    own = type(exc).__module__.split(".")[0] == "etl"
    return own or isinstance(exc, OSError | MemoryError | duckdb.IOException | duckdb.OutOfMemoryException)


def said(exc: BaseException, numbers: PatientNumbers | None = None) -> str:
    """An exception as a reason: its type and, for one whose text is safe to say (`_in_words`), its first
    line, printable, each patient number hidden. An error a stop was turned into (`stop_behind`) is said as the stop."""
    from etl.extract.file_names import PatientNumbers, shown_file_name

    exc = stop_behind(exc) or exc
    if type(exc).__module__.split(".")[0] == "airflow" and (stop := _AIRFLOW_STOPS.get(type(exc).__name__)):
        return f"{type(exc).__name__}: {stop}"
    if not _in_words(exc):
        return f"{type(exc).__name__} (its text, which may quote an export's value, is in the run's log)"
    first = (str(exc).strip().splitlines() or [""])[0][:_REASON_CHARS]
    # A run's time (a temporary's name, a DAG run id quote it) is not a patient's number: kept as it is.
    pieces = _RUN_STAMP.split(first)
    shown = "".join(p if i % 2 else shown_file_name(p, numbers or PatientNumbers.of([])) for i, p in enumerate(pieces))
    return printable(f"{type(exc).__name__}: {shown}")


def _folder(home: Home) -> Path:
    return home.root / RECORDS


def _path(home: Home, run_id: str) -> Path:
    return _folder(home) / f"{run_id}.json"


def _read(path: Path) -> NightRecord | None:
    try:
        return NightRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):  # gone meanwhile, or not ours
        return None


def _write(home: Home, record: NightRecord) -> None:
    """Never the run's failure a second time: a record that cannot be written (the disk full) is logged."""
    try:
        fsio.private_folder(_folder(home))
        fsio.write_text(_path(home, record.run_id), record.model_dump_json())
    except OSError as exc:
        log.warning("the record of run %s could not be written: %s", record.run_id, exc)


@dataclass
class Night:
    """One run's record as the run goes: `step` is where it is, and where a failure is said to be."""

    home: Home
    run_id: str
    trigger: str  # cli / airflow
    step: str = TAKING
    dag_run_id: str | None = None
    stopped: Stopped | None = field(default=None, init=False)  # told to stop by a signal (`stoppable`)
    _sender: str = field(default="", init=False)  # who sends the stop signals, when known (`stoppable`)
    _done: bool = field(default=False, init=False)  # published: a stop comes too late to undo anything

    def begin(self, step: str) -> None:
        """The run has taken the home (call under the run lock): record it, and the runs recorded running
        before as killed (none of them holds the home now)."""
        records = _records(self.home)
        for record in records:
            if record.status == "running" and record.run_id != self.run_id:
                _write(self.home, _killed(record))
        for old in records[:-KEPT]:
            _path(self.home, old.run_id).unlink(missing_ok=True)
        self.step = step
        _write(self.home, self._new_record(datetime.now(UTC)))

    def _new_record(self, started_at: datetime) -> NightRecord:
        return NightRecord(run_id=self.run_id, trigger=self.trigger, dag_run_id=self.dag_run_id,
                           started_at=started_at, step=self.step, step_at=started_at, **runlock.this_process())

    def reached(self, step: str) -> None:
        """The run went on to `step` (a DAG task: another process of the run): where a killed run died, and
        the process now doing it (`_killed_in_publish`). A run told to stop whose step swallowed it (DuckDB
        turns the signal into its own "Query interrupted", a source's `except Exception` takes that for the
        source's failure) stops here, in the step it was told in."""
        if self.stopped is not None:
            raise self.stopped
        self.step = step
        if (record := _read(_path(self.home, self.run_id))) is not None and record.status == "running":
            _write(self.home, record.model_copy(update={"step": step, "step_at": datetime.now(UTC),
                                                        **runlock.this_process()}))

    def published(self) -> None:
        """meta.run holds the run now."""
        self._done = True
        _path(self.home, self.run_id).unlink(missing_ok=True)

    @contextmanager
    def stoppable(self, sender: str = "") -> Iterator[None]:
        """While the block runs, a signal of STOP_SIGNALS stops the run where it is, raising `Stopped`: what the
        run holds is let go and removed on the way out (its copy of the warehouse, the home's lock) and `failing`
        records why, where the default SIGTERM ended the process on the spot, recorded as killed by kill -9 or
        a power cut, its full-size copy of the warehouse left for the next run. Once told, later signals are let
        be while it stops; once published, a stop undoes nothing and is let be. A signal ignored when the run began
        stays ignored (SIGINT for `rtw run &` from a script, with or without nohup: Ctrl-C at that terminal is not meant
        for it). Signals are the main thread's: called from another, the block runs as it would without. `sender`: who
        sends them, said with the stop (a DAG task's are Airflow's)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._sender = sender
        before = {number: signal.signal(number, self._stop) for number in STOP_SIGNALS
                  if signal.getsignal(number) is not signal.SIG_IGN}
        try:
            yield
        finally:
            for swapped, handler in before.items():
                signal.signal(swapped, handler)

    def _stop(self, number: int, _frame: object) -> None:
        if self.stopped is None and not self._done:
            self.stopped = Stopped(signal.Signals(number).name, datetime.now(UTC), self._sender)
            raise self.stopped

    @contextmanager
    def failing(self) -> Iterator[None]:
        """Record the run as failed in its step if the block raises (then re-raised): another run holding
        the home in words of its own, anything else by `said`."""
        try:
            yield
        except runlock.RunBusy as exc:
            self._fail(printable(str(exc)))
            raise
        except BaseException as exc:  # a timeout or an interrupt too: the night ended here
            if self.stopped is not None:  # told to stop, whatever the error it became (`reached`)
                if self._done:  # after it was published (a DAG publish learns it after the swap): nothing to record
                    raise
                self._fail(f"{self.stopped}: told to stop, it stopped in its step and published nothing")
                self.raise_stop(exc)
            self._fail(said(exc))
            raise

    def raise_stop(self, exc: BaseException) -> NoReturn:
        """Raise the stop the run was told (`stopped`) in place of `exc`, the error it may have become (DuckDB's
        "Query interrupted", a step's own error), from it; `exc` itself when it is the stop."""
        assert self.stopped is not None
        if exc is self.stopped:
            raise exc
        raise self.stopped from exc

    def _fail(self, reason: str) -> None:
        """Recorded even when the run never took the home (it has no record yet)."""
        now = datetime.now(UTC)
        record = _read(_path(self.home, self.run_id)) or self._new_record(now)
        _write(self.home, record.model_copy(update={"status": "failed", "step": self.step, "reason": reason,
                                                    "ended_at": now}))


def record_dag_run_failed(home: Home, run_id: str, dag_run_id: str, why: str) -> bool:
    """A DAG run that failed between two of its tasks (the DAG's on_failure_callback, once it has released the run's
    lease: runlock.release_failed_dag_run) has no task at work to record it: its night, still `running`, would be shown
    killed ("ended without a word"). It is recorded failed in the step it had reached, with the DAG run's state and
    `why` (Airflow's reason: timed_out, task_failure). A night already recorded failed keeps its own reason; one of
    another DAG run is left as it is. Whether it was recorded."""
    record = _read(_path(home, run_id))
    if record is None or record.status != "running" or record.dag_run_id != dag_run_id:
        return False
    reason = printable(f"its Airflow DAG run {dag_run_id} failed ({why}) while it was in this step; its tasks' logs "
                       "say why")
    _write(home, record.model_copy(update={"status": "failed", "reason": reason, "ended_at": datetime.now(UTC)}))
    return True


def _records(home: Home) -> list[NightRecord]:
    """Every record, oldest first."""
    folder = _folder(home)
    found = [r for path in folder.glob("*.json") if (r := _read(path)) is not None] if folder.is_dir() else []
    return sorted(found, key=lambda r: (r.started_at, r.run_id))


def _killed(record: NightRecord) -> NightRecord:
    """A record of a run that ended without a word, saying when it was last heard of: when its step began (a
    record written before step_at was kept says nothing of it)."""
    heard = f"; its step began at {record.step_at:%Y-%m-%d %H:%M:%S} UTC, its last word" if record.step_at else ""
    return record.model_copy(update={"status": "killed", "reason": KILLED + heard})


def _killed_in_publish(record: NightRecord) -> bool:
    """A DAG run whose publish task's process, on this host, is gone: publish is the run's last step and one
    process (no retry; every other task of the run has ended before it), so nothing of the run is left to
    publish it. Publish names itself in the lease once it holds the home (runlock.publishing); killed while
    it waited for the home, only this record names it. On another host the process cannot be asked: the
    lease decides."""
    return (record.trigger == "airflow" and record.step == DAG_PUBLISH
            and runlock.process_gone(record.model_dump(include={"host", "pid", "started", "pid_namespace"})))


def unpublished(home: Home, published_runs: set[str]) -> list[NightRecord]:
    """The nights that did not publish (a run killed after its publish is in `published_runs`), oldest
    first; one recorded running whose run no longer holds the home is shown killed."""
    nights = []
    for record in _records(home):
        if record.run_id in published_runs:
            continue
        if record.status == "running" and (not runlock.holds(home, record.run_id) or _killed_in_publish(record)):
            record = _killed(record)
        nights.append(record)
    return nights
