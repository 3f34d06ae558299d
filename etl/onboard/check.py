"""`rtw check SOURCE`: a mapping against the source's current landing files, without publishing.

What makes a mapping unusable is an *error* (exit 1): it does not load (reported with the file
and line of the offending key), a mapped record set or column is not in the data, most values of
a field fail to parse (the declared date format or code list is probably wrong), the record sets of a
`from:` list do not join (a join_on column missing, a column in two of them), or a record set is in the
data but neither mapped nor ignored. What the nightly run would merely quarantine is a
*warning*: codes the code list misses, dates no declared format reads, required fields left empty.

Values are read and parsed by the harmonise engine itself (`harmonise.given_reader`: which column, template
or first_of alternative gives a record its value, and what that value reads as), so the check agrees with the
nightly run. Privacy: a value seen fewer than `MIN_SHOWN` times, any value of a date field, or of a birth date
or EUPID, is shown only by its shape (`99/99/9999`) and where it is (file and line), never as written.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import BaseModel, ValidationError

from etl.extract.adapter import SourceAdapter, adapter_for, record_frame, record_set_of_file
from etl.extract.errors import ExtractError
from etl.extract.file_names import PatientNumbers, sheets_shown, shown_record_sets, staged_keys
from etl.extract.landing import LandingFile, SourceFiles, discover
from etl.frames import row_dicts
from etl.onboard.profile import MIN_SHOWN, counted, shape_of, some
from etl.onboard.reading import header_is_a_record
from etl.onboard.yaml_lines import compose, line_of, line_of_dotted, split_key_path
from etl.transform.mapping import (
    FieldSpec,
    MappingError,
    SourceMapping,
    TableSpec,
    given_twice,
    load_mapping,
    template_fields,
)
from etl.transform.records import declared_columns, staged_patient_keys
from etl.transform.values import code_form

if TYPE_CHECKING:
    from etl.transform.harmonise import FieldReader

Severity = Literal["error", "warning"]
_TYPE_TAG = re.compile(r"(str|int|float|bool|none|list\[.*\]|dict\[.*\]|function-\w+\[.*\]|[A-Za-z]+\[.*\])")
PRIVATE_FIELDS = frozenset({"birth_date", "eupid"})  # as harmonise: never echoed, even when broken
MOSTLY_FAILING = 0.5  # a field failing on more than this share of its values: the mapping is wrong
EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str  # "sources/x.yaml, line 12" or "ILTB_ENROL.csv, record set ENROL, column SEX (patient.sex)"
    message: str


@dataclass(frozen=True)
class CheckReport:
    source_id: str
    mapping_path: Path
    files: tuple[str, ...] = ()
    record_sets: Mapping[str, int] = field(default_factory=dict)  # name -> records in the data
    findings: tuple[Finding, ...] = ()

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def usable(self) -> bool:
        return not self.errors


# -- the mapping file ----------------------------------------------------------------------------
def mapping_findings(path: Path) -> tuple[SourceMapping | None, list[Finding]]:
    """Load a mapping; when it does not load, one finding per problem with the line of its key."""
    try:
        return load_mapping(path), []
    except MappingError as exc:
        failure = str(exc)
    text = path.read_text(encoding="utf-8")
    try:
        root = compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Finding("error", f"{path}, line {line}", f"not valid YAML: {problem}")]
    twice = given_twice(root)
    if twice is not None:  # YAML would keep the last silently: point at the second
        return None, [Finding("error", f"{path}, line {twice[0]}", twice[1])]
    raw = yaml.safe_load(text)
    findings: list[Finding] = []
    if isinstance(raw, dict):
        try:
            SourceMapping.model_validate(raw)
        except ValidationError as error:
            for problem in error.errors():
                # pydantic names the type it tried in a union (`str`, `list[str]`): not a key of the file
                loc = tuple(p for p in problem["loc"] if not (isinstance(p, str) and _TYPE_TAG.fullmatch(p)))
                located = line_of(root, loc)
                key = ".".join(map(str, loc)) or "(top level)"
                message = str(problem["msg"]).removeprefix("Value error, ")
                named = split_key_path(message) if not loc else None
                if named is not None and line_of_dotted(root, named[0]).path:
                    # A check across keys names its key first ("ignore: DM is also mapped"): point there.
                    located, key, message = line_of_dotted(root, named[0]), named[0], named[1]
                if problem["type"] == "extra_forbidden":
                    message = "unknown key"
                findings.append(Finding("error", f"{path}, line {located.line}",
                                        f"{key}: {message}{_allowed_hint(problem, loc)}"))
    if not findings:
        # The model accepted it; a later check refused it with "<file>: <key path>: <message>".
        message = failure.removeprefix(f"{path}: ")
        split = split_key_path(message)
        line = line_of_dotted(root, split[0]).line if split else 1
        if "source_id" in message and "file name" in message:
            line = line_of(root, ("source_id",)).line
        findings.append(Finding("error", f"{path}, line {line}", message))
    return None, findings


def _allowed_hint(problem: Mapping[str, Any], loc: tuple[Any, ...]) -> str:
    """For an unknown key, the keys allowed at that place (pydantic only says 'Extra inputs ...')."""
    if problem.get("type") != "extra_forbidden":
        return ""
    owner = _model_at(loc[:-1])
    if owner is None:
        return ""
    names = sorted(f.alias or name for name, f in owner.model_fields.items())
    return f"; allowed here: {', '.join(names)}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The mapping model a key path leads to, following the models' own field types
    (`tables.diagnosis.fields.x` -> FieldSpec), so the allowed keys never drift from the model."""
    model: type[BaseModel] | None = SourceMapping
    key_next = False  # the previous field is a dict of models: this part is one of its keys
    for part in loc:
        if key_next:
            key_next = False
            continue
        if model is None:
            return None
        field_info = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field_info is None:
            return None
        model, key_next = _element_model(field_info.annotation)
    return None if key_next else model


