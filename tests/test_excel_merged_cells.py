"""A registry kept in Excel, its patient number merged over each patient's follow-up rows: a nightly run
with `options: {merged_cells: fill}` loads every row; without the option the rows below a patient's
first are held back for want of a patient key, as before. Changing the option stages the workbook again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest
from warehouse_query import query_frame as _query

from etl import pipeline
from etl.config import Home, resolve_home
from etl.extract.adapter import STAGED_NAME

KEY = "merged-cells-test-key"
MAPPING = """\
source_id: kr_excel
title: A registry's Excel follow-up register
format: excel
files: "KR_register_*.xlsx"
options: {merged_cells: fill}
patient_key: Pat_Nr
record_key: "{record_set}[{Kontakt}]"
record_keys: {Patienten: "{record_set}"}
patient:
  from: Patienten
  fields:
    sex: {column: Geschlecht, codes: {m: male, w: female}}
    centre_id: {column: Klinik}
tables:
  follow_up:
    from: Verlauf
    fields:
      contact_date: {column: Kontakt, type: date, required: true}
      vital_status: {column: Status, codes: {L: alive, V: dead}}
"""
PATIENTS = 4
VISITS = 3


def _register(path: Path) -> None:
    """Patienten: one row a patient. Verlauf: VISITS rows a patient, the number and centre merged over them."""
    workbook = openpyxl.Workbook()
    patients = workbook.active
    patients.title = "Patienten"
    patients.append(["Pat_Nr", "Geschlecht", "Klinik"])
    visits = workbook.create_sheet("Verlauf")
    visits.append(["Pat_Nr", "Klinik", "Kontakt", "Status"])
    for p in range(PATIENTS):
        patients.append([f"KR-{p:03d}", "mw"[p % 2], f"DE{p % 2}"])
        first = visits.max_row + 1
        for v in range(VISITS):
            visits.append([f"KR-{p:03d}" if v == 0 else None, f"DE{p % 2}" if v == 0 else None,
                           dt.date(2020 + v, 1 + p, 1), "L"])
        visits.merge_cells(f"A{first}:A{first + VISITS - 1}")
        visits.merge_cells(f"B{first}:B{first + VISITS - 1}")
    workbook.save(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Home, list[object], list[set[str]]]:
    """A run without the option, then one with it, on the same export; the staged folders after each."""
    root = tmp_path_factory.mktemp("merged_cells")
    home = resolve_home(root / "home").ensure()
    sources = root / "sources"
    sources.mkdir()
    landing = home.landing / "kr_excel"
    landing.mkdir(parents=True)
    _register(landing / "KR_register_20261101.xlsx")
    summaries, staged = [], []
    for options in ("options: {merged_cells: top_left}", "options: {merged_cells: fill}"):
        (sources / "kr_excel.yaml").write_text(MAPPING.replace("options: {merged_cells: fill}", options))
        summaries.append(pipeline.run(home, key_value=KEY, sources_dir=sources))
        staged.append({p.name for p in (home.staging / "kr_excel").iterdir() if STAGED_NAME.fullmatch(p.name)})
    return home, summaries, staged


def test_without_fill_the_rows_below_a_merged_patient_number_are_held_back(runs):
    _home, summaries, _staged = runs
    before = summaries[0]
    assert before.sources_failed == [], before.message
    assert before.rows["follow_up"] == PATIENTS
    assert before.quarantined == {"kr_excel": PATIENTS * (VISITS - 1)}


def test_with_fill_every_follow_up_row_loads_under_its_patient(runs):
    home, summaries, staged = runs
    after = summaries[1]
    assert after.sources_failed == [], after.message
    assert after.rows["follow_up"] == PATIENTS * VISITS
    assert not after.quarantined.get("kr_excel")
    per_patient = _query(home, "SELECT patient_id, count(*) AS n FROM core.follow_up GROUP BY 1")
    assert len(per_patient) == PATIENTS and set(per_patient.n) == {VISITS}
    files = _query(home, "SELECT rows_read, rows_loaded, rows_quarantined, rows_superseded FROM meta.source_file "
                         "WHERE source_id = 'kr_excel'")
    assert files.values.tolist() == [[PATIENTS * (VISITS + 1), PATIENTS * (VISITS + 1), 0, 0]]
    # The same export, read with another option: staged again under a name of its own.
    assert len(staged[0]) == 1 and len(staged[1] - staged[0]) == 1
