"""generate's partial_starts and drugless_treatments (etl/synth/treatment_gaps.py): off by default, and on, written as
each source writes a partial date or an empty drug, with the truth saying so (test_treatment_line_synth runs them)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from etl.synth import generate
from etl.synth.treatment_gaps import DRUGLESS_SOURCES, NUMBERED_SOURCES


def _truth(root: Path, table: str) -> list[dict[str, str]]:
    with (root / "truth" / f"{table}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _digests(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def vague(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vague")
    generate(root, patients=150, seed=9, error_rate=0.0, partial_starts=0.4, drugless_treatments=0.2,
             restarted_lines=0.3)  # no error: every record in the truth
    return root


def test_off_the_exports_are_those_without_the_parameters(tmp_path):
    generate(tmp_path / "default", patients=60, seed=5)
    generate(tmp_path / "off", patients=60, seed=5, partial_starts=0.0, drugless_treatments=0.0, restarted_lines=0.0)
    assert _digests(tmp_path / "default") == _digests(tmp_path / "off")


def test_shares_outside_zero_to_one_are_refused(tmp_path):
    with pytest.raises(ValueError, match="partial_starts"):
        generate(tmp_path, patients=1, seed=1, partial_starts=1.5)
    with pytest.raises(ValueError, match="drugless_treatments"):
        generate(tmp_path, patients=1, seed=1, drugless_treatments=-0.1)
    with pytest.raises(ValueError, match="restarted_lines"):
        generate(tmp_path, patients=1, seed=1, restarted_lines=2)


def test_the_truth_has_partial_starts_in_every_source_and_drugs_left_out_where_the_format_allows(vague):
    rows = _truth(vague, "treatment")
    partial = {r["source_id"] for r in rows if r["start_date_precision"] != "day"}
    assert partial == {"sacha_fr", "iltb", "esmart", "crizotinib_imt"}
    assert {r["source_id"] for r in rows if not r["drug_name"]} == set(DRUGLESS_SOURCES)
    assert all(not r["atc_code"] for r in rows if not r["drug_name"])
    for row in rows:  # a partial start is the first day of its period
        day = row["start_date"]
        assert row["start_date_precision"] == "day" or day.endswith("-01"), row
        assert row["start_date_precision"] != "year" or day.endswith("-01-01"), row
    # a line's treatments start alike in a source
    starts: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
    for row in rows:
        starts.setdefault((row["source_id"], row["source_patient_key"], row["line_number"]), set()).add(
            (row["start_date"], row["start_date_precision"]))
    assert all(len(given) == 1 for given in starts.values())


def test_a_restarted_line_is_a_next_line_of_the_same_drugs_days_later_in_the_sources_that_number_lines(vague):
    lines: dict[tuple[str, str], dict[int, tuple[set[str], str, str, str]]] = {}
    for row in _truth(vague, "treatment"):
        line = lines.setdefault((row["source_id"], row["source_patient_key"]), {}).setdefault(
            int(row["line_number"]), (set(), row["start_date"], row["start_date_precision"], row["end_date"]))
        line[0].add(row["drug_name"])
    restarts = 0
    for (source, _), numbered in lines.items():
        assert sorted(numbered) == list(range(1, len(numbered) + 1)), "numbered from 1 without a gap"
        for n in sorted(numbered)[1:]:
            drugs, start, precision, _ = numbered[n]
            before_drugs, before_start, _, before_end = numbered[n - 1]
            if drugs == before_drugs and "" not in drugs and before_end and before_start[:4] == start[:4]:
                restarts += 1
                assert source in NUMBERED_SOURCES
                assert precision != "day" or before_end < start, "the first part ends before the restart"
    assert restarts > 10


def test_the_iltb_export_writes_them_as_it_writes_a_partial_date_and_an_empty_cell(vague):
    with (vague / "landing" / "iltb" / "ILTB_TREAT.csv").open(encoding="utf-8-sig", newline="") as handle:
        exported = {f"{r['SUBJID']}|TREAT[{r['RECORDNO']}]": r for r in csv.DictReader(handle, delimiter=";")}
    checked = 0
    for row in _truth(vague, "treatment"):
        if row["source_id"] != "iltb":
            continue
        written = exported[row["source_record_key"]]
        year, month, _ = row["start_date"].split("-")
        wanted = {"month": f"UK/{month}/{year}", "year": f"UK/UK/{year}"}.get(row["start_date_precision"])
        assert wanted is None or written["STDAT"] == wanted, (row, written)
        assert bool(written["DRUG"].strip()) == bool(row["drug_name"]), (row, written)
        checked += 1
    assert checked > 50
