"""A DAG task Airflow stops (its execution_timeout, a termination) is recorded as what happened, not as an error whose
text might quote an export's value (etl/run_record.py, `said`)."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowTaskTerminated, AirflowTaskTimeout

from etl.run_record import said


def test_a_task_airflow_stopped_is_said_as_stopped_by_airflow():
    assert said(AirflowTaskTimeout("Timeout, PID: 4242")) == (
        "AirflowTaskTimeout: the task ran past its execution_timeout, and Airflow stopped it there")
    assert said(AirflowTaskTerminated()).startswith("AirflowTaskTerminated: Airflow terminated the task")
