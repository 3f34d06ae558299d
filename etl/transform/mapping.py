"""Declarative source mappings: `sources/<source_id>.yaml`, what data managers edit.

A mapping says how one source's records become core-table rows: which record set (an ODM
ItemGroupOID, or a CSV form named from the file name) feeds which core table, and for each
core field the source column, its type, code list and date format. Adding a source of a known
format is adding a YAML file. Mappings are validated on load; an error names the file and
the key path (e.g. `sources/iltb.yaml: tables.treatment.fields.start_date.type`); an unknown
key lists the keys allowed at that place. docs/mapping.md is the reference of every key and
docs/mapping.schema.json the JSON Schema generated from these models
(`python -m etl.transform.mapping --schema`), for editors that complete and check YAML.

Checks that need more than one file happen in `load_mapping`: fields against the core DDL, and
`quality:` overrides against the rule catalogue (an unknown rule, or one that cannot apply to
this source, is refused, with the nearest rule ids).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from etl.config import SOURCES_DIR
from etl.quality.params import PARAMS, ParamValue, check_param
from etl.schema import column_types, core_columns
from etl.transform.values import check_date_format, code_form, human_format

if TYPE_CHECKING:
    from etl.quality.catalogue import CatalogueError, Rule

FieldType = Literal[
    "text", "date", "integer", "decimal", "boolean", "list",
    "icdo3_histology", "icdo3_behaviour", "icdo3_grade", "icdo3_topography",
]
_TEMPLATE_FIELD = re.compile(r"{([^{}]+)}")


@functools.cache
def template_pieces(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A `{column}` template as its literals and its columns: `a{x}b{y}` is ('a', 'b', '') and ('x', 'y').
    Parsed once per template: harmonise fills one per record."""
    pieces = _TEMPLATE_FIELD.split(template)
    return tuple(pieces[0::2]), tuple(pieces[1::2])


def template_fields(template: str) -> tuple[str, ...]:
    """The columns a template reads, in order."""
    return template_pieces(template)[1]


def fill_template(template: str, values: Sequence[str]) -> str:
    """The template with the values of its columns (in `template_fields` order) in their places."""
    literals = template_pieces(template)[0]
    return literals[0] + "".join(value + literal for value, literal in zip(values, literals[1:], strict=True))


# Several formats are tried in order; the first that reads the value wins.
DateFormats = str | list[str]
# The keys that identify one form of one visit in every ODM record set: sections of a form
# (REDCap-style ItemGroups) are joined on them unless `join_on` says otherwise.
ODM_FORM_KEYS = ["_subject_key", "_study_event_oid", "_study_event_repeat_key", "_form_oid", "_form_repeat_key"]


def _check_formats(formats: DateFormats | None) -> DateFormats | None:
    if formats is None:
        return None
    listed = [formats] if isinstance(formats, str) else formats
    if not listed:
        raise ValueError("give at least one date format")
    for fmt in listed:
        check_date_format(fmt)
    _one_day_month_order(listed)
    return formats


# A format's time and the separator before it ('%d/%m/%Y %H:%M' -> '%d/%m/%Y'): the time is dropped.
_TIME_OF_FORMAT = re.compile(r"(?<=%[dmbY])[^%]*%[HMS].*$")


def _swapped(fmt: str) -> str:
    return fmt.replace("%d", "%_").replace("%m", "%d").replace("%_", "%m")


def _one_day_month_order(formats: list[str]) -> None:
    """Refuse two formats whose dates are of one layout with day and month swapped (%d/%m/%Y and
    %m/%d/%Y %H:%M): the first that fits would read 03/04/2019 as 3 April, whichever the source meant.
    Dates are compared without their time, which the reader drops."""
    layouts: dict[str, tuple[str, str]] = {}  # date layout, day and month alike -> (format, its date part)
    for fmt in formats:
        date_part = _TIME_OF_FORMAT.sub("", fmt)
        first, first_date = layouts.setdefault(re.sub("%[dm]", "%_", date_part), (fmt, date_part))
        if first_date == date_part or _swapped(first_date) != date_part:
            continue
        shown = f"'{first}' and '{fmt}' ({human_format(first)}, {human_format(fmt)})"
        if "%d" in date_part and "%m" in date_part:
            example = datetime(2019, 4, 3, 10).strftime(first)
            raise ValueError(f"{shown} give day and month in either order: {example} would be read as "
                             f"{human_format(first)} says, 3 April 2019, whichever was meant; give the source's "
                             "one order")
        example = date(2019, 3, 3).strftime(first_date)
        raise ValueError(f"{shown} read a day or a month beside the year: {example} could mean either, "
                         "day 3 or March 2019; give the one the source writes")


def as_formats(formats: DateFormats) -> tuple[str, ...]:
    return (formats,) if isinstance(formats, str) else tuple(formats)


SOURCE_ID_PATTERN = r"^[a-z][a-z0-9_]*$"  # a mapping's file name, a folder's under the home: never a path


