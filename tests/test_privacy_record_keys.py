"""A record's published key shows no patient number and not its patient's birth date: its local part (a record
number, a form's keys) typed with a number of the source's patient-key shape or the patient's own birth date is
published as a keyed digest of it (etl/transform/pseudonym.py `published_key`, harmonise `publish_keys`), the same
night after night, whichever patients arrive or leave."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import duckdb
from conftest import SMALL_RUN_KEY
from read_records import records_of
from shared_build import copy_of

from etl import pipeline
from etl.config import Home
from etl.extract.odm import read_odm_header
from etl.transform.days import shows_day
from etl.transform.harmonise import harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey, publish_record_key, published_key, source_pseudonym
from etl.transform.screen import TextScreen
from etl.transform.values import PartialDate

KEY = PseudonymKey(b"record-keys-test-key")
TRIAL = SourceMapping.model_validate({
    "source_id": "trial_test", "title": "test trial", "format": "csv", "files": "TRIAL_*.csv",
    "record_set_from_file": r"TRIAL_(?P<record_set>[A-Z]+)\.csv",
    "date_format": "%d/%m/%Y", "null_values": [""], "patient_key": "pid", "record_key": "{record_set}[{rid}]",
    "patient": {"from": "DM", "fields": {"birth_date": {"column": "born", "type": "date"}}},
    "tables": {
        "treatment": {"from": "TRT", "fields": {"drug_name": {"column": "drug"}}},
        "response_assessment": {"from": "RSP", "fields": {
            "treatment_id": {"ref": "treatment", "key": "TRT[{trec}]"},
            "response": {"column": "resp", "codes": {"CR": "CR", "PD": "PD"}}}}},
})
BORN = {"ILTB-00001": "27/03/2003", "ILTB-00002": "06/03/1996", "ILTB-00003": "15/01/2014"}


_frame = partial(records_of, file_name="trial.csv")


def _harmonised(treatments: dict[str, str], born: dict[str, str] = BORN):
    """Each patient's registration (`born`: patient -> birth date), and a treatment and its response per
    `treatments` (patient -> the record number typed for the treatment)."""
    return harmonise_source(TRIAL, {
        "DM": _frame([{"pid": pid, "rid": "1", "born": day} for pid, day in born.items()]),
        "TRT": _frame([{"pid": pid, "rid": rid, "drug": "crizotinib"} for pid, rid in treatments.items()]),
        "RSP": _frame([{"pid": pid, "rid": "1", "trec": rid, "resp": "CR"} for pid, rid in treatments.items()]),
    }, KEY, "run-1")


def _local_parts(result) -> dict[str, str]:
    treatment = result.tables["treatment"]
    return dict(zip(treatment.patient_id, treatment.source_record_key.str.partition("|")[2], strict=True))


def test_a_record_number_holding_a_patient_number_or_its_own_birth_date_is_published_as_a_digest():
    typed = {"ILTB-00001": "ILTB-00002",  # another patient's number as the record number
             "ILTB-00002": "1996-03-06",  # the patient's own birth date (06/03/1996), written year first
             "ILTB-00003": "ILTB-00099"}  # a number of the keys' shape, of no patient yet
    result = _harmonised(typed)
    assert result.rejections.empty
    shown = " ".join(str(v) for frame in [result.records, *result.tables.values()]
                     for v in frame.astype(str).to_numpy().ravel())
    assert not any(clear in shown for clear in ("ILTB-0000", "1996-03-06")), shown
    keys = result.tables["treatment"].source_record_key
    assert keys.str.fullmatch(r"[0-9a-f]{24}\|[0-9a-f]{24}").all() and keys.nunique() == 3
    # The same record keeps its key night after night, and a response still names its treatment.
    assert _harmonised(typed).tables["treatment"].source_record_key.tolist() == keys.tolist()
    treatment = result.tables["treatment"].set_index("patient_id").treatment_id
    response = result.tables["response_assessment"].set_index("patient_id").treatment_id
    assert response.sort_index().tolist() == treatment.sort_index().tolist()


def test_ordinary_record_numbers_and_dates_keep_their_keys():
    typed = {"ILTB-00001": "AE-3", "ILTB-00002": "2", "ILTB-00003": "02/05/2019"}  # a visit date: nobody's birth
    keys = _harmonised(typed).tables["treatment"].source_record_key
    assert sorted(keys) == sorted(publish_record_key(KEY, "trial_test", f"{pid}|TRT[{rid}]")
                                  for pid, rid in typed.items())


def test_a_date_that_is_another_patient_s_birth_date_keeps_its_key_as_patients_arrive_and_leave():
    """A registry keying follow-ups by visit date: a visit on the day a patient was born names nobody, and the
    record's key may not change when that patient arrives (a waiver, a query and its response name the record by
    it): only the record's own patient's birth date is hidden."""
    typed = {"ILTB-00001": "2019-03-04"}
    before = _harmonised(typed).tables["treatment"].source_record_key.tolist()
    assert before == [publish_record_key(KEY, "trial_test", "ILTB-00001|TRT[2019-03-04]")]
    arrived = _harmonised(typed, {**BORN, "ILTB-00004": "04/03/2019"})
    assert arrived.tables["treatment"].source_record_key.tolist() == before
    # The newcomer's own record numbered by its birth date (read any way the screen reads a day) is hidden.
    own = _harmonised({"ILTB-00004": "4.3.2019"}, {**BORN, "ILTB-00004": "04/03/2019"})
    assert re.fullmatch(r"[0-9a-f]{24}\|[0-9a-f]{24}", own.tables["treatment"].source_record_key.iloc[0])


def test_a_number_of_the_patient_keys_shape_is_hidden_whoever_s_it_is():
    """By shape, not by the keys the source has: all-digit keys of six digits hide every record number of six."""
    screen = TextScreen.of(["123456", "234567"], [PartialDate(date(2019, 3, 4), "day")])
    assert screen.holds_number("FU-999999") and screen.holds_number("123456")
    assert not screen.holds_number("12345") and not screen.holds_number("2019-03-04")
    assert not TextScreen.of(["123456"], []).holds_number("20190304")  # eight digits: a day, no key's shape


def test_the_patient_s_own_number_in_a_record_number_is_still_the_pseudonym_and_the_rest_is_judged_without_it():
    screen = TextScreen.of(["ILTB-00001", "ILTB-00002"], [])

    def shows(text: str) -> bool:  # as harmonise asks for a patient born 27/03/2003
        return screen.holds_number(text) or shows_day(text, date(2003, 3, 27))

    own = published_key(KEY, "s", "ILTB-00001", "ILTB-00001-01", shows)
    pseudonym = own.partition("|")[0]
    assert own == f"{pseudonym}|{pseudonym}-01"  # as without a screen: its own number is no other patient's
    for local in ("ILTB-00001/ILTB-00002", "ILTB-00001 27.03.2003"):
        hidden = published_key(KEY, "s", "ILTB-00001", local, shows).partition("|")[2]
        assert re.fullmatch("[0-9a-f]{24}", hidden) and hidden != pseudonym
    # Keyed: the digest is not a plain hash a guess of the local part could be checked against.
    assert published_key(PseudonymKey(b"another key"), "s", "ILTB-00001", "ILTB-00002", shows) != \
        published_key(KEY, "s", "ILTB-00001", "ILTB-00002", shows)


def test_a_record_without_a_patient_key_does_not_show_another_patient_s_number_in_its_key():
    result = harmonise_source(TRIAL, {
        "DM": _frame([{"pid": "ILTB-00001", "rid": "1", "born": "27/03/2003"},
                      {"pid": "", "rid": "ILTB-00002", "born": ""}])}, KEY, "run-1")
    quarantined = set(result.rejections.source_record_key)
    assert len(quarantined) == 1 and "00002" not in next(iter(quarantined))
    assert next(iter(quarantined)).startswith("(no patient key)|")


# -- whole runs: the registry's record number column edited by hand, night after night ------------------------

SOURCE = "registry_it"


def _export(home: Home) -> Path:
    return next((home.landing / SOURCE).glob("*.csv"))


def _deliver(home: Home, name: str, edit: Callable[[list[list[str]]], None]) -> None:
    """The registry's next export (`name`): the last one with `edit` applied to its rows' fields."""
    export = _export(home)
    header, *rows = export.read_bytes().decode("cp1252").rstrip("\r\n").split("\r\n")
    cells = [row.split(";") for row in rows]
    edit(cells)
    (home.landing / SOURCE / name).write_bytes(("\r\n".join([header, *(";".join(c) for c in cells)]) + "\r\n")
                                               .encode("cp1252"))
    export.unlink()


def _published_keys(home: Home) -> str:
    """Every record key of the registry in core, stage and dq, as one text."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        tables = con.execute("SELECT table_schema || '.' || table_name FROM information_schema.columns "
                             "WHERE column_name = 'source_record_key' AND table_schema IN ('core', 'stage', 'dq') "
                             "INTERSECT SELECT table_schema || '.' || table_name FROM information_schema.columns "
                             "WHERE column_name = 'source_id'").fetchall()
        assert len(tables) > 10
        return " ".join(str(k) for (table,) in tables for (k,) in con.execute(
            f"SELECT DISTINCT source_record_key FROM {table} WHERE source_id = ?", [SOURCE]).fetchall())
    finally:
        con.close()


