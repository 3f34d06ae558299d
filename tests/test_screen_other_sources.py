"""A free text is screened by the keys' shapes of every other source too (etl/transform/screen.py `others`): a
tumour board's note names a registry's patient (`see registry TREP-000002`). A record key is not: its shape
test is the source's own (`holds_number`)."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from test_screen_whole_source import BOARD, KEY, _export, _night, _notes, _patient

from etl import pipeline
from etl.config import SOURCES_DIR, Home
from etl.extract.file_names import PatientNumbers
from etl.synth import generate
from etl.transform.other_sources import keep_shapes, other_source_shapes, source_shapes
from etl.transform.parts import harmonise_to_folder
from etl.transform.screen import TextScreen

REGISTRY = PatientNumbers.of([f"TREP-{n:06d}" for n in range(1, 41)])


def _others() -> list[frozenset[str]]:
    return [REGISTRY.text_shapes]


def test_another_source_s_patient_number_is_hidden_in_a_free_text_but_not_in_a_record_key() -> None:
    own = PatientNumbers.of([f"ILTB-{n:05d}" for n in range(1, 41)])
    screen = TextScreen(own, list, others=_others)
    assert screen.screened("see registry TREP-000002 and ILTB-00003") == "see registry {patient} and {patient}"
    assert screen.screened("see registry TREP – 000731, dose 400 mg") == "see registry {patient}, dose 400 mg"
    assert screen.holds("TREP-000002")
    assert not screen.holds_number("TREP-000002") and screen.holds_number("ILTB-00003")
    alone = TextScreen(own, list)
    assert alone.screened("see registry TREP-000002") == "see registry TREP-000002"
    assert alone.key_fingerprint(b"s") == screen.key_fingerprint(b"s")  # a record key is judged as before
    assert alone.fingerprint(b"s") != screen.fingerprint(b"s")  # a carried text is screened anew


def test_a_carried_note_is_screened_anew_once_another_source_s_keys_are_known(tmp_path: Path) -> None:
    patients = [_patient(1, "01/03/2003", reason="as registry patient TREP-000002"), _patient(2, "02/03/2004")]
    night1, _, _ = _night(tmp_path, "1", patients, "a")
    assert _notes(night1) == {"REG[1]": "as registry patient TREP-000002"}  # no other source's keys yet

    night2, fresh = tmp_path / "2", tmp_path / "2-fresh"
    night2.mkdir()
    fresh.mkdir()
    said = harmonise_to_folder(BOARD, _export(patients, "a"), KEY, "run-2", night2, previous=night1, others=_others)
    harmonise_to_folder(BOARD, _export(patients, "a"), KEY, "run-2", fresh, others=_others)
    assert _notes(night2) == _notes(fresh) == {"REG[1]": "as registry patient {patient}"}
    assert said.carried == 2  # screened where carried, not harmonised again


def _rows(path: Path, encoding: str = "utf-8-sig") -> list[list[str]]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.reader(f, delimiter=";"))


def _plant_note(home: Home) -> str:
    """A tumour board's reason naming a registry_it patient, in iLTB's export; the number named."""
    registry = _rows(next((home.landing / "registry_it").glob("*.csv")), "latin-1")
    named = registry[1][registry[0].index("codice_paziente")]
    advice = home.landing / "iltb" / "ILTB_ADVICE.csv"
    rows = _rows(advice)
    rows[1][rows[0].index("REASON_NF")] = f"registry patient {named} had the same agent"
    with advice.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, delimiter=";", lineterminator="\r\n").writerows(rows)
    return named


def _notes_loaded(home: Home) -> list[str]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT reason_not_followed FROM core.tumour_board_review "
                                          "WHERE reason_not_followed LIKE 'registry patient%'").fetchall()]


def test_a_tumour_board_note_naming_a_registry_patient_reaches_the_warehouse_without_the_number(
        small_run, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    named = _plant_note(home)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.status == "completed" and "iltb" in summary.sources_changed
    assert _notes_loaded(home) == ["registry patient {patient} had the same agent"]
    assert named not in {row[0] for row in duckdb.connect(str(home.warehouse), read_only=True).execute(
        "SELECT reason_not_followed FROM core.tumour_board_review").fetchall()}


def test_a_note_loaded_before_the_registry_was_first_staged_is_screened_again_the_next_night(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A first night prepares iLTB before registry_it (one by one, by name): its note is loaded as written. The next
    night, nothing delivered, finds it holding a number of registry_it's keys' shapes and loads iLTB again."""
    home = Home(tmp_path / "home")
    generate(home.root, patients=40, seed=12)
    named = _plant_note(home)
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).status == "completed"
    assert _notes_loaded(home) == [f"registry patient {named} had the same agent"]  # registry_it not staged yet

    with caplog.at_level(logging.WARNING, logger="rtw"):
        again = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert again.status == "completed" and again.sources_changed == ["iltb"]
    assert _notes_loaded(home) == ["registry patient {patient} had the same agent"]
    assert ("iltb: a free text it loaded holds a number shaped like another source's patient keys, known since: "
            "loaded again") in caplog.text
    # crizotinib_imt, prepared first, knew no other source's keys either; its notes hold none of them, and say so
    (checked,) = (home.staging / "crizotinib_imt" / "harmonised").iterdir()
    assert any("TREP" in shape for shape in json.loads((checked / "screened_with.json").read_text()))
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).sources_changed == []  # and not the night after


