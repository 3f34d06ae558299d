"""Settings and fixtures every test shares."""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_build import built_once

# Tests write export files and run at once: the landing quiet period (a file must be unchanged for
# that long before it is read) is off, except in the tests of it, which pass their own.
os.environ.setdefault("RTW_QUIET_SECONDS", "0")
# Four workers share two cores here: DuckDB's second thread a connection only costs them (a fifth more CPU measured
# on the tests' small homes). Every process the tests start inherits it (the DAG's tasks through airflow_env).
os.environ.setdefault("RTW_DUCKDB_THREADS", "1")
# pytest-xdist's workers set COLUMNS and LINES; with both set, rich fixes the CLI console's size when
# etl.cli is imported, and the tests that give the command a wide COLUMNS would see it wrapped at 80.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

SYNTHETIC_RUN_KEY = "integration-test-key"
SMALL_RUN_KEY = "small-run-key-0123456789abcdef0123456789"


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, dict[str, Any]]:
    """One `rtw run` of 400 synthetic persons (seed 11), shared by the modules that compare a run
    with the generator's truth (test_end_to_end, test_linkage, the marts): (home, truth folder, run
    summary). Built once for the whole session, whichever xdist worker asks first; the others wait
    for it and read the same home. Read it only; a test that changes a warehouse copies the home first."""
    from etl import pipeline
    from etl.config import resolve_home
    from etl.steps import RunSummary
    from etl.synth import generate

    def build(folder: Path) -> None:
        home = resolve_home(folder / "home").ensure()
        generate(home.root, patients=400, seed=11)
        (folder / "summary.json").write_text(pipeline.run(home, key_value=SYNTHETIC_RUN_KEY).model_dump_json())

    folder = built_once(tmp_path_factory, "synthetic-run", build)
    home = resolve_home(folder / "home")
    return home, home.root / "truth", RunSummary.model_validate_json((folder / "summary.json").read_text())


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """40 synthetic persons (seed 12) and their first run with SMALL_RUN_KEY and the shipped settings, built
    once for the whole session (as synthetic_run): the home of the modules that change a small warehouse,
    each on its own copy (shared_build.copy_of). A test that wrote into it (other workers read it meanwhile)
    fails the session's end."""
    from etl import pipeline
    from etl.config import Home
    from etl.synth import generate

    def build(folder: Path) -> None:
        home = Home(folder / "home")
        generate(home.root, patients=40, seed=12)
        assert pipeline.run(home, key_value=SMALL_RUN_KEY).status == "completed"

    folder = built_once(tmp_path_factory, "small-run", build)
    built = folder.with_name(f"{folder.name}.built").stat().st_mtime
    yield Home(folder / "home")
    written = [p for p in folder.rglob("*") if p.exists() and p.stat().st_mtime > built]
    assert not written, f"a test wrote into the shared small run: {written[:5]}"


@pytest.fixture
def home(tmp_path: Path) -> Any:
    """A fresh home (a module may define its own)."""
    from etl.config import resolve_home

    return resolve_home(tmp_path / "home").ensure()


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """An empty local drop zone."""
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


# A module that builds whole runs itself, marked integration or not: a call that synthesises exports or runs
# the pipeline or the DAG (its source read once).
_BUILDS_RUNS = re.compile(r"\bgenerate\(|pipeline\.run\(|run_dag\(|synthetic_home\(|home_with_own_key\(")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `make test` (--dist loadfile: one module on one worker), the modules that run Airflow or a deployment
    first, then those that build whole runs (marked integration, or building them unmarked), then the rest, each
    group by its number of tests, most first (pytest-xdist's own order, turned off in the Makefile: it ordered by
    the number of tests alone, so the Airflow modules, a few tests of minutes each, started last, and the suite
    waited on them with the other workers idle; unmarked modules of one or two tests that each build a run were
    last too). Any other run keeps the files' order."""
    if getattr(config.option, "dist", None) != "loadfile":
        return

    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)

    def rank(tests: list[pytest.Item]) -> int:
        marks = {m.name for item in tests for m in item.iter_markers()}
        if marks & {"airflow", "deployment"}:
            return 0
        return 1 if "integration" in marks or _BUILDS_RUNS.search(tests[0].path.read_text()) else 2

    ordered = sorted(modules.values(), key=lambda tests: (rank(tests), -len(tests)))
    items[:] = [item for tests in ordered for item in tests]
