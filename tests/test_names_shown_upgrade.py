"""After an upgrade, no file name an earlier version recorded with a patient number keeps it: not that of a
file gone from landing before the upgrade, and not in the report files of earlier runs, whatever moment a
run was killed at (the rewrite of earlier reports is finished by the next run's repair)."""

from __future__ import annotations

import logging

import duckdb
import pytest
from test_file_names import KEY, NUMBERS, _as_an_earlier_version_left_it, _leaks, per_patient  # noqa: F401

from etl import pipeline


@pytest.mark.integration
def test_a_file_gone_from_landing_before_the_upgrade_is_shown_without_its_number(per_patient, caplog):  # noqa: F811
    home, sources = per_patient
    folder = home.landing / "registry_de"
    later = (folder / "Fall_234567_Verlauf.csv").rename(home.root / "later.csv")
    pipeline.run(home, key_value=KEY, sources_dir=sources)  # Fall_123456 loaded, so archived
    later.rename(folder / "Fall_234567_Verlauf.csv")  # the next export supersedes it
    earlier = pipeline.run(home, key_value=KEY, sources_dir=sources)
    pages = _as_an_earlier_version_left_it(home, earlier.run_id)
    with duckdb.connect(str(home.warehouse)) as con:  # the superseded export, quoted by the page too
        (gone,) = con.execute("SELECT file_name FROM meta.source_file WHERE status = 'superseded'").fetchone()
    page = home.reports / earlier.run_id / "index.html"
    page.write_text(page.read_text(encoding="utf-8") + f"<p>{gone}</p>", encoding="utf-8")
    (folder / gone).unlink()  # gone before the upgrade: only its archive copy is left
    assert "123456" in gone

    with caplog.at_level(logging.INFO, logger="rtw"):
        upgraded = pipeline.run(home, key_value=KEY, sources_dir=sources, force=True)  # an upgrade reloads all
    assert upgraded.sources_failed == [] and upgraded.notes == []
    assert [p for p in [*pages, page] if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
    assert _leaks(home, upgraded, caplog) == []


@pytest.mark.parametrize(("name", "shown"), [
    ("patient-ILTB-00012.xlsx", "patient-{patient}.xlsx"),  # a sibling's shape: any number, letters too
    ("Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),
    ("patient-2026-11-01.xlsx", "patient-2026-11-01.xlsx"),  # a date is no patient's number
    ("Notiz_1234567.csv", "Notiz_{patient}.csv"),  # no sibling of its shape: a long number that is no date
    ("Notiz_20261101.csv", "Notiz_20261101.csv"),
    ("TREP_export_2026.csv", "TREP_export_2026.csv"),
    ("Fall_{patient}_7654321.csv", "Fall_{patient}_7654321.csv"),  # shown by a version that knew the keys
])
def test_a_file_gone_from_landing_is_shown_as_its_name_reads(name, shown):
    from etl.extract.file_names import gone_file_name

    assert gone_file_name(name, ["patient-{patient}.xlsx", "Fall_{patient}_Verlauf.csv"]) == shown
