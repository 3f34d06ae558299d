"""A national registry that sends SPSS or Stata files comes in by a YAML mapping alone, as one sending CSV does.

A Dutch registry of very rare paediatric tumours sends one file a night, one case a row: sex coded 1/2/9
with value labels (9 'onbekend' declared user-missing), a birth month (SPSS `MOYR8`, Stata `%tm`), dates of
diagnosis, registration, last contact and death (`DATE11`, `EDATE10`, `ADATE10`; `%td`), the tumour size in
cm with 999 for 'not measured' (user-missing too), a vital status coded 1/2/3. The same cases are written
here as `.sav` (written by pyreadstat, as SPSS does), `.dta` and `;`-separated CSV, and each file loaded by
`rtw run` into its own home under the same mapping but for `format:` and `files:`: the core rows are the
same. `rtw profile` and `rtw scaffold` read the value labels as code lists; a cut or foreign file delivered
next fails the source alone and keeps its rows.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml
from warehouse_query import query_frame, query_rows

from etl.config import REPO_ROOT, resolve_home
from etl.onboard.check import check_source
from etl.onboard.profile import profile_file
from etl.onboard.reading import read_file
from etl.onboard.scaffold import draft_mapping, read_sources, validate_draft

pytestmark = pytest.mark.integration

KEY = "spss-stata-registry-test-key"
RTW = str(Path(sys.executable).with_name("rtw"))
SPSS_EPOCH = dt.datetime(1582, 10, 14)
STATA_EPOCH = dt.date(1960, 1, 1)

# patnr, centrum, geslacht, geboren (month), diagnose, registratie, morfologie, topografie, grootte_cm, status,
# laatste_contact, overleden
CASES = [
    ("NL-0001", "AMC", 2, (2012, 3), dt.date(2019, 5, 17), dt.date(2019, 6, 2), "8825/1", "C49.4", 4.5, 1,
     dt.date(2024, 10, 11), None),
    ("NL-0002", "UMCG", 1, (2008, 11), dt.date(2018, 5, 9), dt.date(2018, 7, 20), "9364/3", "C41.2", 7.0, 1,
     dt.date(2024, 3, 1), None),
    ("NL-0003", "PMC", 1, (2015, 1), dt.date(2020, 9, 1), dt.date(2020, 10, 15), "8960/3", "C64.9", 999.0, 1,
     dt.date(2025, 1, 22), None),
    ("NL-0004", "AMC", 2, (2010, 6), dt.date(2017, 2, 3), dt.date(2018, 1, 4), "8370/3", "C74.0", 3.2, 2,
     dt.date(2021, 2, 14), dt.date(2021, 2, 14)),
    ("NL-0005", "UMCG", 9, (2016, 9), dt.date(2021, 12, 12), dt.date(2022, 1, 3), "8970/3", "C22.0", 10.0, 1,
     dt.date(2025, 1, 5), None),
    ("NL-0006", "PMC", 1, (2013, 2), dt.date(2022, 3, 8), dt.date(2022, 4, 1), "9364/3", "C40.2", 2.0, 3,
     dt.date(2024, 8, 30), None),
]
COLUMNS = ["patnr", "centrum", "geslacht", "geboren", "diagnose", "registratie", "morfologie", "topografie",
           "grootte_cm", "status", "laatste_contact", "overleden"]
DATES = ["diagnose", "registratie", "laatste_contact", "overleden"]
LABELS = {"patnr": "Patiëntnummer", "geslacht": "Geslacht", "geboren": "Geboortemaand", "diagnose": "Diagnosedatum",
          "grootte_cm": "Grootte tumor (cm)", "status": "Vitale status"}
VALUE_LABELS = {"geslacht": {1: "man", 2: "vrouw", 9: "onbekend"},
                "status": {1: "in leven", 2: "overleden", 3: "lost to follow-up"},
                "grootte_cm": {999: "niet gemeten"}}

MAPPING = """\
source_id: nrt_nl
title: Dutch registry of very rare paediatric tumours ({format})
format: {format}
files: "NRT_*.{suffix}"
record_set: CASES
null_values: ["", "999"]  # 999: size not measured (declared user-missing in the SPSS file)
patient_key: patnr
record_key: "CASES[{{patnr}}]"
params: {{min_age_at_diagnosis_years: 0, max_age_at_diagnosis_years: 18}}

