"""A new national registry by a YAML mapping alone: the worked example of docs/mapping.md.

A German very-rare-tumour registry (STEP-like) sends per-form CSV files in cp1252 with `;`,
decimal commas and dates written `dd.mm.yyyy`, `mm.yyyy` (month known only), `yyyy`, and
`00`/`XX` for an unknown day or month; the pathology is a separate form joined into the case,
and an audit-trail export the warehouse does not want is ignored. The whole run: every clean
row loads, none is quarantined, each date keeps its precision.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from warehouse_query import query_frame as _query

from etl import pipeline
from etl.config import REPO_ROOT, Home, resolve_home

KEY = "new-registry-test-key"


def _documented_mapping() -> str:
    """The worked example of docs/mapping.md, as a data manager would copy it."""
    text = (REPO_ROOT / "docs" / "mapping.md").read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(# sources/step_de\.yaml\n.*?)```", text, flags=re.S)
    assert found, "docs/mapping.md lost its worked example (a ```yaml block starting '# sources/step_de.yaml')"
    return found.group(1)


CASES = [  # Patienten_ID, Fall_Nr, Klinik, Geschlecht, Geburtsdatum, Diagnosedatum, Meldedatum, Letzter_Kontakt,
    #        Status, Sterbedatum
    ("DE-0001", "1", "muc01", "w", "03.2012", "17.05.2019", "02.06.2019", "11.10.2024", "lebend", ""),
    ("DE-0002", "2", "BER02", "m", "11.2008", "05.2018", "20.07.2018", "03.2024", "lebend", ""),
    ("DE-0003", "3", "HAM01", "m", "01.2015", "00.09.2020", "15.10.2020", "22.01.2025", "lebend", ""),
    ("DE-0004", "4", "MUC01", "w", "06.2010", "XX.XX.2017", "2018", "14.02.2021", "verstorben", "02.2021"),
    ("DE-0005", "5", "BER02", "d", "09.2016", "12.12.2021", "03.01.2022", "01.2025", "lebend", "unbekannt"),
    ("DE-0006", "6", "HAM01", "u", "02.2013", "08.03.2022", "01.04.2022", "08.2024", "lost to follow-up", ""),
]
HISTOLOGY = [  # Patienten_ID, Fall_Nr, Morphologie, Topographie, Groesse_cm (case 6 has no pathology form yet)
    ("DE-0001", "1", "8825/1", "C49.4", "4,5"),
    ("DE-0002", "2", "9364/3", "C41.2", "7"),
    ("DE-0003", "3", "8960/3", "C64.9", "unbekannt"),
    ("DE-0004", "4", "8370/3", "C74.0", "3,2"),
    ("DE-0005", "5", "8970/3", "C22.0", "10,0"),
    ("DE-0099", "99", "9364/3", "C40.2", "2,0"),  # a case the registry never sent: held back, not clean
]


def _csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> None:
    lines = [";".join(header)] + [";".join(row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Home, dict[str, object]]:
    root = tmp_path_factory.mktemp("new_registry")
    home = resolve_home(root / "home").ensure()
    sources = root / "sources"
    sources.mkdir()
    (sources / "step_de.yaml").write_text(_documented_mapping(), encoding="utf-8")
    landing = home.landing / "step_de"
    landing.mkdir(parents=True)
    _csv(landing / "STEP_Faelle.csv", ["Patienten_ID", "Fall_Nr", "Klinik", "Geschlecht", "Geburtsdatum",
                                       "Diagnosedatum", "Meldedatum", "Letzter_Kontakt", "Status", "Sterbedatum"],
         CASES)
    _csv(landing / "STEP_Histologie.csv", ["Patienten_ID", "Fall_Nr", "Morphologie", "Topographie", "Groesse_cm"],
         HISTOLOGY)
    _csv(landing / "STEP_Audit.csv", ["Eintrag", "Patienten_ID", "Benutzer", "Änderung"],
         [("1", "DE-0001", "müller", "Größe korrigiert"), ("2", "DE-0002", "schröder", "Status")])
    return home, pipeline.run(home, key_value=KEY, sources_dir=sources)


def test_every_clean_row_loads_and_none_is_quarantined(run):
    home, summary = run
    assert summary.sources_failed == [], summary.message
    held = _query(home, "SELECT record_set, line, rule_ids, reasons FROM dq.quarantine")
    assert held[["record_set", "line"]].values.tolist() == [["Histologie", 7]], held.to_dict("records")
    assert list(held.rule_ids[0]) == ["CONF-SECTION-JOINED"]
    assert "section Histologie has no Faelle record with the same Patienten_ID, Fall_Nr" in held.reasons[0][0]
    rows = summary.rows
    assert isinstance(rows, dict)
    assert (rows["diagnosis"], rows["study_enrolment"], rows["follow_up"]) == (6, 6, 6)


def test_partial_dates_keep_their_precision(run):
    home, _ = run
    diagnosis = _query(home, "SELECT diagnosis_date, diagnosis_date_precision, age_at_diagnosis_days, "
                             "icdo3_morphology, tumour_size_mm FROM core.diagnosis ORDER BY diagnosis_date")
    found = [(d.date(), p) for d, p in zip(diagnosis.diagnosis_date, diagnosis.diagnosis_date_precision, strict=True)]
    assert found == [(date(2017, 1, 1), "year"), (date(2018, 5, 1), "month"), (date(2019, 5, 17), "day"),
                     (date(2020, 9, 1), "month"), (date(2021, 12, 12), "day"), (date(2022, 3, 8), "day")]
    # the joined pathology form: its columns on the case; the case without one has them empty
    assert diagnosis.icdo3_morphology.tolist() == ["8370", "9364", "8825", "8960", "8970", None]
    assert diagnosis.tumour_size_mm.tolist()[:3] == [32.0, 70.0, 45.0]
    enrolment = _query(home, "SELECT enrolment_date_precision AS p, count(*) AS n FROM core.study_enrolment "
                             "GROUP BY 1 ORDER BY 1")
    assert dict(zip(enrolment.p, enrolment.n, strict=True)) == {"day": 5, "year": 1}
    patients = _query(home, "SELECT birth_year, birth_month, sex FROM core.patient ORDER BY birth_year")
    assert patients.birth_month.notna().all() and set(patients.sex) == {"female", "male", "undetermined", "unknown"}
    # A death known to the month: placed in its middle, and the centre asked for the day (a warning: loaded).
    death = _query(home, "SELECT death_date, death_date_precision FROM core.patient WHERE death_date IS NOT NULL")
    assert [(d.date(), p) for d, p in zip(death.death_date, death.death_date_precision, strict=True)] == [
        (date(2021, 2, 14), "month")]
    asked = _query(home, "SELECT value FROM dq.issue WHERE rule_id = 'FU-DEATH-DATE-COMPLETE'")
    assert asked.value.tolist() == ["month"]


def test_rows_are_accounted_for_and_the_age_rule_judges_the_new_registry(run):
    home, summary = run
    files = _query(home, "SELECT file_name, rows_read, rows_loaded, rows_quarantined, rows_superseded "
                         "FROM meta.source_file ORDER BY file_name").set_index("file_name")
    assert (files.rows_read == files.rows_loaded + files.rows_quarantined + files.rows_superseded).all()
    assert files.loc["STEP_Faelle.csv", "rows_loaded"] == 6
    # joined into their cases and loaded with them; the orphan held back
    assert files.loc["STEP_Histologie.csv", ["rows_read", "rows_loaded", "rows_quarantined"]].tolist() == [6, 5, 1]
    assert files.loc["STEP_Audit.csv", "rows_read"] == 0  # ignored: left out, counted in the run's notice
    notices = _query(home, "SELECT notice FROM meta.source_notice WHERE notice LIKE '%Audit ignored%'")
    assert "2 records not loaded" in notices.notice[0]
    results = _query(home, f"SELECT DISTINCT status FROM dq.check_result WHERE run_id = '{summary.run_id}' "
                           "AND rule_id = 'DIAG-AGE-REGISTRY'")
    assert set(results.status) == {"passed"}
