"""The pull against messy deliveries: names no listing can decode, checksum files that name other
files, zip members named as no landing file may be, key files others can read. Over a real OpenSSH
server on 127.0.0.1 (tests/transport_servers.py) and a local folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from urllib.parse import quote

import pytest
from drop_zone import registry_sources, send, zipped
from transport_servers import SshServer, start_sshd

from etl.config import Home
from etl.pull import PullPolicy, PullStatus, pull_source

FAST = PullPolicy(attempts=3, backoff_seconds=0.01)
A = b"codice_paziente;version\n1;A\n"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> SshServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _landed(home: Home) -> dict[str, bytes]:
    folder = home.landing / "registry_it"
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".sha256")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.transport
def test_a_name_that_is_not_utf8_fails_that_file_not_the_sftp_listing(tmp_path, home, drop, sshd):
    send(drop / os.fsdecode(b"TREP_export_\xff.csv"), A)
    send(drop / "TREP_export_2024.csv", A)
    sources = registry_sources(tmp_path, f"sftp://127.0.0.1:{sshd.port}{drop}", ", connection: registry_it_sftp")
    outcome = pull_source(home, "registry_it", connection_uri=sshd.connection_uri(), sources_dir=sources,
                          policy=FAST)
    assert outcome.status is PullStatus.FAILED and _landed(home) == {"TREP_export_2024.csv": A}
    assert (f"{drop}/TREP_export_\\udcff.csv from sftp://127.0.0.1:{sshd.port}{drop} not pulled: its name holds a "
            "byte that is not UTF-8 (TREP_export_\\udcff.csv): rename it in the drop zone") in outcome.message


@pytest.mark.parametrize(("members", "reason"), [
    ({"TREP_export_\nregistry_it: pulled.csv": A, "TREP_export_2024.csv": A},
     "member 'TREP_export_\\nregistry_it: pulled.csv' cannot land: its name holds a control character"),
    ({f"TREP_export_{'x' * 240}.csv": A, "TREP_export_2024.csv": A},
     "cannot land: its name is 256 bytes long, landing keeps names of at most 237"),
    ({"TREP_export_2024.csv": A, "out/TREP_EXPORT_2024.csv": b"x", "TREP_export_2024.CSV": b"y",
      "TREP_export_a.csv": A, "TREP_export_A.csv": A + b"2;B\n"},
     "members 'TREP_export_a.csv' and 'TREP_export_A.csv' differ only in case"),
])
def test_a_zip_with_members_no_landing_file_may_be_named_as_is_refused_whole(tmp_path, home, drop, members, reason):
    send(drop / "TREP_2024.zip", zipped(members))
    sources = registry_sources(tmp_path, f"{drop}", ", unzip: true")
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and "attempt" not in outcome.message  # said at once, not retried
    assert outcome.message.startswith(f"registry_it: {drop}/TREP_2024.zip from {drop} not pulled: ")
    assert reason in outcome.message
    assert "\n" not in outcome.message and list((home.landing / "registry_it").iterdir()) == []


@pytest.mark.parametrize(("sidecar", "outcome_says"), [
    (f"{_sha(A)}  TREP_export_2024.csv\n", "pulled 1 file(s)"),
    (f"{_sha(A)}\n", "pulled 1 file(s)"),
    (f"{_sha(A)}  -\n", "pulled 1 file(s)"),  # sha256sum < file
    (f"{_sha(b'the other')}  TREP_export_2023.csv\r\n{_sha(A)} *TREP_export_2024.csv\r\n", "pulled 1 file(s)"),
    (f"{_sha(b'the other')}  TREP_export_2023.csv\n",
     "TREP_export_2024.csv from {drop} not pulled: its checksum sidecar TREP_export_2024.csv.sha256 declares the "
     "checksum of another file, not of TREP_export_2024.csv (expected '<sha256>  TREP_export_2024.csv'); nothing "
     "landed"),
])
def test_a_checksum_sidecar_is_read_for_the_file_it_names(tmp_path, home, drop, sidecar, outcome_says):
    send(drop / "TREP_export_2024.csv", A)
    send(drop / "TREP_export_2024.csv.sha256", sidecar.encode())
    outcome = pull_source(home, "registry_it", sources_dir=registry_sources(tmp_path, drop), policy=FAST)
    assert outcome_says.format(drop=drop) in outcome.message
    assert _landed(home) == ({"TREP_export_2024.csv": A} if outcome.status is PullStatus.PULLED else {})


@pytest.mark.transport
def test_credentials_files_other_accounts_can_read_or_write_are_refused(tmp_path, home, drop, sshd):
    send(drop / "TREP_export_2024.csv", A)
    sources = registry_sources(tmp_path, f"sftp://127.0.0.1:{sshd.port}{drop}", ", connection: registry_it_sftp")
    key = tmp_path / "id_ed25519"
    shutil.copy(sshd.client_key, key)
    key.chmod(0o644)
    shared_key = sshd.connection_uri().replace(quote(str(sshd.client_key), safe=""), quote(str(key), safe=""))
    refused = pull_source(home, "registry_it", connection_uri=shared_key, sources_dir=sources, policy=FAST)
    assert refused.status is PullStatus.FAILED and "attempt" not in refused.message
    assert ("registry_it: the key_file of its connection is readable or writable by other accounts (mode 0644): "
            "chmod 600 that file") in refused.message and str(key) not in refused.message
    assert not (home.landing / "registry_it").exists() or _landed(home) == {}

    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
    known.chmod(0o666)
    key.chmod(0o600)
    pinned_by_file = f"{shared_key.split('&host_key=')[0]}&known_hosts={quote(str(known), safe='')}"
    forged = pull_source(home, "registry_it", connection_uri=pinned_by_file, sources_dir=sources, policy=FAST)
    assert forged.status is PullStatus.FAILED and "the known_hosts of its connection is writable by other " \
        "accounts (any of them could vouch for a server of its own) (mode 0666): chmod 644 that file" in forged.message

    known.chmod(0o644)
    pulled = pull_source(home, "registry_it", connection_uri=pinned_by_file, sources_dir=sources, policy=FAST)
    assert pulled.status is PullStatus.PULLED and _landed(home) == {"TREP_export_2024.csv": A}


def test_a_file_larger_than_landing_can_take_is_refused_before_a_byte_is_written(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    export = drop / "TREP_export_2024.csv"
    # What must stay free is the policy's: a small file is refused when landing cannot spare it (asked
    # first: without the check, the terabyte below would be written until the disk is full).
    send(export, A)
    whole_disk = PullPolicy(attempts=1, keep_free_bytes=shutil.disk_usage(home.landing).total)
    assert pull_source(home, "registry_it", sources_dir=sources, policy=whole_disk).status is PullStatus.FAILED
    assert list((home.landing / "registry_it").iterdir()) == []

    with export.open("wb") as out:  # a terabyte that costs the sender nothing
        out.truncate(1 << 40)
    stamp = time.time() - 3600
    os.utime(export, (stamp, stamp))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and "attempt" not in outcome.message
    assert f"{export} from {drop} not pulled: it is {1 << 40} bytes, and landing has " in outcome.message
    assert "are kept for the night's run; nothing landed" in outcome.message
    assert list((home.landing / "registry_it").iterdir()) == []

    send(export, A)
    assert pull_source(home, "registry_it", sources_dir=sources, policy=FAST).status is PullStatus.PULLED
    assert _landed(home) == {export.name: A}
