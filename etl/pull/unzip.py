"""Unpacking a zip delivery into landing/, safely.

A zip from outside is hostile until proven otherwise. Refused, before anything is written:
members with an absolute path or `..` (path traversal), symbolic links, more members than
allowed, a total uncompressed size over the limit, a member whose compression ratio is that
of a zip bomb, members to land that expand together as a zip bomb does (thousands of small
members, each under the size a member's ratio is judged at), and members to land larger in
total than the free space of landing/ can take.
A ratio divides by the compressed sizes the zip's directory declares, which its sender writes: never
by more than the zip's own size (a zip declaring each member 1 MiB compressed would expand once).
While unpacking, the bytes actually produced are counted too (a header may lie about a
member's size). Members are flattened to their file name (landing/ is flat);
two members of the same name are refused. Every member is written to a temporary dotfile and
all are renamed in only when all are complete, so a refused or broken zip lands nothing.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO

from pydantic import BaseModel, ConfigDict

from etl import fsio
from etl.pull.room import lacking_room

_CHUNK = 1 << 20


class ZipRefused(ValueError):
    """A zip delivery is not unpacked; the message names the member and the reason. `members`: the member
    names it quotes, which may hold a patient number (shown as landing names are: etl/extract/file_names.py)."""

    def __init__(self, message: str, members: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.members = tuple(members)


class ZipLimits(BaseModel):
    """Limits against zip bombs. A ratio is judged only on members large enough for it to matter."""

    model_config = ConfigDict(frozen=True)

    max_members: int = 10_000
    max_total_bytes: int = 8 << 30  # 8 GiB uncompressed
    max_ratio: float = 200.0  # CSV and XML exports compress 5-30x; a bomb 1000x and more
    ratio_floor_bytes: int = 1 << 20  # below 1 MiB, a high ratio cannot hurt


class Unpacked(BaseModel):
    landed: list[str]
    skipped: list[str]  # members not matching the mapping's files


def _refusal(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path (path traversal)"
    if ".." in parts:
        return "a path with '..' (path traversal)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _archive_bytes(archive: zipfile.ZipFile) -> int:
    """The size of the zip file (opened from a file): all its members' compressed bytes can hold, whatever
    its directory declares."""
    assert archive.fp is not None
    return os.fstat(archive.fp.fileno()).st_size


def check_zip(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The zip's file members, after every check that needs no unpacking; ZipRefused otherwise."""
    members = archive.infolist()
    archive_bytes = _archive_bytes(archive)
    if len(members) > limits.max_members:
        raise ZipRefused(f"{len(members)} members, more than the limit of {limits.max_members} (a zip bomb?)")
    total = 0
    files = []
    for info in members:
        if (refused := _refusal(info)) is not None:
            raise ZipRefused(f"member {info.filename!r} is {refused}", [info.filename])
        if info.is_dir():
            continue
        if (ratio := _bomb_ratio(info.file_size, info.compress_size, archive_bytes, limits)) is not None:
            raise ZipRefused(f"member {info.filename!r} expands {ratio:.0f} times ({info.file_size} bytes), more "
                             f"than the limit of {limits.max_ratio:.0f} (a zip bomb?)", [info.filename])
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ZipRefused(f"members total more than the limit of {limits.max_total_bytes} bytes uncompressed "
                             "(a zip bomb?)")
        files.append(info)
    return files


def _bomb_ratio(size: int, compressed: int, archive_bytes: int, limits: ZipLimits) -> float | None:
    """How many times `size` bytes expand from `compressed`, when that is a zip bomb's (over the limit, and
    `size` over `ratio_floor_bytes`), else None. `compressed` is what the zip's directory declares, its sender's
    word: taken for no more than the zip's own size, `archive_bytes`."""
    ratio = size / max(min(compressed, archive_bytes), 1)
    return ratio if size > limits.ratio_floor_bytes and ratio > limits.max_ratio else None


def _refuse_landing(members: list[zipfile.ZipInfo], folder: Path, keep_free_bytes: int, limits: ZipLimits,
                    archive_bytes: int) -> None:
    """ZipRefused when the members to land, at the sizes their headers declare (unpacking stops a member that
    produces more), would leave less than `keep_free_bytes` free in `folder` (said first: it says more), or
    expand together as a zip bomb does. Each member's ratio is judged only over `ratio_floor_bytes`: 8,000
    members of 1 MiB of zeros each pass that test and unpack 8 GiB from 8 MB."""
    total = sum(info.file_size for info in members)
    if (lacking := lacking_room(folder, total, keep_free_bytes)) is not None:
        raise ZipRefused(f"the {len(members)} member(s) to land total {total} bytes uncompressed, more than landing "
                         f"can take: it has {lacking}")
    compressed = sum(info.compress_size for info in members)
    if (ratio := _bomb_ratio(total, compressed, archive_bytes, limits)) is not None:
        raise ZipRefused(f"the {len(members)} member(s) to land expand {ratio:.0f} times together ({total} bytes), "
                         f"more than the limit of {limits.max_ratio:.0f} (a zip bomb?)")


