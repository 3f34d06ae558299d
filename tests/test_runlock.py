"""One run at a time per home: the file lock, the DAG lease, and two real `rtw run` at once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from task_processes import task_process

from etl import runlock
from etl.config import REPO_ROOT, SettingError, resolve_home
from etl.crash import HOLD_ENV
from etl.synth import generate

RTW = str(Path(sys.executable).with_name("rtw"))
BUSY = re.compile(r"another run \((?P<run>[^,]+), pid (?P<pid>\d+), since (?P<since>[^)]+)\) holds this home")


def test_a_second_holder_is_refused_with_who_holds_the_home(tmp_path):
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "run-a"), pytest.raises(runlock.RunBusy) as refused, \
            runlock.run_lock(home, "run-b"):
        pass
    found = BUSY.search(str(refused.value))
    assert found and found["run"] == "run-a" and int(found["pid"]) == os.getpid()
    with runlock.run_lock(home, "run-c"):  # released when the first holder ended
        pass


def test_a_waiting_run_gets_the_home_when_the_holder_ends(tmp_path):
    home = resolve_home(tmp_path).ensure()
    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with runlock.run_lock(home, "run-a"):
            held.set()
            release.wait(60)
            released.set()  # as the holder lets go: the waiting run cannot have the home before

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(60)
    threading.Timer(0.5, release.set).start()
    with runlock.run_lock(home, "run-b", wait=60):
        assert released.is_set()  # it waited for the holder's end
    holder.join()


def test_a_killed_holder_never_blocks_the_next_run(tmp_path):
    home = resolve_home(tmp_path).ensure()
    code = ("import sys, time\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
            "with runlock.run_lock(resolve_home(sys.argv[1]), 'doomed'):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    with task_process(code, str(tmp_path), said="held"), \
            pytest.raises(runlock.RunBusy, match="doomed"), runlock.run_lock(home, "next"):
        pass
    with runlock.run_lock(home, "next"):  # the kernel dropped the lock with the process
        pass


def test_a_dag_lease_holds_the_home_across_tasks_until_publish_ends_it(tmp_path):
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1")
    with pytest.raises(runlock.RunBusy, match=r"another run \(dag-1, pid \d+"), runlock.run_lock(home, "cli"):
        pass
    with runlock.heartbeat(home, "dag-1"):  # an extract task of that DAG run
        pass
    with pytest.raises(runlock.RunBusy), runlock.heartbeat(home, "dag-2"):
        pass
    with runlock.run_lock(home, "dag-1", lease="dag-1"):  # its publish
        runlock.end_lease(home, "dag-1")
    with runlock.run_lock(home, "cli"):
        pass


def test_a_dead_lease_is_removed_and_its_dag_run_cannot_publish(tmp_path, monkeypatch):
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "dag-1", lease="replace"):
        runlock.take_lease(home, "dag-1")
    lease = json.loads((tmp_path / runlock.LEASE_NAME).read_text())
    lease["heartbeat"] -= runlock.lease_seconds() + 1  # its worker was killed long ago
    (tmp_path / runlock.LEASE_NAME).write_text(json.dumps(lease))
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None
    with pytest.raises(runlock.RunBusy), runlock.run_lock(home, "dag-1", lease="dag-1"):
        pass  # a lease that is no longer there is lost: publishing now could overwrite newer data


def test_a_dag_run_whose_publish_failed_leaves_the_home_free_and_its_publish_may_be_retried(tmp_path):
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1")
    with pytest.raises(runlock.RunBusy) as held, runlock.run_lock(home, "cli"):
        pass  # while the DAG run works, a live lease holds the home, and the message says whose it is
    assert BUSY.search(str(held.value)) and "by its lease (.run.lease), renewed " in str(held.value)
    assert "the lease lapses at " in str(held.value)
    with runlock.run_lock(home, "dag-1", lease="dag-1"):  # its publish fails
        runlock.release_lease(home, "dag-1")
    # A task of that run starting now: while its DAG run runs (cleared for a retry), it takes the lease back while it
    # works; once the DAG run no longer runs (marked failed as the task began), it is refused and leaves it released.
    with runlock.heartbeat(home, "dag-1", runs=lambda: True), \
            pytest.raises(runlock.RunBusy, match=r"another run \(dag-1"), runlock.run_lock(home, "cli"):
        pass
    runlock.release_lease(home, "dag-1")  # failed again
    with pytest.raises(runlock.RunBusy, match="the lease of run dag-1 was released"), \
            runlock.heartbeat(home, "dag-1", runs=lambda: False):
        pass
    assert runlock.read_lease(home)["released"]
    with runlock.run_lock(home, "dag-1", lease="dag-1"):  # a retry of that publish (the task cleared)
        pass
    with runlock.run_lock(home, "cli"):  # `rtw run` is not held off for the lease's time-to-live
        assert runlock.read_lease(home) is None
    with pytest.raises(runlock.RunBusy, match="the lease of run dag-1 is gone"), \
            runlock.run_lock(home, "dag-1", lease="dag-1"):
        pass  # once another run has had the home, the failed run's outcomes may be older than what is live


def test_a_dag_plan_replaces_the_lease_of_a_dag_run_that_has_ended_not_of_one_still_running(tmp_path):
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1", dag_run_id="backfill__2026-12-01T02:00:00+00:00")
    with pytest.raises(runlock.RunBusy, match=r"Airflow DAG run backfill__2026-12-01T02:00:00\+00:00, by its lease"), \
            runlock.run_lock(home, "dag-2", lease="replace", running=lambda lease: True):
        pass
    with runlock.run_lock(home, "dag-2", lease="replace", running=lambda lease: False):
        runlock.take_lease(home, "dag-2", dag_run_id="scheduled__2026-12-02T02:00:00+00:00")
    assert runlock.read_lease(home)["run_id"] == "dag-2"


@pytest.mark.integration
def test_a_run_started_while_another_holds_the_home_exits_cleanly_and_the_holder_completes(tmp_path):
    generate(tmp_path, patients=30, seed=5)
    env = {**os.environ, "RTW_PSEUDONYM_KEY": "two-runs-key", "COLUMNS": "200"}
    command = [RTW, "run", "--home", str(tmp_path)]
    # The first held once it staged an export (etl/crash.py), the home its own, till the second has tried: started
    # together, the second could start after the first had ended.
    holder = subprocess.Popen(command, cwd=REPO_ROOT, env=env | {HOLD_ENV: "extracted"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert holder.stdout is not None
    ending = threading.Timer(600, holder.kill)  # a holder that does not go on is not waited for
    ending.start()
    try:
        said = [holder.stdout.readline()]
        while "held at extracted" not in said[-1]:
            said.append(holder.stdout.readline())
            assert said[-1], "".join(said)  # it ended before it extracted
        second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        holder.send_signal(signal.SIGUSR1)  # let go on
        said.append(holder.stdout.read())  # to its end (communicate() would lose what readline read ahead)
        holder.wait()
    finally:
        ending.cancel()
        holder.kill()
    outputs = ["".join(said), second.stdout + second.stderr]
    assert [holder.returncode, second.returncode] == [0, 1], outputs
    loser = outputs[1]
    assert BUSY.search(loser), loser
    assert "Traceback" not in loser
    for output in outputs:
        assert "No such file or directory" not in output and ".tmp" not in output
    # The winner published the warehouse; no temporary is left anywhere in the home.
    assert (tmp_path / "warehouse.duckdb").is_file()
    assert [p for p in tmp_path.rglob("*") if p.name.endswith((".partial", ".tmp", ".next"))] == []


@pytest.mark.integration
def test_a_run_told_to_wait_runs_after_the_one_holding_the_home(tmp_path):
    generate(tmp_path, patients=30, seed=6)
    env = {**os.environ, "RTW_PSEUDONYM_KEY": "waiting-key", "COLUMNS": "200"}
    command = [RTW, "run", "--home", str(tmp_path), "--wait", "600"]
    runs = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=900)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        (first_finished, second_started), = con.execute(
            "SELECT min(finished_at), max(started_at) FROM meta.run").fetchall()
        assert con.execute("SELECT count(*) FROM meta.run").fetchone() == (2,)
    finally:
        con.close()
    assert second_started >= first_finished  # one after the other, never overlapping


def test_report_and_export_wait_for_a_run_holding_the_home_and_otherwise_name_it(synthetic_run, tmp_path):
    from typer.testing import CliRunner

    from etl.cli import app

    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)  # the shared home is read only
    home = resolve_home(tmp_path / "home")
    runner = CliRunner()
    latest = os.readlink(home.reports / "latest")
    with runlock.run_lock(home, "nightly-1"):  # they write the report's `latest` and the marts' `current` too
        for command in ("report", "export"):
            refused = runner.invoke(app, [command, "--home", str(home.root)], env={"COLUMNS": "250"})
            assert refused.exit_code == 1 and "another run (nightly-1, pid" in refused.output, refused.output
            assert "--wait" in refused.output
    assert os.readlink(home.reports / "latest") == latest

    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with runlock.run_lock(home, "nightly-2"):
            held.set()
            release.wait(60)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(60)
    threading.Timer(0.5, release.set).start()
    done = runner.invoke(app, ["export", "--home", str(home.root), "--wait", "30"], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert released.is_set() and "Parquet marts in" in done.output  # it ran once the holder had ended
    holder.join()


# A DAG publish in a process of its own: it takes the home with its run's lease and writes itself there.
_PUBLISH = ("import sys, time\nfrom etl import runlock\nfrom etl.config import resolve_home\n"
            "home = resolve_home(sys.argv[1])\n"
            "with runlock.run_lock(home, 'dag-1', kind='airflow', lease='replace'):\n"
            "    runlock.take_lease(home, 'dag-1', dag_run_id='scheduled__2026-12-02T02:00:00+00:00')\n"
            "with runlock.run_lock(home, 'dag-1', kind='airflow', lease='dag-1'):\n"
            "    runlock.publishing(home, 'dag-1')\n"
            "    print('publishing', flush=True)\n    time.sleep(60)\n")


def test_the_lease_of_a_dag_publish_that_was_killed_is_taken_over_at_once_saying_so(tmp_path, caplog):
    """Its lease, fresh, held the home two hours (RTW_LEASE_TTL): `rtw run` and the next night were refused."""
    home = resolve_home(tmp_path).ensure()
    with task_process(_PUBLISH, str(tmp_path), said="publishing") as publish, \
            pytest.raises(runlock.RunBusy, match=r"another run \(dag-1, pid \d+"), runlock.run_lock(home, "cli"):
        pass  # alive: never taken over
    with runlock.run_lock(home, "cli-2"):
        assert runlock.read_lease(home) is None
    [said] = [r.getMessage() for r in caplog.records if "takes the home over" in r.getMessage()]
    assert said.startswith("run cli-2 takes the home over from run dag-1, Airflow DAG run "
                           "scheduled__2026-12-02T02:00:00+00:00: its lease (.run.lease), renewed ")
    assert f"by its process pid {publish.pid} on {socket.gethostname()} (publish) alone, and that process is gone" \
        in said and "the lease would have held the home until " in said


def _lease(home, **process) -> None:
    """A live lease of run dag-1 whose run is down to one process, the one named."""
    lease = {"run_id": "dag-1", "kind": "airflow", "since": "2026-12-02 02:00:00 UTC", "heartbeat": time.time(),
             "alone": True, **process}
    (home.root / runlock.LEASE_NAME).write_text(json.dumps(lease))


def test_a_lease_is_taken_over_when_its_pid_is_another_process_s_never_while_its_process_may_live(tmp_path):
    home = resolve_home(tmp_path).ensure()
    _lease(home, pid=os.getpid(), host=socket.gethostname(), started="another-boot/1")  # the pid lives: another's
    assert not runlock.holds(home, "dag-1")
    with runlock.run_lock(home, "cli"):
        assert runlock.read_lease(home) is None
    me = runlock.this_process()
    assert me["started"] is not None  # Linux: /proc says when a process started
    container = {**me, "pid": 2 ** 22 + 1, "pid_namespace": "pid:[1]"}  # no such pid here; another container's
    for alive in (me, {**me, "host": "worker-2.example.org", "pid": 1}, {**me, "started": None}, container):
        _lease(home, **alive)  # the same process; another host's; a live pid whose start is unknown; a container's
        with pytest.raises(runlock.RunBusy, match="dag-1"), runlock.run_lock(home, "cli"):
            pass
        assert runlock.holds(home, "dag-1")


def test_a_lease_between_plan_and_publish_of_tasks_in_processes_of_their_own_holds_until_it_lapses(tmp_path):
    """Its extract and harmonise tasks are many processes, perhaps on other hosts, the next not started yet:
    plan_run's process, gone, says nothing of them."""
    home = resolve_home(tmp_path).ensure()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1")
    lease = runlock.read_lease(home)
    (tmp_path / runlock.LEASE_NAME).write_text(json.dumps({**lease, "pid": int(gone.stdout)}))
    with pytest.raises(runlock.RunBusy, match="dag-1"), runlock.run_lock(home, "cli"):
        pass
    assert runlock.holds(home, "dag-1")


