"""The Airflow DAG: it imports cleanly, parses without a database or data libraries, and tells of a failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from dag_runs import RECIPIENTS

from etl import notify
from etl.airflow_local import airflow_env
from etl.config import REPO_ROOT, resolve_home

DAGS = REPO_ROOT / "dags"

PARSE_PROBE = """
import json, sys
from airflow._shared.secrets_masker import redact  # as the API server and the UI hide values
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in ("pandas", "duckdb", "great_expectations", "pyarrow", "etl.pipeline") if m in sys.modules)
dag = bag.dags.get("rtw_nightly_import")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "heavy": heavy,
    "tasks": sorted(t.task_id for t in dag.tasks) if dag else [],
    "schedule": getattr(dag, "schedule", None) if dag else None,
    "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag and dag.dagrun_timeout else None,
    "params": {k: dag.params[k] for k in dag.params} if dag else {},
    "has_failure_callback": bool(dag and dag.on_failure_callback),
    "task_settings": {t.task_id: {
        "owner": t.owner, "retries": t.retries, "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
        "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
        "outlets": [[o.name, o.uri] for o in t.outlets],
        "failure_callback": bool(t.on_failure_callback)} for t in dag.tasks} if dag else {},
    "key_variable_shown": redact("k" * 64, "rtw_pseudonym_key"),
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    """The DAG folder parsed as Airflow parses it, with an RTW_HOME not created (only AIRFLOW_HOME in it) and a
    metadata DB that cannot exist: parsing must need neither. With what the home holds after."""
    home = resolve_home(tmp_path_factory.mktemp("parse") / "never-created")
    env = airflow_env(home)  # makes the home's airflow/ folder, no more
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent-dir/airflow.db"
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found | {"home_holds": sorted(p.name for p in home.root.iterdir())}


def test_every_dag_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert parsed["dags"] == ["rtw_nightly_import"]


def test_parsing_touches_no_database_and_no_data_library(parsed):
    assert parsed["heavy"] == []


def test_the_dag_has_the_documented_shape(parsed):
    assert parsed["tasks"] == ["all_sources", "announce_change", "changed_sources", "plan_run", "publish",
                               "pull.pull_export", "pull.wait_for_export", "source.extract", "source.harmonise",
                               "verdict"]
    assert parsed["schedule"] == "0 2 * * *"


def test_every_task_has_an_owner_and_a_timeout_and_only_reading_exports_is_retried(parsed):
    settings = parsed["task_settings"]
    assert {s["owner"] for s in settings.values()} == {"rtw-data-management"}
    assert all(s["timeout"] and s["timeout"] <= 2 * 3600 for t, s in settings.items() if t != "pull.wait_for_export")
    assert settings["pull.wait_for_export"]["timeout"] == 8 * 3600  # the drop zone's wait is 6 h by default
    retried = {t: s["retries"] for t, s in settings.items() if s["retries"]}
    assert retried == {"source.extract": 2, "pull.pull_export": 3}
    assert settings["publish"]["trigger_rule"] == "all_done" and settings["publish"]["retries"] == 0
    assert parsed["dagrun_timeout"] == 10 * 3600
    assert parsed["params"] == {"force": False}


def test_failures_are_told_and_the_asset_has_a_fixed_identity(parsed):
    settings = parsed["task_settings"]
    assert parsed["has_failure_callback"] and settings["verdict"]["failure_callback"]
    # Not the parse location's path: consumers in other deployments match it by name and URI.
    assert [t for t, s in settings.items() if s["outlets"]] == ["announce_change"]
    assert settings["announce_change"]["outlets"] == [["rtw_warehouse", "x-rtw://warehouse"]]


# The DAG's real runs (a first load of every format, a night with nothing changed, a forced one) are the first
# nights of test_dag_operations.py's deployment: a home of their own here cost three more DAG runs.


PUBLISHED = {  # what the publish task hands over (dags/nightly_import.py)
    "run_id": "20261102T020000Z-ab12", "status": "completed_with_failures", "report": "/rtw/reports/r/index.html",
    "sources_changed": ["iltb"], "sources_failed": ["registry_it", "sacha_fr"], "validated": True,
    "sources": ["esmart", "iltb", "registry_it", "sacha_fr"],
    "verdicts": {"esmart": {"status": "unchanged", "reason": None, "pull": "its pull failed: esmart: sftp down"},
                 "iltb": {"status": "harmonised", "reason": None, "pull": None},
                 "registry_it": {"status": "held", "reason": "held, its last good data kept: 40% fewer records",
                                 "pull": None},
                 "sacha_fr": {"status": "failed", "reason": "SACHA_ODM.xml line 5012, column 7: not well-formed",
                              "pull": None}},
}


