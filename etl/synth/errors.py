"""Error injection: which source records get which error, and what the bad value looks like.

Each source record gets at most one error, with probability `rate`. A writer offers the errors
that make sense for a record (`(error_kind, core_field)` options: a follow-up can have a contact
date in the future, a treatment without an end date cannot end before it starts) and applies
the one chosen. The plan draws from its own `random.Random`, and always draws the same number
of times per record whatever it decides, so changing the rate never changes the clean data.

Kinds (docs/synthetic-exports.md, "Injected errors"):
- impossible_date, invalid_code: the pipeline cannot harmonise the record and quarantines it;
- out_of_range, date_order: loaded, then flagged by data-quality rules;
- ineligible (trials): true data that breaks an eligibility criterion (LVEF, ALK/ROS1, age);
  an eligibility rule must flag the enrolment record;
- duplicate (CSV and Excel sources): the row is written twice; one copy loads, the other is quarantined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from random import Random

IMPOSSIBLE_DATE = "impossible_date"
INVALID_CODE = "invalid_code"
OUT_OF_RANGE = "out_of_range"
DATE_ORDER = "date_order"
DUPLICATE = "duplicate"
INELIGIBLE = "ineligible"  # a trial patient enrolled outside the eligibility criteria (a protocol deviation)
QUARANTINED_KINDS = frozenset({IMPOSSIBLE_DATE, INVALID_CODE})

Option = tuple[str, str]  # (error kind, core field)


@dataclass(frozen=True)
class InjectedError:
    kind: str
    field: str  # the core field, e.g. diagnosis_date; empty for a duplicate
    value: str  # the bad value as written (ages: the age in days)


class ErrorPlan:
    """Decides, record by record, whether a record gets an error and which one."""

    def __init__(self, rng: Random, rate: float):
        self.rng = rng
        self.rate = rate

    def choose(self, options: Sequence[Option]) -> Option | None:
        draw, pick = self.rng.random(), self.rng.random()
        if not options or draw >= self.rate:
            return None
        return options[int(pick * len(options))]


def impossible_day(rng: Random, near: date) -> tuple[int, int, int]:
    """(year, month, day) of a date that does not exist, in the year of `near`: 31/02, 31/04, 29/02, month 13."""
    year = near.year
    style = rng.randrange(4)
    if style == 0:
        return year, 2, rng.choice((30, 31))
    if style == 1:
        return year, rng.choice((4, 6, 9, 11)), 31
    if style == 2:
        return (year + 1 if year % 4 == 0 else year), 2, 29  # a year without a 29 February
    return year, 13, min(near.day, 28)


def broken_morphology(rng: Random, morphology: str) -> str:
    """`9500/3` -> `95X0/3`: a digit typed as a letter."""
    histology, _, behaviour = morphology.partition("/")
    position = rng.randrange(1, 4)
    broken = histology[:position] + rng.choice("XO") + histology[position + 1:]
    return f"{broken}/{behaviour}" if behaviour else broken