def _element_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model a field holds, whether it holds a dict of them): M, dict[str, M], list[M], M | None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for argument in reversed(get_args(annotation)):  # dict[str, M]: the value type comes last
        found, _ = _element_model(argument)
        if found is not None:
            return found, get_origin(annotation) is dict
    return None, False


# -- values --------------------------------------------------------------------------------------
def _reading(mapping: SourceMapping) -> FieldReader:
    """The harmonise engine's own reading and conversion, so check and nightly run never disagree."""
    from etl.transform.harmonise import given_reader

    return given_reader(mapping)


def _given(frame: pd.DataFrame, spec: FieldSpec, reading: FieldReader) -> list[tuple[FieldSpec, str] | None]:
    """Per record, the spec (the field's column or template, or a first_of alternative) giving the field its raw
    text and that text, None when none does: as the night reads it, asked once per distinct combination of the
    field's columns (few: a 20,000-record export is read in a fraction of a second)."""
    columns = sorted(spec.columns())
    asked: dict[tuple[str, ...], tuple[FieldSpec, str] | None] = {}
    given = []
    for values in zip(*(frame[column].astype("string").fillna("").tolist() for column in columns)):
        if values not in asked:
            asked[values] = reading.given(spec, dict(zip(columns, values, strict=True)))
        given.append(asked[values])
    return given


def _places(frame: pd.DataFrame, mask: pd.Series, limit: int = EXAMPLES) -> list[str]:
    """'ILTB_ENROL.csv:14' for the first records selected by mask."""
    chosen = frame.loc[mask].head(limit)
    files = chosen["source_file"] if "source_file" in chosen else pd.Series([""] * len(chosen), index=chosen.index)
    lines = chosen["_line"] if "_line" in chosen else pd.Series([""] * len(chosen), index=chosen.index)
    return [f"{f}:{line}" for f, line in zip(files, lines, strict=True)]


def _shown(value: str, count: int, private: bool) -> str:
    """A failing value as it may be printed: as written when frequent and not private, else its shape."""
    if count >= MIN_SHOWN and not private:
        return f"'{value}' ×{count}"
    return f"shape '{shape_of(value)}' ×{count}"


@dataclass(frozen=True)
class _Target:
    """A place record sets feed: `patient` or `tables.<name>`, with its fields and filter."""

    key: str  # "patient" or "tables.<name>"
    record_sets: tuple[str, ...]  # the head, then the sections joined to it
    fields: Mapping[str, FieldSpec]
    where: Mapping[str, list[str]] | None

    @property
    def head(self) -> str:
        return self.record_sets[0]


