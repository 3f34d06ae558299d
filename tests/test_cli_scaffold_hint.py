"""The command `rtw scaffold` prints to check its draft is one that finds the draft."""

from __future__ import annotations

import shlex
from pathlib import Path

from typer.testing import CliRunner

from etl.cli import app

EXPORT = "id;pid;sex\r\n" + "".join(f"{i};P-{i:04d};{'FM'[i % 2]}\r\n" for i in range(1, 13))


def _hint(output: str) -> str:
    [line] = [line for line in output.splitlines() if "then: " in line]
    return line.split("then: ", 1)[1]


def test_a_draft_written_elsewhere_is_checked_with_its_folder(tmp_path: Path) -> None:
    export = tmp_path / "reg_x.csv"
    export.write_text(EXPORT)
    shipped, drafts = tmp_path / "mappings", tmp_path / "my drafts"
    shipped.mkdir()
    env = {"RTW_SOURCES_DIR": str(shipped), "RTW_HOME": str(tmp_path / "home"), "COLUMNS": "80"}
    runner = CliRunner()
    scaffolded = runner.invoke(app, ["scaffold", str(export), "--out", str(drafts / "reg_x.yaml")], env=env)
    assert scaffolded.exit_code == 0, scaffolded.output
    command = _hint(scaffolded.output)
    assert command == f"rtw check reg_x --sources-dir {shlex.quote(str(drafts))}"
    checked = runner.invoke(app, shlex.split(command)[1:], env={**env, "COLUMNS": "300"})
    assert "no mapping file" not in checked.output and "no current export files" in checked.output

    in_place = runner.invoke(app, ["scaffold", str(export), "--out", str(shipped / "reg_x.yaml")], env=env)
    assert _hint(in_place.output) == "rtw check reg_x"

    renamed = runner.invoke(app, ["scaffold", str(export), "--source-id", "reg_x", "--out", str(drafts / "x.yaml")],
                            env=env)
    assert _hint(renamed.output) == ("rename it reg_x.yaml (a mapping's file is named by its source_id), then "
                                     f"rtw check reg_x --sources-dir {shlex.quote(str(drafts))}")


def test_a_source_id_that_is_no_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A CLI audit: --source-id ../../escaped wrote escaped.yaml two folders above the mappings folder."""
    export = tmp_path / "reg_x.csv"
    export.write_text(EXPORT)
    shipped = tmp_path / "a" / "b" / "mappings"
    shipped.mkdir(parents=True)
    env = {"RTW_SOURCES_DIR": str(shipped), "RTW_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    refused = CliRunner().invoke(app, ["scaffold", str(export), "--source-id", "../../escaped"], env=env)
    assert refused.exit_code == 1 and "source id '../../escaped': expected lower-case letters" in refused.output
    assert not list(tmp_path.rglob("*.yaml"))
