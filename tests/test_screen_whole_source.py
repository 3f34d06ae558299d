"""A free text is screened by every patient of its source, whichever part harmonises it and whichever night
delivered it (etl/transform/parts.py `source_screen`, etl/transform/carry_over.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_harmonise_screen import BOARD, KEY, ROW

from etl.transform import records
from etl.transform.mapping import SourceMapping
from etl.transform.parts import harmonise_to_folder
from etl.transform.pseudonym import normalise_patient_key

FILE = {"source_file": "board.csv"}


def _export(patients: list[dict[str, str]], sha: str) -> dict[str, pa.Table]:
    return {"REG": pa.Table.from_pylist([ROW | p | FILE | {"_line": str(line), "source_file_sha256": sha * 64}
                                         for line, p in enumerate(patients, start=2)])}


def _patient(number: int, born: str, **values: str) -> dict[str, str]:
    return {"pid": f"ILTB-{number:05d}", "rid": str(number), "born": born} | values


def _night(tmp_path: Path, name: str, patients: list[dict[str, str]], sha: str, previous: Path | None = None,
           mapping: SourceMapping = BOARD):
    """The harmonised folder of a night's export, what harmonising it said, and a fresh load of it."""
    folder, fresh = tmp_path / name, tmp_path / f"{name}-fresh"
    folder.mkdir()
    fresh.mkdir()
    said = harmonise_to_folder(mapping, _export(patients, sha), KEY, f"run-{name}", folder, previous=previous)
    harmonise_to_folder(mapping, _export(patients, sha), KEY, f"run-{name}", fresh)
    return folder, said, fresh


def _notes(folder: Path) -> dict[str, str]:
    rows = pq.read_table(folder / "tumour_board_review.parquet").to_pylist()
    return {r["source_record_key"].split("|")[1]: r["reason_not_followed"] for r in rows if r["reason_not_followed"]}


def _refused(folder: Path) -> list[tuple[str, str]]:
    return sorted((r["field"], r["value"]) for r in pq.read_table(folder / "rejections.parquet").to_pylist())


def test_a_note_naming_the_birth_date_of_a_patient_of_another_part_is_screened(tmp_path: Path) -> None:
    born = [f"{day % 28 + 1:02d}/03/{1990 + day}" for day in range(1, 41)]
    patients = [_patient(n, born[n - 1], reason=f"sibling born {born[n % 40]}") for n in range(1, 41)]
    folder = tmp_path / "cut"
    folder.mkdir()
    said = harmonise_to_folder(BOARD, _export(patients, "f"), KEY, "run-1", folder, part_records=10)
    assert said.parts == 4
    assert set(_notes(folder).values()) == {"sibling born {date}"}


def test_a_carried_note_is_screened_by_the_birth_date_of_a_patient_who_arrived_later(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003", reason="brother seen 15/07/2011, dose 400 mg"),
             _patient(2, "02/03/2004", rectype="15/07/2011"),  # a refused code: quoted, nobody's birth date yet
             _patient(3, "03/03/2005", reason="seen 16/07/2011"),
             _patient(4, "04/03/2006", rectype="07/2011")]  # refused, and still nobody's birth date
    night1, _, _ = _night(tmp_path, "1", first, "a")
    assert _notes(night1)["REG[1]"] == "brother seen 15/07/2011, dose 400 mg"
    assert _refused(night1) == [("recommendation_type", "07/2011"), ("recommendation_type", "15/07/2011")]

    night2, said, fresh = _night(tmp_path, "2", [*first, _patient(9, "15/07/2011")], "b", previous=night1)
    assert _notes(night2) == _notes(fresh) == {"REG[1]": "brother seen {date}, dose 400 mg",
                                               "REG[3]": "seen 16/07/2011"}
    assert _refused(night2) == _refused(fresh) == [("recommendation_type", "07/2011"),
                                                   ("recommendation_type", "<hidden>")]
    assert said.carried == 3  # the notes screened where they were carried; the refused birth date's patient
    # harmonised again (its value hidden now), the other refused value's patient carried


