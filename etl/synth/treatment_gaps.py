"""Treatments a source gives vaguely: a line started only "in March 2022" or "in 2022", a treatment without its drug.

Off by default: `generate(..., partial_starts=0, drugless_treatments=0)` writes no such record (the exports stay
byte-identical). On, they give marts.treatment_line's matching of partial starts and its lending of drugs to a line
naming none (docs/endpoints.md) synthetic cases to meet, beside the hand-built ones:

- partial_starts: the share of each source's lines whose start the source gives only to the month (three in four)
  or the year, drawn per source and line (every treatment of the line alike), written as each source writes a
  partial date; its period's first day may come before the source's diagnoses or enrolment ("2022" for a line
  started a week after an enrolment of 3 March 2022): the rules and marts judge a partial start by the last day it
  can be on (period_end, surely_before), so it breaks no order;
- drugless_treatments: the share of treatments whose drug (and ATC code) the source leaves out, drawn per treatment,
  in the sources whose format allows an empty drug (DRUGLESS_SOURCES; ESMART's SDTM EX requires EXTRT). The truth
  loads them without a drug (TRT-DRUG-PRESENT warns): the shipped mappings require drug_name, so a run that should
  equal the truth reads mappings where it is optional (tests/test_treatment_line_synth.py).

Either on, every SACHA person with a leukaemia is also submitted to the ILTB board (LINKED_ILTB_SHARE, not
people.ILTB_LINK_SHARE), so lines two sources report, where the matching acts, are common among a few hundred persons.
"""

from __future__ import annotations

from dataclasses import replace
from random import Random

from etl.synth.records import SourcePatient, blur

DRUGLESS_SOURCES = ("sacha_fr", "iltb", "crizotinib_imt")  # an ODM item left out, an empty CSV or Excel cell
YEAR_SHARE = 0.25  # of the partial starts, those given to the year only
LINKED_ILTB_SHARE = 1.0  # every one


def check_share(name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {share}")


def vague(rng: Random, patient: SourcePatient, partial_starts: float, drugless: float) -> SourcePatient:
    """`patient` with some line starts given only to the month or year and some drugs left out; the same draws
    whatever the shares, so raising one changes no other record."""
    if not patient.treatments:
        return patient
    starts = {}
    for treatment in patient.treatments:
        if treatment.line not in starts:
            draw = rng.random()
            precision = ("year" if draw < partial_starts * YEAR_SHARE else "month" if draw < partial_starts
                         else "day")
            starts[treatment.line] = blur(treatment.start.value, precision)
    treatments = []
    for treatment in patient.treatments:
        left_out = rng.random() < drugless and patient.source_id in DRUGLESS_SOURCES
        treatments.append(replace(treatment, start=starts[treatment.line], drug_given=not left_out))
    return replace(patient, treatments=treatments)

