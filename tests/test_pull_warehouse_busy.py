"""A pull, and a look at the drop zone, first read the live warehouse for its key's fingerprint (etl/transform/
keyguard.py `refuse_other_key`). While another process holds it read-write (a publish recording its notes), DuckDB
refuses even a read-only open (IOException "Could not set lock on file"): that crashed the sensor's first look, the
trigger said "its connection cannot be read", and the pull raised and recorded nothing. A warehouse busy now is a
look or a pull not made now, asked again. The writer is another process, as in a deployment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from drop_zone import registry_sources, send

from etl.config import WAREHOUSE_SQL_DIR, Home
from etl.pull import PullStatus, check_drop_zone, pull_source
from etl.pull.nights import read_pulls
from etl.transform.keyguard import guard_key, record_fingerprint
from etl.transform.pseudonym import KEY_ENV

KEY = "busy-warehouse-key-0123456789abcdef0123"
BUSY = "the warehouse is being written by a run; asked again"
_HOLD = "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('holding', flush=True); sys.stdin.read()"


@contextmanager
def _written_by_another_process(warehouse: Path) -> Iterator[None]:
    """The warehouse held read-write by another process (as publish_outputs.record_notes holds it) for the block."""
    writer = subprocess.Popen([sys.executable, "-c", _HOLD, str(warehouse)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "holding"
        yield
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait()


@pytest.fixture
def sources(tmp_path: Path, home: Home, drop: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """registry_it delivered from `drop`, a new export waiting there; a warehouse recording the key's
    fingerprint (its meta schema only: all a pull reads of it); the key in env."""
    monkeypatch.setenv(KEY_ENV, KEY)
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
        guard_key(home, "run-1", KEY, live=con)
        record_fingerprint(con, home.warehouse, "run-1")
    send(drop / "TREP_export_20261201.csv", b"id_record;codice_paziente\n1;123456\n")
    return registry_sources(tmp_path, drop)


def test_a_look_while_the_warehouse_is_written_is_asked_again(home, sources):
    from etl.pull.sensor import DropZoneTrigger

    trigger = DropZoneTrigger(source_id="registry_it", home=str(home.root), sources_dir=str(sources),
                              connection_id=None, deadline=datetime.now(UTC).isoformat())
    with _written_by_another_process(home.warehouse):
        look = check_drop_zone(home, "registry_it", sources_dir=sources)
        in_trigger = trigger._check()  # raised, and the trigger said "its connection cannot be read"
    assert look.state.value == "unreachable" and look.message == f"registry_it: not looked at now: {BUSY}"
    assert in_trigger == look
    assert check_drop_zone(home, "registry_it", sources_dir=sources).state.value == "new_export"


def test_a_pull_while_the_warehouse_is_written_fails_plainly_is_recorded_and_pulls_later(home, sources):
    from etl.pull.sensor import pull_with_key

    with _written_by_another_process(home.warehouse):
        refused = pull_source(home, "registry_it", sources_dir=sources)
        in_dag = pull_with_key(home, "registry_it", None, sources)  # the DAG's pull_export: failed, then retried
    said = f"registry_it: not pulled: {BUSY}"
    assert refused.status is PullStatus.FAILED and refused.message == said and in_dag.message == said
    assert [p.failure for p in read_pulls(home)] == [said, said]  # for rtw status
    assert not (home.landing / "registry_it").exists() or not any((home.landing / "registry_it").iterdir())
    again = pull_source(home, "registry_it", sources_dir=sources)
    assert again.status is PullStatus.PULLED and again.pulled == ["TREP_export_20261201.csv"]
