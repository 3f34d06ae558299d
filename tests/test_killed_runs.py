"""`kill -9` at each phase of a run, on a copy of the hostile suite's loaded home (hostile_home.py): the
live warehouse is the old one or the new one, never half of either, and the next run repairs what the
killed one left and loads the change. A run killed without a word is listed by `rtw status` as killed in
its step, saying when that step began: its last word, the nearest a record can come to when it died.

Each case kills a run before the swap, then its next run after it, on the same home: that next run clears
what the first left and gets the change live (five kills, each followed by a run of its own, took ten runs);
the run after it repairs what both left and writes the outputs."""

from __future__ import annotations

import json
import os
import re
import signal
from datetime import datetime
from pathlib import Path

import pytest
from hostile_home import assert_kept, home_fixtures, rtw, run_count, source_digests, withdraw_last_records
from status_runs import failed_night, last_runs
from warehouse_query import query_rows as query

from etl.config import resolve_home
from etl.crash import CRASH_ENV, POINTS
from etl.repair import stale_temporaries

pytestmark = pytest.mark.integration


loaded, home = home_fixtures(withdraw_last_records)  # a changed night

# Each point before the swap, and the point after it its next run is killed at (None: that run completes).
KILLS = [("before_swap", "after_swap"), ("extracted", "outputs"), ("harmonised", None)]


def test_every_point_of_a_run_is_killed_at():
    assert sorted(point for kills in KILLS for point in kills if point) == sorted(POINTS)


def _marts_run(home: Path) -> str:
    return json.loads((home / "marts" / "current" / "_manifest.json").read_text())["run_id"]


def _killed_at(home: Path, point: str) -> None:
    killed = rtw(home, env={CRASH_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr


def _listed_killed_in_publish(home: Path) -> None:
    """The run killed in publish is listed killed there, with when its step began."""
    [record] = [json.loads(p.read_text()) for p in (home / "runs").glob("*.json")]
    began = datetime.fromisoformat(record["step_at"])
    assert record["step"] == "publish" and began >= datetime.fromisoformat(record["started_at"])
    status = rtw(home, "status", env={"COLUMNS": "1000"})
    state, step, reason = failed_night(last_runs(status.stdout))
    assert (state, step) == ("killed", "publish")
    said = re.fullmatch(r"ended without a word: killed \(kill -9, out of memory, a power cut\); the run's log may say "
                        r"more; its step began at (.+) UTC, its last word", reason)
    assert said is not None and said.group(1) == f"{began:%Y-%m-%d %H:%M:%S}", reason


@pytest.mark.parametrize(("point", "then"), KILLS)
def test_a_run_killed_at_any_phase_loses_nothing_and_the_next_run_repairs(point, then, home, loaded):
    before = _marts_run(home)
    _killed_at(home, point)
    assert run_count(home) == loaded.runs  # the live warehouse is the old one
    assert_kept(home, loaded)
    if point == "before_swap":
        _listed_killed_in_publish(home)
    leftovers = []
    if then is not None:
        left = stale_temporaries(resolve_home(home))
        assert left  # the copy of the warehouse made ahead for its publish
        _killed_at(home, then)
        assert not any(p.exists() for p in left)  # the next run cleared the temporaries the killed one left
        assert run_count(home) == loaded.runs + 1  # and got the change live: the new warehouse, registry_it's
        assert source_digests(home)["registry_it"] != loaded.digests["registry_it"]  # withdrawn records gone
        if then == "after_swap":  # the new warehouse is live, its outputs are not
            assert _marts_run(home) == before and os.readlink(home / "reports" / "latest") == before
            (killed_run,) = query(home, "SELECT max(run_id) FROM meta.run")[0]
            # What kills during publish leave behind, for the repair to clear.
            leftovers = [home / f".warehouse.duckdb.{killed_run}-dead.next",
                         home / "staging" / ".x.parquet.ab12.partial"]
            for path in leftovers:
                path.write_text("half")
    done = rtw(home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stale_temporaries(resolve_home(home)) == []
    assert not any(p.exists() for p in leftovers)
    if then == "after_swap":
        assert "repair:" in done.stdout
    (live,) = query(home, "SELECT max(run_id) FROM meta.run WHERE validated")[0]
    assert _marts_run(home) == live and os.readlink(home / "reports" / "latest") == live
    assert query(home, "SELECT status FROM meta.source WHERE source_id = 'registry_it'") == [("loaded",)]
    assert_kept(home, loaded, changed=("registry_it",))
