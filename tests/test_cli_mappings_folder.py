"""A mappings folder named in RTW_SOURCES_DIR but missing (a typo, an unmounted share) is refused by
the commands that read mappings, naming the folder and the setting, as the DAG refuses it
(docs/deployment.md, section 3): `rtw run` published a night that read no mapping and exited 0, and
`rtw pull` pulled nothing, said nothing and exited 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from etl.config import Home

RTW = Path(sys.executable).with_name("rtw")


def _rtw(home: Home, missing: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTW_SOURCES_DIR": str(missing), "RTW_PSEUDONYM_KEY": "mappings-folder-test-key-0123456789",
           "RTW_QUIET_SECONDS": "0", "COLUMNS": "400"}
    return subprocess.run([str(RTW), *args, "--home", str(home.root)], capture_output=True, text=True, env=env,
                          timeout=300)


def _refused(done: subprocess.CompletedProcess[str], missing: Path) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the mappings folder {missing} (from RTW_SOURCES_DIR) does not exist" in done.stdout


def test_rtw_run_refuses_a_missing_mappings_folder_and_writes_no_warehouse(tmp_path):
    home = Home(tmp_path / "home").ensure()
    (home.landing / "registry_it").mkdir()
    missing = tmp_path / "mapings"  # the typo
    _refused(_rtw(home, missing, "run"), missing)
    assert not home.warehouse.exists()


def test_rtw_pull_refuses_a_missing_mappings_folder(tmp_path):
    home = Home(tmp_path / "home").ensure()
    missing = tmp_path / "mapings"
    _refused(_rtw(home, missing, "pull"), missing)
    assert not (home.root / "pulled").exists() or not list((home.root / "pulled").iterdir())


def test_rtw_check_refuses_a_missing_mappings_folder(tmp_path):
    home = Home(tmp_path / "home").ensure()
    missing = tmp_path / "mapings"
    _refused(_rtw(home, missing, "check", "registry_it"), missing)
