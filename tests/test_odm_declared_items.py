"""A mapped ItemOID that no ItemDef of the export declares: told apart from an item nobody filled in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline
from etl.config import SOURCES_DIR
from etl.extract.odm import declared_item_oids, read_odm_header, stage_odm, undeclared_item
from etl.onboard.check import check_record_sets, check_source
from etl.transform.harmonise import HarmoniseError, refuse_undeclared_items
from etl.transform.mapping import SourceMapping

NS = "http://www.cdisc.org/ns/odm/v1.3"
CLINICAL_DATA = ('<ClinicalData StudyOID="S1" MetaDataVersionOID="v1"><SubjectData SubjectKey="P1">'
                 '<StudyEventData StudyEventOID="SE.BASE"><FormData FormOID="F.DM">'
                 '<ItemGroupData ItemGroupOID="IG.DM"><ItemData ItemOID="DM.SEX" Value="1"/></ItemGroupData>'
                 '</FormData></StudyEventData></SubjectData></ClinicalData>')
METADATA = ('<Study OID="S1"><MetaDataVersion OID="v1" Name="v1">'
            '<ItemDef OID="DM.SEX" Name="Sex" DataType="text"/><ItemDef OID="DM.BRTHDTC" Name="Birth" DataType="date"/>'
            '</MetaDataVersion></Study>')


def _export(tmp_path: Path, *, metadata: bool) -> Path:
    path = tmp_path / "S1.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{NS}" FileOID="F0" FileType="Snapshot">\n'
                    f'{METADATA if metadata else ""}\n{CLINICAL_DATA}\n</ODM>\n')
    return path


def test_staging_keeps_the_declared_item_oids(tmp_path):
    result = stage_odm(_export(tmp_path, metadata=True), tmp_path / "s.parquet")
    assert declared_item_oids(tmp_path / "s.parquet") == {"DM.SEX", "DM.BRTHDTC"}
    assert not any("ItemDef" in notice for notice in result.notices)


def test_an_export_without_item_defs_is_noticed_and_read_as_before(tmp_path):
    result = stage_odm(_export(tmp_path, metadata=False), tmp_path / "s.parquet")
    assert declared_item_oids(tmp_path / "s.parquet") is None and result.rows == 1
    assert [n for n in result.notices if "no ItemDef" in n] == [
        "S1.xml: no ItemDef in a MetaDataVersion (ClinicalData only): a mapped ItemOID absent from the data "
        "cannot be told from an item nobody filled in, so a misspelt one would load empty"]


def test_an_undeclared_item_oid_is_named_with_the_nearest_declared():
    declared = {"DM.SEX", "DM.BRTHDTC", "DM.COUNTRY"}
    assert undeclared_item("DM.SEXE", declared) == (
        "ItemOID DM.SEXE is not declared by any ItemDef of the export (did you mean DM.SEX?): a misspelt "
        "ItemOID, or an export of another study version")
    assert undeclared_item("DM.BRTHDTC", declared) is None  # declared, nobody filled it in
    assert undeclared_item("DM.SEXE", set()) is None  # nothing declared: cannot be told


def _mapping(column: str) -> SourceMapping:
    return SourceMapping.model_validate({
        "source_id": "s1", "title": "S1", "format": "odm", "files": "S1*.xml", "patient_key": "_subject_key",
        "record_key": "{_subject_key}", "tables": {},
        "patient": {"from": "IG.DM", "fields": {"sex": {"column": column}}}})


def test_rtw_check_says_what_the_night_says():
    frame = pd.DataFrame({"_subject_key": ["P1"], "DM.SEX": ["1"], "source_file": ["S1.xml"], "_line": [3]})
    findings = check_record_sets(_mapping("DM.SEXE"), {"IG.DM": frame}, sparse_columns=True,
                                 declared_columns=frozenset({"DM.SEX", "DM.BRTHDTC"}))
    assert [(f.severity, f.where, f.message) for f in findings] == [
        ("error", "record set IG.DM, column DM.SEXE (patient.fields.sex)", undeclared_item("DM.SEXE", {"DM.SEX"}))]
    # Declared but never filled in, or nothing declared: a warning, as before.
    for column, declared in (("DM.BRTHDTC", {"DM.SEX", "DM.BRTHDTC"}), ("DM.SEXE", set())):
        findings = check_record_sets(_mapping(column), {"IG.DM": frame}, sparse_columns=True,
                                     declared_columns=frozenset(declared))
        assert [f.severity for f in findings] == ["warning"]


def test_a_nightly_export_without_item_defs_is_noticed_in_the_run_record(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)
    snapshot = next((home.landing / "sacha_fr").glob("*.xml"))
    increment = home.landing / "sacha_fr" / "SACHA_ODM_29991231.xml"
    increment.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{NS}" FileOID="INC1" FileType="Transactional" '
        f'PriorFileOID="{read_odm_header(snapshot).file_oid}" CreationDateTime="2999-12-31T01:00:00">\n'
        '<ClinicalData StudyOID="SACHA" MetaDataVersionOID="MDV.SACHA.4"><SubjectData SubjectKey="NEW-001" '
        'TransactionType="Insert"><SiteRef LocationOID="FR-PAR01"/><StudyEventData StudyEventOID="SE.INCLUSION">'
        '<FormData FormOID="F.DEMOG"><ItemGroupData ItemGroupOID="IG.DEMOG"><ItemData ItemOID="DM.SEX" Value="1"/>'
        '<ItemData ItemOID="DM.INCLDTC" Value="2026-11-20"/></ItemGroupData></FormData></StudyEventData>'
        '</SubjectData></ClinicalData>\n</ODM>\n')
    os.utime(increment)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_failed == []
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        notices = [n for (n,) in con.execute(
            "SELECT notice FROM meta.source_notice WHERE source_id = 'sacha_fr' AND run_id = ?",
            [summary.run_id]).fetchall()]
    finally:
        con.close()
    # (the file's name is shown as the run shows it: its digits may be a patient number)
    assert [n.split(": ", 1)[1] for n in notices if "no ItemDef" in n] == [
        "no ItemDef in a MetaDataVersion (ClinicalData only): a mapped ItemOID absent from the data cannot be told "
        "from an item nobody filled in, so a misspelt one would load empty"]


def _misspelt_sex(small_run: Any, tmp_path: Path) -> tuple[Any, Path]:
    """A copy of the small run's home, and a folder of the shipped mappings with sacha_fr's DM.SEX misspelt
    DM.SEXE."""
    home = copy_of(small_run, tmp_path)
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, sources)
    mapping = sources / "sacha_fr.yaml"
    mapping.write_text(mapping.read_text().replace("column: DM.SEX,", "column: DM.SEXE,"))
    return home, sources


def test_a_misspelt_item_oid_fails_the_source_at_night_as_rtw_check_says(small_run, tmp_path):
    home, sources = _misspelt_sex(small_run, tmp_path)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    assert summary.sources_failed == ["sacha_fr"]
    said = undeclared_item("DM.SEXE", {"DM.SEX"})
    assert said is not None and said in summary.message
    assert f"(record set IG.DEMOG): patient.fields.sex in sources/sacha_fr.yaml: {said}" in summary.message
    report = check_source("sacha_fr", sources, home.landing, home.staging)
    assert [(f.severity, f.where, f.message) for f in report.errors] == [
        ("error", "record set IG.DEMOG, column DM.SEXE (patient.fields.sex)", said)]


def test_an_item_declared_but_never_filled_in_or_a_record_set_not_yet_sent_loads_empty():
    mapping = SourceMapping.model_validate({
        "source_id": "s1", "title": "S1", "format": "odm", "files": "S1*.xml", "patient_key": "_subject_key",
        "record_key": "{_subject_key}", "patient": {"from": "IG.DM", "fields": {"sex": {"column": "DM.SEX"}}},
        "tables": {"adverse_event": {"from": "IG.AE", "fields": {
            "term": {"column": "AE.TERM"}, "line": {"column": "_study_event_repeat_key"}}}}})
    demography = pa.table({"_subject_key": ["P1"], "DM.SEX": ["1"]})
    refuse_undeclared_items(mapping, {"IG.DM": demography}, frozenset({"DM.SEX"}), ["S1.xml"])  # no AE yet
    with pytest.raises(HarmoniseError, match=r"^S1\.xml \(record set IG\.AE\): tables\.adverse_event\.fields\.term "
                                             r"in sources/s1\.yaml: ItemOID AE\.TERM is not declared"):
        refuse_undeclared_items(mapping, {"IG.DM": demography, "IG.AE": pa.table({
            "_subject_key": ["P1"], "_study_event_repeat_key": ["1"]})}, frozenset({"DM.SEX"}), ["S1.xml"])
    refuse_undeclared_items(mapping, {"IG.DM": demography, "IG.AE": pa.table({
        "_subject_key": ["P1"], "_study_event_repeat_key": ["1"]})}, frozenset({"DM.SEX", "AE.TERM"}), ["S1.xml"])


def _joined(term: str, where: dict[str, list[str]] | None = None) -> SourceMapping:
    """The patient from IG.DM; adverse events from IG.DM joined with IG.AE (or from IG.AE alone, with where:)."""
    table: dict[str, object] = {"from": ["IG.DM", "IG.AE"], "join_on": ["_subject_key"]} if where is None else \
        {"from": "IG.AE", "where": where}
    return SourceMapping.model_validate({
        "source_id": "s1", "title": "S1", "format": "odm", "files": "S1*.xml", "patient_key": "_subject_key",
        "record_key": "{_subject_key}", "patient": {"from": "IG.DM", "fields": {"sex": {"column": "DM.SEX"}}},
        "tables": {"adverse_event": {**table, "fields": {"term": {"column": term}}}}})


def _frames(record_sets: dict[str, pa.Table]) -> dict[str, pd.DataFrame]:
    return {name: t.to_pandas().assign(source_file="S1.xml", _line=3) for name, t in record_sets.items()}


def test_a_section_s_item_is_looked_for_in_its_own_record_sets_at_night_and_in_rtw_check():
    # A ClinicalData-only increment brings AE.NEW, filled in, in IG.AE: the metadata of the snapshot
    # does not declare it. IG.DM heads both the patient and the joined adverse events: the adverse
    # events' column is in IG.AE, which the patient's record set alone does not hold.
    demography = pa.table({"_subject_key": ["P1"], "DM.SEX": ["1"]})
    events = pa.table({"_subject_key": ["P1"], "AE.NEW": ["x"]})
    declared = frozenset({"DM.SEX"})
    record_sets = {"IG.DM": demography, "IG.AE": events}
    refuse_undeclared_items(_joined("AE.NEW"), record_sets, declared, ["S1.xml", "S1_inc.xml"])
    assert check_record_sets(_joined("AE.NEW"), _frames(record_sets), sparse_columns=True,
                             declared_columns=declared) == []
    # misspelt: in neither record set nor any ItemDef; both say so, naming the section's record sets
    said = undeclared_item("AE.NEWW", {"AE.NEW"})
    with pytest.raises(HarmoniseError, match=r"^S1\.xml \(record set IG\.DM\+IG\.AE\): tables\.adverse_event\."
                                             r"fields\.term in sources/s1\.yaml: ItemOID AE\.NEWW is not declared"):
        refuse_undeclared_items(_joined("AE.NEWW"), record_sets, declared, ["S1.xml"])
    assert [(f.severity, f.where) for f in check_record_sets(
        _joined("AE.NEWW"), _frames(record_sets), sparse_columns=True, declared_columns=declared)] == [
        ("error", "record set IG.DM+IG.AE, column AE.NEWW (tables.adverse_event.fields.term)")]
    assert said is not None


def test_a_misspelt_where_column_fails_the_night_as_rtw_check_says():
    # where: {AE.SERIUS: [...]} kept no record at all, silently: the night now refuses it as check does.
    mapping = _joined("AE.TERM", where={"AE.SERIUS": ["1"]})
    record_sets = {"IG.DM": pa.table({"_subject_key": ["P1"], "DM.SEX": ["1"]}),
                   "IG.AE": pa.table({"_subject_key": ["P1"], "AE.TERM": ["x"], "AE.SERIOUS": ["1"]})}
    declared = frozenset({"DM.SEX", "AE.TERM", "AE.SERIOUS"})
    said = undeclared_item("AE.SERIUS", declared)
    assert said is not None
    with pytest.raises(HarmoniseError) as refused:
        refuse_undeclared_items(mapping, record_sets, declared, ["S1.xml"])
    assert str(refused.value) == f"S1.xml (record set IG.AE): tables.adverse_event.where in sources/s1.yaml: {said}"
    assert [(f.severity, f.where, f.message) for f in check_record_sets(
        mapping, _frames(record_sets), sparse_columns=True, declared_columns=declared)] == [
        ("error", "record set IG.AE, column AE.SERIUS (tables.adverse_event.where)", said)]


def test_rtw_check_takes_the_declared_items_from_the_staged_copies_as_the_night_does(small_run, tmp_path):
    # The night judges by what staging kept of the ItemDefs; check read every landing XML's ItemDefs again.
    # Staged copies keeping none (an export read as ClinicalData only): neither can tell a misspelt item.
    home, sources = _misspelt_sex(small_run, tmp_path)
    staged = sorted((home.staging / "sacha_fr").glob("*.parquet"))
    assert staged
    for path in staged:
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata(
            {k: v for k, v in (table.schema.metadata or {}).items() if k != b"odm:item_oids"}), path)
        assert declared_item_oids(path) is None
    report = check_source("sacha_fr", sources, home.landing, home.staging)
    assert [(f.severity, f.message) for f in report.findings if "DM.SEXE" in f.where] == [
        ("warning", "no value in the data (never filled in?)")]
