"""A pull not made for a reason outside it (the DAG's key Variable cannot be read, etl/pull/sensor.py) is said
and recorded as the pull itself would have been: the same refusal of a source that does not exist (it recorded a
failed pull of it, which rtw status then showed), the same words for a source without a drop zone."""

from __future__ import annotations

from pathlib import Path

import pytest
from drop_zone import registry_sources

from etl.config import SOURCES_DIR
from etl.pull import PullStatus, pull_source
from etl.pull.deliveries import UnknownSource, not_pulled
from etl.pull.nights import read_pulls


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def test_a_pull_not_made_refuses_an_unknown_source_as_the_pull_does_writing_nothing(home):
    before = _files(home.root)
    with pytest.raises(UnknownSource, match="no source 'nosuch'"):
        not_pulled(home, "nosuch", "nosuch: the Variable rtw_pseudonym_key cannot be read")
    assert _files(home.root) == before


def test_a_pull_not_made_of_a_source_without_a_drop_zone_says_what_its_pull_says(home):
    said = not_pulled(home, "iltb", "iltb: the Variable rtw_pseudonym_key cannot be read", sources_dir=SOURCES_DIR)
    assert said == pull_source(home, "iltb", sources_dir=SOURCES_DIR)
    assert said.status is PullStatus.NO_DROP_ZONE and "by hand" in said.message and read_pulls(home) == []


def test_a_pull_not_made_of_a_source_with_a_drop_zone_is_a_failed_pull_recorded(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    why = "registry_it: the Variable rtw_pseudonym_key cannot be read (KeyUnreadable): nothing is pulled"
    said = not_pulled(home, "registry_it", why, sources_dir=sources)
    assert said.status is PullStatus.FAILED and said.message == why
    assert [p.failure for p in read_pulls(home)] == [why]
