from __future__ import annotations

from collections.abc import Iterable


class ExtractError(Exception):
    """An input file cannot be read; the message names the file and where, and what was expected.

    quoted: names besides the file's that the message quotes (an Excel workbook's sheets): they may hold a
    patient number, and are shown as file names are, like a notice's (`StageResult.quoted`)."""

    def __init__(self, message: str, *, quoted: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.quoted = tuple(quoted)
