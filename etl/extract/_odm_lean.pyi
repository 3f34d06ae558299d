# The C walk of a plain export's lean subjects (_odm_lean.c, built by hatch_build.py).
from typing import Any

from etl.extract.odm_xml import Text

LXML_VERSION: str  # the lxml and libxml2 it was compiled against
LIBXML_VERSION: str

def read(clinical: Any, namespace: str | None, study: str | None, version: str | None, shift: int, batch_rows: int,
         start: int, /) -> tuple[int, int, int, bytes, list[Text], Text, list[Text], Text, Text, bytes] | None: ...
