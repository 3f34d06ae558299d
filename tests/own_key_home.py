"""A home whose first run made its own pseudonymisation key file: no key given, none in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_build import built_once

from etl import pipeline
from etl.config import Home, resolve_home
from etl.steps import RunSummary
from etl.synth import generate
from etl.transform.pseudonym import KEY_ENV


def home_with_own_key(factory: pytest.TempPathFactory) -> tuple[Home, RunSummary]:
    """40 synthetic persons (seed 12) and their first run, which created the key file: built once per session
    (shared_build.built_once) for the modules that start from such a home. Read it only; a test or module that
    changes it works on a copy (shared_build.copy_of)."""

    def build(folder: Path) -> None:
        home = resolve_home(folder / "home")
        generate(home.root, patients=40, seed=12)
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv(KEY_ENV, raising=False)
            (folder / "first.json").write_text(pipeline.run(home).model_dump_json())

    folder = built_once(factory, "own-key-run", build)
    return resolve_home(folder / "home"), RunSummary.model_validate_json((folder / "first.json").read_text())
