"""SAS, SPSS and Stata files as a broken delivery brings them, written here with pyreadstat and then cut or
patched: each is refused naming the file, and the observation where it says one, never a chunk of the reader;
nothing of a refused file is staged."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import reads_apart

from etl.extract import spss
from etl.extract.adapter import StageResult
from etl.extract.errors import ExtractError
from etl.extract.isolated import read_apart
from etl.extract.sas import ADAPTER as SAS
from etl.extract.sas import read_sas_metadata, stage_sas
from etl.extract.spss import ADAPTER as SPSS
from etl.extract.spss import read_spss_metadata, stage_spss
from etl.extract.stata import stage_stata, staged_stata_metadata
from etl.fsio import TEMP_SUFFIX

LINEAGE = {"source_file": "cases", "source_file_sha256": "0" * 64}
CASES = pd.DataFrame({"pid": [f"NL-{i:05d}" for i in range(50)], "age": np.arange(50, dtype=float)})


def _refused(stage: Callable[..., StageResult], path: Path, **options: object) -> str:
    staged = path.parent / "staged"
    with pytest.raises(ExtractError) as refused:
        stage(path, staged / "cases.parquet", lineage=LINEAGE, **options)
    assert not staged.exists() or list(staged.iterdir()) == []
    return str(refused.value)


def _patched(path: Path, at: int, new: bytes) -> Path:
    data = bytearray(path.read_bytes())
    data[at:at + len(new)] = new
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("options", [{}, {"row_compress": True}], ids=["uncompressed", "bytecode"])
def test_a_file_of_one_chunk_declaring_more_cases_than_it_holds_is_refused_as_a_whole(
        tmp_path: Path, options: dict[str, bool]) -> None:
    """The refusal said 'cases.sav, observations 1-166666': the reader's chunk, in a file of 50 cases."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(CASES, str(path), **options)
    message = _refused(stage_spss, _patched(path, 80, struct.pack("<i", 60)))
    assert message.startswith("cases.sav: the file ends before the observations its header declares (")
    assert "observations 1-" not in message


def test_a_stata_file_of_one_chunk_is_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "cases.dta"
    pyreadstat.write_dta(CASES, str(path))
    data = path.read_bytes()
    message = _refused(stage_stata, _patched(path, data.find(b"<N>") + 3, struct.pack("<Q", 60)))
    assert message.startswith("cases.dta: unreadable dta ")
    assert "observations 1-" not in message


@pytest.mark.parametrize("kind", ["sav", "sas7bdat"])
def test_a_cut_file_of_several_chunks_names_the_observation_it_could_not_read_from(tmp_path: Path, kind: str) -> None:
    big = pd.DataFrame({"pid": [f"NL-{i:05d}" for i in range(20_000)], "age": np.arange(20_000, dtype=float)})
    path = tmp_path / f"cases.{kind}"
    (pyreadstat.write_sav if kind == "sav" else pyreadstat.write_sas7bdat)(big, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    message = _refused(stage_spss if kind == "sav" else stage_sas, path, chunk_rows=3_000)
    # The chunks before the cut read well; the one holding it fails (sas7bdat: the first, which reads its pages)
    assert message.startswith(f"cases.{kind}, from observation 12,001 on: " if kind == "sav" else "cases.sas7bdat: ")
    assert "observations 1-" not in message and "-15000" not in message


@pytest.mark.parametrize("records", [1, 5, 9])
def test_an_xport_v8_file_cut_between_records_is_refused(tmp_path: Path, records: int) -> None:
    """readstat does not read the count v8 states: a file cut at an 80-byte record (a whole number of
    observations, or a part of one padded out by the cut) was staged as a whole file of fewer observations."""
    path = tmp_path / "dm.xpt"
    pyreadstat.write_xport(CASES, str(path), table_name="DM", file_format_version=8)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 80 * records])
    message = _refused(stage_sas, path)
    assert message.startswith("dm.xpt: ") and message.endswith(
        "observations read, but the file declares 50; expected a complete file (truncated in transfer?)")


def test_an_xport_v8_file_stating_more_observations_than_it_holds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dm.xpt"
    pyreadstat.write_xport(CASES, str(path), table_name="DM", file_format_version=8)
    record = path.read_bytes().find(b"HEADER RECORD*******OBSV8 ")
    message = _refused(stage_sas, _patched(path, record + 48, b"%15d" % 10**12))
    assert message.startswith("dm.xpt: 50 observations read, but the file declares 1000000000000")


def test_an_xport_v8_file_stating_a_count_of_0_is_read_to_its_end(tmp_path: Path) -> None:
    """0 is taken for a writer that does not count (readstat refuses blanks itself)."""
    path = tmp_path / "dm.xpt"
    pyreadstat.write_xport(CASES, str(path), table_name="DM", file_format_version=8)
    record = path.read_bytes().find(b"HEADER RECORD*******OBSV8 ")
    assert stage_sas(_patched(path, record + 48, b"%15d" % 0), tmp_path / "dm.parquet", lineage=LINEAGE).rows == 50


