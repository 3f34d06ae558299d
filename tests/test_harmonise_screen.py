"""Another patient's number or birth date in a value: never quoted in a message, screened out of a free text."""

from datetime import date

import pandas as pd
import pytest

from etl.extract.file_names import PatientNumbers
from etl.transform.harmonise import harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey
from etl.transform.screen import TextScreen
from etl.transform.values import PartialDate

KEY = PseudonymKey(b"k")
BOARD = SourceMapping.model_validate({
    "source_id": "board_test", "title": "test board", "format": "csv", "files": "*.csv", "record_set": "REG",
    "date_format": "%d/%m/%Y", "null_values": [""], "patient_key": "pid", "record_key": "REG[{rid}]",
    "patient": {"from": "REG", "fields": {
        "sex": {"column": "sex", "codes": {"1": "male", "2": "female"}},
        "birth_date": {"column": "born", "type": "date", "format": ["%d/%m/%Y", "%m/%Y"]}}},
    "tables": {"tumour_board_review": {"from": "REG", "fields": {
        "recommendation_type": {"column": "rectype", "codes": {"T": "trial", "S": "standard"}},
        "reason_not_followed": {"column": "reason"}}}},
})
ROW = {"sex": "1", "rectype": "T", "reason": ""}


def _harmonised(rows: list[dict[str, str]]):
    frame = pd.DataFrame([ROW | row for row in rows])
    frame["_line"] = range(2, 2 + len(frame))
    frame["source_file"], frame["source_file_sha256"] = "board.csv", "f" * 64
    return harmonise_source(BOARD, {"REG": frame}, KEY, "run-1")


def _everything_shown(result) -> str:
    return " ".join(str(v) for frame in [result.records, result.rejections, *result.tables.values()]
                    for v in frame.astype(str).to_numpy().ravel())


PATIENTS = [{"pid": "ILTB-00001", "rid": "1", "born": "27/03/2003"},
            {"pid": "ILTB-00002", "rid": "2", "born": "01/2014"},  # known to the month only
            {"pid": "ILTB-00003", "rid": "3", "born": "06/03/1996"}]


def test_a_code_holding_another_patient_s_number_or_birth_date_is_refused_without_quoting_it():
    result = _harmonised([PATIENTS[0] | {"rectype": "ILTB-00002"}, PATIENTS[1] | {"rectype": "06/03/1996"},
                          PATIENTS[2] | {"sex": "iltb_00099"},  # no such patient: the shape is enough
                          {"pid": "ILTB-00004", "rid": "4", "born": "", "rectype": "X"}])
    refused = result.rejections.set_index("field")
    assert refused.loc["recommendation_type"].value.tolist() == ["<hidden>", "<hidden>", "X"]
    assert refused.loc["sex"].value == "<hidden>"
    shown = _everything_shown(result)
    assert "00002" not in shown and "1996" not in shown and "00099" not in shown
    assert "code '<hidden>' is not in the code list" in " ".join(result.rejections.message)


def test_a_free_text_is_loaded_with_other_patients_numbers_and_birth_dates_replaced():
    reasons = {"1": "Parents refused, see also ILTB-00002, born 2014-01-15",  # in the month ILTB-00002 was born
               "2": "as for iltb 00003 (born 06.03.1996, or 03/06/1996 as the US writes it), ILTB-00001 20030327",
               "3": "relapse on 2019-05-02, 400000 IE, c.1174C>A, cycle 12"}  # nobody's: all stays
    result = _harmonised([p | {"reason": reasons[p["rid"]]} for p in PATIENTS])
    assert result.rejections.empty
    loaded = dict(zip(result.tables["tumour_board_review"].source_record_key.str.split("|").str[1],
                      result.tables["tumour_board_review"].reason_not_followed, strict=True))
    assert loaded == {"REG[1]": "Parents refused, see also {patient}, born {date}",
                      "REG[2]": "as for {patient} (born {date}, or {date} as the US writes it), {patient} {date}",
                      "REG[3]": reasons["3"]}


