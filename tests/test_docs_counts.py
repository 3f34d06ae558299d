"""Counts the README states in words are the counts of what it describes: its analyst questions, the shipped
sources. A question or source added and the sentence left as it was tells the reader something is missing."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen"]


def test_the_analyst_section_says_how_many_questions_it_answers() -> None:
    questions = re.findall(r"### (\d+)\. ", README)
    assert questions == [str(n) for n in range(1, len(questions) + 1)], "the questions are numbered 1, 2, ..."
    assert f"{WORDS[len(questions)].capitalize()} questions the studies were set up for" in README


def test_the_readme_counts_the_shipped_sources() -> None:
    shipped = len(list((REPO_ROOT / "sources").glob("*.yaml")))
    assert f"generates realistic exports of {WORDS[shipped]} sources" in README
    assert f"writes realistic exports of {WORDS[shipped]} sources" in " ".join(
        (REPO_ROOT / "docs" / "synthetic-exports.md").read_text(encoding="utf-8").split())
