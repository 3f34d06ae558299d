"""Treatment lines that sources date with different precision, worked out by hand (marts.treatment_line, and its
pandas restatement in endpoints_expected.py, which _lines holds equal): an audit found a line given to the year,
matched through a line given to the month to one dated to the day, left apart from them, and a line naming no drug
given to the month never joined the line another source dates within that month."""

from __future__ import annotations

from datetime import date

from test_endpoints_by_hand import _lines, _person, _started
from test_origin_imputation import Warehouse


def _regimens(warehouse: Warehouse) -> list[str]:
    """The regimens of marts.treatment_line as _lines built it, by start (of one start, by regimen)."""
    return [regimen for (regimen,) in warehouse.con.execute(
        "SELECT regimen FROM marts.treatment_line ORDER BY start_date, regimen").fetchall()]


# -- a line given to the year, through one given to the month, to one dated to the day -------------------------

def test_a_line_given_to_the_year_joins_the_line_a_month_line_became():
    # The board registry started crizotinib on 14 March and on 20 June 2022; SACHA gives its line "March 2022", a
    # national registry its lines 1 and 2 "2022". Line 1 is the first start of 2022 (14 March, which "March 2022" is
    # too), line 2 the next one, 20 June. Matched one step at a time, line 2 took "March 2022" as its start, which had
    # itself become 14 March: line 2 stayed a line of its own, and 20 June another.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-14", "day")
    _started(warehouse, "iltb", "t2", "2022-06-20", "day", line_number=2)
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month")
    _started(warehouse, "registry", "t4", "2022-01-01", "year")
    _started(warehouse, "registry", "t5", "2022-01-01", "year", line_number=2)
    assert _lines(warehouse) == [(date(2022, 3, 14), 3, ["t1", "t3", "t4"], "not_compared"),
                                 (date(2022, 6, 20), 2, ["t2", "t5"], "not_compared")]


def test_year_month_and_day_lines_of_three_sources_are_one_line():
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-14", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "registry", "t3", "2022-01-01", "year")
    assert _lines(warehouse) == [(date(2022, 3, 14), 3, ["t1", "t2", "t3"], "not_compared")]


def test_a_line_given_to_the_year_does_not_glue_two_lines_dated_within_it():
    # The board registry's lines of 5 January and 20 December 2022 stay two lines; "2022" could be either, and is
    # the one that must have come first (as a source's k-th line so dated is the k-th start).
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-01-05", "day")
    _started(warehouse, "iltb", "t2", "2022-12-20", "day", line_number=2)
    _started(warehouse, "registry", "t3", "2022-01-01", "year")
    assert _lines(warehouse) == [(date(2022, 1, 5), 2, ["t1", "t3"], "not_compared"),
                                 (date(2022, 12, 20), 1, ["t2"], "not_compared")]


def test_a_line_given_to_the_month_is_not_a_start_its_own_source_numbers_as_another_line():
    # SACHA's line 1 "March 2022" and its line 2 on 14 March, beside the board registry's 14 March: the start of 14
    # March is SACHA's line 2, so its line 1 cannot be it. Matched to the board registry's start alone, SACHA's two
    # lines became one.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-14", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t3", "2022-03-14", "day", line_number=2)
    assert _lines(warehouse) == [(date(2022, 3, 1), 1, ["t2"], "not_compared"),
                                 (date(2022, 3, 14), 2, ["t1", "t3"], "not_compared")]


def test_a_line_given_to_the_year_is_the_start_its_source_has_not_given_already():
    # SACHA's line 1 "March 2022" is the board registry's 14 March; its line 2 "2022" can then only be 20 June.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-14", "day")
    _started(warehouse, "iltb", "t2", "2022-06-20", "day", line_number=2)
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t4", "2022-01-01", "year", line_number=2)
    assert _lines(warehouse) == [(date(2022, 3, 14), 2, ["t1", "t3"], "not_compared"),
                                 (date(2022, 6, 20), 2, ["t2", "t4"], "not_compared")]


# -- a line naming no drug, given to the month or year ----------------------------------------------------------

