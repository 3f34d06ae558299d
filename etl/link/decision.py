"""A reviewer's decision on a pair of source patients: `rtw link` / `rtw unlink`.

Recorded in meta.link_decision by keyed pseudonym (who: the operating-system user; when), under
the run lock, in a publish of its own. It takes effect at the next run: the decisions are part of
the definitions fingerprint, so that run re-links and re-validates even when no export changed.
A link joins the two patients' persons unless they hold two different EUPIDs or two patients of
one source; an unlink removes the Splink link between the two (not a link through a third
record, nor a shared EUPID). What the EUPIDs already decide is refused here; a decision the run
cannot apply (a clash with another decision or link) is said in its log and notices (etl/link/run.py).
The note is stored with any patient number or birth date in it replaced by {patient} / {date}.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl.config import Home
from etl.link.cluster import SourcePatient, apart_by_shared_eupid
from etl.schema import drop_temp_tables, in_warehouse, reading

DECISIONS = ("link", "unlink")


class DecisionError(ValueError):
    """The decision cannot be recorded: which patient, what is wrong."""


@dataclass(frozen=True)
class PatientRef:
    source_id: str
    pseudonym: str

    def __str__(self) -> str:
        return f"{self.source_id}:{self.pseudonym}"


def parse_patient(text: str) -> PatientRef:
    """`SOURCE:PSEUDONYM`, as the clerical review list of the report names a patient."""
    source_id, sep, pseudonym = text.strip().partition(":")
    if not sep or not source_id or not pseudonym:
        raise DecisionError(f"{text!r}: expected SOURCE:PSEUDONYM (as the report's review list shows it)")
    return PatientRef(source_id, pseudonym)


def record_decision(home: Home, left: PatientRef, right: PatientRef, decision: str, *,
                    note: str | None = None, wait: float = 0.0) -> str:
    """Record the decision; returns the run id of the publish that recorded it."""
    from etl.load.warehouse import change_warehouse
    from etl.pipeline import new_run_id

    if decision not in DECISIONS:
        raise DecisionError(f"decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    if left.source_id == right.source_id:
        raise DecisionError("both patients are of one source: linkage links patients of two sources only")
    if not home.warehouse.exists():
        raise DecisionError(f"no warehouse at {home.warehouse}; run 'rtw run' first")
    run_id = new_run_id()
    a, b = sorted([left, right], key=lambda p: (p.source_id, p.pseudonym))

    def write(con: duckdb.DuckDBPyConnection) -> None:
        from etl.transform.screen import typed_text_screen

        for patient in (a, b):
            known = con.execute("SELECT count(*) FROM stage.link_key WHERE source_id = ? AND "
                                "source_patient_pseudonym = ?", [patient.source_id, patient.pseudonym]).fetchone()
            if not known or not known[0]:
                raise DecisionError(f"no source patient {patient} in the warehouse (copy it from the report's "
                                    "review list or core.patient_source)")
        _refuse_what_cannot_apply(con, a, b, decision)
        # A note naming a patient's number or birth date is kept without them (etl/transform/screen.py).
        kept = typed_text_screen(home, con).screened(note) if note else note
        con.execute("INSERT INTO meta.link_decision VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [a.source_id, a.pseudonym, b.source_id, b.pseudonym, decision, getpass.getuser(),
                     datetime.now(UTC), kept])

    change_warehouse(home, run_id, write, wait=wait)
    return run_id


def _refuse_what_cannot_apply(con: duckdb.DuckDBPyConnection, a: PatientRef, b: PatientRef, decision: str) -> None:
    """What the warehouse knows already: EUPIDs decide before any reviewer (etl/link/cluster.py)."""
    def eupid_group(patient: PatientRef) -> tuple[str, bool, set[str]]:
        """The patient's person id as the night starts it, whether by an EUPID, and the sources it holds: the
        patients of the patient's harmonised id, apart where the run sets them apart (`apart_by_shared_eupid`)."""
        rows = con.execute("SELECT source_id, source_patient_pseudonym, harmonised_patient_id, has_eupid "
                           "FROM stage.link_key WHERE harmonised_patient_id = (SELECT any_value(harmonised_patient_id) "
                           "FROM stage.link_key WHERE source_id = ? AND source_patient_pseudonym = ?)",
                           [patient.source_id, patient.pseudonym]).fetchall()
        patients, _ = apart_by_shared_eupid([SourcePatient(*row) for row in rows])
        me = next(p for p in patients if p.key == (patient.source_id, patient.pseudonym))
        return me.harmonised_id, me.has_eupid, {p.source_id for p in patients if p.harmonised_id == me.harmonised_id}

    (id_a, eupid_a, sources_a), (id_b, eupid_b, sources_b) = eupid_group(a), eupid_group(b)
    if id_a == id_b:
        raise DecisionError(f"{a} and {b} share an EUPID, so they are one person whatever a reviewer decides"
                            + ("; if they are two children, ask the centres to correct the EUPID"
                               if decision == "unlink" else ": nothing to link"))
    if decision != "link":
        return
    if eupid_a and eupid_b:
        raise DecisionError(f"{a} and {b} hold two different EUPIDs, which are never one person, so the link could "
                            "not take effect; if they are one child, ask the centres to correct the EUPID")
    if clash := sources_a & sources_b:
        raise DecisionError(f"{a} and {b} cannot be one person: through their EUPIDs each already holds a patient of "
                            f"{', '.join(sorted(clash))}, and a person has one patient per source")