patient:
  from: CASES
  fields:
    centre_id: {{column: centrum, case: upper}}
    sex: {{column: geslacht, codes: {{1: male, 2: female, 9: unknown}}}}
    birth_date: {{column: geboren, type: date}}
    country: {{const: NL}}

tables:
  study_enrolment:
    from: CASES
    fields:
      study_id: {{const: NRT}}
      centre_id: {{column: centrum, case: upper}}
      enrolment_date: {{column: registratie, type: date, required: true}}
      age_at_enrolment_days: {{age_at: enrolment_date}}
  diagnosis:
    from: CASES
    fields:
      event_type: {{const: initial}}
      diagnosis_date: {{column: diagnose, type: date, required: true}}
      age_at_diagnosis_days: {{age_at: diagnosis_date}}
      icdo3_morphology: {{column: morfologie, type: icdo3_histology}}
      icdo3_behaviour: {{column: morfologie, type: icdo3_behaviour}}
      icdo3_topography: {{column: topografie, type: icdo3_topography}}
      tumour_size_mm: {{column: grootte_cm, type: decimal, scale: 10}}
  follow_up:
    from: CASES
    fields:
      contact_date: {{column: laatste_contact, type: date, required: true}}
      vital_status: {{column: status, codes: {{1: alive, 2: dead, 3: lost}}}}
      death_date: {{column: overleden, type: date}}
"""


def _frame() -> pd.DataFrame:
    return pd.DataFrame(CASES, columns=COLUMNS)


def write_sav(path: Path) -> None:
    frame = _frame()
    frame["geboren"] = [(dt.datetime(y, m, 1) - SPSS_EPOCH).total_seconds() for y, m in frame["geboren"]]
    for column in DATES:
        frame[column] = [np.nan if d is None else (dt.datetime.combine(d, dt.time()) - SPSS_EPOCH).total_seconds()
                         for d in frame[column]]
    frame[["geslacht", "grootte_cm", "status"]] = frame[["geslacht", "grootte_cm", "status"]].astype(float)
    pyreadstat.write_sav(frame, str(path), file_label="NRT cases", column_labels=LABELS,
                         variable_value_labels=VALUE_LABELS, missing_ranges={"geslacht": [9], "grootte_cm": [999]},
                         variable_measure={"geslacht": "nominal", "status": "nominal", "grootte_cm": "scale"},
                         variable_format={"geboren": "MOYR8", "diagnose": "DATE11", "registratie": "EDATE10",
                                          "laatste_contact": "ADATE10", "overleden": "DATE11",
                                          "grootte_cm": "F5.1", "geslacht": "F1.0", "status": "F1.0"})


def write_dta(path: Path) -> None:
    frame = _frame()
    frame["geboren"] = [float((y - 1960) * 12 + m - 1) for y, m in frame["geboren"]]
    for column in DATES:
        frame[column] = [np.nan if d is None else float((d - STATA_EPOCH).days) for d in frame[column]]
    frame[["geslacht", "grootte_cm", "status"]] = frame[["geslacht", "grootte_cm", "status"]].astype(float)
    pyreadstat.write_dta(frame, str(path), file_label="NRT cases", column_labels=LABELS,
                         variable_value_labels=VALUE_LABELS,
                         variable_format={"geboren": "%tm", "diagnose": "%td", "registratie": "%tdDD/NN/CCYY",
                                          "laatste_contact": "%td", "overleden": "%td"})


def write_csv(path: Path) -> None:
    lines = [";".join(COLUMNS)]
    for case in CASES:
        values = [f"{v[0]:04d}-{v[1]:02d}" if isinstance(v, tuple) else v.isoformat() if isinstance(v, dt.date)
                  else "" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in case]
        lines.append(";".join(values))
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


WRITERS = {"spss": ("sav", write_sav), "stata": ("dta", write_dta), "csv": ("csv", write_csv)}


def rtw_run(home: Path, sources: Path) -> subprocess.CompletedProcess[str]:
    """`rtw run` in its own process, as cron starts it."""
    env = {**os.environ, "RTW_PSEUDONYM_KEY": KEY, "RTW_SOURCES_DIR": str(sources), "COLUMNS": "250"}
    return subprocess.run([RTW, "run", "--home", str(home)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _home(root: Path, format_name: str) -> tuple[Path, Path]:
    """A home whose landing holds the registry's file in `format_name`, and the folder of its mapping."""
    suffix, write = WRITERS[format_name]
    home = resolve_home(root / format_name / "home").ensure()
    sources = root / format_name / "sources"
    sources.mkdir(parents=True)
    (sources / "nrt_nl.yaml").write_text(MAPPING.format(format=format_name, suffix=suffix), encoding="utf-8")
    landing = home.landing / "nrt_nl"
    landing.mkdir(parents=True)
    write(landing / f"NRT_20261201.{suffix}")
    return home.root, sources


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("registry_spss_stata")
    homes = {}
    for format_name in WRITERS:
        home, sources = _home(root, format_name)
        done = rtw_run(home, sources)
        assert done.returncode == 0 and "failed sources" not in done.stdout, done.stdout + done.stderr
        homes[format_name] = (home, sources)
    return homes


