"""A file per patient's name before any patient key of its source is known (nothing staged: the source's first
pull, the look at its drop zone, its first run's plan): a number shaped like a key is hidden, not only a long
run of digits (`Pat_IMT-FR01-001.xlsx`, `Pat_IMT_FR01_001.xlsx`, `Fall 12 3456.csv` were shown in clear), while a
date in a name stays readable."""

from __future__ import annotations

import logging
import re

import pytest

from etl import pipeline
from etl.config import SOURCES_DIR, resolve_home
from etl.extract.errors import ExtractError
from etl.extract.file_names import PatientNumbers, shown_file_name
from etl.pull import pull_source
from etl.pull.deliveries import check_drop_zone
from etl.run_record import said
from etl.transform.mapping import load_mapping

KEY = "names-before-keys-key-0123456789abcdef"
NUMBER = re.compile(r"FR01[-_ ]00\d|123456")


@pytest.mark.parametrize(("name", "shown"), [
    ("Pat_IMT-FR01-001.xlsx", "Pat_{patient}.xlsx"),  # letters and digits joined by '-': the whole token
    ("/drop/IMT-FR01-001/Pat_IMT-FR01-001.xlsx", "/drop/{patient}/Pat_{patient}.xlsx"),  # a remote path
    ("patient-ESMART-0201-0001.xpt", "{patient}.xpt"),
    ("sacha_03-0042.xml", "sacha_{patient}.xml"),
    ("Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),  # six digits and more, as before
    ("IMT-FR01-001_20261101.xlsx", "{patient}_20261101.xlsx"),
    # A key written in parts with '_' or ' ', or run into letters: five digits in all are a number
    ("Pat_IMT_FR01_001.xlsx", "Pat_IMT_{patient}.xlsx"),
    ("IMT-FR01_001.xlsx", "{patient}.xlsx"),
    ("Fall 12 3456.csv", "Fall {patient}.csv"),
    ("Fall_12_3456_Verlauf_20261101.csv", "Fall_{patient}_Verlauf_20261101.csv"),
    ("sacha 03 0042.xml", "sacha {patient}.xml"),
    ("Pat_ILTB_00012.xlsx", "Pat_ILTB_{patient}.xlsx"),
    ("Pat00012.xlsx", "Pat{patient}.xlsx"),
    ("ID123456x.csv", "ID{patient}x.csv"),
    # Dates, and words joined by '_' (a form, a record set), stay as delivered
    ("TREP_export_20261101.csv", "TREP_export_20261101.csv"),
    ("CRIZOTINIB_IMT_export_20261101.xlsx", "CRIZOTINIB_IMT_export_20261101.xlsx"),
    ("TREP-export-20261101.csv", "TREP-export-20261101.csv"),
    ("Verlauf-2026-11-01.csv", "Verlauf-2026-11-01.csv"),
    ("Verlauf_01-11-2026.csv", "Verlauf_01-11-2026.csv"),
    ("export_2026-11.csv", "export_2026-11.csv"),
    ("export_20261101_0230.csv", "export_20261101_0230.csv"),
    ("ESMART_DM_20261101.xpt", "ESMART_DM_20261101.xpt"),
    ("ILTB_FU2.csv", "ILTB_FU2.csv"),
    ("TREP_export_2024a.csv", "TREP_export_2024a.csv"),
    # ... and so do dates and times written in parts, versions, parts, and numbers of fewer than five digits
    ("export_2026_11_01.csv", "export_2026_11_01.csv"),
    ("export_01_11_2026.csv", "export_01_11_2026.csv"),
    ("export_2026_11_01_1200.csv", "export_2026_11_01_1200.csv"),
    ("export 2026.11.01 1200.csv", "export 2026.11.01 1200.csv"),
    ("export_20261101_0230.csv", "export_20261101_0230.csv"),
    ("Q3_2026.csv", "Q3_2026.csv"),
    ("v1_2_2026.csv", "v1_2_2026.csv"),
    ("ILTB_v2.csv", "ILTB_v2.csv"),
    ("ILTB_part_3.csv", "ILTB_part_3.csv"),
    ("part_3_of_12.csv", "part_3_of_12.csv"),
    ("FR01_v2_3.csv", "FR01_v2_3.csv"),
    ("export_1_100.csv", "export_1_100.csv"),
    ("ISO8601_export.csv", "ISO8601_export.csv"),
])
def test_a_name_before_any_key_is_staged_hides_what_is_shaped_like_a_key(tmp_path, name, shown):
    mapping = load_mapping(SOURCES_DIR / "crizotinib_imt.yaml")  # names the key's column, not its shape
    assert shown_file_name(name, PatientNumbers.staged(tmp_path / "staging", mapping)) == shown


def test_once_keys_are_known_their_shapes_tell_the_numbers():
    numbers = PatientNumbers(lambda: ["TREP-000001"], key_like=True)
    assert shown_file_name("Pat_TREP-000002.csv", numbers) == "Pat_{patient}.csv"
    assert shown_file_name("IT-BO01 answered.xlsx", numbers) == "IT-BO01 answered.xlsx"  # not a key's shape
    too_short = PatientNumbers(lambda: ["7", "12"], key_like=True)  # keys that name no one in a name
    assert shown_file_name("Pat_IMT-FR01-001.xlsx", too_short) == "Pat_IMT-FR01-001.xlsx"


def test_a_reason_without_a_source_hides_long_numbers_only():
    # run_record.said shows any exception's text through the names' rule: a codec's name is no patient number
    reason = said(ExtractError("Fall_123456_Verlauf.csv is neither UTF-16 nor Windows-1252 (ISO-8859-1?)"))
    assert reason == "ExtractError: Fall_{patient}_Verlauf.csv is neither UTF-16 nor Windows-1252 (ISO-8859-1?)"


@pytest.mark.integration
def test_a_first_pull_and_run_name_no_file_by_its_number(tmp_path, monkeypatch, caplog):
    home = resolve_home(tmp_path / "home").ensure()
    sources, zone = tmp_path / "sources", tmp_path / "zone"
    sources.mkdir()
    zone.mkdir()
    mapping = (SOURCES_DIR / "crizotinib_imt.yaml").read_text(encoding="utf-8")
    mapping = re.sub(r"(?m)^files: .*$", 'files: "Pat_*.xlsx"', mapping)
    (sources / "crizotinib_imt.yaml").write_text(f"{mapping}\ndelivery: {{url: '{zone}', quiet_seconds: 0}}\n")
    for number in ("IMT-FR01-001", "IMT-FR01-002"):
        (zone / f"Pat_{number}.xlsx").write_bytes(b"a workbook per patient")
    caplog.set_level(logging.DEBUG)
    look = check_drop_zone(home, "crizotinib_imt", sources_dir=sources)  # what the DAG's sensor says
    assert look.waiting == ["Pat_{patient}.xlsx", "Pat_{patient}.xlsx"] and not NUMBER.search(look.message)
    pulled = pull_source(home, "crizotinib_imt", sources_dir=sources)
    assert pulled.pulled == ["Pat_{patient}.xlsx", "Pat_{patient}.xlsx"], pulled.message
    assert not NUMBER.search(pulled.model_dump_json())
    # The first run's plan, before anything is staged: a file copied by hand is still being written (logged),
    # another does not match the mapping's files (a notice)
    (home.landing / "crizotinib_imt" / "Pat_IMT-FR01-003.xlsx").write_bytes(b"being written")
    (home.landing / "crizotinib_imt" / "Notes_IMT-FR01-004.txt").write_bytes(b"a note")
    monkeypatch.setenv("RTW_QUIET_SECONDS", "3600")
    planned = pipeline.plan(home, sources_dir=sources, key_value=KEY)
    assert "Pat_{patient}.xlsx not read yet" in caplog.text
    (ignored,) = [n for n in planned.notices["crizotinib_imt"] if "does not match" in n]
    assert ignored.startswith("crizotinib_imt: Notes_{patient}.txt does not match")
    assert not NUMBER.search(caplog.text) and not NUMBER.search(str(planned.notices))