def _v8_stating(path: Path, frame: pd.DataFrame, count: int) -> Path:
    """An XPORT v8 file of `frame` whose OBSV8 record states `count` observations."""
    pyreadstat.write_xport(frame, str(path), table_name="DM", file_format_version=8)
    return _patched(path, path.read_bytes().find(b"HEADER RECORD*******OBSV8 ") + 48, b"%15d" % count)


@pytest.mark.parametrize("chunk_rows", [None, 7, 20, 40])
def test_an_xport_v8_file_stating_fewer_observations_than_it_holds_is_refused(tmp_path: Path,
                                                                             chunk_rows: int | None) -> None:
    """readstat reads as many observations as the OBSV8 record states, without reporting the count: 40 of 50 were
    staged as the whole file (a count the chunks divide, 20 or 40, ends the reading at the count too)."""
    path = _v8_stating(tmp_path / "dm.xpt", CASES, 40)
    assert _refused(stage_sas, path, chunk_rows=chunk_rows) == (
        "dm.xpt: holds 50 observations, more than the 40 its header declares (observation 41 follows them); "
        "expected a header that counts them all (damaged in transfer, or written by a faulty program?)")


@pytest.mark.parametrize("last_pid", ["NL-00050", ""], ids=["written", "blank"])
def test_an_xport_v8_file_is_refused_for_an_observation_in_its_last_record_but_not_for_the_padding(
        tmp_path: Path, last_pid: str) -> None:
    """51 observations of 16 bytes end 64 bytes before the last 80-byte record does: the blanks after them look
    like 4 more observations, and are none; the 51st, in that record too, is one past a count of 50."""
    # pid last: a blank one runs on into the padding
    frame = pd.DataFrame({"age": np.arange(51, dtype=float), "pid": [*CASES["pid"], last_pid]})
    staged = stage_sas(_v8_stating(tmp_path / "dm.xpt", frame, 51), tmp_path / "dm.parquet", lineage=LINEAGE)
    assert staged.rows == 51 and pd.read_parquet(tmp_path / "dm.parquet")["pid"].iloc[-1] == last_pid
    message = _refused(stage_sas, _v8_stating(tmp_path / "dm.xpt", frame, 50))
    assert message.startswith("dm.xpt: holds 51 observations, more than the 50 its header declares (observation 51 ")


@pytest.mark.parametrize("options", [{}, {"row_compress": True}, {"compress": True}],
                         ids=["uncompressed", "bytecode", "zlib"])
def test_an_spss_header_declaring_fewer_cases_than_the_file_holds_is_refused(
        tmp_path: Path, options: dict[str, bool]) -> None:
    """readstat reads as many cases as the header declares: 40 of 50 were staged as the whole file."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(CASES, str(path), **options)
    message = _refused(stage_spss, _patched(path, 80, struct.pack("<i", 40)))
    assert message == ("cases.sav: holds more cases than the 40 its header declares (case 41 follows them); expected "
                       "a header that counts them all (damaged in transfer, or written by a faulty program?)")


def test_an_spss_file_declaring_its_cases_is_read_once_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(CASES, str(path), row_compress=True)
    assert stage_spss(path, tmp_path / "staged" / "cases.parquet", lineage=LINEAGE, chunk_rows=7).rows == 50


@pytest.mark.parametrize("position", [0, 3, 99, -1, 2])
def test_spss_value_labels_given_to_no_variable_are_refused_before_readstat_crashes(tmp_path: Path,
                                                                                     position: int) -> None:
    """readstat crashed the process (a segmentation fault: the run and every other source stopped) on value
    labels given to a dictionary position past the last variable's, or to a long string's continuation."""
    path = tmp_path / "cases.sav"
    frame = pd.DataFrame({"pid": ["NL-00001", "NL-00002"], "sex": [1.0, 2.0]})  # pid takes position 1, sex 2
    pyreadstat.write_sav(frame, str(path), variable_value_labels={"sex": {1: "male", 2: "female"}})
    positions = path.read_bytes().find(struct.pack("<iii", 4, 1, 2))  # the labels' record: 1 variable, at 2
    if position == 2:  # a continuation of a long string (positions 1-3) takes position 2
        pyreadstat.write_sav(frame.assign(pid=["N" * 20, ""]), str(path),
                             variable_value_labels={"sex": {1: "male", 2: "female"}})
        positions = path.read_bytes().find(struct.pack("<iii", 4, 1, 4))
    message = _refused(stage_spss, _patched(path, positions + 8, struct.pack("<i", position)))
    assert message.startswith(f"cases.sav: value labels are given to dictionary position {position}, which is no "
                              "variable's (the file's 2 variables take positions 1-")


@pytest.mark.parametrize(("variable", "width", "lacks"), [(1, 255, 31), (1, 9, 1), (2, 92, 11)])
def test_an_spss_string_wider_than_its_dictionary_positions_is_refused_before_readstat_crashes(
        tmp_path: Path, variable: int, width: int, lacks: int) -> None:
    """A variable's type (0: a number, else a string's width) changed in transfer: a string not followed by
    the continuations its width takes crashed readstat (a segmentation fault) when value labels came after
    it (PID 255 wide), else was refused as an unreadable file, saying nothing of where."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(pd.DataFrame({"pid": ["NL-00001"], "age": [3.0], "sex": [1.0]}), str(path),
                         variable_value_labels={"sex": {1: "male", 2: "female"}})
    record = 176 + 32 * (variable - 1)  # after the 176-byte header, one 32-byte record per variable (no labels)
    message = _refused(stage_spss, _patched(path, record + 4, struct.pack("<i", width)))
    name = ["PID", "AGE"][variable - 1]
    assert message == (f"cases.sav: string variable '{name}' ({width} characters wide) lacks {lacks} of the dictionary "
                       "positions its width takes (one per 8 bytes); expected a width that its positions hold "
                       "(damaged in transfer, or written by a faulty program?)")