def unpack_zip(zip_path: Path, folder: Path, wanted: Callable[[str], bool], *, limits: ZipLimits | None = None,
               unlandable: Callable[[str], str | None] = lambda name: None,
               before_landing: Callable[[str, str], None] | None = None, keep_free_bytes: int = 0) -> Unpacked:
    """Unpack the members whose file name is `wanted` into `folder`, all or nothing.

    `unlandable(name)` says why a wanted member's file name cannot be a landing file's (a line break in
    it, too long), or None: the zip is refused rather than a name no file sent on its own would land as.
    Two wanted members whose names differ only in case are refused too: on a case-insensitive file
    system (a share landing/ is copied to) one would silently replace the other.

    `before_landing(name, sha256)` is called for each member once all are unpacked, just before
    they are renamed in (the pull declares their checksums to the landing reader there).

    The members to land must leave `keep_free_bytes` free in `folder`, else the zip is refused before
    one is written (a full disk would fail the night's run, and a zip of a few MB unpacks to GBs)."""
    limits = limits or ZipLimits()
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ZipRefused(f"not a readable zip file ({exc})") from None
    with archive, ExitStack() as renames:
        members = check_zip(archive, limits)
        chosen: dict[str, zipfile.ZipInfo] = {}
        folded: dict[str, zipfile.ZipInfo] = {}  # by casefolded name
        skipped = []
        for info in members:
            name = PurePosixPath(info.filename.replace("\\", "/")).name
            if name.startswith(".") or not wanted(name):
                skipped.append(info.filename)
                continue
            if (why := unlandable(name)) is not None:
                raise ZipRefused(f"member {info.filename!r} cannot land: {why}", [info.filename])
            if name in chosen:
                raise ZipRefused(f"members {chosen[name].filename!r} and {info.filename!r} both unpack to {name}",
                                 [chosen[name].filename, info.filename, name])
            if (same := folded.get(name.casefold())) is not None:
                raise ZipRefused(f"members {same.filename!r} and {info.filename!r} differ only in case (one file "
                                 "on a case-insensitive file system)", [same.filename, info.filename])
            chosen[name] = folded[name.casefold()] = info
        _refuse_landing(list(chosen.values()), folder, keep_free_bytes, limits, _archive_bytes(archive))
        produced = 0
        digests: dict[str, str] = {}
        for name, info in chosen.items():
            # Entered now, left (renamed in) together at the end; an error removes every temporary.
            temp = renames.enter_context(fsio.written_atomically(folder / name))
            written = 0
            digest = hashlib.sha256()
            try:
                with archive.open(info) as member, temp.open("wb") as out:
                    while chunk := _unpacked(member, info.filename):
                        written += len(chunk)
                        produced += len(chunk)
                        if written > info.file_size or produced > limits.max_total_bytes:
                            raise ZipRefused(f"member {info.filename!r} unpacks to more bytes than its header "
                                             "declares (a zip bomb?)", [info.filename])
                        out.write(chunk)
                        digest.update(chunk)
            except _DAMAGED as exc:
                raise ZipRefused(f"member {info.filename!r} cannot be unpacked ({exc})", [info.filename]) from None
            except RuntimeError as exc:  # an encrypted member
                raise ZipRefused(f"member {info.filename!r} cannot be unpacked ({exc})", [info.filename]) from None
            digests[name] = digest.hexdigest()
        if before_landing is not None:
            for name, sha256 in digests.items():
                before_landing(name, sha256)
        return Unpacked(landed=sorted(chosen), skipped=skipped)


# What a member's header or compressed bytes, damaged, raise as they are read: the zip is refused, never retried
# as a dropped connection would be (zlib's, lzma's and bz2's errors are not BadZipFile's).
_DAMAGED = (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error, lzma.LZMAError)


def _unpacked(member: IO[bytes], name: str) -> bytes:
    """The member's next bytes; a damaged stream refused naming it (bz2's error is an OSError, told from the
    landing folder's own, which writing raises, by being raised here)."""
    try:
        return member.read(_CHUNK)
    except (*_DAMAGED, OSError) as exc:
        raise ZipRefused(f"member {name!r} cannot be unpacked: its compressed data is damaged ({exc})",
                         [name]) from None