class MappingError(ValueError):
    """A mapping file is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one core field is filled from a record."""

    column: str | None = Field(None, description="the source column (ODM: ItemOID) the value is read from")
    const: str | int | float | bool | None = Field(None, description="the same value for every record")
    template: str | None = Field(None, description="text built from columns, e.g. '{GENE}::{PARTNER}'")
    type: FieldType = Field("text", description="how the raw text is read: text, date, integer, decimal, boolean, "
                                                "list, icdo3_histology, icdo3_behaviour, icdo3_grade, "
                                                "icdo3_topography")
    codes: dict[str, Any] | None = Field(None, description="code list: source code -> harmonised value, then "
                                                           "read as the field's type; an unlisted code "
                                                           "quarantines the record")
    case: Literal["upper", "lower", "gene"] | None = Field(
        None, description="change the case of a text value; gene: upper case but the 'orf' of an HGNC symbol "
                          "(C11orf95)")
    format: DateFormats | None = Field(
        None, description="date format(s) overriding the source's date_format; a list is tried in order")
    required: bool = Field(False, description="true: an empty value quarantines the record")
    scale: float | None = Field(None, description="multiply a decimal, e.g. 10 for cm -> mm")
    separator: str | None = Field(None, description="list separator in the source (type list)")
    age_at: str | None = Field(None, description="date field of this table; the age in days at it")
    ref: str | None = Field(None, description="core table this field points to")
    key: str | None = Field(None, description="local record key template of the referenced record")
    first_of: list[FieldSpec] | None = Field(
        None, description="alternatives tried in order, each a column or template with its own format, codes, "
                          "case: the first that gives a value for the record is read (a full date where there is "
                          "one, else '{YEAR}-{MONTH}' with format '%Y-%m': its precision is the alternative's); "
                          "type and required are the field's")

    @model_validator(mode="before")
    @classmethod
    def _alternatives_typed(cls, given: Any) -> Any:
        # Every alternative is read as the field's type, given once on the field or on its alternatives alike.
        if not isinstance(given, dict) or not isinstance(given.get("first_of"), list):
            return given
        alternatives = given["first_of"]
        if "type" not in given:
            named = [a.get("type") for a in alternatives if isinstance(a, dict)]
            if any(named) and (None in named or len(set(named)) > 1):
                # one alternative's type taken for the field's, the others' refused for a type nobody wrote
                typed = ", ".join(f"first_of.{i}: {t}" for i, t in enumerate(named) if t)
                raise ValueError(f"first_of: type is given on some alternatives only, or differs ({typed}): give "
                                 "type beside first_of, the field's, every alternative being read as it")
            return {**given, "type": named[0]} if any(named) else given
        return {**given, "first_of": [{"type": given["type"], **a} if isinstance(a, dict) else a for a in alternatives]}

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, codes: Any) -> Any:
        # YAML reads `1: male` with an integer key; source values are always text.
        return {str(k): v for k, v in codes.items()} if isinstance(codes, dict) else codes

    @field_validator("codes")
    @classmethod
    def _codes_told_apart(cls, codes: dict[str, Any] | None) -> dict[str, Any] | None:
        # Codes are matched ignoring case, surrounding spaces and Unicode form (values.code_form): two codes
        # of one form with different values (M: male, m: female) would give a source value either.
        if codes is None:
            return None
        seen: dict[str, str] = {}
        for code, value in codes.items():
            other = seen.setdefault(code_form(code), code)
            if other != code and codes[other] != value:
                raise ValueError(f"codes '{other}' and '{code}' are one code (codes are matched ignoring case, "
                                 f"spaces and how an accent is encoded) with two values, "
                                 f"{codes[other]!r} and {value!r}: give it once")
        return codes

    _formats = field_validator("format")(_check_formats)

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        origins = [self.column is not None, self.const is not None, self.template is not None,
                   self.age_at is not None, self.ref is not None, self.first_of is not None]
        if sum(origins) != 1:
            raise ValueError("give exactly one of column, const, template, age_at, ref, first_of")
        if self.first_of is not None:
            return self._alternatives()
        if self.ref is not None and self.key is None:
            raise ValueError("ref needs key: the local record key template of the referenced record")
        if self.type == "list" and not self.separator:
            raise ValueError("type list needs separator")
        # A key the type does not use would be silently ignored: refused instead.
        for key, types in (("scale", ("decimal",)), ("format", ("date",)), ("separator", ("list",))):
            if getattr(self, key) is not None and self.type not in types:
                raise ValueError(f"{key} is read with type {' or '.join(types)} only (this field's type: {self.type})")
        return self

    def _alternatives(self) -> FieldSpec:
        assert self.first_of is not None
        if len(self.first_of) < 2:
            raise ValueError("first_of: give two alternatives or more, the first tried first (one is a column: or "
                             "template: of its own)")
        for key in ("codes", "case", "format", "scale", "separator", "key"):
            if getattr(self, key) is not None:
                raise ValueError(f"first_of: {key} is given in each alternative (each reads its own column), not "
                                 "beside first_of")
        for i, alternative in enumerate(self.first_of):
            where = f"first_of.{i}"
            if alternative.column is None and alternative.template is None:
                raise ValueError(f"{where}: an alternative reads a column: or a template: (a const:, age_at:, ref: "
                                 "or first_of: gives a value whatever the record holds, so none after it is tried)")
            if alternative.type != self.type:
                raise ValueError(f"{where}: type {alternative.type}, but the field's is {self.type}: every "
                                 "alternative is read as the field's type")
            if alternative.required:
                raise ValueError(f"{where}: required is the field's (beside first_of): a record is quarantined "
                                 "when no alternative gives a value")
        return self

    def alternatives(self) -> tuple[FieldSpec, ...]:
        """The column and template specs the field reads a record's value from, in the order tried: first_of's,
        or the field itself; none for a const, age_at or ref."""
        if self.first_of is not None:
            return tuple(self.first_of)
        return (self,) if self.column is not None or self.template is not None else ()

    def origin(self) -> str:
        """The column or template a value is read from, as messages name it."""
        if self.first_of is not None:
            return "first_of: " + ", ".join(a.origin() for a in self.first_of)
        return self.column or self.template or ""

    def columns(self) -> set[str]:
        if self.first_of is not None:
            return set().union(*(alternative.columns() for alternative in self.first_of))
        if self.column is not None:
            return {self.column}
        text = self.template or self.key or ""
        return set(template_fields(text))


class _FromRecordSets(_Strict):
    """`from:` one record set, or a list of record sets (sections) joined into one record."""

    from_: str | list[str] = Field(
        alias="from", description="the record set, or a list of record sets joined into one record: the "
                                  "columns of the later ones are added to the first's records")
    join_on: list[str] | None = Field(
        None, description="columns that identify one record in every listed record set (from: a list); "
                          f"default, for ODM: {', '.join(ODM_FORM_KEYS)}")

    @model_validator(mode="after")
    def _join(self) -> _FromRecordSets:
        sets = self.record_sets()
        if not sets or any(not s for s in sets):
            raise ValueError("from: give a record set name, or a list of them")
        if len(set(sets)) != len(sets):
            raise ValueError(f"from: a record set is listed twice ({', '.join(sets)})")
        if self.join_on is not None and len(sets) == 1:
            raise ValueError("join_on joins the record sets of a list in from:; there is only one")
        if self.join_on is not None and not self.join_on:
            raise ValueError("join_on: give at least one column")
        return self

    def record_sets(self) -> tuple[str, ...]:
        """The record sets in order; the first is the head, whose records, keys and lineage are kept."""
        return (self.from_,) if isinstance(self.from_, str) else tuple(self.from_)

    @property
    def head(self) -> str:
        return self.record_sets()[0]

    def join_keys(self) -> list[str]:
        return list(self.join_on) if self.join_on is not None else list(ODM_FORM_KEYS)


REPEAT = "{repeat}"  # in a repeated table's column, template or key: the column group
_GROUP_NAME = re.compile(r"[A-Za-z0-9_-]+")


