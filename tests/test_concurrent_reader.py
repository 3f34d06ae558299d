"""An analyst reading during a nightly run: a real second process keeps a consistent view, and the run is not blocked.

The reader process holds a read-only DuckDB connection to warehouse.duckdb and reads the Parquet
marts in a loop while this process publishes a changed export (pipeline.run) and exports the
marts again. Publish builds the next file beside the live one and renames it over it, so the
reader's connection keeps the old file (its inode) for as long as it stays open; the Parquet set
is swapped by one symlink rename, so a reader that resolves `current` once reads one run's set.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from etl import pipeline
from etl.config import Home, resolve_home
from etl.synth import generate

pytestmark = pytest.mark.integration
KEY_TEXT = "concurrent-reader-key"

READER = textwrap.dedent("""
    import json, os, sys, traceback
    import duckdb, pyarrow.parquet as pq

    warehouse, marts, stop = sys.argv[1:4]
    TABLES = ["core.follow_up", "core.patient", "core.diagnosis", "marts.patient_summary", "marts.survival_km"]

    def say(**event):
        print(json.dumps(event), flush=True)

    def snapshot(con):
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        counts["run_id"] = con.execute("SELECT max(run_id) FROM meta.run").fetchone()[0]
        return counts

    def read_parquet_set():
        folder = os.path.realpath(os.path.join(marts, "current"))  # resolve once: one run's set
        with open(os.path.join(folder, "_manifest.json")) as handle:
            manifest = json.load(handle)
        for name, rows in manifest["rows"].items():
            table = pq.read_table(os.path.join(folder, name + ".parquet"))
            if table.num_rows != rows or table.schema.metadata[b"run_id"].decode() != manifest["run_id"]:
                raise AssertionError(f"{folder}/{name}.parquet is not part of run {manifest['run_id']}")
        return manifest["run_id"]

    try:
        con = duckdb.connect(warehouse, read_only=True)
        first = snapshot(con)
        say(event="connected", snapshot=first)
        loops, runs_seen = 0, []
        while not os.path.exists(stop):
            now = snapshot(con)
            if now != first:
                raise AssertionError(f"the view changed inside one connection: {first} -> {now}")
            run_id = read_parquet_set()
            if run_id not in runs_seen:
                runs_seen.append(run_id)
                say(event="parquet_run", run_id=run_id)
            loops += 1
        final = snapshot(con)
        # DuckDB caches a database per path in a process: a second connection while the first is open
        # is the same, old, database. Only once every connection is closed does a new one see the new file.
        same_process = snapshot(duckdb.connect(warehouse, read_only=True))
        con.close()
        fresh_con = duckdb.connect(warehouse, read_only=True)
        fresh = snapshot(fresh_con)
        fresh_con.close()
        say(event="done", loops=loops, first=first, final=final, same_process=same_process, fresh=fresh,
            runs_seen=runs_seen)
    except BaseException:
        say(event="error", traceback=traceback.format_exc())
        sys.exit(1)
""")


def _next_event(reader: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    assert reader.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = reader.stdout.readline()
        if line:
            event = json.loads(line)
            assert event["event"] != "error", event["traceback"]
            return dict(event)
        if reader.poll() is not None:
            errors = reader.stderr.read() if reader.stderr else ""
            raise AssertionError(f"the reader exited with {reader.returncode}: {errors}")
    raise AssertionError("the reader said nothing")


def _publish_and_export(home: Home) -> dict[str, Any]:
    """A nightly run: publish the warehouse, then the Parquet marts."""
    return pipeline.run(home, key_value=KEY_TEXT)


def test_a_reader_in_another_process_keeps_its_view_and_does_not_block_the_run(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=80, seed=7)
    before = _publish_and_export(home)
    stop = tmp_path / "stop-reading"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(home.warehouse), str(home.marts), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        connected = _next_event(reader)
        assert connected["event"] == "connected" and connected["snapshot"]["run_id"] == before.run_id
        assert _next_event(reader) == {"event": "parquet_run", "run_id": before.run_id}

        # The centre deleted its last follow-up record: a changed export, published while the reader reads.
        follow_up = home.landing / "iltb" / "ILTB_FU.csv"
        lines = follow_up.read_bytes().split(b"\r\n")
        follow_up.write_bytes(b"\r\n".join([*lines[:-2], b""]))
        started = time.monotonic()
        after = _publish_and_export(home)
        took = time.monotonic() - started
        assert after.sources_changed == ["iltb"] and after.run_id != before.run_id
        assert reader.poll() is None, "the reader must still hold its connection when the run completes"
        # The reader moves to the new Parquet set as a whole, with no error on the way.
        assert _next_event(reader) == {"event": "parquet_run", "run_id": after.run_id}
        stop.touch()
        done = _next_event(reader)
        assert reader.wait(timeout=60) == 0
    finally:
        stop.touch()
        if reader.poll() is None:
            reader.kill()
    assert done["event"] == "done" and done["loops"] > 1
    first, final, fresh = done["first"], done["final"], done["fresh"]
    assert final == first == done["same_process"], "an open connection keeps the file it opened"
    assert fresh["run_id"] == after.run_id
    assert fresh["core.follow_up"] == first["core.follow_up"] - 1
    assert fresh["marts.patient_summary"] == fresh["core.patient"]
    assert took < 300, f"the run took {took:.0f}s"
    assert not list(home.root.glob(".warehouse.duckdb.*.next")), "publish left its next-file behind"
