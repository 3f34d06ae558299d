"""Running the nightly DAG with an embedded Airflow: SQLite metadata under the home, no server.

`rtw demo` and `make airflow` use this; a real deployment only needs the DAG folder, `RTW_HOME`
and the key (see README). Airflow is driven through its own CLI in a subprocess so its
configuration (read from the environment at import) never leaks into the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from etl.config import REPO_ROOT, Home
from etl.resources import dags_dir

DAG_ID = "rtw_nightly_import"
# Airflow's UI and REST API show a Variable's value unless its name holds one of the sensitive words
# ([core] sensitive_var_conn_names adds to them): `rtw_pseudonym_key` holds none, so the key was shown.
SENSITIVE_NAMES = ("pseudonym_key",)


def airflow_env(home: Home) -> dict[str, str]:
    """Environment for an Airflow that keeps everything under `<home>/airflow`.

    `airflow standalone` starts its scheduler, API server, DAG processor and triggerer as `airflow ...`
    found on PATH: this interpreter's scripts folder comes first, so `make airflow` and `rtw airflow`
    work without the environment being activated (they found no `airflow`, or another installation's)."""
    airflow_home = home.airflow
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env.update({
        "PATH": os.pathsep.join([scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != scripts)]),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir()),  # the checkout's, or the installed wheel's
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": _sensitive_names(env.get("AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES")),
        "GX_ANALYTICS_ENABLED": "False",
        "RTW_HOME": str(home.root),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    })
    return env


def _sensitive_names(configured: str | None) -> str:
    """The names Airflow hides the values of, besides its own: the configured ones and the key's."""
    names = [n.strip() for n in (configured or "").split(",") if n.strip()]
    return ",".join(dict.fromkeys([*names, *SENSITIVE_NAMES]))


def _airflow(args: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    return done.returncode


def _failed(args: list[str], code: int, log: Path) -> RuntimeError:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    return RuntimeError(f"'airflow {' '.join(args)}' failed (exit {code}); log: {log}\n{tail}")


@dataclass(frozen=True)
class DagRun:
    """One `airflow dags test` run: whether the DAG run succeeded, its log file (rewritten by the next
    run) and what this run wrote there."""

    succeeded: bool
    log: Path
    output: str


def run_dag(home: Home, *, conf: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> DagRun:
    """Migrate the metadata DB and run the nightly DAG once; a failed DAG run is returned, not raised.

    conf: the run's params (e.g. {"force": True}); env: more environment (Variables, Connections)."""
    run_env = airflow_env(home) | dict(env or {})
    log = home.airflow / "demo.log"
    log.write_text("")
    _migrate(home, run_env, log)
    args = ["dags", "test", DAG_ID, *(["--conf", json.dumps(dict(conf))] if conf else [])]
    succeeded = _airflow(args, run_env, log) == 0
    return DagRun(succeeded=succeeded, log=log, output=log.read_text(errors="replace"))


def _migrate(home: Home, env: dict[str, str], log: Path) -> None:
    """`airflow db migrate`, once per Airflow version and database (it takes seconds even when there is
    nothing to do)."""
    done, mark = home.airflow / ".migrated", migrated_mark(env)
    if (home.airflow / "airflow.db").is_file() and done.is_file() and done.read_text() == mark:
        return
    if code := _airflow(["db", "migrate"], env, log):
        raise _failed(["db", "migrate"], code, log)
    done.write_text(mark)


def migrated_mark(env: Mapping[str, str]) -> str:
    """What `<home>/airflow/.migrated` holds once the metadata DB is migrated: the Airflow version and the DB."""
    return f"{version('apache-airflow')} {env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}"


def run_dag_once(home: Home) -> Path:
    """Run the nightly DAG once with `airflow dags test`; RuntimeError with the log's tail if it failed."""
    run = run_dag(home)
    if not run.succeeded:
        raise _failed(["dags", "test", DAG_ID], 1, run.log)
    return run.log


def standalone(home: Home) -> None:
    """Start `airflow standalone` (scheduler, API server, UI) for this home; blocks."""
    env = airflow_env(home)
    os.execve(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)