class TableSpec(_FromRecordSets):
    """One core table fed from one record set (or several joined)."""

    fields: dict[str, FieldSpec] = Field(description="core column -> how it is filled")
    where: dict[str, list[str]] | None = Field(None, description="keep records whose column is in the list")
    repeat: list[str] | None = Field(
        None, description="the column groups of a wide record set, each a row of this table: {repeat} in a "
                          "field's column, template or key is the group, e.g. chemo{repeat}_drug with "
                          "repeat: [1, 2, 3]; a group whose columns are all empty makes no row")

    @field_validator("repeat", mode="before")
    @classmethod
    def _groups_as_text(cls, groups: Any) -> Any:
        # YAML reads `repeat: [1, 2, 3]` as integers; they stand for parts of column names.
        return [str(g) for g in groups] if isinstance(groups, list) else groups

    @model_validator(mode="after")
    def _repeat(self) -> TableSpec:
        if self.repeat is None:
            return self
        if not self.repeat:
            raise ValueError("repeat: give at least one column group, e.g. [1, 2, 3]")
        if bad := [g for g in self.repeat if not _GROUP_NAME.fullmatch(g)]:
            raise ValueError(f"repeat: '{bad[0]}' is not a group name (letters, digits, _ and - only)")
        if len(set(self.repeat)) != len(self.repeat):
            raise ValueError(f"repeat: a group is listed twice ({', '.join(self.repeat)})")
        if not self.repeated_fields():
            raise ValueError("repeat: no field reads a column of the group: write {repeat} where the group's "
                             "columns differ, e.g. column: chemo{repeat}_drug")
        if grouped := [c for c in self.where or {} if REPEAT in c]:
            # where: keeps or drops the whole record; its column named with {repeat} is no column at all
            raise ValueError(f"where: '{grouped[0]}' names a column group, but where: keeps or drops the whole "
                             "record, every group alike: filter on a column of the record (without {repeat})")
        return self

    def repeated_fields(self) -> list[str]:
        """The fields that read a column of the group: a group where all are empty makes no row."""
        return [name for name, spec in self.fields.items()
                if any(REPEAT in a.origin() for a in spec.alternatives())]

    def groups(self) -> list[tuple[str | None, dict[str, FieldSpec]]]:
        """Each column group with its fields, `{repeat}` read as the group; one group None (the fields as
        given) for a table without repeat."""
        if self.repeat is None:
            return [(None, self.fields)]
        return [(group, {name: _in_group(spec, group) for name, spec in self.fields.items()})
                for group in self.repeat]

    def every_field(self) -> dict[str, FieldSpec]:
        """Every field as harmonise reads it: a repeated field once per group, as `name[group]`."""
        if self.repeat is None:
            return dict(self.fields)
        repeated = set(self.repeated_fields()) | {n for n, s in self.fields.items() if REPEAT in (s.key or "")}
        found = {name: spec for name, spec in self.fields.items() if name not in repeated}
        for group, fields in self.groups():
            found.update({f"{name}[{group}]": fields[name] for name in repeated})
        return found


def _in_group(spec: FieldSpec, group: str) -> FieldSpec:
    update: dict[str, Any] = {name: value.replace(REPEAT, group) for name in ("column", "template", "key")
                              if (value := getattr(spec, name)) is not None}
    if spec.first_of is not None:
        update["first_of"] = [_in_group(alternative, group) for alternative in spec.first_of]
    return spec.model_copy(update=update)


class PatientSpec(_FromRecordSets):
    """Patient-level attributes: used for linkage and ages, coarsened before publish."""

    fields: dict[str, FieldSpec] = Field(description="sex, birth_date, country, eupid, centre_id -> how each is filled")

    @model_validator(mode="after")
    def _known_fields(self) -> PatientSpec:
        unknown = set(self.fields) - {"sex", "birth_date", "country", "eupid", "centre_id"}
        if unknown:
            raise ValueError(f"unknown patient fields {sorted(unknown)}; allowed: sex, birth_date, "
                             "country, eupid, centre_id")
        return self

    def every_field(self) -> dict[str, FieldSpec]:
        """Every field as harmonise reads it (as `TableSpec.every_field`: the patient has no repeated field)."""
        return dict(self.fields)


class CsvOptions(_Strict):
    """The older spelling of a csv source's `options:` (each one not given is detected from the file)."""

    encoding: str | None = Field(default=None, description="e.g. cp1252, utf-8-sig, latin-1")
    delimiter: str | None = Field(default=None, description="e.g. ';', ',', a tab")
    decimal: str | None = Field(default=None, description="decimal mark of the file: '.' or ','")
    date_format: str | None = Field(default=None, description="the date layout, shown in notices only")


class RuleOverride(_Strict):
    """A source's own setting for one data-quality rule (`quality:` in its YAML)."""

    threshold: float | None = Field(None, ge=0.0, le=1.0, description="share of failing rows tolerated")
    enabled: bool | None = Field(None, description="false: the rule does not judge this source")

    @model_validator(mode="after")
    def _sets_something(self) -> RuleOverride:
        if self.threshold is None and self.enabled is None:
            raise ValueError("an override sets threshold, enabled or both")
        return self


_CONNECTION_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


class Delivery(_Strict):
    """Where a source delivers its exports (`delivery:`), for `rtw pull` and the DAG's pull step.

    Credentials are never here: `connection` names them (an Airflow Connection, or for `rtw pull`
    env `AIRFLOW_CONN_<ID>` holding a connection URI)."""

    url: str = Field(description="the drop zone: sftp://host[:port]/path, s3://bucket/prefix, or a folder "
                                 "(an absolute path or file:///path)")
    connection: str | None = Field(
        None, pattern=_CONNECTION_ID,
        description="id of the Airflow Connection holding the credentials (rtw pull: env AIRFLOW_CONN_<ID>)")
    endpoint_url: str | None = Field(None, description="s3: the server of an S3-compatible store that is not AWS")
    delete_after_pull: bool = Field(False, description="true: remove a remote file (and its checksum sidecar) "
                                                       "once it has landed; default: never delete")
    unzip: bool = Field(False, description="true: deliveries are zip files (zip_files) whose members matching "
                                           "files: are unpacked into landing")
    zip_files: str = Field("*.zip", description="unzip: glob of the zip files in the drop zone")
    checksum: Literal["optional", "required", "none"] = Field(
        "optional", description="optional: verify a <name>.sha256 sidecar (or manifest line) when there; "
                                "required: a file waits until its checksum is there; none: do not look")
    checksum_manifest: str | None = Field(
        None, description="name of a manifest in the drop zone listing '<sha256>  <file name>' lines (sha256sum)")
    quiet_seconds: float | None = Field(
        None, ge=0, description="a remote file changed more recently is left for the next pull (still being "
                                "uploaded); default: RTW_QUIET_SECONDS, else 60; a checksum or .done marker "
                                "declares a file complete at once")
    wait_minutes: float = Field(360, ge=0, description="how long the DAG's sensor waits for a new export")

    @field_validator("url")
    @classmethod
    def _known_drop_zone(cls, url: str) -> str:
        parts = urlsplit(url)
        # A refused URL may hold credentials (s3://KEY:SECRET@bucket, ?password=): errors show it without them.
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        if parts.scheme in ("", "file"):
            path = parts.path if parts.scheme else url
            if parts.netloc not in ("", "localhost") or not path.startswith("/"):
                raise ValueError(f"'{shown}': a folder drop zone is an absolute path or file:///path")
        elif parts.scheme == "sftp":
            if not parts.hostname:
                raise ValueError(f"'{shown}': an SFTP drop zone names its host, e.g. sftp://sftp.example.org:22/exports")
            if parts.password is not None:
                raise ValueError("a password does not belong in the mapping: name an Airflow Connection in "
                                 "connection: (env AIRFLOW_CONN_<ID> for rtw pull)")
        elif parts.scheme == "s3":
            if not parts.netloc or "@" in parts.netloc:
                raise ValueError(f"'{shown}': an S3 drop zone is s3://bucket/prefix (credentials go in connection:)")
        else:
            raise ValueError(f"'{shown}': unknown drop zone; give sftp://host/path, s3://bucket/prefix or a folder")
        if parts.query or parts.fragment:
            raise ValueError(f"'{shown}': a drop zone URL has no ?query or #fragment (credentials go in connection:)")
        return url

    @model_validator(mode="after")
    def _fits_the_kind(self) -> Delivery:
        if self.endpoint_url is not None and self.kind != "s3":
            raise ValueError("endpoint_url is for an s3:// drop zone")
        if self.kind == "sftp" and self.connection is None:
            raise ValueError("an SFTP drop zone needs connection: (the Airflow Connection with its credentials)")
        return self

    @property
    def kind(self) -> Literal["sftp", "s3", "local"]:
        scheme = urlsplit(self.url).scheme
        return "sftp" if scheme == "sftp" else "s3" if scheme == "s3" else "local"


