"""The ledger of what was pulled from a source's drop zone: `<home>/pulled/<source_id>.jsonl`.

A remote file is known by its path, size and version (S3 ETag, else modification time); the
sha256 of what was downloaded is kept too, so a file re-uploaded unchanged (new time, same
content) is not landed twice. Both are compared with the last file pulled from that path only: a
source that corrects a file back to an earlier version (A, B, then A again) sends a new export. The
same bytes under another name are a copy of a file pulled before when that file is still its series'
current one (`copy_of`): a sender's retry, not landed. Its line names that file (`PulledFile.copy_of`): its bytes
are not what landing holds from its path, so the same bytes sent there again are a copy again, or land once the
file it copied is no longer current.
The size and version of the checksum sidecar beside the file when it was pulled are kept too
(`sidecar`): a sidecar that is no longer that one is read again (etl/pull/deliveries.py).
The ledger, not landing/, says what was pulled: cleaning landing/ does not make the drop zone's
old files new again. Owner-only; one pull of a source at a time (an exclusive lock beside it), so
the DAG and `rtw pull` cannot land the same file twice.

One JSON line per file pulled, appended and fsynced: a night's pull writes its own lines, not the
years of deliveries before it (a ledger rewritten whole grew to every night's cost). A crash in an
append leaves a last line without its newline, which is not recorded (its file is pulled again)
and is cut off before the next append. A ledger of the JSON list of earlier versions
(`<source_id>.json`) is rewritten as lines by the first pull that reads it.

`rtw forget` rewrites the ledger whole (`unnamed`): a file whose remote path carried the erased
patient's number (a file per patient, `Fall_123456_Verlauf.csv`) keeps its path as shown
(`Fall_{patient}_Verlauf.csv`), and, in place of its path, size and version, a digest of them keyed
by the pseudonymisation key (`listed`, `LedgerKey`), by which the same file listed again is known, and
one of its path alone (`path_digest`), by which its versions are told; its content's sha256 stays, by
which the same content uploaded again (under any path) is not landed again. As for a named file, only
the last version pulled from the path counts: the earlier ones are marked `earlier`, known neither way
(A, B, then A again is pulled after an erasure too), across erasures and uploads again too.
An unkeyed digest would be no secret: someone holding the home who tries every number of that shape
(10^6 for six digits, seconds) with the sizes and versions the archive shows finds it again. The
content's sha256 is kept unkeyed: the number cannot be tried into it, and the archive's tombstones are
named by it already.

Only a reader given the key (explicit, env RTW_PSEUDONYM_KEY or the home's key file; never created
here) knows an erased patient's file by its listing. A pull without it downloads such a file again,
knows it by its content and lands nothing, but cannot record it (docs/pull.md). Lines an earlier version
wrote with an unkeyed digest are read, with or without the key, and rewritten keyed by `rtw forget` or the
source's next run (`keyed`), whose key is checked against the warehouse's: never by a pull (a home without a
warehouse has none to check its key against; a wrong one would lose them for good). A pull given a key other than
the warehouse's is refused (etl/transform/keyguard.py `refuse_other_key`): what it recorded under it no later pull
would know.
After `rtw rekey` the lines keyed under the old key are known by content only, once: the pull that
downloads such a file records it under the new key.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from etl import fsio
from etl.config import Home, seconds_setting
from etl.pull.dropzone import RemoteFile
from etl.transform.pseudonym import PseudonymKey, key_is_configured, load_key

log = logging.getLogger(__name__)


class PulledFile(BaseModel):
    """One remote file pulled (or recognised as already pulled), and what it landed as."""

    model_config = ConfigDict(frozen=True)

    remote_path: str
    size: int
    version: str
    sha256: str
    landed: list[str] = Field(default_factory=list, description="the landing file names (zip: its members)")
    pulled_at: datetime
    listed: str | None = Field(default=None, description="a file whose remote path carried an erased patient's "
                               "number (rtw forget): a keyed digest of its path, size and version "
                               "(`LedgerKey.listed`), which the entry no longer holds; an earlier version's "
                               "lines held their sha256 (`listed_as`), unkeyed")
    path_digest: str | None = Field(default=None, description="of such a file: a keyed digest of its remote path "
                                    "(`LedgerKey.path`), by which its versions are told apart from other files'")
    earlier: bool | None = Field(default=None, description="an erased patient's file (listed) of which a later "
                                 "version was pulled from the same path: known neither by how it was listed nor "
                                 "by its content, as a named file's earlier versions are not")
    sidecar: str | None = Field(default=None, description="the size and version of the file's `<name>.sha256` "
                                "when it was pulled (`sidecar_seen`), '' when it had none; absent from the lines "
                                "of earlier versions, whose sidecar is judged by its time")
    copy_of: str | None = Field(default=None, description="a copy, not landed (`Ledger.copy_of`): the remote path of "
                                "the file pulled before with its bytes; absent from the lines of files landed and "
                                "of earlier versions")


def sidecar_seen(sidecar: RemoteFile | None) -> str:
    """What an entry keeps of the checksum sidecar beside a file pulled: its size and version (S3 ETag, else
    modification time: the sender's, as `scp -p` and `rsync -t` keep it), '' for none."""
    return "" if sidecar is None else f"{sidecar.size} {sidecar.version}"


def listed_as(remote_path: str, size: int, version: str) -> str:
    """The sha256 of how the drop zone listed a file, which an earlier version's entry of an erased patient's
    file kept unkeyed; `LedgerKey.listed` keys it. A name that is not UTF-8 comes escaped from the listing:
    hashed as its bytes."""
    listed = "\0".join((remote_path, str(size), version)).encode("utf-8", errors="surrogateescape")
    return hashlib.sha256(listed).hexdigest()


_KEYED = "hmac:"  # a keyed digest's prefix: an unkeyed one (an earlier version's) is 64 hex digits


class LedgerKey:
    """The key of an erased patient's files' digests, derived from the pseudonymisation key
    (`PseudonymKey.derived`): only its holder can tell which file a line is. Never stored or shown."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "LedgerKey(<hidden>)"

    @classmethod
    def of(cls, key: PseudonymKey) -> LedgerKey:
        return cls(key.derived("pull ledger"))

    def listed(self, remote_path: str, size: int, version: str) -> str:
        """How the drop zone listed a file: `listed_as` keyed, so a line an earlier version wrote unkeyed
        is keyed without its path (`listed_from`)."""
        return self.listed_from(listed_as(remote_path, size, version))

    def listed_from(self, unkeyed: str) -> str:
        """The keyed `listed` of an unkeyed one (`listed_as`)."""
        return self._digest(unkeyed)

    def path(self, remote_path: str) -> str:
        return self._digest(f"path\0{remote_path}")  # never a listed_as: that is 64 hex digits

    def _digest(self, message: str) -> str:
        text = message.encode("utf-8", errors="surrogateescape")
        return _KEYED + hmac.new(self._secret, text, hashlib.sha256).hexdigest()


def ledger_key(home: Home, key_value: str | None = None) -> LedgerKey | None:
    """The ledger's key from the pseudonymisation key (explicit, env, else the home's key file), None when
    none is configured: a pull never creates the key file, the first run does (etl/transform/keyguard.py)."""
    if not key_is_configured(home.key_file, key_value):
        return None
    return LedgerKey.of(load_key(home.key_file, key_value))


class Ledger:
    """What one source's drop zone has given: read at the start of a pull, a line added after each file.
    `key`: the ledger's key, without which an erased patient's file is known by its content only."""

    def __init__(self, path: Path, entries: list[PulledFile], key: LedgerKey | None = None) -> None:
        self.path = path
        self.entries = entries
        self.key = key
        self._last: dict[str, PulledFile] = {}  # the last file pulled from each path
        self._landed: dict[str, PulledFile] = {}  # what landing holds under each name, per the ledger
        self._landed_with: dict[str, list[PulledFile]] = {}  # earlier pulls' files landed (not this pull's), by sha256
        # An erased patient's files (rtw forget), whose paths are not kept: the last of each path's versions (by
        # its digest; a line of an earlier version, which has none, by its listing). A later version replaces the
        # earlier, which is then known neither way.
        self._unnamed: dict[str, PulledFile] = {}
        for entry in entries:
            self._remember(entry)
            if entry.listed is None and entry.landed:
                self._landed_with.setdefault(entry.sha256, []).append(entry)
        self._unnamed_known()

    def _remember(self, entry: PulledFile) -> None:
        if entry.listed is None:
            self._last[entry.remote_path] = entry
            self._landed |= dict.fromkeys(entry.landed, entry)
        elif not entry.earlier:
            self._unnamed.pop(group := entry.path_digest or entry.listed, None)  # the latest last in order
            self._unnamed[group] = entry

    def _unnamed_known(self) -> None:
        """How the last versions of erased patients' files are known: by their listing, and by their content (the
        latest of those with the same content)."""
        self._unnamed_listed = {e.listed for e in self._unnamed.values()}
        self._unnamed_content = {e.sha256: e for e in self._unnamed.values()}

    @property
    def unkeyed(self) -> bool:
        """Whether lines an earlier version wrote hold unkeyed digests (`keyed` keys them)."""
        return any(_unkeyed(e) for e in self.entries)

    def last(self, remote_path: str) -> PulledFile | None:
        """The last file pulled from this path, or None (an erased patient's file is pulled from no path)."""
        return self._last.get(remote_path)

    def pulled_from(self, remote_path: str) -> bool:
        """Whether a file was ever pulled from this path (an erased patient's too, when the key tells it)."""
        return remote_path in self._last or (self.key is not None and self.key.path(remote_path) in self._unnamed)

    def _unnamed_last(self, remote: RemoteFile) -> PulledFile | None:
        """The last version of an erased patient's file pulled from this path (the key told), if any."""
        return self._unnamed.get(self.key.path(remote.path)) if self.key is not None and self._unnamed else None

    def has(self, remote: RemoteFile) -> bool:
        """True when this version of the remote file is the last one pulled from its path, or an erased
        patient's file listed as it was pulled (no file was pulled from its path since; told by the key, or
        by a line an earlier version wrote unkeyed)."""
        last = self._last.get(remote.path)
        if last is not None:
            return (last.size, last.version) == (remote.size, remote.version)
        if not self._unnamed_listed:
            return False
        unkeyed = listed_as(remote.path, remote.size, remote.version)
        if self.key is None:
            return unkeyed in self._unnamed_listed
        keyed = self.key.listed_from(unkeyed)
        if (unnamed := self._unnamed_last(remote)) is not None:
            return unnamed.listed == keyed
        return keyed in self._unnamed_listed or unkeyed in self._unnamed_listed

    def has_content(self, remote: RemoteFile, sha256: str) -> bool:
        """True when this content is the last pulled from this remote path (re-uploaded unchanged), or, from
        a path nothing was pulled from since, an erased patient's file's (the last from its path, when the
        key tells it). Not a copy's (`PulledFile.copy_of`): landing does not hold its bytes from that path."""
        return self._content_of(remote, sha256) is not None

    def _content_of(self, remote: RemoteFile, sha256: str) -> PulledFile | None:
        last = self._last.get(remote.path) or self._unnamed_last(remote)
        if last is not None:
            return last if last.sha256 == sha256 and last.copy_of is None else None
        return self._unnamed_content.get(sha256)

    def copy_of(self, sha256: str, series: Callable[[str], str | None], name: str | None = None) -> PulledFile | None:
        """The file an earlier pull pulled with these bytes (from any path) whose landing files are still current,
        as far as the ledger tells: each the last landed under its name and the name sorting last of its series
        (`series`, as the landing reader groups them), `name` (the landing name a file would take) of one of those
        series. A copy of it, sent again under another name, would change only the name of the series' current
        file; a copy of one that a later file replaced would take the series back to it, a new export. Two files
        of one delivery (this pull's) with the same bytes both land, as they did: the night reads the source
        anyway. An erased patient's files are known by their content before (`has_content`)."""
        pulled = self._landed_with.get(sha256)
        if not pulled:  # bytes never landed: the series need not be looked at (each file downloaded asks)
            return None
        landed = self._landed
        current: dict[str | None, str] = {}  # the current file of each series
        for landed_name in sorted(landed):
            current[series(landed_name)] = landed_name
        for entry in reversed(pulled):
            if all(landed[n].sha256 == sha256 and current[series(n)] == n for n in entry.landed) and (
                    name is None or series(name) in {series(n) for n in entry.landed}):
                return entry
        return None

    def record(self, remote: RemoteFile, sha256: str, landed: list[str], sidecar: RemoteFile | None = None,
               copy_of: str | None = None) -> bool:
        """A line for the file pulled, with the checksum sidecar listed beside it (None: it had none); `copy_of`: the
        remote path of the file pulled before whose copy it is, not landed (a copy's bytes uploaded again to its
        path stay its copy). An erased patient's file uploaded again (`has_content`) is recorded without its path,
        as rtw forget left its first pull, by its keyed digests: without the key it is not recorded (False)."""
        unnamed = self._content_of(remote, sha256) if remote.path not in self._last else None
        if unnamed is not None:
            if self.key is None:
                return False
            entry = PulledFile(remote_path=unnamed.remote_path, size=0, version="", sha256=sha256, landed=[],
                               pulled_at=datetime.now(UTC), listed=self.key.listed(remote.path, remote.size,
                                                                                   remote.version),
                               path_digest=self.key.path(remote.path))
        else:
            if (last := self._last.get(remote.path)) is not None and not landed and last.sha256 == sha256:
                copy_of = copy_of or last.copy_of
            entry = PulledFile(remote_path=remote.path, size=remote.size, version=remote.version, sha256=sha256,
                               landed=landed, pulled_at=datetime.now(UTC), sidecar=sidecar_seen(sidecar),
                               copy_of=copy_of)
        _append(self.path, _line(entry).encode("utf-8"))
        self.entries.append(entry)
        self._remember(entry)
        if entry.listed is not None:
            self._unnamed_known()
        return True


def _line(entry: PulledFile) -> str:
    return entry.model_dump_json(exclude_none=True) + "\n"  # `listed` and the like only where forget wrote them


def _append(path: Path, line: bytes) -> None:
    fsio.private_folder(path.parent)
    fd = fsio.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        written = memoryview(line)
        while written:  # a write may take only part of it (a full disk)
            written = written[os.write(fd, written):]
        os.fsync(fd)
    finally:
        os.close(fd)


def ledger_folder(home: Home) -> Path:
    return home.root / "pulled"


def read_ledger(home: Home, source_id: str, *, mend: bool = False, key: LedgerKey | None = None) -> Ledger:
    """The source's ledger (empty when nothing was pulled yet); a damaged ledger is an error, not a
    fresh start: that would pull every old file again. A last line cut short is not read.

    mend: also make the file ready for appending (a pull does, holding `pulling`'s lock; a look at
    the drop zone reads only): an earlier version's list rewritten as lines, a last line cut short
    cut off, one whole but for its newline given it. The lines an earlier version wrote unkeyed are left as they
    are, under any `key` (`keyed` keys them, in a run or rtw forget): a pull compares its key with the warehouse's
    (`refuse_other_key`, etl/transform/keyguard.py), but a home without a warehouse has none to compare it with."""
    path = ledger_folder(home) / f"{source_id}.jsonl"
    earlier = path.with_suffix(".json")
    if mend:
        _as_lines(earlier, path)
    if not path.exists():
        return Ledger(path, _listed(earlier) if earlier.exists() else [], key)
    lines = path.read_bytes().splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):  # saved so by an editor, or an append cut short
        if _complete(lines[-1]):
            if mend:
                _append(path, b"\n")
        else:  # that file was not recorded
            cut = lines.pop()
            if mend:
                log.warning("%s: its last line was cut short (a pull stopped while recording a file): it is "
                            "dropped, and that file will be pulled again", path)
                os.truncate(path, path.stat().st_size - len(cut))
    entries = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            with _readable(f"{path} line {number}"):
                entries.append(PulledFile.model_validate_json(line))
    return Ledger(path, entries, key)