def _targets(mapping: SourceMapping) -> list[_Target]:
    return [_Target(key, spec.record_sets(), spec.every_field(), spec.where if isinstance(spec, TableSpec) else None)
            for key, spec in mapping.sections().items()]


def _is_ignored(mapping: SourceMapping, record_set: str) -> bool:
    own = getattr(mapping, "is_ignored", None)  # the mapping's own rule, so check and run agree
    if own is not None:
        return bool(own(record_set))
    ignored: Iterable[str] = getattr(mapping, "ignore", None) or ()
    return any(record_set == pattern or fnmatchcase(record_set, pattern) for pattern in ignored)


def check_record_sets(mapping: SourceMapping, record_sets: Mapping[str, pd.DataFrame], *,
                      sparse_columns: bool = False, declared_columns: frozenset[str] = frozenset()) -> list[Finding]:
    """Every finding about a mapping against the record sets of its current files.

    sparse_columns: the format leaves out columns never filled in (ODM), so a mapped column
    missing from the data is an error only when the file's metadata does not declare it either.
    """
    findings: list[Finding] = []
    mapped = mapping.record_sets()
    targets = _targets(mapping)
    for name in sorted(set(record_sets) - mapped):
        if not _is_ignored(mapping, name):
            records = len(record_sets[name])
            findings.append(Finding(
                "error", f"record set {name}",
                (f"{counted(records, 'record')} neither mapped nor ignored" if records else
                 "no records in this export, but neither mapped nor ignored")
                + ": map it under `tables:` or list it under `ignore:` (the nightly run would quarantine every "
                f"record{'' if records else ' it holds later'})"))
    for name in sorted(mapped - set(record_sets)):
        users = [t.key for t in targets if name in t.record_sets]
        findings.append(Finding(
            "warning" if sparse_columns else "error", f"record set {name}",
            f"mapped by {', '.join(users)} but not in the data (present: {', '.join(sorted(record_sets)) or 'none'})"))
    reading = _reading(mapping)
    nulls = set(mapping.null_values)
    for target in targets:
        head = record_sets.get(target.head)
        if head is None:
            continue
        # A joined section adds its columns to the head's records; each column is checked on the
        # rows of the record set that holds it (the join itself is the engine's business).
        group = {name: record_sets[name] for name in target.record_sets if name in record_sets}
        present = {str(c) for frame in group.values() for c in frame.columns}
        missing = {c: why for c, why in mapping.needed_columns(target.key).items() if c not in present}
        headless = bool(missing) and any(header_is_a_record(frame) for frame in group.values())
        for column, why in sorted(missing.items()):
            where = f"record set {'+'.join(target.record_sets)}, column {column} ({why})"
            undeclared = _undeclared_item(column, declared_columns) if sparse_columns else None
            if sparse_columns and undeclared is None:
                findings.append(Finding("warning", where, "no value in the data (never filled in?)"))
            elif undeclared is not None:  # as the nightly run refuses it
                findings.append(Finding("error", where, undeclared))
            elif headless:  # the names are a patient's values: never listed
                findings.append(Finding("error", where, "not in the data, whose first row reads as a record, not "
                                        "column names (an export without its header row?): they are not shown"))
            else:
                findings.append(Finding("error", where, f"not in the data; columns present: "
                                        f"{some(c for c in sorted(present) if not c.startswith('source_file'))}"))
        if target.where:
            keep = pd.Series(True, index=head.index)
            for column, allowed in target.where.items():
                if column in head.columns:
                    folded = {code_form(value) for value in allowed}  # as harmonise keeps them
                    keep &= head[column].astype("string").fillna("").map(code_form).isin(folded)
            group[target.head] = head.loc[keep]
        findings += _field_findings(target, group, reading)
        if mapping.patient_key in head.columns:
            keys = group[target.head][mapping.patient_key].astype("string").fillna("").str.strip()
            keyless = keys.isin(nulls)
            if int(keyless.sum()):  # where, so the registry can fill them in: the rows hold no number to hide
                findings.append(Finding("warning", f"record set {target.head}, column {mapping.patient_key}"
                                        " (patient_key)", f"{counted(int(keyless.sum()), 'record')} without a "
                                        f"patient key ({some(_places(group[target.head], keyless))})"))
    findings += _join_refusal(mapping, record_sets)
    for name in sorted({target.head for target in targets} & set(record_sets)):
        findings += _repeated_keys(mapping, name, record_sets[name])
    return _unique(findings)


