"""The key guard: a run with another pseudonymisation key, or without its key file, refuses before
harmonising anything; the key never leaves secrets/; `rtw rekey` rotates it in one publish. (The
DAG's refusal of an Airflow Variable holding another key is tried in test_dag.py's troubled night.)"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from own_key_home import home_with_own_key
from shared_build import copy_of
from typer.testing import CliRunner

from etl import config, pipeline, runlock
from etl.cli import app
from etl.config import SOURCES_DIR, WAREHOUSE_SQL_DIR, Home
from etl.steps import RunSummary
from etl.transform.keyguard import (
    APPROVAL_FILE,
    KeyMismatch,
    RekeyError,
    guard_key,
    record_fingerprint,
    recorded_fingerprint,
    rotate_key,
)
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, load_key, source_pseudonym

OTHER_KEY = "a-different-key-someone-set-in-the-environment"


@dataclass(frozen=True)
class KeyedHome:
    home: Home
    key: str  # what the home's key file holds
    first: RunSummary


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> KeyedHome:
    """A fresh home whose first run created its key file (no key given, none in the environment): a copy of the
    session's (own_key_home), as the tests below change it."""
    built, first = home_with_own_key(tmp_path_factory)
    home = copy_of(built, tmp_path_factory.mktemp("keyguard"))
    return KeyedHome(home, home.key_file.read_text().strip(), first)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _harmonised(home: Home) -> list[Path]:
    return sorted(home.staging.glob("*/harmonised/*"))


def _pseudonyms(home: Home) -> set[str]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return {p for (p,) in con.execute("SELECT source_patient_pseudonym FROM core.patient_source").fetchall()}
    finally:
        con.close()


def test_a_fresh_home_creates_its_key_file_and_the_warehouse_records_its_fingerprint(keyed):
    key_file = keyed.home.key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(keyed.key) == 64
    fingerprint = load_key(key_file).fingerprint()
    assert recorded_fingerprint(keyed.home.warehouse) == fingerprint
    # An HMAC of a label under the key: neither the key nor a plain hash of it.
    assert keyed.key not in fingerprint and fingerprint != hashlib.sha256(keyed.key.encode()).hexdigest()
    con = duckdb.connect(str(keyed.home.warehouse), read_only=True)
    try:
        rows = con.execute("SELECT fingerprint, first_run_id, retired_run_id FROM meta.key_fingerprint").fetchall()
    finally:
        con.close()
    assert rows == [(fingerprint, keyed.first.run_id, None)]


@pytest.mark.parametrize("how", ["env", "explicit"])
def test_another_key_is_refused_before_anything_is_harmonised(keyed, monkeypatch, how):
    before, harmonised = _digest(keyed.home.warehouse), _harmonised(keyed.home)
    if how == "env":
        monkeypatch.setenv(KEY_ENV, OTHER_KEY)
    with pytest.raises(KeyMismatch) as refused:
        pipeline.run(keyed.home, key_value=OTHER_KEY if how == "explicit" else None, force=True)
    message = str(refused.value)
    recorded = PseudonymKey(keyed.key.encode()).fingerprint()
    assert message.startswith("the pseudonymisation key differs from the one this warehouse was built with "
                              f"(fingerprint {recorded[:8]}")
    assert "`rtw rekey`" in message and OTHER_KEY not in message and keyed.key not in message
    assert _digest(keyed.home.warehouse) == before and _harmonised(keyed.home) == harmonised


def test_a_deleted_key_file_is_refused_not_recreated(keyed, tmp_path):
    kept = tmp_path / "kept.key"
    shutil.move(keyed.home.key_file, kept)
    before = _digest(keyed.home.warehouse)
    try:
        with pytest.raises(KeyMismatch, match=r"key file .* is missing, but the warehouse was built with a key"):
            pipeline.run(keyed.home)
        assert not keyed.home.key_file.exists()
        assert _digest(keyed.home.warehouse) == before
    finally:
        shutil.move(kept, keyed.home.key_file)


def test_rtw_run_exits_1_with_the_reason_and_never_the_key(keyed):
    result = CliRunner().invoke(app, ["run", "--home", str(keyed.home.root)], env={KEY_ENV: OTHER_KEY})
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "the pseudonymisation key differs from the one this warehouse was built with" in said
    assert "rotate it with `rtw rekey`" in said
    assert OTHER_KEY not in result.output and keyed.key not in result.output


def test_the_key_is_in_no_output_log_or_file_outside_secrets(keyed, caplog):
    caplog.set_level(logging.DEBUG)
    said: list[str] = []
    pipeline.run(keyed.home, force=True, progress=said.append)  # a full run, under the right key
    assert keyed.key not in caplog.text and keyed.key not in "\n".join(said)
    secret = keyed.key.encode()
    for path in keyed.home.root.rglob("*"):
        if path.is_file() and not path.is_symlink() and keyed.home.key_file.parent not in path.parents:
            assert secret not in path.read_bytes(), path
    approval = json.loads((keyed.home.key_file.parent / APPROVAL_FILE).read_text())
    assert keyed.key not in json.dumps(approval)


