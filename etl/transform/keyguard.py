"""The key guard: a warehouse is only ever written with the pseudonymisation key it was built with.

Pseudonyms are HMACs under the key, so a run with another key does not fail: a changed
`RTW_PSEUDONYM_KEY`, or a deleted key file silently created anew, would load every changed source
under new pseudonyms, split each of its patients from their other sources' records and report
"completed". So the warehouse records the fingerprint of its key (`meta.key_fingerprint`), and the
plan step refuses a run whose key has another one, or whose key file is missing while a warehouse
exists, before anything is harmonised. Rotating the key is an explicit act: `rtw rekey` reloads
every source under the new key in one publish, then replaces the key file. It takes the current key
from wherever runs take it (env `RTW_PSEUDONYM_KEY`, else the key file) and keeps it beside the key
file, so what was decided under it (erasures, reviewers' link decisions) still finds its patients.

How the fingerprint reaches publish: plan approves the run's key by writing its fingerprint, with
the run id, to `secrets/approved_key.json`, and publish records what was approved for its own run.
That works for the DAG too, where publish runs in another process that never sees the key.
The key itself is never logged, printed or written anywhere but the key file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl import fsio, runlock, schema
from etl.config import Home
from etl.link.decision import read_decisions
from etl.steps import SourceOutcome
from etl.transform.pseudonym import (
    KEY_ENV,
    NEW_KEY_HINT,
    SHORT_KEY_CHARS,
    PseudonymKey,
    key_file_readings,
    key_is_configured,
    load_key,
    source_pseudonym,
)

log = logging.getLogger(__name__)

APPROVAL_FILE = "approved_key.json"
_LOCK_HELD = "Could not set lock on file"  # DuckDB's IOException when another process holds the file
_SHOWN = 8  # fingerprint characters shown in messages: enough to tell keys apart, says nothing of the key


class KeyMismatch(RuntimeError):
    """The run's key is not the warehouse's: nothing may be harmonised with it."""


class WarehouseBusy(RuntimeError):
    """Another process holds the live warehouse to write it (a publish recording its notes): DuckDB lets no
    other process open it then, not even to read, so its key's fingerprint cannot be read now."""


class RekeyError(RuntimeError):
    """A rotation that could not be done; the warehouse and the key file are unchanged."""


def _short(fingerprint: str) -> str:
    return fingerprint[:_SHOWN]


def recorded_fingerprint(warehouse: Path, con: duckdb.DuckDBPyConnection | None = None) -> str | None:
    """The fingerprint of the key the live warehouse was built with (None: no warehouse, or one built
    before fingerprints were recorded); read through `con`, a connection to it, if given."""
    with schema.reading(warehouse, con) as live:
        if live is None:
            return None
        try:
            row = live.execute("SELECT fingerprint FROM meta.key_fingerprint WHERE retired_run_id IS NULL "
                               "ORDER BY recorded_at DESC LIMIT 1").fetchone()
        except duckdb.CatalogException:  # a warehouse older than the guard: the next run records its key
            return None
    return row[0] if row else None


def guard_key(home: Home, run_id: str, key_value: str | None = None, *, rotate: bool = False,
              live: duckdb.DuckDBPyConnection | None = None) -> str:
    """Refuse a key other than the warehouse's; approve this run's key for publish and return its fingerprint.

    A fresh home (no warehouse) gets its key file created as before. `rotate` (rtw rekey only) approves
    a new key for a run that reloads every source with it. `live`: a connection to the live warehouse.
    """
    if not rotate and home.warehouse.exists() and not key_is_configured(home.key_file, key_value):
        recorded = recorded_fingerprint(home.warehouse, live)
        built = f" (fingerprint {_short(recorded)})" if recorded else ""
        raise KeyMismatch(f"the pseudonymisation key file {home.key_file} is missing, but the warehouse was built "
                          f"with a key{built}; restore the key file (or give the key), or rotate it with `rtw rekey`")
    if not rotate:
        refuse_other_key(home, key_value, live)
    fingerprint = load_key(home.key_file, key_value).fingerprint()
    fsio.write_text(home.key_file.parent / APPROVAL_FILE,
                    json.dumps({"run_id": run_id, "fingerprint": fingerprint, "rotate": rotate}))
    return fingerprint


