"""The fast path of ODM staging (a plain export read subject by subject, in parts, on two processes)
stages exactly what the one-pass reader stages, and hands every file that is not plain back to it."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import reference_corpus
from lxml import etree

from etl.extract import odm_chunks, odm_subjects
from etl.extract.odm import OdmFormatError, stage_odm
from etl.extract.odm_xml import SubDocument

NS = "http://www.cdisc.org/ns/odm/v1.3"
CORPUS = sorted(p.relative_to(reference_corpus.REFERENCE).as_posix()
                for p in (reference_corpus.REFERENCE / "odm").rglob("*.xml") if "invalid" not in p.parts)
LINEAGE = {"source_file": "SACHA.xml"}


def _subject(n: int, items: int = 6, *, subject_attributes: str = ' TransactionType="Insert"') -> str:
    rows = "".join(f'\n        <ItemData ItemOID="IT.{i}" Value="{n}-{i}"/>' for i in range(items))
    return (f'  <SubjectData SubjectKey="S{n:05d}"{subject_attributes}>\n'
            f'    <SiteRef LocationOID="FR{n % 7:02d}"/>\n'
            f'    <StudyEventData StudyEventOID="SE.INCL"><FormData FormOID="F.DEMOG">\n'
            f'      <ItemGroupData ItemGroupOID="IG.DEMOG">{rows}\n'
            f'      </ItemGroupData></FormData></StudyEventData>\n  </SubjectData>\n')


def _export(tmp_path: Path, subjects: int, *, middle: str = "", subject_attributes: str = ' TransactionType="Insert"'
            ) -> Path:
    """A plain export: declaration, metadata, one ClinicalData with `subjects` subjects (`middle` after
    the first half of them)."""
    half = subjects // 2
    body = "".join(_subject(n, subject_attributes=subject_attributes) for n in range(half)) + middle + "".join(
        _subject(n, subject_attributes=subject_attributes) for n in range(half, subjects))
    path = tmp_path / "SACHA_ODM_20261101.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{NS}" FileOID="F1" FileType="Snapshot"\n'
                    f'     ODMVersion="1.3.2" CreationDateTime="2026-11-01T02:00:00">\n'
                    f'<Study OID="SACHA"><MetaDataVersion OID="MDV.1" Name="v1"/></Study>\n'
                    f'<ClinicalData StudyOID="SACHA" MetaDataVersionOID="MDV.1">\n{body}</ClinicalData>\n</ODM>\n',
                    encoding="utf-8")
    return path


def _read_by(monkeypatch, reader: str) -> None:
    """Small files cut in small parts, read on two threads, or their later half by a second process."""
    monkeypatch.setattr(odm_chunks, "PROCESS_MIN_BYTES", 0 if reader == "processes" else 1 << 60)
    monkeypatch.setattr(odm_chunks, "LEAD_BYTES", 0)
    monkeypatch.setattr(odm_chunks, "PART_LINES", 300)


@pytest.fixture(params=["threads", "processes"])
def small_parts(monkeypatch, request):
    _read_by(monkeypatch, request.param)


def _both_ways(path: Path, tmp_path: Path, monkeypatch) -> tuple[object, object]:
    fast = stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE)
    monkeypatch.setattr(odm_chunks, "plan_parts", lambda path: None)  # the one-pass reader, the reference
    slow = stage_odm(path, tmp_path / "slow.parquet", lineage=LINEAGE)
    assert pq.read_table(tmp_path / "fast.parquet").equals(pq.read_table(tmp_path / "slow.parquet"))
    return fast, slow


def _kept(caplog) -> bool:
    """Whether the last staging kept to the fast path."""
    return not [r for r in caplog.records if "one pass" in r.getMessage()]


@pytest.mark.parametrize("subjects", [1, 5, 170, 190, 400])
def test_subjects_are_cut_in_an_even_number_of_parts_alike(tmp_path, monkeypatch, subjects):
    # Two threads read the parts: seven parts and a stub (2,000 persons: 139,492 lines in parts of 20,000)
    # left one thread reading the seventh alone. Parts are as many as PART_LINES makes, made even, alike.
    monkeypatch.setattr(odm_chunks, "PART_LINES", 300)
    path = _export(tmp_path, subjects)
    parts = odm_chunks.plan_parts(path)
    assert parts is not None
    data = path.read_bytes()
    lines = [odm_chunks._line_breaks(data, p.start, p.end) for p in parts[1:]]
    assert len(lines) % 2 == 0 or subjects == 1  # a subject is never cut
    assert max(lines) <= 300 + 12 and max(lines) - min(lines) <= 2 * 12  # a subject is 12 lines
    assert len(lines) <= -(-sum(lines) // 300) + 1


@pytest.mark.parametrize("reader", ["threads", "processes", "one process"])
def test_parts_stage_what_the_one_pass_reader_stages(tmp_path, monkeypatch, caplog, reader):
    _read_by(monkeypatch, "processes" if reader == "one process" else reader)
    if reader == "one process":  # a machine of one core
        monkeypatch.setattr(odm_chunks.os, "cpu_count", lambda: 1)
    path = _export(tmp_path, 400)
    parts = odm_chunks.plan_parts(path)
    assert parts is not None and len(parts) > 5  # the prolog, then parts of about 300 lines
    first, second = odm_chunks._halves(parts)
    assert first[0] is parts[0] and first + second == parts and len(second) >= len(parts) // 3
    assert parts[0].head == b"" and all(p.head for p in parts[1:])
    assert [p.start for p in parts[1:]] == [p.end for p in parts[:-1]] and parts[-1].end == path.stat().st_size
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        fast, slow = _both_ways(path, tmp_path, monkeypatch)
    assert _kept(caplog), "the parts were refused"
    assert fast == slow and slow.rows == 400 * 6  # type: ignore[attr-defined]
    assert not list(tmp_path.glob(".*")), "no temporary left behind"


def test_on_threads_the_parts_are_read_beside_the_writing_and_no_thread_is_left(tmp_path, monkeypatch):
    _read_by(monkeypatch, "threads")
    readers: set[str] = set()
    read = odm_chunks.read_subject_columns

    def noted(*args: object, **kwargs: object) -> object:
        readers.add(threading.current_thread().name)
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(odm_chunks, "read_subject_columns", noted)
    path = _export(tmp_path, 400)
    assert stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE).rows == 400 * 6
    assert readers and all(name.startswith("odm-part") for name in readers), readers
    assert not [t for t in threading.enumerate() if t.name.startswith("odm-part")]


def test_without_the_c_walk_a_second_process_reads_instead_of_threads(tmp_path, monkeypatch, caplog):
    # Python's walk holds the GIL: threads would read the parts one after the other.
    _read_by(monkeypatch, "threads")
    monkeypatch.setattr(odm_subjects, "_odm_walk", None)
    started: list[object] = []
    second = odm_chunks._second_process
    monkeypatch.setattr(odm_chunks, "_second_process", lambda *args: started.append(args) or second(*args))
    path = _export(tmp_path, 400)
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        fast, slow = _both_ways(path, tmp_path, monkeypatch)
    assert _kept(caplog) and fast == slow and started


def test_a_part_refused_on_a_thread_stops_the_reading(tmp_path, monkeypatch):
    _read_by(monkeypatch, "threads")
    monkeypatch.setattr(odm_chunks, "READ_AHEAD", 1)
    parts: list[int] = []
    read = odm_chunks.read_subject_columns

    def refused(path: Path, part: SubDocument, **kwargs: object) -> object:
        parts.append(part.start)
        if len(parts) == 2:
            raise odm_subjects.NotPlain("refused here")
        return read(path, part, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(odm_chunks, "read_subject_columns", refused)
    path = _export(tmp_path, 400)
    planned = odm_chunks.plan_parts(path)
    assert planned is not None and len(planned) > 8
    assert stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE).rows == 400 * 6  # by the one-pass reader
    assert len(parts) <= 3, "parts were read after the refusal was taken"  # the refused part, one ahead
    assert not [t for t in threading.enumerate() if t.name.startswith("odm-part")]


def test_line_numbers_past_65535_are_the_files(tmp_path, monkeypatch, caplog):
    # libxml2 counts an element's line only to 65,535: parts are kept shorter, however long they were
    # meant to be, and their lines shifted.
    monkeypatch.setattr(odm_chunks, "PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(odm_chunks, "PART_LINES", 10**6)
    monkeypatch.setattr(odm_chunks, "MAX_PART_BYTES", 1 << 30)  # cut by lines alone
    path = _export(tmp_path, 12_000, subject_attributes="")  # 144,000 lines
    parts = odm_chunks.plan_parts(path)
    assert parts is not None and len(parts) == 4  # the prolog and three parts under MAX_PART_LINES
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        _both_ways(path, tmp_path, monkeypatch)
    assert _kept(caplog)
    lines = pq.read_table(tmp_path / "fast.parquet", columns=["subject_key", "item_oid", "line"]).to_pylist()
    text = path.read_text().splitlines()
    last = lines[-1]
    assert last["line"] > 140_000 and f'ItemOID="{last["item_oid"]}"' in text[last["line"] - 1]
    assert f'Value="{last["subject_key"][1:].lstrip("0")}-5"' in text[last["line"] - 1]


def test_a_part_is_cut_short_where_lines_are_longer_than_at_first(tmp_path, monkeypatch, caplog):
    # The cut is placed by the first subjects' mean line length: later subjects of many short lines
    # would make a part too long for libxml2's line numbers.
    monkeypatch.setattr(odm_chunks, "PART_LINES", 100)
    monkeypatch.setattr(odm_chunks, "MAX_PART_LINES", 150)
    long_lines = [_subject(n, items=1).replace("\n        <ItemData", "<ItemData") for n in range(300)]
    path = _export(tmp_path, 0, middle="".join(long_lines) + "".join(_subject(n, items=40) for n in range(300, 320)))
    parts = odm_chunks.plan_parts(path)
    assert parts is not None
    assert all(odm_chunks._line_breaks(path.read_bytes(), p.start, p.end) < 150 for p in parts[1:])
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        _both_ways(path, tmp_path, monkeypatch)
    assert _kept(caplog)


def test_parts_are_cut_by_bytes_too_and_a_file_of_long_lines_is_read_in_one_pass(tmp_path, monkeypatch):
    """A hunt: parts were cut by lines only, and each is read whole into a tree: subjects all on one line made one
    part of the file (126 MiB: 1.86 GB in the run's process), a gigabyte of no line at all one of a gigabyte."""
    monkeypatch.setattr(odm_chunks, "MAX_PART_BYTES", 4_000)
    path = _export(tmp_path, 200)
    parts = odm_chunks.plan_parts(path)
    assert parts is not None and all(p.end - p.start <= 4_000 for p in parts[1:]) and len(parts) > 20
    one_line = _export(tmp_path, 0, middle="".join(_subject(n).replace("\n", "") for n in range(200)) + "\n")
    assert odm_chunks.plan_parts(one_line) is None
    assert stage_odm(one_line, tmp_path / "x.parquet", lineage=LINEAGE).rows == 1_200


def test_a_subject_longer_than_a_part_is_read_in_one_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(odm_chunks, "MAX_PART_LINES", 30)
    path = _export(tmp_path, 0, middle="".join(_subject(n, items=40) for n in range(3)))
    assert odm_chunks.plan_parts(path) is None
    assert stage_odm(path, tmp_path / "x.parquet", lineage=LINEAGE).rows == 120


AUDIT = ('<AuditRecord><UserRef UserOID="U1"/><LocationRef LocationOID="FR01"/>'
         '<DateTimeStamp>2026-01-02T03:04:05Z</DateTimeStamp><ReasonForChange>typo</ReasonForChange></AuditRecord>')
# Subjects the fast path reads itself (kept: True) or hands back (False); the rows are the same.
SUBJECTS = {
    "no TransactionType at all": (_subject(1, subject_attributes=""), True),
    "an AuditRecord on an item and on a container": (_subject(1).replace(
        'Value="1-2"/>', f'Value="1-2">{AUDIT}</ItemData>').replace(
        '<FormData FormOID="F.DEMOG">', f'<FormData FormOID="F.DEMOG">{AUDIT}'), True),
    "an AuditRecord of a group after its items": (_subject(1).replace(
        "\n      </ItemGroupData>", f"{AUDIT}</ItemGroupData>"), True),
    "an item IsNull, an item Update": (_subject(1).replace('Value="1-1"/>', 'IsNull="Yes"/>').replace(
        'Value="1-3"/>', 'Value="x" TransactionType="Update"/>'), True),
    "a group removed": ('  <SubjectData SubjectKey="R1"><StudyEventData StudyEventOID="SE.INCL">'
                        '<FormData FormOID="F.DEMOG"><ItemGroupData ItemGroupOID="IG.DEMOG" ItemGroupRepeatKey="2" '
                        'TransactionType="Remove"/></FormData></StudyEventData></SubjectData>\n', True),
    "a Dataset-XML sequence number": (_subject(1).replace(
        'ItemGroupOID="IG.DEMOG"', 'ItemGroupOID="IG.DEMOG" ItemGroupDataSeq="7"'), True),
    "repeat keys and a late SiteRef": (_subject(1).replace(
        'StudyEventOID="SE.INCL"', 'StudyEventOID="SE.INCL" StudyEventRepeatKey="2"').replace(
        'FormOID="F.DEMOG"', 'FormOID="F.DEMOG" FormRepeatKey="3"').replace(
        "  </SubjectData>", '    <SiteRef LocationOID="LATE"/>\n  </SubjectData>'), True),
    "a typed ItemData": (_subject(1).replace('<ItemData ItemOID="IT.0" Value="1-0"/>',
                                             '<ItemDataString ItemOID="IT.0">typed</ItemDataString>'), False),
    "Value children": (_subject(1).replace('<ItemData ItemOID="IT.0" Value="1-0"/>',
                                           '<ItemData ItemOID="IT.0"><Value>a</Value><Value>b</Value></ItemData>'),
                       False),
    "a vendor element in a group": (_subject(1).replace(
        "\n      </ItemGroupData>", '<v:x xmlns:v="urn:v"><v:y Value="1"/></v:x></ItemGroupData>'),
        False),
    "an Annotation on a form": (_subject(1).replace(
        '<FormData FormOID="F.DEMOG">', '<FormData FormOID="F.DEMOG"><Annotation SeqNum="1"/>'), False),
    "an ItemData straight in a form": (_subject(1).replace(
        '<FormData FormOID="F.DEMOG">', '<FormData FormOID="F.DEMOG"><ItemData ItemOID="F" Value="1"/>'), False),
    "a character reference and an entity": (_subject(1).replace('Value="1-0"', 'Value="&lt;&#233;&amp;"'), True),
}


@pytest.mark.parametrize("name", SUBJECTS)
def test_what_the_fast_path_reads_and_what_it_hands_back(tmp_path, monkeypatch, caplog, name):
    subject, kept = SUBJECTS[name]
    path = _export(tmp_path, 4, middle=subject, subject_attributes="")
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        _both_ways(path, tmp_path, monkeypatch)
    assert _kept(caplog) is kept


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


def test_a_cut_answer_of_the_second_process_sends_the_file_to_one_pass(tmp_path, monkeypatch, caplog):
    _read_by(monkeypatch, "processes")

    def cut_answer(path: Path, parts: object, out: Path, batch_rows: int) -> subprocess.Popen[str]:
        write = f"open({str(out)!r}, 'wb').write(bytes([200] + [0] * 7) + b'cut')"  # 3 bytes of 200 announced
        return subprocess.Popen([sys.executable, "-c", write], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    monkeypatch.setattr(odm_chunks, "_second_process", cut_answer)
    path = _export(tmp_path, 400)
    with caplog.at_level("DEBUG", logger=odm_chunks.__name__):
        fast, slow = _both_ways(path, tmp_path, monkeypatch)
    assert not _kept(caplog) and fast == slow


def test_a_broken_part_gets_the_one_pass_readers_error(tmp_path, monkeypatch, small_parts):
    path = _export(tmp_path, 200, middle='  <SubjectData SubjectKey="BAD">\n    <ItemData ItemOID="X" Value="1">\n')
    with pytest.raises(OdmFormatError) as fast:
        stage_odm(path, tmp_path / "fast.parquet", lineage=LINEAGE)
    monkeypatch.setattr(odm_chunks, "plan_parts", lambda path: None)  # the one-pass reader, the reference
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


@pytest.mark.parametrize(("encoding", "planned"), [("UTF-8", True), ("utf8", True), ("ISO-8859-1", True),
                                                   ("windows-1252", True), ("UTF-7", False), ("UTF-16", False)])
def test_only_an_export_whose_markup_is_ascii_is_planned(tmp_path, monkeypatch, encoding, planned):
    # In UTF-7 "+AFQ-ransactionType" is TransactionType: the looks at bytes (a transactional part, a DOCTYPE,
    # an entity) would not see it.
    path = _export(tmp_path, 0, middle=_lean_subject("U", _group(
        '<ItemData ItemOID="A" Value="1" +AEk-sNull="Yes"/>', 'ItemGroupOID="G" +AFQ-ransactionType="Remove"')))
    text = path.read_text().replace('encoding="UTF-8"', f'encoding="{encoding}"')
    path.write_bytes(text.encode("utf-16" if encoding == "UTF-16" else "ascii"))
    assert (odm_chunks.plan_parts(path) is not None) is planned
    if encoding == "UTF-7":
        _both_ways(path, tmp_path, monkeypatch)
        rows = pq.read_table(tmp_path / "fast.parquet", columns=["transaction_type", "is_null"]).to_pylist()
        assert rows == [{"transaction_type": "Remove", "is_null": False}, {"transaction_type": "Remove",
                                                                           "is_null": True}]


@pytest.mark.parametrize("name", CORPUS)
def test_the_public_corpus_stages_as_in_one_pass(tmp_path, monkeypatch, name):
    # Most of it is handed back (REDCap's classic projects have no StudyEventData, ODM 2.0 puts
    # groups in events and values in <Value>); the rest must stage the same either way.
    _both_ways(reference_corpus.REFERENCE / name, tmp_path, monkeypatch)


# ---- the walk in C (etl/extract/_odm_walk.c): the same columns as the Python walk, or it hands back ----

def test_the_c_walk_is_built(monkeypatch, caplog):
    # hatch_build.py compiles it with the package; without it ODM staging is correct, but slow.
    from etl.extract import _odm_walk

    assert odm_subjects._odm_walk is _odm_walk is odm_subjects._c_walk()
    # Compiled against another lxml (whose structures it reads), it is not used, and the log says so.
    monkeypatch.setattr(odm_subjects.etree, "__version__", "0.0.1")
    assert odm_subjects._c_walk() is None
    assert "not the lxml 0.0.1" in caplog.text


def _lean_subject(key: str, body: str, site: str = '<SiteRef LocationOID="FR01"/>') -> str:
    return (f'  <SubjectData SubjectKey="{key}">{site}<StudyEventData StudyEventOID="SE.1">'
            f'<FormData FormOID="F.1">{body}</FormData></StudyEventData></SubjectData>\n')


def _group(items: str, attributes: str = 'ItemGroupOID="IG.1"') -> str:
    return f"<ItemGroupData {attributes}>{items}</ItemGroupData>"


ITEMS = '<ItemData ItemOID="A" Value="1"/>\n<ItemData ItemOID="B" Value="2"/>'
# Lean subjects the C walk reads (True) or hands to the Python walk (False), between plain ones.
LEAN = {
    "plain": (_lean_subject("P", _group(ITEMS)), True),
    "no value, an empty value, no OID, a namespaced Value": (_lean_subject("V", _group(
        '<ItemData ItemOID="A"/><ItemData ItemOID="B" Value=""/><ItemData Value="3"/>'
        '<ItemData xmlns:x="urn:x" ItemOID="C" x:Value="4"/>')), True),
    "no SiteRef, two SiteRefs, one after the events": (
        _lean_subject("S0", _group(ITEMS), site="") + _lean_subject("S2", _group(ITEMS)).replace(
            "</StudyEventData></SubjectData>", '</StudyEventData><SiteRef LocationOID="LATE"/></SubjectData>'), True),
    "groups without items, repeat keys, missing keys": (
        '  <SubjectData><StudyEventData StudyEventRepeatKey="2"><FormData FormRepeatKey="3">'
        '<ItemGroupData ItemGroupOID="E"/>' + _group(ITEMS, 'ItemGroupRepeatKey="4"') +
        '<ItemGroupData ItemGroupOID="F"></ItemGroupData></FormData><FormData FormOID="F.2"/></StudyEventData>'
        "<StudyEventData/></SubjectData>\n", True),
    "item AuditRecords: one, two, partial, empty texts": (_lean_subject("A", _group(
        f'<ItemData ItemOID="A" Value="1">{AUDIT}</ItemData>'
        f'<ItemData ItemOID="B" Value="2">{AUDIT}{AUDIT.replace("U1", "U2").replace("typo", "second")}</ItemData>'
        '<ItemData ItemOID="C" Value="3"><AuditRecord><UserRef UserOID="U3"/></AuditRecord></ItemData>'
        '<ItemData ItemOID="D" Value="4"><AuditRecord><DateTimeStamp></DateTimeStamp><ReasonForChange/>'
        '<SourceID>x</SourceID></AuditRecord></ItemData>')), True),
    "references, CDATA, non-ASCII, stray text": (_lean_subject("R", _group(
        '<ItemData ItemOID="A" Value="&lt;&#233;&amp;é€𝄞"/>text between items'
        '<ItemData ItemOID="B" Value="x"><AuditRecord><ReasonForChange><![CDATA[a<b]]></ReasonForChange>'
        '</AuditRecord></ItemData>')), True),
    "text and a CDATA section in one reason (one text node: the parser strips CDATA)": (_lean_subject("T", _group(
        '<ItemData ItemOID="B" Value="x"><AuditRecord><ReasonForChange>a<![CDATA[b]]></ReasonForChange>'
        '</AuditRecord></ItemData>')), True),
    "an AuditRecord of a group": (_lean_subject("G", _group(ITEMS + AUDIT)), True),
    "an AuditRecord of a subject": (_lean_subject("U", _group(ITEMS), site=AUDIT), True),
    # A row's audit is its ItemData's, else its nearest container's, wherever that stands among the
    # container's children (the last of several); an empty one stops the search, as an item's does.
    "AuditRecords at every level, nearer ones first": (
        f'  <SubjectData SubjectKey="L">{AUDIT.replace("U1", "SUBJECT")}<StudyEventData StudyEventOID="SE.1">'
        '<FormData FormOID="F.1">' + _group(ITEMS + AUDIT.replace("U1", "GROUP")) +
        _group('<ItemData ItemOID="C" Value="3">' + AUDIT.replace("U1", "ITEM") + "</ItemData>" + ITEMS) +
        AUDIT.replace("U1", "FORM1") + AUDIT.replace("U1", "FORM2") + "</FormData>" +
        '<FormData FormOID="F.2">' + _group(ITEMS) + "<AuditRecord/></FormData>" +
        '<FormData FormOID="F.3">' + _group(ITEMS) + "</FormData>" +
        AUDIT.replace("U1", "EVENT") + "</StudyEventData>" +
        '<StudyEventData StudyEventOID="SE.2">' + "<FormData FormOID=\"F.4\">" + _group(ITEMS) +
        "</FormData></StudyEventData></SubjectData>\n", True),
    "an AuditRecord of a container without rows": (_lean_subject("W", _group(AUDIT) + _group(ITEMS)), True),
    "an AuditRecord of a container with an element in a child": (_lean_subject("X", _group(ITEMS) + AUDIT.replace(
        '<UserRef UserOID="U1"/>', '<UserRef UserOID="U1"><x/></UserRef>')), False),
    "an ItemData in a form": (_lean_subject("F", '<ItemData ItemOID="A" Value="1"/>' + _group(ITEMS)), False),
    "Value children of an ItemData": (_lean_subject("V", _group(
        '<ItemData ItemOID="A"><Value>a</Value></ItemData>')), False),
    "an element in an AuditRecord's child": (_lean_subject("E", _group(
        '<ItemData ItemOID="A" Value="1"><AuditRecord><UserRef UserOID="U"><x/></UserRef></AuditRecord></ItemData>'
    )), False),
}


def _walked(path: Path, parts: list[SubDocument], batch_rows: int) -> list[object]:
    """Each part's batches, or the walk's refusal."""
    walked: list[object] = []
    for part in parts:
        try:
            walked.append(list(odm_subjects.read_subject_columns(path, part, batch_rows=batch_rows)))
        except (odm_subjects.NotPlain, OdmFormatError) as refusal:
            walked.append(f"{type(refusal).__name__}: {refusal}")
    return walked


def _walked_in_c(path: Path, parts: list[SubDocument], batch_rows: int) -> list[object]:
    """`_walked` with the C walk as it is set, after checking the Python walk alone walks the same."""
    in_c = _walked(path, parts, batch_rows)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(odm_subjects, "_odm_walk", None)
        assert in_c == _walked(path, parts, batch_rows), path.read_text(errors="replace")
    return in_c


# Subjects of transactional exports (TransactionType, IsNull, sequence numbers): the Python walk's
# `_container` path, whose frames are made as rows point to them.
TRANSACTIONAL = {
    "a subject, an event, a form and a group removed, with a removed group's own values": (
        '  <SubjectData SubjectKey="R1" TransactionType="Remove"/>\n'
        '  <SubjectData SubjectKey="R2"><StudyEventData StudyEventOID="SE.1" TransactionType="Remove"/>'
        '<StudyEventData StudyEventOID="SE.2"><FormData FormOID="F.1" FormRepeatKey="2" TransactionType="Remove"/>'
        '<FormData FormOID="F.2">' + _group("", 'ItemGroupOID="G" ItemGroupRepeatKey="3" TransactionType="Remove" '
                                            'ItemOID="I" Value="v" IsNull="Yes"') +
        _group(ITEMS) + "</FormData></StudyEventData></SubjectData>\n", True),
    "items null, updated, inheriting a form's TransactionType": (_lean_subject("N", "").replace(
        '<FormData FormOID="F.1">', '<FormData FormOID="F.1" TransactionType="Upsert">' + _group(
            '<ItemData ItemOID="A" Value="1" IsNull="Yes"/><ItemData ItemOID="B" IsNull="No" Value="2"/>'
            '<ItemData ItemOID="C" Value="3" TransactionType="Update"/>'
            f'<ItemData ItemOID="D" IsNull="Yes">{AUDIT}</ItemData>')), True),
    "sequence numbers: ItemGroupDataSeq, Dataset-XML's, a repeat key before both": (_lean_subject("Q", "".join((
        _group(ITEMS, 'ItemGroupOID="G" ItemGroupDataSeq="4"'),
        _group(ITEMS, 'ItemGroupOID="G" xmlns:d="http://www.cdisc.org/ns/Dataset-XML/v1.0" d:ItemGroupDataSeq="5"'),
        _group(ITEMS, 'ItemGroupOID="G" ItemGroupRepeatKey="6" ItemGroupDataSeq="7"'),
        _group("", 'ItemGroupOID="EMPTY"')))), True),
    "a removed form with an AuditRecord": (_lean_subject("A", "").replace(
        '<FormData FormOID="F.1">', f'<FormData FormOID="F.1" TransactionType="Remove">{AUDIT}'), True),
    "a removed group whose AuditRecord follows its item, in an audited form": (_lean_subject("B", "").replace(
        '<FormData FormOID="F.1">', f'<FormData FormOID="F.1">{AUDIT.replace("U1", "FORM")}' + _group(
            '<ItemData ItemOID="A" Value="1"/>' + AUDIT.replace("U1", "GROUP"),
            'ItemGroupOID="G" TransactionType="Remove"') + _group(ITEMS, 'ItemGroupOID="H"')), True),
}


@pytest.mark.parametrize(("name", "transactional"), [
    *((name, False) for name in LEAN), *((name, True) for name in [*LEAN, *TRANSACTIONAL])])
def test_the_c_walk_reads_what_the_python_walk_reads(tmp_path, monkeypatch, name, transactional):
    subject, read_in_c = {**LEAN, **TRANSACTIONAL}[name]
    path = _export(tmp_path, 6, middle=subject, subject_attributes=' TransactionType="Insert"' if transactional else "")
    parts = odm_chunks.plan_parts(path)
    assert parts is not None
    lean, answers = odm_subjects._odm_walk, []

    def read(*args: object) -> object:
        answers.append(lean.read(*args))
        return answers[-1]

    for batch_rows in (1, 5, 50_000):
        with monkeypatch.context() as patched:
            patched.setattr(odm_subjects, "_odm_walk", SimpleNamespace(read=read))
            _walked_in_c(path, parts[1:], batch_rows)
        assert (None not in answers) is read_in_c
    _both_ways(path, tmp_path, monkeypatch)  # and the file stages as the one-pass reader stages it


def test_the_c_walk_reads_a_file_without_a_namespace(tmp_path):
    path = _export(tmp_path, 3, subject_attributes="")
    path.write_text(path.read_text().replace(f' xmlns="{NS}"', ""))
    parts = odm_chunks.plan_parts(path)
    assert parts is not None
    whole = SubDocument(parts[1].head, parts[1].start, parts[-1].end, parts[-1].tail, parts[1].first_line)
    [columns] = _walked_in_c(path, [whole], 50_000)
    assert columns[0].rows == 18 and columns[0].keys[0] == (b"SACHA\0SACHA\0SACHA", [])


def test_the_c_walk_takes_only_an_lxml_element():
    from lxml import etree

    def read(clinical: object, batch_rows: int = 1) -> object:
        return odm_subjects._odm_walk.read(clinical, None, None, None, 0, batch_rows, 0, True)

    with pytest.raises(TypeError, match="lxml"):
        read(object())
    with pytest.raises(ValueError, match="without its node"):
        read(etree._Element.__new__(etree._Element))
    with pytest.raises(ValueError, match="batch_rows"):
        read(etree.fromstring("<ClinicalData/>"), 0)

    class Custom(etree.ElementBase):  # an element class of one's own is an element too
        pass

    assert read(Custom()) == (-1, 0, 0, b"", [(b"", [])] * 9, (b"", []), [], (b"", []), (b"", []), b"", None, b"")


def test_the_c_walk_hands_back_a_document_with_a_dtd(tmp_path):
    # A DTD may give an attribute a default value, which lxml's get() reads (plan_parts never makes such a
    # part: a file with a DOCTYPE is read in one pass).
    path = _export(tmp_path, 0, middle=_lean_subject("D", _group('<ItemData ItemOID="A"/>')), subject_attributes="")
    part = odm_chunks.plan_parts(path)[1]  # type: ignore[index]
    dtd = b'<!DOCTYPE ODM [<!ATTLIST ItemData Value CDATA "DEFAULT">]>\n'
    head = part.head.replace(b"?>\n", b"?>\n" + dtd, 1)
    with_dtd = SubDocument(head, part.start, part.end, part.tail, part.first_line + 1)
    [columns] = _walked_in_c(path, [with_dtd], 50_000)
    assert columns[0].value == (b"DEFAULT", [])


def test_a_part_over_65535_lines_is_walked_the_same_in_c(tmp_path):
    # Parts are cut shorter; one that is not gets, from the C walk too, what lxml's sourceline says there.
    path = _export(tmp_path, 6_000, subject_attributes="")  # 72,000 lines
    parts = odm_chunks.plan_parts(path)
    assert parts is not None
    whole = SubDocument(parts[1].head, parts[1].start, parts[-1].end, parts[-1].tail, parts[1].first_line)
    [columns] = _walked_in_c(path, [whole], 10**6)
    assert sum(c.rows for c in columns) == 36_000


def test_the_c_walk_lets_other_threads_run():
    # It reads the tree without the GIL (odm_chunks reads parts on two threads): another thread runs
    # Python while it walks. Holding the GIL, it would let none run in the first half of the walk (but
    # for a moment at its start: this thread may be made to hand the GIL over before the call).
    items = "".join(f'<ItemData ItemOID="I{k}" Value="{k}"/>' for k in range(300))
    subjects = "".join(f'<SubjectData SubjectKey="S{n}"><StudyEventData StudyEventOID="E"><FormData FormOID="F">'
                       f'<ItemGroupData ItemGroupOID="G">{items}</ItemGroupData></FormData></StudyEventData>'
                       f"</SubjectData>\n" for n in range(1_000))
    root = etree.fromstring(f'<ODM xmlns="{NS}"><ClinicalData StudyOID="S" MetaDataVersionOID="V">\n{subjects}'
                            "</ClinicalData></ODM>".encode())
    beats: list[float] = []
    beating = threading.Event()

    def beat() -> None:
        while beating.is_set():
            beats.append(time.perf_counter())

    beating.set()
    other = threading.Thread(target=beat)
    other.start()
    walks, beats_inside = [], []
    try:
        # Walk again till two walks had the other thread run inside them: a busy machine may starve a thread a
        # while, and holding the GIL, no walk would ever have it.
        while len(walks) < 30 and sum(map(bool, beats_inside)) < 2:
            started = time.perf_counter()
            walked = odm_subjects._odm_walk.read(root[0], NS, "S", "V", 0, 10**7, 0, True)
            ended = time.perf_counter()
            assert walked is not None and walked[1] == 300_000
            assert ended - started > 0.015, (started, ended)
            walks.append((started, ended))
            beats_inside.append(sum(started + 0.006 < t < (started + ended) / 2 for t in list(beats)))
    finally:
        beating.clear()
        other.join()
    assert sum(map(bool, beats_inside)) >= 2, beats_inside


# What the mutations below put where an element or an attribute may start: the C walk's corners.
ELEMENTS = [b'<ItemData ItemOID="Z" Value="9"/>', b'<ItemData ItemOID="Y"/>', b'<ItemData Value=""/>', AUDIT.encode(),
            b'<SiteRef LocationOID="S"/>', b"<SiteRef/>", b'<ItemGroupData ItemGroupOID="N"/>', b"<!-- c -->",
            b"<?pi x?>", b"x&amp;y", b"<![CDATA[z]]>", b'<FormData FormOID="F"/>', b"<StudyEventData/>",
            b'<ItemData ItemOID="A" Value="1"><AuditRecord><DateTimeStamp>d&amp;e</DateTimeStamp>'
            b"<ReasonForChange>r<![CDATA[s]]></ReasonForChange></AuditRecord></ItemData>",
            b'<q:ItemData xmlns:q="urn:q" ItemOID="n"/>', b'<ItemData xmlns="urn:other" ItemOID="o"/>']
ATTRIBUTES = [b' Value="v"', b' ItemOID="o"', b' xmlns:q="urn:q" q:Value="w"', b' SubjectKey="k"',
              b' Value="&lt;&#233;"', b' ItemGroupRepeatKey="&amp;"', b' LocationOID="L"', b' IsNull="Yes"',
              b' TransactionType="Remove"', b' TransactionType="Update"', b' ItemGroupDataSeq="9"']


_NAME_END = re.compile(rb"[\s>/]")


def _mutated(data: bytes, rng: random.Random) -> bytes:
    """`data` with one to four elements or attributes added, elements or bytes removed, among its subjects."""
    first = data.index(b"<SubjectData")
    for _ in range(rng.randint(1, 4)):
        end = data.rindex(b"</ClinicalData>")
        at, kind = data.index(b"<", rng.randrange(first, end)), rng.random()
        name_end, closed = _NAME_END.search(data, at + 1).start(), data.find(b"/>", at)
        if kind < 0.45:
            data = data[:at] + rng.choice(ELEMENTS) + data[at:]
        elif kind < 0.75 and data[at + 1:at + 2] not in (b"/", b"!", b"?"):
            data = data[:name_end] + rng.choice(ATTRIBUTES) + data[name_end:]
        elif kind < 0.9 and closed > 0 and b">" not in data[at:closed]:
            data = data[:at] + data[closed + 2:]
        else:
            data = data[:at] + data[min(at + rng.randint(1, 12), end):]
    return data


def test_the_c_walk_and_the_python_walk_agree_on_mutated_exports(tmp_path):
    # 80,000 such files agreed when the C walk was written (and ran clean under ASan and UBSan).
    rng = random.Random(11)
    lean = "".join(s for s, read_in_c in LEAN.values() if read_in_c)
    transactional = lean + "".join(s for s, read_in_c in TRANSACTIONAL.values() if read_in_c)
    bases = [_export(tmp_path, 2, middle=lean, subject_attributes="").read_bytes(),
             _export(tmp_path, 2, middle=transactional, subject_attributes=' TransactionType="Insert"').read_bytes()]
    path, read_in_c = tmp_path / "mutated.xml", 0
    for n in range(400):
        path.write_bytes(_mutated(bases[n % 2], rng))
        parts = odm_chunks.plan_parts(path)
        if parts is None:  # no longer plain (a SubjectData's line start cut away)
            continue
        for batch_rows in (1, 50_000):
            in_c = _walked_in_c(path, parts[1:], batch_rows)
        read_in_c += any(isinstance(walked, list) and walked for walked in in_c)
    assert read_in_c > 50  # many of them stay lean and well-formed


def _sending(items: dict[str, str]) -> str:
    """Subject S09999's ItemGroupData IG.AE, repeat key 1, with `items`."""
    rows = "".join(f'\n        <ItemData ItemOID="{oid}" Value="{value}"/>' for oid, value in items.items())
    return ('  <SubjectData SubjectKey="S09999">\n    <StudyEventData StudyEventOID="SE.AE"><FormData FormOID="F.AE">\n'
            f'      <ItemGroupData ItemGroupOID="IG.AE" ItemGroupRepeatKey="1">{rows}\n'
            '      </ItemGroupData></FormData></StudyEventData>\n  </SubjectData>\n')


def test_a_subject_sent_twice_in_a_row_is_staged_alike_wherever_a_cut_falls(tmp_path, monkeypatch):
    """A hunt: a subject's ItemGroupData were numbered from 0 again after a batch's or part's cut between its two
    sendings, so the second sending's first was taken for the first's last, and its items (C) put in the first's
    record: the records a file made depended on where it was cut."""
    twice = _sending({"A": "a1", "B": "b1"}) + _sending({"C": "c2", "A": "a2"})
    path = _export(tmp_path, 0, middle="".join(_subject(n) for n in range(20)) + twice
                   + "".join(_subject(n) for n in range(20, 40)))
    stage_odm(path, tmp_path / "whole.parquet", lineage=LINEAGE, batch_rows=1 << 20)
    whole = pq.read_table(tmp_path / "whole.parquet")
    assert whole.filter(pc.equal(whole["subject_key"], "S09999"))["container"].to_pylist() == [0, 0, 1, 1]
    monkeypatch.setattr(odm_chunks, "plan_parts", lambda path: None)
    for batch_rows in (121, 122, 123):  # the one-pass reader's batch cut before, between and after the sendings
        stage_odm(path, tmp_path / "cut.parquet", lineage=LINEAGE, batch_rows=batch_rows)
        assert pq.read_table(tmp_path / "cut.parquet").equals(whole), batch_rows
    monkeypatch.undo()
    data = path.read_bytes()
    second = data.find(b'<SubjectData SubjectKey="S09999"', data.find(b'<SubjectData SubjectKey="S09999"') + 1) - 2
    cut_between = 0
    for lines in range(5, 60):  # the parallel reader's parts, one of them starting at the second sending
        _read_by(monkeypatch, "threads")
        monkeypatch.setattr(odm_chunks, "PART_LINES", lines)
        parts = odm_chunks.plan_parts(path)
        assert parts is not None
        cut_between += second in [p.start for p in parts]
        stage_odm(path, tmp_path / "parts.parquet", lineage=LINEAGE)
        assert pq.read_table(tmp_path / "parts.parquet").equals(whole), lines
    assert cut_between


def test_an_odm_start_tag_in_a_comment_before_the_root_is_not_taken_for_it(tmp_path, monkeypatch):
    """A hunt: the parts' head took the first `<ODM`, here in a comment binding a vendor's prefix to ODM's
    namespace, and the parallel reader staged the vendor's ItemData as ODM's (16 rows where one pass stages 8)."""
    _read_by(monkeypatch, "threads")
    path = _export(tmp_path, 40)
    text = path.read_text().replace("<ODM ", f'<!-- <ODM xmlns="{NS}" xmlns:v="{NS}"> -->\n<ODM xmlns:v="urn:v" ', 1)
    path.write_text(text.replace('<ItemData ItemOID="IT.1"', '<v:ItemData ItemOID="IT.1"'))
    assert odm_chunks.plan_parts(path) is None  # read in one pass
    path.write_text(text.replace("<!-- <ODM", "<!-- ODM").replace("> -->", " -->"))  # a comment before it: cut
    assert odm_chunks.plan_parts(path) is not None


@pytest.mark.parametrize(("wrap", "said"), [
    (lambda text: text.replace("<ClinicalData", '<v:Wrap xmlns:v="urn:v"><ClinicalData')
     .replace("</ClinicalData>", "</ClinicalData></v:Wrap>"), r"a ClinicalData inside <\{urn:v\}Wrap>, an element of "
                                                             r"another namespace; expected ClinicalData in ODM's own"),
    (lambda text: text.replace("<ClinicalData", '<ClinicalData xmlns="http://www.cdisc.org/ns/odm/v2.0"'),
     r"a ClinicalData of namespace http://www.cdisc.org/ns/odm/v2\.0 in an ODM of namespace "
     r"http://www\.cdisc\.org/ns/odm/v1\.3; expected the clinical data in its ODM's namespace"),
], ids=["in a vendor's element", "of another namespace"])
@pytest.mark.parametrize("reader", ["threads", "one pass"])
def test_clinical_data_odm_does_not_read_is_refused_not_said_absent(tmp_path, monkeypatch, wrap, said, reader):
    """A hunt: a vendor's element around ClinicalData, or ClinicalData of ODM 2.0 in an ODM 1.3 file, was skipped
    whole: every value lost, under a notice that the file held no ClinicalData (a metadata-only file)."""
    if reader == "threads":
        _read_by(monkeypatch, reader)
    else:
        monkeypatch.setattr(odm_chunks, "plan_parts", lambda path: None)
    path = _export(tmp_path, 400)
    path.write_text(wrap(path.read_text()))
    with pytest.raises(OdmFormatError, match=rf"^SACHA_ODM_20261101\.xml: line 5: {said}"):
        stage_odm(path, tmp_path / "staged.parquet", lineage=LINEAGE)
    assert not (tmp_path / "staged.parquet").exists()