def test_a_dag_run_whose_tasks_run_in_the_process_that_took_its_lease_is_down_to_that_process(tmp_path):
    """`airflow dags test` (rtw demo, make run) runs every task in the process that drives the run."""
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1")
    assert not runlock.read_lease(home).get("alone")
    with runlock.heartbeat(home, "dag-1"):  # an extract task, in the same process
        assert runlock.read_lease(home)["alone"] is True


def _lapsed_lease(home) -> None:
    """Run dag-1's lease, its heartbeat older than its time-to-live: the next run to take the home removes it."""
    with runlock.run_lock(home, "dag-1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "dag-1", dag_run_id="scheduled__2026-12-01T02:00:00+00:00")
    lease = runlock.read_lease(home)
    (home.root / runlock.LEASE_NAME).write_text(json.dumps({**lease, "heartbeat": time.time() - 3 * 3600}))


def _other_run_takes_the_home(home, how: str):
    """`rtw run` (it removes the lapsed lease, and holds the home by its lock) or the next night's plan_run
    (it replaces the lease with its own), as a context manager: the home is theirs inside it."""
    if how == "rtw run":
        return runlock.run_lock(home, "cli-2")

    @contextlib.contextmanager
    def plan():
        with runlock.run_lock(home, "dag-2", kind="airflow", lease="replace", running=lambda lease: False):
            runlock.take_lease(home, "dag-2", dag_run_id="scheduled__2026-12-02T02:00:00+00:00")
        yield

    return plan()


@pytest.mark.parametrize("how", ["rtw run", "the next night's plan_run"])
def test_a_late_heartbeat_never_brings_back_a_lease_another_run_removed_or_took_over(tmp_path, monkeypatch, how):
    """A renewal read the lease, then wrote it back renewed, without the lock: a run taking the home between
    the two (the lapsed lease removed, or replaced by its own) was followed by the old lease written again,
    and two runs held the home. The other run is made to act exactly there: between the renewal's read and
    its write."""
    home = resolve_home(tmp_path).ensure()
    _lapsed_lease(home)
    read, acted = threading.Event(), threading.Event()
    reading = runlock.read_lease

    def read_then_let_the_other_run_act(home_: Any) -> dict[str, Any] | None:
        lease = reading(home_)
        if threading.current_thread().name == "late-heartbeat":
            read.set()
            acted.wait(60)  # the other run has taken the home, or was refused: never a timing
        return lease

    monkeypatch.setattr(runlock, "read_lease", read_then_let_the_other_run_act)
    renewal: list[BaseException | None] = []

    def renew() -> None:
        try:
            runlock._renew(home, "dag-1")
            renewal.append(None)
        except runlock.RunBusy as exc:
            renewal.append(exc)

    late = threading.Thread(target=renew, name="late-heartbeat")
    late.start()
    assert read.wait(60)
    with contextlib.ExitStack() as other:
        try:
            other.enter_context(_other_run_takes_the_home(home, how))
            other_holds = True
        except runlock.RunBusy:  # the renewal holds the lock while it reads and writes
            other_holds = False
        finally:
            acted.set()
        late.join()
        lease = reading(home)
        if other_holds:  # then the late heartbeat must not hold the home too
            assert lease is None or lease["run_id"] != "dag-1", f"{how} and dag-1 both hold the home: {lease}"
            assert isinstance(renewal[0], runlock.RunBusy)
    assert not other_holds  # the renewal, under the lock, ran whole before the other run could take the home
    assert renewal == [None] and lease is not None and lease["run_id"] == "dag-1"


def test_a_lease_setting_that_is_no_number_of_seconds_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read with float() as runlock was imported: "could not convert string to float: '2h'", a traceback of any
    # command importing it (rtw status), naming no setting.
    monkeypatch.setenv("RTW_LEASE_TTL", "2h")
    with pytest.raises(SettingError, match=r"^RTW_LEASE_TTL='2h' is not a number of seconds above 0 \(e\.g\. 7200\)"):
        runlock.lease_seconds()
