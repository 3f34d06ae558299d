"""The pull ledger's lines of an erased patient's files (rtw forget, etl/pull/ledger.py): digests keyed by the
pseudonymisation key, which only its holder can match. Unkeyed, someone holding the home found the erased number
again by trying every number of the name's shape; an earlier version's lines are still read, and keyed by forget or
a run, whose key is checked (never by a pull, whose key may be another); of each path only the last version counts,
across erasures too; a pull without the key knows such a file by its content only, and lands nothing."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import duckdb
import pytest
from drop_zone import registry_sources, send

from etl.config import WAREHOUSE_SQL_DIR, Home
from etl.pull import PullStatus, check_drop_zone, pull_source
from etl.pull.dropzone import RemoteFile
from etl.pull.ledger import LedgerKey, keyed, read_ledger, unnamed
from etl.pull.nights import read_pulls
from etl.transform.keyguard import guard_key, record_fingerprint
from etl.transform.pseudonym import KEY_ENV, PseudonymKey

KEY = "ledger-keyed-key-0123456789abcdef0123"
LEDGER_KEY = LedgerKey.of(PseudonymKey(KEY.encode()))
ERASED = "/drop/Fall_123456_Verlauf.csv"


def _remote(path: str, size: int = 316, version: str = "v1") -> RemoteFile:
    return RemoteFile(path=path, name=path.rpartition("/")[2], size=size, version=version)


def _shown(name: str) -> str:
    return name.replace("123456", "{patient}")


def _unkeyed(path: str, size: int, version: str) -> str:
    return hashlib.sha256(f"{path}\0{size}\0{version}".encode()).hexdigest()


def _tried(ledger: Path, numbers: range, size: int = 316, version: str = "v1") -> list[int]:
    """What someone holding the home but not the key finds: each number of the name's shape whose file, listed
    with the size and version the archive shows, hashes to a digest the ledger holds."""
    digests = set(re.findall(r"[0-9a-f]{64}", ledger.read_text()))
    return [n for n in numbers if _unkeyed(f"/drop/Fall_{n}_Verlauf.csv", size, version) in digests]


def _erased(home: Home) -> Path:
    """Two patients' files pulled, then the first patient's erased (as rtw forget rewrites the ledger)."""
    ledger = read_ledger(home, "registry_de", mend=True)
    ledger.record(_remote(ERASED), "a" * 64, ["Fall_123456_Verlauf.csv"])
    ledger.record(_remote("/drop/Fall_234567_Verlauf.csv"), "b" * 64, ["Fall_234567_Verlauf.csv"])
    assert unnamed(home, "registry_de", _shown, LEDGER_KEY) == 1
    return ledger.path


def test_the_erased_number_is_not_found_again_by_trying_numbers(home):
    path = _erased(home)
    assert "123456" not in path.read_text()
    assert _tried(path, range(123_000, 124_000)) == []  # 10^6 numbers take seconds: a thousand show it
    assert read_ledger(home, "registry_de", key=LEDGER_KEY).has(_remote(ERASED))  # the key's holder knows it
    assert not read_ledger(home, "registry_de", key=LedgerKey.of(PseudonymKey(b"another-key-0123456789abcdef"))
                           ).has(_remote(ERASED))
    assert not read_ledger(home, "registry_de").has(_remote(ERASED))  # nor a reader without it


def _as_an_earlier_version_wrote_it(path: Path, listed: RemoteFile | None = None) -> None:
    """The erased patient's line (listed as `listed`, else ERASED's) as the unkeyed ledger had it: the sha256 of
    its listing, no path digest."""
    listed = listed or _remote(ERASED)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        if "listed" in line:
            line["listed"] = _unkeyed(listed.path, listed.size, listed.version)
            del line["path_digest"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_an_earlier_versions_unkeyed_line_is_read_with_or_without_the_key_and_left_as_it_is(home):
    path = _erased(home)
    _as_an_earlier_version_wrote_it(path)
    assert _tried(path, range(123_000, 124_000)) == [123456]  # what the ledger gave away
    assert read_ledger(home, "registry_de").has(_remote(ERASED))  # still known, without the key too
    assert read_ledger(home, "registry_de", key=LEDGER_KEY).has(_remote(ERASED))  # a look only reads
    before = path.read_bytes()
    ledger = read_ledger(home, "registry_de", mend=True, key=LEDGER_KEY)  # as a pull given the key reads it
    assert path.read_bytes() == before and ledger.unkeyed  # keyed by a run or rtw forget, whose key is checked
    assert ledger.has(_remote(ERASED)) and ledger.has_content(_remote(ERASED, version="v2"), "a" * 64)


def test_a_pull_given_another_key_leaves_an_earlier_versions_unkeyed_lines_as_they_are(tmp_path, home, drop,
                                                                                       monkeypatch):
    """A pull's key (argument, env or key file) is compared with the warehouse's by no one: one given another key
    (a Variable or env left from another home) rewrote the unkeyed lines under it, and the file was known by
    neither the right key nor none again. It knows them as they are; the run or rtw forget keys them."""
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    pull_source(home, "registry_it", sources_dir=sources)
    pulled = read_ledger(home, "registry_it").entries[0]
    listed = _remote(pulled.remote_path, pulled.size, pulled.version)  # as the drop zone lists it
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    path = read_ledger(home, "registry_it").path
    _as_an_earlier_version_wrote_it(path, listed)
    before = path.read_bytes()
    again = pull_source(home, "registry_it", sources_dir=sources, key_value="another-key-0123456789abcdef0123")
    assert (again.status, again.pulled, again.skipped) == (PullStatus.NOTHING_NEW, [], [])  # known as listed
    assert path.read_bytes() == before
    assert read_ledger(home, "registry_it", key=LEDGER_KEY).has(listed) and read_ledger(home, "registry_it").has(listed)
    keyed(home, "registry_it", LEDGER_KEY)  # as the next run (or rtw forget), holding the warehouse's key, does
    assert not read_ledger(home, "registry_it").unkeyed
    assert read_ledger(home, "registry_it", key=LEDGER_KEY).has(listed)


def test_a_run_given_the_key_keys_an_earlier_versions_lines(home):
    path = _erased(home)
    _as_an_earlier_version_wrote_it(path)
    assert read_ledger(home, "registry_de").unkeyed
    keyed(home, "registry_de", LEDGER_KEY)  # what hide_erased_numbers does, in every run of a source with erasures
    assert _tried(path, range(123_000, 124_000)) == []
    assert read_ledger(home, "registry_de", key=LEDGER_KEY).has(_remote(ERASED))


def test_only_the_last_version_of_an_erased_patients_file_counts_across_erasures(home):
    """A, then B erased; the patient's file sent again as C (pulled named: the pull tells no number) and named so
    by the next run: only C is known, as for a named file. B again is a new export, by its listing and its content.
    Before, the line of B rtw forget wrote kept counting beside C's."""
    ledger = read_ledger(home, "registry_de", mend=True)
    ledger.record(_remote(ERASED, 316, "v1"), "a" * 64, ["Fall_123456_Verlauf.csv"])
    ledger.record(_remote(ERASED, 320, "v2"), "b" * 64, ["Fall_123456_Verlauf.csv"])
    assert unnamed(home, "registry_de", _shown, LEDGER_KEY) == 2
    sent_again = read_ledger(home, "registry_de", mend=True, key=LEDGER_KEY)
    assert sent_again.has(_remote(ERASED, 320, "v2")) and not sent_again.has(_remote(ERASED, 330, "v3"))
    sent_again.record(_remote(ERASED, 330, "v3"), "c" * 64, ["Fall_123456_Verlauf.csv"])
    assert unnamed(home, "registry_de", _shown, LEDGER_KEY) == 2  # C's line, and B's marked earlier
    after = read_ledger(home, "registry_de", mend=True, key=LEDGER_KEY)
    assert after.has(_remote(ERASED, 330, "v3")) and after.has_content(_remote(ERASED, 330, "v4"), "c" * 64)
    assert not after.has(_remote(ERASED, 320, "v2"))  # B again, listed as it was
    assert not after.has_content(_remote(ERASED, 320, "v4"), "b" * 64)  # B again, under a new time
    assert [json.loads(line).get("earlier") for line in after.path.read_text().splitlines()] == [True, True, None]


