"""Parsing ICD-O-3 morphology and topography codes as sources write them.

Sources spell the same code many ways: `9510/3`, `95103`, `M-9510/3`, `9510 / 3`, `9510-3`, or the
histology in one column and the behaviour in another; `C69.2`, `C692`, `c 69.2`. These
parsers accept those spellings and return one canonical form (histology `9510`, behaviour
`3`, topography `C69.2`), or raise `IcdO3Error` saying what was expected.

Gotchas:
- Histology: ICD-O-3 neoplasm codes run from 8000 (neoplasm NOS) to 9993 (ICD-O-3.2; the IARC
  2017 ICCC-3 table classifies up to 9993 too). Anything outside, such as the `9999` some
  systems write for "unknown", is rejected rather than stored and left unclassified (999).
- Grade: ICD-O-3 writes a 6th digit for grade or differentiation (`8500/33`, a poorly differentiated
  ductal carcinoma), and registries separate it as they like (`8500/3 3`, `8500/3-3`, `8500/3.3`,
  `8500/3/3`, `850033`). It is read, never taken for a behaviour: 1-4 grade I-IV, 5-8 the cell line
  of a lymphoma or leukaemia (T, B, null, NK), 9 not determined; any other digit (`0`) is refused.
- Behaviour: ICD-O-3 defines 0, 1, 2, 3, 6 and 9, but 6 (metastatic site) and 9 (uncertain
  whether primary or metastatic) describe a specimen, not a primary tumour, and registries
  code primaries only; the warehouse therefore accepts 0-3 and rejects 6 and 9 with a hint. So 3 is the one
  malignant behaviour the warehouse holds (`MALIGNANT_BEHAVIOUR`), the one the marts' `is_malignant`
  (warehouse/mart_functions.sql) counts.
- Digits are ASCII 0-9 only. A code typed with other digits (fullwidth `９５１０/3` from an East Asian input
  method, Arabic-Indic digits) is refused: stored as written it would match no ICCC-3 rule (999, silently).
- Topography: a 3-character category alone (`C71`) is rejected, not read as `C71.9`: ICCC-3
  splits some categories by subsite (C72.3 optic nerve) and some have no `.9` (C38, C76).
- Topography: checked against the subsites ICD-O-3 has (`SUBSITES`, the codes alone, no terms).
  The categories C00-C80 exclude C27-C29, C35, C36, C43, C45, C46, C59, C78 and C79 (ICD-10-only
  or unused numbers), and many categories have one subsite (C73.9 thyroid, C56.9 ovary, C64.9
  kidney): a `C73.0` is rejected, as ICCC-3 would leave a thyroid carcinoma there unclassified
  (999), and `C74.5` too, though ICCC-3's range C74.0-C74.9 would classify it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VALID_BEHAVIOURS = frozenset({"0", "1", "2", "3"})
MALIGNANT_BEHAVIOUR = "3"  # the malignant one of VALID_BEHAVIOURS, as is_malignant (mart_functions.sql) counts
VALID_GRADES = frozenset("123456789")
GRADES = "1-4 grade I-IV, 5 T-cell, 6 B-cell, 7 null cell, 8 NK cell, 9 not determined"
FIRST_HISTOLOGY, LAST_HISTOLOGY = 8000, 9993
# ICD-O-3 topography: category -> the 4th characters it has (as ICD-10 chapter II, with C42, C77.x
# and C80.9 as ICD-O-3 defines them; C14.1 was dropped in ICD-O-3).
SUBSITES: dict[int, str] = {
    0: "012345689", 1: "9", 2: "0123489", 3: "019", 4: "0189", 5: "01289", 6: "01289", 7: "9", 8: "0189",
    9: "0189", 10: "0123489", 11: "012389", 12: "9", 13: "01289", 14: "028", 15: "01234589", 16: "012345689",
    17: "012389", 18: "0123456789", 19: "9", 20: "9", 21: "0128", 22: "01", 23: "9", 24: "0189",
    25: "01234789", 26: "089", 30: "01", 31: "012389", 32: "012389", 33: "9", 34: "012389", 37: "9",
    38: "012348", 39: "089", 40: "012389", 41: "0123489", 42: "01234", 44: "0123456789", 47: "012345689",
    48: "0128", 49: "012345689", 50: "012345689", 51: "01289", 52: "9", 53: "0189", 54: "012389", 55: "9",
    56: "9", 57: "01234789", 58: "9", 60: "01289", 61: "9", 62: "019", 63: "012789", 64: "9", 65: "9",
    66: "9", 67: "0123456789", 68: "0189", 69: "012345689", 70: "019", 71: "0123456789", 72: "01234589",
    73: "9", 74: "019", 75: "01234589", 76: "01234578", 77: "01234589", 80: "9",
}

# Digits are [0-9], not \d: \d also matches other scripts' digits ('９５１０', fullwidth), which int() reads
# but the ICCC-3 table, keyed by ASCII codes, does not: such a code must be refused, not stored and left 999.
_MORPHOLOGY = re.compile(r"(?:M\s*-?\s*)?(?P<histology>[0-9]{4})\s*(?:[/-]?\s*(?P<behaviour>[0-9])"
                         r"(?:\s*[/.-]?\s*(?P<grade>[0-9]))?)?", re.IGNORECASE)
_TOPOGRAPHY = re.compile(r"C\s*(?P<category>[0-9]{2})\s*\.?\s*(?P<subsite>[0-9])", re.IGNORECASE)
_CATEGORY_ONLY = re.compile(r"C\s*[0-9]{2}\s*\.?", re.IGNORECASE)
_MORPHOLOGY_EXPECTED = "expected NNNN/B (4 digits, behaviour 0-3), or NNNN/BG with a grade digit G 1-9"
_TOPOGRAPHY_EXPECTED = "expected Cnn.n (an ICD-O-3 site, C00.0-C80.9)"


class IcdO3Error(ValueError):
    """A code that is not valid ICD-O-3 as the warehouse accepts it; the message says what was expected."""


@dataclass(frozen=True)
class Morphology:
    histology: str  # 4 digits, e.g. "9510"
    behaviour: str | None  # "0".."3"; None when the source gave the histology alone
    grade: str | None = None  # "1".."9", the 6th digit of `8500/33`; None when the code has none


def parse_morphology(text: str, behaviour: str | None = None) -> Morphology:
    """Parse `9510/3`, `95103`, `M-9510/3`, `9510 / 3`, `9510-3`, or `9510` plus a separate behaviour;
    a grade digit may follow the behaviour (`8500/33`, `8500/3 3`, `8500/3-3`, `8500/3.3`, `850033`)."""
    match = _MORPHOLOGY.fullmatch(text.strip())
    if match is None:
        raise IcdO3Error(f"morphology '{text}': {_MORPHOLOGY_EXPECTED}{_other_digits(text)}")
    written = match["behaviour"]
    given = behaviour.strip() if behaviour is not None else ""
    if written is not None and given and given != written:
        raise IcdO3Error(f"morphology '{text}' has behaviour {written} but the behaviour given is '{behaviour}'")
    code = written or given or None
    if code is not None and code not in VALID_BEHAVIOURS:
        hint = (" (/6 is a metastatic site, /9 a tumour not known to be primary or metastatic: code the primary "
                "tumour, malignant /3)") if code in {"6", "9"} else ""
        raise IcdO3Error(f"morphology '{text}': behaviour '{code}' is not accepted, {_MORPHOLOGY_EXPECTED}{hint}"
                         f"{_other_digits(code)}")
    histology = match["histology"]
    if not FIRST_HISTOLOGY <= int(histology) <= LAST_HISTOLOGY:
        raise IcdO3Error(f"morphology '{text}': histology {histology} is not an ICD-O-3 histology "
                         f"({FIRST_HISTOLOGY}-{LAST_HISTOLOGY}), {_MORPHOLOGY_EXPECTED}")
    grade = match["grade"]
    if grade is not None and grade not in VALID_GRADES:
        raise IcdO3Error(f"morphology '{text}': grade '{grade}' is not an ICD-O-3 grade ({GRADES})")
    return Morphology(histology, code, grade)


def parse_grade(text: str) -> str | None:
    """The grade of `8500/33` (however separated), or a grade written alone (`3`); None for a morphology
    written without one (`8500/3`): the source did not grade that tumour."""
    raw = text.strip()
    if len(raw) > 1 and _MORPHOLOGY.fullmatch(raw):
        return parse_morphology(raw).grade
    if raw not in VALID_GRADES:
        raise IcdO3Error(f"grade '{text}' is not an ICD-O-3 grade ({GRADES}), nor a morphology NNNN/BG with one"
                         f"{_other_digits(text)}")
    return raw


def parse_topography(text: str) -> str:
    """Parse `C69.2`, `C692`, `c69.2` or ` C 69.2` into the dotted form `C69.2`."""
    match = _TOPOGRAPHY.fullmatch(text.strip())
    if match is None and _CATEGORY_ONLY.fullmatch(text.strip()):
        # Not read as Cnn.9: the ICCC-3 sites split categories (9380 is an astrocytoma at C72.3, another
        # glioma elsewhere in C72), and not every category has a .9 (C76, C38).
        raise IcdO3Error(f"topography '{text}': the subsite (4th character) is missing, {_TOPOGRAPHY_EXPECTED}")
    if match is None:
        raise IcdO3Error(f"topography '{text}': {_TOPOGRAPHY_EXPECTED}{_other_digits(text)}")
    category, subsite = int(match["category"]), match["subsite"]
    if category not in SUBSITES:
        raise IcdO3Error(
            f"topography '{text}': C{category:02d} is not an ICD-O-3 site category, {_TOPOGRAPHY_EXPECTED}")
    if subsite not in SUBSITES[category]:
        has = ", ".join(f"C{category:02d}.{s}" for s in SUBSITES[category])
        raise IcdO3Error(f"topography '{text}': C{category:02d}.{subsite} is not an ICD-O-3 site: "
                         f"C{category:02d} has {has}")
    return f"C{match['category']}.{subsite}"


def _other_digits(text: str) -> str:
    """A hint for a code that looks right but is typed with digits of another script (fullwidth `９`)."""
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        return " (it has digits other than 0-9, e.g. fullwidth ones: retype it with 0-9)"
    return ""


def topography_for_table(dotted: str) -> str:
    """`C69.2` -> `C692`, the undotted form the ICCC tables use."""
    return dotted.replace(".", "")
