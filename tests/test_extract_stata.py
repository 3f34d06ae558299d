"""The Stata adapter on small .dta files written here with pyreadstat (and pandas, which writes single-precision
floats): display formats of dates, extended missing values, value labels, the releases before and after UTF-8."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest

from etl.extract.errors import ExtractError
from etl.extract.readstat import numbers_as_text, singles_as_text
from etl.extract.stata import (
    ADAPTER,
    StataOptions,
    iter_stata_chunks,
    periods_as_text,
    read_stata_metadata,
    stage_stata,
    staged_stata_metadata,
    without_leap_seconds,
)
from etl.onboard.profile import profile_file
from etl.onboard.reading import read_file

LINEAGE = {"source_file": "cases.dta", "source_file_sha256": "0" * 64}

# Stata counts from 1960-01-01: %td in days, %tc in milliseconds.
MAY_3_2019 = 21672.0
MAY_3_2019_MS = (MAY_3_2019 * 86_400 + 10 * 3600 + 20 * 60 + 30) * 1000

CASES = pd.DataFrame({
    "pid": ["SE-001", "SE-002", "SE-003", "SE-004"],
    "sex": [1.0, 2.0, "a", np.nan],  # "a": the extended missing value .a
    "age": [3.0, 12.5, np.nan, 0.1 + 0.2],
    "dob": [MAY_3_2019, np.nan, 0.0, -1.0],
    "regdt": [MAY_3_2019_MS, np.nan, 250.0, 0.0],
    "regmon": [712.0, 713.0, np.nan, 0.0],  # %tm: months since 1960m1
    "city": ["Göteborg", "", "Malmö  ", "Umeå"],
})
FORMATS = {"dob": "%td", "regdt": "%tc", "regmon": "%tm"}
LABELS = {"pid": "Patient number", "sex": "Sex", "dob": "Date of birth"}
VALUE_LABELS = {"sex": {1: "male", 2: "female", "a": "not recorded"}}

EXPECTED = [
    {"pid": "SE-001", "sex": "1", "age": "3", "dob": "2019-05-03", "regdt": "2019-05-03T10:20:30", "regmon": "2019-05",
     "city": "Göteborg", "_line": 1},
    {"pid": "SE-002", "sex": "2", "age": "12.5", "dob": "", "regdt": "", "regmon": "2019-06", "city": "", "_line": 2},
    {"pid": "SE-003", "sex": ".a", "age": "", "dob": "1960-01-01", "regdt": "1960-01-01T00:00:00.250", "regmon": "",
     "city": "Malmö  ", "_line": 3},  # Stata does not pad strings: trailing blanks are the source's
    {"pid": "SE-004", "sex": "", "age": "0.3", "dob": "1959-12-31", "regdt": "1960-01-01T00:00:00", "regmon": "1960-01",
     "city": "Umeå", "_line": 4},
]


def _dta(tmp_path: Path, frame: pd.DataFrame = CASES, name: str = "cases.dta", *, version: int = 15,
         formats: dict[str, str] | None = None) -> Path:
    path = tmp_path / name
    if frame is CASES:
        pyreadstat.write_dta(frame, str(path), file_label="Registry cases", version=version, column_labels=LABELS,
                             variable_value_labels=VALUE_LABELS, missing_user_values={"sex": ["a"]},
                             variable_format=FORMATS)
        if version < 14:  # a release before 118 holds the code page's bytes; pyreadstat writes UTF-8's
            for text in ("Göteborg", "Malmö  ", "Umeå"):
                utf8, cp1252 = text.encode(), text.encode("cp1252")
                _with_bytes(path, utf8, cp1252 + bytes(len(utf8) - len(cp1252)))  # still NUL-terminated
    else:
        pyreadstat.write_dta(frame, str(path), version=version, variable_format=formats or {})
    return path


def _stage(path: Path, **options: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    out = path.parent / "staged" / "cases.parquet"
    result = ADAPTER.stage(path, out, StataOptions(**options), LINEAGE)
    (frame,) = ADAPTER.record_sets(out, "CASES").values()
    assert result.rows == len(frame)
    return frame, result.notices


@pytest.mark.parametrize(("version", "release"), [(15, 119), (14, 118), (13, 117), (12, 115)])
def test_dates_numbers_extended_missing_and_codes(tmp_path: Path, version: int, release: int) -> None:
    frame, notices = _stage(_dta(tmp_path, version=version))
    assert list(frame.columns) == [*CASES.columns, "_line", "source_file", "source_file_sha256"]
    assert frame.drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED
    assert frame["_line"].dtype == "int64" and all(frame[c].dtype == object for c in CASES.columns)
    encoding = ", encoding UTF-8" if release >= 118 else ""
    assert notices[0] == f"cases.dta: Stata dta {release}, a dataset 'Registry cases', 7 variables, 4 observations" \
                         f"{encoding}"
    if release < 118:
        assert notices[1].startswith(f"cases.dta: a dta {release} file does not say its encoding: text read as "
                                     "Windows-1252")
    assert "cases.dta: dates converted to ISO text: dob %td -> date, regdt %tc -> datetime, regmon %tm -> date " \
           "(month)" in notices
    assert ("cases.dta: value labels, not applied (the data keeps the codes; a mapping's codes: translate them): "
            "sex 1 'male', 2 'female', .a 'not recorded'") in notices
    assert ("cases.dta: 1 value(s) of sex are Stata special missing values (.a-.z), kept as written (.a): a mapping's "
            "codes: or null_values: say what they mean") in notices


DAY_ONLY_MS = MAY_3_2019 * 86_400_000


@pytest.mark.parametrize(("stata_format", "value", "expected", "temporal"), [
    ("%td", MAY_3_2019, "2019-05-03", "date"),
    ("%tdDD/NN/CCYY", MAY_3_2019, "2019-05-03", "date"),
    ("%tdMon_CCYY", MAY_3_2019, "2019-05", "date (month)"),
    ("%tdCCYY", MAY_3_2019, "2019", "date (year)"),
    ("%tdDayname", MAY_3_2019, "2019-05-03", "date"),  # a day of the week only: the date
    ("%-td", MAY_3_2019, "2019-05-03", "date"),
    ("%d", MAY_3_2019, "2019-05-03", "date"),  # Stata 9's days
    ("%tc", MAY_3_2019_MS, "2019-05-03T10:20:30", "datetime"),
    ("%tcDD/NN/CCYY_HH:MM:SS", MAY_3_2019_MS, "2019-05-03T10:20:30", "datetime"),
    ("%tcDD/NN/CCYY", MAY_3_2019_MS, "2019-05-03", "date of a datetime"),
    ("%tcMon_CCYY", MAY_3_2019_MS, "2019-05", "date (month) of a datetime"),
    ("%tcHH:MM", MAY_3_2019_MS, "2019-05-03T10:20:30", "datetime"),  # a clock only: the whole date-time
    ("%tC", MAY_3_2019_MS + 27_000, "2019-05-03T10:20:30", "datetime"),  # 27 leap seconds since 1972
    ("%tm", 712.0, "2019-05", "date (month)"),
    ("%tmCCYY-NN", -1.0, "1959-12", "date (month)"),
    ("%tq", 237.0, "2019", "date (year)"),  # 2019q2: the warehouse keeps years, months or days
    ("%th", 118.0, "2019", "date (year)"),
    ("%tw", 3077.0, "2019", "date (year)"),  # 2019w9
    ("%ty", 2019.0, "2019", "date (year)"),
    ("%tbmycal", 100.0, "100", None),  # a business calendar's days: not converted
    ("%9.2f", 3.5, "3.5", None),  # the display format's decimals are not applied
    ("%10.0g", 1e-7, "0.0000001", None),
])
def test_each_display_format(tmp_path: Path, stata_format: str, value: float, expected: str,
                             temporal: str | None) -> None:
    path = _dta(tmp_path, pd.DataFrame({"v": [value]}), formats={"v": stata_format})
    frame, _notices = _stage(path)
    assert frame["v"].tolist() == [expected]
    assert read_stata_metadata(path).variables["v"].temporal == temporal


def test_leap_seconds_are_taken_off_tC() -> None:
    tc = (np.datetime64("2016-12-31T23:59:59", "ms") - np.datetime64("1960-01-01", "ms")).astype(np.int64)
    before = tc + 26_000.0  # 23:59:59 on the %tC clock: 26 leap seconds before it
    values = np.array([0.0, before, before + 1000, before + 2000, np.nan])
    assert without_leap_seconds(values).tolist()[:4] == [0.0, tc, tc, tc + 1000]  # 23:59:60 is kept on its day
    assert np.isnan(without_leap_seconds(values)[4])


def test_periods_as_text() -> None:
    assert periods_as_text(np.array([712.0, -1.0, np.nan, 1e9]), 12)[0].tolist() == [
        "2019-05", "1959-12", "", "1000000000"]
    assert periods_as_text(np.array([1e9]), 12)[1] == 1
    assert periods_as_text(np.array([2019.0, 1.0]), 1)[0].tolist() == ["2019", "1"]


def test_single_precision_floats_are_the_numbers_delivered(tmp_path: Path) -> None:
    """pandas writes a float32 column as a Stata float; its double would print binary noise."""
    path = tmp_path / "cases.dta"
    pd.DataFrame({"lvef": np.array([64.1, 0.1, 1.0000001, 16_777_216.0, np.nan], dtype=np.float32),
                  "count": np.array([1, 2, 3, -4, 5], dtype=np.int32),
                  "small": np.array([1, 2, 3, 4, 5], dtype=np.int8)}).to_stata(path, write_index=False, version=118)
    assert read_stata_metadata(path).variables["lvef"].length == 4
    frame, _notices = _stage(path)
    assert frame["lvef"].tolist() == ["64.1", "0.1", "1.0000001", "16777216", ""]
    assert frame["count"].tolist() == ["1", "2", "3", "-4", "5"]
    assert frame["small"].tolist() == ["1", "2", "3", "4", "5"]
    assert singles_as_text(np.array([np.float32(0.1)], dtype=np.float64)).tolist() == ["0.1"]
    assert numbers_as_text(np.array([np.float32(0.1)], dtype=np.float64)).tolist() == ["0.100000001490116"]


def test_metadata_without_the_data_and_in_the_staged_file(tmp_path: Path) -> None:
    path = _dta(tmp_path)
    metadata = read_stata_metadata(path)
    assert (metadata.file_format, metadata.file_label, metadata.file_encoding, metadata.rows) == (
        "dta 119", "Registry cases", "UTF-8", 4)
    assert metadata.variables["dob"][:2] == ("Date of birth", "%td")
    assert metadata.codes == {"sex": {"1": "male", "2": "female", ".a": "not recorded"}}
    assert metadata.missing == {}  # Stata declares none: its .a-.z are counted when met
    out = tmp_path / "staged.parquet"
    stage_stata(path, out, lineage=LINEAGE)
    assert staged_stata_metadata(out) == metadata
    details = ADAPTER.describe(path)
    assert details.columns["sex"].codes == {"1": "male", "2": "female", ".a": "not recorded"}
    assert details.columns["dob"].label == "Date of birth" and details.columns["dob"].codes is None


def test_value_labels_of_a_date_are_written_as_its_dates(tmp_path: Path) -> None:
    """A %td's labelled sentinels (9999-12-31 'alive', -1 'unknown') are said as the staged data write them."""
    path = tmp_path / "deaths.dta"
    pyreadstat.write_dta(pd.DataFrame({"dod": [MAY_3_2019, 2936549.0, -1.0]}), str(path),
                         variable_format={"dod": "%td"},
                         variable_value_labels={"dod": {2936549: "alive", -1: "unknown"}})
    frame, notices = _stage(path)
    assert frame["dod"].tolist() == ["2019-05-03", "9999-12-31", "1959-12-31"]
    assert read_stata_metadata(path).codes == {"dod": {"1959-12-31": "unknown", "9999-12-31": "alive"}}
    assert ADAPTER.describe(path).columns["dod"].codes == {"1959-12-31": "unknown", "9999-12-31": "alive"}
    assert any(n.endswith("dod 1959-12-31 'unknown', 9999-12-31 'alive'") for n in notices)