def test_a_day_the_text_says_is_a_birth_date_is_hidden_however_written_and_whoever_s_it_is():
    # A hunt: a patient's exact birth date in their own diagnosis label, as the screen reads no day (eight digits day
    # first, a year of two digits unpadded), was loaded as written. Nobody's birth date here: the words say it is one.
    reasons = {"1": "LAL-T DDN 08112011", "2": "LAL-T née le 8/11/11, geb. am 8.11.2011",
               "3": "born in 2011, relapse 8/11/11, 10052015 (MedDRA)"}  # a year, and days no words call a birth
    result = _harmonised([p | {"reason": reasons[p["rid"]]} for p in PATIENTS])
    loaded = result.tables["tumour_board_review"].reason_not_followed.tolist()
    assert loaded == ["LAL-T DDN {date}", "LAL-T née le {date}, geb. am {date}", reasons["3"]]


def test_a_birth_date_typed_with_spaces_or_an_en_dash_is_screened_and_another_day_so_typed_stays():
    # ILTB-00003's birth date, 06/03/1996, in another patient's note; a day nobody was born on stays.
    result = _harmonised([PATIENTS[0] | {"reason": "as for the child born 06. 03. 1996 (1996\u201303\u201306), "
                                                   "seen 2019 \u2013 05 \u2013 02"}, *PATIENTS[1:]])
    assert result.tables["tumour_board_review"].reason_not_followed.tolist()[0] == \
        "as for the child born {date} ({date}), seen 2019 \u2013 05 \u2013 02"


def test_a_birth_date_in_words_with_a_two_digit_year_or_parted_by_spaces_is_screened_and_another_day_stays():
    # ILTB-00003's birth date, 06/03/1996, as centres write it in other patients' notes (one per note)
    written = ["6 mars 1996", "March 6th, 1996", "06MAR1996", "06-Mar-96", "06.03.96", "06 03 1996",
               "6. März 1996"]
    rows = [PATIENTS[0] | {"rid": str(10 + n), "reason": f"as for the child born {day}, seen 6 May 1996"}
            for n, day in enumerate(written)]
    result = _harmonised([*rows, *PATIENTS[1:]])
    assert result.rejections.empty
    reasons = result.tables["tumour_board_review"].reason_not_followed.tolist()[:len(written)]
    assert reasons == ["as for the child born {date}, seen 6 May 1996"] * len(written)


@pytest.mark.parametrize("own", ["ILTB-00001", "ILTB\u201300001", "ILTB\u00a000001", "iltb_00001"])
def test_the_patient_s_own_number_in_a_free_text_still_quarantines_the_record(own):
    # However its '-' was typed (an en dash by Word's autocorrect, a no-break space): not loaded as {patient}.
    result = _harmonised([PATIENTS[0] | {"reason": f"see {own} and ILTB-00002"}])
    assert result.rejections.rule_id.tolist() == ["CONF-TEXT-NO-PATIENT-KEY"]
    shown = _everything_shown(result)
    assert "00001" not in shown and "00002" not in shown


def test_a_day_written_in_a_date_is_not_cut_by_a_number_shape_and_a_key_of_eight_digits_is_a_number():
    screen = TextScreen.of(["01-0042", "20190042"], [PartialDate(date(2014, 1, 15), "day")])
    assert screen.screened("seen 16-01-2024 and 15-01-2014, patient 02-0077") == \
        "seen 16-01-2024 and {date}, patient {patient}"
    assert screen.screened("see 20190317 and 20140115") == "see {patient} and {date}"
    assert not screen.holds("16-01-2024") and screen.holds("x 01_0042 y")


