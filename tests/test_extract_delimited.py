"""The delimited reader on small real files shaped like the exports we receive."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.extract.delimited import CsvDialect, iter_csv_rows, sniff_dialect, stage_csv
from etl.extract.errors import ExtractError

ENNOV_ENROL = (
    "STUDY;SITE;SUBJID;RECORDNO;SEX;BRTHDAT;ENRDAT\r\n"
    "ILTB;DE03;ILTB-00123;1;M;05/2011;17/05/2019\r\n"
    "ILTB;FR01;ILTB-00124;1; f ;11/2009;UK/06/2020\r\n"
    "ILTB;IT02;ILTB-00125;1;;03/2015;01/02/2021\r\n"
)

REGISTRY_IT = (
    "id_record;codice_paziente;sesso;data_nascita;data_diagnosi;dimensione_cm;data_decesso;note\r\n"
    "1;IT-0001;1;03/02/2005;17/05/2010;4,5;;è stata operata\r\n"
    "2;IT-0002;2;00/05/2004;00/05/2010;12,25;99/99/9999;città di nascita: Forlì, 37,5°\r\n"
    "3;IT-0003;9;99/99/9999;05/06/2011;3;;\r\n"
)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read_all(path: Path, dialect: CsvDialect, chunk_rows: int = 50_000) -> list[dict[str, object]]:
    return [row for chunk in iter_csv_rows(path, dialect, chunk_rows=chunk_rows) for row in chunk.to_dict("records")]


def test_ennov_bom_semicolon_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path, "ILTB_ENROL.csv", ENNOV_ENROL.encode("utf-8-sig"))
    dialect = sniff_dialect(path)
    assert dialect == CsvDialect("utf-8-sig", ";", ".", "%d/%m/%Y")
    (chunk,) = iter_csv_rows(path, dialect)
    assert list(chunk.columns) == ["STUDY", "SITE", "SUBJID", "RECORDNO", "SEX", "BRTHDAT", "ENRDAT", "_line"]
    assert chunk.to_dict("records") == [
        {"STUDY": "ILTB", "SITE": "DE03", "SUBJID": "ILTB-00123", "RECORDNO": "1", "SEX": "M",
         "BRTHDAT": "05/2011", "ENRDAT": "17/05/2019", "_line": 2},
        {"STUDY": "ILTB", "SITE": "FR01", "SUBJID": "ILTB-00124", "RECORDNO": "1", "SEX": " f ",
         "BRTHDAT": "11/2009", "ENRDAT": "UK/06/2020", "_line": 3},
        {"STUDY": "ILTB", "SITE": "IT02", "SUBJID": "ILTB-00125", "RECORDNO": "1", "SEX": "",
         "BRTHDAT": "03/2015", "ENRDAT": "01/02/2021", "_line": 4},
    ]


def test_bom_stripped_from_header_even_when_read_as_plain_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "ILTB_ENROL.csv", ENNOV_ENROL.encode("utf-8-sig"))
    (chunk,) = iter_csv_rows(path, sniff_dialect(path, encoding="utf-8"))
    assert chunk.columns[0] == "STUDY"


def test_cp1252_italian_registry(tmp_path: Path) -> None:
    path = _write(tmp_path, "TREP_export_20240101.csv", REGISTRY_IT.encode("cp1252"))
    dialect = sniff_dialect(path)
    assert dialect == CsvDialect("cp1252", ";", ",", "%d/%m/%Y")
    rows = _read_all(path, dialect)
    assert [row["dimensione_cm"] for row in rows] == ["4,5", "12,25", "3"]
    assert [row["note"] for row in rows] == ["è stata operata", "città di nascita: Forlì, 37,5°", ""]
    assert [row["data_decesso"] for row in rows] == ["", "99/99/9999", ""]
    assert [row["data_nascita"] for row in rows] == ["03/02/2005", "00/05/2004", "99/99/9999"]


def test_latin1_when_cp1252_cannot_decode(tmp_path: Path) -> None:
    path = _write(tmp_path, "legacy.csv", b"id;note\n1;caf\xe9 \x81\n")
    assert sniff_dialect(path).encoding == "latin-1"


def test_overrides_win_over_detection(tmp_path: Path) -> None:
    path = _write(tmp_path, "TREP_export_20240101.csv", REGISTRY_IT.encode("cp1252"))
    dialect = sniff_dialect(path, encoding="latin-1", decimal=".", date_format="%m/%d/%Y", delimiter=None)
    assert dialect == CsvDialect("latin-1", ";", ".", "%m/%d/%Y")
    with pytest.raises(TypeError, match="sep"):
        sniff_dialect(path, sep=";")


def test_quoted_delimiter_and_line_break_stay_in_one_field(tmp_path: Path) -> None:
    text = 'id;note;code\r\n1;"a;b\r\nsecond ""line""";X\r\n2;plain;Y\r\n\r\n3;"";Z\r\n'
    path = _write(tmp_path, "notes.csv", text.encode("utf-8"))
    dialect = sniff_dialect(path)
    assert dialect.delimiter == ";"
    assert _read_all(path, dialect) == [
        {"id": "1", "note": 'a;b\r\nsecond "line"', "code": "X", "_line": 2},
        {"id": "2", "note": "plain", "code": "Y", "_line": 4},
        {"id": "3", "note": "", "code": "Z", "_line": 6},  # after a blank line 5
    ]


