"""The hostile-input suites' shared parts: one loaded home to copy, a canary outside it, `rtw` in a
subprocess, and the checks every case ends with (test_hostile.py, test_killed_runs.py, test_crash_*.py,
test_status_failed_nights.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from shared_build import built_once
from warehouse_query import query_rows as query

from etl.config import REPO_ROOT, resolve_home
from etl.crash import CRASH_ENV
from etl.synth import generate

RTW = str(Path(sys.executable).with_name("rtw"))
KEY = "hostile-suite-key"
CANARY = "canary-5e1d-outside-the-home"
SOURCES = ("crizotinib_imt", "esmart", "iltb", "registry_it", "sacha_fr")


@dataclass(frozen=True)
class Loaded:
    home: Path
    canary: Path
    digests: dict[str, str]
    runs: int


def rtw(home: Path, *args: str, env: dict[str, str | None] | None = None,
        without_root_reads: bool = False) -> subprocess.CompletedProcess[str]:
    """`rtw run` (or another command) in its own process, as cron or a data manager starts it.

    without_root_reads: root without the capabilities that let it read any file whatever its mode."""
    full_env = {**os.environ, "RTW_PSEUDONYM_KEY": KEY, "COLUMNS": "250"}
    full_env.pop(CRASH_ENV, None)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    command = [RTW, *(args or ("run",)), "--home", str(home)]
    if without_root_reads:
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    return subprocess.run(command, cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=600,
                          check=False)


def source_digests(home: Path) -> dict[str, str]:
    """Per source, a digest of its rows in every stage table (what it contributes, quarantined too),
    whichever run loaded them."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        # Each stage table with a source_id, and its columns but run_id (the run that loaded a row) and
        # what linkage derives from every source (another source's change may re-link a patient).
        tables = con.execute(
            "SELECT table_name, list(column_name ORDER BY ordinal_position) FILTER (WHERE column_name NOT IN "
            "('run_id', 'patient_id', 'link_method', 'match_probability')) "
            "FROM information_schema.columns WHERE table_schema = 'stage' AND table_name NOT LIKE 'source_param%' "
            "AND table_name <> 'patient_link' GROUP BY 1 HAVING bool_or(column_name = 'source_id') "
            "ORDER BY 1").fetchall()
        digests = {}
        for source in SOURCES:
            h = hashlib.sha256()
            for table, columns in tables:
                selected = ", ".join(f'"{c}"' for c in columns)
                rows = con.execute(f"SELECT {selected} FROM stage.{table} WHERE source_id = ? ORDER BY ALL",
                                   [source]).fetchall()
                h.update(f"{table}:{rows!r}".encode())
            digests[source] = h.hexdigest()
        return digests
    finally:
        con.close()


def run_count(home: Path) -> int:
    return query(home, "SELECT count(*) FROM meta.run")[0][0]


def load_once(factory: pytest.TempPathFactory) -> Loaded:
    """The loaded home every case copies (five sources, 120 persons, one run), and the canary outside
    it: built once for the session, whichever worker asks first."""
    root = built_once(factory, "hostile", _load)
    home, canary = root / "base", root / "outside" / "secret.txt"
    digests = source_digests(home)
    assert len(set(digests.values())) == len(SOURCES)  # every source has rows of its own
    return Loaded(home, canary, digests, run_count(home))


def _load(root: Path) -> None:
    canary = root / "outside" / "secret.txt"
    canary.parent.mkdir()
    canary.write_text(f"root:x:0:0:{CANARY}:/root:/bin/sh\n")
    set_atime_back(canary)
    canary.read_text()  # the check "never read" needs a file system that records reads (relatime does)
    assert canary.stat().st_atime > canary.stat().st_mtime - 86_400, "reads are not recorded here (noatime?)"
    home = resolve_home(root / "base").ensure()
    generate(home.root, patients=120, seed=8)
    first = rtw(home.root)
    assert first.returncode == 0, first.stdout + first.stderr


def home_fixtures(change: Callable[[Path], object] | None = None) -> tuple[Callable[..., Loaded], Callable[..., Path]]:
    """A module's fixtures `loaded, home = home_fixtures()`: the loaded home (module scope; load_once builds it once for
    the session), and a case's own copy of it (copy_home), changed by `change` first. Assigned, not imported as
    fixtures: a test's parameter `home` would redefine an imported name (ruff F811) at every test."""

    @pytest.fixture(scope="module")
    def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
        return load_once(tmp_path_factory)

    @pytest.fixture
    def home(loaded: Loaded, tmp_path: Path) -> Path:
        copy = copy_home(loaded, tmp_path)
        if change is not None:
            change(copy)
        return copy

    return loaded, home


def copy_home(loaded: Loaded, tmp_path: Path) -> Path:
    """A case's own copy of the loaded home, the canary's access time set back."""
    copy = tmp_path / "home"
    shutil.copytree(loaded.home, copy, symlinks=True)
    set_atime_back(loaded.canary)
    return copy


def set_atime_back(path: Path) -> None:
    """An access time before the change time: any read moves it (relatime)."""
    mtime = path.stat().st_mtime
    os.utime(path, (mtime - 86_400, mtime))


def export(home: Path, source: str, pattern: str = "*") -> Path:
    (found,) = sorted((home / "landing" / source).glob(pattern))
    return found


def assert_untouched_outside(home: Path, loaded: Loaded) -> None:
    assert loaded.canary.stat().st_atime == loaded.canary.stat().st_mtime - 86_400, "the canary was read"
    marker = CANARY.encode()
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert marker not in path.read_bytes(), f"the canary's text is in {path}"


def assert_owner_only(home: Path) -> None:
    for path in [home, *home.rglob("*")]:
        if path.is_symlink() or path.parent.name == "landing" or path.parent.parent.name == "landing":
            continue  # landing/ is the sources' drop zone: they deliver with their own modes
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def assert_kept(home: Path, loaded: Loaded, *, changed: tuple[str, ...] = ()) -> None:
    """Every source but `changed` has exactly the rows it had; nothing outside the home was read."""
    now = source_digests(home)
    for source in SOURCES:
        if source not in changed:
            assert now[source] == loaded.digests[source], f"{source}'s rows changed"
    assert_untouched_outside(home, loaded)
    assert_owner_only(home)


def csv_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\r\n")


def withdraw_last_records(home: Path) -> None:
    """registry_it's export without its last two records: a changed night."""
    f = export(home, "registry_it")
    f.write_bytes(b"\r\n".join(csv_lines(f)[:-3]) + b"\r\n")
