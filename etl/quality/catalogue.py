"""The rule catalogue: every data-quality rule, read from the files that define it.

Three kinds of file, one shape of rule (id, Kahn category and subcategory, level, severity,
threshold, description):
- `expectations/<table>.json`: a GX 1.x expectation suite per core table; each expectation's
  `meta` carries the rule's catalogue entry.
- `warehouse/checks/<rule_id>.sql`: a cross-table rule; a header of `-- key: value` lines, then
  a query over the stage tables that returns the failing records. With `-- phase: admitted` it
  judges, after the quarantine, only the records that reach core (references between core tables).
- `expectations/harmonise.json`: the conformance rules harmonise applies while parsing values
  (a date that does not exist cannot be loaded at all), catalogued so they are reported alike.
Adding a rule is adding a file or an entry; a source tunes rules in its YAML (`quality:`).
A rule that depends on who a source enrols reads source parameters (`params`, declared in
etl/quality/params.py and set under `params:` in a source's YAML) and judges only the sources
that set one of them; no rule names a source or a study.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from etl.quality.params import PARAMS
from etl.resources import checks_dir, data_root, expectations_dir

EXPECTATIONS_DIR = expectations_dir()
CHECKS_DIR = checks_dir()
HARMONISE_RULES = "harmonise.json"
_HEADER_LINE = re.compile(r"--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
# A threshold times a count is rounded to this many decimals wherever a rule is judged (report, SQL, GX's
# `mostly`): 0.58 x 50 is 28.999999999999996 in floating point, yet 29 of 50 rows are within 58%.
THRESHOLD_DIGITS = 9


class CatalogueError(ValueError):
    """A rule file is malformed; the message names the file and the rule."""


class RuleMeta(BaseModel):
    """What the catalogue says about a rule, whatever engine checks it."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
    category: Literal["conformance", "completeness", "plausibility"]
    subcategory: Literal["verification", "validation"]
    level: Literal["field", "record", "table", "cross-table"]
    severity: Literal["error", "warning"]
    threshold: float = Field(ge=0.0, le=1.0)
    description: str = Field(min_length=10)
    expected: str | None = None
    table: str | None = None
    field: str | None = None
    scope: str | None = None  # SQL rules: which rows of `table` the rule judges (the denominator)
    params: list[str] | None = None  # source parameters the rule reads; it judges only sources setting one
    # SQL rules: `staged` judges every stage record, before the quarantine; `admitted` judges the records
    # that reach core (stage minus the quarantine), after it: references between core tables.
    phase: Literal["staged", "admitted"] = "staged"
    # Whether a centre may confirm a finding as true (a real 19-year-old in a 0-18 registry): a confirmed
    # finding is waived on later runs while the value stays the same. Default: warnings yes, errors no.
    confirmable: bool | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _params_list(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or []) - set(PARAMS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a source parameter (etl/quality/params.py); "
                             f"known: {', '.join(sorted(PARAMS))}")
        return value

    @model_validator(mode="after")
    def _confirmable_by_severity(self) -> RuleMeta:
        if self.confirmable is None:
            self.confirmable = self.severity == "warning"
        return self

    @property
    def is_confirmable(self) -> bool:
        return bool(self.confirmable)

    @model_validator(mode="after")
    def _admitted_rules_warn(self) -> RuleMeta:
        # Holding a record back after the quarantine would change what reaches core, which the rule judged.
        if self.phase == "admitted" and self.severity != "warning":
            raise ValueError("a rule judged after the quarantine (phase: admitted) can only be a warning")
        return self


@dataclass(frozen=True)
class Rule:
    meta: RuleMeta
    engine: Literal["gx", "sql", "harmonise"]
    definition: str  # the defining file, relative to the repository
    expectation: Mapping[str, Any] | None = None  # gx: {"type", "kwargs"}
    query: str | None = None  # sql: returns source_id, source_record_key[, field, value, message]

    @property
    def rule_id(self) -> str:
        return self.meta.rule_id


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(data_root()))
    except ValueError:
        return str(path)


