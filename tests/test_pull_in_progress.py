"""The pull against files not finished: rewritten or grown while they are read, named as an upload tool
names its temporary or an office program its lock file, zips whose members the disk cannot take, and new
bytes under an unchanged size and time. A local folder drop zone, and a real OpenSSH server on 127.0.0.1
(tests/transport_servers.py) for the SFTP case."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from drop_zone import registry_sources, send, zipped
from transport_servers import SshServer, start_sshd

from etl.config import Home
from etl.extract import landing
from etl.pull import PullPolicy, PullStatus, deliveries, pull_source
from etl.pull.deliveries import DropZoneState, check_drop_zone

FAST = PullPolicy(attempts=3, backoff_seconds=0.01, chunk_bytes=1 << 10)  # several chunks to a file
EXPORT = "TREP_export_2024.csv"
A = b"codice_paziente;version\n" + b"".join(b"%d;A\n" % i for i in range(2000))
B = A.replace(b";A\n", b";B\n")  # a correction of the same length


def _pull(home: Home, sources: Path, **kwargs):
    return pull_source(home, "registry_it", sources_dir=sources, **{"policy": FAST} | kwargs)


def _landed(home: Home) -> dict[str, bytes]:
    folder = home.landing / "registry_it"
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".sha256")}


def _ledger(home: Home) -> list[dict]:
    path = home.root / "pulled" / "registry_it.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- 1. a file that changes while it is read ----------------------------------------------------------
def _rewrite_once(path: Path, data: bytes):
    """A progress callback: the sender rewrites `path` in place (same name, now) after the first chunk."""
    def rewrite(remote, so_far):
        if remote.name == path.name and not getattr(rewrite, "done", False):
            rewrite.done = True
            with path.open("r+b") as handle:  # in place, as an upload that restarts writes over the file
                handle.write(data)
    return rewrite


@pytest.mark.parametrize("later", [B, A + b"1;A, a line more\n"], ids=["rewritten-same-size", "grown"])
def test_a_file_that_changes_while_it_is_read_does_not_land_and_is_pulled_next_night(tmp_path, home, drop, later):
    sources = registry_sources(tmp_path, str(drop))
    send(drop / EXPORT, A)
    outcome = _pull(home, sources, progress=_rewrite_once(drop / EXPORT, later))
    assert outcome.status is PullStatus.NOTHING_NEW, outcome.message
    assert _landed(home) == {} and _ledger(home) == []  # no mix of two versions, nothing recorded
    assert [s.name for s in outcome.skipped] == [EXPORT]
    assert "changed while it was read" in outcome.skipped[0].reason and "attempt" not in outcome.message
    assert outcome.message.startswith("registry_it: ") and EXPORT in outcome.message
    # the next night, the sender long done: the file as it is then lands
    os.utime(drop / EXPORT, (time.time() - 3600,) * 2)
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: later}


def test_a_file_grown_after_the_listing_is_read_no_further_than_its_listed_size(tmp_path, home, drop):
    """A hunt: the room landing was judged to have was for the listed size, and the read went on to the end: a file
    made a sparse 200 MiB after the listing wrote all of it into landing before its change was seen."""
    sources = registry_sources(tmp_path, str(drop))
    send(drop / EXPORT, A)
    read: list[int] = []

    def grow(remote, so_far):
        read.append(so_far)
        if len(read) == 1:
            os.truncate(drop / EXPORT, 200 << 20)

    outcome = _pull(home, sources, progress=grow)
    assert outcome.status is PullStatus.NOTHING_NEW and "changed while it was read" in outcome.skipped[0].reason
    assert max(read) == len(A) + 1 and _landed(home) == {}


def test_a_zip_that_changes_while_it_is_read_is_not_unpacked(tmp_path, home, drop):
    sources = registry_sources(tmp_path, str(drop), ", unzip: true")
    first = zipped({EXPORT: A, "noise.bin": os.urandom(8 << 10)})
    send(drop / "REG_2024.zip", first)
    second = zipped({EXPORT: B, "noise.bin": os.urandom(8 << 10)})
    assert len(second) == len(first)
    outcome = _pull(home, sources, progress=_rewrite_once(drop / "REG_2024.zip", second))
    assert outcome.status is PullStatus.NOTHING_NEW, outcome.message
    assert _landed(home) == {} and "REG_2024.zip" in outcome.message and "changed while it was read" in outcome.message


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> SshServer:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.mark.transport
def test_an_sftp_file_rewritten_while_it_is_read_does_not_land(tmp_path, home, drop, sshd):
    sources = registry_sources(tmp_path, f"sftp://127.0.0.1:{sshd.port}{drop}", ", connection: registry_it_sftp")
    send(drop / EXPORT, A)
    uri = sshd.connection_uri()
    outcome = _pull(home, sources, connection_uri=uri, progress=_rewrite_once(drop / EXPORT, B))
    assert outcome.status is PullStatus.NOTHING_NEW and _landed(home) == {}, outcome.message
    assert "changed while it was read" in outcome.message
    os.utime(drop / EXPORT, (time.time() - 3600,) * 2)
    assert _pull(home, sources, connection_uri=uri).status is PullStatus.PULLED and _landed(home) == {EXPORT: B}


# -- 2. an upload's temporary name, a lock file ---------------------------------------------------------
@pytest.mark.parametrize(("files", "name"), [
    ("TREP_export_*", "TREP_export_2024.csv.filepart"),  # WinSCP's, while it uploads
    ("TREP_export_*", "TREP_export_2024.csv.part"),  # curl's, Firefox's
    ("TREP_export_*", "TREP_export_2024.TMP"),
    ("*.csv", "~$TREP_export_2024.csv"),  # Excel's lock file while the export is open in it
    ("TREP_export_*.csv", "TREP_export_2024.csv.part"),  # no export by the glob, but one on its way: said
])
def test_an_uploads_temporary_or_a_lock_file_never_lands_and_is_said(tmp_path, home, drop, files, name):
    sources = registry_sources(tmp_path, str(drop), files=files)
    send(drop / name, A)
    send(drop / "TREP_export_2023.csv", B)
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NEW_EXPORT and look.waiting == ["TREP_export_2023.csv"], look.message
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.PULLED and _landed(home) == {"TREP_export_2023.csv": B}, outcome.message
    assert [s.name for s in outcome.skipped] == [name] and "never an export" in outcome.skipped[0].reason
    assert _pull(home, sources).status is PullStatus.NOTHING_NEW


def test_a_drop_zones_name_is_judged_a_temporary_once_a_look(tmp_path, home, drop, monkeypatch):
    """`upload_temporary` once per name listed, whether it is one (said), of no export, or an export."""
    sources = registry_sources(tmp_path, str(drop), files="TREP_export_*")
    for name in ("TREP_export_2024.csv.part", "notes.txt.part", "TREP_export_2023.csv"):
        send(drop / name, A)
    judged: list[str] = []

    def counted(name: str, judge=landing.upload_temporary):
        judged.append(name)
        return judge(name)

    for module in (landing, deliveries):  # the pull's own name of it, if it has one
        monkeypatch.setattr(module, "upload_temporary", counted, raising=False)
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.waiting == ["TREP_export_2023.csv"], look.message
    assert sorted(judged) == ["TREP_export_2023.csv", "TREP_export_2024.csv.part", "notes.txt.part"]


def test_a_zips_members_named_as_temporaries_or_lock_files_do_not_land(tmp_path, home, drop):
    sources = registry_sources(tmp_path, str(drop), ", unzip: true", files="*.csv")
    send(drop / "REG_2024.zip", zipped({"out/TREP_export_2024.csv": A, "out/~$TREP_export_2024.csv": b"lock",
                                       "out/TREP_export_2025.csv.part": A[:100], "out/notes.txt": b"x"}))
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.PULLED and _landed(home) == {"TREP_export_2024.csv": A}, outcome.message
    assert ("REG_2024.zip: its member(s) out/~$TREP_export_2024.csv, out/TREP_export_2025.csv.part not landed: "
            "named as an upload's temporary or a lock file") in outcome.message


# -- 3. a zip whose members the disk cannot take ------------------------------------------------------
def _zip_of_zeros(names: list[str], size: int = 1 << 20) -> bytes:
    """A zip of members of `size` zero bytes each (below the ratio judged: 1 MiB), deflated once and
    written as often as there are names (zipfile would deflate GBs of zeros again for each)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = packer.compress(bytes(size)) + packer.flush()
    crc, day = zlib.crc32(bytes(size)), 0x21  # 1980-01-01
    out, central = io.BytesIO(), io.BytesIO()
    for name in names:
        raw, offset = name.encode(), out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, zipfile.ZIP_DEFLATED, 0, day, crc, len(data), size,
                              len(raw), 0) + raw + data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, zipfile.ZIP_DEFLATED, 0, day, crc,
                                  len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)
    directory = central.getvalue()
    return out.getvalue() + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(names), len(names),
                                                    len(directory), out.tell(), 0)


