"""Treatments a source gives vaguely: a line started only "in March 2022" or "in 2022", a treatment without its drug,
a line paused and restarted that the source numbers as two.

Off by default: `generate(..., partial_starts=0, drugless_treatments=0, restarted_lines=0)` writes no such record (the
exports stay byte-identical). On, they give marts.treatment_line's matching of partial starts and its lending of drugs
to a line naming none (docs/endpoints.md) synthetic cases to meet, beside the hand-built ones:
- partial_starts: the share of each source's lines whose start the source gives only to the month (three in four)
  or the year, drawn per source and line (every treatment of the line alike), written as each source writes a
  partial date; its period's first day may come before the source's diagnoses or enrolment ("2022" for a line
  started a week after an enrolment of 3 March 2022): the rules and marts judge a partial start by the last day it
  can be on (period_end, surely_before), so it breaks no order;
- restarted_lines: the share of each source's lines paused after a few days and restarted with the same drugs, the
  source numbering the restart as a line of its own (SACHA and ILTB, whose exports number lines; drawn per source and
  line, before the starts are blurred): a
  source's two lines of the same drugs in one month, which it numbers apart, whether given to the day or not;
- drugless_treatments: the share of treatments whose drug (and ATC code) the source leaves out, drawn per treatment,
  in the sources whose format allows an empty drug (DRUGLESS_SOURCES; ESMART's SDTM EX requires EXTRT). The truth
  loads them without a drug (TRT-DRUG-PRESENT warns): the shipped mappings require drug_name, so a run that should
  equal the truth reads mappings where it is optional (tests/test_treatment_line_synth.py).

Any on, every SACHA person with a leukaemia is also submitted to the ILTB board (LINKED_ILTB_SHARE, not
people.ILTB_LINK_SHARE), so lines two sources report, where the matching acts, are common among a few hundred persons.
"""

from __future__ import annotations

from dataclasses import replace
from random import Random

from etl.synth.records import PDate, SourcePatient, Treatment, blur, plus

DRUGLESS_SOURCES = ("sacha_fr", "iltb", "crizotinib_imt")  # an ODM item left out, an empty CSV or Excel cell
NUMBERED_SOURCES = ("sacha_fr", "iltb")  # the trials' mappings make every treatment the trial line (line_number 1)
YEAR_SHARE = 0.25  # of the partial starts, those given to the year only
LINKED_ILTB_SHARE = 1.0  # every one


def check_share(name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {share}")


def vague(rng: Random, patient: SourcePatient, partial_starts: float, drugless: float,
          restarted: float = 0.0) -> SourcePatient:
    """`patient` with some lines restarted, some line starts given only to the month or year and some drugs left
    out; the same draws whatever the shares, so raising one changes no other record's content."""
    if not patient.treatments:
        return patient
    numbered = patient.source_id in NUMBERED_SOURCES
    patient = replace(patient, treatments=_restarted(rng, patient.treatments, restarted if numbered else 0.0))
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



def _restarted(rng: Random, treatments: list[Treatment], share: float) -> list[Treatment]:
    """The source's lines, a share of them paused after 1-9 days and restarted with the same drugs, the source
    numbering the restart as a line of its own (the next lines renumbered): a source's two lines of the same drugs
    within days, often within one month. The first part ends the day before the restart (toxicity) and keeps the
    adverse events; the restart keeps the end and the responses (assessed weeks after the start)."""
    lines = sorted({treatment.line for treatment in treatments})
    kept, shift = [], 0
    for line in lines:
        given = [treatment for treatment in treatments if treatment.line == line]
        draw, pause = rng.random(), rng.randint(2, 10)
        first = given[0]
        restart = plus(first.start.value, pause)
        if draw < share and (first.end is None or first.end > restart):
            kept += [replace(t, line=line + shift, end=plus(restart, -1), end_reason="toxicity", responses=[])
                     for t in given]
            shift += 1
            kept += [replace(t, line=line + shift, start=PDate(restart), adverse_events=[]) for t in given]
        else:
            kept += [replace(t, line=line + shift) for t in given]
    return kept
