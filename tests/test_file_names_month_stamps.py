"""A month's stamp in an export's name (`Export_202611.csv`) was hidden on the source's first pull, before any key
was staged (six digits that are no date to the day: they could be a number), and shown by every night after once
the keys had no shape of six digits: one export named two ways, and a pull's message showing what the first had
hidden. A name is now shown one way every night, the safe one: six digits that are no day's date are hidden,
whatever the keys; a date to the day stays (`Export_20261101.csv`)."""

from __future__ import annotations

import duckdb
import pytest
from test_forget_file_names import KEY, _source
from test_forget_run_in_names import _export

from etl import pipeline
from etl.config import SOURCES_DIR, resolve_home
from etl.extract.file_names import PatientNumbers, shown_file_name
from etl.pull import pull_source
from etl.transform.mapping import load_mapping
from etl.transform.pseudonym import KEY_ENV

KEYS = [f"ID{i:04d}" for i in range(1, 40)]


@pytest.mark.parametrize(("name", "shown"), [
    ("Export_202611.csv", "Export_{patient}.csv"),
    ("Export_20261101.csv", "Export_20261101.csv"),
    ("Export_2026-11.csv", "Export_2026-11.csv"),
    ("Export_2026_11.csv", "Export_2026_11.csv"),
])
def test_a_name_is_shown_alike_before_and_after_the_keys_are_known(tmp_path, name, shown):
    first_pull = PatientNumbers.staged(tmp_path / "staging", load_mapping(SOURCES_DIR / "registry_it.yaml"))
    for numbers in (first_pull, PatientNumbers.of(KEYS), PatientNumbers.of(["123456"]), PatientNumbers.of([])):
        assert shown_file_name(name, numbers) == shown


@pytest.mark.integration
def test_monthly_exports_are_named_alike_by_every_pull_and_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    monkeypatch.setenv(KEY_ENV, KEY)
    home = resolve_home(tmp_path / "home").ensure()
    sources, zone = tmp_path / "sources", tmp_path / "zone"
    sources.mkdir()
    zone.mkdir()
    _source(sources, "registry_de", "registry_it", "*.csv", zone)
    pulled = []
    for month, note in (("202610", ""), ("202611", "later")):
        _export(zone / f"Export_{month}.csv", note=note)
        outcome = pull_source(home, "registry_de", sources_dir=sources)
        assert outcome.failures == []
        pulled += outcome.pulled
        assert pipeline.run(home, key_value=KEY, sources_dir=sources).sources_failed == []
    assert pulled == ["Export_{patient}.csv", "Export_{patient}.csv"]  # the first before any key was staged
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        names = {n for (n,) in con.execute("SELECT file_name FROM meta.source_file WHERE source_id = 'registry_de'")
                 .fetchall()}
    assert names == {"Export_{patient}.csv"}
