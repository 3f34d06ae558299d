"""The checksum conventions of drop zones and of landing/.

A source may send `<name>.sha256` beside each file (sha256sum output, or the bare digest), or
one manifest listing `<sha256>  <file name>` lines (sha256sum output; `*name` for binary mode
is read too). What was verified on download is declared to the landing reader the same way:
`landing/<source>/<name>.sha256`, written before the file itself is renamed in, so the reader
knows the file is complete without waiting out its quiet period, and checks it again.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from etl import fsio

_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_sidecar(text: str, name: str) -> str:
    """The digest a `<name>.sha256` sidecar declares for the file `name`; ValueError when it holds none.

    A sidecar of sha256sum output may list several files: the line naming `name` is the one. A
    sidecar whose lines all name other files (`sha256sum B.csv > A.csv.sha256`) declares nothing of
    this one: said so, rather than taken for a damaged transfer."""
    words = text.split()
    if not words or not _DIGEST.match(words[0]):
        raise ValueError("holds no sha256 digest (expected 64 hex digits, as sha256sum writes)")
    if len(words) == 1:  # the bare digest
        return words[0].lower()
    sums = parse_manifest(text)
    if name in sums:
        return sums[name]
    if list(sums) == ["-"]:  # `sha256sum < file`: the bytes read from stdin
        return sums["-"]
    raise ValueError(f"declares the checksum of another file, not of {name} (expected '<sha256>  {name}')")


def parse_manifest(text: str) -> dict[str, str]:
    """File name -> digest, from sha256sum-style lines; lines of another shape are ignored."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and _DIGEST.match(parts[0]):
            sums[PurePosixPath(parts[1].lstrip("*").strip()).name] = parts[0].lower()
    return sums


def declare_landed(folder: Path, name: str, sha256: str) -> None:
    """Tell the landing reader the file `name` about to be renamed into `folder` is complete."""
    fsio.write_text(folder / f"{name}.sha256", f"{sha256}  {name}\n", encoding="utf-8")  # Forlì, Besançon
