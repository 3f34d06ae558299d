import os
import stat
import unicodedata

import pytest

from etl.transform import pseudonym
from etl.transform.pseudonym import (
    KEY_ENV,
    UNSEEN,
    BlankKey,
    PseudonymKey,
    holds_patient_key,
    load_key,
    person_id,
    publish_record_key,
    published_key,
    record_id,
    source_pseudonym,
)

KEY = PseudonymKey(b"test-key")


def test_pseudonyms_are_keyed_stable_and_blind_to_padding_and_case():
    a = source_pseudonym(KEY, "iltb", "ILTB-00123")
    assert a == source_pseudonym(KEY, "iltb", " iltb-00123 ")
    assert a != source_pseudonym(PseudonymKey(b"other"), "iltb", "ILTB-00123")
    assert a != source_pseudonym(KEY, "sacha_fr", "ILTB-00123")
    assert "00123" not in a and len(a) == 24


def test_a_shared_eupid_links_two_sources_to_one_person():
    one = person_id(KEY, "sacha_fr", "07-0042", "EU7F3K9Q2M")
    two = person_id(KEY, "iltb", "ILTB-00123", " eu7f3k9q2m")
    assert one == two
    assert person_id(KEY, "sacha_fr", "07-0042", None) != person_id(KEY, "iltb", "07-0042", None)
    # A hunt: written with its hyphens, a space or an invisible character, it made a second person
    for written in ("EU-7F3K-9Q2M", "EU7F3K 9Q2M", "EU7F3K\u200b9Q2M", "ＥＵ７Ｆ３Ｋ９Ｑ２Ｍ"):
        assert person_id(KEY, "registry_it", "TREP-000001", written) == one, written
    assert person_id(KEY, "iltb", "ILTB-00123", "EU7F3K9Q2N") != one
    assert person_id(KEY, "iltb", "ILTB-00123", " - ") == person_id(KEY, "iltb", "ILTB-00123", None)  # none given
    # A hunt: copied with a look-alike letter, which Crockford base 32 reads as the digit (I and L 1, O 0), it made a
    # second person no reviewer could link (two EUPIDs)
    zero_one = person_id(KEY, "sacha_fr", "07-0042", "EU0F1K9Q2M")
    assert person_id(KEY, "iltb", "ILTB-00123", "euOFlK9Q2M") == zero_one
    assert person_id(KEY, "esmart", "E-1", "EUOFIK9Q2M") == zero_one


@pytest.mark.parametrize("placeholder", ["NK", "UNK", "0", "n/a", "EU00000000", "EU-XXXX-XXXX", "9999999999"])
def test_a_source_s_not_known_in_the_eupid_field_links_no_one(placeholder):
    # A hunt: two sources writing NK for a child without an EUPID made two unrelated children one person.
    assert pseudonym.eupid_form(placeholder) == ""
    assert person_id(KEY, "iltb", "ILTB-00003", placeholder) != person_id(KEY, "registry_it", "TREP-000007",
                                                                            placeholder)


def test_published_record_keys_keep_the_local_part_and_hide_the_patient():
    published = publish_record_key(KEY, "iltb", "ILTB-00123|TREAT[2]")
    assert published.endswith("|TREAT[2]") and "ILTB-00123" not in published
    assert record_id("iltb", "treatment", published) != record_id("iltb", "adverse_event", published)


