"""A delivered file that crashes ReadStat (C, under pyreadstat) fails its own source in `rtw run`; the others load.

Small sources are extracted in the run's own process: before the SAS, SPSS and Stata readers read in a process
of their own (etl/extract/isolated.py), such a file (an SPSS file whose value labels of numbers are given to a
string variable) stopped the run with a segmentation fault, every source with it, every night it stayed in
landing. Here a Dutch registry sending SPSS joins a small synthetic home and delivers that file; the run is this
test's own process, which must survive it.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pandas as pd
import pyreadstat
from warehouse_query import query_rows

from etl import pipeline
from etl.config import REPO_ROOT, resolve_home
from etl.synth import generate

KEY = "readstat-crash-run-key-0123456789abcdef"
MAPPING = """\
source_id: nrt_nl
title: Dutch registry of very rare paediatric tumours (SPSS)
format: spss
files: "NRT_*.sav"
record_set: CASES
patient_key: patnr
record_key: "CASES[{patnr}]"
patient:
  from: CASES
  fields:
    sex: {column: geslacht, codes: {1: male, 2: female}}
    country: {const: NL}
tables:
  follow_up:
    from: CASES
    fields:
      contact_date: {column: laatste_contact, type: date, required: true}
"""


def _crashing_sav(path: Path) -> None:
    """Cases whose value labels of numbers (geslacht's 1 'man', 2 'vrouw') are given to patnr, a string."""
    cases = pd.DataFrame({"patnr": ["NL-0001", "NL-0002"], "geslacht": [1.0, 2.0],
                          "laatste_contact": ["2024-10-11", "2025-01-22"]})
    pyreadstat.write_sav(cases, str(path), variable_value_labels={"geslacht": {1: "man", 2: "vrouw"}})
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<iii", 4, 1, 2)) + 8  # the labels' record: 1 variable, at position 2 (geslacht)
    data[at:at + 4] = struct.pack("<i", 1)
    path.write_bytes(bytes(data))


def test_a_file_that_crashes_readstat_fails_its_source_and_the_others_load(tmp_path: Path) -> None:
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=60, seed=13)
    sources = tmp_path / "sources"
    shutil.copytree(REPO_ROOT / "sources", sources)
    (sources / "nrt_nl.yaml").write_text(MAPPING, encoding="utf-8")
    landing = home.landing / "nrt_nl"
    landing.mkdir(parents=True)
    _crashing_sav(landing / "NRT_20261201.sav")

    summary = pipeline.run(home, key_value=KEY, sources_dir=sources)

    assert summary.sources_failed == ["nrt_nl"]
    assert summary.message is not None and (
        "NRT_20261201.sav: the reader (ReadStat) crashed on the file (SIGSEGV): it is damaged, or not the SPSS data "
        "file (.sav, .zsav) it claims to be") in summary.message
    others = {path.stem for path in (REPO_ROOT / "sources").glob("*.yaml")}
    assert set(summary.sources_changed) == others
    assert {source for (source,) in query_rows(home.root, "SELECT DISTINCT source_id FROM core.patient_source")} \
        == others
    assert not list((home.staging / "nrt_nl").glob(".*"))  # nothing half-written left behind
