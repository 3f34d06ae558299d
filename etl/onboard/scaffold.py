"""`rtw scaffold FILE...`: a draft mapping for a new source, for a data manager to complete.

From the files' profiles it fills in what can be read off them: the format and its reader options
(encoding, delimiter, decimal mark, and those the reader advises, such as an Excel workbook's
`merged_cells: fill` where merged cells lie in its data rows: the files are then read with them,
so the draft's keys and columns are those of the filled rows), the file pattern and record set
names, the date formats each column is written in, placeholders for unknown dates (99/99/9999, and
the codes a date variable's value labels name: 9999-12-31 'not known') as nulls, the patient key
and record key when a column plainly is one, the patient block from columns named like sex, birth
date, country, EUPID and centre, and one commented skeleton per record set listing every column
with its type, date format and codes (from an ODM CodeList or SPSS/Stata value labels, else the
values seen at least `MIN_SHOWN` times). What only a person can decide (which core table and field
a column feeds, what each code means) is marked TODO. The draft loads as YAML and, when the guesses
hold, validates as a mapping; `rtw check` then compares it with the data.
"""

from __future__ import annotations

import glob
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from etl.extract.file_names import PATIENT
from etl.onboard.profile import (
    MIN_SHOWN,
    ColumnProfile,
    FileProfile,
    RecordSetProfile,
    frequent,
    is_ctcae_grade,
    some,
)
from etl.onboard.reading import PATIENT_KEY_NAME, FileRead, FormatDetails, data_columns
from etl.terminal import printable
from etl.transform.mapping import template_fields

# An export date written with separators (2026-11-01, 2026_11_01, 01.11.2026): a national registry's export is
# as often so named as 20261101.
_SEPARATED_DATE = (r"(?:(?:19|20)\d\d[-_.]\d\d[-_.]\d\d|\d\d[-_.]\d\d[-_.](?:19|20)\d\d)"
                   r"(?:[T_ -]\d\d[-:.h]\d\d(?:[-:.]\d\d)?)?")  # and its time: AE_2026-11-01T10.30.csv
# An export date or timestamp in a file name, or a patient number (shown as {patient}: the names a draft is
# made from are shown so, etl/onboard/reading.py): the part of a name that differs between a series' files.
_VARYING = rf"{_SEPARATED_DATE}|\d{{6,}}|{re.escape(PATIENT)}"
_DATE_RUN = re.compile(rf"[_\-. ]?(?:{_VARYING})")
_SEPARATORS = r"[\s_.\-–—]+"  # what stands between a file name's words and its date
# A column named as one that numbers records: a word of its name (RECORDNO, rec_no, Fall_Nr, line, repeat, id), or
# SDTM's --SEQ (AESEQ); not a word that only starts so (recidiva, recettore) nor one that ends so (baseline).
_RECORD_NO = re.compile(r"(?<![a-z])(?:rec(?:ord)?|seq(?:uence)?|line|repeat|idx|index|n[or]|num(?:ber|ero)?|nummer|id)"
                        r"(?:_?(?:no|nr|num|id))?(?![a-z])|seq(?![a-z])", re.IGNORECASE)
_PATIENT_FIELDS: dict[str, re.Pattern[str]] = {
    # A registry names its centres by the hospital (hospital, ospedale, Klinik, ziekenhuis), not a stay in one
    # (hospitalizacion, Klinikaufenthalt).
    "centre_id": re.compile(r"site|centre|center|centro|zentrum|^inst"
                            r"|(?<![^\W\d_])(?:h[oô]pital|hospital|ospedale|klinik|krankenhaus|ziekenhuis)(?![^\W\d_])",
                            re.IGNORECASE),
    "sex": re.compile(r"sex|sesso|geschl|gender|genre", re.IGNORECASE),
    "birth_date": re.compile(r"birth|brth|dob|nascita|naiss|geburt|nacim|nascim|geboort", re.IGNORECASE),
    "country": re.compile(r"country|pays|paese|nazione|^land$", re.IGNORECASE),
    "eupid": re.compile(r"eupid", re.IGNORECASE),
}
# A gene symbol's column, by its name (GENE, MPGENE, "Partner gene", gene_symbol; not general, genere, genetic)
# or its label ("Gene Symbol (HGNC)", "Fusion Partner Gene"); a fusion's partner beside a gene column (PARTNER).
_GENE_NAME = re.compile(r"genes?(?![a-z])|g[eè]ne(?![a-z])|(?<![a-z])gen(?![a-z])", re.IGNORECASE)
_GENE_LABEL = re.compile(r"\bg[eè]nes?\b", re.IGNORECASE)
_PARTNER_NAME = re.compile(r"partn|partenaire", re.IGNORECASE)
# What a gene symbol or a fusion of two looks like (KMT2A, C11orf95::RELA, HLA-A), so a yes/no column named
# like a gene (gene_test_done: Y/N) is not taken for one.
_GENE_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9-]+(?:::[A-Za-z][A-Za-z0-9-]+)?")
_ICDO3_NOTES = {"icdo3_histology": "ICD-O-3 morphologies: the type reads any code (9500/3 -> 9500)",
                "icdo3_topography": "ICD-O-3 topographies: the type reads any site (C740 -> C74.0)",
                "icdo3_behaviour": "ICD-O-3 behaviours: the type reads 0-3 (6 is refused); 9, unknown as registries "
                                   "write it, is read as no value (codes:), not held back",
                "icdo3_grade": "ICD-O-3 grades (diagnosis.grade): the type reads 1-9 (1-4 grade I-IV, 9 not "
                               "determined); not a CTCAE grade"}
