"""One returned file with every kind of row, imported in one go: what it records and says, row by row.

The import checks whether a newer batch was answered, and writes the answers and waivers, once for the
whole file (etl/quality/responses.py): these rows pin what it did when it did both an answer at a time,
the file's own earlier answers included (a row of the newer batch before a row of the older one
supersedes it; the older one first, both are taken). On a copy of the shared synthetic run: registry_it's
IT-BO01 has two confirmable warnings of XT-BASIS-VS-MORPHOLOGY (lines 44, 95) and a code not in the list
(line 49); IT-MI02 an age outside the registry's (confirmable), a diagnosis before birth (not) and a
death without its date (line 67), lines 71 and 71.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from test_query_roundtrip import BASIS, KEY, _query

from etl.config import Home, resolve_home
from etl.quality.queries import HEADER, SentBatch, send_queries
from etl.quality.responses import import_responses

pytestmark = pytest.mark.integration
CODE, AGE, BIRTH, DEATH = "CONF-CODE-IN-LIST", "DIAG-AGE-REGISTRY", "DIAG-AFTER-BIRTH", "FU-DEATH-DATE-WHEN-DEAD"
RULE, LINE, VALUE = HEADER.index("rule id"), HEADER.index("line"), HEADER.index("value")
RESPONSE, COMMENT = HEADER.index("response"), HEADER.index("comment")
BATCH, ROW_KEY = HEADER.index("query batch"), HEADER.index("row key")


@pytest.fixture
def home(synthetic_run, tmp_path: Path) -> Home:
    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)
    return resolve_home(tmp_path / "home")


def _sent(batch: SentBatch) -> dict[tuple[str, int], list[str]]:
    """The batch's rows as its CSV holds them, by rule and line."""
    with batch.csv.open(encoding="utf-8-sig", newline="") as handle:
        return {(row[RULE], int(row[LINE])): row for row in list(csv.reader(handle))[1:]}


def _row(sent: dict[tuple[str, int], list[str]], rule: str, line: int, response: str, comment: str = "",
         **changed: str) -> list[str]:
    """A sent row answered, with other cells changed (column name -> text) as a centre might."""
    row = [*sent[rule, line]]
    row[RESPONSE], row[COMMENT] = response, comment
    for name, text in changed.items():
        row[HEADER.index(name.replace("_", " "))] = text
    return row


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([list(HEADER), *rows])
    return path