CORE = {
    "patient": "sex, birth_year, birth_month, country, vital_status, death_date, last_contact_date",
    "study_enrolment": "patient_id, study_id, centre_id, enrolment_date, enrolment_date_precision, "
                       "age_at_enrolment_days, source_record_key",
    "diagnosis": "patient_id, diagnosis_date, diagnosis_date_precision, age_at_diagnosis_days, icdo3_morphology, "
                 "icdo3_behaviour, icdo3_topography, iccc3_code, tumour_size_mm, source_record_key",
    "follow_up": "patient_id, contact_date, contact_date_precision, vital_status, death_date, source_record_key",
}


@pytest.mark.parametrize("table", sorted(CORE))
def test_spss_stata_and_csv_give_the_same_core_rows(loaded, table):
    rows = {name: query_rows(home, f"SELECT {CORE[table]} FROM core.{table} ORDER BY ALL")
            for name, (home, _sources) in loaded.items()}
    assert len(rows["csv"]) == 6
    assert rows["spss"] == rows["csv"]
    assert rows["stata"] == rows["csv"]


@pytest.mark.parametrize("format_name", ["spss", "stata"])
def test_every_case_loads_with_its_codes_dates_and_user_missing_values(loaded, format_name):
    home, _sources = loaded[format_name]
    assert query_rows(home, "SELECT count(*) FROM dq.quarantine") == [(0,)]
    files = query_frame(home, "SELECT file_name, rows_read, rows_loaded, rows_quarantined FROM meta.source_file")
    assert files.to_dict("records") == [{"file_name": f"NRT_20261201.{WRITERS[format_name][0]}", "rows_read": 6,
                                         "rows_loaded": 6, "rows_quarantined": 0}]
    patients = query_frame(home, "SELECT sex, birth_year, birth_month FROM core.patient ORDER BY birth_year")
    assert patients.sex.tolist() == ["male", "female", "female", "male", "male", "unknown"]  # 9: a code, not a gap
    assert patients.birth_month.tolist() == [11, 6, 3, 2, 1, 9]
    diagnosis = query_rows(home, "SELECT diagnosis_date, diagnosis_date_precision, tumour_size_mm "
                                 "FROM core.diagnosis ORDER BY diagnosis_date")
    assert [d for d, _, _ in diagnosis][:2] == [dt.date(2017, 2, 3), dt.date(2018, 5, 9)]
    assert {p for _, p, _ in diagnosis} == {"day"}
    # 999 'niet gemeten', user-missing: delivered as 999, a null value of the mapping
    assert [s for _, _, s in diagnosis] == [32.0, 70.0, 45.0, None, 100.0, 20.0]
    follow = query_rows(home, "SELECT vital_status, death_date FROM core.follow_up ORDER BY vital_status")
    assert follow == [("alive", None)] * 4 + [("dead", dt.date(2021, 2, 14)), ("lost", None)]


