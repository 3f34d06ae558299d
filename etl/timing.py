"""Where a run spends its time and memory: named steps, for the log and for `make bench`.

`with step("validate"):` logs the step's wall time at debug level and appends a `StepTime` to
`recorded`, which benchmarks/bench.py reads. With `measure_memory` on (the benchmark turns it on;
Linux only), each step also reports its own peak resident memory: the kernel's high-water mark is
reset as the step starts (/proc/self/clear_refs) and read as it ends (VmHWM).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rtw")

measure_memory = False
recorded: list[StepTime] = []
_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class StepTime:
    name: str
    seconds: float
    peak_mib: float | None  # the step's own peak resident memory, when measured


def _peak_kib() -> int:
    line = next(x for x in _STATUS.read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


_open_peaks: list[int] = []  # the peak so far (KiB) of each step in progress, outermost first


def _reset_peak() -> None:
    """Fold the high-water mark into the steps in progress, then reset it to what is resident now."""
    high = _peak_kib()
    _open_peaks[:] = [max(p, high) for p in _open_peaks]
    _CLEAR_REFS.write_text("5")


@contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block (and measure its peak memory when asked) as the step `name`; steps may nest."""
    if measure_memory:
        _reset_peak()
        _open_peaks.append(0)
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        peak = None
        if measure_memory:
            own = max(_open_peaks.pop(), _peak_kib())
            _open_peaks[:] = [max(p, own) for p in _open_peaks]
            peak = round(own / 1024, 1)
        recorded.append(StepTime(name, round(seconds, 3), peak))
        log.debug("step %s: %.2f s", name, seconds)
