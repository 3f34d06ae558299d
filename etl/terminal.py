"""Text from exports on the terminal: shown as written, never run by Rich or by the terminal.

What an export wrote reaches the terminal in notices (a SAS label, an Excel sheet name), failure
messages (an ODM StudyOID, a CSV column name), `rtw status` and the onboarding tables (column names
and values). Two things would run it:
- Rich reads `[...]` in a printed string as markup: `[link=...]` makes a link, and a `[/red]` that
  nothing opened raises MarkupError, a traceback instead of the output (after a run that completed);
- a terminal runs the escape sequences it is sent (`ESC[2J` clears the screen), and a line break
  starts a line that looks like another message.
So such text is printed as a Rich Text (never markup), its control and format characters (line
breaks, ESC, a bidi override) written as escapes: `\\x1b`, `\\n`, `\\u202e`; and `rtw`'s log lines
alike (`log_to_terminal`): a notice naming a landing file or folder quotes its name as delivered.
"""

from __future__ import annotations

import logging
import unicodedata

from rich.text import Text

# Control, format (bidi overrides, zero-width marks), line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` with every control or format character written as its Python escape."""
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _ESCAPED_CATEGORIES
                   else c for c in text)


def plain(text: object, style: str = "") -> Text:
    """`text` for a Rich console or table: no markup, nothing a terminal runs."""
    return Text(printable("" if text is None else str(text)), style=style)


class _PlainLog(logging.Formatter):
    """Log lines as `printable` text; a traceback, which is this code's, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def log_to_terminal(level: int) -> None:
    """`rtw`'s log on stderr, from `level` on, each message on its line and never running the terminal."""
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainLog("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
