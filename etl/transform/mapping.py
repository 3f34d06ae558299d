"""Declarative source mappings: `sources/<source_id>.yaml`, what data managers edit.

A mapping says how one source's records become core-table rows: which record set (an ODM
ItemGroupOID, or a CSV form named from the file name) feeds which core table, and for each
core field the source column, its type, code list and date format. Adding a source of a known
format is adding a YAML file. Mappings are validated on load; an error names the file and
the key path (e.g. `sources/iltb.yaml: tables.treatment.fields.start_date.type`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from etl.config import SOURCES_DIR
from etl.schema import core_columns

FieldType = Literal[
    "text", "date", "integer", "decimal", "boolean", "list",
    "icdo3_histology", "icdo3_behaviour", "icdo3_topography",
]
_TEMPLATE_FIELD = re.compile(r"{([^{}]+)}")


class MappingError(ValueError):
    """A mapping file is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one core field is filled from a record."""

    column: str | None = None
    const: str | int | float | bool | None = None
    template: str | None = Field(None, description="text built from columns, e.g. '{GENE}::{PARTNER}'")
    type: FieldType = "text"
    codes: dict[str, Any] | None = None
    case: Literal["upper", "lower"] | None = None
    format: str | None = Field(None, description="date format overriding the source default")
    required: bool = False
    scale: float | None = Field(None, description="multiply a decimal, e.g. 10 for cm -> mm")
    separator: str | None = Field(None, description="list separator in the source (type list)")
    age_at: str | None = Field(None, description="date field of this table; the age in days at it")
    ref: str | None = Field(None, description="core table this field points to")
    key: str | None = Field(None, description="local record key template of the referenced record")

    @field_validator("codes", mode="before")
    @classmethod
    def _codes_as_text(cls, codes: Any) -> Any:
        # YAML reads `1: male` with an integer key; source values are always text.
        return {str(k): v for k, v in codes.items()} if isinstance(codes, dict) else codes

    @model_validator(mode="after")
    def _one_origin(self) -> FieldSpec:
        origins = [self.column is not None, self.const is not None, self.template is not None,
                   self.age_at is not None, self.ref is not None]
        if sum(origins) != 1:
            raise ValueError("give exactly one of column, const, template, age_at, ref")
        if self.ref is not None and self.key is None:
            raise ValueError("ref needs key: the local record key template of the referenced record")
        if self.type == "list" and not self.separator:
            raise ValueError("type list needs separator")
        return self

    def columns(self) -> set[str]:
        if self.column is not None:
            return {self.column}
        text = self.template or self.key or ""
        return set(_TEMPLATE_FIELD.findall(text))


class TableSpec(_Strict):
    """One core table fed from one record set."""

    from_: str = Field(alias="from")
    fields: dict[str, FieldSpec]
    where: dict[str, list[str]] | None = Field(None, description="keep records whose column is in the list")


class PatientSpec(_Strict):
    """Patient-level attributes: used for linkage and ages, coarsened before publish."""

    from_: str = Field(alias="from")
    fields: dict[str, FieldSpec]

    @model_validator(mode="after")
    def _known_fields(self) -> PatientSpec:
        unknown = set(self.fields) - {"sex", "birth_date", "country", "eupid", "centre_id"}
        if unknown:
            raise ValueError(f"unknown patient fields {sorted(unknown)}; allowed: sex, birth_date, "
                             "country, eupid, centre_id")
        return self


class CsvOptions(_Strict):
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str | None = None
    date_format: str | None = None


class RuleOverride(_Strict):
    """A source's own setting for one data-quality rule (`quality:` in its YAML)."""

    threshold: float | None = Field(None, ge=0.0, le=1.0, description="share of failing rows tolerated")
    enabled: bool = Field(True, description="false: the rule does not judge this source")


