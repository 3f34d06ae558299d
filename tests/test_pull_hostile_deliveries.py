"""The pull from a folder drop zone against deliveries that go or lie: a file taken back between the
listing and its download, a zip of many small members that together unpack as a zip bomb does, a zip
whose directory declares its members' compressed sizes larger than they are."""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from pathlib import Path

import pytest
from drop_zone import registry_sources, send, zipped

from etl.config import Home
from etl.pull import PullPolicy, PullStatus, pull_source
from etl.pull.dropzone import DropZone, Listing, RemoteFile
from etl.pull.ledger import read_ledger
from etl.pull.unzip import ZipLimits, ZipRefused, check_zip

FAST = PullPolicy(attempts=3, backoff_seconds=0.01)
EXPORT = b"codice_paziente;version\n1;A\n"


def _landed(home: Home) -> list[str]:
    folder = home.landing / "registry_it"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".sha256")) if folder.exists() else []


def test_a_file_taken_back_after_the_listing_is_left_not_failed(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n")

    def take_back(remote: RemoteFile, received: int) -> None:  # the sender removes the second while the first comes
        if remote.name == "TREP_export_20261101.csv":
            (drop / "TREP_export_20261102.csv").unlink(missing_ok=True)

    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST, progress=take_back)
    assert outcome.status is PullStatus.PULLED and outcome.failures == [], outcome.message
    assert _landed(home) == ["TREP_export_20261101.csv"]
    assert [(s.name, s.reason.split(";")[0]) for s in outcome.skipped] == [
        ("TREP_export_20261102.csv", "it was removed after it was listed")]
    assert [Path(e.remote_path).name for e in read_ledger(home, "registry_it").entries] == ["TREP_export_20261101.csv"]


