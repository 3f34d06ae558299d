"""The pull: new exports from a source's drop zone into `landing/<source_id>/`.

For each source with a `delivery:` block: list the drop zone, keep the files that match the
mapping (`files`, `record_set_from_file`; with `unzip`, the zip files), leave out what the
ledger says was pulled and what may still be uploading, then land each new file: downloaded
to a temporary dotfile in landing/<source>/ (the landing reader ignores dotfiles), size and
checksum verified, its checksum declared beside it, renamed in atomically (etl/fsio.py). A
file that cannot be landed leaves nothing in landing and is not in the ledger, so the next
pull tries it again. Remote files are deleted only when the mapping says `delete_after_pull`.
One source's failure never stops another's: every source gets its own outcome.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import time
from collections.abc import Callable, Iterable
from datetime import UTC
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from etl import fsio
from etl.config import SOURCES_DIR, Home
from etl.extract.file_names import PatientNumbers, QuotedNames, names_shown, shown_file_name
from etl.extract.landing import named_as_export, series_of, temporary_export, upload_temporary
from etl.pull import checksums
from etl.pull.credentials import Credentials, CredentialsError, connection_uri_from_env, env_name, parse_connection
from etl.pull.dropzone import DropZone, Gone, RemoteFile, RemoteRefused, connect
from etl.pull.ledger import Ledger, PullBusy, PulledFile, ledger_key, pulling, read_ledger, sidecar_seen
from etl.pull.nights import record_pull
from etl.pull.transfer import (
    ChangedWhileRead,
    ChecksumMismatch,
    NoRoom,
    Progress,
    PullPolicy,
    Settled,
    TransferFailed,
    download,
    retrying,
)
from etl.pull.unzip import ZipLimits, ZipRefused, unpack_zip
from etl.run_record import said
from etl.transform.keyguard import KeyMismatch, WarehouseBusy, refuse_other_key
from etl.transform.mapping import Delivery, MappingError, SourceMapping, load_mapping

log = logging.getLogger("rtw")
# A 0-byte export, landed, became its series' newest file and failed the source each night ("empty file") until
# a newer one came: left in the drop zone as a file still uploading is, and taken once it has its content.
_EMPTY = ("it is empty (0 bytes), no export is: an upload not yet begun, or cut short; nothing landed, the next "
          "pull takes it once it has its content")
LISTED = 20  # the files (and failures, notes) an outcome's message names, then how many more
# The longest landing name the pull makes of a remote name, over it: its temporary `.<name>.<8 hex>.partial`
# and its archive copy `<16 hex>__<name>`; a file system takes 255 bytes.
_NAME_BYTES = 255 - 18


class PullStatus(StrEnum):
    PULLED = "pulled"
    NOTHING_NEW = "nothing_new"
    NO_DROP_ZONE = "no_drop_zone"
    FAILED = "failed"


class SkippedFile(BaseModel):
    """A remote file left where it is this time, and why."""

    model_config = ConfigDict(frozen=True)

    name: str
    reason: str
    # False: bytes pulled before, sent again (`_SameContent`): no later pull lands it. Not in the XCom, whose
    # `left_for_later` lists those that wait.
    waits: bool = Field(default=True, exclude=True)


class PullOutcome(BaseModel):
    """What one pull of one source did."""

    source_id: str
    status: PullStatus
    pulled: list[str] = Field(default_factory=list, description="landing file names written by this pull")
    skipped: list[SkippedFile] = Field(default_factory=list, description="new remote files not pulled, with why")
    failures: list[str] = Field(default_factory=list, description="one line per remote file that failed")
    message: str
    left_for_later: list[SkippedFile] | None = Field(
        default=None, description="those skipped that wait for a later pull (not those known by their content: no "
                                  "pull lands them); None: the drop zone was not listed")

    def handed_over(self) -> dict[str, Any]:
        """The outcome as the DAG's pull task hands it over (an Airflow XCom, shown in its UI): each list cut to its
        first LISTED entries, with how many each holds in `counts` (4,000 files waiting made 2.4 MB)."""
        dumped = self.model_dump(mode="json")
        lists = ("pulled", "skipped", "failures", "left_for_later")
        counts = {name: len(dumped[name]) for name in lists if dumped[name] is not None}
        return {**dumped, **{name: dumped[name][:LISTED] for name in counts}, "counts": counts}


class _Candidate(BaseModel):
    remote: RemoteFile
    expected_sha256: str | None
    refusal: str | None = None  # why it cannot be verified (an unreadable sidecar): fails this file only
    sidecar: RemoteFile | None = None  # the checksum sidecar listed beside it, which its ledger line keeps


class _Landed(NamedTuple):
    sha256: str
    names: list[str]  # the landing file names (a zip: its members)
    left_out: tuple[str, ...] = ()  # a zip's members of an upload's temporary or a lock file's name
    unmatched: tuple[str, ...] = ()  # and those not named as the source's exports


class _SameContent(Settled):  # re-uploaded unchanged; or a copy of a current file, sent again under a new name
    def __init__(self, sha256: str, earlier: PulledFile | None = None) -> None:
        super().__init__(sha256)
        self.sha256, self.earlier = sha256, earlier


class _Connection:
    """The drop zone, connected on first use and again after a failure (a dropped connection stays dropped)."""

    def __init__(self, delivery: Delivery, credentials: Credentials | None, source_id: str) -> None:
        self._delivery, self._credentials, self._source_id = delivery, credentials, source_id
        self._zone: DropZone | None = None

    def zone(self) -> DropZone:
        if self._zone is None:
            self._zone = connect(self._delivery, self._credentials, source_id=self._source_id)
        return self._zone

    def reset(self) -> None:
        if self._zone is not None:
            self._zone.close()
            self._zone = None


def connection_id(source_id: str, *, sources_dir: Path = SOURCES_DIR) -> str | None:
    """The Airflow Connection id the source's drop zone needs (`delivery.connection`), or None."""
    delivery = load_mapping(sources_dir / f"{source_id}.yaml").delivery
    return delivery.connection if delivery is not None else None


