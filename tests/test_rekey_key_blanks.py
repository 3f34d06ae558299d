"""`rtw rekey` of a current key with blanks around it (a Variable saved with a trailing newline or blank, given in
env RTW_PSEUDONYM_KEY): runs use the key as it is given, but the old key rekey kept was read back stripped by the
erasures' check (etl/forget.py), another key, so the erasures made under it would have found none; rekey refused
such a warehouse outright. It keeps the key's exact bytes now, and a kept key file is read with and without its
blanks: the rotation works, erasures stay enforced, and the key is never shown."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.config import WAREHOUSE_SQL_DIR, Home, resolve_home
from etl.forget import forget
from etl.synth import generate
from etl.transform.keyguard import KeyMismatch, guard_key, record_fingerprint, recorded_fingerprint
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, source_pseudonym

KEY = "blank-edged-key-0123456789abcdef0123456789"
NEW_KEY = "rekey-blanks-new-key-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def edged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, str]]:
    """A home built with the key in env only, a blank and a line break after it, as a Variable saved so gives it
    (one home for both: each is stripped alike when a kept key is read back; the messages for each are tested
    below). 12 persons: the registry's export holds 3 of them, one to erase and others to count."""
    given = KEY + " \n"
    home = resolve_home(tmp_path_factory.mktemp("rekey_blanks") / "home")
    generate(home.root, patients=12, seed=12)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, given)
        assert pipeline.run(home).status == "completed"
    yield home, given


def _loaded(home: Home) -> set[str]:
    return {p for (p,) in query_rows(home, "SELECT DISTINCT source_patient_pseudonym FROM stage.patient_source "
                                           "WHERE source_id = 'registry_it'")}


def _registry_patient(home: Home, key: PseudonymKey) -> str:
    """A patient number of the registry's export that is loaded."""
    text = next((home.landing / "registry_it").glob("*.csv")).read_text(encoding="cp1252")
    numbers = sorted({line.split(";")[1] for line in text.splitlines()[1:] if line.count(";") > 2})
    loaded = _loaded(home)
    return next(n for n in numbers if source_pseudonym(key, "registry_it", n) in loaded)


def _redeliver(home: Home) -> None:
    """The centre's next export, still holding every patient (new name, new content): the source is reloaded."""
    export = next((home.landing / "registry_it").glob("*.csv"))
    (home.landing / "registry_it" / "TREP_export_20261207.csv").write_bytes(export.read_bytes() + b"\n")
    export.unlink()


def _new_key_file(tmp_path: Path) -> Path:
    (tmp_path / "new.key").write_text(NEW_KEY + "\n")
    return tmp_path / "new.key"


def test_a_warehouse_built_under_a_key_with_blanks_is_re_keyed_and_its_erasure_kept(
        edged: tuple[Home, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built, given = edged
    home = Home(tmp_path / "home")
    shutil.copytree(built.root, home.root, symlinks=True)
    monkeypatch.setenv(KEY_ENV, given)
    old_key, new_key = PseudonymKey(given.encode()), PseudonymKey(NEW_KEY.encode())
    erased = _registry_patient(home, old_key)
    forget(home, "registry_it", erased)
    others = len(_loaded(home))

    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file",
                                      str(_new_key_file(tmp_path))])
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and NEW_KEY not in result.output
    said = " ".join(result.output.split())
    assert f"key fingerprint {old_key.fingerprint()[:8]} -> {new_key.fingerprint()[:8]}" in said
    (kept,) = home.key_file.parent.glob("pseudonym.key.*.old")
    assert kept.read_bytes() == given.encode()  # as runs used it, blanks and all
    assert recorded_fingerprint(home.warehouse) == new_key.fingerprint()
    assert source_pseudonym(new_key, "registry_it", erased) not in _loaded(home)

    with pytest.raises(KeyMismatch) as refused:  # the env still holds the old key
        pipeline.run(home)
    assert "retired by `rtw rekey`" in str(refused.value) and KEY not in str(refused.value)

    monkeypatch.setenv(KEY_ENV, NEW_KEY)
    _redeliver(home)  # the centre still sends the erased patient
    summary = pipeline.run(home)
    assert summary.status == "completed", summary.message
    loaded = _loaded(home)
    assert source_pseudonym(new_key, "registry_it", erased) not in loaded and len(loaded) == others


def _built_with(home: Home, key: str) -> None:
    """A warehouse that records the fingerprint of the key it was built with (its meta schema: all rekey reads
    of it before it changes anything)."""
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
        guard_key(home, "run-1", key, live=con)
        record_fingerprint(con, home.warehouse, "run-1")


def _unchanged(home: Home, built_with: str) -> bool:
    return (recorded_fingerprint(home.warehouse) == PseudonymKey(built_with.encode()).fingerprint()
            and not home.key_file.exists() and not list(home.key_file.parent.glob("*.old")))


def test_rekey_says_when_the_key_without_its_blanks_is_the_warehouses(tmp_path, home, monkeypatch):
    """A warehouse built from the key file (read stripped), the same key given in env with a trailing blank: it
    is refused as another key, saying the key without them is the warehouse's."""
    _built_with(home, KEY)
    monkeypatch.setenv(KEY_ENV, KEY + " ")
    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file",
                                      str(_new_key_file(tmp_path))])
    assert result.exit_code == 1 and KEY not in result.output
    said = " ".join(result.output.split())
    fingerprint = PseudonymKey(KEY.encode()).fingerprint()[:8]
    assert f"built with (fingerprint {fingerprint}); it has blanks or a line break around it: without them it is " \
           "that key; give it so" in said
    assert _unchanged(home, KEY)


def test_rekey_says_when_the_key_with_a_line_break_after_it_is_the_warehouses(tmp_path, home, monkeypatch):
    """Runs had the key from a Variable saved with a trailing newline; by hand it was given through $(...), which
    drops it: refused as another key, saying how to give it with the line break."""
    _built_with(home, KEY + "\n")
    monkeypatch.setenv(KEY_ENV, KEY)
    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file",
                                      str(_new_key_file(tmp_path))])
    assert result.exit_code == 1 and KEY not in result.output
    said = " ".join(result.output.split())
    assert "with a line break after it, it is that key" in said
    assert f"{KEY_ENV}=\"$(airflow variables get rtw_pseudonym_key)\"$'\\n' rtw rekey" in said
    assert _unchanged(home, KEY + "\n")