def test_a_zip_of_many_small_members_that_expand_as_a_bomb_is_refused(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    # 40 members of 1 MiB of zeros: none over the size a member's ratio is judged at; 40 MiB from 40 kB
    send(drop / "REG_2026.zip", zipped({f"TREP_export_{n:04d}.csv": bytes(1 << 20) for n in range(40)}))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and "attempt" not in outcome.message, outcome.message
    assert "not pulled: the 40 member(s) to land expand" in outcome.message
    assert "times together (41943040 bytes), more than the limit of 200 (a zip bomb?)" in outcome.message
    assert _landed(home) == [] and read_ledger(home, "registry_it").entries == []


def _declaring_compressed(zip_bytes: bytes, declared: int) -> bytes:
    """The zip with every member's compressed size declared as `declared` bytes, in the central directory and in
    each local header: the sender writes both, and a member's deflate stream ends by itself whatever they say."""
    patched = bytearray(zip_bytes)
    end = patched.rfind(b"PK\x05\x06")  # the end of central directory record
    (count,) = struct.unpack_from("<H", patched, end + 10)
    (entry,) = struct.unpack_from("<I", patched, end + 16)
    for _ in range(count):
        struct.pack_into("<I", patched, entry + 20, declared)
        (local,) = struct.unpack_from("<I", patched, entry + 42)
        struct.pack_into("<I", patched, local + 18, declared)
        name, extra, comment = struct.unpack_from("<HHH", patched, entry + 28)
        entry += 46 + name + extra + comment
    return bytes(patched)


def test_a_zip_declaring_its_members_larger_compressed_than_they_are_is_judged_by_its_real_size(tmp_path, home,
                                                                                                  drop):
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    # 40 members of 1 MiB of zeros, each declared 1 MiB compressed: expanding once, by what the zip says
    lying = _declaring_compressed(zipped({f"TREP_export_{n:04d}.csv": bytes(1 << 20) for n in range(40)}), 1 << 20)
    send(drop / "REG_2026.zip", lying)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED, outcome.message
    ratio = (40 << 20) // len(lying)
    assert f"the 40 member(s) to land expand {ratio} times together (41943040 bytes)" in outcome.message
    assert _landed(home) == [] and read_ledger(home, "registry_it").entries == []


def test_a_member_declared_larger_compressed_than_its_zip_is_judged_by_the_zip_size(tmp_path):
    """check_zip alone (the returned query workbooks' guard, etl/quality/responses.py): one member's ratio."""
    path = tmp_path / "REG_2026.zip"
    path.write_bytes(_declaring_compressed(zipped({"TREP_export_0001.csv": bytes(4 << 20)}), 4 << 20))
    with zipfile.ZipFile(path) as archive, pytest.raises(ZipRefused, match=r"member 'TREP_export_0001\.csv' expands "
                                                          r"\d+ times \(4194304 bytes\), more than the limit of 200"):
        check_zip(archive, ZipLimits())


def test_a_zip_of_small_exports_that_compress_as_exports_do_lands(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    rows = b"".join(b"%d;%d\n" % (n, n * 7919 % 10007) for n in range(200_000))  # ~2 MiB, compressing ~3x
    send(drop / "REG_2026.zip", zipped({"TREP_export_20261101.csv": rows, "TREP_export_20261102.csv": rows[::-1]}))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED, outcome.message
    assert _landed(home) == ["TREP_export_20261101.csv", "TREP_export_20261102.csv"]


def _sha256sum(files: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()).encode()


def test_exports_a_checksum_declares_that_are_not_delivered_are_said_and_the_others_land(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", checksum_manifest: SHA256SUMS")
    first, second, third = (EXPORT + b"%d;B\n" % n for n in range(3))
    send(drop / "TREP_export_20261101.csv", first)  # SHA256SUMS names three exports: two are there
    send(drop / "TREP_export_20261103.csv", third)
    send(drop / "SHA256SUMS", _sha256sum({"TREP_export_20261101.csv": first, "TREP_export_20261102.csv": second,
                                          "TREP_export_20261103.csv": third, "notes.txt": b"not an export"}))
    send(drop / "TREP_export_20261104.csv.sha256", _sha256sum({"TREP_export_20261104.csv": b"to come"}))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and _landed(home) == ["TREP_export_20261101.csv",
                                                                     "TREP_export_20261103.csv"]
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        ("TREP_export_20261102.csv", "SHA256SUMS declares its checksum, but it is not in the drop zone (still to "
                                     "come, or lost on the way): the files delivered with it land without it"),
        ("TREP_export_20261104.csv", "TREP_export_20261104.csv.sha256 declares its checksum, but it is not in the "
                                     "drop zone (still to come, or lost on the way): the files delivered with it "
                                     "land without it")]
    # Pulled, then deleted from the drop zone while the manifest keeps naming it: not said again.
    (drop / "TREP_export_20261101.csv").unlink()
    again = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert again.status is PullStatus.NOTHING_NEW
    assert [s.name for s in again.skipped] == ["TREP_export_20261102.csv", "TREP_export_20261104.csv"]


def test_links_named_as_exports_are_said_never_followed(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    outside = tmp_path / "outside.csv"
    outside.write_bytes(EXPORT + b"2;not the sender's\n")
    send(drop / "TREP_export_20261101.csv", EXPORT)
    (drop / "TREP_export_20261102.csv").symlink_to(outside)  # a link out of the drop zone
    (drop / "TREP_export_20261103.csv").symlink_to(tmp_path / "gone.csv")  # dangling
    (drop / "TREP_export_folder.csv").symlink_to(tmp_path, target_is_directory=True)
    (drop / "notes.txt").symlink_to(outside)  # not named as an export: passed over as any other file
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and _landed(home) == ["TREP_export_20261101.csv"]
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        (name, "a symbolic link, never followed: a drop zone's links are not exports (put the file itself there)")
        for name in ("TREP_export_20261102.csv", "TREP_export_20261103.csv", "TREP_export_folder.csv")]


def _taken_back_after_the_listing(monkeypatch, *paths: Path) -> None:
    """The sender takes `paths` back right after the pull lists the drop zone, before their checksums are read."""
    listed = DropZone.list_entries

    def list_then_take_back(zone: DropZone) -> Listing:
        entries = listed(zone)
        for path in paths:
            path.unlink()
        return entries

    monkeypatch.setattr(DropZone, "list_entries", list_then_take_back)


def test_a_checksum_sidecar_taken_back_after_the_listing_leaves_its_export_for_later(tmp_path, home, drop,
                                                                                     monkeypatch):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n")
    send(drop / "TREP_export_20261102.csv.sha256", _sha256sum({"TREP_export_20261102.csv": EXPORT + b"2;B\n"}))
    _taken_back_after_the_listing(monkeypatch, drop / "TREP_export_20261102.csv.sha256")
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.failures == [], outcome.message
    assert _landed(home) == ["TREP_export_20261101.csv"]
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        ("TREP_export_20261102.csv", "its checksum TREP_export_20261102.csv.sha256 was removed after it was listed "
                                     "(sent again?): nothing landed, the next pull takes it")]