def refuse_other_key(home: Home, key_value: str | None = None,
                     live: duckdb.DuckDBPyConnection | None = None) -> None:
    """Refuse (KeyMismatch) a key other than the one the live warehouse records, approving nothing: the run's
    guard (`guard_key`), and a step that keeps what it writes by the key outside a run (the pull ledger,
    etl/pull/ledger.py), whose lines under another key no later run or pull would know. No key configured (a
    step that then keeps nothing keyed), no warehouse, or one that records no fingerprint: nothing to compare.
    Never creates the key file. `live`: a connection to the live warehouse; without it one is opened, which
    DuckDB refuses while another process writes the file: WarehouseBusy, for the step to ask again."""
    if not key_is_configured(home.key_file, key_value):
        return
    try:
        if (recorded := recorded_fingerprint(home.warehouse, live)) is None:
            return
        if (fingerprint := load_key(home.key_file, key_value).fingerprint()) != recorded:
            raise KeyMismatch(f"the pseudonymisation key differs from the one this warehouse was built with "
                              f"(fingerprint {_short(recorded)}, this key's {_short(fingerprint)}); "
                              + _after_rotation(home, fingerprint, live))
    except duckdb.IOException as exc:
        if _LOCK_HELD not in str(exc):
            raise
        raise WarehouseBusy("the warehouse is being written by a run") from None


def record_fingerprint(con: duckdb.DuckDBPyConnection, warehouse: Path, run_id: str) -> bool:
    """In publish's transaction: record the key plan approved for this run; whether it rotated the key (rtw rekey's
    publish, which then must load every source under the new key).

    A key other than the recorded one is accepted only when plan approved a rotation; anything else
    aborts the publish (the live warehouse stays as it was). No approval for this run (publish called
    without plan, as some tests do): nothing is recorded.
    """
    approval_file = Home(warehouse.parent).key_file.parent / APPROVAL_FILE
    try:
        approval = json.loads(approval_file.read_text())
    except FileNotFoundError:
        return False
    if approval.get("run_id") != run_id:
        return False
    fingerprint = approval["fingerprint"]
    row = con.execute("SELECT fingerprint FROM meta.key_fingerprint WHERE retired_run_id IS NULL").fetchone()
    if row and row[0] == fingerprint:
        return False
    if row and not approval.get("rotate"):
        raise KeyMismatch(f"run {run_id} was planned with a key (fingerprint {_short(fingerprint)}) other than "
                          f"the warehouse's ({_short(row[0])}); nothing was published")
    con.execute("UPDATE meta.key_fingerprint SET retired_run_id = ? WHERE retired_run_id IS NULL", [run_id])
    con.execute("INSERT INTO meta.key_fingerprint VALUES (?, ?, ?, NULL)", [fingerprint, run_id, datetime.now(UTC)])
    if "decisions" in approval:  # rtw rekey found the reviewers' patients under both keys
        from etl.link.decision import convert_decisions

        convert_decisions(con, approval["decisions"])
    return bool(approval.get("rotate"))  # else the first key a warehouse records


@dataclass(frozen=True)
class Rotation:
    """What `rtw rekey` did."""

    run_id: str
    sources: list[str]
    old_fingerprint: str | None
    new_fingerprint: str
    old_key_file: Path | None  # where the previous key was kept (None: there was none to keep)
    old_key_from_env: bool = False  # the previous key came from env: whoever sets it must now give the new one
    decisions_converted: int = 0  # reviewers' link / unlink decisions, now naming the new pseudonyms
    decisions_dropped: tuple[str, ...] = ()  # those whose patients are in no export: what and why
    finished: bool = False  # a rekey killed after its publish, finished: the new key installed, nothing reloaded


def read_new_key(new_key_file: Path) -> str:
    """The new key from its file, checked: present, long enough."""
    try:
        value = new_key_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RekeyError(f"cannot read the new key file {new_key_file}: {exc.__class__.__name__}") from None
    if len(value) < SHORT_KEY_CHARS:
        raise RekeyError(f"the new key in {new_key_file} has {len(value)} characters; give at least "
                         f"{SHORT_KEY_CHARS}, {NEW_KEY_HINT}")
    return value


