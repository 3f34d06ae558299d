"""The fast path of ODM staging (two halves on two processes) stages exactly what the one-pass reader
stages, and hands every file that is not plain back to it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.extract import odm_chunks
from etl.extract.odm import OdmFormatError, stage_odm

NS = "http://www.cdisc.org/ns/odm/v1.3"
LINEAGE = {"source_file": "SACHA.xml"}


def _subject(n: int) -> str:
    items = "".join(f'\n        <ItemData ItemOID="IT.{i}" Value="{n}-{i}"/>' for i in range(6))
    return (f'  <SubjectData SubjectKey="S{n:05d}" TransactionType="Insert">\n'
            f'    <SiteRef LocationOID="FR{n % 7:02d}"/>\n'
            f'    <StudyEventData StudyEventOID="SE.INCL"><FormData FormOID="F.DEMOG">\n'
            f'      <ItemGroupData ItemGroupOID="IG.DEMOG">{items}\n'
            f'      </ItemGroupData></FormData></StudyEventData>\n  </SubjectData>\n')


def _export(tmp_path: Path, subjects: int, *, middle: str = "") -> Path:
    """A plain export: declaration, metadata, one ClinicalData with `subjects` subjects (`middle` after
    the first half of them)."""
    half = subjects // 2
    body = "".join(_subject(n) for n in range(half)) + middle + "".join(_subject(n) for n in range(half, subjects))
    path = tmp_path / "SACHA_ODM_20261101.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{NS}" FileOID="F1" FileType="Snapshot"\n'
                    f'     ODMVersion="1.3.2" CreationDateTime="2026-11-01T02:00:00">\n'
                    f'<Study OID="SACHA"><MetaDataVersion OID="MDV.1" Name="v1"/></Study>\n'
                    f'<ClinicalData StudyOID="SACHA" MetaDataVersionOID="MDV.1">\n{body}</ClinicalData>\n</ODM>\n',
                    encoding="utf-8")
    return path


@pytest.fixture
def small_parts(monkeypatch):
    """Small files take the fast path too."""
    monkeypatch.setattr(odm_chunks, "MIN_BYTES", 0)


def _both_ways(path: Path, tmp_path: Path, monkeypatch) -> tuple[object, object]:
    fast = stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE)
    monkeypatch.setattr(odm_chunks, "MIN_BYTES", 1 << 60)
    slow = stage_odm(path, tmp_path / "slow.parquet", lineage=LINEAGE)
    assert pq.read_table(tmp_path / "fast.parquet").equals(pq.read_table(tmp_path / "slow.parquet"))
    return fast, slow


def test_halves_stage_what_the_one_pass_reader_stages(tmp_path, monkeypatch, small_parts, caplog):
    path = _export(tmp_path, 400)
    parts = odm_chunks.plan_parts(path)
    assert parts is not None and len(parts) == 3  # the prolog, then a half for each process
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        fast, slow = _both_ways(path, tmp_path, monkeypatch)
    assert not [r for r in caplog.records if "one pass" in r.getMessage()], "the parts were refused"
    assert fast == slow and slow.rows == 400 * 6  # type: ignore[attr-defined]
    assert not list(tmp_path.glob(".*")), "no temporary left behind"


def test_line_numbers_of_the_second_half_are_the_files(tmp_path, monkeypatch, small_parts):
    path = _export(tmp_path, 7_000)  # 84,000 lines
    _both_ways(path, tmp_path, monkeypatch)
    lines = pq.read_table(tmp_path / "fast.parquet", columns=["subject_key", "item_oid", "line"]).to_pylist()
    text = path.read_text().splitlines()
    last = lines[-1]
    assert last["line"] > 80_000 and f'ItemOID="{last["item_oid"]}"' in text[last["line"] - 1]
    assert f'Value="{last["subject_key"][1:].lstrip("0")}-5"' in text[last["line"] - 1]


HANDED_BACK = {
    "a subject commented out": "<!--\n  <SubjectData SubjectKey=\"GONE\">\n  </SubjectData>\n-->\n",
    "a CDATA section at the top level": "<![CDATA[\n  <SubjectData SubjectKey=\"GONE\">\n]]>\n",
    "a vendor element between subjects": '<vendor:Note xmlns:vendor="urn:x">checked</vendor:Note>\n',
}


@pytest.mark.parametrize("name", HANDED_BACK)
def test_a_file_that_is_not_plain_is_staged_in_one_pass(tmp_path, monkeypatch, small_parts, name, caplog):
    path = _export(tmp_path, 200, middle=HANDED_BACK[name])
    assert odm_chunks.plan_parts(path) is not None  # the cut is made, then refused
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        fast, slow = _both_ways(path, tmp_path, monkeypatch)
    assert fast == slow
    keys = set(pq.read_table(tmp_path / "fast.parquet", columns=["subject_key"]).column(0).to_pylist())
    assert "GONE" not in keys and len(keys) == 200


def test_a_broken_part_gets_the_one_pass_readers_error(tmp_path, monkeypatch, small_parts):
    path = _export(tmp_path, 200, middle='  <SubjectData SubjectKey="BAD">\n    <ItemData ItemOID="X" Value="1">\n')
    with pytest.raises(OdmFormatError) as fast:
        stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE)
    monkeypatch.setattr(odm_chunks, "MIN_BYTES", 1 << 60)
    with pytest.raises(OdmFormatError) as slow:
        stage_odm(path, tmp_path / "slow.parquet", lineage=LINEAGE)
    assert str(fast.value) == str(slow.value) and "line" in str(fast.value)
    assert not (tmp_path / "fast.parquet").exists()


@pytest.mark.parametrize("prolog", [
    '<!DOCTYPE ODM [<!ENTITY x "y">]>\n',  # entities: refused by the reference reader
    "",
])
def test_only_plain_exports_are_planned(tmp_path, small_parts, prolog):
    path = _export(tmp_path, 50)
    if prolog:
        text = path.read_text().replace("?>\n", "?>\n" + prolog, 1)
        path.write_text(text)
        assert odm_chunks.plan_parts(path) is None
    else:
        assert odm_chunks.plan_parts(path) is not None
        path.write_text(path.read_text().replace("</ClinicalData>", "</ClinicalData>\n<ClinicalData StudyOID=\"B\" "
                                                 "MetaDataVersionOID=\"MDV.1\"></ClinicalData>"))
        assert odm_chunks.plan_parts(path) is None  # two ClinicalData