def test_a_checksum_manifest_taken_back_after_the_listing_leaves_the_exports_it_may_declare(tmp_path, home, drop,
                                                                                            monkeypatch):
    sources = registry_sources(tmp_path, drop, ", checksum_manifest: SHA256SUMS")
    first, second = EXPORT, EXPORT + b"2;B\n"
    send(drop / "TREP_export_20261101.csv", first)
    send(drop / "TREP_export_20261101.csv.sha256", _sha256sum({"TREP_export_20261101.csv": first}))
    send(drop / "TREP_export_20261102.csv", second)
    send(drop / "SHA256SUMS", _sha256sum({"TREP_export_20261102.csv": second}))
    _taken_back_after_the_listing(monkeypatch, drop / "SHA256SUMS")
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.failures == [], outcome.message
    assert _landed(home) == ["TREP_export_20261101.csv"]  # its own sidecar declares it
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        ("TREP_export_20261102.csv", "its checksum SHA256SUMS was removed after it was listed (sent again?): "
                                     "nothing landed, the next pull takes it")]


def test_a_new_checksum_of_a_pulled_export_taken_back_after_the_listing_fails_nothing(tmp_path, home, drop,
                                                                                      monkeypatch):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    assert pull_source(home, "registry_it", sources_dir=sources, policy=FAST).status is PullStatus.PULLED
    # A sidecar arrives for the pulled export (new bytes to come?), and is taken back before it is read.
    send(drop / "TREP_export_20261101.csv.sha256", _sha256sum({"TREP_export_20261101.csv": EXPORT + b"2;B\n"}))
    _taken_back_after_the_listing(monkeypatch, drop / "TREP_export_20261101.csv.sha256")
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.NOTHING_NEW and outcome.failures == [], outcome.message


def test_a_checksum_sidecar_the_pull_may_not_read_fails_its_export_alone(tmp_path, home, drop, monkeypatch):
    """A hunt: one unreadable sidecar (mode 000 on the sender's side) failed the listing, retried, and nothing
    landed, every other file of the drop zone with it."""
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n")
    send(drop / "TREP_export_20261102.csv.sha256", hashlib.sha256(EXPORT + b"2;B\n").hexdigest().encode())
    read_text = DropZone.read_text

    def refused(zone: DropZone, remote: RemoteFile, limit: int = 1 << 20) -> str:
        if remote.name.endswith(".sha256"):  # as for a user the file's mode shuts out (the tests run as root)
            raise PermissionError(13, "Permission denied")
        return read_text(zone, remote, limit)

    monkeypatch.setattr(DropZone, "read_text", refused)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert _landed(home) == ["TREP_export_20261101.csv"]
    assert outcome.status is PullStatus.FAILED and len(outcome.failures) == 1
    assert ("TREP_export_20261102.csv from" in outcome.failures[0] and "not pulled: its checksum sidecar "
            "TREP_export_20261102.csv.sha256 cannot be read (Permission denied)" in outcome.failures[0])


