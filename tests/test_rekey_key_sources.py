"""`rtw rekey` takes the current key from where runs take it: env RTW_PSEUDONYM_KEY (how a deployment
whose DAG reads the Airflow Variable runs `rtw` by hand), else the key file. It keeps that key as
`pseudonym.key.<time>.old`, so erasures and reviewers' decisions made under it survive the rotation,
and tells the user the env must now give the new key: the next run with the old one is refused."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.forget import forget
from etl.link.decision import PatientRef, record_decision
from etl.transform.keyguard import KeyMismatch, RekeyError, rotate_key
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, source_pseudonym

ENV_KEY = SMALL_RUN_KEY  # small_run's, given in env as the Airflow Variable's
NEW_KEY = "rekey-env-new-key-0123456789abcdef0123456789ab"


@pytest.fixture(scope="module")
def env_keyed(small_run: Home) -> Home:
    """A home built with a key given, none in a key file: as a deployment whose DAG takes it from the Variable
    builds it (the session's small_run, read only: each test copies it; runs read a key given or in env alike)."""
    assert not small_run.key_file.exists()
    return small_run


@pytest.fixture(autouse=True)
def _env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, ENV_KEY)


def _loaded(home: Home, source_id: str) -> set[str]:
    return {p for (p,) in query_rows(home, "SELECT DISTINCT source_patient_pseudonym FROM stage.patient_source "
                                           "WHERE source_id = ?", [source_id])}


def _registry_numbers(home: Home) -> list[str]:
    """The loaded patient numbers of the registry's export."""
    text = next((home.landing / "registry_it").glob("*.csv")).read_text(encoding="cp1252")
    numbers = sorted({line.split(";")[1] for line in text.splitlines()[1:] if line.count(";") > 2})
    loaded, key = _loaded(home, "registry_it"), PseudonymKey(ENV_KEY.encode())
    return [n for n in numbers if source_pseudonym(key, "registry_it", n) in loaded]


def _alone(home: Home, source_id: str, numbers: list[str]) -> str:
    """A patient number of `source_id` (among `numbers`) without EUPID, alone in their person."""
    key = PseudonymKey(ENV_KEY.encode())
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        alone = {p for (p,) in con.execute("""
            SELECT k.source_patient_pseudonym FROM stage.link_key k
            JOIN stage.patient_link l USING (source_id, source_patient_pseudonym)
            WHERE NOT k.has_eupid AND k.source_id = ? AND l.patient_id IN (
                SELECT patient_id FROM stage.patient_link GROUP BY 1 HAVING count(DISTINCT source_id) = 1)""",
            [source_id]).fetchall()}
    finally:
        con.close()
    return next(n for n in numbers if source_pseudonym(key, source_id, n) in alone)


def _iltb_numbers(home: Home) -> list[str]:
    with (home.root / "truth" / "links.csv").open() as truth:
        return sorted({r["source_patient_key"] for r in csv.DictReader(truth) if r["source_id"] == "iltb"})


def _new_key_file(tmp_path: Path) -> Path:
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(NEW_KEY + "\n")
    return new_key_file