def rotate_key(home: Home, new_key_file: Path, *, sources_dir: Path | None = None,
               progress: Callable[[str], None] | None = None, without_old_key: bool = False) -> Rotation:
    """Re-key the whole warehouse in one publish: reload every source from its export files under the new
    key, record the new fingerprint, then replace the key file.

    The current key is taken from where runs take it (env `RTW_PSEUDONYM_KEY`, else the key file), checked
    against the warehouse's fingerprint and kept as `pseudonym.key.<UTC time>.old` (0600) before the
    reload: the erasures and reviewers' decisions made under it find their patients with it. A lost key
    (neither env nor key file) can still be replaced, as everything is re-derived from the exports, when
    the caller says so (`without_old_key`: a forgotten env would otherwise drop every decision): the
    decisions are then dropped, and a source with erasures is refused until their key's file is back.
    All or nothing: if any source cannot be reloaded, nothing is published and the key file stays.
    """
    from etl import pipeline  # the pipeline imports this module for its guard
    from etl.config import SOURCES_DIR

    if not home.warehouse.exists():
        raise RekeyError(f"no warehouse at {home.warehouse}: nothing to re-key; to start with a given key, "
                         f"copy it to {home.key_file} (mode 0600) before the first run")
    new_value = read_new_key(new_key_file)
    old_fingerprint = recorded_fingerprint(home.warehouse)
    new_fingerprint = PseudonymKey(new_value.encode("utf-8")).fingerprint()
    if new_fingerprint == old_fingerprint:
        if (finished := _finish_rotation(home, new_value, new_fingerprint)) is not None:
            return finished
        raise RekeyError(f"the warehouse already uses that key (fingerprint {_short(new_fingerprint)})")
    old_key = _current_key(home, old_fingerprint)
    if old_key is None and not without_old_key:
        raise RekeyError(f"no current key: {KEY_ENV} is not set and {home.key_file} is missing. Give the warehouse's "
                         f"key as runs get it (where the DAG reads the Airflow Variable: {KEY_ENV}=\"$(airflow "
                         "variables get rtw_pseudonym_key)\" rtw rekey ...); if it is lost, rekey --without-old-key: "
                         "the reviewers' decisions are then dropped, and a source with erasures is refused until "
                         "their key's file is back")
    say = progress or (lambda message: None)
    folder = sources_dir or SOURCES_DIR
    run_id = pipeline.new_run_id()
    # Under the home's run lock, like `rtw run`: a nightly run planned in between would otherwise
    # approve the old key for its own run, and this publish would record no new fingerprint.
    try:
        with fsio.private_umask(), runlock.run_lock(home.ensure(), run_id):
            held = _sources_held(home)
            _refuse_unmapped(held, folder)
            old_key_file = _keep_old_key(home, old_key)
            try:
                sources, converted, dropped = _reload_and_publish(home, run_id, new_value, old_key, folder, say,
                                                                  held)
            except BaseException:
                if old_key_file and recorded_fingerprint(home.warehouse) != new_fingerprint:
                    old_key_file.unlink(missing_ok=True)  # nothing was rotated: the old key is still the key
                raise
    except runlock.RunBusy as exc:
        raise RekeyError(f"{exc}; try again when it has finished") from None
    if recorded_fingerprint(home.warehouse) != new_fingerprint:
        raise RekeyError("the re-keyed warehouse did not record the new key; the key file is unchanged")
    # A crash here leaves the warehouse on the new key and the old key file in place: runs then
    # refuse ("the key differs"), nothing is mixed, until rekey with the same new key finishes it.
    _install_key(home, new_value, old_key)
    return Rotation(run_id=run_id, sources=sources, old_fingerprint=old_fingerprint,
                    new_fingerprint=new_fingerprint, old_key_file=old_key_file,
                    old_key_from_env=bool(os.environ.get(KEY_ENV)), decisions_converted=converted,
                    decisions_dropped=tuple(dropped))