@pytest.mark.parametrize(("bad_row", "found"), [("ILTB;DE03;ILTB-9;1;M;05/2011;17/05/2019;extra", 8),
                                                 ("ILTB;DE03;ILTB-9;1;M", 5)])
def test_ragged_row_names_file_line_and_counts(tmp_path: Path, bad_row: str, found: int) -> None:
    path = _write(tmp_path, "ILTB_ENROL.csv", (ENNOV_ENROL + bad_row + "\r\n").encode("utf-8-sig"))
    with pytest.raises(ExtractError) as caught:
        _read_all(path, sniff_dialect(path))
    message = str(caught.value)
    assert "ILTB_ENROL.csv" in message
    assert "line 5" in message
    assert f"expected 7 fields, found {found}" in message


@pytest.mark.parametrize(("header", "position"), [("a;b;a", 3), ("a;;c", 2), ("a;b;", 3)])
def test_duplicate_or_empty_header_names_column_position(tmp_path: Path, header: str, position: int) -> None:
    path = _write(tmp_path, "bad_header.csv", f"{header}\n1;2;3\n".encode())
    with pytest.raises(ExtractError, match=rf"bad_header\.csv, line 1: header column {position} "):
        _read_all(path, CsvDialect("utf-8", ";", ".", None))


def test_a_repeated_header_name_is_not_quoted_in_the_error(tmp_path: Path) -> None:
    """The message goes to the run's log, the printed summary and meta.source_file, and `rtw profile` and
    `rtw check` show it: a file without its header row has a patient's record for names, and a record repeats
    values (a diagnosis date that is also the first visit's). Positions only: the name is never quoted, nor a
    line break or escape sequence a name may hold."""
    record = "NRX100000;Zoë García;12/03/2010;12/03/2010;H\r\n"
    path = _write(tmp_path, "NRX_20261101.csv", (record * 3).encode())
    with pytest.raises(ExtractError) as raised:
        _read_all(path, CsvDialect("utf-8", ";", ".", None))
    message = str(raised.value)
    assert "header column 4 repeats the name of column 3" in message and "12/03/2010" not in message, message
    name = "X\r\nERROR other_source: forged \x1b[2J"
    path = _write(tmp_path, "forged.csv", f'a;"{name}";"{name}"\r\n1;2;3\r\n'.encode())
    with pytest.raises(ExtractError) as raised:
        _read_all(path, CsvDialect("utf-8", ";", ".", None))
    assert str(raised.value).isprintable() and "other_source" not in str(raised.value), str(raised.value)


def test_a_quote_never_closed_is_said_with_the_line_it_opens_on(tmp_path: Path) -> None:
    """An open quote makes one field of the rest of the file, past csv's field limit: said as such,
    not as a vague quoting error."""
    rest = "".join(f"{n};x;y\r\n" for n in range(2, 20_000))
    path = _write(tmp_path, "open_quote.csv", f'a;b;c\r\n1;"never closed;y\r\n{rest}'.encode())
    with pytest.raises(ExtractError, match=r"open_quote\.csv, line 2: a value in the record starting here runs past "
                                           r"131,072 characters \(a quote opened and never closed"):
        _read_all(path, CsvDialect("utf-8", ";", ".", None))


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("header", ["id;nome", "id"])
def test_utf16_without_a_byte_order_mark_is_refused_saying_so(tmp_path: Path, encoding: str, header: str) -> None:
    """A hunt: it decoded as UTF-8 (NUL bytes between the letters): big-endian staged junk column names, which
    the mapping then missed; little-endian failed as 'expected 2 fields'."""
    path = tmp_path / "export.csv"
    path.write_bytes(f"{header}\r\n1;Forlì\r\n".encode(encoding))
    with pytest.raises(ExtractError, match=r"export.csv, line 1: a NUL byte .* UTF-16 text without a byte-order mark"):
        sniff_dialect(path)
    with pytest.raises(ExtractError, match=r"line 1: a NUL byte .* UTF-16 text without a byte-order mark"):
        stage_csv(path, tmp_path / "staged.parquet", CsvDialect("utf-8", ";", ".", None))


def test_undecodable_byte_names_file_line_and_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path, "TREP_export_20240101.csv", REGISTRY_IT.encode("cp1252"))
    with pytest.raises(ExtractError, match=r"TREP_export_20240101\.csv, line 2: .*utf-8"):
        _read_all(path, sniff_dialect(path, encoding="utf-8"))


