"""The installed package works without a checkout: build the wheel, install it into a fresh
virtual environment outside the repository, and run `rtw` and the DAG from there.

The new environment gets no dependencies of its own: a `.pth` file puts the project's
installed dependencies on its path (only that folder: the editable install's own `.pth`, which
would put the checkout on the path, is not processed). So `etl` can only come from the wheel,
and everything it reads (mappings, SQL, suites, the DAG) from the wheel's package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import duckdb
import pytest

from etl.config import REPO_ROOT

pytestmark = pytest.mark.deployment

PACKAGED_FOLDERS = ["sources", "warehouse", "expectations", "dags"]
CORE_TABLES = ["patient", "patient_source", "study_enrolment", "consent", "diagnosis", "molecular_alteration",
               "tumour_board_review", "treatment", "response_assessment", "adverse_event", "follow_up"]
KEY = "wheel-test-key-0123456789abcdef0123456789abcdef"  # one key for both runs: same pseudonyms
SEED = "4"  # a seed whose 40 persons reach all five sources

WHERE_FROM = """
import json, etl, etl.resources as r
from etl.config import SOURCES_DIR, WAREHOUSE_SQL_DIR
print(json.dumps({"etl": etl.__file__, "data_root": str(r.data_root()), "sources": str(SOURCES_DIR),
                  "warehouse_sql": str(WAREHOUSE_SQL_DIR), "expectations": str(r.expectations_dir()),
                  "dags": str(r.dags_dir())}))
"""


def _uv() -> str:
    found = shutil.which("uv") or (REPO_ROOT / ".uv" / "bin" / "uv")
    if not Path(found).is_file():
        pytest.fail("uv is needed to build the wheel: run `make install` (it bootstraps .uv/bin/uv)")
    return str(found)


def _run(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return done


def _core_counts(warehouse: Path) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM core.{t}").fetchone()[0] for t in CORE_TABLES}
    finally:
        con.close()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from this checkout, installed with --no-deps into a new venv outside it."""
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(REPO_ROOT)
    uv = _uv()
    build_env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    _run([uv, "build", "--wheel", "--out-dir", str(root / "dist"), str(REPO_ROOT)], env=build_env, cwd=REPO_ROOT)
    wheel = next((root / "dist").glob("rare_tumour_warehouse-*.whl"))

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=build_env, cwd=root)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     env=build_env, cwd=root).stdout.strip())
    (site / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([uv, "pip", "install", "--no-deps", "--python", str(python), str(wheel)], env=build_env, cwd=root)

    # The environment of a deployment: nothing of the checkout, and a working directory outside it.
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "RTW_HOME", "RTW_SOURCES_DIR"}}
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
                "RTW_PSEUDONYM_KEY": KEY, "RTW_QUIET_SECONDS": "0", "GX_ANALYTICS_ENABLED": "False"})
    work = root / "work"
    work.mkdir()
    where = json.loads(_run([str(python), "-c", WHERE_FROM], env=env, cwd=work).stdout.strip().splitlines()[-1])
    return {"root": root, "wheel": wheel, "venv": venv.resolve(), "python": python, "env": env, "work": work,
            "where": where}


@pytest.fixture(scope="module")
def cli_home(installed) -> Path:
    """`rtw synth` then `rtw run` with the installed command, from outside the checkout."""
    home = installed["root"] / "home-cli"
    rtw = str(installed["venv"] / "bin" / "rtw")
    _run([rtw, "synth", "--out", str(home), "--patients", "40", "--seed", SEED], env=installed["env"],
         cwd=installed["work"])
    _run([rtw, "run", "--home", str(home)], env=installed["env"], cwd=installed["work"])
    return home


