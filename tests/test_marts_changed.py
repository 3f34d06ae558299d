"""The marts are built again only where what they read changed, and then hold what building every mart holds."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl.load import warehouse
from etl.load.marts import _macro_reads, build_marts
from etl.load.marts import _marts as mart_files
from etl.quality.validate import write_source_params


def _marts(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    names = [n for (n,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' "
                                       "ORDER BY 1").fetchall()]
    return {name: con.execute(f"SELECT * FROM marts.{name} ORDER BY ALL").fetchall() for name in names}


def _rebuilt(con: duckdb.DuckDBPyConnection, change: str, caplog: pytest.LogCaptureFixture,
             params_changed: bool = False) -> set[str]:
    """Change stage as `change` says, admit it to core and build the marts it touches: the marts kept."""
    con.execute("BEGIN")
    con.execute(change)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="etl.load.marts"):
        warehouse.rebuild_derived(con, params_changed=params_changed)
    con.execute("COMMIT")
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("marts kept")]
    return set(said[0].split(": ", 1)[1].split(", ")) if said else set()


def test_a_mart_reads_the_tables_the_macros_it_calls_read():
    reads = {mart.table: mart.reads for mart in mart_files()}
    # survival names neither: its events come from efs_event(), its origins' bounds from origin_known(), which
    # calls efs_event() and diagnosis_known_by()
    assert {"core.follow_up", "core.treatment"} <= reads["survival"]
    # incidence_registered(): the population-based sources' diagnoses
    assert {"core.patient_source", "core.patient", "stage.source_params"} <= reads["incidence"]
    # origin_known(): a progression and a treatment start bound the first diagnosis
    assert {"core.follow_up", "core.treatment"} <= reads["patient_summary"]


def test_a_macro_reads_what_the_macros_it_calls_read_however_deep():
    functions = """
        CREATE OR REPLACE TEMP MACRO contacts() AS TABLE SELECT * FROM core.follow_up;
        -- a comment naming core.treatment is no read
        CREATE OR REPLACE TEMP MACRO progressed() AS TABLE SELECT * FROM contacts() WHERE x = 'core.x';
        CREATE OR REPLACE TEMP MACRO outcomes() AS TABLE SELECT * FROM progressed() JOIN core.diagnosis USING (p);
        CREATE OR REPLACE TEMP MACRO twice(x) AS 2 * x;
    """
    assert _macro_reads(functions) == {"contacts": {"core.follow_up"}, "progressed": {"core.follow_up"},
                                       "outcomes": {"core.follow_up", "core.diagnosis"}, "twice": set()}


def test_a_table_named_in_a_comment_after_the_code_of_its_line_is_no_read():
    functions = """
        CREATE OR REPLACE TEMP MACRO events() AS TABLE  -- as marts.survival reads them
            SELECT * FROM core.diagnosis WHERE note <> '-- core.treatment' -- not core.follow_up;
    """
    assert _macro_reads(functions) == {"events": {"core.diagnosis"}}
    reads = {mart.table: mart.reads for mart in mart_files()}
    # named only in such comments (they were counted as read: incidence's rows were digested around its build)
    assert "marts.survival" not in reads["held_back_endpoints"] and "marts.incidence" not in reads["left_out"]
    assert "marts.survival" in reads["left_out"]  # read in its code


@pytest.fixture
def con(synthetic_run: Any, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a copy of the shared run's warehouse, this test's to change."""
    home, _, _ = synthetic_run
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(home.warehouse, copy)
    with duckdb.connect(str(copy)) as connection:
        yield connection


@pytest.mark.integration
def test_only_the_marts_reading_a_changed_table_are_built_and_they_hold_what_building_all_holds(
        con: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture) -> None:
    # Later contacts: follow-up and the patients change; treatments, responses and adverse events do not.
    later = ("UPDATE stage.follow_up SET contact_date = contact_date + 30 WHERE contact_date IS NOT NULL "
             "AND hash(source_record_key) % 7 = 0")
    kept = _rebuilt(con, later, caplog)
    assert {"adverse_events", "board_advice_summary", "treatment_line", "response", "board_response"} <= kept
    assert not kept & {"patient_summary", "survival", "survival_km", "trial_enrolment_reasons"}
    incremental = _marts(con)
    con.execute("BEGIN")
    build_marts(con)
    con.execute("COMMIT")
    assert incremental == _marts(con)

    # A changed adverse event: its mart is built again.
    graded = ("UPDATE stage.adverse_event SET ctcae_grade = 3 WHERE source_record_key = "
              "(SELECT min(source_record_key) FROM stage.adverse_event WHERE ctcae_grade < 3)")
    kept = _rebuilt(con, graded, caplog)
    assert "adverse_events" not in kept
    # Nor are the patients' rows (core.patient is compared for the persons derived again). Survival is built again:
    # it reads the day of the export each relapse or progression is in now (meta.source_file, export_now()), which
    # changes with a publish. Its rows did not change, so its Kaplan-Meier estimates are kept; and dq.quarantine,
    # which its table's comment names, and the sources' parameters (population_based: who is followed from the
    # diagnosis) are not what builds it again.
    assert {"survival_km", "survival_landmark"} <= kept and "survival" not in kept
    survival = next(mart for mart in mart_files() if mart.table == "survival")
    assert {t for t in survival.reads if not t.startswith(("core.", "marts."))} == {"meta.source_file",
                                                                                 "stage.source_params"}
    incremental = _marts(con)
    con.execute("BEGIN")
    build_marts(con)
    con.execute("COMMIT")
    assert incremental == _marts(con)


@pytest.mark.integration
def test_the_marts_reading_the_sources_parameters_are_built_again_when_they_change(
        con: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture) -> None:
    params = {source: dict(zip(names, values, strict=True)) for source, names, values in con.execute(
        "SELECT source_id, list(name ORDER BY name), list(value ORDER BY name) FROM stage.source_param "
        "GROUP BY ALL").fetchall()}
    assert params["registry_it"]["population_based"] == "true"
    # As validation writes them every run: the same parameters are no change, another one is.
    assert write_source_params(con, params) is False
    params["registry_it"]["population_based"] = "false"
    registered = "SELECT count(*) FROM marts.survival WHERE origin = 'diagnosis'"
    assert con.execute(registered).fetchone()[0] > 0
    con.execute("BEGIN")
    assert write_source_params(con, params) is True
    con.execute("COMMIT")
    kept = _rebuilt(con, "SELECT 1", caplog, params_changed=True)
    assert "survival" not in kept and "survival_km" not in kept
    assert con.execute(registered).fetchone()[0] == 0  # no population-based registry left
