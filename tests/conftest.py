"""Settings and fixtures every test shares."""

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

# Tests write export files and run at once: the landing quiet period (a file must be unchanged for
# that long before it is read) is off, except in the tests of it, which pass their own.
os.environ.setdefault("RTW_QUIET_SECONDS", "0")
# pytest-xdist's workers set COLUMNS and LINES; with both set, rich fixes the CLI console's size when
# etl.cli is imported, and the tests that give the command a wide COLUMNS would see it wrapped at 80.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

SYNTHETIC_RUN_KEY = "integration-test-key"


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

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    home = resolve_home(shared / "synthetic-run" / "home")
    summary_file = shared / "synthetic-run" / "summary.json"
    summary_file.parent.mkdir(exist_ok=True)
    with (shared / "synthetic-run.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not summary_file.is_file():  # written last: a home cut short by a crash is built again
            shutil.rmtree(home.root, ignore_errors=True)
            home.ensure()
            generate(home.root, patients=400, seed=11)
            summary_file.write_text(pipeline.run(home, key_value=SYNTHETIC_RUN_KEY).model_dump_json())
    return home, home.root / "truth", RunSummary.model_validate_json(summary_file.read_text())