class SourceMapping(_Strict):
    """One source: `sources/<source_id>.yaml`."""

    source_id: str = Field(pattern=SOURCE_ID_PATTERN, description="the file name without .yaml: lower case, "
                                                                     "digits and _")
    title: str = Field(description="the source's name as people know it")
    format: str = Field(description="the export format: the name of a source adapter "
                                    "(odm, csv, sas, spss, stata, excel)")
    files: str = Field(description="glob of the export files in landing/<source_id>/")
    record_set_from_file: str | None = Field(
        None, description="csv: regex with a group 'record_set' read from the file name")
    record_set: str | None = Field(None, description="csv: the record set when there is one file")
    csv: CsvOptions = Field(CsvOptions(), description="csv: the reader options (older spelling of options:)")
    date_format: DateFormats = Field(
        "%Y-%m-%d", description="date format(s) of the source (%d %m %Y); a list is tried in order, "
                                "partial patterns such as %m.%Y or %Y give month or year precision")
    unknown_date_parts: list[str] = Field(
        ["UK", "UNK", "00"], description="how the source writes an unknown day or month, e.g. UK, UNK, 00, 99, XX")
    null_values: list[str] = Field([""], description="raw values that mean 'no value' (e.g. 99/99/9999, NK)")
    decimal: str = Field(".", description="decimal mark of numbers in the source: '.' or ','")
    patient_key: str = Field("_subject_key", description="column holding the source patient key")
    record_key: str = Field(
        "{_study_event_oid}[{_study_event_repeat_key}]/{_form_oid}[{_form_repeat_key}]"
        "/{_item_group_oid}[{_item_group_repeat_key}]",
        description="template of the local part of the record key")
    record_keys: dict[str, str] = Field(
        {}, description="record set -> its own record key template (record_key is the default)")
    patient: PatientSpec = Field(description="where the patient-level attributes come from")
    tables: dict[str, TableSpec] = Field(description="core table -> the record set(s) and fields that feed it")
    quality: dict[str, RuleOverride] = Field({}, description="rule_id -> threshold / enabled for this source")
    options: dict[str, Any] = Field({}, description="options of the format's reader, checked by its adapter "
                                                    "(docs/adapters.md), e.g. for excel {header_row: 2, "
                                                    "merged_cells: fill}")
    ignore: list[str] = Field([], description="record sets neither loaded nor reported as unmapped (names, or "
                                              "patterns such as IG.AUDIT*); their rows are counted in a notice")
    params: dict[str, ParamValue] = Field(
        {}, description="source-level parameters the data-quality rules read, e.g. max_age_years: 18 "
                        "(the known ones: docs/rules.md, 'Source parameters')")
    study_oid: str | None = Field(None, description="odm: the StudyOID every file must carry; "
                                                    "a file of another study is refused")
    max_shrink: float = Field(
        0.10, ge=0.0, le=1.0,
        description="hold a new export that would remove more than this share of the records its series "
                    "holds now (or that has no records) until a data manager accepts it (rtw accept)")
    delivery: Delivery | None = Field(
        None, description="where the source delivers its exports, for rtw pull; none: files are put into "
                          "landing/<source_id>/ by hand")

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:
        from etl.extract.adapter import FORMAT_MODULES  # the adapters import this module

        if name not in FORMAT_MODULES:  # the names alone: the readers are not imported
            raise ValueError(f"'{name}' is not a known format; known: {', '.join(sorted(FORMAT_MODULES))}")
        return name

    _formats = field_validator("date_format")(_check_formats)

    @field_validator("unknown_date_parts")
    @classmethod
    def _unknown_parts(cls, parts: list[str]) -> list[str]:
        bad = [p for p in parts if not re.fullmatch(r"[A-Za-z]{1,3}|\d{1,2}", p)]
        if bad:
            raise ValueError(f"{bad}: an unknown day or month is written as 1-3 letters or 1-2 digits (UK, 00, 99)")
        return parts

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {name: check_param(name, value) for name, value in params.items()}

    @model_validator(mode="after")
    def _record_sets_used_once(self) -> SourceMapping:
        # A joined section's rows become part of its head's records, so a section cannot also be
        # read on its own or joined elsewhere; the head may feed other tables alone.
        joins: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # head -> (sections, keys)
        section_of: dict[str, str] = {}
        for spec in (self.patient, *self.tables.values()):
            group = spec.record_sets()
            if len(group) == 1:
                continue
            join = (group[1:], tuple(spec.join_keys()))
            if joins.setdefault(group[0], join) != join:
                raise ValueError(f"record set {group[0]} is joined with different sections or join_on in two "
                                 "from: lists; give the same list (and join_on) everywhere")
            for section in group[1:]:
                if section_of.setdefault(section, group[0]) != group[0]:
                    raise ValueError(f"record set {section} is a section of two from: lists")
        for group in self.record_groups():
            for name in group[:1] if len(group) > 1 else group:
                if name in section_of:
                    raise ValueError(f"record set {name} is joined as a section of {section_of[name]} (from: a "
                                     "list) and so cannot be read on its own or head another list")
        owner = dict.fromkeys(self.record_sets())
        mapped = set(owner)
        both = sorted(name for name in mapped if self.is_ignored(name))
        if both:
            raise ValueError(f"ignore: {', '.join(both)} is also mapped (from:); a record set is either mapped "
                             "or ignored")
        unknown_keys = sorted(set(self.record_keys) - mapped)
        if unknown_keys:
            raise ValueError(f"record_keys: {', '.join(unknown_keys)} is not a record set this mapping reads "
                             f"(from:): {', '.join(sorted(mapped))}")
        return self

    @model_validator(mode="after")
    def _record_set_per_file(self) -> SourceMapping:
        from etl.extract.adapter import adapter_for

        adapter = adapter_for(self.format)  # its reader alone
        if adapter.one_record_set_per_file and not (self.record_set_from_file or self.record_set):
            raise ValueError(f"a {self.format} source needs record_set_from_file or record_set")
        try:
            adapter.read_options(self)  # a wrong reader option fails here, naming the key
        except ValidationError as exc:
            # The format's own model: its keys, not the mapping's, are the ones allowed under options:.
            problems = []
            for problem in exc.errors():
                key = ".".join(str(p) for p in problem["loc"])
                message = problem["msg"]
                if problem["type"] == "extra_forbidden":
                    allowed = _keys_of(adapter.Options)
                    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                    message = (f"unknown option of format {self.format}; allowed: {', '.join(allowed)}"
                               + (f" (did you mean {near[0]}?)" if near else ""))
                problems.append(f"options.{key}: {message}")
            raise ValueError("; ".join(problems)) from None
        if "decimal" in self.model_fields_set and self.decimal_mark() != self.decimal:
            raise ValueError(f"decimal: '{self.decimal}' but the reader's options give decimal "
                             f"'{self.decimal_mark()}'; give one decimal mark")
        if self.record_set_from_file:
            if "(?P<record_set>" not in self.record_set_from_file:
                raise ValueError("record_set_from_file needs a named group (?P<record_set>...)")
            try:
                re.compile(self.record_set_from_file)
            except re.error as exc:
                raise ValueError(f"record_set_from_file: not a regular expression ({exc})") from None
        return self

    def record_groups(self) -> list[tuple[str, ...]]:
        """Every distinct `from:` (one record set, or sections joined into one record), patient first."""
        groups: list[tuple[str, ...]] = []
        for spec in (self.patient, *self.tables.values()):
            if spec.record_sets() not in groups:
                groups.append(spec.record_sets())
        return groups

    def record_sets(self) -> set[str]:
        """Every record set the mapping reads, joined ones included."""
        return {name for group in self.record_groups() for name in group}

    def joins_on_patient_key(self) -> bool:
        """Every section joined onto a head joins on the patient key among others: a patient's
        records never take a section row of another patient (parts and carry-over rely on it)."""
        return all(len(spec.record_sets()) == 1 or self.patient_key in spec.join_keys()
                   for spec in (self.patient, *self.tables.values()))

    def is_ignored(self, record_set: str) -> bool:
        return any(record_set == pattern or fnmatchcase(record_set, pattern) for pattern in self.ignore)

    def decimal_mark(self) -> str:
        """The mark numbers are read with: the reader's `decimal` option (`options:`, or its older
        spelling `csv:`; options: wins as in the reader), else the top-level `decimal:`."""
        given = self.options.get("decimal") or self.csv.decimal
        return str(given) if given else self.decimal

    def record_key_for(self, record_set: str) -> str:
        return self.record_keys.get(record_set, self.record_key)

    def sections(self) -> dict[str, PatientSpec | TableSpec]:
        """Each place record sets feed, by its key in the mapping: `patient`, then `tables.<name>`."""
        return {"patient": self.patient, **{f"tables.{name}": spec for name, spec in self.tables.items()}}

    def key_columns(self, record_set: str) -> dict[str, str]:
        """The columns a record set's records are told apart by: `patient_key`, then `record_key`'s."""
        named = {self.patient_key: "patient_key"}
        named |= {column: "record_key" for column in template_fields(self.record_key_for(record_set))
                  if column not in named and column != "record_set"}
        return named

    def needed_columns(self, section: str) -> dict[str, str]:
        """The columns a section (`patient`, `tables.<name>`) reads from its `from:` record sets, each with the
        first key of the mapping naming it: `patient_key`, `record_key`, `tables.adverse_event.where`,
        `patient.fields.sex`. What the nightly run and `rtw check` both judge the mapping's columns by."""
        spec = self.sections()[section]
        named = self.key_columns(spec.head)
        where = spec.where if isinstance(spec, TableSpec) else None
        for column in where or {}:
            named.setdefault(column, f"{section}.where")
        for name, field in spec.every_field().items():
            for column in sorted(field.columns()):
                named.setdefault(column, f"{section}.fields.{name}")
        return named

    def coded_fields(self) -> Iterator[tuple[str, str, str, FieldSpec]]:
        """(where in the file, core table, field, its spec) of every field with a code list: the patient's
        (core.patient_source), then each table's. A first_of alternative's is `<field>.first_of.<i>`."""
        for where, table, fields in (("patient", "patient_source", self.patient.fields),
                                     *((f"tables.{t}", t, spec.fields) for t, spec in self.tables.items())):
            for name, field in fields.items():
                for i, alternative in enumerate(field.first_of or []):
                    if alternative.codes:
                        yield where, table, f"{name}.first_of.{i}", alternative
                if field.codes:
                    yield where, table, name, field

    def date_formats(self, spec: FieldSpec | None = None) -> tuple[str, ...]:
        """The formats a date field is read with, in the order they are tried."""
        return as_formats(spec.format if spec is not None and spec.format is not None else self.date_format)


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys are expected at `loc` (a pydantic error location), walking the annotations."""
    current: Any = SourceMapping
    parts = list(loc)
    while parts:
        if isinstance(current, type) and issubclass(current, BaseModel):
            part = parts.pop(0)
            found = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
            if found is None:
                return None
            current = found.annotation
            continue
        origin, args = get_origin(current), get_args(current)
        if origin is dict or origin is list:
            parts.pop(0)  # a key of the dict, an index of the list
            current = args[-1]
        elif args:  # a union (X | None): the model member, if any
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        else:
            return None
    if get_args(current):  # an optional block (X | None): its model
        current = next((a for a in get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


# Pydantic names the member of a union it tried (`str`, `list[str]`, `function-after[...]`) in the
# location; a data manager wants the key only.
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|function-\w+\[.*\]|literal\[.*\])$")


def _describe(error: ValidationError) -> str:
    lines: list[str] = []
    for problem in error.errors():
        loc = tuple(p for p in problem["loc"] if not (isinstance(p, str) and _UNION_TAG.match(p)))
        where = ".".join(str(part) for part in loc) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = f"; allowed here: {', '.join(_keys_of(model))}" if model is not None else ""
            message = f"unknown key{allowed}"
        elif problem["type"] == "model_type":  # pydantic names its class ("instance of FieldSpec"): say the keys
            model = _model_at(loc)
            keys = f" ({', '.join(_keys_of(model))})" if model is not None else ""
            message = f"expected keys{keys}, not {_written_as(problem['input'])}"
        # Checks across keys name their keys in the message; the location is then the top level.
        line = f"{where}: {message}" if loc else message
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)


def _written_as(value: object) -> str:
    """What a YAML value is, in a data manager's words."""
    return ("a list" if isinstance(value, list) else "nothing" if value is None else "yes/no"
            if isinstance(value, bool) else "a number" if isinstance(value, int | float) else f"the text {value!r}")


