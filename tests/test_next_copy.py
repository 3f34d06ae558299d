"""Publish's copy of the warehouse made ahead (etl/load/next_copy.py): taken only while the live file is
the one copied, never left behind, and a run through it publishes what a run without it does."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from etl import crash, fsio
from etl.load import next_copy
from etl.load.warehouse import swap_in_next


def _note(text: str):
    def change(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS meta.test_note (text VARCHAR)")
        con.execute("INSERT INTO meta.test_note VALUES (?)", [text])
    return change


def _notes(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return [t for (t,) in con.execute("SELECT text FROM meta.test_note ORDER BY text").fetchall()]


def _leftovers(warehouse: Path) -> list[str]:
    return sorted(p.name for p in warehouse.parent.iterdir() if ".next" in p.name or p.name.endswith(".partial"))


def test_a_publish_takes_the_copy_made_ahead_of_the_live_file(tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    swap_in_next(warehouse, "run-1", _note("first"))
    with next_copy.copy_ahead(warehouse, "run-2"):
        target = next_copy.next_file(warehouse, "run-2")
        next_copy._ahead[target].thread.join()

        def copied_again(*_: object) -> None:
            raise AssertionError("publish copied the warehouse again")
        monkeypatch.setattr(fsio, "copy_file", copied_again)
        swap_in_next(warehouse, "run-2", _note("second"))
        assert not target.exists()  # renamed in
    assert _notes(warehouse) == ["first", "second"]
    assert _leftovers(warehouse) == []


def test_a_copy_of_a_live_file_since_replaced_is_not_taken(tmp_path):
    """Another publish swapped a new warehouse in after the copy was made: publish copies again and
    loses nothing of it."""
    warehouse = tmp_path / "warehouse.duckdb"
    swap_in_next(warehouse, "run-1", _note("first"))
    with next_copy.copy_ahead(warehouse, "run-3"):
        next_copy._ahead[next_copy.next_file(warehouse, "run-3")].thread.join()  # the copy of run-1's file
        swap_in_next(warehouse, "run-2", _note("between"))
        assert not next_copy.take(warehouse, next_copy.next_file(warehouse, "run-2"))  # none made for run-2
        swap_in_next(warehouse, "run-3", _note("third"))
    assert _notes(warehouse) == ["between", "first", "third"]
    assert _leftovers(warehouse) == []


def test_a_copy_no_publish_took_is_removed(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    swap_in_next(warehouse, "run-1", _note("first"))
    with next_copy.copy_ahead(warehouse, "run-2"):
        pass  # the run failed before its publish
    assert _leftovers(warehouse) == []
    with next_copy.copy_ahead(tmp_path / "none.duckdb", "run-3"):  # no warehouse yet: nothing to copy
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb", "warehouse.duckdb.lock"]


def test_a_publish_that_fails_leaves_no_copy_wal_or_spill_behind(tmp_path, monkeypatch):
    """A failed publish (here the last fsync before the swap, as on a full disk; or the change itself)
    removes its next file and what DuckDB wrote beside it at once: on a full disk the space is wanted
    now, not at the next run's repair. The live file is untouched."""
    warehouse = tmp_path / "warehouse.duckdb"
    swap_in_next(warehouse, "run-1", _note("first"))

    def disk_full(point: str) -> None:
        if point == "before_swap":
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(crash, "crash_point", disk_full)
    with pytest.raises(OSError, match="No space left"):
        swap_in_next(warehouse, "run-2", _note("second"))
    monkeypatch.undo()
    assert _leftovers(warehouse) == []

    def fails(con: duckdb.DuckDBPyConnection) -> None:
        _note("third")(con)
        raise RuntimeError("a change that fails")
    with pytest.raises(RuntimeError):
        swap_in_next(warehouse, "run-3", fails)
    assert _leftovers(warehouse) == []
    assert _notes(warehouse) == ["first"]
