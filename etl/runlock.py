"""One run at a time per home: an OS file lock, and a lease for runs that span processes.

`rtw run` is one process: it holds `flock(2)` on `<home>/.run.lock` from plan to publish. The
kernel drops the lock when the process dies, however it dies, so a killed run never blocks the
next one. The holder writes its run id, pid and start time into the lock file for the message a
second run prints: "another run (<id>, pid <pid>, since <time>) holds this home".

An Airflow DAG run is several processes (plan, one per source for extract and harmonise, publish),
so no single process can hold the flock for the whole run. Its plan task takes a *lease* instead:
under the flock it writes `<home>/.run.lease` (run id, pid, start, heartbeat). The extract and
harmonise tasks renew the heartbeat while they work, under the flock too, and only while the lease on
disk is still their run's (a renewal without it could write back a lapsed lease another run had just
removed or replaced: two runs holding the home); publish, under the flock again, checks the lease is
still its own, publishes and removes it. Anyone taking the flock (`rtw run`, a DAG
plan) treats a lease with a fresh heartbeat as the home being held. A lease whose heartbeat is
older than its time-to-live (a worker killed mid-run) is dead: the next run removes it, and the
DAG run that lost it refuses to publish rather than overwrite newer data with older outcomes.
A DAG plan replaces an airflow lease unless the DAG run that wrote it (the lease names it) is still
running: `max_active_runs=1` does not hold a backfill's runs apart from the others, nor from one
another (a backfill has its own limit), and a plan that took over a running DAG run's lease left
that run to fail at publish, saying its lease had expired. A publish that fails releases the
lease: the home is free at once (it was held for the lease's time-to-live, `rtw run` refused,
naming a run that had ended), yet a retry of that publish (the task cleared) may still take it
back while no other run has.

A lease names a process that alone acts for its run when one does (`alone`): the DAG's publish, the run's
last step and one process, which writes its own pid and start there when it takes the home (`publishing`);
and a DAG run whose tasks all run in one process (`airflow dags test`, `rtw demo`, `make run`: Airflow
runs each task in the process driving the run), known when a later task finds the lease written by its own
process. When that process is known to be gone (this host, its pid not alive, or alive with another start
time: reused), so is the run: nothing of it is left to renew or end the lease, and the next run takes the
home over at once, saying so, rather than being refused for the lease's two hours.

A DAG run whose tasks are processes of their own (the LocalExecutor, Celery, Kubernetes) has no such process:
its extract and harmonise tasks may run side by side, on other hosts. Each process at work for the run says so
in a file of its own, `<home>/.run.working/<run id>-<process>.json` (`at_work`), written before it waits for
the home's lock (a task killed while it waits is named too) and removed when its task ends, however it ends
but killed: an extract or harmonise task for its heartbeat, a publish while it waits for and holds the home,
a plan while it holds the home (killed once it had written the lease, it left nothing of its run at work and
a lease naming its process, as a plan that has ended does: the home was held for the lease's time).
A file needs no lock to be written, so no task is ever at work unnamed. When some are named and every one is
known to be gone, the run was killed at work (kill -9, out of memory, its host rebooted): `rtw run` takes the
home over at once, saying so. A task that starts after that finds the lease gone and refuses; publish too.
Never while one named may live (of another host or container: it cannot be asked), nor while none is named
(between two tasks: the next may start any moment), where the heartbeat alone decides. A DAG plan asks
Airflow instead: a DAG run still running is left to its scheduler (alive: it runs this plan), which retries
or fails the killed task and goes on to publish. The cost: `rtw run` started between a killed task and its
retry takes the home, and that DAG run then refuses to publish, saying its lease is gone.

Why not a lease for `rtw run` too: the flock needs no heartbeat and cannot outlive its process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl import crash, fsio
from etl.config import Home, seconds_setting

LOCK_NAME = ".run.lock"
LEASE_NAME = ".run.lease"
AT_WORK = ".run.working"  # one file per process at work for a DAG run's lease (`at_work`)
def lease_seconds() -> float:
    """How long a lease lives unrenewed: env RTW_LEASE_TTL, else 2 hours (scheduling gaps between tasks included).
    Read at each use, not at import: a wrong value fails what takes or judges a lease, said, not every command."""
    return seconds_setting("RTW_LEASE_TTL", 2 * 3600)
_POLL_SECONDS = 0.2
# A renewal waits this long for the lock: others hold it a moment while this run's lease lives (a run refused);
# longer, a run that took the home over holds it.
RENEW_WAIT_SECONDS = 30.0

log = logging.getLogger("rtw")


class RunBusy(RuntimeError):
    """Another run holds the home; the message names it (and, for a DAG run's lease, its DAG run, when
    it was last renewed and when it lapses)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        said = (f"another run ({holder.get('run_id', 'unknown')}, pid {holder.get('pid', '?')}, "
                f"since {holder.get('since', '?')}) holds this home")
        if holder.get("lease") and "heartbeat" in holder:
            renewed = float(holder["heartbeat"])
            dag_run = f"Airflow DAG run {holder['dag_run_id']}" if holder.get("dag_run_id") else "an Airflow DAG run"
            said += (f": {dag_run}, by its lease ({LEASE_NAME}), renewed {_utc(renewed)}; if that DAG run is no "
                     f"longer running, the lease lapses at {_utc(renewed + lease_seconds())} (RTW_LEASE_TTL)")
        super().__init__(said)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _holder(run_id: str, kind: str) -> dict[str, Any]:
    return {"run_id": run_id, **this_process(), "kind": kind,
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "heartbeat": time.time()}


