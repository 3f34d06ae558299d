"""The GX conformance rules accept every code the standard they name allows and flag what it does not:
each runs as validation runs its suite, on a few records (tests/rule_stage.py)."""

from __future__ import annotations

import pandas as pd
from rule_stage import gx_flagged

from etl.transform.icdo3 import FIRST_HISTOLOGY, LAST_HISTOLOGY


def test_the_morphology_format_accepts_the_histologies_harmonise_accepts():
    """Harmonise refuses a histology outside ICD-O-3's 8000-9993 (etl/transform/icdo3.py); the rule and its
    text say the same range, so a 9999 written into core by another path is not taken for a histology."""
    codes = [f"{code:04d}" for code in range(10_000)]
    rows = pd.DataFrame({"source_record_key": codes, "icdo3_morphology": codes})
    outside = {c for c in codes if not FIRST_HISTOLOGY <= int(c) <= LAST_HISTOLOGY}
    assert gx_flagged("diagnosis", "DIAG-MORPHOLOGY-FORMAT", rows) == outside
