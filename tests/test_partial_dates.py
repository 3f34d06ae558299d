"""A date given to the month or year is stored as the first day of its period with its precision; the
rules comparing a death with other dates judge it by the last day it can be (a death in "2019" may be
in December), so a centre is not queried about data that are consistent."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.catalogue import load_catalogue
from etl.quality.sql_checks import run_checks

DIAGNOSED = date(2019, 5, 3)


def _stage(rows: dict[str, list[dict[str, Any]]]) -> duckdb.DuckDBPyConnection:
    """An in-memory stage with the core tables' columns (warehouse/core.sql)."""
    con = duckdb.connect()
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())
    con.execute("CREATE SCHEMA stage")
    for table in ("diagnosis", "follow_up", "treatment"):
        con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
        for row in rows.get(table, []):
            row = {"source_id": "reg", "patient_id": "p1", "source_file_sha256": "0" * 64, "run_id": "r", **row}
            con.execute(f"INSERT INTO stage.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))
    return con


def _flagged(con: duckdb.DuckDBPyConnection, rule_id: str) -> set[str]:
    rule = next(r for r in load_catalogue(check_types=False) if r.rule_id == rule_id)
    [run] = run_checks(con, [rule])
    assert run.error is None, run.error
    return set(run.failures.source_record_key)


def _death(key: str, died: date, precision: str, **more: Any) -> dict[str, Any]:
    return {"follow_up_id": key, "source_record_key": key, "vital_status": "dead", "death_date": died,
            "death_date_precision": precision, "contact_date": died, "contact_date_precision": precision, **more}


def test_a_death_known_to_the_year_of_the_diagnosis_is_not_before_it():
    con = _stage({"diagnosis": [{"diagnosis_id": "d1", "source_record_key": "d1", "diagnosis_date": DIAGNOSED,
                                 "diagnosis_date_precision": "day", "event_type": "initial"}],
                  "follow_up": [_death("in-2019", date(2019, 1, 1), "year"),  # any day of 2019
                                _death("in-may-2019", date(2019, 5, 1), "month"),
                                _death("1-january-2019", date(2019, 1, 1), "day"),  # before: flagged
                                _death("in-2018", date(2018, 1, 1), "year")]})
    assert _flagged(con, "XT-DEATH-AFTER-DIAGNOSIS") == {"1-january-2019", "in-2018"}


def test_contacts_and_treatments_are_after_a_death_known_to_the_year_only_after_that_year():
    alive = {"vital_status": "alive", "death_date": None, "death_date_precision": None}
    con = _stage({"follow_up": [_death("died-in-2019", date(2019, 1, 1), "year"),
                                _death("seen-in-november", date(2019, 11, 1), "day", **alive),
                                _death("seen-in-2020", date(2020, 3, 1), "day", **alive)],
                  "treatment": [{"treatment_id": t, "source_record_key": t, "start_date": day, "drug_name": "x"}
                                for t, day in (("started-in-june", date(2019, 6, 1)),
                                               ("started-in-2020", date(2020, 1, 2)))]})
    assert _flagged(con, "XT-NOTHING-AFTER-DEATH") == {"seen-in-2020"}
    assert _flagged(con, "XT-TREATMENT-NOT-AFTER-DEATH") == {"started-in-2020"}
