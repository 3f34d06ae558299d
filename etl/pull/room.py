"""Room in landing/: what a pull may write there and still leave the night's run the space it needs.

One test for a download (transfer.py) and a zip's members (unzip.py), asked before a byte is written:
a sparse file of a terabyte costs its sender nothing, and a zip of a few MB unpacks to GBs.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def lacking_room(folder: Path, size: int, keep_free_bytes: int) -> str | None:
    """Why `size` bytes more do not fit in `folder`: they would leave less than `keep_free_bytes` free. Said as
    the end of a refusal, "<free> bytes free, of which <keep_free_bytes> are kept for the night's run"; None
    when they fit."""
    free = shutil.disk_usage(folder).free
    if size <= free - keep_free_bytes:
        return None
    return f"{free} bytes free, of which {keep_free_bytes} are kept for the night's run"