def _sources_held(home: Home) -> set[str]:
    """The sources the live warehouse holds rows of, under the current key: loaded once (meta.source), or with
    stage rows."""
    with schema.reading(home.warehouse) as live:
        if live is None:
            return set()
        return {s for (s,) in live.execute("SELECT source_id FROM meta.source WHERE last_loaded_run_id IS NOT NULL "
                                           "UNION SELECT DISTINCT source_id FROM stage.record").fetchall()}


def _refuse_unmapped(held: set[str], sources_dir: Path) -> None:
    """A held source without a mapping in `sources_dir` would not be reloaded: its rows would stay under the old
    key, its patients split from their other sources' records and out of reach of `rtw forget`."""
    unmapped = sorted(s for s in held if not (sources_dir / f"{s}.yaml").is_file())
    if unmapped:
        raise RekeyError(f"the warehouse holds {', '.join(unmapped)}, with no mapping in {sources_dir} "
                         "(RTW_SOURCES_DIR, when set, replaces the shipped mappings folder): rekey reloads every "
                         "source, and these would stay under the old key. Nothing was changed; rekey with the "
                         "mappings folder that holds every source's mapping")


def _finish_rotation(home: Home, new_value: str, new_fingerprint: str) -> Rotation | None:
    """A rekey killed after its publish (the warehouse records the new key) and before it installed the key: the
    key file holds the key it retired, or is missing. Installed now, under the run lock; the key file's key is kept
    first when no old key file holds it. None: not such a rekey (the key file holds the new key, or another)."""
    with schema.reading(home.warehouse) as live:
        assert live is not None  # the caller found the warehouse
        retired = dict(live.execute("SELECT fingerprint, retired_run_id FROM meta.key_fingerprint WHERE "
                                    "retired_run_id IS NOT NULL ORDER BY recorded_at").fetchall())
    from etl import pipeline

    held = {k.fingerprint() for k in key_file_readings(home.key_file)} if home.key_file.exists() else set()
    if not retired or new_fingerprint in held or (held and not held & set(retired)):
        return None
    run_id = pipeline.new_run_id()
    try:
        with fsio.private_umask(), runlock.run_lock(home.ensure(), run_id):
            kept = sorted(home.key_file.parent.glob(f"{home.key_file.name}.*.old"))
            if held and not any(held & {k.fingerprint() for k in key_file_readings(f)} for f in kept):
                kept.append(fsio.copy_file(home.key_file, _old_key_path(home)))
            fsio.write_text(home.key_file, new_value + "\n")
    except runlock.RunBusy as exc:
        raise RekeyError(f"{exc}; try again when it has finished") from None
    old_fingerprint = next((f for f in held if f in retired), None)
    by = retired.get(old_fingerprint or "") or next(reversed(retired.values()), run_id)
    return Rotation(run_id=by, sources=[], old_fingerprint=old_fingerprint, new_fingerprint=new_fingerprint,
                    old_key_file=kept[-1] if kept else None, old_key_from_env=bool(os.environ.get(KEY_ENV)),
                    finished=True)


def _current_key(home: Home, recorded: str | None) -> PseudonymKey | None:
    """The key runs use now (`load_key`: env, else the key file; never a new one), refused unless it is the
    warehouse's: the erasures and decisions made under the warehouse's key would find nobody with another.
    None: no key at all (a lost key, which rekey replaces)."""
    if not key_is_configured(home.key_file):
        return None
    key = load_key(home.key_file)
    if recorded is not None and key.fingerprint() != recorded:
        where = KEY_ENV if os.environ.get(KEY_ENV) else str(home.key_file)
        raise RekeyError(f"the current key ({where}, fingerprint {_short(key.fingerprint())}) is not the one this "
                         f"warehouse was built with (fingerprint {_short(recorded)}); "
                         + (_without_blanks(os.environ.get(KEY_ENV), recorded) or
                            "give that key, so the erasures and reviewers' decisions made under it are kept. If it "
                            f"is lost, unset {KEY_ENV} and move {home.key_file} aside, then rekey with "
                            "--without-old-key: the decisions are dropped, and a source with erasures is refused "
                            "until their key's file is back"))
    return key


