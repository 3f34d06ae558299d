"""A source worker of `rtw run` ends with the run's process, however that ends: a run killed with SIGKILL
cannot end its workers, and an orphan went on harmonising its source beside the next run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# The run's stand-in: starts a worker as pipeline._prepare_in_workers does, says its pid, and waits to be killed.
# The worker's stdin is a pipe this test holds open, so the worker waits for its job as long as it lives.
_RUN = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-m", "etl.source_worker", str(__import__("os").getpid())],
                          stdin=int(sys.argv[1]), pass_fds=(int(sys.argv[1]),))
print(worker.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_ends_when_the_run_is_killed() -> None:
    job_read, job_write = os.pipe()
    run = subprocess.Popen([sys.executable, "-c", _RUN, str(job_read)], stdout=subprocess.PIPE, text=True,
                           pass_fds=(job_read,))
    try:
        assert run.stdout is not None
        worker = int(run.stdout.readline())
        time.sleep(0.5)  # the worker may be importing still: then it ends on seeing its run gone
        run.send_signal(signal.SIGKILL)
        run.wait()
        for _ in range(300):  # the kernel ends it at once; an orphan waits for its job for ever
            if not _alive(worker):
                break
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the run that started it"
    finally:
        os.close(job_write)
        os.close(job_read)
        run.kill()
