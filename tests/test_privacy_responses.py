"""A centre's returned answers: no birth date or patient number a centre typed into a cell reaches the
terminal, the log or meta.query_response (README, Privacy)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl.config import Home
from etl.forget import forget
from etl.quality.queries import HEADER, _write_csv, cell_text, row_key, send_queries
from etl.quality.responses import ImportSummary, _Item, check_rows, import_responses, read_returned
from etl.transform.pseudonym import PseudonymKey, source_pseudonym

KEY = PseudonymKey(b"test-key-0123456789abcdef0123456789")
SENT = ["4103e9eb9f8c0177077c9457", "registry_it", "REG", 2, "", "birth_date", "<hidden>", "CONF-DATE-VALID",
        "error", "A date does not exist", "a real calendar date"]
IDENTITY = ("CONF-DATE-VALID", "registry_it", "4103e9eb9f8c0177077c9457|REG[1]", "birth_date")


def test_a_response_holding_the_corrected_birth_date_and_the_patient_number_is_quoted_without_their_digits(tmp_path):
    """A centre writes its correction into the response column: the refusal says so, its digits written 9."""
    item = _Item(batch_id="Q1", row_key=row_key(KEY, "Q1", IDENTITY, SENT), rule_id=IDENTITY[0],
                 source_id=IDENTITY[1], source_record_key=IDENTITY[2], field=IDENTITY[3], value_hash="h",
                 cells=tuple(cell_text(c) for c in SENT), centre_id="IT-BO01", sent_at=datetime.now(UTC))
    path = tmp_path / "answers.csv"
    _write_csv(path, [[*SENT, "corretto: nato il 27/03/2003 (TREP-000001)", None, "Q1", item.row_key]])
    summary = ImportSummary(path.name)

    assert check_rows(list(read_returned(path)), path.name, {("Q1", item.row_key): item}, {"Q1"}, {}, KEY,
                      summary) == []
    (problem,) = summary.problems
    assert str(problem) == ("answers.csv row 2: response 'corretto: nato il 99/99/9999 (TREP-999999)' is not one of "
                            "corrected, confirmed, cannot_determine (column 'response')")


def _answered(home: Home, tmp_path: Path, held: bool) -> str:
    """The stored comment of an answer "born 16/01/1995" to a query about a patient whose birth month the
    warehouse holds (`held`) or does not (their registration quarantined). No patient of the small run is
    born in January 1995, so the typed-text screen alone keeps the day in both."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM core.patient_source WHERE birth_year = 1995 AND birth_month = 1"
                           ).fetchone() == (0,)
        source_id, centre, pseudonym = con.execute(f"""
            SELECT q.source_id, q.centre_id, split_part(q.source_record_key, '|', 1) AS pseudonym
            FROM dq.quarantine q WHERE q.centre_id IS NOT NULL AND {'' if held else 'NOT'} EXISTS (
                SELECT 1 FROM core.patient_source p WHERE p.source_id = q.source_id AND p.birth_month IS NOT NULL
                AND p.source_patient_pseudonym = split_part(q.source_record_key, '|', 1))
            ORDER BY 1, 2, 3 LIMIT 1""").fetchone()
    finally:
        con.close()
    key = PseudonymKey(SMALL_RUN_KEY.encode())
    sent = send_queries(home, f"{source_id}:{centre}", key)
    with sent.csv.open(encoding="utf-8-sig", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    row = next(r for r in rows if r[HEADER.index("patient pseudonym")] == pseudonym)
    row[HEADER.index("response")] = "cannot_determine"
    row[HEADER.index("comment")] = "nato il 16/01/1995, visto 2 volte"
    answered = tmp_path / f"answered_{held}.csv"
    with answered.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    assert import_responses(home, answered, key).recorded == 1
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        (comment,) = con.execute("SELECT comment FROM meta.query_response ORDER BY imported_at DESC LIMIT 1"
                                 ).fetchone()
    finally:
        con.close()
    return comment


def test_a_comment_is_stored_without_the_day_it_gives_whether_the_patient_s_birth_month_is_held_or_not(
        small_run, tmp_path):
    """The centre answers a query with the day of birth: about a patient whose registration is quarantined (a
    refused birth date, say), whose birth month the warehouse does not hold, or about one whose month it holds,
    the wrong one the centre corrects (the day is in another month, which the typed-text screen does not know):
    every day is hidden in a comment."""
    home = copy_of(small_run, tmp_path)
    assert _answered(home, tmp_path, held=False) == "nato il {date}, visto 2 volte"
    assert _answered(home, tmp_path, held=True) == "nato il {date}, visto 2 volte"


def test_an_answer_about_a_patient_erased_since_the_batch_was_sent_is_not_taken_with_a_warning(small_run, tmp_path):
    """The patient withdraws consent (rtw forget) while the centre answers: their query rows are gone, so the row
    key is no batch's row; the import says why and takes nothing, without blaming the centre for editing it."""
    home = copy_of(small_run, tmp_path)
    key = PseudonymKey(SMALL_RUN_KEY.encode())
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        (centre,) = con.execute("SELECT min(centre_id) FROM dq.issue WHERE source_id = 'registry_it'").fetchone()
    finally:
        con.close()
    sent = send_queries(home, f"registry_it:{centre}", key)
    with sent.csv.open(encoding="utf-8-sig", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    for row in rows:
        row[HEADER.index("response")] = "cannot_determine"
    answered = tmp_path / "answered.csv"
    with answered.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    pseudonym = rows[0][HEADER.index("patient pseudonym")]
    (staged,) = (home.staging / "registry_it").glob("*.parquet")
    (number,) = {k for k in pq.read_table(staged, columns=["codice_paziente"]).column(0).to_pylist()
                 if source_pseudonym(key, "registry_it", k) == pseudonym}
    forget(home, "registry_it", number, key_value=SMALL_RUN_KEY)
    summary = import_responses(home, answered, key)
    erased = [n for n, row in enumerate(rows, start=2) if row[HEADER.index("patient pseudonym")] == pseudonym]
    assert summary.problems == []
    assert (summary.erased, summary.recorded) == (len(erased), len(rows) - len(erased))
    assert [str(w) for w in summary.warnings] == [
        f"answered.csv row {n}: the patient of this row was erased (rtw forget) after the batch was sent; not taken"
        for n in erased]
