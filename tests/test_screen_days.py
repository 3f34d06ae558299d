"""One definition of a day written as digits (etl/transform/screen.py): what `hide_days` hides is what `days_shown`
reads as a day, and the digits of a day's shape that read as none stay."""

from __future__ import annotations

from datetime import date

from etl.transform.screen import DATE, days_shown, hide_days


def test_the_days_hidden_are_the_days_shown_and_a_code_of_as_many_digits_stays():
    text = "MedDRA 10019211 ok; nato il 16/01/1995 (19950116), visto 2024-3-7, 03.04.2027, lotto 1001-92-11"
    assert hide_days(text) == f"MedDRA 10019211 ok; nato il {DATE} ({DATE}), visto {DATE}, {DATE}, lotto 1001-92-11"
    assert days_shown(text) == {date(1995, 1, 16), date(2024, 3, 7), date(2027, 4, 3), date(2027, 3, 4)}
    assert days_shown(hide_days(text)) == frozenset()
    assert hide_days("nessuna data") == "nessuna data"
