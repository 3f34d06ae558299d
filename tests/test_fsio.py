"""etl/fsio.py: artefacts appear whole or not at all, owner-only whatever the umask, and two
writers of one target never trip over each other's temporary."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl import fsio


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """As an operator's shell usually has it: group and others could read what is created."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(fsio.TEMP_SUFFIX))


def test_a_file_is_renamed_in_whole_and_owner_only(tmp_path):
    target = tmp_path / "deep" / "er" / "out.parquet"
    with fsio.written_atomically(target) as temp:
        assert temp.parent == target.parent and temp.name.endswith(".partial") and temp.name.startswith(".")
        temp.write_bytes(b"whole")
        assert not target.exists()  # nothing under the final name while it is being written
    assert target.read_bytes() == b"whole"
    assert _mode(target) == 0o600
    assert _mode(tmp_path / "deep") == _mode(tmp_path / "deep" / "er") == 0o700
    assert _leftovers(target.parent) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = fsio.write_text(tmp_path / "page.html", "old")
    with pytest.raises(RuntimeError), fsio.written_atomically(target) as temp:
        temp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_a_folder_replaces_the_old_one_whole_with_owner_only_contents(tmp_path):
    target = tmp_path / "set"
    with fsio.written_atomically(target, folder=True) as temp:
        (temp / "a.parquet").write_text("1")
    with fsio.written_atomically(target, folder=True) as temp:
        (temp / "sub").mkdir()
        (temp / "sub" / "b.parquet").write_text("2")  # written under umask 022 by a library
    assert sorted(p.name for p in target.rglob("*")) == ["b.parquet", "sub"]
    assert _mode(target) == _mode(target / "sub") == 0o700
    assert _mode(target / "sub" / "b.parquet") == 0o600
    assert _leftovers(tmp_path) == []


def test_a_copy_is_owner_only_and_keeps_the_modification_time(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text("id;name\n1;x\n")
    os.chmod(source, 0o644)
    os.utime(source, (1_700_000_000, 1_700_000_000))
    copy = fsio.copy_file(source, tmp_path / "archive" / "export.csv")
    assert copy.read_text() == source.read_text()
    assert _mode(copy) == 0o600
    assert copy.stat().st_mtime == 1_700_000_000


def test_an_exclusive_file_is_created_once_and_whole(tmp_path):
    key = tmp_path / "secrets" / "pseudonym.key"
    assert fsio.create_exclusive(key, b"first")
    assert not fsio.create_exclusive(key, b"second")
    assert key.read_bytes() == b"first"
    assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
    assert _leftovers(key.parent) == []


def test_a_symlink_is_swapped_with_one_rename(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    link = tmp_path / "latest"
    fsio.swap_symlink(link, "r1")
    fsio.swap_symlink(link, "r2")
    assert os.readlink(link) == "r2"
    assert _leftovers(tmp_path) == []


def test_an_existing_folder_is_tightened(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    fsio.private_folder(home)
    assert _mode(home) == 0o700


def test_a_shared_sticky_folder_like_tmp_is_left_open(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    fsio.write_bytes(shared / "staged.parquet", b"x")  # a file written straight into it
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert _mode(shared / "staged.parquet") == 0o600


def test_two_writers_of_one_target_never_collide(tmp_path):
    """The race of two runs staging the same file: each has its own temporary, the last rename wins."""
    target = tmp_path / "staged.parquet"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(50):
                fsio.write_bytes(target, str(n).encode() * 1000)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert len(set(target.read_bytes())) == 1  # one writer's content, never a mix
    assert _leftovers(tmp_path) == []


def test_the_private_umask_covers_libraries_that_take_no_mode(tmp_path):
    with fsio.private_umask():
        (tmp_path / "by_a_library.parquet").write_text("x")
    assert _mode(tmp_path / "by_a_library.parquet") == 0o600
    assert os.umask(0o022) == 0o022  # restored afterwards
