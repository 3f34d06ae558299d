"""Which Western code page a CSV saved by Excel is in: Windows-1252 (Excel on Windows) or Mac Roman (Excel for
Mac's "Comma Separated Values" and "CSV (Macintosh)"), told by how each reads the text.

The two put Western Europe's accented letters at different bytes: Mac Roman's é (0x8E) reads as Windows-1252's
Ž, its è, ç, ê and ù (0x8F, 0x8D, 0x90, 0x9D) are no Windows-1252 character at all, and the em dash of rtw's own
messages (Mac Roman 0xD1) reads as Ñ. Windows-1252 is read unless its reading holds what no Western text
holds (a capital after a small letter, `vŽrifiŽ`; a capital standing alone, ` Ñ `; a symbol against a letter,
`voilˆ`) and Mac Roman's reading holds none of it: a text in another code page (cp1250, Polish) reads badly
both ways, and is refused, for the import to be told its code page.
"""

from __future__ import annotations

import unicodedata

WINDOWS, MAC = "cp1252", "mac_roman"
_CAPITALS_ALONE = set("ÀÉÈ")  # French "À revoir", Italian "È": a word of one capital
_SIGNS = set("€£°ºª±×÷µ§©®")  # a unit, a currency or a mark beside a number or a word
_ODD = set("†‡‰‹›ƒ")  # punctuation never against a letter in a note
_DASHES = set("–—")  # between spaces or numbers, never inside a word (Mac Roman's ñ, ó: Espa–a)


def western_code_page(data: bytes) -> str | None:
    """`WINDOWS` or `MAC` for bytes in one of the two (not UTF-8: the caller tried it first), None when neither
    reads them cleanly."""
    try:
        windows: str | None = data.decode(WINDOWS)
    except UnicodeDecodeError:
        windows = None
    if windows is not None and not _odd(windows):
        return WINDOWS
    return MAC if not _odd(data.decode(MAC)) else WINDOWS if windows is not None else None


def _odd(text: str) -> bool:
    """Whether a reading holds a character no Western text holds where it stands."""
    for at, char in enumerate(text):
        if char.isascii():
            continue
        before = text[at - 1] if at else " "
        after = text[at + 1] if at + 1 < len(text) else " "
        category = unicodedata.category(char)
        if category.startswith("L") and not unicodedata.name(char, "").startswith(("LATIN", "MICRO")):
            return True  # a Greek or other letter in a Western text (Mac Roman's π for cp1250's ą)
        if category == "Lu" and (before.islower() or (not before.isalpha() and not after.isalpha()
                                                      and char not in _CAPITALS_ALONE)):
            return True
        if char in _ODD and (before.isalpha() or after.isalpha()):
            return True
        if char in _DASHES and before.isalpha() and after.isalpha():
            return True
        if category.startswith("S") and char not in _SIGNS and (before.isalpha() or after.isalpha()):
            return True
    return False