def test_an_upload_again_of_the_same_content_supersedes_the_listing_before(home):
    """The erased patient's file uploaded again unchanged (a new time) is recorded by its new listing: the one
    before is no longer known, as for a named file."""
    _erased(home)
    ledger = read_ledger(home, "registry_de", mend=True, key=LEDGER_KEY)
    assert ledger.record(_remote(ERASED, version="v2"), "a" * 64, [])
    for reader in (ledger, read_ledger(home, "registry_de", key=LEDGER_KEY)):
        assert reader.has(_remote(ERASED, version="v2")) and not reader.has(_remote(ERASED, version="v1"))
        assert reader.has_content(_remote(ERASED, version="v3"), "a" * 64)
    assert unnamed(home, "registry_de", _shown, LEDGER_KEY) == 1  # the line before marked earlier
    assert "123456" not in ledger.path.read_text()


CASE = b"id_record;codice_paziente\n1;123456\n"


@pytest.mark.parametrize("given", ["explicit", "env", "key file"])
def test_a_pull_given_the_key_does_not_download_an_erased_patients_file_again(tmp_path, home, drop, monkeypatch,
                                                                             given):
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert len(pull_source(home, "registry_it", sources_dir=sources).pulled) == 1
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    if given == "env":
        monkeypatch.setenv(KEY_ENV, KEY)
    elif given == "key file":
        home.key_file.parent.mkdir(exist_ok=True)
        home.key_file.write_text(KEY + "\n")
    key_value = KEY if given == "explicit" else None
    ledger = read_ledger(home, "registry_it").path.read_bytes()
    again = pull_source(home, "registry_it", sources_dir=sources, key_value=key_value)
    assert (again.status, again.pulled, again.skipped) == (PullStatus.NOTHING_NEW, [], [])  # known as listed
    assert check_drop_zone(home, "registry_it", sources_dir=sources, key_value=key_value).state.value == "nothing_new"
    assert read_ledger(home, "registry_it").path.read_bytes() == ledger


