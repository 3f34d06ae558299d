"""Transactional ODM exports: applied on top of the last snapshot, in chain order, never replacing it."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline
from etl.config import SOURCES_DIR
from etl.extract import landing, odm, odm_items
from etl.extract.adapter import record_frame
from etl.extract.errors import ExtractError
from etl.extract.odm import ADAPTER, OdmOptions, apply_transactions, read_odm_header, stage_odm
from etl.transform.mapping import load_mapping

NS = "http://www.cdisc.org/ns/odm/v1.3"


def _odm(file_oid: str, body: str, *, file_type: str = "Snapshot", prior: str | None = None,
         created: str = "2026-11-01T01:00:00", study: str = "S1") -> str:
    prior_attr = f' PriorFileOID="{prior}"' if prior else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{NS}" FileOID="{file_oid}" FileType="{file_type}"'
            f'{prior_attr} CreationDateTime="{created}" ODMVersion="1.3.2">\n'
            f'<ClinicalData StudyOID="{study}" MetaDataVersionOID="v1">\n{body}\n</ClinicalData>\n</ODM>\n')


def _subject(key: str, groups: str, transaction: str = "") -> str:
    kind = f' TransactionType="{transaction}"' if transaction else ""
    return (f'<SubjectData SubjectKey="{key}"{kind}><StudyEventData StudyEventOID="SE.BASE">'
            f'<FormData FormOID="F.DM">{groups}</FormData></StudyEventData></SubjectData>')


def _group(oid: str, items: dict[str, str], transaction: str = "", repeat: str = "1") -> str:
    kind = f' TransactionType="{transaction}"' if transaction else ""
    values = "".join(f'<ItemData ItemOID="{k}" Value="{v}"/>' for k, v in items.items())
    return f'<ItemGroupData ItemGroupOID="{oid}" ItemGroupRepeatKey="{repeat}"{kind}>{values}</ItemGroupData>'


SNAPSHOT = _odm("F0", "".join([
    _subject("P1", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2010-05"})
             + _group("IG.AE", {"TERM": "nausea"}, repeat="1") + _group("IG.AE", {"TERM": "fever"}, repeat="2")),
    _subject("P2", _group("IG.DM", {"SEX": "2", "BRTHDTC": "2012"})),
    _subject("P3", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2015-01"})),
]))
# Night 1: P1's sex corrected (only the changed item is sent), P1's second AE removed, a new patient P4.
INCREMENT_1 = _odm("F1", "".join([
    _subject("P1", _group("IG.DM", {"SEX": "2"}, "Update")
             + '<ItemGroupData ItemGroupOID="IG.AE" ItemGroupRepeatKey="2" TransactionType="Remove"/>'),
    _subject("P4", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2011-03"}), "Insert"),
]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
# Night 2: P2 withdrawn whole, P3's birth date withdrawn (an item Remove).
INCREMENT_2 = _odm("F2", "".join([
    '<SubjectData SubjectKey="P2" TransactionType="Remove"/>',
    _subject("P3", '<ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="1">'
                   '<ItemData ItemOID="BRTHDTC" Value="" TransactionType="Remove"/></ItemGroupData>', "Update"),
]), file_type="Transactional", prior="F1", created="2026-11-03T01:00:00")


def _staged(tmp_path: Path, name: str, text: str) -> tuple[Path, str, str]:
    source = tmp_path / name
    source.write_text(text)
    out = tmp_path / f"{name}.parquet"
    stage_odm(source, out, lineage={"source_file": name, "source_file_sha256": name})
    return out, name, name


def test_increments_apply_on_top_of_the_snapshot_at_the_level_they_are_written(tmp_path):
    chain = [_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", INCREMENT_1),
             _staged(tmp_path, "i2.xml", INCREMENT_2)]
    result = apply_transactions(chain)
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert sorted(dm.index) == ["P1", "P3", "P4"]  # P2 removed whole, P4 inserted
    assert dm.loc["P1", "SEX"] == "2" and dm.loc["P1", "BRTHDTC"] == "2010-05"  # unsent item kept
    assert dm.loc["P3", "BRTHDTC"] == "" and dm.loc["P3", "SEX"] == "1"  # item withdrawn, record kept
    assert dm.loc["P1", "source_file"] == "i1.xml" and dm.loc["P3", "source_file"] == "i2.xml"
    assert dm.loc["P4", "source_file"] == "i1.xml"
    assert result.frames["IG.AE"]["TERM"].to_pylist() == ["nausea"]
    removed = sorted((r.patient_key, r.record_set, r.level, r.file_name) for r in result.removed)
    assert removed == [("P1", "IG.AE", "ItemGroupData", "i1.xml"), ("P2", "IG.DM", "SubjectData", "i2.xml")]
    # Every record the snapshot held is loaded from it or superseded by a later file.
    assert result.superseded == {"s.xml": 4}


def test_a_snapshot_file_is_still_read_whole(tmp_path):
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT)])
    assert len(result.frames["IG.DM"]) == 3 and len(result.frames["IG.AE"]) == 2 and not result.removed


def test_the_header_says_what_kind_of_export_it_is(tmp_path):
    path = tmp_path / "i1.xml"
    path.write_text(INCREMENT_1)
    header = read_odm_header(path)
    assert (header.file_type, header.file_oid, header.prior_file_oid) == ("Transactional", "F1", "F0")
    assert header.created == datetime(2026, 11, 2, 1, tzinfo=UTC) and header.namespace == NS


def test_the_header_is_read_from_the_files_first_bytes(tmp_path):
    # Each night and each staging reads it: a first read of FEED_BYTES, cut into lines, cost more than the rest.
    subjects = "\n".join(_subject(f"P{n:06d}", _group("IG.DM", {"AGE": "1"})) for n in range(20_000))
    path = tmp_path / "big.xml"
    path.write_text(_odm("F9", subjects))
    assert path.stat().st_size > 2 * odm_items.FEED_BYTES
    with path.open("rb") as handle:
        first, _ = next(pieces := odm_items.feed_pieces(handle))
        assert handle.tell() <= 1 << 16
        rest = b"".join(piece for more, _ in pieces for piece in more)
    assert b"".join(first) + rest == path.read_bytes()  # the whole file, in lines, as before
    assert read_odm_header(path).file_oid == "F9"
    # A root after a first read's length (a long comment before it) is still found, by the reads after.
    path.write_text(_odm("F8", "").replace("<ODM", "<!--" + "x" * (3 << 16) + "-->\n<ODM", 1))
    assert read_odm_header(path).file_oid == "F8"
    # A file on one line is fed read by read, not held back while the reads grow (2 MiB, copied at each read).
    path.write_text(_odm("F7", subjects).replace("\n", ""))
    with path.open("rb") as handle:
        first, _ = next(odm_items.feed_pieces(handle))
        assert handle.tell() <= 1 << 16 and len(b"".join(first)) == handle.tell()
    assert read_odm_header(path).file_oid == "F7"


def _landing_with(tmp_path: Path, files: dict[str, str]):
    folder = tmp_path / "landing" / "sacha_fr"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return landing.discover(tmp_path / "landing", load_mapping(SOURCES_DIR / "sacha_fr.yaml"))


def test_the_current_files_are_the_last_snapshot_and_its_increments_in_order(tmp_path):
    found = _landing_with(tmp_path, {"SACHA_ODM_20261101.xml": SNAPSHOT, "SACHA_ODM_20261103.xml": INCREMENT_2,
                                     "SACHA_ODM_20261102.xml": INCREMENT_1})
    assert [f.name for f in found.current] == ["SACHA_ODM_20261101.xml", "SACHA_ODM_20261102.xml",
                                               "SACHA_ODM_20261103.xml"]
    assert not found.problems and not found.superseded
    # A new snapshot restarts the chain: everything before it is superseded.
    later = _odm("F9", _subject("P1", _group("IG.DM", {"SEX": "1"})), created="2026-11-04T01:00:00")
    found = _landing_with(tmp_path, {"SACHA_ODM_20261104.xml": later})
    assert [f.name for f in found.current] == ["SACHA_ODM_20261104.xml"] and len(found.superseded) == 3


def test_a_gap_in_the_chain_holds_the_source_with_a_clear_reason(tmp_path):
    found = _landing_with(tmp_path, {"SACHA_ODM_20261101.xml": SNAPSHOT, "SACHA_ODM_20261103.xml": INCREMENT_2})
    assert len(found.current) == 2 and not found.superseded  # all held, none loaded
    (problem,) = found.problems
    assert "SACHA_ODM_20261103.xml" in problem and "'F1'" in problem and "missing" in problem


def test_increments_without_a_snapshot_are_not_loaded(tmp_path):
    found = _landing_with(tmp_path, {"SACHA_ODM_20261102.xml": INCREMENT_1})
    assert "no snapshot" in found.problems[0]


def test_a_file_of_another_study_or_odm_version_is_refused(tmp_path):
    path = tmp_path / "other.xml"
    path.write_text(SNAPSHOT.replace('StudyOID="S1"', 'StudyOID="OTHER"'))
    out = tmp_path / "other.parquet"
    with pytest.raises(ExtractError, match=r"StudyOID 'OTHER'.*declares 'S1'"):
        ADAPTER.stage(path, out, OdmOptions(study_oid="S1"), {})
    assert not out.exists()
    with pytest.raises(ExtractError, match="namespace"):
        ADAPTER.stage(path, out, OdmOptions(odm_version="2.0"), {})
    # Among its own study's ClinicalData, others are named, one without a StudyOID too.
    clinical = SNAPSHOT[SNAPSHOT.index("<ClinicalData"):SNAPSHOT.index("</ODM>")]
    path.write_text(SNAPSHOT.replace("</ODM>", clinical.replace('StudyOID="S1"', "") + clinical.replace(
        'StudyOID="S1"', 'StudyOID="OTHER"') + "</ODM>"))
    with pytest.raises(ExtractError, match=r"StudyOID '\(none\)', 'OTHER', the mapping declares 'S1'"):
        ADAPTER.stage(path, out, OdmOptions(study_oid="S1"), {})
    assert not out.exists()


@pytest.mark.integration
def test_a_nightly_increment_adds_to_sacha_instead_of_replacing_it(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    before = con.execute("SELECT count(*) FROM core.patient_source WHERE source_id = 'sacha_fr'").fetchone()[0]
    con.close()
    snapshot = next((home.landing / "sacha_fr").glob("*.xml"))
    snapshot_oid = read_odm_header(snapshot).file_oid
    increment = home.landing / "sacha_fr" / "SACHA_ODM_29991231.xml"
    new_patient = _group("IG.DEMOG", {"DM.SEX": "1", "DM.BRTHDTC": "2012-04-02", "DM.INCLDTC": "2026-11-20",
                                      "DM.COUNTRY": "FR"})
    increment.write_text(_odm("INC1", _subject("NEW-001", new_patient, "Insert").replace(
        "<StudyEventData", '<SiteRef LocationOID="FR-PAR01"/><StudyEventData'),
        file_type="Transactional", prior=snapshot_oid, created="2999-12-31T01:00:00", study="SACHA"))
    os.utime(increment)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_changed == ["sacha_fr"] and summary.sources_failed == []
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        after = con.execute("SELECT count(*) FROM core.patient_source WHERE source_id = 'sacha_fr'").fetchone()[0]
        files = con.execute("SELECT file_name, status, rows_read, rows_loaded + rows_quarantined + rows_superseded "
                            "FROM meta.source_file WHERE source_id = 'sacha_fr' ORDER BY file_name").fetchall()
    finally:
        con.close()
    assert after == before + 1
    assert [f[1] for f in files] == ["loaded", "loaded"] and all(f[2] == f[3] for f in files)

    # The next night's increment follows one that never arrived: SACHA is held, not half-applied.
    gap = home.landing / "sacha_fr" / "SACHA_ODM_20991231.xml"
    gap.write_text(_odm("INC3", _subject("NEW-002", new_patient, "Insert"), file_type="Transactional",
                        prior="INC2", created="2099-12-31T01:00:00", study="SACHA"))
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_failed == ["sacha_fr"] and "INC2" in summary.message and gap.name in summary.message
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        held = con.execute("SELECT count(*) FROM core.patient_source WHERE source_id = 'sacha_fr'").fetchone()[0]
    finally:
        con.close()
    assert held == after


def test_the_shipped_sacha_mapping_declares_its_study(tmp_path):
    options = ADAPTER.read_options(load_mapping(SOURCES_DIR / "sacha_fr.yaml"))
    assert options.study_oid == "SACHA"


def test_staging_keeps_a_removed_container_as_a_row(tmp_path):
    staged, _, _ = _staged(tmp_path, "i2.xml", INCREMENT_2)
    rows = duckdb.sql(f"SELECT subject_key, item_oid, transaction_type FROM read_parquet('{staged}') "
                      "WHERE transaction_type = 'Remove' ORDER BY line").fetchall()
    assert rows == [("P2", None, "Remove"), ("P3", "BRTHDTC", "Remove")]
    shutil.rmtree(tmp_path / "landing", ignore_errors=True)


def test_an_odm_2_0_file_goes_through_the_same_adapter(tmp_path):
    source = Path(__file__).parent / "reference/odm/cdisc-dataexchange-odm/RepeatingIG-UC-D-Example.xml"
    out = tmp_path / "odm20.parquet"
    ADAPTER.stage(source, out, OdmOptions(odm_version="2.0"), {"source_file": source.name, "source_file_sha256": "x"})
    frames = ADAPTER.combine([(out, "", source.name, "x")]).frames
    history = frames["IG.MEDHIST"]
    assert len(history) == 4 and {"I.MH.ACTIVE", "_item_group_repeat_key"} <= set(history.column_names)
    with pytest.raises(ExtractError, match="namespace"):
        ADAPTER.stage(source, tmp_path / "as13.parquet", OdmOptions(odm_version="1.3"), {})


def _classic(key: str, items: dict[str, str], transaction: str = "") -> str:
    """A subject as a classic REDCap project writes it: FormData straight under SubjectData, no StudyEventData."""
    kind = f' TransactionType="{transaction}"' if transaction else ""
    values = "".join(f'<ItemData ItemOID="{k}" Value="{v}"/>' for k, v in items.items())
    return (f'<SubjectData SubjectKey="{key}"{kind}><FormData FormOID="demo"><ItemGroupData ItemGroupOID="demo.1">'
            f'{values}</ItemGroupData></FormData></SubjectData>')


def test_an_increment_without_study_events_updates_the_snapshots_record(tmp_path):
    # A classic REDCap project has no StudyEventData: the update of record 1's sex is record 1, not a second one
    # beside it. Before, the snapshot's record was keyed by an empty study event and the increment's by none.
    snapshot = _odm("F0", _classic("1", {"sex": "1", "age": "5"}) + _classic("2", {"sex": "2", "age": "7"}))
    increment = _odm("F1", "\n".join([
        _classic("1", {"sex": "2"}, "Update"),
        '<SubjectData SubjectKey="2"><FormData FormOID="demo" TransactionType="Remove"/></SubjectData>',
    ]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", snapshot), _staged(tmp_path, "i1.xml", increment)])
    demo = record_frame(result.frames["demo.1"])
    assert demo[["_subject_key", "sex", "age", "source_file"]].values.tolist() == [["1", "2", "5", "i1.xml"]]
    assert [(r.patient_key, r.level) for r in result.removed] == [("2", "FormData")]
    assert result.superseded == {"s.xml": 2}


def test_an_absent_study_event_and_an_empty_one_key_one_record(tmp_path):
    # Record 1 sent in two parts, one without StudyEventData and one with StudyEventOID="": both are keyed "" as the
    # snapshot keys them, so they are the snapshot's record 1, once. Before, the pivot grouped them apart and
    # filled the key afterwards: two records with one key (sex 2 without age, and the snapshot's sex 1 with age 7).
    snapshot = _odm("F0", _classic("1", {"sex": "1", "age": "5"}))
    empty_event = ('<SubjectData SubjectKey="1"><StudyEventData StudyEventOID=""><FormData FormOID="demo">'
                   '<ItemGroupData ItemGroupOID="demo.1"><ItemData ItemOID="age" Value="7"/></ItemGroupData>'
                   '</FormData></StudyEventData></SubjectData>')
    increment = _odm("F1", "\n".join([_classic("1", {"sex": "2"}, "Update"), empty_event]),
                     file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", snapshot), _staged(tmp_path, "i1.xml", increment)])
    demo = record_frame(result.frames["demo.1"])
    assert demo[["_subject_key", "_study_event_oid", "sex", "age", "source_file"]].values.tolist() == [
        ["1", "", "2", "7", "i1.xml"]]
    assert result.superseded == {"s.xml": 1}


# Night 2 without P2's Remove: its only Remove is an item's (P3's birth date sent empty), no container Remove.
ITEM_REMOVE_ONLY = INCREMENT_2.replace('<SubjectData SubjectKey="P2" TransactionType="Remove"/>', "")


@pytest.mark.parametrize(("increment", "passes"), [(ITEM_REMOVE_ONLY, 0), (INCREMENT_1, 1)])
def test_records_are_compared_with_removes_only_between_stretches(tmp_path, monkeypatch, increment, passes):
    # Each stretch's container Removes are one pass over each record set (IG.DM, IG.AE); an increment without
    # any makes none, and none follows the last stretch. Before, every increment made one pass more.
    removed, passed = odm._removed, []
    monkeypatch.setattr(odm, "_removed", lambda frame, cuts: passed.append(len(cuts)) or removed(frame, cuts))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i.xml", increment)])
    assert passed == [1, 1] * passes and len(result.removed) == passes
