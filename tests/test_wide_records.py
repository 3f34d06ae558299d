"""A wide registry: one row per case with numbered column groups (`chemo1_drug`, `chemo2_drug`, ...)
mapped with `repeat:` (docs/mapping.md), through `rtw check` and a whole run."""

from __future__ import annotations

from pathlib import Path

import pytest
from warehouse_query import query_frame as _query

from etl import pipeline
from etl.config import Home, resolve_home
from etl.onboard.check import check_source

KEY = "wide-registry-test-key"
MAPPING = """\
source_id: wide_reg
title: A registry sending one wide row per case
format: csv
files: "WIDE_*.csv"
record_set_from_file: 'WIDE_(?P<record_set>[A-Za-z]+)\\.csv'
options: {delimiter: ";"}
date_format: "%d/%m/%Y"
patient_key: pid
record_key: "CASE[{case}]"
patient:
  from: Cases
  fields:
    centre_id: {column: centre}
    sex: {column: sex, codes: {M: male, F: female}}
    birth_date: {column: born, type: date}
    country: {const: IT}
tables:
  diagnosis:
    from: Cases
    fields:
      event_type: {const: initial}
      diagnosis_date: {column: diagnosed, type: date, required: true}
      age_at_diagnosis_days: {age_at: diagnosis_date}
      icdo3_morphology: {column: morph, type: icdo3_histology}
      icdo3_behaviour: {column: morph, type: icdo3_behaviour}
      icdo3_topography: {column: site, type: icdo3_topography}
  treatment:
    from: Cases
    repeat: [1, 2, 3]
    fields:
      drug_name: {column: "chemo{repeat}_drug", case: lower}
      start_date: {column: "chemo{repeat}_start", type: date}
      access_route: {const: standard}
  follow_up:
    from: Cases
    repeat: [1, 2]
    fields:
      contact_date: {column: "fu{repeat}_date", type: date}
      vital_status: {column: "fu{repeat}_status", codes: {A: alive, D: dead}}
"""
HEADER = ["case", "pid", "centre", "sex", "born", "diagnosed", "morph", "site",
          "chemo1_drug", "chemo1_start", "chemo2_drug", "chemo2_start", "chemo3_drug", "chemo3_start",
          "fu1_date", "fu1_status", "fu2_date", "fu2_status"]
CASES = [
    ("1", "WR-000001", "IT-MI01", "F", "14/03/2011", "02/05/2020", "8910/3", "C49.4",
     "Vincristine", "10/05/2020", "Irinotecan", "01/09/2020", "", "", "01/03/2021", "A", "01/03/2022", "A"),
    ("2", "WR-000002", "IT-MI01", "M", "30/11/2012", "17/06/2020", "8910/3", "C49.4",
     "", "", "", "", "", "", "20/12/2021", "A", "", ""),
    # A third chemotherapy started on a day that does not exist: the whole case is quarantined.
    ("3", "WR-000003", "IT-RM01", "F", "02/02/2010", "05/01/2021", "8910/3", "C49.4",
     "Vincristine", "10/01/2021", "Irinotecan", "01/04/2021", "Temozolomide", "31/02/2022", "01/06/2022", "A", "", ""),
    # The first follow-up column group left empty, the second filled: the groups are independent.
    ("4", "WR-000004", "IT-RM01", "M", "21/07/2013", "11/11/2021", "8910/3", "C49.4",
     "Vincristine", "20/11/2021", "", "", "", "", "", "", "15/10/2023", "D"),
]


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, Path, object]:
    root = tmp_path_factory.mktemp("wide")
    home = resolve_home(root / "home").ensure()
    sources = root / "sources"
    sources.mkdir()
    (sources / "wide_reg.yaml").write_text(MAPPING, encoding="utf-8")
    (home.landing / "wide_reg").mkdir(parents=True)
    lines = [";".join(HEADER), *(";".join(case) for case in CASES)]
    (home.landing / "wide_reg" / "WIDE_Cases.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_source("wide_reg", sources, home.landing)
    return home, sources, (report, pipeline.run(home, key_value=KEY, sources_dir=sources))


def test_rtw_check_names_the_column_group_of_a_date_it_cannot_read(wide):
    _, _, (report, _) = wide
    (found,) = [f for f in report.findings if "chemo3_start" in f.where]
    assert "tables.treatment.fields.start_date[3]" in found.where and found.severity == "warning"


def test_each_column_group_that_is_not_empty_is_a_row_and_a_bad_value_holds_back_the_whole_case(wide):
    home, _, (_, summary) = wide
    assert summary.sources_failed == [], summary.message
    treatment = _query(home, "SELECT drug_name, start_date::VARCHAR AS start, source_record_key "
                             "FROM core.treatment ORDER BY start_date")
    assert treatment[["drug_name", "start"]].values.tolist() == [
        ["vincristine", "2020-05-10"], ["irinotecan", "2020-09-01"], ["vincristine", "2021-11-20"]]
    assert treatment.source_record_key.str.endswith("|CASE[1]").sum() == 2
    follow_up = _query(home, "SELECT contact_date::VARCHAR AS contact, vital_status FROM core.follow_up "
                             "ORDER BY contact_date")
    assert follow_up.values.tolist() == [["2021-03-01", "alive"], ["2021-12-20", "alive"], ["2022-03-01", "alive"],
                                         ["2023-10-15", "dead"]]
    held = _query(home, "SELECT line, reasons FROM dq.quarantine")
    assert held.line.tolist() == [4]
    assert any(r.startswith("start_date (chemo3_start): ") for r in held.reasons[0])
    files = _query(home, "SELECT rows_read, rows_loaded, rows_quarantined FROM meta.source_file")
    assert files.values.tolist() == [[4, 3, 1]]


def test_the_rows_of_a_wide_case_are_its_treatment_lines_and_endpoints(wide):
    home, _, _ = wide
    lines = _query(home, "SELECT count(*) AS n, count(line_id) AS with_id FROM marts.treatment_line")
    assert lines.n[0] >= 2 and lines.with_id[0] == lines.n[0]
    dead = _query(home, "SELECT count(*) AS n FROM core.patient WHERE vital_status = 'dead'")
    assert dead.n[0] == 1
