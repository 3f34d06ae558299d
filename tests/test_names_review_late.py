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

import pyarrow as pa
import pytest

from etl.extract.file_names import PatientNumbers, shown_file_name, shown_record_sets


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
