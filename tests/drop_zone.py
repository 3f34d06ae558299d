"""What the drop-zone pull tests share: registry_it's mapping pointed at a drop zone, and a sender's file written
long enough ago to be pulled (the `home` and `drop` fixtures are conftest.py's)."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

from etl.config import SOURCES_DIR


def registry_sources(tmp_path: Path, url: str | Path, extra: str = "", files: str | None = None) -> Path:
    """A sources folder with registry_it's mapping delivered from the drop zone at `url` (`extra`: more of its
    delivery settings, from ', '; `files`: another glob of its exports)."""
    folder = tmp_path / "sources"
    folder.mkdir(exist_ok=True)
    text = (SOURCES_DIR / "registry_it.yaml").read_text()
    if files is not None:
        text = re.sub(r'(?m)^files: .*$', f'files: "{files}"', text)
    (folder / "registry_it.yaml").write_text(f"{text}\ndelivery: {{url: '{url}', quiet_seconds: 600{extra}}}\n")
    return folder


def send(path: Path, data: bytes, age: float = 3600) -> None:
    """The sender's file, written `age` seconds ago (older than the quiet period)."""
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def zipped(members: dict[str, bytes]) -> bytes:
    """A zip of `members` (name -> bytes), as a sender packs its exports."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
