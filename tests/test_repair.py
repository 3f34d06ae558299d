"""Crash repair and fault isolation, with real `rtw run` processes.

- A run SIGKILLed at each phase, right after the warehouse swap among them, is repaired by the
  next run: test_hostile.py.
- A report that cannot be written (reports/ is a file: fails for root too) never blocks or undoes
  the publish: the run exits 0, the data is loaded, the summary and meta.run_note name the failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from etl.config import REPO_ROOT, resolve_home
from etl.repair import stale_temporaries
from etl.synth import generate

RTW = str(Path(sys.executable).with_name("rtw"))


def _rtw_run(home: Path, *extra: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTW_PSEUDONYM_KEY": "repair-test-key", "COLUMNS": "200"}
    env.pop("RTW_TEST_CRASH_AT", None)
    if crash_at:
        env["RTW_TEST_CRASH_AT"] = crash_at
    return subprocess.run([RTW, "run", "--home", str(home), *extra], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _runs(home: Path) -> list[tuple[str, bool]]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return [(r, bool(v)) for r, v in con.execute("SELECT run_id, validated FROM meta.run ORDER BY started_at")
                .fetchall()]
    finally:
        con.close()


def _marts_run(home: Path) -> str:
    return json.loads((home / "marts" / "current" / "_manifest.json").read_text())["run_id"]


def test_stale_temporaries_are_found_in_the_home_but_never_in_landing(tmp_path):
    home = resolve_home(tmp_path).ensure()
    stale = [tmp_path / ".warehouse.duckdb.20260101T000000Z-dead.next",
             tmp_path / ".warehouse.duckdb.20260101T000000Z-dead.next.wal",
             tmp_path / "..warehouse.duckdb.20260101T000000Z-dead.next.x1y2.partial",  # its copy cut short
             home.staging / "src" / ".abc.parquet.1234.partial",
             home.archive / "src" / "abc__export.csv.partial",
             home.reports / "r1" / ".index.html.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    (home.marts / ".r1.abcd.partial").mkdir(parents=True)  # a marts set cut short
    stale.append(home.marts / ".r1.abcd.partial")
    (home.reports / ".latest.99.abcd").symlink_to("r1")  # a link temporary of an older version
    stale.append(home.reports / ".latest.99.abcd")
    delivering = home.landing / "src" / "export.csv.partial"  # a drop zone delivering: not ours
    delivering.parent.mkdir(parents=True)
    delivering.write_text("arriving")
    assert sorted(stale_temporaries(home)) == sorted(stale)


@pytest.mark.integration
def test_a_report_that_cannot_be_written_never_blocks_the_publish(tmp_path):
    generate(tmp_path, patients=30, seed=8)
    (tmp_path / "reports").write_text("not a folder")  # unwritable even for root, unlike chmod 0500
    done = _rtw_run(tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert "after publish: the validation report could not be written" in " ".join(output.split())
    runs = _runs(tmp_path)
    assert len(runs) == 1 and runs[0][1]  # published and validated
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM core.diagnosis").fetchone()[0] > 0
        message = con.execute("SELECT string_agg(note, ' ') FROM meta.run_note WHERE run_id = ?",
                              [runs[0][0]]).fetchone()[0]
    finally:
        con.close()
    assert "validation report" in message
    assert _marts_run(tmp_path) == runs[0][0]  # the marts did not depend on the report

    (tmp_path / "reports").unlink()  # the operator fixes it; the next run writes the missing report
    again = _rtw_run(tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "reports" / runs[0][0] / "index.html").is_file()
