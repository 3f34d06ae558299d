"""`rtw forget`'s file scrubs where an export or a derived file holds the patient in an unusual way: a CSV
with a byte order mark, a query list whose record spans lines, a list column in a kept marts set, a centre's
later increment, the same export sent again under a new name, an old copy today's mapping cannot read."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from hostile_home import rtw
from shared_build import copy_of
from test_forget import _person_of, _registry_key, _sacha_key, _traces
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.config import SOURCES_DIR, Home, resolve_home
from etl.crash import CRASH_ENV
from etl.extract.delimited import ADAPTER
from etl.extract.landing import LandingFile, archive, sha256_of
from etl.forget import forget, scrub_export_copies
from etl.quality.queries import HEADER
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.pseudonym import PseudonymKey, load_key, source_pseudonym

KEY = SMALL_RUN_KEY  # the shared run's: its home is copied, not generated and loaded again

CSV_MAPPING = SourceMapping.model_validate({
    "source_id": "registry_it", "title": "Registro", "format": "csv", "files": "*.csv", "record_set": "REG",
    "patient_key": "codice_paziente", "record_key": "REG[{id_record}]",
    "patient": {"from": "REG", "fields": {}}, "tables": {}, "options": {"encoding": "utf-8"}})


def test_a_csv_with_a_byte_order_mark_loses_the_patient_whose_key_is_its_first_column(tmp_path: Path) -> None:
    # Read as `encoding: utf-8`, the mark stays on the first header field: staging names the column without
    # it, and the archive copy's rewrite looked for the patient key under the name with it, so kept the row.
    path = tmp_path / "TREP_export_20261101.csv"
    path.write_bytes(b"\xef\xbb\xbfcodice_paziente;id_record;sesso\nIT-0001;1;1\nIT-0002;2;2\nIT-0003;3;1\n")
    staged = tmp_path / "staged.parquet"
    ADAPTER.stage(path, staged, ADAPTER.read_options(CSV_MAPPING), {"source_file": path.name,
                                                                     "source_file_sha256": "abc"})
    assert pq.read_table(staged).column("codice_paziente").to_pylist() == ["IT-0001", "IT-0002", "IT-0003"]

    assert ADAPTER.without_patients(path, CSV_MAPPING, lambda key: key == "IT-0002")
    assert path.read_bytes() == b"\xef\xbb\xbfcodice_paziente;id_record;sesso\nIT-0001;1;1\nIT-0003;3;1\n"


def test_a_query_list_loses_the_whole_record_of_the_patient_when_a_value_spans_lines(small_run: Home,
                                                                                       tmp_path: Path) -> None:
    # A refused value quoted with a line break (a centre's note typed into a coded field) spans two lines of the
    # list: dropping the lines that name the pseudonym kept the rest of the patient's record, the note with it.
    home = copy_of(small_run, tmp_path)
    patient = _registry_key(home.landing)
    pseudonym = source_pseudonym(load_key(home.key_file, KEY), "registry_it", patient)
    sent = home.reports / "sent" / "queries_registry_it_IT-TO01.csv"
    sent.parent.mkdir()
    columns = [HEADER[i] for i in (0, 1, 5, 6)]  # patient pseudonym, source, field, value
    others = [[f"{n:024x}", "registry_it", "lateralita", "X"] for n in (1, 2)]
    theirs = [pseudonym, "registry_it", "lateralita", "S\nSEE NOTE ROSSI MARIO"]
    with sent.open("w", newline="", encoding="utf-8-sig") as out:  # as the query lists are written
        csv.writer(out).writerows([columns, others[0], theirs, others[1]])

    done = forget(home, "registry_it", patient, key_value=KEY)
    assert str(sent) in done.files_rewritten
    assert b"ROSSI" not in sent.read_bytes()
    with sent.open(newline="", encoding="utf-8-sig") as kept:
        assert list(csv.reader(kept)) == [columns, *others]


def test_the_centres_removal_of_an_erased_patient_leaves_no_number_in_archive_or_staging(small_run: Home,
                                                                                          tmp_path: Path) -> None:
    # The centre removes the patient from its next exports, as asked: an ODM increment's Remove names the patient
    # and is no record, so harmonise left nothing out of it, and only exports it left records out of were scrubbed.
    home = copy_of(small_run, tmp_path)
    shutil.rmtree(home.root / "truth")  # the generator's answer key, not part of a warehouse home
    patient = _sacha_key(home.landing)
    forget(home, "sacha_fr", patient, key_value=KEY)
    increment = home.landing / "sacha_fr" / "SACHA_ODM_20261102.xml"
    increment.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
        'FileOID="SACHA.INC.20261102" FileType="Transactional" PriorFileOID="SACHA.EXPORT.20261101" '
        'CreationDateTime="2026-11-02T01:30:00Z" ODMVersion="1.3.2">\n<ClinicalData StudyOID="SACHA" '
        f'MetaDataVersionOID="v1">\n<SubjectData SubjectKey="{patient}" TransactionType="Remove"/>\n'
        '</ClinicalData>\n</ODM>\n', encoding="utf-8")
    os.utime(increment, (time.time() - 3600, time.time() - 3600))

    assert pipeline.run(home, key_value=KEY).status == "completed"
    assert [p.name for p in (home.archive / "sacha_fr").glob("*__SACHA_ODM_20261102.xml")]  # archived, scrubbed
    assert _traces(home, [patient], set()) == []


def _landed(source_id: str, export: Path) -> LandingFile:
    return LandingFile(source_id, export, sha256_of(export), export.stat().st_size, "export", date(2026, 11, 1))


def test_the_same_export_sent_again_under_a_new_name_is_not_archived_again_with_the_patient(small_run: Home,
                                                                                             tmp_path: Path) -> None:
    # The centre sends the same bytes with a new date in the name: no copy nor tombstone had that name, so the
    # run archived it again from landing/, the erased patient in it, and nothing harmonised it (its content
    # loaded already) to scrub it.
    home = resolve_home(tmp_path / "home").ensure()
    key = PseudonymKey(b"k")
    patient = _registry_key(small_run.landing)
    erased = {source_pseudonym(key, "registry_it", patient)}
    delivered = {"registry_it": next((small_run.landing / "registry_it").glob("*.csv")).read_bytes(),
                 "esmart": b"HEADER RECORD*******LIBRARY stands in for a SAS file holding the erased patient"}
    for source_id, name in (("registry_it", "TREP_export_20261101.csv"), ("esmart", "ESMART_DM_20261101.xpt")):
        export = home.landing / source_id / name
        export.parent.mkdir(parents=True)
        export.write_bytes(delivered[source_id])
        first = _landed(source_id, export)
        archive(first, home.archive)
        # The CSV copy is rewritten without the patient; the SAS file, a binary copy, is deleted.
        scrub_export_copies(home, load_mapping(SOURCES_DIR / f"{source_id}.yaml"), key, erased, [first.sha256])
        archive(_landed(source_id, export.rename(export.with_name(name.replace("20261101", "20261102")))),
                home.archive)

    copies = sorted((home.archive / "registry_it").iterdir())
    assert [p.name.partition("__")[2] for p in copies] == ["TREP_export_20261101.csv", "TREP_export_20261102.csv"]
    assert copies[0].read_bytes() == copies[1].read_bytes()  # the copy sent again is the one rewritten
    assert patient.encode() in delivered["registry_it"] and patient.encode() not in copies[1].read_bytes()
    assert [p.name.partition("__")[2] for p in (home.archive / "esmart").iterdir()] == ["ESMART_DM_20261101.xpt.erased"]


def test_a_copy_of_an_export_read_under_an_earlier_encoding_loses_the_patient(tmp_path: Path) -> None:
    # The registry moved to UTF-8 exports, and its mapping with it: an older snapshot's copy, kept in cp1252,
    # could not be decoded, and the erasure stopped after its publish.
    path = tmp_path / "TREP_export_20261101.csv"
    path.write_bytes("codice_paziente;id_record;note\nIT-0001;1;Forlì\nIT-0002;2;è stata operata\n".encode("cp1252"))
    assert ADAPTER.without_patients(path, CSV_MAPPING, lambda key: key == "IT-0002")
    assert path.read_bytes() == "codice_paziente;id_record;note\nIT-0001;1;Forlì\n".encode("cp1252")


def test_an_archive_copy_that_cannot_be_rewritten_is_deleted_and_said(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    # One copy that could not be rewritten stopped the erasure's file steps, every copy after it left as it was.
    home = resolve_home(tmp_path / "home").ensure()
    export = home.landing / "sacha_fr" / "SACHA_ODM_20261101.xml"
    export.parent.mkdir(parents=True)
    export.write_bytes(b'<?xml version="1.0"?><ODM><ClinicalData><SubjectData SubjectKey="01-0001">')  # cut short
    landed = _landed("sacha_fr", export)
    copy = archive(landed, home.archive)
    with caplog.at_level(logging.WARNING):
        rewritten, deleted = scrub_export_copies(home, load_mapping(SOURCES_DIR / "sacha_fr.yaml"), PseudonymKey(b"k"),
                                                 {"p"}, [landed.sha256], [])
    assert (rewritten, deleted) == ([], [str(copy)])
    assert [p.name for p in copy.parent.iterdir()] == [f"{copy.name}.erased"]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"sacha_fr: the archive copy {copy.name} cannot be rewritten without the erased patient" in said


def test_an_erasure_killed_after_its_publish_is_completed_by_forget_again(small_run: Home, tmp_path: Path) -> None:
    # Asked again, forget refused the patient as "erased already", and their number stayed in the files.
    home = copy_of(small_run, tmp_path)
    shutil.rmtree(home.root / "truth")  # the generator's answer key, not part of a warehouse home
    patient = _registry_key(home.landing)
    pseudonym = source_pseudonym(load_key(home.key_file, KEY), "registry_it", patient)
    person = _person_of(home, "registry_it", pseudonym)
    asked = ["forget", "--source", "registry_it", "--patient", patient, "--yes"]
    killed = rtw(home.root, *asked, env={"RTW_PSEUDONYM_KEY": KEY, CRASH_ENV: "after_swap"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert _traces(home, [patient], set())  # published, the files not scrubbed yet
    assert list(home.root.glob(".forget-pending-*"))  # what it must scrub: noted before the publish

    again = CliRunner().invoke(app, [*asked, "--home", str(home.root)], env={"RTW_PSEUDONYM_KEY": KEY})
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert "this patient was erased already (meta.erasure); the erasure's file steps were done again" in said
    assert patient not in said
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        stays = con.execute("SELECT count(*) FROM core.patient WHERE patient_id = ?", [person]).fetchone() == (1,)
    finally:
        con.close()
    needles = [patient, pseudonym, *([] if stays else [person])]  # a person another source links stays
    assert _traces(home, needles, {pseudonym}) == []
    assert not list(home.root.glob(".forget-pending-*"))  # the erasure's note, gone with its file steps done