def credentials_for(mapping: SourceMapping, connection_uri: str | None) -> Credentials | None:
    """The credentials given, else those of env AIRFLOW_CONN_<ID>; None when the drop zone needs none."""
    delivery = mapping.delivery
    assert delivery is not None
    name = delivery.connection or "the connection"
    if connection_uri:
        return parse_connection(connection_uri, connection_id=f"{mapping.source_id}: connection '{name}'")
    if delivery.connection is None:
        return None
    from_env = connection_uri_from_env(delivery.connection)
    if from_env is None:
        if delivery.kind == "local":
            return None
        raise CredentialsError(f"{mapping.source_id}: no credentials for connection '{delivery.connection}': set "
                               f"env {env_name(delivery.connection)} to its connection URI (Airflow: the Connection "
                               f"'{delivery.connection}')")
    return parse_connection(from_env, connection_id=f"{mapping.source_id}: connection '{delivery.connection}'")


def _being_written(marker: RemoteFile, delivery: Delivery, now: float) -> bool:
    """Whether a marker that says nothing yet may still be being written: empty (`sha256sum x > x.sha256` makes it
    so first), or changed within the quiet period (not on S3, whose objects appear whole)."""
    if marker.size == 0:
        return True
    return (delivery.kind != "s3" and marker.modified is not None
            and now - marker.modified.timestamp() < _quiet_seconds(delivery))


def _quiet_seconds(delivery: Delivery) -> float:
    from etl.extract.landing import quiet_seconds_default  # the landing reader's default: one setting for both

    return delivery.quiet_seconds if delivery.quiet_seconds is not None else quiet_seconds_default()


def _new_files(mapping: SourceMapping, zone: DropZone, listing: list[RemoteFile], ledger: Ledger,
               now: float, links: Iterable[str] = (), others: Iterable[str] = ()
               ) -> tuple[list[_Candidate], list[SkippedFile]]:
    """The remote exports to land now, and those left for later with the reason (`links`: the names of the
    drop zone's links, never followed, and `others` of what is no file, a named pipe or a device, never read:
    one named as an export is said)."""
    delivery = mapping.delivery
    assert delivery is not None
    by_name = {f.name: f for f in listing}
    manifest: dict[str, str] = {}
    manifest_gone = None  # removed since the listing: the exports it may declare wait for it
    if delivery.checksum != "none" and delivery.checksum_manifest in by_name:
        try:
            manifest = checksums.parse_manifest(zone.read_text(by_name[delivery.checksum_manifest]))
        except Gone:
            manifest_gone = by_name[delivery.checksum_manifest]
    candidates, skipped = [], []

    def checksum_gone(name: str, marker: RemoteFile) -> SkippedFile:  # its sender is likely sending it again
        return SkippedFile(name=name, reason=f"its checksum {marker.name} was removed after it was listed (sent "
                                             "again?): nothing landed, the next pull takes it")

    def fits(name: str) -> bool:
        return fnmatchcase(name, delivery.zip_files) if delivery.unzip else named_as_export(mapping, name)

    for remote in listing:
        name = remote.name
        if name.startswith(".") or name.endswith((".sha256", ".done")) or name == delivery.checksum_manifest:
            continue  # uploads in progress (dotfiles) and the markers of other files
        if (why := temporary_export(name, fits)) is not None:
            skipped.append(SkippedFile(name=name, reason=why))
            continue
        if not fits(name):  # any other upload's temporary or lock file too: its name does not fit
            continue
        if ledger.has(remote) and not _declared_anew(zone, remote, ledger, by_name, manifest, delivery):
            continue
        if remote.size == 0:  # not recorded: the full delivery under this name lands when it comes
            skipped.append(SkippedFile(name=name, reason=_EMPTY))
            continue
        sidecar = by_name.get(f"{name}.sha256")
        if (refusal := _unlandable(name)) is not None:
            candidates.append(_Candidate(remote=remote, expected_sha256=None, sidecar=sidecar,
                                         refusal=f"{refusal}: rename it in the drop zone"))
            continue
        expected, declared_by = None, None
        if delivery.checksum != "none":
            if sidecar is not None:
                try:
                    expected, declared_by = checksums.parse_sidecar(zone.read_text(sidecar), name), sidecar
                except Gone:
                    skipped.append(checksum_gone(name, sidecar))
                    continue
                except (ValueError, PermissionError) as exc:  # this file's trouble: the others are pulled
                    if isinstance(exc, ValueError) and _being_written(sidecar, delivery, now):
                        skipped.append(SkippedFile(name=name, reason=f"its checksum sidecar {sidecar.name} holds no "
                                                   "digest yet (empty, or written within the quiet period: "
                                                   "sha256sum may still be writing it); the next pull reads it"))
                        continue
                    unread = f"cannot be read ({exc.strerror or exc})" if isinstance(exc, PermissionError) else str(exc)
                    candidates.append(_Candidate(remote=remote, expected_sha256=None, sidecar=sidecar,
                                                 refusal=f"its checksum sidecar {sidecar.name} {unread}"))
                    continue
            elif manifest_gone is not None:
                skipped.append(checksum_gone(name, manifest_gone))
                continue
            elif (expected := manifest.get(name)) is not None:
                declared_by = by_name[str(delivery.checksum_manifest)]
        if expected is None and delivery.checksum == "required":
            in_manifest = f" or a line in {delivery.checksum_manifest}" if delivery.checksum_manifest else ""
            skipped.append(SkippedFile(name=name, reason=f"waiting for its checksum ({name}.sha256{in_manifest})"))
            continue
        # A marker older than its file was left by an earlier delivery: the file may be being rewritten.
        declared_complete = _newer(declared_by, remote) or _newer(by_name.get(f"{name}.done"), remote)
        quiet = _quiet_seconds(delivery)
        # An S3 object appears whole when its upload ends; a file on SFTP or a folder grows while it is written.
        if delivery.kind != "s3" and not declared_complete and remote.modified is not None:
            # A time ahead of this machine's clock (the drop zone's clock ahead) tells nothing of the file's age:
            # it waits until this clock has passed it by the quiet period. Taken as old, an upload still going
            # landed cut short. (A clock behind cannot be told from an old file: docs/pull.md.)
            age = now - remote.modified.timestamp()
            if quiet > 0 and age < quiet:  # quiet_seconds 0: at once, whatever the file's time
                markers = f"a marker file {name}.done" + (
                    f" or a checksum file {name}.sha256" if delivery.checksum != "none" else "")
                when = (f"changed {age:.0f} s ago" if age >= 0 else
                        f"its time in the drop zone is {-age:.0f} s ahead of this machine's clock (the drop zone's "
                        "clock ahead?): taken once it is")
                skipped.append(SkippedFile(name=name, reason=f"{when}, within the quiet period of {quiet:.0f} s "
                                           f"(it may still be uploading; {markers} beside it, written after it, "
                                           "declares it complete)"))
                continue
        candidates.append(_Candidate(remote=remote, expected_sha256=expected, sidecar=sidecar))
    skipped += [SkippedFile(name=shown(name), reason="a symbolic link, never followed: a drop zone's links are not "
                            "exports (put the file itself there)") for name in links if fits(name)]
    skipped += [SkippedFile(name=shown(name), reason="not a regular file (a named pipe, socket or device), never read: "
                            "exports are delivered as files") for name in others if fits(name)]
    if delivery.checksum != "none":
        skipped += _declared_not_delivered(by_name, manifest, str(delivery.checksum_manifest), ledger, fits)
    return _apart_by_case(candidates), skipped


