"""What the tests of killed DAG tasks share: a task in a process of its own, killed (kill -9) when the test is
done with it, and the refusal a run meets while DAG run dag-1 holds the home."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from etl import runlock
from etl.config import REPO_ROOT, Home


@contextmanager
def task_process(code: str, *args: str, said: str) -> Iterator[subprocess.Popen[str]]:
    """A task in a process of its own, once it says `said`; killed (kill -9) when the block ends."""
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == said
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def refused_for_dag_1(home: Home) -> None:
    """A run of the command line is refused: DAG run dag-1 holds the home."""
    with pytest.raises(runlock.RunBusy, match=r"another run \(dag-1, pid \d+"), runlock.run_lock(home, "cli"):
        pass
    assert runlock.holds(home, "dag-1")


def replaced_once_airflow_ended_it(home: Home) -> None:
    """The next DAG run's plan asks Airflow about dag-1: refused while it runs, its lease replaced once it ended."""
    with pytest.raises(runlock.RunBusy, match="dag-1"), \
            runlock.run_lock(home, "dag-2", kind="airflow", lease="replace", running=lambda lease: True):
        pass
    with runlock.run_lock(home, "dag-2", kind="airflow", lease="replace", running=lambda lease: False):
        runlock.take_lease(home, "dag-2")
    assert runlock.read_lease(home)["run_id"] == "dag-2"
