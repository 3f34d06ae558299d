"""Core's keys: declared in core.sql (PRIMARY KEY), not indexed in the warehouse, checked by publish.

A tiny warehouse from the real DDL: the stage rows of one source admitted to core
(`_admit_to_core`, as every publish does).
"""

from __future__ import annotations

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_rows

from etl import pipeline, schema
from etl.config import WAREHOUSE_SQL_DIR
from etl.load import warehouse
from etl.steps import SourceOutcome, SourceStatus
from etl.transform import harmonise

SHA = "ab" * 32


def _stage_follow_up(con: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str]]) -> None:
    """(follow_up_id, record key, vital status) rows of source src, with their records and registration."""
    con.execute("DELETE FROM stage.follow_up")
    con.execute("DELETE FROM stage.record")
    for follow_up_id, key, vital_status in rows:
        con.execute("INSERT INTO stage.follow_up (follow_up_id, patient_id, contact_date, vital_status, source_id, "
                    "source_file_sha256, source_record_key, run_id) VALUES (?, 'p1', DATE '2026-01-01', ?, 'src', ?, "
                    "?, 'r1')", [follow_up_id, vital_status, SHA, key])
        con.execute("INSERT INTO stage.record (source_id, source_file_sha256, source_record_key, centre_id, "
                    "patient_pseudonym, target_tables) VALUES ('src', ?, ?, 'C1', 'p1', ['follow_up'])", [SHA, key])


def _warehouse(*, indexed: bool = False) -> duckdb.DuckDBPyConnection:
    """An empty warehouse; `indexed`: its core made by core.sql as it is, as versions before this one did."""
    con = duckdb.connect()
    warehouse._create_schema(con)
    if indexed:
        con.execute("DROP SCHEMA core CASCADE")
        con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    warehouse._ensure_stage(con)
    return con