def _join_refusal(mapping: SourceMapping, record_sets: Mapping[str, pd.DataFrame]) -> list[Finding]:
    """The nightly run's own join of the `from:` lists' sections, and its refusal (a join_on column missing,
    a column in two record sets), whether the record sets hold records or their header only. Both refusals judge
    the columns alone, so the join is given the headers: no row work over a whole export."""
    from etl.transform.harmonise import HarmoniseError, join_sections

    try:
        join_sections(mapping, {name: frame.iloc[:0] for name, frame in record_sets.items()
                                if not _is_ignored(mapping, name)})
    except HarmoniseError as exc:
        where = f"sources/{mapping.source_id}.yaml"
        return [Finding("error", where, str(exc).removeprefix(f"{where}: "))]
    return []


def _repeated_keys(mapping: SourceMapping, record_set: str, frame: pd.DataFrame) -> list[Finding]:
    """Records whose key (the patient key and the record set's record key) repeats an earlier record's: the
    nightly run loads the first and quarantines every repeat as a duplicate. Most records repeating one says
    the record key is the wrong one (a key per patient on a record set of visits). Where, never the keys."""
    from etl.transform.harmonise import fill_key  # the night's own key

    template = mapping.record_key_for(record_set)
    columns = [mapping.patient_key, *(c for c in template_fields(template) if c != "record_set")]
    if not len(frame) or any(c not in frame.columns for c in columns):
        return []  # a missing column is said already
    rows = row_dicts(frame[list(dict.fromkeys(columns))].astype(str))
    keys = pd.Series([f"{row[mapping.patient_key].strip()}|{fill_key(template, row, record_set)}" for row in rows],
                     index=frame.index)
    repeated = keys.duplicated()
    count = int(repeated.sum())
    if not count:
        return []
    key = f"record_keys.{record_set}" if record_set in mapping.record_keys else "record_key"
    wrong = count > MOSTLY_FAILING * len(frame) and count >= MIN_SHOWN
    return [Finding("error" if wrong else "warning", f"record set {record_set} ({key})",
                    f"{_of(count, len(frame), 'record')} {'repeats' if count == 1 else 'repeat'} the key of an "
                    f"earlier record of their patient ('{template}'): the nightly run loads the first and quarantines "
                    "each repeat as a duplicate; "
                    f"at {', '.join(_places(frame, repeated))}"
                    + ("; is this the right record key? (`rtw scaffold` proposes one)" if wrong else ""))]


def _undeclared_item(column: str, declared: frozenset[str]) -> str | None:
    """The nightly run's own verdict on a mapped ItemOID no record carries (imported when asked: ODM's reader)."""
    from etl.extract.odm import undeclared_item

    return undeclared_item(column, declared)


