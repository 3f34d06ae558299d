"""A one-record export without its header row: its only line is the patient's values, read as column names
with no row under them. `rtw check` and `rtw profile` must not show them as names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from etl.onboard.reading import header_is_a_record, read_file


def test_a_one_record_file_without_its_header_reads_as_a_record(tmp_path: Path) -> None:
    # With no row, no column has a filled value to agree with its name: the names' shapes were not enough.
    assert header_is_a_record(pd.DataFrame(columns=["NRX100001", "1", "2", "12/03/2010", "4,7"]))
    export = tmp_path / "NRX_20261101.csv"
    export.write_bytes(b"NRX100001;1;2;12/03/2010;4,7\r\n")
    read = read_file(export)
    assert [c for c in read.record_sets["NRX_20261101"].columns if not c.startswith(("_", "source_file"))] == [
        "column 1", "column 2", "column 3", "column 4", "column 5"]
    for said in (*read.notices, *map(str, read.record_sets["NRX_20261101"].columns)):
        assert "NRX100001" not in said and "12/03/2010" not in said


def test_a_header_only_questionnaire_keeps_its_decimal_numbered_items_as_names(tmp_path: Path) -> None:
    assert not header_is_a_record(pd.DataFrame(columns=["pat_id", "1.1", "2.1"]))
    export = tmp_path / "QOL_20261101.csv"
    export.write_bytes(b"pat_id;1.1;2.1\r\n")
    assert list(read_file(export).record_sets["QOL_20261101"].columns[:3]) == ["pat_id", "1.1", "2.1"]