# A behaviour column read through its codes so that 9, "unknown" in registries, is no value: the type refuses 9
# (and 6, the code of a metastasis), and would hold back the record. The type still reads the codes listed.
_BEHAVIOUR_CODES = '{"0": "0", "1": "1", "2": "2", "3": "3", "9": null}'
_CTCAE_CODES = '{"1": 1, "2": 2, "3": 3, "4": 4, "5": 5}'
_NOT_SYMBOLS = {"yes", "no", "ja", "nein", "oui", "non", "si", "sì", "true", "false", "unknown", "nk", "na"}
_SEX_WORDS = {"male": ("h", "1", "male", "man", "homme", "hombre", "masculin", "masculino", "maschio", "mannlich",
                       "männlich"),
              "female": ("f", "w", "2", "female", "woman", "femme", "mujer", "feminin", "féminin", "femenino",
                         "femmina", "weiblich"),
              "unknown": ("u", "9", "unknown", "nk", "unk", "inconnu", "sconosciuto", "unbekannt", "desconocido")}
# Year-first formats also read their truncations (2019-05, 2019), so those need no format of their own.
_TRUNCATIONS = {"%Y-%m-%d": ("%Y-%m", "%Y"), "%Y/%m/%d": ("%Y",), "%Y%m%d": ("%Y",)}
# A year-first date format also reads an ISO date-time's date (2021-03-04T14:30:00), the time dropped.
_READABLE = dict.fromkeys(("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"), "%Y-%m-%d")
DUPLICATES_TOLERATED = 0.02  # share of repeated keys a record-key column may have
MINOR_LAYOUT = 0.05  # a date layout of fewer values than this share (and < MIN_SHOWN) is not declared
_DEFAULT_UNKNOWN = ("UK", "UNK", "00")  # the mapping's default unknown_date_parts
_ODM_DEFAULT_KEYS = ("_study_event_oid", "_form_oid", "_item_group_oid")


@dataclass(frozen=True)
class DraftSource:
    """What the draft is made from: the files (read and profiled) and their format's traits."""

    source_id: str
    format: str
    one_record_set_per_file: bool
    reader_options: frozenset[str]  # the names the format's `options:` accepts
    files: Sequence[FileRead]
    profiles: Sequence[FileProfile]
    format_lists: bool = False  # the mapping model accepts a list of date formats per field
    record_keys: bool = False  # the mapping model accepts a record key per record set
    given_options: Mapping[str, object] = field(default_factory=dict)  # reader options the user gave
    advised_options: Mapping[str, object] = field(default_factory=dict)  # the reader advised, the files read with


@dataclass(frozen=True)
class Draft:
    source_id: str
    text: str
    todos: int


def _q(value: object) -> str:
    """A YAML flow scalar: JSON strings are valid YAML and quote everything that needs it."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    """Text from the files (a label, a sheet or file name) for a YAML comment: on its one line, its line
    breaks and control characters escaped. A label's line break began a line of its own, a key of the
    draft ('Sex\\nnull_values: [...]'), and an ESC made the draft no YAML at all."""
    return printable(text)


def source_id_from(name: str) -> str:
    """A source id from a file name: 'TREP_export_20261101.csv' -> 'trep_export'; its letters in ASCII
    ('Registro ñandú' -> 'registro_nandu', not 'registro_and')."""
    stem = _DATE_RUN.sub("", Path(name).name).split(".")[0]  # the date first: 01.11.2026 has dots
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().lower()
    cleaned = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")
    return cleaned if re.match(r"[a-z]", cleaned or "") else f"source_{cleaned}".rstrip("_")


def record_set_from(name: str) -> str:
    """The record set a one-record-set file feeds, from its name without its extension and export date:
    'TREP_export_20261101.csv' -> 'TREP_export', 'NRX datos – 2026-11-01.csv' -> 'NRX datos' (the separators around
    the date dropped), 'reg.v2_20261101.csv' -> 'reg.v2', 'export[v2]_20261101.csv' -> 'export[v2]'."""
    stem = _DATE_RUN.sub("", Path(name).stem)
    return re.sub(rf"^{_SEPARATORS}|{_SEPARATORS}$", "", stem) or "RECORDS"


def _common_start(texts: Sequence[str]) -> str:
    """The characters all texts start with (file names, not paths: compared character by character)."""
    first, last = min(texts), max(texts)
    length = next((i for i, (a, b) in enumerate(zip(first, last)) if a != b), min(len(first), len(last)))
    return first[:length]


def _affixes(names: Sequence[str]) -> tuple[str, str]:
    """Common prefix and suffix of file names, cut at a separator so no record set name is split."""
    prefix = _common_start(names)
    prefix = prefix[: max((i + 1 for i, c in enumerate(prefix) if not c.isalnum()), default=0)]
    reversed_suffix = _common_start([n[::-1] for n in names])
    suffix = reversed_suffix[::-1]
    cut = next((i for i, c in enumerate(suffix) if not c.isalnum()), len(suffix))
    return prefix, suffix[cut:]


def _pattern_part(text: str) -> str:
    """Literal text of file names as regex, an export date in it matching any date."""
    pieces = re.split(f"({_VARYING})", text)
    return "".join(_varying_pattern(piece) if i % 2 else re.escape(piece) for i, piece in enumerate(pieces))


def _varying_pattern(piece: str) -> str:
    """The regex of a part that differs between a series' files: a patient number, an export date."""
    if piece == PATIENT:
        return ".+?"
    if piece.isdigit():
        return r"\d{6,}"
    return re.sub(r"\d+", lambda digits: rf"\d{{{len(digits[0])}}}", re.escape(piece))  # 2026-11-01


_MARK = "\0"  # where a single name varies, in the name (no file name holds a NUL)


