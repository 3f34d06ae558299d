"""What a person types into the warehouse, a reviewer's link note or a centre's comment on a query, is stored
with any patient number, EUPID or birth date in it replaced (etl/transform/screen.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from openpyxl import load_workbook
from shared_build import copy_of

from etl.config import Home
from etl.link.decision import PatientRef, record_decision
from etl.quality.queries import HEADER, send_queries
from etl.quality.responses import import_responses
from etl.transform.pseudonym import PseudonymKey

KEY = SMALL_RUN_KEY


@pytest.fixture(scope="module")
def built(small_run: Home, tmp_path_factory: pytest.TempPathFactory) -> Home:
    return copy_of(small_run, tmp_path_factory.mktemp("typed_text"))


def _one(home: Home, sql: str) -> tuple:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        row = con.execute(sql).fetchone()
        assert row is not None
        return row
    finally:
        con.close()


def _a_birth_day(home: Home) -> str:
    """A day in the birth month of a patient of the warehouse, as a centre may write it."""
    year, month = _one(home, "SELECT birth_year, birth_month FROM core.patient_source WHERE birth_month IS NOT NULL "
                             "ORDER BY birth_year LIMIT 1")
    return f"15/{month:02d}/{year}"


def _an_eupid(home: Home) -> str:
    """An EUPID registry_it delivers, as its staged export holds it: a person's identifier across registries."""
    (staged,) = (home.staging / "registry_it").glob("*.parquet")
    return next(e for e in pq.read_table(staged, columns=["eupid"]).column(0).to_pylist() if e)


def test_a_reviewer_s_note_is_stored_without_patient_numbers_or_birth_dates(built: Home) -> None:
    pairs = _one(built, """
        SELECT a.source_id, a.source_patient_pseudonym, b.source_id, b.source_patient_pseudonym
        FROM core.patient_source a JOIN core.patient_source b ON a.source_id < b.source_id
        WHERE a.link_method <> 'eupid' AND b.link_method <> 'eupid' AND a.patient_id <> b.patient_id
        ORDER BY 1, 2, 3, 4 LIMIT 1""")
    day = _a_birth_day(built)
    note = f"the centre says TREP-000031 ({_an_eupid(built).lower()}) is another child (born {day}); checked 2099-01-02"
    record_decision(built, PatientRef(*pairs[:2]), PatientRef(*pairs[2:]), "unlink", note=note)
    stored = _one(built, "SELECT note FROM meta.link_decision ORDER BY decided_at DESC LIMIT 1")[0]
    assert stored == "the centre says {patient} ({patient}) is another child (born {date}); checked 2099-01-02"


def test_a_centre_s_comment_is_stored_without_patient_numbers_or_birth_dates(built: Home, tmp_path: Path) -> None:
    centre = _one(built, """
        SELECT r.centre_id FROM dq.issue i JOIN stage.record r USING (source_id, source_record_key)
        WHERE r.centre_id IS NOT NULL AND i.severity = 'warning' ORDER BY 1 LIMIT 1""")[0]
    key = PseudonymKey(KEY.encode())
    sent = send_queries(built, centre, key)
    with sent.csv.open(encoding="utf-8-sig", newline="") as handle:
        header, first, *_ = list(csv.reader(handle))
    first[HEADER.index("response")] = "cannot_determine"
    first[HEADER.index("comment")] = f"asked about ILTB-00007 and sacha 03-0042, born {_a_birth_day(built)}"
    answered = tmp_path / "answered.csv"
    with answered.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([header, first])
    summary = import_responses(built, answered, key)
    assert summary.recorded == 1, summary.problems
    stored = _one(built, "SELECT comment FROM meta.query_response ORDER BY imported_at DESC LIMIT 1")[0]
    assert stored == "asked about {patient} and sacha {patient}, born {date}"


def test_a_centre_s_answers_named_after_a_patient_are_stored_without_the_number_or_the_eupid(
        built: Home, tmp_path: Path) -> None:
    """A centre names its returned workbook and a copied sheet after the patient, and writes the patient's EUPID
    in a comment: meta.query_response keeps neither (the file's sha256 tells it apart)."""
    centre = _one(built, "SELECT centre_id FROM dq.issue WHERE source_id = 'registry_it' AND centre_id IS NOT NULL "
                         "ORDER BY 1 LIMIT 1")[0]
    key = PseudonymKey(KEY.encode())
    book = load_workbook(send_queries(built, f"registry_it:{centre}", key).xlsx)
    copy = book.copy_worksheet(book.active)
    copy.title = "pat TREP-000001"
    copy.cell(row=2, column=HEADER.index("response") + 1, value="cannot_determine")
    copy.cell(row=2, column=HEADER.index("comment") + 1, value=f"checked: EUPID {_an_eupid(built)}")
    answered = tmp_path / "answers patient TREP-000001.xlsx"
    book.save(answered)
    summary = import_responses(built, answered, key)
    assert summary.recorded == 1, summary.problems
    assert summary.file_name == "answers patient {patient}.xlsx"
    assert _one(built, "SELECT file_name, comment FROM meta.query_response ORDER BY imported_at DESC LIMIT 1") == (
        "answers patient {patient}.xlsx sheet 'pat {patient}'", "checked: EUPID {patient}")