def _diagnosis(home: Home) -> dict[str, str]:
    """core.diagnosis of the registry: record key -> run that loaded the row."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return dict(con.execute("SELECT source_record_key, run_id FROM core.diagnosis WHERE source_id = ?",
                                [SOURCE]).fetchall())
    finally:
        con.close()


def _own_numbers_typed_in_free_texts(home: Home) -> set[str]:
    """Two ILTB patients' own numbers typed into a free text of theirs with a '-' typed otherwise: an en dash (Word's
    autocorrect) in an advice's note, a no-break space in an alteration's assay. One record of each form only:
    the source's shrink guard would hold a form losing more. The pseudonyms of the two."""
    key, noted = PseudonymKey(SMALL_RUN_KEY.encode()), set()
    for form, field, typed, text in (("ADVICE", "REASON_NF", "\u2013", "family asked to quote {}"),
                                     ("EVENT", "ASSAY", "\u00a0", "flow cytometry, sample {}")):
        export = home.landing / "iltb" / f"ILTB_{form}.csv"
        header, *rows = [line.split(";") for line in export.read_text(encoding="utf-8-sig").splitlines()]
        row = next(r for r in rows if r[header.index("SUBJID")] not in noted)
        patient = row[header.index("SUBJID")]
        row[header.index(field)] = text.format(patient.replace("-", typed))
        export.write_text("".join(";".join(r) + "\n" for r in [header, *rows]), encoding="utf-8-sig")
        noted.add(patient)
    return {source_pseudonym(key, "iltb", patient) for patient in noted}


