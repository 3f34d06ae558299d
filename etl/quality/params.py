"""Source parameters: facts about a source that data-quality rules read (`params:` in its YAML).

A rule never names a source or a study. Where a rule depends on who a source enrols (an age
range, a heart-function threshold, a required molecular alteration), it reads a parameter, and
it judges every source that sets that parameter and no other (`not_applicable` elsewhere).
This module is the list of parameters a mapping may set, their type and meaning; the rules
declare which ones they read (`params` in their catalogue entry). Validation publishes the
values as `stage.source_param (source_id, name, value)` and, typed, one column per parameter,
as the view `stage.source_params` that SQL rules join on `source_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamValue = str | int | float | bool
ParamKind = Literal["number", "yes/no", "text"]


@dataclass(frozen=True)
class SourceParam:
    name: str
    kind: ParamKind
    unit: str | None
    description: str
    example: ParamValue


PARAMS: dict[str, SourceParam] = {p.name: p for p in (
    SourceParam("min_age_years", "number", "years",
                "Youngest age at enrolment (inclusion, registration in a study) the source accepts, in completed "
                "years: 1 admits a patient from the 1st birthday on.", 0),
    SourceParam("max_age_years", "number", "years",
                "Oldest age at enrolment the source accepts, in completed years as a protocol's \"age 0-18\" or "
                "\"<= 25\" means it: a patient is eligible up to the day before the birthday after max_age_years "
                "(18: up to the day before the 19th birthday). Judged on the calendar, only an age surely over it "
                "flagged: the warehouse knows a birth to the month or the year, so the patient is taken as born on "
                "the last day it can be.", 18),
    SourceParam("min_age_at_diagnosis_years", "number", "years",
                "Youngest age at initial diagnosis the source registers, in completed years (registries that "
                "register by the age at diagnosis, whatever the age at registration).", 0),
    SourceParam("max_age_at_diagnosis_years", "number", "years",
                "Oldest age at initial diagnosis the source registers, in completed years (e.g. 18 for a paediatric "
                "registry of children aged 0-18: diagnosed up to the day before the 19th birthday; registration "
                "itself may come later).", 18),
    SourceParam("min_lvef_percent", "number", "percent",
                "The left-ventricular ejection fraction at screening must be above this value "
                "(core.study_enrolment.lvef_percent).", 60),
    SourceParam("population_based", "yes/no", None,
                "true: the source registers every case of its country (a population-based registry), so its "
                "initial diagnoses give incidence per million children (marts.incidence).", True),
    SourceParam("requires_alk_ros1", "yes/no", None,
                "true: every enrolled patient must have an ALK or ROS1 rearrangement recorded "
                "(core.molecular_alteration).", True),
)}

# DuckDB types of the typed view's columns.
_SQL_TYPE: dict[ParamKind, str] = {"number": "DOUBLE", "yes/no": "BOOLEAN", "text": "VARCHAR"}


def check_param(name: str, value: object) -> ParamValue:
    """The value if `name` is a known parameter and the value fits its kind; else ValueError."""
    param = PARAMS.get(name)
    if param is None:
        known = ", ".join(sorted(PARAMS))
        raise ValueError(f"'{name}' is not a known parameter; known: {known} (docs/rules.md, 'Source parameters')")
    if param.kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{name} is a number{f' ({param.unit})' if param.unit else ''}, not {value!r}")
    if param.kind == "yes/no" and not isinstance(value, bool):
        raise ValueError(f"{name} is true or false, not {value!r}")
    if param.kind == "text" and not isinstance(value, str):
        raise ValueError(f"{name} is text, not {value!r}")
    assert isinstance(value, str | int | float | bool)
    return value


def param_text(value: ParamValue) -> str:
    """How a value is stored in stage.source_param.value (yes/no as true/false)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def is_set(value: ParamValue) -> bool:
    """A yes/no parameter set to false asks nothing of the rules that read it."""
    return value is not False


def typed_view_sql() -> str:
    """`stage.source_params`: one row per source, one typed column per known parameter."""
    columns = ",\n       ".join(
        f"max(CASE WHEN name = '{p.name}' THEN TRY_CAST(value AS {_SQL_TYPE[p.kind]}) END) AS {p.name}"
        for p in PARAMS.values())
    return (f"CREATE OR REPLACE VIEW stage.source_params AS\n"
            f"SELECT source_id,\n       {columns}\nFROM stage.source_param GROUP BY source_id")
