"""One definition of a day written as digits (etl/transform/screen.py): what `hide_days` hides is what `days_shown`
reads as a day, and the digits of a day's shape that read as none stay."""

from __future__ import annotations

import random
import re
from datetime import date

import pytest

from etl.extract.file_names import PatientNumbers
from etl.transform.days import DATE, DAY_WRITTEN, days_shown, hide_days
from etl.transform.screen import DaysOr, TextScreen
from etl.transform.values import PartialDate


def test_the_days_hidden_are_the_days_shown_and_a_code_of_as_many_digits_stays():
    text = "MedDRA 10019211 ok; nato il 16/01/1995 (19950116), visto 2024-3-7, 03.04.2027, lotto 1001-92-11"
    assert hide_days(text) == f"MedDRA 10019211 ok; nato il {DATE} ({DATE}), visto {DATE}, {DATE}, lotto 1001-92-11"
    assert days_shown(text) == {date(1995, 1, 16), date(2024, 3, 7), date(2027, 4, 3), date(2027, 3, 4)}
    assert days_shown(hide_days(text)) == frozenset()
    assert hide_days("nessuna data") == "nessuna data"


def test_a_day_parted_by_spaced_marks_a_typed_dash_or_spaces_is_a_day_and_mixed_marks_are_not():
    # As a centre types it (03. 08. 2007, 12 / 09 / 2015, 03 08 2007) or Word's autocorrect puts an en dash for '-'.
    text = ("nata il 03. 08. 2007, visto 03.08. 2007 e 2007\u201308\u201303 o 2007\u201308-03, "
            "esame 12\u00a0/\u00a009\u00a0/\u00a02015, cicli 03 08 2007")
    assert hide_days(text) == f"nata il {DATE}, visto {DATE} e {DATE} o {DATE}, esame {DATE}, cicli {DATE}"
    assert days_shown(text) == {date(2007, 8, 3), date(2007, 3, 8), date(2015, 9, 12), date(2015, 12, 9)}
    ordinary = "cicli 2 3 519, dose 12.5 - 10.2015, 03/08-2007, ILTB\u201300002, 2007_08_03, 1 2 3, v2.1"
    assert hide_days(ordinary) == ordinary and days_shown(ordinary) == frozenset()


@pytest.mark.parametrize(("written", "days"), [
    ("15 January 2024", {date(2024, 1, 15)}), ("15 janv. 2024", {date(2024, 1, 15)}),
    ("15. März 2024", {date(2024, 3, 15)}), ("1er mars 2024", {date(2024, 3, 1)}),
    ("3 AOÛT 2010", {date(2010, 8, 3)}), ("15 de enero de 2024", {date(2024, 1, 15)}),
    ("nato il 16 gennaio 1995.", {date(1995, 1, 16)}), ("15 października 2020", {date(2020, 10, 15)}),
    ("January 15th, 2024", {date(2024, 1, 15)}), ("sept. 3, 2019", {date(2019, 9, 3)}),
    ("15JAN2024", {date(2024, 1, 15)}), ("15-Jan-2024", {date(2024, 1, 15)}),
    ("DOB 15JAN24", {date(1924, 1, 15), date(2024, 1, 15)}),
    ("15/01/24", {date(1924, 1, 15), date(2024, 1, 15)}),
    ("visto 03.04.07", {date(1907, 4, 3), date(2007, 4, 3), date(1907, 3, 4), date(2007, 3, 4)}),
    ("3.III.2010", {date(2010, 3, 3)}), ("3 - XII - 2010", {date(2010, 12, 3)}), ("03.Mrz.10", {date(1910, 3, 3),
                                                                                            date(2010, 3, 3)}),
    ("1.º de marzo de 2010", {date(2010, 3, 1)}), ("2010-Mar-03", {date(2010, 3, 3)}),
    ("3/3/'10", {date(1910, 3, 3), date(2010, 3, 3)}), ("nata il 3.12.\u201907", {date(1907, 12, 3), date(2007, 12, 3),
                                                                                 date(1907, 3, 12), date(2007, 3, 12)}),
    ("15 APR\u0130L 2024", {date(2024, 4, 15)}),  # a Turkish-locale capital I: the regex folds it, so must the reading
])
def test_a_day_in_words_or_with_a_two_digit_year_is_a_day(written, days):
    """SAS's DATE9 (15JAN2024), a spreadsheet's 15-Jan-24, and a month in words in the network's languages."""
    assert days_shown(written) == days
    assert DATE in hide_days(written) and not any(str(d.day) in hide_days(written) for d in days)


