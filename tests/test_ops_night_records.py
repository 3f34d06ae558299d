"""A night that did not publish whose process is gone, though its pid lives on as another process's: `rtw
status` shows it killed (etl/run_record.py). The pid alone said `running`, as long as the pid was taken."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

from etl import run_record, runlock
from etl.config import resolve_home

REUSED = {"pid": os.getpid(), "host": socket.gethostname(), "started": "another-boot/1"}  # this pid, not its start


def _record(home, run_id: str, trigger: str, step: str, **process) -> None:
    night = run_record.NightRecord(run_id=run_id, trigger=trigger, started_at=datetime.now(UTC), step=step,
                                   **process)
    (home.root / run_record.RECORDS).mkdir(exist_ok=True)
    (home.root / run_record.RECORDS / f"{run_id}.json").write_text(night.model_dump_json())


def _shown(home) -> dict[str, str]:
    return {n.run_id: n.status for n in run_record.unpublished(home, set())}


def test_an_rtw_run_whose_pid_is_another_process_s_now_is_shown_killed(tmp_path):
    home = resolve_home(tmp_path).ensure()
    _record(home, "20261204T020000Z-dead", "cli", "plan", **REUSED)
    (home.root / runlock.LOCK_NAME).write_text(json.dumps({"run_id": "20261204T020000Z-dead", **REUSED}))
    assert _shown(home) == {"20261204T020000Z-dead": "killed"}
    (home.root / runlock.LOCK_NAME).write_text(json.dumps({"run_id": "20261204T020000Z-dead",
                                                           **runlock.this_process()}))
    assert _shown(home) == {"20261204T020000Z-dead": "running"}  # the same process: it lives


def test_a_dag_publish_whose_pid_is_another_process_s_now_is_shown_killed(tmp_path):
    """Killed while it waited for the home: its lease, kept fresh by tasks of other processes, does not name it."""
    home = resolve_home(tmp_path).ensure()
    with runlock.run_lock(home, "20261204T020000Z-dag1", kind="airflow", lease="replace"):
        runlock.take_lease(home, "20261204T020000Z-dag1")
    _record(home, "20261204T020000Z-dag1", "airflow", run_record.DAG_PUBLISH, **REUSED)
    assert _shown(home) == {"20261204T020000Z-dag1": "killed"}
    _record(home, "20261204T020000Z-dag1", "airflow", "source.extract[esmart]", **REUSED)
    assert _shown(home) == {"20261204T020000Z-dag1": "running"}  # its lease is fresh: other tasks may work
