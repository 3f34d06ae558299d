"""A review of today's last file-name commits found three defects:

- a key starting with five digits or more was cut: the five-digit guess was tried before the keys' shapes
  (the longest pattern text first), so `Fall_123456-01.csv` for keys 123456-01 was `Fall_{patient}-01.csv`,
  and a sheet per patient `Pat_12345A` for keys 12345A was `Pat_{patient}A`: a record set per letter;
- a key's letters run into a file name's letters counted in the keys' case only and joined as they are written:
  `patid0012_verlauf.csv`, `PatId0012.csv` (keys ID0001..) and `PatILTB_0012.csv` (keys ILTB-0001..) were shown
  in clear, where a free text's rule (a note's `follow-up visit 2026`) had been taken for a file name's;
- onboarding asked for any run of six digits or more that is not a date to count (`any_long_number`), and the
  ask was dropped: a month's stamp (`Verlauf_202611.csv`) was shown beside guessed keys of a shape."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from etl.extract.file_names import PatientNumbers, shown_file_name, shown_record_sets
from etl.onboard.reading import read_file
from etl.transform.screen import TextScreen


@pytest.mark.parametrize(("keys", "name", "shown"), [
    (["123456-01", "234567-02"], "Fall_123456-01.csv", "Fall_{patient}.csv"),
    (["123456-01", "234567-02"], "Fall_999999-03_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),  # a new patient
    (["12345A", "23456B", "34567C"], "Fall_99999Z_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),
    (["12345-AB", "23456-CD"], "Fall_12345-AB.csv", "Fall_{patient}.csv"),
    (["P00001", "P00002"], "Labs_85003.csv", "Labs_{patient}.csv"),  # five digits of no key's shape: as before
])
def test_a_key_starting_with_five_digits_is_hidden_whole(keys, name, shown):
    assert shown_file_name(name, PatientNumbers.of(keys)) == shown


def test_a_sheet_per_patient_keyed_by_five_digits_and_a_letter_is_one_record_set():
    keys = ["12345A", "23456B", "34567C"]
    sheets = {f"Pat_{key}": pa.table({"PATNR": [key]}) for key in keys}
    assert list(shown_record_sets(sheets, PatientNumbers.of(keys))) == ["Pat_{patient}"]


ID = [f"ID{i:04d}" for i in range(1, 41)]
ILTB = [f"ILTB-{i:04d}" for i in range(1, 41)]
INITIALS = [f"{a}{b}{i:04d}" for i, (a, b) in enumerate((a, b) for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")]  # SO0482 among them


@pytest.mark.parametrize(("keys", "name", "shown"), [
    (ID, "patid0012_verlauf.csv", "pat{patient}_verlauf.csv"),  # in any case
    (ID, "PatId0012.csv", "Pat{patient}.csv"),
    (ILTB, "PatILTB_0012.csv", "Pat{patient}.csv"),  # the keys' '-' written as '_'
    (ILTB, "Patiltb 0012.csv", "Pat{patient}.csv"),
    ([k.lower() for k in ID], "PatID0012.csv", "Pat{patient}.csv"),  # keys staged in lower case
    (["ID-0001", "id_0002", "Id 0003"], "PatID_0012.csv", "Pat{patient}.csv"),  # three keys, joined alike
])
def test_a_file_name_hides_a_number_run_into_letters_in_any_case_and_across_separators(keys, name, shown):
    assert shown_file_name(name, PatientNumbers.of(keys)) == shown


@pytest.mark.parametrize(("keys", "name"), [
    (ID, "PatID_0012.csv"),  # no separator the keys write: none put in
    (["ID0001", "ID0002"], "patid0012.csv"),  # the letters of fewer than three keys are no prefix
    (INITIALS, "iso8601.csv"),  # letters that vary key by key (initials, SO among them) are no prefix, in any case
    (ID, "Report2026.csv"),
])
def test_a_file_name_s_word_before_digits_stays_without_a_prefix_of_the_keys(keys, name):
    assert shown_file_name(name, PatientNumbers.of(keys)) == name


def test_a_word_s_end_that_is_the_keys_prefix_is_hidden_in_a_name_but_read_in_a_note():
    keys = [f"IT{i:04d}" for i in range(10)] + [f"ES-{i:04d}" for i in range(10)]
    numbers = PatientNumbers.of(keys)
    assert shown_file_name("Visit2026.csv", numbers) == "Vis{patient}.csv"  # the SHA-256 beside it tells the file
    assert shown_file_name("Notes_2026.csv", numbers) == "Not{patient}.csv"
    screen = TextScreen.of(keys, [])
    for note in ("follow-up visit 2026", "follow-up Visit2026", "notes_2026", "doses 1000 mg", "PatId0012"):
        assert screen.screened(note) == note
    assert screen.screened("seen with PatIT0012, PatES-0013") == "seen with Pat{patient}, Pat{patient}"


def test_the_screen_s_fingerprint_stays_with_new_patients_written_otherwise():
    def fingerprint(keys: list[str]) -> str:
        return TextScreen.of(keys, []).fingerprint(b"secret")

    # A file name's shapes take any case and separator; a text's fingerprint is the text's shapes only
    centres = [f"FR{i:04d}" for i in range(300)] + [f"DE-{i:04d}" for i in range(20)]
    assert fingerprint(centres) == fingerprint([*centres, "FR9999"]) == fingerprint([*centres, "DE-9999"])
    assert fingerprint(["ID0001", "ID0002", "ID0003"]) == fingerprint(["ID0001", "ID0002", "ID0003", "ID0004"])


def test_onboarding_hides_a_month_s_stamp_beside_guessed_keys(tmp_path: Path):
    export = tmp_path / "Verlauf_202611.csv"
    export.write_text("PATNR;WERT\nID0001;3\nID0002;4\n", encoding="utf-8")
    assert read_file(export).name == "Verlauf_{patient}.csv"
    assert shown_file_name("export_202611.csv", PatientNumbers.of(["ID0001"], any_long_number=True)) == (
        "export_{patient}.csv")
    # The nightly run, its keys known, shows it: a month's stamp is no key's shape there
    assert shown_file_name("export_202611.csv", PatientNumbers.of(["ID0001"])) == "export_202611.csv"
    assert shown_file_name("export_20261101.csv", PatientNumbers.of(["ID0001"], any_long_number=True)) == (
        "export_20261101.csv")
