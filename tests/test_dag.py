"""The Airflow DAG: it imports cleanly, parses without a database or data libraries, and runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest
from dag_servers import Inbox, Webhook, smtp_server, text_of, webhook_server

from etl import notify
from etl.airflow_local import DagRun, airflow_env, run_dag
from etl.config import REPO_ROOT, SOURCES_DIR, Home, resolve_home

DAGS = REPO_ROOT / "dags"

PARSE_PROBE = """
import json, sys
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
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = resolve_home(tmp_path_factory.mktemp("parse-home"))
    env = airflow_env(home)
    # A metadata DB that cannot exist: parsing must not need it.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent-dir/airflow.db"
    done = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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


# ODM, per-form CSV, national CSV, Excel, SAS: one DAG run loads every format.
FIVE_SOURCES = ["crizotinib_imt", "esmart", "iltb", "registry_it", "sacha_fr"]
RECIPIENTS = "data-managers@example.org"


@pytest.fixture(scope="module")
def notifications() -> Iterator[tuple[Inbox, Webhook, dict[str, str]]]:
    """A real SMTP server and webhook, and the Variables and Connections that point the DAG at them."""
    with smtp_server() as inbox, webhook_server() as hook:
        env = {
            "AIRFLOW_CONN_RTW_SMTP": f"smtp://{inbox.host}:{inbox.port}?disable_tls=true&disable_ssl=true"
                                     "&from_email=rtw%40example.org&timeout=10&retry_limit=0",
            "AIRFLOW_VAR_RTW_NOTIFY_SMTP_CONN": "rtw_smtp",
            "AIRFLOW_VAR_RTW_NOTIFY_TO": RECIPIENTS,
            "AIRFLOW_CONN_RTW_NOTIFY_WEBHOOK": hook.url,
        }
        yield inbox, hook, env


@dataclass
class DagRuns:
    home: Home
    runs: list[DagRun]
    mails: list[list[str]]  # the texts of the mails each run sent
    posts: list[list[dict]]  # the webhook bodies each run sent


def _run(home: Home, notified: tuple[Inbox, Webhook, dict[str, str]], into: DagRuns,
         extra_env: dict[str, str] | None = None, **kwargs) -> None:
    inbox, hook, env = notified
    mails, posts = len(inbox.messages), len(hook.posts)
    into.runs.append(run_dag(home, env=env | (extra_env or {}), **kwargs))
    into.mails.append([text_of(m) for m in inbox.messages[mails:]])
    into.posts.append(hook.posts[posts:])


def _synthetic_home(root: Path) -> Home:
    from etl.synth import generate

    home = resolve_home(root).ensure()
    generate(home.root, patients=40, seed=4)  # a seed whose 40 persons reach all five sources
    return home


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory, notifications) -> DagRuns:
    """A first run, a second with nothing changed, a third forced."""
    runs = DagRuns(_synthetic_home(tmp_path_factory.mktemp("clean") / "home"), [], [], [])
    _run(runs.home, notifications, runs)
    _run(runs.home, notifications, runs)
    _run(runs.home, notifications, runs, conf={"force": True})
    return runs