def _apart_by_case(candidates: list[_Candidate]) -> list[_Candidate]:
    """The candidates, those whose names differ only in case from another's refused (as a zip's members are): on
    a case-insensitive file system (a share landing/ is copied to) one would silently replace the other."""
    by_folded: dict[str, list[str]] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.remote.name.casefold(), []).append(candidate.remote.name)
    kept = []
    for candidate in candidates:
        name = candidate.remote.name
        others = [n for n in by_folded[name.casefold()] if n != name]
        if others and candidate.refusal is None:
            candidate = candidate.model_copy(update={"refusal": f"its name differs only in case from {others[0]} (one "
                                                     "file on a case-insensitive file system): rename one in the drop "
                                                     "zone"})
        kept.append(candidate)
    return kept


def _declared_not_delivered(by_name: dict[str, RemoteFile], manifest: dict[str, str], manifest_name: str,
                            ledger: Ledger, fits: Callable[[str], bool]) -> list[SkippedFile]:
    """The exports a checksum declares that are not in the drop zone, nor were ever pulled from it: a
    delivery not complete (a file still to come, or lost on the way), whose other files land meanwhile.
    Said, so that a night loading them knows the delivery was short; a file pulled before is not (a
    manifest kept whole while pulled files are deleted)."""
    declared = {name: by_name[manifest_name] for name in manifest}
    declared |= {marker.name.removesuffix(".sha256"): marker for marker in by_name.values()
                 if marker.name.endswith(".sha256")}
    missing = []
    for name, marker in sorted(declared.items()):
        if name in by_name or name.startswith(".") or not fits(name):
            continue
        if ledger.pulled_from(posixpath.join(posixpath.dirname(marker.path), name)):
            continue
        missing.append(SkippedFile(name=name, reason=f"{marker.name} declares its checksum, but it is not in the "
                                   "drop zone (still to come, or lost on the way): the files delivered with it land "
                                   "without it"))
    return missing


def _declared_anew(zone: DropZone, remote: RemoteFile, ledger: Ledger, by_name: dict[str, RemoteFile],
                   manifest: dict[str, str], delivery: Delivery) -> bool:
    """Whether a file of the size and version last pulled from its path has other bytes, as its checksum
    says: a correction of the same length copied with its time kept (scp -p, rsync -t) looks unchanged.
    The manifest is read anyway; a sidecar only when it is not the one beside the file when it was pulled
    (not every night, every file). Without a checksum new bytes under the same size and time go unseen
    (docs/pull.md)."""
    last = ledger.last(remote.path)
    if last is None or delivery.checksum == "none":
        return False
    sidecar = by_name.get(f"{remote.name}.sha256")
    if sidecar is not None and not _sidecar_pulled(sidecar, last):  # first, as for a new file
        try:
            return checksums.parse_sidecar(zone.read_text(sidecar), remote.name) != last.sha256
        except (ValueError, Gone, PermissionError):  # not a digest of this file, taken back since the listing, or
            return False  # not readable by the pull: nothing new can be told
    # No sidecar, or the one pulled beside it (stale, left there): the manifest may declare new bytes, which are
    # then judged against that sidecar, a mismatch said
    declared = manifest.get(remote.name)
    return declared is not None and declared != last.sha256


