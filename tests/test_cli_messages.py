"""rtw's failure message is one line whatever the terminal's width: cron mails and pipes have no
terminal, and Rich wraps at 80 columns there, so a reason naming a path came in pieces."""

from __future__ import annotations

from pathlib import Path

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
