"""Synthetic exports of the five sources, with the ground truth a correct pipeline must reproduce.

`generate(out, patients=N, seed=S)` writes `out/landing/<source_id>/` (what the centres would
deliver) and `out/truth/` (what the warehouse must then hold), as docs/synthetic-exports.md
describes. Persons are generated and written one at a time, so memory does not grow with N.
The same arguments always give byte-identical files: every random draw comes from a
`random.Random` seeded from (seed, person, source) strings, the export date stands in for the
clock, and nothing iterates over a set or depends on hash order.

Modules: `people` (persons and clinical course), `errors` (which record gets which error),
`messy` (harmless messiness), `trials` (persons of the two trials), `treatment_gaps` (partial starts and
treatments without their drug, when asked), one writer per source
(`sacha_odm`, `iltb_csv`, `registry_it_csv`, `esmart_sas`, `crizotinib_xlsx`), `truth` (the ground
truth), `vocab` (codes and reference lists).
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from random import Random
from typing import Protocol

from etl import fsio
from etl.synth import treatment_gaps
from etl.synth.crizotinib_xlsx import CrizotinibXlsxWriter
from etl.synth.errors import ErrorPlan
from etl.synth.esmart_sas import EsmartSasWriter
from etl.synth.iltb_csv import IltbCsvWriter
from etl.synth.people import ILTB_LINK_SHARE, KeyBook, make_person
from etl.synth.records import SourcePatient
from etl.synth.registry_it_csv import RegistryCsvWriter
from etl.synth.sacha_odm import SachaOdmWriter
from etl.synth.truth import EmittedRecord, TruthWriter

__all__ = ["SOURCES", "SynthSummary", "generate"]

SOURCES = ("sacha_fr", "iltb", "registry_it", "esmart", "crizotinib_imt")
DEFAULT_EXPORT_DATE = date(2026, 11, 1)


class SourceWriter(Protocol):
    """A source's export writer: opened as a context, fed one patient at a time."""

    @property
    def paths(self) -> list[Path]: ...

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]: ...


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote: counts per source and where the files are."""

    persons: int
    patients_per_source: dict[str, int]
    records_per_source: dict[str, int]
    errors_per_source: dict[str, int]
    landing_dir: Path
    truth_dir: Path
    files: tuple[Path, ...] = field(default=())

    @property
    def errors_injected(self) -> int:
        return sum(self.errors_per_source.values())


def generate(out: Path, *, patients: int, seed: int, error_rate: float = 0.02,
             export_date: date = DEFAULT_EXPORT_DATE, partial_starts: float = 0.0,
             drugless_treatments: float = 0.0, restarted_lines: float = 0.0) -> SynthSummary:
    """Write synthetic exports of every source for `patients` distinct persons, and their truth.

    partial_starts, drugless_treatments, restarted_lines: the share of treatment lines a source starts only in a
    month or year, of treatments it gives without their drug, and of lines it gives as two, paused and restarted
    within days (treatment_gaps; none by default)."""
    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be between 0 and 1, got {error_rate}")
    treatment_gaps.check_share("partial_starts", partial_starts)
    treatment_gaps.check_share("drugless_treatments", drugless_treatments)
    treatment_gaps.check_share("restarted_lines", restarted_lines)
    gaps = partial_starts > 0 or drugless_treatments > 0 or restarted_lines > 0
    link_share = treatment_gaps.LINKED_ILTB_SHARE if gaps else ILTB_LINK_SHARE
    out = Path(out)
    landing, truth_dir = out / "landing", out / "truth"
    keys = KeyBook()
    counts = dict.fromkeys(SOURCES, 0)
    with ExitStack() as stack:
        stack.enter_context(fsio.private_umask())  # the truth links every source's patient numbers: owner-only
        writers: dict[str, SourceWriter] = {
            "sacha_fr": stack.enter_context(SachaOdmWriter(landing / "sacha_fr", export_date)),
            "iltb": stack.enter_context(IltbCsvWriter(landing / "iltb", export_date)),
            "registry_it": stack.enter_context(RegistryCsvWriter(landing / "registry_it", export_date)),
            "esmart": stack.enter_context(EsmartSasWriter(landing / "esmart", export_date)),
            "crizotinib_imt": stack.enter_context(CrizotinibXlsxWriter(landing / "crizotinib_imt", export_date)),
        }
        truth = stack.enter_context(TruthWriter(truth_dir))
        for index in range(patients):
            person, source_patients = make_person(index, seed, export_date, keys, link_share)
            for patient in source_patients:
                source = patient.source_id
                if gaps:
                    patient = treatment_gaps.vague(Random(f"rtw-synth/{seed}/treatment-gaps/{index}/{source}"),
                                                   patient, partial_starts, drugless_treatments, restarted_lines)
                render = Random(f"rtw-synth/{seed}/render/{index}/{source}")
                plan = ErrorPlan(Random(f"rtw-synth/{seed}/errors/{index}/{source}"), error_rate)
                records = writers[source].write_patient(patient, render, plan)
                truth.add_source_patient(patient, records)
                counts[source] += 1
            truth.add_person(person)
            for other in {id(p.person): p.person for p in source_patients if p.person is not person}.values():
                truth.add_person(other)  # a look-alike child (etl/synth/identity.py)
        truth_files = truth.paths
    exports = tuple(path for writer in writers.values() for path in writer.paths)
    # Delivered files carry the export day as their modification time, as a copy from the EDC would.
    stamp = datetime.combine(export_date, time(6, 0), UTC).timestamp()
    for path in exports:
        os.utime(path, (stamp, stamp))
    files = exports + tuple(truth_files)
    return SynthSummary(
        persons=patients, patients_per_source=counts,
        records_per_source={s: truth.records.get(s, 0) for s in SOURCES},
        errors_per_source={s: truth.errors.get(s, 0) for s in SOURCES},
        landing_dir=landing, truth_dir=truth_dir, files=files)