def _without_blanks(env_value: str | None, recorded: str) -> str | None:
    """What to do when the key in env is the warehouse's but for the blanks or line break around it; else None.
    Given with them while the warehouse was built from the key file (read stripped); or given without the line
    break that a Variable saved with one gave the runs (`$(airflow variables get ...)` drops it)."""
    if not env_value:
        return None
    if env_value != env_value.strip() and PseudonymKey(env_value.strip().encode("utf-8")).fingerprint() == recorded:
        return "it has blanks or a line break around it: without them it is that key; give it so"
    if PseudonymKey(f"{env_value}\n".encode()).fingerprint() == recorded:
        return (f"with a line break after it, it is that key (the runs had it so, from a Variable saved with one, "
                f"which $(...) drops); give it so: {KEY_ENV}=\"$(airflow variables get rtw_pseudonym_key)\"$'\\n' "
                "rtw rekey ...")
    return None


def _keep_old_key(home: Home, old_key: PseudonymKey | None) -> Path | None:
    """Keep the current key as `pseudonym.key.<UTC time>.old` (0600), where the erasure list looks for the
    keys of the past: a copy of the key file when that is where it came from, else the key's exact bytes, blanks
    or line break around it included (a key from env is used as it is given; `key_file_readings`)."""
    if old_key is None:
        return None
    old_copy = _old_key_path(home)
    if _key_file_holds(home, old_key):
        return fsio.copy_file(home.key_file, old_copy)
    return fsio.write_bytes(old_copy, old_key.secret)


def _install_key(home: Home, new_value: str, old_key: PseudonymKey | None) -> None:
    """Replace the key file atomically (at every moment it holds one whole key, never none). A key file
    that env overrode and that holds another key than the one kept is kept too: rekey loses no key."""
    if home.key_file.exists() and (old_key is None or not _key_file_holds(home, old_key)):
        fsio.copy_file(home.key_file, _old_key_path(home, "unused"))
    fsio.write_text(home.key_file, new_value + "\n")


def _old_key_path(home: Home, kind: str = "") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return home.key_file.with_name(".".join(filter(None, (home.key_file.name, stamp, kind, "old"))))


def _key_file_holds(home: Home, key: PseudonymKey) -> bool:
    return home.key_file.exists() and any(held.secret == key.secret for held in key_file_readings(home.key_file))


def _after_rotation(home: Home, fingerprint: str, live: duckdb.DuckDBPyConnection | None) -> str:
    """What to do about a key other than the warehouse's: give the new key when `rtw rekey` retired this one."""
    with schema.reading(home.warehouse, live) as con:
        try:
            row = None if con is None else con.execute(
                "SELECT retired_run_id, (SELECT fingerprint FROM meta.key_fingerprint WHERE retired_run_id IS NULL) "
                "FROM meta.key_fingerprint WHERE fingerprint = ? AND retired_run_id IS NOT NULL", [fingerprint]
            ).fetchone()
        except duckdb.CatalogException:
            row = None
    if row is None:
        return "restore the key, or rotate it with `rtw rekey`"
    if not (home.key_file.exists() and row[1] in {k.fingerprint() for k in key_file_readings(home.key_file)}):
        # killed after its publish, before it wrote the key file
        return (f"this key was retired by `rtw rekey` in run {row[0]}, which stopped before it wrote the new key to "
                f"{home.key_file} (" + ("it is missing" if not home.key_file.exists() else "it holds the retired key")
                + "): run `rtw rekey --new-key-file <the new key's file>` again to finish the rotation")
    return (f"this key was retired by `rtw rekey` in run {row[0]}; the new key is in {home.key_file}: put it in "
            f"{KEY_ENV} (and in the Airflow Variable rtw_pseudonym_key, for the DAG), or unset them so the key "
            "file is read")