def _keys(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return con.execute("SELECT table_name, constraint_type FROM duckdb_constraints() WHERE schema_name = 'core' "
                       "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()


def _not_null(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    return {(table, column) for table, columns in con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE schema_name = 'core' "
        "AND constraint_type = 'NOT NULL'").fetchall() for column in columns}


def test_the_warehouse_makes_core_with_its_columns_and_not_nulls_but_no_key_index():
    con = _warehouse()
    assert _keys(con) == []
    for table in schema.tables("core"):
        assert con.execute(f"SELECT * FROM core.{table} LIMIT 0").description == \
               schema._catalogue().execute(f"SELECT * FROM core.{table} LIMIT 0").description
    key_columns = {(table, column) for table, columns in schema.primary_keys("core").items() for column in columns}
    assert len(key_columns) == 12 and key_columns <= _not_null(con)
    assert _not_null(con) == _not_null(schema._catalogue()) | key_columns


def test_a_key_held_by_two_rows_fails_the_publish():
    con = _warehouse()
    _stage_follow_up(con, [("f1", "p1|FU[1]", "alive"), ("f2", "p1|FU[2]", "alive")])
    warehouse._admit_to_core(con)
    # The same contact again, changed: its row is replaced, not added.
    _stage_follow_up(con, [("f1", "p1|FU[1]", "dead"), ("f2", "p1|FU[2]", "alive")])
    warehouse._admit_to_core(con)
    assert con.execute("SELECT follow_up_id, vital_status FROM core.follow_up ORDER BY 1").fetchall() == [
        ("f1", "dead"), ("f2", "alive")]
    # Two records of one key (which harmonise never lets through) do not reach the warehouse silently.
    _stage_follow_up(con, [("f1", "p1|FU[1]", "dead"), ("f1", "p1|FU[3]", "alive")])
    with pytest.raises(warehouse.KeyViolation, match=r"core.follow_up: more than one row holds the key "
                                                      r"\(follow_up_id\) \('f1',\)"):
        warehouse._admit_to_core(con)


def test_a_warehouse_with_indexed_keys_loses_the_indexes_and_keeps_its_rows():
    con = _warehouse(indexed=True)
    assert ("follow_up", "PRIMARY KEY") in _keys(con)
    _stage_follow_up(con, [("f1", "p1|FU[1]", "alive"), ("f2", "p1|FU[2]", "dead")])
    con.execute("INSERT INTO core.follow_up BY NAME SELECT * FROM stage.follow_up")
    warehouse._admit_to_core(con)
    assert _keys(con) == []
    assert con.execute("SELECT * FROM core.follow_up ORDER BY 1").fetchall() == \
           con.execute("SELECT * FROM stage.follow_up ORDER BY 1").fetchall()
    assert _not_null(con) == _not_null(_warehouse())


def test_a_key_held_twice_by_a_row_inserted_among_many_kept_fails_the_publish():
    # Few rows differ: the table is not filled anew, only the rows that differ are inserted, and their keys checked.
    contacts = [(f"f{i}", f"p1|FU[{i}]", "alive") for i in range(8)]
    con = _warehouse()
    _stage_follow_up(con, contacts)
    warehouse._admit_to_core(con)
    _stage_follow_up(con, [*contacts, ("f8", "p1|FU[8]", "dead")])
    con.execute("CREATE TEMP TABLE changed_person (patient_id VARCHAR)")  # as _admit_to_core makes it
    assert warehouse._admit_difference(con, "follow_up") is warehouse.Admission.CHANGED
    con.execute("DROP TABLE changed_person")
    _stage_follow_up(con, [*contacts, ("f8", "p1|FU[8]", "dead"), ("f3", "p1|FU[9]", "dead")])
    with pytest.raises(warehouse.KeyViolation, match=r"core.follow_up: more than one row holds the key "
                                                      r"\(follow_up_id\) \('f3',\)"):
        warehouse._admit_to_core(con)


@pytest.mark.integration
def test_a_source_whose_rows_hold_a_key_twice_fails_alone_and_the_others_are_published(small_run, tmp_path,
                                                                                     monkeypatch):
    """Were harmonise to let a record key through twice (a fault of this code: mark_duplicates broken here on
    purpose), that source fails, keeping its last good data, and the night publishes the others: it failed the
    whole publish, every source's, night after night."""
    home = copy_of(small_run, tmp_path)
    follow_up = home.landing / "iltb" / "ILTB_FU.csv"  # no rule holds its ids unique: the copy reaches core
    lines = follow_up.read_bytes().split(b"\r\n")
    follow_up.write_bytes(b"\r\n".join([*lines[:2], lines[1], *lines[2:]]))  # its first record twice
    (export,) = (home.landing / "registry_it").glob("*.csv")  # and a registry with a later contact
    lines = export.read_bytes().split(b"\r\n")
    column = lines[0].split(b";").index(b"data_ultimo_contatto")
    fields = lines[1].split(b";")
    fields[column] = b"30/10/2026"
    export.write_bytes(b"\r\n".join([lines[0], b";".join(fields), *lines[2:]]))
    contacts = "SELECT * FROM core.follow_up WHERE source_id = 'iltb' ORDER BY ALL"
    before = query_rows(home, contacts)
    monkeypatch.setattr(harmonise._Engine, "mark_duplicates", lambda self, records: None)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.status == "completed_with_failures" and summary.sources_failed == ["iltb"]
    assert summary.sources_changed == ["registry_it"]
    assert "iltb: its rows hold a key of the warehouse twice (core.follow_up: more than one row holds the key " \
           "(follow_up_id)" in (summary.message or ""), summary.message
    assert "a fault of the warehouse's code, to report; its last good data kept" in (summary.message or "")
    # The DAG's verdicts read the outcomes as the run recorded them: iltb failed, with its reason.
    harmonised = [SourceOutcome(source_id=s, run_id=summary.run_id, status=SourceStatus.HARMONISED)
                  for s in ("iltb", "registry_it")]
    assert [(o.status, o.message) for o in pipeline.as_recorded(harmonised, summary)] == [
        (SourceStatus.FAILED, summary.failed_reasons["iltb"]), (SourceStatus.HARMONISED, None)]
    assert summary.failed_reasons["iltb"].startswith("its rows hold a key of the warehouse twice")
    assert query_rows(home, contacts) == before
    assert query_rows(home, "SELECT count(*) FROM core.follow_up WHERE source_id = 'registry_it' "
                            "AND contact_date = DATE '2026-10-30'") == [(1,)]
