"""A patient number run into the letters before it, once a source's keys are known: with keys such as `ID1234`,
`PatID1234.csv` was shown in clear (a key's shape was never matched right after a letter), and so was a note
`seen by PatID1234`. The keys' own letters now may follow letters, their digits as many as the keys'; a name's
ordinary parts (dates, versions, form names, a year) stay as delivered, and so do a note's doses and dates."""

from __future__ import annotations

import logging
import re

import pytest
from test_file_names import german_registry
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.extract.file_names import PatientNumbers, reads_as_patient_number, shown_file_name
from etl.forget import number_in_names
from etl.transform.screen import TextScreen

KEYS = ["ID1234", "ID2345", "ID0001"]
def _three(written: str) -> list[str]:
    return [written.format(i) for i in (1, 2, 3)]


INITIALS = [f"{a}{b}{i:04d}" for i, (a, b) in enumerate((a, b) for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")]


@pytest.mark.parametrize(("keys", "name", "shown"), [
    (KEYS, "PatID1234.csv", "Pat{patient}.csv"),  # a new patient's number too, in any case
    (KEYS, "PatID9876_Verlauf.csv", "Pat{patient}_Verlauf.csv"),
    (KEYS, "PATID9876.csv", "PAT{patient}.csv"),
    (KEYS, "patid9876.csv", "pat{patient}.csv"),  # in a file name in any case (a note's: as the keys write them)
    (["id1234", "id2345", "id0001"], "Patid9876.csv", "Pat{patient}.csv"),
    (_three("ID-{:04d}"), "PatID-9876.csv", "Pat{patient}.csv"),  # joined as the keys join them
    (_three("ID-{:04d}"), "PatID_9876.csv", "Pat{patient}.csv"),  # ... or by another of '-', '_', ' '
    (_three("ILTB-{:05d}"), "PatientILTB-00012.xlsx", "Patient{patient}.xlsx"),
    (_three("IMT-FR01-{:03d}"), "PatIMT-FR01-002.xlsx", "Pat{patient}.xlsx"),
    (_three("P{:06d}"), "FallP123456Verlauf.csv", "Fall{patient}Verlauf.csv"),  # one letter, before six digits
    ([*KEYS, *_three("ILTB{:04d}")], "PatILTB0042.csv", "Pat{patient}.csv"),  # the longer letters, not their end
    # The mirror: a key followed directly by letters (its shape ends in digits, and a digit may not follow)
    (KEYS, "ID1234abc.csv", "{patient}abc.csv"),
    (["123456"], "Fall123456Verlauf.csv", "Fall{patient}Verlauf.csv"),
    (KEYS, "PatID1234abc.csv", "Pat{patient}abc.csv"),
])
def test_a_number_run_into_letters_is_hidden_once_the_keys_are_known(keys, name, shown):
    assert shown_file_name(name, PatientNumbers.of(keys)) == shown


@pytest.mark.parametrize(("keys", "name"), [
    (KEYS, "ISO8601.csv"),  # a word's end before as many digits as the keys': not the keys' letters
    (KEYS, "Report2026.csv"),
    (KEYS, "export_2026.csv"),
    (KEYS, "AE2_v2_part_3.csv"),
    (KEYS, "TREP_export_20261101.csv"),
    (KEYS, "Verlauf_2026-11-01.csv"),
    (KEYS, "PatID123.csv"),
    (KEYS, "PatID_9876.csv"),  # nor a separator put in where the keys write none
    (["ID1234", "ID2345"], "PatID9876.csv"),  # nor the letters of fewer than three keys (initials, a new centre)
    (["P1234"], "Step2026.csv"),  # one letter before four digits: a word's end before a year
    (["ILTB-00001"], "ILTB_FU2.csv"),
    (INITIALS, "ISO8601.csv"),  # letters that vary key by key (initials, SO0482 among them) are no prefix
    (INITIALS, "Report2026.csv"),
])
def test_a_name_s_ordinary_parts_stay_after_letters(keys, name):
    assert shown_file_name(name, PatientNumbers.of(keys)) == name


def test_a_source_s_prefixes_run_into_letters_but_not_a_rare_one():
    # A centre's prefix held by one key in 32 or more of the shape is one; a key's own letters stand alone still
    keys = [f"FR{i:04d}" for i in range(40)] + [f"DE{i:04d}" for i in range(20)] + ["SO0001"]
    numbers = PatientNumbers.of(keys)
    assert shown_file_name("PatDE9999_FR0001.csv", numbers) == "Pat{patient}_{patient}.csv"
    assert shown_file_name("ISO8601_SO0002.csv", numbers) == "ISO8601_{patient}.csv"


def test_a_note_names_a_patient_run_into_letters_and_keeps_doses_and_dates():
    screen = TextScreen.of(KEYS, [])
    note = "seen by PatID9876 (ISO8601 AE2 v2), 1000mg daily since 2026-01-15, COVID19 in 2021, Report2026"
    assert screen.screened(note) == note.replace("PatID9876", "Pat{patient}")
    assert screen.holds("seen by PatID9876") and not screen.holds("1000mg daily since 2026-01-15, AE2, ISO8601")


def test_rtw_forget_finds_the_patient_s_own_number_run_into_letters():
    number = number_in_names("ID1234")
    assert number is not None
    assert number.sub("{patient}", "PatID1234.csv patid1234_v2.csv ID12345.csv") == (
        "Pat{patient}.csv pat{patient}_v2.csv ID12345.csv")
    # ... and reads it there as the patient's number, as the erasure's rename asks before renaming
    found = number.search("PatID1234.csv")
    assert found and reads_as_patient_number("PatID1234.csv", found.span(), PatientNumbers.of(["ID1234"]), [])


HEADER = ("id_record;codice_paziente;codice_centro;sesso;data_nascita;data_diagnosi;data_registrazione;morfologia;"
          "comportamento;topografia;lateralita;base_diagnosi;dimensione_cm;stato_vitale;data_ultimo_contatto;"
          "data_decesso;eupid;note")
NUMBERS = re.compile(r"ID\d{4}", re.IGNORECASE)


def _export(path, *numbers: str) -> None:
    rows = [f"{i};{n};IT-BO01;2;27/03/2010;05/11/2018;04/07/2019;8260;3;C73.9;N;7;1,3;V;18/03/2026;;;"
            for i, n in enumerate(numbers, start=1)]
    path.write_bytes("\r\n".join([HEADER, *rows, ""]).encode("cp1252"))


@pytest.mark.integration
def test_a_file_per_patient_named_run_into_letters_is_shown_without_its_number(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    home, sources, folder = german_registry(tmp_path, "Verlauf*.csv")
    _export(folder / "Verlauf_20261101.csv", "ID1234", "ID2345")  # the first night stages the keys
    assert pipeline.run(home, key_value="run-into-letters-key", sources_dir=sources).sources_failed == []
    # The next night's export is named by a patient's number run into 'Pat' (it holds everyone: it supersedes)
    _export(folder / "Verlauf_PatID3456.csv", "ID1234", "ID2345", "ID3456")
    caplog.set_level(logging.INFO, logger="rtw")
    summary = pipeline.run(home, key_value="run-into-letters-key", sources_dir=sources)
    assert summary.sources_failed == []
    assert ("Verlauf_Pat{patient}.csv",) in query_rows(home, "SELECT file_name FROM meta.source_file")
    status = CliRunner().invoke(app, ["status", "--home", str(home.root)], env={"COLUMNS": "400"})
    said = [*summary.notices, summary.message or "", *(r.getMessage() for r in caplog.records), status.output]
    texts = [v for (v,) in query_rows(home, "SELECT file_name FROM meta.source_file UNION ALL "
                                            "SELECT DISTINCT source_file FROM stage.record")]
    assert [t for t in [*said, *texts] if NUMBERS.search(t)] == []
