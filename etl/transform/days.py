"""A day as a person writes it in a text: the one reading of a day that the screen (a birth date in a note), a
record's own birth date and a centre's comment (`hide_days`) share.

- As digits: year first (2024-01-15), year last (15/01/2024, and the US way 01/15/2024), eight digits year first
  (20240115; never day first, as a MedDRA code such as 10052015 would read). Its parts are parted twice by '/',
  twice by '.' or twice by a dash ('-' or one typed for it, as Word puts 2007–08–03), with a space or not on
  either side of each (03. 08. 2007, 12 / 09 / 2015); by spaces alone with a year of four digits (03 08 2007);
  never by two different marks (03/08-2007). A year of four digits is of 1900-2099: after "2 - " (a list's item)
  07-0012 is a patient number, no day of the year 0012. A year of two digits is read as of 1900-1999 and of
  2000-2099 both, after a day and a month of two digits each and marks without spaces (15/01/24, 03.08.07: not
  Apgar 8/9/10, a dose 5-10-15 or 12.03. 07-0042, where 07-0042 is a patient number), or after an apostrophe
  that cuts it short, which says it is a year (3/3/'10, 3.3.’10).
- With the month in words, in the languages of the network's centres (English, French, German, Italian, Spanish,
  Portuguese, Dutch, Polish), whole or cut short, in any case: 15 January 2024, 15 janv. 2024, 15. März 2024,
  1er mars 2024, 15 de enero de 2024, 15 stycznia 2024, January 15th, 2024, 2024-Jan-15, 2024 Jan 15; run together
  or parted by marks, as SAS's DATE9 and spreadsheets write it (15JAN2024, 15-Jan-2024, 03.Mrz.10), a two-digit year too
  (15JAN24, 15-Jan-24); a Roman month between marks, as Polish and Italian centres write it (3.III.2010).
  Not after a letter (RB1-Gen 2012 is a gene).

A day that runs on into more digits by a mark (12.03. 07-0042, 2011 5 07-0042) is none in the short and spaced
forms: their digits are part of the longer number. A written day reads as every date it may be (`day_readings`):
one reading is enough to hide it, none (1001-92-11, 31 February 2024) leaves the digits as they are.
"""

from __future__ import annotations

import re
from datetime import date

from etl.extract.file_names import TYPED_SEPARATORS, TYPED_SPACES
from etl.transform.pseudonym import as_seen

DATE = "{date}"

# The months in words, by language; whole, cut short, and without their accents as often typed.
_MONTH_WORDS: dict[int, str] = {
    1: "january jan janvier janv januar jänner jaenner jän gennaio gen enero ene janeiro januari stycznia sty",
    2: "february feb febr février fevrier févr fevr fév fev februar febbraio febrero fevereiro februari lutego lut",
    3: "march mar mars märz maerz marz mär mrz marzo março marco maart mrt marca",
    4: "april apr avril avr aprile abril abr kwietnia kwi",
    5: "may mai maggio mag mayo maio mei maja maj",
    6: "june jun juin juni giugno giu junio junho czerwca cze",
    7: "july jul juillet juil juli luglio lug julio julho lipca lip",
    8: "august aug août aout agosto ago augustus sierpnia sie",
    9: "september sep sept septembre settembre sett set septiembre setiembre setembro września wrzesnia wrz",
    10: "october oct octobre oktober okt ottobre ott octubre outubro out oktober października pazdziernika paź paz",
    11: "november nov novembre noviembre novembro listopada lis",
    12: "december dec décembre decembre déc dezember dez dicembre dic diciembre dezembro grudnia gru",
}
MONTHS: dict[str, int] = {word: month for month, words in _MONTH_WORDS.items() for word in words.split()}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10, "XI": 11,
          "XII": 12}

_SPACE = f"[{re.escape(TYPED_SPACES)}]"
_DASH = f"[{re.escape(''.join(c for c in TYPED_SEPARATORS if c not in TYPED_SPACES + '_'))}]"
_MARK = rf"(?:[/.]|{_DASH})"
_YEAR, _SHORT_YEAR, _MONTH_OR_DAY, _TWO = r"(?:19|20)\d\d", r"\d\d", r"\d{1,2}", r"\d\d"
_RUNS_ON = rf"(?!{_SPACE}?{_MARK}{_SPACE}?\d)"  # no more digits after a mark: a longer number's (07-0042)
# '10, as an apostrophe cuts a year short: a year, after any day and month; not a quotation ('12')
_CUT_YEAR = r"['\u2019]\d\d(?!['\u2019])"


