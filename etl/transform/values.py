"""Parsing raw source values into harmonised ones: dates with precision, codes, numbers.

Every parser takes the raw string exactly as staged and either returns the harmonised value
or raises `ValueRejected` with a message a data manager can act on: the value, and what was
expected. Nothing is ever turned silently into NULL; only empty cells and the source's
declared sentinels (e.g. `99/99/9999`) are NULL.

Partial dates are common in registries (`UK/05/2019`, `00/00/2010`, `05.2019`, ODM `2019-05`):
they are stored as the first day of their period with a precision of `month` or `year`. A source
may write its dates several ways (`dd.mm.yyyy`, or `mm.yyyy` when the day is not known): the
formats are tried in order and the first that reads the value wins; a value none reads is
rejected naming every format tried. `parse_date` is on the hot path (every date of every
record), hence its cache and the compiled pattern per format.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache


class ValueRejected(ValueError):
    """A raw value cannot be harmonised; the message says what was expected."""


@dataclass(frozen=True)
class PartialDate:
    value: date
    precision: str  # day / month / year

    @property
    def period_end(self) -> date:
        """The last day the date can be: itself, or the last day of its month or year."""
        if self.precision == "year":
            return self.value.replace(month=12, day=31)
        if self.precision == "month":
            return (self.value.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return self.value

    @property
    def age_anchor(self) -> date:
        """The date ages are counted from when this is a birth date: the 15th of its month, or 1 July
        of its year. A day-precise birth date too: the warehouse knows birth dates to the month, and an
        age in days counted from the day itself would give the day back (the event's date minus the age)."""
        if self.precision == "year":
            return self.value.replace(month=7, day=1)
        return self.value.replace(day=15)


def age_days(at: PartialDate, birth: PartialDate) -> int:
    """An age in days counted from the birth date's age anchor (the 15th of its month). An event that
    surely came before the birth (its whole period before it) is negative, at least -1: a date error
    the rules flag; any other event is at least 0 (a newborn's diagnosis before the 15th, a diagnosis
    known to the year of a birth known to the month)."""
    days = (at.value - birth.age_anchor).days
    return min(days, -1) if at.period_end < birth.value else max(days, 0)


_HUMAN = {"d": "dd", "m": "mm", "b": "mon", "Y": "yyyy", "H": "HH", "M": "MM", "S": "SS"}
# %b: a month's English abbreviation, in any case, as SAS's DATE9 (21JUN2019) and Oracle (21-JUN-2019) write it.
MONTH_ABBREVIATIONS = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
DATE_DIRECTIVES = frozenset(_HUMAN)
# A date field keeps the date: the time of a date-time (%H %M %S, or an ISO date-time read with a
# year-first format) is read and dropped.
_TIME_PARTS = {"H": r"(?:[01]\d|2[0-3])", "M": r"[0-5]\d", "S": r"[0-5]\d(?:\.\d+)?"}
_ISO_TIME = (r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
             r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?")


def human_format(fmt: str) -> str:
    """'%d/%m/%Y' -> 'dd/mm/yyyy', for error messages."""
    return re.sub(r"%([dmbYHMS])", lambda m: _HUMAN[m.group(1)], fmt)


def human_formats(formats: tuple[str, ...]) -> str:
    """('%d.%m.%Y', '%m.%Y') -> 'dd.mm.yyyy or mm.yyyy'."""
    shown = [human_format(f) for f in formats]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def check_date_format(fmt: str) -> str:
    """A date format the parser understands: %d %m (or %b) %Y and literal text, with a year, and optionally a
    time (%H %M %S, read and dropped); else ValueError."""
    directives = re.findall(r"%(.)", fmt)
    unknown = sorted({d for d in directives if d not in DATE_DIRECTIVES})
    if unknown:
        raise ValueError(f"'{fmt}': {', '.join('%' + d for d in unknown)} not understood; "
                         "a date format uses %d (day), %m (month), %b (month as JAN-DEC), %Y (4-digit year), "
                         "literal text, and "
                         "%H %M %S for a time (dropped: a date field keeps the date)")
    if directives.count("Y") != 1 or any(directives.count(d) > 1 for d in "dmbHMS") or {"m", "b"} <= set(directives):
        raise ValueError(f"'{fmt}': a date format needs %Y once, and %d / %m or %b / %H / %M / %S at most once each")
    return fmt


def _part_pattern(name: str, unknown_parts: tuple[str, ...], digits: str = "1,2", names: str = "") -> str:
    # A day or month is 1-2 digits (00 and 99 are digits), or a month's name (`names`, for %b), or one of the
    # source's letter markers; naming the markers, rather than any 1-3 letters, keeps compact formats unambiguous.
    letters = sorted({p for p in unknown_parts if not p.isdigit()}, key=len, reverse=True)
    markers = "".join(f"|(?i:{re.escape(p)})" for p in letters)
    written = f"(?i:{names})" if names else rf"\d{{{digits}}}"
    return rf"(?P<{name}>{written}{markers})"


def _compact(tokens: list[str], name: str) -> bool:
    """Whether the day or month stands beside another date part with nothing between (%Y%m%d, %d%m%Y)."""
    place = tokens.index(f"%{name}") if f"%{name}" in tokens else None
    return place is not None and any(0 <= i < len(tokens) and tokens[i] in ("%d", "%m", "%Y")
                                     for i in (place - 1, place + 1))


@lru_cache(maxsize=256)
def _date_regex(fmt: str, unknown_parts: tuple[str, ...]) -> re.Pattern[str]:
    tokens = [t for t in re.split(r"(%[dmbYHMS])", fmt) if t]
    # Compact, a day or month is two digits: with one or two, 1122019 (%d%m%Y) is 11 Feb or 1 Dec and
    # 201912 (%Y%m%d) would read as 2 Jan 2019.
    parts = {name: _part_pattern(name, unknown_parts, "2" if _compact(tokens, name) else "1,2") for name in "dm"}
    parts |= {"b": _part_pattern("m", unknown_parts, names="|".join(MONTH_ABBREVIATIONS)), "Y": r"(?P<Y>\d{4})",
              **_TIME_PARTS}
    if fmt.startswith("%Y"):
        # Year-first (ISO) dates are truncated rather than padded: 2019-05, 2019; one ending with the day
        # also reads an ISO date-time (2019-05-17T14:30:00), its time dropped.
        pattern, closers = "", ""
        for i, token in enumerate(tokens):
            if token.startswith("%"):
                pattern += parts[token[1]]
            else:
                pattern += f"(?:{re.escape(token)}" if i else re.escape(token)
                closers += ")?"
        time = _ISO_TIME if fmt.endswith("%d") else ""
        return re.compile(f"^{pattern}{time}{closers}$")
    body = "".join(parts[t[1]] if t.startswith("%") else re.escape(t) for t in tokens)
    return re.compile(f"^{body}$")


_DEFAULT_UNKNOWN = ("UK", "UNK", "00", "0")


class _NotReal(ValueRejected):
    """The text has the shape of the format but is not a calendar date."""


# ISO 8601's day without its month, a hyphen for the month (CDISC SDTM's --DTC: 2019---15): the year is known.
_ISO_DAY_WITHOUT_MONTH = re.compile(r"(\d{4})---(?:0[1-9]|[12]\d|3[01])")


def _parse_one(text: str, fmt: str, unknown_parts: tuple[str, ...]) -> PartialDate | None:
    """The date if `text` is written in `fmt`; None if it is not; _NotReal if written so but impossible."""
    if fmt.startswith("%Y-%m") and (iso := _ISO_DAY_WITHOUT_MONTH.fullmatch(text)):
        if int(iso.group(1)) < 1:
            raise _NotReal(f"'{text}' is not a real date")
        return PartialDate(date(int(iso.group(1)), 1, 1), "year")
    match = _date_regex(fmt, unknown_parts).match(text)
    if not match:
        return None
    parts = match.groupdict()
    year = int(parts["Y"])
    month_text, day_text = parts.get("m"), parts.get("d")
    month_known = month_text is not None and month_text.upper() not in unknown_parts
    day_known = day_text is not None and day_text.upper() not in unknown_parts
    if day_known and not month_known:
        raise _NotReal(f"'{text}' gives a day but no month")
    try:
        month = (int(month_text) if month_text.isdigit() else MONTH_ABBREVIATIONS[month_text.upper()]) \
            if month_known and month_text else 1
        day = int(day_text) if day_known and day_text else 1
        value = date(year, month, day)
    except ValueError:
        raise _NotReal(f"'{text}' is not a real date") from None
    return PartialDate(value, "day" if day_known else "month" if month_known else "year")


@lru_cache(maxsize=200_000)
def parse_date(text: str, fmt: str | tuple[str, ...], unknown_parts: tuple[str, ...] = _DEFAULT_UNKNOWN) -> PartialDate:
    """Parse a full or partial date written in `fmt`, or in the first of several formats that fits.

    Formats are strptime-style with %d %m %Y (and %H %M %S: the time is dropped). A format without
    %d gives month precision (`%m.%Y`), one with only %Y year precision; a day or month written as
    one of `unknown_parts` (upper case: UK, UNK, 00, 99, XX, ...) lowers the precision the same way.
    """
    formats = (fmt,) if isinstance(fmt, str) else fmt
    raw = text.strip()
    impossible: _NotReal | None = None
    for one in formats:
        try:
            found = _parse_one(raw, one, unknown_parts)
        except _NotReal as exc:
            impossible = impossible or exc  # a later format may still read it
            continue
        if found is not None:
            return found
    expected = human_formats(formats)
    if impossible is not None:
        raise ValueRejected(f"{impossible} (expected {expected})")
    raise ValueRejected(f"'{text}' is not a date written {expected}")


def code_form(code: str) -> str:
    """How a code is matched against a code list: stripped, ignoring case, its Unicode composed (an `é`
    typed as e + combining accent is `é`) and any run of spaces (a non-breaking one too) one space."""
    return " ".join(unicodedata.normalize("NFC", code).split()).casefold()


def folded_codes(codes: dict[str, object]) -> dict[str, object]:
    """A code list keyed by `code_form`, for `map_code`."""
    return {code_form(str(code)): value for code, value in codes.items()}


def map_code(text: str, codes: dict[str, object], folded: dict[str, object] | None = None) -> object:
    """Translate a source code through its code list; an unlisted code is rejected. Codes are matched
    as `code_form` writes them (a mapping whose code list has two codes of one form is refused).
    folded: the code list's `folded_codes`, from a caller translating many values through it."""
    key = text.strip()
    if key in codes:
        return codes[key]
    form = code_form(key)
    if folded is None:
        folded = folded_codes(codes)
    if form in folded:
        return folded[form]
    allowed = ", ".join(sorted(map(str, codes)))
    raise ValueRejected(f"code '{text}' is not in the code list ({allowed})")


def parse_decimal(text: str, decimal_mark: str = ".", *, typed: bool = False) -> float:
    """'4,5' with a decimal comma -> 4.5; thousands separators are not accepted (ambiguous).

    A point reads as a decimal point in a decimal-comma source too (4.5), but not where it stands before
    each group of three digits (`1.200`, `12.500.000`): more likely 1200 than 1.2, so refused. A number
    a reader typed (`typed`: an Excel number cell, a SAS numeric) is written with a point, whatever it is; but
    never with a zero ending its fraction (the readers write a number's shortest form): `1.200` of a typed format
    is a text cell's, judged as text is (`1.234` cannot be told from a number cell's, and is read so).
    """
    raw = text.strip()
    if not raw.isascii():  # another script's digits (١.٣٠٠, full-width １.２００) are judged as ASCII's are
        raw = re.sub(r"\d", lambda digit: str(unicodedata.decimal(digit.group(), "x")), raw)
    candidate = raw.replace(decimal_mark, ".") if decimal_mark != "." else raw
    typed = typed and not (raw.endswith("0") and "." in raw)  # no number cell is written 1.200
    thousands = decimal_mark == "," and not typed and re.fullmatch(r"[+-]?[1-9]\d{0,2}(\.\d{3})+", raw)
    if thousands or not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", candidate):
        raise ValueRejected(f"'{text}' is not a number written with decimal mark '{decimal_mark}' "
                            "(thousands separators are not read)")
    return float(candidate)


def parse_integer(text: str) -> int:
    raw = text.strip()
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ValueRejected(f"'{text}' is not a whole number")
    return int(raw)


# HGNC symbols are upper case but for the "orf" (open reading frame) of C<chromosome>orf<n>: C11orf95.
_OPEN_READING_FRAME = re.compile(r"\b(C(?:[1-9]|1[0-9]|2[0-2]|X|Y))ORF(\d+)", re.IGNORECASE)


def gene_symbol_case(text: str) -> str:
    """A gene symbol (or a fusion, `C11orf95::RELA`) in HGNC's case: upper, the 'orf' infix lower."""
    return _OPEN_READING_FRAME.sub(lambda m: f"{m.group(1).upper()}orf{m.group(2)}", text.upper())
