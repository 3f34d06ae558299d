import re
from datetime import date

import pytest

from etl.transform.values import (
    PartialDate,
    ValueRejected,
    age_days,
    check_date_format,
    folded_codes,
    map_code,
    parse_date,
    parse_decimal,
    parse_integer,
)


@pytest.mark.parametrize(("text", "fmt", "expected", "precision"), [
    ("17/05/2019", "%d/%m/%Y", date(2019, 5, 17), "day"),
    (" 17/05/2019 ", "%d/%m/%Y", date(2019, 5, 17), "day"),
    ("UK/05/2019", "%d/%m/%Y", date(2019, 5, 1), "month"),
    ("UK/UK/2019", "%d/%m/%Y", date(2019, 1, 1), "year"),
    ("00/05/2010", "%d/%m/%Y", date(2010, 5, 1), "month"),
    ("00/00/2010", "%d/%m/%Y", date(2010, 1, 1), "year"),
    ("2019-05-17", "%Y-%m-%d", date(2019, 5, 17), "day"),
    ("2019-05", "%Y-%m-%d", date(2019, 5, 1), "month"),
    ("2019", "%Y-%m-%d", date(2019, 1, 1), "year"),
    # ISO 8601's day without its month (SDTM --DTC, as ESMART's SAS export writes it): was refused, and one such
    # event's record held ESMART's whole export back (shrink guard)
    ("2019---15", "%Y-%m-%d", date(2019, 1, 1), "year"),
    ("05/2010", "%m/%Y", date(2010, 5, 1), "month"),
    ("29/02/2024", "%d/%m/%Y", date(2024, 2, 29), "day"),
    # %b: a month's English abbreviation, as SAS's DATE9 and Oracle write it (a hunt: such dates were shown)
    ("21JUN2019", "%d%b%Y", date(2019, 6, 21), "day"),
    ("21-jun-2019", "%d-%b-%Y", date(2019, 6, 21), "day"),
    ("UK Sep 2019", "%d %b %Y", date(2019, 9, 1), "month"),
])
def test_dates_parse_with_precision(text, fmt, expected, precision):
    assert parse_date(text, fmt) == PartialDate(expected, precision)


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ("31/02/2019", "%d/%m/%Y", "'31/02/2019' is not a real date (expected dd/mm/yyyy)"),
    ("29/02/2023", "%d/%m/%Y", "not a real date"),
    ("2019-13-05", "%Y-%m-%d", "'2019-13-05' is not a real date (expected yyyy-mm-dd)"),
    ("17/UK/2019", "%d/%m/%Y", "gives a day but no month"),
    ("0000---15", "%Y-%m-%d", "'0000---15' is not a real date (expected yyyy-mm-dd)"),
    ("2019---32", "%Y-%m-%d", "is not a date written yyyy-mm-dd"),
    ("2019---15", "%d/%m/%Y", "is not a date written dd/mm/yyyy"),
    ("2019/05/17", "%d/%m/%Y", "is not a date written dd/mm/yyyy"),
    ("yesterday", "%Y-%m-%d", "is not a date written yyyy-mm-dd"),
    ("21JUX2019", "%d%b%Y", "is not a date written ddmonyyyy"),
    ("31FEB2019", "%d%b%Y", "'31FEB2019' is not a real date (expected ddmonyyyy)"),
])
def test_impossible_dates_are_rejected_with_what_was_expected(text, fmt, message):
    with pytest.raises(ValueRejected, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_date(text, fmt)


def test_ages_count_from_the_birth_month_as_the_warehouse_knows_it():
    assert PartialDate(date(2010, 5, 1), "month").age_anchor == date(2010, 5, 15)
    assert PartialDate(date(2010, 1, 1), "year").age_anchor == date(2010, 7, 1)
    assert PartialDate(date(2010, 5, 3), "day").age_anchor == date(2010, 5, 15)  # not the day: date - age would give it


def test_a_newborn_s_age_is_never_negative_and_an_event_before_birth_is():
    born = PartialDate(date(2024, 1, 3), "day")
    assert age_days(PartialDate(date(2024, 1, 5), "day"), born) == 0  # diagnosed two days old, before the 15th
    assert age_days(PartialDate(date(2024, 2, 14), "day"), born) == 30
    assert age_days(PartialDate(date(2023, 12, 20), "day"), born) < 0  # before the birth: a date error, flagged
    late_in_month = PartialDate(date(2020, 5, 25), "day")
    assert age_days(PartialDate(date(2020, 5, 20), "day"), late_in_month) == -1  # before the birth, near the 15th
    in_may = PartialDate(date(2020, 5, 1), "month")
    assert age_days(PartialDate(date(2020, 1, 1), "year"), in_may) == 0  # "2020" may be after May 2020
    assert age_days(PartialDate(date(2019, 1, 1), "year"), in_may) < 0


def test_codes_map_case_insensitively_and_reject_unknown_codes():
    codes = {"M": "male", "F": "female"}
    assert map_code(" m ", codes) == "male"
    with pytest.raises(ValueRejected, match=r"code '7' is not in the code list \(F, M\)"):
        map_code("7", codes)


def test_a_code_list_folded_once_maps_as_the_code_list_does():
    codes = {"M": "male", "Non noto": None, "\u00e9tranger": "abroad"}
    folded = folded_codes(codes)  # harmonise folds each code list once, not once per value
    assert folded == {"m": "male", "non noto": None, "\u00e9tranger": "abroad"}
    for text in (" m ", "NON\u00a0NOTO", "E\u0301TRANGER", "M"):
        assert map_code(text, codes, folded) == map_code(text, codes)
    with pytest.raises(ValueRejected, match="code 'x' is not in the code list"):
        map_code("x", codes, folded)


def test_numbers_respect_the_decimal_mark():
    assert parse_decimal("4,5", ",") == 4.5
    assert parse_decimal("12", ",") == 12.0
    assert parse_decimal("0.25") == 0.25
    with pytest.raises(ValueRejected, match="decimal mark ','"):
        parse_decimal("1.234,5", ",")
    # a point before each group of three: never guessed, in any script's digits (a hunt: ١.٣٠٠ loaded as 1.3)
    for thousands in ("1.200", "12.500", "-1.200.000", "١.٣٠٠", "１.２００"):
        expected = rf"'{re.escape(thousands)}' is not a number written with decimal mark ','"
        with pytest.raises(ValueRejected, match=expected):
            parse_decimal(thousands, ",")
    assert parse_decimal("67.5", ",") == 67.5 and parse_decimal("0.125", ",") == 0.125  # a point, plainly
    assert parse_decimal("١,٥", ",") == 1.5 and parse_decimal("１２", ",") == 12.0
    assert parse_decimal("1.234", ",", typed=True) == 1.234  # an Excel number cell, a SAS numeric
    assert parse_decimal("1.5", ",", typed=True) == 1.5 and parse_decimal("1200", ",", typed=True) == 1200
    # ... but no reader writes a number cell 1.200: a text cell's (a hunt: loaded 1.2 where 1,200 was meant)
    for thousands in ("1.200", "-12.500"):
        with pytest.raises(ValueRejected, match=rf"'{thousands}' is not a number written with decimal mark ','"):
            parse_decimal(thousands, ",", typed=True)
    with pytest.raises(ValueRejected, match=r"decimal mark '\.'"):
        parse_decimal("1,200")
    assert parse_integer(" 3 ") == 3
    with pytest.raises(ValueRejected, match="not a whole number"):
        parse_integer("3.5")


def test_a_date_time_gives_its_date_under_a_year_first_format_or_with_time_directives():
    day = PartialDate(date(2021, 3, 4), "day")
    for text in ("2021-03-04T14:30:00", "2021-03-04 14:30", "2021-03-04T14:30:00.250+01:00", "2021-03-04"):
        assert parse_date(text, "%Y-%m-%d") == day, text
    assert parse_date("2021-03-04T14:30:00", "%Y-%m-%dT%H:%M:%S") == day
    assert parse_date("04.03.2021 14:30", "%d.%m.%Y %H:%M") == day
    assert check_date_format("%Y-%m-%dT%H:%M:%S") == "%Y-%m-%dT%H:%M:%S"
    with pytest.raises(ValueError, match="%m or %b"):
        check_date_format("%d%m%b%Y")  # a month written twice
    with pytest.raises(ValueRejected, match=r"not a date written dd\.mm\.yyyy"):
        parse_date("04.03.2021 14:30", "%d.%m.%Y")  # a day-first format says where its time is
    with pytest.raises(ValueRejected):
        parse_date("2021-03T14:30", "%Y-%m-%d")  # a time after a month is no ISO date-time
    for impossible, fmt in (("2019-05-17T99:99:99", "%Y-%m-%d"), ("2019-05-17 25:61", "%Y-%m-%d"),
                            ("2019-05-17T00:00:00+99:99", "%Y-%m-%d"), ("17/05/2019 99:99", "%d/%m/%Y %H:%M"),
                            ("17/05/2019 23:60", "%d/%m/%Y %H:%M")):
        with pytest.raises(ValueRejected):
            parse_date(impossible, fmt)
    assert parse_date("2019-05-17T23:59:59-11:30", "%Y-%m-%d") == PartialDate(date(2019, 5, 17), "day")
