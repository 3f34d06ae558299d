"""What a rule found on one run, the same shape whichever engine checked it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from etl.schema import in_warehouse

KEY_COLUMNS = ["source_id", "source_record_key"]
FAILURE_COLUMNS = [*KEY_COLUMNS, "field", "value", "message"]
JUDGED_COLUMNS = ["source_id", "centre_id", "denominator"]


@dataclass
class RuleRun:
    """How many rows a rule judged per source and centre (its denominators) and the rows that failed
    it, or why it could not run."""

    rule_id: str
    judged: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=JUDGED_COLUMNS))
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    error: str | None = None

    @classmethod
    def failed_to_run(cls, rule_id: str, error: str) -> RuleRun:
        return cls(rule_id, error=error)


def shown(value: Any) -> str | None:
    """A finding's value as the export gave it, not as pandas prints it: no `NaT`, `<NA>` or
    `2017-11-16 00:00:00` (a DATE read through pandas comes back a midnight timestamp), no `45.0`."""
    if value is None or (not isinstance(value, str | bytes) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, datetime):  # pandas' Timestamp too
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


NO_VALUE_HASH = "null"


def value_hash(value: str | None) -> str:
    """What a waiver remembers of a finding's value (as shown): a changed value no longer matches it.
    VALUE_HASH_SQL computes the same in DuckDB."""
    return NO_VALUE_HASH if value is None else hashlib.sha256(f"value:{value}".encode()).hexdigest()


def value_hash_sql(column: str) -> str:
    return f"coalesce(sha256('value:' || {column}), '{NO_VALUE_HASH}')"


def judged_rows(keys: pd.DataFrame, centres: pd.Series) -> pd.DataFrame:
    """What count_judged counts, for rows already in memory: their keys and each row's centre."""
    if keys.empty:
        return pd.DataFrame(columns=JUDGED_COLUMNS)
    counted = (keys.assign(centre_id=centres).groupby(["source_id", "centre_id"], dropna=False, sort=False)
               ["source_record_key"].nunique())
    return counted.rename("denominator").reset_index()[JUDGED_COLUMNS]


class Denominators:
    """judged_rows for the populations of one batch of rows, counted fast: each row's source and centre
    are numbered once per batch, and a population's denominators are a count of its rows' numbers.
    A batch whose keys repeat (records counted once each), or whose index is not 0..n-1, is left to
    judged_rows."""

    def __init__(self, keys: pd.DataFrame, centres: pd.Series) -> None:
        self._centres = centres
        index = keys.index
        self._counted = (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
                         and not keys.duplicated().any())
        if self._counted:
            sources, self._source_names = pd.factorize(keys["source_id"], use_na_sentinel=False)
            centre_codes, self._centre_names = pd.factorize(centres, use_na_sentinel=False)
            self._codes = sources * len(self._centre_names) + centre_codes

    def of(self, population: pd.DataFrame) -> pd.DataFrame:
        """The denominators of `population`, rows of the batch (their keys, the batch's index)."""
        if not self._counted or population.empty:
            return judged_rows(population, self._centres[population.index])
        counts = np.bincount(self._codes[population.index.to_numpy()],
                             minlength=len(self._source_names) * len(self._centre_names))
        present = counts.nonzero()[0]
        sources, centres = np.divmod(present, len(self._centre_names))
        return pd.DataFrame({"source_id": self._source_names[sources], "centre_id": self._centre_names[centres],
                             "denominator": counts[present]}, columns=JUDGED_COLUMNS)


def count_judged(con: duckdb.DuckDBPyConnection, population: str) -> pd.DataFrame:
    """The records a rule judged, `population` (a query of source_id, source_record_key), counted per
    source and centre where they are: a rule's population is millions of keys at registry scale,
    its denominators a few rows."""
    records = ("stage.record" if in_warehouse(con, "stage.record") else
               "(SELECT NULL::VARCHAR AS source_id, NULL::VARCHAR AS source_record_key, NULL::VARCHAR AS centre_id)")
    # The keys made distinct before the join: a count(DISTINCT) after it held both the join's and the
    # distinct's tables at once, and ran out of memory at 100,000 persons (1.5 M keys, 512MB).
    return con.execute(f"""
        WITH p AS (SELECT DISTINCT source_id, source_record_key FROM ({population}))
        SELECT p.source_id, r.centre_id, count(*) AS denominator
        FROM p LEFT JOIN {records} r USING (source_id, source_record_key)
        GROUP BY ALL""").df()
