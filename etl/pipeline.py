"""The nightly import as steps: plan, extract, harmonise (per source), publish (once).

`rtw run` calls these in sequence; the Airflow DAG calls the very same functions as tasks,
extract and harmonise mapped over sources. Steps exchange small JSON-able dicts (paths and
counts, never data frames), so they can run in separate processes or on separate workers.
A source that fails (unreadable file, invalid mapping) is recorded as failed and keeps its
last good data; the other sources go on.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from etl.config import SOURCES_DIR, Home
from etl.extract import landing
from etl.extract.adapter import adapter_for
from etl.extract.errors import ExtractError
from etl.load.dictionary import write_dictionary_page
from etl.load.marts import export_parquet, plot_survival
from etl.load.warehouse import publish, read_source_state
from etl.quality.report import build_report
from etl.quality.validate import QualityPlan, quality_plan
from etl.transform.harmonise import HarmoniseError, harmonise_source
from etl.transform.mapping import MappingError, SourceMapping, load_mapping
from etl.transform.pseudonym import load_key
from etl.transform.records import load_record_sets

log = logging.getLogger("rtw")
Outcome = dict[str, Any]


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(2)}"


def _mapping_path(source_id: str, sources_dir: Path) -> Path:
    return sources_dir / f"{source_id}.yaml"


def _fingerprint(mapping_path: Path, files: list[landing.LandingFile]) -> str:
    digest = hashlib.sha256(mapping_path.read_bytes())
    for f in sorted(files, key=lambda f: f.sha256):
        digest.update(f.sha256.encode())
    return digest.hexdigest()


def plan(home: Home, *, sources_dir: Path = SOURCES_DIR, run_id: str | None = None,
         force: bool = False) -> dict[str, Any]:
    """Which sources changed since the last load (by file hashes and mapping), and the run id."""
    state = read_source_state(home.warehouse)
    changed, unchanged = [], []
    for path in sorted(sources_dir.glob("*.yaml")):
        source_id = path.stem
        try:
            files = landing.discover(home.landing, load_mapping(path)).current
            fingerprint = _fingerprint(path, list(files))
        except MappingError:
            changed.append(source_id)  # extract reports the mapping error as this source's failure
            continue
        previous = state.get(source_id, {})
        if not force and previous.get("fingerprint") == fingerprint and previous.get("status") == "loaded":
            unchanged.append(source_id)
        else:
            changed.append(source_id)
    return {"run_id": run_id or new_run_id(), "started_at": datetime.now(UTC).isoformat(),
            "changed": changed, "unchanged": unchanged}


def _file_entry(f: landing.LandingFile) -> dict[str, Any]:
    return {"name": f.name, "sha256": f.sha256, "size_bytes": f.size_bytes, "series": f.series,
            "exported_on": f.exported_on.isoformat()}


def _failed(source_id: str, run_id: str, message: str, **extra: Any) -> Outcome:
    log.error("%s: %s", source_id, message)
    return {"source_id": source_id, "run_id": run_id, "status": "failed", "message": message, **extra}


def _stage(mapping: SourceMapping, f: landing.LandingFile, out: Path) -> dict[str, Any]:
    lineage = {"source_file": f.name, "source_file_sha256": f.sha256}
    adapter = adapter_for(mapping.format)
    result = adapter.stage(f.path, out, adapter.read_options(mapping), lineage)
    return {"rows_staged": result.rows, "notices": list(result.notices)}


def extract_source(home: Home, run_id: str, source_id: str, *, sources_dir: Path = SOURCES_DIR) -> Outcome:
    """Archive and stage the source's current files (a file already staged is not read again)."""
    started = time.perf_counter()
    try:
        mapping_path = _mapping_path(source_id, sources_dir)
        mapping = load_mapping(mapping_path)
    except MappingError as exc:
        return _failed(source_id, run_id, str(exc))
    found = landing.discover(home.landing, mapping)
    files, notices = [], list(found.notices)
    for f in found.current:
        entry = _file_entry(f)
        staged = home.staging / source_id / adapter_for(mapping.format).staged_name(f.sha256)
        try:
            landing.archive(f, home.archive)
            if not staged.exists():
                entry.update(_stage(mapping, f, staged))
                log.info("%s: staged %s (%s rows)", source_id, f.name, entry["rows_staged"])
            else:
                log.info("%s: %s already staged", source_id, f.name)
        except ExtractError as exc:
            return _failed(source_id, run_id, str(exc), files=[{**entry, "message": str(exc)}],
                           superseded=[_file_entry(s) for s in found.superseded], notices=notices)
        entry["staged"] = str(staged)
        notices += entry.get("notices", [])
        files.append(entry)
    if not files:
        return _failed(source_id, run_id, f"no export files in {home.landing / source_id}", notices=notices)
    return {"source_id": source_id, "run_id": run_id, "status": "extracted", "files": files,
            "superseded": [_file_entry(s) for s in found.superseded], "notices": notices,
            "fingerprint": _fingerprint(mapping_path, list(found.current)),
            "seconds_extract": round(time.perf_counter() - started, 3)}