def test_the_failure_message_names_the_run_each_source_not_loaded_with_its_reason_and_the_report():
    failure = notify.failure_from_published("scheduled__2026-11-02T02:00:00+00:00", PUBLISHED)
    assert [(s.source_id, s.status) for s in failure.sources] == [("esmart", "pull failed"), ("registry_it", "held"),
                                                                  ("sacha_fr", "failed")]
    text = notify.message_text(failure)
    assert "Run 20261102T020000Z-ab12, Airflow DAG run scheduled__2026-11-02T02:00:00+00:00." in text
    assert "- esmart (pull failed): its pull failed: esmart: sftp down" in text
    assert "- registry_it (held): held, its last good data kept: 40% fewer records" in text
    assert "- sacha_fr (failed): SACHA_ODM.xml line 5012, column 7: not well-formed" in text
    assert "Loaded: iltb" in text and "Report: /rtw/reports/r/index.html" in text
    assert notify.subject(failure) == \
        "[rtw] nightly import 20261102T020000Z-ab12: esmart pull failed, registry_it held, sacha_fr failed"
    assert "&lt;" in notify.message_html(notify.RunFailure("d", "r", cause="a <b> tag"))  # escaped in the mail
    body = notify.payload(failure)
    assert body["run_id"] == "20261102T020000Z-ab12" and body["sources"][2]["reason"].startswith("SACHA_ODM")


def test_a_run_that_failed_before_publishing_says_which_task_and_that_the_warehouse_is_unchanged():
    text = notify.message_text(notify.RunFailure("manual__x", None, cause="the task plan_run failed (task_failure)"))
    assert "Run (none: it failed before publishing), Airflow DAG run manual__x." in text
    assert "The run failed: the task plan_run failed (task_failure)." in text
    assert "the warehouse is unchanged" in text


def test_the_webhook_url_comes_from_its_connection_and_only_http_is_called():
    def connection(conn_type: str, host: str, schema: str = "", port: int | None = None, **extra: str):
        return SimpleNamespace(conn_type=conn_type, host=host, schema=schema, port=port, extra_dejson=extra)

    assert notify.webhook_url(connection("https", "hooks.example.org", "services/T0/B0")) == \
        "https://hooks.example.org/services/T0/B0"
    assert notify.webhook_url(connection("http", "127.0.0.1", "hook", 8080)) == "http://127.0.0.1:8080/hook"
    assert notify.webhook_url(connection("generic", "x", url="https://chat.example.org/h")) == \
        "https://chat.example.org/h"
    with pytest.raises(ValueError, match="http or https"):
        notify.webhook_url(connection("generic", "x", url="file:///etc/passwd"))


SEND_PROBE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
from etl import notify
print("SENT", notify.send(notify.RunFailure(dag_run_id="manual__x", run_id="r1", cause="plan_run failed")))
"""


@pytest.mark.parametrize("variables", [{}, {"AIRFLOW_VAR_RTW_NOTIFY_TO": RECIPIENTS}])
def test_with_nothing_configured_nothing_is_sent_and_nothing_fails(tmp_path, variables):
    env = {k: v for k, v in airflow_env(resolve_home(tmp_path)).items()
           if not k.startswith(("AIRFLOW_VAR_RTW_NOTIFY", "AIRFLOW_CONN_"))} | variables
    done = subprocess.run([sys.executable, "-c", SEND_PROBE], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SENT []" in done.stdout and "told: nobody" in done.stdout
    if variables:  # recipients without an SMTP Connection: a warning, not an error
        assert "there is no SMTP Connection smtp_default: no e-mail sent" in done.stdout


def test_the_dag_file_is_where_the_readme_says(tmp_path):
    assert (DAGS / "nightly_import.py").is_file()
    assert "dags/nightly_import.py" in (REPO_ROOT / "README.md").read_text()


def test_parse_does_not_read_the_home(parsed):
    # Parsing with an RTW_HOME that does not exist must not create it (no I/O at parse time).
    assert parsed["home_holds"] == ["airflow"]


def test_the_local_airflow_finds_its_own_commands_without_the_environment_activated(tmp_path, monkeypatch):
    # `make airflow` and `rtw airflow` run `airflow standalone`, which starts its scheduler, API server,
    # DAG processor and triggerer as `airflow ...` looked up on PATH: with the environment not activated
    # (the Makefile calls .venv/bin/rtw), each stopped with FileNotFoundError: 'airflow'.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = airflow_env(resolve_home(tmp_path))
    assert shutil.which("airflow", path=env["PATH"]) == str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run(["airflow", "version"], env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_local_airflow_hides_the_pseudonymisation_key_in_its_ui_and_api(parsed):
    # Airflow shows a Variable's value unless its name holds a sensitive word: GET /api/v2/variables (and
    # the UI's Variables page) showed the key of the Variable rtw_pseudonym_key in clear.
    assert parsed["key_variable_shown"] == "***"
    assert "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES=pseudonym_key" in (REPO_ROOT / "docs" / "deployment.md").read_text()