def test_a_pull_without_the_key_lands_nothing_and_records_nothing(tmp_path, home, drop, monkeypatch):
    """Without the key (`rtw pull` where neither env nor key file holds it): the erased patient's file is
    downloaded, known by its content and not landed; no line can be written without the key. No key file
    is created."""
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    pull_source(home, "registry_it", sources_dir=sources)
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    for landed in (home.landing / "registry_it").iterdir():  # the centre's copy, cleaned away
        landed.unlink()
    ledger = read_ledger(home, "registry_it").path.read_bytes()
    for _ in range(2):
        again = pull_source(home, "registry_it", sources_dir=sources)
        assert again.pulled == [] and [s.name for s in again.skipped] == ["Fall_{patient}_Verlauf.csv"]
        assert "known by its content only" in again.skipped[0].reason and "123456" not in again.message
    assert list((home.landing / "registry_it").iterdir()) == []
    assert read_ledger(home, "registry_it").path.read_bytes() == ledger and not home.key_file.exists()
    assert check_drop_zone(home, "registry_it", sources_dir=sources).state.value == "new_export"  # docs/pull.md


def test_the_dags_sensor_is_given_the_key_from_its_variable(tmp_path, home, drop, monkeypatch):
    """The DAG's look at the drop zone (in the task and in the triggerer) reads the key where plan_run and
    harmonise do, the Variable `rtw_pseudonym_key`: the erased patient's file still in the drop zone does not end
    the wait as a new export. The trigger's serialised arguments hold no key."""
    from datetime import UTC, datetime

    from etl.pull.sensor import DropZoneSensor, DropZoneTrigger

    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    pull_source(home, "registry_it", sources_dir=sources)
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    trigger = DropZoneTrigger(source_id="registry_it", home=str(home.root), sources_dir=str(sources),
                              connection_id=None, deadline=datetime.now(UTC).isoformat())
    sensor = DropZoneSensor(task_id="wait", source_id="registry_it", home=str(home.root), sources_dir=str(sources))
    assert trigger._check().state.value == "new_export"  # no key anywhere: taken for a new export
    monkeypatch.setenv("AIRFLOW_VAR_RTW_PSEUDONYM_KEY", KEY)  # the Variable, as Airflow reads it from env
    assert trigger._check().state.value == "nothing_new" and not sensor.poke({})
    assert KEY not in str(trigger.serialize())


