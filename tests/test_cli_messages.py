"""rtw's failure message is one line whatever the terminal's width: cron mails and pipes have no
terminal, and Rich wraps at 80 columns there, so a reason naming a path came in pieces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app


def test_a_run_that_cannot_complete_says_why_on_one_line_without_a_terminal(tmp_path: Path) -> None:
    home = tmp_path / "a home whose warehouse file is something else entirely"
    home.mkdir()
    (home / "warehouse.duckdb").write_bytes(b"not a database " * 100)
    ran = CliRunner().invoke(app, ["run", "--home", str(home)],
                             env={"COLUMNS": "80", "RTW_PSEUDONYM_KEY": "cli-messages-key-0123456789abcdef"})
    assert ran.exit_code == 1
    [line] = ran.output.splitlines()
    assert line.startswith("rtw: the run could not complete: ") and len(line) > 80
    assert str(home / "warehouse.duckdb") in line


def test_a_file_or_warehouse_a_command_cannot_use_is_said_in_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A CLI audit: a damaged warehouse, or a file where a folder is wanted, ended `rtw status` and `rtw synth` in a
    Python traceback. The console entry point (`main`, what the installed `rtw` runs) says it in one line."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "warehouse.duckdb").write_bytes(b"not a database " * 100)
    a_file = tmp_path / "a file"
    a_file.write_text("")
    env = os.environ | {"COLUMNS": "80", "RTW_TRACEBACK": ""}
    for args, said in ((["status", "--home", str(damaged)], "rtw: the warehouse cannot be used: "),
                       (["synth", "--out", str(a_file)], "rtw: a file or folder cannot be used: Not a directory: ")):
        done = subprocess.run([sys.executable, "-c", "from etl.cli import main; main()", *args], env=env,
                              capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        assert said in done.stdout and "RTW_TRACEBACK=1 shows where" in done.stdout


def test_a_folder_given_for_a_file_is_called_a_folder(tmp_path: Path) -> None:
    """A CLI audit: a folder given to `rtw profile` or `rtw responses import` was said to be no such file."""
    from etl.config import Home
    from etl.quality.responses import ResponseFileError, import_responses
    from etl.transform.pseudonym import PseudonymKey

    done = CliRunner().invoke(app, ["profile", str(tmp_path)], env={"COLUMNS": "300"})
    assert done.exit_code == 1 and f"rtw: {tmp_path}: a folder, not a file" in done.output, done.output
    with pytest.raises(ResponseFileError, match="a folder, not a file"):
        import_responses(Home(tmp_path), tmp_path, PseudonymKey(b"cli-messages-key-0123456789abcdef"))


def test_accept_of_a_source_with_no_mapping_names_the_sources_there_are(tmp_path: Path) -> None:
    """A CLI audit: a mistyped source id was told 'no landing folder'."""
    done = CliRunner().invoke(app, ["accept", "registry_xx", "foo.csv", "--home", str(tmp_path)],
                              env={"COLUMNS": "300"})
    assert done.exit_code == 1 and "no source 'registry_xx' (no mapping registry_xx.yaml" in done.output
    assert "the sources are: crizotinib_imt, esmart, iltb, registry_it, sacha_fr" in done.output


def test_a_run_of_a_home_not_there_says_it_makes_one(tmp_path: Path) -> None:
    """A CLI audit: a mistyped --home made a new home in silence, every source failing for want of exports."""
    home = tmp_path / "a mistyped home"
    ran = CliRunner().invoke(app, ["run", "--home", str(home)],
                             env={"COLUMNS": "300", "RTW_PSEUDONYM_KEY": "cli-messages-key-0123456789abcdef"})
    assert ran.output.splitlines()[0] == f"rtw: no home at {home} yet: making a new one", ran.output
