"""Scale-out: the nightly DAG under the CeleryExecutor, with two workers, a real Redis broker, a
scheduler, a DAG processor and the API server the workers report to (Airflow 3).

The two workers share what a deployment shares (docs/deployment.md): the home (one folder here,
shared storage there) and the key, read by every task from the Airflow Variable
`rtw_pseudonym_key` (no key in the workers' environment, no key file in the home). The warehouse
they build must equal what `rtw run` builds from the same exports with the same key.

SQLite metadata is enough on one machine (Airflow 3 accepts it with any executor); a deployment
uses PostgreSQL.

Three sources of two formats (SOURCES, from the Variable `rtw_sources_dir`), where five added ten mapped tasks
and their reading: three at once are more than one worker takes (WORKER_CONCURRENCY 2, Airflow's prefetch of 1),
so both workers get tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from few_sources import few_sources

from etl import pipeline
from etl.config import REPO_ROOT, resolve_home
from etl.synth import generate

pytestmark = pytest.mark.deployment

DAG_ID = "rtw_nightly_import"
KEY = "celery-test-key-0123456789abcdef0123456789abcdef"
CORE_TABLES = ["patient", "patient_source", "study_enrolment", "consent", "diagnosis", "molecular_alteration",
               "tumour_board_review", "treatment", "response_assessment", "adverse_event", "follow_up"]
WORKERS = ["w1", "w2"]
SOURCES = ("esmart", "iltb", "registry_it")  # SAS, CSV, CSV
RUN_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(what: str, ready, timeout: float, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(1)
    tails = "\n".join(f"== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                      for log in sorted(logs.glob("*.log")))
    pytest.fail(f"{what} within {timeout:.0f}s; logs in {logs}:\n{tails}")


def _core(warehouse: Path) -> tuple[dict[str, int], list[str]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM core.{t}").fetchone()[0] for t in CORE_TABLES}
        patients = [r[0] for r in con.execute("SELECT patient_id FROM core.patient ORDER BY patient_id").fetchall()]
    finally:
        con.close()
    return counts, patients


class Cluster:
    """Redis, the Airflow components and two Celery workers, each in its own process group."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.logs = root, root / "logs"
        self.logs.mkdir()
        airflow_home = root / "airflow"
        airflow_home.mkdir()
        self.redis_port, api_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RTW_"))}
        env.update({
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "celery-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "GX_ANALYTICS_ENABLED": "False",
            "RTW_HOME": str(home),
            "RTW_QUIET_SECONDS": "0",
        })
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=300, check=False)
        if check:
            assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return done

    def start(self, name: str, command: list[str], **extra_env: str) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(command, env={**self.env, **extra_env}, cwd=self.root, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_all(self) -> None:
        self.start("redis", ["/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                             "--save", "", "--appendonly", "no"])
        airflow = [sys.executable, "-m", "airflow"]
        self.start("api-server", [*airflow, "api-server"])
        self.start("scheduler", [*airflow, "scheduler"])
        self.start("dag-processor", [*airflow, "dag-processor"])
        for worker in WORKERS:  # each its own log server port: two workers on one machine
            self.start(worker, [*airflow, "celery", "worker", "--celery-hostname", f"{worker}@%h"],
                       AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(_free_port()))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _runs(cluster: Cluster) -> list[dict]:
    done = cluster.airflow("dags", "list-runs", DAG_ID, "-o", "json", check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    return json.loads(lines[-1]) if done.returncode == 0 and lines else []


@pytest.fixture(scope="module")
def celery_run(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("celery")
    home = resolve_home(root / "home").ensure()
    generate(home.root, patients=40, seed=4)  # a seed whose 40 persons reach all five sources
    mappings = root / "sources"
    few_sources(home, mappings, *SOURCES)
    reference = resolve_home(root / "reference").ensure()
    shutil.copytree(home.landing, reference.landing, dirs_exist_ok=True)

    cluster = Cluster(root, home.root)
    cluster.airflow("db", "migrate")
    cluster.airflow("variables", "set", "rtw_pseudonym_key", KEY)
    cluster.airflow("variables", "set", "rtw_sources_dir", str(mappings))
    try:
        cluster.start_all()
        _wait_for("both Celery workers ready", lambda: all(f"{w}@" in cluster.log(w) and " ready." in cluster.log(w)
                                                            for w in WORKERS), 300, cluster.logs)
        # Unpausing lets the scheduler create the latest nightly run (catchup=False): no manual trigger.
        _wait_for("the DAG parsed and unpaused", lambda: cluster.airflow("dags", "unpause", DAG_ID,
                                                                        check=False).returncode == 0,
                  300, cluster.logs)  # generous: a loaded machine starts seven processes of Airflow and Celery
        _wait_for("the nightly run finished", lambda: any(r["state"] in ("success", "failed")
                                                          for r in _runs(cluster)), RUN_TIMEOUT, cluster.logs)
        runs = _runs(cluster)
    finally:
        cluster.stop()
    # `rtw run` of the same exports with the same key, in this process.
    pipeline.run(reference, key_value=KEY, sources_dir=mappings)
    yield {"runs": runs, "home": home, "reference": reference,
           "received": {w: cluster.log(w).count("] received") for w in WORKERS}}


def test_the_nightly_run_completes_under_celery(celery_run):
    finished = [r for r in celery_run["runs"] if r["state"] in ("success", "failed")]
    assert [r["state"] for r in finished] == ["success"], celery_run["runs"]
    con = duckdb.connect(str(celery_run["home"].warehouse), read_only=True)
    try:
        runs = con.execute("SELECT trigger, status, len(sources_changed) FROM meta.run").fetchall()
    finally:
        con.close()
    assert runs == [("airflow", "completed", len(SOURCES))]


def test_both_workers_ran_tasks(celery_run):
    assert all(count > 0 for count in celery_run["received"].values()), celery_run["received"]


def test_the_workers_share_the_key_from_the_variable(celery_run):
    # No key in the workers' environment and none written to the shared home: the Variable was the key.
    assert not celery_run["home"].key_file.exists()
    assert _core(celery_run["home"].warehouse)[1] == _core(celery_run["reference"].warehouse)[1]


def test_the_warehouse_equals_an_rtw_run_of_the_same_exports(celery_run):
    assert _core(celery_run["home"].warehouse)[0] == _core(celery_run["reference"].warehouse)[0]