def test_rekey_with_the_key_in_env_keeps_decisions_and_erasures_and_says_to_change_the_env(
        env_keyed: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = copy_of(env_keyed, tmp_path)
    old_key, new_key = PseudonymKey(ENV_KEY.encode()), PseudonymKey(NEW_KEY.encode())
    registry = _registry_numbers(home)
    linked = (_alone(home, "iltb", _iltb_numbers(home)), _alone(home, "registry_it", registry))
    erased = next(n for n in registry if n != linked[1])
    record_decision(home, PatientRef("iltb", source_pseudonym(old_key, "iltb", linked[0])),
                    PatientRef("registry_it", source_pseudonym(old_key, "registry_it", linked[1])), "link")
    forget(home, "registry_it", erased)
    assert pipeline.run(home).status == "completed"

    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file",
                                      str(_new_key_file(tmp_path))])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert ENV_KEY not in result.output and NEW_KEY not in result.output
    assert "1 reviewer decisions (rtw link / unlink) now name the new pseudonyms; 0 dropped" in said
    assert f"{KEY_ENV} still holds the old key, and the next run refuses it" in said
    assert "Airflow Variable rtw_pseudonym_key" in said
    (kept,) = home.key_file.parent.glob("pseudonym.key.*.old")
    assert kept.read_text().strip() == ENV_KEY and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert home.key_file.read_text().strip() == NEW_KEY

    new = [("iltb", source_pseudonym(new_key, "iltb", linked[0])),
           ("registry_it", source_pseudonym(new_key, "registry_it", linked[1]))]
    decisions = query_rows(home, "SELECT source_id_l, source_patient_pseudonym_l, source_id_r, "
                                 "source_patient_pseudonym_r FROM meta.link_decision")
    assert decisions == [(*new[0], *new[1])]
    assert source_pseudonym(new_key, "registry_it", erased) not in _loaded(home, "registry_it")

    with pytest.raises(KeyMismatch) as refused:  # the env still holds the old key: loudly refused
        pipeline.run(home)
    message = str(refused.value)
    assert f"this key's {old_key.fingerprint()[:8]}" in message and "retired by `rtw rekey`" in message
    assert ENV_KEY not in message and NEW_KEY not in message
    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    assert pipeline.run(home).status == "completed"
    assert source_pseudonym(new_key, "registry_it", erased) not in _loaded(home, "registry_it")


def test_rekey_refuses_an_env_key_that_is_not_the_warehouses(env_keyed: Home, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = copy_of(env_keyed, tmp_path)
    wrong = "a-key-someone-mistyped-into-the-environment-000"
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(RekeyError) as refused:
        rotate_key(home, _new_key_file(tmp_path))
    message = str(refused.value)
    assert f"{KEY_ENV}, fingerprint {PseudonymKey(wrong.encode()).fingerprint()[:8]}" in message
    assert PseudonymKey(ENV_KEY.encode()).fingerprint()[:8] in message and wrong not in message
    assert not home.key_file.exists() and not list(home.key_file.parent.glob("*.old"))


def test_a_key_file_that_env_overrode_is_kept_not_lost(env_keyed: Home, tmp_path: Path) -> None:
    home = copy_of(env_keyed, tmp_path)
    stale = "a-stale-key-file-the-env-has-always-overridden-00"
    home.key_file.write_text(stale + "\n")
    rotate_key(home, _new_key_file(tmp_path))
    kept = {p.read_text().strip() for p in home.key_file.parent.glob("pseudonym.key.*.old")}
    assert kept == {ENV_KEY, stale} and home.key_file.read_text().strip() == NEW_KEY


def test_without_any_current_key_rekey_asks_before_dropping_the_decisions(env_keyed: Home, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = copy_of(env_keyed, tmp_path)
    old_key = PseudonymKey(ENV_KEY.encode())
    linked = (_alone(home, "iltb", _iltb_numbers(home)), _alone(home, "registry_it", _registry_numbers(home)))
    record_decision(home, PatientRef("iltb", source_pseudonym(old_key, "iltb", linked[0])),
                    PatientRef("registry_it", source_pseudonym(old_key, "registry_it", linked[1])), "link")
    monkeypatch.delenv(KEY_ENV)  # a hand run that forgot the Variable's key
    new_key_file = _new_key_file(tmp_path)
    with pytest.raises(RekeyError, match=r"no current key: RTW_PSEUDONYM_KEY is not set.*airflow variables get"):
        rotate_key(home, new_key_file)
    assert not home.key_file.exists() and not list(home.key_file.parent.glob("*.old"))

    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file", str(new_key_file),
                                      "--without-old-key"])  # the key is lost: rotate anyway
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "0 reviewer decisions (rtw link / unlink) now name the new pseudonyms; 1 dropped" in said
    assert f"the old key is missing (neither {KEY_ENV} nor" in said
    assert "still holds the old key" not in said and not list(home.key_file.parent.glob("*.old"))
