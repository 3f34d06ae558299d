"""A free text is screened by every patient of its source, whichever part harmonises it and whichever night
delivered it (etl/transform/parts.py `source_screen`, etl/transform/carry_over.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from test_harmonise_screen import BOARD, KEY, ROW

from etl.transform.parts import harmonise_to_folder

FILE = {"source_file": "board.csv"}


def _export(patients: list[dict[str, str]], sha: str) -> dict[str, pa.Table]:
    return {"REG": pa.Table.from_pylist([ROW | p | FILE | {"_line": str(line), "source_file_sha256": sha * 64}
                                         for line, p in enumerate(patients, start=2)])}


def _patient(number: int, born: str, **values: str) -> dict[str, str]:
    return {"pid": f"ILTB-{number:05d}", "rid": str(number), "born": born} | values


def _night(tmp_path: Path, name: str, patients: list[dict[str, str]], sha: str, previous: Path | None = None):
    """The harmonised folder of a night's export, what harmonising it said, and a fresh load of it."""
    folder, fresh = tmp_path / name, tmp_path / f"{name}-fresh"
    folder.mkdir()
    fresh.mkdir()
    said = harmonise_to_folder(BOARD, _export(patients, sha), KEY, f"run-{name}", folder, previous=previous)
    harmonise_to_folder(BOARD, _export(patients, sha), KEY, f"run-{name}", fresh)
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


def test_a_changed_patient_s_note_is_screened_by_an_unchanged_patient_s_birth_date(tmp_path: Path) -> None:
    first = [_patient(1, "01/03/2003"), _patient(2, "02/03/2004")]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    night2, said, _ = _night(tmp_path, "2", [first[0] | {"reason": "cousin born 02/03/2004"}, first[1]], "b",
                             previous=night1)
    assert said.carried == 1 and _notes(night2) == {"REG[1]": "cousin born {date}"}
