"""How good linkage is, measured against the synthetic truth (`truth/links.csv`, from rtw synth).

Pairwise: a pair is two source patients (in two sources) the warehouse puts in one person; it is
right when the truth gives them the same true_person_id. Only tests and benchmarks call this: the
pipeline never reads the truth.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from etl.config import connect_duckdb
from etl.transform.pseudonym import PseudonymKey, source_pseudonym


@dataclass(frozen=True)
class LinkageQuality:
    true_pairs: int
    found_pairs: int
    right_pairs: int
    cross_source_persons: int  # persons of the truth known to two sources or more (that the warehouse holds)
    linked_without_eupid: int  # of those, linked whole with some record lacking the shared EUPID
    review_candidates: int

    @property
    def precision(self) -> float:
        return self.right_pairs / self.found_pairs if self.found_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.right_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def share_linked_without_eupid(self) -> float:
        return self.linked_without_eupid / self.cross_source_persons if self.cross_source_persons else 0.0


def _pairs(groups: dict[str, list[tuple[str, str]]]) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    return {(a, b) for members in groups.values() for a, b in combinations(sorted(members), 2) if a[0] != b[0]}


def measure(warehouse: Path, truth_dir: Path, key: PseudonymKey) -> LinkageQuality:
    """Pairwise precision and recall of the warehouse's persons against the truth."""
    con = connect_duckdb(warehouse, read_only=True)
    try:
        linked = con.execute("SELECT source_id, source_patient_pseudonym, patient_id "
                             "FROM stage.patient_link").fetchall()
        review = con.execute("SELECT count(*) FROM dq.link_candidate").fetchone()
    finally:
        con.close()
    person_of = {(s, p): pid for s, p, pid in linked}
    with (truth_dir / "links.csv").open(encoding="utf-8", newline="") as handle:
        truth = list(csv.DictReader(handle))
    true_groups: dict[str, list[tuple[str, str]]] = {}
    exported: dict[tuple[str, str], bool] = {}
    for row in truth:
        patient = (row["source_id"], source_pseudonym(key, row["source_id"], row["source_patient_key"]))
        if patient in person_of:  # a patient the run held back entirely is not linkage's to find
            true_groups.setdefault(row["true_person_id"], []).append(patient)
            exported[patient] = row.get("eupid_exported", "true") == "true"
    found_groups: dict[str, list[tuple[str, str]]] = {}
    for patient, pid in person_of.items():
        found_groups.setdefault(pid, []).append(patient)
    true_pairs, found_pairs = _pairs(true_groups), _pairs(found_groups)
    cross = [members for members in true_groups.values() if len({s for s, _ in members}) > 1]
    without_eupid = [m for m in cross if not all(exported[p] for p in m)
                     and len({person_of[p] for p in m}) == 1]
    return LinkageQuality(len(true_pairs), len(found_pairs), len(true_pairs & found_pairs), len(cross),
                          len(without_eupid), int(review[0]) if review else 0)


def main(argv: list[str] | None = None) -> None:
    """`python -m etl.link.evaluate HOME`: the linkage quality of a home built from `rtw synth` exports
    (its truth/ beside the warehouse), with the home's key (env RTW_PSEUDONYM_KEY or its key file)."""
    import sys

    from etl.config import resolve_home
    from etl.transform.pseudonym import key_is_configured, load_key

    args = sys.argv[1:] if argv is None else argv
    home = resolve_home(Path(args[0]) if args else None)
    if not key_is_configured(home.key_file) or not (home.root / "truth" / "links.csv").exists():
        raise SystemExit(f"{home.root}: needs a key and truth/links.csv (a home written by rtw synth, then run)")
    q = measure(home.warehouse, home.root / "truth", load_key(home.key_file))
    print(f"pairs {q.true_pairs}, found {q.found_pairs}, right {q.right_pairs}: precision {q.precision:.4f}, "
          f"recall {q.recall:.4f}, F1 {q.f1:.4f}; persons of several sources linked without a shared EUPID "
          f"{q.linked_without_eupid}/{q.cross_source_persons} ({q.share_linked_without_eupid:.0%}); "
          f"clerical review list {q.review_candidates}")


if __name__ == "__main__":
    main()
