"""Profiles of a file's record sets: per column, what its values look like, without giving them away.

The inference is deliberately simple and explainable: a column is `integer`, `decimal` (with its
mark) when at least 95 % of its non-empty values are numbers; `date` when at least 80 % match a
known layout (the rest are sentinels such as 99/99/9999 or codes the format's value labels name,
which are left out of that share, and other values, shown only by their shape); `code` when
few distinct values repeat and are no free text (or the format declares a code list); `text`
otherwise; `empty` when no value is filled in. Free text is told by its column's name or label
(notes, comments, remarks), a long value, or values written as sentences (`is_free_text`), never
by repetition: a note reading `città di Forlì` on six rows is no code.

Privacy: the files hold patient numbers, names and birth dates. A value seen fewer than
`MIN_SHOWN` times is never shown; neither is any value of a date column, of free text, or of a
column that looks like an identifier (by its name or label, or because most of its values are
distinct): for those only counts, layouts and shapes are given. Such a column's code list is counted, not
listed, and so is a SAS, SPSS or Stata table of more value labels than the night's notices list
(etl/identifying.py), whatever its column's name: it may name each patient.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pandas as pd

from etl.extract.readstat import codes_said, listed
from etl.identifying import MANY_LABELS, looks_identifying, too_many_labels
from etl.onboard.reading import ColumnInfo, FileRead, data_columns
from etl.transform.values import MONTH_ABBREVIATIONS

MIN_SHOWN = 5  # a value seen fewer times than this is masked everywhere
TOP_VALUES = 10
CODE_VALUES = 30  # a code-like column keeps more of its (frequent) values, for `rtw scaffold`
FREE_TEXT = 40  # a text column with longer values is free text: its values are never shown
PROSE_WORDS = 6  # a value of this many words is a sentence, however it is punctuated
SENTENCE_SHARE = 0.2  # of a column's distinct values, sentences enough to make it free text
NUMBER_SHARE = 0.95
DATE_SHARE = 0.8
SHAPE_SHARE = 0.9  # the share of a column's values written like ICD-O-3 codes for it to be shaped so (the rest errors)
# The formats whose code lists are a dataset's value labels (etl/extract/readstat.py): a registry's own tables,
# which may label each patient. An ODM CodeList is the study's metadata (its countries, its centres), kept whole.
_VALUE_LABELLED = frozenset({"sas", "spss", "stata"})
_MANY_LABELS_REASON = f"more than {MANY_LABELS} value labels: so long a table may name each patient"

_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+([.,])\d*|([.,])\d+)")
# Names and labels of free-text columns in our sources' languages: notes, comments, remarks, "other, specify",
# free text (note, nota, Notiz, notitie, commento, Kommentar, comentario, remarque, Bemerkung, Anmerkung, osservazioni,
# observaciones, opmerking, toelichting, specificare, préciser, SDTM's COVAL).
_FREE_TEXT_NAME = re.compile(
    r"not(?:e|es|a|as|iz|itie|ities|izen)(?![a-z])|comm?ent|komment|remar|bemerk|anmerk|osserv|observaci|annot|"
    r"opmerk|toelicht|specif|pr[ée]ciser|precisare|free.?text|freitext|texte?.?libre|testo.?libero|vrije.?tekst|"
    r"(?<![a-z])coval(?![a-z])", re.IGNORECASE)
_WORDS = re.compile(r"\S*[^\W\d_]\S*")  # runs between spaces with a letter: p.G12D and [link=x.test] are one each
# A word followed by a sentence's punctuation ("trasferito, vedi cartella."; not p.G12D, nor a code's "CR: ...").
_PUNCTUATED = re.compile(r"[^\W\d_][.,;!?](?:\s|$)")
# A patient or record number: letters and digits, a digit among them, with a letter or cut by - _ / .
# ("ILTB-00012", "01-0001"); plain numbers are measurements as often.
_NUMBER_SHAPED = re.compile(r"(?=[^\d]*\d)(?=.*[A-Za-z_/.-])[A-Za-z0-9]+(?:[-_/.][A-Za-z0-9]+)*")
# How ICD-O-3 codes are written, as etl/transform/icdo3.py reads them, whether or not each is a valid code (a
# `9999` or a `C73.0` is an error of the data, not another kind of column): a morphology 8000-9999 with or without
# its behaviour and grade (8825/3, 88253, M-8825/3, 8500/33, 9500); a topography C00.0-C80.9 with or without the dot
# (C74.0, C740; not C01, as centres are numbered too); a behaviour, one digit ICD-O-3 defines.
_MORPHOLOGY_SHAPE = re.compile(r"(?:M\s*-?\s*)?[89]\d{3}(?:(?P<behaviour>\s*[/-]?\s*\d)(?P<grade>\s*[/.-]?\s*\d)?)?",
                               re.IGNORECASE)
# One digit is a behaviour (0-3, 6, 9), a grade (1-9) or, 1-3, 6 and 9, either: the first shape that fits.
_ICDO3_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("topography", re.compile(r"C\s*[0-8]\d\s*\.?\s*\d", re.IGNORECASE)),
    ("behaviour or grade", re.compile(r"[12369]")),
    ("behaviour", re.compile(r"[012369]")),
    ("grade", re.compile(r"[1-9]")),
)
_ONE_DIGIT = frozenset({"behaviour or grade", "behaviour", "grade"})
#: how each shape is written, for people (`rtw profile`'s ICD-O-3 column)
ICDO3_SHAPE_TEXT = {"morphology": "morphology 9500/3", "graded morphology": "morphology 9500/31 (with grade)",
                    "histology": "histology 9500", "topography": "topography C74.0",
                    "behaviour or grade": "one digit (behaviour or grade)", "behaviour": "one digit (behaviour)",
                    "grade": "one digit (grade)"}
GRADED_SHARE = 0.1  # of a column's morphologies with a behaviour, those with a grade too for it to be graded
# ICD-O-3 columns, by their name or label in our sources' languages (MORPH, morfologia, histologie, istologia; TOPO,
# topografia, "Primary site", sede, Lokalisation; comportamento, comportement, Dignität, gedrag; grade, grado, Grad,
# Grading, graad, differentiation, differenziazione, Differenzierung, diferenciación) and the codes their values are
# shaped as (`icdo3_shape`): read with the type that reads any code, not a list of those seen. ICD-O / CIM-O /
# CIE-O alone name either code, which the values' shape tells.
_ICDO3 = r"|icd.?o|cim.?o|cie.?o"
_ICDO3_TYPES: tuple[tuple[str, frozenset[str], re.Pattern[str]], ...] = (
    ("icdo3_histology", frozenset({"histology", "morphology", "graded morphology"}),
     re.compile(r"morph|morfo|histol|histot|istol|istot" + _ICDO3, re.IGNORECASE)),
    ("icdo3_topography", frozenset({"topography"}),
     re.compile(r"topo|site|sede|sitio|locali[sz]|lokali[sz]|localiz" + _ICDO3, re.IGNORECASE)),
    ("icdo3_behaviour", frozenset({"behaviour or grade", "behaviour"}),
     re.compile(r"behavio|comport|dignit|verhalt|gedrag", re.IGNORECASE)),
    ("icdo3_grade", frozenset({"behaviour or grade", "grade"}),
     re.compile(r"grad(?:e|o|ing|ering|ierung)?(?![a-z])|graad|dif{1,2}[eé]ren[tcz]i", re.IGNORECASE)),
)
# An adverse event's grade is CTCAE's (1-5: adverse_event.ctcae_grade), not ICD-O-3's, by the column's name or
# label or its record set's (AETOXGR "Standard Toxicity Grade", "CTCAE grade", AE.GRADE, grado_tossicita; a sheet
# AdverseEvents, Tossicità, Nebenwirkungen, EI, bijwerkingen).
_ADVERSE = re.compile(r"ctc|tox|tossic|advers|avvers|ind[eé]sir|nebenwirk|unerw[uü]nscht|bijwerk|ongewenst|"
                      r"(?<![a-z])s?ae|(?<![a-z])(?:ei|ea|ue)(?![a-z])", re.IGNORECASE)
_UNKNOWN_PART = r"UK|UNK|NK|XX|UN"
_MARKER = re.compile(rf"\b({_UNKNOWN_PART})\b")
# "Unknown date" placeholders (99/99/9999, 9999-99-99, 00/00/0000): not personal, so always shown.
_SENTINEL = re.compile(r"(9+|0+)([/.\-](9+|0+))*")


@dataclass(frozen=True)
class ValueCount:
    value: str
    count: int


@dataclass(frozen=True)
class DatePattern:
    pattern: str  # strptime-style, as a mapping's date format
    count: int
    share: float  # of the column's non-empty values


@dataclass(frozen=True)
class ColumnProfile:
    """One column of one record set."""

    name: str
    kind: str  # empty / integer / decimal / date / code / text
    detail: str  # one line for people: "decimal mark ','", "%d/%m/%Y 97 %, %m/%Y 3 %"
    rows: int
    nulls: int
    distinct: int
    top_values: tuple[ValueCount, ...]  # only values seen at least MIN_SHOWN times
    masked_values: int  # distinct values not shown
    hidden_reason: str | None  # why no value is shown at all: date, identifier-like name, free text, mostly distinct
    date_patterns: tuple[DatePattern, ...] = ()
    unparsed_shapes: tuple[ValueCount, ...] = ()  # date columns: shapes (9 for a digit) of the other values
    sentinels: tuple[ValueCount, ...] = ()  # date columns: placeholders such as 99/99/9999
    unknown_parts: tuple[str, ...] = ()  # date columns: how an unknown day or month is written (UK, NK)
    decimal_mark: str | None = None
    label: str | None = None
    declared_type: str | None = None
    code_list: Mapping[str, str | None] | None = None
    icdo3_shape: str | None = None  # morphology / topography / behaviour ...: how (nearly) all values are written
    icdo3_type: str | None = None  # the ICD-O-3 type its name (or label) and shape call for (`icdo3_type`)
    labels_counted: str | None = None  # why its value labels are counted, not listed, though its values may be shown

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def is_identifying(self) -> bool:
        return self.hidden_reason is not None and self.kind != "date"

    @property
    def code_list_hidden(self) -> str | None:
        """Why the column's code list is counted, neither listed nor drafted: its values identify a person, or it
        is a table of value labels too long to list (`labels_counted`); None when it may be listed."""
        return self.hidden_reason if self.is_identifying else self.labels_counted


@dataclass(frozen=True)
class RecordSetProfile:
    name: str
    records: int
    columns: tuple[ColumnProfile, ...]


@dataclass(frozen=True)
class FileProfile:
    file_name: str
    format: str
    sha256: str
    notes: tuple[str, ...]  # what the format declares (encoding, labels, ItemDefs)
    notices: tuple[str, ...]  # what the reader noticed
    record_sets: tuple[RecordSetProfile, ...]


# -- dates ---------------------------------------------------------------------------------------
def _part(name: str, digits: str) -> str:
    return rf"(?P<{name}>{digits}|{_UNKNOWN_PART})"


_D, _M, _Y = _part("d", r"\d{1,2}"), _part("m", r"\d{1,2}"), r"(?P<Y>\d{4})"
_D2, _M2 = _part("d", r"\d{2}"), _part("m", r"\d{2}")
_MON = f"(?P<b>(?i:{'|'.join(MONTH_ABBREVIATIONS)}))"  # %b: SAS's DATE9 21JUN2019, Oracle's 21-JUN-2019
_DATE_LAYOUTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((fmt, re.compile(regex)) for fmt, regex in (
    # Date-times as adapters and exports write them; a date field reads their date (see scaffold).
    ("%Y-%m-%dT%H:%M:%S", rf"{_Y}-{_M2}-{_D2}T\d{{2}}:\d{{2}}:\d{{2}}(\.\d+)?"),
    ("%Y-%m-%d %H:%M:%S", rf"{_Y}-{_M2}-{_D2} \d{{2}}:\d{{2}}:\d{{2}}(\.\d+)?"),
    ("%Y-%m-%dT%H:%M", rf"{_Y}-{_M2}-{_D2}T\d{{2}}:\d{{2}}"),
    ("%Y-%m-%d %H:%M", rf"{_Y}-{_M2}-{_D2} \d{{2}}:\d{{2}}"),
    ("%Y-%m-%d", rf"{_Y}-{_M2}-{_D2}"),
    ("%Y/%m/%d", rf"{_Y}/{_M2}/{_D2}"),
    ("%Y%m%d", r"(?P<Y>(19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})"),
    ("%Y-%m", rf"{_Y}-{_M2}"),
    ("slash", rf"(?P<a>\d{{1,2}}|{_UNKNOWN_PART})/(?P<b>\d{{1,2}}|{_UNKNOWN_PART})/{_Y}"),
    ("%d%b%Y", rf"{_D}{_MON}{_Y}"),
    ("%d-%b-%Y", rf"{_D}-{_MON}-{_Y}"),
    ("%d %b %Y", rf"{_D} {_MON} {_Y}"),
    ("%d.%m.%Y", rf"{_D}\.{_M}\.{_Y}"),
    ("%d-%m-%Y", rf"{_D}-{_M}-{_Y}"),
    ("%m/%Y", rf"{_M}/{_Y}"),
    ("%m.%Y", rf"{_M}\.{_Y}"),
    ("%m-%Y", rf"{_M}-{_Y}"),
    ("%Y", r"(?P<Y>(18|19|20)\d{2})"),
))


def _number(text: str | None, highest: int) -> bool:
    """A day or month part: a number in range, 0/00 (unknown) or an unknown marker."""
    if text is None or not text.isdigit():
        return True
    return 0 <= int(text) <= highest


def date_layout_of(text: str) -> str | None:
    """The date layout a value is written in ('%d/%m/%Y', ...; 'slash' when d/m and m/d both fit)."""
    for layout, regex in _DATE_LAYOUTS:
        match = regex.fullmatch(text)
        if not match:
            continue
        parts = match.groupdict()
        if not 1800 <= int(parts["Y"]) <= 2100:
            return None
        if layout == "slash":
            first, second = parts["a"], parts["b"]
            as_dmy = _number(first, 31) and _number(second, 12)
            as_mdy = _number(first, 12) and _number(second, 31)
            if as_dmy and as_mdy:
                return "slash"
            return "%d/%m/%Y" if as_dmy else "%m/%d/%Y" if as_mdy else None
        if _number(parts.get("d"), 31) and _number(parts.get("m"), 12):
            return layout
        return None
    return None


def shape_of(text: str) -> str:
    """A value with its digits as 9 and letters as x, except unknown-part markers: '31/UK/2019' -> '99/UK/9999'."""
    parts = re.split(rf"\b({_UNKNOWN_PART})\b", text)
    return "".join(part if i % 2 else re.sub(r"[^\W\d_]", "x", re.sub(r"\d", "9", part))
                   for i, part in enumerate(parts))


def is_sentinel(text: str) -> bool:
    """An 'unknown date' placeholder: only 9s or only 0s, with date separators (99/99/9999)."""
    return len(text) >= 4 and bool(_SENTINEL.fullmatch(text))


def date_patterns(counts: Mapping[str, int]) -> tuple[tuple[DatePattern, ...], int]:
    """Layouts of the non-empty values (value -> count), most common first, and how many values no
    layout fits (sentinels such as 99/99/9999 left out of both).

    A d/m/yyyy value that fits both day-first and month-first counts as the layout the column's
    unambiguous values show (day-first when none do: our sources are European).
    """
    layouts: Counter[str] = Counter()
    unmatched = 0
    for value, count in counts.items():
        layout = date_layout_of(value)
        if layout is None:
            unmatched += 0 if is_sentinel(value) else count
        else:
            layouts[layout] += count
    if layouts["slash"]:
        month_first = layouts["%m/%d/%Y"] > layouts["%d/%m/%Y"]
        layouts["%m/%d/%Y" if month_first else "%d/%m/%Y"] += layouts.pop("slash")
    layouts.pop("slash", None)
    total = sum(n for v, n in counts.items() if not is_sentinel(v)) or 1
    found = tuple(DatePattern(layout, n, n / total) for layout, n in layouts.most_common() if n)
    return found, unmatched


# -- columns -------------------------------------------------------------------------------------
def _non_empty_counts(values: pd.Series) -> tuple[Counter[str], int]:
    text = values.astype("string").fillna("").str.strip()
    nulls = int((text == "").sum())
    counts = Counter({str(k): int(v) for k, v in text[text != ""].value_counts(sort=False).items()})
    return counts, nulls


def _looks_identifying(name: str, info: ColumnInfo | None) -> bool:
    return looks_identifying(name, info.label if info is not None else None)


def _sentence(value: str) -> bool:
    """Whether a value is written as a sentence: words punctuated as one, or many words."""
    words = len(_WORDS.findall(value))
    return words >= PROSE_WORDS or (words >= 2 and bool(_PUNCTUATED.search(value)))


def is_free_text(name: str, info: ColumnInfo | None, counts: Mapping[str, int]) -> bool:
    """Whether a text column holds free text, whose values are never shown nor drafted as codes, however often
    one repeats (a note reading `città di Forlì` on six rows names a place, not a code): its name or label says
    notes, comments or remarks; or a value is longer than `FREE_TEXT`; or a fifth of its distinct values are
    sentences. A code is a word or a few (M, ALIVE, Y, arm B, Stable disease, Completed as planned)."""
    label = info.label if info is not None else None
    if _FREE_TEXT_NAME.search(name) or (label and _FREE_TEXT_NAME.search(label)):
        return True
    if any(len(v) > FREE_TEXT for v in counts):
        return True
    return bool(counts) and sum(map(_sentence, counts)) >= SENTENCE_SHARE * len(counts)


def _numbers_mostly(counts: Counter[str]) -> bool:
    """Whether most distinct values are shaped like a patient or record number."""
    return sum(1 for v in counts if _NUMBER_SHAPED.fullmatch(v)) >= 0.9 * len(counts)


def icdo3_shape(counts: Mapping[str, int]) -> str | None:
    """The ICD-O-3 code the non-empty values (value -> count) are written as, at least `SHAPE_SHARE` of them:
    `morphology` (mostly with the behaviour, 9500/3), `graded morphology` (a tenth of those with a grade digit
    too, 9500/31), `histology` (mostly without, 9500), `topography`, or one digit: `behaviour` (0-3, 6, 9),
    `grade` (1-9) or `behaviour or grade` (1-3, 6, 9); None when they are not. Only the values' shape: a
    column of single digits is shaped like behaviours or grades whatever it holds, so what the column is for
    is judged by its name too (`icdo3_type`)."""
    filled = sum(counts.values())
    if not filled:
        return None
    morphologies = [(match, n) for v, n in counts.items() if (match := _MORPHOLOGY_SHAPE.fullmatch(v))]
    written = sum(n for _, n in morphologies)
    if written >= SHAPE_SHARE * filled:
        with_behaviour = sum(n for match, n in morphologies if match["behaviour"])
        graded = sum(n for match, n in morphologies if match["grade"])
        if with_behaviour * 2 < written:
            return "histology"
        return "graded morphology" if graded >= GRADED_SHARE * with_behaviour else "morphology"
    for shape, regex in _ICDO3_SHAPES:
        if sum(n for v, n in counts.items() if regex.fullmatch(v)) >= SHAPE_SHARE * filled:
            return shape
    return None


def icdo3_type(name: str, label: str | None, shape: str | None, record_set: str = "") -> str | None:
    """The ICD-O-3 type a column is read with (`icdo3_histology`, `icdo3_topography`, `icdo3_behaviour`,
    `icdo3_grade`): named or labelled like one and its values shaped like its codes; None otherwise (a centre's
    SITE of NL01, a column of digits named otherwise, a code list of local codes: NB01 -> 9500/3, an adverse
    event's CTCAE grade)."""
    if shape is None:
        return None
    for kind, shapes, names in _ICDO3_TYPES:
        if shape in shapes and (names.search(name) or (label and names.search(label))):
            if kind == "icdo3_grade" and _adverse(name, label, record_set):
                return None
            return kind
    return None


def is_ctcae_grade(column: ColumnProfile, record_set: str = "") -> bool:
    """Whether a column is an adverse event's CTCAE grade: named or labelled like a grade, in an adverse events'
    context (its name, label or record set: AETOXGR, "CTCAE grade", AE.GRADE), its values single digits."""
    grade = _ICDO3_TYPES[-1][2]
    return (column.icdo3_shape in ("behaviour or grade", "grade")
            and any(grade.search(text) or "toxgr" in text.lower() for text in (column.name, column.label or ""))
            and _adverse(column.name, column.label, record_set))


def _adverse(name: str, label: str | None, record_set: str) -> bool:
    """Whether a column's name, label or record set is an adverse event's (its grade is CTCAE's)."""
    return any(_ADVERSE.search(text) for text in (name, label or "", record_set))


def icdo3_text(column: ColumnProfile) -> str:
    """What `rtw profile` says of a column's ICD-O-3 shape, and the type `rtw scaffold` drafts it with:
    'morphology 9500/3: icdo3_histology; it writes the behaviour too (icdo3_behaviour)'. Empty for a column
    that is no ICD-O-3 code: one of digits named otherwise (sex 1/2) is shaped like a behaviour, and says
    nothing; a morphology or site named otherwise says why it is drafted as a code list."""
    shape = column.icdo3_shape
    if shape is None or (shape in _ONE_DIGIT and column.icdo3_type is None):
        return ""
    text = ICDO3_SHAPE_TEXT[shape]
    if column.icdo3_type is None:
        return f"{text}, not named like one: a code list"
    written = {"morphology": "; it writes the behaviour too (icdo3_behaviour)",
               "graded morphology": "; it writes the behaviour and grade too (icdo3_behaviour, icdo3_grade)"}
    return f"{text}: {column.icdo3_type}{written.get(shape, '') if column.icdo3_type == 'icdo3_histology' else ''}"


def _percent(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 or share == 0 else "<1%"


def counted(count: int, noun: str) -> str:
    """A count with its noun, singular for one (`1 record`, `2 records`), as every onboarding message words it."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def some(names: Iterable[object], limit: int = 12, separator: str = ", ") -> str:
    """The first `limit` names, then how many more (`a, b and 3 more`), as onboarding messages list them."""
    listed = [str(n) for n in names]
    return separator.join(listed[:limit]) + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def profile_column(name: str, values: pd.Series, info: ColumnInfo | None = None, *,
                   value_labels: bool = False) -> ColumnProfile:
    """Infer a column's type and summarise its values; rare and identifying values are not kept. `value_labels`:
    its code list is a dataset's value labels, counted when there are too many to list (`too_many_labels`)."""
    counts, nulls = _non_empty_counts(values)
    identifying = _looks_identifying(name, info)
    # Value labels too many to list may name each patient: counted, and no list of placeholders (their codes may be
    # the patients' birth dates). Else a date variable's name its placeholders (9999-12-31 'not known'), judged as
    # 99/99/9999 is.
    many_labels = value_labels and info is not None and too_many_labels(info.codes or ())
    labelled = set(info.codes) if info is not None and info.codes and not many_labels else set()
    filled = sum(counts.values())
    distinct = len(counts)
    free_text = is_free_text(name, info, counts)  # a text column so is no code list, and shows no value
    kind, detail, mark = "text", "", None
    patterns: tuple[DatePattern, ...] = ()
    shapes: tuple[ValueCount, ...] = ()
    sentinels: tuple[ValueCount, ...] = ()
    markers: list[str] = []
    if not filled:
        kind = "empty"
    else:
        integers = sum(n for v, n in counts.items() if _INTEGER.fullmatch(v))
        marks: Counter[str] = Counter()
        for value, n in counts.items():
            if match := _DECIMAL.fullmatch(value):
                marks[match[2] or match[3]] += n
        found, unmatched = date_patterns({v: n for v, n in counts.items() if v not in labelled})
        dated = sum(p.count for p in found)
        only_years = all(p.pattern == "%Y" for p in found)
        placeholders = {v: n for v, n in counts.items() if is_sentinel(v) or v in labelled}
        if found and not only_years and dated / (filled - sum(placeholders.values())) >= DATE_SHARE:
            kind, patterns = "date", found
            detail = ", ".join(f"{p.pattern} {_percent(p.share)}" for p in found)
            other: Counter[str] = Counter()
            for value, n in counts.items():
                if date_layout_of(value) is None and value not in placeholders:
                    other[shape_of(value)] += n
            shapes = tuple(ValueCount(s, n) for s, n in other.most_common(5))
            sentinels = tuple(ValueCount(v, n) for v, n in Counter(placeholders).most_common())
            markers = sorted({m for value in counts for m in _MARKER.findall(value) if date_layout_of(value)})
            if sentinels:
                detail += f"; placeholders {', '.join(f'{v.value} ×{v.count}' for v in sentinels)}"
            if unmatched:
                detail += f"; {unmatched} other ({', '.join(s.value for s in shapes)})"
        elif (integers + marks.total()) / filled >= NUMBER_SHARE and marks:
            mark = marks.most_common(1)[0][0]
            kind, detail = "decimal", f"decimal mark '{mark}'" + (" (both marks seen)" if len(marks) > 1 else "")
        elif integers / filled >= NUMBER_SHARE:
            kind = "integer"
            longest = max(len(v) for v in counts)
            if distinct <= 10 and longest <= 2 and distinct * 3 <= filled and not identifying:
                kind, detail = "code", counted(distinct, "integer code")
        repeats = distinct * 3 <= filled  # a code list is short and its values come back
        if kind == "text" and not identifying and distinct <= CODE_VALUES and not free_text and repeats:
            kind, detail = "code", counted(distinct, "code")
    if info is not None and info.codes and kind in ("text", "integer"):
        kind, detail = "code", f"{counted(distinct, 'code')} (code list of {len(info.codes)})"

    hidden: str | None = None
    if kind == "date":
        hidden = "date"
    elif identifying:
        hidden = "identifier-like name"
    elif kind == "text" and free_text:
        hidden = "free text"  # notes may name people or places, however often they repeat
    elif kind in ("integer", "text", "decimal") and distinct > filled / 2 and filled >= MIN_SHOWN:
        hidden = "mostly distinct"
    elif kind == "text" and distinct > CODE_VALUES and _numbers_mostly(counts):
        hidden = "many number-like values"  # a patient number under a name not known to identify, repeated per row
    limit = CODE_VALUES if kind == "code" else TOP_VALUES
    shape = icdo3_shape(counts)
    shown = [] if hidden else [ValueCount(v, n) for v, n in counts.most_common() if n >= MIN_SHOWN][:limit]
    return ColumnProfile(
        name=name, kind=kind, detail=detail, rows=len(values), nulls=nulls, distinct=distinct,
        top_values=tuple(shown), masked_values=distinct - len(shown), hidden_reason=hidden,
        date_patterns=patterns, unparsed_shapes=shapes, sentinels=sentinels, unknown_parts=tuple(markers),
        decimal_mark=mark,
        label=info.label if info else None, declared_type=info.declared_type if info else None,
        code_list=info.codes if info else None, icdo3_shape=shape,
        icdo3_type=icdo3_type(name, info.label if info else None, shape),
        labels_counted=_MANY_LABELS_REASON if many_labels else None)


def _numbering(column: ColumnProfile, values: pd.Series) -> bool:
    """Whether a column's shown values are shaped like patient or case numbers (ILTB-00012, 100037)."""
    shown = [v.value for v in column.top_values]
    return len(shown) >= 2 and all(_NUMBER_SHAPED.fullmatch(v) or (_INTEGER.fullmatch(v) and len(v) >= 3)
                                   for v in shown)


def numbers_records(frame: pd.DataFrame, column: str, others: Iterable[str]) -> bool:
    """Whether a repeating column, with another column of no more distinct values (a visit number),
    identifies each row: the values then number patients (12 patients × 6 visits), however few."""
    values = frame[column].astype("string").fillna("").str.strip()
    filled = values != ""
    distinct = values[filled].nunique()
    if distinct == 0 or distinct == int(filled.sum()):
        return False
    for other in others:
        second = frame[other].astype("string").fillna("").str.strip()
        both = filled & (second != "")
        if int(both.sum()) < int(filled.sum()) * 0.9 or second[both].nunique() > distinct:
            continue
        if not pd.DataFrame({"a": values[both], "b": second[both]}).duplicated().any():
            return True
    return False


def profile_record_set(name: str, frame: pd.DataFrame, infos: Mapping[str, ColumnInfo] | None = None, *,
                       value_labels: bool = False) -> RecordSetProfile:
    """Profile every data column of one record set (lineage columns are left out).

    A column is judged with its record set too: number-like values that, with a visit or sequence
    column, identify each row number the patients (or their cases), and are hidden however often
    each repeats; a small registry's patient numbers stay below the "many number-like values" count;
    and a grade on an adverse events' record set is CTCAE's, not ICD-O-3's. `value_labels`: the code lists
    are a dataset's value labels (`profile_column`).
    """
    infos = infos or {}
    names = data_columns(frame)
    columns = [profile_column(c, frame[c], infos.get(c), value_labels=value_labels) for c in names]
    columns = [replace(c, icdo3_type=icdo3_type(c.name, c.label, c.icdo3_shape, name)) for c in columns]
    for i, column in enumerate(columns):
        if not column.hidden_reason and _numbering(column, frame[column.name]) and numbers_records(
                frame, column.name, [c for c in names if c != column.name]):
            columns[i] = replace(column, top_values=(), masked_values=column.distinct,
                                 hidden_reason="numbers the records of each patient")
    # a hidden one too (a birth date in step with a patient number hidden); not a dataset's labelled codes, whose
    # labels the reader's own rules show or hide (`labels_shown`)
    in_step = columns_in_step(frame, [c for c in names if not (c in infos and infos[c].codes)])
    for i, column in enumerate(columns):
        if column.name in in_step and not column.hidden_reason:
            columns[i] = replace(column, top_values=(), masked_values=column.distinct,
                                 hidden_reason="repeats in step with another column (one value per patient: a "
                                               "number, a birth date, initials)")
    return RecordSetProfile(name, len(frame), tuple(columns))


_IN_STEP_FEWEST = 5  # distinct values: fewer (a sex, a yes/no beside a code) name no one


def columns_in_step(frame: pd.DataFrame, names: Iterable[str]) -> set[str]:
    """The columns whose values repeat in step with another's, one to one (KVNR, GebDat and Kuerzel of a follow-up
    table, each repeated on every visit of its patient): values that belong to one patient each, whatever their
    names or shapes (an insurance number, a birth date written dd.mm.yy, initials), which a table without a visit
    number hid nowhere. Compared only where the distinct counts are equal, as one to one needs."""
    by_count: dict[int, list[tuple[str, pd.Series]]] = {}
    for name in names:
        values = frame[name].astype("string").fillna("").str.strip()
        distinct = values[values != ""].nunique()
        if _IN_STEP_FEWEST <= distinct < int((values != "").sum()):
            by_count.setdefault(distinct, []).append((name, values))
    found: set[str] = set()
    for group in by_count.values():
        for (first, a), (second, b) in itertools.combinations(group, 2):
            both = (a != "") & (b != "")
            pairs = pd.DataFrame({"a": a[both], "b": b[both]}).drop_duplicates()
            if len(pairs) and len(pairs) == pairs.a.nunique() == pairs.b.nunique() >= _IN_STEP_FEWEST:
                found |= {first, second}
    return found


def profile_file(read: FileRead) -> FileProfile:
    """Profile every record set of a file read by `reading.read_file`."""
    value_labels = read.format in _VALUE_LABELLED
    record_sets = tuple(profile_record_set(name, frame, read.details.columns, value_labels=value_labels)
                        for name, frame in sorted(read.record_sets.items()))
    hidden = {c.name: c.hidden_reason for rs in record_sets for c in rs.columns if c.is_identifying}
    # The reader hides the labels of a variable named like an identifier unless it converted its dates (a date
    # format's placeholders, 9999-12-31 'not known'): a birth date written as text is hidden so here too.
    columns = read.details.columns
    hidden |= {c.name: "identifier-like name" for rs in record_sets for c in rs.columns
               if c.kind == "date" and not (c.name in columns and columns[c.name].temporal)
               and _looks_identifying(c.name, columns.get(c.name))}
    notices = tuple(labels_shown(n, read.details.columns, hidden) for n in read.notices)
    return FileProfile(read.name, read.format, read.sha256, read.details.notes, notices, record_sets)


_VALUE_LABELS = "value labels, not applied"  # how a dataset's reader notices its value labels (etl/extract/readstat.py)


def labels_shown(notice: str, columns: Mapping[str, ColumnInfo], hidden: Mapping[str, str | None]) -> str:
    """A reader's notice of a dataset's value labels, without the labels of a column whose values are hidden
    (`hidden`: column -> why): a registry may label its patient numbers with the patients' names, and the codes
    are the numbers. The profile hides more columns than the reader (free text, mostly distinct values), so the
    notice is said again from the columns' code lists, by the reader's own rules (`codes_said`)."""
    at = notice.find(_VALUE_LABELS)
    if at < 0 or not any(columns[name].codes for name in hidden if name in columns):
        return notice
    items = [codes_said(name, info.codes, hidden.get(name)) for name, info in columns.items() if info.codes]
    return notice[:notice.index("): ", at) + 3] + listed(items)


def values_text(column: ColumnProfile, *, limit: int = 6) -> str:
    """The top values of a column as one line: 'M 31, F 28, (3 rarer masked)'."""
    if column.hidden_reason:
        return f"(hidden: {column.hidden_reason})"
    parts = [f"{v.value} ×{v.count}" for v in column.top_values[:limit]]
    rest = len(column.top_values) - limit
    if rest > 0:
        parts.append(f"{rest} more")
    if column.masked_values:
        parts.append(f"{column.masked_values} masked (<{MIN_SHOWN}×)")
    return ", ".join(parts)


def frequent(values: Iterable[ValueCount]) -> list[str]:
    """The values of a profile, all seen at least MIN_SHOWN times (what may be written into a draft)."""
    return [v.value for v in values if v.count >= MIN_SHOWN]