def _parted(first: str, second: str, third: str, space: str = f"{_SPACE}?") -> str:
    """The three parts parted twice by the same mark, spaced or not (`space`)."""
    return "|".join(f"{first}{space}{mark}{space}{second}{space}{mark}{space}{third}"
                    for mark in ("/", r"\.", _DASH))


def _spaced(first: str, second: str, third: str) -> str:
    return f"{first}{_SPACE}{{1,3}}{second}{_SPACE}{{1,3}}{third}{_RUNS_ON}"


_AS_DIGITS = "|".join([
    _parted(_YEAR, _MONTH_OR_DAY, _MONTH_OR_DAY), _parted(_MONTH_OR_DAY, _MONTH_OR_DAY, _YEAR),
    _spaced(_YEAR, _MONTH_OR_DAY, _MONTH_OR_DAY), _spaced(_MONTH_OR_DAY, _MONTH_OR_DAY, _YEAR),
    f"(?:{_parted(_TWO, _TWO, _SHORT_YEAR, space='')}){_RUNS_ON}",
    f"(?:{_parted(_MONTH_OR_DAY, _MONTH_OR_DAY, _CUT_YEAR, space='')}){_RUNS_ON}", r"\d{8}"])


def _trie(words: list[str]) -> str:
    """An alternation of the words as a tree of their letters (`jan(?:uary|vier)?`): Python's regex tries the
    branches of a flat one each at every word of a text, five times slower."""
    branches: dict[str, list[str]] = {}
    for word in filter(None, words):
        branches.setdefault(word[0], []).append(word[1:])
    tails = [re.escape(first) + _trie(rest) for first, rest in sorted(branches.items())]
    if not tails:
        return ""
    grouped = tails[0] if len(tails) == 1 else f"(?:{'|'.join(tails)})"
    if "" not in words:
        return grouped
    return f"(?:{grouped})?" if len(tails) > 1 or len(tails[0]) > 1 else f"{grouped}?"


# A month in words, not the start or end of a longer word (`mar` in `marker`), maybe cut short with a full stop.
_MONTH = rf"(?<![^\W\d_])(?i:{_trie(sorted(MONTHS))})(?![^\W\d_])\.?"
_ORDINAL = r"\.?(?i:st|nd|rd|th|er|e|º|°|ª)?\.?"  # 1st, 1er (French), 1º and 1.º (Spanish), 15. (German)
_PART = rf"(?:{_SPACE}|[,/.]|{_DASH})"
_OF = rf"(?:(?i:d[eo]l?|of){_SPACE}{{1,2}})?"  # 15 de enero, 15 of March
_THEN_OF = rf"(?:(?i:de){_SPACE}{{1,2}})?"  # enero de 2024; not "1 out of 2000" (out: October in Portuguese)
_TIGHT = rf"{_MARK}?"  # 15JAN24, 15-Jan-24: a year of two digits only so
_NOT_AFTER_LETTER = r"(?<![^\W\d_])"  # RB1-Gen 2012 (a gene; gen: January in Italian)
_DAY_FIRST = (rf"{_NOT_AFTER_LETTER}(?:{_MONTH_OR_DAY}{_ORDINAL}{_PART}{{0,3}}{_OF}{_MONTH}{_PART}{{0,3}}{_THEN_OF}"
              rf"{_YEAR}|{_MONTH_OR_DAY}{_TIGHT}{_MONTH}{_TIGHT}{_SHORT_YEAR}{_RUNS_ON}"
              rf"|{_MONTH_OR_DAY}\.?{_SPACE}?{_MARK}?{_SPACE}?(?:{'|'.join(sorted(_ROMAN, key=len, reverse=True))})"
              rf"{_SPACE}?{_MARK}{_SPACE}?{_YEAR}|{_YEAR}{_PART}{{1,3}}{_MONTH}{_PART}{{1,3}}{_MONTH_OR_DAY}{_ORDINAL})")