def _glob_part(text: str, varying: re.Pattern[str] | str = _VARYING) -> str:
    """The glob matching `text` with each varying part (a date, a run number) any text: the rest matched as
    written, a name's `[`, `*` or `?` too (unescaped, export[v2]_*.csv matched no file, not even its own)."""
    pieces = re.split(varying, text)
    return "*".join(glob.escape(piece) for piece in pieces)


def _record_set_pattern(names: Sequence[str]) -> str:
    """A `record_set_from_file` regex whose group is the part of the names that differs."""
    prefix, suffix = _affixes(names)
    dated = any(_DATE_RUN.search(n[len(prefix): len(n) - len(suffix)]) for n in names)
    date_part = rf"(?:[_\-. ]?(?:{_SEPARATED_DATE}|\d{{6,}}))?" if dated else ""
    return f"{_pattern_part(prefix)}(?P<record_set>[A-Za-z0-9]+?){date_part}{_pattern_part(suffix)}"


def _one_series(names: Sequence[str]) -> bool:
    """Whether the names are one export's, told apart by their dates only (`reg.v2_20261101.csv`,
    `reg.v2_20261201.csv`): one record set, not one a file (its date's first digit was drafted as one)."""
    return len({_DATE_RUN.sub("", name) for name in names}) == 1


def record_set_names(names: Sequence[str], one_record_set_per_file: bool) -> dict[str, str | None]:
    """File name -> the record set it feeds (None: the format names its own record sets)."""
    if not one_record_set_per_file:
        return dict.fromkeys(names)
    if _one_series(names):
        return {name: record_set_from(name) for name in names}
    pattern = re.compile(_record_set_pattern(names))
    found: dict[str, str | None] = {}
    for name in names:
        match = pattern.fullmatch(name)
        found[name] = match.group("record_set") if match else record_set_from(name)
    return found


def file_layout(names: Sequence[str], one_record_set_per_file: bool) -> list[str]:
    """The `files:` line and how record sets are named, as YAML lines."""
    if _one_series(names):
        name = names[0]
        # Each date or run number any text, the separator before it kept (TREP_export_*.csv).
        marked = _DATE_RUN.sub(lambda m: m.group(0)[0] + _MARK if m.group(0)[0] in "_-. " else _MARK, name)
        lines = [f"files: {_q(_glob_part(marked, _MARK))}"]
        if one_record_set_per_file:
            lines.append(f"record_set: {_q(record_set_from(name))}"
                         "  # per-form exports (one file a form): use record_set_from_file instead")
        return lines
    prefix, suffix = _affixes(names)
    lines = [f"files: {_q(_glob_part(prefix) + '*' + _glob_part(suffix))}"]
    if one_record_set_per_file:
        lines.append(f"record_set_from_file: '{_record_set_pattern(names)}'")
    return lines


def _names_of_record_sets(draft: DraftSource) -> dict[str, str]:
    """Record set -> the file it came from."""
    return {rs.name: p.file_name for p in draft.profiles for rs in p.record_sets}


def _columns(draft: DraftSource) -> dict[str, dict[str, ColumnProfile]]:
    return {rs.name: {c.name: c for c in rs.columns} for p in draft.profiles for rs in p.record_sets}


def _record_sets(draft: DraftSource) -> list[RecordSetProfile]:
    return [rs for p in draft.profiles for rs in p.record_sets]


def choose_patient_key(record_sets: Sequence[RecordSetProfile]) -> str | None:
    """The column named like a patient number that most record sets have."""
    seen: dict[str, int] = {}
    for rs in record_sets:
        for column in rs.columns:
            if PATIENT_KEY_NAME.search(column.name) and column.kind != "date":
                seen[column.name] = seen.get(column.name, 0) + 1
    return max(seen, key=lambda name: (seen[name], -len(name))) if seen else None


def _unique_with(frame: pd.DataFrame, columns: list[str]) -> bool:
    # A few repeats are duplicates the nightly run quarantines, not a sign of the wrong key.
    return bool(frame.duplicated(columns).sum() <= DUPLICATES_TOLERATED * len(frame))


def choose_record_keys(frames: Mapping[str, pd.DataFrame], patient_key: str | None) -> dict[str, str | None]:
    """Per record set, a record key template that identifies each record of a patient (None: none found).

    One column shared by every record set (RECORDNO) is preferred; else each record set gets its own
    (SDTM's AESEQ, EXSEQ), or, where a patient has one record (DM), its name written out ('DM', naming no
    column): a key that survives a change of the export's format or sheet name, as `{record_set}` would not.
    """
    if patient_key is None or not frames:
        return dict.fromkeys(frames)
    unique: dict[str, set[str]] = {}
    for name, frame in frames.items():
        candidates = [c for c in data_columns(frame) if c != patient_key and _RECORD_NO.search(c)]
        unique[name] = {c for c in candidates if patient_key in frame and _unique_with(frame, [patient_key, c])
                        and _numbers_records(frame, patient_key, c)}
    # A record set without records tells nothing of its keys (every column is unique in it): it takes a key the
    # others share, if it has that column, and no key of its own.
    filled = [columns for name, columns in unique.items() if not frames[name].empty]
    shared = set.intersection(*filled) if filled else set()
    if shared:
        column = min(shared, key=len)
        return {name: "{record_set}[{" + column + "}]" if column in frame else None for name, frame in frames.items()}
    keys: dict[str, str | None] = {}
    for name, frame in frames.items():
        # A sequence column first: one record per patient today may be two in the next export.
        if frame.empty:
            keys[name] = None
        elif unique[name]:
            keys[name] = "{record_set}[{" + min(unique[name], key=len) + "}]"
        elif patient_key in frame and _unique_with(frame, [patient_key]):
            keys[name] = _one_per_patient(name)
        else:
            keys[name] = None
    return keys