def _unique(findings: list[Finding]) -> list[Finding]:
    # A record set feeding several tables repeats patient-key and column findings: keep each once.
    seen: set[Finding] = set()
    return [f for f in findings if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


def _of(part: int, whole: int, noun: str) -> str:
    """`1 of 12 values`, `1 of 1 value`: a part of a count, the noun as the whole's."""
    return f"{part} of {counted(whole, noun)}"


def _holder(group: Mapping[str, pd.DataFrame], columns: set[str]) -> tuple[str, pd.DataFrame] | None:
    """The first record set of a `from:` group holding all of a field's columns."""
    return next(((name, frame) for name, frame in group.items() if columns <= set(frame.columns)), None)


def _field_findings(target: _Target, group: Mapping[str, pd.DataFrame], reading: FieldReader) -> list[Finding]:
    findings: list[Finding] = []
    for name, spec in target.fields.items():
        if not spec.alternatives():
            continue  # const, age_at, ref: nothing read from the data
        holder = _holder(group, spec.columns())
        if holder is None:
            continue  # a missing column is its own finding
        findings += _read_findings(target, name, spec, holder, reading)
    return findings


def _read_findings(target: _Target, name: str, spec: FieldSpec, holder: tuple[str, pd.DataFrame],
                   reading: FieldReader) -> list[Finding]:
    """A field's values read as the night reads them (`FieldReader.given`: a template whose parts are all
    `null_values` gives none, an empty column one when "" is not among them), each spec's tried on the records
    it gives a value (a first_of alternative: those the alternatives before it give none), the findings naming
    it as harmonise's messages do (`first_of.1: {YEAR}-{MONTH}`)."""
    record_set, frame = holder
    given = _given(frame, spec, reading)
    findings: list[Finding] = []
    none = pd.Series([read is None for read in given], index=frame.index)
    if spec.required and bool(none.any()):
        findings.append(Finding("warning", f"record set {record_set}, {_read_by(spec, spec)} "
                                f"({target.key}.fields.{name})", f"required but empty in "
                                f"{_of(int(none.sum()), len(frame), 'record')} ({some(_places(frame, none))})"))
    for alternative in spec.alternatives():
        raw = pd.Series([read[1] if read is not None and read[0] is alternative else None for read in given],
                        index=frame.index, dtype="string").dropna()
        where = f"record set {record_set}, {_read_by(spec, alternative)} ({target.key}.fields.{name})"
        findings += _value_findings(where, name, alternative, frame, raw, reading)
        if spec.required and alternative.codes:  # as harmonise quarantines them (of first_of: none gave a value)
            findings += _coded_as_none(where, alternative, frame, raw, reading)
    return findings


def _coded_as_none(where: str, spec: FieldSpec, frame: pd.DataFrame, raw: pd.Series,
                   reading: FieldReader) -> list[Finding]:
    """A required field's values that its code list makes no value (`"9": null`), read as the night reads them
    (`FieldReader.convert`): their records are quarantined as empty ones are."""
    def is_none(text: str) -> bool:
        try:
            return reading.convert(spec, text) is None
        except reading.refused:
            return False  # a code the list misses: its own finding

    none = raw.map(is_none).astype(bool)
    if not none.any():
        return []
    coded, count = none.reindex(frame.index, fill_value=False), int(none.sum())
    return [Finding("warning", where, f"required, but {_of(count, len(raw), 'value')} {'is' if count == 1 else 'are'} "
                                      "a code the code list makes null: their records are quarantined "
                                      f"(CONF-REQUIRED-PRESENT) ({some(_places(frame, coded))})")]


def _read_by(spec: FieldSpec, alternative: FieldSpec) -> str:
    """What a finding names a field's values read by: `column SEX`, `template {YEAR}-{MONTH}`; a first_of
    alternative by its place (`first_of.1: {YEAR}-{MONTH}`), the field as a whole as `first_of: dob, ...`."""
    if spec.first_of is None:
        return f"{'column' if spec.column is not None else 'template'} {spec.origin()}"
    if alternative is spec:
        return spec.origin()
    place = next(i for i, other in enumerate(spec.first_of) if other is alternative)
    return f"first_of.{place}: {alternative.origin()}"


def _value_findings(where: str, name: str, spec: FieldSpec, frame: pd.DataFrame, raw: pd.Series,
                    reading: FieldReader) -> list[Finding]:
    """The values a column, template or first_of alternative gives (raw: the raw text of the records it gives one)
    that harmonise would refuse: counted, the frequent shown, the rare and private by shape and place."""
    counts = Counter({str(k): int(v) for k, v in raw.value_counts(sort=False).items()})
    failing: dict[str, int] = {}
    reason = ""
    for value, count in counts.items():
        try:
            reading.convert(spec, value)
        except reading.refused as exc:
            failing[value] = count
            reason = reason or str(exc)
    if not failing:
        return []
    failed = sum(failing.values())
    filled = sum(counts.values())
    private = name in PRIVATE_FIELDS or spec.type == "date"  # a date may be a birth or visit date: never shown
    # Rare or private values are grouped by shape, so a shape is counted once with all its values.
    grouped: Counter[str] = Counter()
    for value, count in failing.items():
        grouped[_shown(value, count, private).rsplit(" ×", 1)[0]] += count
    shown = [f"{text} ×{count}" for text, count in grouped.most_common(EXAMPLES)]
    rare = raw.isin([v for v, n in failing.items() if n < MIN_SHOWN or private]).reindex(frame.index, fill_value=False)
    places = f"; at {some(_places(frame, rare))}" if bool(rare.any()) else ""
    severity: Severity = "error" if filled >= MIN_SHOWN and failed / filled > MOSTLY_FAILING else "warning"
    hint = f" — most values fail: {_fix_hint(spec)}" if severity == "error" else ""
    example = "" if private else f" (e.g. {reason})" if len(failing) == 1 and min(failing.values()) >= MIN_SHOWN \
        else ""
    return [Finding(severity, where, f"{_of(failed, filled, 'value')} {_failure_kind(spec, failed)}: "
                    f"{', '.join(shown)}{places}{example}{hint}")]


def _failure_kind(spec: FieldSpec, failed: int) -> str:
    one = failed == 1
    if spec.codes is not None:
        return "is a code the code list misses" if one else "are codes the code list misses"
    if spec.type == "date":
        return "is a date no declared format reads" if one else "are dates no declared format reads"
    return f"{'does' if one else 'do'} not read as {spec.type}"


def _fix_hint(spec: FieldSpec) -> str:
    if spec.codes is not None:
        return "is this the right code list?"
    if spec.type == "date":
        return "declare the format the file uses (see `rtw profile`)"
    return "is this the right column and type?"


# -- a source's landing files --------------------------------------------------------------------
def _stage_all(adapter: SourceAdapter, mapping: SourceMapping, files: Iterable[Any], staging_dir: Path | None,
               work: Path) -> tuple[list[tuple[Path, str, str]], list[tuple[Finding, tuple[str, ...]]]]:
    """Stage each current file (reusing the nightly run's staged copy when there is one); each refusal with the
    names besides the file's it may quote (a workbook's sheets, in its order: shown as file names are, once the
    source's patient numbers are known, `_refusal_shown`)."""
    staged: list[tuple[Path, str, str]] = []
    refusals: list[tuple[Finding, tuple[str, ...]]] = []
    options = adapter.read_options(mapping)
    for landing_file in files:
        name = adapter.staged_as(landing_file.sha256, options)
        existing = staging_dir / mapping.source_id / name if staging_dir is not None else None
        if existing is not None and existing.exists() and adapter.staged_whole(existing):
            staged.append((existing, landing_file.name, landing_file.sha256))
            continue
        out = work / name
        try:
            adapter.stage(landing_file.path, out, options,
                          {"source_file": landing_file.name, "source_file_sha256": landing_file.sha256})
        except ExtractError as exc:
            refusals.append((Finding("error", landing_file.name, str(exc)), exc.quoted))
            continue
        staged.append((out, landing_file.name, landing_file.sha256))
    return staged, refusals


def _refusal_shown(finding: Finding, sheets: tuple[str, ...], numbers: PatientNumbers) -> Finding:
    """A reader's refusal as the run shows it, a sheet per patient as `Pat_{patient}`, followed by its place in
    the workbook as `rtw profile` places it (`sheet 'Pat_{patient}' (sheet 3 of the workbook), cell D1`): the
    name alone could not tell which patient's sheet to open."""
    return replace(finding, message=sheets_shown(finding.message, sheets, numbers))


def _combine(adapter: SourceAdapter, mapping: SourceMapping, staged: list[tuple[Path, str, str]],
             numbers: PatientNumbers) -> dict[str, pd.DataFrame]:
    """The source's current record sets, as the nightly run sees them (increments applied by the adapter,
    named as shown: a sheet per patient is one record set)."""
    parts = [(path, record_set_of_file(mapping, name) or Path(name).stem, name, sha) for path, name, sha in staged]
    combine = getattr(adapter, "combine", None)
    if combine is not None:
        combined = combine(parts)
        frames = getattr(combined, "frames", combined)  # record sets are Arrow tables: onboarding reads pandas
        frames = shown_record_sets(frames, numbers)
        return {name: record_frame(table) if isinstance(table, pa.Table) else table for name, table in frames.items()}
    collected: dict[str, list[pd.DataFrame]] = {}
    for path, record_set, _, _ in parts:
        for name, frame in adapter.record_sets(path, record_set).items():
            collected.setdefault(name, []).append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in collected.items()}


