"""What a rule found on one run, the same shape whichever engine checked it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

KEY_COLUMNS = ["source_id", "source_record_key"]
FAILURE_COLUMNS = [*KEY_COLUMNS, "field", "value", "message"]


@dataclass
class RuleRun:
    """The rows a rule judged (its denominator) and those that failed it, or why it could not run."""

    rule_id: str
    population: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=KEY_COLUMNS))
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    error: str | None = None

    @classmethod
    def failed_to_run(cls, rule_id: str, error: str) -> RuleRun:
        return cls(rule_id, error=error)