@pytest.mark.parametrize("width", [300, -5])
def test_an_spss_variable_of_a_type_no_file_has_is_refused_naming_it(tmp_path: Path, width: int) -> None:
    """A variable's type is 0 (a number), a string's width (1-255) or -1 (a long string's continuation): any
    other, changed in transfer, is refused before readstat reads the dictionary, naming the variable."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(pd.DataFrame({"pid": ["NL-00001"], "age": [3.0], "sex": [1.0]}), str(path))
    record = 176 + 32  # AGE's: after the 176-byte header and PID's 32-byte record (no labels)
    message = _refused(stage_spss, _patched(path, record + 4, struct.pack("<i", width)))
    assert message == (f"cases.sav: variable 'AGE' (dictionary position 2) is of type {width}; expected 0 (a number) "
                       "or a string width of 1-255 (damaged in transfer, or written by a faulty program?)")


@pytest.mark.parametrize("kind", ["sav", "dta", "xpt"])
def test_a_variable_whose_name_cannot_be_read_is_refused(tmp_path: Path, kind: str) -> None:
    """readstat gives no name for it: staging failed on a TypeError that named nothing."""
    path = tmp_path / f"cases.{kind}"
    frame = pd.DataFrame({"pid": ["NL-00001"], "age": [3.0]})
    {"sav": pyreadstat.write_sav, "dta": pyreadstat.write_dta, "xpt": pyreadstat.write_xport}[kind](frame, str(path))
    # Its name's first byte, where the file describes the variable (XPORT v8: twice, the long name too).
    name, damaged = {"sav": (b"AGE", b"\xffGE"), "dta": (b"age\0", b"\0ge\0"), "xpt": (b"age", b"\0ge")}[kind]
    path.write_bytes(path.read_bytes().replace(name, damaged, -1 if kind == "xpt" else 1))
    message = _refused({"sav": stage_spss, "dta": stage_stata, "xpt": stage_sas}[kind], path)
    assert message.startswith(f"cases.{kind}: variable 2 of 2 has no name that can be read (empty, or bytes that are "
                              "not text in the file's encoding); expected a name for every variable (")


def _labels_of_numbers_on_a_string(path: Path) -> Path:
    """An SPSS file whose value labels of numbers (sex's 1 'male', 2 'female') are given to pid, a string."""
    frame = pd.DataFrame({"pid": ["NL-00001", "NL-00002"], "sex": [1.0, 2.0]})  # pid takes position 1, sex 2
    pyreadstat.write_sav(frame, str(path), variable_value_labels={"sex": {1: "male", 2: "female"}})
    return _patched(path, path.read_bytes().find(struct.pack("<iii", 4, 1, 2)) + 8, struct.pack("<i", 1))


CRASHED = ("cases.sav: the reader (ReadStat) crashed on the file (SIGSEGV): it is damaged, or not the SPSS data file "
           "(.sav, .zsav) it claims to be; expected a complete SPSS data file (.sav, .zsav) (ask for it again, written "
           "anew)")


def test_spss_labels_of_numbers_on_a_string_variable_fail_their_file_and_not_the_process(tmp_path: Path) -> None:
    """readstat crashes on them (a segmentation fault), which stopped the run and every other source: the file
    is read in a process of its own, whose crash fails this file alone, with nothing of it staged."""
    path = _labels_of_numbers_on_a_string(tmp_path / "cases.sav")
    assert _refused(stage_spss, path) == CRASHED
    # The metadata `rtw profile` and `rtw scaffold` read crashes readstat too.
    for read in (read_spss_metadata, SPSS.describe):
        with pytest.raises(ExtractError) as refused:
            read(path)
        assert str(refused.value) == CRASHED


@pytest.mark.parametrize("stage", [stage_sas, stage_spss, stage_stata])
def test_a_file_staged_in_a_process_of_its_own_gives_its_rows_and_notices(tmp_path: Path,
                                                                           stage: Callable[..., StageResult]) -> None:
    suffix = {stage_sas: "xpt", stage_spss: "sav", stage_stata: "dta"}[stage]
    path = tmp_path / f"cases.{suffix}"
    {"xpt": pyreadstat.write_xport, "sav": pyreadstat.write_sav, "dta": pyreadstat.write_dta}[suffix](CASES, str(path))
    staged = stage(path, tmp_path / "staged" / "cases.parquet", lineage=LINEAGE)
    assert staged.rows == 50 and staged.notices[0].startswith(f"cases.{suffix}: ")
    assert pd.read_parquet(tmp_path / "staged" / "cases.parquet")["pid"].tolist() == list(CASES["pid"])


def test_a_reader_killed_while_writing_leaves_nothing_staged(tmp_path: Path) -> None:
    """The parent removes what the child had half-written beside the staged file (and the staged file, were it
    renamed in before the child could say so); what was there before stays."""
    out = tmp_path / "staged" / "cases.parquet"
    out.parent.mkdir()
    earlier = out.parent / f".cases.parquet.earlier{TEMP_SUFFIX}"  # another reader's: not this one's to remove
    earlier.write_bytes(b"")

    crashing = functools.partial(reads_apart.crash_writing, out)
    with pytest.raises(ExtractError, match=r"^cases\.sav: the reader \(ReadStat\) crashed on the file \(SIGSEGV\)"):
        read_apart(tmp_path / "cases.sav", crashing, what="SPSS data file", out=out)
    assert list(out.parent.iterdir()) == [earlier]

    with pytest.raises(ExtractError, match=r"^cases\.sav: the process reading it was killed \(SIGKILL: out of memory"):
        read_apart(tmp_path / "cases.sav", functools.partial(reads_apart.renamed_then_killed, out),
                   what="SPSS data file", out=out)
    assert list(out.parent.iterdir()) == [earlier]


def test_an_error_of_the_reading_process_is_raised_as_it_was(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no such variable") as raised:
        read_apart(tmp_path / "cases.sav", reads_apart.failing, what="SPSS data file")
    assert "in the reading process" in raised.value.__notes__[0] and "failing" in raised.value.__notes__[0]


@pytest.mark.parametrize("version", [14, 12], ids=["dta 118", "dta 115"])
def test_a_stata_variable_naming_a_value_label_table_the_file_does_not_hold_is_noticed(tmp_path: Path,
                                                                                      version: int) -> None:
    """readstat gives such a variable no labels and says nothing: its coded values loaded with no code list,
    and no notice said that the file named labels it did not hold. Stata allows it (a label dropped, or
    attached before it is defined), so the file is staged, its codes as delivered, and a notice names it."""
    path = tmp_path / "cases.dta"
    frame = pd.DataFrame({"pid": ["NL-00001", "NL-00002"], "sex": [1.0, 2.0], "arm": [1.0, 2.0]})
    pyreadstat.write_dta(frame, str(path), version=version,
                         variable_value_labels={"sex": {1: "male", 2: "female"}, "arm": {1: "A", 2: "B"}})
    path.write_bytes(path.read_bytes().replace(b"sex0", b"sexX", 1))  # the variable's, before the table's own
    out = tmp_path / "staged" / "cases.parquet"
    staged = stage_stata(path, out, lineage=LINEAGE)
    assert pd.read_parquet(out)["sex"].tolist() == ["1", "2"]
    assert [n for n in staged.notices if "sexX" in n] == [
        "cases.dta: value label tables named by variables but not in the file, so their codes come without labels "
        "(dropped or never defined in the package, or the name damaged in transfer; ask for the file saved with "
        "them if the mapping's codes: need them): sex 'sexX'"]
    kept = staged_stata_metadata(out)
    assert kept is not None and kept.unlabelled == {"sex": "sexX"} and list(kept.codes) == ["arm"]


def _sas_refused(read: str, path: Path) -> str:
    """What staging, or the metadata read (`read_sas_metadata`, `describe`), says of a file it refuses."""
    if read == "staging":
        return _refused(stage_sas, path)
    with pytest.raises(ExtractError) as refused:
        read_sas_metadata(path) if read == "metadata" else SAS.describe(path)
    return str(refused.value)


SAS_READS = ["staging", "metadata", "describe"]


@pytest.mark.parametrize("read", SAS_READS)
@pytest.mark.parametrize("appended", [b"\0" * 7, b"garbage\n", None], ids=["zeros", "text", "itself"])
def test_a_sas7bdat_holding_bytes_after_its_last_page_is_refused(tmp_path: Path, appended: bytes | None,
                                                                 read: str) -> None:
    """readstat reads the pages the header counts and ignores what follows: a file sent again into the same
    name (appended to itself), or with bytes appended, was staged as if whole; the metadata read described it so
    to its direct callers after staging had learnt to refuse it (`rtw profile` and `rtw scaffold` stage first)."""
    path = tmp_path / "cases.sas7bdat"
    pyreadstat.write_sas7bdat(CASES, str(path))
    whole = path.read_bytes()  # a 65,536-byte header and 1 page of 65,536 bytes
    path.write_bytes(whole + (whole if appended is None else appended))
    extra = len(whole) if appended is None else len(appended)
    assert _sas_refused(read, path) == (
        f"cases.sas7bdat: holds {extra:,} bytes after its last page: its header (65,536 bytes) and the 1 page(s) of "
        "65,536 bytes it counts end at byte 131,072; expected the file to end there (another file appended to it, "
        "or one sent again into the same name?)")


@pytest.mark.parametrize("read", SAS_READS)
def test_a_sas7bdat_cut_at_a_page_is_refused_saying_where_it_should_end(tmp_path: Path, read: str) -> None:
    """readstat refused it as 'unreadable sas7bdat file (Unable to read from file)'."""
    path = tmp_path / "cases.sas7bdat"
    big = pd.DataFrame({"pid": [f"NL-{i:05d}" for i in range(20_000)], "age": np.arange(20_000, dtype=float)})
    pyreadstat.write_sas7bdat(big, str(path))
    whole = path.read_bytes()  # a 65,536-byte header and 5 pages of 65,536 bytes
    path.write_bytes(whole[:-65_536])
    assert _sas_refused(read, path) == (
        "cases.sas7bdat: truncated: 327,680 bytes, where its header (65,536 bytes) and the 5 page(s) of 65,536 bytes "
        "it counts end at byte 393,216; expected the complete file")


@pytest.mark.parametrize(("options", "after"), [
    ({}, "its last case: its 50 case(s) of 16 bytes, after the dictionary, end at byte 1,260"),
    ({"compress": True}, "its compressed data: their trailer (48 bytes) ends at byte 718")], ids=["sav", "zsav"])
@pytest.mark.parametrize("appended", [b"\0" * 7, None], ids=["zeros", "itself"])
def test_an_spss_file_holding_bytes_after_its_data_is_refused(tmp_path: Path, options: dict[str, bool], after: str,
                                                              appended: bytes | None) -> None:
    """readstat reads the cases the header counts (or the compressed data to their end) and ignores what follows:
    bytes appended short of a case, or a whole file in a .zsav, were staged as if the file were whole."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(CASES, str(path), **options)
    whole = path.read_bytes()
    path.write_bytes(whole + (whole if appended is None else appended))
    extra = len(whole) if appended is None else len(appended)
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds {extra:,} bytes after {after}; expected the file to end there (another file appended to "
        "it, or one sent again into the same name?)")


def test_a_bytecode_compressed_spss_file_holding_another_after_its_data_is_refused(tmp_path: Path) -> None:
    """readstat stops at the compressed data's end code: a file sent again into the same name (appended to
    itself) was staged as if whole."""
    path = tmp_path / "cases.sav"
    pyreadstat.write_sav(CASES, str(path), row_compress=True)
    whole = path.read_bytes()
    path.write_bytes(whole + whole)
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds another SPSS data file from byte {len(whole):,} on (its header, '$FL2@(#) SPSS DATA FILE', "
        "after this file's data); expected the file to end before it (another file appended to it, or one sent again "
        "into the same name?)")


FRACTIONS = CASES.assign(age=CASES["age"] + 0.5)  # each case 2 raw values: pid and age (code 253)
# readstat writes a case a command block: 8 command bytes, then the 2 raw values; the last holds the end code (252)
LAST_BLOCK = 8 + 2 * 8


def _bytecode(path: Path, end_code: str = "readstat's", *, counted: bool = True) -> bytes:
    """A bytecode-compressed .sav of 50 cases, one command block each, its data ended as readstat ends them (the
    end code in the last case's block), as PSPP may (in a block of its own) or with no end code (optional)."""
    pyreadstat.write_sav(FRACTIONS, str(path), row_compress=True)
    if not counted:
        _patched(path, 80, struct.pack("<i", -1))
    whole = path.read_bytes()
    if end_code != "readstat's":
        assert whole[-LAST_BLOCK:-LAST_BLOCK + 8] == b"\xfd\xfd\xfc" + bytes(5)
        whole = whole[:-LAST_BLOCK + 2] + b"\0" + whole[-LAST_BLOCK + 3:]
        whole += b"\xfc" + bytes(7) if end_code == "alone" else b""
    path.write_bytes(whole)
    return whole


@pytest.mark.parametrize("end_code", ["readstat's", "alone", "none"])
@pytest.mark.parametrize("appended", [b"\0" * 7, b"\0" * 8, b"garbage\n", b"\xfd" * 24], ids=["7 zeros", "8 zeros",
                                                                                           "text", "253s"])
def test_a_bytecode_compressed_spss_file_holding_bytes_after_its_data_is_refused_saying_where_they_start(
        tmp_path: Path, end_code: str, appended: bytes) -> None:
    """readstat stops at the cases the header counts, or at the end code: only another SPSS file after the data
    was found, and bytes appended (7 zeros, text) were staged as if the file were whole. The command bytes say
    where the data end: after the block completing the counted cases, or the end code's own block after it.
    Without an end code, 8 bytes of text read as a command block of 8 numbers: whole cases, as readstat reads
    them too."""
    path = tmp_path / "cases.sav"
    whole = _bytecode(path, end_code)
    assert stage_spss(path, tmp_path / "whole.parquet", lineage=LINEAGE).rows == 50
    path.write_bytes(whole + appended)
    if end_code == "none" and appended == b"garbage\n":
        assert _refused(stage_spss, path).startswith(
            "cases.sav: holds more cases than the 50 its header declares (case 51 follows them)")
        return
    completing = len(whole) - LAST_BLOCK - (8 if end_code == "alone" else 0)
    own = ", their end code's own block follows it" if end_code == "alone" else ""
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds {len(appended)} bytes after its compressed data: the command block completing its 50 "
        f"case(s) of 2 value(s) starts at byte {completing:,}{own}; they end at byte {len(whole):,}; expected the "
        "file to end there (another file appended to it, or one sent again into the same name?)")


def test_a_bytecode_compressed_spss_file_not_counting_its_cases_is_refused_for_bytes_after_its_end_code(
        tmp_path: Path) -> None:
    """A header saying -1 leaves the end code to say where the data end: readstat stops there."""
    path = tmp_path / "cases.sav"
    whole = _bytecode(path, counted=False)
    assert stage_spss(path, tmp_path / "whole.parquet", lineage=LINEAGE).rows == 50
    path.write_bytes(whole + b"garbage\n")
    assert _refused(stage_spss, path).startswith(
        f"cases.sav: holds 8 bytes after its compressed data: their end code is in the command block at byte "
        f"{len(whole) - LAST_BLOCK:,}; they end at byte {len(whole):,}; expected the file to end there")


@pytest.mark.parametrize("end_code", ["readstat's", "alone"])
@pytest.mark.parametrize("appended", [b"\0" * 7, b"garbage\n"], ids=["7 zeros", "text"])
def test_a_bytecode_compressed_spss_file_counting_too_few_cases_is_refused_for_the_bytes_after_its_end_code(
        tmp_path: Path, end_code: str, appended: bytes) -> None:
    """A header counting 40 of the 50 cases: bytes appended after the end code were said to follow the 40th
    case's block, the 10 cases after it counted among them ('holds 248 bytes'). The end code says where the data
    end; the cases past the count are refused as such when nothing follows it."""
    path = tmp_path / "cases.sav"
    whole = _bytecode(path, end_code)
    whole = whole[:80] + struct.pack("<i", 40) + whole[84:]
    path.write_bytes(whole + appended)
    last = len(whole) - (8 if end_code == "alone" else LAST_BLOCK)
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds {len(appended)} bytes after its compressed data: their end code is in the command block "
        f"at byte {last:,}; they end at byte {len(whole):,}; expected the file to end there (another file appended "
        "to it, or one sent again into the same name?)")
    path.write_bytes(whole)
    assert _refused(stage_spss, path).startswith(
        "cases.sav: holds more cases than the 40 its header declares (case 41 follows them)")


