"""A landing folder no mapping reads is named in the run's notices and log, never skipped silently."""

from __future__ import annotations

import logging
import shutil

from etl import pipeline
from etl.config import SOURCES_DIR, Home


def test_a_landing_folder_without_a_mapping_is_a_notice_of_the_plan(tmp_path, caplog):
    home = Home(tmp_path / "home").ensure()
    for name in ("registry_it", "iltb", "kinderreg_de", ".partial"):
        (home.landing / name).mkdir()
    sources = tmp_path / "my_sources"  # RTW_SOURCES_DIR holding only the new mapping
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "registry_it.yaml", sources)
    with caplog.at_level(logging.WARNING, logger="rtw"):
        planned = pipeline.plan(home, sources_dir=sources, key_value="unmapped-test-key")
    assert planned.changed == ["registry_it"]
    unmapped = {source: said for source, said in planned.notices.items() if said}
    assert sorted(unmapped) == ["iltb", "kinderreg_de"]
    assert unmapped["iltb"] == [f"iltb: landing folder {home.landing / 'iltb'} has no mapping {sources / 'iltb.yaml'}: "
                                "its files are not read (RTW_SOURCES_DIR, when set, replaces the shipped mappings "
                                "folder)"]
    assert sum("has no mapping" in r.getMessage() for r in caplog.records) == 2