@pytest.mark.parametrize("version", [15, 12])
@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4, 5])
def test_chunks_give_the_same_rows(tmp_path: Path, chunk_rows: int, version: int) -> None:
    path = _dta(tmp_path, version=version)
    out = tmp_path / "chunked.parquet"
    assert stage_stata(path, out, lineage=LINEAGE, chunk_rows=chunk_rows).rows == 4
    assert pd.read_parquet(out).drop(columns=list(LINEAGE)).to_dict("records") == EXPECTED
    firsts = [first for first, _frame, _metadata in iter_stata_chunks(path, chunk_rows=chunk_rows)]
    assert firsts == list(range(1, 5, chunk_rows))


def test_dataset_without_observations(tmp_path: Path) -> None:
    frame, notices = _stage(_dta(tmp_path, pd.DataFrame({"pid": pd.Series([], dtype=object)})))
    assert frame.empty and list(frame.columns) == ["pid", "_line", "source_file", "source_file_sha256"]
    assert notices[-1] == "cases.dta: no observations"


def test_dates_outside_the_calendar_stay_numbers(tmp_path: Path) -> None:
    frame, notices = _stage(_dta(tmp_path, pd.DataFrame({"dx": [MAY_3_2019, 1e9]}), formats={"dx": "%td"}))
    assert frame["dx"].tolist() == ["2019-05-03", "1000000000"]
    assert "cases.dta: 1 value(s) of dx (%td) are not dates between 1582 and 9999: kept as numbers" in notices