def test_a_zip_of_zeros_is_azipped():
    with zipfile.ZipFile(io.BytesIO(_zip_of_zeros(["a.csv", "b.csv"], 1000))) as archive:
        assert archive.testzip() is None and archive.read("b.csv") == bytes(1000)


def test_a_zip_whose_members_landing_cannot_take_is_refused_before_a_member_is_written(tmp_path, home, drop):
    sources = registry_sources(tmp_path, str(drop), ", unzip: true")
    names = [f"TREP_export_{n:04d}.csv" for n in range(4096)]
    send(drop / "REG_2024.zip", _zip_of_zeros(names))  # 4 GiB of members in a zip of 4.5 MB
    # What landing keeps free leaves the pull 1 GiB: room for the zip, not for its members (with a margin
    # of GiBs either way for what other programs write or delete meanwhile).
    policy = FAST.model_copy(update={"keep_free_bytes": shutil.disk_usage(home.root).free - (1 << 30)})
    outcome = _pull(home, sources, policy=policy)
    assert outcome.status is PullStatus.FAILED and "attempt" not in outcome.message, outcome.message
    assert f"the 4096 member(s) to land total {4 << 30} bytes uncompressed, more than landing can take: it has" \
        in outcome.message and "kept for the night's run; nothing landed" in outcome.message
    assert list((home.landing / "registry_it").iterdir()) == [] and _ledger(home) == []  # no temporary left either


