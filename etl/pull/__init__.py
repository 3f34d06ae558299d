"""Pulling exports from the sources' drop zones (SFTP, S3-compatible, a folder) into landing/.

`pull_source` / `pull_all` (etl/pull/deliveries.py) are what `rtw pull` and the DAG call; the
Airflow sensor is in etl/pull/sensor.py, imported only by the DAG (this package never imports
Airflow). docs/pull.md is the guide.
"""

from etl.pull.deliveries import (
    PullOutcome,
    PullStatus,
    SkippedFile,
    connection_id,
    pull_all,
    pull_source,
)
from etl.pull.transfer import PullPolicy

__all__ = ["PullOutcome", "PullPolicy", "PullStatus", "SkippedFile", "connection_id", "pull_all", "pull_source"]
