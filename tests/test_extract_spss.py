"""The SPSS adapter on small .sav and .zsav files written here with pyreadstat, shaped like a national
registry's cases: value labels, user-missing codes, SPSS date formats."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from etl.extract.errors import ExtractError
from etl.extract.spss import (
    ADAPTER,
    SpssOptions,
    iter_spss_chunks,
    read_spss_metadata,
    stage_spss,
    staged_spss_metadata,
)
from etl.onboard.reading import read_file

LINEAGE = {"source_file": "cases.sav", "source_file_sha256": "0" * 64}

CASES = pd.DataFrame({
    "pid": ["NL-001", "NL-002", "NL-003", "NL-004"],
    "sex": [1.0, 2.0, 9.0, np.nan],
    "age": [3.0, 12.5, 99.0, 0.1 + 0.2],
    "dob": [dt.date(2019, 5, 3), None, dt.date(1960, 1, 1), dt.date(1582, 10, 15)],
    "regdt": [dt.datetime(2019, 5, 3, 10, 20, 30), None, dt.datetime(2019, 5, 3, 10, 20, 30, 250_000),
              dt.datetime(1582, 10, 14)],
    "regmon": [dt.date(2019, 5, 3), dt.date(2019, 5, 31), None, None],
    "status": ["A", "D", "NA", ""],
    "city": ["Köln", "", "Zürich", "'s-Hertogenbosch"],
})
FORMATS = {"sex": "F1.0", "age": "F5.1", "dob": "DATE11", "regdt": "DATETIME23.2", "regmon": "MOYR8"}
LABELS = {"pid": "Patient number", "sex": "Sex", "dob": "Date of birth", "status": "Vital status"}
VALUE_LABELS = {"sex": {1: "male", 2: "female", 9: "not known"}, "status": {"A": "alive", "D": "dead"}}
MISSING = {"sex": [9], "age": [{"lo": 90, "hi": 99}], "status": ["NA"]}

EXPECTED = [
    {"pid": "NL-001", "sex": "1", "age": "3", "dob": "2019-05-03", "regdt": "2019-05-03T10:20:30", "regmon": "2019-05",
     "status": "A", "city": "Köln", "_line": 1},
    {"pid": "NL-002", "sex": "2", "age": "12.5", "dob": "", "regdt": "", "regmon": "2019-05", "status": "D",
     "city": "", "_line": 2},
    {"pid": "NL-003", "sex": "9", "age": "99", "dob": "1960-01-01", "regdt": "2019-05-03T10:20:30.250", "regmon": "",
     "status": "NA", "city": "Zürich", "_line": 3},
    {"pid": "NL-004", "sex": "", "age": "0.3", "dob": "1582-10-15", "regdt": "1582-10-14T00:00:00", "regmon": "",
     "status": "", "city": "'s-Hertogenbosch", "_line": 4},
]


def _sav(tmp_path: Path, frame: pd.DataFrame = CASES, name: str = "cases.sav", *,
         formats: dict[str, str] | None = None, **options: object) -> Path:
    path = tmp_path / name
    settings = {"column_labels": LABELS, "variable_value_labels": VALUE_LABELS, "missing_ranges": MISSING,
                "variable_format": FORMATS} if frame is CASES else {}
    if formats is not None:
        settings["variable_format"] = formats
    pyreadstat.write_sav(frame, str(path), file_label="Registry cases", **{**settings, **options})
    return path


def _stage(path: Path, **options: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    out = path.parent / "staged" / "cases.parquet"
    result = ADAPTER.stage(path, out, SpssOptions(**options), LINEAGE)
    (frame,) = ADAPTER.record_sets(out, "CASES").values()
    assert result.rows == len(frame)
    return frame, result.notices


@pytest.mark.parametrize(("name", "options", "kind"), [
    ("cases.sav", {}, "sav"),
    ("cases.sav", {"row_compress": True}, "sav (compressed)"),
    ("cases.zsav", {"compress": True}, "zsav"),
])
def test_dates_numbers_user_missing_and_codes(tmp_path: Path, name: str, options: dict[str, bool], kind: str) -> None:
    frame, notices = _stage(_sav(tmp_path, name=name, **options))
    assert list(frame.columns) == [*CASES.columns, "_line", "source_file", "source_file_sha256"]
    assert frame.drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED
    assert frame["_line"].dtype == "int64" and all(frame[c].dtype == object for c in CASES.columns)
    assert notices[0] == f"{name}: SPSS {kind}, a dataset 'Registry cases', 8 variables, 4 observations, encoding UTF-8"
    assert notices[1] == (f"{name}: dates converted to ISO text: dob DATE11 -> date, regdt DATETIME23.2 -> datetime, "
                          "regmon MOYR8 -> date (month)")
    assert "pid 'Patient number' A6; sex 'Sex' F1.0;" in notices[2]
    assert notices[3] == (f"{name}: value labels, not applied (the data keeps the codes; a mapping's codes: translate "
                          "them): sex 1 'male', 2 'female', 9 'not known'; status A 'alive', D 'dead'")
    assert notices[4] == (f"{name}: values the file declares missing, kept as delivered (a mapping's codes: or "
                          "null_values: say what they mean): sex 9; age 90 thru 99; status 'NA'")


SECONDS_1582 = (dt.datetime(2019, 5, 3, 10, 20, 30) - dt.datetime(1582, 10, 14)).total_seconds()


@pytest.mark.parametrize(("spss_format", "value", "expected", "temporal"), [
    ("DATE11", SECONDS_1582, "2019-05-03", "date"),
    ("ADATE10", SECONDS_1582, "2019-05-03", "date"),
    ("EDATE10", SECONDS_1582, "2019-05-03", "date"),
    ("SDATE10", SECONDS_1582, "2019-05-03", "date"),
    ("JDATE7", SECONDS_1582, "2019-05-03", "date"),
    ("MOYR8", SECONDS_1582, "2019-05", "date (month)"),
    ("QYR6", SECONDS_1582, "2019", "date (year)"),
    ("WKYR8", SECONDS_1582, "2019", "date (year)"),
    ("DATETIME20", SECONDS_1582, "2019-05-03T10:20:30", "datetime"),
    ("YMDHMS19", SECONDS_1582, "2019-05-03T10:20:30", "datetime"),
    ("TIME8", 90_000.0, "25:00:00", "time"),
    ("TIME11.2", 59.5, "00:00:59.5", "time"),
    ("DTIME11", 2 * 86_400 + 3600.0, "49:00:00", "time"),
    ("MTIME5", 125.0, "00:02:05", "time"),
    ("WKDAY3", 3.0, "3", None),  # a day of the week, not a date
    ("MONTH3", 5.0, "5", None),
    ("F8.2", 3.5, "3.5", None),  # the print format's decimals are not applied
    ("DOLLAR8.2", 1234.5, "1234.5", None),
])
def test_each_print_format(tmp_path: Path, spss_format: str, value: float, expected: str,
                           temporal: str | None) -> None:
    path = _sav(tmp_path, pd.DataFrame({"v": [value]}), formats={"v": spss_format})
    frame, _notices = _stage(path)
    assert frame["v"].tolist() == [expected]
    assert read_spss_metadata(path).variables["v"].temporal == temporal


def test_metadata_without_the_data_and_in_the_staged_file(tmp_path: Path) -> None:
    path = _sav(tmp_path)
    metadata = read_spss_metadata(path)
    assert (metadata.file_format, metadata.file_label, metadata.file_encoding, metadata.rows) == (
        "sav", "Registry cases", "UTF-8", 4)
    assert metadata.variables["dob"][:2] == ("Date of birth", "DATE11")
    assert metadata.variables["pid"].type == "character" and metadata.variables["age"].type == "numeric"
    assert metadata.codes == {"sex": {"1": "male", "2": "female", "9": "not known"},
                              "status": {"A": "alive", "D": "dead"}}
    assert metadata.missing == {"sex": ("9",), "age": ("90 thru 99",), "status": ("'NA'",)}

    out = tmp_path / "staged.parquet"
    stage_spss(path, out, lineage=LINEAGE)
    assert staged_spss_metadata(out) == metadata
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": ["1"]}).to_parquet(other)
    assert staged_spss_metadata(other) is None


def test_value_labels_are_the_code_lists_profile_and_scaffold_see(tmp_path: Path) -> None:
    """Value labels are described as each column's code list, except for a variable of measure scale,
    whose labels name only its sentinels (an age with 999 'not known' is no code list)."""
    frame = pd.DataFrame({"sex": [1.0, 2.0], "age": [3.0, 999.0]})
    path = _sav(tmp_path, frame, variable_value_labels={"sex": {1: "male", 2: "female"}, "age": {999: "not known"}},
                variable_measure={"sex": "nominal", "age": "scale"}, column_labels={"sex": "Sex"})
    details = ADAPTER.describe(path)
    assert details.columns["sex"].codes == {"1": "male", "2": "female"}
    assert details.columns["sex"].label == "Sex" and details.columns["sex"].declared_type == "F8.2"
    assert details.columns["age"].codes is None
    assert details.encoding is None  # declared by the file: a draft mapping need not repeat it


def test_codes_and_missing_values_of_a_date_are_written_as_its_dates(tmp_path: Path) -> None:
    """A date variable's sentinels (0, SPSS's day 0, 'not known'; 9999-12-31 'not applicable') are said as the
    staged data write them, so that a mapping's null_values or codes copied from the notice or the draft match."""
    unknown = (dt.datetime(9999, 12, 31) - dt.datetime(1582, 10, 14)).total_seconds()
    born = (dt.datetime(2012, 3, 1) - dt.datetime(1582, 10, 14)).total_seconds()
    path = _sav(tmp_path, pd.DataFrame({"dob": [born, 0.0, unknown]}), formats={"dob": "EDATE10"},
                variable_value_labels={"dob": {0.0: "not known", unknown: "not applicable"}},
                missing_ranges={"dob": [0.0, {"lo": born + 86_400, "hi": unknown}]})
    frame, notices = _stage(path)
    assert frame["dob"].tolist() == ["2012-03-01", "1582-10-14", "9999-12-31"]
    metadata = read_spss_metadata(path)
    assert metadata.codes == {"dob": {"1582-10-14": "not known", "9999-12-31": "not applicable"}}
    assert metadata.missing == {"dob": ("2012-03-02 thru 9999-12-31", "1582-10-14")}
    assert ADAPTER.describe(path).columns["dob"].codes == {"1582-10-14": "not known", "9999-12-31": "not applicable"}
    assert any(n.endswith("dob 1582-10-14 'not known', 9999-12-31 'not applicable'") for n in notices)


