"""Harmonised records of the synthetic persons, before any source writes them its own way.

Values here are already in the warehouse's vocabulary (`male`, `off_label`, `CRi`,
`9500/3`, lower-case INNs). A source writer turns them into that source's codes, formats and
messiness; the truth is derived from the same records, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta


@dataclass(frozen=True)
class PDate:
    """A date as a source knows it: `value` is the first day of its period when partial."""

    value: date
    precision: str = "day"  # day / month / year

    @property
    def age_anchor(self) -> date:
        """The date taken for ages when this is a birth date: the 15th of its month (the warehouse
        knows birth dates to the month), 1 July of a year-precise one."""
        if self.precision == "year":
            return self.value.replace(month=7, day=1)
        return self.value.replace(day=15)


def blur(day: date, precision: str) -> PDate:
    """`day` as known only to the month or year."""
    if precision == "month":
        return PDate(day.replace(day=1), "month")
    if precision == "year":
        return PDate(day.replace(month=1, day=1), "year")
    return PDate(day)


def dmy(day: PDate | date | None, unknown: str) -> str:
    """`17/05/2019`; a part the centre did not know is written as `unknown` (`UK/05/2019`, `00/00/2019`)."""
    if day is None:
        return ""
    if isinstance(day, date):
        return day.strftime("%d/%m/%Y")
    if day.precision == "month":
        return day.value.strftime(f"{unknown}/%m/%Y")
    if day.precision == "year":
        return f"{unknown}/{unknown}/{day.value.year:04d}"
    return day.value.strftime("%d/%m/%Y")


def plus(day: date, days: int) -> date:
    return day + timedelta(days=days)


@dataclass
class Person:
    person_id: str  # truth's true_person_id
    sex: str  # female / male / unknown
    birth_date: date
    country: str
    eupid: str | None
    home_source: str
    death_date: date | None = None  # set once the course is known and the death is before the export


@dataclass
class Diagnosis:
    event_type: str  # initial / relapse / progression
    date: PDate
    morphology: str  # "9500/3"
    topography: str  # "C74.9"
    label: str | None = None
    basis: str | None = None  # ENCR basis of diagnosis, "0".."9"
    laterality: str | None = None
    size_mm: int | None = None


@dataclass
class Alteration:
    alteration_type: str
    gene: str
    partner: str | None
    alteration: str
    hgvs: str | None
    assay: str
    is_actionable: bool
    report_date: PDate


@dataclass
class BoardReview:
    submission_date: date
    recommendation_date: date
    priority_rank: int
    recommendation_type: str  # TRIAL / OFF_LABEL / COMPASSIONATE / STANDARD / NONE (ILTB spelling)
    agents: tuple[str, ...]
    intent: str | None  # BRIDGING / PALLIATIVE / CURATIVE
    followed: bool | None
    reason_not_followed: str | None


@dataclass
class Response:
    date: date
    timepoint: str  # cycle1 / best
    criteria: str  # RECIST1.1 / RANO / INRC / leukaemia
    response: str  # CR / PR / SD / PD / NE / CRi / MLFS / NR
    mrd: str | None = None  # percent, written as the source writes it


@dataclass
class AdverseEvent:
    term: str
    meddra: str
    grade: int
    onset: date
    end: date | None
    is_serious: bool
    relatedness: str  # related / not_related / unknown
    outcome: str  # recovered / recovering / not_recovered / sequelae / fatal / unknown


@dataclass
class Treatment:
    line: int
    drug: str  # lower-case INN
    atc: str | None
    route: str  # trial / off_label / compassionate / standard
    start: PDate
    end: date | None
    end_reason: str | None  # completed / progression / toxicity / death / other
    responses: list[Response] = field(default_factory=list)
    adverse_events: list[AdverseEvent] = field(default_factory=list)
    drug_given: bool = True  # False: the source leaves the drug (and its ATC code) out (etl/synth/treatment_gaps.py)


@dataclass
class FollowUp:
    contact_date: date
    vital_status: str  # alive / dead / lost
    death_date: date | None
    disease_status: str | None  # no_evidence_of_disease / stable / progression / unknown
    # ILTB's 3-monthly follow-up asks whether the patient is in a trial, and the physician's reason either way.
    trial_enrolment_status: str | None = None  # enrolled / not_enrolled
    trial_enrolment_reason: str | None = None  # a code of vocab.ILTB_TRIAL_REASONS


@dataclass
class Registration:
    """One TREP row: a tumour registered for a patient, with the patient's latest status."""

    registration_date: date
    diagnosis: Diagnosis
    follow_up: FollowUp
    note: str | None


@dataclass
class SourcePatient:
    """A person as one source knows them."""

    source_id: str
    patient_key: str
    centre_id: str
    person: Person
    birth: PDate  # as this source records it (ILTB: month and year only)
    enrolment_date: date | None = None
    consent_date: date | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    alterations: list[Alteration] = field(default_factory=list)
    reviews: list[BoardReview] = field(default_factory=list)
    treatments: list[Treatment] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)
    arm: str | None = None  # trials: the arm code the patient was allocated to
    eupid_exported: bool = True  # False: this source does not export the person's EUPID (linkage must find them)
    link_method: str | None = None  # what linkage should say (truth); None: from the EUPID alone
    lvef_percent: int | None = None  # crizotinib trial: ejection fraction at screening

    @property
    def exported_eupid(self) -> str | None:
        """The EUPID as this source exports it (None when the person has none or the source leaves it out)."""
        return self.person.eupid if self.eupid_exported else None

    @property
    def expected_link_method(self) -> str:
        return self.link_method or ("eupid" if self.exported_eupid else "unlinked")
