"""`make bench` works end to end on a small size: every figure and ratio is written (no timing asserted). --quick:
the size in a process of its own, its runs in that one but the unchanged rerun, in one of its own (bench.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl.config import REPO_ROOT

pytestmark = pytest.mark.integration


def test_the_benchmark_writes_every_step_and_ratio(tmp_path):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench.py"), "--sizes", "80",
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = tmp_path.glob("*.json")
    (size,) = json.loads(written.read_text())["sizes"]
    assert size["quick"] is True
    steps = {s["step"] for s in size["first_run"]["steps"]}
    assert {"plan", "validate", "core and marts", "publish", "export marts", "report"} <= steps
    assert {f"harmonise {s}" for s in ("sacha_fr", "iltb", "registry_it", "esmart", "crizotinib_imt")} <= steps
    assert all(s["peak_mib"] > 50 for s in size["first_run"]["steps"])  # measured, not left out
    assert size["changed_rerun"]["records_changed"] >= 1
    assert set(size["ratios"]) == {"validation share of the first run", "ODM adapter / bare lxml pass",
                                   "CSV adapter / DuckDB read_csv", "1%-changed rerun / the source's first load",
                                   "unchanged rerun / first run"}
    assert all(r["value"] > 0 and r["limit"] > 0 for r in size["ratios"].values())
    assert size["python_loop_s"]["before"] > 0 and size["python_loop_s"]["after"] > 0
    assert "ratio" in done.stdout and "validation share" in done.stdout and "machine speed" in done.stdout
