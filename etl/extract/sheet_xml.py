"""A worksheet part's XML read as bytes, not parsed: what the Excel reader's scans share (its reach, before
calamine loads the sheet: etl/extract/excel.py; its cells formatted to show a month or leading zeros:
excel_shown.py; its error cells: excel_unread.py)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator


def part_blocks(archive: zipfile.ZipFile, part: str) -> Iterator[bytes]:
    """A part's text in blocks of about a MiB, each ending before a tag's start (a tag cut by a block is read
    whole with the next)."""
    carry = b""
    with archive.open(part) as stream:
        while block := stream.read(1 << 20):
            text = carry + block
            cut = text.rfind(b"<")
            text, carry = (text[:cut], text[cut:]) if cut > 0 else (text, b"")
            yield text
    yield carry


def column_number(letters: bytes) -> int:
    """A cell reference's column letters as its number: A 1, Z 26, AA 27."""
    number = 0
    for letter in letters:
        number = number * 26 + letter - 64
    return number
