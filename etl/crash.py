"""A test hook that crashes a real run where a test needs it, as a power cut or `kill -9` would.

With env RTW_TEST_CRASH_AT=<point>, the process SIGKILLs itself when it reaches that point (a no-op
otherwise). The points, in the order a run meets them: `extracted` (a file archived and staged),
`harmonised` (a source's harmonised Parquet written), `before_swap` (the next warehouse validated
and written, not yet renamed in), `after_swap`, `outputs` (marts exported, report not yet written).
`rtw forget` meets `before_swap` and `after_swap` too (its erasure published, its files not yet scrubbed).
tests/test_hostile.py kills a run at each. A DAG run meets `leased` before them (its plan_run has written
the home's lease and holds the home's lock still); `rtw run`, which takes no lease, never does. A worker
process of `rtw run` (etl/source_worker.py) meets `preparing` as it starts, before it prepares its source.

With env RTW_TEST_HOLD_AT=<point>, the process stops there and waits until it is ended, as a step that hangs
would: what ends it can be tested without a race against the step's own end (tests/test_crash_stopped.py); or till
it is sent SIGUSR1, after which it goes on and holds nowhere (tests/test_runlock.py: a run holding the home while
another starts). It says on stderr that it holds.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RTW_TEST_CRASH_AT"
POINTS = ("extracted", "harmonised", "before_swap", "after_swap", "outputs")
DAG_POINTS = ("leased",)
WORKER_POINTS = ("preparing",)
HOLD_ENV = "RTW_TEST_HOLD_AT"


def crash_point(name: str) -> None:
    """Die here when the test hook names this point; wait here for good when the hold hook does."""
    assert name in POINTS + DAG_POINTS + WORKER_POINTS, name
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(HOLD_ENV) == name:
        signal.signal(signal.SIGUSR1, lambda _number, _frame: os.environ.pop(HOLD_ENV, None))
        os.write(2, f"held at {name} ({HOLD_ENV})\n".encode())  # for the test to act on
        while os.environ.get(HOLD_ENV) == name:
            signal.pause()