# -- 4. new bytes under the same size and time ----------------------------------------------------------
def _correct_in_place(path: Path, data: bytes) -> None:
    """The sender replaces the export with a correction of the same length and keeps its time (a copy
    with times preserved: scp -p, rsync -t, WinSCP's default)."""
    stamp = path.stat().st_mtime
    path.write_bytes(data)
    os.utime(path, (stamp, stamp))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("declared_by", ["sidecar", "manifest"])
def test_new_bytes_under_the_same_size_and_time_are_pulled_when_their_checksum_says_so(tmp_path, home, drop,
                                                                                     declared_by):
    sources = registry_sources(tmp_path, str(drop), ", checksum_manifest: SHA256SUMS")
    checksum = drop / (f"{EXPORT}.sha256" if declared_by == "sidecar" else "SHA256SUMS")
    send(drop / EXPORT, A, 7200)
    send(checksum, f"{_digest(A)}  {EXPORT}\n".encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: A}
    _correct_in_place(drop / EXPORT, B)
    checksum.write_text(f"{_digest(B)}  {EXPORT}\n")  # written now, after the pull
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NEW_EXPORT and look.waiting == [EXPORT], look.message
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.PULLED and _landed(home) == {EXPORT: B}, outcome.message
    assert [e["sha256"] for e in _ledger(home)] == [_digest(A), _digest(B)]
    assert _pull(home, sources).status is PullStatus.NOTHING_NEW
    assert check_drop_zone(home, "registry_it", sources_dir=sources).state is DropZoneState.NOTHING_NEW


