"""Onboarding a new national registry from its first export, as a data manager does: the draft must still read the
next night's export, `rtw check` must say what the night will do with the files, and a birth date named in Spanish,
Portuguese or Dutch is one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import lxml.html
import pandas as pd
import pytest
import yaml

from etl.onboard.check import check_source
from etl.onboard.profile import profile_column
from etl.onboard.reading import ColumnInfo
from etl.onboard.scaffold import (
    draft_mapping,
    file_layout,
    read_sources,
    record_set_from,
    record_set_names,
    source_id_from,
)

# A registry's rows: a patient number, sex, a birth date, a centre (six patients, each code seen 5 times at least).
_ROWS = "".join(f"NRX-{100 + i};{'HM'[i % 2]};{(i % 27) + 1:02d}/0{(i % 9) + 1}/2010;ES0{1 + i % 2}\r\n"
                for i in range(12))
_CSV = ("pat_nr;sexo;fecha_nacimiento;centro\r\n" + _ROWS).encode("utf-8")


@pytest.mark.parametrize(("first", "next_day"), [
    ("NRX datos – 2026-11-01.csv", "NRX datos – 2026-11-02.csv"),
    ("NRX_export_2026_11_01.csv", "NRX_export_2026_11_02.csv"),
    ("Registro 01.11.2026.csv", "Registro 02.11.2026.csv"),
    ("TREP_export_20261101.csv", "TREP_export_20261102.csv"),
    ("export[v2]_20261101.csv", "export[v2]_20261102.csv"),  # a hunt: `[v2]` was a class, matching no file
    ("AE_2026-11-01T10.30.csv", "AE_2026-11-02T09.15.csv"),  # a review: its time was record set `AET10.30`
])
def test_an_export_date_written_with_separators_is_a_wildcard_in_the_draft(first, next_day):
    layout = yaml.safe_load("\n".join(file_layout([first], True)))
    assert Path(first).match(layout["files"]) and Path(next_day).match(layout["files"]), layout
    assert not re.search(r"\d{2}", layout["record_set"]) and not re.search(r"\d{2}", source_id_from(first))
    assert record_set_from(next_day) == layout["record_set"]


def test_a_record_set_is_named_by_the_whole_name_without_its_extension_and_date():
    """A hunt: `a.b.c_20261101.csv` drafted record set `a`, `export[v2]_20261101.csv` record set `export[v2`."""
    assert [record_set_from(name) for name in ("reg.v2_20261101.csv", "export[v2]_20261101.csv",
                                               "NRX datos – 2026-11-01.csv", "(pazienti)_2026_11_01.xlsx",
                                               "20261101.csv")] == \
        ["reg.v2", "export[v2]", "NRX datos", "(pazienti)", "RECORDS"]


def test_exports_of_one_series_told_apart_by_their_dates_are_one_record_set():
    """A review: `reg.v2_20261101.csv` and `reg.v2_20261201.csv` were drafted as record sets `2` and `2`."""
    names = ["reg.v2_20261101.csv", "reg.v2_20261201.csv"]
    assert record_set_names(names, True) == dict.fromkeys(names, "reg.v2")
    layout = yaml.safe_load("\n".join(file_layout(names, True)))
    assert layout["record_set"] == "reg.v2" and all(Path(n).match(layout["files"]) for n in names), layout
    assert record_set_names(["NRX_PAC_2026-11-01.csv", "NRX_SEG_2026-11-01.csv"], True) == {
        "NRX_PAC_2026-11-01.csv": "PAC", "NRX_SEG_2026-11-01.csv": "SEG"}  # per-form files as before


def test_a_source_id_from_a_file_name_keeps_its_letters_in_ascii():
    assert source_id_from("NRX datos ñandú – 2026-11-01.csv") == "nrx_datos_nandu"
    assert source_id_from("Régistre_Müller_20261101.csv") == "registre_muller"


def test_per_form_files_dated_with_separators_name_their_record_sets_the_next_day():
    names = ["NRX_PAC_2026-11-01.csv", "NRX_SEG_2026-11-01.csv"]
    layout = yaml.safe_load("\n".join(file_layout(names, True)))
    assert Path("NRX_SEG_2026-11-02.csv").match(layout["files"])
    match = re.fullmatch(layout["record_set_from_file"], "NRX_SEG_2026-11-02.csv")
    assert match is not None and match["record_set"] == "SEG"


def test_a_draft_from_a_dated_export_checks_against_the_next_export(tmp_path):
    first = tmp_path / "NRX datos – 2026-11-01.csv"
    first.write_bytes(_CSV)
    draft = draft_mapping(read_sources([first], "nrx"))
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "nrx.yaml").write_text(draft.text, encoding="utf-8")
    landing = tmp_path / "landing" / "nrx"
    landing.mkdir(parents=True)
    shutil.copy(first, landing / "NRX datos – 2026-11-02.csv")  # the next night's delivery replaces it
    report = check_source("nrx", sources, tmp_path / "landing")
    assert report.usable, report.findings
    assert report.files == ("NRX datos – 2026-11-02.csv",)


def _mapped(tmp_path: Path, files: dict[str, bytes], extra: str = "") -> Path:
    """A registry's mapping (patient block only) and its landing files; the landing folder's parent."""
    sources = tmp_path / "sources"
    sources.mkdir(parents=True)
    (sources / "nrx.yaml").write_text(
        "source_id: nrx\ntitle: NRX\nformat: csv\nfiles: 'NRX_*.csv'\n"
        "record_set_from_file: 'NRX_(?P<record_set>[A-Z]+)_\\d{8}\\.csv'\n"
        "options: {delimiter: ';'}\ndate_format: '%d/%m/%Y'\npatient_key: pat_nr\nrecord_key: '{record_set}'\n"
        "patient:\n  from: PAC\n  fields:\n    sex: {column: sexo, codes: {H: male, M: female}}\ntables: {}\n" + extra,
        encoding="utf-8")
    landing = tmp_path / "landing" / "nrx"
    landing.mkdir(parents=True)
    for name, content in files.items():
        (landing / name).write_bytes(content)
    return sources


def test_check_warns_that_the_night_holds_an_export_with_no_records(tmp_path):
    header = _CSV.split(b"\r\n")[0] + b"\r\n"
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": header})
    report = check_source("nrx", sources, tmp_path / "landing")
    held = [f for f in report.warnings if f.where == "NRX_PAC_20261101.csv"]
    assert report.usable and len(held) == 1, report.findings
    assert "no records" in held[0].message and "rtw accept nrx NRX_PAC_20261101.csv" in held[0].message
    other = tmp_path / "full"
    full = check_source("nrx", _mapped(other, {"NRX_PAC_20261101.csv": _CSV}), other / "landing")
    assert full.usable and full.findings == ()


def test_an_ignored_form_with_no_records_is_not_said_to_be_held(tmp_path):
    header = _CSV.split(b"\r\n")[0] + b"\r\n"
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": _CSV, "NRX_SEG_20261101.csv": header}, "ignore: [SEG]\n")
    report = check_source("nrx", sources, tmp_path / "landing")
    assert report.usable and report.findings == (), report.findings


@pytest.mark.parametrize("name", ["fecha_nacimiento", "FechaNacimiento", "data_nascimento", "geboortedatum",
                                  "geburtsdatum"])
def test_a_birth_date_named_in_spanish_portuguese_or_dutch_shows_no_value(name):
    # Month and year of birth, a third unknown: no date column by its values, a birth date by its name.
    column = profile_column(name, pd.Series(["05/2010"] * 6 + ["03/2011"] * 6 + ["desconocido"] * 6))
    assert column.top_values == () and column.hidden_reason == "identifier-like name"
    labelled = profile_column("v4", pd.Series(["05/2010"] * 6 + ["desconocido"] * 6),
                              ColumnInfo(label="Fecha de nacimiento"))
    assert labelled.top_values == ()


@pytest.mark.parametrize("name", ["fecha_nacimiento", "data_nascimento", "geboortedatum"])
def test_a_birth_date_named_in_spanish_portuguese_or_dutch_is_drafted_as_the_patient_s(tmp_path, name):
    export = tmp_path / "NRX_20261101.csv"
    export.write_bytes(_CSV.replace(b"fecha_nacimiento", name.encode()))
    raw = yaml.safe_load(draft_mapping(read_sources([export], "nrx")).text)
    assert raw["patient"]["fields"]["birth_date"] == {"column": name, "type": "date"}


def _visits_csv(patients: int = 12, visits: int = 3) -> bytes:
    rows = "".join(f"NRX-{100 + p};{v};0{v}/06/2024;{'vivo' if v < 3 else 'fallecido'}\r\n"
                   for p in range(patients) for v in range(1, visits + 1))
    return ("pat_nr;visita;fecha_visita;estado\r\n" + rows).encode("utf-8")


_FOLLOW_UP = ("tables:\n  follow_up:\n    from: SEG\n    fields:\n"
              "      contact_date: {column: fecha_visita, type: date}\n"
              "      vital_status: {column: estado, codes: {vivo: alive, fallecido: dead}}\n")


def test_check_says_a_record_key_most_records_repeat_is_the_wrong_one(tmp_path):
    # One key per patient on a record set of three visits each: the night would load 12 and quarantine 24.
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": _CSV, "NRX_SEG_20261101.csv": _visits_csv()})
    mapping = sources / "nrx.yaml"
    mapping.write_text(mapping.read_text().replace("tables: {}\n", _FOLLOW_UP), encoding="utf-8")
    report = check_source("nrx", sources, tmp_path / "landing")
    repeated = [f for f in report.errors if f.where == "record set SEG (record_key)"]
    assert not report.usable and len(repeated) == 1, report.findings
    assert "24 of 36 records repeat" in repeated[0].message and "NRX_SEG_20261101.csv:3" in repeated[0].message
    assert "NRX-1" not in repeated[0].message  # the keys are patient numbers: only where they are
    mapping.write_text(mapping.read_text().replace("record_key: '{record_set}'", "record_key: '{record_set}'\n"
                                                   "record_keys: {SEG: '{record_set}[{visita}]'}"), encoding="utf-8")
    assert check_source("nrx", sources, tmp_path / "landing").findings == ()


def test_check_warns_of_a_few_repeated_record_keys_as_the_night_quarantines_them(tmp_path):
    visits = _visits_csv() + b"NRX-100;2;02/06/2024;vivo\r\n"  # a visit exported twice
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": _CSV, "NRX_SEG_20261101.csv": visits},
                      "record_keys: {SEG: '{record_set}[{visita}]'}\n")
    mapping = sources / "nrx.yaml"
    mapping.write_text(mapping.read_text().replace("tables: {}\n", _FOLLOW_UP), encoding="utf-8")
    report = check_source("nrx", sources, tmp_path / "landing")
    assert report.usable and [f.where for f in report.warnings] == ["record set SEG (record_keys.SEG)"]
    assert "1 of 37 records repeat" in report.warnings[0].message and ":38" in report.warnings[0].message


def test_a_record_set_with_no_records_gets_no_record_key_guessed_from_them():
    from etl.onboard.scaffold import choose_record_keys

    patients = pd.DataFrame({"pat_nr": ["NRX-1", "NRX-2"], "sexo": ["H", "M"]})
    visits = pd.DataFrame({"pat_nr": pd.Series([], dtype="string"), "visita": pd.Series([], dtype="string")})
    # No record tells whether a patient has one visit or many: left to the data manager.
    assert choose_record_keys({"PAC": patients, "SEG": visits}, "pat_nr") == {"PAC": "PAC", "SEG": None}
    numbered = {name: frame.assign(RECORDNO=[str(i) for i in range(len(frame))])
                for name, frame in {"PAC": patients, "SEG": visits}.items()}
    assert choose_record_keys(numbered, "pat_nr") == dict.fromkeys(numbered, "{record_set}[{RECORDNO}]")


def test_the_value_labels_of_an_identifying_column_are_not_shown_by_rtw_profile(tmp_path):
    import pyreadstat

    from etl.onboard.pages import profile_tables, write_profile_page
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file

    # Some registries label their patient numbers with the patients' names.
    frame = pd.DataFrame({"pat_nr": [float(i % 6 + 1) for i in range(12)], "sexo": [1.0, 2.0] * 6})
    export = tmp_path / "NRX_20261101.sav"
    pyreadstat.write_sav(frame, export, variable_value_labels={
        "pat_nr": {1: "Zoë García Pérez", 2: "Jürgen Müller"}, "sexo": {1: "Hombre", 2: "Mujer"}})
    profile = profile_file(read_file(export))
    labels = next(n for n in profile.notices if "value labels" in n)
    assert "García" not in labels and "Müller" not in labels and "1 'Zo" not in labels
    assert "pat_nr: 2 value labels, not listed (identifier-like name)" in labels
    assert "sexo 1 'Hombre', 2 'Mujer'" in labels
    page = write_profile_page(profile, tmp_path / "page.html").read_text(encoding="utf-8")
    from rich.console import Console

    console = Console(record=True, width=300)
    console.print(profile_tables(profile))
    assert "García" not in page and "García" not in console.export_text()
    assert "code list: 2 codes, not shown: identifier-like name" in page and "Hombre" in page
    assert "García" not in draft_mapping(read_sources([export], "nrx")).text


def test_an_export_with_no_records_is_said_so_not_0_percent_empty(tmp_path):
    from rich.console import Console

    from etl.onboard.pages import profile_tables, write_profile_page
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file

    export = tmp_path / "NRX_PAC_20261101.csv"
    export.write_bytes(_CSV.split(b"\r\n")[0] + b"\r\n")
    profile = profile_file(read_file(export))
    console = Console(record=True, width=200)
    console.print(profile_tables(profile))
    page = lxml.html.fromstring(write_profile_page(profile, tmp_path / "page.html").read_text(encoding="utf-8"))
    assert page.xpath('//tr[@data-column="sexo"]/td[@class="num"]')[0].text_content() == "–"
    rows = [line for line in console.export_text().splitlines() if "│ sexo" in line]
    assert len(rows) == 1 and "0%" not in rows[0] and "│     – │" in rows[0], rows
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": _CSV, "NRX_SEG_20261101.csv": _visits_csv(0)})
    unmapped = [f for f in check_source("nrx", sources, tmp_path / "landing").errors if f.where == "record set SEG"]
    assert len(unmapped) == 1 and unmapped[0].message.startswith("no records in this export, but neither mapped nor")


def test_a_first_row_that_is_a_record_is_shown_by_position_not_as_column_names(tmp_path):
    from rich.console import Console

    from etl.onboard.pages import profile_tables, write_profile_page
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file

    # An export without its header row: the first patient's number, name and birth date would be column names.
    rows = "".join(f"NRX{100000 + i};Zoë{i};{(i % 27) + 1:02d}/0{(i % 9) + 1}/2010;{'HM'[i % 2]};{i % 9},5\r\n"
                   for i in range(12))
    export = tmp_path / "NRX_20261101.csv"
    export.write_bytes(rows.encode("utf-8"))
    read = read_file(export)
    first = ("NRX100000", "Zoë0", "01/01/2010")
    profile = profile_file(read)
    console = Console(record=True, width=250)
    console.print(profile_tables(profile))
    page = write_profile_page(profile, tmp_path / "page.html").read_text(encoding="utf-8")
    draft = draft_mapping(read_sources([export], "nrx")).text
    for shown in (console.export_text(), page, draft):
        assert not [value for value in first if value in shown]
    assert [c.name for c in profile.record_sets[0].columns] == [f"column {i}" for i in range(1, 6)]
    assert any("first row reads as a record" in n for n in profile.notices)


def test_column_names_of_a_real_header_stay_as_written(tmp_path):
    from etl.onboard.reading import read_file

    years = tmp_path / "NRX_20261101.csv"
    years.write_bytes(("centro;2019;2020;sexo\r\n" + "".join(f"ES0{i % 3};{i};{i + 1};H\r\n" for i in range(12)))
                      .encode("utf-8"))
    assert list(read_file(years).record_sets["NRX_20261101"].columns[:4]) == ["centro", "2019", "2020", "sexo"]
    export = tmp_path / "NRX_PAC_20261101.csv"
    export.write_bytes(_CSV)
    assert "pat_nr" in read_file(export).record_sets["NRX_PAC_20261101"].columns


def test_check_lists_no_column_names_of_an_export_without_its_header_row(tmp_path):
    rows = "".join(f"NRX{100000 + i};Zoë{i};{'HM'[i % 2]};{(i % 27) + 1:02d}/0{(i % 9) + 1}/2010\r\n"
                   for i in range(12))
    sources = _mapped(tmp_path, {"NRX_PAC_20261101.csv": rows.encode("utf-8")})
    report = check_source("nrx", sources, tmp_path / "landing")
    assert not report.usable and report.errors
    assert all("Zoë0" not in f.message and "01/01/2010" not in f.message and "NRX100000" not in f.message
               for f in report.findings), report.findings
    assert "first row reads as a record" in report.errors[0].message


@pytest.mark.parametrize("label", ["Número de paciente", "Numéro de patient", "N° dossier", "Patientennummer",
                                   "Patienten-ID", "Codice paziente", "Patiëntnummer", "Identificador del paciente"])
def test_a_patient_number_labelled_in_a_registry_s_language_shows_no_value(label):
    # A small registry: four patients with six records each, under a variable named v1.
    values = pd.Series([f"{100 + p}" for p in range(4) for _ in range(6)])
    column = profile_column("v1", values, ColumnInfo(label=label))
    assert column.top_values == () and column.hidden_reason == "identifier-like name"


@pytest.mark.parametrize("label", ["Sexo del paciente", "Sexe du patient", "Geschlecht des Patienten",
                                   "Stato del paziente", "Code du centre"])
def test_a_label_about_the_patient_that_names_no_number_keeps_its_codes(label):
    assert profile_column("v2", pd.Series(["1"] * 6 + ["2"] * 6), ColumnInfo(label=label)).top_values


def test_an_export_without_its_header_row_repeating_a_value_is_refused_without_it(tmp_path):
    from etl.extract.errors import ExtractError
    from etl.onboard.reading import read_file

    # The first record is read as the header: its diagnosis date is also its first visit's.
    rows = "".join(f"NRX{100000 + i};Zoë{i} García;12/03/2010;12/03/2010;{'HM'[i % 2]}\r\n" for i in range(12))
    export = tmp_path / "NRX_20261101.csv"
    export.write_bytes(rows.encode("utf-8"))
    with pytest.raises(ExtractError) as raised:
        read_file(export)
    assert "header column 4 repeats the name of column 3" in str(raised.value)
    sources = _mapped(tmp_path / "check", {"NRX_PAC_20261101.csv": rows.encode("utf-8")})
    findings = check_source("nrx", sources, tmp_path / "check" / "landing").findings
    assert findings and not [f for f in findings if "12/03/2010" in f.message or "García" in f.message], findings
    for said in (str(raised.value), *(f.message for f in findings)):
        assert "12/03/2010" not in said and "García" not in said and "NRX100000" not in said


def test_decimal_shaped_names_of_a_questionnaire_and_a_repeated_header_are_real_headers(tmp_path):
    from etl.onboard.reading import header_is_a_record, read_file

    # Questionnaire items numbered 1.1, 1.2, 2.1 holding whole scores: names, not a record's decimals.
    items = pd.DataFrame({"pat_id": ["A1", "A2"], "1.1": ["1", "2"], "1.2": ["3", "4"], "2.1": ["1", "1"],
                          "sexo": ["H", "M"]})
    assert not header_is_a_record(items)
    # Exports concatenated into one file: the header again as a row, each name in its own column.
    concatenated = pd.DataFrame({"pat_id": ["A1", "pat_id", "A2"], "sexo": ["H", "sexo", "M"],
                                 "stage": ["II", "stage", "III"]})
    assert not header_is_a_record(concatenated)
    export = tmp_path / "NRX_20261101.csv"
    export.write_bytes(("pat_id;1.1;1.2;2.1;sexo\r\n" + "".join(f"A{i};{i % 5};{i % 3};1;{'HM'[i % 2]}\r\n"
                                                                 for i in range(12))).encode("utf-8"))
    assert list(read_file(export).record_sets["NRX_20261101"].columns[:5]) == ["pat_id", "1.1", "1.2", "2.1", "sexo"]
    # A record's decimals and dates under their own columns still read as a record.
    record = pd.DataFrame({"NRX100000": ["NRX100001"], "Zoë": ["Ana"], "0,5": ["1,5"], "01/01/2010": ["02/01/2010"]})
    assert header_is_a_record(record)


def test_the_page_and_the_terminal_give_a_column_s_empty_share_alike(tmp_path):
    from rich.console import Console

    from etl.onboard.pages import profile_tables, write_profile_page
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file

    export = tmp_path / "NRX_PAC_20261101.csv"
    export.write_bytes(_CSV.replace(b";ES01\r\n", b";\r\n", 3))  # 3 of 12 centres left empty: 25 %
    profile = profile_file(read_file(export))
    page = lxml.html.fromstring(write_profile_page(profile, tmp_path / "page.html").read_text(encoding="utf-8"))
    console = Console(record=True, width=200)
    console.print(profile_tables(profile))
    assert page.xpath('//tr[@data-column="centro"]/td[@class="num"]')[0].text_content() == "25%"
    assert [line for line in console.export_text().splitlines() if "│ centro" in line and "│   25% │" in line]


def test_a_workbook_of_empty_sheets_is_refused_not_drafted(tmp_path):
    """A hunt: its draft (`from: "TODO"`, no field) was said to validate, and `rtw check` then refused it."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Pazienti"
    book.create_sheet("Follow-up")
    book.save(tmp_path / "registro_20261101.xlsx")
    with pytest.raises(ValueError, match=r"^no record set with a column in registro_20261101\.xlsx \(.*sheet "
                                         r"'Pazienti' is empty.*\): nothing to draft a mapping from$"):
        read_sources([tmp_path / "registro_20261101.xlsx"], "registro")
