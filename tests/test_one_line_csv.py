"""The Arrow fast path of CSV staging stages exactly what the record-by-record reader does, and hands
every file it cannot vouch for back to that reader, whose errors name the line."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.extract import one_line_csv
from etl.extract.delimited import CsvDialect, iter_csv_rows, sniff_dialect, stage_csv
from etl.extract.errors import ExtractError
from etl.extract.one_line_csv import stage_one_line_records

LINEAGE = {"source_file": "export.csv", "source_file_sha256": "abc"}

ONE_LINE_FILES = {
    "bom, crlf": ("STUDY;SITE;SUBJID\r\nILTB;DE03;ILTB-1\r\nILTB;FR01; f \r\n".encode("utf-8-sig"), None),
    "no final line break": (b"a;b\n1;2\n3;4", None),
    "quoted values": (b'id;note\n1;"x; y"\n2;"say ""hi"""\n3;plain\n4;""\n', None),
    "cp1252": ("id;nota\r\n1;città € 37,5°\r\n2;Forlì\r\n".encode("cp1252"), "cp1252"),
    "quote inside an unquoted value": (b'id;h\n1;5\'11"\n2;ok\n', None),
    "header only": (b"a;b;c\r\n", None),
    "empty values": (b"a;b;c\n;;\n1;;\n", None),
}


def _slow(path: Path, dialect: CsvDialect) -> list[dict[str, object]]:
    return [row for chunk in iter_csv_rows(path, dialect) for row in chunk.to_dict("records")]


@pytest.mark.parametrize("name", ONE_LINE_FILES)
def test_fast_path_stages_what_the_record_reader_reads(tmp_path: Path, name: str) -> None:
    data, encoding = ONE_LINE_FILES[name]
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    dialect = sniff_dialect(path, encoding=encoding)
    stage_csv(path, tmp_path / "staged.parquet", dialect, lineage=LINEAGE)
    staged = pq.read_table(tmp_path / "staged.parquet")
    expected = [{**row, **LINEAGE} for row in _slow(path, dialect)]
    assert staged.to_pylist() == expected
    header = [n for n in staged.column_names if n not in (*LINEAGE, "_line")]
    assert stage_one_line_records(path, tmp_path / "fast.parquet", header, dialect.encoding, dialect.delimiter,
                                  dialect.quotechar, staged.schema, LINEAGE) == len(expected), \
        "the fast path should take this file"


HANDED_BACK = {
    "a record spanning lines": (b'id;note\n1;"two\nlines"\n2;x\n', None),
    "a blank line": (b"a;b\n1;2\n\n3;4\n", None),
    "a stray quote": (b'a;b\n1;"x"y\n2;z\n', r"line 2: malformed quoting"),
    "a ragged row": (b"a;b\n1;2\n3\n", r"line 3: expected 2 fields, found 1"),
    "a byte the encoding lacks": (b"a;b\n1;2\n3;\xff\xfe\n", r"line 3: bytes .* cannot be decoded as utf-8"),
    "one column": (b"a\n1\n\n2\n", None),
    # Python's csv said "do you need to open the file in universal-newline mode?" (a CLI audit)
    "a carriage return alone": (b"a;b\n1;2\n3;4\r5;6\n", r"line 3: a carriage return \(\\r\) alone inside an unquoted"),
    # a hunt: Arrow ended a row at it, the blank line made the counts agree, and lines were misnumbered
    "a carriage return alone and a blank line": (b"a;b\n\n1;2\n3;4\r5;6\n",
                                                 r"line 4: a carriage return \(\\r\) alone inside an unquoted"),
    "a carriage return ending the file": (b"a;b\n1;2\n3;4\r", None),
    # a hunt: NUL bytes and the header again (two exports joined) loaded as values
    "a NUL byte": (b"a;b\n1;2\n3;x\x00y\n", r"line 3: a NUL byte \(0x00\) at byte 4 of the line; .* damaged file"),
    "zeros padding a copy cut short": (b"a;b\n1;2\n3;4\n" + b"\x00" * 64, r"line 4: a NUL byte .* damaged file"),
    "the header again": (b"a;b\n1;2\na;b\n3;4\n", r"line 3: the header of line 1 again; .*two exports joined"),
    "the header again, marked and quoted": (b'a;b\n1;2\n\xef\xbb\xbf a ;"b"\n3;4\n', r"line 3: the header of line 1"),
    "a first value the first column's name": (b"a;b\n1;2\na;3\n", None),
}