def test_a_file_of_every_kind_of_row_records_and_reports_each_as_an_answer_at_a_time_did(home, tmp_path):
    old, new, mi02 = (send_queries(home, centre, KEY) for centre in ("IT-BO01", "IT-BO01", "IT-MI02"))
    a, b, m = _sent(old), _sent(new), _sent(mi02)
    earlier = import_responses(home, _write(tmp_path / "earlier.csv", [
        _row(b, BASIS, 95, "confirmed", "first look"), _row(a, CODE, 49, "corrected"), _row(m, AGE, 71, "confirmed")
    ]), KEY)
    assert (earlier.recorded, earlier.waivers_added, earlier.problems) == (3, 2, [])

    summary = import_responses(home, _write(tmp_path / "answers.csv", [
        _row(a, BASIS, 44, "confirmed", "checked"),  # 2: taken, a waiver made
        _row(b, BASIS, 44, "cannot_determine"),  # 3: the newer batch: taken, the waiver of row 2 withdrawn
        _row(b, CODE, 49, "corrected"),  # 4: taken
        _row(a, CODE, 49, "cannot_determine"),  # 5: the older batch after row 4's: not taken
        _row(a, BASIS, 95, "corrected"),  # 6: batch new was answered before: not taken
        _row(m, AGE, 71, "confirmed"),  # 7: as imported before
        _row(m, BIRTH, 71, "confirmed"),  # 8: not confirmable
        _row(m, DEATH, 67, "maybe"),  # 9: not a response
        _row(m, DEATH, 67, "", "asked the ward"),  # 10: a comment without a response
        _row(a, BASIS, 44, "corrected", query_batch="Q-NOT-SENT"),  # 11: a batch never sent
        _row(m, DEATH, 67, "corrected", row_key="0" * 64),  # 12: a row key of no row
        _row(b, CODE, 49, "corrected"),  # 13: row 4 again
        _row(b, BASIS, 95, "cannot_determine"),  # 14: taken, the confirmation imported before withdrawn
        _row(m, DEATH, 67, "corrected"),  # 15: and 16: one query answered twice differently
        _row(m, DEATH, 67, "cannot_determine"),
        _row(a, BASIS, 44, "corrected", value="8000/3"),  # 17: a shown cell edited
        _row(b, BASIS, 44, ""),  # 18: unanswered
    ]), KEY)

    assert {k: v for k, v in vars(summary).items() if k not in ("problems", "warnings")} == {
        "file_name": "answers.csv", "rows": 17, "unanswered": 1, "recorded": 4, "already_imported": 1,
        "repeated": 1, "superseded": 2, "waivers_added": 1, "waivers_not_found": 0, "waivers_withdrawn": 2,
        "erased": 0}
    ids = {old.batch_id: "old", new.batch_id: "new", mi02.batch_id: "mi02"}
    assert [(p.row_number, p.message.replace(old.batch_id, "old").replace(new.batch_id, "new"))
            for p in summary.warnings] == [
        (5, "answers batch old, but the same query was answered 'corrected' in batch new, sent later: the newer "
            "answer stands and this one is not taken"),
        (6, "answers batch old, but the same query was answered 'confirmed' in batch new, sent later: the newer "
            "answer stands and this one is not taken")]
    refused = [
        (8, f"rule {BIRTH} cannot be confirmed: a value it finds cannot be true"),
        (9, "response 'maybe' is not one of corrected, confirmed, cannot_determine (column 'response')"),
        (10, "a comment without a response: choose one of corrected, confirmed, cannot_determine"),
        (11, "query batch 'Q-NOT-SENT' was not sent from this warehouse (column 'query batch')"),
        (12, f"the row key (column 'row key') is not one of batch {mi02.batch_id}'s rows"),
        (15, "answers the same query as row 16 differently ('cannot_determine' there, 'corrected' here); neither"),
        (16, "answers the same query as row 15 differently ('corrected' there, 'cannot_determine' here); neither"),
        (17, "column 'value' changed since the query was sent; only 'response' and 'comment' may be filled in")]
    assert [(p.file_name, p.row_number) for p in summary.problems] == [("answers.csv", n) for n, _ in refused]
    assert [p.message[:len(start)] for p, (_, start) in zip(summary.problems, refused, strict=True)] == [
        start for _, start in refused]

    responses = _query(home, "SELECT batch_id, i.rule_id, i.line, response, comment, file_name, row_number, "
                             "imported_at = max(imported_at) OVER () FROM meta.query_response "
                             "JOIN (SELECT batch_id, row_key, rule_id, json_extract_string(cells, '$[3]')::INTEGER "
                             "      AS line FROM meta.query_item) i USING (batch_id, row_key) "
                             "ORDER BY imported_at, row_number")
    assert [(ids[r[0]], *r[1:]) for r in responses] == [
        ("new", BASIS, 95, "confirmed", "first look", "earlier.csv", 2, False),
        ("old", CODE, 49, "corrected", None, "earlier.csv", 3, False),
        ("mi02", AGE, 71, "confirmed", None, "earlier.csv", 4, False),
        ("old", BASIS, 44, "confirmed", "checked", "answers.csv", 2, True),
        ("new", BASIS, 44, "cannot_determine", None, "answers.csv", 3, True),
        ("new", CODE, 49, "corrected", None, "answers.csv", 4, True),
        ("new", BASIS, 95, "cannot_determine", None, "answers.csv", 14, True)]
    assert [(ids[b], rule, centre) for b, rule, centre in _query(
        home, "SELECT batch_id, rule_id, centre_id FROM meta.waiver")] == [("mi02", AGE, "IT-MI02")]
