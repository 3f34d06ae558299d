"""`rtw forget` of a patient whose person stays through another source: no kept marts set keeps the
erased patient's contribution under the surviving person's id."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline
from etl.config import SOURCES_DIR, Home
from etl.extract.adapter import STAGED_NAME
from etl.forget import forget
from etl.transform.mapping import load_mapping
from etl.transform.pseudonym import PseudonymKey, source_pseudonym
from etl.transform.records import staged_patient_keys

KEY = SMALL_RUN_KEY


@pytest.fixture(scope="module")
def built(small_run: Home, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A small home with two kept marts sets: the session's small run, copied, and a second run."""
    home = copy_of(small_run, tmp_path_factory.mktemp("forget_marts"))
    assert pipeline.run(home, key_value=KEY, force=True).status == "completed"
    assert len(list((home.marts / "runs").iterdir())) >= 2
    yield home


def _linked_patient(home: Home) -> tuple[str, str, str]:
    """(source, patient number, person) of a patient of the sacha_fr export whose person another source links."""
    key = PseudonymKey(KEY.encode())
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        person_of = dict(con.execute(
            "SELECT source_patient_pseudonym, patient_id FROM core.patient_source WHERE source_id = 'sacha_fr' "
            "AND patient_id IN (SELECT patient_id FROM core.patient_source GROUP BY 1 "
            "HAVING count(DISTINCT source_id) > 1)").fetchall())
    finally:
        con.close()
    with (home.root / "truth" / "links.csv").open() as truth:
        for row in csv.DictReader(truth):
            pseudonym = source_pseudonym(key, row["source_id"], row["source_patient_key"])
            if row["source_id"] == "sacha_fr" and pseudonym in person_of:
                return "sacha_fr", row["source_patient_key"], person_of[pseudonym]
    raise AssertionError("no sacha_fr patient linked to another source")


def _rows_naming(home: Home, person: str, source_id: str) -> list[str]:
    """Kept marts rows of the person that list the source among theirs."""
    found = []
    for path in sorted((home.marts / "runs").glob("*/*.parquet")):
        table = pq.read_table(path)
        if "patient_id" not in table.column_names or "sources" not in table.column_names:
            continue
        frame = table.to_pandas()
        frame = frame[frame.patient_id == person]
        found += [f"{path.parent.name}/{path.name}" for sources in frame.sources if source_id in list(sources)]
    return found


def test_no_kept_set_keeps_the_patient_under_a_surviving_person(built: Home, tmp_path: Path) -> None:
    home = copy_of(built, tmp_path)
    source_id, patient, person = _linked_patient(home)
    assert _rows_naming(home, person, source_id)  # the kept sets hold the patient's contribution

    done = forget(home, source_id, patient, key_value=KEY)
    assert not done.person_removed
    assert _rows_naming(home, person, source_id) == []
    # The sets from before the erasure (their aggregates count the patient) are gone; current is the new set.
    current = Path(os.path.realpath(home.marts / "current"))
    assert [p for p in (home.marts / "runs").iterdir() if not p.name.startswith(".")] == [current]
    frame = pq.read_table(current / "patient_summary.parquet").to_pandas()
    assert (frame.patient_id == person).sum() == 1  # the person stays, through the other source


def test_when_the_new_set_cannot_be_written_the_kept_sets_lose_the_person(built: Home, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import etl.load.marts

    home = copy_of(built, tmp_path)
    source_id, patient, person = _linked_patient(home)
    sets = sorted(p.name for p in (home.marts / "runs").iterdir())

    def fails(*_: object) -> list[Path]:
        raise OSError("disk full")

    monkeypatch.setattr(etl.load.marts, "export_parquet", fails)
    forget(home, source_id, patient, key_value=KEY)
    assert sorted(p.name for p in (home.marts / "runs").iterdir()) == sets
    for path in (home.marts / "runs").glob("*/*.parquet"):
        table = pq.read_table(path)
        if "patient_id" in table.column_names:
            assert person not in table.column("patient_id").to_pylist(), path


def _held_back_patient(home: Home) -> tuple[str, str, str]:
    """(source, patient number, pseudonym) of a loaded patient whose record marts.held_back_endpoints lists, in
    its list column source_record_keys."""
    key = PseudonymKey(KEY.encode())
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        listed = con.execute("SELECT DISTINCT h.source_id, split_part(k.key, '|', 1) FROM marts.held_back_endpoints h, "
                             "unnest(h.source_record_keys) AS k(key) ORDER BY ALL").fetchall()
        loaded = set(con.execute("SELECT DISTINCT source_id, split_part(source_record_key, '|', 1) "
                                 "FROM stage.record").fetchall())
    finally:
        con.close()
    for source_id, pseudonym in [p for p in listed if p in loaded]:
        mapping = load_mapping(SOURCES_DIR / f"{source_id}.yaml")
        staged = [p for p in (home.staging / source_id).iterdir() if STAGED_NAME.fullmatch(p.name)]
        for patient in sorted({k for export in staged for k in staged_patient_keys(export, mapping)}):
            if source_pseudonym(key, source_id, patient) == pseudonym:
                return source_id, patient, pseudonym
    raise AssertionError("no loaded patient with a held-back record")


def test_when_the_new_set_cannot_be_written_the_kept_sets_lose_the_patient_from_their_lists(
        built: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # held_back_endpoints lists the held-back records' keys in a list column: the scrub looked at text columns
    # only, so the row, the patient's pseudonym in it, stayed in every kept set.
    import etl.load.marts

    home = copy_of(built, tmp_path)
    source_id, patient, pseudonym = _held_back_patient(home)
    kept = sorted((home.marts / "runs").glob("*/held_back_endpoints.parquet"))
    rows = {path: pq.read_table(path).to_pylist() for path in kept}

    def fails(*_: object) -> list[Path]:
        raise OSError("disk full")

    monkeypatch.setattr(etl.load.marts, "export_parquet", fails)
    forget(home, source_id, patient, key_value=KEY)
    for path, before in rows.items():
        theirs = [r for r in before if any(k.startswith(f"{pseudonym}|") for k in r["source_record_keys"])]
        assert theirs, path  # the set listed the patient
        # The rows listing the patient go whole (their counts count the patient); the others stay as they were.
        assert pq.read_table(path).to_pylist() == [r for r in before if r not in theirs]
