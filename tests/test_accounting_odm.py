"""Every ItemGroupData an ODM export sends is accounted for: loaded, quarantined or superseded (rows_read adds up)."""

from __future__ import annotations

import pytest
from test_odm_transactions import SNAPSHOT, _group, _odm, _staged, _subject

from etl.extract.adapter import record_frame
from etl.extract.odm import apply_transactions

# Night 1: the EDC sends P1's demography twice (Insert, then its Update in the same file) and a new patient P4.
SENT_TWICE = _odm("F1", "\n".join([
    _subject("P1", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2010-05"}), "Insert"),
    _subject("P1", _group("IG.DM", {"SEX": "2", "BRTHDTC": "2010-06"}), "Update"),
    _subject("P4", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2011-03"}), "Insert"),
]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")


def test_a_record_an_increment_sends_twice_counts_its_earlier_sending_as_superseded(tmp_path):
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", SENT_TWICE)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P1", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["2", "2010-06", "i1.xml"]  # the later wins
    # i1.xml sent three ItemGroupData: two are records now (P1, P4), the Insert its Update replaced is superseded
    # there; the snapshot's P1 is superseded by i1.xml. Before, the Insert was in no count at all.
    assert result.superseded == {"s.xml": 1, "i1.xml": 1}
    from_increment = int((dm["source_file"] == "i1.xml").sum())
    assert from_increment + result.superseded["i1.xml"] == SENT_TWICE.count("<ItemGroupData")


def test_an_increment_sending_each_record_once_supersedes_nothing_of_its_own(tmp_path):
    once = SENT_TWICE.replace(_subject("P1", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2010-05"}), "Insert"), "")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", once)])
    assert result.superseded == {"s.xml": 1}


def test_a_record_sent_twice_on_one_line_takes_the_later_sending(tmp_path):
    # Some EDCs write the whole export on one line: the line cannot tell the Update from the Insert it follows.
    one_line = SENT_TWICE.replace("\n<SubjectData", "<SubjectData")
    assert one_line.count("\n") < SENT_TWICE.count("\n") - 1
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", one_line)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P1", ["SEX", "BRTHDTC"]].tolist() == ["2", "2010-06"]
    assert result.superseded == {"s.xml": 1, "i1.xml": 1}


# Night 1, in document order: P1 updated then removed, P9 inserted then removed, P3 removed then inserted again.
SENT_THEN_REMOVED = _odm("F1", "\n".join([
    _subject("P1", _group("IG.DM", {"SEX": "2"}), "Update"),
    '<SubjectData SubjectKey="P1" TransactionType="Remove"/>',
    _subject("P9", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2014-02"}), "Insert"),
    '<SubjectData SubjectKey="P9" TransactionType="Remove"/>',
    '<SubjectData SubjectKey="P3" TransactionType="Remove"/>',
    _subject("P3", _group("IG.DM", {"SEX": "2", "BRTHDTC": "2015-01"}), "Insert"),
]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")


def test_an_increment_applies_its_removes_after_what_it_sent_before_them(tmp_path):
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", SENT_THEN_REMOVED)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    # P1 and P9 are removed (sent, then removed); P3, removed then sent again, is the record sent.
    assert sorted(dm.index) == ["P2", "P3"] and result.frames["IG.AE"].num_rows == 0
    assert dm.loc["P3", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["2", "2015-01", "i1.xml"]
    removed = sorted((r.patient_key, r.record_set, r.file_name) for r in result.removed)
    assert removed == [("P1", "IG.AE", "i1.xml"), ("P1", "IG.AE", "i1.xml"), ("P1", "IG.DM", "i1.xml"),
                       ("P3", "IG.DM", "i1.xml"), ("P9", "IG.DM", "i1.xml")]
    # s.xml: P1's three records and P3 superseded; i1.xml: P1's and P9's sendings, removed by i1.xml itself,
    # superseded there, and P3's sending loaded: every ItemGroupData it sent is counted once.
    assert result.superseded == {"s.xml": 4, "i1.xml": 2}


def test_an_increment_on_one_line_applies_its_removes_after_what_it_sent_before_them(tmp_path):
    one_line = SENT_THEN_REMOVED.replace("\n<SubjectData", "<SubjectData")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", one_line)])
    assert sorted(record_frame(result.frames["IG.DM"])["_subject_key"]) == ["P2", "P3"]
    assert result.superseded == {"s.xml": 4, "i1.xml": 2}


def test_a_record_removed_then_sent_again_holds_only_what_was_sent_after_the_remove(tmp_path):
    # P9 inserted, removed whole, inserted again with SEX only: the birth date sent before the Remove is gone.
    again = _odm("F1", "\n".join([
        _subject("P9", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2014-02"}), "Insert"),
        '<SubjectData SubjectKey="P9" TransactionType="Remove"/>',
        _subject("P9", _group("IG.DM", {"SEX": "2"}), "Insert"),
    ]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", again)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P9", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["2", "", "i1.xml"]
    assert [(r.patient_key, r.record_set) for r in result.removed] == [("P9", "IG.DM")]
    # Two ItemGroupData sent: the first removed (superseded in i1.xml), the second loaded.
    assert result.superseded == {"i1.xml": 1}


def test_an_item_remove_after_the_items_sending_empties_it(tmp_path):
    # P2's sex updated, then withdrawn later in the same file: the withdrawal is the last word.
    then_removed = _odm("F1", "\n".join([
        _subject("P2", _group("IG.DM", {"SEX": "1"}), "Update"),
        _subject("P2", '<ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="1">'
                       '<ItemData ItemOID="SEX" TransactionType="Remove"/></ItemGroupData>', "Update"),
    ]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", then_removed)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P2", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["", "2012", "i1.xml"]
    assert result.superseded == {"s.xml": 1, "i1.xml": 1}


def test_a_record_sent_twice_on_each_side_of_its_remove_counts_every_sending_once(tmp_path):
    twice_twice = _odm("F1", "\n".join([
        _subject("P9", _group("IG.DM", {"SEX": "1", "BRTHDTC": "2014-02"}), "Insert"),
        _subject("P9", _group("IG.DM", {"SEX": "2"}), "Update"),
        '<SubjectData SubjectKey="P9" TransactionType="Remove"/>',
        _subject("P9", _group("IG.DM", {"SEX": "1"}), "Insert"),
        _subject("P9", _group("IG.DM", {"SEX": "2"}), "Update"),
    ]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", twice_twice)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P9", ["SEX", "BRTHDTC"]].tolist() == ["2", ""]
    # Four ItemGroupData: the Insert each Update replaced (2) and the record the Remove deleted (1) superseded,
    # the last Update loaded.
    assert result.superseded == {"i1.xml": 3}


def test_a_remove_of_another_subject_does_not_split_a_record_sent_in_parts(tmp_path):
    # P4 sent in two parts (no item in common: one record), P2 removed between them.
    parts = _odm("F1", "\n".join([
        _subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"),
        '<SubjectData SubjectKey="P2" TransactionType="Remove"/>',
        _subject("P4", _group("IG.DM", {"BRTHDTC": "2011-03"}), "Insert"),
    ]), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert sorted(dm.index) == ["P1", "P3", "P4"]
    assert dm.loc["P4", ["SEX", "BRTHDTC"]].tolist() == ["1", "2011-03"]
    assert result.superseded == {"s.xml": 1}  # P2; P4 is one record, as without the Remove


@pytest.mark.parametrize("items", [
    '<ItemData ItemOID="SEX" Value="2"/><ItemData ItemOID="BRTHDTC" TransactionType="Remove"/>',
    '<ItemData ItemOID="BRTHDTC" TransactionType="Remove"/><ItemData ItemOID="SEX" Value="2"/>',
    '<ItemData ItemOID="SEX" Value="2"/><ItemData ItemOID="BRTHDTC" TransactionType="Remove"/>'
    '<ItemData ItemOID="RACE" Value="3"/>',
])
def test_an_item_group_sending_and_withdrawing_items_counts_once(tmp_path, items):
    # One ItemGroupData updating P3's sex and withdrawing its birth date: one record sent, loaded.
    # Before, it was loaded and superseded in the increment too (two counts for one ItemGroupData).
    group = f'<ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="1">{items}</ItemGroupData>'
    increment = _odm("F1", _subject("P3", group, "Update"), file_type="Transactional", prior="F0",
                     created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", increment)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P3", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["2", "", "i1.xml"]
    assert result.superseded == {"s.xml": 1}


def test_an_item_withdrawn_from_a_record_nobody_sent_adds_no_record(tmp_path):
    group = ('<ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="1">'
             '<ItemData ItemOID="SEX" TransactionType="Remove"/></ItemGroupData>')
    increment = _odm("F1", _subject("P7", group, "Update"), file_type="Transactional", prior="F0",
                     created="2026-11-02T01:00:00")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", increment)])
    assert sorted(record_frame(result.frames["IG.DM"])["_subject_key"]) == ["P1", "P2", "P3"]
    assert result.superseded == {}


def _at(event: str, key: str, groups: str, transaction: str = "") -> str:
    """`_subject` with the record under another StudyEventOID."""
    return _subject(key, groups, transaction).replace('StudyEventOID="SE.BASE"', f'StudyEventOID="{event}"')


def _remove_event(key: str, event: str) -> str:
    return (f'<SubjectData SubjectKey="{key}"><StudyEventData StudyEventOID="{event}" TransactionType="Remove"/>'
            '</SubjectData>')


def _increment(*elements: str) -> str:
    return _odm("F1", "\n".join(elements), file_type="Transactional", prior="F0", created="2026-11-02T01:00:00")


def test_a_remove_of_another_event_of_the_subject_does_not_split_a_record_sent_in_parts(tmp_path):
    # P4's demography sent in two parts with a Remove of P4's other study event between them: that Remove
    # deletes nothing of SE.BASE, so the parts are one record, as without it. Before, it counted superseded 1.
    parts = _increment(_subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"), _remove_event("P4", "SE.OTHER"),
                       _subject("P4", _group("IG.DM", {"BRTHDTC": "2011"}), "Insert"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P4", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["1", "2011", "i1.xml"]
    assert result.superseded == {} and result.removed == ()


def test_a_remove_of_the_records_event_splits_it(tmp_path):
    # The same with the Remove of P4's SE.BASE: the first part is deleted (superseded in i1.xml).
    parts = _increment(_subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"), _remove_event("P4", "SE.BASE"),
                       _subject("P4", _group("IG.DM", {"BRTHDTC": "2011"}), "Insert"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P4", ["SEX", "BRTHDTC"]].tolist() == ["", "2011"]
    assert result.superseded == {"i1.xml": 1}


@pytest.mark.parametrize("others", [(), (_subject("P5", _group("IG.DM", {"SEX": "1"}), "Insert"),
                                         _subject("P5", _group("IG.DM", {"SEX": "2"}), "Update"))])
def test_a_records_count_does_not_depend_on_another_record_sent_twice(tmp_path, others):
    # P4 {SEX}, its event removed, P4 {BRTHDTC} and {SEX} after it: one record after the Remove, in parts, and the
    # first sending deleted by the Remove (1). P5 sent twice adds its own 1, and must not change P4's count.
    # Before, P5's sending twice made P4's sendings on either side of the Remove copies of one another (P4: 2).
    sent = _increment(_subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"), _remove_event("P4", "SE.BASE"),
                      _subject("P4", _group("IG.DM", {"BRTHDTC": "2011"}), "Insert"),
                      _subject("P4", _group("IG.DM", {"SEX": "2"}), "Update"), *others)
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", sent)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P4", ["SEX", "BRTHDTC"]].tolist() == ["2", "2011"]
    assert result.superseded == {"i1.xml": 1 + len(others) // 2}


def test_items_withdrawn_twice_from_a_record_nobody_has_count_nothing(tmp_path):
    # Two ItemGroupData withdrawing P7's sex, whom nobody has: nothing loaded, and nothing superseded either
    # (before: 1, the first sending counted as replaced by a record that is dropped).
    group = ('<ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="1">'
             '<ItemData ItemOID="SEX" TransactionType="Remove"/></ItemGroupData>')
    twice = _increment(_subject("P7", group, "Update"), _subject("P7", group, "Update"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", twice)])
    assert sorted(record_frame(result.frames["IG.DM"])["_subject_key"]) == ["P1", "P2", "P3"]
    assert result.superseded == {}


def _remove_in_form(key: str, inner: str) -> str:
    """A Remove inside the subject's SE.BASE: `inner` is the removed FormData, or an ItemGroupData of F.DM."""
    return (f'<SubjectData SubjectKey="{key}"><StudyEventData StudyEventOID="SE.BASE">{inner}</StudyEventData>'
            '</SubjectData>')


@pytest.mark.parametrize("between", [
    _remove_event("P4", "SE.OTHER"),
    _remove_in_form("P4", '<FormData FormOID="F.OTHER" TransactionType="Remove"/>'),
    _remove_in_form("P4", '<FormData FormOID="F.DM"><ItemGroupData ItemGroupOID="IG.AE" ItemGroupRepeatKey="2" '
                          'TransactionType="Remove"/></FormData>'),
    _remove_in_form("P4", '<FormData FormOID="F.DM"><ItemGroupData ItemGroupOID="IG.DM" ItemGroupRepeatKey="2" '
                          'TransactionType="Remove"/></FormData>'),
])
@pytest.mark.parametrize("one_line", [False, True])
def test_a_record_sent_in_parts_around_a_remove_of_another_of_its_subjects_records_counts_once(tmp_path, between,
                                                                                              one_line):
    # Two ItemGroupData with the keys of P4's demography and no item in common are one record, read once, as
    # without the Remove between them (another event, form, item group or repeat of P4: it deletes no part).
    parts = _increment(_subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"), between,
                       _subject("P4", _group("IG.DM", {"BRTHDTC": "2011"}), "Insert"))
    if one_line:
        parts = parts.replace("\n<SubjectData", "<SubjectData")
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P4", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["1", "2011", "i1.xml"]
    assert result.superseded == {} and result.removed == ()  # read 1 = loaded 1


def test_a_record_sent_in_parts_around_its_subjects_remove_is_two_sendings(tmp_path):
    # The SubjectData Remove deletes the first part: sent, removed, sent again, as one part each side would be
    # (read 2 = superseded 1 in i1.xml + loaded 1); the record holds only the part sent after the Remove.
    parts = _increment(_subject("P4", _group("IG.DM", {"SEX": "1"}), "Insert"),
                       '<SubjectData SubjectKey="P4" TransactionType="Remove"/>',
                       _subject("P4", _group("IG.DM", {"BRTHDTC": "2011"}), "Insert"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P4", ["SEX", "BRTHDTC", "source_file"]].tolist() == ["", "2011", "i1.xml"]
    assert result.superseded == {"i1.xml": 1}


def _eventless(key: str, inner: str) -> str:
    """A subject's FormData straight under SubjectData, in an export whose other records have study events."""
    return f'<SubjectData SubjectKey="{key}">{inner}</SubjectData>'


REMOVE_EVENTLESS_DM = _eventless("P1", '<FormData FormOID="F.DM" TransactionType="Remove"/>')


def test_a_form_remove_outside_study_events_leaves_the_forms_of_an_event_whole(tmp_path):
    # The FormData Remove without StudyEventData is of P1's F.DM without an event (its StudyEventOID "", as the
    # snapshot keys it), not of SE.BASE's: P1's demography sent in parts around it is one record, read once.
    # Before, the stretches read the left-out event as any (two sendings: i1.xml 1) and the deletion as "" (none).
    parts = _increment(_subject("P1", _group("IG.DM", {"SEX": "2"}), "Update"), REMOVE_EVENTLESS_DM,
                       _subject("P1", _group("IG.DM", {"AGE": "9"}), "Update"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"]).set_index("_subject_key")
    assert dm.loc["P1", ["_study_event_oid", "SEX", "AGE", "BRTHDTC", "source_file"]].tolist() == [
        "SE.BASE", "2", "9", "2010-05", "i1.xml"]
    assert result.superseded == {"s.xml": 1} and result.removed == ()  # read 1 = loaded 1; the snapshot's replaced


def test_a_form_remove_outside_study_events_deletes_the_form_sent_without_one(tmp_path):
    # The same Remove after P1's F.DM sent without StudyEventData deletes that record (superseded in i1.xml), and
    # only it: SE.BASE's demography, sent in parts around the Remove, is one record.
    parts = _increment(_subject("P1", _group("IG.DM", {"SEX": "2"}), "Update"),
                       _eventless("P1", f'<FormData FormOID="F.DM">{_group("IG.DM", {"SEX": "3"})}</FormData>'),
                       REMOVE_EVENTLESS_DM, _subject("P1", _group("IG.DM", {"AGE": "9"}), "Update"))
    result = apply_transactions([_staged(tmp_path, "s.xml", SNAPSHOT), _staged(tmp_path, "i1.xml", parts)])
    dm = record_frame(result.frames["IG.DM"])
    p1 = dm[dm["_subject_key"] == "P1"]
    assert p1[["_study_event_oid", "SEX", "AGE", "BRTHDTC"]].values.tolist() == [["SE.BASE", "2", "9", "2010-05"]]
    assert [(r.patient_key, r.local_key, r.level) for r in result.removed] == [("P1", "[1]/F.DM[1]/IG.DM[1]",
                                                                                "FormData")]
    assert result.superseded == {"s.xml": 1, "i1.xml": 1}  # read 2 (i1.xml) = loaded 1 + superseded 1
