"""Cells of an .xlsx whose number format shows what calamine does not give: a month or a year without a day
(`12/2021` typed into a cell formatted `MM/YYYY`), and a whole number's leading zeros (`0042` in a cell formatted
`0000`).

Excel stores a date as a day's serial number and shows it as its number format says; calamine returns
the day (2021-12-01), not the format. A centre that typed a month and a year meant a month, and the day
Excel filled in would load as an exact date (the first of the month, precision day: ages and the rules'
comparisons made on a day nobody gave). So the cells whose style's format shows a year and a month and no
day, or a year alone, are staged as what they show, ISO-wise: `2021-12`, `2021` (as the SAS, SPSS and Stata
readers stage `MONYY7.` and its kin), which a mapping reads with a `%Y-%m` or `%Y` format; when they hold
what typing that makes, the month's (or year's) first day. Another day was typed in full and then hidden by
a format: it is kept.

Likewise a number typed as `0042` is stored 42, and a centre that formats the column `0000` sees its patient
numbers as typed: calamine gives 42, which matched no `0042` typed as text on the other sheets (the patient split
in two). A whole number in a cell whose format is zeros alone is staged with them (`0042`).

Read from the package's parts, not by calamine: `styles.xml`'s formats (a few kB) tell which styles are such,
and only a workbook that has one has its sheets searched for them (a second look at each sheet's XML, in
blocks, for those styles' attributes: 1.2 s for a 66 MB sheet, where a look at every cell's tag took 3.7). An
.xlsb, .xls or .ods is not looked at (their styles are binary records or another schema): their cells stage as
calamine gives them.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
import zlib
from typing import Literal

from lxml import etree

from etl.extract.odm_xml import SAFE_TREE_PARSER
from etl.extract.sheet_xml import column_number, part_blocks

# What a cell's format shows: of a date a month of a year, or a year; of a whole number, so many digits at least
Shown = Literal["month", "year"] | int

_PARSER = etree.XMLParser(**SAFE_TREE_PARSER)
_BUILT_IN: dict[int, Shown] = {17: "month"}  # Excel's built-in `mmm-yy`; 14-16 and 22 show a day
# A format's literal parts: quoted text, [colour], [$-locale], [>100] conditions, \x escapes, _x spacing, *x fill
_LITERAL = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.|_.|\*.')
_CELL = re.compile(rb"<(?:[\w.-]+:)?c\s")
_ROW_OR_CELL = re.compile(rb"<(?:[\w.-]+:)?(row|c)(?=[\s>/])[^>]*>")
_REFERENCE = re.compile(rb"""\sr\s*=\s*["']([A-Z]{1,3})(\d+)["']""")
_ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)["']""")


def shown_by(format_code: str) -> Shown | None:
    """What a number format shows of a date when it shows no day nor time: "month" (`MM/YYYY`, `mmm-yy`,
    `mmmm yyyy`), "year" (`yyyy`); of a whole number when it is zeros alone, their count (`0000`: 4); None for
    any other format (a day's, a time's, another number's)."""
    section = format_code.split(";")[0]
    if re.fullmatch(r"00+", section):
        return len(section)
    letters = _LITERAL.sub("", section).lower()
    if "d" in letters or "h" in letters or "s" in letters or "y" not in letters:
        return None
    return "month" if "m" in letters else "year"


def shown_styles(archive: zipfile.ZipFile, styles: str) -> dict[int, Shown]:
    """The cell styles (their index in `cellXfs`) of the workbook's styles part `styles` whose format shows a
    date without its day or a number's leading zeros (`shown_by`); {} when it has none, or the part cannot be
    read (its cells then stage as calamine gives them)."""
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


def shown_cells(archive: zipfile.ZipFile, part: str, styles: dict[int, Shown]) -> dict[int, dict[int, Shown]]:
    """The cells of a worksheet part styled with one of `styles`: by row (1-based), by column (0-based). The
    part is searched in blocks for those styles' attributes alone (a tag-by-tag look took five times as long);
    a cell without its reference (`r`, which OOXML lets a writer leave out) has the whole part walked tag by
    tag, its place counted."""
    styled = re.compile(rb"""(?<=\s)s\s*=\s*["'](""" + b"|".join(str(i).encode() for i in sorted(styles))
                        + rb""")["']""")
    cells: dict[int, dict[int, Shown]] = {}
    for text in part_blocks(archive, part):
        for attribute in styled.finditer(text):
            tag = text[text.rfind(b"<", 0, attribute.start()):text.find(b">", attribute.end()) + 1]
            if not _CELL.match(tag):
                continue  # a row's or column's style, or text in a value
            if (reference := _REFERENCE.search(tag)) is None:
                return _walked(archive, part, styled, styles)
            row, column = int(reference.group(2)), column_number(reference.group(1)) - 1
            cells.setdefault(row, {})[column] = styles[int(attribute.group(1))]
    return cells


def _walked(archive: zipfile.ZipFile, part: str, styled: re.Pattern[bytes],
            styles: dict[int, Shown]) -> dict[int, dict[int, Shown]]:
    """`shown_cells` counting each row's and cell's place: a row or cell without a reference is the one
    after the last."""
    cells: dict[int, dict[int, Shown]] = {}
    row, column = 0, -1
    for text in part_blocks(archive, part):
        for tag in _ROW_OR_CELL.finditer(text):
            if tag.group(1) == b"row":
                number = _ROW_NUMBER.search(tag.group())
                row, column = int(number.group(1)) if number else row + 1, -1
                continue
            reference = _REFERENCE.search(tag.group())
            if reference:
                row, column = int(reference.group(2)), column_number(reference.group(1)) - 1
            else:
                column += 1
            if (style := styled.search(tag.group())) is not None:
                cells.setdefault(row, {})[column] = styles[int(style.group(1))]
    return cells


def shown_text(value: object, shown: Shown) -> str | None:
    """A cell as its format shows it: a date, `2021-12` for a month, `2021` for a year, when it holds what typing
    them makes (the month's first day, the year's), None for another day, which someone typed in full (the day
    is kept), a time of day, or a cell that holds no date (a number or text in a date's style); a whole number
    not below 0 with its leading zeros (`0042`), None for any other value."""
    if isinstance(shown, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return str(int(value)).zfill(shown) if float(value).is_integer() and 0 <= value < 1e15 else None
    if not isinstance(value, dt.date) or (isinstance(value, dt.datetime) and value.time() != dt.time()):
        return None
    if shown == "month":
        return f"{value.year:04d}-{value.month:02d}" if value.day == 1 else None
    return f"{value.year:04d}" if (value.month, value.day) == (1, 1) else None
