"""The pull from a folder drop zone against what senders really do: files corrected back to an earlier
version, stale markers, a new version uploaded mid-pull, links swapped in, names no landing can hold."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from drop_zone import registry_sources, send

from etl.config import SOURCES_DIR, Home
from etl.pull import PullPolicy, PullStatus, pull_source
from etl.pull.deliveries import DropZoneState, check_drop_zone
from etl.pull.dropzone import _remote
from etl.pull.ledger import ledger_folder
from etl.transform.mapping import MappingError, load_mapping

FAST = PullPolicy(attempts=3, backoff_seconds=0.01)
EXPORT = "TREP_export_2024.csv"
A = b"codice_paziente;version\n1;A\n"
B = b"codice_paziente;version\n1;B, a longer correction\n"


def _pull(home: Home, sources: Path, **kwargs):
    return pull_source(home, "registry_it", sources_dir=sources, policy=FAST, **kwargs)


def _landed(home: Home) -> dict[str, bytes]:
    folder = home.landing / "registry_it"
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".sha256")}


def test_a_file_corrected_back_to_an_earlier_version_lands_again(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    for age, data in ((7200, A), (5400, B), (3600, A)):  # A, then B, then A again under the same name
        send(drop / EXPORT, data, age)
        outcome = _pull(home, sources)
        assert outcome.status is PullStatus.PULLED, outcome.message
        assert _landed(home) == {EXPORT: data}
    send(drop / EXPORT, A, 1800)  # the same bytes once more: nothing new
    again = _pull(home, sources)
    assert again.status is PullStatus.NOTHING_NEW and "same content as already pulled" in again.message


def test_a_stale_checksum_beside_a_changed_file_is_a_mismatch_not_a_skip(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / EXPORT, A, 7200)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    send(drop / EXPORT, B, 3600)  # new bytes, the old sidecar left beside them
    refused = _pull(home, sources)
    assert refused.status is PullStatus.FAILED and _landed(home) == {EXPORT: A}
    assert "checksum" in refused.message and EXPORT in refused.message, refused.message
    # the sender fixes the sidecar: the new bytes land (the ledger recorded nothing false)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(B).hexdigest().encode(), 60)
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: B}


@pytest.mark.parametrize(("written", "age"), [(b"", 3600), (b"3f2a", 5)], ids=["empty", "half-written"])
def test_a_checksum_sidecar_still_being_written_leaves_its_export_for_later(tmp_path, home, drop, written, age):
    """A hunt: `sha256sum x > x.sha256` makes the sidecar empty first; a pull then failed the source (the night
    red), where an empty export is left for later."""
    sources = registry_sources(tmp_path, drop)
    send(drop / EXPORT, A)
    send(drop / f"{EXPORT}.sha256", written, age)
    waiting = _pull(home, sources)
    assert waiting.status is PullStatus.NOTHING_NEW and _landed(home) == {}, waiting.message
    assert "holds no digest yet" in waiting.skipped[0].reason
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode())
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: A}


def test_a_manifest_declaring_new_bytes_beside_a_stale_sidecar_is_a_mismatch_said_not_a_skip(tmp_path, home, drop):
    """A hunt: a correction of the same size and time, declared by the manifest, was taken for the file already
    pulled: the sidecar pulled beside it (left there) was read first, and the manifest never."""
    sources = registry_sources(tmp_path, drop, ", checksum_manifest: SHA256SUMS")
    send(drop / EXPORT, A, 7200)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    same_size = A.replace(b";A", b";C")
    was = (drop / EXPORT).stat()
    (drop / EXPORT).write_bytes(same_size)
    os.utime(drop / EXPORT, ns=(was.st_atime_ns, was.st_mtime_ns))  # same size, same time (touch -r, rsync -t)
    send(drop / "SHA256SUMS", f"{hashlib.sha256(same_size).hexdigest()}  {EXPORT}\n".encode(), 60)
    refused = _pull(home, sources)
    assert refused.status is PullStatus.FAILED and _landed(home) == {EXPORT: A}
    assert "does not match" in refused.message and EXPORT in refused.message, refused.message
    (drop / f"{EXPORT}.sha256").unlink()  # the sender takes the stale sidecar away: the manifest's bytes land
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: same_size}


def test_a_marker_older_than_its_file_declares_nothing(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / EXPORT, A, 7200)
    send(drop / f"{EXPORT}.done", b"", 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    send(drop / EXPORT, B[: len(B) // 2], 1)  # tonight's file, half rewritten in place; yesterday's marker
    waiting = _pull(home, sources)
    assert waiting.status is PullStatus.NOTHING_NEW and "within the quiet period" in waiting.message
    assert _landed(home) == {EXPORT: A}
    (drop / f"{EXPORT}.done").touch()  # written after the file: complete
    assert _pull(home, sources).status is PullStatus.PULLED


def test_delete_after_pull_leaves_a_version_uploaded_during_the_pull(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", delete_after_pull: true")
    send(drop / EXPORT, A)

    def upload_b(remote, so_far):  # the sender uploads B (written aside, renamed in) while A downloads
        if not (drop / ".uploaded").exists():
            send(drop / ".upload", B, 10)
            os.replace(drop / ".upload", drop / EXPORT)
            (drop / ".uploaded").touch()

    outcome = _pull(home, sources, progress=upload_b)  # A is superseded before it lands: nothing lands tonight
    assert outcome.status is PullStatus.NOTHING_NEW and _landed(home) == {}
    assert (drop / EXPORT).read_bytes() == B and "changed while it was read" in outcome.message
    os.utime(drop / EXPORT, (time.time() - 3600,) * 2)
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: B}
    assert not (drop / EXPORT).exists()


def test_delete_after_pull_keeps_a_checksum_written_again_during_the_pull(tmp_path, home, drop):
    """A hunt: the markers were deleted as listed, unlooked at: the sender's next delivery's checksum, written while
    the pull ran, went with them, and that delivery then landed unchecked (or waited for ever, checksums required)."""
    sources = registry_sources(tmp_path, drop, ", delete_after_pull: true")
    send(drop / EXPORT, A)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode())
    nexts = f"{hashlib.sha256(B).hexdigest()}  {EXPORT}\n".encode()

    def next_delivery(remote, so_far):
        if remote.name == EXPORT and not (drop / ".begun").exists():
            (drop / ".begun").touch()
            send(drop / f"{EXPORT}.sha256", nexts, 0)

    outcome = _pull(home, sources, progress=next_delivery)
    assert outcome.status is PullStatus.PULLED and _landed(home) == {EXPORT: A}
    assert not (drop / EXPORT).exists() and (drop / f"{EXPORT}.sha256").read_bytes() == nexts
    assert f"{EXPORT}.sha256 not deleted from the drop zone: written again while {EXPORT} was pulled" in outcome.message


def test_a_link_swapped_in_after_the_listing_is_not_followed(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    secret = tmp_path / "elsewhere.key"
    secret.write_bytes(b"k" * 40)
    first, second = drop / "TREP_export_2024a.csv", drop / "TREP_export_2024b.csv"
    send(first, A)
    send(second, b"x" * 40)  # a regular file when listed

    def swap(remote, so_far):
        if remote.name == first.name and not second.is_symlink():
            second.unlink()
            second.symlink_to(secret)

    outcome = _pull(home, sources, progress=swap)
    assert outcome.status is PullStatus.FAILED and "became a link after it was listed" in outcome.message
    assert _landed(home) == {first.name: A}


def test_names_landing_cannot_hold_are_refused_and_others_land(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    accented, broken, long = "TREP_export_Forlì.csv", "TREP_export_x\nregistry_it: pulled.csv", \
        f"TREP_export_{'x' * 230}.csv"
    for name in (accented, broken, long):
        send(drop / name, A)
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.FAILED and set(_landed(home)) == {accented}
    assert "\n" not in outcome.message and "TREP_export_x\\nregistry_it" in outcome.message
    assert "its name holds a control character" in outcome.message
    assert "bytes long, landing keeps names of at most 237" in outcome.message
    sidecar = home.landing / "registry_it" / f"{accented}.sha256"
    assert sidecar.read_text(encoding="utf-8").split() == [hashlib.sha256(A).hexdigest(), accented]


def test_without_checksums_the_wait_names_only_the_done_marker(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", checksum: none")
    send(drop / EXPORT, A, 1)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode(), 1)
    waiting = _pull(home, sources)
    assert waiting.status is PullStatus.NOTHING_NEW
    assert f"a marker file {EXPORT}.done beside it, written after it, declares it complete" in waiting.message


def test_the_sensor_counts_only_what_a_pull_would_land(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / EXPORT, A, 7200)
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    send(drop / EXPORT, A, 3600)  # re-uploaded unchanged, its checksum beside it
    send(drop / f"{EXPORT}.sha256", hashlib.sha256(A).hexdigest().encode(), 3600)
    send(drop / f"TREP_export_{'x' * 230}.csv", A)  # refused by every pull
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NOTHING_NEW, look.message
    send(drop / "TREP_export_2025.csv", B)
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NEW_EXPORT and look.waiting == ["TREP_export_2025.csv"]


@pytest.mark.parametrize("url", ["s3://AKIAEXAMPLE:wJalr-SECRET@rtw-drop/registry_it",
                                 "sftp://host/out?password=wJalr-SECRET", "ftp://u:wJalr-SECRET@host/",
                                 "file://u:wJalr-SECRET@nas/out"])
def test_a_refused_drop_zone_url_is_shown_without_its_credentials(tmp_path, url):
    mapping = tmp_path / "registry_it.yaml"
    mapping.write_text((SOURCES_DIR / "registry_it.yaml").read_text() + f"\ndelivery: {{url: '{url}'}}\n")
    with pytest.raises(MappingError) as refused:
        load_mapping(mapping)
    assert "delivery.url" in str(refused.value) and "SECRET" not in str(refused.value)


def test_a_passphrase_protected_key_is_read_and_a_missing_key_file_is_said_at_once(tmp_path):
    import asyncssh

    from etl.pull.credentials import CredentialsError, parse_connection
    from etl.pull.dropzone import _sftp_options

    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh", "RightPass").decode()
    given = parse_connection(json.dumps({"conn_type": "sftp", "login": "rtw", "extra": {
        "private_key": key, "private_key_passphrase": "RightPass", "no_host_key_check": True}}))
    assert len(_sftp_options("127.0.0.1", 22, None, given, "registry_it")["client_keys"]) == 1
    missing = parse_connection(json.dumps({"conn_type": "sftp", "login": "rtw",
                                           "extra": {"key_file": str(tmp_path / "id_ed25519")}}))
    with pytest.raises(CredentialsError, match="registry_it: the key_file of its connection is not a file"):
        _sftp_options("127.0.0.1", 22, None, missing, "registry_it")


@pytest.mark.parametrize("stamp", [999_999_999_999, -99_999_999_999_999])
def test_a_file_time_no_calendar_holds_is_that_file_s_alone(stamp):
    """A hunt: a file in the drop zone dated year 33658 (a sender may set any time; tmpfs and SFTP keep it) failed
    the listing, the whole source with it, naming no file. Far ahead, it waits as a time ahead of this clock does;
    far behind, it is old."""
    listed = _remote({"name": "/zone/TREP_export_20261101.csv", "size": 3, "type": "file", "mtime": stamp})
    assert listed.modified == (datetime.max if stamp > 0 else datetime.min).replace(tzinfo=UTC)


def test_a_pull_held_by_another_of_its_source_waits_a_while_then_says_so(tmp_path, home, drop, monkeypatch):
    """A hunt: the pull waited for the lock without end, and `rtw pull`, going through the sources in turn, pulled
    none after a source whose pull hung on its drop zone."""
    sources = registry_sources(tmp_path, drop)
    send(drop / EXPORT, A)
    monkeypatch.setenv("RTW_PULL_WAIT", "0.5")
    folder = ledger_folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "registry_it.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        busy = _pull(home, sources)
        assert time.monotonic() - started < 30
    assert busy.status is PullStatus.FAILED and _landed(home) == {}
    assert "another pull of registry_it held it for 0.5 s" in busy.message, busy.message
    assert _pull(home, sources).status is PullStatus.PULLED  # the lock let go: pulled