@pytest.mark.parametrize("ordinary", [
    "31 February 2024", "marker 15 2024", "on 3 May 12 patients", "2 x 3 mg 2019", "Maybe 3, 2019",
    "12:30:45", "dose 15 mg/m2 2024", "grade 3/4/5", "TREP-000002 on day 15",
    # a helper's review: a two-digit year only after two digits each, with marks unspaced; "of" is no part of a
    # month-first year; no day after a letter or a decimal point
    "Apgar 8/9/10", "APGAR 9-10-10", "protocol v2.1.12", "MTX 5-10-15 mg/m2", "1-3-12 weeks", "MRD 1/10/21",
    "incidence 1 out of 2000 live births", "Mutation im RB1-Gen 2012", "WBC 3.2 10 2012", "3 III 2010 r.",
    "codes 1/2/'12' and 3/4/\u201815\u2019",  # quoted, not a year cut short
])
def test_words_and_numbers_that_are_no_day_stay(ordinary):
    assert hide_days(ordinary) == ordinary and days_shown(ordinary) == frozenset()


def test_a_patient_number_after_a_lists_dash_is_no_day_and_is_hidden():
    """SACHA's numbers (07-0042) after "2 - " read as a day of the year 0042, and the day pattern, which goes
    first, left them in the text: a year is of 1900-2099."""
    screen = TextScreen.of([f"{c:02d}-{n:04d}" for c in (3, 7) for n in range(1, 15)], [], [])
    for text in ("Tumour board 2 - 07-0012 same histology", "Tumour board 2\u201307-0012", "board 2-07-0012",
                 "Tumour board 2 - 07 \u2013 0012", "board 07\u00a0-\u00a00012"):  # spaced, as the own number is
        assert "07-0012" not in screen.screened(text) and screen.holds(text), text
    assert screen.screened("Related: 1 - 07-0011, 2 - 07-0013") == "Related: 1 - {patient}, 2 - {patient}"
    assert hide_days("lotto 1001-92-11, anno 0042-07-02") == "lotto 1001-92-11, anno 0042-07-02"


@pytest.mark.parametrize(("text", "shown"), [
    ("Bruder am 12.03. 07-0042 vorgestellt", "Bruder am 12.03. {patient} vorgestellt"),
    ("Tel. 4.5. 07-0042", "Tel. 4.5. {patient}"), ("seen 2011 5 07-0042", "seen 2011 5 {patient}"),
    ("Telefonat 5.6. 03.08.2007 (Geschwister)", "Telefonat 5.6. {date} (Geschwister)"),
    ("Konsil 12.03. 03.08.2007", "Konsil 12.03. {date}"),
])
def test_a_short_or_spaced_day_does_not_take_the_start_of_a_number_or_date_after_it(text, shown):
    """A helper's review: a day with a two-digit year after spaced marks (12.03. 07), or parted by spaces (2011 5 07),
    took the start of another patient's number or birth date after it, which then showed."""
    screen = TextScreen.of([f"07-{n:04d}" for n in range(1, 60)], [PartialDate(date(2007, 8, 3), "day")], [])
    assert screen.screened(text) == shown and screen.holds(text)


