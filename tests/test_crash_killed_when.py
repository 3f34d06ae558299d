"""A run killed without a word (kill -9, out of memory, a power cut) is listed by `rtw status` as killed in its step,
saying when that step began: its last word, the nearest a record can come to when it died. A real `rtw run` killed
by the crash hook (etl/crash.py) on a copy of the hostile suite's loaded home (hostile_home.py)."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime
from pathlib import Path

import pytest
from hostile_home import home_fixtures, rtw
from status_runs import failed_night, last_runs

from etl.crash import CRASH_ENV

pytestmark = pytest.mark.integration


loaded, home = home_fixtures()


def test_a_killed_run_is_listed_with_when_its_last_step_began(home: Path):
    killed = rtw(home, "run", "--force", env={CRASH_ENV: "before_swap"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    [record] = [json.loads(p.read_text()) for p in (home / "runs").glob("*.json")]
    began = datetime.fromisoformat(record["step_at"])
    assert record["step"] == "publish" and began >= datetime.fromisoformat(record["started_at"])
    status = rtw(home, "status", env={"COLUMNS": "1000"})
    state, step, reason = failed_night(last_runs(status.stdout))
    assert (state, step) == ("killed", "publish")
    said = re.fullmatch(r"ended without a word: killed \(kill -9, out of memory, a power cut\); the run's log may say "
                        r"more; its step began at (.+) UTC, its last word", reason)
    assert said is not None and said.group(1) == f"{began:%Y-%m-%d %H:%M:%S}", reason
