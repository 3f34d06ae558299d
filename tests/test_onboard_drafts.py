"""What `rtw scaffold` drafts from small inline columns: sex codes, privacy, keys."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from etl.onboard.profile import profile_column
from etl.onboard.scaffold import field_line


def _sex_codes(values: list[str]) -> dict[str, str]:
    spec, _ = field_line(profile_column("sexo", pd.Series(values)), None, True, sex=True)
    return yaml.safe_load(spec)["codes"]


@pytest.mark.parametrize(("values", "expected"), [
    (["H"] * 6 + ["M"] * 6, {"H": "male", "M": "female"}),  # Spanish: hombre / mujer
    (["M"] * 6 + ["F"] * 6, {"M": "male", "F": "female"}),
    (["M"] * 6 + ["W"] * 6, {"M": "male", "W": "female"}),  # German: männlich / weiblich
    (["M"] * 6 + ["X"] * 6, {"M": "TODO", "X": "TODO"}),  # M alone: male or mujer?
    (["1"] * 6 + ["2"] * 6 + ["9"] * 5, {"1": "male", "2": "female", "9": "unknown"}),
])
def test_sex_codes_are_drafted_by_the_column_s_other_codes(values, expected):
    assert _sex_codes(values) == expected


def test_a_sex_of_a_few_numbered_codes_is_drafted_as_codes_not_as_a_number():
    """A hunt: five records' 1 and 2 were drafted `type: integer`, which core's sex (a word) cannot hold: the draft
    validated, and the night's harmonise crashed."""
    spec, note = field_line(profile_column("sex", pd.Series(["1", "2", "1", "2", "1"])), None, True, sex=True)
    assert yaml.safe_load(spec) == {"column": "sex"} and "map each code to the warehouse's value (codes:)" in note

def test_two_codes_are_never_drafted_to_the_same_sex():
    from etl.onboard.scaffold import sex_values

    assert sex_values([("1", "Male"), ("M", None), ("F", None)]) == [("1", "TODO"), ("M", "TODO"), ("F", "female")]
    assert sex_values([("H", None), ("M", None), ("F", None)]) == [("H", "male"), ("M", "TODO"), ("F", "female")]
    assert sex_values([("V", "hombre"), ("M", "mujer")]) == [("V", "male"), ("M", "female")]


def _visits(key: str = "Kennung") -> pd.DataFrame:
    """A small registry's follow-up: 12 patients × 6 visits, each patient number seen 6 times."""
    return pd.DataFrame({key: [f"KR-{1000 + p}" for p in range(12) for _ in range(6)],
                         "Besuch": [str(v) for _ in range(12) for v in range(1, 7)],
                         "Status": ["L", "L", "V", "L", "L", "L"] * 12,
                         "Klinik": [f"DE-{k:02d}" for k in (1, 1, 2, 2, 3, 3) for _ in range(12)]})


def test_patient_numbers_and_names_are_hidden_by_their_name_in_european_languages():
    for name in ("Pat_Nr", "PatNr", "pat_no", "nombre", "apellido1", "apellido2", "Vorname", "Nachname",
                 "prénom", "cognome", "achternaam", "voornaam", "DNI"):
        shown = profile_column(name, pd.Series(["KR-1000"] * 6 + ["Hugo"] * 6 + ["Ana"] * 5))
        assert shown.top_values == () and shown.hidden_reason == "identifier-like name", name
    assert profile_column("provincia", pd.Series(["Sevilla"] * 6 + ["Madrid"] * 5)).top_values


def test_a_patient_number_repeated_per_visit_is_hidden_and_never_drafted_as_codes(tmp_path):
    from etl.onboard.profile import profile_record_set
    from etl.onboard.scaffold import draft_mapping

    frame = _visits()
    profile = profile_record_set("Verlauf", frame)
    by_name = {c.name: c for c in profile.columns}
    assert by_name["Kennung"].top_values == ()
    assert by_name["Kennung"].hidden_reason == "numbers the records of each patient"
    assert by_name["Klinik"].top_values and by_name["Status"].top_values  # centres and codes stay shown
    spec, note = field_line(by_name["Kennung"], None, True)
    assert "KR-1" not in spec + note and "codes" not in spec
    # The same through a whole draft, the patient number named Pat_Nr: no value of it anywhere.
    path = tmp_path / "KR_Verlauf_20261101.csv"
    _visits("Pat_Nr").to_csv(path, sep=";", index=False)
    from etl.onboard.scaffold import read_sources

    draft = draft_mapping(read_sources([path]))
    assert "KR-1" not in draft.text
    assert 'patient_key: "Pat_Nr"' in draft.text


