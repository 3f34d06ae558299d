"""Per-table rules: the GX suites under expectations/, run with Great Expectations 1.x.

Each core table's stage rows are validated as one pandas batch. GX returns every failing row
(result format COMPLETE, indexed by source_id + source_record_key), which the runner turns into
issues per source and centre. The same run writes GX Data Docs, linked from the report.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from etl import timing
from etl.quality.catalogue import Rule
from etl.quality.findings import FAILURE_COLUMNS, KEY_COLUMNS, RuleRun, shown

log = logging.getLogger(__name__)
_SITE = "rtw_data_docs"
# Expectations that judge every row in scope, null or not; the others skip nulls, as GX does.
_COUNT_NULLS = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


def _population(frame: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    assert rule.expectation is not None
    kwargs = rule.expectation["kwargs"]
    rows = frame
    if kwargs.get("row_condition"):
        rows = rows.query(kwargs["row_condition"], engine="python")
    column = kwargs.get("column")
    if column and rule.expectation["type"] not in _COUNT_NULLS:
        rows = rows[rows[column].notna()]
    return rows[KEY_COLUMNS]


def _failures(rule: Rule, result: Mapping[str, Any]) -> pd.DataFrame:
    assert rule.expectation is not None
    kwargs = rule.expectation["kwargs"]
    columns = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", []))
    rows = [{
        "source_id": hit["source_id"], "source_record_key": hit["source_record_key"], "field": rule.meta.field,
        "value": " | ".join(t for c in columns if (t := shown(hit.get(c))) is not None) or None,
        "message": None,
    } for hit in result.get("unexpected_index_list") or []]
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def _exception(info: Mapping[str, Any] | None) -> str | None:
    """GX's exception info is flat for one metric and keyed by metric for several."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, Mapping)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "GX raised an exception")
    return None


def _context(data_docs_dir: Path | None) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX pins this module's logger to INFO; its per-run chatter does not belong in our logs.
    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if data_docs_dir is not None:
        context.add_data_docs_site(site_name=_SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def run_suites(frame_of: Callable[[str], pd.DataFrame | None], rules: Sequence[Rule],
               judge: Callable[[pd.DataFrame], pd.DataFrame], *, data_docs_dir: Path | None = None) -> list[RuleRun]:
    """Validate each table's frame against its rules; Data Docs go to `data_docs_dir` when given.

    `frame_of(table)` loads a table's rows (None: no such table), one table at a time, so memory
    holds the largest table, not all of them; `judge(keys)` counts a rule's judged rows per source
    and centre."""
    context = _context(data_docs_dir)
    source = context.data_sources.add_pandas("rtw_stage")
    runs: list[RuleRun] = []
    for table in sorted({r.meta.table for r in rules if r.meta.table}):
        table_rules = [r for r in rules if r.meta.table == table]
        with timing.step(f"validate {table} (GX)"):
            frame = frame_of(table)
            if frame is None:
                runs += [RuleRun.failed_to_run(r.rule_id, f"table {table} is not in the warehouse")
                         for r in table_rules]
            else:
                runs += _run_suite(context, source, table, table_rules, frame, judge)
    if data_docs_dir:  # once, from every suite and result the context holds (per checkpoint, it rebuilt them all)
        with timing.step("validate Data Docs"):
            context.build_data_docs(site_names=[_SITE])
    return runs


def _run_suite(context: Any, source: Any, table: str, table_rules: Sequence[Rule], frame: pd.DataFrame,
               judge: Callable[[pd.DataFrame], pd.DataFrame]) -> list[RuleRun]:
    """One table's suite, run by a checkpoint over its frame: each rule's population and failures."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    runs: list[RuleRun] = []
    expectations = []
    for rule in table_rules:
        assert rule.expectation is not None
        kwargs = dict(rule.expectation["kwargs"])
        if rule.meta.threshold > 0 and "mostly" not in kwargs:
            kwargs["mostly"] = 1.0 - rule.meta.threshold  # so Data Docs judge as the report does
        try:
            expectations.append(ExpectationConfiguration(
                type=rule.expectation["type"], kwargs=kwargs, meta={"rule_id": rule.rule_id}).to_domain_obj())
        except Exception as exc:  # a misspelt expectation: that rule errs, the suite runs
            runs.append(RuleRun.failed_to_run(rule.rule_id, f"{rule.definition}: {type(exc).__name__}: {exc}"))
    suite = context.suites.add(gx.ExpectationSuite(name=f"core.{table}", expectations=expectations))
    batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("stage")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=table, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"rtw_{table}", validation_definitions=[definition], actions=[],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": KEY_COLUMNS}))
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    by_rule = {r.rule_id: r for r in table_rules}
    for validation in outcome.run_results.values():
        for result in validation.results:
            rule = by_rule[result.expectation_config.meta["rule_id"]]
            if (problem := _exception(result.exception_info)) is not None:
                runs.append(RuleRun.failed_to_run(rule.rule_id, problem))
                continue
            try:
                runs.append(RuleRun(rule.rule_id, judge(_population(frame, rule)), _failures(rule, result.result)))
            except Exception as exc:  # a bad row_condition: the rule errs, the others go on
                runs.append(RuleRun.failed_to_run(rule.rule_id, f"{type(exc).__name__}: {exc}"))
    return runs
