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


def test_a_day_parted_by_spaced_marks_or_a_typed_dash_is_a_day_and_spaces_alone_or_mixed_marks_are_not():
    # As a centre types it (03. 08. 2007, 12 / 09 / 2015) or Word's autocorrect puts an en dash for '-'.
    text = ("nata il 03. 08. 2007, visto 03.08. 2007 e 2007\u201308\u201303 o 2007\u201308-03, "
            "esame 12\u00a0/\u00a009\u00a0/\u00a02015")
    assert hide_days(text) == f"nata il {DATE}, visto {DATE} e {DATE} o {DATE}, esame {DATE}"
    assert days_shown(text) == {date(2007, 8, 3), date(2007, 3, 8), date(2015, 9, 12), date(2015, 12, 9)}
    ordinary = "cicli 2 3 2019, dose 12.5 - 10.2015, 03/08-2007, ILTB\u201300002, 2007_08_03"
    assert hide_days(ordinary) == ordinary and days_shown(ordinary) == frozenset()