def _meta(data: Mapping[str, Any], where: str) -> RuleMeta:
    try:
        return RuleMeta.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(rule)'}: {e['msg']}" for e in exc.errors())
        raise CatalogueError(f"{where}: {problems}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"{_relative(path)}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"{_relative(path)}: expected a JSON object")
    return data


def gx_rules(path: Path, *, check_types: bool = True) -> list[Rule]:
    """The rules of one GX suite file (`{"name", "meta": {"table"}, "expectations": [...]}`).

    check_types builds each expectation with GX, so a misspelt type or argument fails here,
    naming the rule; it costs the GX import, which a run that validates nothing can skip.
    """
    suite = _read_json(path)
    table = (suite.get("meta") or {}).get("table")
    if not table:
        raise CatalogueError(f"{_relative(path)}: the suite's meta has no 'table'")
    rules = []
    for index, entry in enumerate(suite.get("expectations", [])):
        where = f"{_relative(path)}: expectations[{index}]"
        kwargs = dict(entry.get("kwargs", {}))
        column = kwargs.get("column") or "|".join(kwargs.get("column_list", [])) or None
        meta = _meta({"table": table, "field": column, **entry.get("meta", {})}, where)
        if meta.phase != "staged":
            raise CatalogueError(f"{where} ({meta.rule_id}): a GX suite judges the stage; only a SQL rule can "
                                 "be judged after the quarantine (phase: admitted)")
        if check_types:
            _check_expectation(entry.get("type", ""), kwargs, f"{where} ({meta.rule_id})")
        rules.append(Rule(meta, "gx", _relative(path), expectation={"type": entry["type"], "kwargs": kwargs}))
    return rules


def _check_expectation(kind: str, kwargs: Mapping[str, Any], where: str) -> None:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        ExpectationConfiguration(type=kind, kwargs=dict(kwargs)).to_domain_obj()
    except Exception as exc:
        raise CatalogueError(f"{where}: {type(exc).__name__}: {exc}") from None


def sql_rule(path: Path) -> Rule:
    """One cross-table rule: `-- key: value` header lines, then the query."""
    text = path.read_text(encoding="utf-8")
    header: dict[str, Any] = {}
    for line in text.splitlines():
        match = _HEADER_LINE.match(line)
        if not line.startswith("--"):
            break
        if match:
            header[match.group(1)] = match.group(2)
    where = _relative(path)
    if "threshold" in header:
        try:
            header["threshold"] = float(header["threshold"])
        except ValueError:
            raise CatalogueError(f"{where}: threshold '{header['threshold']}' is not a number") from None
    meta = _meta(header, where)
    if path.stem != meta.rule_id:
        raise CatalogueError(f"{where}: the file must be named after its rule_id ({meta.rule_id}.sql)")
    if not meta.table:
        raise CatalogueError(f"{where}: a cross-table rule needs 'table' (whose rows are the denominator)")
    return Rule(meta, "sql", where, query=text)


def harmonise_rules(path: Path) -> list[Rule]:
    data = _read_json(path)
    rules = [Rule(_meta(entry, f"{_relative(path)}: rules[{i}]"), "harmonise", _relative(path))
             for i, entry in enumerate(data.get("rules", []))]
    for rule in rules:
        # A value harmonise cannot parse (an impossible date, a code not in the list) has no core value to
        # keep: no centre's confirmation can make it loadable.
        if rule.meta.is_confirmable:
            raise CatalogueError(f"{rule.definition} ({rule.rule_id}): a conformance rule of harmonise can never "
                                 "be confirmable")
    return rules


def load_catalogue(expectations_dir: Path | None = None, checks_dir: Path | None = None, *,
                   check_types: bool = True) -> list[Rule]:
    """Every rule, checked: well-formed metadata, known GX expectation types, unique ids. Read again only
    when a file of the catalogue changed (each mapping's load asks for it, several times a night)."""
    expectations_dir = expectations_dir or EXPECTATIONS_DIR
    checks_dir = checks_dir or CHECKS_DIR
    files = [*sorted(expectations_dir.glob("*.json")), *sorted(checks_dir.glob("*.sql"))]
    return list(_read_catalogue(tuple((path, path.stat().st_mtime_ns, path.stat().st_size) for path in files),
                                check_types))


