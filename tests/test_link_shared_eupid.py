"""A EUPID two patients of one source share (a typo at a centre, or one child registered twice): each is linked
by it to no one, the two never one person, and the run says so (a hunt: they were merged into one person
without a word, core.patient one child short)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_rows

from etl import pipeline
from etl.config import Home
from etl.link.cluster import SourcePatient, apart_by_shared_eupid
from etl.link.decision import PatientRef, record_decision


def test_patients_of_one_source_sharing_a_eupid_are_held_apart_by_it():
    a, b = SourcePatient("reg", "p1", "e1", True), SourcePatient("reg", "p2", "e1", True)
    other, alone = SourcePatient("iltb", "q1", "e1", True), SourcePatient("iltb", "q2", "e2", True)
    patients, shared = apart_by_shared_eupid([a, b, other, alone])
    assert [sorted(p.key for p in group) for group in shared] == [[("iltb", "q1"), ("reg", "p1"), ("reg", "p2")]]
    assert patients[3] == alone and not any(p.has_eupid for p in patients[:3])
    assert len({p.harmonised_id for p in patients}) == 4
    assert apart_by_shared_eupid([a, other]) == ([a, other], [])  # one per source: one person, as ever


def _eupid_typed_twice(small_run: Home, tmp_path: Path, *, at_its_centre: bool = False) -> Home:
    """A copy of the small run whose registry_it export gives its second patient with an EUPID the first's (of
    another centre), and `at_its_centre` a patient of the first's centre too."""
    home = copy_of(small_run, tmp_path)
    (export,) = (home.landing / "registry_it").glob("*.csv")
    rows = list(csv.reader(io.StringIO(export.read_bytes().decode("cp1252")), delimiter=";"))
    eupid, centre = rows[0].index("eupid"), rows[0].index("codice_centro")
    first, second = [row for row in rows[1:] if row[eupid]][:2]
    assert first[centre] != second[centre]
    second[eupid] = first[eupid]
    if at_its_centre:  # a third patient, moved to the first's centre
        patient = rows[0].index("codice_paziente")
        third = next(row[patient] for row in rows[1:] if row[patient] not in (first[patient], second[patient]))
        for row in rows[1:]:
            if row[patient] == third:
                row[centre], row[eupid] = first[centre], first[eupid]
    text = io.StringIO()
    csv.writer(text, delimiter=";", lineterminator="\r\n").writerows(rows)
    export.write_bytes(text.getvalue().encode("cp1252"))
    return home


def test_a_eupid_typed_for_two_patients_of_a_source_keeps_them_two_persons(small_run, tmp_path):
    home = _eupid_typed_twice(small_run, tmp_path)
    persons_before = query_rows(home, "SELECT count(*) FROM core.patient")[0][0]
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.status == "completed", summary.message
    assert query_rows(home, "SELECT count(*) FROM core.patient")[0][0] == persons_before
    assert not query_rows(home, "SELECT patient_id FROM core.patient_source WHERE source_id = 'registry_it' "
                                "GROUP BY 1 HAVING count(*) > 1")
    said = query_rows(home, "SELECT source_id, notice FROM meta.source_notice WHERE run_id = ? AND notice LIKE "
                            "'linkage: %share one EUPID%'", [summary.run_id])
    assert [source for source, _ in said] == ["registry_it"]
    assert "share one EUPID, 2 of them patients of registry_it (a typo at its centre, or one child" in said[0][1]
    # ... and an issue of each patient's registration, for the centre's queries (it was a notice only)
    issues = query_rows(home, "SELECT source_id, table_name, source_record_key, field, message FROM dq.issue "
                              "WHERE rule_id = 'PAT-EUPID-SHARED' ORDER BY source_record_key")
    keys = [key for _, _, key, _, _ in issues]
    assert [(s, t, f) for s, t, _, f, _ in issues] == [("registry_it", "patient_source", "eupid")] * 2
    # the other patient is another centre's: counted, not named (the message goes to the centre with its queries)
    assert [message for *_, message in issues] == [
        "the EUPID of this patient is also that of 1 other patient(s) of registry_it: 1 at another centre; linkage "
        "links none of them by it"] * 2
    assert not set(keys) & {word for *_, message in issues for word in message.split()}


def test_a_eupid_shared_at_one_centre_names_that_centre_s_records_only(small_run, tmp_path):
    home = _eupid_typed_twice(small_run, tmp_path, at_its_centre=True)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    issues = query_rows(home, "SELECT i.source_record_key, r.centre_id, i.message FROM dq.issue i JOIN (SELECT "
                              "DISTINCT source_record_key, centre_id FROM stage.record) r USING (source_record_key) "
                              "WHERE i.run_id = ? AND i.rule_id = 'PAT-EUPID-SHARED' ORDER BY 2, 1", [summary.run_id])
    assert len(issues) == 3 and len({centre for _, centre, _ in issues}) == 2
    for key, centre, message in issues:
        mine = [k for k, c, _ in issues if c == centre and k != key]
        shown = (f": patient record {mine[0]}, and 1 at another centre" if mine else ": 2 at another centre")
        assert message == (f"the EUPID of this patient is also that of 2 other patient(s) of registry_it{shown}; "
                           "linkage links none of them by it"), (key, centre)


def test_a_reviewer_may_link_a_patient_of_a_eupid_shared_in_its_source(small_run, tmp_path):
    """The review: `rtw link` refused it as sharing an EUPID (or holding another), which linkage no longer reads."""
    home = _eupid_typed_twice(small_run, tmp_path)
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).status == "completed"
    split = query_rows(home, "SELECT source_id, source_patient_pseudonym FROM stage.link_key k WHERE has_eupid AND "
                             "source_id = 'registry_it' AND harmonised_patient_id IN (SELECT harmonised_patient_id "
                             "FROM stage.link_key WHERE source_id = 'registry_it' AND has_eupid GROUP BY 1 "
                             "HAVING count(DISTINCT source_patient_pseudonym) > 1) ORDER BY 2")
    # a patient of another EUPID, whose person holds no patient of registry_it: linked by a reviewer, the typo's fix
    other = query_rows(home, "SELECT source_id, source_patient_pseudonym FROM stage.link_key k WHERE source_id = "
                             "'iltb' AND has_eupid AND NOT EXISTS (SELECT 1 FROM stage.link_key r WHERE r.source_id = "
                             "'registry_it' AND r.harmonised_patient_id = k.harmonised_patient_id) ORDER BY 2 LIMIT 1")
    (one, _two), (stranger,) = split[:2], other
    record_decision(home, PatientRef(*one), PatientRef(*stranger), "link")  # not refused: applied the next night
    assert pipeline.run(home, key_value=SMALL_RUN_KEY, force=True).status == "completed"
    linked = query_rows(home, "SELECT count(DISTINCT patient_id) FROM stage.patient_link WHERE source_id || ':' || "
                              "source_patient_pseudonym IN (?, ?)", [":".join(one), ":".join(stranger)])
    assert linked == [(1,)]