_LOOK_WITHOUT_THE_VARIABLE = """
import asyncio, json, sys
from datetime import UTC, datetime
from pathlib import Path
from etl.config import Home
from etl.pull.sensor import DropZoneSensor, DropZoneTrigger, _check_now, pull_with_key
home, sources = sys.argv[1:]
trigger = DropZoneTrigger(source_id="registry_it", home=home, sources_dir=sources, connection_id=None,
                          deadline=datetime.now(UTC).isoformat())  # one look, then the deadline
async def first_event():
    async for event in trigger.run():
        return event.payload
sensor = DropZoneSensor(task_id="wait", source_id="registry_it", home=home, sources_dir=sources)
look = _check_now(sensor)
pulled = pull_with_key(Home(Path(home)), "registry_it", None, Path(sources))  # as the DAG's pull_export
print(json.dumps({"trigger": asyncio.run(first_event()), "sensor": [look.state.value, look.message],
                  "poked": sensor.poke({}), "pulled": [pulled.status.value, pulled.message]}))
"""


@pytest.mark.parametrize(("backend", "why"), [
    ("denying_secrets.DeniedKey", "AirflowSecretsBackendAccessDenied"),
    ("failing_secrets.DownForTheKey", "KeyUnreadable: the secrets backend DownForTheKey failed: ConnectionError")])