@functools.lru_cache(maxsize=4)
def _read_catalogue(files: tuple[tuple[Path, int, int], ...], check_types: bool) -> tuple[Rule, ...]:
    """The rules of the catalogue's files (path, modified, size: a changed file is another key)."""
    rules: list[Rule] = []
    for path, _modified, _size in files:
        if path.suffix == ".sql":
            rules.append(sql_rule(path))
        else:
            rules += harmonise_rules(path) if path.name == HARMONISE_RULES else gx_rules(path, check_types=check_types)
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.rule_id in seen:
            raise CatalogueError(f"rule {rule.rule_id} is defined twice: in {seen[rule.rule_id]} and {rule.definition}")
        seen[rule.rule_id] = rule.definition
    return tuple(rules)


def fingerprint(rules: Iterable[Rule], overrides: Mapping[str, Any]) -> str:
    """Changes when a rule or a source's override changes: then validation must run again."""
    digest = hashlib.sha256()
    for rule in sorted(rules, key=lambda r: r.rule_id):
        digest.update(json.dumps([rule.meta.model_dump(), rule.expectation, rule.query], sort_keys=True).encode())
    digest.update(json.dumps(overrides, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def catalogue_markdown(rules: Iterable[Rule]) -> str:
    """The catalogue as a Markdown page for quality officers (docs/rules.md is this, regenerated)."""
    lines = ["# Data-quality rules", "",
             "Generated from `expectations/` and `warehouse/checks/` by `python -m etl.quality.catalogue`; "
             "do not edit by hand.", "",
             "Severity *error* holds the record back (quarantine); *warning* loads it and lists it as an issue. "
             "The threshold is the share of failing rows tolerated before the rule fails; a source can change it, "
             "or switch the rule off, under `quality:` in its `sources/<source>.yaml`. *Confirmable*: a centre may "
             "answer a query on the finding with `confirmed` (the value is true), which waives it on later runs while "
             "the value stays the same (docs/queries.md).", ""]
    rules = list(rules)
    ordered = sorted(rules, key=lambda r: (r.meta.category, r.meta.subcategory, r.rule_id))
    for category in ("conformance", "completeness", "plausibility"):
        lines += [f"## {category.capitalize()}", "",
                  "| rule | kind | level | severity | threshold | confirmable | table.field | what it means |",
                  "|---|---|---|---|---|---|---|---|"]
        for rule in (r for r in ordered if r.meta.category == category):
            m = rule.meta
            where = ".".join(p for p in (m.table, m.field) if p) or "(any)"
            reads = f" Reads {', '.join(f'`{p}`' for p in m.params)}." if m.params else ""
            after = " Judged after the quarantine, on the records that reach core." if m.phase == "admitted" else ""
            lines.append(f"| `{m.rule_id}` | {m.subcategory} | {m.level} | {m.severity} | {m.threshold:g} | "
                         f"{'yes' if m.is_confirmable else 'no'} | {where} | {m.description}{reads}{after} |")
        lines.append("")
    lines += ["## Source parameters", "",
              "A rule that depends on whom a source enrols reads parameters that the source sets under `params:` "
              "in its `sources/<source>.yaml` (e.g. `params: {min_age_years: 0, max_age_years: 18}`). Such a rule "
              "judges every source that sets at least one of its parameters (a yes/no parameter: to true) and is "
              "*not applicable* to the others. The parameters a mapping may set (from `etl/quality/params.py`):", "",
              "| parameter | kind | unit | meaning | read by |", "|---|---|---|---|---|"]
    for param in PARAMS.values():
        readers = ", ".join(f"`{r.rule_id}`" for r in sorted(rules, key=lambda r: r.rule_id)
                            if param.name in (r.meta.params or []))
        lines.append(f"| `{param.name}` | {param.kind} | {param.unit or ''} | {param.description} | "
                     f"{readers or '(no rule yet)'} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(catalogue_markdown(load_catalogue()), end="")
