"""ICD-O-3 code parsing: the spellings sources use, and the codes the warehouse refuses."""

import re

import pytest

from etl.transform.iccc3 import classify
from etl.transform.icdo3 import (
    IcdO3Error,
    Morphology,
    parse_grade,
    parse_morphology,
    parse_topography,
    topography_for_table,
)


@pytest.mark.parametrize("text", ["9510/3", "95103", "9510 / 3", "M-9510/3", "m9510/3", " 9510/3 ", "M 9510 3",
                                  "9510-3", "M-9510-3"])
def test_morphology_spellings_parse_to_one_form(text):
    assert parse_morphology(text) == Morphology("9510", "3")


def test_histology_alone_takes_the_behaviour_given_separately():
    assert parse_morphology("9510") == Morphology("9510", None)
    assert parse_morphology("9421", "1") == Morphology("9421", "1")
    assert parse_morphology("9421", " ") == Morphology("9421", None)
    assert parse_morphology("9421/1", "1") == Morphology("9421", "1")


@pytest.mark.parametrize("text", ["8500/33", "85003 3", "8500/3 3", "8500/3-3", "8500/3.3", "8500/3/3", "850033",
                                  "M-8500/33", "8500-3-3", " 8500 / 3 / 3 "])
def test_a_grade_digit_after_the_behaviour_is_read_as_the_grade(text):
    """ICD-O-3's 6th digit (grade or differentiation), written as registries separate it."""
    assert parse_morphology(text) == Morphology("8500", "3", "3")


@pytest.mark.parametrize(("text", "grade"), [("9500/31", "1"), ("9680/36", "6"), ("9702/35", "5"), ("8000/39", "9")])
def test_every_grade_code_is_kept_as_written(text, grade):
    assert parse_morphology(text).grade == grade


@pytest.mark.parametrize("text", ["9500/30", "9500/3 0", "9500/3-0", "950030"])
def test_a_grade_digit_that_is_no_icd_o_3_grade_is_refused_naming_it(text):
    with pytest.raises(IcdO3Error, match=re.escape(f"morphology '{text}': grade '0' is not an ICD-O-3 grade (1-4")):
        parse_morphology(text)


@pytest.mark.parametrize(("text", "grade"), [("3", "3"), (" 9 ", "9"), ("8500/33", "3"), ("8500/3 1", "1"),
                                           ("8500/3", None), ("8500", None)])
def test_a_grade_is_read_alone_or_from_its_morphology(text, grade):
    assert parse_grade(text) == grade


@pytest.mark.parametrize(("text", "message"), [
    ("0", "grade '0' is not an ICD-O-3 grade (1-4"),
    ("8500/30", "morphology '8500/30': grade '0' is not an ICD-O-3 grade"),
    ("G3", "grade 'G3' is not an ICD-O-3 grade (1-4 grade I-IV, 5 T-cell, 6 B-cell, 7 null cell, 8 NK cell, "
           "9 not determined), nor a morphology NNNN/BG"),
])
def test_a_grade_that_is_no_icd_o_3_grade_is_refused(text, message):
    with pytest.raises(IcdO3Error, match=re.escape(message)):
        parse_grade(text)


