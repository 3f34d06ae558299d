"""A landing file's name never shows a patient number outside landing/, archive/ and staging/.

Some sources deliver a file per patient (`Fall_123456_Verlauf.csv`): the warehouse, the run's
notices, messages and log, the report and `rtw status` name such a file with `{patient}` in place of
the number, and keep the rest (forms, dates) so a data manager still finds it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.config import SOURCES_DIR, Home, resolve_home
from etl.steps import RunSummary

KEY = "file-names-test-key"
NUMBERS = re.compile(r"123456|234567|345678|987654")  # the patients' numbers, in their files' names
WIDE = {"COLUMNS": "400"}  # rtw status a row a line: no number cut in two


@pytest.mark.parametrize(("keys", "name", "shown"), [
    (["234567"], "Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),  # a new patient: the keys' shape
    (["234567"], "Fall123456.csv", "Fall{patient}.csv"),
    (["234567"], "Verlauf_20261101.csv", "Verlauf_20261101.csv"),  # a date is longer than the keys
    (["ILTB-00001"], "patient-ILTB-00012.xlsx", "patient-{patient}.xlsx"),
    (["ILTB-00001"], "patient_iltb_00012.xlsx", "patient_{patient}.xlsx"),
    (["ILTB-00001"], "ILTB_ENROL.csv", "ILTB_ENROL.csv"),
    (["01-0001"], "sacha_fr_2026-12-01.xml", "sacha_fr_2026-12-01.xml"),
    (["01-0001", "2503", "7"], "sacha_03-0042.xml", "sacha_{patient}.xml"),  # short keys name nobody
    ([], "Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),  # no key known: any long number
    ([], "SACHA_ODM_20261101.xml", "SACHA_ODM_20261101.xml"),
    ([], "export_20261101_0230.csv", "export_20261101_0230.csv"),
    ([], "export_20261101023000.csv", "export_20261101023000.csv"),
])
def test_a_file_name_is_shown_without_the_patient_numbers_it_holds(keys, name, shown):
    from etl.extract.file_names import PatientNumbers, shown_file_name

    assert shown_file_name(name, PatientNumbers.of(keys)) == shown


HEADER = ("id_record;codice_paziente;codice_centro;sesso;data_nascita;data_diagnosi;data_registrazione;morfologia;"
          "comportamento;topografia;lateralita;base_diagnosi;dimensione_cm;stato_vitale;data_ultimo_contatto;"
          "data_decesso;eupid;note")


def _case_file(folder: Path, number: str) -> None:
    """A German registry's export of one patient (a case: `Fall`), in the Italian registry's layout."""
    row = f"1;{number};IT-BO01;2;27/03/2010;05/11/2018;04/07/2019;8260;3;C73.9;N;7;1,3;V;18/03/2026;;;"
    (folder / f"Fall_{number}_Verlauf.csv").write_bytes(f"{HEADER}\r\n{row}\r\n".encode("cp1252"))


def german_registry(root: Path, files: str) -> tuple[Home, Path, Path]:
    """A home whose source registry_de is the Italian registry's mapping reading the files `files`: the home, the
    mappings' folder and the source's landing folder."""
    home = resolve_home(root / "home").ensure()
    sources = root / "sources"
    sources.mkdir()
    mapping = (SOURCES_DIR / "registry_it.yaml").read_text(encoding="utf-8")
    mapping = mapping.replace("source_id: registry_it", "source_id: registry_de")
    (sources / "registry_de.yaml").write_text(re.sub(r"(?m)^files: .*$", f'files: "{files}"', mapping))
    folder = home.landing / "registry_de"
    folder.mkdir()
    return home, sources, folder


@pytest.fixture
def per_patient(tmp_path, monkeypatch) -> tuple[Home, Path]:
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    home, sources, folder = german_registry(tmp_path, "Fall_*_Verlauf.csv")
    for number in ("123456", "234567"):  # the later name is the current export, the other superseded
        _case_file(folder, number)
    (folder / "Fall_345678_Notiz.txt").write_text("not an export")  # named in a notice: matches no pattern
    return home, sources


def _warehouse_texts(home: Home) -> list[str]:
    """Every text the warehouse holds, read a table at a time."""
    texts = []
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name, list(column_name) FROM duckdb_columns() WHERE "
                             "data_type = 'VARCHAR' AND schema_name IN ('meta', 'stage', 'core', 'dq', 'marts') "
                             "GROUP BY ALL").fetchall()
        for schema, table, columns in tables:
            quoted = ", ".join(f'"{column}"' for column in columns)
            texts += [v for row in con.execute(f"SELECT DISTINCT {quoted} FROM {schema}.{table}").fetchall()
                      for v in row if v]
    return texts


def _report_texts(home: Home) -> list[str]:
    return [page.read_text(encoding="utf-8") for page in home.reports.rglob("index.html")]


def _said(home: Home, summary: RunSummary, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the run printed and logged, and what `rtw status` shows after it."""
    status = CliRunner().invoke(app, ["status", "--home", str(home.root)], env=WIDE)
    assert status.exit_code == 0, status.output
    return [*summary.notices, summary.message or "", *(r.getMessage() for r in caplog.records), status.output]