NO_CASES = pd.DataFrame({"pid": pd.Series([], dtype=str), "age": pd.Series([], dtype=float)})
A_CASE = b"\xfd\xfd" + bytes(6) + b"NL-00001" + struct.pack("<d", 5.5)  # its command block, then its 2 raw values
OWN_END_CODE = b"\xfc" + bytes(7)


def _no_cases(path: Path) -> bytes:
    """A bytecode-compressed .sav whose header counts no case: readstat writes no command block (its data, from
    byte 460, end there)."""
    pyreadstat.write_sav(NO_CASES, str(path), row_compress=True)
    whole = path.read_bytes()
    assert len(whole) == 460
    return whole


@pytest.mark.parametrize(("appended", "own"), [(b"\0" * 8, False), (b"abc", False), (A_CASE + b"xyz", False),
                                               (OWN_END_CODE + b"abc", True)],
                         ids=["8 zeros", "3 bytes", "a case and 3 bytes", "its end code and 3 bytes"])
def test_a_bytecode_compressed_spss_file_counting_no_case_holding_bytes_after_where_its_data_start_is_refused(
        tmp_path: Path, appended: bytes, own: bool) -> None:
    """No value is needed when the header counts no case: the first block was taken to complete them, so 8 zeros
    (a block of padding) appended staged 0 rows (after 50 cases they are refused), so did 3 bytes (no block),
    and a case appended and 3 bytes were said to end at its block's end, byte 484. The data end where they start,
    or after the end code's own block there."""
    path = tmp_path / "cases.sav"
    whole = _no_cases(path)
    for ended in (b"", OWN_END_CODE):
        path.write_bytes(whole + ended)
        assert stage_spss(path, tmp_path / "whole.parquet", lineage=LINEAGE).rows == 0
    path.write_bytes(whole + appended)
    where = ("its data, from byte 460, are their end code's own block; they end at byte 468" if own
             else "its data start and end at byte 460")
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds {len(appended) - 8 * own} bytes after its compressed data: its header counts no case; "
        f"{where}; expected the file to end there (another file appended to it, or one sent again into the same "
        "name?)")