# The rule catalogue, read when a check first needs it, or why it cannot be read (_rule_catalogue).
Catalogue = Callable[[], "list[Rule] | CatalogueError"]


def _rule_catalogue() -> Catalogue:
    """The rule catalogue, read at the first call only: two checks of a mapping read it, and a mapping
    needing neither (no quality:, no text code list) not at all. Each check reacts to an unreadable one."""

    @functools.cache
    def read() -> list[Rule] | CatalogueError:
        from etl.quality.catalogue import CatalogueError, load_catalogue  # the catalogue is only needed here

        try:
            return load_catalogue(check_types=False)
        except CatalogueError as exc:
            return exc

    return read


def _check_quality(mapping: SourceMapping, path: Path, catalogue: Catalogue) -> None:
    """Every `quality:` override names a catalogued rule that can apply to this source as asked."""
    if not mapping.quality:
        return
    read = catalogue()
    if isinstance(read, Exception):
        raise MappingError(f"{path}: quality: the rule catalogue cannot be read: {read}")
    rules = {r.rule_id: r for r in read}
    for rule_id, override in mapping.quality.items():
        where = f"{path}: quality.{rule_id}"
        rule = rules.get(rule_id)
        if rule is None:
            near = difflib.get_close_matches(rule_id, list(rules), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise MappingError(f"{where}: no such rule{hint} (every rule: docs/rules.md)")
        if override.enabled is False and rule.engine == "harmonise":
            raise MappingError(f"{where}: cannot be switched off: a value that breaks it cannot be turned into a "
                               "core value, so its record is held back whatever the setting; fix the mapping "
                               "(codes, date_format, null_values) or raise its threshold instead")
        reads = list(rule.meta.params or [])
        if reads and not any(name in mapping.params for name in reads):
            raise MappingError(f"{where}: the rule reads params {', '.join(reads)}, which this source does not "
                               "set, so it never judges this source; set one under params: or drop the override")


def _check_templates(mapping: SourceMapping, path: Path) -> None:
    """A record key template reads columns, except one record set's own (`record_keys`): a key naming no column
    ('REG', or the record set's former name after a format change) gives each patient one record there, a
    second being quarantined as a duplicate. As `record_key`, the default of every record set (one a later
    export adds too), it would give a patient's records of several record sets one key."""
    if not template_fields(mapping.record_key):
        raise MappingError(f"{path}: record_key: '{mapping.record_key}' names no column, so every record of a "
                           "patient, in every record set, would have that one key; a record key template reads "
                           "columns in braces, e.g. 'AE[{AESEQ}]', or '{record_set}'. A key naming no column keys "
                           f"one record set: give it there, record_keys: {{<record set>: '{mapping.record_key}'}}")
    constant: dict[str, str] = {}  # a key naming no column -> the record set it keys
    for record_set, template in mapping.record_keys.items():
        if template_fields(template):
            continue
        other = constant.setdefault(template, record_set)
        if other != record_set:
            raise MappingError(f"{path}: record_keys.{record_set}: '{template}' names no column and is "
                               f"record_keys.{other}'s too: a patient's records of {other} and {record_set} would "
                               "have one key; give each record set its own")


# What etl/transform/iccc3.py derives for a diagnosis (its FRAME_COLUMNS; named here, as importing it
# imports pandas, which loading a mapping does not need; tests/test_mapping_hostile.py holds them equal).
ICCC3_COLUMNS = ("iccc3_code", "iccc3_extended", "iccc3_group", "iccc3_subgroup", "is_very_rare", "iccc3_extension")


def _derived_columns(table: str, columns: Sequence[str]) -> dict[str, str]:
    """The core columns harmonise fills itself, with how: a mapping's field may not name them."""
    derived = {name: "filled by harmonise with the record's lineage" for name in
               ("source_id", "source_file_sha256", "source_record_key", "run_id")}
    derived["patient_id"] = "the person's pseudonym, made by harmonise"
    if columns[0] != "patient_id":
        derived[columns[0]] = "the row's id, made by harmonise from its record key"
    derived |= {name: f"the precision of {name.removesuffix('_precision')}, filled by harmonise from how the date "
                      "is written" for name in columns if name.endswith("_precision")}
    if table == "diagnosis":
        derived |= dict.fromkeys(ICCC3_COLUMNS, "derived from the morphology and topography (ICCC-3)")
    return derived


# The core fields holding ICD-O-3 codes, each with the type that reads it. Read as text, a code was loaded as
# written, unchecked: a behaviour 6 (a metastatic site) reached the ICCC-3 step and crashed the source's harmonise.
ICDO3_FIELD_TYPES = {"icdo3_morphology": "icdo3_histology", "icdo3_behaviour": "icdo3_behaviour",
                     "icdo3_topography": "icdo3_topography"}


def _check_icdo3_field(table: str, field: str, spec: FieldSpec, path: Path) -> None:
    """An ICD-O-3 field is read from the source with its type, as a date is with `type: date` (no type is text).
    Any other origin is not: harmonise types and compares (morphology with behaviour) what it reads only."""
    wanted = ICDO3_FIELD_TYPES.get(field)
    if wanted is None:
        return
    where = f"{path}: tables.{table}.fields.{field}"
    if spec.type != wanted:
        given = spec.type if "type" in spec.model_fields_set else f"{spec.type}, the default"
        raise MappingError(f"{where}: an ICD-O-3 code is read with type: {wanted} (this field's type: {given}); "
                           f"as text a code is loaded unchecked (a behaviour 6, a morphology 8500/3 whole) rather "
                           f"than its record quarantined: write type: {wanted}")
    if not spec.alternatives():
        given = next(origin for origin in _NOT_READ if getattr(spec, origin) is not None)
        raise MappingError(f"{where}: an ICD-O-3 code is read from a column (column: or template:), which type "
                           f"{wanted} checks; {_NOT_READ[given]}")


# What a field's other origins give, for an ICD-O-3 field given one.
_NOT_READ = {"const": "a constant (const:) would be loaded unchecked",
             "age_at": "age_at: gives an age in days, not a code",
             "ref": "ref: gives the key of another core record, not a code"}


def _check_against_core(mapping: SourceMapping, path: Path) -> None:
    columns = core_columns()
    for table, spec in mapping.tables.items():
        if table not in columns or table in {"patient", "patient_source"}:
            allowed = sorted(set(columns) - {"patient", "patient_source"})
            raise MappingError(f"{path}: tables.{table}: not a core table fed by mappings ({', '.join(allowed)})")
        derived = _derived_columns(table, columns[table])
        for field, fspec in spec.fields.items():
            if field not in columns[table]:
                raise MappingError(f"{path}: tables.{table}.fields.{field}: core.{table} has no such column")
            _check_icdo3_field(table, field, fspec, path)
            if field in derived:
                raise MappingError(f"{path}: tables.{table}.fields.{field}: {derived[field]}, not by a mapping "
                                   "(its value would be overwritten, or overwrite the one harmonise gives)")
            if fspec.age_at is not None and fspec.age_at not in spec.fields:
                raise MappingError(f"{path}: tables.{table}.fields.{field}.age_at: "
                                   f"'{fspec.age_at}' is not a field of this table")
            if fspec.ref is not None and fspec.ref not in mapping.tables:
                raise MappingError(f"{path}: tables.{table}.fields.{field}.ref: "
                                   f"'{fspec.ref}' is not a table of this mapping")


# The core column types that hold what a field of each type gives (harmonise writes a value into its core column's
# type and cannot another: a sex drafted `type: integer` crashed its source's harmonise, "Expected bytes, got int").
_HELD_BY = {"text": ("VARCHAR",), "list": ("VARCHAR",), "icdo3_histology": ("VARCHAR",),
            "icdo3_behaviour": ("VARCHAR",), "icdo3_grade": ("VARCHAR",), "icdo3_topography": ("VARCHAR",),
            "date": ("DATE",), "integer": ("INTEGER", "DOUBLE"), "decimal": ("DOUBLE",), "boolean": ("BOOLEAN",)}
_TYPE_FOR = {"VARCHAR": "text (no type:; codes: to translate the source's codes)", "DATE": "date",
             "INTEGER": "integer", "DOUBLE": "decimal", "BOOLEAN": "boolean"}


def _held(value: object, sql: str) -> bool:
    """Whether a code list's value (of a text field: loaded as written) is one a core column of type `sql` holds."""
    if value is None:
        return True
    if isinstance(value, bool):
        return sql == "BOOLEAN"
    if isinstance(value, int):
        return sql in ("INTEGER", "DOUBLE")
    if isinstance(value, float):
        return sql == "DOUBLE"
    return isinstance(value, str) and sql == "VARCHAR"


def _check_types(mapping: SourceMapping, path: Path) -> None:
    """Every field read from the source gives what its core column holds: its type's values, or of a text field
    with a code list, its codes' values as written (`{"1": 1}` for an integer grade)."""
    for where, spec in mapping.sections().items():
        table = "patient_source" if where == "patient" else where.removeprefix("tables.")
        types = dict(column_types(f"core.{table}"))
        for name, field in spec.every_field().items():
            sql = types.get(name.partition("[")[0])
            if sql is None:  # not a core column (a patient's birth date and EUPID link, unstored)
                continue
            for place, alternative in ([(name, field)] if field.first_of is None else
                                       [(f"{name}.first_of.{i}", a) for i, a in enumerate(field.first_of)]):
                if not alternative.alternatives():
                    continue  # const, age_at and ref: checked where they are read
                if alternative.type == "text" and alternative.codes:
                    wrong = next(((code, value) for code, value in alternative.codes.items()
                                  if not _held(value, sql)), None)
                    if wrong is None:
                        continue
                    given = f"code '{wrong[0]}' maps to {wrong[1]!r}"
                elif sql in _HELD_BY[alternative.type]:
                    continue
                else:
                    given = f"type: {alternative.type}" if alternative.type != "text" else "text (no type:)"
                raise MappingError(f"{path}: {where}.fields.{place}: {given}, which core.{table}.{name} ({sql}) "
                                   f"cannot hold: read it as {_TYPE_FOR[sql]}")


def _check_code_lists(mapping: SourceMapping, path: Path) -> None:
    """Every value of a typed field's code list reads as that type (codes are translated, then typed)."""
    if all(spec.type == "text" for *_, spec in mapping.coded_fields()):
        return
    from etl.transform.harmonise import code_list_problems  # harmonise imports this module

    problems = code_list_problems(mapping)
    if problems:
        raise MappingError(f"{path}: {problems[0]}")


def _check_vocabularies(mapping: SourceMapping, path: Path, catalogue: Catalogue) -> None:
    """Every value of a text field's code list is one its core column holds, where a catalogued rule
    (expect_column_values_to_be_in_set) says which: `M: deceased` for vital_status would load every such
    record and have FU-VITAL-STATUS-CODE flag it after the night. A rule the source switches off lets it;
    a rule judging some rows only (a row_condition, or params) does not bind: a code list cannot tell
    which rows it judges (RESP-SOLID-CODE judges none of a leukaemia source's)."""
    coded = [(where, table, name, spec) for where, table, name, spec in mapping.coded_fields() if spec.type == "text"]
    if not coded:
        return
    rules = catalogue()
    if isinstance(rules, Exception):
        return  # (validation reports an unreadable catalogue, for every source)
    vocabularies: dict[tuple[str, str], tuple[set[str], list[str]]] = {}
    for rule in rules:
        expectation = rule.expectation or {}
        if expectation.get("type") != "expect_column_values_to_be_in_set" or rule.meta.table is None \
                or expectation["kwargs"].get("row_condition") or rule.meta.params:
            continue
        if (override := mapping.quality.get(rule.rule_id)) is not None and override.enabled is False:
            continue
        values, said = vocabularies.setdefault((rule.meta.table, expectation["kwargs"]["column"]), (set(), []))
        values.update(str(v) for v in expectation["kwargs"]["value_set"])
        said.append(f"{rule.rule_id}: {rule.meta.expected or ', '.join(map(str, expectation['kwargs']['value_set']))}")
    for where, table, name, spec in coded:
        column = name.partition(".")[0]  # a first_of alternative's (`sex.first_of.1`) fills its field's column
        allowed, said = vocabularies.get((table, column), (None, []))
        for code, value in (spec.codes or {}).items():
            if allowed is not None and value is not None and str(value) not in allowed:
                raise MappingError(f"{path}: {where}.fields.{name}.codes: code '{code}' maps to '{value}', which "
                                   f"core.{table}.{column} does not hold ({'; '.join(said)}): every record with it "
                                   "would be loaded and flagged")


def load_mapping(path: Path) -> SourceMapping:
    """Read and validate one mapping file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the mapping as UTF-8") \
            from None
    mapping = _mapping_of(path, text)
    _check_against_core(mapping, path)
    _check_types(mapping, path)
    _check_code_lists(mapping, path)
    catalogue = _rule_catalogue()  # as it is now, read once by the checks needing it
    _check_vocabularies(mapping, path, catalogue)
    _check_templates(mapping, path)
    _check_quality(mapping, path, catalogue)
    return mapping


def given_twice(node: yaml.Node | None) -> tuple[int, str] | None:
    """(its second line, what is wrong) of the first key given twice in a YAML node tree, or None."""
    found = repeated_key(node)
    if found is None:
        return None
    key, first, second = found
    return second, (f"{key}: given twice (lines {first} and {second}); YAML would keep only the last, ignoring "
                    "the first: give the key once")


def repeated_key(node: yaml.Node | None, path: tuple[str, ...] = ()) -> tuple[str, int, int] | None:
    """The first key given twice in one mapping of a YAML node tree: (key path, its lines, 1-based).
    YAML keeps the last silently, so a field uncommented under a second `fields:` would be lost."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                return ".".join((*path, key.value)), seen[key.value], line
            seen[key.value] = line
            found = repeated_key(value, (*path, key.value))
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if (found := repeated_key(item, (*path, str(i)))) is not None:
                return found
    return None


_STR_TAG = "tag:yaml.org,2002:str"


def _read_as(scalar: yaml.ScalarNode) -> tuple[Any, str] | None:
    """What YAML 1.1 makes of an unquoted scalar that is not text (01 -> 1, 010 -> 8, no -> false,
    12:30 -> 750, ~ -> null), with how to say it; None for text or a quoted scalar."""
    if scalar.style or scalar.tag == _STR_TAG:  # plain: None (libyaml: "")
        return None
    value = yaml.safe_load(scalar.value)
    if isinstance(value, bool):
        return value, f"the yes/no value {str(value).lower()}"
    if value is None:
        return value, "null (no value)"
    return value, f"the {'number' if isinstance(value, int | float) else 'date'} {value}"


def unquoted_code(node: yaml.Node | None, path: tuple[str, ...] = ()) -> tuple[int, str] | None:
    """(its line, what is wrong) of the first code list entry YAML reads as other than written: a code
    (`01: male` is the code '1', `no: x` the code 'False') or a text field's value (`N: no` is false,
    not 'no'), or None. YAML 1.1 reads unquoted 01, 010, 1_0, 12:30, yes/no/on/off and ~ as numbers,
    yes/no values or null; the code list would then match, or give, another text than the one written."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if (found := unquoted_code(item, (*path, str(i)))) is not None:
                return found
    if not isinstance(node, yaml.MappingNode):
        return None
    keys = {key.value: value for key, value in node.value if isinstance(key, yaml.ScalarNode)}
    codes, kind = keys.get("codes"), keys.get("type")
    if isinstance(codes, yaml.MappingNode):
        free_text = not isinstance(kind, yaml.ScalarNode) or kind.value in ("text", "list")
        where = ".".join((*path, "codes"))
        for key, value in codes.value:
            if isinstance(key, yaml.ScalarNode) and (read := _read_as(key)) is not None \
                    and code_form(str(read[0])) != code_form(key.value):
                return key.start_mark.line + 1, (
                    f"{where}: line {key.start_mark.line + 1}: YAML reads the code {key.value} as {read[1]}, so "
                    f"it would match a source value '{read[0]}', not '{key.value}': quote it (\"{key.value}\": ...)")
            if free_text and isinstance(value, yaml.ScalarNode) and (read := _read_as(value)) is not None \
                    and read[0] is not None and (isinstance(read[0], bool) or str(read[0]) != value.value):
                return value.start_mark.line + 1, (
                    f"{where}.{key.value}: line {value.start_mark.line + 1}: YAML reads {value.value} as "
                    f"{read[1]}, not the text '{value.value}': quote it (\"{value.value}\")")
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != "codes" \
                and (found := unquoted_code(value, (*path, key.value))) is not None:
            return found
    return None


@functools.lru_cache(maxsize=64)
def _mapping_of(path: Path, text: str) -> SourceMapping:
    """The mapping a file's text gives, parsed and validated once per process: a run reads each mapping
    several times (planning, extraction, harmonising, validation), and a mapping is frozen."""
    # libyaml's loader when present (10x faster than pure Python); the text is parsed once, its nodes
    # looked at for a key given twice before they are made into values.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        twice = given_twice(node) or unquoted_code(node)
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if twice is not None:
        raise MappingError(f"{path}: {twice[1]}")
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: expected a mapping of keys at the top level")
    try:
        mapping = SourceMapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(f"{path}: {_describe(exc)}") from None
    if mapping.source_id != path.stem:
        raise MappingError(f"{path}: source_id '{mapping.source_id}' must match the file name '{path.stem}'")
    return mapping


def load_mappings(folder: Path = SOURCES_DIR) -> dict[str, SourceMapping]:
    """Every `*.yaml` mapping in the folder, by source id."""
    return {m.source_id: m for m in (load_mapping(p) for p in sorted(folder.glob("*.yaml")))}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file (docs/mapping.schema.json), for editors and reviewers."""
    schema = SourceMapping.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # The parameters a source may set are a registry (etl/quality/params.py), not a model: list them.
    kinds = {"number": {"type": "number"}, "yes/no": {"type": "boolean"}, "text": {"type": "string"}}
    schema["properties"]["params"].update(
        additionalProperties=False,
        properties={p.name: {**kinds[p.kind], "description": p.description + (f" Unit: {p.unit}." if p.unit else ""),
                             "examples": [p.example]} for p in PARAMS.values()})
    # A format's reader options are its adapter's model (e.g. ExcelOptions in etl/extract/excel.py), the one
    # definition the loader validates `options:` with: given here per format, so that an editor completes
    # and checks `options:` for the `format:` the file names.
    from etl.extract.adapter import adapters  # the adapters import this module

    formats = sorted(adapters())
    schema["properties"]["format"]["enum"] = formats
    for name in formats:
        schema["$defs"][f"options_{name}"] = adapters()[name].Options.model_json_schema()
    schema["allOf"] = [{"if": {"properties": {"format": {"const": name}}, "required": ["format"]},
                        "then": {"properties": {"options": {"$ref": f"#/$defs/options_{name}"}}}}
                       for name in formats]
    schema["title"] = "Rare Tumour Warehouse source mapping (sources/<source_id>.yaml)"
    return schema


if __name__ == "__main__":
    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m etl.transform.mapping --schema > docs/mapping.schema.json")
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
