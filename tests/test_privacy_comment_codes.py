"""A centre's comment has every day hidden (etl/quality/responses.py), but only digits that read as a date: a code
of as many stays."""

from __future__ import annotations

from etl.quality.responses import _screened_comment
from etl.transform.screen import TextScreen


def test_a_meddra_code_in_a_comment_is_kept_and_the_day_beside_it_is_hidden():
    screen = TextScreen.of([], [])  # nobody's birth known: the days are hidden all the same
    comment = "MedDRA 10019211 ok; nato il 16/01/1995 (19950116)"
    assert _screened_comment(screen, comment) == "MedDRA 10019211 ok; nato il {date} ({date})"
    assert _screened_comment(screen, "MedDRA 10019211 ok") == "MedDRA 10019211 ok"