def _leaks(home: Home, summary: RunSummary, caplog: pytest.LogCaptureFixture) -> list[str]:
    return [text for text in [*_warehouse_texts(home), *_report_texts(home), *_said(home, summary, caplog)]
            if NUMBERS.search(text)]


@pytest.mark.integration
def test_a_file_per_patient_is_named_without_the_number_everywhere(per_patient, caplog):
    home, sources = per_patient
    with caplog.at_level(logging.INFO, logger="rtw"):
        summary = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert summary.sources_failed == [] and summary.report
    files = query_rows(home, "SELECT file_name, status FROM meta.source_file WHERE source_id = 'registry_de' "
                             "ORDER BY status")
    assert files == [("Fall_{patient}_Verlauf.csv", "loaded"), ("Fall_{patient}_Verlauf.csv", "superseded")]
    assert query_rows(home, "SELECT DISTINCT source_file FROM stage.record WHERE source_id = 'registry_de'") == [
        ("Fall_{patient}_Verlauf.csv",)]
    assert "registry_de: Fall_{patient}_Notiz.txt does not match 'Fall_*_Verlauf.csv'; ignored" in summary.notices
    assert _leaks(home, summary, caplog) == []

    # The next export cannot be read: its error names the file (the path, in the reader's words).
    (home.landing / "registry_de" / "Fall_987654_Verlauf.csv").write_bytes(f"{HEADER}\r\n1;987654;\"cut".encode())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtw"):
        failed = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert failed.sources_failed == ["registry_de"] and "Fall_{patient}_Verlauf.csv, line 2" in (failed.message or "")
    assert _leaks(home, failed, caplog) == []

    # An export with no records is held; the message names it with its sha256, which rtw accept takes.
    empty = home.landing / "registry_de" / "Fall_987654_Verlauf.csv"
    empty.write_bytes(f"{HEADER}\r\n".encode())
    held = pipeline.run(home, key_value=KEY, sources_dir=sources)
    sha = hashlib.sha256(empty.read_bytes()).hexdigest()
    assert f"Fall_{{patient}}_Verlauf.csv (sha256 {sha[:12]}) has no records" in (held.message or "")
    accepted = CliRunner().invoke(app, ["accept", "registry_de", sha[:12], "--home", str(home.root)], env=WIDE)
    assert accepted.exit_code == 0 and "Fall_{patient}_Verlauf.csv accepted" in accepted.output, accepted.output
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtw"):
        loaded = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert loaded.sources_failed == []
    assert query_rows(home, "SELECT file_name FROM meta.file_acceptance") == [("Fall_{patient}_Verlauf.csv",)]
    assert _leaks(home, loaded, caplog) == [] and not NUMBERS.search(accepted.output)


def test_a_pull_names_the_files_it_lands_without_the_numbers(per_patient, tmp_path):
    from etl.pull import pull_source
    from etl.pull.deliveries import check_drop_zone

    home, sources = per_patient
    drop_zone = tmp_path / "drop_zone"
    drop_zone.mkdir()
    _case_file(drop_zone, "987654")
    mapping = sources / "registry_de.yaml"
    mapping.write_text(mapping.read_text() + f"\ndelivery: {{url: '{drop_zone}', quiet_seconds: 0}}\n")
    waiting = check_drop_zone(home, "registry_de", sources_dir=sources)
    pulled = pull_source(home, "registry_de", sources_dir=sources)
    assert (home.landing / "registry_de" / "Fall_987654_Verlauf.csv").is_file()  # landed as delivered
    assert pulled.pulled == ["Fall_{patient}_Verlauf.csv"] and waiting.waiting == ["Fall_{patient}_Verlauf.csv"]
    assert not NUMBERS.search(pulled.model_dump_json() + waiting.model_dump_json())


