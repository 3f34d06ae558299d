"""The mapping engine: record sets + a source mapping -> core-table rows and quarantine.

Rules that keep every record accounted for:
- A record (one ItemGroupData, one CSV row) with any value that cannot be harmonised is
  quarantined whole, from every table it feeds, with every reason; never loaded half-NULL.
- A record whose key repeats an earlier one in the same record set is quarantined as a
  duplicate; the first copy is loaded.
- A record set that no table maps (a new form in an export) is quarantined, so a data
  manager sees it instead of losing it; one the mapping lists under `ignore:` is left out on
  purpose and counted in a notice (its rows are staged, never read as records).
- Sections joined into one record (`from: [HEAD, SECTION, ...]`): each section row is part of
  the head record with the same join keys (loaded or quarantined with it, and counted in its own
  file's rows). A section row with no head record, or a second one for the same keys, is
  quarantined as its own record (CONF-SECTION-JOINED), never dropped.
Patient-level quasi-identifiers (birth date, EUPID) are used here, for ages and linkage, and
leave only as birth year/month and keyed pseudonyms. Rejected values of those fields are
never echoed into quarantine reasons, nor is a value holding any patient number or birth date of the
source (etl/transform/screen.py); a free text loaded as written has them replaced by {patient} and
{date}, except the record's own number, which quarantines it. A record key's local part (a record number
typed by hand) holding a number of the source's patient-key shape or its own patient's birth date is published
as a keyed digest of it (pseudonym.py `published_key`): not another patient's birth date, which would change the
key of a record whenever a patient born that day arrived or left (the keys' shapes change it, rarely: `publish_keys`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from etl import schema
from etl.extract.adapter import LINE_COLUMN, adapter_for
from etl.extract.file_names import PatientNumbers
from etl.frames import row_dicts
from etl.schema import core_columns
from etl.spreadsheet import BOOLEAN_WORDS
from etl.transform import iccc3, icdo3
from etl.transform.days import days_shown
from etl.transform.mapping import FieldSpec, SourceMapping, TableSpec, fill_template, template_fields
from etl.transform.pseudonym import (
    PseudonymKey,
    as_seen,
    eupid_form,
    holds_patient_key,
    normalise_patient_key,
    person_id,
    published_key,
    record_id,
    shown_local,
    source_pseudonym,
)
from etl.transform.screen import TextScreen
from etl.transform.values import (
    PartialDate,
    ValueRejected,
    age_days,
    code_form,
    folded_codes,
    gene_symbol_case,
    map_code,
    parse_date,
    parse_decimal,
    parse_integer,
)

if TYPE_CHECKING:
    import pyarrow as pa

PRIVATE_FIELDS = {"birth_date", "eupid"}
# Y/N, yes/no, 1/0, and a spreadsheet's TRUE/FALSE in its language's words, as a CSV saved from it writes them
_BOOLEAN_WORDS = {"y": True, "yes": True, "1": True, "n": False, "no": False, "0": False,
                  **{word.casefold(): value for word, value in BOOLEAN_WORDS.items()}}
RECORD_COLUMNS = list(schema.columns("stage.record"))
REJECTION_COLUMNS = list(schema.columns("stage.rejection"))
LINK_KEY_COLUMNS = list(schema.columns("stage.link_key"))

# The conformance rules harmonise applies while parsing values (catalogued in expectations/harmonise.json).
REQUIRED_PRESENT = "CONF-REQUIRED-PRESENT"
DATE_VALID = "CONF-DATE-VALID"
CODE_IN_LIST = "CONF-CODE-IN-LIST"
NUMBER_VALID = "CONF-NUMBER-VALID"
ICDO3_MORPHOLOGY = "CONF-ICDO3-MORPHOLOGY"
ICDO3_BEHAVIOUR = "CONF-ICDO3-BEHAVIOUR"
ICDO3_TOPOGRAPHY = "CONF-ICDO3-TOPOGRAPHY"
KEY_UNIQUE = "CONF-KEY-UNIQUE"
PATIENT_KEY_PRESENT = "CONF-PATIENT-KEY-PRESENT"
NO_PATIENT_KEY_IN_TEXT = "CONF-TEXT-NO-PATIENT-KEY"
PATIENT_AGREES = "CONF-PATIENT-AGREES"
_FREE_TEXT = {"text", "list"}  # the types whose values are loaded as written, unchecked by a code list
# Codes harmonise uses as written, never screened for other patients: an EUPID links persons (one made
# {patient} would join every patient whose EUPID had a key's shape), a centre routes queries.
_CODES_AS_WRITTEN = PRIVATE_FIELDS | {"centre_id"}
_NO_PATIENT_KEY = "(no patient key)"  # a record key's first part when the record has no patient key
_BIRTH_WRITTEN = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%m/%d/%Y")  # how a typed date may read
# The parts of an ICD-O-3 morphology (8500/33) a mapping may also read from a column of their own.
_ICDO3_PARTS = {"icdo3_behaviour": "behaviour", "icdo3_grade": "grade"}
FORM_MAPPED = "CONF-FORM-MAPPED"
SECTION_JOINED = "CONF-SECTION-JOINED"
_RULE_BY_TYPE = {"date": DATE_VALID, "integer": NUMBER_VALID, "decimal": NUMBER_VALID,
                 "icdo3_histology": ICDO3_MORPHOLOGY, "icdo3_behaviour": ICDO3_BEHAVIOUR,
                 "icdo3_grade": ICDO3_MORPHOLOGY, "icdo3_topography": ICDO3_TOPOGRAPHY}



class _CodePart(NamedTuple):
    """A field reading a part of an ICD-O-3 morphology (behaviour, grade) beside the field reading it whole."""

    morphology: str
    morphology_spec: FieldSpec
    name: str
    spec: FieldSpec
    part: str


def _code_parts(fields: Mapping[str, FieldSpec]) -> list[_CodePart]:
    parts = [_CodePart(m_name, m_spec, name, spec, _ICDO3_PARTS[spec.type])
             for m_name, m_spec in fields.items() if m_spec.type == "icdo3_histology"
             for name, spec in fields.items() if spec.type in _ICDO3_PARTS]
    # A diagnosis whose mapping reads no behaviour keeps the one its morphology writes (9861/3), as if it read
    # the behaviour of the same column: dropped, it left the tumour out of ICCC-3 and of every count of malignant
    # tumours, silently. A histology written alone (8260) still has none; DIAG-BEHAVIOUR-PRESENT asks for it.
    morphology = fields.get("icdo3_morphology")
    if morphology is not None and morphology.type == "icdo3_histology" and "icdo3_behaviour" not in fields:
        # No column gives the behaviour, so the part's own spec is never read (only a given value is compared).
        parts.append(_CodePart("icdo3_morphology", morphology, "icdo3_behaviour", morphology, "behaviour"))
    return parts


log = logging.getLogger(__name__)
# Columns every record set carries (lineage, ODM keys): a joined record takes them from its head.
_LINEAGE = {"source_file", "source_file_sha256", LINE_COLUMN}


class _CodedAsNone(ValueRejected):
    """A required field's code that the code list makes no value: quarantined as an empty one is."""