def test_profile_and_scaffold_read_the_labels_in_the_encoding_given(tmp_path: Path) -> None:
    """A file declaring UTF-8 whose labels are Windows-1252: `rtw profile --option encoding=cp1252` (and
    scaffold) read its labels with the encoding given, as the data are staged; they failed on the labels."""
    path = _sav(tmp_path, pd.DataFrame({"sex": [1.0, 2.0]}), column_labels={"sex": "Größe"},
                variable_value_labels={"sex": {1: "männlich", 2: "weiblich"}})
    # Windows-1252 is shorter: the labels keep their length with blanks, which SPSS trims.
    path.write_bytes(path.read_bytes().replace("Größe".encode(), "Größe".encode("cp1252") + b"  ")
                     .replace("männlich".encode(), "männlich".encode("cp1252") + b" "))
    with pytest.raises(ExtractError, match="cannot be decoded"):
        ADAPTER.describe(path)
    read = read_file(path, ADAPTER, options=SpssOptions(encoding="cp1252"))
    assert read.details.columns["sex"].label == "Größe"
    assert read.details.columns["sex"].codes == {"1": "männlich", "2": "weiblich"}
    assert read.record_sets["cases"]["sex"].tolist() == ["1", "2"]


@pytest.mark.parametrize("name", ["cases.sav", "cases.zsav"])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 5])
def test_chunks_give_the_same_rows(tmp_path: Path, chunk_rows: int, name: str) -> None:
    path = _sav(tmp_path, name=name, compress=name.endswith("zsav"))
    out = tmp_path / "chunked.parquet"
    assert stage_spss(path, out, lineage=LINEAGE, chunk_rows=chunk_rows).rows == 4
    assert pd.read_parquet(out).drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED
    firsts = [first for first, _frame, _metadata in iter_spss_chunks(path, chunk_rows=chunk_rows)]
    assert firsts == list(range(1, 5, chunk_rows))  # the file says how many cases it holds


