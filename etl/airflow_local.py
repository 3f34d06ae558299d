"""Running the nightly DAG with an embedded Airflow: SQLite metadata under the home, no server.

`rtw demo` and `make airflow` use this; a real deployment only needs the DAG folder, `RTW_HOME`
and the key (see README). Airflow is driven through its own CLI in a subprocess so its
configuration (read from the environment at import) never leaks into the caller.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from etl.config import REPO_ROOT, Home

DAG_ID = "rtw_nightly_import"


def airflow_env(home: Home) -> dict[str, str]:
    """Environment for an Airflow that keeps everything under `<home>/airflow`."""
    airflow_home = home.airflow
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "GX_ANALYTICS_ENABLED": "False",
        "RTW_HOME": str(home.root),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    })
    return env


def _airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"'airflow {' '.join(args)}' failed (exit {done.returncode}); log: {log}\n{tail}")


def run_dag_once(home: Home) -> Path:
    """Migrate the metadata DB and run the nightly DAG once with `airflow dags test`."""
    env = airflow_env(home)
    log = home.airflow / "demo.log"
    log.write_text("")
    _airflow(["db", "migrate"], env, log)
    _airflow(["dags", "test", DAG_ID], env, log)
    return log


def standalone(home: Home) -> None:
    """Start `airflow standalone` (scheduler, API server, UI) for this home; blocks."""
    env = airflow_env(home)
    os.execve(sys.executable, [sys.executable, "-m", "airflow", "standalone"], env)