def test_a_line_naming_no_drug_given_to_the_month_is_the_line_another_source_dates_within_it():
    # SACHA's line "March 2022" names no drug; the board registry's crizotinib started on 14 March. Only a line named
    # on the very same stored start (1 March) lent its drugs: the line stayed a line of regimen unknown.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-14", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 14), 2, ["t1", "t2"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib"]


def test_a_line_naming_no_drug_given_to_the_year_is_the_line_that_came_first_within_it():
    # "2022" without a drug beside crizotinib on 10 March and dabrafenib on 20 September of another source: it could
    # be either, and is the one that must have come first, as a line given to the year with its drug is.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-10", "day")
    _started(warehouse, "iltb", "t2", "2022-09-20", "day", line_number=2, drug="dabrafenib")
    _started(warehouse, "registry", "t3", "2022-01-01", "year", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 10), 2, ["t1", "t3"], "not_compared"),
                                 (date(2022, 9, 20), 1, ["t2"], "not_compared")]


def test_a_line_naming_no_drug_stays_apart_from_a_line_its_own_source_numbers_apart():
    # SACHA's line 1 crizotinib on 10 March, its line 2 "2022" without a drug: two lines, the second of regimen unknown.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-10", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-01-01", "year", line_number=2, drug=None)
    assert _lines(warehouse) == [(date(2022, 1, 1), 1, ["t2"], "not_compared"),
                                 (date(2022, 3, 10), 1, ["t1"], "not_compared")]
    assert _regimens(warehouse) == ["unknown", "crizotinib"]


# -- a start left to the month or year is not the line of its first day -----------------------------------------

def test_a_line_given_to_the_month_no_start_is_left_for_is_not_the_line_of_its_first_day():
    # SACHA's lines 1 and 2 "March 2022" beside the board registry's 1 March 2022: line 1 is that line; line 2 finds
    # no start left and keeps "March 2022", stored 1 March. Keyed by that day alone, the three were one line.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-01", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month", line_number=2)
    assert sorted(_lines(warehouse)) == [(date(2022, 3, 1), 1, ["t3"], "not_compared"),
                                         (date(2022, 3, 1), 2, ["t1", "t2"], "not_compared")]


def test_a_line_given_to_the_month_stays_apart_from_its_source_s_line_of_the_month_s_first_day():
    # SACHA's line 1 "March 2022" and its line 2 on 1 March are two lines, as with line 2 on 14 March.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "day", line_number=2)
    assert sorted(_lines(warehouse)) == [(date(2022, 3, 1), 1, ["t1"], "not_compared"),
                                         (date(2022, 3, 1), 1, ["t2"], "not_compared")]
    assert warehouse.con.execute("SELECT start_date_precision FROM marts.treatment_line ORDER BY ALL").fetchall() == [
        ("day",), ("month",)]


def test_a_line_given_to_the_year_stays_apart_from_its_source_s_line_given_to_january():
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-01-01", "year")
    _started(warehouse, "sacha_fr", "t2", "2022-01-01", "month", line_number=2)
    assert sorted(_lines(warehouse)) == [(date(2022, 1, 1), 1, ["t1"], "not_compared"),
                                         (date(2022, 1, 1), 1, ["t2"], "not_compared")]


def test_a_line_naming_no_drug_given_to_the_month_does_not_take_its_source_s_line_of_the_first_day():
    # SACHA's line 1 "March 2022" names no drug, its line 2 is crizotinib on 1 March: line 1 took line 2's drug (the
    # same stored start) and the two became one line.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month", drug=None)
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "day", line_number=2)
    assert sorted(_lines(warehouse)) == [(date(2022, 3, 1), 1, ["t1"], "not_compared"),
                                         (date(2022, 3, 1), 1, ["t2"], "not_compared")]
    assert warehouse.con.execute("SELECT regimen, start_date_precision FROM marts.treatment_line "
                                 "ORDER BY ALL").fetchall() == [("crizotinib", "day"), ("unknown", "month")]