class SourceMapping(_Strict):
    source_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    format: str = Field(description="the export format: the name of a source adapter (odm, csv, sas, excel)")
    files: str = Field(description="glob of the export files in landing/<source_id>/")
    record_set_from_file: str | None = Field(
        None, description="csv: regex with a group 'record_set' read from the file name")
    record_set: str | None = Field(None, description="csv: the record set when there is one file")
    csv: CsvOptions = CsvOptions()
    date_format: str = "%Y-%m-%d"
    unknown_date_parts: list[str] = ["UK", "UNK", "00"]
    null_values: list[str] = [""]
    decimal: str = "."
    patient_key: str = Field("_subject_key", description="column holding the source patient key")
    record_key: str = Field(
        "{_study_event_oid}[{_study_event_repeat_key}]/{_form_oid}[{_form_repeat_key}]"
        "/{_item_group_oid}[{_item_group_repeat_key}]",
        description="template of the local part of the record key")
    patient: PatientSpec
    tables: dict[str, TableSpec]
    quality: dict[str, RuleOverride] = Field({}, description="rule_id -> threshold / enabled for this source")
    options: dict[str, Any] = Field({}, description="options of the format's reader (see its adapter), "
                                                    "e.g. excel: {header_row: 2}")
    ignore: list[str] = Field([], description="record sets neither loaded nor reported as unmapped")
    params: dict[str, str | int | float | bool] = Field(
        {}, description="source-level parameters the data-quality rules read, e.g. max_age_years: 18")
    study_oid: str | None = Field(None, description="odm: the StudyOID every file must carry; "
                                                    "a file of another study is refused")

    @field_validator("format")
    @classmethod
    def _known_format(cls, name: str) -> str:
        from etl.extract.adapter import adapters  # the adapters import this module

        if name not in adapters():
            raise ValueError(f"'{name}' is not a known format; known: {', '.join(sorted(adapters()))}")
        return name

    @model_validator(mode="after")
    def _record_set_per_file(self) -> SourceMapping:
        from etl.extract.adapter import adapters

        adapter = adapters()[self.format]
        if adapter.one_record_set_per_file and not (self.record_set_from_file or self.record_set):
            raise ValueError(f"a {self.format} source needs record_set_from_file or record_set")
        adapter.read_options(self)  # a wrong reader option fails here, naming the key
        if self.record_set_from_file and "(?P<record_set>" not in self.record_set_from_file:
            raise ValueError("record_set_from_file needs a named group (?P<record_set>...)")
        return self

    def record_sets(self) -> set[str]:
        return {self.patient.from_} | {t.from_ for t in self.tables.values()}


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


def _check_against_core(mapping: SourceMapping, path: Path) -> None:
    columns = core_columns()
    for table, spec in mapping.tables.items():
        if table not in columns or table in {"patient", "patient_source"}:
            allowed = sorted(set(columns) - {"patient", "patient_source"})
            raise MappingError(f"{path}: tables.{table}: not a core table fed by mappings ({', '.join(allowed)})")
        for field, fspec in spec.fields.items():
            if field not in columns[table]:
                raise MappingError(f"{path}: tables.{table}.fields.{field}: core.{table} has no such column")
            if fspec.age_at is not None and fspec.age_at not in spec.fields:
                raise MappingError(f"{path}: tables.{table}.fields.{field}.age_at: "
                                   f"'{fspec.age_at}' is not a field of this table")
            if fspec.ref is not None and fspec.ref not in mapping.tables:
                raise MappingError(f"{path}: tables.{table}.fields.{field}.ref: "
                                   f"'{fspec.ref}' is not a table of this mapping")


def load_mapping(path: Path) -> SourceMapping:
    """Read and validate one mapping file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: expected a mapping of keys at the top level")
    try:
        mapping = SourceMapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(f"{path}: {_describe(exc)}") from None
    if mapping.source_id != path.stem:
        raise MappingError(f"{path}: source_id '{mapping.source_id}' must match the file name '{path.stem}'")
    _check_against_core(mapping, path)
    return mapping


def load_mappings(folder: Path = SOURCES_DIR) -> dict[str, SourceMapping]:
    """Every `*.yaml` mapping in the folder, by source id."""
    return {m.source_id: m for m in (load_mapping(p) for p in sorted(folder.glob("*.yaml")))}
