"""What the DAG-run tests share: a home of 40 synthetic persons, real SMTP and webhook servers to be
told through, `airflow dags test` runs that keep what each told, and reads of the warehouse's and
Airflow's records of them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dag_servers import Inbox, Webhook, smtp_server, text_of, webhook_server
from shared_build import built_once

from etl.airflow_local import DagRun, _migrate, airflow_env, migrated_mark, run_dag
from etl.config import Home, resolve_home

# ODM, per-form CSV, national CSV, Excel, SAS: one DAG run loads every format.
FIVE_SOURCES = ["crizotinib_imt", "esmart", "iltb", "registry_it", "sacha_fr"]
RECIPIENTS = "data-managers@example.org"

Notified = tuple[Inbox, Webhook, dict[str, str]]


@contextmanager
def notifications() -> Iterator[Notified]:
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
    """The DAG runs of one home, with what each told."""

    home: Home
    runs: list[DagRun]
    mails: list[list[str]]  # the texts of the mails each run sent
    posts: list[list[dict]]  # the webhook bodies each run sent


def run_into(home: Home, notified: Notified, into: DagRuns, extra_env: dict[str, str] | None = None,
             **kwargs: Any) -> None:
    """Run the DAG once on the home, keeping what it mailed and posted."""
    inbox, hook, env = notified
    mails, posts = len(inbox.messages), len(hook.posts)
    into.runs.append(run_dag(home, env=env | (extra_env or {}), **kwargs))
    into.mails.append([text_of(m) for m in inbox.messages[mails:]])
    into.posts.append(hook.posts[posts:])


def synthetic_home(root: Path, factory: pytest.TempPathFactory) -> Home:
    """40 synthetic persons' exports, and an Airflow metadata database ready for `airflow dags test`."""
    from etl.synth import generate

    home = resolve_home(root).ensure()
    generate(home.root, patients=40, seed=4)  # a seed whose 40 persons reach all five sources
    copy_migrated_db(home, factory)
    return home


def copy_migrated_db(home: Home, factory: pytest.TempPathFactory) -> None:
    """The metadata database `airflow db migrate` made once for the session (seconds a home; its tables name no
    home), marked migrated for this home (else run_dag migrates it again)."""
    def migrate(folder: Path) -> None:
        template = resolve_home(folder).ensure()
        _migrate(template, airflow_env(template), template.airflow / "migrate.log")

    template = resolve_home(built_once(factory, "airflow-migrated", migrate))
    env = airflow_env(home)  # makes home.airflow
    # SQLite's backup, not a copy of the file: the DB is in WAL mode, and what a copy of it alone leaves out
    with closing(sqlite3.connect(template.airflow / "airflow.db")) as made, \
            closing(sqlite3.connect(home.airflow / "airflow.db")) as db:
        made.backup(db)
    (home.airflow / ".migrated").write_text(migrated_mark(env))


def meta_runs(home: Home) -> list[tuple]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute("SELECT run_id, trigger, status, sources_changed, sources_unchanged, sources_failed, "
                           "message FROM meta.run ORDER BY started_at").fetchall()
    finally:
        con.close()


def airflow_db(home: Home, sql: str) -> list[tuple]:
    con = sqlite3.connect(home.airflow / "airflow.db")
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def task_states(home: Home, *, latest: bool = True, tries: bool = False, nth: int | None = None) -> dict[str, Any]:
    """The latest (else the first; or the `nth`, 0 the first) DAG run's task instances, by task id and source (the
    map index's name): their state, or (state, try number)."""
    which = f"LIMIT 1 OFFSET {nth}" if nth is not None else f"{'DESC' if latest else ''} LIMIT 1"
    rows = airflow_db(home, "SELECT task_id, rendered_map_index, state, try_number FROM task_instance WHERE "
                             f"run_id = (SELECT run_id FROM dag_run ORDER BY id {which})")
    return {f"{task}[{name}]" if name else task: (state, tried) if tries else state
            for task, name, state, tried in rows}


def asset_events(home: Home) -> list[dict]:
    rows = airflow_db(home, "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                             "WHERE a.name = 'rtw_warehouse' ORDER BY e.id")
    return [json.loads(extra) for (extra,) in rows]