def test_a_changed_patient_s_note_is_screened_by_an_unchanged_patient_s_birth_date(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003"), _patient(2, "02/03/2004")]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    night2, said, _ = _night(tmp_path, "2", [first[0] | {"reason": "cousin seen 02/03/2004"}, first[1]], "b",
                             previous=night1)
    assert said.carried == 1 and _notes(night2) == {"REG[1]": "cousin seen {date}"}


def test_a_carried_note_shows_again_what_is_nobody_s_birth_date_any_more_as_a_fresh_load_does(tmp_path: Path) -> None:
    # Three keys stay (the keys' shapes as they were: ILTB run into a word counts from three keys on)
    first = [_patient(1, "01/03/2003", reason="brother seen 15/07/2011"), _patient(2, "02/03/2004"),
             _patient(3, "03/03/2005"), _patient(9, "15/07/2011")]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    assert _notes(night1) == {"REG[1]": "brother seen {date}"}
    night2, said, fresh = _night(tmp_path, "2", first[:3], "b", previous=night1)  # patient 9 is no more
    assert _notes(night2) == _notes(fresh) == {"REG[1]": "brother seen 15/07/2011"}
    assert said.carried == 2  # the screened note's patient is harmonised again: what it hid is not kept


def test_a_night_that_leaves_the_screen_as_it_was_carries_the_notes_as_they_were(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003", reason="brother seen 02/03/2004"), _patient(2, "02/03/2004"),
             _patient(3, "03/03/2005", reason="seen 16/07/2011")]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    night2, said, _ = _night(tmp_path, "2", [*first[:2], first[2] | {"sex": "2"}], "b", previous=night1)
    assert said.carried == 2

    def carried(folder: Path) -> list[dict[str, object]]:  # the unchanged patients' rows, lineage and all
        rows = pq.read_table(folder / "tumour_board_review.parquet").sort_by("source_record_key").to_pylist()
        return [r for r in rows if not r["source_record_key"].endswith("|REG[3]")]
    assert carried(night2) == carried(night1) and _notes(night2)["REG[1]"] == "brother seen {date}"


