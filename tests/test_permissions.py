"""Least privilege: everything a run creates under the home is owner-only, whatever the umask.

The archive and staging hold clear patient numbers, exact birth dates and EUPIDs, so no file
may be readable, and no folder listable, by group or others (0700 folders, 0600 files).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from etl import pipeline
from etl.config import resolve_home
from etl.synth import generate


def _loose(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Everything under root (symlinks aside: their mode means nothing) with a group or other bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink() or any(part in skip for part in path.relative_to(root).parts[:1]):
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root)} {oct(mode)}")
    return found


@pytest.mark.integration
def test_a_run_under_a_loose_umask_leaves_nothing_readable_by_others(tmp_path, monkeypatch):
    exports = tmp_path / "exports"
    generate(exports, patients=30, seed=9)
    home_dir = tmp_path / "home"
    home_dir.mkdir(mode=0o755)
    os.chmod(home_dir, 0o755)  # as the issue found it
    shutil.copytree(exports / "landing", home_dir / "landing")  # delivered by a drop zone, 0644
    monkeypatch.setenv("RTW_PSEUDONYM_KEY", "permissions-key")
    previous = os.umask(0o022)
    try:
        summary = pipeline.run(resolve_home(home_dir))
        assert os.umask(0o022) == 0o022  # the run gave the caller its umask back
    finally:
        os.umask(previous)
    assert summary.validated and summary.report
    home = resolve_home(home_dir)
    assert stat.S_IMODE(home_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(home.landing.stat().st_mode) == 0o700  # delivered files inside stay as delivered
    for written in (home.archive, home.staging, home.marts, home.reports, home.warehouse):
        assert written.exists()
    assert any(home.archive.rglob("*__*")), "the archive holds copies"
    assert _loose(home_dir, skip=("landing",)) == []


def test_an_existing_home_is_tightened_and_a_new_key_file_is_owner_only(tmp_path, monkeypatch):
    from etl.transform.pseudonym import load_key

    for folder in ("landing", "archive", "staging", "marts", "reports"):
        (tmp_path / folder).mkdir(mode=0o755)
        os.chmod(tmp_path / folder, 0o755)
    monkeypatch.delenv("RTW_PSEUDONYM_KEY", raising=False)
    previous = os.umask(0o022)
    try:
        home = resolve_home(tmp_path).ensure()
        load_key(home.key_file)
    finally:
        os.umask(previous)
    assert _loose(tmp_path) == []
    assert stat.S_IMODE(home.key_file.stat().st_mode) == 0o600