def test_a_file_that_does_not_declare_its_case_count(tmp_path: Path) -> None:
    path = _sav(tmp_path)
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<i", -1)  # the header's case count: -1, unknown
    path.write_bytes(bytes(data))
    assert read_spss_metadata(path).rows is None
    for chunk_rows in (1, 2, 4):
        out = tmp_path / f"chunked-{chunk_rows}.parquet"
        assert stage_spss(path, out, lineage=LINEAGE, chunk_rows=chunk_rows).rows == 4
        assert pd.read_parquet(out).drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED


@pytest.mark.parametrize("declared", [2**30, 2_000_000_000])
def test_a_huge_declared_case_count_is_checked_too(tmp_path: Path, declared: int) -> None:
    """readstat takes a case count from 2**30 on for 'not said': 4 cases of a file declaring 2,000,000,000
    were loaded as whole; the header's count is checked as any other."""
    path = _sav(tmp_path)
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<i", declared)
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=f"cases.sav: 4 observations read, but the file declares {declared}"):
        _stage(path)
    assert list((tmp_path / "staged").iterdir()) == []


def test_file_without_cases(tmp_path: Path) -> None:
    frame, notices = _stage(_sav(tmp_path, CASES.iloc[:0]))
    assert frame.empty
    assert list(frame.columns) == [*CASES.columns, "_line", "source_file", "source_file_sha256"]
    assert notices[-1] == "cases.sav: no observations"


