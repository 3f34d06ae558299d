"""Parsing raw source values into harmonised ones: dates with precision, codes, numbers.

Every parser takes the raw string exactly as staged and either returns the harmonised value
or raises `ValueRejected` with a message a data manager can act on: the value, and what was
expected. Nothing is ever turned silently into NULL; only empty cells and the source's
declared sentinels (e.g. `99/99/9999`) are NULL.

Partial dates are common in registries (`UK/05/2019`, `00/00/2010`, ODM `2019-05`): they
are stored as the first day of their period with a precision of `month` or `year`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache


class ValueRejected(ValueError):
    """A raw value cannot be harmonised; the message says what was expected."""


@dataclass(frozen=True)
class PartialDate:
    value: date
    precision: str  # day / month / year

    @property
    def mid_period(self) -> date:
        """The date standing in for a partial one when computing ages: the 15th, or 1 July."""
        if self.precision == "month":
            return self.value.replace(day=15)
        if self.precision == "year":
            return self.value.replace(month=7, day=1)
        return self.value


_PART_PATTERNS = {"d": r"(?P<d>[^\W_]{1,3})", "m": r"(?P<m>[^\W_]{1,3})", "Y": r"(?P<Y>\d{4})"}
_HUMAN = {"d": "dd", "m": "mm", "Y": "yyyy"}


def human_format(fmt: str) -> str:
    """'%d/%m/%Y' -> 'dd/mm/yyyy', for error messages."""
    return re.sub(r"%([dmY])", lambda m: _HUMAN[m.group(1)], fmt)


@lru_cache(maxsize=64)
def _date_regex(fmt: str) -> re.Pattern[str]:
    tokens = re.split(r"(%[dmY])", fmt)
    if fmt.startswith("%Y"):
        # Year-first (ISO) dates are truncated rather than padded: 2019-05, 2019.
        pattern, closers = "", ""
        for i, token in enumerate(t for t in tokens if t):
            if token.startswith("%"):
                pattern += _PART_PATTERNS[token[1]]
            else:
                pattern += f"(?:{re.escape(token)}" if i else re.escape(token)
                closers += ")?"
        return re.compile(f"^{pattern}{closers}$")
    body = "".join(_PART_PATTERNS[t[1]] if t.startswith("%") else re.escape(t) for t in tokens if t)
    return re.compile(f"^{body}$")


@lru_cache(maxsize=200_000)
def parse_date(text: str, fmt: str, unknown_parts: tuple[str, ...] = ("UK", "UNK", "00", "0")) -> PartialDate:
    """Parse a full or partial date written in `fmt` (strptime-style %d %m %Y only)."""
    match = _date_regex(fmt).match(text.strip())
    if not match:
        raise ValueRejected(f"'{text}' is not a date written {human_format(fmt)}")
    parts = match.groupdict()
    year = int(parts["Y"])
    month_text, day_text = parts.get("m"), parts.get("d")
    month_known = month_text is not None and month_text.upper() not in unknown_parts
    day_known = day_text is not None and day_text.upper() not in unknown_parts
    if day_known and not month_known:
        raise ValueRejected(f"'{text}' gives a day but no month (expected {human_format(fmt)})")
    try:
        month = int(month_text) if month_known and month_text else 1
        day = int(day_text) if day_known and day_text else 1
        value = date(year, month, day)
    except ValueError:
        raise ValueRejected(f"'{text}' is not a real date (expected {human_format(fmt)})") from None
    precision = "day" if day_known else "month" if month_known else "year"
    return PartialDate(value, precision)


def map_code(text: str, codes: dict[str, object], *, case_sensitive: bool = False) -> object:
    """Translate a source code through its code list; an unlisted code is rejected."""
    key = text.strip()
    if key in codes:
        return codes[key]
    if not case_sensitive:
        folded = {str(k).casefold(): v for k, v in codes.items()}
        if key.casefold() in folded:
            return folded[key.casefold()]
    allowed = ", ".join(sorted(map(str, codes)))
    raise ValueRejected(f"code '{text}' is not in the code list ({allowed})")


def parse_decimal(text: str, decimal_mark: str = ".") -> float:
    """'4,5' with a decimal comma -> 4.5; thousands separators are not accepted (ambiguous)."""
    raw = text.strip()
    candidate = raw.replace(decimal_mark, ".") if decimal_mark != "." else raw
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", candidate):
        raise ValueRejected(f"'{text}' is not a number written with decimal mark '{decimal_mark}'")
    return float(candidate)


def parse_integer(text: str) -> int:
    raw = text.strip()
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ValueRejected(f"'{text}' is not a whole number")
    return int(raw)