def test_a_changed_night_reads_each_patient_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen's key shapes, the carry-over's digests and the cut into parts share the keys read."""
    first = [_patient(n, f"{n % 28 + 1:02d}/03/{1990 + n}", reason=f"dose {n} mg") for n in range(1, 41)]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    normalised = []

    def counted(key: str) -> str:
        normalised.append(key)
        return normalise_patient_key(key)
    monkeypatch.setattr(records, "normalise_patient_key", counted)
    folder = tmp_path / "2"
    folder.mkdir()
    now = [*first[:-1], first[-1] | {"reason": "seen ILTB-00001"}]
    said = harmonise_to_folder(BOARD, _export(now, "b"), KEY, "run-2", folder, previous=night1, part_records=10)
    assert said.carried == 39 and _notes(folder)["REG[40]"] == "seen {patient}"
    assert sorted(normalised) == sorted(p["pid"] for p in now)


COUNTRY = SourceMapping.model_validate(BOARD.model_dump(by_alias=True, exclude_unset=True) | {"patient": {
    "from": "REG", "fields": {**BOARD.patient.model_dump(by_alias=True, exclude_unset=True)["fields"],
                              "country": {"column": "country", "case": "upper"}}}})


def _country_night(tmp_path: Path, name: str, patients: list[dict[str, str]], sha: str,
                   previous: Path | None = None):
    """A night (`_night`) of a source whose patient record maps a free text (country, empty unless given)."""
    return _night(tmp_path, name, [{"country": ""} | p for p in patients], sha, previous, mapping=COUNTRY)


def _countries(folder: Path) -> dict[str, str]:
    rows = pq.read_table(folder / "patient_source.parquet").to_pylist()
    return {r["source_record_key"].split("|")[1]: r["country"] for r in rows if r["country"]}


def test_a_carried_patient_record_s_free_text_is_screened_by_patients_who_arrived_later(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003", country="seen 15/07/2011"), _patient(2, "02/03/2004", country="see FR 1234"),
             _patient(3, "03/03/2005")]
    night1, _, _ = _country_night(tmp_path, "1", first, "a")
    assert _countries(night1) == {"REG[1]": "SEEN 15/07/2011", "REG[2]": "SEE FR 1234"}  # nobody's, yet

    night2, said, fresh = _country_night(tmp_path, "2", [*first, _patient(9, "15/07/2011")], "b", previous=night1)
    assert said.carried == 3  # screened where they were carried
    assert _countries(night2) == _countries(fresh) == {"REG[1]": "SEEN {date}", "REG[2]": "SEE FR 1234"}
    # A key of a new shape: nobody is carried over (a record key may be published otherwise: carry_over.py)
    new_shape = {"pid": "FR 9999", "rid": "10", "born": "01/01/2012"}
    night3, said, fresh = _country_night(tmp_path, "3", [*first, _patient(9, "15/07/2011"), new_shape], "c",
                                         previous=night2)
    assert said.carried == 0
    assert _countries(night3) == _countries(fresh) == {"REG[1]": "SEEN {date}", "REG[2]": "SEE {patient}"}


def test_a_carried_patient_record_that_hid_a_date_nobody_was_born_on_any_more_shows_it(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003", country="seen 15/07/2011"), _patient(2, "02/03/2004"),
             _patient(3, "03/03/2005"), _patient(9, "15/07/2011")]  # three keys stay: their shapes as they were
    night1, _, _ = _country_night(tmp_path, "1", first, "a")
    assert _countries(night1) == {"REG[1]": "SEEN {date}"}
    night2, said, fresh = _country_night(tmp_path, "2", first[:3], "b", previous=night1)  # patient 9 is no more
    assert _countries(night2) == _countries(fresh) == {"REG[1]": "SEEN 15/07/2011"}
    assert said.carried == 2  # its patient harmonised again: what the screen hid is not kept


def test_a_note_naming_the_eupid_of_a_patient_of_another_part_or_night_is_screened(tmp_path: Path) -> None:
    fields = BOARD.model_dump(by_alias=True, exclude_none=True)
    fields["patient"]["fields"] |= {"eupid": {"column": "eupid", "case": "upper"}}
    mapping = SourceMapping.model_validate(fields)
    patients = [_patient(n, "", eupid=f"EU{n:08d}", reason=f"sibling of EU{n % 40 + 1:08d}") for n in range(1, 41)]
    folder = tmp_path / "cut"
    folder.mkdir()
    said = harmonise_to_folder(mapping, _export(patients, "f"), KEY, "run-1", folder, part_records=10)
    assert said.parts == 4 and set(_notes(folder).values()) == {"sibling of {patient}"}
    # A note or a refused value naming an EUPID nobody has yet is carried as written; screened once its patient
    # arrives (an EUPID may hold no digit)
    first = [_patient(1, "", eupid="EUAAAA0001", reason="cousin EUBBBB0002, EUCCCCDDDD"),
             _patient(2, "", eupid="EUAAAA0003", rectype="EUCCCCDDDD"),
             _patient(3, "")]  # three keys: ILTB run into a word counts from three keys on, the keys' shapes stay
    night1, _, _ = _night(tmp_path, "1", first, "a", mapping=mapping)
    assert _notes(night1) == {"REG[1]": "cousin EUBBBB0002, EUCCCCDDDD"}
    assert _refused(night1) == [("recommendation_type", "EUCCCCDDDD")]
    night2, said, fresh = _night(tmp_path, "2", [*first, _patient(8, "", eupid="eubbbb0002"),
                                                 _patient(9, "", eupid="EUCCCCDDDD")], "b", previous=night1,
                                 mapping=mapping)
    assert _notes(night2) == _notes(fresh) == {"REG[1]": "cousin {patient}, {patient}"}
    assert _refused(night2) == _refused(fresh) == [("recommendation_type", "<hidden>")]
    assert said.carried == 2  # the note's patient screened where carried, the refused value's harmonised again
