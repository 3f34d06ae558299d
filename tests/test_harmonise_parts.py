"""Harmonising in parts of whole patients writes what one pass writes (etl/transform/parts.py)."""

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.config import SOURCES_DIR
from etl.extract import landing
from etl.extract.adapter import adapter_for
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.parts import harmonise_to_folder, part_count
from etl.transform.pseudonym import PseudonymKey
from etl.transform.records import load_current_records

KEY = PseudonymKey(b"parts-test-key")


def _record_sets(home: Any, source_id: str) -> tuple[SourceMapping, dict[str, pa.Table]]:
    """The source's current record sets, read from the shared run's staging as harmonise reads them."""
    mapping = load_mapping(SOURCES_DIR / f"{source_id}.yaml")
    adapter = adapter_for(mapping.format)
    current = landing.discover(home.landing, mapping).current
    options = adapter.read_options(mapping)
    staged = [(home.staging / source_id / adapter.staged_as(f.sha256, options), f.series, f.name, f.sha256)
              for f in current]
    return mapping, load_current_records(mapping, staged).frames


def _sorted(path: Path, leaving_out: list[str] | None = None) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas().drop(columns=leaving_out or []).astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.parametrize("source_id", ["sacha_fr", "iltb", "esmart"])
def test_parts_write_what_one_pass_writes(synthetic_run: Any, tmp_path: Path, source_id: str) -> None:
    home, _, _ = synthetic_run
    mapping, frames = _record_sets(home, source_id)
    records = sum(len(f) for f in frames.values())
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir()
    cut.mkdir()
    one = harmonise_to_folder(mapping, frames, KEY, "run-1", whole)
    parts = harmonise_to_folder(mapping, frames, KEY, "run-1", cut, part_records=records // 5)
    assert one.parts == 1 and parts.parts >= 5
    assert (parts.rows, parts.rejected, parts.file_counts, parts.notices) == \
           (one.rows, one.rejected, one.file_counts, one.notices)
    assert parts.rejected > 0  # the synthetic exports carry errors: quarantine is compared too
    names = sorted(p.name for p in whole.glob("*.parquet"))
    assert names == sorted(p.name for p in cut.glob("*.parquet"))
    assert {"records.parquet", "rejections.parquet", "link_keys.parquet", "diagnosis.parquet"} <= set(names)
    for name in names:
        assert pq.read_schema(cut / name) == pq.read_schema(whole / name), name
        pd.testing.assert_frame_equal(_sorted(cut / name), _sorted(whole / name), obj=name)


def _joined_on(keys: list[str]) -> SourceMapping:
    return SourceMapping.model_validate({
        "source_id": "reg", "title": "A registry", "format": "csv", "files": "*.csv",
        "record_set_from_file": "(?P<record_set>[A-Z]+).csv", "patient_key": "pid",
        "patient": {"from": "REG", "fields": {"sex": {"column": "sex"}}},
        "tables": {"diagnosis": {"from": ["REG", "PATH"], "join_on": keys,
                                 "fields": {"diagnosis_date": {"column": "diag", "type": "date"}}}}})


def test_a_section_joined_without_the_patient_key_keeps_one_part() -> None:
    frames = {"REG": pa.table({"pid": [str(i) for i in range(10)]})}
    assert part_count(_joined_on(["case_no"]), frames, part_records=2) == 1
    assert part_count(_joined_on(["pid", "case_no"]), frames, part_records=2) == 5
    assert part_count(_joined_on(["pid", "case_no"]), frames, part_records=10) == 1
