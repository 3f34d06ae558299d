"""An erased patient's number is taken out of a file name only where the name reads it as a patient number:
a snapshot whose date is written as the number (`export_20261101.csv` for an erased `20261101`, `Verlauf_202611`
for `202611`) keeps its name, its archive copy and its pull-ledger line (by which its checksum is compared
again); a file per patient whose number reads as a date is renamed all the same, as its siblings tell."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config import SOURCES_DIR, Home
from etl.extract.file_names import PatientNumbers, reads_as_patient_number
from etl.forget import _hide_number_in_names, hide_erased_numbers
from etl.pull.dropzone import RemoteFile
from etl.pull.ledger import read_ledger
from etl.transform.mapping import load_mapping
from etl.transform.pseudonym import PseudonymKey, source_pseudonym

KEY = "forget-dated-names-key-0123456789abcdef"


def _remote(path: str) -> RemoteFile:
    return RemoteFile(path=path, name=path.rpartition("/")[2], size=316, version="v1")


def _home(tmp_path: Path, source_id: str, names: list[str]) -> Home:
    """A home whose archive and pull ledger hold the source's files `names`, one copy and line each."""
    home = Home(tmp_path / "home").ensure()
    archived = home.archive / source_id
    archived.mkdir(parents=True)
    ledger = read_ledger(home, source_id, mend=True)
    for i, name in enumerate(names):
        (archived / f"{str(i) * 16}__{name}").write_bytes(b"")
        ledger.record(_remote(f"/drop/{name}"), str(i) * 64, [name])
    return home


@pytest.mark.parametrize(("key", "snapshot"), [("20261101", "export_20261101.csv"),
                                               ("202611", "Verlauf_202611.csv")])
def test_forget_leaves_a_snapshot_whose_date_is_written_as_the_erased_number(tmp_path, key, snapshot):
    home = _home(tmp_path, "registry_de", [snapshot, "Fall_12345678_Verlauf.csv"])
    _hide_number_in_names(home, "registry_de", key, PseudonymKey(KEY.encode()))
    assert sorted(p.name for p in (home.archive / "registry_de").iterdir()) == [
        f"{'0' * 16}__{snapshot}", f"{'1' * 16}__Fall_12345678_Verlauf.csv"]
    ledger = read_ledger(home, "registry_de")
    assert ledger.last(f"/drop/{snapshot}") is not None  # its checksum is compared with this line again


def test_forget_renames_a_file_per_patient_whose_number_reads_as_a_date(tmp_path):
    home = _home(tmp_path, "registry_de", ["Fall_20261101_Verlauf.csv", "Fall_12345678_Verlauf.csv",
                                           "export_20261101.csv"])
    _hide_number_in_names(home, "registry_de", "20261101", PseudonymKey(KEY.encode()))
    assert sorted(p.name for p in (home.archive / "registry_de").iterdir()) == [
        f"{'0' * 16}.erased", f"{'0' * 16}__Fall_{{patient}}_Verlauf.csv", f"{'1' * 16}__Fall_12345678_Verlauf.csv",
        f"{'2' * 16}__export_20261101.csv"]
    ledger = read_ledger(home, "registry_de")
    assert ledger.last("/drop/Fall_20261101_Verlauf.csv") is None and ledger.last("/drop/export_20261101.csv")


def test_a_run_leaves_a_snapshot_whose_date_is_written_as_an_erased_number(tmp_path):
    home = _home(tmp_path, "iltb", ["ILTB_export_20261101.csv"])
    key = PseudonymKey(KEY.encode())
    erased = {source_pseudonym(key, "iltb", "20261101")}
    assert hide_erased_numbers(home, load_mapping(SOURCES_DIR / "iltb.yaml"), key, erased) == 0
    assert [p.name for p in (home.archive / "iltb").iterdir()] == [f"{'0' * 16}__ILTB_export_20261101.csv"]
    assert read_ledger(home, "iltb").last("/drop/ILTB_export_20261101.csv") is not None


@pytest.mark.parametrize(("name", "siblings", "number"), [
    ("Fall_12345678_Verlauf.csv", [], True),  # no date: a number of the key's shape
    ("export_20261101.csv", ["export_20261031.csv"], False),  # its siblings are dated: a snapshot
    ("Fall_20261101_Verlauf.csv", ["Fall_12345678_Verlauf.csv"], True),  # a sibling's number is no date
    ("Fall_20261101_Verlauf.csv", ["Fall_{patient}_Verlauf.csv"], True),  # shown so once already
    ("Fall_20261101_Verlauf.csv", ["Fall_1234567_Verlauf.csv"], False),  # not the key's shape
    ("Pat_20261101_extra.csv", ["Fall_12345678_Verlauf.csv"], False),
])
def test_a_number_that_reads_as_a_date_is_a_patients_only_in_a_file_per_patients_name(name, siblings, number):
    start = name.index("_") + 1
    end = start + len(name[start:].replace(".", "_").split("_")[0])
    assert reads_as_patient_number(name, (start, end), PatientNumbers.of(["20261101"]), [name, *siblings]) \
        is number
