"""ICCC-3 classification of childhood cancers from the IARC 2017 recode table.

The table (`vocab/iccc3_iarc2017.csv`) is a verbatim copy of imsweb/algorithms
`src/main/resources/iccc/iccc-data-third-edition-iarc-2017.csv` at f8aad8d (BSD licence in
`vocab/LICENSE.imsweb_algorithms.txt`), itself parsed from SEER's ICCC pages. Each row is a
node: `Indentation` 0 a main group, 1 a subgroup, 2 a division. Rows with `Sites IN` and
`Hist IN` are rules; a case matches a rule when its topography, histology and behaviour are
all in the rule's lists, and, for a benign or borderline tumour (/0, /1), its site is intracranial or
intraspinal (`INTRACRANIAL_INTRASPINAL_SITES`; see "Scope" below). No two rules with different codes
overlap (checked at load), so a case gets at most one class; no match gives the `999` "Not
classified by SEER or in situ" class. `Group code` is the main-classification recode (main group
as 2 digits, then the subgroup letter as a digit: VIII(a) = 081, retinoblastoma V = 050), `Group
code extended` the extended recode (001-115).

Gotchas of the format:
- Topography is written without the dot (`C692` = C69.2); lists are comma-separated ranges.
- Line 77 (Chondrosarcomas) has a trailing comma in `Hist IN`; that one empty token is ignored.
- An earlier upstream version (04f7305) went through a spreadsheet that turned code lists into
  numbers (`98,359,836`), so the loader rejects any token that is not `dddd`/`dddd-dddd` or
  `Cddd`/`Cddd-Cddd`, naming the file line and cell, instead of classifying wrongly.
- `Sites OUT`/`Hist OUT` are empty in this table; a table that uses them is rejected rather
  than misread.

Scope: ICCC-3 classifies malignant tumours, and benign and borderline ones (/0, /1) only when they are
intracranial or intraspinal (C70.0-C72.9, C75.1-C75.3; the table's germ cell rows X(a) and its
unspecified row III(f) name exactly these sites). The table's other group III rows accept /0-/1 at
C00.0-C80.9: SEER, for whose data it was written, registers non-malignant tumours only at those sites, so
the rows never needed the restriction. A trial or hospital source registers them anywhere: a benign
meningioma 9530/0 of the skull bone (C41.0), a myxopapillary ependymoma 9394/1 of the sacrococcygeal soft
tissue (C49.5) or a ganglioglioma 9505/1 at an unknown site (C80.9) would have been counted as CNS tumours
(III) in incidence and survival. They are 999 (not classified), as any benign tumour outside the CNS is.
A tumour whose behaviour is not known (a histology written alone, 8260, and no behaviour given) is not
classified at all (NULL, not 999) rather than assumed malignant: the behaviour decides the class (8260/0 at
the thyroid is an adenoma, 999; 8260/3 a carcinoma, XI(b)), and most rows of the table take /3 alone.
DIAG-BEHAVIOUR-PRESENT (warehouse/checks) asks the centre for it, naming the record and the field.

Extensions (`EXTENSIONS`): ICCC-3 classifies malignant tumours (behaviour /3, and /0-/1 only for
intracranial and intraspinal tumours), so a borderline tumour that paediatric oncology treats as a
cancer falls out as 999. Where a study enrols such a tumour, it is classified with its malignant
counterpart of the same histology, and the class says so (`Iccc3Class.extension`, the reason); the
IARC table itself is never edited. `classify(..., extensions=False)` gives the table's answer (in the
scope above) alone.
- 8825/1, inflammatory myofibroblastic tumour (IMT): the IARC 2017 table puts 8825/3
  (myofibroblastic sarcoma, epithelioid inflammatory myofibroblastic sarcoma) in IX(b)
  "Fibrosarcomas, peripheral nerve sheath tumors and other fibrous neoplasms", extended 056
  "Fibroblastic and myofibroblastic tumors", at every site; 8825/1 gets that class too, as the
  crizotinib trial in ALK/ROS1-rearranged IMT (and the EpSSG soft-tissue sarcoma protocols) treat it.

Very rare tumours (`is_very_rare`): the paediatric definition of the European EXPeRT group and
the Joint Action on Rare Cancers (incidence < 2 per million per year; Ferrari A et al., Eur J
Cancer 2019;110:120-6). This is a maintained list, not read from a table: every tumour in ICCC-3
main group XI (adrenocortical, thyroid, nasopharyngeal and skin carcinomas, melanoma, other
carcinomas) plus the entities elsewhere in `VERY_RARE_HISTOLOGY_RANGES`. Malignant rhabdoid
tumours are deliberately left out (they have their own paediatric protocols).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from etl.transform.icdo3 import IcdO3Error, parse_morphology, parse_topography

DEFAULT_TABLE_PATH = Path(__file__).resolve().parent / "vocab" / "iccc3_iarc2017.csv"
NOT_CLASSIFIED = "999"
FRAME_COLUMNS = ["iccc3_code", "iccc3_extended", "iccc3_group", "iccc3_subgroup", "is_very_rare", "iccc3_extension"]

# ICCC-3 takes benign and borderline tumours (/0, /1) only inside the skull and spinal canal: C70.0-C72.9
# and C75.1-C75.3, the sites of the table's own intracranial rows (III(f), X(a)). Its group III rows accept
# /0-/1 "at C00.0-C80.9" because SEER, whose table it is, registers non-malignant tumours at those sites only.
NON_MALIGNANT_BEHAVIOURS = frozenset({"0", "1"})
INTRACRANIAL_INTRASPINAL_SITES: tuple[tuple[int, int], ...] = ((700, 729), (751, 753))

VERY_RARE_GROUPS = frozenset({"XI"})
# (first, last, what) histology ranges, very rare wherever ICCC-3 puts them (if it classifies them).
VERY_RARE_HISTOLOGY_RANGES: tuple[tuple[int, int, str], ...] = (
    (8023, 8023, "NUT carcinoma"),
    (8580, 8586, "thymoma and thymic carcinoma"),
    (8590, 8671, "gonadal sex-cord stromal tumours (ICCC-3 X(e))"),
    (8806, 8806, "desmoplastic small round cell tumour"),
    (8936, 8936, "gastrointestinal stromal tumour"),
    (8971, 8971, "pancreatoblastoma"),
    (8973, 8973, "pleuropulmonary blastoma"),
    (9370, 9372, "chordoma"),
)
VERY_RARE_HISTOLOGIES = frozenset(
    f"{code:04d}" for first, last, _ in VERY_RARE_HISTOLOGY_RANGES for code in range(first, last + 1)
)

_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
_HIST_TOKEN = re.compile(r"(\d{4})(?:-(\d{4}))?")
_SITE_TOKEN = re.compile(r"C(\d{3})(?:-C(\d{3}))?")
_BEHAVIOUR_TOKEN = re.compile(r"(\d)(?:-(\d))?")
_CODE = re.compile(r"\d{3}")
_REQUIRED_COLUMNS = ("Group Name", "Indentation", "Sites IN", "Sites OUT", "Hist IN", "Hist OUT",
                     "Group code", "Group content", "Group code extended", "Behavior IN")


@dataclass(frozen=True)
class Iccc3Class:
    code: str  # main-classification recode "011".."122", "050" retinoblastoma, "999" not classified
    extended: str  # extended recode "001".."115", "999"
    group: str | None  # main group "I".."XII"; None for 999
    subgroup: str | None  # "I(a)", "V" for retinoblastoma (no subgroups); None for 999
    name: str  # Group Name of the matching row
    extension: str | None = None  # why, when the class comes from EXTENSIONS and not from the IARC table


@dataclass(frozen=True)
class Iccc3Extension:
    """A (histology, behaviour) the IARC table leaves out, classified as the same histology with another behaviour."""

    histology: str
    behaviour: str
    classified_as_behaviour: str
    reason: str


EXTENSIONS: dict[tuple[str, str], Iccc3Extension] = {(e.histology, e.behaviour): e for e in (
    Iccc3Extension("8825", "1", "3",
                   "RTW extension: inflammatory myofibroblastic tumour 8825/1 classified with 8825/3 "
                   "(ICCC-3 IARC 2017 leaves behaviour /1 out)"),
)}


@dataclass(frozen=True)
class _Rule:
    line: int
    sites: tuple[tuple[int, int], ...]  # C692 -> 692
    behaviours: frozenset[str]
    result: Iccc3Class

    def matches_site(self, site: int) -> bool:
        return _in_ranges(site, self.sites)


@dataclass(frozen=True)
class Iccc3Table:
    """A loaded recode table: rules indexed by histology, and the names of groups and subgroups."""

    path: Path
    rules_by_histology: dict[str, tuple[_Rule, ...]]
    not_classified: Iccc3Class
    group_names: dict[str, str]  # "I" / "I(a)" / "V" -> name from the Indentation 0/1 rows

    def lookup(self, histology: str, behaviour: str, site: int) -> Iccc3Class:
        if behaviour in NON_MALIGNANT_BEHAVIOURS and not _in_ranges(site, INTRACRANIAL_INTRASPINAL_SITES):
            return self.not_classified
        for rule in self.rules_by_histology.get(histology, ()):
            if behaviour in rule.behaviours and rule.matches_site(site):
                return rule.result
        return self.not_classified


def group_of(code: str) -> tuple[str | None, str | None]:
    """Main group and subgroup of a main-classification recode: "081" -> ("VIII", "VIII(a)")."""
    if code == NOT_CLASSIFIED:
        return None, None
    number, letter = int(code[:2]), int(code[2])
    if not 1 <= number <= len(_ROMAN) or (letter == 0) != (code == "050"):
        raise ValueError(f"ICCC-3 recode '{code}' is not a main group 01-12 followed by a subgroup letter 1-9")
    group = _ROMAN[number - 1]
    return group, group if letter == 0 else f"{group}({chr(ord('a') + letter - 1)})"


def load_iccc3_table(path: Path | None = None) -> Iccc3Table:
    """Read and check an IARC-2017-layout ICCC-3 table; any malformed cell raises naming line and column."""
    path = path or DEFAULT_TABLE_PATH
    rules: list[tuple[int, int, _Rule]] = []  # (first, last histology, rule)
    group_names: dict[str, str] = {}
    not_classified: Iccc3Class | None = None
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader)]
        missing = [name for name in _REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{path}: line 1: missing columns {missing} (an IARC 2017 ICCC-3 table has {header})")
        for cells in reader:
            where = f"{path}: line {reader.line_num}"
            if len(cells) != len(header):
                raise ValueError(f"{where}: {len(cells)} cells, expected {len(header)} like the header")
            row = dict(zip(header, (cell.strip() for cell in cells)))
            code, extended = row["Group code"], row["Group code extended"]
            for column in ("Group code", "Group code extended"):
                if row[column] and not _CODE.fullmatch(row[column]):
                    raise ValueError(f"{where}, column '{column}': '{row[column]}' is not a 3-digit code")
            for token in _tokens(row["Group content"], where, "Group content"):
                if not _CODE.fullmatch(token):
                    raise ValueError(f"{where}, column 'Group content': '{token}' is not a 3-digit code")
            if row["Sites OUT"] or row["Hist OUT"]:
                raise ValueError(f"{where}: Sites OUT / Hist OUT exclusions are not supported (expected empty)")
            if code == NOT_CLASSIFIED:
                not_classified = Iccc3Class(NOT_CLASSIFIED, extended or NOT_CLASSIFIED, None, None, row["Group Name"])
                continue
            if row["Indentation"] in {"0", "1"}:
                # A group row names its group through the recodes in Group content, or its own code.
                for member in _tokens(row["Group content"], where, "Group content") or [code]:
                    group, subgroup = _group_of(member, where)
                    name_key = group if row["Indentation"] == "0" else subgroup
                    if name_key is not None:
                        group_names.setdefault(name_key, row["Group Name"])
            if not (row["Sites IN"] or row["Hist IN"]):
                continue
            if not (row["Sites IN"] and row["Hist IN"] and code and extended and row["Behavior IN"]):
                raise ValueError(f"{where}: a rule needs Sites IN, Hist IN, Behavior IN, Group code and "
                                 "Group code extended")
            group, subgroup = _group_of(code, where)
            rule = _Rule(
                line=reader.line_num,
                sites=tuple(_ranges(row["Sites IN"], _SITE_TOKEN, where, "Sites IN", "Cddd or Cddd-Cddd")),
                behaviours=frozenset(
                    str(b) for first, last in _ranges(row["Behavior IN"], _BEHAVIOUR_TOKEN, where, "Behavior IN",
                                                      "d or d-d")
                    for b in range(first, last + 1)),
                result=Iccc3Class(code, extended, group, subgroup, row["Group Name"]),
            )
            rules.extend((first, last, rule) for first, last in
                         _ranges(row["Hist IN"], _HIST_TOKEN, where, "Hist IN", "dddd or dddd-dddd"))
    if not_classified is None:
        raise ValueError(f"{path}: no '{NOT_CLASSIFIED}' (not classified) row")
    by_histology: dict[str, list[_Rule]] = {}
    for first, last, rule in rules:
        for histology in range(first, last + 1):
            bucket = by_histology.setdefault(f"{histology:04d}", [])
            if not bucket or bucket[-1] is not rule:  # a rule's own ranges may touch
                bucket.append(rule)
    _check_no_overlap(path, by_histology)
    return Iccc3Table(path, {h: tuple(r) for h, r in by_histology.items()}, not_classified, group_names)


@cache
def default_table() -> Iccc3Table:
    """The packaged IARC 2017 table, loaded once per process."""
    return load_iccc3_table()


def classify(histology: str, behaviour: str | None, topography: str, table: Iccc3Table | None = None,
             *, extensions: bool = True) -> Iccc3Class:
    """ICCC-3 class of one tumour; `histology` may carry the behaviour (`9510/3`), topography may be undotted.

    Returns the 999 class when no rule (nor, with `extensions`, an extension) matches; raises
    `IcdO3Error` on an invalid or behaviour-less code.
    """
    morphology = parse_morphology(histology, behaviour)
    if morphology.behaviour is None:
        raise IcdO3Error(f"morphology '{histology}': a behaviour (0-3) is needed to classify under ICCC-3 IARC 2017")
    site = int(parse_topography(topography)[1:].replace(".", ""))
    table = table or default_table()
    found = table.lookup(morphology.histology, morphology.behaviour, site)
    extension = EXTENSIONS.get((morphology.histology, morphology.behaviour)) if extensions else None
    if found.code != NOT_CLASSIFIED or extension is None:
        return found
    counterpart = table.lookup(morphology.histology, extension.classified_as_behaviour, site)
    if counterpart.code == NOT_CLASSIFIED:
        return found
    return replace(counterpart, extension=extension.reason)


def is_very_rare(cls: Iccc3Class, histology: str) -> bool:
    """Whether a classified tumour is a paediatric very rare tumour (see the module docstring)."""
    if cls.code == NOT_CLASSIFIED:
        return False
    return cls.group in VERY_RARE_GROUPS or parse_morphology(histology).histology in VERY_RARE_HISTOLOGIES


def classify_frame(
    df: pd.DataFrame,
    *,
    histology: str = "icdo3_morphology",
    behaviour: str | None = "icdo3_behaviour",
    topography: str = "icdo3_topography",
    table: Iccc3Table | None = None,
    extensions: bool = True,
) -> pd.DataFrame:
    """ICCC-3 columns for each diagnosis row (same index); rows missing any input get NA, not 999: a
    histology without a behaviour too (`8260`, no behaviour column), which is not assumed /3 (see "Scope").

    `extensions` as in `classify`: `iccc3_extension` says why a row was classified through one
    (NULL when the IARC table classified it).
    `behaviour=None` when the histology column carries it (`9510/3`). Invalid codes raise
    `IcdO3Error` naming the row: validate them upstream (harmonise quarantines them).
    """
    table = table or default_table()
    behaviours = df[behaviour] if behaviour is not None else pd.Series(None, index=df.index, dtype=object)
    cache: dict[tuple[str | None, str | None, str | None], tuple[Any, ...]] = {}
    rows: list[tuple[Any, ...]] = []
    for label, raw_histology, raw_behaviour, raw_topography in zip(
            df.index, df[histology], behaviours, df[topography]):
        key = (_text(raw_histology), _text(raw_behaviour), _text(raw_topography))
        if key not in cache:  # ~10^5 diagnoses share a few hundred distinct codes
            cache[key] = _classify_row(label, *key, table, extensions)
        rows.append(cache[key])
    out = pd.DataFrame(rows, index=df.index, columns=FRAME_COLUMNS, dtype=object)
    out["is_very_rare"] = out["is_very_rare"].astype("boolean")
    return out


def _classify_row(label: Any, histology: str | None, behaviour: str | None, topography: str | None,
                  table: Iccc3Table, extensions: bool) -> tuple[Any, ...]:
    if histology is None or topography is None:
        return None, None, None, None, pd.NA, None
    try:
        morphology = parse_morphology(histology, behaviour)
        if morphology.behaviour is None:
            return None, None, None, None, pd.NA, None
        cls = classify(morphology.histology, morphology.behaviour, topography, table, extensions=extensions)
    except IcdO3Error as exc:
        raise IcdO3Error(f"row {label!r}: {exc}") from exc
    return (cls.code, cls.extended, cls.group, cls.subgroup, is_very_rare(cls, morphology.histology),
            cls.extension)


def _in_ranges(site: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Whether a site (C692 -> 692) lies in one of the (first, last) ranges, both ends included."""
    return any(first <= site <= last for first, last in ranges)