def test_a_draft_without_patient_fields_has_no_key_twice_and_check_points_at_a_repeated_key(tmp_path):
    from etl.onboard.check import mapping_findings
    from etl.onboard.scaffold import draft_mapping, read_sources
    from etl.transform.mapping import repeated_key

    path = tmp_path / "KR_Befund_20261101.csv"
    pd.DataFrame({"Pat_Nr": [f"KR-{i}" for i in range(8)], "Befund": ["A", "B"] * 4}).to_csv(path, index=False)
    draft = draft_mapping(read_sources([path]))
    assert "  fields: {}" in draft.text and draft.text.count("\n  fields:") == 1
    assert repeated_key(yaml.compose(draft.text)) is None
    mapping = tmp_path / "kr_befund.yaml"
    mapping.write_text(draft.text.replace("  fields: {}", "  fields: {}\n  fields:\n    country: {const: DE}"))
    first = mapping.read_text().splitlines().index("  fields: {}") + 1
    _, findings = mapping_findings(mapping)
    assert [(f.where, f.message.split(";")[0]) for f in findings] == [
        (f"{mapping}, line {first + 1}", f"patient.fields: given twice (lines {first} and {first + 1})")]


def test_date_times_are_profiled_drafted_checked_and_read_alike():
    from etl.onboard.check import check_record_sets
    from etl.transform.mapping import SourceMapping

    stamps = pd.Series([f"2021-03-{d:02d}T14:30:00" for d in range(1, 21)])
    column = profile_column("Datum", stamps)
    assert column.kind == "date" and column.date_patterns[0].pattern == "%Y-%m-%dT%H:%M:%S"
    spec, _ = field_line(column, None, True)
    assert yaml.safe_load(spec) == {"column": "Datum", "type": "date", "format": "%Y-%m-%d"}
    frame = pd.DataFrame({"pid": [f"P{i}" for i in range(20)], "Datum": stamps, "source_file": "v.csv",
                          "_line": range(2, 22)})
    for declared in ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):  # what scaffold drafts, and what profile reports
        mapping = SourceMapping.model_validate({
            "source_id": "dt", "title": "t", "format": "csv", "files": "*.csv", "record_set": "V",
            "patient_key": "pid", "record_key": "V[{pid}]", "patient": {"from": "V", "fields": {}},
            "tables": {"follow_up": {"from": "V", "fields": {
                "contact_date": {"column": "Datum", "type": "date", "format": declared}}}}})
        assert check_record_sets(mapping, {"V": frame}) == [], declared


def test_check_never_shows_a_date_value_however_often_it_is_seen():
    from etl.onboard.check import check_record_sets
    from etl.transform.mapping import SourceMapping

    # A visit date written month-first on 6 rows of one patient: failing, frequent, still a date.
    dates = ["03/25/2021"] * 6 + ["25.03.2021"] * 8
    frame = pd.DataFrame({"pid": [f"P{i}" for i in range(14)], "Datum": dates, "source_file": "v.csv",
                          "_line": range(2, 16)})
    mapping = SourceMapping.model_validate({
        "source_id": "dt", "title": "t", "format": "csv", "files": "*.csv", "record_set": "V",
        "patient_key": "pid", "record_key": "V[{pid}]", "date_format": "%d.%m.%Y",
        "patient": {"from": "V", "fields": {}},
        "tables": {"follow_up": {"from": "V", "fields": {"contact_date": {"column": "Datum", "type": "date"}}}}})
    (finding,) = check_record_sets(mapping, {"V": frame})
    assert "6 of 14 values are dates no declared format reads" in finding.message
    assert "03/25/2021" not in finding.message and "shape '99/99/9999' ×6" in finding.message
    assert "v.csv:2" in finding.message  # where to look, instead


def _merged_register(path):
    """An Excel follow-up register: 12 patients × 3 visits, the patient number and centre merged over
    each patient's rows (the value in the top-left cell only)."""
    import datetime as dt

    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Verlauf"
    sheet.append(["Pat_Nr", "Klinik", "Kontakt", "Status"])
    for p in range(12):
        first = sheet.max_row + 1
        for v in range(3):
            sheet.append([f"KR-{1000 + p}" if v == 0 else None, f"DE-{p % 3:02d}" if v == 0 else None,
                          dt.date(2020 + v, 1 + p, 1), "L"])
        sheet.merge_cells(f"A{first}:A{first + 2}")
        sheet.merge_cells(f"B{first}:B{first + 2}")
    workbook.save(path)
    return path


