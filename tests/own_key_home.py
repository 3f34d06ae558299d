"""A home whose first run made its own pseudonymisation key file: no key given, none in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl import pipeline
from etl.config import Home, resolve_home
from etl.steps import RunSummary
from etl.synth import generate
from etl.transform.pseudonym import KEY_ENV


def home_with_own_key(root: Path, *, seed: int) -> tuple[Home, RunSummary]:
    """A home at `root/home` of 40 synthetic persons (`seed`), and its first run, which created the key file."""
    home = resolve_home(root / "home")
    generate(home.root, patients=40, seed=seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        return home, pipeline.run(home)
