"""The small CSV registry `reg` the onboarding and mapping tests map: record set REG of files REG_*.csv, its
patients keyed by `pid`, its records by `rec`."""

from __future__ import annotations

from typing import Any

import yaml

from etl.transform.mapping import SourceMapping


def reg_raw(body: str, **settings: Any) -> dict[str, Any]:
    """reg's mapping as YAML reads it: its header, then `body` (YAML: the patient, tables and any other setting),
    then `settings`."""
    header = {"source_id": "reg", "title": "test registry", "format": "csv", "files": "REG_*.csv",
              "record_set": "REG", "patient_key": "pid", "record_key": "{record_set}[{rec}]", "tables": {}}
    return header | yaml.safe_load(body) | settings


def reg_mapping(body: str, **settings: Any) -> SourceMapping:
    return SourceMapping.model_validate(reg_raw(body, **settings))
