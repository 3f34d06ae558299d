"""The SAS adapter on small XPORT and sas7bdat files written here with pyreadstat, shaped like SDTM domains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from etl.extract.errors import ExtractError
from etl.extract.sas import (
    ADAPTER,
    SasMetadata,
    SasOptions,
    SasVariable,
    iter_sas_chunks,
    numbers_as_text,
    read_sas_metadata,
    stage_sas,
    staged_sas_metadata,
    temporal_as_text,
)

LINEAGE = {"source_file": "dm.xpt", "source_file_sha256": "0" * 64}

# SAS dates count days from 1960-01-01, datetimes seconds from 1960-01-01T00:00:00.
MAY_3_2019 = 21672.0
MAY_3_2019_10_20_30 = MAY_3_2019 * 86_400 + 10 * 3600 + 20 * 60 + 30

DM = pd.DataFrame({
    "USUBJID": ["ESM-001", "ESM-002", "ESM-003", "ESM-004"],
    "AGE": [3.0, 12.0, np.nan, 1.5],
    "BRTHDT": [MAY_3_2019, np.nan, 0.0, -1.0],
    "RFSTDTM": [MAY_3_2019_10_20_30, np.nan, 0.0, 0.25],
    "RFSTTM": [3600.0, 90_000.0, np.nan, 59.0],
    "DIAGMON": [MAY_3_2019, MAY_3_2019, np.nan, 0.0],
    "DIAGYR": [MAY_3_2019, np.nan, np.nan, np.nan],
    "ISODT": [MAY_3_2019, np.nan, np.nan, np.nan],
    "RFSTDTC": ["2019-05", "2019", "2019-05-03T10:20", ""],
    "SEX": ["M", "F", "", "U"],
})
DM_FORMATS = {"AGE": "8.1", "BRTHDT": "DATE9.", "RFSTDTM": "DATETIME20.", "RFSTTM": "TIME8.", "DIAGMON": "MONYY7.",
              "DIAGYR": "YEAR4.", "ISODT": "E8601DA10.", "SEX": "$SEXF."}
DM_LABELS = {"USUBJID": "Unique Subject Identifier", "AGE": "Age", "BRTHDT": "Date of Birth",
             "RFSTDTC": "Subject Reference Start Date/Time"}


def _xpt(tmp_path: Path, frame: pd.DataFrame = DM, name: str = "dm.xpt", *, version: int = 5,
         formats: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> Path:
    path = tmp_path / name
    pyreadstat.write_xport(frame, str(path), file_label="Demographics", table_name="DM", file_format_version=version,
                           column_labels=DM_LABELS if labels is None else labels,
                           variable_format=DM_FORMATS if formats is None else formats)
    return path


def _stage(path: Path, **options: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    out = path.parent / "staged" / "dm.parquet"
    result = ADAPTER.stage(path, out, SasOptions(**options), LINEAGE)
    (frame,) = ADAPTER.record_sets(out, "DM").values()
    assert result.rows == len(frame)
    return frame, result.notices


EXPECTED_DM = [
    {"USUBJID": "ESM-001", "AGE": "3", "BRTHDT": "2019-05-03", "RFSTDTM": "2019-05-03T10:20:30", "RFSTTM": "01:00:00",
     "DIAGMON": "2019-05", "DIAGYR": "2019", "ISODT": "2019-05-03", "RFSTDTC": "2019-05", "SEX": "M", "_line": 1},
    {"USUBJID": "ESM-002", "AGE": "12", "BRTHDT": "", "RFSTDTM": "", "RFSTTM": "25:00:00",
     "DIAGMON": "2019-05", "DIAGYR": "", "ISODT": "", "RFSTDTC": "2019", "SEX": "F", "_line": 2},
    {"USUBJID": "ESM-003", "AGE": "", "BRTHDT": "1960-01-01", "RFSTDTM": "1960-01-01T00:00:00", "RFSTTM": "",
     "DIAGMON": "", "DIAGYR": "", "ISODT": "", "RFSTDTC": "2019-05-03T10:20", "SEX": "", "_line": 3},
    {"USUBJID": "ESM-004", "AGE": "1.5", "BRTHDT": "1959-12-31", "RFSTDTM": "1960-01-01T00:00:00.250",
     "RFSTTM": "00:00:59", "DIAGMON": "1960-01", "DIAGYR": "", "ISODT": "", "RFSTDTC": "", "SEX": "U", "_line": 4},
]


@pytest.mark.parametrize("version", [5, 8])
def test_xport_dates_numbers_and_partial_dtc(tmp_path: Path, version: int) -> None:
    frame, notices = _stage(_xpt(tmp_path, version=version))
    assert list(frame.columns) == [*DM.columns, "_line", "source_file", "source_file_sha256"]
    assert frame.drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED_DM
    assert (frame["source_file"] == "dm.xpt").all()
    assert frame["_line"].dtype == "int64"
    assert all(frame[c].dtype == object for c in DM.columns)
    assert notices[0] == f"dm.xpt: SAS XPORT v{version}, dataset DM 'Demographics', 10 variables, 4 observations"
    assert "BRTHDT DATE9. -> date" in notices[1] and "DIAGMON MONYY7. -> date (month)" in notices[1]
    assert "RFSTTM TIME8. -> time" in notices[1] and "SEX" not in notices[1]
    assert "USUBJID 'Unique Subject Identifier'" in notices[2] and "SEX $SEXF" in notices[2]
    assert not [n for n in notices if "day 0" in n]  # SAS's 1960-01-01 may be a patient's date: not questioned


def test_sas7bdat_reads_like_xport(tmp_path: Path) -> None:
    path = tmp_path / "dm.sas7bdat"
    pyreadstat.write_sas7bdat(DM, str(path), column_labels=DM_LABELS, variable_format=DM_FORMATS)
    frame, notices = _stage(path)
    assert frame.drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED_DM
    assert notices[0].startswith("dm.sas7bdat: SAS sas7bdat, dataset ")
    assert "encoding UTF-8" in notices[0]


def test_labels_and_formats_without_the_data_and_in_the_staged_file(tmp_path: Path) -> None:
    path = _xpt(tmp_path)
    metadata = read_sas_metadata(path)
    assert (metadata.table_name, metadata.file_label, metadata.file_format) == ("DM", "Demographics", "XPORT v5")
    assert metadata.variables["BRTHDT"][:2] == ("Date of Birth", "DATE9.")
    assert metadata.variables["BRTHDT"].temporal == "date"
    assert metadata.variables["USUBJID"].type == "character"
    assert metadata.column_labels["AGE"] == "Age"
    assert metadata.column_formats["AGE"] == "8.1"
    assert metadata.column_labels["SEX"] is None

    out = tmp_path / "staged.parquet"
    stage_sas(path, out, lineage=LINEAGE)
    staged = staged_sas_metadata(out)
    assert staged is not None
    assert staged.variables == metadata.variables
    assert staged.rows is None  # XPORT does not say; the notices count them
    assert staged_sas_metadata(_csv_parquet(tmp_path)) is None


def _csv_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "other.parquet"
    pd.DataFrame({"a": ["1"]}).to_parquet(path)
    return path


@pytest.mark.parametrize("kind", ["xpt5", "xpt8", "sas7bdat"])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 5])
def test_chunks_give_the_same_rows(tmp_path: Path, chunk_rows: int, kind: str) -> None:
    if kind == "sas7bdat":
        path = tmp_path / "dm.sas7bdat"
        pyreadstat.write_sas7bdat(DM, str(path), column_labels=DM_LABELS, variable_format=DM_FORMATS)
    else:
        path = _xpt(tmp_path, version=int(kind[-1]))
    out = tmp_path / "chunked.parquet"
    result = stage_sas(path, out, lineage=LINEAGE, chunk_rows=chunk_rows)
    assert result.rows == 4
    assert pd.read_parquet(out).drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED_DM
    firsts = [first for first, _frame, _metadata in iter_sas_chunks(path, chunk_rows=chunk_rows)]
    # XPORT v5 does not say how many observations it holds: a full last chunk is followed by an empty one.
    empty_last = [5] if 4 % chunk_rows == 0 and kind == "xpt5" else []
    assert firsts == list(range(1, 5, chunk_rows)) + empty_last


def test_dataset_without_observations(tmp_path: Path) -> None:
    frame, notices = _stage(_xpt(tmp_path, DM.iloc[:0]))
    assert frame.empty
    assert list(frame.columns) == [*DM.columns, "_line", "source_file", "source_file_sha256"]
    assert notices[-1] == "dm.xpt: no observations"


def test_dates_outside_the_calendar_stay_numbers(tmp_path: Path) -> None:
    frame = pd.DataFrame({"AESTDT": [MAY_3_2019, 1e9]})
    staged, notices = _stage(_xpt(tmp_path, frame, formats={"AESTDT": "DATE9."}, labels={}))
    assert staged["AESTDT"].tolist() == ["2019-05-03", "1000000000"]
    assert "dm.xpt: 1 value(s) of AESTDT (DATE9.) are not dates between 1582 and 9999: kept as numbers" in notices


def test_numbers_as_text() -> None:
    values = np.array([3.0, -0.0, 0.1 + 0.2, 1e-7, 123456.789, np.nan, 2.0**60, -42.0])
    assert numbers_as_text(values).tolist() == [
        "3", "0", "0.3", "0.0000001", "123456.789", "", "1152921504606850000", "-42"]
    # A LENGTH 4 variable keeps about 6 significant digits: the rest is storage noise.
    assert numbers_as_text(np.array([0.099999964237213, 8192.0]), length=4).tolist() == ["0.1", "8192"]


def test_temporal_as_text() -> None:
    days = np.array([MAY_3_2019, np.nan, -1e9])
    assert temporal_as_text(days, "date", "D")[0].tolist() == ["2019-05-03", "", "-1000000000"]
    assert temporal_as_text(days, "date", "D")[1] == 1
    seconds = np.array([MAY_3_2019_10_20_30])
    assert temporal_as_text(seconds, "datetime", "D")[0].tolist() == ["2019-05-03"]  # DTDATE9.
    assert temporal_as_text(seconds, "datetime", "M")[0].tolist() == ["2019-05"]  # DTMONYY7.
    assert temporal_as_text(np.array([-1.0, 0.5]), "time", "s")[0].tolist() == ["-00:00:01", "00:00:00.5"]


def test_undecodable_text_names_the_variable_and_observation(tmp_path: Path) -> None:
    frame = pd.DataFrame({"USUBJID": ["ESM-001", "ESM-002"], "SITE": ["Koln", "Munchen"]})
    path = _xpt(tmp_path, frame, formats={}, labels={})
    path.write_bytes(path.read_bytes().replace(b"Munchen", b"M\xfcnchen"))
    with pytest.raises(ExtractError, match=r"dm\.xpt, observation 2, variable SITE: bytes b'\\xfc' at byte 2 of the "
                                           r"value are not UTF-8 \(the value is not shown: it may identify a "
                                           r"patient\); set the source's `options: encoding:`") as refused:
        _stage(path)
    assert "nchen" not in str(refused.value)
    assert not (tmp_path / "staged" / "dm.parquet").exists()
    staged, _notices = _stage(path, encoding="latin1")
    assert staged["SITE"].tolist() == ["Koln", "München"]


def test_unknown_encoding_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="expected a valid `options: encoding:`"):
        _stage(_xpt(tmp_path), encoding="no-such-encoding")


@pytest.mark.parametrize(("content", "name", "expected"), [
    (b"USUBJID,AGE\nESM-001,3\n", "dm.xpt",
     r"dm\.xpt: not a SAS transport file \(\.xpt\): it is plain text \(a CSV or tab-separated file named like a "
     r"dataset\?\); expected 'HEADER RECORD"),
    (b"PK\x03\x04" + bytes(60), "dm.xpt", r"not a SAS transport file \(\.xpt\): its first bytes are those of a zip"),
    (b"", "dm.sas7bdat", r"dm\.sas7bdat: not a SAS dataset \(\.xpt or \.sas7bdat\): the file is empty"),
    (b"**COMPRESSED** **COMPRESSED** **COMPRESSED** **COMPRESSED** **COMPRESSED********", "dm.xpt",
     r"a SAS CPORT file \(PROC CPORT\), which only SAS reads; ask for the dataset written with the XPORT engine"),
])
def test_not_a_sas_file(tmp_path: Path, content: bytes, name: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ExtractError, match=expected):
        _stage(path)
    with pytest.raises(ExtractError, match=expected):
        read_sas_metadata(path)


def test_truncated_file_leaves_no_artefact(tmp_path: Path) -> None:
    big = pd.DataFrame({"USUBJID": [f"ESM-{i:04d}" for i in range(500)], "AGE": np.arange(500, dtype=float)})
    path = _xpt(tmp_path, big, formats={}, labels={})
    path.write_bytes(path.read_bytes()[:5000])
    staged_dir = tmp_path / "staged"
    with pytest.raises(ExtractError, match=r"dm\.xpt: truncated: 5000 bytes is not a whole number of the 80-byte"):
        stage_sas(path, staged_dir / "dm.parquet", lineage=LINEAGE, chunk_rows=10)
    assert list(staged_dir.iterdir()) == []


def test_a_file_cut_at_a_record_inside_an_observation_is_refused_and_its_padding_is_not(tmp_path: Path) -> None:
    # 73-byte observations (USUBJID $65 and a number): a cut at an 80-byte record splits one.
    big = pd.DataFrame({"USUBJID": [f"ESM-{i:04d}".ljust(65, "x") for i in range(77)], "AGE": np.arange(77.0)})
    path = _xpt(tmp_path, big, formats={}, labels={})
    whole = path.read_bytes()
    assert stage_sas(path, tmp_path / "whole.parquet", lineage=LINEAGE).rows == 77  # blank padding is no cut
    path.write_bytes(whole[:len(whole) - 80])
    with pytest.raises(ExtractError, match=r"dm\.xpt: truncated: observation \d+ is cut short after \d+ of its 73 "):
        stage_sas(path, tmp_path / "cut.parquet", lineage=LINEAGE)


def test_failure_keeps_an_earlier_artefact_intact(tmp_path: Path) -> None:
    good = _xpt(tmp_path)
    out = tmp_path / "staged" / "dm.parquet"
    stage_sas(good, out, lineage=LINEAGE)
    before = out.read_bytes()
    bad = tmp_path / "bad.xpt"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ExtractError):
        stage_sas(bad, out, lineage=LINEAGE)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["dm.parquet"]


def test_xport_library_of_several_datasets_is_refused(tmp_path: Path) -> None:
    data = _xpt(tmp_path).read_bytes()
    library_header = 3 * 80  # LIBRARY header, then the first MEMBER header
    (tmp_path / "lib.xpt").write_bytes(data + data[library_header:])
    with pytest.raises(ExtractError, match=r"lib\.xpt: an XPORT library of 2 datasets; expected one dataset"):
        _stage(tmp_path / "lib.xpt")


def test_a_variable_named_like_a_reader_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dm.sas7bdat"
    pyreadstat.write_sas7bdat(pd.DataFrame({"_line": [1.0]}), str(path))
    with pytest.raises(ExtractError, match=r"variable\(s\) \['_line'\] clash with the reader's own columns"):
        _stage(path)


def test_adapter_contract() -> None:
    assert ADAPTER.format == "sas"
    assert ADAPTER.one_record_set_per_file
    assert set(ADAPTER.suffixes) == {".xpt", ".sas7bdat"}
    assert ADAPTER.staged_name("ab" * 32) == "ab" * 32 + ".parquet"
    with pytest.raises(ValueError, match="delimiter"):
        SasOptions.model_validate({"delimiter": ";"})


def test_staged_schema_is_strings_line_and_lineage(tmp_path: Path) -> None:
    out = tmp_path / "dm.parquet"
    stage_sas(_xpt(tmp_path), out, lineage=LINEAGE)
    schema = pq.read_schema(out)
    assert [str(t) for t in schema.types] == ["string"] * len(DM.columns) + ["int64", "string", "string"]


def test_truncated_sas7bdat_is_refused(tmp_path: Path) -> None:
    big = pd.DataFrame({"USUBJID": [f"ESM-{i:04d}" for i in range(20_000)], "AGE": np.arange(20_000, dtype=float)})
    path = tmp_path / "dm.sas7bdat"
    pyreadstat.write_sas7bdat(big, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ExtractError, match=r"dm\.sas7bdat: .*(truncated|damaged)"):
        stage_sas(path, tmp_path / "staged" / "dm.parquet", lineage=LINEAGE, chunk_rows=5_000)
    assert list((tmp_path / "staged").iterdir()) == []


@pytest.mark.parametrize("version", [5, 8])
def test_short_observations_and_the_padding_after_them(tmp_path: Path, version: int) -> None:
    """XPORT pads the last 80-byte record with blanks; chunks read through a window must not see extra rows."""
    frame = pd.DataFrame({"SEX": ["M", "F", "", "U", "F"], "AGE": [1.0, np.nan, 3.0, 4.0, 5.0]})
    path = _xpt(tmp_path, frame, version=version, formats={}, labels={})
    for chunk_rows in (1, 2, 4, 5, 6):
        out = tmp_path / f"chunked-{chunk_rows}.parquet"
        assert stage_sas(path, out, lineage=LINEAGE, chunk_rows=chunk_rows).rows == 5
        staged = pd.read_parquet(out)
        assert staged["SEX"].tolist() == ["M", "F", "", "U", "F"]
        assert staged["AGE"].tolist() == ["1", "", "3", "4", "5"]
        assert staged["_line"].tolist() == [1, 2, 3, 4, 5]


def test_notices_name_a_dozen_labels_and_count_the_rest() -> None:
    variables = {f"VAR{i:02d}": SasVariable(f"Label {i}", None, "character", 8) for i in range(15)}
    metadata = SasMetadata("XPORT v5", "LB", "Laboratory", None, variables, 3)
    summary, labels = metadata.describe()
    assert summary == "SAS XPORT v5, dataset LB 'Laboratory', 15 variables, 3 observations"
    assert labels.startswith("labels and formats: VAR00 'Label 0'; VAR01 'Label 1';")
    assert "VAR11 'Label 11'; and 3 more (the staged file's metadata has all)" in labels
    assert "VAR12" not in labels


def test_a_date_of_0_is_said_to_be_sas_date_0(tmp_path: Path) -> None:
    """SAS's date 0 is 1960-01-01, no date of a child of the warehouse: a 0 in a date is most often a date left
    empty and typed as 0. It was staged unsaid, and loaded as 1 January 1960 (SPSS's date 0 had a notice)."""
    frame = pd.DataFrame({"USUBJID": ["ESM-001", "ESM-002"], "DXDT": [0.0, 21672.0], "DXDTM": [0.0, 1.0],
                          "DXTM": [0.0, 0.0]})
    staged, notices = _stage(_xpt(tmp_path, frame, formats={"DXDT": "DATE9.", "DXDTM": "DATETIME20.",
                                                            "DXTM": "TIME8."}, labels={}))
    assert staged["DXDT"].tolist() == ["1960-01-01", "2019-05-03"]
    assert [n for n in notices if "date 0" in n] == [
        "dm.xpt: 1 value(s) of DXDT (DATE9.) are 0, SAS's date 0 (1960-01-01): no date entered? (a date left empty "
        'and typed as 0, or computed from one); read as a date, it loads as 1960-01-01 unless the mapping\'s '
        'null_values lists "1960-01-01"',
        "dm.xpt: 1 value(s) of DXDTM (DATETIME20.) are 0, SAS's date 0 (1960-01-01T00:00:00): no date entered? (a "
        "date left empty and typed as 0, or computed from one); read as a date, it loads as 1960-01-01 unless the "
        'mapping\'s null_values lists "1960-01-01T00:00:00"']  # DXTM's 0: midnight