def _numbers_records(frame: pd.DataFrame, patient_key: str, column: str) -> bool:
    """Whether a column's values number the records: each a record's own (unique in the record set), or each
    patient's records counted from 0 or 1 (AESEQ 1, 2, 3). Where a patient has one record any column tells them
    apart: a clinical value (a count, a yes/no) in the key would change it, and the record's issues, as it changes."""
    values = frame[column].astype(str).str.strip()
    given = values[values != ""]
    if given.empty:
        return False  # an empty column numbers nothing
    if given.is_unique:
        return True
    if not given.str.fullmatch(r"\d{1,9}").all():
        return False
    first = given.astype(int).groupby(frame.loc[given.index, patient_key]).min()
    return bool(first.isin([0, 1]).all())


def _one_per_patient(record_set: str) -> str:
    """The key of a record set holding one record per patient: its name written out, the key `{record_set}`
    gives today and keeps when a later export names the record set otherwise (a workbook's sheet for a .sav
    file); `{record_set}` for a name a template would read as a column (a sheet per patient, 'Pat_{patient}')."""
    return "{record_set}" if "{" in record_set or "}" in record_set else record_set


def _record_key_lines(keys: Mapping[str, str | None], per_record_set: bool, mapped: set[str]) -> list[str]:
    """`record_key:` (and `record_keys:` per record set) lines. A record set may only be given its own
    key once it is mapped, so the others' keys are drafted as comments to uncomment with their table. A key
    naming no column (one record per patient) is one record set's, never the default `record_key:`."""
    if not per_record_set:  # a mapping model without record_keys: a record set's name is read, not written out
        keys = {name: "{record_set}" if key is not None and not template_fields(key) else key
                for name, key in keys.items()}
    found = {k for k in keys.values() if k is not None}
    by_column = {k for k in found if template_fields(k)}
    fallback = '"{record_set}[{_line}]"  # TODO: columns that identify a record of a patient ' \
               "(line numbers change between exports)"
    if None not in keys.values() and len(by_column) == 1:
        default = by_column.pop()
        keys = {name: key for name, key in keys.items() if key != default}
        head = f"record_key: {_q(default)}  # TODO: check: unique per patient"
        if not keys:
            return [head]
    elif None not in keys.values() and found and not by_column:  # one record per patient everywhere
        default = "{record_set}"
        head = f"record_key: {_q(default)}  # a record set a later export adds (each here has its own key)"
    elif not found or not per_record_set:
        return [f"record_key: {fallback}"]
    else:
        head = f"record_key: {fallback}"
    own = [_record_key_line(name, key) for name, key in keys.items() if key is not None and name in mapped]
    later = [_record_key_line(name, key, "# ") for name, key in keys.items() if key is not None and name not in mapped]
    note = "  # TODO: check: each unique per patient" + ("; uncomment a record set's key when you map it"
                                                       if later else "")
    return [head, f"record_keys:{note}" if own else f"record_keys: {{}}{note}", *own, *later]


def _record_key_line(record_set: str, key: str, commented: str = "") -> str:
    line = f"  {commented}{_q(record_set)}: {_q(key)}"
    if template_fields(key):
        return line
    return (f"{line}  # one record per patient: its name written out, not {{record_set}}: the keys survive a change "
            "of format or sheet name")


def _date_formats(column: ColumnProfile) -> list[str]:
    """The formats to declare for a date column, most common first.

    A layout written by a handful of values is more likely an error than a convention, and a
    column is never both day-first and month-first: those are left for `rtw check` to report.
    """
    found = [_READABLE.get(p.pattern, p.pattern) for p in column.date_patterns
             if p.share >= MINOR_LAYOUT or p.count >= MIN_SHOWN]
    covered = {t for f in found for t in _TRUNCATIONS.get(f, ())}
    kept = list(dict.fromkeys(f for f in found if f not in covered))
    for first, second in (("%d/%m/%Y", "%m/%d/%Y"), ("%m/%d/%Y", "%d/%m/%Y")):
        if first in kept and second in kept and kept.index(first) < kept.index(second):
            kept.remove(second)
    return kept


def _labelled_placeholders(record_sets: Iterable[RecordSetProfile]) -> set[str]:
    """The codes a date column's value labels name (9999-12-31 'not known', Stata's .a), seen in the data
    or not: placeholders of an unknown date, as 99/99/9999 is. A date column has no `codes:` (every date
    would be a code not listed), so they are drafted as null values; not a table too long to list, whose
    codes may be the patients' birth dates (its field says so)."""
    return {code for rs in record_sets for c in rs.columns if c.kind == "date" and not c.code_list_hidden
            for code in c.code_list or ()}


def _main_date_format(record_sets: Iterable[RecordSetProfile]) -> str | None:
    votes: dict[str, int] = {}
    for rs in record_sets:
        for column in rs.columns:
            formats = _date_formats(column)
            if column.kind == "date" and formats:
                votes[formats[0]] = votes.get(formats[0], 0) + 1
    return max(votes, key=lambda f: votes[f]) if votes else None


def _letter_m(letters: set[str]) -> str:
    """M is male in English, German (männlich) and French (masculin), but mujer (female) in Spanish:
    only the column's other codes tell (H/M: hombre/mujer; M/F, M/W: male/female)."""
    spanish, other = "h" in letters, bool(letters & {"f", "w"})
    return "female" if spanish and not other else "male" if other and not spanish else "TODO"


def _sex_word(word: str, letters: set[str]) -> str | None:
    folded = word.strip().casefold()
    if folded == "m":
        return _letter_m(letters)
    return next((target for target, words in _SEX_WORDS.items() if folded in words), None)


