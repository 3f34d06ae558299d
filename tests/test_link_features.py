"""The feature rows linkage scores (etl/link/run.py FEATURES_SQL): one per source patient, the same
whatever order the stage rows were written in, since the persons and the fingerprint that keeps them
are drawn from them."""

from __future__ import annotations

from typing import Any

import duckdb

from etl.link.run import FEATURES_SQL
from etl.schema import DDL_FILES, WAREHOUSE_SQL_DIR, unindexed


def _features_of(diagnoses: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """The feature rows of one patient whose initial diagnoses are (record key, date precision), written
    in that order: the same date, 1 March 2016, known to the day by one record, to the month by another."""
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")  # rows scanned in the order written
        for name in DDL_FILES:
            con.execute(unindexed((WAREHOUSE_SQL_DIR / name).read_text()))
        for table in ("patient_source", "diagnosis"):  # as the warehouse makes them (etl/load/warehouse.py)
            con.execute(f"CREATE TABLE stage.{table} AS SELECT * FROM core.{table} LIMIT 0")
        con.execute("INSERT INTO stage.link_key (source_id, source_patient_pseudonym, source_record_key, "
                    "harmonised_patient_id, has_eupid) VALUES ('registry_it', 'p', 'p', 'h', false)")
        con.execute("INSERT INTO stage.patient_source (source_id, source_patient_pseudonym, sex, birth_year, "
                    "birth_month) VALUES ('registry_it', 'p', 'male', 2015, 6)")
        for key, precision in diagnoses:
            con.execute("INSERT INTO stage.record (source_id, source_record_key, patient_pseudonym) "
                        "VALUES ('registry_it', ?, 'p')", [key])
            con.execute("INSERT INTO stage.diagnosis (source_id, source_record_key, event_type, diagnosis_date, "
                        "diagnosis_date_precision, icdo3_morphology, icdo3_topography) "
                        "VALUES ('registry_it', ?, 'initial', DATE '2016-03-01', ?, '8970', 'C22.0')", [key, precision])
        return con.execute(FEATURES_SQL).fetchall()
    finally:
        con.close()


def test_two_initial_diagnoses_differing_in_precision_give_one_feature_row_in_any_order() -> None:
    """The day-precise date was kept or the one known to the month, as the rows happened to lie: the
    pair's evidence (agree or month-only) and the linkage fingerprint changed with it."""
    written = [("d1", "day"), ("d2", "month")]
    (first,) = _features_of(written)
    assert _features_of(written[::-1]) == [first]
    assert first[12] == "day"  # diagnosis_date_precision: the most precise of the two