def _with_bytes(path: Path, old: bytes, new: bytes) -> Path:
    assert len(old) == len(new)
    path.write_bytes(path.read_bytes().replace(old, new))
    return path


def test_undecodable_text_names_the_variable_and_observation(tmp_path: Path) -> None:
    frame = pd.DataFrame({"pid": ["SE-1", "SE-2"], "city": ["Malmo", "Goteborg"]})
    path = _with_bytes(_dta(tmp_path, frame), b"Goteborg", b"G\xf6teborg")  # latin-1 in a UTF-8 release
    with pytest.raises(ExtractError, match=r"cases\.dta, observation 2, variable city: bytes b'\\xf6' at byte 2 of "
                                           r"the value are not UTF-8 \(the value is not shown: it may identify a "
                                           r"patient\); set the source's `options: encoding:`") as refused:
        _stage(path)
    assert "teborg" not in str(refused.value)
    assert list((tmp_path / "staged").iterdir()) == []
    staged, _notices = _stage(path, encoding="latin1")
    assert staged["city"].tolist() == ["Malmo", "Göteborg"]


def test_an_old_release_is_read_as_windows_1252(tmp_path: Path) -> None:
    frame = pd.DataFrame({"pid": ["SE-1", "SE-2"], "city": ["Malmo", "Goteborg"]})
    path = _with_bytes(_dta(tmp_path, frame, version=13), b"Goteborg", b"G\xf6teborg")
    staged, notices = _stage(path)
    assert staged["city"].tolist() == ["Malmo", "Göteborg"]
    assert "cases.dta: a dta 117 file does not say its encoding: text read as Windows-1252" in notices[1]
    _with_bytes(path, b"G\xf6teborg", b"G\x81teborg")  # a byte Windows-1252 leaves undefined
    with pytest.raises(ExtractError, match=r"observation 2, variable city: bytes b'\\x81' at byte 2 of the value "
                                           r"are not WINDOWS-1252") as refused:
        _stage(path)
    assert "teborg" not in str(refused.value)


