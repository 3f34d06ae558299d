"""A run told to stop as its new warehouse goes live is published, and says so: the stop waits for the run to say
itself published (run_record.stops_held), then finds it done and is let be. Stopped there before, the run said
"nothing of it was published" while meta.run held it completed, recorded its night failed and skipped what follows
the swap (the superseded harmonised folders kept, no marts exported, no report)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from etl import pipeline, run_record
from etl.config import Home
from etl.synth import generate

pytestmark = pytest.mark.integration

KEY = "stop-after-swap-key-0123456789abcdef01"


def test_a_stop_right_after_the_swap_leaves_the_run_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = Home(tmp_path / "home").ensure()
    generate(home.root, patients=40, seed=12)  # as conftest.small_run: every source loads
    rename = os.replace

    def renamed_then_stopped(source: object, target: object) -> None:
        rename(source, target)  # type: ignore[arg-type]
        if Path(target) == home.warehouse:  # type: ignore[arg-type]
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's timeout, the moment the new warehouse is live

    monkeypatch.setattr(os, "replace", renamed_then_stopped)
    summary = pipeline.run(home, key_value=KEY)
    assert summary.status == "completed"
    assert summary.report is not None and Path(summary.report).exists()  # what follows the swap was done
    assert not list((home.root / run_record.RECORDS).glob("*.json"))  # no night recorded failed


def test_a_stop_held_meanwhile_is_delivered_after_the_block_with_another_thread_alive(tmp_path: Path):
    # Another thread (DuckDB's, Arrow's) would take a signal the main thread blocks, and Python would run the
    # handler in the main thread all the same: held in Python, it waits.
    night = run_record.Night(Home(tmp_path / "home"), "20261206T000000Z", "cli")
    idle = threading.Event()
    other = threading.Thread(target=idle.wait)
    other.start()
    try:
        with night.stoppable():
            with run_record.stops_held():
                os.kill(os.getpid(), signal.SIGTERM)
                night.published()
            assert night.stopped is None  # delivered once the block ended, the night done: let be
        with pytest.raises(run_record.Stopped), night.stoppable():  # a night not published stops as before
            night._done = False
            with run_record.stops_held():
                os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("not stopped")
    finally:
        idle.set()
        other.join()


def test_a_stop_arriving_as_the_held_handlers_are_put_back_is_delivered(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    # The block's end puts each handler back: a stop arriving then met the holding handler still in place for it,
    # after what had arrived was read, and was lost: the run went on as if never told.
    night = run_record.Night(Home(tmp_path / "home"), "20261206T000000Z", "cli")
    put_back, arrived = signal.signal, []

    def stopped_as_put_back(number: int, handler: object) -> object:
        if not arrived:  # as the first is put back: SIGTERM's holding handler is in place till its own is
            arrived.append(number)
            os.kill(os.getpid(), signal.SIGTERM)
        return put_back(number, handler)  # type: ignore[arg-type]

    with pytest.raises(run_record.Stopped), night.stoppable():
        with run_record.stops_held():
            monkeypatch.setattr(signal, "signal", stopped_as_put_back)
        monkeypatch.undo()
        pytest.fail("not stopped")