def test_the_sensor_asks_again_when_the_key_variable_cannot_be_read(tmp_path, home, drop, monkeypatch, backend, why):
    """A Variable its secrets backend denies: the trigger said "its connection cannot be read", and the sensor's
    first look failed the task. A backend that is down: Airflow's Variable.get logged it and answered "no such
    Variable", and both looked without the key, the erased patient's file ending the wait as a new export. Both
    now say the Variable cannot be read, and why, and look again later. In a process of its own: Airflow keeps
    the secrets backends it built."""
    import subprocess
    import sys

    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    pull_source(home, "registry_it", sources_dir=sources)
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    landed = list((home.landing / "registry_it").iterdir())
    here = Path(__file__).parent
    env = {**os.environ, "AIRFLOW__SECRETS__BACKEND": backend, "AIRFLOW__WORKERS__SECRETS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _LOOK_WITHOUT_THE_VARIABLE, str(home.root), str(sources)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    looked = json.loads(done.stdout.strip().splitlines()[-1])
    said = f"registry_it: the Variable rtw_pseudonym_key cannot be read ({why}"
    assert looked["trigger"]["status"] == "deadline" and said in looked["trigger"]["message"]  # its last look
    assert looked["sensor"][0] == "unreachable" and looked["sensor"][1].startswith(said)  # then deferred
    assert looked["poked"] is False and "connection" not in looked["trigger"]["message"]
    assert looked["pulled"][0] == "failed" and looked["pulled"][1].startswith(said)  # retried, then told
    assert looked["pulled"][1].endswith("nothing is pulled without the key")
    assert list((home.landing / "registry_it").iterdir()) == landed
    assert [p.failure for p in read_pulls(home)][-1] == looked["pulled"][1]  # for rtw status


def _built_with(home: Home, key: str) -> None:
    """A warehouse that records the fingerprint of the key it was built with, as publish records it (its meta
    schema only: all the pull reads of it)."""
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute((WAREHOUSE_SQL_DIR / "meta.sql").read_text())
        guard_key(home, "run-1", key, live=con)
        record_fingerprint(con, home.warehouse, "run-1")


def _landed(home: Home) -> list[str]:
    return sorted(p.name for p in (home.landing / "registry_it").iterdir())


def test_a_pull_with_a_key_other_than_the_warehouses_is_refused(tmp_path, home, drop, monkeypatch):
    """A pull whose key was not the warehouse's (a wrong RTW_PSEUDONYM_KEY, the DAG's Variable another key) was
    never checked: it wrote the erased patient's file sent again under that key, known to no later pull. The pull
    of a source with a drop zone now refuses it as `rtw run` does, showing the short fingerprints, never the key;
    and the DAG's look says so, ending the wait, for the pull to fail with why. A pull without a key is a pull
    without a key still (known by content only)."""
    from etl.transform.keyguard import _short

    other = "another-key-0123456789abcdef0123456789"
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    pull_source(home, "registry_it", sources_dir=sources, key_value=KEY)
    assert unnamed(home, "registry_it", _shown, LEDGER_KEY) == 1
    _built_with(home, KEY)
    send(drop / "Fall_123456_Verlauf.csv", CASE, age=1800)  # sent again unchanged
    ledger, landed = read_ledger(home, "registry_it").path.read_bytes(), _landed(home)
    monkeypatch.setenv(KEY_ENV, other)
    refused = pull_source(home, "registry_it", sources_dir=sources)
    assert refused.status is PullStatus.FAILED and refused.pulled == []
    fingerprints = f"fingerprint {_short(PseudonymKey(KEY.encode()).fingerprint())}, this key's " \
                   f"{_short(PseudonymKey(other.encode()).fingerprint())}"
    assert refused.message.startswith("registry_it: not pulled: the pseudonymisation key differs from the one this "
                                      f"warehouse was built with ({fingerprints})")
    assert other not in refused.message and KEY not in refused.message
    assert read_ledger(home, "registry_it").path.read_bytes() == ledger and _landed(home) == landed
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state.value == "invalid" and fingerprints in look.message
    monkeypatch.delenv(KEY_ENV)
    keyless = pull_source(home, "registry_it", sources_dir=sources)
    assert keyless.pulled == [] and "known by its content only" in keyless.skipped[0].reason
    assert pull_source(home, "registry_it", sources_dir=sources, key_value=KEY).status is PullStatus.NOTHING_NEW


def test_a_pull_whose_key_file_cannot_be_read_fails_recorded_not_crashed(tmp_path, home, drop, monkeypatch):
    """The key file is first read by the comparison with the warehouse's key now: a file that cannot be read
    (here a folder in its place) crashed the pull, recording nothing for `rtw status`; it fails the pull, said."""
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf.csv")
    send(drop / "Fall_123456_Verlauf.csv", CASE)
    monkeypatch.delenv(KEY_ENV, raising=False)
    _built_with(home, KEY)
    home.key_file.unlink(missing_ok=True)
    home.key_file.mkdir(parents=True)
    failed = pull_source(home, "registry_it", sources_dir=sources)
    assert failed.status is PullStatus.FAILED and failed.pulled == []
    assert failed.message.startswith("registry_it: [Errno 21] Is a directory")
    assert not (home.landing / "registry_it").exists()  # nothing downloaded
