"""Date cells of an .xlsx whose number format shows no day: `12/2021` typed into a cell formatted `MM/YYYY`.

Excel stores a date as a day's serial number and shows it as its number format says; calamine returns
the day (2021-12-01), not the format. A centre that typed a month and a year meant a month, and the day
Excel filled in would load as an exact date (the first of the month, precision day: ages and the rules'
comparisons made on a day nobody gave). So the cells whose style's format shows a year and a month and no
day, or a year alone, are staged as what they show, ISO-wise: `2021-12`, `2021` (as the SAS, SPSS and Stata
readers stage `MONYY7.` and its kin), which a mapping reads with a `%Y-%m` or `%Y` format.

Read from the package's parts, not by calamine: `styles.xml`'s formats (a few kB) tell which styles are such,
and only a workbook that has one has its sheets' cell tags scanned for them (a second look at the sheet's
XML, in blocks). An .xlsb, .xls or .ods is not looked at (their styles are binary records or another schema):
their cells stage as the day calamine gives.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
import zlib
from typing import Literal

from lxml import etree

from etl.extract.odm_xml import SAFE_TREE_PARSER

Shown = Literal["month", "year"]  # what a cell's format shows of its date: a month of a year, or a year

_PARSER = etree.XMLParser(**SAFE_TREE_PARSER)
_BUILT_IN: dict[int, Shown] = {17: "month"}  # Excel's built-in `mmm-yy`; 14-16 and 22 show a day
# A format's literal parts: quoted text, [colour], [$-locale], [>100] conditions, \x escapes, _x spacing, *x fill
_LITERAL = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.|_.|\*.')
_CELL = re.compile(rb"<(?:[\w.-]+:)?c\s[^>]*>")
_REFERENCE = re.compile(rb"""\sr\s*=\s*["']([A-Z]{1,3})(\d+)["']""")
_STYLE = re.compile(rb"""\ss\s*=\s*["'](\d+)["']""")


def shown_by(format_code: str) -> Shown | None:
    """What a number format shows of a date when it shows no day nor time: "month" (`MM/YYYY`, `mmm-yy`,
    `mmmm yyyy`), "year" (`yyyy`); None for any other format (a day's, a time's, a number's)."""
    letters = _LITERAL.sub("", format_code.split(";")[0]).lower()
    if "d" in letters or "h" in letters or "s" in letters or "y" not in letters:
        return None
    return "month" if "m" in letters else "year"


def partial_date_styles(archive: zipfile.ZipFile, styles: str) -> dict[int, Shown]:
    """The cell styles (their index in `cellXfs`) of the workbook's styles part `styles` whose format shows a
    date without its day; {} when it has none, or the part cannot be read (its cells then stage as calamine
    gives them)."""
    try:
        root = etree.fromstring(archive.read(styles), _PARSER)
    except (KeyError, etree.XMLSyntaxError, zipfile.BadZipFile, zlib.error, EOFError):
        return {}
    formats = dict(_BUILT_IN)
    for number_format in root.iter("{*}numFmt"):
        number = _number(number_format.get("numFmtId"))
        if (shown := shown_by(number_format.get("formatCode", ""))) is not None:
            formats[number] = shown
        else:
            formats.pop(number, None)  # a built-in id given another format
    found: dict[int, Shown] = {}
    for cell_styles in root.iter("{*}cellXfs"):
        for index, style in enumerate(cell_styles.iter("{*}xf")):
            if (shown := formats.get(_number(style.get("numFmtId")))) is not None:
                found[index] = shown
    return found


def _number(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() else -1


def partial_date_cells(archive: zipfile.ZipFile, part: str, styles: dict[int, Shown]) -> dict[int, dict[int, Shown]]:
    """The cells of a worksheet part styled with one of `styles`: by row (1-based), by column (0-based)."""
    cells: dict[int, dict[int, Shown]] = {}
    carry = b""
    with archive.open(part) as stream:
        while block := stream.read(1 << 20):
            text = carry + block
            cut = text.rfind(b"<")  # a tag cut by the block is read with the next one
            text, carry = (text[:cut], text[cut:]) if cut > 0 else (text, b"")
            for tag in _CELL.finditer(text):
                style, reference = _STYLE.search(tag.group()), _REFERENCE.search(tag.group())
                if style and reference and (shown := styles.get(int(style.group(1)))) is not None:
                    cells.setdefault(int(reference.group(2)), {})[_column(reference.group(1))] = shown
    return cells


def _column(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + letter - 64
    return number - 1


def partial_date_text(value: dt.date, shown: Shown) -> str:
    """A date cell as its format shows it: `2021-12` for a month, `2021` for a year."""
    return f"{value.year:04d}-{value.month:02d}" if shown == "month" else f"{value.year:04d}"