def test_profile_and_scaffold_read_the_value_labels(loaded):
    home, _sources = loaded["spss"]
    (sav,) = (home / "landing" / "nrt_nl").glob("*.sav")
    profile = profile_file(read_file(sav))
    assert profile.format == "spss"
    columns = {c.name: c for c in profile.record_sets[0].columns}
    assert columns["geslacht"].label == "Geslacht" and columns["geslacht"].kind == "code"
    assert dict(columns["geslacht"].code_list or {}) == {"1": "man", "2": "vrouw", "9": "onbekend"}
    assert columns["grootte_cm"].code_list is None  # measure scale: 999 'niet gemeten' is a sentinel, no code list
    assert columns["diagnose"].kind == "date" and columns["diagnose"].declared_type == "DATE11"
    assert any("values the file declares missing, kept as delivered" in n and "geslacht 9" in n
               for n in profile.notices)

    draft = draft_mapping(read_sources([sav], "nrt_draft"))
    raw = yaml.safe_load(draft.text)
    assert raw["format"] == "spss" and raw["files"] == "NRT_*.sav" and "options" not in raw
    # each labelled variable's codes, with their labels for the data manager to map
    assert '{column: "geslacht", codes: {"1": "man", "2": "vrouw", "9": "onbekend"}}  # Geslacht; TODO' in draft.text
    assert '{column: "status", codes: {"1": "in leven", "2": "overleden", "3": "lost to follow-up"}}' in draft.text
    assert '{column: "grootte_cm", type: decimal}  # Grootte tumor (cm)' in draft.text
    assert '{column: "geboren", type: date, format: "%Y-%m"}' in draft.text
    assert validate_draft(draft) == []
    assert "NL-000" not in draft.text  # patient numbers are never copied into a draft


@pytest.mark.parametrize("format_name", ["spss", "stata"])
def test_rtw_check_finds_nothing_to_fix(loaded, format_name):
    home, sources = loaded[format_name]
    report = check_source("nrt_nl", sources, home / "landing")
    assert report.usable and not report.findings, report.findings
    assert report.record_sets == {"CASES": 6}


@pytest.mark.parametrize(("format_name", "hostile", "message"), [
    ("spss", "cut", r"nrt_nl.*NRT_20261201\.sav.*(truncated|unreadable)"),
    ("spss", "csv", r"nrt_nl.*NRT_20261201\.sav: not an SPSS data file .*it is plain text \(a CSV"),
    ("spss", "empty", r"nrt_nl.*NRT_20261201\.sav: not an SPSS data file .*the file is empty"),
    ("stata", "cut", r"nrt_nl.*NRT_20261201\.dta: [\d,]+ bytes, where the file's header and sections end at byte "
                     r"[\d,]+; expected the complete file"),
    ("stata", "sav", r"nrt_nl.*NRT_20261201\.dta: not a Stata dataset .*an SPSS data file"),
])
def test_a_cut_or_foreign_delivery_fails_the_source_and_keeps_its_rows(loaded, tmp_path, format_name, hostile,
                                                                       message):
    base, sources = loaded[format_name]
    home = tmp_path / "home"
    shutil.copytree(base, home, symlinks=True)
    before = {table: query_rows(home, f"SELECT {CORE[table]} FROM core.{table} ORDER BY ALL") for table in CORE}
    delivered = home / "landing" / "nrt_nl" / f"NRT_20261201.{WRITERS[format_name][0]}"
    good = delivered.read_bytes()
    delivered.write_bytes({"cut": good[: len(good) * 2 // 3], "empty": b"",  # overwritten in place, a new sha256
                           "csv": (loaded["csv"][0] / "landing" / "nrt_nl" / "NRT_20261201.csv").read_bytes(),
                           "sav": (loaded["spss"][0] / "landing" / "nrt_nl" / "NRT_20261201.sav").read_bytes(),
                           }[hostile])
    done = rtw_run(home, sources)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output  # the run did its job: the failure is reported, not a crash
    assert "Traceback" not in output
    assert re.search(message, output), output
    assert query_rows(home, "SELECT sources_failed FROM meta.run ORDER BY started_at DESC LIMIT 1") == [(["nrt_nl"],)]
    assert {table: query_rows(home, f"SELECT {CORE[table]} FROM core.{table} ORDER BY ALL") for table in CORE} == before
    assert not list((home / "staging" / "nrt_nl").glob(".*"))  # no half-written artefact left behind
