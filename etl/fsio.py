"""Writing files under the home: atomically, durably and owner-only. The one place that does it.

Every artefact appears whole under its final name or not at all: it is written to a temporary
name beside its target (same folder, so the rename never crosses a file system), fsynced,
renamed in with one rename(2), and the folder is fsynced so the rename survives a power cut.
Temporaries are named `.<target>.<random>.partial`: unique, so two writers of the same target
never trip over each other's temporary (the "No such file ... .tmp" race of two runs), hidden
from `*.parquet` globs, and recognisable by crash repair (etl/repair.py), which removes those a
dead run left behind.

The home holds clear identifiers (archive, staging), so everything here is created owner-only,
0700 folders and 0600 files, whatever the process umask: the modes are set explicitly, not
left to the umask. `private_umask()` additionally makes files written by libraries that take
no mode (DuckDB, Arrow, Great Expectations, matplotlib) owner-only for the length of a run.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
TEMP_SUFFIX = ".partial"


def temp_name(target: Path) -> Path:
    """A fresh temporary path beside `target` that crash repair recognises."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def remove_path(path: Path) -> None:
    """A file, a link or a folder with what it holds, gone (a missing one too)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def temporaries(target: Path) -> set[Path]:
    """The temporaries beside `target` (`temp_name`, `written_atomically`'s files and folders)."""
    if not target.parent.is_dir():
        return set()
    return set(target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}"))


def private_folder(folder: Path) -> Path:
    """Create `folder` (and missing parents) owner-only; an existing folder we own is made 0700."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in missing:  # mkdir's mode is filtered by the umask: set it explicitly
        os.chmod(created, FOLDER_MODE)
    status = folder.stat()
    # A folder another account owns (a drop zone) is left as it is, and so is a shared one such as /tmp
    # (sticky): root owns it, and a file written straight into it must not lock every other user out.
    if status.st_uid == os.geteuid() and not status.st_mode & stat.S_ISVTX:
        os.chmod(folder, FOLDER_MODE)
    return folder


def fsync(path: Path) -> None:
    """Make a file's content, or the renames and creations in a folder, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal_tree(folder: Path) -> None:
    """Owner-only modes and fsync for everything a writer put into a temporary folder."""
    for root, folders, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            os.chmod(path, FILE_MODE)
            fsync(path)
        for name in folders:
            os.chmod(Path(root, name), FOLDER_MODE)
        fsync(Path(root))


@contextmanager
def written_atomically(out: Path, *, folder: bool = False) -> Iterator[Path]:
    """A temporary file (or folder) beside `out`, renamed to `out` when the block completes and
    removed when it fails: a reader never finds half an artefact at `out`.

    The temporary is owner-only from its creation; on success it is made owner-only again (a
    writer may have recreated it), fsynced, renamed in, and the parent folder fsynced.
    """
    private_folder(out.parent)
    if folder:
        temp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX))  # 0700
    else:
        descriptor, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX)  # 0600
        os.close(descriptor)
        temp = Path(name)
    try:
        yield temp
        if folder:
            _seal_tree(temp)
        else:
            os.chmod(temp, FILE_MODE)
            fsync(temp)
        if folder and out.exists():  # rename(2) cannot replace a non-empty folder: move the old one aside
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX))
            os.replace(out, old / out.name)
            os.replace(temp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
        fsync(out.parent)
    except BaseException:
        if folder:
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise


def write_bytes(target: Path, data: bytes) -> Path:
    """Replace `target` with `data` atomically (owner-only)."""
    with written_atomically(target) as temp:
        temp.write_bytes(data)
    return target


def write_text(target: Path, text: str, encoding: str = "utf-8") -> Path:
    """Replace `target` with `text` atomically (owner-only)."""
    return write_bytes(target, text.encode(encoding))


def copy_file(source: Path, target: Path) -> Path:
    """Copy `source` to `target` atomically, owner-only, keeping its modification time (not its mode:
    a world-readable export must not stay world-readable in the archive)."""
    with written_atomically(target) as temp:
        shutil.copyfile(source, temp)  # into the existing 0600 temporary: its mode stays
        stat = source.stat()
        os.utime(temp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return target


def create_exclusive(target: Path, data: bytes) -> bool:
    """Create `target` holding `data` unless it exists; True when this call created it.

    Written to a temporary and linked in, so the file never exists half-written (a key file cut
    short by a crash would silently become another key), and of two creators only one wins.
    """
    private_folder(target.parent)
    temp = temp_name(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)
        try:
            os.link(temp, target)  # unlike rename, fails when target exists
        except FileExistsError:
            return False
        fsync(target.parent)
        return True
    finally:
        temp.unlink(missing_ok=True)


def swap_symlink(link: Path, target: str | os.PathLike[str]) -> None:
    """Point `link` at `target` (as given, e.g. relative) with one rename: a reader finds the old
    target or the new one, never no link."""
    temporary = temp_name(link)
    temporary.symlink_to(target, target_is_directory=True)
    try:
        os.replace(temporary, link)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync(link.parent)


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created in this block by any library are owner-only (umask 077)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A descriptor on `path`, created owner-only if missing (for lock files)."""
    fd = os.open(path, flags, FILE_MODE)
    if os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, FILE_MODE)
    return fd