def test_without_a_checksum_new_bytes_under_the_same_size_and_time_are_not_seen(tmp_path, home, drop):
    sources = registry_sources(tmp_path, str(drop))  # the limit docs/pull.md states: no file is read again to find out
    send(drop / EXPORT, A, 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    _correct_in_place(drop / EXPORT, B)
    assert _pull(home, sources).status is PullStatus.NOTHING_NEW and _landed(home) == {EXPORT: A}


def test_a_corrections_sidecar_copied_with_the_senders_time_is_read(tmp_path, home, drop):
    """The sidecar's time is the sender's (scp -p, rsync -t keep it), not the drop zone's nor ours: one older
    than the pull is still new when its size or version is not the one beside the file pulled."""
    sources = registry_sources(tmp_path, str(drop))
    sidecar = drop / f"{EXPORT}.sha256"
    send(drop / EXPORT, A, 7200)
    send(sidecar, f"{_digest(A)}  {EXPORT}\n".encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: A}
    _correct_in_place(drop / EXPORT, B)
    send(sidecar, f"{_digest(B)}  {EXPORT}\n".encode(), 3600)  # computed an hour ago, before the pull
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NEW_EXPORT and look.waiting == [EXPORT], look.message
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.PULLED and _landed(home) == {EXPORT: B}, outcome.message
    assert _pull(home, sources).status is PullStatus.NOTHING_NEW  # the sidecar seen with it: not read again


def test_a_ledger_line_without_its_sidecar_judges_the_sidecar_by_its_time(tmp_path, home, drop):
    """A line an earlier version wrote (no sidecar size and version): a sidecar written since the pull is read,
    one older is not, as before."""
    sources = registry_sources(tmp_path, str(drop))
    sidecar = drop / f"{EXPORT}.sha256"
    send(drop / EXPORT, A, 7200)
    send(sidecar, f"{_digest(A)}  {EXPORT}\n".encode(), 7200)
    assert _pull(home, sources).status is PullStatus.PULLED
    ledger = home.root / "pulled" / "registry_it.jsonl"
    ledger.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "sidecar"}) + "\n"
                              for e in _ledger(home)))
    _correct_in_place(drop / EXPORT, B)
    send(sidecar, f"{_digest(B)}  {EXPORT}\n".encode(), 3600)
    assert _pull(home, sources).status is PullStatus.NOTHING_NEW  # the limit an earlier ledger keeps
    sidecar.write_text(f"{_digest(B)}  {EXPORT}\n")  # written now, after the pull
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: B}


def test_a_file_whose_time_is_ahead_of_this_clock_waits_until_it_has_passed_by_the_quiet_period(tmp_path, home,
                                                                                                  drop):
    """A drop zone whose clock is an hour ahead stamps an upload still going an hour ahead: taken as old, it landed
    cut short. It waits until this machine's clock has passed its time by the quiet period, said so."""
    sources = registry_sources(tmp_path, str(drop))  # quiet_seconds: 600
    send(drop / EXPORT, A)
    os.utime(drop / EXPORT, (time.time() + 3600,) * 2)
    outcome = _pull(home, sources)
    assert outcome.status is PullStatus.NOTHING_NEW and _landed(home) == {}
    assert [s.name for s in outcome.skipped] == [EXPORT]
    assert "s ahead of this machine's clock (the drop zone's clock ahead?)" in outcome.skipped[0].reason
    os.utime(drop / EXPORT, (time.time() - 601,) * 2)  # this clock past it by the quiet period
    assert _pull(home, sources).status is PullStatus.PULLED and _landed(home) == {EXPORT: A}
