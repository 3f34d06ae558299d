"""`rtw pull` of a source that does not exist (a typo) is refused at once and leaves nothing behind: it wrote
`pulled/<name>.pulls.jsonl`, and `rtw status` then showed a failed pull of a source there is no such thing as."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.config import SOURCES_DIR, resolve_home
from etl.pull import pull_all, pull_source
from etl.pull.deliveries import UnknownSource, source_ids

KNOWN = ", ".join(source_ids(SOURCES_DIR))


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def test_rtw_pull_of_a_mistyped_source_is_refused_naming_it_and_the_known_ones_writing_nothing(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    before = _files(home.root)
    refused = CliRunner().invoke(app, ["pull", "esmart", "nosuch", "--home", str(home.root)], env={"COLUMNS": "80"})
    assert refused.exit_code == 1
    [line] = refused.output.splitlines()  # one line, whatever the width
    assert line == f"rtw: no source 'nosuch' (no mapping nosuch.yaml in {SOURCES_DIR}); the sources are: {KNOWN}"
    assert _files(home.root) == before  # not even esmart's pull: nothing is pulled when a name is wrong
    status = CliRunner().invoke(app, ["status", "--home", str(home.root)], env={"COLUMNS": "200"})
    assert "nosuch" not in status.output


def test_a_home_not_there_yet_is_not_made_for_a_mistyped_source(tmp_path):
    refused = CliRunner().invoke(app, ["pull", "nosuch", "../sources/esmart", "--home", str(tmp_path / "home")],
                                 env={"COLUMNS": "300"})
    assert refused.exit_code == 1 and "no sources 'nosuch', '../sources/esmart' (no mappings" in refused.output
    assert not (tmp_path / "home").exists()


def test_pull_all_and_pull_source_refuse_an_unknown_source_before_pulling_any(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    before = _files(home.root)
    with pytest.raises(UnknownSource, match=f"the sources are: {KNOWN}$"):
        pull_all(home, sources=["esmart", "nosuch"])
    with pytest.raises(UnknownSource, match="no source 'nosuch'"):
        pull_source(home, "nosuch")
    assert _files(home.root) == before