@dataclass
class TroubledRuns(DagRuns):
    warehouse_before_refused: str = ""  # sha256 of the warehouse file before the refused run
    harmonised_before_refused: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory, notifications) -> TroubledRuns:
    """A night with four kinds of trouble, each for one source: sacha_fr's ODM export cut in half (the
    source fails); esmart's harmonise crashes; crizotinib_imt's drop zone offers a file whose checksum
    does not match (its pull fails; its copy already in landing is loaded anyway); registry_it's export
    waits in its drop zone (pulled, then loaded). iltb has no trouble."""
    root = tmp_path_factory.mktemp("failing")
    home = _synthetic_home(root / "home")
    odm = home.landing / "sacha_fr" / "SACHA_ODM_20261101.xml"
    odm.write_bytes(odm.read_bytes()[: odm.stat().st_size // 2])
    blocker = home.staging / "esmart" / "harmonised"  # a file where harmonise makes its folder: it crashes
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    sources = root / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    zones = {source_id: root / "zones" / source_id for source_id in ("crizotinib_imt", "registry_it")}
    for source_id, zone in zones.items():
        zone.mkdir(parents=True)
        with (sources / f"{source_id}.yaml").open("a") as mapping:
            mapping.write(f"\ndelivery:\n  url: {zone}\n  wait_minutes: 0\n")
    export = home.landing / "registry_it" / "TREP_export_20261101.csv"
    export.rename(zones["registry_it"] / export.name)
    workbook = home.landing / "crizotinib_imt" / "CRIZOTINIB_IMT_export_20261101.xlsx"
    shutil.copy2(workbook, zones["crizotinib_imt"] / workbook.name)
    (zones["crizotinib_imt"] / f"{workbook.name}.sha256").write_text(f"{'0' * 64}  {workbook.name}\n")
    # The mappings from the Airflow Variable (docs/deployment.md), which every task and sensor must read;
    # retries a second apart (Airflow caps every retry delay at max_task_retry_delay).
    pulling = {"AIRFLOW_VAR_RTW_SOURCES_DIR": str(sources), "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": "1"}
    runs = TroubledRuns(home, [], [], [])
    _run(home, notifications, runs, extra_env=pulling)
    _run(home, notifications, runs, extra_env=pulling)  # again: only the two failed sources are planned
    # Then a run with another pseudonymisation key (and the checkout's mappings: no pull fails): plan_run
    # refuses it, nothing is published.
    runs.warehouse_before_refused = hashlib.sha256(home.warehouse.read_bytes()).hexdigest()
    runs.harmonised_before_refused = sorted(home.staging.glob("*/harmonised/*"))
    _run(home, notifications, runs, extra_env={"AIRFLOW_VAR_RTW_PSEUDONYM_KEY": "another key " + "0" * 32})
    return runs


def _meta_runs(home: Home) -> list[tuple]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute("SELECT run_id, trigger, status, sources_changed, sources_unchanged, sources_failed, "
                           "message FROM meta.run ORDER BY started_at").fetchall()
    finally:
        con.close()


def _airflow_db(home: Home, sql: str) -> list[tuple]:
    con = sqlite3.connect(home.airflow / "airflow.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _task_states(home: Home, *, latest: bool = True, tries: bool = False) -> dict[str, Any]:
    """The latest (else the first) DAG run's task instances, by task id and source (the map index's name):
    their state, or (state, try number)."""
    rows = _airflow_db(home, "SELECT task_id, rendered_map_index, state, try_number FROM task_instance WHERE "
                             f"run_id = (SELECT run_id FROM dag_run ORDER BY id {'DESC' if latest else ''} LIMIT 1)")
    return {f"{task}[{name}]" if name else task: (state, tried) if tries else state
            for task, name, state, tried in rows}


def _asset_events(home: Home) -> list[dict]:
    rows = _airflow_db(home, "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                             "WHERE a.name = 'rtw_warehouse' ORDER BY e.id")
    return [json.loads(extra) for (extra,) in rows]


@pytest.mark.airflow
def test_a_real_dag_run_builds_the_warehouse_and_a_second_skips_unchanged_sources(clean_runs):
    home = clean_runs.home
    assert [r.succeeded for r in clean_runs.runs] == [True, True, True]
    runs = _meta_runs(home)
    assert [r[1:6] for r in runs[:2]] == [("airflow", "completed", FIVE_SOURCES, [], []),
                                          ("airflow", "completed", [], FIVE_SOURCES, [])]
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT source_id) FROM core.diagnosis").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM core.patient").fetchone()[0] > 30
        # Validation ran inside the DAG: every rule judged every source, marts built.
        assert con.execute("SELECT count(DISTINCT rule_id) FROM dq.check_result").fetchone()[0] == \
            con.execute("SELECT count(*) FROM dq.check").fetchone()[0] >= 40
        assert con.execute("SELECT count(*) FROM marts.patient_summary").fetchone()[0] > 30
    finally:
        con.close()
    assert (home.reports / "latest" / "index.html").is_file()


@pytest.mark.airflow
def test_the_force_param_reloads_every_source(clean_runs):
    assert _meta_runs(clean_runs.home)[2][3] == FIVE_SOURCES


@pytest.mark.airflow
def test_clean_runs_are_green_and_tell_nobody(clean_runs):
    assert clean_runs.mails == [[], [], []] and clean_runs.posts == [[], [], []]
    states = _task_states(clean_runs.home)
    assert {states[f"verdict[{s}]"] for s in FIVE_SOURCES} == {"success"}


@pytest.mark.airflow
def test_asset_events_carry_the_run_and_fire_only_when_the_warehouse_changed(clean_runs):
    first, _unchanged, forced = _meta_runs(clean_runs.home)
    events = _asset_events(clean_runs.home)
    assert [e["run_id"] for e in events] == [first[0], forced[0]]  # none for the run that changed nothing
    assert events[0]["status"] == "completed" and events[0]["sources_changed"] == FIVE_SOURCES
    assert events[0]["sources_failed"] == [] and events[0]["dag_run_id"].startswith("manual__")
    assert _task_states(clean_runs.home)["announce_change"] == "success"  # the forced run, the latest


LOADED = ["crizotinib_imt", "iltb", "registry_it"]  # of the troubled night's first run
FAILED = ["esmart", "sacha_fr"]


@pytest.mark.airflow
def test_a_failed_source_fails_its_task_and_the_run_after_the_others_are_published(failed_run):
    home, run = failed_run.home, failed_run.runs[0]
    assert not run.succeeded
    assert _airflow_db(home, "SELECT state FROM dag_run ORDER BY id") == [("failed",)] * 3
    states = _task_states(home, latest=False)
    assert states["verdict[sacha_fr]"] == "failed" and states["verdict[esmart]"] == "failed"
    assert states["source.harmonise[esmart]"] == "failed"  # the crash shows on its own task too
    assert states["publish"] == "success"
    assert {states[f"verdict[{s}]"] for s in ("iltb", "registry_it")} == {"success"}
    (_, _, status, changed, _, failed, message), _again = _meta_runs(home)  # the third published nothing
    assert (status, changed, failed) == ("completed_with_failures", LOADED, FAILED)
    assert "SACHA_ODM_20261101.xml" in message and "harmonise crashed: FileExistsError" in message
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT list(DISTINCT source_id ORDER BY source_id) FROM core.diagnosis").fetchone()[0] \
            == LOADED
    finally:
        con.close()
    log = run.output
    assert "sacha_fr: not loaded (failed): SACHA_ODM_20261101.xml" in log


@pytest.mark.airflow
def test_a_failed_run_sends_one_mail_naming_the_run_the_sources_their_reasons_and_the_report(failed_run):
    first = failed_run.mails[0]
    assert len(first) == 1, first
    run_id = _meta_runs(failed_run.home)[0][0]
    dag_run_id = _airflow_db(failed_run.home, "SELECT run_id FROM dag_run ORDER BY id")[0][0]
    text = first[0]
    assert run_id in text and dag_run_id in text
    assert "sacha_fr (failed): SACHA_ODM_20261101.xml" in text
    assert "esmart (failed): harmonise crashed: FileExistsError" in text
    assert str(failed_run.home.reports / run_id / "index.html") in text
    assert "Loaded: crizotinib_imt, iltb, registry_it" in text
    [post] = failed_run.posts[0]
    assert post["run_id"] == run_id and post["dag_run_id"] == dag_run_id
    assert sorted(s["source_id"] for s in post["sources"]) == ["crizotinib_imt", *FAILED]


@pytest.mark.airflow
def test_exports_are_pulled_from_drop_zones_before_the_import_and_a_failed_pull_is_retried_then_told(failed_run):
    home, run = failed_run.home, failed_run.runs[0]
    states = _task_states(home, latest=False, tries=True)
    assert states["pull.pull_export[registry_it]"] == ("success", 1)
    assert states["pull.pull_export[crizotinib_imt]"] == ("failed", 4)  # 3 retries
    assert {states[f"pull.wait_for_export[{s}]"][0] for s in FIVE_SOURCES} == {"success"}
    assert (home.landing / "registry_it" / "TREP_export_20261101.csv").is_file()  # pulled, then loaded
    assert states["verdict[crizotinib_imt]"][0] == "failed"  # loaded from landing, but its pull failed
    log = run.output
    assert "registry_it: new in " in log  # the sensor read the mappings of the Variable too
    assert "crizotinib_imt: its pull failed: crizotinib_imt: " in log
    [mail] = failed_run.mails[0]
    assert "- crizotinib_imt (pull failed): its pull failed: crizotinib_imt: " in mail and "sha256" in mail
    assert "registry_it" not in mail.split("Loaded:")[0]


@pytest.mark.airflow
def test_a_run_where_only_failing_sources_changed_records_them_and_announces_nothing(failed_run):
    # One outcome handed over (sacha_fr's), one crash: the case where Airflow hands a lone value.
    assert not failed_run.runs[1].succeeded
    _first, (run_id, _, status, changed, unchanged, failed, message) = _meta_runs(failed_run.home)[:2]
    assert (status, changed, failed) == ("completed_with_failures", [], FAILED)
    assert unchanged == LOADED
    assert "harmonise crashed: FileExistsError" in message
    [mail] = failed_run.mails[1]
    assert run_id in mail and "esmart (failed)" in mail and "sacha_fr (failed)" in mail
    assert len(_asset_events(failed_run.home)) == 1  # the first run's: this one changed nothing


@pytest.mark.airflow
def test_a_run_that_fails_before_publishing_is_told_by_the_dags_callback(failed_run):
    assert not failed_run.runs[2].succeeded
    assert "KeyMismatch: the pseudonymisation key differs from the one this warehouse was built with" \
        in failed_run.runs[2].output
    assert len(_meta_runs(failed_run.home)) == 2  # nothing published, nothing harmonised
    assert hashlib.sha256(failed_run.home.warehouse.read_bytes()).hexdigest() == failed_run.warehouse_before_refused
    assert sorted(failed_run.home.staging.glob("*/harmonised/*")) == failed_run.harmonised_before_refused
    dag_run_id = _airflow_db(failed_run.home, "SELECT run_id FROM dag_run ORDER BY id DESC")[0][0]
    [mail] = failed_run.mails[2]
    assert f"Run (none: it failed before publishing), Airflow DAG run {dag_run_id}." in mail
    assert "The run failed: the task publish failed (task_failure)" in mail
    assert "the warehouse is unchanged" in mail
    [post] = failed_run.posts[2]
    assert post["run_id"] is None and post["cause"].startswith("the task publish failed")


@pytest.mark.airflow
def test_a_run_that_loaded_some_sources_announces_them_and_the_failed_ones(failed_run):
    run_id = _meta_runs(failed_run.home)[0][0]
    event = _asset_events(failed_run.home)[0]
    assert event["run_id"] == run_id and event["status"] == "completed_with_failures"
    assert event["sources_changed"] == LOADED
    assert event["sources_failed"] == FAILED


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


def test_parse_does_not_read_the_home(tmp_path):
    # Parsing with an RTW_HOME that does not exist must not create it (no I/O at parse time).
    home = resolve_home(tmp_path / "never-created")
    env = airflow_env(home)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", PARSE_PROBE, str(DAGS)], env=env, capture_output=True,
                   check=True, timeout=300)
    assert sorted(p.name for p in home.root.iterdir()) == ["airflow"]