class HarmoniseError(ValueError):
    """A whole source cannot be harmonised (e.g. the export lacks a mapped column)."""


@dataclass
class HarmoniseResult:
    tables: dict[str, pd.DataFrame]
    records: pd.DataFrame  # every source record, clean or not, with its lineage
    rejections: pd.DataFrame  # one row per value that could not be harmonised
    file_counts: dict[str, dict[str, int]]  # sha256 -> rows_read / rows_loaded / rows_quarantined
    patient_counts: pd.DataFrame  # PATIENT_COUNT_COLUMNS: what each source patient's rows counted, by record set
    notices: list[str] = field(default_factory=list)  # e.g. the rows of ignored record sets
    # One row per source patient: keyed birth-date tokens for linkage (etl/link); never a clear date.
    link_keys: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LINK_KEY_COLUMNS))


@dataclass(frozen=True)
class Problem:
    """Why a record cannot be harmonised: the rule it breaks, the field and the offending value."""

    rule_id: str
    field: str | None
    value: str | None
    message: str


@dataclass
class _Record:
    """Where one source record stands while it is harmonised."""

    record_set: str
    row: dict[str, Any]
    patient_key: str
    local: str  # the record's key without its patient's (`fill_key` of the mapping's record key)
    published_key: str = ""  # set once the source's screen is (`_Engine.publish_keys`)
    problems: list[Problem] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    absorbed: list[tuple[str, str]] = field(default_factory=list)  # (record set, file sha256) of each joined row
    norm: str = field(init=False)  # the normalised patient key, asked for by every table of the record

    def __post_init__(self) -> None:
        self.norm = normalise_patient_key(self.patient_key)

    @property
    def rejected(self) -> bool:
        return bool(self.problems)

    def reject(self, rule_id: str, field_name: str | None, value: str | None, message: str) -> None:
        self.problems.append(Problem(rule_id, field_name, value, message))


def fill_key(template: str, row: Mapping[str, str], record_set: str | None = None) -> str:
    """The template with each `{field}` the row's value, stripped (`{record_set}`: the one given)."""
    return fill_template(template, [record_set if name == "record_set" and record_set is not None
                                    else row[name].strip() for name in template_fields(template)])


def _named(spec: FieldSpec, origin: FieldSpec) -> str:
    """How a message names the spec a field's value was read by: its column or template, and for a first_of
    alternative its place in the list (`first_of.1: {YEAR}-{MONTH}`), as a mapping error names it."""
    if spec.first_of is None or origin is spec:
        return origin.origin()
    place = next(i for i, alternative in enumerate(spec.first_of) if alternative is origin)
    return f"first_of.{place}: {origin.origin()}"