def _sidecar_pulled(sidecar: RemoteFile, last: PulledFile) -> bool:
    """Whether the sidecar is the one beside the file when it was last pulled: of the size and version the
    ledger kept. Its time says nothing by itself: the sender's, kept by scp -p and rsync -t, and a correction's
    sidecar may well be older than the pull. A ledger line of an earlier version kept neither: a sidecar not
    written since the pull (the drop zone's clock against the pull's) is taken for that one."""
    if last.sidecar is not None:
        return last.sidecar == sidecar_seen(sidecar)
    pulled_at = last.pulled_at if last.pulled_at.tzinfo else last.pulled_at.replace(tzinfo=UTC)  # hand-edited
    return sidecar.modified is not None and sidecar.modified <= pulled_at


def _newer(marker: RemoteFile | None, remote: RemoteFile) -> bool:
    """Whether a marker (checksum, .done) is there and not older than the file it declares complete."""
    if marker is None:
        return False
    return marker.modified is None or remote.modified is None or marker.modified >= remote.modified


def _unlandable(name: str) -> str | None:
    """Why a remote file (or zip member) of this name cannot land as it is named, or None."""
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):  # a byte that is not UTF-8, as the listing escaped it
        return f"its name holds a byte that is not UTF-8 ({shown(name)})"
    if not name.isprintable():
        return f"its name holds a control character ({shown(name)})"
    if len(name.encode("utf-8")) > _NAME_BYTES:
        return f"its name is {len(name.encode('utf-8'))} bytes long, landing keeps names of at most {_NAME_BYTES}"
    return None


def shown(text: str) -> str:
    """A remote name as a message may show it: a line break or other control character escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _land_file(zone: DropZone, candidate: _Candidate, folder: Path, ledger: Ledger, policy: PullPolicy,
               progress: Progress | None, series: Callable[[str], str | None]) -> _Landed:
    """Download one export and rename it into landing; its sha256 and the names landed."""
    remote = candidate.remote
    with fsio.written_atomically(folder / remote.name) as temp:
        sha256 = download(zone, remote, temp, expected_sha256=candidate.expected_sha256, policy=policy,
                          progress=progress)
        if ledger.has_content(remote, sha256):
            raise _SameContent(sha256)
        if (earlier := ledger.copy_of(sha256, series, remote.name)) is not None:
            raise _SameContent(sha256, earlier)
        if remote.modified is not None:  # keep the export's own time, as a copy by hand would
            stamp = remote.modified.timestamp()
            os.utime(temp, (stamp, stamp))
        checksums.declare_landed(folder, remote.name, sha256)
    return _Landed(sha256, [remote.name])


def _land_zip(zone: DropZone, candidate: _Candidate, folder: Path, ledger: Ledger, policy: PullPolicy,
              progress: Progress | None, mapping: SourceMapping, series: Callable[[str], str | None]) -> _Landed:
    """Download one zip delivery to a temporary and unpack its wanted members into landing; not those named
    as an upload's temporary or a lock file (zipped while a file was written or open), said in `left_out`."""
    remote = candidate.remote
    is_export = functools.partial(named_as_export, mapping)
    temp = fsio.temp_name(folder / remote.name)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsio.FILE_MODE))
    try:
        sha256 = download(zone, remote, temp, expected_sha256=candidate.expected_sha256, policy=policy,
                          progress=progress)
        if ledger.has_content(remote, sha256):
            raise _SameContent(sha256)
        if (earlier := ledger.copy_of(sha256, series)) is not None:
            raise _SameContent(sha256, earlier)
        unpacked = unpack_zip(temp, folder, lambda name: upload_temporary(name) is None and is_export(name),
                              limits=ZipLimits(), unlandable=_unlandable, keep_free_bytes=policy.keep_free_bytes,
                              before_landing=lambda name, digest: checksums.declare_landed(folder, name, digest))
    finally:
        temp.unlink(missing_ok=True)
    if not unpacked.landed:
        members = _listed([shown(member) for member in unpacked.skipped], ", ") or "none"
        raise ZipRefused(f"no member matches '{mapping.files}' (members: {members})", unpacked.skipped)
    left_out = [member for member in unpacked.skipped
                if temporary_export(PurePosixPath(member.replace("\\", "/")).name, is_export)]
    unmatched = [member for member in unpacked.skipped if member not in left_out and not member.endswith("/")]
    return _Landed(sha256, unpacked.landed, tuple(left_out), tuple(unmatched))


def _delete_remote(zone: DropZone, remote: RemoteFile, listing: list[RemoteFile]) -> str | None:
    """Delete a pulled file and its markers, unless the file changed since it was listed (a new version
    uploaded while this one was pulled: it stays for the next pull). Why it stayed, or None."""
    now = zone.stat(remote)
    if now is None or (now.size, now.version) != (remote.size, remote.version):
        return (f"{remote.name} was not deleted from the drop zone: it changed while it was pulled (the next pull "
                "takes it)")
    zone.delete(remote)
    rewritten = []
    for marker in listing:  # as listed: one written again since is the next delivery's (its checksum, its marker)
        if marker.name in (f"{remote.name}.sha256", f"{remote.name}.done"):
            if (now := zone.stat(marker)) is not None and (now.size, now.version) != (marker.size, marker.version):
                rewritten.append(marker.name)
            elif now is not None:
                zone.delete(marker)
    if rewritten:
        return (f"{', '.join(rewritten)} not deleted from the drop zone: written again while {remote.name} was pulled "
                "(the next delivery's, kept for it)")
    return None