@pytest.mark.parametrize(("text", "behaviour", "message"), [
    ("95X0/3", None, "morphology '95X0/3': expected NNNN/B (4 digits, behaviour 0-3)"),
    ("9510/7", None, "morphology '9510/7': behaviour '7' is not accepted, expected NNNN/B"),
    ("9510/6", None, "/6 is a metastatic site, /9 a tumour not known to be primary or metastatic"),
    ("9510-9514", None, "expected NNNN/B"),
    ("9510", "9", "behaviour '9' is not accepted"),
    ("", None, "morphology '': expected NNNN/B"),
    ("951/3", None, "expected NNNN/B"),
    ("9510/", None, "expected NNNN/B"),
    ("9510/3ab", None, "expected NNNN/B"),
    ("9510/312", None, "expected NNNN/B"),
    ("9421/1", "3", "has behaviour 1 but the behaviour given is '3'"),
])
def test_malformed_morphologies_are_rejected_saying_what_was_expected(text, behaviour, message):
    with pytest.raises(IcdO3Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_morphology(text, behaviour)


@pytest.mark.parametrize("text", ["C69.2", "C692", "c69.2", " C 69.2", "C69 .2", "c692 "])
def test_topography_spellings_parse_to_the_dotted_form(text):
    assert parse_topography(text) == "C69.2"


@pytest.mark.parametrize("text", ["C00.0", "C26.9", "C58.9", "C80.9"])
def test_topography_range_edges_and_near_gaps_are_accepted(text):
    assert parse_topography(text) == text


@pytest.mark.parametrize(("text", "message"), [
    ("C99.9", "C99 is not an ICD-O-3 site category"),
    ("C43.1", "C43 is not an ICD-O-3 site category"),
    ("C79.9", "C79 is not an ICD-O-3 site category"),
    ("C28.0", "C28 is not an ICD-O-3 site category"),
    ("C69.23", "topography 'C69.23': expected Cnn.n"),
    ("69.2", "topography '69.2': expected Cnn.n"),
    ("C69", "topography 'C69': the subsite \\(4th character\\) is missing, expected Cnn.n"),
    ("c71", "topography 'c71': the subsite"),
    ("", "topography '': expected Cnn.n"),
])
def test_invalid_topographies_are_rejected_saying_what_was_expected(text, message):
    with pytest.raises(IcdO3Error, match=message.replace(".", r"\.")):
        parse_topography(text)


def test_topography_for_table_drops_the_dot():
    assert topography_for_table("C69.2") == "C692"


@pytest.mark.parametrize("text", ["9999/3", "9994/3", "0000/3", "7999/1", "M-1234/3", "99993"])
def test_a_histology_outside_icd_o_3_is_rejected_naming_it(text):
    """ICD-O-3 histologies run 8000-9993 (ICD-O-3.2); `9999` is an "unknown" filler, never a tumour."""
    with pytest.raises(IcdO3Error, match=rf"morphology '{text}': histology \d{{4}} is not an ICD-O-3 histology"):
        parse_morphology(text)


@pytest.mark.parametrize("text", ["8000/3", "9993/3", "9509/3", "8158/1", "9749/3"])
def test_the_first_last_and_newest_histologies_are_accepted(text):
    histology, _, behaviour = text.partition("/")
    assert parse_morphology(text) == Morphology(histology, behaviour)


@pytest.mark.parametrize(("text", "message"), [
    ("C73.0", "C73 has C73.9"),                                    # thyroid: 999 instead of XI(b)
    ("C56.0", "C56 has C56.9"),                                    # ovary: 999 instead of X(c)
    ("C64.1", "C64 has C64.9"),                                    # kidney: 999 instead of VI(a)
    ("C61.0", "C61 has C61.9"),
    ("C74.5", "C74 has C74.0, C74.1, C74.9"),                      # classified, but no such site
    ("C76.9", "C76 has C76.0, C76.1, C76.2, C76.3, C76.4, C76.5, C76.7, C76.8"),
    ("C14.1", "C14 has C14.0, C14.2, C14.8"),                      # ICD-O-2's laryngopharynx
    ("C69.7", "C69 has"),
])
def test_a_subsite_the_category_does_not_have_is_rejected_naming_the_ones_it_has(text, message):
    with pytest.raises(IcdO3Error, match=re.escape(f"topography '{text}': {text} is not an ICD-O-3 site: {message}")):
        parse_topography(text)


@pytest.mark.parametrize("text", ["C73.9", "C56.9", "C64.9", "C61.9", "C74.0", "C74.1", "C76.7", "C14.2", "C42.4",
                                  "C69.6", "C72.3", "C77.9", "C80.9", "C22.1", "C63.7", "C57.7"])
def test_subsites_that_exist_are_accepted(text):
    assert parse_topography(text) == text


@pytest.mark.parametrize(("morphology", "topography"), [
    ("９５１０/3", "C69.2"),   # fullwidth histology (an East Asian input method)
    ("٩٥١٠/3", "C69.2"),     # Arabic-Indic digits
    ("9510/３", "C69.2"),      # fullwidth behaviour
    ("9510/3", "C６９.2"),      # fullwidth category
    ("9510/3", "C69.２"),      # fullwidth subsite
])
def test_a_code_written_with_other_digits_than_ascii_is_refused(morphology, topography):
    """`\\d` matched them and int() read them, so `９５１０` was stored and matched no ICCC-3 rule (999, silently)."""
    parse = (lambda: parse_morphology(morphology)) if not morphology.isascii() else \
        (lambda: parse_topography(topography))
    with pytest.raises(IcdO3Error, match="digits other than 0-9"):
        parse()
    with pytest.raises(IcdO3Error, match="digits other than 0-9"):
        classify(morphology, None, topography)


@pytest.mark.parametrize("parse", [lambda: parse_morphology("9510", "３"), lambda: parse_grade("３")],
                         ids=["behaviour column", "grade column"])
def test_a_behaviour_or_grade_in_its_own_column_written_with_other_digits_says_so(parse):
    """A fullwidth '３' in the behaviour or grade column was 'not accepted' with no word of why: it looks like a 3."""
    with pytest.raises(IcdO3Error, match="digits other than 0-9"):
        parse()
