"""What staging one export file to Parquet reports; shared by the delimited and ODM readers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageResult:
    rows: int
    notices: tuple[str, ...]
