"""Giving freed memory back to the system between the batches and parts of a large run.

CPython frees a batch's millions of small strings to the C heap, and glibc keeps most of those
pages when live objects sit between them: the process's resident memory then grows with every
batch although it holds only one. A garbage collection (GX's result objects hold frames in
reference cycles) and `malloc_trim` return them, so memory holds one batch, not the high-water
mark of all of them. Arrow's own pool is handed back apart (`release_arrow`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


# Below this many rows the garbage is small, and a collection costs ~0.2 s once GX, Splink and
# pandas are loaded (a dozen per run made `make test` minutes slower).
WORTH_ROWS = 20_000


def release_arrow() -> None:
    """Arrow's pool keeps what Arrow freed (reading, staging) for its next allocation: hand it back
    before Python work that needs the room."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def release(rows: int) -> None:
    """After work on `rows` rows (WORTH_ROWS or more): collect garbage and hand the heap's free
    pages back to the system (where the C library can)."""
    if rows < WORTH_ROWS:
        return
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


_settling = 0  # the settled() blocks this process is in: only the outermost freezes and unfreezes


@contextmanager
def settled() -> Iterator[None]:
    """Within it, the objects alive on entry (the libraries' millions: GX, pandas, Splink) are left out
    of each collection (`gc.freeze`): `release` then scans only what the work made since. They are
    still freed when their last reference goes; only a cycle among them waits until the outermost exit.

    Within another, it freezes what is alive now as well (GX, imported meanwhile, is left out of its
    batches' collections) and leaves the unfreezing to the outermost block: unfreezing would end the
    outer's freeze early."""
    global _settling
    gc.freeze()
    _settling += 1
    try:
        yield
    finally:
        _settling -= 1
        if _settling == 0:
            gc.unfreeze()


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off for a while (it is back on after, if it was on).

    Work that makes millions of objects and no garbage cycle needs no collection: reading a file
    keeps many small lists alive (rows, frames), and every few thousand CPython's collector walks all
    of them, which cost as much as the parsing; importing GX, 0.4 s of its 1.7 s. Reference counting
    frees everything as before.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