def check_source(source_id: str, sources_dir: Path, landing_dir: Path, staging_dir: Path | None = None) -> CheckReport:
    """Check `sources_dir/<source_id>.yaml` against the current files of `landing_dir/<source_id>/`.

    Nothing is written outside a private temporary folder, removed afterwards.
    """
    path = sources_dir / f"{source_id}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in sources_dir.glob("*.yaml"))) or "none"
        return CheckReport(source_id, path, findings=(Finding(
            "error", str(path), f"no mapping file for source '{source_id}' (mappings in {sources_dir}: {known})"),))
    mapping, problems = mapping_findings(path)
    if mapping is None:
        return CheckReport(source_id, path, findings=tuple(problems))
    found = discover(landing_dir, mapping)
    known_keys = staged_keys(staging_dir / source_id, mapping) if staging_dir is not None else set()
    numbers = PatientNumbers.of(known_keys)
    findings = [Finding("warning", f"{landing_dir / source_id}", notice) for notice in found.notices]
    # A broken chain of increments holds the source in the nightly run: the same here.
    findings += [Finding("error", f"{landing_dir / source_id}", problem) for problem in getattr(found, "problems", ())]
    if not found.current:
        findings.append(Finding("error", str(landing_dir / source_id),
                                f"no current export files matching '{mapping.files}' to check against"))
        return _names_shown(CheckReport(source_id, path, findings=tuple(findings)), found, numbers)
    adapter = adapter_for(mapping.format)
    names = tuple(f.name for f in found.current)
    with tempfile.TemporaryDirectory(prefix="rtw-check-") as work:
        staged, refusals = _stage_all(adapter, mapping, found.current, staging_dir, Path(work))
        # The files' own patient keys, read before the temporary folder goes: their names may hold them.
        numbers = PatientNumbers.of(known_keys.union(*(staged_patient_keys(staged_file, mapping)
                                                       for staged_file, _, _ in staged)))
        findings += [_refusal_shown(f, sheets, numbers) for f, sheets in refusals]
        try:
            record_sets = _combine(adapter, mapping, staged, numbers) if staged else {}
        except (ExtractError, ValueError) as exc:
            findings.append(Finding("error", ", ".join(names), str(exc)))
            return _names_shown(CheckReport(source_id, path, names, findings=tuple(findings)), found, numbers)
        declared = declared_columns(adapter, [staged_file for staged_file, _, _ in staged])  # as the night takes them
    findings += check_record_sets(mapping, record_sets, sparse_columns=adapter.sparse_columns,
                                  declared_columns=declared)
    findings += empty_exports(mapping, found.current, record_sets)
    counts = {name: len(frame) for name, frame in sorted(record_sets.items())}
    return _names_shown(CheckReport(source_id, path, names, counts, tuple(findings)), found, numbers)


