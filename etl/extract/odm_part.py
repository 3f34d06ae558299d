"""The part of `odm_chunks` that runs in both processes: stage parts of an ODM file to Parquet.

Run as `python -m etl.extract.odm_part PATH OUT BATCH_ROWS LINEAGE WHERE`, it is the second process:
it stages the parts WHERE names (JSON: each part's head, start, end, tail and first_line, and the
file's size and time, checked instead of planning again) to OUT and prints (rows, notices) as JSON.
It imports only what reading needs (lxml, pyarrow), not the adapters (pandas, DuckDB), so it starts
in a fraction of the time and has more of the file to read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.extract.odm_items import STAGING_SCHEMA, SubDocument, no_cyclic_gc, read_item_batches, write_batches
from etl.extract.odm_subjects import read_subject_batches


def write_parts(writer: pq.ParquetWriter, path: Path, parts: Sequence[SubDocument], schema: pa.Schema,
                lineage: dict[str, str], batch_rows: int) -> tuple[int, list[str]]:
    """Stage `parts` of `path` in order with `writer`: (rows, notices)."""
    notices: list[str] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for part in parts:
            if part.head:  # subjects
                yield from read_subject_batches(path, part, batch_rows=batch_rows)
            else:  # the prolog, read by the reference reader: its checks and notices
                yield from read_item_batches(path, notices=notices, document=part, batch_rows=batch_rows)

    with no_cyclic_gc():
        rows = write_batches(writer, batches(), schema, lineage)
    return rows, notices


def _main(path: Path, out: Path, batch_rows: int, lineage: dict[str, str], where: dict[str, Any]) -> None:
    seen = path.stat()
    if (seen.st_size, seen.st_mtime_ns) != (where["size"], where["mtime_ns"]):
        sys.exit("the file changed while it was staged")
    parts = [SubDocument(str(p["head"]).encode("latin-1"), int(p["start"]), int(p["end"]),
                         str(p["tail"]).encode("latin-1"), int(p["first_line"])) for p in where["parts"]]
    schema = pa.schema([*STAGING_SCHEMA, *(pa.field(key, pa.string()) for key in lineage)])
    with pq.ParquetWriter(out, schema) as writer:
        print(json.dumps(write_parts(writer, path, parts, schema, lineage, batch_rows)))


if __name__ == "__main__":
    _path, _out, _batch_rows, _lineage, _where = sys.argv[1:]
    _main(Path(_path), Path(_out), int(_batch_rows), json.loads(_lineage), json.loads(_where))