def test_an_old_release_holding_utf8_is_said_to_be_utf8_and_its_value_not_shown(tmp_path: Path) -> None:
    """A release 117 file written by a program in UTF-8: Windows-1252 leaves the second byte of 'Ł' undefined.
    The name is never in the message (it is logged and kept in the warehouse's meta tables)."""
    frame = pd.DataFrame({"pid": ["PL-1", "PL-2"], "note": ["", "matka: Zofia Łukasiewicz"]})
    with pytest.raises(ExtractError, match=r"observation 2, variable note: bytes b'\\x81' at byte 15 of the value are "
                                           r"not WINDOWS-1252 .*; the value reads as UTF-8: set the source's "
                                           r"`options: encoding: utf-8`") as refused:
        _stage(_dta(tmp_path, frame, version=13))
    assert "Zofia" not in str(refused.value) and "asiewicz" not in str(refused.value)
    staged, _notices = _stage(_dta(tmp_path, frame, version=13), encoding="utf-8")
    assert staged["note"].tolist() == ["", "matka: Zofia Łukasiewicz"]


def test_profile_and_scaffold_read_the_labels_in_the_encoding_given(tmp_path: Path) -> None:
    """An old release written on a Mac: `rtw profile --option encoding=macintosh` (and scaffold) read the
    labels and value labels with the encoding given, as the data are staged, not as Windows-1252."""
    frame = pd.DataFrame({"sex": [1.0, 2.0], "city": ["Malmo", "Goteborg"]})
    path = tmp_path / "cases.dta"
    pyreadstat.write_dta(frame, str(path), version=12, column_labels={"sex": "Geschlecht Größe"},
                         variable_value_labels={"sex": {1: "männlich", 2: "weiblich"}})
    for text in ("Geschlecht Größe", "männlich"):  # as Stata on a Mac wrote them (NUL-terminated)
        utf8, mac = text.encode(), text.encode("macintosh")
        _with_bytes(path, utf8, mac + bytes(len(utf8) - len(mac)))
    read = read_file(path, ADAPTER, options=StataOptions(encoding="macintosh"))
    assert read.details.columns["sex"].label == "Geschlecht Größe"
    assert read.details.columns["sex"].codes == {"1": "männlich", "2": "weiblich"}
    assert profile_file(read).record_sets[0].columns[0].label == "Geschlecht Größe"