def test_another_patient_s_number_is_found_without_a_separator_or_with_a_slash_dot_or_tab_between_letters_and_digits():
    """A leak hunt: ILTB00002, ILTB/00003 and ILTB<tab>00005 were loaded as written, and TREP000002 quoted."""
    screen = TextScreen.of([f"ILTB-{n:05d}" for n in range(1, 40)], [], [])
    text = "seen with ILTB00002, ILTB/00003, ILTB\t00005, ILTB.00007; HbA1c 7.2, ISO8601, COVID19"
    assert screen.screened(text) == "seen with {patient}, {patient}, {patient}, {patient}; HbA1c 7.2, ISO8601, COVID19"
    # keys written without one: a mark, not a space (a note's "in 2021" for keys ID0001 is no number)
    written_together = TextScreen.of([f"TREP{n:06d}" for n in range(1, 40)], [], [])
    assert written_together.screened("TREP-000002 or TREP/000003, in 202100") == "{patient} or {patient}, in 202100"
    # digits meeting digits keep their separator: 300001 for 30-0001 would take every dose of six digits
    sacha = TextScreen.of([f"30-{n:04d}" for n in range(1, 40)], [], [])
    assert sacha.screened("ref 30-0001, 400000 IE") == "ref {patient}, 400000 IE"


def test_a_date_year_first_with_the_month_in_words_or_in_full_width_digits_is_a_day():
    """A leak hunt: 2012 Aug 10 and １０/０８/２０１２ (a birth date) were loaded as written."""
    assert days_shown("born 2012 Aug 10") == {date(2012, 8, 10)}
    full_width = "\uff11\uff10/\uff10\uff18/\uff12\uff10\uff11\uff12"
    assert hide_days(f"né le {full_width}") == f"né le {DATE}"
    screen = TextScreen.of([], [PartialDate(date(2012, 8, 10), "day")], [])
    assert screen.screened(f"born {full_width}, 2012 Aug 10") == "born {date}, {date}"


@pytest.mark.parametrize("keys", [["TREP-000002", "TREP-000310"], ["30-0001", "12-0345"],
                                  ["ID0001", "ID0042", "ID0777"], ["12345678", "87654321"],
                                  ["2-0042", "ILTB-00002", "AB12"]])
def test_a_day_or_a_key_is_found_as_the_one_pattern_of_both_found_it(keys: list[str]) -> None:
    """`DaysOr` finds with two patterns what `DAY_WRITTEN|keys` finds with one (compiled anew for each source's keys,
    30 ms each): the leftmost match, a day first where both start."""
    key_pattern = PatientNumbers.of(keys).key_pattern
    assert key_pattern is not None
    one = re.compile(f"{DAY_WRITTEN}|(?:{key_pattern.pattern})")
    pieces = ["15-01-2024", "01-2024", "2024-01-15", "20240115", "15 January 2024", "3.III.2010", "03. 08. 2007",
              *keys, *(key[:-1] for key in keys), "TREP", "-", "/", ".", " ", "  ", "12", "2024", "0001", "000002",
              "ID", "a", "x1", "12345678", "12-03", "07-0042", "10019211", "15JAN24", "born", "ILTB-00002"]
    chooser = random.Random(11)
    texts = ["".join(chooser.choice(pieces) for _ in range(chooser.randint(1, 12))) for _ in range(3000)]
    texts += [f"{a}{b}{c}" for a in keys for b in ("", " ", "-", "/") for c in ("15-01-2024", "2024", "01-2024")]
    both = DaysOr(key_pattern)
    for text in texts:
        expected = [(m.span(), m.group("day") is not None) for m in one.finditer(text)]
        assert [(m.span(), is_day) for m, is_day in both.finditer(text)] == expected, text
        assert both.sub(lambda m, is_day: "D" if is_day else "K", text) == \
            one.sub(lambda m: "D" if m.group("day") is not None else "K", text), text
    without_keys = DaysOr(None).finditer("2024-01-15 TREP-000002")
    assert [(m.group(), is_day) for m, is_day in without_keys] == [("2024-01-15", True)]
