"""A Spanish very-rare-tumour registry joins the network as docs/onboarding.md tells its data manager: an SPSS
export with value labels, drafted, checked and loaded, and a month later the same data as an Excel workbook (the
registry changed its tool). Each step must give what the page says it gives: `rtw check` where the records it
warns of are, the draft the registry's centre column, the page a vocabulary that exists before the first run, and
the format change a load that accounts for every row."""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
import yaml
from typer.testing import CliRunner
from warehouse_query import query_frame

from etl import pipeline
from etl.cli import app
from etl.config import REPO_ROOT, Home, resolve_home
from etl.onboard.check import check_source
from etl.onboard.scaffold import draft_mapping, read_sources

KEY = "onboarding-journey-test-key"
WIDE = {"COLUMNS": "250"}
SAV = "RETI_ES_export_20261101.sav"
XLSX = "RETI_ES_export_20261201.xlsx"
SEX = {1: "Hombre", 2: "Mujer", 9: "Desconocido"}
STATUS = {1: "Vivo", 2: "Fallecido", 3: "Perdido"}


def _patients(count: int = 12) -> pd.DataFrame:
    """A registry's rows: a patient number, a name, the hospital, coded sex and vital status, dates dd/mm/yyyy."""
    return pd.DataFrame({
        "id_paciente": [f"{280000 + 37 * i:06d}" for i in range(count)],
        "nombre": [["Lucía", "Hugo", "Martina"][i % 3] for i in range(count)],
        "hospital": [f"ES-{['MAD', 'BCN'][i % 2]}01" for i in range(count)],
        "fecha_hospitalizacion": [f"{1 + i:02d}/03/2019" for i in range(count)],
        "sexo": [1 + i % 2 for i in range(count)],
        "fecha_nacimiento": [datetime(2010 + i % 5, 1 + i % 12, 3 + i) for i in range(count)],
        "fecha_diagnostico": [f"{5 + i:02d}/0{1 + i % 9}/2019" for i in range(count)],
        "morfologia_cieo3": [["8970/3", "89703"][i % 2] for i in range(count)],
        "estado_vital": [1 + i % 3 for i in range(count)],
    })


def _sav(path: Path, frame: pd.DataFrame) -> Path:
    pyreadstat.write_sav(frame, str(path), variable_value_labels={"sexo": SEX, "estado_vital": STATUS},
                         variable_format={"fecha_nacimiento": "DATE11"})
    return path


def _xlsx(path: Path, frame: pd.DataFrame) -> Path:
    """The new tool's workbook: the labels in place of the codes, a title above the header."""
    labelled = frame.assign(sexo=frame.sexo.map(SEX), estado_vital=frame.estado_vital.map(STATUS),
                            fecha_nacimiento=frame.fecha_nacimiento.dt.date)
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame([["Registro Español de Tumores Infantiles Muy Raros"]]).to_excel(
            writer, sheet_name="Pacientes", header=False, index=False)
        labelled.to_excel(writer, sheet_name="Pacientes", index=False, startrow=2)
    return path


def _mapping(export: str) -> str:
    """The mapping a data manager completes from the draft, for the SPSS export or the Excel workbook."""
    excel = export == "excel"
    record_set = "Pacientes" if excel else "RETI_ES_export"
    sex = SEX if excel else {k: str(k) for k in SEX}
    status = STATUS if excel else {k: str(k) for k in STATUS}
    return yaml.safe_dump({
        "source_id": "registry_es", "title": "RETI-ES", "format": export,
        "files": "RETI_ES_export_*.xlsx" if excel else "RETI_ES_export_*.sav",
        **({} if excel else {"record_set": record_set}),
        "date_format": "%d/%m/%Y", "patient_key": "id_paciente", "record_key": "{record_set}",
        "patient": {"from": record_set, "fields": {
            "centre_id": {"column": "hospital", "case": "upper"},
            "sex": {"column": "sexo", "codes": dict(zip(sex.values(), ["male", "female", "unknown"], strict=True))},
            "birth_date": {"column": "fecha_nacimiento", "type": "date", "format": "%Y-%m-%d"},
            "country": {"const": "ES"}}},
        "tables": {
            "diagnosis": {"from": record_set, "fields": {
                "event_type": {"const": "initial"},
                "diagnosis_date": {"column": "fecha_diagnostico", "type": "date", "required": True},
                "icdo3_morphology": {"column": "morfologia_cieo3", "type": "icdo3_histology", "required": True},
                "icdo3_behaviour": {"column": "morfologia_cieo3", "type": "icdo3_behaviour"}}},
            "follow_up": {"from": record_set, "fields": {
                "contact_date": {"column": "fecha_diagnostico", "type": "date", "required": True},
                "vital_status": {"column": "estado_vital",
                                 "codes": dict(zip(status.values(), ["alive", "dead", "lost"], strict=True))}}}},
    }, allow_unicode=True, sort_keys=False)


def test_check_says_where_the_records_without_a_patient_key_are(tmp_path):
    """The page promises counts and where for a record without a patient key; the check gave the count only, so
    the registry could not find the rows the night would quarantine."""
    frame = _patients()
    frame.loc[[2, 7], "id_paciente"] = ""
    landing = tmp_path / "landing" / "registry_es"
    landing.mkdir(parents=True)
    _sav(landing / SAV, frame)
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "registry_es.yaml").write_text(_mapping("spss"), encoding="utf-8")

    report = check_source("registry_es", sources, tmp_path / "landing")

    assert report.usable, report.findings
    keyless = [f.message for f in report.findings if "without a patient key" in f.message]
    assert keyless == [f"2 records without a patient key ({SAV}:3, {SAV}:8)"]
    assert not any("Lucía" in f.message or "280" in f.message for f in report.findings)