def test_a_name_recorded_in_clear_before_names_were_shown_is_renamed_in_the_history_too():
    """A warehouse built before names were shown: the upgrade's run (which reloads every source) renames
    the file in meta.source_file and in what earlier runs wrote of it."""
    from datetime import date

    from etl.load import warehouse
    from etl.steps import ExportFile, SourceOutcome, SourceStatus

    con = duckdb.connect()
    warehouse._create_schema(con)
    clear, shown, sha = "Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv", "ab" * 32
    con.execute("INSERT INTO meta.source_file (source_id, source_file_sha256, file_name, status, first_run_id) "
                "VALUES ('reg', ?, ?, 'loaded', 'old')", [sha, clear])
    con.execute("INSERT INTO meta.source_notice VALUES ('old', 'reg', ?), ('old', 'other', ?)",
                [f"reg: {clear}: cp1252, ';'", f"other: {clear}"])
    con.execute("INSERT INTO meta.record_removal (source_id, source_record_key, source_file, source_file_sha256) "
                "VALUES ('reg', 'p|x', ?, ?)", [clear, sha])
    con.execute("INSERT INTO meta.file_acceptance (source_id, source_file_sha256, file_name) VALUES ('reg', ?, ?)",
                [sha, clear])
    outcome = SourceOutcome(source_id="reg", run_id="new", status=SourceStatus.HARMONISED, files=[
        ExportFile(name=shown, sha256=sha, size_bytes=1, series="Verlauf", exported_on=date(2026, 12, 1))])
    warehouse._record_files(con, "new", outcome)
    texts = [row[0] for table, column in (("source_file", "file_name"), ("source_notice", "notice"),
                                          ("record_removal", "source_file"), ("file_acceptance", "file_name"))
             for row in con.execute(f"SELECT {column} FROM meta.{table} WHERE source_id = 'reg'").fetchall()]
    assert texts == [shown, f"reg: {shown}: cp1252, ';'", f"reg: 1 {warehouse.NAMES_SHOWN_NOTICE} (in the warehouse, "
                     "and in the report pages and query lists of earlier runs)", shown, shown]
    # Another source's notice is that source's to rename.
    assert con.execute("SELECT notice FROM meta.source_notice WHERE source_id = 'other'").fetchall() == [
        (f"other: {clear}",)]


SHEETS_MAPPING = """\
source_id: kr_sheets
title: A registry's workbook with a sheet per patient
format: excel
files: "KR_register_*.xlsx"
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
    from: "Verlauf_{patient}"
    fields:
      contact_date: {column: Kontakt, type: date, required: true}
      vital_status: {column: Status, codes: {L: alive, V: dead}}
"""


@pytest.fixture
def sheet_per_patient(tmp_path, monkeypatch) -> tuple[Home, Path]:
    """A registry's workbook: its patients on one sheet, each one's visits on a sheet named after them,
    and a note on a sheet no mapping reads (its records are quarantined)."""
    import openpyxl

    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    home = resolve_home(tmp_path / "home").ensure()
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "kr_sheets.yaml").write_text(SHEETS_MAPPING)
    workbook = openpyxl.Workbook()
    patients = workbook.active
    patients.title = "Patienten"
    patients.append(["Pat_Nr", "Geschlecht", "Klinik"])
    for number, visits in (("123456", 2), ("234567", 3)):
        patients.append([number, "w", "KR-01"])
        sheet = workbook.create_sheet(f"Verlauf_{number}")
        sheet.append(["Pat_Nr", "Kontakt", "Status"])
        for day in range(1, visits + 1):
            sheet.append([number, f"2026-0{day}-15", "L"])
    note = workbook.create_sheet("Notiz_345678")
    note.append(["Pat_Nr", "Kontakt", "Notiz"])
    note.append(["345678", "2026-02-01", "Rückruf"])
    (home.landing / "kr_sheets").mkdir()
    workbook.save(home.landing / "kr_sheets" / "KR_register_20261201.xlsx")
    return home, sources


@pytest.mark.integration
def test_a_sheet_per_patient_is_one_record_set_named_without_the_numbers(sheet_per_patient, caplog):
    home, sources = sheet_per_patient
    with caplog.at_level(logging.INFO, logger="rtw"):
        summary = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert summary.sources_failed == [] and summary.report
    assert query_rows(home, "SELECT record_set, count(*) FROM stage.record GROUP BY ALL ORDER BY 1") == [
        ("Notiz_{patient}", 1), ("Patienten", 2), ("Verlauf_{patient}", 5)]
    assert query_rows(home, "SELECT count(*) FROM core.follow_up") == [(5,)]
    assert query_rows(home, "SELECT DISTINCT record_set FROM dq.quarantine") == [("Notiz_{patient}",)]
    notices = query_rows(home, "SELECT notice FROM meta.source_notice WHERE contains(notice, 'Verlauf')")
    # Each patient's sheet its own notice, told apart by its place (one text for both kept one of them).
    assert {("KR_register_20261201.xlsx: sheet 'Verlauf_{patient}' (sheet 2 of the workbook): 2 rows",),
            ("KR_register_20261201.xlsx: sheet 'Verlauf_{patient}' (sheet 3 of the workbook): 3 rows",)} <= set(notices)
    assert _leaks(home, summary, caplog) == []


