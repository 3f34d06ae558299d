"""A DAG task Airflow stops (its execution_timeout, a termination) is recorded as what happened, not as an error whose
text might quote an export's value (etl/run_record.py, `said`)."""

from __future__ import annotations

import signal

import duckdb
import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from etl import pipeline
from etl.config import SOURCES_DIR, Home
from etl.run_record import said
from etl.steps import SourceOutcome, SourceStatus


def test_a_task_airflow_stopped_is_said_as_stopped_by_airflow():
    assert said(AirflowTaskTimeout("Timeout, PID: 4242")) == (
        "AirflowTaskTimeout: the task ran past its execution_timeout, and Airflow stopped it there")
    assert said(AirflowTaskTerminated()).startswith("AirflowTaskTerminated: Airflow terminated the task")


def test_a_task_airflow_stopped_inside_a_duckdb_query_is_said_as_stopped_by_airflow():
    # DuckDB turns the exception of the signal handler (Airflow's timeout: SIGALRM) into its own, raised from it.
    try:
        raise RuntimeError("Query interrupted") from AirflowTaskTimeout("Timeout, PID: 4242")
    except RuntimeError as exc:
        interrupted = exc
    assert said(interrupted) == (
        "AirflowTaskTimeout: the task ran past its execution_timeout, and Airflow stopped it there")
    assert said(RuntimeError("Query interrupted")).startswith("RuntimeError (its text")  # no stop behind it


def _timed_out(_number: int, _frame: object) -> None:
    raise AirflowTaskTimeout("Timeout, PID: 4242")  # as Airflow's execution_timeout does, on SIGALRM


def test_a_harmonise_stopped_in_a_duckdb_query_is_the_stop_not_a_crash_of_the_source(tmp_path, monkeypatch):
    """prepare_source took the error DuckDB made of the stop for its source's crash ('harmonise crashed:
    RuntimeError ...') and the run went on to publish, unless its run_record.Night had seen the signal."""
    home = Home(tmp_path / "home").ensure()
    extracted = SourceOutcome(source_id="registry_it", run_id="20261206T000000Z", status=SourceStatus.EXTRACTED)

    def harmonising_for_ever(*_args: object, **_kwargs: object) -> SourceOutcome:
        con = duckdb.connect()
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        # Seconds, not hours: a query DuckDB could not stop at once would hold the process (its connection's
        # close waits for it) long after the test, as one of 10**15 rows did.
        con.execute("SELECT count(*) FROM range(4000000000)").fetchall()
        raise AssertionError("the query ended")

    monkeypatch.setattr(pipeline, "extract_source", lambda *_args, **_kwargs: extracted)
    monkeypatch.setattr(pipeline, "harmonise_extracted", harmonising_for_ever)
    before = signal.signal(signal.SIGALRM, _timed_out)
    try:
        with pytest.raises(RuntimeError) as raised:
            pipeline.prepare_source(home, extracted.run_id, extracted.source_id, None, SOURCES_DIR)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert said(raised.value).startswith("AirflowTaskTimeout: the task ran past its execution_timeout")