def test_the_wheel_carries_every_file_the_code_reads(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder in PACKAGED_FOLDERS:
        shipped = [p for p in (REPO_ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        assert shipped, folder
        for path in shipped:
            assert f"etl/_data/{path.relative_to(REPO_ROOT).as_posix()}" in names
    # Data inside the package travels with it: report templates and the ICCC-3 table.
    assert "etl/quality/templates/report.html.j2" in names
    assert "etl/quality/data_docs_assets/rtw-tables.js" in names  # Data Docs read offline (etl/quality/data_docs.py)
    assert "etl/transform/vocab/iccc3_iarc2017.csv" in names
    # And ODM's C walk, compiled for this Python (hatch_build.py).
    assert [n for n in names if n.startswith("etl/extract/_odm_walk.") and n.endswith(".so")]


def test_etl_and_its_data_come_from_the_installed_wheel(installed):
    where, venv = installed["where"], installed["venv"]
    packaged = Path(where["etl"]).parent / "_data"
    assert Path(where["etl"]).is_relative_to(venv), where
    assert Path(where["data_root"]) == packaged
    for key, folder in [("sources", "sources"), ("warehouse_sql", "warehouse"), ("expectations", "expectations"),
                        ("dags", "dags")]:
        assert Path(where[key]) == packaged / folder
    assert (packaged / "dags" / "nightly_import.py").is_file()


def test_a_deployment_points_at_its_own_mappings(installed, tmp_path):
    own = tmp_path / "our-mappings"
    own.mkdir()
    shutil.copy(REPO_ROOT / "sources" / "registry_it.yaml", own)
    env = {**installed["env"], "RTW_SOURCES_DIR": str(own)}
    probe = ("from etl.config import SOURCES_DIR; from etl.transform.mapping import load_mappings; "
             "print(SOURCES_DIR); print(sorted(load_mappings(SOURCES_DIR)))")
    lines = _run([str(installed["python"]), "-c", probe], env=env, cwd=installed["work"]).stdout.splitlines()
    assert lines[-2:] == [str(own), "['registry_it']"]
    # A folder named but missing is said plainly, naming the setting.
    missing = ("import etl.resources as r\ntry:\n    r.sources_dir('/nonexistent/mappings')\n"
               "except FileNotFoundError as exc:\n    print(exc)")
    said = _run([str(installed["python"]), "-c", missing], env=env, cwd=installed["work"]).stdout
    assert "/nonexistent/mappings" in said and "rtw_sources_dir" in said


def test_rtw_synth_and_run_from_the_installed_command(cli_home):
    counts = _core_counts(cli_home / "warehouse.duckdb")
    assert counts["patient"] > 30 and counts["diagnosis"] > 30
    con = duckdb.connect(str(cli_home / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT source_id) FROM core.diagnosis").fetchone()[0] == 5
        assert con.execute("SELECT count(*) FROM dq.check").fetchone()[0] >= 40
        assert con.execute("SELECT count(*) FROM marts.patient_summary").fetchone()[0] > 30
    finally:
        con.close()


def test_airflow_runs_the_packaged_dag(installed, cli_home):
    dags = Path(installed["where"]["dags"])
    assert dags.is_relative_to(installed["venv"])
    home = installed["root"] / "home-airflow"
    rtw = str(installed["venv"] / "bin" / "rtw")
    _run([rtw, "synth", "--out", str(home), "--patients", "40", "--seed", SEED], env=installed["env"],
         cwd=installed["work"])
    airflow_home = installed["root"] / "airflow"
    airflow_home.mkdir()
    env = {**installed["env"],
           "AIRFLOW_HOME": str(airflow_home),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
           "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
           "RTW_HOME": str(home)}
    airflow = [str(installed["python"]), "-m", "airflow"]
    _run([*airflow, "db", "migrate"], env=env, cwd=installed["work"])
    _run([*airflow, "dags", "test", "rtw_nightly_import"], env=env, cwd=installed["work"])
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT trigger, status FROM meta.run").fetchall()
    finally:
        con.close()
    assert runs == [("airflow", "completed")]
    # The same exports and key give the same warehouse, whichever way it was run.
    assert _core_counts(home / "warehouse.duckdb") == _core_counts(cli_home / "warehouse.duckdb")


def test_the_sources_override_wins_over_the_environment(tmp_path, monkeypatch):
    from etl import resources

    variable, environment = tmp_path / "from-variable", tmp_path / "from-env"
    variable.mkdir()
    environment.mkdir()
    monkeypatch.setenv(resources.SOURCES_ENV, str(environment))
    assert resources.sources_dir(str(variable)) == variable
    assert resources.sources_dir(None) == environment
    monkeypatch.delenv(resources.SOURCES_ENV)
    assert resources.sources_dir() == resources.data_root() / "sources" == REPO_ROOT / "sources"


def test_a_code_digest_changes_with_a_files_name_bytes_or_boundary_and_a_librarys_version(tmp_path, monkeypatch):
    from etl import resources

    def files(**texts: str) -> list[Path]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        for name, text in texts.items():
            (folder / name).write_text(text)
        return [folder / name for name in texts]

    digest = resources.code_digest(files(a="ab", b="c"))
    assert resources.code_digest(reversed(files(a="ab", b="c"))) == digest  # in path order, whatever given
    assert digest not in {resources.code_digest(files(a="a", b="bc")), resources.code_digest(files(a="ab", c="c")),
                          resources.code_digest(files(a="ab", b="d")), resources.code_digest(files(a="ab"))}
    with_duckdb = resources.code_digest(files(a="ab", b="c"), "duckdb")
    assert with_duckdb != digest
    monkeypatch.setattr(resources, "installed_version", lambda library: "another version")
    assert resources.code_digest(files(a="ab", b="c"), "duckdb") != with_duckdb


def test_a_code_digest_is_the_same_however_the_installation_is_reached_and_whatever_python_leaves(tmp_path):
    from etl import resources

    code, sql = tmp_path / "real" / "etl", tmp_path / "real" / "warehouse"
    for folder, name in ((code, "b.py"), (code, "z.py"), (sql, "core.sql")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    (tmp_path / "zz-link").symlink_to(tmp_path / "real")  # sorts after "real": another order unresolved
    digest = resources.code_digest([*resources.code_files(code), sql / "core.sql"])
    # A process reaching the package through a symlink, the SQL through the real path (as REPO_ROOT is).
    assert resources.code_digest([*resources.code_files(tmp_path / "zz-link" / "etl"), sql / "core.sql"]) == digest
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "b.cpython-311.pyc.139872").write_bytes(b"half written")
    (code / ".b.py.swp").write_bytes(b"an editor's")
    assert sorted(p.name for p in resources.code_files(code)) == ["b.py", "z.py"]
    assert resources.code_digest([*resources.code_files(code), sql / "core.sql"]) == digest