@pytest.mark.parametrize("appended", [b"garbage\n", A_CASE, A_CASE + OWN_END_CODE],
                         ids=["8 bytes of text", "a case", "a case and its end code"])
def test_a_bytecode_compressed_spss_file_counting_no_case_holding_whole_ones_is_refused(
        tmp_path: Path, appended: bytes) -> None:
    """Whole cases after a header counting none (8 bytes of text read as a block of 8 numbers: 4 cases) reached
    pyreadstat, whose read of them crashed (IndexError, not a refusal naming the file)."""
    path = tmp_path / "cases.sav"
    path.write_bytes(_no_cases(path) + appended)
    assert _refused(stage_spss, path) == (
        "cases.sav: holds more cases than the 0 its header declares (case 1 follows them); expected a header that "
        "counts them all (damaged in transfer, or written by a faulty program?)")


def test_the_command_blocks_are_found_alike_however_many_are_looked_at_together(tmp_path: Path) -> None:
    """The blocks are found one after another, their command bytes counted a window at a time: a block whose raw
    values run on into the next window, or past it, is followed there."""
    path = tmp_path / "cases.sav"
    frame = pd.DataFrame({"pid": [f"NL-{i:05d}" for i in range(300)], "note": ["x" * (i % 40) for i in range(300)],
                          "age": np.where(np.arange(300) % 3, np.arange(300) + 0.5, np.arange(300))})
    pyreadstat.write_sav(frame, str(path), row_compress=True)
    header = spss._header(path)
    assert header.data is not None
    size, per_case = path.stat().st_size, header.data.case_length // 8
    for needed in (0, per_case, 150 * per_case, 300 * per_case, 301 * per_case, None):
        at_once = spss._bytecode_stream(path, header.data.start, size, needed)
        assert [spss._bytecode_stream(path, header.data.start, size, needed, at_once=window)
                for window in (1, 2, 3, 7, 64)] == [at_once] * 5
    assert at_once.values == 300 * per_case and at_once.end == size and at_once.end_code