def test_a_refused_value_in_a_birth_month_is_quoted_but_a_free_text_is_screened_of_it():
    # A source giving birth months only, large enough that most months hold a birthday: its refused dates
    # (12/13/2021, day and month swapped) are still quoted, while a note's day in such a month is not kept.
    screen = TextScreen.of(["ILTB-00001"], [PartialDate(date(2021, 12, 1), "month")])
    assert not screen.holds("12/13/2021") and screen.holds("15/12/2014 ILTB-00009")
    assert screen.screened("seen 12/13/2021") == "seen {date}"


def test_eight_digits_are_a_day_only_year_first_so_a_meddra_code_stays():
    # 10052015 (a MedDRA code) read day first would be 10 May 2015, someone's birthday in a large source.
    screen = TextScreen.of(["01-0042"], [PartialDate(date(2015, 5, 10), "day")])
    assert screen.screened("10052015, 20150510, 10/05/2015") == "10052015, {date}, {date}"


def test_a_source_whose_keys_have_no_shape_screens_no_number():
    # Keys of letters alone or short numbers name nobody in a text (as for file names): nothing is screened,
    # and no long number is guessed at as it is for a file name.
    assert PatientNumbers.of(["ABCD", "42"]).key_pattern is None
    assert TextScreen.of(["ABCD", "42"], []).screened("dose 400000 IE, ABCD") == "dose 400000 IE, ABCD"


def test_an_eupid_or_a_centre_shaped_like_a_patient_key_is_kept_as_written():
    # A key's shape may be a centre code's or an EUPID's; screened, every such EUPID would be {patient},
    # one person. Both are codes harmonise uses as written (an EUPID is loaded hashed only).
    fields = BOARD.model_dump(by_alias=True, exclude_none=True)
    fields["patient"]["fields"] |= {"centre_id": {"column": "centre"}, "eupid": {"column": "eupid", "case": "upper"}}
    mapping = SourceMapping.model_validate(fields)
    frame = pd.DataFrame([ROW | {"pid": "AB0001", "rid": "1", "born": "", "centre": "FR0004", "eupid": "EU12345678"},
                          ROW | {"pid": "AB0002", "rid": "2", "born": "", "centre": "FR0005", "eupid": "EU98765432"}])
    frame["_line"], frame["source_file"], frame["source_file_sha256"] = [2, 3], "board.csv", "f" * 64
    patients = harmonise_source(mapping, {"REG": frame}, KEY, "run-1").tables["patient_source"]
    assert patients.centre_id.tolist() == ["FR0004", "FR0005"]
    assert patients.link_method.tolist() == ["eupid", "eupid"] and patients.patient_id.nunique() == 2


def test_a_centre_holding_a_patient_s_number_is_held_back_and_shown_nowhere():
    # A hunt: a site typed into the centre column the number of another patient of the trial (IMT-FR02-001): the
    # centre, a code used as written, reached core, the marts, dq and the report. A centre of a key's shape that is
    # no patient's number stays (FR0004 beside keys AB0001: the test above).
    fields = BOARD.model_dump(by_alias=True, exclude_none=True)
    fields["patient"]["fields"] |= {"centre_id": {"column": "centre"}}
    fields["tables"]["tumour_board_review"]["fields"] |= {"centre_id": {"column": "centre"}}
    mapping = SourceMapping.model_validate(fields)
    frame = pd.DataFrame([ROW | {"pid": "IMT-FR02-001", "rid": "1", "born": "", "centre": "FR02"},
                          ROW | {"pid": "IMT-FR02-002", "rid": "2", "born": "", "centre": "imt fr02 001"},
                          ROW | {"pid": "IMT-FR02-003", "rid": "3", "born": "", "centre": "IMT-FR02-009"}])
    frame["_line"], frame["source_file"], frame["source_file_sha256"] = [2, 3, 4], "board.csv", "f" * 64
    result = harmonise_source(mapping, {"REG": frame}, KEY, "run-1")
    assert result.tables["patient_source"].centre_id.tolist() == ["FR02", "IMT-FR02-009"]  # no one's number
    assert set(result.rejections.rule_id) == {"CONF-TEXT-NO-PATIENT-KEY"}
    assert set(result.rejections.message) == {"centre_id (centre): holds a patient's number (hidden), where a "
                                              "centre's code was expected"}
    assert "001" not in " ".join(str(c) for c in result.records.centre_id)
    assert "fr02 001" not in _everything_shown(result).lower()


