"""Every rule of the reference IARC 2017 table, walked: the ends, middle and outer neighbours of each histology
range, at the ends, middle and outer neighbours of each site range, with every behaviour 0-3, classify as
the table read here independently says (plus ICCC-3's scope for benign and borderline tumours)."""

import csv
import itertools

import reference_corpus

from etl.transform import iccc3
from etl.transform.icdo3 import FIRST_HISTOLOGY, LAST_HISTOLOGY, SUBSITES

TABLE = reference_corpus.REFERENCE / "iccc3" / "iccc-data-third-edition-iarc-2017.csv"
CNS = ((700, 729), (751, 753))  # C70.0-C72.9, C75.1-C75.3: where /0 and /1 tumours are classified


def _ranges(cell: str) -> list[tuple[int, int]]:
    out = []
    for token in (t.strip() for t in cell.split(",") if t.strip()):
        first, _, last = token.partition("-")
        out.append((int(first.lstrip("C")), int((last or first).lstrip("C"))))
    return out


def _rules() -> list[dict]:
    with TABLE.open(encoding="utf-8", newline="") as handle:
        return [{"line": line, "sites": _ranges(row["Sites IN"]), "hists": _ranges(row["Hist IN"]),
                 "behaviours": {str(b) for first, last in _ranges(row["Behavior IN"]) for b in range(first, last + 1)},
                 "codes": (row["Group code"], row["Group code extended"])}
                for line, row in enumerate(csv.DictReader(handle), start=2) if row["Sites IN"] and row["Hist IN"]]


def _within(value: int, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> bool:
    return any(first <= value <= last for first, last in ranges)


def _expected(rules: list[dict], histology: int, behaviour: str, site: int) -> tuple[str, str]:
    if behaviour in "01" and not _within(site, CNS):
        return iccc3.NOT_CLASSIFIED, iccc3.NOT_CLASSIFIED
    found = {r["codes"] for r in rules
             if behaviour in r["behaviours"] and _within(histology, r["hists"]) and _within(site, r["sites"])}
    assert len(found) <= 1, (histology, behaviour, site, found)
    return found.pop() if found else (iccc3.NOT_CLASSIFIED, iccc3.NOT_CLASSIFIED)


def _is_site(site: int) -> bool:
    category, subsite = divmod(site, 10)
    return str(subsite) in SUBSITES.get(category, "")


def _samples(first: int, last: int) -> set[int]:
    return {first - 1, first, (first + last) // 2, last, last + 1}


def _site_samples(first: int, last: int) -> set[int]:
    """The nearest existing ICD-O-3 site to each sample (C72 ends at C72.9, C73 is C73.9 alone)."""
    sites = set()
    for wanted in _samples(first, last):
        nearest = [s for d in range(12) for s in (wanted - d, wanted + d) if _is_site(s)]
        if nearest:
            sites.add(nearest[0])
    return sites


def test_every_rule_of_the_reference_table_classifies_at_its_edges_and_middle():
    rules = _rules()
    assert len(rules) == 144
    checked, wrong = 0, []
    for rule in rules:
        for (h_first, h_last), (s_first, s_last) in itertools.product(rule["hists"], rule["sites"]):
            for histology, site, behaviour in itertools.product(
                    _samples(h_first, h_last), _site_samples(s_first, s_last), "0123"):
                if not FIRST_HISTOLOGY <= histology <= LAST_HISTOLOGY:
                    continue
                expected = _expected(rules, histology, behaviour, site)
                for morphology, topography in ((f"{histology}/{behaviour}", f"C{site // 10:02d}.{site % 10}"),
                                               (f"{histology}{behaviour}", f"C{site:03d}")):
                    cls = iccc3.classify(morphology, None, topography, extensions=False)
                    checked += 1
                    if (cls.code, cls.extended) != expected:
                        wrong.append((rule["line"], morphology, topography, expected, (cls.code, cls.extended)))
    assert checked > 10_000
    assert wrong == []
