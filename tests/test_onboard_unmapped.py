"""A landing folder no mapping reads is named in the run's notices and log, never skipped silently:
in meta.source_notice too, so the report and `rtw status` show it."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import cli, pipeline
from etl.config import SOURCES_DIR, Home


def test_a_landing_folder_without_a_mapping_is_a_notice_of_the_plan(tmp_path, caplog):
    home = Home(tmp_path / "home").ensure()
    for name in ("registry_it", "iltb", "kinderreg_de", ".partial"):
        (home.landing / name).mkdir()
    sources = tmp_path / "my_sources"  # RTW_SOURCES_DIR holding only the new mapping
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "registry_it.yaml", sources)
    with caplog.at_level(logging.WARNING, logger="rtw"):
        planned = pipeline.plan(home, sources_dir=sources, key_value="unmapped-test-key")
    assert planned.changed == ["registry_it"]
    unmapped = {source: said for source, said in planned.notices.items() if said}
    assert sorted(unmapped) == ["iltb", "kinderreg_de"]
    assert unmapped["iltb"] == [f"iltb: landing folder {home.landing / 'iltb'} has no mapping {sources / 'iltb.yaml'}: "
                                "its files are not read (RTW_SOURCES_DIR, when set, replaces the shipped mappings "
                                "folder)"]
    assert sum("has no mapping" in r.getMessage() for r in caplog.records) == 2


REGISTRY_ROW = ("id_record;codice_paziente;codice_centro;sesso;data_nascita;data_diagnosi;data_registrazione;"
                "morfologia;comportamento;topografia;lateralita;base_diagnosi;dimensione_cm;stato_vitale;"
                "data_ultimo_contatto;data_decesso;eupid;note\r\n"
                "1;TREP-000001;IT-BO01;2;27/03/2010;05/11/2018;04/07/2019;8260;3;C73.9;N;7;1,3;V;18/03/2026;;;\r\n")


@pytest.mark.integration
def test_a_landing_folder_without_a_mapping_is_a_notice_the_report_and_status_show(tmp_path, monkeypatch):
    monkeypatch.setenv("RTW_QUIET_SECONDS", "0")
    home = Home(tmp_path / "home").ensure()
    sources = tmp_path / "my_sources"
    sources.mkdir()
    shutil.copy(SOURCES_DIR / "registry_it.yaml", sources)
    (home.landing / "registry_it").mkdir()
    (home.landing / "registry_it" / "TREP_export_20261101.csv").write_bytes(REGISTRY_ROW.encode("cp1252"))
    (home.landing / "kinderreg_de").mkdir()
    (home.landing / "kinderreg_de" / "export_20261101.csv").write_text("x")
    summary = pipeline.run(home, key_value="unmapped-test-key", sources_dir=sources)
    said = query_rows(home, "SELECT notice FROM meta.source_notice WHERE source_id = 'kinderreg_de' AND run_id = ?",
                      [summary.run_id])
    assert [n for (n,) in said] == [n for n in summary.notices if n.startswith("kinderreg_de: ")]
    assert len(said) == 1 and "has no mapping" in said[0][0]
    report = (home.reports / summary.run_id / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<li data-source="kinderreg_de">kinderreg_de: landing folder .* has no mapping', report)
    status = CliRunner().invoke(cli.app, ["status", "--home", str(home.root)], env={"COLUMNS": "400"})
    assert re.search(r"kinderreg_de +│ kinderreg_de: landing folder .* has no mapping", status.output)