def _reload_and_publish(home: Home, run_id: str, new_value: str, old_key: PseudonymKey | None, sources_dir: Path,
                        say: Callable[[str], None], held: set[str]) -> tuple[list[str], int, list[str]]:
    """Every source extracted and harmonised under the new key, then one publish; or nothing published.
    A source of which the warehouse holds nothing (`held`: `_sources_held`) and that cannot be read (a mapped
    source that never delivered) is left out, said: nothing of it is under the old key.
    Returns the sources, and how many reviewers' decisions were converted and which were dropped."""
    from etl import pipeline

    planned = pipeline.plan(home, sources_dir=sources_dir, run_id=run_id, force=True, key_value=new_value,
                            rotate_key=True)
    try:
        outcomes = []
        for source_id in planned.changed:
            say(f"{source_id}: reloading under the new key")
            extracted = pipeline.extract_source(home, run_id, source_id, sources_dir=sources_dir)
            outcome = pipeline.harmonise_extracted(home, extracted, key_value=new_value, sources_dir=sources_dir)
            if outcome.failed and source_id not in held:
                say(f"{source_id}: nothing of it is stored, left out: {outcome.message}")
                continue
            outcomes.append(outcome)
        failed = [o for o in outcomes if o.failed]
        if failed or planned.unchanged:
            # A source kept under the old key would be cut off from the others: publish nothing.
            reasons = "; ".join(f"{o.source_id}: {o.message}" for o in failed) or f"not reloaded: {planned.unchanged}"
            raise RekeyError(f"rekey stopped before publishing, the warehouse and the key file are unchanged: "
                             f"{reasons}")
        conversions, dropped = _rekeyed_decisions(home, outcomes, old_key, PseudonymKey(new_value.encode("utf-8")),
                                                  sources_dir)
        approval_file = home.key_file.parent / APPROVAL_FILE  # publish converts them in its transaction
        fsio.write_text(approval_file, json.dumps({**json.loads(approval_file.read_text()), "decisions": conversions}))
        say("publishing the re-keyed warehouse")
        reloaded = planned.model_copy(update={"changed": [o.source_id for o in outcomes]})
        pipeline.publish_run(home, reloaded, outcomes, trigger="cli", sources_dir=sources_dir)
    except BaseException:
        if recorded_fingerprint(home.warehouse) != PseudonymKey(new_value.encode("utf-8")).fingerprint():
            (home.key_file.parent / APPROVAL_FILE).unlink(missing_ok=True)
            for source_id in planned.changed:  # harmonised under a key never installed: of no use to anyone
                shutil.rmtree(home.staging / source_id / "harmonised" / run_id, ignore_errors=True)
        raise
    return list(reloaded.changed), len(read_decisions(home.warehouse)), dropped


def _rekeyed_decisions(home: Home, outcomes: list[SourceOutcome], old_key: PseudonymKey | None,
                       new_key: PseudonymKey, sources_dir: Path) -> tuple[list[list[str]], list[str]]:
    """The reviewers' decisions name patients by pseudonym under the old key: each patient is found by
    their clear number in the staged exports just reloaded. Returns (source, old, new pseudonym) of each
    patient found, and the decisions on a patient in no export (or without the old key), described."""
    from etl.transform.mapping import load_mapping
    from etl.transform.records import staged_patient_keys

    decisions = read_decisions(home.warehouse)
    if not decisions:
        return [], []
    named = {(p.source_id, p.pseudonym) for d in decisions for p in (d.left, d.right)}
    new_of: dict[tuple[str, str], str] = {}
    for outcome in outcomes:
        if old_key is None or not any(source_id == outcome.source_id for source_id, _ in named):
            continue
        mapping = load_mapping(sources_dir / f"{outcome.source_id}.yaml")
        for number in {n for f in outcome.files if f.staged for n in staged_patient_keys(Path(f.staged), mapping)}:
            old = (outcome.source_id, source_pseudonym(old_key, outcome.source_id, number))
            if old in named:
                new_of[old] = source_pseudonym(new_key, outcome.source_id, number)
    dropped = []
    for decision in decisions:
        lost = [str(p) for p in (decision.left, decision.right) if (p.source_id, p.pseudonym) not in new_of]
        if lost:
            why = f"the old key is missing (neither {KEY_ENV} nor {home.key_file} held it)" if old_key is None else \
                f"{' and '.join(lost)} in no export"
            dropped.append(f"{decision}: {why}")
    for message in dropped:
        log.warning("rekey: a reviewer's decision is dropped, it names nobody under the new key: %s", message)
    return [[s, old, new] for (s, old), new in sorted(new_of.items())], dropped