def harmonise_extracted(home: Home, extracted: Outcome, *, key_value: str | None = None,
                        sources_dir: Path = SOURCES_DIR) -> Outcome:
    """Harmonise a staged source into Parquet under staging/: core tables, every record, rejections."""
    if extracted["status"] != "extracted":
        return extracted
    started = time.perf_counter()
    source_id, run_id = extracted["source_id"], extracted["run_id"]
    mapping = load_mapping(_mapping_path(source_id, sources_dir))
    key = load_key(home.key_file, key_value)
    try:
        record_sets = load_record_sets(mapping, [(Path(f["staged"]), f["name"]) for f in extracted["files"]])
        result = harmonise_source(mapping, record_sets, key, run_id)
    except HarmoniseError as exc:
        return _failed(source_id, run_id, str(exc), files=extracted["files"],
                       superseded=extracted["superseded"], notices=extracted["notices"])
    out = home.staging / source_id / "harmonised" / run_id
    out.mkdir(parents=True, exist_ok=True)
    for table, frame in result.tables.items():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"{table}.parquet")
    pq.write_table(pa.Table.from_pandas(result.records, preserve_index=False, schema=_RECORD_SCHEMA),
                   out / "records.parquet")
    pq.write_table(pa.Table.from_pandas(result.rejections, preserve_index=False, schema=_REJECTION_SCHEMA),
                   out / "rejections.parquet")
    rejected = result.rejections["source_record_key"].nunique()
    log.info("%s: harmonised %s; %d records rejected", source_id,
             ", ".join(f"{t} {len(f)}" for t, f in result.tables.items()), rejected)
    return {**extracted, "status": "harmonised", "harmonised_dir": str(out),
            "file_counts": result.file_counts,
            "rows": {t: len(f) for t, f in result.tables.items()},
            "rejected": rejected,
            "seconds_harmonise": round(time.perf_counter() - started, 3)}


_RECORD_SCHEMA = pa.schema([
    ("source_id", pa.string()), ("source_file", pa.string()), ("source_file_sha256", pa.string()),
    ("source_record_key", pa.string()), ("record_set", pa.string()), ("line", pa.int64()),
    ("centre_id", pa.string()), ("patient_pseudonym", pa.string()), ("target_tables", pa.list_(pa.string())),
])
_REJECTION_SCHEMA = pa.schema([(c, pa.string()) for c in
                               ("source_id", "source_record_key", "rule_id", "field", "value", "message")])


def quality_plan_for(home: Home, run_id: str, *, sources_dir: Path = SOURCES_DIR) -> QualityPlan:
    """The rule catalogue with every source's overrides; GX Data Docs go into the run's report folder."""
    mappings = [load_mapping(path) for path in sorted(sources_dir.glob("*.yaml"))]
    return quality_plan(mappings, data_docs_dir=home.reports / run_id / "data_docs")


def publish_run(home: Home, planned: dict[str, Any], outcomes: list[Outcome], *, trigger: str,
                sources_dir: Path = SOURCES_DIR) -> dict[str, Any]:
    """Validate and publish the changed sources atomically and return the run summary."""
    publish(home.warehouse, planned["run_id"], outcomes, trigger=trigger,
            started_at=datetime.fromisoformat(planned["started_at"]), unchanged=planned["unchanged"],
            quality=quality_plan_for(home, planned["run_id"], sources_dir=sources_dir))
    run_id = planned["run_id"]
    summary = summarise(home, run_id)
    if summary["validated"]:  # else the Parquet marts and the report of the last validated run stand
        export_parquet(home.warehouse, home.marts)
        folder = home.reports / run_id
        folder.mkdir(parents=True, exist_ok=True)
        attachments = [("Data dictionary", write_dictionary_page(home.warehouse, folder / "dictionary.html")),
                       ("Survival (Kaplan-Meier)", plot_survival(home.warehouse, folder / "survival.png"))]
        summary["report"] = str(build_report(home.warehouse, home.reports, run_id, attachments=attachments))
    return summary


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise LookupError(f"the warehouse has no answer to: {sql}")
    return row


def summarise(home: Home, run_id: str | None = None) -> dict[str, Any]:
    """Rows per core table, quarantined rows and the run's status, read from the warehouse."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        if run_id is None:
            run_id = _one(con, "SELECT run_id FROM meta.run ORDER BY started_at DESC LIMIT 1")[0]
        run = _one(con, "SELECT status, sources_changed, sources_unchanged, sources_failed, message, validated "
                   "FROM meta.run WHERE run_id = ?", [run_id])
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'core' ORDER BY table_name").fetchall()]
        rows = {t: _one(con, f"SELECT count(*) FROM core.{t}")[0] for t in tables}
        quarantined = dict(con.execute(
            "SELECT source_id, count(*) FROM dq.quarantine GROUP BY 1 ORDER BY 1").fetchall())
        issues = dict(con.execute("SELECT severity, count(*) FROM dq.issue WHERE run_id = (SELECT max(run_id) "
                                  "FROM dq.issue) GROUP BY 1 ORDER BY 1").fetchall())
    finally:
        con.close()
    return {"run_id": run_id, "status": run[0], "sources_changed": run[1], "sources_unchanged": run[2],
            "sources_failed": run[3], "message": run[4], "validated": bool(run[5]), "rows": rows,
            "quarantined": quarantined, "issues": issues, "warehouse": str(home.warehouse),
            "report": str(latest) if (latest := home.reports / "latest" / "index.html").exists() else None}


def run(home: Home, *, key_value: str | None = None, sources_dir: Path = SOURCES_DIR, force: bool = False,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole nightly import in this process: what `rtw run` does."""
    say = progress or log.info
    home.ensure()
    planned = plan(home, sources_dir=sources_dir, force=force)
    say(f"run {planned['run_id']}: changed {planned['changed'] or 'none'}, unchanged {planned['unchanged'] or 'none'}")
    outcomes = []
    for source_id in planned["changed"]:
        say(f"{source_id}: extracting")
        extracted = extract_source(home, planned["run_id"], source_id, sources_dir=sources_dir)
        say(f"{source_id}: harmonising")
        outcomes.append(harmonise_extracted(home, extracted, key_value=key_value, sources_dir=sources_dir))
    say("publishing the warehouse")
    return publish_run(home, planned, outcomes, trigger="cli", sources_dir=sources_dir)