def test_publish_records_only_the_key_plan_approved(tmp_path):
    home = Home(tmp_path)
    con = duckdb.connect()
    con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
    guard_key(home, "run-1", "first-key")
    record_fingerprint(con, home.warehouse, "run-1")
    record_fingerprint(con, home.warehouse, "run-0")  # another run's approval: nothing recorded
    first = PseudonymKey(b"first-key").fingerprint()
    assert con.execute("SELECT fingerprint, first_run_id FROM meta.key_fingerprint").fetchall() == [(first, "run-1")]
    guard_key(home, "run-2", "second-key")  # no warehouse file here, so plan's own check passes
    with pytest.raises(KeyMismatch, match="nothing was published"):
        record_fingerprint(con, home.warehouse, "run-2")
    guard_key(home, "run-3", "second-key", rotate=True)
    record_fingerprint(con, home.warehouse, "run-3")
    assert con.execute("SELECT fingerprint, first_run_id, retired_run_id FROM meta.key_fingerprint "
                       "ORDER BY first_run_id").fetchall() == [
        (first, "run-1", "run-3"), (PseudonymKey(b"second-key").fingerprint(), "run-3", None)]


def test_rekey_refuses_a_short_key_the_same_key_a_busy_home_and_another_env_key(keyed, tmp_path, monkeypatch):
    short, same = tmp_path / "short.key", tmp_path / "same.key"
    short.write_text("too-short\n")
    same.write_text(keyed.key)
    with pytest.raises(RekeyError, match="at least 32"):
        rotate_key(keyed.home, short)
    with pytest.raises(RekeyError, match="already uses that key"):
        rotate_key(keyed.home, same)
    long_enough = tmp_path / "new.key"
    long_enough.write_text("f0" * 32)
    with runlock.run_lock(keyed.home, "a-nightly-run"), pytest.raises(RekeyError, match="another run"):
        rotate_key(keyed.home, long_enough)
    monkeypatch.setenv(KEY_ENV, OTHER_KEY)  # runs would take it over the key file: so does rekey, checked
    with pytest.raises(RekeyError, match=r"RTW_PSEUDONYM_KEY, fingerprint .* is not the one this warehouse"):
        rotate_key(keyed.home, long_enough)


def test_rekey_refuses_a_mappings_folder_without_a_source_the_warehouse_holds(keyed, tmp_path):
    """A held source rekey would not reload (RTW_SOURCES_DIR without its mapping) would stay under the old key,
    its patients split from their other records: refused, naming the source and the folder, nothing changed."""
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for mapping in SOURCES_DIR.glob("*.yaml"):
        if mapping.stem != "registry_it":
            shutil.copy(mapping, mappings / mapping.name)
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text("a7" * 32)
    before = _digest(keyed.home.warehouse)
    with pytest.raises(RekeyError) as refused:
        rotate_key(keyed.home, new_key_file, sources_dir=mappings)
    assert f"the warehouse holds registry_it, with no mapping in {mappings}" in str(refused.value)
    assert _digest(keyed.home.warehouse) == before and keyed.home.key_file.read_text().strip() == keyed.key
    assert not list(keyed.home.key_file.parent.glob("*.old"))


def _sacha_removes_a_follow_up(home: Home) -> str:
    """SACHA's increment after its snapshot, deleting a follow-up visit of a patient (meta.record_removal audits it);
    the patient's number."""
    snapshot = next((home.landing / "sacha_fr").glob("*.xml"))
    text = snapshot.read_text(encoding="utf-8")
    subject = re.search(r'<SubjectData SubjectKey="([^"]+)"(?:(?!</SubjectData>).)*?StudyEventOID="SE\.FOLLOWUP" '
                        r'StudyEventRepeatKey="2"', text, re.S)
    prior = re.search(r'FileOID="([^"]+)"', text)
    assert subject and prior
    increment = snapshot.with_name("SACHA_ODM_29991230.xml")
    increment.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileOID="INC1" '
        f'FileType="Transactional" PriorFileOID="{prior[1]}" CreationDateTime="2999-12-30T01:00:00" '
        'ODMVersion="1.3.2">\n<ClinicalData StudyOID="SACHA" MetaDataVersionOID="v1">\n'
        f'<SubjectData SubjectKey="{subject[1]}" TransactionType="Update"><StudyEventData StudyEventOID="SE.FOLLOWUP" '
        'StudyEventRepeatKey="2" TransactionType="Remove"/></SubjectData>\n</ClinicalData>\n</ODM>\n')
    an_hour_ago = time.time() - 3600  # past the landing's quiet period
    os.utime(increment, (an_hour_ago, an_hour_ago))
    return subject[1]