def _unkeyed(entry: PulledFile) -> bool:
    return entry.listed is not None and not entry.listed.startswith(_KEYED)


def _rewrite(path: Path, entries: list[PulledFile]) -> None:
    fsio.write_text(path, "".join(_line(e) for e in entries))
    fsio.fsync(path.parent)


def unnamed(home: Home, source_id: str, shown: Callable[[str], str], key: LedgerKey) -> int:
    """The source's ledger rewritten with each remote path and landing name that carries an erased patient's
    number as `shown` shows it (rtw forget; see the module docstring); how many entries changed. A path
    shown so is kept by keyed digests (`listed`, `path_digest`): the file is not pulled again, unless a later
    version of it was pulled (`earlier`)."""
    with pulling(home, source_id):
        ledger = read_ledger(home, source_id, mend=True, key=key)
        entries = _last_versions([_unnamed(_keyed_entry(e, key), shown, key) for e in ledger.entries], key)
        changed = sum(new != old for new, old in zip(entries, ledger.entries, strict=True))
        if changed:
            _rewrite(ledger.path, entries)
    return changed


def keyed(home: Home, source_id: str, key: LedgerKey) -> None:
    """The source's ledger with the lines an earlier version wrote unkeyed rewritten keyed, by a run or `rtw
    forget`, whose key is the warehouse's (etl/transform/keyguard.py): a pull's may be another, under which the
    lines would be lost for good. A pull reads them unkeyed, with or without the key (`Ledger.has`)."""
    with pulling(home, source_id):
        ledger = read_ledger(home, source_id, mend=True, key=key)
        if ledger.unkeyed:
            _rewrite(ledger.path, [_keyed_entry(e, key) for e in ledger.entries])


