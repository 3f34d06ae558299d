"""XT-DATE-NOT-AFTER-EXPORT judges each date against the day its export was written (meta.source_file.
exported_on): a day read too early from the file's name would hold back every record dated after it."""

from __future__ import annotations

from datetime import date

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