def _removals(home: Home) -> list[tuple[str, str, str]]:
    """meta.record_removal: (pseudonym, the rest of the record key, run)."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return [(k.split("|")[0], k.partition("|")[2], r) for k, r in con.execute(
            "SELECT source_record_key, run_id FROM meta.record_removal ORDER BY ALL").fetchall()]
    finally:
        con.close()


def test_rekey_reloads_everything_under_the_new_key_in_one_publish(keyed, tmp_path, monkeypatch):
    """All or nothing: a source that cannot be reloaded, or whose publish fails (its harmonised file gone), fails the
    rekey before the key is recorded or installed. A rekey that publishes records each removal once, under the new
    pseudonym, with the run that applied it; a mapped source that never delivered (nothing of it under the old key)
    is left out, said, not a failure."""
    home = Home(tmp_path / "home")
    shutil.copytree(keyed.home.root, home.root, symlinks=True)
    patient = _sacha_removes_a_follow_up(home)
    assert pipeline.run(home).status == "completed"
    ((pseudonym, removed, applied_in),) = _removals(home)
    assert pseudonym == source_pseudonym(PseudonymKey(keyed.key.encode()), "sacha_fr", patient)
    old_key, old_pseudonyms = keyed.key, _pseudonyms(home)
    new_key_file = tmp_path / "new.key"
    new_key = "e3" * 32
    new_key_file.write_text(new_key + "\n")

    harmonised, before = _harmonised(home), _digest(home.warehouse)

    def lose_a_harmonised_file(said: str) -> None:
        if said == "publishing the re-keyed warehouse":
            (lost,) = set(home.staging.glob("registry_it/harmonised/*/records.parquet")) - {
                h / "records.parquet" for h in harmonised}
            lost.unlink()

    with pytest.raises(RekeyError, match=r"rekey stopped before publishing.*registry_it: harmonised file .* missing"):
        rotate_key(home, new_key_file, progress=lose_a_harmonised_file)
    assert _digest(home.warehouse) == before and home.key_file.read_text().strip() == old_key
    assert not list(home.key_file.parent.glob("*.old")) and _harmonised(home) == harmonised
    shutil.move(home.landing / "iltb", tmp_path / "iltb")
    with pytest.raises(RekeyError, match=r"rekey stopped before publishing.*iltb"):
        rotate_key(home, new_key_file)
    assert _digest(home.warehouse) == before and home.key_file.read_text().strip() == old_key
    shutil.move(tmp_path / "iltb", home.landing / "iltb")

    mappings = tmp_path / "mappings"
    shutil.copytree(SOURCES_DIR, mappings)
    (mappings / "registry_fr.yaml").write_text((mappings / "registry_it.yaml").read_text().replace(
        "source_id: registry_it", "source_id: registry_fr"))
    monkeypatch.setattr(config, "SOURCES_DIR", mappings)  # as RTW_SOURCES_DIR names it when rtw starts
    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file", str(new_key_file)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "registry_fr: nothing of it is stored, left out: no export files" in said
    assert _removals(home) == [(source_pseudonym(PseudonymKey(new_key.encode()), "sacha_fr", patient), removed,
                                applied_in)]
    new_fingerprint = PseudonymKey(new_key.encode()).fingerprint()
    assert "re-keyed 5 sources" in said and f"-> {new_fingerprint[:8]}" in said
    assert new_key not in result.output and old_key not in result.output
    assert home.key_file.read_text().strip() == new_key and stat.S_IMODE(home.key_file.stat().st_mode) == 0o600
    (old_copy,) = home.key_file.parent.glob("pseudonym.key.*.old")
    assert old_copy.read_text().strip() == old_key and stat.S_IMODE(old_copy.stat().st_mode) == 0o600
    assert recorded_fingerprint(home.warehouse) == new_fingerprint

    new_pseudonyms = _pseudonyms(home)
    assert len(new_pseudonyms) == len(old_pseudonyms) and not new_pseudonyms & old_pseudonyms
    assert pipeline.run(home).status == "completed"  # the next run reads the new key file
    with pytest.raises(KeyMismatch, match="differs"):
        pipeline.run(home, key_value=old_key)
    for path in home.root.rglob("*"):  # neither key outside secrets/
        if path.is_file() and not path.is_symlink() and home.key_file.parent not in path.parents:
            data = path.read_bytes()
            assert new_key.encode() not in data and old_key.encode() not in data, path
    assert os.stat(home.key_file.parent).st_mode & 0o077 == 0