class _Engine:
    def __init__(self, mapping: SourceMapping, key: PseudonymKey, run_id: str):
        self.mapping, self.key, self.run_id = mapping, key, run_id
        self.nulls = set(mapping.null_values)
        self.unknown_parts = tuple(p.upper() for p in mapping.unknown_date_parts)
        self.decimal = mapping.decimal_mark()
        self.typed_numbers = adapter_for(mapping.format).typed_numbers
        self.core = core_columns()
        self.birth: dict[str, PartialDate] = {}
        # A birth date refused (written in a layout the mapping cannot read): the days it may be read as, by patient
        self.refused_birth: dict[str, frozenset[date]] = {}
        self.birth_of: dict[str, PartialDate] = {}  # by source pseudonym: the birth date linkage tokens
        self.eupid: dict[str, str] = {}
        self.not_eupids = 0  # patient records whose EUPID field holds no one's EUPID (`eupid_form`)
        self.centre: dict[str, str] = {}  # the centre of each patient, for records that do not repeat it
        self._formats: dict[int, tuple[str, ...]] = {}
        self._folded: dict[int, dict[str, object]] = {}  # each code list keyed by code_form, folded once
        self.screen = TextScreen.of([], [])  # the source's patients: harmonise_source sets it once records are read

    # -- values ---------------------------------------------------------------------------
    def _raw(self, spec: FieldSpec, row: Mapping[str, str]) -> str | None:
        """The raw text a field reads from the record (None: no value), from its first alternative giving one."""
        given = self._given(spec, row)
        return given[1] if given is not None else None

    def _given(self, spec: FieldSpec, row: Mapping[str, str]) -> tuple[FieldSpec, str] | None:
        """The spec that gives the record's value, with its raw text: the field's own column or template, or
        the first of its `first_of` alternatives that gives one (read with that alternative's format and codes,
        so a date's precision is the alternative's; a code its code list reads as no value, "9": unknown, gives
        none, the next alternative being tried, and is the one given when no other gives a value); None when
        none gives a text."""
        coded_as_none = None
        for alternative in spec.alternatives():
            if (raw := self._read(alternative, row)) is None:
                continue
            if spec.first_of is None or not self._stands_for_none(alternative, raw):
                return alternative, raw
            coded_as_none = coded_as_none or (alternative, raw)
        return coded_as_none

    def _stands_for_none(self, spec: FieldSpec, raw: str) -> bool:
        """Whether the spec's code list reads `raw` as no value (an unlisted code gives one: refused)."""
        try:
            return spec.codes is not None and self.code(spec, raw) is None
        except ValueRejected:
            return False

    def _read(self, spec: FieldSpec, row: Mapping[str, str]) -> str | None:
        if spec.template is not None:
            parts = [row[c].strip() for c in template_fields(spec.template)]
            return None if all(p in self.nulls for p in parts) else fill_template(spec.template, parts)
        assert spec.column is not None
        raw = row[spec.column].strip()
        return None if raw in self.nulls else raw

    def convert(self, spec: FieldSpec, raw: str) -> Any:
        if spec.codes is None:
            return self.typed(spec, raw)
        return self.translated(spec, raw, self.code(spec, raw))

    def code(self, spec: FieldSpec, raw: str) -> Any:
        """The value the field's code list gives a raw code (values.map_code)."""
        assert spec.codes is not None
        folded = self._folded.get(id(spec))
        if folded is None:
            folded = self._folded[id(spec)] = folded_codes(spec.codes)
        return map_code(raw, spec.codes, folded)

    def translated(self, spec: FieldSpec, code: str, value: Any) -> Any:
        """A code list's value read as the field's type: the code is translated, then typed
        (`{type: icdo3_histology, codes: {NB01: "9500/3"}}` gives 9500). Loading a mapping checks
        every value of its code lists this way, so a value the type cannot read is refused there."""
        if value is None or (spec.type == "boolean" and isinstance(value, bool)):
            return value
        if spec.type == "text":
            return value  # the code list's value is the harmonised value, as written (not re-cased)
        if spec.type in ("integer", "decimal") and isinstance(value, int | float) and not isinstance(value, bool):
            if spec.type == "integer" and not float(value).is_integer():
                raise ValueRejected(f"code '{code}' maps to {value!r}, not a whole number")
            number = int(value) if spec.type == "integer" else float(value)
            return number * spec.scale if spec.scale is not None and spec.type == "decimal" else number
        try:
            return self.typed(spec, str(value))
        except (ValueRejected, icdo3.IcdO3Error) as exc:
            raise ValueRejected(f"code '{code}' maps to {value!r}, which type {spec.type} cannot read: {exc}") from None

    def typed(self, spec: FieldSpec, raw: str) -> Any:
        """The raw text read as the field's type (its case, scale, date formats and decimal mark applied)."""
        kind = spec.type
        if kind == "date":
            formats = self._formats.get(id(spec))
            if formats is None:
                formats = self._formats[id(spec)] = self.mapping.date_formats(spec)
            return parse_date(raw, formats, self.unknown_parts)
        if kind == "integer":
            return parse_integer(raw)
        if kind == "decimal":
            number = parse_decimal(raw, self.decimal, typed=self.typed_numbers)
            return number * spec.scale if spec.scale is not None else number
        if kind == "boolean":
            value = _BOOLEAN_WORDS.get(raw.casefold())
            if value is None:
                raise ValueRejected(f"'{raw}' is not yes/no (expected one of Y, N, yes, no, true, false, 1, 0, or a "
                                    "spreadsheet's TRUE/FALSE in its language: WAHR, VRAI, VERO, ...)")
            return value
        if kind == "list":
            assert spec.separator is not None
            items = [self._case(spec, item.strip()) for item in raw.split(spec.separator) if item.strip()]
            return "|".join(items) or None
        if kind == "icdo3_histology":
            return icdo3.parse_morphology(raw).histology
        if kind == "icdo3_behaviour":
            if "/" in raw or len(raw.strip()) > 1:
                return icdo3.parse_morphology(raw).behaviour
            if raw.strip() not in icdo3.VALID_BEHAVIOURS:
                raise ValueRejected(f"behaviour '{raw}' is not an ICD-O-3 behaviour code "
                                    f"({', '.join(sorted(icdo3.VALID_BEHAVIOURS))})")
            return raw.strip()
        if kind == "icdo3_grade":
            return icdo3.parse_grade(raw)
        if kind == "icdo3_topography":
            return icdo3.parse_topography(raw)
        return self._case(spec, raw)

    def _code_parts_agree(self, pairs: Sequence[_CodePart], values: dict[str, Any], record: _Record) -> None:
        """A part of the code (the behaviour, the grade) read from a column of its own must be the one the
        morphology writes: `8500/3` beside a behaviour `2` is malignant or in situ, which decides its ICCC-3
        class, and the record cannot say which is right. Such a record is quarantined naming both columns
        and values. A column that gives no value (empty, or a code read as none: a behaviour 9, unknown)
        leaves the part to the morphology: `9470/3` beside an unknown behaviour is malignant, and loading it
        without a behaviour would leave it out of ICCC-3 and of every count of malignant tumours."""
        for pair in pairs:
            given = values.get(pair.name)
            written = self._morphology_written(pair.morphology_spec, record) \
                if values.get(pair.morphology) is not None else None
            if written is None:
                continue
            m_raw, morphology, m_spec = written
            own = getattr(morphology, pair.part)
            if own is None or own == given:
                continue
            if given is None:  # a value refused has quarantined the record already
                values[pair.name] = own
                continue
            read = self._given(pair.spec, record.row)
            spec, raw = read if read is not None else (pair.spec, "")
            if self._private(record, raw) or self._private(record, m_raw):
                raw = m_raw = "<hidden>"
            record.reject(ICDO3_BEHAVIOUR if pair.part == "behaviour" else ICDO3_MORPHOLOGY, pair.name,
                          f"{m_raw} vs {raw}",
                          f"{pair.name} ({_named(pair.spec, spec)}): {pair.part} '{raw}' contradicts "
                          f"{pair.morphology} ({_named(pair.morphology_spec, m_spec)}) '{m_raw}', whose {pair.part} "
                          f"is {own}: correct one of them")

    def _morphology_written(self, spec: FieldSpec, record: _Record
                            ) -> tuple[str, icdo3.Morphology, FieldSpec] | None:
        """The raw text of an `icdo3_histology` field, the whole morphology it writes (its code list's value
        when it has one) and the spec (a first_of alternative) it was read by; None for a value that is not one."""
        given = self._given(spec, record.row)
        if given is None:
            return None
        origin, raw = given
        code = self.code(origin, raw) if origin.codes is not None else raw
        if code is None:
            return None
        try:
            return raw, icdo3.parse_morphology(str(code)), origin
        except icdo3.IcdO3Error:
            return None

    def _private(self, record: _Record, raw: str) -> bool:
        """Whether a value repeats the record's patient number or, written any usual way, birth date, or
        holds another patient's number or birth date of the source: a message may not quote it."""
        seen = as_seen(raw)  # once for the three checks: a zero-width space typed into a number hides it from no reader
        if holds_patient_key(seen, record.patient_key):
            return True
        if any(day.strftime(layout) in seen for day in self._own_days(record.norm) for layout in _BIRTH_WRITTEN):
            return True
        return self.screen.holds(seen)

    def _own_days(self, norm: str) -> frozenset[date]:
        """The days a patient's birth date is (given to the day), or may be (refused: each day its text reads as)."""
        birth = self.birth.get(norm)
        given = frozenset([birth.value]) if birth is not None and birth.precision == "day" else frozenset()
        return given | self.refused_birth.get(norm, frozenset())

    def births(self, rows: Iterable[Mapping[str, str]]) -> list[PartialDate]:
        """The birth dates the patient records' rows give, as harmonise reads them; one that cannot be read
        (its record is quarantined without quoting it) as each day its text may be read as: written to the day
        in a layout the mapping does not take (03/08/2007 in an ISO source), it still tells the day."""
        found = []
        for row in rows:
            birth, refused = self._birth(row)
            found += [birth] if birth is not None else [PartialDate(day, "day") for day in sorted(refused)]
        return found

    def _birth(self, row: Mapping[str, str]) -> tuple[PartialDate | None, frozenset[date]]:
        """The birth date a patient record gives; when harmonise refuses it, the days its text may be read as
        (days.py `days_shown`: none for a text that reads as no day)."""
        spec = self.mapping.patient.fields.get("birth_date")
        given = self._given(spec, row) if spec is not None else None
        if given is None:
            return None, frozenset()  # none, none given, or one for every patient (const:, nobody's own)
        try:
            birth = self.convert(*given)
        except (ValueRejected, icdo3.IcdO3Error):
            return None, days_shown(given[1])
        return (birth if isinstance(birth, PartialDate) else None), frozenset()

    def eupids(self, rows: Iterable[Mapping[str, str]]) -> list[str]:
        """The EUPIDs the patient records' rows give, as written (screen.py takes each whole, in any case): what no
        other field may show, though the EUPID field itself is a code used as written (`_CODES_AS_WRITTEN`)."""
        spec = self.mapping.patient.fields.get("eupid")
        return [raw for row in rows if (raw := self._raw(spec, row))] if spec is not None and spec.const is None else []

    def read_births(self, patients: Iterable[_Record]) -> None:
        """Each patient's birth date (the first a patient record gives), before any key is published: a record
        key hides its own patient's, and a refused one's every reading (kept apart: no age is counted from it)."""
        for record in patients:
            birth, refused = self._birth(record.row)
            if birth is not None:
                self.birth.setdefault(record.norm, birth)
            elif refused:
                self.refused_birth[record.norm] = self.refused_birth.get(record.norm, frozenset()) | refused

    @staticmethod
    def _case(spec: FieldSpec, text: str) -> str:
        if spec.case == "upper":
            return text.upper()
        if spec.case == "lower":
            return text.lower()
        if spec.case == "gene":
            return gene_symbol_case(text)
        return text

    def values(self, fields: Mapping[str, FieldSpec], record: _Record) -> dict[str, Any]:
        """Harmonise the plain fields of one record; rejected values become reasons."""
        out: dict[str, Any] = {}
        for name, spec in fields.items():
            if spec.age_at is not None or spec.ref is not None:
                continue
            if spec.const is not None:
                out[name] = spec.const
                continue
            given = self._given(spec, record.row)
            if given is None:
                if spec.required:
                    record.reject(REQUIRED_PRESENT, name, None, f"{name} ({spec.origin()}): required but empty")
                out[name] = None
                continue
            origin, raw = given  # a first_of alternative: read, and named in a message, as the one it is
            try:
                out[name] = value = self.convert(origin, raw)
                # A code standing for no value ("9": unknown) is none given (of first_of: none of them gave one).
                if value is None and spec.required:
                    raise _CodedAsNone(f"required, but its code '{raw}' stands for no value")
                if origin.codes is None and spec.type in _FREE_TEXT and value and holds_patient_key(value, record.norm):
                    out[name] = None  # the patient's number typed into a note: held back, never shown
                    record.reject(NO_PATIENT_KEY_IN_TEXT, name, "<hidden>",
                                  f"{name} ({_named(spec, origin)}): holds the patient's own number (hidden)")
                elif isinstance(value, str) and value and _screened(name, spec):
                    # Another patient's number or birth date: loaded without. A first_of field is screened
                    # whole (a code list's value too), as carry_over.py screens a carried column anew.
                    out[name] = self.screen.screened(value)
                elif name == "centre_id" and isinstance(value, str) and self.screen.names_a_patient(value):
                    out[name] = None  # a centre routes queries as written: one holding a number is never shown
                    record.reject(NO_PATIENT_KEY_IN_TEXT, name, "<hidden>",
                                  f"{name} ({_named(spec, origin)}): holds a patient's number (hidden), where a "
                                  "centre's code was expected")
            except (ValueRejected, icdo3.IcdO3Error) as exc:
                message, shown = str(exc), raw
                # Never echo a birth date or EUPID, even a broken one, nor the patient's number or birth
                # date typed into another field.
                if name in PRIVATE_FIELDS or self._private(record, raw):
                    message, shown = message.replace(raw, "<hidden>"), "<hidden>"
                rule = (REQUIRED_PRESENT if isinstance(exc, _CodedAsNone) else CODE_IN_LIST if origin.codes is not None
                        else _RULE_BY_TYPE.get(spec.type, CODE_IN_LIST))
                record.reject(rule, name, shown, f"{name} ({_named(spec, origin)}): {message}")
                out[name] = None
        return out

    # -- records --------------------------------------------------------------------------
    def records(self, record_set: str, frame: pd.DataFrame) -> list[_Record]:
        mapping = self.mapping
        record_key = mapping.record_key_for(record_set)
        # the key's columns, and those of every section read from these records (sections joined to them included)
        needed = set(mapping.key_columns(record_set)).union(*(
            mapping.needed_columns(section) for section, spec in mapping.sections().items() if spec.head == record_set))
        missing = sorted(needed - set(frame.columns))
        if missing and not adapter_for(mapping.format).sparse_columns:
            files = ", ".join(sorted(set(frame["source_file"])))
            # No source id in front: the run's message, its verdict and rtw status put it there already.
            raise HarmoniseError(f"{files} (record set {record_set}) has no column "
                                 f"{', '.join(missing)}, which sources/{mapping.source_id}.yaml maps")
        for column in missing:  # ODM: an item nobody filled in never shows up in the export
            frame = frame.assign(**{column: ""})
        result = []
        rows = row_dicts(frame.astype({c: str for c in needed}))
        absorbed_columns = [c for c in frame.columns if c.startswith(_ABSORBED)]
        for row in rows:
            patient_key = str(row[mapping.patient_key]).strip()
            local = fill_key(record_key, row, record_set)
            record = _Record(record_set, row, patient_key, local,
                             absorbed=[(c.removeprefix(_ABSORBED), row[c]) for c in absorbed_columns if row[c]])
            if patient_key in self.nulls:
                record.reject(PATIENT_KEY_PRESENT, mapping.patient_key, None,
                              f"patient key ({mapping.patient_key}): empty")
            result.append(record)
        return result

    def publish_keys(self, records: Iterable[_Record]) -> None:
        """Each record's published key, once the screen and the births are read: a local part typed with a
        number of the source's patient-key shape or the record's own patient's birth date (a registry's record
        number column edited by hand) is published as a keyed digest of it (pseudonym.py `shown_local`).
        Another patient's birth date alone names nobody (a visit on the day a patient was born): a record keeps
        its key night after night as patients arrive and leave, and a waiver, a query or a response that names
        it still does, unless the shapes of the source's patient keys change (a patient whose key has a new
        shape, or the last of one leaving: screen.py `holds_number`). Then a load carries no patient over
        (carry_over.py): an unchanged patient's record key may be published otherwise now."""
        for record in records:
            if record.patient_key in self.nulls:
                shown = shown_local(self.key, _NO_PATIENT_KEY, record.local, lambda text: self.screen.in_key(text)[0])
                record.published_key = f"{_NO_PATIENT_KEY}|{shown}"
            else:
                record.published_key = self._published(record.patient_key, record.local)

    def _published(self, patient_key: str, local: str) -> str:
        """A published record key (pseudonym.py `published_key`): what a reference to the record computes too."""
        own = self._own_days(normalise_patient_key(patient_key))

        def shows(text: str) -> bool:
            number, days = self.screen.in_key(text)
            return number or not own.isdisjoint(days)

        return published_key(self.key, self.mapping.source_id, patient_key, local, shows)

    def mark_duplicates(self, records: Iterable[_Record]) -> None:
        """A repeated record key among all the source's records (every record set's keys are published in one
        space: the patient's pseudonym and the local key): the first copy is loaded; the n-th repeat is
        rejected as `<key>#<n>`. Told apart by the published key, which core holds unique: a patient number
        written in another case (`iltb-00001`) is the same patient, and the same record."""
        first: dict[str, tuple[Any, str]] = {}  # published key -> line and record set of its first copy
        copies: dict[str, int] = {}
        for record in records:
            original = record.published_key
            if original in first:
                copies[original] = copies.get(original, 1) + 1
                record.published_key = f"{original}#{copies[original]}"
                line, record_set = first[original]
                if record_set == record.record_set:
                    said = f"already read at line {line}{self._one_per_patient(record)}"
                else:
                    said = f"already read at line {line} of {record_set}{self._one_key(record_set, record)}"
                record.reject(KEY_UNIQUE, None, None, f"duplicate: record key {original} {said}")
            else:
                first[original] = record.row.get("_line"), record.record_set

    def _key_named(self, record_set: str) -> str:
        """Where the mapping gives a record set's key: its own under record_keys, or the default, as shown (a
        fixed key may be typed with a patient's number: its published key hides it too)."""
        template = self.screen.screened(self.mapping.record_key_for(record_set))
        return (f"record_keys.{record_set}" if record_set in self.mapping.record_keys else "record_key") + \
            f" ('{template}')"

    def _one_key(self, first: str, record: _Record) -> str:
        """What to do of a record keyed as one of another record set is: its key and theirs give both one key."""
        named = {self._key_named(first): None, self._key_named(record.record_set): None}
        return (f"; {' and '.join(named)} give{'s' if len(named) == 1 else ''} a record of {first} and one of "
                f"{record.record_set} one key: give each record set its own under record_keys")

    def _one_per_patient(self, record: _Record) -> str:
        """What to do of a duplicate whose record key names no column but the patient key: such a key allows
        one record per patient in its record set, and a second is not loaded however it differs from the
        first. A record without a patient key is quarantined for that already: no hint."""
        template = self.screen.screened(self.mapping.record_key_for(record.record_set))
        if record.patient_key in self.nulls or "record_key" in self.mapping.key_columns(record.record_set).values():
            return ""
        named = "no column" if set(template_fields(template)) <= {"record_set"} else "no column but the patient key"
        return (f"; {self._key_named(record.record_set)} names {named}, so {record.record_set} holds one "
                "record per patient: remove the repeat from the export, or, if the patient has several records "
                f"there, key them by a column that tells them apart ('{template}[{{column}}]'; their keys change)")

    def own_centre(self, row: Mapping[str, Any]) -> str | None:
        """The centre a record names itself, read as the patient record's centre_id is (a template, the first
        of first_of giving one); None when it names none. SDTM datasets and trial sheets name the site on the
        demographics record only: a column the record set lacks is empty."""
        spec = self.mapping.patient.fields.get("centre_id")
        if spec is None:
            return None
        given = self._given(spec, {column: row.get(column, "") for column in spec.columns()})
        centre = self._case(*given) if given is not None else None
        return None if centre is None or self.screen.names_a_patient(centre) else centre  # a number: never shown

    # -- tables ---------------------------------------------------------------------------
    def patient_rows(self, records: list[_Record]) -> list[dict[str, Any]]:
        rows = []
        for record in records:
            values = self.values(self.mapping.patient.fields, record)
            record.tables.append("patient_source")
            norm = record.norm  # (its birth date read already: `read_births`)
            if values.get("eupid") and (eupid := eupid_form(str(values["eupid"]))):
                self.eupid.setdefault(norm, eupid)
            elif values.get("eupid"):
                self.not_eupids += 1  # NK, EU00000000: linked without it (harmonise_source's notice counts them)
            if values.get("centre_id"):
                self.centre.setdefault(norm, str(values["centre_id"]))
            rows.append({"_record": record, **values})
        return rows

    def table_rows(self, table: str, spec: TableSpec, records: list[_Record]) -> list[dict[str, Any]]:
        """A row of the table per record, or with `repeat:` per column group that is not all empty."""
        rows = []
        groups, repeated = spec.groups(), spec.repeated_fields()
        code_parts = {group: _code_parts(fields) for group, fields in groups}  # found once, not per record
        # matched as a code list's codes are (`off_label` is OFF_LABEL): an exact match dropped such a record unsaid
        where = {column: {code_form(value) for value in allowed} for column, allowed in (spec.where or {}).items()}
        for record in records:
            if where and any(code_form(record.row.get(c, "")) not in allowed for c, allowed in where.items()):
                continue
            for group, fields in groups:
                if group is not None and all(self._raw(fields[name], record.row) is None for name in repeated):
                    continue
                values = self.values(fields, record)
                if code_parts[group]:
                    self._code_parts_agree(code_parts[group], values, record)
                for name, fspec in fields.items():
                    if fspec.age_at is not None:
                        values[name] = self._age_days(record, values.get(fspec.age_at))
                    elif fspec.ref is not None:
                        values[name] = self._reference(record, fspec)
                rows.append({"_record": record, "_group": group, **values})
                if table not in record.tables:
                    record.tables.append(table)
        return rows

    def _age_days(self, record: _Record, at: Any) -> int | None:
        birth = self.birth.get(record.norm)
        if not isinstance(at, PartialDate) or birth is None:
            return None
        return age_days(at, birth)

    def _reference(self, record: _Record, spec: FieldSpec) -> str | None:
        assert spec.key is not None and spec.ref is not None
        if any(record.row[c].strip() in self.nulls for c in template_fields(spec.key)):
            return None
        return record_id(self.mapping.source_id, spec.ref, self._published(record.patient_key,
                                                                            fill_key(spec.key, record.row)))

    def finish(self, table: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Turn harmonised rows of clean records into a frame with the core table's columns."""
        columns = self.core[table]
        id_column = columns[0] if columns[0] != "patient_id" else None
        with_precision = {c.removesuffix("_precision") for c in columns if c.endswith("_precision")}
        out = []
        for row in rows:
            record: _Record = row.pop("_record")
            group = row.pop("_group", None)
            if record.rejected:
                continue
            final: dict[str, Any] = {}
            for name, value in row.items():
                if isinstance(value, PartialDate):
                    final[name] = value.value
                    if name in with_precision:
                        final[f"{name}_precision"] = value.precision
                else:
                    final[name] = value
            final["patient_id"] = person_id(self.key, self.mapping.source_id, record.patient_key,
                                            self.eupid.get(record.norm))
            if id_column:  # a column group's row: the record's key and the group (`repeat:`), as a ref's key gives it
                row_key = record.published_key if group is None else f"{record.published_key}/{group}"
                final[id_column] = record_id(self.mapping.source_id, table, row_key)
            final.update(source_id=self.mapping.source_id, source_file_sha256=record.row["source_file_sha256"],
                         source_record_key=record.published_key, run_id=self.run_id)
            out.append(final)
        # Core columns no mapping fills stay NULL; object dtype keeps them NULL, not NaN.
        return pd.DataFrame(out).reindex(columns=columns).astype(object).where(lambda f: f.notna(), None)


def _patient_source(engine: _Engine, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per source patient: the first clean patient record, coarsened. A later patient record of theirs
    (a registry's row per tumour repeats the patient) giving another sex, or a birth date the first's cannot be,
    is held back (`_disagrees`): which is right only the centre knows."""
    first: dict[str, dict[str, Any]] = {}
    kept = []
    for row in rows:
        record: _Record = row["_record"]
        norm = record.norm
        if record.rejected:
            continue
        if norm in first:
            _disagrees(engine.mapping, record, row, first[norm])
            continue
        first[norm] = row
        birth = row.get("birth_date")
        pseudonym = source_pseudonym(engine.key, engine.mapping.source_id, record.patient_key)
        if isinstance(birth, PartialDate):
            engine.birth_of[pseudonym] = birth
        kept.append({
            "_record": record,
            "source_patient_pseudonym": pseudonym,
            "centre_id": row.get("centre_id"),
            "link_method": "eupid" if norm in engine.eupid else "unlinked",  # linkage (etl/link) revises it
            "match_probability": 1.0,
            "sex": row.get("sex"),
            "birth_year": birth.value.year if isinstance(birth, PartialDate) else None,
            "birth_month": birth.value.month if isinstance(birth, PartialDate) and birth.precision != "year" else None,
            "country": row.get("country"),
        })
    return engine.finish("patient_source", kept)


def _disagrees(mapping: SourceMapping, record: _Record, row: Mapping[str, Any], first: Mapping[str, Any]) -> None:
    """Hold back a patient record whose sex, or birth date, the patient's first record gives otherwise (a birth
    date known to the month agrees with a day in it; one not given agrees with any): it was loaded, its patient's
    demographics silently the first's, and ages counted from a birth date it does not give. Never quoted."""
    said_first = first["_record"].published_key
    fields = mapping.patient.fields
    sex, other_sex = row.get("sex"), first.get("sex")
    if sex is not None and other_sex is not None and sex != other_sex:
        record.reject(PATIENT_AGREES, "sex", str(sex), f"sex ({fields['sex'].origin()}): '{sex}', where the "
                      f"patient's record {said_first} gives '{other_sex}'; expected the patient's records to agree")
    birth, other_birth = row.get("birth_date"), first.get("birth_date")
    if (isinstance(birth, PartialDate) and isinstance(other_birth, PartialDate)
            and (birth.period_end < other_birth.value or other_birth.period_end < birth.value)):
        record.reject(PATIENT_AGREES, "birth_date", "<hidden>",
                      f"birth_date ({fields['birth_date'].origin()}): not the birth date the patient's record "
                      f"{said_first} gives (both hidden); expected the patient's records to agree")


def _link_keys(engine: _Engine, patient_source: pd.DataFrame) -> pd.DataFrame:
    """Per source patient, the birth date as keyed tokens: linkage compares dates without seeing them.

    The swapped token is the date with day and month exchanged, the commonest slip between
    dd/mm and mm/dd sources; a date given to the month or year only has no tokens (its year and
    month are in patient_source already)."""
    rows = [{"source_id": ps["source_id"], "source_patient_pseudonym": ps["source_patient_pseudonym"],
             "source_record_key": ps["source_record_key"], "harmonised_patient_id": ps["patient_id"],
             "has_eupid": ps["link_method"] == "eupid",
             **birth_tokens(engine.key, engine.birth_of.get(ps["source_patient_pseudonym"]))}
            for ps in row_dicts(patient_source)]
    return pd.DataFrame(rows, columns=LINK_KEY_COLUMNS)


def birth_tokens(key: PseudonymKey, birth: PartialDate | None) -> dict[str, str | None]:
    """The keyed tokens of a day-precise birth date and of its day/month swap (when that is a date)."""
    if birth is None or birth.precision != "day":
        return {"birth_token": None, "birth_swapped_token": None}
    day = birth.value
    swapped = day.replace(month=day.day, day=day.month) if day.day <= 12 and day.day != day.month else None
    return {"birth_token": key.digest("birth", day.isoformat()),
            "birth_swapped_token": key.digest("birth", swapped.isoformat()) if swapped else None}


class FieldReader(NamedTuple):
    """How harmonise reads a field of a record, for `rtw check` to read a source's values the night's way.

    given(spec, row): the spec giving the record its raw text (the field's column or template, or the first of
    its `first_of` alternatives giving one: not empty, no template whose parts are all `null_values`) and that
    text, None when none does. convert(spec, raw): the raw text read as that spec's type, code list, formats
    and case, raising one of `refused` for a value harmonise refuses."""

    given: Callable[[FieldSpec, Mapping[str, str]], tuple[FieldSpec, str] | None]
    convert: Callable[[FieldSpec, str], Any]
    refused: tuple[type[Exception], ...] = (ValueRejected, icdo3.IcdO3Error)


def given_reader(mapping: SourceMapping) -> FieldReader:
    """The harmonise engine's own reading of a mapping's fields (`FieldReader`): what `rtw check` tries a source's
    records with, so that check and the nightly run never disagree."""
    engine = _Engine(mapping, PseudonymKey(b"rtw-check"), "check")  # reading never uses the key
    return FieldReader(engine._given, engine.convert)


def value_reader(mapping: SourceMapping) -> Callable[[FieldSpec, str], Any]:
    """A field's raw text read as harmonise reads it (its type, code list, formats and case). Raises ValueRejected
    or IcdO3Error for a value harmonise refuses."""
    return given_reader(mapping).convert


def birth_dates(mapping: SourceMapping, rows: Iterable[Mapping[str, str]]) -> list[PartialDate]:
    """The birth dates the patient record set's rows give, as harmonise reads them (one it refuses as each day its
    text may be read as): what a free text may not show of the source's patients (etl/transform/screen.py)."""
    return _Engine(mapping, PseudonymKey(b"rtw-births"), "births").births(rows)  # no pseudonym is made


def eupids_given(mapping: SourceMapping, rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The EUPIDs the patient record set's rows give, as written: what a value of another field may not show of
    the source's patients (etl/transform/screen.py)."""
    return _Engine(mapping, PseudonymKey(b"rtw-eupids"), "eupids").eupids(rows)  # no pseudonym is made


def screened_fields(mapping: SourceMapping) -> dict[str, list[str]]:
    """Per harmonised table, patient_source among them (the patient record's sex and country), the fields
    whose values harmonise screens for the source's patients (`_Engine.values`): free text loaded as
    written, not a code list's value, a code used as written, a constant, an age or a reference."""
    specs = {"patient_source": mapping.patient.fields, **{t: s.fields for t, s in mapping.tables.items()}}
    return {table: [name for name, spec in fields.items() if _screened(name, spec)] for table, fields in specs.items()}


def _screened(name: str, spec: FieldSpec) -> bool:
    """Whether harmonise screens a field's values for the source's patients: free text loaded as written, not
    a code list's value, a code used as written, a constant, an age or a reference (a first_of field: whole, where
    an alternative's values are; carry_over.py screens a carried column anew whole)."""
    if spec.first_of is not None:
        return any(_screened(name, alternative) for alternative in spec.first_of)
    return (spec.codes is None and spec.type in _FREE_TEXT and name not in _CODES_AS_WRITTEN
            and spec.const is None and spec.age_at is None and spec.ref is None)


def code_list_problems(mapping: SourceMapping) -> list[str]:
    """'<key path>.codes: code 'X' maps to ...' for each code list value its field's type cannot read:
    a mapping error, refused when the mapping loads rather than quarantining every record."""
    engine = _Engine(mapping, PseudonymKey(b"rtw-mapping"), "mapping")  # no pseudonym is made
    problems = []
    for where, _, name, spec in mapping.coded_fields():
        for code, value in (spec.codes or {}).items():
            try:
                engine.translated(spec, code, value)
            except ValueRejected as exc:
                problems.append(f"{where}.fields.{name}.codes: {exc}")
    return problems


def refuse_undeclared_items(mapping: SourceMapping, record_sets: Mapping[str, pa.Table], declared: frozenset[str],
                            files: Sequence[str]) -> None:
    """Fail the source when a column it maps is in none of its records and no ItemDef of its exports declares it
    (etl/extract/odm.py `undeclared_item`, which `rtw check` says too): a misspelt ItemOID would load empty.
    files: the source's current files, as shown."""
    from etl.extract.odm import undeclared_item

    for section, spec in mapping.sections().items():
        group = spec.record_sets()
        if group[0] not in record_sets:
            continue  # no record yet (no adverse event reported): nothing to judge its columns by (nor does check)
        # Each section by its own record sets: a table joining IG.AE onto the patient's IG.DM has its items there.
        present = {c for name in group if name in record_sets for c in record_sets[name].column_names}
        for column, key in mapping.needed_columns(section).items():
            problem = undeclared_item(column, declared) if column not in present else None
            if problem is not None:
                raise HarmoniseError(f"{', '.join(files)} (record set {'+'.join(group)}): {key} in "
                                     f"sources/{mapping.source_id}.yaml: {problem}")


def harmonise_source(mapping: SourceMapping, record_sets: Mapping[str, pd.DataFrame],
                     key: PseudonymKey, run_id: str, *, screen: TextScreen | None = None) -> HarmoniseResult:
    """Harmonise every record set of one source into core rows plus quarantine.

    screen: what a value may not show of the source's patients (etl/transform/parts.py `source_screen`:
    all of them, when these record sets are a part); default: the patients of these record sets."""
    engine = _Engine(mapping, key, run_id)
    notices = ignored_notices(mapping, record_sets)
    frames = {name: frame for name, frame in record_sets.items() if not mapping.is_ignored(name)}
    frames, strays = join_sections(mapping, frames)
    mapped = mapping.record_sets()
    records = {name: engine.records(name, frame) for name, frame in frames.items()}
    for name, (frame, reasons) in strays.items():
        recs = engine.records(name, frame)
        for record, reason in zip(recs, reasons, strict=True):
            record.reject(SECTION_JOINED, None, None, reason)
        records[f"{name} (not joined)"] = recs
    # What no value may show of the source's patients: every key read, and the births (read only if asked).
    patients = records.get(mapping.patient.head, [])
    engine.screen = screen or TextScreen(PatientNumbers.of({r.norm for recs in records.values() for r in recs
                                                            if r.patient_key not in engine.nulls}),
                                         lambda: engine.births(r.row for r in patients),
                                         lambda: engine.eupids(r.row for r in patients))
    engine.read_births(patients)
    for recs in records.values():
        engine.publish_keys(recs)
    unmapped = [name for name in records if name not in mapped and not name.endswith(" (not joined)")]
    # The mapped record sets' keys are told apart together (one published key space); a record set nobody
    # maps, quarantined whole, among itself.
    engine.mark_duplicates(r for name, recs in records.items() if name not in unmapped for r in recs)
    for name in unmapped:
        engine.mark_duplicates(records[name])
        for record in records[name]:
            record.reject(FORM_MAPPED, None, None,
                          f"record set {name} is not mapped in sources/{mapping.source_id}.yaml "
                          "(map it under tables:, or list it under ignore:)")

    # Patients first: their birth dates and EUPIDs are needed by every other table.
    patient_rows = engine.patient_rows(patients)
    table_rows = {table: engine.table_rows(table, spec, records.get(spec.head, []))
                  for table, spec in mapping.tables.items()}
    # A record quarantined by any table is held back from all of them: finish() skips it.
    tables = {"patient_source": _patient_source(engine, patient_rows)}
    if engine.not_eupids:
        notices.append(f"{mapping.source_id}: {engine.not_eupids} patient record(s) give an EUPID that is no one's "
                       "(fewer than 8 letters and digits, or one symbol repeated: a 'not known' such as NK or "
                       "EU00000000; not shown): linked without it (list the source's code under null_values)")
        log.warning(notices[-1])
    tables.update({table: engine.finish(table, rows) for table, rows in table_rows.items()})
    if "diagnosis" in tables and not tables["diagnosis"].empty:
        tables["diagnosis"] = _with_iccc3(tables["diagnosis"])
    return HarmoniseResult(tables, _records(engine, records), _rejections(mapping, records), _file_counts(records),
                           _patient_counts(engine, records), notices, _link_keys(engine, tables["patient_source"]))


def ignored_notices(mapping: SourceMapping, record_sets: Mapping[str, pd.DataFrame]) -> list[str]:
    """One notice per ignored record set present, with its rows per file: how those rows are accounted for."""
    notices = []
    for name, frame in sorted(record_sets.items()):
        if frame.empty or not mapping.is_ignored(name):
            continue
        per_file = frame.groupby("source_file").size() if "source_file" in frame.columns else pd.Series()
        files = ", ".join(f"{f}: {n}" for f, n in sorted((str(f), int(n)) for f, n in per_file.items()))
        notices.append(f"{mapping.source_id}: record set {name} ignored (ignore: in sources/{mapping.source_id}.yaml): "
                       f"{len(frame)} records not loaded{f' ({files})' if files else ''}")
    for notice in notices:
        log.info(notice)
    return notices


_ABSORBED = "__absorbed__"  # per joined section: the file sha256 of the section row a record absorbed


def join_sections(mapping: SourceMapping, frames: dict[str, pd.DataFrame]
                   ) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[pd.DataFrame, list[str]]]]:
    """Join each `from:` list's sections onto its head's records; the section rows that join nothing.

    Public so that `rtw check` finds a join problem (a missing join column, a column in two
    record sets: HarmoniseError) exactly as the nightly run would.

    Returns the frames with every head extended by its sections' columns (sections removed), and
    per section the rows left over with the reason: no head record with their keys, or a repeat.
    """
    frames = dict(frames)
    strays: dict[str, tuple[pd.DataFrame, list[str]]] = {}
    done: set[str] = set()
    for spec in (mapping.patient, *mapping.tables.values()):
        group = spec.record_sets()
        if len(group) == 1 or group[0] in done:
            continue
        done.add(group[0])
        keys = spec.join_keys()
        where = f"sources/{mapping.source_id}.yaml: from: [{', '.join(group)}]"
        head = frames.get(group[0])
        if head is None:
            head = pd.DataFrame(columns=list(keys) + sorted(_LINEAGE))
        for section in group[1:]:
            rows = frames.pop(section, None)
            if rows is None:
                continue  # a missing section is empty columns
            # A section or head holding its header only (AE.csv before the first adverse event) is judged as
            # one with records: its columns must fit, and reach the head empty, as for a record joining nothing.
            missing = sorted((set(keys) - set(head.columns)) | (set(keys) - set(rows.columns)))
            if missing:
                raise HarmoniseError(f"{where}: cannot join on {', '.join(missing)}: not a column of "
                                     f"{group[0] if set(missing) - set(head.columns) else section}; "
                                     "set join_on: to the columns that identify one record in every listed "
                                     "record set")
            clash = sorted((set(rows.columns) & set(head.columns)) - set(keys) - _LINEAGE
                           - {c for c in rows.columns if c.startswith("_")})
            if clash:
                raise HarmoniseError(f"{where}: {section} and {group[0]} both have column(s) {', '.join(clash)}; "
                                     "a joined record cannot take a value from two record sets: add them to "
                                     "join_on if they must agree")
            repeat = rows.duplicated(subset=keys, keep="first")
            matched = (pd.Series(pd.MultiIndex.from_frame(rows[keys].astype(str)).isin(
                           pd.MultiIndex.from_frame(head[keys].astype(str))), index=rows.index)
                       if not head.empty else pd.Series(False, rows.index))
            lonely = rows[~matched | repeat]
            if not lonely.empty:
                reasons = [f"section {section} has no {group[0]} record with the same {', '.join(keys)} to join"
                           if not matched[i] else
                           f"section {section} is repeated for the same {', '.join(keys)}; only its first "
                           "record is joined" for i in lonely.index]
                strays[section] = (lonely.reset_index(drop=True), reasons)
            joining = rows[matched & ~repeat]
            columns = [c for c in joining.columns if c not in head.columns]
            joining = joining[keys + columns].assign(
                **{f"{_ABSORBED}{section}": joining["source_file_sha256"]
                   if "source_file_sha256" in joining.columns else "joined"})
            head = head.merge(joining, on=keys, how="left").fillna("")
            # Head records repeating the same keys all get the section's values; it is counted once.
            head.loc[head.duplicated(subset=keys, keep="first"), f"{_ABSORBED}{section}"] = ""
        frames[group[0]] = head
    return frames, strays


def _with_iccc3(diagnosis: pd.DataFrame) -> pd.DataFrame:
    derived = iccc3.classify_frame(diagnosis)
    joined = diagnosis.drop(columns=[c for c in derived.columns if c in diagnosis.columns]).join(derived)
    # The core table's column order, as a part without diagnoses (not classified) has it.
    return joined[[*diagnosis.columns, *(c for c in derived.columns if c not in diagnosis.columns)]]


def _records(engine: _Engine, records: Mapping[str, list[_Record]]) -> pd.DataFrame:
    mapping = engine.mapping
    rows = []
    for recs in records.values():
        for r in recs:
            known_patient = r.patient_key not in engine.nulls
            # A record naming no centre belongs to its patient's (where queries are sent).
            own_centre = engine.own_centre(r.row)
            rows.append({
                "source_id": mapping.source_id,
                "source_file": r.row.get("source_file"),
                "source_file_sha256": r.row.get("source_file_sha256"),
                "source_record_key": r.published_key,
                "record_set": r.record_set,
                "line": int(r.row["_line"]) if str(r.row.get("_line", "")).isdigit() else None,
                "centre_id": own_centre or engine.centre.get(r.norm),
                "patient_pseudonym": source_pseudonym(engine.key, mapping.source_id, r.patient_key)
                if known_patient else None,
                "target_tables": sorted(set(r.tables)),
                "section_file_sha256": list(r.absorbed) or None,
            })
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _rejections(mapping: SourceMapping, records: Mapping[str, list[_Record]]) -> pd.DataFrame:
    rows = [{"source_id": mapping.source_id, "source_record_key": r.published_key, "rule_id": p.rule_id,
             "field": p.field, "value": p.value, "message": p.message}
            for recs in records.values() for r in recs for p in r.problems]
    return pd.DataFrame(rows, columns=REJECTION_COLUMNS)


def _file_counts(records: Mapping[str, list[_Record]]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for recs in records.values():
        for r in recs:
            c = counts.setdefault(r.row["source_file_sha256"], {"rows_read": 0, "rows_loaded": 0,
                                                                 "rows_quarantined": 0})
            c["rows_read"] += 1
            c["rows_quarantined" if r.rejected else "rows_loaded"] += 1
            for _, sha in r.absorbed:  # a joined section row goes where its record goes
                a = counts.setdefault(sha, {"rows_read": 0, "rows_loaded": 0, "rows_quarantined": 0})
                a["rows_read"] += 1
                a["rows_quarantined" if r.rejected else "rows_loaded"] += 1
    return counts


PATIENT_COUNT_COLUMNS = ["source_patient_pseudonym", "record_set", "rows_read", "rows_quarantined"]


def _patient_counts(engine: _Engine, records: Mapping[str, list[_Record]]) -> pd.DataFrame:
    """Per source patient and record set: the rows read (a joined section row in its own record set)
    and those quarantined with their record. What a run that carries the patient over counts for its
    files (etl/transform/carry_over.py); records without a patient key are never carried over."""
    counts: dict[tuple[str, str], list[int]] = {}
    for recs in records.values():
        for r in recs:
            if r.patient_key in engine.nulls:
                continue
            pseudonym = source_pseudonym(engine.key, engine.mapping.source_id, r.patient_key)
            for record_set in (r.record_set, *(section for section, _ in r.absorbed)):
                c = counts.setdefault((pseudonym, record_set), [0, 0])
                c[0] += 1
                c[1] += r.rejected
    return pd.DataFrame([(*k, *v) for k, v in counts.items()], columns=PATIENT_COUNT_COLUMNS)