def sex_values(pairs: Sequence[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """(code, decode) -> (code, warehouse sex or TODO). Two codes never get the same value: both are
    left TODO, as is a code whose meaning depends on the language (M)."""
    letters = {w.strip().casefold() for pair in pairs for w in pair if w is not None}
    found = []
    for code, decode in pairs:
        words = [w for w in (decode, code) if w is not None]
        found.append((code, next((v for v in (_sex_word(w, letters) for w in words) if v is not None), "TODO")))
    taken = Counter(value for _, value in found)
    return [(code, value if taken[value] == 1 else "TODO") for code, value in found]


def _codes(column: ColumnProfile, *, sex: bool = False) -> tuple[str, int]:
    """The flow mapping of a column's codes, and how many codes seen in the data are left out (rare)."""
    if column.code_list:
        listed = list(column.code_list.items())
        pairs = sex_values(listed) if sex else [(code, decode or code) for code, decode in listed]
        left_out = 0
    else:
        shown = frequent(column.top_values)
        pairs = sex_values([(code, None) for code in shown]) if sex else [(code, code) for code in shown]
        left_out = column.distinct - len(shown)
    return "{" + ", ".join(f"{_q(code)}: {_q(value)}" for code, value in pairs) + "}", left_out


def _symbol_like(column: ColumnProfile) -> bool:
    """Whether a text column's values, as far as they are shown, are written like gene symbols."""
    if column.kind not in ("code", "text") or column.code_list:
        return False
    return all(_GENE_SYMBOL.fullmatch(v.value) and v.value.lower() not in _NOT_SYMBOLS for v in column.top_values)


def gene_columns(columns: Sequence[ColumnProfile]) -> set[str]:
    """The columns of a record set holding gene symbols, drafted with HGNC's case (`case: gene`): those named
    or labelled like a gene, and beside one, a fusion's partner (`PARTNER`)."""
    genes = {c.name for c in columns if (_GENE_NAME.search(c.name) or (c.label and _GENE_LABEL.search(c.label)))
             and _symbol_like(c)}
    if genes:
        genes |= {c.name for c in columns if _PARTNER_NAME.search(c.name) and _symbol_like(c)}
    return genes


def _written(columns: Sequence[ColumnProfile], kind: str, shapes: set[str]) -> str | None:
    """The morphology column (of one of `shapes`) in a record set with no column of its own of type `kind`."""
    if any(c.icdo3_type == kind for c in columns):
        return None
    return next((c.name for c in columns if c.icdo3_type == "icdo3_histology" and c.icdo3_shape in shapes), None)


def written_behaviour(columns: Sequence[ColumnProfile]) -> str | None:
    """The morphology column whose codes write the behaviour (9500/3) in a record set with no behaviour column of
    its own: its behaviour is a field too (`type: icdo3_behaviour` of the same column), without which the
    warehouse has no behaviour and derives no ICCC-3 class; None otherwise."""
    return _written(columns, "icdo3_behaviour", {"morphology", "graded morphology"})


def written_grade(columns: Sequence[ColumnProfile]) -> str | None:
    """The morphology column whose codes write a grade too (9500/31) in a record set with no grade column of its
    own: the grade is a field of its own (`type: icdo3_grade` of the same column), as the behaviour is."""
    return _written(columns, "icdo3_grade", {"graded morphology"})


def field_line(column: ColumnProfile, main_format: str | None, format_lists: bool, *,
               sex: bool = False, gene: bool = False, ctcae: bool = False) -> tuple[str, str]:
    """('{column: X, type: date}', 'comment') for one column; `gene`: it holds gene symbols; `ctcae`: an adverse
    event's CTCAE grade."""
    parts = [f"column: {_q(column.name)}"]
    notes = [column.label] if column.label else []
    if gene:  # a symbol is no code: a code list would hold back every gene not listed (a rare one)
        parts.append("case: gene")
        notes.append("gene symbols in HGNC's case (C11orf95::RELA)")
    elif ctcae:  # every grade: a list of those seen would hold back a rarer, severe one (4, 5)
        parts.append(f"codes: {_CTCAE_CODES}")
        notes.append("CTCAE v5 grades 1-5 (adverse_event.ctcae_grade), each listed, not only those seen")
    elif icdo3 := column.icdo3_type:  # named and shaped so (profile.icdo3_type): a code list holds back rarer codes
        parts.append(f"type: {icdo3}")
        if icdo3 == "icdo3_behaviour":
            parts.append(f"codes: {_BEHAVIOUR_CODES}")
        notes.append(_ICDO3_NOTES[icdo3])
    elif column.kind == "date":
        parts.append("type: date")
        formats = _date_formats(column)
        if formats and formats != [main_format]:
            if len(formats) > 1 and format_lists:
                parts.append(f"format: [{', '.join(_q(f) for f in formats)}]")
            else:
                parts.append(f"format: {_q(formats[0])}")
                if len(formats) > 1:
                    notes.append(f"TODO: also written {', '.join(formats[1:])}")
        notes.append(column.detail)
        if column.code_list_hidden:
            notes.append(f"TODO: check: {_labels_not_shown(column)}; the placeholders among them go to null_values")
        elif column.code_list:
            labelled = ", ".join(f"{code} '{label}'" if label else code for code, label in column.code_list.items())
            notes.append(f"TODO: check: labelled {labelled} read as no value (null_values)")
    elif column.kind in ("integer", "decimal") and sex:  # numbered codes (1, 2): core holds a word (male, female)
        codes, left_out = _codes(column, sex=True)
        if codes != "{}":
            parts.append(f"codes: {codes}")
        notes.append("TODO: map each code to the warehouse's value (codes:)")
        if left_out > 0:
            notes.append(f"{left_out} rarer codes (seen < {MIN_SHOWN} times) not listed")
    elif column.kind in ("integer", "decimal"):
        parts.append(f"type: {column.kind}")
        if column.detail:
            notes.append(column.detail)
    elif column.kind == "code" and _RECORD_NO.search(column.name) and column.code_list is None:
        parts.append("type: integer")  # a sequence number: it numbers records, it codes nothing
    elif column.is_identifying:  # never copied into a code list: its labels may be the patients' names
        notes.append(f"values not shown ({column.hidden_reason})")
        if column.code_list:
            notes.append(f"{len(column.code_list)} value labels not shown")
    elif column.kind == "code" and column.code_list_hidden:
        # never copied into a code list either: so long a table may name each patient (an empty one is said empty)
        notes.append(f"{_labels_not_shown(column)}; TODO: codes: the codes to read, from the file's value labels")
    elif column.kind == "code":
        codes, left_out = _codes(column, sex=sex)
        parts.append(f"codes: {codes}")
        notes.append("TODO: map each code to the warehouse's value")
        if left_out > 0:
            notes.append(f"{left_out} rarer codes (seen < {MIN_SHOWN} times) not listed")
    elif column.kind == "empty":
        notes.append("empty in this file")
    if column.null_rate:
        notes.append(f"{column.null_rate:.0%} empty")
    return "{" + ", ".join(parts) + "}", _comment("; ".join(n for n in notes if n))


def _labels_not_shown(column: ColumnProfile) -> str:
    """What a field's comment says of value labels counted, not listed: '25 value labels not shown (why)'."""
    return f"{len(column.code_list or ())} value labels not shown ({column.code_list_hidden})"


def _patient_record_set(draft: DraftSource, patient_key: str | None) -> str:
    """The record set holding the patient key and the most columns named like patient fields."""
    columns = _columns(draft)
    candidates = [name for name, cols in columns.items() if patient_key is None or patient_key in cols]
    return max(candidates or list(columns), key=lambda rs: sum(
        any(p.search(c) for c in columns[rs]) for p in _PATIENT_FIELDS.values()), default="TODO")


def _patient_block(draft: DraftSource, patient_key: str | None, main_format: str | None) -> tuple[list[str], int]:
    columns = _columns(draft)
    best = _patient_record_set(draft, patient_key)
    lines = ["patient:", f"  from: {_q(best)}  # TODO: check: the record set with one record per patient",
             "  fields:"]
    todos = 1
    chosen = 0
    for core_field, pattern in _PATIENT_FIELDS.items():
        match = next((c for name, c in columns.get(best, {}).items() if pattern.search(name)
                      and (core_field != "birth_date" or c.kind == "date")), None)
        if match is None:
            lines.append(f"    # TODO: {core_field}: {{column: ...}}")
            todos += 1
            continue
        spec, note = field_line(match, main_format, draft.format_lists, sex=core_field == "sex")
        if core_field in ("centre_id", "country", "eupid"):  # plain text, whatever their values look like
            spec, note = "{" + f"column: {_q(match.name)}, case: upper" + "}", _comment(match.label or "")
        lines.append(f"    {core_field}: {spec}  # TODO: check{'; ' + note if note else ''}")
        todos += 1
        chosen += 1
    if not chosen:  # `fields:` with nothing under it is null: an empty mapping until one is uncommented
        lines[2] = "  fields: {}  # TODO: replace {} by the fields below once you uncomment one"
    return lines, todos


_NUMBERED = re.compile(r"\d+")
_WORD = re.compile(r"[^\W\d_]+")


def group_stem(pattern: str, shared: Collection[str] = ()) -> str:
    """What the columns of one numbered group share: the first word of the name (`chemo` of
    `chemo{repeat}_drug` and `CHEMO_START_{repeat}`), after an ODM OID's namespace (`IT.`); the first word
    after the number when none comes before it (`{repeat}_drug`). A name of one word numbered after it
    (`drug_{repeat}`, `dose{repeat}`) has no stem: that word is what the group's columns differ by (a
    treatment line's drug_1, dose_1, start_1), so such columns are one group by their numbers alone. Nor has
    a name of words numbered after them whose first word is not among the `shared` of the columns numbered
    alike (`_stem_words`, lower case): `start_date_{repeat}` beside `drug_{repeat}` is a line's start date, as
    `date_fu_{repeat}` beside `status_fu_{repeat}` is a follow-up's date; `fu_date_{repeat}` beside
    `fu_status_{repeat}` keeps `fu`, `rt_dose_{repeat}` beside `dose_{repeat}` keeps `rt`."""
    before, _, after = pattern.partition("{repeat}")
    before = before.rsplit(".", 1)[-1]
    words_before, words_after = _WORD.findall(before), _WORD.findall(after)
    if words_before and not words_after and (len(words_before) == 1 or words_before[0].lower() not in shared):
        return ""
    return next(iter(words_before or words_after), "").lower()


def _stem_words(names: Sequence[list[str]]) -> set[str]:
    """The first words that name a group among the words of the names numbered alike: one that starts two
    names (`fu` of fu_date, fu_status), or that qualifies a word another name is alone (`rt` of rt_dose
    beside dose: another treatment's dose)."""
    firsts = Counter(words[0] for words in names if len(words) > 1)
    alone = {words[0] for words in names if len(words) == 1}
    return {word for word, count in firsts.items() if count > 1} | {
        words[0] for words in names if len(words) > 1 and words[-1] in alone}


def numbered_groups(columns: Iterable[str]) -> list[tuple[list[str], list[str]]]:
    """The numbered column groups of a wide record set (`chemo1_drug`, `chemo1_start`, `chemo2_drug`,
    ...), for `repeat:`: [(the groups' numbers, the columns as `chemo{repeat}_drug`)]. A column is numbered
    when another column differs from it in one run of digits only; the columns of one group share a stem
    (`group_stem`) and their numbers form the same set, so a registry's follow-ups (`fu_1_date`) and its
    radiotherapies (`rt1dose`) numbered alike are two groups, each a table of its own. Numbers in order."""
    numbers: dict[str, set[str]] = {}
    for name in columns:
        for found in _NUMBERED.finditer(name):
            pattern = f"{name[:found.start()]}{{repeat}}{name[found.end():]}"
            numbers.setdefault(pattern, set()).add(found.group())
    alike: dict[tuple[str, ...], list[str]] = {}  # the patterns of each set of numbers
    for pattern, seen in numbers.items():
        if len(seen) > 1:
            alike.setdefault(tuple(sorted(seen, key=lambda n: (len(n), n))), []).append(pattern)
    groups: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for ordered, patterns in alike.items():
        shared = _stem_words([_WORD.findall(pattern.replace("{repeat}", " ").rsplit(".", 1)[-1].lower())
                              for pattern in patterns])
        for pattern in patterns:
            groups.setdefault((ordered, group_stem(pattern, shared)), []).append(pattern)
    order = list(numbers)  # groups in the order of their first columns
    return [(list(seen), patterns) for (seen, _), patterns in sorted(groups.items(),
                                                                     key=lambda item: order.index(item[1][0]))]


def _repeat_lines(columns: Iterable[str]) -> list[str]:
    """Comment lines naming a record set's numbered column groups and how `repeat:` maps them."""
    lines = []
    for seen, patterns in numbered_groups(columns):
        # YAML reads 01 as the number 1: a zero-padded group is quoted to stay the column's text.
        groups = ", ".join(n if n == str(int(n)) else _q(n) for n in seen)
        lines.append(f"#   numbered column groups {_comment(', '.join(patterns))}: rows of one table with "
                     f"repeat: [{groups}] and column: {_q(patterns[0])} (docs/mapping.md)")
    return lines


def _core_reference() -> list[str]:
    from etl.schema import core_columns

    bookkeeping = {"source_id", "source_file_sha256", "source_record_key", "run_id", "patient_id"}
    lines = ["# Core tables a record set can feed, and their fields:"]
    for table, names in core_columns().items():
        if table in {"patient", "patient_source"}:
            continue
        fields = [n for n in names[1:] if n not in bookkeeping and not n.endswith("_precision")]
        lines.append(f"#   {table}: {', '.join(fields)}")
    return lines


def draft_mapping(draft: DraftSource) -> Draft:
    """The text of a draft mapping (YAML with TODO comments) for the files of one new source."""
    record_sets = _record_sets(draft)
    names = list(dict.fromkeys(p.file_name for p in draft.profiles))  # a file per patient: one name shown
    frames = {name: frame for read in draft.files for name, frame in read.record_sets.items()}
    patient_key = choose_patient_key(record_sets)
    main_format = _main_date_format(record_sets)
    labelled = _labelled_placeholders(record_sets)
    sentinels = sorted({s.value for rs in record_sets for c in rs.columns for s in c.sentinels} | labelled)
    details: FormatDetails = draft.files[0].details if draft.files else FormatDetails()
    todos = 1
    lines = [f"# Draft mapping of source `{draft.source_id}`, written by `rtw scaffold` from "
             f"{_comment(', '.join(names))}.",
             f"# Complete every TODO, then run `rtw check {draft.source_id}` with the files in "
             f"landing/{draft.source_id}/.",
             "# Every key is described in docs/mapping.md; values seen fewer than "
             f"{MIN_SHOWN} times are never copied here.",
             f"source_id: {draft.source_id}",
             'title: "TODO: the name of the study or registry"  # TODO',
             f"format: {draft.format}"]
    lines += file_layout(names, draft.one_record_set_per_file)
    options: dict[str, object] = {k: v for k, v in (("encoding", details.encoding), ("delimiter", details.delimiter),
                                                    ("decimal", details.decimal)) if v and k in draft.reader_options}
    options.update(draft.given_options)
    options.update(draft.advised_options)
    if draft.advised_options:
        advised = ", ".join(f"{k}: {v}" for k, v in draft.advised_options.items())
        lines.append(f"# TODO: check {advised}: advised by the reader for these files, which the draft was read "
                     "with (`rtw profile` says why)")
        todos += 1
    if options:
        listed = ", ".join(f"{k}: {_q(v)}" for k, v in options.items())
        lines.append(f"options: {{{listed}}}  # detected, or given with --option")
    if details.decimal and details.decimal != ".":
        lines.append(f"decimal: {_q(details.decimal)}  # decimal mark of the numbers")
    if main_format:
        lines.append(f"date_format: {_q(main_format)}  # the most common date layout; fields differing say format:")
    markers = sorted({m for rs in record_sets for c in rs.columns for m in c.unknown_parts})
    if set(markers) - set(_DEFAULT_UNKNOWN):
        parts = list(dict.fromkeys([*_DEFAULT_UNKNOWN, *markers]))
        listed = ", ".join(_q(p) for p in parts)
        lines.append(f"unknown_date_parts: [{listed}]  # how an unknown day or month is written")
    if sentinels:
        check = "; TODO: check the codes labelled in date columns (see their fields)" if labelled else ""
        lines.append(f"null_values: [{', '.join(_q(v) for v in ['', *sentinels])}]  # placeholders for unknown "
                     f"dates{check}")
        todos += bool(labelled)
    if patient_key is not None:
        lines.append(f"patient_key: {_q(patient_key)}  # TODO: check: the column holding the patient number")
    else:
        lines.append('patient_key: "TODO"  # TODO: the column holding the patient number')
    todos += 1
    has_odm_keys = all(any(k in rs_cols for k in _ODM_DEFAULT_KEYS) for rs_cols in _columns(draft).values())
    if not has_odm_keys:
        lines += _record_key_lines(choose_record_keys(frames, patient_key), draft.record_keys,
                                   {_patient_record_set(draft, patient_key)})
        todos += 1
    lines.append("")
    block, patient_todos = _patient_block(draft, patient_key, main_format)
    lines += block
    todos += patient_todos
    lines += ["", "tables: {}", "# TODO: map each record set below to a core table (uncomment, name the table and "
              "each <field>), or list it under `ignore:`.", *_core_reference()]
    sources = _names_of_record_sets(draft)
    for rs in record_sets:
        todos += 1
        lines += ["#", f"# {_comment(rs.name)}: {rs.records} records, from {_comment(sources.get(rs.name, '?'))}",
                  *_repeat_lines(c.name for c in rs.columns if c.name != patient_key),
                  "#   <core_table>:", f"#     from: {_q(rs.name)}", "#     fields:"]
        genes = gene_columns(rs.columns)
        behaviour, grade = written_behaviour(rs.columns), written_grade(rs.columns)
        for column in rs.columns:
            if column.name.startswith("_") or column.name == patient_key:
                continue  # the patient key and ODM keys: in the keys, rarely fields
            spec, note = field_line(column, main_format, draft.format_lists, gene=column.name in genes,
                                    ctcae=is_ctcae_grade(column, rs.name))
            lines.append(f"#       <field>: {spec}" + (f"  # {note}" if note else ""))
            if column.name == behaviour:
                lines.append(f"#       <field>: {{column: {_q(column.name)}, type: icdo3_behaviour}}  # the behaviour "
                             "its morphologies write (9500/3 -> 3): without it no ICCC-3 class is derived")
            if column.name == grade:
                lines.append(f"#       <field>: {{column: {_q(column.name)}, type: icdo3_grade}}  # the grade its "
                             "morphologies write (9500/31 -> 1), for diagnosis.grade: the histology type drops it")
    return Draft(draft.source_id, "\n".join(lines) + "\n", todos)


def format_lists_supported() -> bool:
    """Whether this version of the mapping model takes a list of date formats per field."""
    from pydantic import ValidationError

    from etl.transform.mapping import FieldSpec

    try:
        FieldSpec.model_validate({"column": "x", "type": "date", "format": ["%d.%m.%Y", "%m.%Y"]})
    except ValidationError:
        return False
    return True


# -- edges: reading the files, validating the draft -----------------------------------------------
def read_sources(paths: Sequence[Path], source_id: str | None = None,
                 options: Mapping[str, object] | None = None) -> DraftSource:
    """Read and profile the files of a new source (all of one format) for `draft_mapping`."""
    from etl.extract.adapter import adapter_for_file
    from etl.onboard.profile import profile_file
    from etl.onboard.reading import read_file
    from etl.onboard.reading import reader_options as checked_options
    from etl.transform.mapping import SourceMapping

    adapters = {adapter_for_file(p).format: adapter_for_file(p) for p in paths}
    if len(adapters) != 1:
        raise ValueError(f"the files are of several formats ({', '.join(sorted(adapters))}); "
                         "a source sends one format: scaffold each separately")
    adapter = next(iter(adapters.values()))
    names = record_set_names([p.name for p in paths], adapter.one_record_set_per_file)
    given = dict(options or {})
    reader_options = checked_options(adapter, given)
    reads = [read_file(p, adapter, record_set=names[p.name], options=reader_options) for p in paths]
    advised = {k: v for read in reads for k, v in read.advised_options.items() if k not in given}
    if advised:  # read again as the draft will read them, so its keys and profiles are the filled rows'
        reader_options = checked_options(adapter, {**given, **advised})
        reads = [read_file(p, adapter, record_set=names[p.name], options=reader_options) for p in paths]
    if not any(data_columns(frame) for read in reads for frame in read.record_sets.values()):
        said = some(dict.fromkeys(notice for read in reads for notice in read.notices), 3, "; ")
        raise ValueError(f"no record set with a column in {some(dict.fromkeys(read.name for read in reads), 3)}"
                         f"{f' ({said})' if said else ''}: nothing to draft a mapping from")
    shown_names = list(dict.fromkeys(r.name for r in reads))  # a file per patient: one name shown
    shown = record_set_names(shown_names, adapter.one_record_set_per_file)
    reads = [_named(r, shown[r.name]) for r in reads]  # as the draft names them: without a patient number
    common = _affixes(shown_names)[0] if len(shown_names) > 1 else shown_names[0]
    return DraftSource(
        source_id=source_id or source_id_from(common or shown_names[0]), format=adapter.format,
        one_record_set_per_file=adapter.one_record_set_per_file,
        reader_options=frozenset(adapter.Options.model_fields), files=reads,
        profiles=[profile_file(r) for r in reads], format_lists=format_lists_supported(),
        record_keys="record_keys" in SourceMapping.model_fields, given_options=given, advised_options=advised)


def _named(read: FileRead, record_set: str | None) -> FileRead:
    """A one-record-set file's record set named after the file's name as shown (None: the format names them)."""
    if record_set is None:
        return read
    return replace(read, record_sets=dict(zip([record_set], read.record_sets.values(), strict=False)))


def validate_draft(draft: Draft) -> list[str]:
    """Problems of the draft as a mapping ("line N: ..."); empty when it validates."""
    import tempfile

    from etl.onboard.check import mapping_findings

    with tempfile.TemporaryDirectory(prefix="rtw-scaffold-") as folder:
        path = Path(folder) / f"{draft.source_id}.yaml"
        path.write_text(draft.text, encoding="utf-8")
        _, findings = mapping_findings(path)
    return [f"{f.where.replace(str(path) + ', ', '')}: {f.message}" for f in findings]