@dataclass(frozen=True)
class Decision:
    """One recorded decision, as meta.link_decision holds it."""

    left: PatientRef
    right: PatientRef
    decision: str
    decided_by: str | None
    decided_at: datetime

    def __str__(self) -> str:
        return f"{self.decision} of {self.left} and {self.right} ({self.decided_by}, {self.decided_at:%Y-%m-%d})"


def read_decisions(warehouse: Path) -> list[Decision]:
    """Every recorded decision, oldest first (none without a warehouse)."""
    with reading(warehouse) as con:
        if con is None or not in_warehouse(con, "meta.link_decision"):
            return []
        rows = con.execute("SELECT source_id_l, source_patient_pseudonym_l, source_id_r, source_patient_pseudonym_r, "
                           "decision, decided_by, decided_at FROM meta.link_decision ORDER BY decided_at").fetchall()
    return [Decision(PatientRef(r[0], r[1]), PatientRef(r[2], r[3]), r[4], r[5], r[6]) for r in rows]


def convert_decisions(con: duckdb.DuckDBPyConnection, conversions: list[list[str]]) -> None:
    """In rtw rekey's publish: the decisions name their patients by the new key's pseudonyms
    (`conversions`: source, old pseudonym, new pseudonym). A decision on a patient rekey did not find
    under the old key names nobody any more: it goes (rekey's output said which)."""
    con.execute("CREATE OR REPLACE TEMP TABLE rekeyed (source_id VARCHAR, old VARCHAR, new VARCHAR)")
    try:
        if conversions:
            con.executemany("INSERT INTO rekeyed VALUES (?, ?, ?)", conversions)
        for side in ("l", "r"):
            con.execute(f"UPDATE meta.link_decision d SET source_patient_pseudonym_{side} = k.new FROM rekeyed k "
                        f"WHERE k.source_id = d.source_id_{side} AND k.old = d.source_patient_pseudonym_{side}")
        con.execute("DELETE FROM meta.link_decision d WHERE " + " OR ".join(
            f"NOT EXISTS (SELECT 1 FROM rekeyed k WHERE k.source_id = d.source_id_{side} "
            f"AND k.new = d.source_patient_pseudonym_{side})" for side in ("l", "r")))
    finally:
        drop_temp_tables(con, "rekeyed")