def empty_exports(mapping: SourceMapping, files: Iterable[LandingFile],
                  record_sets: Mapping[str, pd.DataFrame]) -> list[Finding]:
    """A current export (a series' files) with no records in the record sets the mapping does not ignore: the
    nightly run holds a new one (an empty or cut export, etl/extract/guards.py), keeping the source's last good
    data until it is accepted. The mapping may well fit it: a warning, that says so before the night does."""
    filled = {str(name) for record_set, frame in record_sets.items()
              if not _is_ignored(mapping, record_set) and "source_file" in frame
              for name in frame["source_file"].dropna().unique()}
    series: dict[str, list[str]] = {}  # judged by series, as the night does: a chain of increments is one export
    for landing_file in files:
        if not _is_ignored(mapping, landing_file.series):
            series.setdefault(landing_file.series, []).append(landing_file.name)
    return [Finding("warning", ", ".join(names), "no records: the nightly run holds a new export without any (an "
                    "empty or cut export), keeping the source's last good data; if it is right, accept it: "
                    f"rtw accept {mapping.source_id} {names[-1] if len(names) == 1 else 'FILE'}")
            for names in series.values() if filled.isdisjoint(names)]


def _names_shown(report: CheckReport, found: SourceFiles, numbers: PatientNumbers) -> CheckReport:
    """The report with every landing file named as the nightly run names it: a name may hold a patient
    number (etl/extract/file_names.py)."""
    return replace(report, files=tuple(found.shown(name, numbers) for name in report.files),
                   findings=tuple(Finding(f.severity, found.shown(f.where, numbers), found.shown(f.message, numbers))
                                  for f in report.findings))