def _uncounted(path: Path, frame: pd.DataFrame) -> bytes:
    """An uncompressed .sav of `frame` whose header does not count its cases (-1, as streaming writers do)."""
    pyreadstat.write_sav(frame, str(path))
    return _patched(path, 80, struct.pack("<i", -1)).read_bytes()


@pytest.mark.parametrize(("damage", "case"), [(lambda whole: whole + b"\0" * 7, "case 51 holds 7"),
                                              (lambda whole: whole[:-3], "case 50 holds 13")],
                         ids=["appended", "cut"])
def test_an_spss_file_not_counting_its_cases_ending_inside_one_is_refused(
        tmp_path: Path, damage: Callable[[bytes], bytes], case: str) -> None:
    """readstat reads such a file to its end and drops a part case there quietly: 7 bytes appended staged the 50
    cases, its last 3 bytes cut off staged 49, with no error (the same cut in a file that counts them is refused).
    Its cases are of a fixed length: what is left over is a cut or bytes appended."""
    path = tmp_path / "cases.sav"
    path.write_bytes(damage(_uncounted(path, CASES)))
    assert _refused(stage_spss, path) == (
        f"cases.sav: ends inside a case: {case} of its 16 bytes (the cases follow the dictionary from byte 460; the "
        "header does not count them: -1); expected whole cases (the file cut short in transfer, or bytes appended to "
        "it?)")


