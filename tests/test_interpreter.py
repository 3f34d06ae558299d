"""etl/interpreter.py: a new process of the run's code finds modules where the run does, whatever folder it
starts in (a run started from a checkout of another version imported that copy in its source workers, its GX
process and its ODM reader)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import etl
from etl.interpreter import code_command, module_command


def _shadowing(folder: Path) -> Path:
    """A folder holding another `etl` and a `json` that would say so, were they imported."""
    for package in ("etl", "json"):
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text("raise SystemExit('the copy in the folder was imported')\n")
    return folder


def test_a_module_runs_as_its_main_with_its_arguments_on_the_run_s_module_path(tmp_path: Path) -> None:
    done = subprocess.run(module_command("json.tool", "--sort-keys", "--compact"), input='{"b": 1, "a": 2}',
                          cwd=_shadowing(tmp_path), capture_output=True, text=True, check=False, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, '{"a":2,"b":1}'), done.stderr


def test_code_finds_the_run_s_package_not_the_folder_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started by `python -c` has '' on its path: the folder it started in, which stays the child's path
    wherever the child runs (here elsewhere, to tell)."""
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    code = "import json, etl; print(json.dumps([etl.__file__, sys.argv[1:], sys.path[0]]))"
    done = subprocess.run(code_command(code, "1", "two"), cwd=_shadowing(tmp_path), capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [etl.__file__, ["1", "two"], os.getcwd()]