def test_a_zip_refused_names_its_members_without_the_numbers(per_patient, tmp_path, caplog):
    """A zip delivery whose members are refused: the failure names them as landing would."""
    import zipfile

    from etl.pull import pull_source

    home, sources = per_patient
    drop_zone = tmp_path / "drop_zone"
    drop_zone.mkdir()
    with zipfile.ZipFile(drop_zone / "delivery_20261201.zip", "w") as delivery:
        delivery.writestr("export/Fall_987654_Notiz.txt", "not an export")
    mapping = sources / "registry_de.yaml"
    mapping.write_text(mapping.read_text() + f"\ndelivery: {{url: '{drop_zone}', quiet_seconds: 0, unzip: true}}\n")
    with caplog.at_level(logging.INFO, logger="rtw"):
        pulled = pull_source(home, "registry_de", sources_dir=sources)
    assert pulled.pulled == [] and "members: export/Fall_{patient}_Notiz.txt" in " ".join(pulled.failures)
    assert not NUMBERS.search(pulled.model_dump_json() + " ".join(r.getMessage() for r in caplog.records))


@pytest.mark.integration
def test_an_error_naming_a_sheet_per_patient_shows_it_without_the_number(sheet_per_patient, caplog):
    """An extract error (not a notice) quoting a sheet: a header that repeats a name on a patient's sheet."""
    import openpyxl

    home, sources = sheet_per_patient
    path = home.landing / "kr_sheets" / "KR_register_20261201.xlsx"
    workbook = openpyxl.load_workbook(path)
    workbook["Verlauf_234567"]["D1"] = "Kontakt"  # the header repeats a name: the workbook cannot be read
    workbook.save(path)
    with caplog.at_level(logging.INFO, logger="rtw"):
        failed = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert failed.sources_failed == ["kr_sheets"]
    assert "sheet 'Verlauf_{patient}' (sheet 3 of the workbook), cell D1: the header repeats the name of column" in (
        failed.message or "")
    assert _leaks(home, failed, caplog) == []
    # rtw check stages the file itself and says the same.
    from etl.onboard.check import check_source

    errors = check_source("kr_sheets", sources, home.landing, home.staging).errors
    assert "sheet 'Verlauf_{patient}' (sheet 3 of the workbook), cell D1: the header repeats" in errors[0].message
    assert not [e for e in errors if "234567" in e.where + e.message]


def _as_an_earlier_version_left_it(home: Home, run_id: str) -> list[Path]:
    """The home as a version before names were shown left it: meta.source_file and the run's report files
    name the archived files in clear (their archive copies keep the names as delivered). The report files."""
    clear = {copy.name[:16]: copy.name.partition("__")[2] for copy in (home.archive / "registry_de").iterdir()}
    with duckdb.connect(str(home.warehouse)) as con:
        for prefix, name in clear.items():
            con.execute("UPDATE meta.source_file SET file_name = ? WHERE starts_with(source_file_sha256, ?)",
                        [name, prefix])
        (loaded,) = con.execute("SELECT file_name FROM meta.source_file WHERE status = 'loaded'").fetchone()
    pages = [p for p in (home.reports / run_id).rglob("*") if p.suffix in (".html", ".csv") and p.is_file()]
    for page in pages:
        page.write_text(page.read_text(encoding="utf-8").replace("Fall_{patient}_Verlauf.csv", loaded),
                        encoding="utf-8")
    return pages


@pytest.mark.integration
def test_the_upgrade_shows_the_names_in_the_report_pages_of_earlier_runs_too(per_patient, caplog):
    home, sources = per_patient
    earlier = pipeline.run(home, key_value=KEY, sources_dir=sources)
    pages = _as_an_earlier_version_left_it(home, earlier.run_id)
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))]

    with caplog.at_level(logging.INFO, logger="rtw"):
        upgraded = pipeline.run(home, key_value=KEY, sources_dir=sources, force=True)  # an upgrade reloads all
    assert upgraded.sources_failed == [] and upgraded.notes == []
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
    assert "Fall_{patient}_Verlauf.csv" in (home.reports / earlier.run_id / "index.html").read_text(encoding="utf-8")
    assert _leaks(home, upgraded, caplog) == []
    assert query_rows(home, "SELECT notice FROM meta.source_notice WHERE run_id = ? AND contains(notice, 'earlier "
                            "version')", [upgraded.run_id]) == [
        ("registry_de: 1 file name(s) an earlier version recorded with a patient number are shown without it (in "
         "the warehouse, and in the report pages and query lists of earlier runs)",)]