def test_an_spss_file_not_counting_its_cases_holding_another_after_them_is_refused(tmp_path: Path) -> None:
    """Sent again into the same name (appended to itself), it was read on into the second file's header: refused
    as text that is not UTF-8, at 'observation 56'. Whole cases appended cannot be told from the file's own; another
    file's header can, as after a bytecode-compressed file's data (found before its length is judged)."""
    path = tmp_path / "cases.sav"
    whole = _uncounted(path, CASES)
    path.write_bytes(whole + whole)
    assert _refused(stage_spss, path) == (
        f"cases.sav: holds another SPSS data file from byte {len(whole):,} on (its header, '$FL2@(#) SPSS DATA FILE', "
        "after this file's data); expected the file to end before it (another file appended to it, or one sent again "
        "into the same name?)")


@pytest.mark.parametrize("kind", ["bytecode", "bytecode uncounted", "uncounted", "counted"])
def test_spss_text_holding_an_spss_header_is_refused_where_another_file_is_looked_for(tmp_path: Path,
                                                                                     kind: str) -> None:
    """What docs/adapters.md says: text is stored raw, in bytecode compression too, and another file is looked
    for by its header after the dictionary where the file does not say where its data end: an uncompressed file
    not counting its cases (not one counting them, nor bytecode-compressed data, whose command bytes say where
    they end when the header counts the cases or the data hold their end code)."""
    path = tmp_path / "cases.sav"
    frame = pd.DataFrame({"pid": ["NL-00001", "NL-00002"], "note": ["$FL2@(#) SPSS DATA FILE", ""]})
    if kind == "uncounted":
        _uncounted(path, frame)
    else:
        pyreadstat.write_sav(frame, str(path), row_compress=kind.startswith("bytecode"))
    if kind == "bytecode uncounted":
        _patched(path, 80, struct.pack("<i", -1))
    if kind == "uncounted":
        assert _refused(stage_spss, path).startswith("cases.sav: holds another SPSS data file from byte ")
    else:
        assert stage_spss(path, tmp_path / "staged" / "cases.parquet", lineage=LINEAGE).rows == 2


def _xport(path: Path, frame: pd.DataFrame, version: str) -> Path:
    """An XPORT file of `frame`: v5, or v8 stating 0 observations (a writer that does not count)."""
    if version == "v5":
        pyreadstat.write_xport(frame, str(path), table_name="DM", file_format_version=5)
        return path
    return _v8_stating(path, frame, 0)


