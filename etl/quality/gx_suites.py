"""Per-table rules: the GX suites under expectations/, run with Great Expectations 1.x.

Each core table's stage rows are validated in pandas batches (validate.GX_BATCH_ROWS rows, what
GX keeps of a batch dropped once it is judged). GX returns every failing row
(result format COMPLETE, indexed by source_id + source_record_key), which the runner turns into
issues per source and centre. The same run writes GX Data Docs, linked from the report, from
results stored without those lists (`_store`). All of this runs in GX's own process
(etl/quality/gx_process.py), or in the run's for a very large registry.

Gotcha of the Data Docs: GX writes the unexpected values it stores into its pages as they are, markup
and all, so a value an export holds (`<script>...`) would run in the browser of whoever opens them.
The values are stored HTML-escaped (`_as_page_text`): the pages show them as written. GX's pages load
their styles and scripts from CDNs; once written they load copies in their own folder (data_docs.py).
"""

from __future__ import annotations

import html
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from etl import memory, timing
from etl.quality import data_docs
from etl.quality.catalogue import THRESHOLD_DIGITS, Rule
from etl.quality.findings import FAILURE_COLUMNS, KEY_COLUMNS, Denominators, RuleRun, shown

log = logging.getLogger(__name__)
_SITE = "rtw_data_docs"
# Expectations that judge every row in scope, null or not; the others skip nulls, as GX does.
_COUNT_NULLS = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


@dataclass(frozen=True)
class Batch:
    """Rows of a stage table validated at once, and each row's centre (same index) for the denominators."""

    rows: pd.DataFrame
    centres: pd.Series


# A pair of columns (end after start) is skipped by GX when the values its ignore_row_if names are
# missing: by default when both are, "either_value_is_missing" when one is.
_PAIR_SKIPPED_IF: dict[str, Literal["all", "any"] | None] = {
    "both_values_are_missing": "all", "either_value_is_missing": "any", "neither": None}


