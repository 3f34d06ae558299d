"""Pulling exports from the sources' drop zones (SFTP, S3-compatible, a folder) into landing/.

`pull_source` / `pull_all` (etl/pull/deliveries.py) are what `rtw pull` and the DAG call; the
Airflow sensor is in etl/pull/sensor.py, imported only by the DAG (this package never imports
Airflow). docs/pull.md is the guide.

The names below are imported on first use: the DAG file imports etl.pull.sensor when it is
parsed, and that must not load the mapping engine, fsspec or DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl.pull.deliveries import (
        DropZoneCheck,
        DropZoneState,
        PullOutcome,
        PullStatus,
        SkippedFile,
        check_drop_zone,
        connection_id,
        pull_all,
        pull_source,
    )
    from etl.pull.transfer import PullPolicy

_HOMES = {"PullPolicy": "etl.pull.transfer"} | dict.fromkeys(
    ["DropZoneCheck", "DropZoneState", "PullOutcome", "PullStatus", "SkippedFile", "check_drop_zone",
     "connection_id", "pull_all", "pull_source"], "etl.pull.deliveries")

__all__ = ["DropZoneCheck", "DropZoneState", "PullOutcome", "PullPolicy", "PullStatus", "SkippedFile",
           "check_drop_zone", "connection_id", "pull_all", "pull_source"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'etl.pull' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
