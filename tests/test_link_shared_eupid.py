"""A EUPID two patients of one source share (a typo at a centre, or one child registered twice): each is linked
by it to no one, the two never one person, and the run says so (a hunt: they were merged into one person
without a word, core.patient one child short)."""

from __future__ import annotations

import csv
import io

from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_rows

from etl import pipeline
from etl.link.cluster import SourcePatient, apart_by_shared_eupid


def test_patients_of_one_source_sharing_a_eupid_are_held_apart_by_it():
    a, b = SourcePatient("reg", "p1", "e1", True), SourcePatient("reg", "p2", "e1", True)
    other, alone = SourcePatient("iltb", "q1", "e1", True), SourcePatient("iltb", "q2", "e2", True)
    patients, shared = apart_by_shared_eupid([a, b, other, alone])
    assert [sorted(p.key for p in group) for group in shared] == [[("iltb", "q1"), ("reg", "p1"), ("reg", "p2")]]
    assert patients[3] == alone and not any(p.has_eupid for p in patients[:3])
    assert len({p.harmonised_id for p in patients}) == 4
    assert apart_by_shared_eupid([a, other]) == ([a, other], [])  # one per source: one person, as ever


def test_a_eupid_typed_for_two_patients_of_a_source_keeps_them_two_persons(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)
    (export,) = (home.landing / "registry_it").glob("*.csv")
    rows = list(csv.reader(io.StringIO(export.read_bytes().decode("cp1252")), delimiter=";"))
    eupid = rows[0].index("eupid")
    first, second = [row for row in rows[1:] if row[eupid]][:2]
    second[eupid] = first[eupid]  # the second patient's EUPID typed as the first's
    text = io.StringIO()
    csv.writer(text, delimiter=";", lineterminator="\r\n").writerows(rows)
    export.write_bytes(text.getvalue().encode("cp1252"))
    persons_before = query_rows(home, "SELECT count(*) FROM core.patient")[0][0]
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.status == "completed", summary.message
    assert query_rows(home, "SELECT count(*) FROM core.patient")[0][0] == persons_before
    assert not query_rows(home, "SELECT patient_id FROM core.patient_source WHERE source_id = 'registry_it' "
                                "GROUP BY 1 HAVING count(*) > 1")
    said = query_rows(home, "SELECT source_id, notice FROM meta.source_notice WHERE run_id = ? AND notice LIKE "
                            "'linkage: %share one EUPID%'", [summary.run_id])
    assert [source for source, _ in said] == ["registry_it"]
    assert "share one EUPID, two of them patients of one source (a typo at the centre, or one child" in said[0][1]