@pytest.mark.parametrize("chunk_rows", [None, 2])
@pytest.mark.parametrize("version", ["v5", "v8 stating 0"])
def test_blank_xport_observations_past_the_padding_are_kept(tmp_path: Path, version: str,
                                                            chunk_rows: int | None) -> None:
    """readstat drops every all-blank observation at the end of a file of observations shorter than 80 bytes,
    taking them for the padding of the last 80-byte record: 12 blank ones after the first of 8 bytes each (104
    bytes, padded to 160) staged 1 observation. The padding is under 80 bytes: 11 are observations; the 2 that
    the padding could be are what no reader can know (SAS reads them as padding too)."""
    path = _xport(tmp_path / "dm.xpt", pd.DataFrame({"pid": ["NL-00001", *[""] * 12]}), version)
    out = tmp_path / "staged" / "dm.parquet"
    assert stage_sas(path, out, lineage=LINEAGE, chunk_rows=chunk_rows).rows == 11
    staged = pd.read_parquet(out)
    assert staged["pid"].tolist() == ["NL-00001", *[""] * 10] and staged["_line"].tolist() == list(range(1, 12))


@pytest.mark.parametrize("version", ["v5", "v8 stating 0"])
def test_a_blank_last_xport_observation_of_80_bytes_or_more_is_kept(tmp_path: Path, version: str) -> None:
    """It cannot be padding (fewer than 80 bytes), and readstat reads it (a guard: it did before too)."""
    frame = pd.DataFrame({"pid": ["NL-00001", "NL-00002", ""], "note": ["a" * 90, "b", ""]})  # 98 bytes each
    out = tmp_path / "staged" / "dm.parquet"
    assert stage_sas(_xport(tmp_path / "dm.xpt", frame, version), out, lineage=LINEAGE, chunk_rows=2).rows == 3
    assert pd.read_parquet(out)["pid"].tolist() == ["NL-00001", "NL-00002", ""]


def test_an_xport_file_cut_a_whole_blank_record_into_an_observation_is_refused(tmp_path: Path) -> None:
    """The blanks after the last whole observation were taken for padding however many: 80 or more are none."""
    frame = pd.DataFrame({"pid": ["A" * 200, "B" * 200, ""]})  # 600 bytes of observations, padded to 640
    path = _xport(tmp_path / "dm.xpt", frame, "v5")
    data = path.read_bytes()
    path.write_bytes(data[:data.find(b"HEADER RECORD*******OBS     ") + 80 + 480])  # observation 3's first 80 bytes
    assert _refused(stage_sas, path) == (
        "dm.xpt: truncated: observation 3 is cut short after 80 of its 200 bytes; expected the complete file")


@pytest.mark.parametrize("records", [1, 14])
def test_an_xport_v8_file_stating_0_observations_cut_inside_one_is_refused(tmp_path: Path, records: int) -> None:
    """A count of 0 is read to the file's end, as a v5 file is: a cut inside an observation (of 24 bytes: an
    80-byte record ends inside one) dropped the part quietly, staging 3 (or 46) of 50 observations."""
    frame = pd.DataFrame({"pid": [f"NL-{i:05d}-centre1" for i in range(50)], "age": np.arange(50, dtype=float)})
    path = _v8_stating(tmp_path / "dm.xpt", frame, 0)
    data = path.read_bytes()
    path.write_bytes(data[:data.find(b"HEADER RECORD*******OBSV8 ") + 80 + 80 * records])
    whole, rest = divmod(80 * records, 24)
    assert _refused(stage_sas, path) == (f"dm.xpt: truncated: observation {whole + 1} is cut short after {rest} of "
                                         "its 24 bytes; expected the complete file")


@pytest.mark.parametrize("damage", ["a value label table of length -40", "an expansion field of length -5"])
def test_a_stata_115_file_whose_lengths_step_back_is_refused_at_once(tmp_path: Path, damage: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A hunt: the check of where an old Stata file ends looped on lengths that step back, until the reader's time
    limit (600 s) stopped it, saying to raise the limit."""
    monkeypatch.setenv("RTW_READ_SECONDS", "60")  # a loop fails the test, not the session
    path = tmp_path / "cases.dta"
    pyreadstat.write_dta(CASES, str(path), version=12)
    data = path.read_bytes()
    if damage.startswith("a value label"):
        data += struct.pack("<i", -40) + b"lbl".ljust(33, b"\0") + b"\0\0\0" + struct.pack("<ii", -6, 0)
    else:  # the expansion fields' end (a zero type and length) made a field stepping back over itself
        variables = struct.unpack_from("<H", data, 4)[0]
        at = 109 + variables * (1 + 33 + 2 + 49 + 33 + 81) + 2
        assert data[at:at + 5] == b"\0" * 5
        data = data[:at] + struct.pack("<Bi", 1, -5) + data[at + 5:]
    path.write_bytes(data)
    with pytest.raises(ExtractError, match=r"^cases\.dta: [\d,]+ bytes, where the file's header and sections end "
                                           r"at byte [\d,]+; expected the complete file"):
        stage_stata(path, tmp_path / "staged.parquet")