@pytest.mark.parametrize("name", HANDED_BACK)
def test_files_the_fast_path_cannot_vouch_for_go_to_the_record_reader(tmp_path: Path, name: str) -> None:
    data, error = HANDED_BACK[name]
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    dialect = CsvDialect("utf-8", ";", ".", None)
    header = data.split(b"\n")[0].decode().split(";")
    staged = tmp_path / "staged.parquet"
    schema = None
    if error is None:
        stage_csv(path, staged, dialect, lineage=LINEAGE)
        table = pq.read_table(staged)
        assert table.to_pylist() == [{**row, **LINEAGE} for row in _slow(path, dialect)]
        schema = table.schema
    else:
        with pytest.raises(ExtractError, match=error):
            stage_csv(path, staged, dialect, lineage=LINEAGE)
        assert not staged.exists()
    if schema is not None:
        assert stage_one_line_records(path, tmp_path / "fast.parquet", header, "utf-8", ";", '"', schema,
                                      LINEAGE) is None


def test_line_numbers_follow_the_file_across_arrow_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = [f"P{i:07d};C{i % 31:02d};{i % 28 + 1:02d}/05/2019;\"note {i}; ok\"" for i in range(200_000)]
    path.write_text("patient;centre;date;note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    stage_csv(path, tmp_path / "staged.parquet", sniff_dialect(path), lineage=LINEAGE)
    staged = pq.read_table(tmp_path / "staged.parquet", columns=["patient", "note", "_line"]).to_pydict()
    assert len(staged["_line"]) == 200_000
    assert staged["_line"][123_456] == 123_458 and staged["patient"][123_456] == "P0123456"
    assert staged["note"][199_999] == "note 199999; ok"


def test_a_header_spanning_lines_goes_to_the_record_reader(tmp_path: Path) -> None:
    """A hunt: the header's second line ('ID";Name;DOB', a quoted line break in a column's name) was staged as a
    record by the fast path, which skips lines up to the header's first."""
    path = tmp_path / "export.csv"
    path.write_bytes(b'"Patient\nID";Name;DOB\nP001;Ann;01/02/2010\nP002;Bob;01/02/2011\n')
    dialect = sniff_dialect(path)
    stage_csv(path, tmp_path / "staged.parquet", dialect, lineage=LINEAGE)
    staged = pq.read_table(tmp_path / "staged.parquet")
    assert staged.column("_line").to_pylist() == [3, 4]
    assert staged.to_pylist() == [{**row, **LINEAGE} for row in _slow(path, dialect)]
    assert stage_one_line_records(path, tmp_path / "fast.parquet", ["Patient\nID", "Name", "DOB"], "utf-8", ";",
                                  '"', staged.schema, LINEAGE) is None


@pytest.mark.parametrize("block", [2, 3, 5, 7])
def test_a_crlf_cut_between_two_blocks_is_one_line_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       block: int) -> None:
    monkeypatch.setattr(one_line_csv, "_BLOCK", block)
    path = tmp_path / "export.csv"
    path.write_bytes(b"a;b\r\n1;2\r\n3;4\r\n")
    schema = pq.read_table(_staged(path, tmp_path)).schema
    assert stage_one_line_records(path, tmp_path / "fast.parquet", ["a", "b"], "utf-8", ";", '"', schema,
                                  LINEAGE) == 2
    path.write_bytes(b"a;b\r\n1;2\r3;4\r\n\r\n")  # a carriage return alone, whichever block it ends
    assert stage_one_line_records(path, tmp_path / "fast.parquet", ["a", "b"], "utf-8", ";", '"', schema,
                                  LINEAGE) is None


def _staged(path: Path, folder: Path) -> Path:
    stage_csv(path, folder / "staged.parquet", sniff_dialect(path), lineage=LINEAGE)
    return folder / "staged.parquet"


def test_a_file_quoting_more_lines_than_are_kept_goes_to_the_record_reader(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each quoted line is kept and read again: a file quoting every value is read by the record reader alone."""
    path = tmp_path / "export.csv"
    path.write_bytes(b'"a";"b"\n"1";"2"\n"3";"4"\n')
    schema = pq.read_table(_staged(path, tmp_path)).schema
    assert stage_one_line_records(path, tmp_path / "fast.parquet", ["a", "b"], "utf-8", ";", '"', schema,
                                  LINEAGE) == 2
    monkeypatch.setattr(one_line_csv, "QUOTED_LINES_MOST", 2)
    assert stage_one_line_records(path, tmp_path / "fast.parquet", ["a", "b"], "utf-8", ";", '"', schema,
                                  LINEAGE) is None
    assert pq.read_table(_staged(path, tmp_path)).to_pylist() == [
        {"a": "1", "b": "2", "_line": 2, **LINEAGE}, {"a": "3", "b": "4", "_line": 3, **LINEAGE}]