def test_record_numbers_edited_by_hand_are_never_published_and_keep_their_keys_night_after_night(
        small_run: Home, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    noted = _own_numbers_typed_in_free_texts(home)  # the same night, in another source: see the first run
    first = _diagnosis(home)
    header, rows = _export(home).read_bytes().decode("cp1252").split("\r\n", 1)
    column = header.split(";").index
    cells = [row.split(";") for row in rows.rstrip("\r\n").split("\r\n")]
    # Two registrations with a birth date to the day: the first's record number becomes the second's patient
    # number, the second's its own birth date (a data manager's slip, as a privacy audit found).
    dated = [c for c in cells if re.fullmatch(r"(0[1-9]|[12]\d|3[01])/(0[1-9]|1[0-2])/\d{4}",
                                              c[column("data_nascita")])]
    one, two = dated[0][column("id_record")], dated[1][column("id_record")]
    other, birth = dated[1][column("codice_paziente")], dated[1][column("data_nascita")]

    def edited(cells: list[list[str]]) -> None:
        for c in cells:
            c[column("id_record")] = {one: other, two: birth}.get(c[column("id_record")], c[column("id_record")])

    _deliver(home, "TREP_export_20261201.csv", edited)
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).status == "completed"
    shown = _published_keys(home)
    assert other not in shown and birth not in shown
    # A free text holding its patient's own number holds the record back, however the number's '-' was typed.
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        held = con.execute("SELECT source_record_key FROM dq.quarantine WHERE source_id = 'iltb' "
                           "AND list_contains(rule_ids, 'CONF-TEXT-NO-PATIENT-KEY')").fetchall()
        loaded = con.execute("SELECT (SELECT count(*) FROM core.tumour_board_review WHERE reason_not_followed "
                             "LIKE 'family%') + (SELECT count(*) FROM core.molecular_alteration WHERE assay "
                             "LIKE '%sample%')").fetchone()
    finally:
        con.close()
    assert {k.partition("|")[0] for (k,) in held} == noted and len(held) == 2 and loaded == (0,)
    # The two records' keys changed: last night's rows under their old keys are gone, none is orphaned.
    now = _diagnosis(home)
    assert len(now) == len(first) and len(set(now) - set(first)) == 2

    def note_changed(cells: list[list[str]]) -> None:  # another patient's record
        for c in cells:
            if c[column("id_record")] not in (other, birth):
                c[column("note")] = "seen again"
                return

    _deliver(home, "TREP_export_20261202.csv", note_changed)
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).status == "completed"
    third = _diagnosis(home)
    assert set(third) == set(now)  # the same keys, the edited records' rows carried over as they were
    hidden = {k for k in now if not k.partition("|")[2].startswith("REG[")}
    assert len(hidden) == 2 and {third[k] for k in hidden} == {now[k] for k in hidden}

    def edited_record_changed(cells: list[list[str]]) -> None:
        for c in cells:
            if c[column("id_record")] == birth:
                c[column("note")] = "seen again"

    _deliver(home, "TREP_export_20261203.csv", edited_record_changed)
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.status == "completed"
    fourth = _diagnosis(home)
    # Harmonised again, its record keeps its key: the row is replaced, not doubled.
    assert set(fourth) == set(third) and sum(fourth[k] != third[k] for k in hidden) == 1