def this_process() -> dict[str, Any]:
    """This process as a lease, lock file or night record names it: host, pid, start (`process_start`) and
    pid namespace (`_pid_namespace`)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid()),
            "pid_namespace": _pid_namespace()}


def _pid_namespace() -> str | None:
    """This process's pid namespace ("pid:[4026531836]"): containers sharing a home and a host name (one
    given in a compose file) number their processes apart, and one's pid means nothing in another."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process `pid` of this host started, as the kernel counts it: the boot's id and the clock ticks
    from boot to its start (a pid reused by another process, or after a reboot, has another). None where it
    cannot be read (the process gone, a system without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return f"{boot}/{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime; the name before may hold ')'


def process_gone(process: Mapping[str, Any]) -> bool:
    """Whether the process named (host, pid, started) is known to be gone: of this host, and its pid not
    alive or alive with another start (reused). Never one of another host or pid namespace (it cannot be
    asked), nor a live pid whose start was not recorded or cannot be read (it may be the same process)."""
    if not _askable(process):
        return False
    pid = int(process["pid"])
    if not process_lives(pid):
        return True
    started = process.get("started")
    return started is not None and (now := process_start(pid)) is not None and now != started


def _askable(process: Mapping[str, Any]) -> bool:
    """Whether the process named can be asked whether it lives: a pid of this host and pid namespace (not another
    container's)."""
    return (process.get("host") == socket.gethostname() and int(process.get("pid") or 0) > 0
            and process.get("pid_namespace") in (None, _pid_namespace()))


def _lives_here(process: Mapping[str, Any]) -> bool:
    """Whether the process named is known to be alive: askable, its pid alive with the start recorded (one whose start
    was not recorded: alive if its pid is)."""
    return _askable(process) and not process_gone(process)


def _gone_alone(lease: dict[str, Any]) -> bool:
    """A lease whose run was down to one process (`alone`), known to be gone: nothing of the run is left."""
    return bool(lease.get("alone")) and process_gone(lease)


def _working(home: Home) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every process that says it is at work for a run (`at_work`), with its file."""
    folder = home.root / AT_WORK
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            process = json.loads(path.read_text())
        except (OSError, ValueError):  # removed meanwhile: its task ended
            continue
        if isinstance(process, dict):
            yield path, process


def _killed_at_work(home: Home, lease: dict[str, Any]) -> list[dict[str, Any]]:
    """The processes that were at work for a lease's run, when some were and every one is known to be gone
    (`process_gone`): nothing of the run is left at work. Else none (one may live, or none is named)."""
    working = [p for _, p in _working(home) if p.get("run_id") == lease.get("run_id")]
    return working if working and all(process_gone(p) for p in working) else []


def _forget_gone(home: Home, run_id: str) -> None:
    """A task of run `run_id` at work (a retry, the next task): the run goes on, so what its processes killed
    before left says nothing of it any more (else it would, between two tasks, say the run killed)."""
    for path, process in _working(home):
        if process.get("run_id") == run_id and process_gone(process):
            path.unlink(missing_ok=True)


def _forget_at_work(home: Home, keep: str | None = None) -> None:
    """Remove what processes of other runs than `keep` left (killed at work, or of a lease replaced): any of
    them still at work finds its lease gone at its next step."""
    for path, process in _working(home):
        if process.get("run_id") != keep:
            path.unlink(missing_ok=True)


@contextmanager
def at_work(home: Home, run_id: str, step: str) -> Iterator[None]:
    """This process is at work for run `run_id` (a DAG task) while the block runs: a file of its own says so,
    without the home's lock (which it may be waiting for), and goes when the block ends, raising or not."""
    path = fsio.private_folder(home.root / AT_WORK) / f"{run_id}-{secrets.token_hex(8)}.json"
    fsio.write_text(path, json.dumps({**this_process(), "run_id": run_id, "step": step}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # the holder has the lock but has not written its details yet
        found = {}
    return found if isinstance(found, dict) else {}


def read_lease(home: Home) -> dict[str, Any] | None:
    """The DAG run's lease, if one is written (live or not)."""
    try:
        lease = json.loads((home.root / LEASE_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return lease if isinstance(lease, dict) else None


def _is_live(lease: dict[str, Any]) -> bool:
    return not lease.get("released") and time.time() - float(lease.get("heartbeat", 0)) < lease_seconds()


@contextmanager
def run_lock(home: Home, run_id: str, *, wait: float = 0.0, kind: str = "cli", lease: str = "respect",
             running: Callable[[dict[str, Any]], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Hold the home for `run_id`, waiting up to `wait` seconds for another run; raise RunBusy after.

    lease: "respect" (a live lease of another run holds the home; a dead or released one is removed),
    "replace" (a DAG plan: the lease of a DAG run that has ended is replaced; `running(lease)` tells
    whether the DAG run a live lease names is still running, and then it holds the home), or a run id
    (a DAG publish: that run's lease is this run's own, any other means the lease was lost; at work for its
    run from before it waits, `at_work`: killed while it waits for the home, it leaves it to the next run).
    A DAG plan is at work for its run (`at_work`) while it holds the home: killed once it has taken the lease,
    it leaves the home to the next run too.
    """
    with at_work(home, run_id, "publish") if lease not in ("respect", "replace") else nullcontext():
        fd = fsio.open_private(home.root / LOCK_NAME)  # a publish: at work for its run while it waits too
        deadline = time.monotonic() + wait
        try:
            while True:
                busy = _try_hold(home, fd, run_id, lease, running)
                if busy is None:
                    break
                if time.monotonic() >= deadline:
                    raise RunBusy(busy)
                time.sleep(_POLL_SECONDS)
            holder = _holder(run_id, kind)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            # A DAG plan: at work for its run while it holds the home, so killed once its lease is written (before
            # any task of its run is at work) it leaves the home to the next run. Named under the lock: no other
            # run forgets it meanwhile. Ended as a task ends, its run is between two tasks.
            with at_work(home, run_id, "plan_run") if lease == "replace" else nullcontext():
                yield holder
        finally:
            os.close(fd)  # releases the flock


def _try_hold(home: Home, fd: int, run_id: str, lease: str,
              running: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """Take the flock; None when the home is now ours, else who holds it (the flock released again)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # The holder writes its details just after taking the lock: give it a moment to say who it is.
        for _ in range(20):
            if holder := _read_holder(fd):
                return holder
            time.sleep(0.05)
        return {}
    current = read_lease(home)
    if current is not None and lease in ("respect", "replace") and _is_live(current):
        if _gone_alone(current):
            _take_over(home, run_id, current)
            current = None
        elif lease == "respect" and (killed := _killed_at_work(home, current)):  # a DAG plan asks Airflow
            _take_over(home, run_id, current, killed)
            current = None
    if lease == "replace":
        if current is None or not _is_live(current) or running is None or not running(current):
            return None
    elif lease == "respect":
        if current is None:
            return None
        if not _is_live(current):
            (home.root / LEASE_NAME).unlink(missing_ok=True)  # its DAG run died or failed: it will not publish
            _forget_at_work(home)
            return None
    elif current is not None and current.get("run_id") == lease:
        return None
    fcntl.flock(fd, fcntl.LOCK_UN)
    if current is None:
        return {"run_id": f"unknown (the lease of run {lease} is gone: it lapsed, or another run took the home "
                          "and has ended)"}
    return {**current, "lease": True}


def _take_over(home: Home, run_id: str, lease: dict[str, Any], killed: list[dict[str, Any]] | None = None) -> None:
    """Remove the live lease of a run whose last process is gone, or every process `killed` at work for it (under
    the flock), saying so: in the run's log (the terminal for `rtw run`, the task's log for the DAG)."""
    (home.root / LEASE_NAME).unlink(missing_ok=True)
    _forget_at_work(home)
    dag_run = f", Airflow DAG run {lease['dag_run_id']}" if lease.get("dag_run_id") else ""
    renewed = float(lease.get("heartbeat", 0))
    if killed:
        held = (f"the processes at work for it, {', '.join(_named(p) for p in killed)}, and every one is gone "
                "(killed, out of memory, its host restarted: its pid is not alive, or is another process's now)")
    else:
        held = (f"its process {_named(lease)} alone, and that process is gone (killed, out of memory: its pid is "
                "not alive, or is another process's now)")
    log.warning("run %s takes the home over from run %s%s: its lease (%s), renewed %s, was held by %s; the lease "
                "would have held the home until %s", run_id, lease.get("run_id", "unknown"), dag_run, LEASE_NAME,
                _utc(renewed), held, _utc(renewed + lease_seconds()))


def _named(process: Mapping[str, Any]) -> str:
    step = f" ({process['step']})" if process.get("step") else ""
    return f"pid {process.get('pid', '?')} on {process.get('host', '?')}{step}"


def holds(home: Home, run_id: str) -> bool:
    """Whether run `run_id` still holds the home, as far as one who takes no lock can tell (`rtw status`):
    a DAG run by its live lease, a process by the lock file naming it while it lives (on another host: while
    the lock file names it; a run that takes the home after it writes its own name there)."""
    lease = read_lease(home)
    if lease is not None and lease.get("run_id") == run_id and _is_live(lease) and not _gone_alone(lease) \
            and not _killed_at_work(home, lease):
        return True
    try:
        holder = json.loads((home.root / LOCK_NAME).read_bytes() or b"{}")
    except (OSError, ValueError):
        return False
    if not isinstance(holder, dict) or holder.get("run_id") != run_id or int(holder.get("pid") or 0) <= 0:
        return False
    return not process_gone(holder)


def process_lives(pid: int) -> bool:
    """Whether process `pid` of this host lives (pid reuse aside: a pid gone is certain, one alive may not be)."""
    if pid <= 0:  # not a process: kill(0) would ask this process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process
        return True
    return True


def take_lease(home: Home, run_id: str, *, dag_run_id: str | None = None) -> None:
    """Take the home for a DAG run across its tasks (call under run_lock with lease="replace");
    `dag_run_id`: Airflow's id of that DAG run, by which another DAG run's plan asks whether it still runs."""
    _forget_at_work(home, keep=run_id)  # what a replaced lease's run left: that run will not publish
    fsio.write_text(home.root / LEASE_NAME, json.dumps({**_holder(run_id, "airflow"), "dag_run_id": dag_run_id}))
    crash.crash_point("leased")


def publishing(home: Home, run_id: str) -> None:
    """A DAG run's publish holds its lease (under run_lock with lease=run_id): the run's last step, one process,
    not retried. The lease names it, alone: when it is gone, the next run takes the home over."""
    lease = read_lease(home)
    if lease is not None and lease.get("run_id") == run_id:
        fsio.write_text(home.root / LEASE_NAME, json.dumps({**lease, **this_process(), "alone": True,
                                                             "step": "publish", "heartbeat": time.time()}))


def _renew(home: Home, run_id: str, *, entering: bool = False, retake: bool = False) -> None:
    """Renew this run's lease under the home's lock, which whoever removes, replaces or ends a lease holds: read
    and written without it, a lease another run removed or replaced between the two (this one lapsed) was
    written back, and both runs held the home. RunBusy when the lease on disk is not this run's (lost), or
    another holds the lock past RENEW_WAIT_SECONDS (only a run that took the home holds it that long), or when a
    task `entering` finds it released (its DAG run, or its publish, failed: any run may take the home) and may not
    `retake` it (`heartbeat`)."""
    with _locked(home, RENEW_WAIT_SECONDS):
        lease = read_lease(home)
        if lease is None or lease.get("run_id") != run_id:  # lost: never overwrite another run's lease
            raise RunBusy(lease or {"run_id": f"none: the lease of run {run_id} is gone"})
        renewed = {**lease, "heartbeat": time.time()}
        if entering and renewed.pop("released", False):
            if not retake:
                raise RunBusy({"run_id": f"none: the lease of run {run_id} was released (its DAG run, or its publish, "
                                         "failed), the home is free for the next run"})
            log.warning("run %s takes its released lease back: a task of it starts again (cleared) while its DAG run "
                        "runs, and no other run took the home meanwhile", run_id)
        if entering:
            _forget_gone(home, run_id)
        me = this_process()
        if entering and me["started"] is not None and all(lease.get(k) == v for k, v in me.items()):
            renewed["alone"] = True  # a later task in the process that took the lease: that process runs them all
        fsio.write_text(home.root / LEASE_NAME, json.dumps(renewed))


@contextmanager
def _locked(home: Home, wait: float) -> Iterator[None]:
    """The home's lock for a moment (a renewal), waited for up to `wait` seconds, then RunBusy naming its holder.
    Its holder's details in the lock file are left as they are: a renewal is not a run taking the home."""
    fd = fsio.open_private(home.root / LOCK_NAME)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunBusy(_read_holder(fd)) from None
                time.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the flock


def end_lease(home: Home, run_id: str) -> None:
    """Drop the DAG run's lease (under run_lock): the home is free for the next run."""
    lease = read_lease(home)
    if lease and lease.get("run_id") == run_id:
        (home.root / LEASE_NAME).unlink(missing_ok=True)
        _forget_at_work(home)


def release_lease(home: Home, run_id: str) -> None:
    """After a failed publish (under run_lock): the home is free for any run, which removes the lease; until
    one does, a retry of that publish may take it back (its outcomes are still the newest)."""
    lease = read_lease(home)
    if lease and lease.get("run_id") == run_id:
        fsio.write_text(home.root / LEASE_NAME, json.dumps({**lease, "released": True}))


def release_failed_dag_run(home: Home, dag_run_id: str, *, wait: float = 1.0) -> str | None:
    """After a DAG run failed (the DAG's on_failure_callback: a task failed, the run timed out): release its lease
    if the lease still names that DAG run, as after a failed publish (`release_lease`). A run that failed between
    two of its tasks left no process at work to say it is gone: the lease held the home for its time-to-live.
    Never another run's lease, nor one ended or released already, nor one a task of the run is still at work under
    on this host (marked failed by hand, or timed out, mid-task: Airflow stops the task, whose stop frees the home;
    killed instead, it is gone and the next run takes the home over at once). A task at work on another host cannot
    be asked: its lease is released (a file a task killed there left would hold the home till the lease lapsed).
    The run id released, else None; RunBusy when another holds the home's lock past `wait` (a publish of that run
    still at work ends or releases the lease)."""
    def names_it(lease: dict[str, Any] | None) -> bool:
        return (lease is not None and lease.get("dag_run_id") == dag_run_id and not lease.get("released")
                and not any(p.get("run_id") == lease.get("run_id") and _lives_here(p) for _, p in _working(home)))

    if not names_it(read_lease(home)):  # nothing to release: the home's lock is not taken, nor its file made
        return None
    with _locked(home, wait):
        lease = read_lease(home)
        if lease is None or not names_it(lease):
            return None
        release_lease(home, str(lease["run_id"]))
        return str(lease["run_id"])


@contextmanager
def heartbeat(home: Home, run_id: str, *, step: str = "a task",
              runs: Callable[[], bool] | None = None) -> Iterator[None]:
    """For a DAG task between plan and publish (`step`, as the run's record names it): say this process is at
    work for the run (`at_work`), check the lease is this run's and keep it fresh.

    A released lease is taken back only while its DAG run `runs` (as Airflow says): a task of it cleared for a retry.
    Renewed but left released, any run could take the home while the task works; taken back by a task that began as
    its run was marked failed, it would hold the home for its time-to-live once the task ended.

    Raises RunBusy when another run holds the home (this run's lease expired and was taken over), or the lease was
    released and the DAG run no longer runs.
    """
    with at_work(home, run_id, step):
        lease = read_lease(home)  # Airflow asked outside the home's lock, and only for a released lease
        released = lease is not None and lease.get("run_id") == run_id and bool(lease.get("released"))
        _renew(home, run_id, entering=True, retake=released and runs is not None and runs())
        with _beating(home, run_id):
            yield


@contextmanager
def _beating(home: Home, run_id: str) -> Iterator[None]:
    stop = threading.Event()
    every = min(60.0, lease_seconds() / 4)  # a wrong RTW_LEASE_TTL fails the task here, said, not the beat's thread

    def renew() -> None:
        while not stop.wait(every):
            with suppress(OSError, RunBusy):  # a missed beat is not fatal; a lost lease shows at publish
                _renew(home, run_id)

    beat = threading.Thread(target=renew, name=f"rtw-lease-{run_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
