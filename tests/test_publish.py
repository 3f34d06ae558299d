"""Atomic publish: readers keep their view, a failed publish leaves the last good warehouse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from etl.load.warehouse import publish, read_source_state
from etl.steps import SourceOutcome


def _outcome(tmp_path: Path, run_id: str, diagnoses: int, *, broken: bool = False) -> SourceOutcome:
    folder = tmp_path / run_id
    folder.mkdir()
    frame = pd.DataFrame({
        "diagnosis_id": [f"d{i}" for i in range(diagnoses)],
        "patient_id": [f"p{i}" for i in range(diagnoses)],
        "diagnosis_date": ["not a date" if broken else "2020-01-01"] * diagnoses,
        "source_id": "reg", "source_file_sha256": "a" * 64,
        "source_record_key": [f"x|REG[{i}]" for i in range(diagnoses)], "run_id": run_id,
    })
    frame.to_parquet(folder / "diagnosis.parquet")
    pd.DataFrame({"source_id": "reg", "source_file_sha256": "a" * 64, "record_set": "REG",
                  "source_record_key": frame.source_record_key}).to_parquet(folder / "records.parquet")
    # As it would arrive from Airflow's XCom: JSON, validated into the typed step value.
    return SourceOutcome.model_validate({
        "source_id": "reg", "run_id": run_id, "status": "harmonised", "harmonised_dir": str(folder),
        "fingerprint": run_id, "files": [{"name": "reg.csv", "sha256": "a" * 64, "size_bytes": 1, "series": "REG",
                                          "exported_on": "2026-11-01"}],
        "file_counts": {"a" * 64: {"rows_read": diagnoses, "rows_loaded": diagnoses, "rows_quarantined": 0}}})


def _publish(warehouse: Path, outcome: SourceOutcome) -> None:
    publish(warehouse, outcome.run_id, [outcome], trigger="test", started_at=datetime.now(UTC))


def test_a_reader_of_the_old_file_keeps_its_view_while_a_new_one_is_published(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _publish(warehouse, _outcome(tmp_path, "r1", 3))
    reader = duckdb.connect(str(warehouse), read_only=True)
    try:
        _publish(warehouse, _outcome(tmp_path, "r2", 5))  # not blocked by the open reader
        assert reader.execute("SELECT count(*) FROM core.diagnosis").fetchone()[0] == 3
    finally:
        reader.close()
    fresh = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert fresh.execute("SELECT count(*) FROM core.diagnosis").fetchone()[0] == 5
        assert fresh.execute("SELECT count(*) FROM meta.run").fetchone()[0] == 2
    finally:
        fresh.close()
    assert read_source_state(warehouse) == {"reg": {"fingerprint": "r2", "status": "loaded",
                                                  "last_loaded_run_id": "r2"}}


def test_a_publish_that_fails_half_way_leaves_the_last_good_warehouse(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _publish(warehouse, _outcome(tmp_path, "r1", 3))
    before = warehouse.read_bytes()
    with pytest.raises(duckdb.ConversionException):
        _publish(warehouse, _outcome(tmp_path, "r2", 4, broken=True))
    assert warehouse.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_warehouse_of_an_older_version_gains_the_columns_added_since(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _publish(warehouse, _outcome(tmp_path, "r1", 3))
    con = duckdb.connect(str(warehouse))  # as an older version built it: without the newest column
    try:
        for table in ("core.diagnosis", "stage.diagnosis"):
            con.execute(f"ALTER TABLE {table} DROP COLUMN iccc3_extension")
    finally:
        con.close()
    outcome = _outcome(tmp_path, "r2", 4)
    parquet = Path(outcome.harmonised_dir or "") / "diagnosis.parquet"
    pd.read_parquet(parquet).assign(iccc3_extension="why").to_parquet(parquet)  # harmonised by this version
    _publish(warehouse, outcome)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM core.diagnosis WHERE iccc3_extension = 'why'").fetchone()[0] == 4
    finally:
        con.close()
