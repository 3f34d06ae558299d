"""The linkage model: thresholds, field levels with their m and u probabilities, blocking rules.

The shipped defaults are `linkage.yaml` beside this module; env RTW_LINKAGE_CONFIG names a
deployer's own copy. The m and u probabilities are fixed configuration, not trained per run (see
the comments in linkage.yaml); the prior and a morphology's term-frequency weight are drawn from the
records loaded, so a pair's score still moves with who else was loaded (docs/linkage.md, Known limits).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CONFIG_ENV = "RTW_LINKAGE_CONFIG"
DEFAULT_CONFIG = Path(__file__).with_name("linkage.yaml")


class Level(BaseModel):
    """One level of a field: its SQL condition on l./r. columns and what it weighs."""

    model_config = ConfigDict(extra="forbid")
    evidence: str
    sql: str
    is_null: bool = False
    m: float | None = Field(default=None, gt=0, le=1)
    u: float | None = Field(default=None, gt=0, le=1)
    # An exact-agreement level may weigh by how rare the shared value is (Splink's term-frequency
    # adjustment: u becomes the value's share among the records linked): a rare tumour agreeing says more.
    term_frequency_column: str | None = None

    @model_validator(mode="after")
    def _weighed(self) -> Level:
        if not self.is_null and (self.m is None or self.u is None):
            raise ValueError(f"level {self.evidence!r}: m and u are required (except on the null level)")
        return self


class LinkageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    link_threshold: float = Field(gt=0, lt=1)
    review_threshold: float = Field(gt=0, lt=1)
    prior: float = Field(gt=0, lt=1)
    prior_rules: list[str]
    prior_rules_recall: float = Field(gt=0, le=1)
    fields: dict[str, list[Level]]
    blocking_rules: list[str]
    # Conditions, each field -> evidence labels: a pair that shows, on every field of one condition, one
    # of its labels is never linked on its score, only reviewed.
    review_when: list[dict[str, list[str]]] = Field(default_factory=list)
    fingerprint: str = ""  # of the file's text: a changed model re-links at the next run

    @field_validator("review_when", mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        """The older form, one mapping (field -> labels), held a pair back on any one of its fields."""
        return [{field: labels} for field, labels in value.items()] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _ordered(self) -> LinkageConfig:
        if self.review_threshold > self.link_threshold:
            raise ValueError("review_threshold must not exceed link_threshold")
        for field, labels in (item for condition in self.review_when for item in condition.items()):
            known = [level.evidence for level in self.fields.get(field, [])]
            if unknown := [label for label in labels if label not in known]:
                raise ValueError(f"review_when: {field} has no level {', '.join(map(repr, unknown))}"
                                 + (f" (its levels: {', '.join(known)})" if known else " (no such field)"))
        return self


class LinkageConfigError(ValueError):
    """The linkage configuration cannot be used: which file, what is wrong."""


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path | None = None) -> LinkageConfig:
    """The linkage configuration (default: env RTW_LINKAGE_CONFIG, else the shipped one)."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's, where built
        return LinkageConfig.model_validate({**raw, "fingerprint": hashlib.sha256(text.encode()).hexdigest()})
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        raise LinkageConfigError(f"linkage configuration {path}: {exc}") from exc


def splink_settings(config: LinkageConfig, prior: float) -> dict[str, Any]:
    """The Splink settings dictionary: link_only (never within a source), the configured levels."""
    comparisons = [{
        "output_column_name": name,
        "comparison_levels": [
            {"sql_condition": level.sql, "label_for_charts": level.evidence, "is_null_level": True}
            if level.is_null else
            {"sql_condition": level.sql, "label_for_charts": level.evidence,
             "m_probability": level.m, "u_probability": level.u,
             **({"tf_adjustment_column": level.term_frequency_column, "tf_adjustment_weight": 1.0}
                if level.term_frequency_column else {})}
            for level in levels],
    } for name, levels in config.fields.items()]
    return {
        "link_type": "link_only",
        "unique_id_column_name": "unique_id",
        "probability_two_random_records_match": prior,
        "comparisons": comparisons,
        "blocking_rules_to_generate_predictions": [{"blocking_rule": rule} for rule in config.blocking_rules],
        # gamma_<field>, the level each field reached (the evidence), comes only with the compared
        # values; score_pairs keeps the gammas and drops the values.
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": False,
    }


def evidence_label(config: LinkageConfig, field: str, gamma: int) -> str:
    """The level a pair reached on a field, from Splink's comparison vector value (gamma_<field>): -1
    is the null level, else the levels count down to 0 from the first. Not from the level's weight:
    two levels may weigh alike (same-site weighs 0, as a missing value does)."""
    if gamma < 0:
        return "missing"
    levels = [level.evidence for level in config.fields[field] if not level.is_null]
    return levels[len(levels) - 1 - gamma]