# The month first (January 15, 2024): looked for only where a word starts and a number follows it.
_MONTH_FIRST = (rf"(?<![^\W\d_])(?=[^\W\d_]{{3,12}}\.?{_PART}{{0,3}}\d)"
                rf"{_MONTH}{_PART}{{0,3}}{_MONTH_OR_DAY}{_ORDINAL}{_PART}{{0,3}}{_YEAR}")

# The group `day` holds a day as written; not inside a longer number, nor after a decimal point (WBC 3.2 10 2012),
# a month in words not inside a word. The lookahead for a digit spares the alternatives that start with one at
# every other place (a third of the time).
DAY_WRITTEN = (rf"(?P<day>(?<!\d)(?<!\d[.,])(?:(?=\d)(?:{_AS_DIGITS}|{_DAY_FIRST})|{_MONTH_FIRST})(?!\d))")
DAYS = re.compile(DAY_WRITTEN)  # 30 ms to compile: once for the process
_NUMBERS = re.compile(r"\d+")
_WORDS = re.compile(r"[^\W\d_]+")
_DIGIT = re.compile(r"\d")


def _years(written: str) -> list[int]:
    """The years a year as written is: a two-digit one of either century."""
    return [int(written)] if len(written) == 4 else [1900 + int(written), 2000 + int(written)]


def _month(word: str) -> int | None:
    """The month a word of a written day names, matched as `_MONTH` matches it (in any case, as Python's
    regex folds it: APRİL too), or a Roman month."""
    if (roman := _ROMAN.get(word)) is not None:
        return roman
    return next((month for pattern, month in _MONTH_PATTERNS if pattern.fullmatch(word)), None)


_MONTH_PATTERNS = [(re.compile(f"(?i:{_trie(sorted(words.split()))})"), month) for month, words in _MONTH_WORDS.items()]


def day_readings(written: str) -> list[date]:
    """The days a day written as `DAY_WRITTEN` takes reads as, any way it may be: year first, or year last with
    the day or the month first (as in the US), a two-digit year of either century; none when no way gives a date
    (1001-92-11, 31 February 2024)."""
    numbers = _NUMBERS.findall(written)
    month = next(filter(None, map(_month, _WORDS.findall(written))), None)
    if month is not None:  # in words: the year is the number of four digits, else the last
        year_at = next((at for at, n in enumerate(numbers) if len(n) == 4), len(numbers) - 1)
        day = numbers[1 - year_at] if len(numbers) == 2 else None
        readings = [(year, month, int(day)) for year in _years(numbers[year_at])] if day is not None else []
    elif len(numbers) == 1:  # 20240115
        readings = [(int(written[:4]), int(written[4:6]), int(written[6:]))]
    elif len(numbers) != 3:  # a month word no pattern of ours reads (none is matched so)
        readings = []
    elif len(numbers[0]) == 4:
        readings = [(int(numbers[0]), int(numbers[1]), int(numbers[2]))]
    else:  # day first, or month first as in the US
        readings = [(year, int(second), int(first)) for year in _years(numbers[2])
                    for first, second in ((numbers[0], numbers[1]), (numbers[1], numbers[0]))]
    days = []
    for year, month_of, day_of in readings:
        try:
            days.append(date(year, month_of, day_of))
        except ValueError:
            continue
    return days


def days_shown(text: str) -> frozenset[date]:
    """The days a text holds written as a day (`DAY_WRITTEN`), each read as every date it may be; read as seen
    (pseudonym.as_seen: a full-width date is a date)."""
    if _DIGIT.search(text) is None:
        return frozenset()
    return frozenset(day for m in DAYS.finditer(as_seen(text)) for day in day_readings(m.group("day")))


def hide_days(text: str) -> str:
    """The text with each day written (`DAY_WRITTEN`) that reads as a date replaced by {date}; digits of a day's
    shape that read as none stay (a MedDRA code, 10019211). Read as seen: a text that hid nothing is kept as written."""
    if _DIGIT.search(text) is None:
        return text
    seen = as_seen(text)
    shown = DAYS.sub(lambda m: DATE if day_readings(m.group("day")) else m.group(0), seen)
    return text if shown == seen else shown


def shows_day(text: str, day: date) -> bool:
    """Whether a text holds `day` written as a day, read as every date it may be."""
    return day in days_shown(text)