def _keyed_entry(entry: PulledFile, key: LedgerKey) -> PulledFile:
    """The entry, its digest keyed if an earlier version wrote it unkeyed."""
    if entry.listed is None or not _unkeyed(entry):
        return entry
    return entry.model_copy(update={"listed": key.listed_from(entry.listed)})


def _unnamed(entry: PulledFile, shown: Callable[[str], str], key: LedgerKey) -> PulledFile:
    """The entry with its names shown; one whose path is shown so kept by its keyed digests (the sidecar's
    size and version go too: only a named file's sidecar is looked at again)."""
    landed = [shown(name) for name in entry.landed]
    if entry.copy_of is not None and (copied := shown(entry.copy_of)) != entry.copy_of:  # the path of a file above
        entry = entry.model_copy(update={"copy_of": copied})
    if (path := shown(entry.remote_path)) != entry.remote_path:
        return PulledFile(remote_path=path, size=0, version="", sha256=entry.sha256, landed=landed,
                          pulled_at=entry.pulled_at, listed=key.listed(entry.remote_path, entry.size, entry.version),
                          path_digest=key.path(entry.remote_path))
    return entry.model_copy(update={"landed": landed}) if landed != entry.landed else entry


def _last_versions(entries: list[PulledFile], key: LedgerKey) -> list[PulledFile]:
    """Of each path an erased patient's file was pulled from, the versions but the last marked `earlier`, as
    only a named file's last version counts: across erasures and uploads again too (lines are in order). A
    line an earlier version wrote has no path digest: it stays as it is."""
    if not any(e.path_digest for e in entries):
        return entries
    paths = [e.path_digest if e.listed is not None else key.path(e.remote_path) for e in entries]
    last = {p: i for i, p in enumerate(paths) if p is not None}
    return [e.model_copy(update={"earlier": True}) if e.listed is not None and not e.earlier and p is not None
            and last[p] != i else e for i, (e, p) in enumerate(zip(entries, paths, strict=True))]