def test_a_line_naming_no_drug_takes_the_drugs_of_the_line_given_alike_before_one_dated_within_it():
    # SACHA's "March 2022" without a drug; the board registry's crizotinib on 1 March, a national registry's
    # dabrafenib "March 2022". The line given alike is the same start; 1 March, stored alike, only a day within it
    # (both were the same start, and crizotinib came first by drugs).
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month", drug=None)
    _started(warehouse, "iltb", "t2", "2022-03-01", "day")
    _started(warehouse, "registry", "t3", "2022-03-01", "month", drug="dabrafenib")
    assert sorted(_lines(warehouse)) == [(date(2022, 3, 1), 1, ["t2"], "not_compared"),
                                         (date(2022, 3, 1), 2, ["t1", "t3"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "dabrafenib"]


# -- a line naming no drug takes none from a line given to a wider period -----------------------------------------

def test_a_line_naming_no_drug_does_not_take_the_drug_of_a_line_given_to_its_month():
    # The board registry's crizotinib on 3 March, SACHA's "March 2022", a national registry's 14 March without a drug.
    # 14 March took crizotinib from "March 2022" (their periods overlap), which is 3 March: a lone crizotinib line on
    # 14 March that no source names. It stays a line of regimen unknown.
    warehouse = _person()
    _started(warehouse, "iltb", "t1", "2022-03-03", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "registry", "t3", "2022-03-14", "day", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 3), 2, ["t1", "t2"], "not_compared"),
                                 (date(2022, 3, 14), 1, ["t3"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "unknown"]


def test_a_line_naming_no_drug_does_not_take_the_drug_of_a_line_given_to_its_month_its_own_source_dates():
    # As above, the crizotinib of 3 March given by the line's own source: "March 2022" may be that line, so lends none.
    warehouse = _person()
    _started(warehouse, "registry", "t1", "2022-03-03", "day")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "registry", "t3", "2022-03-14", "day", line_number=2, drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 3), 2, ["t1", "t2"], "not_compared"),
                                 (date(2022, 3, 14), 1, ["t3"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "unknown"]


def test_a_line_naming_no_drug_takes_none_from_a_line_given_to_its_year_another_source_dates_within_it():
    # Crizotinib "2022", crizotinib "March 2022" of another source, "June 2022" without a drug of a third: "2022" may
    # be "March 2022", so June stays a line of regimen unknown ("March 2022" does not hold June).
    warehouse = _person()
    _started(warehouse, "registry", "t1", "2022-01-01", "year")
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    _started(warehouse, "iltb", "t3", "2022-06-01", "month", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 1), 2, ["t1", "t2"], "not_compared"),
                                 (date(2022, 6, 1), 1, ["t3"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "unknown"]


# -- a line naming no drug takes those of the one line given to a wider period that can be it --------------------

def test_a_line_naming_no_drug_is_the_line_another_source_gives_to_its_month_and_nothing_else_dates():
    # The common case: a national registry gives 14 March 2022 without the drug, SACHA crizotinib "March 2022", no
    # source anything else. Lending only from a line given within its period, they were two lines (regimen unknown
    # on 14 March, crizotinib "March 2022"), each counted; "March 2022" can be no other line, so they are one.
    warehouse = _person()
    _started(warehouse, "registry", "t1", "2022-03-14", "day", drug=None)
    _started(warehouse, "sacha_fr", "t2", "2022-03-01", "month")
    assert _lines(warehouse) == [(date(2022, 3, 14), 2, ["t1", "t2"], "not_compared")]
    assert warehouse.con.execute("SELECT regimen, start_date_precision FROM marts.treatment_line").fetchall() == [
        ("crizotinib", "day")]


def test_a_line_given_to_the_month_lends_its_drug_though_its_own_source_dates_the_drug_within_it():
    # SACHA's line 1 crizotinib "March 2022" and its line 2 crizotinib on 3 March, a registry's 14 March without a
    # drug: line 1 is not line 2 (its source numbers them apart), so the only start it can be is 14 March.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t2", "2022-03-03", "day", line_number=2)
    _started(warehouse, "registry", "t3", "2022-03-14", "day", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 3), 1, ["t2"], "not_compared"),
                                 (date(2022, 3, 14), 2, ["t1", "t3"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "crizotinib"]


def test_a_line_naming_no_drug_on_the_first_of_a_month_is_the_line_given_to_the_month():
    # As on 14 March: 1 March is stored as "March 2022" is, and is within it. Until 2026-12-06 two lines.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month")
    _started(warehouse, "registry", "t2", "2022-03-01", "day", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 1), 2, ["t1", "t2"], "not_compared")]
    assert warehouse.con.execute("SELECT regimen, start_date_precision FROM marts.treatment_line").fetchall() == [
        ("crizotinib", "day")]


