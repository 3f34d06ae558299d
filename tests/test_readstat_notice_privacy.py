"""The reader's notice of a SAS, SPSS or Stata file counts, not lists, what may name a patient.

A registry may label its patient numbers with the patients' names (SPSS, Stata value labels): the notice listing
every variable's value labels put 'pat_nr 1 'Zoë García Pérez'' into meta.source_notice and the run's quality
report. An identifying variable (etl/identifying.py: by its name or label) has its value labels and declared
missing values counted; so has any variable with a long table of labels, which may name each patient under a
plain name. The other variables' labels are listed as before.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_rows

from etl import pipeline
from etl.config import REPO_ROOT
from etl.extract.adapter import StageResult
from etl.extract.spss import stage_spss
from etl.extract.stata import stage_stata

LINEAGE = {"source_file": "cases", "source_file_sha256": "0" * 64}
NAMES = {1: "Zoë García Pérez", 2: "Jürgen Müller"}
# A label per patient under a plain name: 25 patients, each number labelled with a name.
PER_PATIENT = {number: f"Paciente Apellido{number}" for number in range(1, 26)}


def _cases() -> pd.DataFrame:
    return pd.DataFrame({"pat_nr": [1.0, 2.0], "v1": [1.0, 2.0], "ref": [1.0, 2.0], "sexo": [1.0, 2.0],
                         "ultimo_contacto": ["2024-10-11", "2025-01-22"]})


def _write_sav(path: Path) -> None:
    pyreadstat.write_sav(_cases(), str(path), column_labels={"v1": "Número de paciente"}, variable_value_labels={
        "pat_nr": NAMES, "v1": NAMES, "ref": PER_PATIENT, "sexo": {1: "Hombre", 2: "Mujer"}},
        missing_ranges={"pat_nr": [999], "sexo": [9]})


def _write_dta(path: Path) -> None:
    pyreadstat.write_dta(_cases(), str(path), column_labels={"v1": "Número de paciente"}, variable_value_labels={
        "pat_nr": NAMES, "v1": NAMES, "ref": PER_PATIENT, "sexo": {1: "Hombre", 2: "Mujer"}})


@pytest.mark.parametrize(("suffix", "write", "stage"), [(".sav", _write_sav, stage_spss),
                                                        (".dta", _write_dta, stage_stata)], ids=["spss", "stata"])
def test_the_value_labels_of_an_identifying_variable_are_counted_not_listed(
        tmp_path: Path, suffix: str, write: Callable[[Path], None], stage: Callable[..., StageResult]) -> None:
    path = tmp_path / f"cases{suffix}"
    write(path)
    notices = stage(path, tmp_path / "staged.parquet", lineage=LINEAGE).notices
    said = "\n".join(notices)
    assert "García" not in said and "Müller" not in said and "Apellido" not in said
    labels = next(n for n in notices if "value labels, not applied" in n)
    assert "pat_nr: 2 value labels, not listed (an identifying variable)" in labels
    assert "v1: 2 value labels, not listed (an identifying variable)" in labels  # by its label
    assert "ref: 25 value labels, not listed (more than 20: so long a table may name each patient" in labels
    assert "sexo 1 'Hombre', 2 'Mujer'" in labels  # the others' labels are listed as before
    if suffix == ".sav":
        missing = next(n for n in notices if "declares missing" in n)
        assert "pat_nr: 1 value, not listed (an identifying variable)" in missing and "999" not in missing
        assert "sexo 9" in missing


MAPPING = """\
source_id: nrx_es
title: Spanish registry of very rare paediatric tumours (SPSS)
format: spss
files: "NRX_*.sav"
record_set: CASOS
patient_key: pat_nr
record_key: "CASOS[{pat_nr}]"
patient:
  from: CASOS
  fields:
    sex: {column: sexo, codes: {1: male, 2: female}}
    country: {const: ES}
tables:
  follow_up:
    from: CASOS
    fields:
      contact_date: {column: ultimo_contacto, type: date, required: true}
"""


def test_a_run_keeps_the_patients_names_out_of_its_notices_and_report(small_run, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    sources = tmp_path / "sources"
    shutil.copytree(REPO_ROOT / "sources", sources)
    (sources / "nrx_es.yaml").write_text(MAPPING, encoding="utf-8")
    landing = home.landing / "nrx_es"
    landing.mkdir(parents=True)
    _write_sav(landing / "NRX_20261201.sav")

    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)

    assert summary.status == "completed"
    notices = [notice for (notice,) in query_rows(
        home.root, "SELECT notice FROM meta.source_notice WHERE source_id = 'nrx_es' AND run_id = ?",
        [summary.run_id])]
    assert any("pat_nr: 2 value labels, not listed (an identifying variable)" in n for n in notices)
    assert not [n for n in notices if "García" in n or "Müller" in n or "Apellido" in n]
    report = (home.root / "reports" / summary.run_id / "index.html").read_text(encoding="utf-8")
    assert "Hombre" in report  # the notice is in the report
    assert "García" not in report and "Müller" not in report and "Apellido" not in report