def test_a_number_typed_with_a_unicode_dash_or_space_is_a_patient_number():
    # Word and Excel put an en dash for '-' (ILTB–00002), and a no-break space is pasted for ' ': a refused code,
    # a note and a record number so typed are judged as if typed with '-' or ' ' (one character each).
    result = _harmonised([PATIENTS[0] | {"rectype": "ILTB\u201300002", "rid": "ILTB\u201300001"},
                          PATIENTS[1] | {"reason": "see ILTB\u201300003, iltb\u00a000001 and ILTB\u202f00099"},
                          PATIENTS[2] | {"rid": "ILTB\u00a000003", "reason": "ILTB\u221200002\uff0dx"}])
    refused = result.rejections.set_index("field")
    assert refused.loc["recommendation_type"].value == "<hidden>"
    board = result.tables["tumour_board_review"]
    assert board.reason_not_followed.tolist() == ["see {patient}, {patient} and {patient}", "{patient}\uff0dx"]
    keys = result.records.source_record_key.str.split("|").str[1].tolist()
    assert keys[1] == "REG[2]" and all(len(k) == 24 for k in (keys[0], keys[2]))  # digests
    shown = _everything_shown(result)
    assert not any(number in shown for number in ("00001", "00002", "00003", "00099"))


def test_a_number_or_birth_date_with_marks_no_one_sees_typed_into_it_is_screened_as_it_is_seen():
    # A zero-width space, a soft hyphen, a bidi mark typed or pasted into a number (a web page's, Word's) hide it from
    # no reader; a text that hides nothing keeps them, as written.
    screen = TextScreen.of(["ILTB-00001"], [PartialDate(date(2014, 1, 15), "day")])
    typed = "see ILTB-000\u200b02 and \u200eILTB\u00ad-00003, born 15/01/\u200d2014"
    assert screen.screened(typed) == "see {patient} and {patient}, born {date}"
    assert screen.holds("ILTB-0000\u200b2") and screen.holds_number("REG-ILTB\u2060-00009")
    assert screen.screened("nota\u200b bene, dose 15/01\u200b/2015") == "nota\u200b bene, dose 15/01\u200b/2015"


def test_a_birth_date_refused_still_tells_the_screen_every_day_it_reads_as():
    # Typed to the day in a layout the mapping does not take (ISO in a dd/mm/yyyy source), the birth date is
    # refused, and hidden as the birth field; its day is still nobody's to show, in a note or a refused value of
    # another field, nor in the record's own key.
    result = _harmonised([PATIENTS[0] | {"born": "2007-08-03", "reason": "Naissance le 03.08.2007",
                                         "rid": "2007-08-03"},
                          PATIENTS[1] | {"reason": "cf. 2007.08.03, 20070803, 08/03/2007 (as the US writes it)"},
                          PATIENTS[2] | {"rectype": "03/08/2007"},
                          {"pid": "ILTB-00004", "rid": "4", "born": "", "reason": "seen 2007-08-04"}])  # stays
    refused = result.rejections.set_index("field")
    assert refused.loc["birth_date"].value == "<hidden>" and refused.loc["recommendation_type"].value == "<hidden>"
    board = result.tables["tumour_board_review"]
    assert board.reason_not_followed.tolist() == ["cf. {date}, {date}, {date} (as the US writes it)", "seen 2007-08-04"]
    assert len(result.records.source_record_key[0].split("|")[1]) == 24  # the own birth date as record number
    shown = _everything_shown(result)
    assert not any(day in shown for day in ("2007-08-03", "03.08.2007", "03/08/2007", "20070803"))


