"""XT-DATE-NOT-AFTER-EXPORT judges each date against the day its export was written (meta.source_file.
exported_on): a day read too early from the file's name would hold back every record dated after it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from rule_stage import flagged, stage

from etl.extract.landing import export_day


def test_the_export_day_is_the_latest_date_in_the_name():
    # A name may carry another, earlier date too: a protocol version's, the start of the period exported.
    assert export_day("TREP_protocol20190301_export_20261101.csv", 0) == date(2026, 11, 1)
    assert export_day("ILTB_20261101_data_from_20200101.csv", 0) == date(2026, 11, 1)
    assert export_day("TREP_export_20261131_20261102.csv", 0) == date(2026, 11, 2)  # 31 November is no day


def test_a_record_dated_on_its_export_day_or_before_passes_and_the_next_day_is_flagged():
    day = export_day("TREP_protocol20190301_export_20261101.csv", 0)
    con = stage({"follow_up": [{"follow_up_id": k, "source_record_key": k, "contact_date": seen}
                               for k, seen in (("2020", date(2020, 5, 4)), ("export-day", day),
                                               ("next-day", date(2026, 11, 2)))]}, exported_on=day)
    assert set(flagged(con, "XT-DATE-NOT-AFTER-EXPORT")) == {"next-day"}


def test_an_export_dated_by_its_file_time_is_the_latest_day_that_time_is_anywhere():
    """Written at 00:30 in Paris on 2 November (23:30 UTC on 1 November), a file without a date in its name
    holds records the centre dated 2 November: they are not after its export; 3 November is."""
    written = datetime(2026, 11, 2, 0, 30, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    day = export_day("TREP_export.csv", written)
    assert day == date(2026, 11, 2)
    assert export_day("TREP_export.csv", datetime(2026, 11, 1, 9, 59, tzinfo=UTC).timestamp()) == date(2026, 11, 1)
    assert export_day("TREP_export_20261101.csv", written) == date(2026, 11, 1)  # the name's day is the source's
    con = stage({"follow_up": [{"follow_up_id": k, "source_record_key": k, "contact_date": seen}
                               for k, seen in (("centre-day", date(2026, 11, 2)), ("next-day", date(2026, 11, 3)))]},
                exported_on=day)
    assert set(flagged(con, "XT-DATE-NOT-AFTER-EXPORT")) == {"next-day"}


def test_an_odm_without_a_date_in_its_name_is_dated_by_its_creation_date_time(tmp_path):
    """An ODM says when it was written, in the writer's own zone: that day, not the file time of a copy
    pulled days later (nor the UTC day of a file written just after midnight in Paris)."""
    from etl.extract.adapter import adapter_for

    export = tmp_path / "SACHA_ODM.xml"
    export.write_text('<?xml version="1.0"?><ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileType="Snapshot" '
                      'FileOID="F1" CreationDateTime="2026-11-02T00:30:00+01:00"></ODM>', encoding="utf-8")
    created = adapter_for("odm").file_header(export).created
    pulled_later = datetime(2026, 11, 5, 3, 0, tzinfo=UTC).timestamp()
    assert export_day(export.name, pulled_later, created) == date(2026, 11, 2)
    assert export_day("SACHA_ODM_20261101.xml", pulled_later, created) == date(2026, 11, 1)  # the name wins