def test_dates_outside_the_calendar_stay_numbers(tmp_path: Path) -> None:
    path = _sav(tmp_path, pd.DataFrame({"dx": [SECONDS_1582, -1e12, 1e15]}), formats={"dx": "DATE11"})
    frame, notices = _stage(path)
    assert frame["dx"].tolist() == ["2019-05-03", "-1000000000000", "1000000000000000"]
    assert "cases.sav: 2 value(s) of dx (DATE11) are not dates between 1582 and 9999: kept as numbers" in notices


def test_undecodable_text_names_the_variable_and_observation(tmp_path: Path) -> None:
    path = _sav(tmp_path, pd.DataFrame({"pid": ["NL-1", "NL-2", "NL-3"], "city": ["Koln", "Munchen", "Graz"]}))
    path.write_bytes(path.read_bytes().replace(b"Munchen", b"M\xfcnchen"))  # latin-1 in a file declaring UTF-8
    with pytest.raises(ExtractError, match=r"cases\.sav, observation 2, variable city: bytes b'\\xfc' at byte 2 of "
                                           r"the value are not UTF-8 \(the value is not shown: it may identify a "
                                           r"patient\); set the source's `options: encoding:`") as refused:
        _stage(path)
    assert "nchen" not in str(refused.value)
    assert list((tmp_path / "staged").iterdir()) == []
    with pytest.raises(ExtractError, match=r"observation 2, variable city"):
        stage_spss(path, tmp_path / "chunked.parquet", lineage=LINEAGE, chunk_rows=1)  # found in its own chunk
    staged, notices = _stage(path, encoding="latin1")
    assert staged["city"].tolist() == ["Koln", "München", "Graz"]
    assert notices[0].endswith("encoding latin1")


def test_unknown_encoding_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"cases\.sav: text cannot be decoded as no-such-encoding .*expected a "
                                           r"valid `options: encoding:`"):
        _stage(_sav(tmp_path), encoding="no-such-encoding")


