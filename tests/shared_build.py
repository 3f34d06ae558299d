"""A folder built once per test session, whichever pytest-xdist worker asks first, and copies of a home
built so for a test that changes it."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from etl.config import Home


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build` once for the whole session: the other workers wait for it
    and share it. Read it only; a test that changes it copies it first."""
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    folder, built = shared / name, shared / f"{name}.built"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.is_file():  # written last: a folder cut short by a crash is built again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            built.write_text("")
    return folder


def copy_of(home: Home, root: Path) -> Home:
    """A copy of `home` at `root/home`, for a test that changes it (a shared home is only read: a writer
    would hold the warehouse against the other workers' readers)."""
    copy = Home(root / "home")
    shutil.copytree(home.root, copy.root, symlinks=True)
    return copy
