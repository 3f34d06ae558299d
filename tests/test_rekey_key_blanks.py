"""`rtw rekey` of a current key with blanks around it (a Variable saved with a trailing blank or CRLF, given in
env RTW_PSEUDONYM_KEY): runs use the key as it is given, but rekey keeps the old key in a file that the erasures'
check reads back stripped (etl/forget.py), so the erasures made under it found no key: rekey stopped at the reload
saying to put back a key file that was there, and a rotation of a home without erasures left a kept key that was
another key. Refused now before anything changes, saying why, never showing the key."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.config import WAREHOUSE_SQL_DIR, Home
from etl.transform.keyguard import RekeyError, guard_key, record_fingerprint, recorded_fingerprint, rotate_key
from etl.transform.pseudonym import KEY_ENV, PseudonymKey

KEY = "blank-edged-key-0123456789abcdef0123456789"
NEW_KEY = "rekey-blanks-new-key-0123456789abcdef0123456789"


def _built_with(home: Home, key: str) -> None:
    """A warehouse that records the fingerprint of the key it was built with (its meta schema: all rekey reads
    of it before it changes anything)."""
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
        guard_key(home, "run-1", key, live=con)
        record_fingerprint(con, home.warehouse, "run-1")


def _new_key_file(tmp_path: Path) -> Path:
    (tmp_path / "new.key").write_text(NEW_KEY + "\n")
    return tmp_path / "new.key"


def _unchanged(home: Home, built_with: str) -> bool:
    return (recorded_fingerprint(home.warehouse) == PseudonymKey(built_with.encode()).fingerprint()
            and not home.key_file.exists() and not list(home.key_file.parent.glob("*.old")))


@pytest.mark.parametrize("given", [f"{KEY}\n", f"{KEY} ", f"{KEY}\r", f" {KEY}"])
def test_rekey_refuses_a_key_built_with_blanks_around_it_changing_nothing(tmp_path, home, monkeypatch, given):
    monkeypatch.setenv(KEY_ENV, given)
    _built_with(home, given)
    with pytest.raises(RekeyError) as refused:
        rotate_key(home, _new_key_file(tmp_path))
    message = str(refused.value)
    assert message.startswith(f"the current key ({KEY_ENV}) has blanks or a line break around it")
    assert "read back without them" in message and KEY not in message and NEW_KEY not in message
    assert _unchanged(home, given)


def test_rekey_says_when_the_key_without_its_blanks_is_the_warehouses(tmp_path, home, monkeypatch):
    """A warehouse built from the key file (read stripped), the same key given in env with a trailing blank: it
    was refused as another key."""
    _built_with(home, KEY)
    monkeypatch.setenv(KEY_ENV, KEY + " ")
    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file",
                                      str(_new_key_file(tmp_path))])
    assert result.exit_code == 1 and KEY not in result.output
    said = " ".join(result.output.split())
    fingerprint = PseudonymKey(KEY.encode()).fingerprint()[:8]
    assert f"Without them it is the warehouse's key (fingerprint {fingerprint}): give it so" in said
    assert _unchanged(home, KEY)