def _portable() -> bytes:
    splash = b"ASCII SPSS PORT FILE".ljust(200, b" ")
    return splash + bytes(range(256)) + b"SPSSPORT" + b"A8/20261201" * 3


@pytest.mark.parametrize(("content", "name", "expected"), [
    (b"pid,sex\nNL-001,1\n", "cases.sav", r"cases\.sav: not an SPSS data file \(\.sav, \.zsav\): it is plain "
                                          r"text \(a CSV or tab-separated file named like a dataset\?\); "
                                          r"expected '\$FL2'"),
    (b"PK\x03\x04" + bytes(60), "cases.sav", r"not an SPSS data file .*: its first bytes are those of a zip archive"),
    (b"", "cases.zsav", r"cases\.zsav: not an SPSS data file \(\.sav, \.zsav\): the file is empty"),
    (_portable(), "cases.sav", r"it is an SPSS portable file \(\.por\), which is not read: .*; ask for the data "
                               r"saved as \.sav"),
    (b"<stata_dta><header><release>118</release>", "cases.sav", r"its first bytes are those of a Stata dataset"),
    (b"$FL2@(#) SPSS DATA FILE", "cases.sav", r"cases\.sav: truncated: 23 bytes, less than the 176-byte header"),
])
def test_not_an_spss_file(tmp_path: Path, content: bytes, name: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ExtractError, match=expected):
        _stage(path)
    with pytest.raises(ExtractError, match=expected):
        read_spss_metadata(path)
    assert not (tmp_path / "staged").exists() or list((tmp_path / "staged").iterdir()) == []


def test_a_date_of_0_is_staged_as_spss_shows_it_and_said_to_be_a_date_typed_as_0(tmp_path: Path) -> None:
    """SPSS's day 0 is 1582-10-14, no date of a patient: a 0 in a date is a date left empty and typed as 0. It
    was staged as 1582-10-14 unsaid (a core date then quarantined as 'before 1900', a mistyped century?)."""
    may_3_2019 = (dt.datetime(2019, 5, 3) - dt.datetime(1582, 10, 14)).total_seconds()
    frame = pd.DataFrame({"pid": ["NL-001", "NL-002", "NL-003"], "dx": [0.0, may_3_2019, 0.0],
                          "seen": [0.0, np.nan, 1.0], "at": [0.0, 3600.0, np.nan]})
    staged, notices = _stage(_sav(tmp_path, frame, formats={"dx": "DATE11", "seen": "DATETIME20", "at": "TIME8"}))
    assert staged[["dx", "seen", "at"]].to_dict("records") == [
        {"dx": "1582-10-14", "seen": "1582-10-14T00:00:00", "at": "00:00:00"},
        {"dx": "2019-05-03", "seen": "", "at": "01:00:00"},
        {"dx": "1582-10-14", "seen": "1582-10-14T00:00:01", "at": ""}]
    day_zero = [n for n in notices if "date 0" in n]
    assert day_zero == [
        "cases.sav: 2 value(s) of dx (DATE11) are 0, SPSS's date 0 (1582-10-14): no date entered? (a date left "
        "empty and typed as 0, or computed from one); read as a date, it quarantines its record as a date before "
        '1900 (XT-DATE-NOT-BEFORE-1900) unless the mapping\'s null_values lists "1582-10-14"',
        "cases.sav: 1 value(s) of seen (DATETIME20) are 0, SPSS's date 0 (1582-10-14T00:00:00): no date entered? (a "
        "date left empty and typed as 0, or computed from one); read as a date, it quarantines its record as a date "
        'before 1900 (XT-DATE-NOT-BEFORE-1900) unless the mapping\'s null_values lists "1582-10-14T00:00:00"'
    ]  # at's 0: midnight


