"""The pull ledger (etl/pull/ledger.py): a line appended per file pulled, crashes and earlier versions' files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from etl.config import Home
from etl.pull.dropzone import RemoteFile
from etl.pull.ledger import LedgerKey, read_ledger, unnamed
from etl.transform.pseudonym import PseudonymKey


def _remote(n: int) -> RemoteFile:
    return RemoteFile(path=f"/drop/ILTB_{n}.csv", name=f"ILTB_{n}.csv", size=100 + n, version=f"v{n}")


def _pulled(home: Home, files: range) -> Path:
    ledger = read_ledger(home, "iltb", mend=True)  # as a pull reads it
    for n in files:
        ledger.record(_remote(n), f"{n:064x}", [f"ILTB_{n}.csv"])
    return ledger.path


def test_each_file_pulled_adds_a_line_and_leaves_the_earlier_ones_as_they_were(home):
    path = _pulled(home, range(3))
    assert path.name == "iltb.jsonl" and stat.S_IMODE(path.stat().st_mode) == 0o600
    before, inode = path.read_bytes(), path.stat().st_ino
    _pulled(home, range(3, 4))
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 4
    assert path.stat().st_ino == inode  # appended, not rewritten and renamed in
    ledger = read_ledger(home, "iltb")
    assert [e.remote_path for e in ledger.entries] == [f"/drop/ILTB_{n}.csv" for n in range(4)]
    assert ledger.has(_remote(2)) and ledger.has_content(_remote(3), f"{3:064x}")
    assert not ledger.has(_remote(4)) and not ledger.has_content(_remote(3), f"{4:064x}")


def test_a_last_line_cut_short_is_not_recorded_and_a_pull_cuts_it_off(home, caplog):
    path = _pulled(home, range(3))
    whole = path.read_bytes()
    cut = whole + whole.splitlines(keepends=True)[0][:40]  # a crash in the fourth append
    path.write_bytes(cut)
    assert len(read_ledger(home, "iltb").entries) == 3 and path.read_bytes() == cut  # a look only reads
    with caplog.at_level("WARNING"):
        assert len(read_ledger(home, "iltb", mend=True).entries) == 3
    assert "its last line was cut short" in caplog.text and path.read_bytes() == whole
    _pulled(home, range(3, 4))
    assert len(read_ledger(home, "iltb").entries) == 4


def test_a_last_line_whole_but_for_its_newline_is_kept(home):
    path = _pulled(home, range(2))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # saved so by an editor
    assert len(read_ledger(home, "iltb").entries) == 2
    _pulled(home, range(2, 3))  # its newline given first
    assert len(read_ledger(home, "iltb").entries) == 3


def test_a_damaged_line_stops_the_pull_naming_it(home):
    path = _pulled(home, range(3))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"remote_path": "/drop/x"}\n' + lines[2])
    with pytest.raises(ValueError, match=r"iltb.jsonl line 2: the ledger of pulled files cannot be read"):
        read_ledger(home, "iltb")


def test_an_earlier_versions_ledger_is_rewritten_as_lines(home):
    path = _pulled(home, range(3))
    earlier = path.with_suffix(".json")
    earlier.write_text(json.dumps([json.loads(line) for line in path.read_text().splitlines()], indent=1))
    path.unlink()
    looked = read_ledger(home, "iltb")
    assert len(looked.entries) == 3 and earlier.exists() and not path.exists()  # a look only reads
    ledger = read_ledger(home, "iltb", mend=True)
    assert len(ledger.entries) == 3 and ledger.has(_remote(1))
    assert not earlier.exists() and path.read_text().count("\n") == 3
    earlier.write_text("[{")  # a damaged one is said so, not taken for an empty one
    path.unlink()
    with pytest.raises(ValueError, match=r"iltb.json: the ledger of pulled files cannot be read"):
        read_ledger(home, "iltb", mend=True)


def _version(path: str, size: int, version: str) -> RemoteFile:
    return RemoteFile(path=path, name=path.rpartition("/")[2], size=size, version=version)


def test_an_erased_patients_file_reverted_to_an_earlier_version_is_pulled_again(home):
    """As a named file: A, then B, then A again is a new export; only the last version pulled from the path
    is known, by its listing and by its content, after rtw forget too."""
    path = "/drop/Fall_123456_Verlauf.csv"
    ledger = read_ledger(home, "registry_de", mend=True)
    ledger.record(_version(path, 316, "v1"), "a" * 64, ["Fall_123456_Verlauf.csv"])
    ledger.record(_version(path, 320, "v2"), "b" * 64, ["Fall_123456_Verlauf.csv"])
    ledger.record(_version("/drop/Fall_234567_Verlauf.csv", 316, "v1"), "c" * 64, ["Fall_234567_Verlauf.csv"])
    named = read_ledger(home, "registry_de")
    assert not named.has(_version(path, 316, "v1")) and not named.has_content(_version(path, 316, "v3"), "a" * 64)
    key = LedgerKey.of(PseudonymKey(b"pull-ledger-key-0123456789abcdef"))
    assert unnamed(home, "registry_de", lambda name: name.replace("123456", "{patient}"), key) == 2
    after = read_ledger(home, "registry_de", mend=True, key=key)
    assert "123456" not in after.path.read_text()
    assert not after.has(_version(path, 316, "v1"))  # A again, listed as it was
    assert not after.has_content(_version(path, 316, "v3"), "a" * 64)  # A again, under a new time
    assert after.has(_version(path, 320, "v2")) and after.has_content(_version(path, 320, "v3"), "b" * 64)
    assert after.has(_version("/drop/Fall_234567_Verlauf.csv", 316, "v1"))
    assert unnamed(home, "registry_de", lambda name: name.replace("123456", "{patient}"), key) == 0  # once