def test_unknown_encoding_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"cases\.dta: text cannot be decoded as no-such-encoding"):
        _stage(_dta(tmp_path, version=13), encoding="no-such-encoding")


@pytest.mark.parametrize(("content", "name", "expected"), [
    (b"pid,sex\nSE-001,1\n", "cases.dta", r"cases\.dta: not a Stata dataset \(\.dta\): it is plain text \(a "
                                          r"CSV or tab-separated file named like a dataset\?\); "
                                          r"expected '<stata_dta>'"),
    (b"PK\x03\x04" + bytes(60), "cases.dta", r"not a Stata dataset \(\.dta\): its first bytes are those of a zip"),
    (b"", "cases.dta", r"cases\.dta: not a Stata dataset \(\.dta\): the file is empty"),
    (b"$FL2@(#) SPSS DATA FILE" + bytes(200), "cases.dta", r"its first bytes are those of an SPSS data file \(\.sav\)"),
])
def test_not_a_stata_file(tmp_path: Path, content: bytes, name: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ExtractError, match=expected):
        _stage(path)
    with pytest.raises(ExtractError, match=expected):
        read_stata_metadata(path)


@pytest.mark.parametrize(("version", "release"), [(8, 113), (10, 114), (12, 115), (13, 117), (14, 118), (15, 119)])
def test_every_release_pyreadstat_writes_loads(tmp_path: Path, version: int, release: int) -> None:
    frame, notices = _stage(_dta(tmp_path, pd.DataFrame({"pid": ["SE-001", "SE-002"], "dob": [MAY_3_2019, 0.0]}),
                                 version=version, formats={"dob": "%td"}))
    assert notices[0].startswith(f"cases.dta: Stata dta {release}, a dataset, 2 variables, 2 observations")
    assert frame[["pid", "dob"]].to_dict("records") == [{"pid": "SE-001", "dob": "2019-05-03"},
                                                        {"pid": "SE-002", "dob": "1960-01-01"}]
    assert not [n for n in notices if "day 0" in n]  # Stata's 1960-01-01 may be a patient's date: not questioned