@pytest.mark.parametrize(("dates", "expected"), [
    (["01/02/2020", "12/25/2020", "03/04/2020"], "%m/%d/%Y"),
    (["01/02/2020", "25/12/2020", "99/99/9999"], "%d/%m/%Y"),
    (["01/02/2020", "03/04/2020", "00/13/2020", "UK/05/2019"], "%d/%m/%Y"),  # ambiguous -> day-first
    (["2019-05-17", "2020-12-01", "9999-99-99"], "%Y-%m-%d"),
    (["17.05.2019", "01.12.2020"], "%d.%m.%Y"),
    (["05/2019", "12/2020"], "%m/%Y"),
    (["abc", "12", "C69.2"], None),
    # A value counts as often as it occurs (the sniffing looks at each distinct one once).
    (["2019-05-17"] * 3 + ["01/02/2020", "25/12/2020"], "%Y-%m-%d"),
    (["12/25/2020"] * 2 + ["25/12/2020"], "%m/%d/%Y"),
])
def test_date_format_detection(tmp_path: Path, dates: list[str], expected: str | None) -> None:
    rows = "".join(f"{i};{date}\n" for i, date in enumerate(dates))
    path = _write(tmp_path, "dates.csv", f"id;event_date\n{rows}".encode())
    assert sniff_dialect(path).date_format == expected


def test_the_decimal_separator_of_most_cells_wins_repeats_counted(tmp_path: Path) -> None:
    path = _write(tmp_path, "sizes.csv", b"id;size\n1;1,5\n2;1,5\n3;1,5\n4;2.5\n5;3.5\n")
    assert sniff_dialect(path).decimal == ","


def test_comma_delimiter_keeps_dot_decimal(tmp_path: Path) -> None:
    path = _write(tmp_path, "us.csv", b'id,size,agents\n1,"4,5",A|B\n2,3.25,C\n3,1.5,\n')
    assert sniff_dialect(path) == CsvDialect("utf-8", ",", ".", None)


def test_multibyte_character_cut_at_sample_end_stays_utf8(tmp_path: Path) -> None:
    data = "id;note\r\n1;città\r\n2;perché\r\n".encode()
    cut = data.index("à".encode()) + 1  # the sample ends between the two bytes of "à"
    path = _write(tmp_path, "notes.csv", data)
    assert sniff_dialect(path, sample_bytes=cut).encoding == "utf-8"
    assert sniff_dialect(path).encoding == "utf-8"


def test_chunks_keep_line_numbers_across_boundaries(tmp_path: Path) -> None:
    body = "".join(f'{i};"multi\nline {i}"\n' if i == 3 else f"{i};v{i}\n" for i in range(1, 11))
    path = _write(tmp_path, "ten.csv", f"id;value\n{body}".encode())
    chunks = list(iter_csv_rows(path, sniff_dialect(path), chunk_rows=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 3, 1]
    lines = [line for chunk in chunks for line in chunk["_line"]]
    assert lines == [2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # record 3 spans lines 4-5


def test_stage_csv_writes_strings_line_and_lineage(tmp_path: Path) -> None:
    body = "".join(f"{i};{i},5;0{i % 9 + 1}/05/2019\r\n" for i in range(1, 11))
    path = _write(tmp_path, "ILTB_RESP.csv", f"RECORDNO;MRD;ASSDAT\r\n{body}".encode("utf-8-sig"))
    out = tmp_path / "staging" / "iltb" / "abc.parquet"
    dialect = sniff_dialect(path)
    result = stage_csv(path, out, dialect, lineage={"source_file": path.name, "source_file_sha256": "abc"},
                       chunk_rows=3)
    assert result.rows == 10
    assert result.notices == ("ILTB_RESP.csv: utf-8-sig, ';', decimal ',', dates %d/%m/%Y",)
    table = pq.read_table(out)
    assert table.schema.remove_metadata() == pa.schema([
        ("RECORDNO", pa.string()), ("MRD", pa.string()), ("ASSDAT", pa.string()), ("_line", pa.int64()),
        ("source_file", pa.string()), ("source_file_sha256", pa.string())])
    assert table.column("_line").to_pylist() == list(range(2, 12))
    assert table.column("MRD").to_pylist()[:2] == ["1,5", "2,5"]
    assert set(table.column("source_file").to_pylist()) == {"ILTB_RESP.csv"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["abc.parquet"]


def test_stage_csv_header_only_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "ILTB_FU.csv", b"STUDY;SITE;SUBJID;RECORDNO;FUDAT\r\n")
    out = tmp_path / "fu.parquet"
    result = stage_csv(path, out, sniff_dialect(path), lineage={"source_file": path.name})
    assert result.rows == 0
    assert pq.read_table(out).column_names == ["STUDY", "SITE", "SUBJID", "RECORDNO", "FUDAT", "_line", "source_file"]


def test_stage_csv_failure_leaves_no_file(tmp_path: Path) -> None:
    rows = "".join(f"{i};a\n" for i in range(1, 8)) + "8;a;b\n"
    path = _write(tmp_path, "bad.csv", f"id;value\n{rows}".encode())
    out = tmp_path / "out" / "bad.parquet"
    with pytest.raises(ExtractError, match=r"bad\.csv, line 9: expected 2 fields, found 3"):
        stage_csv(path, out, sniff_dialect(path), chunk_rows=3)
    assert list(out.parent.iterdir()) == []
