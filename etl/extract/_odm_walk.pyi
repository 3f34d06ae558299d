# The C walk of a plain export's subjects (_odm_walk.c, built by hatch_build.py).
from typing import Any

from etl.extract.odm_xml import Text

LXML_VERSION: str  # the lxml and libxml2 it was compiled against
LIBXML_VERSION: str

# (next start or -1, rows, frames, frame index, keys, sites, audits, item OIDs, values, is-null bytes,
#  TransactionTypes or None, lines), or None: the Python walk reads those subjects.
Walked = tuple[int, int, int, bytes, list[Text], Text, list[Text], Text, Text, bytes, Text | None, bytes]

def read(clinical: Any, namespace: str | None, study: str | None, version: str | None, shift: int, batch_rows: int,
         start: int, eager_groups: bool, /) -> Walked | None: ...