def _copy(earlier: PulledFile) -> str:
    """Why a file sent again under another name did not land: the bytes of a current file (`Ledger.copy_of`)."""
    return (f"same bytes as {posixpath.basename(earlier.remote_path)} pulled on {earlier.pulled_at:%Y-%m-%d}: "
            "sent again under another name, not landed (the import would read it again as a new export)")


def _resent(candidate: _Candidate, ledger: Ledger, mapping: SourceMapping) -> bool:
    """Whether its checksum says the file is one pulled before that a pull would not land again: the last pulled
    from its path (not a copy that did not land: it may land now), or a current file sent again under another name
    (`Ledger.copy_of`)."""
    declared, remote = candidate.expected_sha256, candidate.remote
    last = ledger.last(remote.path)
    if last is not None and last.copy_of is None and (last.sha256, last.size) == (declared, remote.size):
        return True
    assert mapping.delivery is not None
    name = None if mapping.delivery.unzip else remote.name
    return declared is not None and ledger.copy_of(declared, functools.partial(series_of, mapping), name) is not None


# A file known by its content only: an erased patient's (the reason does not say so: a message may name it).
_UNKEYED = ("re-uploaded with the same content as already pulled; known by its content only (the pull was not "
            "given the pseudonymisation key): downloaded by each pull")


def _failed(source_id: str, message: str) -> PullOutcome:
    return PullOutcome(source_id=source_id, status=PullStatus.FAILED, failures=[message], message=message)


def pull_source(home: Home, source_id: str, *, connection_uri: str | None = None, sources_dir: Path = SOURCES_DIR,
                policy: PullPolicy | None = None, progress: Progress | None = None,
                key_value: str | None = None) -> PullOutcome:
    """Pull the source's new exports from its drop zone into `landing/<source_id>/`, and record what the
    pull came to for `rtw status` (etl/pull/nights.py).

    `connection_uri` is the Airflow connection URI of `delivery.connection` (the DAG passes
    `BaseHook.get_connection(id).get_uri()`); when None it is read from env `AIRFLOW_CONN_<ID>`.
    `progress(remote_file, bytes_so_far)` is called as bytes arrive. A source without a mapping raises
    UnknownSource, and nothing is recorded. `key_value`: the pseudonymisation key as the run is given it (else
    env RTW_PSEUDONYM_KEY, else the home's key file): without it, an erased patient's file still in the drop
    zone is downloaded by each pull to be known by its content (etl/pull/ledger.py).
    """
    outcome = _pull_source(home, source_id, connection_uri, sources_dir, policy or PullPolicy(), progress,
                           key_value)
    _recorded(home, outcome)
    return outcome


def not_pulled(home: Home, source_id: str, reason: str, *, sources_dir: Path = SOURCES_DIR) -> PullOutcome:
    """A pull not made for a reason outside it (the DAG's key Variable cannot be read), said and recorded as a
    failed pull of a source with a drop zone is; a source without one had nothing to pull. A source without a
    mapping raises UnknownSource, as `pull_source` does."""
    mapped = _delivered(source_id, sources_dir)
    return _recorded(home, mapped if isinstance(mapped, PullOutcome) else _failed(source_id, reason))


def _delivered(source_id: str, sources_dir: Path) -> SourceMapping | PullOutcome:
    """The mapping of a source with a drop zone, or what its pull comes to without one: failed (its mapping
    cannot be read), or no drop zone. UnknownSource: no such source, refused before anything is recorded."""
    refuse_unknown([source_id], sources_dir)
    try:
        mapping = load_mapping(sources_dir / f"{source_id}.yaml")
    except (MappingError, OSError) as exc:
        return _failed(source_id, f"{source_id}: its mapping cannot be read: {exc}")
    if mapping.delivery is None:
        return PullOutcome(source_id=source_id, status=PullStatus.NO_DROP_ZONE,
                           message=f"{source_id}: no drop zone (no delivery: in its mapping); exports are put into "
                                   f"landing/{source_id}/ by hand")
    return mapping


def _recorded(home: Home, outcome: PullOutcome) -> PullOutcome:
    """A pull of a source with a drop zone, recorded: a night whose only failure is a pull publishes
    `completed`, and the warehouse records what was imported, not what was pulled."""
    if outcome.status is not PullStatus.NO_DROP_ZONE:
        left = outcome.left_for_later
        record_pull(home, outcome.source_id, outcome.message if outcome.status is PullStatus.FAILED else None,
                    None if left is None else [(f.name, f.reason) for f in left])
    return outcome


def _pull_source(home: Home, source_id: str, connection_uri: str | None, sources_dir: Path, policy: PullPolicy,
                 progress: Progress | None, key_value: str | None) -> PullOutcome:
    if isinstance(mapping := _delivered(source_id, sources_dir), PullOutcome):
        return mapping
    delivery = mapping.delivery
    assert delivery is not None
    try:
        credentials = credentials_for(mapping, connection_uri)
    except CredentialsError as exc:
        return _failed(source_id, str(exc))
    try:  # what it records under another key no later pull would know (etl/pull/ledger.py)
        refuse_other_key(home, key_value)
    except KeyMismatch as exc:
        return _failed(source_id, f"{source_id}: not pulled: {exc}")
    except WarehouseBusy as exc:  # a publish's moment: the DAG's retry, or the next pull, asks again
        return _failed(source_id, f"{source_id}: not pulled: {exc}; asked again")
    except OSError as exc:  # a key file that cannot be read
        return _failed(source_id, f"{source_id}: {exc}")
    folder = fsio.private_folder(home.landing / source_id)
    try:
        with pulling(home, source_id, bounded=True):
            return _pull_held(home, source_id, mapping, delivery, credentials, folder, policy, progress, key_value)
    except PullBusy as busy:
        return _failed(source_id, f"{source_id}: not pulled: {busy}; the next pull tries again")