def _sacha_increment(home: Home, name: str, oid: str, prior: str, subject: str) -> None:
    """An ODM increment of SACHA after `prior`, sending `subject` (a SubjectData)."""
    created = f"{name[-12:-8]}-{name[-8:-6]}-{name[-6:-4]}T01:00:00"
    path = home.landing / "sacha_fr" / name
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
                    f'FileOID="{oid}" FileType="Transactional" PriorFileOID="{prior}" CreationDateTime="{created}" '
                    f'ODMVersion="1.3.2">\n<ClinicalData StudyOID="SACHA" MetaDataVersionOID="v1">\n{subject}\n'
                    '</ClinicalData>\n</ODM>\n')
    os.utime(path)


def _sacha_follow_up_keys(home: Home) -> tuple[set[str], list[str]]:
    """The record keys of SACHA's core.follow_up, and those meta.record_removal lists."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return ({k for (k,) in con.execute("SELECT source_record_key FROM core.follow_up "
                                           "WHERE source_id = 'sacha_fr'").fetchall()},
                [k for (k,) in con.execute("SELECT source_record_key FROM meta.record_removal "
                                           "WHERE source_id = 'sacha_fr'").fetchall()])
    finally:
        con.close()


def test_a_record_an_increment_deletes_is_audited_under_the_key_it_was_published_under(
        small_run: Home, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    before, _ = _sacha_follow_up_keys(home)
    snapshot = read_odm_header(next((home.landing / "sacha_fr").glob("*.xml"))).file_oid
    born = "2012-04-02"
    # A new patient's follow-up whose repeat key was typed as their birth date.
    _sacha_increment(home, "SACHA_ODM_29991230.xml", "INC1", snapshot, (
        '<SubjectData SubjectKey="NEW-001" TransactionType="Insert"><SiteRef LocationOID="FR01"/>'
        '<StudyEventData StudyEventOID="SE.INCLUSION"><FormData FormOID="F.DEMOG"><ItemGroupData '
        f'ItemGroupOID="IG.DEMOG"><ItemData ItemOID="DM.SEX" Value="1"/><ItemData ItemOID="DM.BRTHDTC" Value="{born}"/>'
        '<ItemData ItemOID="DM.INCLDTC" Value="2026-11-20"/></ItemGroupData></FormData></StudyEventData>'
        '<StudyEventData StudyEventOID="SE.FOLLOWUP" StudyEventRepeatKey="1"><FormData FormOID="F.FU">'
        f'<ItemGroupData ItemGroupOID="IG.FU" ItemGroupRepeatKey="{born}"><ItemData ItemOID="FU.DTC" '
        'Value="2026-11-25"/><ItemData ItemOID="FU.STATUS" Value="1"/></ItemGroupData></FormData></StudyEventData>'
        '</SubjectData>'))
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).sources_failed == []
    published, _ = _sacha_follow_up_keys(home)
    assert len(published - before) == 1 and born not in " ".join(published)
    # The next increment deletes it: the audit names it by that key, not by its repeat key as typed.
    _sacha_increment(home, "SACHA_ODM_29991231.xml", "INC2", "INC1", (
        '<SubjectData SubjectKey="NEW-001" TransactionType="Update"><StudyEventData StudyEventOID="SE.FOLLOWUP" '
        'StudyEventRepeatKey="1"><FormData FormOID="F.FU"><ItemGroupData ItemGroupOID="IG.FU" '
        f'ItemGroupRepeatKey="{born}" TransactionType="Remove"/></FormData></StudyEventData></SubjectData>'))
    assert pipeline.run(home, key_value=SMALL_RUN_KEY).sources_failed == []
    now, removed = _sacha_follow_up_keys(home)
    assert now == before and removed == list(published - before)


def test_a_birth_date_given_as_a_constant_is_nobody_s_own_and_harmonise_reads_on():
    # A mapping giving every patient one birth date (const:) loads; births were read for the keys from a column.
    constant = TRIAL.model_copy(deep=True)
    constant.patient.fields["birth_date"] = constant.patient.fields["birth_date"].model_copy(
        update={"column": None, "const": "2010-01-01"})
    result = harmonise_source(constant, {
        "DM": _frame([{"pid": pid, "rid": "1", "born": ""} for pid in BORN]),
        "TRT": _frame([{"pid": "ILTB-00001", "rid": "01/01/2010", "drug": "crizotinib"}]),
        "RSP": _frame([{"pid": "ILTB-00001", "rid": "1", "trec": "01/01/2010", "resp": "CR"}]),
    }, KEY, "run-1")
    assert list(_local_parts(result).values()) == ["TRT[01/01/2010]"]
