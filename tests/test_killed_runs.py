"""`kill -9` at each phase of a run, on a copy of the hostile suite's loaded home (hostile_home.py): the
live warehouse is the old one or the new one, never half of either, and the next run repairs what the
killed one left and loads the change."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from hostile_home import assert_kept, home_fixtures, rtw, run_count, withdraw_last_records
from warehouse_query import query_rows as query

from etl.config import resolve_home
from etl.crash import CRASH_ENV, POINTS
from etl.repair import stale_temporaries

pytestmark = pytest.mark.integration


loaded, home = home_fixtures(withdraw_last_records)  # a changed night


def _marts_run(home: Path) -> str:
    return json.loads((home / "marts" / "current" / "_manifest.json").read_text())["run_id"]


@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_at_any_phase_loses_nothing_and_the_next_run_repairs(point, home, loaded):
    before = _marts_run(home)
    killed = rtw(home, env={CRASH_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    swapped = point in ("after_swap", "outputs")
    assert run_count(home) == loaded.runs + swapped  # the live warehouse is the old one or the new one
    if not swapped:
        assert_kept(home, loaded)
    leftovers = []
    if point == "after_swap":  # the new warehouse is live, its outputs are not
        assert _marts_run(home) == before and os.readlink(home / "reports" / "latest") == before
        (killed_run,) = query(home, "SELECT max(run_id) FROM meta.run")[0]
        # What kills during publish leave behind, for the repair to clear.
        leftovers = [home / f".warehouse.duckdb.{killed_run}-dead.next", home / "staging" / ".x.parquet.ab12.partial"]
        for path in leftovers:
            path.write_text("half")
    done = rtw(home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stale_temporaries(resolve_home(home)) == []
    assert not any(p.exists() for p in leftovers)
    if point == "after_swap":
        assert "repair:" in done.stdout
    (live,) = query(home, "SELECT max(run_id) FROM meta.run WHERE validated")[0]
    assert _marts_run(home) == live and os.readlink(home / "reports" / "latest") == live
    assert query(home, "SELECT status FROM meta.source WHERE source_id = 'registry_it'") == [("loaded",)]
    assert_kept(home, loaded, changed=("registry_it",))