def test_a_last_load_whose_screen_cannot_be_told_is_loaded_again(small_run, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    home = copy_of(small_run, tmp_path)
    (said,) = (home.staging / "iltb" / "harmonised").glob("*/screened_with.json")
    said.write_text("5")  # not a list of shapes
    with caplog.at_level(logging.WARNING, logger="rtw"):
        assert pipeline.run(home, key_value=SMALL_RUN_KEY).sources_changed == ["iltb"]
    assert "iltb: its last load's free text cannot be read for the other sources' patient keys" in caplog.text


def test_a_source_s_harmonise_keeps_the_shapes_of_its_keys_for_the_others_until_its_mapping_changes(
        tmp_path: Path) -> None:
    home, sources = Home(tmp_path / "home").ensure(), tmp_path / "sources"
    (home.staging / "registry_it").mkdir(parents=True)  # no export staged: only what its harmonise kept tells
    sources.mkdir()
    shutil.copy2(SOURCES_DIR / "registry_it.yaml", sources)
    keep_shapes(home, "registry_it", sources / "registry_it.yaml", TextScreen(REGISTRY, list))
    assert source_shapes(home, sources) == {"registry_it": REGISTRY.text_shapes}
    with (sources / "registry_it.yaml").open("a") as mapping:
        mapping.write("\n# edited\n")  # its key may be read from another column now
    assert source_shapes(home, sources) == {"registry_it": frozenset()}  # read again from its staged exports


def test_the_other_sources_keys_are_kept_read_once_and_an_unreadable_export_is_passed_by(
        small_run, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    before = other_source_shapes(home, "iltb")  # by the staging's folders, sorted
    assert len(before) == 4 and all(before)
    assert not any("ILTB" in shape for shapes in before for shape in shapes)  # the source's own are its own
    registry = home.staging / "registry_it"
    kept = home.staging / ".key_shapes" / "registry_it.json"  # for the next source's harmonise: shapes, no number
    assert not re.search(rb"TREP.?\d", kept.read_bytes())
    assert other_source_shapes(home, "iltb") == before

    staged = next(p for p in registry.iterdir() if p.suffix == ".parquet")
    staged.write_bytes(b"not Parquet: replaced under the read")
    assert other_source_shapes(home, "iltb") == before  # kept for the exports staged: not read again
    kept.unlink()
    after = other_source_shapes(home, "iltb")
    assert after == [frozenset() if any("TREP" in shape for shape in shapes) else shapes for shapes in before]
    assert not kept.exists()  # an export not read keeps nothing: the next harmonise reads them again


def test_another_source_whose_mapping_cannot_be_read_keeps_the_shapes_last_read(
        small_run, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home, sources = copy_of(small_run, tmp_path), tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    before = other_source_shapes(home, "iltb", sources)
    (sources / "registry_it.yaml").write_text("patient: [not a mapping")
    with caplog.at_level(logging.WARNING):
        assert other_source_shapes(home, "iltb", sources) == before
    assert "registry_it: its patient keys cannot be read for the screen of another source's free text" in caplog.text