def test_merged_cells_are_said_by_profile_drafted_by_scaffold_and_read_by_check(tmp_path):
    from typer.testing import CliRunner

    from etl.cli import app
    from etl.onboard.check import check_source
    from etl.onboard.scaffold import draft_mapping, read_sources, validate_draft

    landing = tmp_path / "landing" / "kr_verlauf"
    landing.mkdir(parents=True)
    workbook = _merged_register(landing / "KR_Verlauf_20261101.xlsx")
    runner = CliRunner()
    shown = runner.invoke(app, ["profile", str(workbook), "--home", str(tmp_path)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())  # as one line, however the terminal wrapped it
    assert "merged cells A2:A4, B2:B4, A5:A7, B5:B7, A8:A10 and 19 more in the data rows" in said
    assert "`options: {merged_cells: fill}` gives every cell of a range its value" in said
    filled = runner.invoke(app, ["profile", str(workbook), "--home", str(tmp_path), "--option", "merged_cells=fill"],
                           env={"COLUMNS": "250"})
    assert filled.exit_code == 0, filled.output
    assert "filled: every cell of a range reads its top-left value" in " ".join(filled.output.split())

    draft = draft_mapping(read_sources([workbook], "kr_verlauf"))
    raw = yaml.safe_load(draft.text)
    assert raw["options"] == {"merged_cells": "fill"} and "# TODO: check merged_cells: fill" in draft.text
    assert raw["patient_key"] == "Pat_Nr" and validate_draft(draft) == []
    assert "KR-1" not in draft.text

    sources = tmp_path / "sources"
    sources.mkdir()
    mapping = sources / "kr_verlauf.yaml"
    mapping.write_text(draft.text)
    report = check_source("kr_verlauf", sources, tmp_path / "landing")
    assert report.usable and report.record_sets == {"Verlauf": 36}
    assert not [f for f in report.findings if "without a patient key" in f.message], report.findings
    mapping.write_text(draft.text.replace('options: {merged_cells: "fill"}', "options: {merged_cells: top_left}"))
    report = check_source("kr_verlauf", sources, tmp_path / "landing")
    assert [f.message for f in report.findings if "without a patient key" in f.message] == [
        "24 records without a patient key (" + ", ".join(f"{workbook.name}:{row}" for row in (3, 4, 6)) + ")"]


def test_a_label_s_line_break_or_escape_stays_in_its_comment(tmp_path):
    """A variable label is copied into the draft's comments: its line break began a line of its own, a live
    key of the draft (here null_values, which the draft validated with), and its ESC made the draft no YAML."""
    import pyreadstat

    from etl.onboard.scaffold import draft_mapping, read_sources, validate_draft

    path = tmp_path / "cases.sav"
    frame = pd.DataFrame({"pid": [f"NL-{i:03d}" for i in range(12)], "grp": [1.0, 2.0] * 6, "wt": [3.5] * 12})
    pyreadstat.write_sav(frame, str(path), column_labels={"wt": "Weight\nnull_values: ['3.5']\n#",
                                                          "grp": "Group \x1b[2J"})
    draft = draft_mapping(read_sources([path], "cases"))
    raw = yaml.safe_load(draft.text)
    assert "null_values" not in raw and validate_draft(draft) == []
    assert "# Weight\\nnull_values: ['3.5']\\n#" in draft.text and "Group \\x1b[2J" in draft.text


def test_numbered_column_groups_are_drafted_as_repeat_and_the_hint_maps_them(tmp_path):
    """A wide registry row (chemo1_drug, chemo1_start, chemo2_drug, ...): the draft names its groups and
    how `repeat:` maps them, zero-padded numbers quoted so YAML keeps them as the columns' text."""
    from etl.onboard.scaffold import draft_mapping, numbered_groups, read_sources

    assert numbered_groups(["pid", "icdo3_morph", "chemo1_drug", "chemo2_drug", "chemo1_start", "chemo2_start",
                            "fu01_date", "fu02_date"]) == [
        (["1", "2"], ["chemo{repeat}_drug", "chemo{repeat}_start"]), (["01", "02"], ["fu{repeat}_date"])]
    path = tmp_path / "WR_Cases_20261101.csv"
    pd.DataFrame({"pid": [f"WR-{i}" for i in range(8)], "chemo1_drug": ["vincristine"] * 8,
                  "chemo2_drug": ["irinotecan", ""] * 4, "fu01_date": ["2024-01-02"] * 8,
                  "fu02_date": ["2025-01-02"] * 8}).to_csv(path, index=False)
    text = draft_mapping(read_sources([path])).text
    assert ('#   numbered column groups chemo{repeat}_drug: rows of one table with repeat: [1, 2] and column: '
            '"chemo{repeat}_drug" (docs/mapping.md)') in text
    assert 'repeat: ["01", "02"] and column: "fu{repeat}_date"' in text
    # The hint, as a table of a mapping, reads both groups' columns.
    from etl.transform.mapping import TableSpec

    table = TableSpec.model_validate(yaml.safe_load('{from: Cases, repeat: ["01", "02"], '
                                                    'fields: {contact_date: {column: "fu{repeat}_date"}}}'))
    assert [fields["contact_date"].column for _, fields in table.groups()] == ["fu01_date", "fu02_date"]


def test_unrelated_column_groups_numbered_alike_are_drafted_as_separate_repeats(tmp_path):
    """A registry numbers its follow-ups (`fu_1_date`) and its radiotherapies (`rt1dose`) 1, 2: two tables,
    so two `repeat:` hints; one hint naming both led to a table reading a follow-up date and a dose as
    one row."""
    from etl.onboard.scaffold import draft_mapping, numbered_groups, read_sources

    assert numbered_groups(["pid", "fu_1_date", "fu_2_date", "rt1dose", "rt2dose", "fu_1_status", "fu_2_status",
                            "IT.CHEMO1_DRUG", "IT.CHEMO2_DRUG", "IT.CHEMO1_START", "IT.CHEMO2_START"]) == [
        (["1", "2"], ["fu_{repeat}_date", "fu_{repeat}_status"]), (["1", "2"], ["rt{repeat}dose"]),
        (["1", "2"], ["IT.CHEMO{repeat}_DRUG", "IT.CHEMO{repeat}_START"])]
    path = tmp_path / "WR_Cases_20261101.csv"
    pd.DataFrame({"pid": [f"WR-{i}" for i in range(8)], "fu_1_date": ["2024-01-02"] * 8,
                  "fu_2_date": ["2025-01-02"] * 8, "rt1dose": ["54"] * 8, "rt2dose": ["", "45"] * 4}
                 ).to_csv(path, index=False)
    hints = [line for line in draft_mapping(read_sources([path])).text.splitlines() if "numbered column groups" in line]
    assert hints == [
        '#   numbered column groups fu_{repeat}_date: rows of one table with repeat: [1, 2] and column: '
        '"fu_{repeat}_date" (docs/mapping.md)',
        '#   numbered column groups rt{repeat}dose: rows of one table with repeat: [1, 2] and column: '
        '"rt{repeat}dose" (docs/mapping.md)']


def test_gene_symbol_columns_are_drafted_in_hgnc_case_not_as_a_code_list(tmp_path):
    """The shipped mappings read genes with `case: gene`. The draft listed a gene column's frequent symbols as
    codes, so a rarer gene (or C11orf95) would have been quarantined as a code not listed; a fusion's partner
    beside it (PARTNER) too. A yes/no column named like a gene, and Italian `genere` (sex), are no genes."""
    from etl.onboard.scaffold import draft_mapping, read_sources

    rows = 12
    path = tmp_path / "MOL_Events_20261101.csv"
    pd.DataFrame({"pid": [f"MOL-{i:03d}" for i in range(rows)],
                  "GENE": ["KMT2A"] * 6 + ["ETV6"] * 5 + ["C11orf95"],
                  "PARTNER": ["AFF1"] * 5 + ["RUNX1"] * 5 + ["", "RELA"],
                  "gene_test_done": ["Y"] * 6 + ["N"] * 6,
                  "genere": ["M"] * 6 + ["F"] * 6}).to_csv(path, index=False)
    lines = {line.split('column: "')[1].split('"')[0]: line
             for line in draft_mapping(read_sources([path])).text.splitlines() if line.startswith("#       <field>:")}
    assert lines["GENE"].startswith('#       <field>: {column: "GENE", case: gene}  # gene symbols in HGNC')
    assert lines["PARTNER"].startswith('#       <field>: {column: "PARTNER", case: gene}')
    assert "case: gene" not in lines["gene_test_done"] and "codes:" in lines["gene_test_done"]
    assert "case: gene" not in lines["genere"] and "codes:" in lines["genere"]
    # A draft's field line, uncommented into a molecular alteration, is a field of the mapping.
    from etl.transform.mapping import FieldSpec

    spec = FieldSpec.model_validate(yaml.safe_load(lines["GENE"].split("<field>: ")[1].split("  #")[0]))
    assert spec.case == "gene"


@pytest.mark.parametrize("key", ["cod_paz", "id_paciente", "patiëntnummer"])
def test_a_patient_number_named_in_italian_spanish_or_dutch_is_hidden_and_drafted_as_the_patient_key(tmp_path, key):
    """`cod_paz` (Italian registries' short form), `id_paciente`, `patiëntnummer`: named like no patient key the
    tools knew, their values were shown wherever each repeated 5 times, and the draft's patient_key was TODO."""
    from etl.onboard.scaffold import draft_mapping, read_sources

    assert profile_column(key, pd.Series(["PZ-100"] * 6 + ["PZ-200"] * 6)).hidden_reason == "identifier-like name"
    path = tmp_path / "REG_Casi_20261101.csv"
    pd.DataFrame({key: [f"PZ-{100 + i}" for i in range(8)], "sesso": ["1", "2"] * 4}).to_csv(path, index=False)
    assert yaml.safe_load(draft_mapping(read_sources([path])).text)["patient_key"] == key


def test_columns_numbered_after_one_word_each_are_one_group():
    """`drug_1, dose_1, start_1, drug_2, ...`: a treatment line per number, its attributes named by one word each
    and numbered after it. They share no first word, but they are one group (rows of one table), as before
    group_stem: drafted as three, a line's drug, dose and start would be mapped as rows of three tables."""
    from etl.onboard.scaffold import numbered_groups

    assert numbered_groups(["pid", "drug_1", "dose_1", "start_1", "drug_2", "dose_2", "start_2"]) == [
        (["1", "2"], ["drug_{repeat}", "dose_{repeat}", "start_{repeat}"])]
    assert numbered_groups(["farmaco1", "dose1", "farmaco2", "dose2", "rt1dose", "rt2dose"]) == [
        (["1", "2"], ["farmaco{repeat}", "dose{repeat}"]), (["1", "2"], ["rt{repeat}dose"])]


def test_a_numbered_name_of_two_words_joins_the_group_its_first_word_names_no_other():
    """`drug_1, dose_1, start_date_1`: a treatment line whose start date is named by two words. Its first word
    names no other column (as `fu` of `fu_date_1, fu_status_1` does), so it is no stem: the line was drafted as
    two groups, its start date the rows of a table apart from its drug. `date_fu_1, status_fu_1` were two
    groups likewise; `fu_date_1` and `rt_dose_1` (another treatment's dose beside a line's `dose_1`) keep
    their stems, and so their groups."""
    from etl.onboard.scaffold import numbered_groups

    assert numbered_groups(["pid", "drug_1", "dose_1", "start_date_1", "drug_2", "dose_2", "start_date_2"]) == [
        (["1", "2"], ["drug_{repeat}", "dose_{repeat}", "start_date_{repeat}"])]
    assert numbered_groups(["date_fu_1", "status_fu_1", "date_fu_2", "status_fu_2"]) == [
        (["1", "2"], ["date_fu_{repeat}", "status_fu_{repeat}"])]
    assert numbered_groups(["drug_1", "dose_1", "fu_date_1", "fu_status_1", "rt_dose_1", "drug_2", "dose_2",
                            "fu_date_2", "fu_status_2", "rt_dose_2"]) == [
        (["1", "2"], ["drug_{repeat}", "dose_{repeat}"]), (["1", "2"], ["fu_date_{repeat}", "fu_status_{repeat}"]),
        (["1", "2"], ["rt_dose_{repeat}"])]


def test_a_line_numbered_with_a_two_word_name_is_drafted_as_one_repeat(tmp_path):
    from etl.onboard.scaffold import draft_mapping, read_sources

    path = tmp_path / "WR_Cases_20261101.csv"
    pd.DataFrame({"pid": [f"WR-{i}" for i in range(8)], "drug_1": ["vincristine"] * 8,
                  "start_date_1": ["2024-01-02"] * 8, "drug_2": ["irinotecan", ""] * 4,
                  "start_date_2": ["2025-01-02", ""] * 4}).to_csv(path, index=False)
    hints = [line for line in draft_mapping(read_sources([path])).text.splitlines() if "numbered column groups" in line]
    assert hints == ['#   numbered column groups drug_{repeat}, start_date_{repeat}: rows of one table with repeat: '
                     '[1, 2] and column: "drug_{repeat}" (docs/mapping.md)']
