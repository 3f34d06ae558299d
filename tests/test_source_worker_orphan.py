"""A source worker of `rtw run` ends with the run's process, however that ends: a run killed with SIGKILL
cannot end its workers, and an orphan went on harmonising its source beside the next run's. A worker whose run
is gone before it asked ends before it imports the pipeline; Ctrl-C, which reaches each worker too, is the run's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from processes import alive

# The run's stand-in: starts a worker as pipeline._prepare_in_workers does, says its pid, and waits to be killed.
# The worker's stdin is a pipe this test holds open, so the worker waits for its job as long as it lives; its
# stderr goes to the file the test may name.
_RUN = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-m", "etl.source_worker", str(__import__("os").getpid())],
                          stdin=int(sys.argv[1]), pass_fds=(int(sys.argv[1]),),
                          stderr=open(sys.argv[2], "w") if len(sys.argv) > 2 else None)
print(worker.pid, flush=True)
time.sleep(600)
"""


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
            if not alive(worker):
                break
            time.sleep(0.1)
        assert not alive(worker), "the worker outlived the run that started it"
    finally:
        os.close(job_write)
        os.close(job_read)
        run.kill()


def test_a_worker_whose_run_is_gone_ends_before_importing_the_pipeline() -> None:
    gone = subprocess.Popen(["true"])  # a run gone: its pid is no parent of the worker
    gone.wait()
    worker = subprocess.run([sys.executable, "-X", "importtime", "-m", "etl.source_worker", str(gone.pid)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    assert "Traceback" not in worker.stderr, worker.stderr
    # Its second of imports (the pipeline, pandas, DuckDB) is not spent for a run nobody waits on.
    assert not re.search(r"\|\s+etl\.pipeline$", worker.stderr, re.MULTILINE), "the worker imported the pipeline"


def _ignores_sigint(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        ignored = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return bool(ignored >> (signal.SIGINT - 1) & 1)


def test_a_worker_leaves_ctrl_c_to_its_run(tmp_path: Path) -> None:
    job_read, job_write = os.pipe()
    said = tmp_path / "worker.stderr"
    run = subprocess.Popen([sys.executable, "-c", _RUN, str(job_read), str(said)], stdout=subprocess.PIPE, text=True,
                           pass_fds=(job_read,))
    try:
        assert run.stdout is not None
        worker = int(run.stdout.readline())
        for _ in range(300):  # once it set its handlers, it waits for its job
            if _ignores_sigint(worker):
                break
            time.sleep(0.1)
        assert _ignores_sigint(worker), "Ctrl-C would end the worker with a traceback in the run's stderr"
        os.kill(worker, signal.SIGINT)  # as Ctrl-C reaches the run's process group
        run.send_signal(signal.SIGKILL)  # the run ends its workers (here: the kernel, as the run is gone)
        run.wait()
        for _ in range(300):
            if not alive(worker):
                break
            time.sleep(0.1)
        assert not alive(worker)
        assert "KeyboardInterrupt" not in said.read_text(), said.read_text()
    finally:
        os.close(job_write)
        os.close(job_read)
        run.kill()
