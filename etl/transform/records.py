"""Record sets: a source's staged files regrouped into one frame per form, the unit mappings address.

Each format's adapter (etl/extract) says what a record is: an ODM ItemGroupData, a CSV row, a
SAS observation, a row of an Excel sheet. Record sets of the same name from several current
files of a source (per-form exports) are concatenated here. Every record keeps `_line` (where
it starts in the export) and the file's lineage columns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from etl.extract.adapter import adapter_for, record_set_of_file
from etl.transform.mapping import SourceMapping


def load_record_sets(mapping: SourceMapping, staged_files: list[tuple[Path, str]]) -> dict[str, pd.DataFrame]:
    """All record sets of a source from its staged files ((staged path, original file name) pairs)."""
    adapter = adapter_for(mapping.format)
    collected: dict[str, list[pd.DataFrame]] = {}
    for staged, file_name in staged_files:
        record_set = record_set_of_file(mapping, file_name) or Path(file_name).stem
        for name, frame in adapter.record_sets(staged, record_set).items():
            collected.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            for name, frames in collected.items()}
