"""What the steps of a nightly run hand each other: small typed values, JSON for Airflow's XCom.

plan -> `RunPlan`; extract -> `SourceOutcome` (status extracted or failed); harmonise -> the
same `SourceOutcome`, now harmonised or failed; publish reads the outcomes. They carry paths
and counts, never data, so the steps can run in separate processes or on separate workers.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceStatus(StrEnum):
    EXTRACTED = "extracted"
    HARMONISED = "harmonised"
    FAILED = "failed"
    HELD = "held"  # read, but not loaded: an export that would shrink the source sharply (accept it to load)


class RunPlan(_Step):
    """Which sources changed since the last load (by file hashes and mapping), and the run id."""

    run_id: str
    started_at: datetime
    changed: list[str]
    unchanged: list[str]
    notices: dict[str, list[str]] = {}  # what the landing folders said, by source (refused or waiting files)


class ExportFile(_Step):
    """One export file of a source as this run saw it."""

    name: str
    sha256: str
    size_bytes: int
    series: str
    exported_on: date
    staged: str | None = None  # the staged artefact, once extracted
    rows_staged: int | None = None  # None: staged by an earlier run
    notices: list[str] = []
    message: str | None = None  # why the file could not be read


class LoadedFile(NamedTuple):
    """A file loaded in the live warehouse, as the snapshot guard judges the next load against it."""

    series: str
    records: int  # its records in effect (read less superseded)
    name: str
    loaded: int | None = None  # of them, those loaded, not quarantined (None: not said)


class AcceptedFile(_Step):
    """A data manager's acceptance of an export the snapshot guard held (`rtw accept`)."""

    sha256: str
    file_name: str
    accepted_at: datetime
    accepted_by: str
    departure: bool = False  # a loaded file no longer delivered: the source loads without it


class FileCounts(_Step):
    """Where the records of one file went: rows_read = rows_loaded + rows_quarantined + rows_superseded
    (a record a later increment of the same chain replaced or removed)."""

    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_superseded: int = 0


class SourceOutcome(_Step):
    """One source's result after extract, then after harmonise."""

    source_id: str
    run_id: str
    status: SourceStatus
    message: str | None = None  # why the source failed
    files: list[ExportFile] = []
    superseded: list[ExportFile] = []
    notices: list[str] = []
    # Those of its landing folder (refused, waiting, ignored files): printed. None: extract never read the folder.
    landing_notices: list[str] | None = None
    fingerprint: str | None = None  # of the mapping and the current files: unchanged next time -> skipped
    harmonised_dir: str | None = None
    file_counts: dict[str, FileCounts] = {}  # by file sha256
    rows: dict[str, int] = {}  # harmonised rows by core table
    rejected: int = 0  # records harmonise could not turn into core rows
    accepted: list[AcceptedFile] = []  # held exports a data manager accepted, loaded this run
    seconds_extract: float | None = None
    seconds_harmonise: float | None = None

    @property
    def failed(self) -> bool:
        """Not loaded this run (failed or held): the source keeps its last good data."""
        return self.status in (SourceStatus.FAILED, SourceStatus.HELD)

    def fail(self, message: str) -> SourceOutcome:
        return self.model_copy(update={"status": SourceStatus.FAILED, "message": message})


class RunStatus(StrEnum):
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # a source failed and kept its last good data


class RunSummary(_Step):
    """What a run did, read back from the warehouse it published: what `rtw run` prints."""

    run_id: str
    status: RunStatus
    sources_changed: list[str]
    sources_unchanged: list[str]
    sources_failed: list[str]
    message: str | None  # why sources failed
    failed_reasons: dict[str, str] = {}  # each failed source's why (meta.source): publish may fail one itself
    validated: bool  # the rules and marts ran (a source or a definition changed)
    rows: dict[str, int]  # by core table
    quarantined: dict[str, int]  # records held back, by source
    issues: dict[str, int]  # open issues of the latest validation, by severity
    warehouse: str
    report: str | None  # the validation report's page
    notes: list[str] = []  # outputs written after the publish that failed (marts, report): recorded, not fatal
    notices: list[str] = []  # what the landing folders said: refused, waiting or ignored files
