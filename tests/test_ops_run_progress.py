"""What `rtw run` says as it goes: its sources by name, as a person writes them, not as Python lists them."""

from __future__ import annotations

from etl import pipeline
from etl.config import resolve_home
from etl.synth import generate

KEY_TEXT = "progress-test-key-0123456789abcdef"


def test_the_run_line_names_the_changed_and_unchanged_sources_joined_by_commas(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=80, seed=5)
    first: list[str] = []
    summary = pipeline.run(home, key_value=KEY_TEXT, progress=first.append)
    assert summary.sources_failed == [], summary.message
    sources = ", ".join(sorted(summary.sources_changed))
    assert f"run {summary.run_id}: changed {sources}, unchanged none" in first, first
    again: list[str] = []
    summary = pipeline.run(home, key_value=KEY_TEXT, progress=again.append)
    assert f"run {summary.run_id}: changed none, unchanged {sources}" in again, again
    assert not any("[" in line for line in first + again if line.startswith("run "))
