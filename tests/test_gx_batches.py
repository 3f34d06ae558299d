"""GX validates a stage table in batches of rows, and the findings are those of one whole-table pass."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from etl import pipeline
from etl.config import resolve_home
from etl.quality import validate as validation
from etl.synth import generate

KEY_TEXT = "gx-batch-key"
FINDINGS = {
    "dq.check_result": "SELECT * EXCLUDE (run_id) FROM dq.check_result ORDER BY ALL",
    "dq.issue": "SELECT * EXCLUDE (run_id) FROM dq.issue ORDER BY ALL",
    "dq.quarantine": "SELECT * EXCLUDE (run_id) FROM dq.quarantine ORDER BY ALL",
}


@pytest.mark.integration
def test_batches_of_a_few_rows_find_what_one_pass_finds(tmp_path, monkeypatch):
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=60, seed=5)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    plan = pipeline.quality_plan_for(home, summary.run_id)

    batches_read: list[str] = []  # the table of each batch validated
    read_batches = validation._batches

    def counted(con: duckdb.DuckDBPyConnection, table: str, rows: int):  # type: ignore[no-untyped-def]
        for batch in read_batches(con, table, rows):
            batches_read.append(table)
            yield batch
    monkeypatch.setattr(validation, "_batches", counted)

    def findings(rows: int) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
        copy = tmp_path / f"batches-{rows}.duckdb"
        shutil.copy(home.warehouse, copy)
        monkeypatch.setattr(validation, "GX_BATCH_ROWS", rows)
        batches_read.clear()
        con = duckdb.connect(str(copy))
        try:
            validation.validate(con, summary.run_id, plan)
            return {table: con.execute(sql).fetchall() for table, sql in FINDINGS.items()}
        finally:
            con.close()

    con = duckdb.connect(str(home.warehouse), read_only=True)
    largest = con.execute("SELECT max(estimated_size) FROM duckdb_tables() WHERE schema_name = 'stage' "
                          "AND table_name IN ('follow_up', 'diagnosis', 'treatment')").fetchone()
    con.close()
    assert largest and largest[0] > 100
    rows = largest[0] // 3 + 1  # the largest tables span three batches, and a checkpoint run costs GX a second
    whole = findings(1_000_000)
    assert batches_read.count("follow_up") == 1
    batched = findings(rows)
    assert max(batches_read.count(table) for table in set(batches_read)) == 3
    assert whole["dq.issue"] and whole == batched
