"""The clerical review list (dq.link_candidate) as the report shows it, across nights that bring
no change to what linkage compares (etl/link/run.py keeps the last scoring's persons and list)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from etl import pipeline
from etl.config import Home
from etl.link.model import load_config
from etl.quality.report import build_report
from etl.synth import generate

KEY = "link-review-list-key-0123456789abcdef01234"


def _wide_review_config(folder: Path) -> Path:
    """The shipped model with a review threshold low enough that a small home has pairs to review."""
    shipped = load_config()
    config = shipped.model_dump(exclude={"fingerprint"})
    config["fields"] = {name: [level.model_dump() for level in levels] for name, levels in shipped.fields.items()}
    config["review_threshold"] = 0.0001
    (folder / "linkage.yaml").write_text(json.dumps(config))
    return folder / "linkage.yaml"


@pytest.fixture
def reviewed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    monkeypatch.setenv("RTW_LINKAGE_CONFIG", str(_wide_review_config(tmp_path)))
    home = Home(tmp_path / "home")
    generate(home.root, patients=40, seed=12)
    assert pipeline.run(home, key_value=KEY).status == "completed"
    yield home


def _scored_in_and_listed(home: Home) -> tuple[str, int]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        (scored_in,) = con.execute("SELECT run_id FROM dq.link_scored").fetchone()  # type: ignore[misc]
        (listed,) = con.execute("SELECT count(*) FROM dq.link_candidate").fetchone()  # type: ignore[misc]
    finally:
        con.close()
    return scored_in, listed


def test_a_night_of_follow_up_only_keeps_the_review_list_in_its_report(reviewed_home: Home) -> None:
    first_scoring, listed = _scored_in_and_listed(reviewed_home)
    assert listed > 0
    # A follow-up visit moves by a day: nothing linkage compares changes.
    follow_up = reviewed_home.landing / "iltb" / "ILTB_FU.csv"
    lines = follow_up.read_text(encoding="utf-8-sig").splitlines()
    fields = lines[1].split(";")
    day, month, year = fields[4].split("/")
    fields[4] = f"{int(day) % 28 + 1:02d}/{month}/{year}"
    follow_up.write_text("\n".join([lines[0], ";".join(fields), *lines[2:]]) + "\n", encoding="utf-8-sig")

    night = pipeline.run(reviewed_home, key_value=KEY)
    assert night.status == "completed"
    assert _scored_in_and_listed(reviewed_home) == (first_scoring, listed)  # not scored again
    page = build_report(reviewed_home.warehouse, reviewed_home.reports, night.run_id).read_text(encoding="utf-8")
    assert 'id="link-candidates-unavailable"' not in page
    assert page.count('<tr data-left="') == listed