def _as_lines(earlier: Path, path: Path) -> None:
    """The JSON list of an earlier version rewritten as the ledger's lines, then removed."""
    if not earlier.exists():
        return
    if not path.exists():
        fsio.write_text(path, "".join(_line(e) for e in _listed(earlier)))
    earlier.unlink()  # or a pull that rewrote it stopped before this
    fsio.fsync(path.parent)


def _complete(line: bytes) -> bool:
    try:
        PulledFile.model_validate_json(line)
    except ValueError:
        return False
    return True


def _listed(earlier: Path) -> list[PulledFile]:
    """The entries of an earlier version's ledger, a JSON list."""
    with _readable(str(earlier)):
        return [PulledFile.model_validate(item) for item in json.loads(earlier.read_text(encoding="utf-8"))]


@contextmanager
def _readable(where: str) -> Iterator[None]:
    try:
        yield
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"{where}: the ledger of pulled files cannot be read ({exc.__class__.__name__}); "
                         "restore it from a backup: without it every file in the drop zone would be pulled "
                         "again") from None


class PullBusy(RuntimeError):
    """Another pull of the source held its lock for the whole wait."""


@contextmanager
def pulling(home: Home, source_id: str, *, lock: str = "lock", bounded: bool = False) -> Iterator[None]:
    """Hold the source's pull lock (or its other `lock`) for the block; waits for another holder. `bounded` (a
    pull): at most RTW_PULL_WAIT seconds (default 120), then PullBusy: `rtw pull` goes through every source in
    turn, and one held by a long download or a pull hung on its drop zone stopped every source after it."""
    folder = fsio.private_folder(ledger_folder(home))
    fd = fsio.open_private(folder / f"{source_id}.{lock}")
    try:
        if not bounded:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            wait = seconds_setting("RTW_PULL_WAIT", 120)
            deadline = time.monotonic() + wait
            while not _locked_now(fd):
                if time.monotonic() >= deadline:
                    raise PullBusy(f"another pull of {source_id} held it for {wait:g} s (a long download, or a "
                                   "pull hung on its drop zone; RTW_PULL_WAIT sets the wait)")
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _locked_now(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
