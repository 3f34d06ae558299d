"""A stop signal the run was started ignoring stays ignored (etl/run_record.py, Night.stoppable): `rtw run &` from a
script, and nohup, start it with SIGINT ignored, so a Ctrl-C at that terminal, meant for another command, stopped a
night the run's caller had meant to outlive it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from etl import run_record
from etl.config import Home


def test_a_signal_ignored_when_the_run_began_stays_ignored(tmp_path: Path):
    night = run_record.Night(Home(tmp_path / "home"), "20261206T000000Z", "cli")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with night.stoppable():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # discarded: nothing to deliver
            assert signal.getsignal(signal.SIGTERM) == night._stop  # SIGTERM still stops it
            with pytest.raises(run_record.Stopped, match="stopped by SIGTERM"):
                os.kill(os.getpid(), signal.SIGTERM)
        assert night.stopped is not None and "SIGTERM" in str(night.stopped)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
