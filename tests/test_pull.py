"""The pull from drop zones, against real servers on 127.0.0.1: OpenSSH sshd (SFTP) and moto's
S3-compatible server, and a local folder. No server is mocked: transfers are cut by killing the
real SSH session mid-file."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
from status_runs import last_runs
from transport_servers import S3_SECRET, S3Server, SshServer, start_s3, start_sshd

from etl import pipeline
from etl.config import SOURCES_DIR, Home
from etl.extract.landing import discover
from etl.pull import PullPolicy, PullStatus, connection_id, pull_all, pull_source
from etl.pull.credentials import CredentialsError, parse_connection
from etl.pull.deliveries import DropZoneState, check_drop_zone
from etl.pull.room import lacking_room
from etl.pull.unzip import ZipLimits, ZipRefused, unpack_zip
from etl.synth import generate
from etl.transform.mapping import load_mapping

pytestmark = pytest.mark.transport
FAST = PullPolicy(attempts=3, backoff_seconds=0.05, chunk_bytes=64 << 10)
BUCKET = "rtw-drop"
SOURCES = ("crizotinib_imt", "esmart", "iltb", "registry_it", "sacha_fr")


# -- servers and exports, once per module -----------------------------------------------------------
@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> SshServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3() -> S3Server:
    server = start_s3()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """Synthetic exports of every source: `<folder>/landing/<source_id>/...`."""
    out = tmp_path_factory.mktemp("synth")
    generate(out, patients=60, seed=5)  # every source has records at 60
    return out / "landing"


def _sources(folder: Path, deliveries: dict[str, str]) -> Path:
    """A copy of the shipped mappings, with a `delivery:` block (YAML flow text) for some sources."""
    folder.mkdir(parents=True, exist_ok=True)
    for source_id in SOURCES:
        text = (SOURCES_DIR / f"{source_id}.yaml").read_text()
        if source_id in deliveries:
            text += f"\ndelivery: {deliveries[source_id]}\n"
        (folder / f"{source_id}.yaml").write_text(text)
    return folder


def _drop(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _landed(home: Home, source_id: str) -> dict[str, bytes]:
    folder = home.landing / source_id
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _exports_of(exports: Path, source_id: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((exports / source_id).iterdir())}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(s3: S3Server, prefix: str, files: dict[str, bytes]) -> None:
    client = s3.client()
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=data)


def _keys(s3: S3Server, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    return sorted(o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", []))


# -- SFTP ------------------------------------------------------------------------------------------
def test_sftp_pull_lands_new_files_verified_and_never_twice(tmp_path, home, sshd, exports):
    iltb = _exports_of(exports, "iltb")
    drop = _drop(tmp_path / "sftp" / "iltb", iltb | {"README.txt": b"not an export"})
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    assert connection_id("iltb", sources_dir=sources) == "iltb_sftp"

    outcome = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED, outcome.message
    assert sorted(outcome.pulled) == sorted(iltb)
    assert outcome.message.startswith(f"iltb: pulled 6 file(s) from sftp://127.0.0.1:{sshd.port}")
    landed = _landed(home, "iltb")
    assert {n: d for n, d in landed.items() if not n.endswith(".sha256")} == iltb  # the README is not an export
    assert landed["ILTB_ENROL.csv.sha256"].decode().split()[0] == _sha(iltb["ILTB_ENROL.csv"])
    for path in (home.landing / "iltb").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The landing reader finds them complete at once: their checksums are declared beside them.
    found = discover(home.landing, load_mapping(sources / "iltb.yaml"), quiet_seconds=3600)
    assert len(found.current) == 6 and not found.waiting

    again = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert again.status is PullStatus.NOTHING_NEW and again.pulled == []
    assert again.message == f"iltb: nothing new in sftp://127.0.0.1:{sshd.port}{drop}"
    # Cleaning landing/ does not make old deliveries new: the ledger remembers them.
    shutil.rmtree(home.landing / "iltb")
    assert pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources,
                       policy=FAST).status is PullStatus.NOTHING_NEW
    assert sorted(p.name for p in drop.iterdir()) == sorted([*iltb, "README.txt"])  # nothing deleted remotely
    ledger = home.root / "pulled" / "iltb.jsonl"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600 and stat.S_IMODE(ledger.parent.stat().st_mode) == 0o700
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {e["sha256"] for e in entries} == {_sha(d) for d in iltb.values()}

    # A new version of one form (another size and time) is pulled; the others are not.
    (drop / "ILTB_FU.csv").write_bytes(iltb["ILTB_FU.csv"] + b"\n")
    os.utime(drop / "ILTB_FU.csv", (time.time() - 120, time.time() - 120))
    newer = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert newer.status is PullStatus.PULLED and newer.pulled == ["ILTB_FU.csv"]
    # Touched (a new time) but the same bytes: recognised by its sha256 and not landed again.
    os.utime(drop / "ILTB_ADVICE.csv", (time.time() - 60, time.time() - 60))
    touched = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert touched.status is PullStatus.NOTHING_NEW and touched.pulled == []
    assert [(f.name, f.reason) for f in touched.skipped] == [
        ("ILTB_ADVICE.csv", "re-uploaded with the same content as already pulled")]


def test_an_sftp_drop_zone_names_the_subfolders_it_does_not_read(tmp_path, home, sshd, exports):
    iltb = _exports_of(exports, "iltb")
    drop = _drop(tmp_path / "sftp" / "iltb", iltb)
    _drop(drop / "sub", {"ILTB_FU.csv": b"a delivery put in a subfolder"})
    (drop / ".ssh").mkdir()  # a server's own: not named
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    outcome = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and sorted(outcome.pulled) == sorted(iltb), outcome.message
    where = f"sftp://127.0.0.1:{sshd.port}{drop}"
    assert outcome.message.endswith(f"; the folder sub/ in {where} is not read: a pull reads the top of the drop "
                                    "zone only, not its subfolders (put the exports there)")
    assert outcome.message.count("sub/") == 1 and ".ssh" not in outcome.message
    assert _landed(home, "iltb")["ILTB_FU.csv"] == iltb["ILTB_FU.csv"]


def test_a_wrong_host_key_or_missing_credentials_fail_with_the_reason(tmp_path, home, sshd, exports, monkeypatch):
    drop = _drop(tmp_path / "sftp" / "iltb", _exports_of(exports, "iltb"))
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    monkeypatch.delenv("AIRFLOW_CONN_ILTB_SFTP", raising=False)
    missing = pull_source(home, "iltb", sources_dir=sources, policy=FAST)
    assert missing.status is PullStatus.FAILED
    assert "no credentials for connection 'iltb_sftp': set env AIRFLOW_CONN_ILTB_SFTP" in missing.message

    other_host = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    assert other_host.returncode == 0
    wrong = sshd.connection_uri(host_key=(tmp_path / "k.pub").read_text().split()[1])
    refused = pull_source(home, "iltb", connection_uri=wrong, sources_dir=sources, policy=FAST)
    assert refused.status is PullStatus.FAILED and "cannot be read" in refused.message
    assert "gave up after 3 attempts" in refused.message and _landed(home, "iltb") == {}

    stranger = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
                              check=True)
    assert stranger.returncode == 0
    not_ours = sshd.connection_uri().replace(quote(str(sshd.client_key), safe=""),
                                             quote(str(tmp_path / "stranger"), safe=""))
    denied = pull_source(home, "iltb", connection_uri=not_ours, sources_dir=sources, policy=FAST)
    assert denied.status is PullStatus.FAILED and "attempts" not in denied.message, denied.message
    assert "the SFTP server refused the credentials of connection 'iltb_sftp' (PermissionError)" in denied.message


def test_a_checksum_mismatch_is_refused_and_nothing_lands(tmp_path, home, sshd, exports):
    iltb = _exports_of(exports, "iltb")
    enrol = iltb["ILTB_ENROL.csv"]
    drop = _drop(tmp_path / "sftp" / "iltb", {"ILTB_ENROL.csv": enrol,
                                              "ILTB_ENROL.csv.sha256": f"{'0' * 64}  ILTB_ENROL.csv\n".encode(),
                                              "ILTB_FU.csv": iltb["ILTB_FU.csv"], "ILTB_FU.csv.sha256": b"pending"})
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    outcome = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED
    assert f"iltb: {drop}/ILTB_ENROL.csv from sftp://" in outcome.message
    assert f"its sha256 {_sha(enrol)} does not match the {'0' * 64}" in outcome.message
    assert f"{drop}/ILTB_FU.csv from sftp://127.0.0.1:{sshd.port}{drop} not pulled: its checksum sidecar " \
           "ILTB_FU.csv.sha256 holds no sha256 digest" in outcome.message
    assert _landed(home, "iltb") == {}  # no partial, no final file, no checksum
    assert not (home.root / "pulled" / "iltb.jsonl").exists()

    (drop / "ILTB_ENROL.csv.sha256").write_text(f"{_sha(enrol)}  ILTB_ENROL.csv\n")
    (drop / "ILTB_FU.csv.sha256").write_text(_sha(iltb["ILTB_FU.csv"]))  # the bare digest is read too
    fixed = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert fixed.status is PullStatus.PULLED and fixed.pulled == ["ILTB_ENROL.csv", "ILTB_FU.csv"]
    assert _landed(home, "iltb")["ILTB_ENROL.csv"] == enrol


def test_a_transfer_cut_mid_file_leaves_nothing_and_is_tried_again(tmp_path, home, sshd):
    big = b"SUBJID;RECORDNO;FUDAT\n" + b"".join(b"P%06d;%d;01/01/2026\n" % (i, i) for i in range(120_000))
    drop = _drop(tmp_path / "sftp" / "iltb", {"ILTB_FU.csv": big})
    os.utime(drop / "ILTB_FU.csv", (time.time() - 600, time.time() - 600))
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    cuts: list[int] = []
    seen_in_landing: list[list[str]] = []

    def cut_every_time(remote, received):  # the real SSH session is killed mid-file, at every attempt
        if received >= 256 << 10 and len(cuts) < FAST.attempts and received < remote.size:
            seen_in_landing.append(sorted(p.name for p in (home.landing / "iltb").iterdir()))
            cuts.append(sshd.cut_sessions())
            time.sleep(0.2)  # the sshd session is gone before the next read

    failed = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST,
                         progress=cut_every_time)
    assert len(cuts) == 3 and all(cuts)
    assert failed.status is PullStatus.FAILED, failed.message
    assert f"iltb: {drop}/ILTB_FU.csv from sftp://127.0.0.1:{sshd.port}" in failed.message
    assert "(gave up after 3 attempts); nothing landed, the next pull tries it again" in failed.message
    assert all(len(names) == 1 and names[0].startswith(".ILTB_FU.csv.") for names in seen_in_landing)
    assert _landed(home, "iltb") == {}  # neither the temporary dotfile nor a final file

    killed = home.landing / "iltb" / ".ILTB_FU.csv.dead1234.partial"  # as a pull killed with -9 leaves it
    killed.write_bytes(big[:1000])
    cut_once: list[int] = []

    def cut_first_attempt(remote, received):
        if received >= 256 << 10 and not cut_once:
            cut_once.append(sshd.cut_sessions())
            time.sleep(0.2)

    retried = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST,
                          progress=cut_first_attempt)
    assert cut_once and retried.status is PullStatus.PULLED, retried.message
    assert _landed(home, "iltb")["ILTB_FU.csv"] == big and not killed.exists()


# -- S3 --------------------------------------------------------------------------------------------
def test_s3_pull_with_credentials_from_the_environment(tmp_path, home, s3, exports, monkeypatch):
    registry = _exports_of(exports, "registry_it")
    _put(s3, "registry_it", registry)
    sources = _sources(tmp_path / "sources", {"registry_it": f"{{url: 's3://{BUCKET}/registry_it', "
                                                             f"connection: registry_s3}}"})
    monkeypatch.setenv("AIRFLOW_CONN_REGISTRY_S3", s3.connection_uri())  # rtw's way: Airflow's env convention

    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED, outcome.message
    assert outcome.pulled == list(registry)
    assert {n: d for n, d in _landed(home, "registry_it").items() if not n.endswith(".sha256")} == registry
    assert S3_SECRET not in outcome.model_dump_json()
    assert pull_source(home, "registry_it", sources_dir=sources, policy=FAST).status is PullStatus.NOTHING_NEW
    assert _keys(s3, "registry_it") == list(registry)  # never deleted unless the mapping says so

    # The same bytes uploaded again are not pulled again; new bytes under the same name are.
    name = next(iter(registry))
    _put(s3, "registry_it", {name: registry[name]})
    assert pull_source(home, "registry_it", sources_dir=sources, policy=FAST).status is PullStatus.NOTHING_NEW
    _put(s3, "registry_it", {name: registry[name] + b"\r\n"})
    changed = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert changed.pulled == [name] and _landed(home, "registry_it")[name] == registry[name] + b"\r\n"


def test_an_s3_drop_zone_names_the_prefixes_below_it_it_does_not_read(tmp_path, home, s3, exports, monkeypatch):
    registry = _exports_of(exports, "registry_it")
    _put(s3, "below", registry)
    _put(s3, "below/sub", {next(iter(registry)): b"a delivery put below the drop zone's prefix"})
    sources = _sources(tmp_path / "sources", {"registry_it": f"{{url: 's3://{BUCKET}/below', "
                                                             f"connection: registry_s3}}"})
    monkeypatch.setenv("AIRFLOW_CONN_REGISTRY_S3", s3.connection_uri())
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.pulled == list(registry), outcome.message
    assert outcome.message.endswith(f"; the folder sub/ in s3://{BUCKET}/below is not read: a pull reads the top "
                                    "of the drop zone only, not its subfolders (put the exports there)")
    assert {n: d for n, d in _landed(home, "registry_it").items() if not n.endswith(".sha256")} == registry


def test_s3_manifest_checksums_and_a_required_checksum(tmp_path, home, s3, exports):
    esmart = _exports_of(exports, "esmart")
    names = sorted(esmart)
    listed, unlisted = names[:-1], names[-1]
    manifest = "".join(f"{_sha(esmart[n])}  {n}\n" for n in listed)
    _put(s3, "esmart", esmart | {"SHA256SUMS": manifest.encode()})
    sources = _sources(tmp_path / "sources", {"esmart": f"{{url: 's3://{BUCKET}/esmart', connection: esmart_s3, "
                                                        "checksum: required, checksum_manifest: SHA256SUMS}"})
    outcome = pull_source(home, "esmart", connection_uri=s3.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.pulled == listed
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        (unlisted, f"waiting for its checksum ({unlisted}.sha256 or a line in SHA256SUMS)")]

    # A manifest line that does not match the bytes refuses the file; nothing of it lands.
    _put(s3, "esmart", {"SHA256SUMS": (manifest + f"{'a' * 64}  {unlisted}\n").encode()})
    refused = pull_source(home, "esmart", connection_uri=s3.connection_uri(), sources_dir=sources, policy=FAST)
    assert refused.status is PullStatus.FAILED and f"esmart: {BUCKET}/esmart/{unlisted}" in refused.message
    assert "does not match" in refused.message and unlisted not in _landed(home, "esmart")


def test_the_pull_fails_clearly_when_the_s3_server_is_down(tmp_path, home, s3, exports):
    sources = _sources(tmp_path / "sources", {"iltb": "{url: 's3://rtw-drop/iltb', connection: iltb_s3, "
                                                      "endpoint_url: 'http://127.0.0.1:9'}"})
    outcome = pull_source(home, "iltb", connection_uri=s3.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED
    assert outcome.message.startswith("iltb: the drop zone s3://rtw-drop/iltb cannot be read: ")
    assert "gave up after 3 attempts" in outcome.message and S3_SECRET not in outcome.message


# -- a local folder, deletion, zips ------------------------------------------------------------------
def test_a_local_folder_drop_zone_waits_for_quiet_files_and_deletes_only_when_told(tmp_path, home, exports):
    sacha = _exports_of(exports, "sacha_fr")
    drop = _drop(tmp_path / "mnt" / "sacha", sacha)
    name = next(iter(sacha))
    sources = _sources(tmp_path / "sources", {"sacha_fr": f"{{url: 'file://{drop}', quiet_seconds: 3600}}"})
    waiting = pull_source(home, "sacha_fr", sources_dir=sources, policy=FAST)
    assert waiting.status is PullStatus.NOTHING_NEW and _landed(home, "sacha_fr") == {}
    # its age in whole seconds: 0, or more on a busy machine
    assert re.search(rf"{re.escape(name)} \(changed \d+ s ago, within the quiet period of 3600 s", waiting.message)

    (drop / f"{name}.done").touch()  # the source declares the upload complete
    sources = _sources(tmp_path / "sources", {"sacha_fr": f"{{url: '{drop}', quiet_seconds: 3600, "
                                                          "delete_after_pull: true}"})
    pulled = pull_source(home, "sacha_fr", sources_dir=sources, policy=FAST)
    assert pulled.status is PullStatus.PULLED and _landed(home, "sacha_fr")[name] == sacha[name]
    assert list(drop.iterdir()) == []  # the file and its marker, deleted as the mapping says


def test_a_pull_mends_a_ledger_cut_short_by_a_crash_and_reads_an_earlier_versions_list(tmp_path, home, exports):
    iltb = _exports_of(exports, "iltb")
    drop = _drop(tmp_path / "mnt" / "iltb", iltb)
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: '{drop}', quiet_seconds: 0}}"})
    assert pull_source(home, "iltb", sources_dir=sources, policy=FAST).status is PullStatus.PULLED
    ledger = home.root / "pulled" / "iltb.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(iltb)
    ledger.write_bytes(b"".join(lines[:-1]) + lines[-1][:30])  # a crash while the last file was recorded
    again = pull_source(home, "iltb", sources_dir=sources, policy=FAST)
    assert again.status is PullStatus.PULLED and again.pulled == json.loads(lines[-1])["landed"]  # not recorded
    mended = ledger.read_text().splitlines()
    assert len(mended) == len(iltb) and all(json.loads(line) for line in mended)
    # A ledger as earlier versions wrote it, one JSON list, is read, and rewritten as lines.
    ledger.with_suffix(".json").write_text(json.dumps([json.loads(line) for line in mended], indent=1))
    ledger.unlink()
    assert pull_source(home, "iltb", sources_dir=sources, policy=FAST).status is PullStatus.NOTHING_NEW
    assert ledger.read_text().splitlines() == mended and not ledger.with_suffix(".json").exists()


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def test_zip_deliveries_are_unpacked_over_sftp(tmp_path, home, sshd, exports):
    iltb = _exports_of(exports, "iltb")
    delivery = _zip({f"export_20261101/{n}": d for n, d in iltb.items()} | {"export_20261101/notes.txt": b"x"})
    drop = _drop(tmp_path / "sftp" / "iltb", {"ILTB_20261101.zip": delivery})
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp, unzip: true}"})
    outcome = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.pulled == sorted(iltb)
    landed = _landed(home, "iltb")
    assert {n: d for n, d in landed.items() if not n.endswith(".sha256")} == iltb  # flat; the zip itself not kept
    assert pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources,
                       policy=FAST).status is PullStatus.NOTHING_NEW


@pytest.mark.parametrize(("members", "links", "reason"), [
    ({"../ILTB_ENROL.csv": b"a"}, None, "member '../ILTB_ENROL.csv' is a path with '..' (path traversal)"),
    ({"/etc/ILTB_ENROL.csv": b"a"}, None, "member '/etc/ILTB_ENROL.csv' is an absolute path (path traversal)"),
    ({"ILTB_FU.csv": b"a"}, {"ILTB_ENROL.csv": "/etc/passwd"}, "member 'ILTB_ENROL.csv' is a symbolic link"),
    ({"ILTB_FU.csv": b"a", "ILTB_ENROL.csv": bytes(24 << 20)}, None, "member 'ILTB_ENROL.csv' expands"),
])
def test_hostile_zips_are_refused_and_nothing_lands(tmp_path, home, members, links, reason):
    drop = _drop(tmp_path / "drop", {"ILTB_20261101.zip": _zip(members, links)})
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: '{drop}', unzip: true, quiet_seconds: 0}}"})
    outcome = pull_source(home, "iltb", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED
    assert f"iltb: {drop}/ILTB_20261101.zip from {drop} not pulled: {reason}" in outcome.message
    assert _landed(home, "iltb") == {} and not (tmp_path / "ILTB_ENROL.csv").exists()


def test_zip_limits_on_members_and_total_size(tmp_path):
    wanted = lambda name: name.endswith(".csv")  # noqa: E731
    many = tmp_path / "many.zip"
    many.write_bytes(_zip({f"F{i}.csv": b"x" for i in range(30)}))
    with pytest.raises(ZipRefused, match="30 members, more than the limit of 20"):
        unpack_zip(many, tmp_path / "out", wanted, limits=ZipLimits(max_members=20))
    large = tmp_path / "large.zip"
    large.write_bytes(_zip({"A.csv": os.urandom(600), "B.csv": os.urandom(600)}))
    with pytest.raises(ZipRefused, match="more than the limit of 1000 bytes uncompressed"):
        unpack_zip(large, tmp_path / "out", wanted, limits=ZipLimits(max_total_bytes=1000))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_landing_lacks_room_for_what_would_leave_less_free_than_the_pull_keeps(tmp_path):
    """One test of the free space for a download (NoRoom) and a zip's members (ZipRefused), ending both
    refusals alike. Margins of the whole disk: what other programs write meanwhile changes nothing."""
    disk = shutil.disk_usage(tmp_path).total
    assert lacking_room(tmp_path, 1 << 20, keep_free_bytes=0) is None
    for size, keep in ((disk, 0), (1, disk)):
        said = lacking_room(tmp_path, size, keep_free_bytes=keep)
        assert said is not None and re.fullmatch(rf"\d+ bytes free, of which {keep} are kept for the night's run", said)
    export = tmp_path / "REG.zip"
    export.write_bytes(_zip({"A.csv": b"x"}))
    (tmp_path / "out").mkdir()
    with pytest.raises(ZipRefused, match=rf"the 1 member\(s\) to land total 1 bytes uncompressed, more than landing "
                       rf"can take: it has \d+ bytes free, of which {disk} are kept for the night's run$"):
        unpack_zip(export, tmp_path / "out", lambda name: True, keep_free_bytes=disk)


# -- rtw pull, and a pull followed by a run ------------------------------------------------------------
def _rtw_pull(home: Home, sources: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    rtw = Path(sys.executable).with_name("rtw")
    return subprocess.run([str(rtw), "pull", *args, "--home", str(home.root)], capture_output=True, text=True,
                          env={**os.environ, "RTW_SOURCES_DIR": str(sources), "COLUMNS": "300", **env}, timeout=120)


def test_rtw_pull_prints_one_line_per_source_and_exits_1_when_one_failed(tmp_path, home, sshd, s3, exports):
    drop = _drop(tmp_path / "sftp" / "iltb", _exports_of(exports, "iltb"))
    _put(s3, "rtw_cli", _exports_of(exports, "registry_it"))
    sources = _sources(tmp_path / "sources", {
        "iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', connection: iltb_sftp}}",
        "registry_it": f"{{url: 's3://{BUCKET}/rtw_cli', connection: registry_s3}}"})
    sftp_env = {"AIRFLOW_CONN_ILTB_SFTP": sshd.connection_uri()}
    failed = _rtw_pull(home, sources, sftp_env)
    assert failed.returncode == 1, failed.stderr
    lines = failed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(SOURCES)
    assert lines[0] == ("crizotinib_imt: no drop zone (no delivery: in its mapping); exports are put into "
                        "landing/crizotinib_imt/ by hand")
    assert lines[2].startswith("iltb: pulled 6 file(s) from sftp://")  # one source's failure stops no other
    assert lines[3] == ("registry_it: no credentials for connection 'registry_s3': set env AIRFLOW_CONN_REGISTRY_S3 "
                        "to its connection URI (Airflow: the Connection 'registry_s3')")

    done = _rtw_pull(home, sources, sftp_env | {"AIRFLOW_CONN_REGISTRY_S3": s3.connection_uri()},
                     "iltb", "registry_it")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"iltb: nothing new in sftp://127.0.0.1:{sshd.port}{drop}"
    assert done.stdout.splitlines()[1].startswith("registry_it: pulled 1 file(s) from s3://rtw-drop/rtw_cli: TREP_")
    assert S3_SECRET not in done.stdout + done.stderr and "client_ed25519" not in done.stdout


def test_pull_all_then_run_loads_every_source(tmp_path, home, sshd, s3, exports, monkeypatch):
    """Every kind of drop zone at once, then the nightly import: the warehouse holds exactly the
    files the sources delivered."""
    drop = _drop(tmp_path / "sftp" / "iltb", _exports_of(exports, "iltb"))
    _put(s3, "e2e_registry", _exports_of(exports, "registry_it"))
    _put(s3, "e2e_esmart", _exports_of(exports, "esmart"))
    folder = _drop(tmp_path / "mnt" / "sacha", _exports_of(exports, "sacha_fr"))
    zipped = _drop(tmp_path / "mnt" / "crizotinib", {"CRIZ.zip": _zip(_exports_of(exports, "crizotinib_imt"))})
    sources = _sources(tmp_path / "sources", {
        "iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', connection: iltb_sftp}}",
        "registry_it": f"{{url: 's3://{BUCKET}/e2e_registry', connection: e2e_s3}}",
        "esmart": f"{{url: 's3://{BUCKET}/e2e_esmart', connection: e2e_s3, endpoint_url: '{s3.endpoint_url}'}}",
        "sacha_fr": f"{{url: '{folder}', quiet_seconds: 0}}",
        "crizotinib_imt": f"{{url: 'file://{zipped}', unzip: true, quiet_seconds: 0}}"})
    monkeypatch.setenv("AIRFLOW_CONN_ILTB_SFTP", sshd.connection_uri())
    monkeypatch.setenv("AIRFLOW_CONN_E2E_S3", s3.connection_uri())

    outcomes = pull_all(home, sources_dir=sources, policy=FAST)
    assert [(o.source_id, o.status) for o in outcomes] == [(s, PullStatus.PULLED) for s in SOURCES], \
        [o.message for o in outcomes]
    summary = pipeline.run(home, key_value="pull-test-key", sources_dir=sources)
    assert summary.sources_failed == [] and sorted(summary.sources_changed) == sorted(SOURCES), summary.message
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        loaded = set(con.execute("select source_id, source_file_sha256 from meta.source_file "
                                 "where status = 'loaded'").fetchall())
    finally:
        con.close()
    delivered = {(s, _sha(d)) for s in SOURCES for d in _exports_of(exports, s).values()}
    assert loaded == delivered


def _status(home: Home) -> subprocess.CompletedProcess[str]:
    rtw = Path(sys.executable).with_name("rtw")
    return subprocess.run([str(rtw), "status", "--home", str(home.root)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"}, timeout=120, check=False)


def test_a_night_whose_only_failure_was_its_pull_says_so_in_rtw_status(tmp_path, home, sshd, exports):
    """The import loads what landing holds: the night published `completed`, and only its verdict and the
    notification said the pull had failed. rtw status now names the source and why, on the run that went on
    without it, and on its own row while no run has followed."""
    for source_id in SOURCES:
        if source_id != "iltb":
            shutil.copytree(exports / source_id, home.landing / source_id)
    iltb = _exports_of(exports, "iltb")
    drop = _drop(tmp_path / "sftp" / "iltb", iltb)
    sources = _sources(tmp_path / "sources", {"iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{drop}', "
                                                      "connection: iltb_sftp}"})
    assert pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources,
                       policy=FAST).status is PullStatus.PULLED
    first = pipeline.run(home, key_value="pull-test-key", sources_dir=sources)
    assert first.status == "completed", first.message

    follow_up = iltb["ILTB_FU.csv"] + iltb["ILTB_FU.csv"].splitlines(keepends=True)[-1]  # re-sent, one row more
    _drop(drop, {"ILTB_FU.csv": follow_up, "ILTB_FU.csv.sha256": f"{'0' * 64}  ILTB_FU.csv\n".encode()})
    refused = pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources, policy=FAST)
    assert refused.status is PullStatus.FAILED
    why = f"iltb: {drop}/ILTB_FU.csv from sftp://127.0.0.1:{sshd.port}{drop} not pulled: its sha256 {_sha(follow_up)}"
    waiting = _status(home)
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert [[*r[2:5], r[-1][:len(why)]] for r in last_runs(waiting.stdout)[:2]] == [
        ["pull", "failed", "pull", why], ["cli", "completed", "", ""]]  # no run has followed yet

    second = pipeline.run(home, key_value="pull-test-key", sources_dir=sources)
    assert second.status == "completed" and second.sources_failed == []  # what landing held was imported
    shown = _status(home).stdout
    rows = last_runs(shown)
    assert [(r[1], r[3]) for r in rows] == [(second.run_id, "completed"), (first.run_id, "completed")]
    assert rows[0][-1].startswith(f"pull failed: {why}") and rows[1][-1] == ""
    statuses = [line.split("│")[4].strip() for line in shown.split("Source files")[0].splitlines() if "│" in line]
    assert statuses == ["completed", "pull failed", "completed"]  # said under the run's status too

    (drop / "ILTB_FU.csv.sha256").write_text(_sha(follow_up))
    assert pull_source(home, "iltb", connection_uri=sshd.connection_uri(), sources_dir=sources,
                       policy=FAST).status is PullStatus.PULLED
    third = pipeline.run(home, key_value="pull-test-key", sources_dir=sources)
    rows = last_runs(_status(home).stdout)
    assert [(r[1], r[-1][:13]) for r in rows] == [(third.run_id, ""), (second.run_id, "pull failed: "),
                                                  (first.run_id, "")]


# -- the sensor's trigger, against the real servers ---------------------------------------------------
async def _first_event(trigger, *, during=None):
    events = trigger.run()
    if during is not None:
        threading.Timer(0.6, during).start()
    event = await asyncio.wait_for(anext(events), timeout=30)
    return event.payload


def _trigger(home: Home, sources: Path, source_id: str, *, connection: str | None, seconds: float):
    from datetime import UTC, datetime, timedelta

    from etl.pull.sensor import DropZoneTrigger

    deadline = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    trigger = DropZoneTrigger(source_id=source_id, home=str(home.root), sources_dir=str(sources),
                              connection_id=connection, deadline=deadline, poke_interval=0.2)
    path, kwargs = trigger.serialize()
    assert path == "etl.pull.sensor.DropZoneTrigger" and "sftp://" not in json.dumps(kwargs)  # no secret in it
    return DropZoneTrigger(**kwargs)


def test_the_trigger_fires_when_an_export_appears_and_times_out_at_the_deadline(tmp_path, home, s3, sshd, exports,
                                                                                monkeypatch):
    registry = _exports_of(exports, "registry_it")
    sources = _sources(tmp_path / "sources", {
        "registry_it": f"{{url: 's3://{BUCKET}/sensor_registry', connection: sensor_s3}}",
        "iltb": f"{{url: 'sftp://127.0.0.1:{sshd.port}{tmp_path / 'sftp'}', connection: sensor_sftp}}"})
    monkeypatch.setenv("AIRFLOW_CONN_SENSOR_S3", s3.connection_uri())
    monkeypatch.setenv("AIRFLOW_CONN_SENSOR_SFTP", sshd.connection_uri())
    _drop(tmp_path / "sftp", {})

    timed_out = asyncio.run(_first_event(_trigger(home, sources, "registry_it", connection="sensor_s3", seconds=1)))
    assert timed_out["status"] == "deadline" and timed_out["message"].startswith("registry_it: no new export by")
    assert "last look" not in timed_out["message"]  # the empty prefix was read, not unreachable

    appeared = asyncio.run(_first_event(_trigger(home, sources, "registry_it", connection="sensor_s3", seconds=20),
                                        during=lambda: _put(s3, "sensor_registry", registry)))
    assert appeared["status"] == "new_export" and appeared["files"] == list(registry)

    sftp_file = {"ILTB_ENROL.csv": _exports_of(exports, "iltb")["ILTB_ENROL.csv"]}
    over_sftp = asyncio.run(_first_event(_trigger(home, sources, "iltb", connection="sensor_sftp", seconds=20),
                                         during=lambda: _drop(tmp_path / "sftp", sftp_file)))
    assert over_sftp["status"] == "new_export" and over_sftp["files"] == ["ILTB_ENROL.csv"]

    # Once pulled, the export is no longer new: the sensor would wait for the next one.
    assert pull_source(home, "iltb", sources_dir=sources, policy=FAST).status is PullStatus.PULLED
    assert check_drop_zone(home, "iltb", sources_dir=sources).state is DropZoneState.NOTHING_NEW


def test_the_sensor_succeeds_at_once_or_defers_to_its_trigger(tmp_path, home, s3, exports, monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    from etl.pull.sensor import DropZoneSensor, DropZoneTrigger

    sources = _sources(tmp_path / "sources", {
        "registry_it": f"{{url: 's3://{BUCKET}/sensor_defer', connection: defer_s3, wait_minutes: 30}}"})
    monkeypatch.setenv("AIRFLOW_CONN_DEFER_S3", s3.connection_uri())

    empty = check_drop_zone(home, "registry_it", sources_dir=sources)  # an S3 prefix with no objects yet
    assert empty.state is DropZoneState.NOTHING_NEW, empty.message

    def sensor(source_id: str) -> DropZoneSensor:
        return DropZoneSensor(task_id=f"wait_{source_id}", source_id=source_id, home=str(home.root),
                              sources_dir=str(sources), poke_interval=30)

    assert sensor("iltb").execute({})["status"] == "no_drop_zone"
    with pytest.raises(TaskDeferred) as deferred:
        sensor("registry_it").execute({})
    assert isinstance(deferred.value.trigger, DropZoneTrigger)
    assert deferred.value.trigger.connection_id == "defer_s3" and deferred.value.trigger.poke_interval == 30
    _put(s3, "sensor_defer", _exports_of(exports, "registry_it"))
    assert sensor("registry_it").execute({})["status"] == "new_export"


# -- connection URIs -----------------------------------------------------------------------------------
def test_airflow_connection_uris_and_json_are_read_alike():
    uri = parse_connection("sftp://data%40centre:p%40ss%2Fw@sftp.example.org:2222/?key_file=%2Fkeys%2Fid&"
                           "no_host_key_check=false")
    assert (uri.login, uri.password.get_secret_value(), uri.host, uri.port) == \
        ("data@centre", "p@ss/w", "sftp.example.org", 2222)
    assert uri.option("key_file") == "/keys/id" and uri.flag("no_host_key_check") is False
    assert "p@ss/w" not in repr(uri) and "/keys/id" not in repr(uri)
    extra = parse_connection('aws://AKIA:secret@/?__extra__=%7B%22endpoint_url%22%3A+%22http%3A%2F%2Fs3%22%7D')
    assert extra.option("endpoint_url") == "http://s3" and extra.host is None
    as_json = parse_connection('{"conn_type": "aws", "login": "AKIA", "password": "secret", '
                               '"extra": {"region_name": "eu-west-3"}}')
    assert as_json.option("region_name") == "eu-west-3" and as_json.password.get_secret_value() == "secret"
    with pytest.raises(CredentialsError, match="iltb: not an Airflow connection URI") as caught:
        parse_connection("secret-without-scheme", connection_id="iltb")
    assert "secret-without-scheme" not in str(caught.value)


def test_the_sensor_module_is_light_and_the_pull_never_imports_airflow():
    """The DAG imports the sensor when it is parsed (no DuckDB, pandas, mapping engine then); `rtw pull`
    runs without Airflow."""
    probe = ("import sys, etl.pull.sensor; print(sorted(m for m in ('pandas', 'duckdb', 'pyarrow', "
             "'great_expectations', 'etl.pipeline', 'etl.transform.mapping', 'sshfs', 's3fs') if m in sys.modules))")
    parsed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert parsed.stdout.strip() == "[]"
    probe = "import sys, etl.cli, etl.pull.deliveries; print(any(m.startswith('airflow') for m in sys.modules))"
    pulled = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert pulled.stdout.strip() == "False"