def test_an_eupid_the_source_delivers_is_a_patient_identifier_in_any_other_field():
    # The EUPID field is a code used as written (loaded hashed); typed into a note or a coded field, it names the
    # patient across registries: {patient} in a note, <hidden> in a refused value, whole tokens in any case.
    fields = BOARD.model_dump(by_alias=True, exclude_none=True)
    fields["patient"]["fields"] |= {"eupid": {"column": "eupid", "case": "upper"}}
    mapping = SourceMapping.model_validate(fields)
    rows = [PATIENTS[0] | {"eupid": "EUJGBF8MG1", "reason": "see (eupid eujgbf8mg1), EUJGBF8MG1x, EUABCDEFGH"},
            PATIENTS[1] | {"eupid": "euabcdefgh", "rectype": "EUKB27XX4A"},  # an EUPID without a digit, lower-case
            PATIENTS[2] | {"eupid": "EUKB27XX4A"}]
    frame = pd.DataFrame([ROW | row for row in rows])
    frame["_line"], frame["source_file"], frame["source_file_sha256"] = [2, 3, 4], "board.csv", "f" * 64
    result = harmonise_source(mapping, {"REG": frame}, KEY, "run-1")
    assert result.rejections.value.tolist() == ["<hidden>"]
    board = result.tables["tumour_board_review"]
    assert board.reason_not_followed.tolist() == ["see (eupid {patient}), EUJGBF8MG1x, {patient}", None]
    assert result.tables["patient_source"].link_method.tolist() == ["eupid"] * 2  # the EUPID field as it was
    assert "KB27XX4A" not in _everything_shown(result)


def test_an_eupid_given_with_hyphens_is_screened_as_linkage_reads_it():
    """A review: linkage reads EU-9EE0-KVCH as EU9EE0KVCH; a note writing it so kept it in clear."""
    screen = TextScreen.of(["ILTB-00001"], [], ["EU-9EE0-KVCH"])
    assert screen.screened("see EU9EE0KVCH and eu9ee0kvch, EU-9EE0-KVCH") == "see {patient} and {patient}, {patient}"


def test_an_eupid_given_whole_is_screened_where_a_note_writes_it_in_parts():
    """A hunt: a source giving EU9EE0KVCH whole kept `EU-9EE0-KVCH` and `EU 9EE0 KVCH` of a note in clear
    (linkage reads them as one)."""
    screen = TextScreen.of(["ILTB-00001"], [], ["EU9EE0KVCH", "EUAB12CD34"])
    note = "twin of EU-9EE0-KVCH (eu 9ee0 kvch; EU9EE0/KVCH), not EUAB12-CD35, EU 9EE0, EU-9EE0-KVCHX"
    assert screen.screened(note) == \
        "twin of {patient} ({patient}; {patient}), not EUAB12-CD35, EU 9EE0, EU-9EE0-KVCHX"
    assert screen.holds("EU 9EE0-KVCH") and not screen.holds("EU 9EE0")
    # two EUPIDs written one after the other are each hidden
    assert screen.screened("EU-9EE0-KVCH EU-AB12-CD34") == "{patient} {patient}"
    # spaced marks, a line between parts, full-width letters: linkage reads each as the EUPID (a review)
    assert screen.screened("EU - 9EE0 - KVCH, EU 9EE0\nKVCH, \uff25\uff35\uff19\uff25\uff25\uff10KVCH.") == \
        "{patient}, {patient}, {patient}."
    # an EUPID given with marks and full-width letters is hidden as written (a review: no token of the note began
    # its plain form, and the screen returned before looking for it as written)
    given = TextScreen.of([], [], ["\uff25\uff35-9EE0-KVCH"])
    assert given.screened("see \uff25\uff35-9EE0-KVCH today") == "see {patient} today"