def test_the_report_files_of_earlier_runs_are_rewritten_with_the_names_shown(tmp_path):
    """Pages (their text as HTML writes it), query lists and workbooks; a longer name is not cut inside."""
    import openpyxl

    from etl.quality.report import show_file_names

    run = tmp_path / "reports" / "old"
    run.mkdir(parents=True)
    (run / "index.html").write_text("<td>Fall_123456_Verlauf.csv</td><td>Fall_123456_Verlauf.csv.bak</td>"
                                    "<td>R&amp;D_234567.csv</td>")
    (run / "queries.csv").write_text("source_file,field\nFall_123456_Verlauf.csv,sex\n")
    workbook = openpyxl.Workbook()
    workbook.active.append(["source_file", "Fall_123456_Verlauf.csv"])
    workbook.save(run / "queries.xlsx")
    (tmp_path / "reports" / "new").mkdir()
    shown = {"Fall_123456_Verlauf.csv": "Fall_{patient}_Verlauf.csv", "R&D_234567.csv": "R&D_{patient}.csv",
             "Fall_123456_Verlauf.csv.bak": "Fall_{patient}_Verlauf.csv.bak"}
    changed = show_file_names(tmp_path / "reports", shown, runs=["old", "new", "gone"])
    assert sorted(p.name for p in changed) == ["index.html", "queries.csv", "queries.xlsx"]
    assert (run / "index.html").read_text() == ("<td>Fall_{patient}_Verlauf.csv</td><td>Fall_{patient}_Verlauf.csv.bak"
                                                "</td><td>R&amp;D_{patient}.csv</td>")
    assert (run / "queries.csv").read_text() == "source_file,field\nFall_{patient}_Verlauf.csv,sex\n"
    assert [c.value for c in next(openpyxl.load_workbook(run / "queries.xlsx").active.iter_rows())] == [
        "source_file", "Fall_{patient}_Verlauf.csv"]
    assert show_file_names(tmp_path / "reports", shown, runs=["old"]) == []  # once is enough


@pytest.mark.integration
def test_the_upgrade_shows_a_sheet_per_patient_without_the_number_in_the_history_and_earlier_reports(
        sheet_per_patient, caplog):
    home, sources = sheet_per_patient
    earlier = pipeline.run(home, key_value=KEY, sources_dir=sources)
    # As a version before record sets were shown left the home: a sheet per patient named in clear in the
    # records, the notices, the issues and the run's report pages.
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute("UPDATE stage.record SET record_set = 'Notiz_345678' WHERE record_set = 'Notiz_{patient}'")
        con.execute("UPDATE stage.record SET record_set = 'Verlauf_123456' WHERE record_set = 'Verlauf_{patient}'")
        con.execute("UPDATE meta.source_notice SET notice = replace(notice, 'Verlauf_{patient}', 'Verlauf_234567')")
        con.execute("UPDATE dq.issue_span SET record_set = replace(record_set, '{patient}', '345678'), "
                    "message = replace(message, '{patient}', '345678')")
    pages = [p for p in (home.reports / earlier.run_id).rglob("*") if p.suffix in (".html", ".csv") and p.is_file()]
    for page in pages:
        page.write_text(page.read_text(encoding="utf-8").replace("Notiz_{patient}", "Notiz_345678")
                        .replace("Verlauf_{patient}", "Verlauf_234567"), encoding="utf-8")
    assert _leaks(home, earlier, caplog)

    with caplog.at_level(logging.INFO, logger="rtw"):
        upgraded = pipeline.run(home, key_value=KEY, sources_dir=sources, force=True)  # an upgrade reloads all
    assert upgraded.sources_failed == [] and upgraded.notes == []
    assert _leaks(home, upgraded, caplog) == []
    assert "Notiz_{patient}" in (home.reports / earlier.run_id / "index.html").read_text(encoding="utf-8")
    assert query_rows(home, "SELECT count(*) FROM meta.source_notice WHERE run_id = ? AND contains(notice, "
                            "'record set name(s) an earlier version')", [upgraded.run_id]) == [(1,)]
