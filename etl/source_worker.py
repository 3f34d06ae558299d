"""A worker process of `rtw run` (etl/pipeline.py): extract and harmonise one source.

Told what to do as one JSON object on stdin (home, run id, source, key, mappings folder, log level);
answers with one JSON line on stdout (the source's outcome and the steps it took). Its log lines go
to stderr, the run's. A crash or a kill leaves no answer: the run fails the source with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path

from etl import fsio, timing
from etl.config import Home
from etl.pipeline import prepare_source


def _die_with_the_run(run_pid: int) -> None:
    """Ask the kernel to end this worker as soon as the run's process ends, however it ends (Linux; elsewhere
    nothing): a run killed with SIGKILL cannot end its workers, and an orphan would go on harmonising its source
    beside the next run's. A run gone before the request was made: the worker ends now."""
    with contextlib.suppress(AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != run_pid:
        sys.exit(0)


def main() -> None:
    _die_with_the_run(int(sys.argv[1]))
    job = json.loads(sys.stdin.read())
    logging.basicConfig(level=job["log_level"], format="%(levelname)s %(message)s", stream=sys.stderr)
    timing.measure_memory = job["measure_memory"]
    with fsio.private_umask():
        outcome, steps = prepare_source(Home(Path(job["home"])), job["run_id"], job["source_id"], job["key_value"],
                                        Path(job["sources_dir"]))
    print(json.dumps({"outcome": outcome.model_dump(mode="json"), "steps": [dataclasses.asdict(s) for s in steps]}))


if __name__ == "__main__":
    main()