@pytest.mark.parametrize("release", [120, 121, 116])
def test_a_release_readstat_cannot_read_is_refused_with_what_to_ask_for(tmp_path: Path, release: int) -> None:
    """Stata 18's releases 120 and 121 (118 and 119 with alias variables) were reported as a damaged file
    (readstat: 'not supported')."""
    path = _with_bytes(_dta(tmp_path), b"<release>119</release>", f"<release>{release}</release>".encode())
    why = ", the release Stata 18 and later write for a dataset holding alias variables \\(frames\\)" \
        if release in (120, 121) else ""
    expected = (rf"cases\.dta: a Stata dta {release} file{why}, which this reader \(pyreadstat\) cannot read; expected "
                r"release 104-119: ask for the dataset saved as release 118 \(in Stata: `saveold \"file\.dta\", "
                r"version\(14\)`\), or 119 for more than 32,767 variables")
    with pytest.raises(ExtractError, match=expected):
        _stage(path)
    with pytest.raises(ExtractError, match=expected):
        read_stata_metadata(path)
    assert list((tmp_path / "staged").iterdir()) == []


@pytest.mark.parametrize("version", [15, 13, 12])
@pytest.mark.parametrize("kept", [0.02, 0.5, 0.999])
def test_a_cut_file_is_refused_and_leaves_no_artefact(tmp_path: Path, version: int, kept: float) -> None:
    big = pd.DataFrame({"pid": [f"SE-{i:05d}" for i in range(20_000)], "age": np.arange(20_000, dtype=float)})
    path = _dta(tmp_path, big, version=version)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * kept)])
    staged = tmp_path / "staged"
    with pytest.raises(ExtractError, match=rf"cases\.dta: {int(len(data) * kept):,} bytes, where the file's header and "
                                           rf"sections end at byte {len(data):,}; expected the complete file"):
        stage_stata(path, staged / "cases.parquet", lineage=LINEAGE, chunk_rows=3_000)
    assert list(staged.iterdir()) == []


@pytest.mark.parametrize("version", [15, 13, 12, 8])
@pytest.mark.parametrize("cut", [1, 12, 40])
def test_a_file_cut_in_its_value_labels_is_refused(tmp_path: Path, version: int, cut: int) -> None:
    """The value labels come after the observations: readstat read every observation of a file cut there and
    dropped the labels quietly (release 117+ even without its closing tag)."""
    path = _dta(tmp_path, version=version)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(ExtractError, match=rf"cases\.dta: {len(data) - cut:,} bytes, where the file's header and "
                                           rf"sections end at byte {len(data):,}; expected the complete file"):
        _stage(path)
    assert list((tmp_path / "staged").iterdir()) == []


@pytest.mark.parametrize("version", [15, 13])
def test_a_dataset_label_naming_the_map_is_read(tmp_path: Path, version: int) -> None:
    """The map is found after the header's label, stepped over by its length, not by searching for it."""
    path = tmp_path / "cases.dta"
    pyreadstat.write_dta(pd.DataFrame({"a": [1.0]}), str(path), version=version, file_label="</header><map>" + "ł" * 30)
    assert _stage(path)[0]["a"].tolist() == ["1"]