def test_a_line_naming_no_drug_given_to_the_month_is_the_line_given_to_its_year():
    # "March 2022" without a drug beside crizotinib "2022" of another source, nothing else: one line, dated to the
    # month (until 2026-12-06 two, the first of regimen unknown).
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month", drug=None)
    _started(warehouse, "registry", "t2", "2022-01-01", "year")
    assert _lines(warehouse) == [(date(2022, 3, 1), 2, ["t1", "t2"], "not_compared")]
    assert warehouse.con.execute("SELECT regimen, start_date_precision FROM marts.treatment_line").fetchall() == [
        ("crizotinib", "month")]


# -- a line given to a wider period lends its drugs to one line naming none, not to two -----------------------------

def test_a_line_given_to_the_month_lends_its_drug_to_no_two_lines_naming_none_within_it():
    # A national registry's 14 March and the board registry's 20 March, both without a drug, beside SACHA's crizotinib
    # "March 2022" and nothing else: both took crizotinib, "March 2022" joined 14 March, and 20 March became a lone
    # crizotinib line no source names. "March 2022" may be either, so both stay lines of regimen unknown.
    warehouse = _person()
    _started(warehouse, "registry", "t1", "2022-03-14", "day", drug=None)
    _started(warehouse, "iltb", "t2", "2022-03-20", "day", drug=None)
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month")
    assert _lines(warehouse) == [(date(2022, 3, 1), 1, ["t3"], "not_compared"),
                                 (date(2022, 3, 14), 1, ["t1"], "not_compared"),
                                 (date(2022, 3, 20), 1, ["t2"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "unknown", "unknown"]


def test_a_line_given_to_the_month_lends_its_drug_to_the_one_day_two_sources_give_without_it():
    # 14 March without a drug from two sources is one line naming none: beside crizotinib "March 2022", that line.
    warehouse = _person()
    _started(warehouse, "registry", "t1", "2022-03-14", "day", drug=None)
    _started(warehouse, "iltb", "t2", "2022-03-14", "day", drug=None)
    _started(warehouse, "sacha_fr", "t3", "2022-03-01", "month")
    assert _lines(warehouse) == [(date(2022, 3, 14), 3, ["t1", "t2", "t3"], "not_compared")]
    assert warehouse.con.execute("SELECT regimen, start_date_precision FROM marts.treatment_line").fetchall() == [
        ("crizotinib", "day")]


def test_a_line_given_to_the_month_lends_its_drug_beside_a_line_naming_none_its_own_source_numbers_apart():
    # SACHA's line 1 crizotinib "March 2022" and its line 2 on 20 March without a drug, a registry's 14 March without
    # one: line 1 is not line 2 (its source numbers them apart), so the only line naming none it can be is 14 March.
    warehouse = _person()
    _started(warehouse, "sacha_fr", "t1", "2022-03-01", "month")
    _started(warehouse, "sacha_fr", "t2", "2022-03-20", "day", line_number=2, drug=None)
    _started(warehouse, "registry", "t3", "2022-03-14", "day", drug=None)
    assert _lines(warehouse) == [(date(2022, 3, 14), 2, ["t1", "t3"], "not_compared"),
                                 (date(2022, 3, 20), 1, ["t2"], "not_compared")]
    assert _regimens(warehouse) == ["crizotinib", "unknown"]
