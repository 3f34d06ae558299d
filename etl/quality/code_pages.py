"""Which Western code page a CSV saved by Excel is in: Windows-1252 (Excel on Windows) or Mac Roman (Excel for
Mac's "Comma Separated Values" and "CSV (Macintosh)"), told by the bytes of the accented letters in its words.

The two put Western Europe's small accented letters at different bytes: Windows-1252 at 0xDF-0xFF (é is 0xE9),
Mac Roman at 0x80-0x9F (é is 0x8E, which Windows-1252 reads as Ž; its è, ç, ê are no Windows-1252 character at
all). A byte of either kind against a small letter is a vote for its code page, and so is rtw's own em or en
dash between spaces (Windows-1252 0x97, 0x96; Mac Roman 0xD1, 0xD0). Only the Mac Roman letters that Windows-1252
reads as nothing a word holds vote for Mac Roman (ˆ, Š, ‹, Œ, Ž, ˜, Ÿ, or none): not its ó, ñ, í, ú, ö, û, ù, which
Windows-1252 reads as a dash, an apostrophe, œ, š, ž (chart—value, l’avis, cœur) or Slovak's ť (cp1250).

Mac Roman is read only when it has more votes: a Windows-1252 file is read as it always was, and a Central
European one (cp1250: its small letters are Windows-1252's bytes) is read as Windows-1252, or refused when
Windows-1252 has no character for one of its bytes, for the import to be told its code page.
"""

from __future__ import annotations

import re

WINDOWS, MAC = "cp1252", "mac_roman"
_WINDOWS_LETTER = rb"[\xdf-\xf6\xf8-\xff]"  # ß, à-ö, ø-ÿ
_MAC_LETTER = rb"[\x88\x8a-\x90\x98\x9f]"  # à, ä-ê, ò, ü
_WINDOWS_VOTES = re.compile(rb"[a-z]" + _WINDOWS_LETTER + rb"|" + _WINDOWS_LETTER + rb"[a-z]| [\x96\x97] ")
_MAC_VOTES = re.compile(rb"[a-z]" + _MAC_LETTER + rb"|" + _MAC_LETTER + rb"[a-z]| [\xd0\xd1] ")


def western_code_page(data: bytes) -> str | None:
    """`WINDOWS` or `MAC` for bytes in one of the two (not UTF-8: the caller tried it first), None when Mac Roman
    has no more votes and Windows-1252 cannot read them."""
    if len(_MAC_VOTES.findall(data)) > len(_WINDOWS_VOTES.findall(data)):
        return MAC
    try:
        data.decode(WINDOWS)
    except UnicodeDecodeError:
        return None
    return WINDOWS
