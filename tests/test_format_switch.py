"""A source switching its export format (registry_it: `files: "TREP_export_*.csv"` -> `"TREP_export_*.xlsx"`):
the old CSV left in landing is no export of the mapping any more, so the run holds the source for its departure.
The message says the file is there, and names every file to accept: accepted as it says, in one go, the next
run loads the source."""

from __future__ import annotations

import csv
import shutil

import openpyxl
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner
from warehouse_query import query_rows as _query

from etl import pipeline
from etl.cli import app
from etl.config import SOURCES_DIR

pytestmark = pytest.mark.integration
WIDE = {"COLUMNS": "300"}


def _switched(small_run, tmp_path, *, rows: bool = True):
    """A copy of the small run whose registry_it now sends an Excel workbook (one sheet, REG), its old CSV
    left in landing; the mappings folder with registry_it's mapping changed to read it."""
    home = copy_of(small_run, tmp_path)
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    mapping = sources / "registry_it.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("format: csv", "format: excel").replace(
        'files: "TREP_export_*.csv"', 'files: "TREP_export_*.xlsx"').replace(
        'csv: {encoding: cp1252, delimiter: ";", decimal: ","}\n', ""), encoding="utf-8")
    (old,) = (home.landing / "registry_it").glob("*.csv")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "REG"
    with old.open(encoding="cp1252", newline="") as export:
        for n, row in enumerate(csv.reader(export, delimiter=";")):
            if rows or n == 0:
                sheet.append(row)
    workbook.save(home.landing / "registry_it" / "TREP_export_20261104.xlsx")
    return home, sources, old


def _registry(home) -> int:
    return _query(home, "SELECT count(*) FROM core.study_enrolment WHERE source_id = 'registry_it'")[0][0]


def _accept_as_told(home, message: str) -> None:
    """Run each `rtw accept` the message gives, as a data manager would."""
    commands = [c.split(" ", 1) for c in message.split("(rtw accept ", 1)[1].split(")", 1)[0].split(
        "; rtw accept ")]
    assert commands
    for source, name in commands:
        accepted = CliRunner().invoke(app, ["accept", source, name, "--home", str(home.root)], env=WIDE)
        assert accepted.exit_code == 0, accepted.output


def test_the_old_export_left_in_landing_is_said_there_and_its_departure_accepted_in_one_go(small_run, tmp_path):
    home, sources, old = _switched(small_run, tmp_path)
    before = _registry(home)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    assert summary.sources_failed == ["registry_it"]
    message = " ".join((summary.message or "").split())
    assert f"no export of {old.name} (series REG, " in message and (
        f"records loaded) in landing the mapping reads: {old.name} is there, but the mapping's files: pattern "
        "no longer takes it") in message
    assert f"If this is right, accept it (rtw accept registry_it {old.name}) and run again" in message
    _accept_as_told(home, message.split("registry_it: ", 1)[1])  # the old CSV, still in landing
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    assert summary.sources_failed == [] and _registry(home) == before
    assert _query(home, "SELECT file_name, status FROM meta.source_file WHERE source_id = 'registry_it' "
                        "ORDER BY file_name") == [(old.name, "superseded"), ("TREP_export_20261104.xlsx", "loaded")]
    assert old.exists()


def test_every_file_to_accept_is_named_and_accepted_before_one_run(small_run, tmp_path):
    """The new workbook holds no records (held for itself) and the old CSV is gone (held for its departure):
    both are named, and both acceptances, made after one held night, load the source the next."""
    home, sources, old = _switched(small_run, tmp_path, rows=False)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    assert summary.sources_failed == ["registry_it"]
    message = " ".join((summary.message or "").split())
    assert ("accept all 2 (rtw accept registry_it TREP_export_20261104.xlsx; rtw accept registry_it "
            f"{old.name}), then run again: the next run takes them together") in message
    _accept_as_told(home, message.split("registry_it: ", 1)[1])
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    assert summary.sources_failed == [] and _registry(home) == 0
