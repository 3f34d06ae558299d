"""Cells of an .xlsx that calamine reads as empty though they are not: an error (#N/A, #DIV/0!, #REF!), and a
formula whose value was never computed (a workbook a program wrote: Excel computes it on opening).

Read as empty, such a cell loaded NULL without a word: a centre's `#DIV/0!` LVEF was no LVEF, a size `=58` none.
So they are staged as Excel shows them, the error (`#DIV/0!`), or the formula (`=58`): a typed field refuses
them, naming the cell's value, and the centre is asked; a free text keeps what the sheet shows. A notice counts
them per sheet.

Read from the sheet's part, not by calamine: a part holding no `t="e"` attribute and no formula (`MAY_HOLD`,
looked for in the look at its bytes that finds its reach: excel.sheet_extent) is not parsed; one that does is
walked cell by cell (lxml's iterparse, each cell cleared), its places counted for a cell or row without a reference
(`r`, which OOXML lets a writer leave out). An .xlsb, .xls or .ods is not looked at (their cells are binary records
or another schema): such cells stay empty there.
"""

from __future__ import annotations

import re
import zipfile
import zlib

from lxml import etree

from etl.extract.odm_xml import SAFE_PARSER
from etl.extract.sheet_xml import column_number

MAY_HOLD = re.compile(rb"""\st\s*=\s*["']e["']|<(?:[\w.-]+:)?f[\s>/]""")
_REFERENCE = re.compile(r"([A-Z]{1,3})(\d+)")


def unread_cells(archive: zipfile.ZipFile, part: str) -> dict[int, dict[int, str]]:
    """The part's cells holding an error or a formula without its value, as Excel shows them: by row (1-based),
    by column (0-based); {} when it has none, or its XML cannot be walked (calamine then reads it as it can).
    Asked of a part `MAY_HOLD` found in."""
    cells: dict[int, dict[int, str]] = {}
    row = 0
    column = -1
    try:
        with archive.open(part) as stream:
            events = etree.iterparse(stream, events=("start", "end"), tag=("{*}row", "{*}c"),
                                     **{k: v for k, v in SAFE_PARSER.items() if k != "events"})
            for event, element in events:
                if etree.QName(element).localname == "row":
                    if event == "start":
                        number = element.get("r")
                        row, column = int(number) if number and number.isdigit() else row + 1, -1
                    else:  # a row read: nothing of it kept, nor of the rows before it
                        element.clear()
                        while element.getprevious() is not None:
                            del element.getparent()[0]
                    continue
                if event == "start":
                    continue
                reference = _REFERENCE.fullmatch(element.get("r") or "")
                if reference:
                    row, column = int(reference.group(2)), column_number(reference.group(1).encode()) - 1
                else:
                    column += 1
                if (shown := _shown(element)) is not None:
                    cells.setdefault(row, {})[column] = shown
                element.clear()
    except (etree.XMLSyntaxError, KeyError, zipfile.BadZipFile, zlib.error, EOFError):
        return {}
    return cells


def _shown(cell: etree._Element) -> str | None:
    """What Excel shows of a cell calamine reads as empty: its error, or its formula when no value was kept."""
    value = cell.find("{*}v")
    if cell.get("t") == "e":
        return value.text.strip() if value is not None and value.text and value.text.strip() else "#N/A"
    formula = cell.find("{*}f")
    # no value kept: none at all, or an empty one where the formula gives no text (t="str" may give "")
    if formula is not None and (value is None or (not value.text and cell.get("t") != "str")):
        return f"={formula.text or '(a shared formula)'}"
    return None
