"""A run told to stop (SIGTERM: a scheduler's timeout, a shutdown, `kill`; SIGINT: Ctrl-C) stops where it is and says
so: one line and a non-zero exit, its record in the home failed in its step with when and by what it was stopped,
nothing of it published nor left behind, and the next run loads the change. Each is a real `rtw run` in its own
process, on a copy of the hostile suite's loaded home (hostile_home.py), signalled once its progress line says it
reached the step (a stop in harmonise, then its next run's in publish, on one copy)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from hostile_home import KEY, RTW, assert_kept, home_fixtures, rtw, run_count, withdraw_last_records
from status_runs import failed_night, last_runs

from etl.config import REPO_ROOT, resolve_home
from etl.repair import stale_temporaries

pytestmark = pytest.mark.integration


loaded, home = home_fixtures(withdraw_last_records)  # a changed night


def _stop_signals_heard() -> None:
    """The run's stop signals as a terminal's foreground run has them: a pytest started in the background from a
    script ignores SIGINT, and the run keeps a signal ignored (tests/test_crash_stop_ignored.py)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def _signalled(home: Path, number: signal.Signals, when_said: str, *args: str, **env: str) -> tuple[int, str, int]:
    """`rtw run` (with `args` and `env`), sent signal `number` as soon as its progress says `when_said`: its exit code,
    output and process id."""
    run = subprocess.Popen([RTW, "run", *args, "--home", str(home)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, preexec_fn=_stop_signals_heard,
                           env={**os.environ, "RTW_PSEUDONYM_KEY": KEY, "COLUMNS": "250", **env})
    assert run.stdout is not None
    said, signalled = [], False
    ending = threading.Timer(600, run.kill)  # a run that does not stop is not waited for, nor left behind
    ending.start()
    try:
        for line in run.stdout:  # to its end: communicate() would lose what this loop has read ahead
            said.append(line)
            if when_said in line and not signalled:
                run.send_signal(number)
                signalled = True
        run.wait()
    finally:
        ending.cancel()
        run.kill()
    return run.returncode, "".join(said), run.pid


# Ctrl-C while registry_it (the changed source) is harmonised, then SIGTERM as its next run publishes, on the same
# home: that next run reaching publish shows the first stop left it free to go on with the change. Each run is held
# at the end of its step (etl/crash.py) till the signal ends it: a stop acted on late would otherwise find the run in
# its next step, or published.
STOPS = [(signal.SIGINT, "registry_it: harmonising", "extract and harmonise registry_it", "harmonised"),
         (signal.SIGTERM, "publishing the warehouse", "publish", "before_swap")]


def test_a_run_told_to_stop_stops_saying_so_and_the_next_run_loads_the_change(home, loaded):
    for number, when_said, step, held_at in STOPS:
        code, said, _ = _signalled(home, number, when_said, RTW_TEST_HOLD_AT=held_at)
        assert code == 1, said
        last = said.strip().splitlines()[-1]
        assert re.fullmatch(rf"rtw: the run could not complete: stopped by {number.name} at \d{{4}}-\d\d-\d\d "
                            rf"\d\d:\d\d:\d\d UTC in step {re.escape(step)}; nothing of it was published.*", last), said
        assert "Traceback" not in said
        status = rtw(home, "status", env={"COLUMNS": "1000"})
        state, in_step, reason = failed_night(last_runs(status.stdout))  # the newest
        assert (state, in_step) == ("failed", step)  # never "killed (kill -9 ...)", never running
        assert reason.startswith(f"stopped by {number.name} at ")
        assert run_count(home) == loaded.runs  # the last good warehouse stands, all of it
        assert_kept(home, loaded)
        assert stale_temporaries(resolve_home(home)) == []  # its copy of the warehouse went with it
    done = rtw(home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_count(home) == loaded.runs + 1


def _workers_of(pid: int) -> list[str]:
    """The source worker processes (etl/source_worker.py) run `pid` started that still exist."""
    return [cmd.parent.name for cmd in Path("/proc").glob("[0-9]*/cmdline")
            if _read(cmd).split("\0")[-3:-1] == ["etl.source_worker", str(pid)]]  # etl/interpreter.py's command


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # ended meanwhile
        return ""


def test_a_run_told_to_stop_while_its_sources_are_prepared_in_worker_processes_stops_them_too(home, loaded):
    # Its workers held as they start (etl/crash.py), as a long harmonise would hold them: the run must end them, or
    # it would wait for them for good.
    code, said, pid = _signalled(home, signal.SIGTERM, "(worker process)", "--force", RTW_PARALLEL_MIN_BYTES="0",
                                 RTW_TEST_HOLD_AT="preparing")
    assert code == 1, said
    assert "stopped by SIGTERM" in said.strip().splitlines()[-1], said
    [record] = [json.loads(p.read_text()) for p in (home / "runs").glob("*.json")]
    assert record["status"] == "failed" and record["step"].endswith("(worker processes)")
    assert _workers_of(pid) == [], said  # ended with it ("killed by signal 15"), waited for
    assert not list(home.glob(f"staging/*/harmonised/{record['run_id']}")), said
    assert run_count(home) == loaded.runs
    assert rtw(home).returncode == 0
