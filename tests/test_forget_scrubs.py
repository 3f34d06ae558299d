"""`rtw forget`'s file scrubs where an export or a derived file holds the patient in an unusual way: a CSV
with a byte order mark, a query list whose record spans lines, a list column in a kept marts set, a centre's
later increment, the same export sent again under a new name, an old copy today's mapping cannot read."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from etl.extract.delimited import ADAPTER
from etl.transform.mapping import SourceMapping

CSV_MAPPING = SourceMapping.model_validate({
    "source_id": "registry_it", "title": "Registro", "format": "csv", "files": "*.csv", "record_set": "REG",
    "patient_key": "codice_paziente", "record_key": "REG[{id_record}]",
    "patient": {"from": "REG", "fields": {}}, "tables": {}, "options": {"encoding": "utf-8"}})


def test_a_csv_with_a_byte_order_mark_loses_the_patient_whose_key_is_its_first_column(tmp_path: Path) -> None:
    # Read as `encoding: utf-8`, the mark stays on the first header field: staging names the column without
    # it, and the archive copy's rewrite looked for the patient key under the name with it, so kept the row.
    path = tmp_path / "TREP_export_20261101.csv"
    path.write_bytes(b"\xef\xbb\xbfcodice_paziente;id_record;sesso\nIT-0001;1;1\nIT-0002;2;2\nIT-0003;3;1\n")
    staged = tmp_path / "staged.parquet"
    ADAPTER.stage(path, staged, ADAPTER.read_options(CSV_MAPPING), {"source_file": path.name,
                                                                     "source_file_sha256": "abc"})
    assert pq.read_table(staged).column("codice_paziente").to_pylist() == ["IT-0001", "IT-0002", "IT-0003"]

    assert ADAPTER.without_patients(path, CSV_MAPPING, lambda key: key == "IT-0002")
    assert path.read_bytes() == b"\xef\xbb\xbfcodice_paziente;id_record;sesso\nIT-0001;1;1\nIT-0003;3;1\n"