def _text(value: Any) -> str | None:
    """A cell as stripped text; None for NULL/NaN/blank. Integral floats (3.0 from a NaN-holed column) lose '.0'."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _tokens(cell: str, where: str, column: str) -> list[str]:
    if not cell:
        return []
    tokens = [token.strip() for token in cell.split(",")]
    if tokens[-1] == "" and len(tokens) > 1:
        tokens.pop()  # a trailing comma (known at line 77 of the IARC 2017 table) adds nothing
    if "" in tokens:
        raise ValueError(f"{where}, column '{column}': empty item in '{cell}'")
    return tokens


def _ranges(cell: str, token_pattern: re.Pattern[str], where: str, column: str,
            expected: str) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for token in _tokens(cell, where, column):
        match = token_pattern.fullmatch(token)
        if match is None:
            raise ValueError(f"{where}, column '{column}': '{token}' in '{cell}' is not {expected}")
        first, last = int(match[1]), int(match[2] or match[1])
        if first > last:
            raise ValueError(f"{where}, column '{column}': range '{token}' runs backwards")
        ranges.append((first, last))
    return ranges


def _group_of(code: str, where: str) -> tuple[str | None, str | None]:
    try:
        return group_of(code)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _check_no_overlap(path: Path, by_histology: dict[str, list[_Rule]]) -> None:
    # First match wins in lookup(), which is only safe while rules of different codes never overlap.
    for histology, bucket in by_histology.items():
        for i, rule in enumerate(bucket):
            for other in bucket[i + 1:]:
                if (rule.result.code, rule.result.extended) == (other.result.code, other.result.extended):
                    continue
                if rule.behaviours & other.behaviours and any(
                        first <= o_last and o_first <= last
                        for first, last in rule.sites for o_first, o_last in other.sites):
                    raise ValueError(f"{path}: lines {rule.line} and {other.line} both classify histology "
                                     f"{histology} at an overlapping site and behaviour")