def test_key_file_is_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("RTW_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "secrets" / "pseudonym.key"
    first = load_key(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert load_key(key_file) == first
    assert "hidden" in repr(first) and key_file.read_text().strip() not in repr(first)


def test_explicit_key_and_env_win_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RTW_PSEUDONYM_KEY", "from-env")
    assert load_key(tmp_path / "k").secret == b"from-env"
    assert load_key(tmp_path / "k", "from-variable").secret == b"from-variable"
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(("text", "key", "holds"), [
    ("see the file of ILTB-00012", " iltb-00012 ", True),
    ("record trep-0007-1", "TREP-0007", True),
    ("ILTB-000123", "ILTB-00012", False),  # a longer number, not this one
    ("NM_004119.3:c.2503G>T", "2503", False),  # digits only: counted from six
    ("dose 2503 mg", "2503", False),
    ("dossier 100234", "100234", True),
    ("REG[7]", "7", False),  # too short to name anyone
    ("note straße12", "STRASSE12", True),  # compared case-folded, whatever the alphabet
    # as Word or Excel type the separator (an en dash, a no-break space), or '_' or ' ' for '-': as the screen reads it
    ("family asked to quote ILTB\u201300012", "ILTB-00012", True),
    ("family asked to quote ILTB\u00a000012", "ILTB-00012", True),
    ("see iltb_00012 and ILTB 00012", "ILTB-00012", True),
    ("see ILTB-00012", "ILTB\u201300012", True),
    ("ILTB\u2013000123", "ILTB-00012", False),  # still a longer number, not this one
    # '/', '.', a tab or no separator at all (a leak hunt found ILTB00002 and ILTB/00003 loaded as written)
    ("ILTB/00012", "ILTB-00012", True), ("ILTB.00012 and ILTB\t00012", "ILTB-00012", True),
    ("see ILTB00012", "ILTB-00012", True), ("ref 010002", "01-0002", True), ("ref 0100021", "01-0002", False),
    ("\uff29\uff2c\uff34\uff22-\uff10\uff10\uff10\uff11\uff12", "ILTB-00012", False),  # full-width letters
    ("ILTB-\uff10\uff10\uff10\uff11\uff12", "ILTB-00012", True),  # full-width digits are digits
    # spaced as a sentence is ('07 – 0012'), marks no one sees typed or pasted into it (a zero-width space, a soft
    # hyphen, a left-to-right mark)
    ("the child of 07 – 0012 relapsed", "07-0012", True),
    ("ILTB  _ 00012", "ILTB-00012", True),
    ("call ILTB-000​12", "ILTB-00012", True),
    ("ILTB­-00012 and ‎ILTB-0‍0012", "ILTB-00012", True),
    ("ILTB - 000123", "ILTB-00012", False),  # spaced, still a longer number
    ("ILTB​00012", "ILTB-00012", True),  # no separator seen: none is needed
])
def test_the_patient_s_number_is_found_standing_on_its_own_not_inside_other_values(text, key, holds):
    assert holds_patient_key(text, key) is holds


def test_the_marks_read_past_are_format_characters_no_one_sees():
    unseen = [chr(c) for c in range(0x110000) if UNSEEN.fullmatch(chr(c))]
    assert len(unseen) == 129 and {unicodedata.category(c) for c in unseen} == {"Cf"}


def test_a_record_key_s_local_part_never_keeps_the_patient_s_number_even_inside_a_longer_one():
    for patient, local in (("12345", "12345-01"), ("ILTB-00012", "ILTB-00012A"), ("ILTB-00012", "iltb-00012b/FU"),
                           ("straße12", "straße12-01"), ("straße12", "STRASSE12-01"), ("İST1", "i̇st1-3")):
        published = published_key(KEY, "s", patient, local)
        assert patient.casefold() not in published.casefold(), published
    assert published_key(KEY, "s", "P7", "REG[P7]").endswith("|REG[P7]")  # too short to name anyone


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_a_blank_key_is_refused_and_a_short_one_said(tmp_path, monkeypatch, caplog, blank):
    """A CLI audit: a key of blanks in env, or an empty key file, built a warehouse anyone could compute the
    pseudonyms of; a short key passed without a word."""
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(blank)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BlankKey, match=rf"key in {key_file} is blank: give one of at least 32"):
        load_key(key_file)
    if blank:
        monkeypatch.setenv(KEY_ENV, blank)
        with pytest.raises(BlankKey, match=f"key in env {KEY_ENV} is blank"):
            load_key(key_file)
    monkeypatch.setenv(KEY_ENV, f"short-{blank!r}")
    pseudonym._said_short.cache_clear()  # said once a process: maybe by another test already
    assert load_key(key_file).secret == f"short-{blank!r}".encode()
    assert "fewer than 32: a short key can be guessed offline" in caplog.text and "short-" not in caplog.text