def test_a_portable_file_is_refused_saying_why_by_staging_and_by_rtw_profile(tmp_path: Path) -> None:
    """pyreadstat reads a .por, but as ASCII (Köln's ö comes out as replacement characters) and with its
    user-missing values emptied (read_por has no user_missing) and forgotten (missing_ranges is {}): refused,
    with the reasons, and `rtw profile` says them too (it called the file an unknown file type)."""
    from typer.testing import CliRunner

    from etl.cli import app

    path = tmp_path / "cases.por"
    pyreadstat.write_por(CASES[["pid", "sex", "status"]], str(path))  # it writes ASCII only
    why = (r"cases\.por: not an SPSS data file \(\.sav, \.zsav\): it is an SPSS portable file \(\.por\), which is not "
           r"read: its text is ASCII only \(a letter such as ë or ø comes out as a replacement character\) and "
           r"pyreadstat reads its user-missing values as empty, dropping which values the file declares missing \(a 9 "
           r"'unknown' would load as no value\); ask for the data saved as \.sav")
    with pytest.raises(ExtractError, match=why):
        _stage(path)
    with pytest.raises(ExtractError, match=why):
        read_spss_metadata(path)
    profiled = CliRunner().invoke(app, ["profile", str(path)], env={"COLUMNS": "400"})
    assert profiled.exit_code != 0
    assert "it is an SPSS portable file (.por), which is not read: its text is ASCII only" in profiled.output


@pytest.mark.parametrize("options", [{}, {"row_compress": True}, {"compress": True}],
                         ids=["uncompressed", "bytecode", "zlib"])
@pytest.mark.parametrize("kept", [0.02, 0.5, 0.999])
def test_a_cut_file_is_refused_and_leaves_no_artefact(tmp_path: Path, options: dict[str, bool], kept: float) -> None:
    big = pd.DataFrame({"pid": [f"NL-{i:05d}" for i in range(20_000)], "age": np.arange(20_000, dtype=float)})
    path = _sav(tmp_path, big, **options)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * kept)])
    staged = tmp_path / "staged"
    with pytest.raises(ExtractError, match=r"cases\.sav(, from observation [\d,]+ on)?: (unreadable (z?sav|sav "
                                           r"\(compressed\)) file|the file ends before the observations its header "
                                           r"declares) \(.*\); expected a complete SPSS .* \(truncated"):
        stage_spss(path, staged / "cases.parquet", lineage=LINEAGE, chunk_rows=3_000)
    assert list(staged.iterdir()) == []


def test_failure_keeps_an_earlier_artefact_intact(tmp_path: Path) -> None:
    good = _sav(tmp_path)
    out = tmp_path / "staged" / "cases.parquet"
    stage_spss(good, out, lineage=LINEAGE)
    before = out.read_bytes()
    bad = tmp_path / "bad.sav"
    bad.write_bytes(good.read_bytes()[:400])
    with pytest.raises(ExtractError):
        stage_spss(bad, out, lineage=LINEAGE)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["cases.parquet"]


def test_a_variable_named_like_a_reader_column_is_refused(tmp_path: Path) -> None:
    path = _sav(tmp_path, pd.DataFrame({"source_file": ["x"]}))
    with pytest.raises(ExtractError, match=r"variable\(s\) \['source_file'\] clash with the reader's own columns"):
        _stage(path)


def test_staged_schema_is_strings_line_and_lineage(tmp_path: Path) -> None:
    out = tmp_path / "cases.parquet"
    stage_spss(_sav(tmp_path), out, lineage=LINEAGE)
    schema = pq.read_schema(out)
    assert [str(t) for t in schema.types] == ["string"] * len(CASES.columns) + ["int64", "string", "string"]


def test_adapter_contract() -> None:
    assert ADAPTER.format == "spss" and ADAPTER.one_record_set_per_file and ADAPTER.typed_numbers
    assert set(ADAPTER.suffixes) == {".sav", ".zsav", ".por"}  # .por: refused, saying why
    assert ADAPTER.staged_name("ab" * 32) == "ab" * 32 + ".parquet"
    with pytest.raises(ValueError, match="delimiter"):
        SpssOptions.model_validate({"delimiter": ";"})