@pytest.mark.parametrize("declared", [2, 3])
def test_an_old_release_declaring_fewer_observations_than_it_holds_is_refused(tmp_path: Path, declared: int) -> None:
    """Release 115's header says 4 observations are 2 or 3: readstat read those and took the rest for value labels."""
    path = _dta(tmp_path, version=12)
    data = bytearray(path.read_bytes())
    data[6:10] = declared.to_bytes(4, "little")  # nobs, after release, byte order (2: LOHI), type, nvar
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"cases\.dta: [\d,]+ bytes, where the file's header and sections end at"):
        _stage(path)


def test_a_variable_named_like_a_reader_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match=r"variable\(s\) \['_line'\] clash with the reader's own columns"):
        _stage(_dta(tmp_path, pd.DataFrame({"_line": [1.0]})))


def test_staged_schema_is_strings_line_and_lineage(tmp_path: Path) -> None:
    out = tmp_path / "cases.parquet"
    stage_stata(_dta(tmp_path), out, lineage=LINEAGE)
    assert [str(t) for t in pq.read_schema(out).types] == ["string"] * len(CASES.columns) + ["int64", "string",
                                                                                               "string"]


def test_adapter_contract() -> None:
    assert ADAPTER.format == "stata" and ADAPTER.one_record_set_per_file and ADAPTER.typed_numbers
    assert ADAPTER.suffixes == (".dta",)
    with pytest.raises(ValueError, match="delimiter"):
        StataOptions.model_validate({"delimiter": ";"})


def test_dates_as_pyreadstat_reads_them(tmp_path: Path) -> None:
    """The conversion agrees with pyreadstat's own, where pyreadstat has one (%td, %tc)."""
    frame = pd.DataFrame({"d": [float(n) for n in range(-3000, 30000, 997)],
                          "c": [n * 86_400_000.0 + 12_345 for n in range(-3000, 30000, 997)]})
    path = _dta(tmp_path, frame, formats={"d": "%td", "c": "%tc"})
    ours, _notices = _stage(path)
    theirs, _meta = pyreadstat.read_dta(str(path))
    assert ours["d"].tolist() == [d.isoformat() for d in theirs["d"]]
    assert ours["c"].tolist() == [t.isoformat(timespec="milliseconds") for t in theirs["c"]]
    assert isinstance(theirs["d"][0], dt.date)


def test_a_date_of_0_is_said_to_be_stata_date_0(tmp_path: Path) -> None:
    """Stata's date 0 is 1960-01-01 (1960m1 of a month): a 0 in a date is most often a date left empty and typed
    as 0, which loaded unsaid as 1 January 1960. A %ty 0 is the year 0, no date: kept as a number, said so."""
    frame = pd.DataFrame({"dx": [0.0, 21672.0], "seen": [1.0, 0.0], "mon": [0.0, 0.0], "yr": [0.0, 2019.0]})
    staged, notices = _stage(_dta(tmp_path, frame, formats={"dx": "%td", "seen": "%tc", "mon": "%tm", "yr": "%ty"}))
    assert staged[["dx", "mon", "yr"]].to_dict("list") == {"dx": ["1960-01-01", "2019-05-03"],
                                                          "mon": ["1960-01", "1960-01"], "yr": ["0", "2019"]}
    assert [n for n in notices if "date 0" in n] == [
        "cases.dta: 1 value(s) of dx (%td) are 0, Stata's date 0 (1960-01-01): no date entered? (a date left empty "
        'and typed as 0, or computed from one); read as a date, it loads as 1960-01-01 unless the mapping\'s '
        'null_values lists "1960-01-01"',
        "cases.dta: 1 value(s) of seen (%tc) are 0, Stata's date 0 (1960-01-01T00:00:00): no date entered? (a date "
        "left empty and typed as 0, or computed from one); read as a date, it loads as 1960-01-01 unless the "
        'mapping\'s null_values lists "1960-01-01T00:00:00"',
        "cases.dta: 2 value(s) of mon (%tm) are 0, Stata's date 0 (1960-01): no date entered? (a date left empty "
        'and typed as 0, or computed from one); read as a date, it loads as 1960-01 unless the mapping\'s '
        'null_values lists "1960-01"']