def _pull_held(home: Home, source_id: str, mapping: SourceMapping, delivery: Delivery,
               credentials: Credentials | None, folder: Path, policy: PullPolicy, progress: Progress | None,
               key_value: str | None) -> PullOutcome:
    """The pull of one source, its lock held."""
    # A pull killed mid-file (kill -9, power cut) left its temporary; under the lock none is live.
    # Crash repair leaves landing/ alone, so the pull tidies its own.
    for stale in folder.glob(f".*{fsio.TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
    try:
        ledger = read_ledger(home, source_id, mend=True, key=ledger_key(home, key_value))
    except (ValueError, OSError) as exc:  # OSError: a key file that cannot be read
        return _failed(source_id, f"{source_id}: {exc}")
    connection = _Connection(delivery, credentials, source_id)
    try:
        numbers = PatientNumbers.staged(home.staging, mapping)
        return _pull(mapping, connection, folder, ledger, policy, progress, numbers)
    finally:
        connection.reset()


def _pull(mapping: SourceMapping, connection: _Connection, folder: Path, ledger: Ledger, policy: PullPolicy,
          progress: Progress | None, numbers: PatientNumbers) -> PullOutcome:
    """The pull of one source; its outcome names the files as shown (etl/extract/file_names.py)."""
    source_id, delivery = mapping.source_id, mapping.delivery
    assert delivery is not None
    where = delivery.url
    listing: list[RemoteFile] = []
    try:
        listing, links, folders, others = retrying(policy, lambda: connection.zone().list_entries(),
                                                   what=f"{source_id}: listing {where}", on_error=connection.reset)
        candidates, skipped = retrying(policy, lambda: _new_files(mapping, connection.zone(), listing, ledger,
                                                                  time.time(), links, others),
                                       what=f"{source_id}: reading checksums in {where}", on_error=connection.reset,
                                       said=lambda line: names_shown(line, _as_said(listing), numbers))
    except (TransferFailed, ChecksumMismatch, ZipRefused, CredentialsError, RemoteRefused) as exc:
        failed = _failed(source_id, f"{source_id}: the drop zone {where} cannot be read: {exc}")
        return _names_shown(failed, {f.name for f in listing}, numbers)  # a sidecar it could not read, named
    pulled: list[str] = []
    failures: list[str] = []
    notes: list[str] = []
    # What the messages may quote (the files a checksum declares that are not there too, the folders), and the zip
    # members landed
    names = {f.name for f in listing} | {s.name for s in skipped} | set(folders)
    series = functools.partial(series_of, mapping)
    quoted, known = QuotedNames(_as_said(names)), set(names)

    def as_shown(text: str) -> str:
        """`text` with every file name it quotes as shown. The names' matcher is made once and told the names
        learnt since (`names` only grows): made for each message, thousands of files waiting made a pull take
        minutes (56 s at 4,000)."""
        if len(known) != len(names):
            quoted.add(_as_said(names - known))
            known.update(names)
        return quoted.shown(text, numbers)

    for left in skipped:  # the Airflow task's log shows them, not only its XCom and rtw pull's output
        log.warning("%s", as_shown(f"{source_id}: {shown(left.name)} in {where} left for later: {left.reason}"))
    if folders:  # a delivery put in a subfolder never arrives: said at each pull, once
        notes.append(_folders_not_read(folders, where))
        log.warning("%s", as_shown(f"{source_id}: {notes[-1]}"))
    for candidate in candidates:
        remote = candidate.remote
        if candidate.refusal is not None:
            failures.append(f"{source_id}: {shown(remote.path)} from {where} not pulled: {candidate.refusal}; "
                            "nothing landed, the next pull tries it again")
            log.error("%s", as_shown(failures[-1]))  # the message names the first `LISTED`
            continue

        def land(candidate: _Candidate = candidate) -> _Landed:
            zone = connection.zone()
            if delivery.unzip:
                return _land_zip(zone, candidate, folder, ledger, policy, progress, mapping, series)
            return _land_file(zone, candidate, folder, ledger, policy, progress, series)

        try:
            sha256, landed, left_out, unmatched = retrying(policy, land, what=f"{source_id}: {remote.path}",
                                                           on_error=connection.reset, said=as_shown)
        except _SameContent as same:
            copied = None if same.earlier is None else same.earlier.remote_path
            if not ledger.record(remote, same.sha256, [], candidate.sidecar, copy_of=copied):
                skipped.append(SkippedFile(name=remote.name, reason=_UNKEYED, waits=False))
            elif same.earlier is not None:
                skipped.append(SkippedFile(name=remote.name, reason=_copy(same.earlier), waits=False))
                names.add(posixpath.basename(same.earlier.remote_path))  # quoted: shown as names are
                log.info("%s", as_shown(f"{source_id}: {remote.path} from {where} not landed: "
                                           f"{skipped[-1].reason}"))
            else:
                skipped.append(SkippedFile(name=remote.name, reason="re-uploaded with the same content as already "
                                                                    "pulled", waits=False))
            continue
        except ChangedWhileRead as changed:  # not a failure: the sender is still at it; not in the ledger
            skipped.append(SkippedFile(name=remote.name, reason=f"{changed}; it may still be uploading: nothing "
                                                                "landed, the next pull takes it"))
            log.warning("%s", as_shown(f"{source_id}: {remote.path} from {where} not pulled: "
                                          f"{skipped[-1].reason}"))
            continue
        except (TransferFailed, ChecksumMismatch, ZipRefused, CredentialsError, RemoteRefused, NoRoom) as exc:
            names.update(exc.members if isinstance(exc, ZipRefused) else ())  # quoted: shown as landed names
            failures.append(f"{source_id}: {remote.path} from {where} not pulled: {exc}; nothing landed, the next "
                            "pull tries it again")
            log.error("%s", as_shown(failures[-1]))
            continue
        ledger.record(remote, sha256, landed, candidate.sidecar)
        pulled += landed
        names.update([*landed, *left_out, *unmatched])
        if unmatched:  # as docs/pull.md says: none left out without a word
            notes.append(f"{remote.name}: its member(s) {_listed([shown(m) for m in unmatched], ', ')} not landed: "
                         f"not named as the source's exports ('{mapping.files}')")
        if left_out:
            notes.append(f"{remote.name}: its member(s) {_listed([shown(m) for m in left_out], ', ')} not landed: "
                         "named as an upload's "
                         "temporary or a lock file (zipped while a file was written or open)")
        if delivery.delete_after_pull:
            try:
                if (kept := _delete_remote(connection.zone(), remote, listing)) is not None:
                    notes.append(kept)
            except Exception as exc:  # landed and recorded: a file left behind is only noted
                notes.append(f"{remote.name} could not be deleted from the drop zone ({exc})")
    return _names_shown(_outcome(source_id, where, pulled, skipped, failures, notes), names, numbers)


def _folders_not_read(folders: list[str], where: str) -> str:
    listed = _listed([f"{shown(name)}/" for name in folders], ", ")
    return (f"the folder {listed} in {where} is" if len(folders) == 1 else f"the folders {listed} in {where} are") + \
        " not read: a pull reads the top of the drop zone only, not its subfolders (put the exports there)"


def _as_said(names: Iterable[str | RemoteFile]) -> set[str]:
    """The file names a message may quote, each as listed and as a message writes it (`shown`: a control
    character escaped), so that each is found there and shown without its patient number. A remote path is
    the drop zone's folder (the mapping's url, said as written) and one of these names."""
    listed = {n.name if isinstance(n, RemoteFile) else n for n in names}
    return listed | {shown(n) for n in listed}


def _names_shown(outcome: PullOutcome, names: set[str], numbers: PatientNumbers) -> PullOutcome:
    """The outcome with every file name in it as shown: a name may hold a patient number."""
    quoted = QuotedNames(_as_said(names))

    def said(text: str) -> str:
        return quoted.shown(text, numbers)

    def said_file(left: SkippedFile) -> SkippedFile:
        return left.model_copy(update={"name": said(left.name), "reason": said(left.reason)})

    later = outcome.left_for_later
    return outcome.model_copy(update={
        "pulled": [said(n) for n in outcome.pulled], "failures": [said(f) for f in outcome.failures],
        "skipped": [said_file(s) for s in outcome.skipped], "message": said(outcome.message),
        "left_for_later": None if later is None else [said_file(s) for s in later]})


def _listed(items: list[str], separator: str, more: str = "") -> str:
    """The first `LISTED` of `items`, then how many more: thousands of files waiting made a message of 1.1 MB, an
    Airflow XCom and a log line. The outcome's lists keep them all; each file failed or left for later is logged,
    each pulled is in the ledger."""
    if len(items) <= LISTED:
        return separator.join(items)
    return separator.join(items[:LISTED]) + f"{separator}and {len(items) - LISTED} more{more}"


def _outcome(source_id: str, where: str, pulled: list[str], skipped: list[SkippedFile], failures: list[str],
             notes: list[str]) -> PullOutcome:
    parts = []
    if pulled:
        parts.append(f"pulled {len(pulled)} file(s) from {where}: {_listed(pulled, ', ')}")
    if failures:
        parts.append(_listed([f.removeprefix(f"{source_id}: ") for f in failures], "; ", " not pulled"))
    if not pulled and not failures:
        parts.append(f"nothing new in {where}")
    if skipped:
        parts.append("left for later: " + _listed([f"{s.name} ({s.reason})" for s in skipped], "; "))
    if notes:
        parts.append(_listed(notes, "; ", " note(s)"))
    status = PullStatus.FAILED if failures else PullStatus.PULLED if pulled else PullStatus.NOTHING_NEW
    return PullOutcome(source_id=source_id, status=status, pulled=pulled, skipped=skipped, failures=failures,
                       message=f"{source_id}: " + "; ".join(parts),
                       left_for_later=[s for s in skipped if s.waits])


def source_ids(sources_dir: Path = SOURCES_DIR) -> list[str]:
    return sorted(p.stem for p in sources_dir.glob("*.yaml"))


class UnknownSource(ValueError):
    """Sources named that have no mapping (a typo): refused before anything is pulled or recorded, or a
    source there is no such thing as was shown by `rtw status` as a failed pull."""


def refuse_unknown(named: list[str], sources_dir: Path = SOURCES_DIR) -> None:
    """Raise UnknownSource naming the sources in `named` without a mapping in `sources_dir`, and the known ones."""
    known = source_ids(sources_dir)
    unknown = [name for name in named if name not in known]
    if not unknown:
        return
    plural = "s" if len(unknown) > 1 else ""
    files = ", ".join(f"{name}.yaml" for name in unknown)
    raise UnknownSource(f"no source{plural} {', '.join(repr(name) for name in unknown)} (no mapping{plural} {files} "
                        f"in {sources_dir}); the sources are: {', '.join(known) or 'none'}")


def pull_all(home: Home, *, sources: list[str] | None = None, sources_dir: Path = SOURCES_DIR,
             policy: PullPolicy | None = None, key_value: str | None = None) -> list[PullOutcome]:
    """Pull every source (or those named), one outcome each; a failure of one never stops the others.
    Credentials come from env AIRFLOW_CONN_<ID>; the key as `pull_source` takes it. A source named that has no
    mapping refuses them all at once (UnknownSource), before anything is pulled."""
    if sources is not None:
        refuse_unknown(sources, sources_dir)
    outcomes = []
    for source_id in sources if sources is not None else source_ids(sources_dir):
        try:
            outcomes.append(pull_source(home, source_id, sources_dir=sources_dir, policy=policy, key_value=key_value))
        except Exception as exc:  # an unforeseen error is this source's failure, not the loop's
            log.exception("%s: the pull failed", source_id)
            # Said as a run's reason is (etl/run_record.py): its text may quote what it met; the log has it.
            reason = _unforeseen(home, source_id, sources_dir, exc)
            outcomes.append(_recorded(home, _failed(source_id, f"{source_id}: the pull failed: {reason}")))
    return outcomes


def _unforeseen(home: Home, source_id: str, sources_dir: Path, exc: Exception) -> str:
    """An unforeseen failure of a source's pull as said (`said`), each patient number in it hidden as the pull
    hides them in names (`PatientNumbers.staged`: a key-like token before any key is staged), not only long
    runs of digits: its text may quote a file per patient's path."""
    try:
        return said(exc, PatientNumbers.staged(home.staging, load_mapping(sources_dir / f"{source_id}.yaml")))
    except Exception:  # the mapping or the staged keys cannot be read (what may have failed): as before any key
        return said(exc, PatientNumbers(lambda: (), key_like=True))


class DropZoneState(StrEnum):
    NO_DROP_ZONE = "no_drop_zone"
    NEW_EXPORT = "new_export"
    NOTHING_NEW = "nothing_new"
    UNREACHABLE = "unreachable"  # may pass: worth asking again
    INVALID = "invalid"  # the mapping or the credentials: asking again gives the same answer


class DropZoneCheck(BaseModel):
    """Whether a new export waits in a source's drop zone (what the DAG's sensor asks)."""

    source_id: str
    state: DropZoneState
    waiting: list[str] = Field(default_factory=list, description="remote files a pull would land now")
    message: str


def check_drop_zone(home: Home, source_id: str, *, connection_uri: str | None = None,
                    sources_dir: Path = SOURCES_DIR, key_value: str | None = None) -> DropZoneCheck:
    """One look at the drop zone: the exports a pull would land now. Lands nothing, takes no lock. The key as
    `pull_source` takes it: without it, an erased patient's file still in the drop zone looks new."""
    def answer(state: DropZoneState, message: str, waiting: list[str] | None = None) -> DropZoneCheck:
        return DropZoneCheck(source_id=source_id, state=state, waiting=waiting or [],
                             message=f"{source_id}: {message}")

    try:
        mapping = load_mapping(sources_dir / f"{source_id}.yaml")
        delivery = mapping.delivery
        if delivery is None:
            return answer(DropZoneState.NO_DROP_ZONE, "no drop zone (no delivery: in its mapping)")
        credentials = credentials_for(mapping, connection_uri)
        refuse_other_key(home, key_value)  # the pull would refuse it: the wait ends, for the pull to say why
        ledger = read_ledger(home, source_id, key=ledger_key(home, key_value))
    except WarehouseBusy as exc:  # a publish's moment: looked at again, as a drop zone out of reach is
        return answer(DropZoneState.UNREACHABLE, f"not looked at now: {exc}; asked again")
    except (MappingError, CredentialsError, OSError, ValueError, KeyMismatch) as exc:
        return answer(DropZoneState.INVALID, str(exc).removeprefix(f"{source_id}: "))
    numbers = PatientNumbers.staged(home.staging, mapping)
    listing: list[RemoteFile] = []
    try:
        zone = connect(delivery, credentials, source_id=source_id)
        try:
            listing = zone.list_files()
            candidates, _ = _new_files(mapping, zone, listing, ledger, time.time())
        finally:
            zone.close()
    except (CredentialsError, ChecksumMismatch) as exc:
        return answer(DropZoneState.INVALID, names_shown(f"the drop zone {delivery.url} cannot be read: {exc}",
                                                         _as_said(listing), numbers))
    except Exception as exc:  # any transport error (a sidecar it could not read, named): asked again next poke
        reached = f"the drop zone {delivery.url} cannot be reached: {type(exc).__name__}: {exc}"
        return answer(DropZoneState.UNREACHABLE, names_shown(reached, _as_said(listing), numbers))
    # What a pull would land: not a file it refuses, nor one whose checksum says it is the last pulled
    # from its path again (the pull downloads it to be sure, and lands nothing).
    names = [shown_file_name(c.remote.name, numbers) for c in candidates
             if c.refusal is None and not _resent(c, ledger, mapping)]
    if names:
        return answer(DropZoneState.NEW_EXPORT, f"new in {delivery.url}: {', '.join(names)}", names)
    return answer(DropZoneState.NOTHING_NEW, f"nothing new in {delivery.url}")