def _columns(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns an expectation judges: its column, its column list, or its pair (column_A, column_B)."""
    if "column" in kwargs:
        return [kwargs["column"]]
    if "column_list" in kwargs:
        return list(kwargs["column_list"])
    return [kwargs[c] for c in ("column_A", "column_B") if c in kwargs]


def _population(frame: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    assert rule.expectation is not None
    kwargs = rule.expectation["kwargs"]
    rows = frame
    if kwargs.get("row_condition"):
        rows = rows.query(kwargs["row_condition"], engine="python")
    column = kwargs.get("column")
    if column and rule.expectation["type"] not in _COUNT_NULLS:
        rows = rows[rows[column].notna()]
    if "column_A" in kwargs and (how := _PAIR_SKIPPED_IF[kwargs.get("ignore_row_if", "both_values_are_missing")]):
        rows = rows.dropna(subset=_columns(kwargs), how=how)
    return rows[KEY_COLUMNS]


def _failures(rule: Rule, result: Mapping[str, Any]) -> pd.DataFrame:
    """A finding per failing row, with the values judged; a rule over several columns (an end before
    its start) names each column with its value, so the centre is told which dates disagree."""
    assert rule.expectation is not None
    columns = _columns(rule.expectation["kwargs"])
    rows = []
    for hit in result.get("unexpected_index_list") or []:
        values = {c: t for c in columns if (t := shown(hit.get(c))) is not None}
        rows.append({"source_id": hit["source_id"], "source_record_key": hit["source_record_key"],
                     "field": rule.meta.field, "value": " | ".join(values.values()) or None,
                     "message": ", ".join(f"{c} {t}" for c, t in values.items()) if len(columns) > 1 else None})
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


# GX imports scipy.stats with its distribution expectations (KL divergence, KS tests), which no rule of
# the catalogue uses: 1.2 s of GX's 4 s import on this machine, paid by every run that validates.
# Loaded lazily, it is imported only if one of them is used.
_IMPORTED_ON_USE = ("scipy.stats",)


def import_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # GX logs some 200 lines at INFO while it imports and makes a context ("Skipping registering function
    # ..."). An Airflow task logs at INFO and shows what a process writes to stderr (GX's process does) as
    # errors: a publish that succeeded had hundreds of red lines in its log. GX's warnings still show.
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    if "great_expectations" in sys.modules:
        return
    for name in _IMPORTED_ON_USE:
        _import_on_use(name)
    with memory.no_cyclic_gc():  # 1.7 -> 1.3 s: the collections its objects set off find no garbage
        import great_expectations  # noqa: F401


def _import_on_use(name: str) -> None:
    """Put module `name` in place now, executed at its first attribute read (importlib's LazyLoader)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


def new_context(data_docs_dir: Path | None) -> Any:
    """An ephemeral GX context, writing its Data Docs to `data_docs_dir` when given."""
    import_gx()
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


def run_suites(context: Any, batches_of: Callable[[str], Iterator[Batch] | None],
               rules: Sequence[Rule], *, run_name: str | None = None) -> list[RuleRun]:
    """Validate each table's rows against its rules, in `context` (whose Data Docs, written after,
    show every result, under `run_name`: the pipeline's run id; GX shows "__none__" without one).

    `batches_of(table)` gives a table's rows in batches (None: no such table), so memory holds one
    batch, whatever the size of the registry: each batch is a validation of the table's suite (one
    validation result each in Data Docs), and a rule's findings are those of every batch."""
    source = context.data_sources.add_pandas("rtw_stage")
    with memory.settled():
        return _run_tables(context, source, batches_of, rules, run_name)


def write_data_docs(context: Any, folder: Path) -> None:
    """Once, from every suite and result the context holds (a checkpoint action would rebuild them
    all each time), into `folder` (the context's site, `new_context`); then pointed at copies in
    `folder` of the styles and scripts GX's pages load from CDNs (etl/quality/data_docs.py), so that
    they open offline and tell no one they were opened."""
    with timing.step("validate Data Docs"):
        context.build_data_docs(site_names=[_SITE])
        data_docs.make_self_contained(folder)


def _run_tables(context: Any, source: Any, batches_of: Callable[[str], Iterator[Batch] | None],
                rules: Sequence[Rule], run_name: str | None) -> list[RuleRun]:
    runs: list[RuleRun] = []
    for table in sorted({r.meta.table for r in rules if r.meta.table}):
        table_rules = [r for r in rules if r.meta.table == table]
        with timing.step(f"validate {table} (GX)"):
            batches = batches_of(table)
            if batches is None:
                runs += [RuleRun.failed_to_run(r.rule_id, f"table {table} is not in the warehouse")
                         for r in table_rules]
                continue
            suite, definition, unusable = _suite(context, source, table, table_rules)
            found = []
            for batch in batches:
                found.append(_run_batch(context, suite, definition, table_rules, batch, run_name))
                _forget_batches(source)
                memory.release(len(batch.rows))
            runs += unusable + combined_runs(found)
    return runs


def _suite(context: Any, source: Any, table: str, table_rules: Sequence[Rule]) -> tuple[Any, Any, list[RuleRun]]:
    """A table's suite and the batch definition its batches are validated through; the rules GX
    cannot even build err."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    unusable: list[RuleRun] = []
    expectations = []
    for rule in table_rules:
        assert rule.expectation is not None
        kwargs = dict(rule.expectation["kwargs"])
        if rule.meta.threshold > 0 and "mostly" not in kwargs:
            # so Data Docs judge as the report does: 1 - 0.58 is 0.42000000000000004, which 21 of 50 would miss
            kwargs["mostly"] = round(1.0 - rule.meta.threshold, THRESHOLD_DIGITS)
        try:
            expectations.append(ExpectationConfiguration(
                type=rule.expectation["type"], kwargs=kwargs, meta={"rule_id": rule.rule_id}).to_domain_obj())
        except Exception as exc:  # a misspelt expectation: that rule errs, the suite runs
            unusable.append(RuleRun.failed_to_run(rule.rule_id, f"{rule.definition}: {type(exc).__name__}: {exc}"))
    suite = context.suites.add(gx.ExpectationSuite(name=f"core.{table}", expectations=expectations))
    definition = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("stage")
    return suite, definition, unusable


# Every failing row by its keys; not GX's query listing every index of them.
_RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": KEY_COLUMNS,
                  "return_unexpected_index_query": False}
# What the stored results (the Data Docs' source) leave out: every failing row and value, which the
# runs below take to dq.issue. Serialising them for GX's store took a quarter of GX's time at 100,000
# persons. The Data Docs show the unexpected values and their counts, as for GX's SUMMARY format.
_NOT_STORED = ("unexpected_index_list", "unexpected_list")
# What the stored results keep of the failing values, which the Data Docs write into their pages unescaped.
_SHOWN_VALUES = ("partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list")


def _run_batch(context: Any, suite: Any, definition: Any, table_rules: Sequence[Rule], batch: Batch,
               run_name: str | None) -> list[RuleRun]:
    """The suite over one batch: each rule's judged rows and failures in it. The result is stored,
    without its lists of every failure, for the Data Docs."""
    from great_expectations.validator.v1_validator import Validator

    # As a ValidationDefinition runs one, less the store of the whole result.
    validator = Validator(batch_definition=definition, result_format=_RESULT_FORMAT,
                          batch_parameters={"dataframe": batch.rows})
    outcome = validator.validate_expectation_suite(suite)
    runs: list[RuleRun] = []
    by_rule = {r.rule_id: r for r in table_rules}
    denominators = Denominators(batch.rows[KEY_COLUMNS], batch.centres)
    for result in outcome.results:
        assert result.expectation_config is not None
        rule = by_rule[result.expectation_config.meta["rule_id"]]
        if (problem := _exception(result.exception_info)) is not None:
            runs.append(RuleRun.failed_to_run(rule.rule_id, problem))
            continue
        try:
            population = _population(batch.rows, rule)
            runs.append(RuleRun(rule.rule_id, denominators.of(population), _failures(rule, result.result)))
        except Exception as exc:  # a bad row_condition: the rule errs, the others go on
            runs.append(RuleRun.failed_to_run(rule.rule_id, f"{type(exc).__name__}: {exc}"))
    _store(context, suite, validator.active_batch_id, outcome, run_name)
    return runs


def _store(context: Any, suite: Any, batch_id: str | None, outcome: Any, run_name: str | None) -> None:
    """Keep a batch's result in the context, for the Data Docs, as a checkpoint would (one result
    per batch, stamped with the run's name and the time it was judged), less its lists of every failure."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    # GX reads a run name as a time where dateutil can (its page renderer): a run id ending -2500 reads as a
    # 25-hour offset and fails the page. Behind a word no parser takes for a time, the name stays the run id.
    run_id = RunIdentifier(run_name=f"run-{run_name}" if run_name else None, run_time=datetime.now(UTC))
    outcome.meta["run_id"] = run_id
    outcome.meta["validation_time"] = run_id.run_time
    for result in outcome.results:
        for name in _NOT_STORED:
            (result.result or {}).pop(name, None)
        for name in _SHOWN_VALUES:
            if name in (result.result or {}):
                result.result[name] = _as_page_text(result.result[name])
    suite_id = ExpectationSuiteIdentifier(name=suite.name)
    context.validation_results_store.store_validation_results(
        outcome, ValidationResultIdentifier(expectation_suite_identifier=suite_id, run_id=run_id,
                                            batch_identifier=batch_id), suite_id)


def _as_page_text(value: Any) -> Any:
    """Every text in `value` (a value, or the lists and dicts GX keeps them in) HTML-escaped, so that a
    page GX writes it into unescaped shows it as written."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {k: _as_page_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_as_page_text(v) for v in value)
    return value


def _forget_batches(source: Any) -> None:
    """Drop what GX keeps of the batches it validated: its execution engine caches every batch's
    data frame and every metric computed on it for the life of the data source, so memory would
    otherwise hold every stage table at once."""
    engine = source.get_execution_engine()
    engine.batch_manager.reset_batch_cache()
    engine.batch_manager.batch_data_cache.clear()
    engine._metric_cache.clear()


def combined_runs(batches: Sequence[Sequence[RuleRun]]) -> list[RuleRun]:
    """One run per rule from its runs over each batch: the first error, else every batch's findings."""
    by_rule: dict[str, list[RuleRun]] = {}
    for runs in batches:
        for run in runs:
            by_rule.setdefault(run.rule_id, []).append(run)
    combined = []
    for rule_id, runs in by_rule.items():
        failed = next((r for r in runs if r.error is not None), None)
        combined.append(failed or RuleRun(rule_id, pd.concat([r.judged for r in runs], ignore_index=True),
                                          pd.concat([r.failures for r in runs], ignore_index=True)))
    return combined