@pytest.mark.parametrize(("column", "centre"), [
    ("hospital", "hospital"), ("cod_hospital", "cod_hospital"), ("Klinik", "Klinik"), ("ospedale", "ospedale"),
    ("fecha_hospitalizacion", None),  # a stay in hospital, not the centre
])
def test_the_draft_takes_the_hospital_column_for_the_centre(tmp_path, column, centre):
    """A national registry names its centre by the hospital: the draft left `centre_id` a TODO beside it."""
    frame = _patients().drop(columns=["fecha_hospitalizacion"]).rename(columns={"hospital": column})
    if column == "fecha_hospitalizacion":
        frame[column] = [f"{1 + i:02d}/03/2019" for i in range(len(frame))]
    draft = draft_mapping(read_sources([_sav(tmp_path / SAV, frame)], "registry_es"))

    fields = yaml.safe_load(draft.text)["patient"]["fields"]
    assert fields.get("centre_id") == ({"column": centre, "case": "upper"} if centre else None), draft.text
    if centre is None:
        assert "# TODO: centre_id: {column: ...}" in draft.text


def test_the_vocabularies_the_page_sends_you_to_are_there_before_the_first_run(tmp_path):
    """Step 3 sent the data manager to `rtw dictionary` for field names and codes, which refuses a home without a
    warehouse, as a home is while its first source is onboarded: the page names the dictionary's Markdown too."""
    refused = CliRunner().invoke(app, ["dictionary", "--home", str(tmp_path)], env=WIDE)
    assert refused.exit_code != 0 and "no warehouse yet" in refused.output

    page = (REPO_ROOT / "docs" / "onboarding.md").read_text(encoding="utf-8")
    edit = page.split("## 3. Edit", 1)[1].split("```", 1)[0]
    for bullet in re.split(r"\n- ", edit):
        if "rtw dictionary" in bullet or "vocabular" in bullet:
            assert "[data-dictionary.md](data-dictionary.md)" in bullet, bullet
    dictionary = (REPO_ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    sex = "| `sex` | VARCHAR | Sex as this source gives it, harmonised. |  | female / male / undetermined / unknown |"
    assert sex in dictionary  # the codes step 3 quotes


def _accept(home_root: Path, name: str) -> str:
    accepted = CliRunner().invoke(app, ["accept", "registry_es", name, "--home", str(home_root)], env=WIDE)
    assert accepted.exit_code == 0, accepted.output
    return accepted.output


def _record_keys(home: Home) -> list[tuple[str, str]]:
    return [tuple(row) for row in query_frame(home, "SELECT DISTINCT source_record_key, diagnosis_id FROM "
                                                    "core.diagnosis ORDER BY 1").values]


def test_a_format_change_loads_and_keeps_the_records_keys_as_the_page_says(tmp_path):
    """docs/onboarding.md, 'When a source changes its export format': the SPSS export loaded, the workbook of the
    same data, mapped with the record keys the page gives, replaces it after the held run's two acceptances; every
    row is accounted for, and the workbook's records keep the keys the SPSS export's had, and with them every open
    issue."""
    home = resolve_home(tmp_path / "home").ensure()
    sources = tmp_path / "sources"
    sources.mkdir()
    landing = home.landing / "registry_es"
    landing.mkdir(parents=True)
    frame = _patients()
    frame.loc[::3, "fecha_diagnostico"] = "01/01/2009"  # before the birth: an issue of every third patient
    (sources / "registry_es.yaml").write_text(_mapping("spss"), encoding="utf-8")
    _sav(landing / SAV, frame)
    first = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert first.sources_failed == [], first.message
    keys_of_the_sav = _record_keys(home)

    section = (REPO_ROOT / "docs" / "onboarding.md").read_text(encoding="utf-8").split(
        "## When a source changes its export format", 1)[1]
    keys = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1))
    excel = {**yaml.safe_load(_mapping("excel")), **keys}
    (sources / "registry_es.yaml").write_text(yaml.safe_dump(excel, allow_unicode=True), encoding="utf-8")
    _xlsx(landing / XLSX, frame)
    shutil.move(landing / SAV, tmp_path / SAV)  # step 2: out of landing
    assert check_source("registry_es", sources, home.landing).usable
    held = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert held.sources_failed == ["registry_es"], held.message

    for name in re.findall(r"\$ rtw accept registry_es (\S+)", section):
        _accept(home.root, name)
    loaded = pipeline.run(home, key_value=KEY, sources_dir=sources)

    assert loaded.sources_failed == [], loaded.message
    files = query_frame(home, "SELECT file_name, status, rows_read, rows_loaded, rows_quarantined, rows_superseded "
                              "FROM meta.source_file WHERE source_id = 'registry_es' ORDER BY file_name")
    assert files.values.tolist() == [[SAV, "superseded", 12, 0, 0, 12], [XLSX, "loaded", 12, 12, 0, 0]]
    patients = query_frame(home, "SELECT sex, count(*) AS n FROM core.patient_source GROUP BY sex ORDER BY sex")
    assert patients.values.tolist() == [["female", 6], ["male", 6]]
    assert len(keys_of_the_sav) == 12 and _record_keys(home) == keys_of_the_sav
    issues = query_frame(home, "SELECT run_id, rule_id, source_record_key FROM dq.issue "
                               "WHERE source_id = 'registry_es' ORDER BY run_id")
    first_issues, last_issues = (set(map(tuple, issues[issues.run_id == run][["rule_id", "source_record_key"]].values))
                                 for run in (issues.run_id.min(), issues.run_id.max()))
    assert first_issues and first_issues == last_issues  # none resolved, none new
