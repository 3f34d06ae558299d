"""A date given to the month or year is stored as the first day of its period with its precision; the
rules comparing a death with other dates judge it by the last day it can be (a death in "2019" may be
in December), so a centre is not queried about data that are consistent; and core.patient places such
a death in the middle of the days it can be on, so no follow-up or survival time comes out negative."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from etl.config import WAREHOUSE_SQL_DIR
from etl.load import warehouse
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


def _core(rows: dict[str, list[dict[str, Any]]],
          exported_on: date | None = date(2026, 11, 1)) -> duckdb.DuckDBPyConnection:
    """A warehouse whose core holds `rows` of person p1 (each row's own source_id, else 'reg'), each
    source's file exported on `exported_on`; core.patient derived from them as every publish does."""
    con = duckdb.connect()
    warehouse._create_schema(con)
    warehouse._ensure_stage(con)
    for table, table_rows in rows.items():
        for row in table_rows:
            row = {"source_id": "reg", "patient_id": "p1", "source_file_sha256": "0" * 64, "run_id": "r", **row}
            con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, status, exported_on) "
                "SELECT DISTINCT source_id, source_file_sha256, 'loaded', ? FROM core.follow_up", [exported_on])
    warehouse._derive_patients(con, whole=True)
    return con


def _placed(con: duckdb.DuckDBPyConnection) -> tuple[date, str]:
    [row] = con.execute("SELECT death_date, death_date_precision FROM core.patient").fetchall()
    return row


def _diagnosis(day: date) -> dict[str, Any]:
    return {"diagnosis_id": "d1", "source_record_key": "d1", "diagnosis_date": day, "diagnosis_date_precision": "day",
            "event_type": "initial"}


def _alive(key: str, seen: date) -> dict[str, Any]:
    return {"follow_up_id": key, "source_record_key": key, "vital_status": "alive", "contact_date": seen,
            "contact_date_precision": "day"}


def test_a_death_known_to_the_year_is_placed_in_the_middle_of_the_days_after_the_diagnosis():
    con = _core({"diagnosis": [_diagnosis(DIAGNOSED)], "follow_up": [_death("in-2019", date(2019, 1, 1), "year")]})
    assert _placed(con) == (date(2019, 9, 1), "year")  # 3 May + 242 days // 2: never before the diagnosis
    no_diagnosis = _core({"follow_up": [_death("in-2019", date(2019, 1, 1), "year")]})
    assert _placed(no_diagnosis) == (date(2019, 7, 2), "year")


def test_a_death_known_to_the_month_comes_after_the_last_day_seen_alive_and_treated_in_it():
    seen = _core({"follow_up": [_death("in-june", date(2020, 6, 1), "month"), _alive("seen", date(2020, 6, 20)),
                                _alive("seen-after", date(2020, 8, 1))]})  # contradicts the death: not a bound
    assert _placed(seen) == (date(2020, 6, 25), "month")
    treated = _core({"follow_up": [_death("in-june", date(2020, 6, 1), "month")],
                     "treatment": [{"treatment_id": "t1", "source_record_key": "t1", "start_date": date(2020, 6, 10),
                                    "drug_name": "x"}]})
    assert _placed(treated) == (date(2020, 6, 20), "month")


def test_a_death_known_to_the_year_of_the_export_is_not_placed_after_the_export():
    con = _core({"follow_up": [_death("in-2026", date(2026, 1, 1), "year")]}, exported_on=date(2026, 3, 1))
    assert _placed(con) == (date(2026, 1, 30), "year")


def test_a_death_bounded_by_its_export_is_placed_again_when_the_same_file_comes_dated_later():
    """The same bytes sent again, dated after the death's year (a name without a day: its modification time): no
    core row changed, yet the person is derived again on the load, as deriving everyone places the death."""
    con = _core({"follow_up": [_death("in-2026", date(2026, 1, 1), "year")]}, exported_on=date(2026, 3, 1))
    assert _placed(con) == (date(2026, 1, 30), "year")
    con.execute("UPDATE meta.source_file SET exported_on = DATE '2027-02-01'")
    con.execute("CREATE TEMP TABLE changed_person (patient_id VARCHAR)")  # as a load with no core row changed
    warehouse._derive_patients(con, whole=False)
    assert _placed(con) == (date(2026, 7, 2), "year")
    warehouse._derive_patients(con, whole=True)
    assert _placed(con) == (date(2026, 7, 2), "year")


def test_a_death_from_an_export_of_unknown_date_is_placed_in_the_middle_of_its_period_still():
    # meta.source_file without the export's date (exported_on NULL): the year bounds the death, not its first day.
    con = _core({"follow_up": [_death("in-2019", date(2019, 1, 1), "year")]}, exported_on=None)
    assert _placed(con) == (date(2019, 7, 2), "year")
    # An export dated before the death's period (a data error) leaves it on its first day, never before.
    early = _core({"follow_up": [_death("in-2019", date(2019, 1, 1), "year")]}, exported_on=date(2018, 6, 1))
    assert _placed(early) == (date(2019, 1, 1), "year")


def test_of_the_deaths_sources_give_the_one_that_must_have_come_first_is_taken_the_most_precise_of_equals():
    day = _death("on-12-june", date(2019, 6, 12), "day", source_id="b")
    assert _placed(_core({"follow_up": [_death("in-2019", date(2019, 1, 1), "year"), day]})) == \
           (date(2019, 6, 12), "day")
    assert _placed(_core({"follow_up": [_death("in-2018", date(2018, 1, 1), "year"), day]})) == \
           (date(2018, 7, 2), "year")
    assert _placed(_core({"follow_up": [_death("in-june", date(2019, 6, 1), "month"),
                                        _death("on-30-june", date(2019, 6, 30), "day", source_id="b")]})) == \
           (date(2019, 6, 30), "day")
    # A death given to the day keeps its day, whatever else the sources say.
    assert _placed(_core({"follow_up": [day, _alive("seen-later", date(2019, 7, 1))]})) == (date(2019, 6, 12), "day")
