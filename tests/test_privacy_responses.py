"""A centre's returned answers as the import's messages quote them: no birth date or patient number a
centre typed into a cell reaches the terminal or the log (README, Privacy)."""

from __future__ import annotations

from datetime import UTC, datetime

from etl.quality.queries import _write_csv, cell_text, row_key
from etl.quality.responses import ImportSummary, _Item, check_rows, read_returned
from etl.transform.pseudonym import PseudonymKey

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