def test_a_zip_whose_compressed_data_is_damaged_is_refused_at_once_naming_its_member(tmp_path, home, drop):
    """A hunt: zlib's error was taken for a dropped connection: the zip fetched and unpacked again, then 'Error -3
    while decompressing data (gave up after 3 attempts)', naming neither the member nor the damage."""
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    packed = bytearray(zipped({"TREP_export_20261101.csv": EXPORT * 2000}))
    packed[60:200] = bytes(140)  # inside the member's compressed bytes
    send(drop / "TREP_20261101.zip", bytes(packed))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and _landed(home) == []
    assert "not pulled: member 'TREP_export_20261101.csv' cannot be unpacked: its compressed data is damaged (" \
        in outcome.message and "gave up" not in outcome.message, outcome.message  # not retried


def test_a_zip_of_no_export_names_its_members_escaped_and_at_most_twenty(tmp_path, home, drop):
    """A hunt: 9,000 members made a failure of 495 kB (the log, the XCom, each pull's ledger line), and a member
    named with a line break wrote a line of its own into the log ('registry_it: pulled 1 file(s) ...')."""
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    members = {"notes.txt\nregistry_it: pulled 1 file(s)": b"x"} | {f"other_{i:02d}.txt": b"x" for i in range(30)}
    send(drop / "TREP_20261101.zip", zipped(members))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and _landed(home) == []
    (failure,) = outcome.failures
    assert "\n" not in failure and "(members: notes.txt\\nregistry_it: pulled 1 file(s), other_00.txt, " in failure
    assert "other_18.txt, and 11 more)" in failure, failure


def test_a_zip_s_members_not_named_as_exports_are_said_beside_those_landed(tmp_path, home, drop):
    """A hunt: a zip of one export and four other members (two of them exports in another case, the sender's
    slip) said only the one pulled; docs/pull.md says the others are listed as skipped."""
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    members = {"TREP_export_20261101.csv": b"codice_paziente\n1\n", "TREP_export_20261102.CSV": b"x",
               "Trep_export_20261103.csv": b"x", "README.txt": b"x", "export/": b""}
    send(drop / "TREP_20261101.zip", zipped(members))
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and _landed(home) == ["TREP_export_20261101.csv"]
    assert ("TREP_20261101.zip: its member(s) TREP_export_20261102.CSV, Trep_export_20261103.csv, README.txt not "
            "landed: not named as the source's exports ('TREP_export_*.csv')") in outcome.message, outcome.message


def test_a_named_pipe_named_as_an_export_is_said_never_read(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    os.mkfifo(drop / "TREP_export_20261102.csv")
    os.mkfifo(drop / "notes.fifo")  # not named as an export: passed over
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and _landed(home) == ["TREP_export_20261101.csv"]
    assert [(s.name, s.reason) for s in outcome.skipped] == [(
        "TREP_export_20261102.csv",
        "not a regular file (a named pipe, socket or device), never read: exports are delivered as files")]


def test_two_files_whose_names_differ_only_in_case_are_refused_and_the_others_pulled(tmp_path, home, drop):
    """A hunt: a zip's members so named were refused, two such files in a folder drop zone both landed (on a
    case-insensitive file system, a share landing/ is copied to, one would silently replace the other)."""
    sources = registry_sources(tmp_path, drop, files="TREP_*.csv")
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n")
    send(drop / "TREP_EXPORT_20261102.csv", EXPORT + b"3;C\n")
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and _landed(home) == ["TREP_export_20261101.csv"]
    for name, other in (("TREP_export_20261102.csv", "TREP_EXPORT_20261102.csv"),
                        ("TREP_EXPORT_20261102.csv", "TREP_export_20261102.csv")):
        assert f"{name} from {drop} not pulled: its name differs only in case from {other} (one file on a " \
               "case-insensitive file system): rename one in the drop zone" in outcome.message, outcome.message
