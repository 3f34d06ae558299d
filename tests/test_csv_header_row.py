"""A CSV export with a title or notes above its header: read from the line `header_row` names, with the
file's own line numbers; refused, saying which header_row reads it, when that is not given or the header
moved; and what `rtw profile` says of the file is what staging reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.extract.delimited import ADAPTER, CsvDialect, CsvOptions, iter_csv_rows, sniff_dialect, stage_csv
from etl.extract.errors import ExtractError
from etl.extract.one_line_csv import stage_one_line_records
from etl.transform.mapping import SourceMapping

LINEAGE = {"source_file": "TREP_export_20261101.csv", "source_file_sha256": "abc"}
HEADER = "id_record;codice_paziente;sesso;data_nascita;dimensione_cm;note\r\n"
RECORDS = ("1;IT-0001;1;03/02/2005;4,5;è stata operata\r\n"
           "2;IT-0002;2;00/05/2004;12,25;Forlì\r\n"
           "3;IT-0003;9;99/99/9999;3;\r\n")
TITLE = "Registro Italiano Tumori Rari Pediatrici\r\nexport 2026-11-01 (utente: \"dm\")\r\n"


def _export(tmp_path: Path, text: str, name: str = "TREP_export_20261101.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("cp1252"))
    return path


def _staged(tmp_path: Path, path: Path, dialect: CsvDialect) -> list[dict[str, object]]:
    stage_csv(path, tmp_path / "staged.parquet", dialect, lineage=LINEAGE)
    return pq.read_table(tmp_path / "staged.parquet").to_pylist()


@pytest.mark.parametrize(("title", "expected"), [
    (TITLE, "lines 1-2 have fewer fields than line 3: a title above the header? set header_row: 3"),
    # as Excel saves a sheet with a title cell: the title padded with delimiters to the table's width
    ("Registro Italiano;;;;;\r\n", "line 1 has fewer fields filled than line 2: a title above the header? "
                                   "set header_row: 2"),
])
def test_a_title_above_the_header_is_refused_saying_which_header_row_reads_it(tmp_path, title, expected):
    path = _export(tmp_path, title + HEADER + RECORDS)
    for read in (lambda: _staged(tmp_path, path, sniff_dialect(path)),
                 lambda: list(iter_csv_rows(path, sniff_dialect(path)))):
        with pytest.raises(ExtractError) as refused:
            read()
        assert str(refused.value).startswith(f"TREP_export_20261101.csv: {expected} (the mapping's options:, "
                                             f"or --option header_row=")
        assert "unquoted" not in str(refused.value)


def test_a_header_leaving_columns_unnamed_is_refused_naming_them_not_as_a_title(tmp_path):
    """A hunt: `patient_id,,sex,` was said to be "a title above the header?", the unnamed columns unsaid."""
    path = _export(tmp_path, "patient_id,,sex,\nPT1,x,M,y\nPT2,x,F,y\n")
    with pytest.raises(ExtractError) as refused:
        _staged(tmp_path, path, sniff_dialect(path))
    assert str(refused.value).startswith("TREP_export_20261101.csv: line 1, the header, leaves columns 2, 4 without "
                                         "a name, where line 2 fills them: expected a name for every column")

def test_a_comma_export_with_a_title_is_refused_not_read_as_one_column(tmp_path):
    path = _export(tmp_path, "Registry export\nid,patient,sex\n1,P-1,F\n2,P-2,M\n")
    assert sniff_dialect(path).delimiter == ","
    with pytest.raises(ExtractError, match="line 1 has fewer fields than line 2: a title above the header"):
        _staged(tmp_path, path, sniff_dialect(path))


def test_header_row_skips_the_lines_above_and_keeps_the_file_s_line_numbers(tmp_path):
    path = _export(tmp_path, TITLE + HEADER + RECORDS)
    dialect = sniff_dialect(path, header_row=3)
    assert dialect == CsvDialect("cp1252", ";", ",", "%d/%m/%Y", header_row=3)  # the title's date is no vote
    staged = _staged(tmp_path, path, dialect)
    assert [(row["id_record"], row["_line"]) for row in staged] == [("1", 4), ("2", 5), ("3", 6)]
    assert staged == [{**row, **LINEAGE} for chunk in iter_csv_rows(path, dialect) for row in chunk.to_dict("records")]
    schema = pq.read_schema(tmp_path / "staged.parquet")
    header = HEADER.strip().split(";")
    assert stage_one_line_records(path, tmp_path / "fast.parquet", header, "cp1252", ";", '"', schema, LINEAGE,
                                  header_line=3) == 3, "Arrow's reader stages such a file"
    assert pq.read_table(tmp_path / "fast.parquet").to_pylist() == staged


def test_errors_below_a_header_row_cite_the_file_s_lines(tmp_path):
    path = _export(tmp_path, TITLE + HEADER + RECORDS + "4;IT-0004;1\r\n")
    with pytest.raises(ExtractError, match=r"TREP_export_20261101\.csv, line 7: expected 6 fields, found 3"):
        _staged(tmp_path, path, sniff_dialect(path, header_row=3))


@pytest.mark.parametrize(("text", "header_row", "expected"), [
    (HEADER + RECORDS, 3, "TREP_export_20261101.csv, line 1, above header_row 3: as many fields filled as a header "
                          "or a record: has the header moved up? expected only titles or notes above line 3; if the "
                          "export now puts the column names on line 1, set header_row: 1"),
    (TITLE + "Estratto da: Centro IT-MI01\r\n" + HEADER + RECORDS, 3,
     "TREP_export_20261101.csv: line 3 has fewer fields than line 4: has the header moved down (another title line "
     "above it)? expected the column names on line 3 (header_row); if the export now puts them on line 4, "
     "set header_row: 4"),
    (TITLE + "\r\n" + HEADER + RECORDS, 3, "TREP_export_20261101.csv, line 3: the header row is blank"),
])
def test_a_header_that_moved_is_refused_not_read_from_another_line(tmp_path, text, header_row, expected):
    path = _export(tmp_path, text)
    with pytest.raises(ExtractError) as refused:
        _staged(tmp_path, path, sniff_dialect(path, header_row=header_row))
    assert str(refused.value).startswith(expected)
    assert not (tmp_path / "staged.parquet").exists()


def test_a_blank_first_line_is_not_staged_as_a_record(tmp_path):
    # Arrow skipped the blank line as the header and staged the header as a record, at line 2.
    path = _export(tmp_path, "\r\n" + HEADER + RECORDS)
    staged = _staged(tmp_path, path, sniff_dialect(path))
    assert [(row["id_record"], row["_line"]) for row in staged] == [("1", 3), ("2", 4), ("3", 5)]


def test_header_row_is_a_reader_option_of_the_mapping(tmp_path):
    mapping = SourceMapping.model_validate({
        "source_id": "registry_it", "title": "Registro", "format": "csv", "files": "*.csv", "record_set": "REG",
        "patient_key": "codice_paziente", "record_key": "REG[{id_record}]",
        "patient": {"from": "REG", "fields": {}}, "tables": {}, "options": {"header_row": 3, "encoding": "cp1252"}})
    assert ADAPTER.read_options(mapping) == CsvOptions(header_row=3, encoding="cp1252")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        CsvOptions(header_row=0)
    # rtw forget rewrites the archived copy: the patient's rows go, found under the header on line 3, and the
    # title stays as delivered.
    path = _export(tmp_path, TITLE + HEADER + RECORDS)
    assert ADAPTER.without_patients(path, mapping, lambda key: key == "IT-0002")
    kept = RECORDS.replace("2;IT-0002;2;00/05/2004;12,25;Forlì\r\n", "")
    assert path.read_bytes().decode("cp1252") == TITLE + HEADER + kept


def test_rtw_profile_reads_a_titled_export_with_header_row(tmp_path):
    path = _export(tmp_path, TITLE + HEADER + RECORDS * 3)
    runner = CliRunner()
    refused = runner.invoke(app, ["profile", str(path), "--home", str(tmp_path)], env={"COLUMNS": "250"})
    assert refused.exit_code == 1
    assert "lines 1-2 have fewer fields than line 3: a title above the header? set header_row: 3" in refused.output
    shown = runner.invoke(app, ["profile", str(path), "--home", str(tmp_path), "--option", "header_row=3"],
                          env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "header on line 3" in shown.output and "9 records" in shown.output


def test_describe_reads_with_the_options_given(tmp_path):
    """`rtw profile --option encoding=latin-1` printed the encoding guessed (cp1252) above the one read."""
    path = _export(tmp_path, HEADER + RECORDS * 3)
    details = ADAPTER.describe(path, CsvOptions(encoding="latin-1", decimal="."))
    assert (details.encoding, details.decimal) == ("latin-1", ".")
    assert details.notes == ("encoding latin-1", "delimiter ';'", "decimal mark '.'", "dates %d/%m/%Y")
    assert ADAPTER.describe(path, CsvOptions()).encoding == "cp1252"  # detected when not given
    shown = CliRunner().invoke(app, ["profile", str(path), "--home", str(tmp_path), "--option", "encoding=latin-1"],
                               env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "encoding latin-1" in shown.output and "cp1252" not in shown.output


def test_a_one_column_file_whose_values_hold_commas_is_refused_saying_to_set_the_delimiter(tmp_path):
    path = _export(tmp_path, "name\nSmith, John\nDoe, Jane\nRoe, Ann\n", "names.csv")
    with pytest.raises(ExtractError) as refused:
        _staged(tmp_path, path, sniff_dialect(path))
    assert str(refused.value) == (
        "names.csv: line 1 has fewer fields than line 2: a title above the header? set header_row: 2 (the mapping's "
        "options:, or --option header_row=2); or a one-column file whose values hold ',': set delimiter: to a "
        "character they never hold (--option delimiter='|')")
    # which reads it
    assert [row["name"] for row in _staged(tmp_path, path, sniff_dialect(path, delimiter="|"))] == [
        "Smith, John", "Doe, Jane", "Roe, Ann"]
