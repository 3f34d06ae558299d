"""marts.held_back_endpoints lists the records refused while being read, not only those a cross-table rule held back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from etl.config import WAREHOUSE_SQL_DIR

MARTS = WAREHOUSE_SQL_DIR / "marts"


@pytest.fixture
def warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    con.execute((WAREHOUSE_SQL_DIR / "dq.sql").read_text())
    con.execute("CREATE SCHEMA stage")
    for table in ("follow_up", "diagnosis", "response_assessment", "treatment"):
        con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
    con.execute("INSERT INTO core.patient_source (patient_id, source_patient_pseudonym, link_method, source_id, "
                "source_file_sha256, source_record_key, run_id) VALUES ('p1', 'ps1', 'unlinked', 'src', 'ab', "
                "'ps1|REG', 'r1'), ('p2', 'ps2', 'unlinked', 'src', 'ab', 'ps2|REG', 'r1')")
    # p2's first assessment is loaded; its repeat (same key, #2) is refused.
    con.execute("INSERT INTO core.response_assessment (response_id, patient_id, treatment_id, timepoint, response, "
                "source_id, source_file_sha256, source_record_key, run_id) VALUES "
                "('r-2', 'p2', 't2', 'cycle1', 'PR', 'src', 'ab', 'ps2|RESP[1]', 'r1')")
    # A death held back by a cross-table rule: read, so stage holds it.
    con.execute("INSERT INTO stage.follow_up (follow_up_id, patient_id, vital_status, death_date, source_id, "
                "source_file_sha256, source_record_key, run_id) VALUES "
                "('f-1', 'p1', 'dead', DATE '2030-01-01', 'src', 'ab', 'ps1|FU[1]', 'r1')")
    held = [  # key, tables, rule
        ("ps1|FU[1]", ["follow_up"], "XT-DATE-NOT-AFTER-EXPORT"),
        ("ps1|FU[2]", ["follow_up"], "CONF-CODE-IN-LIST"),  # vital status 'DECEASED': not read
        ("ps1|RESP[1]", ["response_assessment"], "CONF-DATE-VALID"),  # not read
        ("ps2|RESP[1]#2", ["response_assessment"], "CONF-KEY-UNIQUE"),  # a repeat of a loaded record
        ("ps9|REG", ["diagnosis", "patient_source"], "CONF-DATE-VALID"),  # a patient not in core
        ("ps2|TRT[1]", ["treatment"], "CONF-DATE-VALID"),  # carries no endpoint
    ]
    con.executemany("INSERT INTO dq.quarantine (run_id, source_id, source_record_key, centre_id, target_tables, "
                    "rule_ids, reasons) VALUES ('r1', 'src', ?, 'C1', ?, [?], ['why'])",
                    [[key, tables, rule] for key, tables, rule in held])
    con.execute("CREATE SCHEMA marts")
    for name in ("80_held_back_endpoints.sql",):
        con.execute((MARTS / name).read_text())
    return con


def test_records_refused_while_being_read_are_listed_too(warehouse):
    rows = warehouse.execute("SELECT endpoint, n_records, n_patients, n_missed, source_record_keys, rule_ids "
                             "FROM marts.held_back_endpoints ORDER BY endpoint").fetchall()
    assert rows == [
        ("death", 1, 1, 1, ["ps1|FU[1]"], ["XT-DATE-NOT-AFTER-EXPORT"]),
        # an assessment is a response, read or not; the repeat's first copy is in core: not missed
        ("response", 2, 2, 1, ["ps1|RESP[1]", "ps2|RESP[1]#2"], ["CONF-DATE-VALID", "CONF-KEY-UNIQUE"]),
        # a follow-up or diagnosis whose values were not kept may carry a death: listed, never counted missed
        ("unknown", 2, 2, 0, ["ps1|FU[2]", "ps9|REG"], ["CONF-CODE-IN-LIST", "CONF-DATE-VALID"]),
    ]
