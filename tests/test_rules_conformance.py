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


SYMBOLS = {"ALK": True, "NKX2-1": True, "HLA-A": True, "MT-ND1": True, "C11orf95": True, "C1orf43": True,
           "CXorf21": True, "C5orf66-AS1": True,
           "Alk": False, "alk": False, "C11Orf95": False, "C23orf1": False, "Corf1": False, "1ALK": False,
           "ALK-": False, "NKX2--1": False, "EML4 ALK": False}


def test_a_gene_symbol_is_read_by_the_hgnc_grammar_with_its_lower_case_orf():
    """HGNC symbols are upper case but for the 'orf' of an open reading frame's (C11orf95::RELA defines
    supratentorial ependymoma): those pass; a symbol in the wrong case (Alk) is still queried."""
    rows = pd.DataFrame({"source_record_key": list(SYMBOLS), "gene_symbol": list(SYMBOLS)})
    assert gx_flagged("molecular_alteration", "MOL-GENE-SYMBOL", rows) == {s for s, ok in SYMBOLS.items() if not ok}


def test_a_fusion_of_an_open_reading_frame_is_in_hgnc_form():
    written = {"orf": "C11orf95::RELA", "upper": "EML4::ALK", "wrong-case": "Eml4::ALK", "dash": "EML4-ALK",
               "orf-three-prime": "YAP1::C11orf95"}
    rows = pd.DataFrame({"source_record_key": list(written), "alteration": list(written.values()),
                         "alteration_type": "fusion"})
    assert gx_flagged("molecular_alteration", "MOL-FUSION-SYNTAX", rows) == {"wrong-case", "dash"}
