"""How persons known to several sources look to linkage: EUPIDs left out, identifiers that disagree.

Applied to each person after their sources are drawn, with the person's own `Random` (seeded
apart from the course, so the clinical data of a seed stay what they were):
- EUPID export: for a person in several sources, all the sources export the shared EUPID only
  sometimes; otherwise only one of them does, or none (`eupid_exported`, links.csv).
- Disagreements a registry clerk makes: the birth date with day and month swapped, a diagnosis
  date a few days off (the registry dates the histology report, the trial the biopsy). Centres
  differ anyway (each network codes its own), and the ILTB board gives the birth month only.
- Look-alikes: now and then a different child in the Italian registry with the same sex, birth
  month and tumour as a cross-border SACHA patient; linkage must NOT link them.
"""

from __future__ import annotations

from datetime import date
from random import Random

from etl.synth import vocab
from etl.synth.people import (
    EUPID_SHARE,
    REGISTRY_MAX_AGE_DAYS,
    KeyBook,
    _Course,
    _registry_view,
)
from etl.synth.records import Diagnosis, PDate, Person, SourcePatient, plus

ALL_EXPORT_SHARE = 0.4  # of persons in several sources: every source exports the EUPID
HOME_ONLY_SHARE = 0.2  # only the source the person came from exports it
OTHER_ONLY_SHARE = 0.25  # only one of the other sources does; the rest: none does
SWAP_SHARE = 0.35  # of registry views: the birth date with day and month swapped (when that is a date)
DIAGNOSIS_SHIFT_SHARE = 0.35  # of registry views: the diagnosis date 1-6 days later
LOOKALIKE_SHARE = 0.35  # of cross-border SACHA persons: a different registry child who looks alike


def vary(rng: Random, person: Person, patients: list[SourcePatient], keys: KeyBook,
         export_date: date) -> list[SourcePatient]:
    """The person's source patients as linkage will see them, plus any look-alike child's."""
    if len({p.source_id for p in patients}) < 2:
        return patients
    if person.eupid:
        _export_eupid(rng, patients)
    for patient in patients[1:]:
        if patient.source_id == "registry_it":
            _registry_slips(rng, patient, swap=patients[0].birth.precision == "day")
    lookalike = _lookalike(rng, person, patients, keys, export_date)
    return patients + ([lookalike] if lookalike else [])


def _export_eupid(rng: Random, patients: list[SourcePatient]) -> None:
    draw = rng.random()
    others = patients[1:]
    if draw < ALL_EXPORT_SHARE:
        exporting = set(range(len(patients)))
    elif draw < ALL_EXPORT_SHARE + HOME_ONLY_SHARE:
        exporting = {0}
    elif draw < ALL_EXPORT_SHARE + HOME_ONLY_SHARE + OTHER_ONLY_SHARE:
        exporting = {1 + rng.randrange(len(others))}
    else:
        exporting = set()
    for n, patient in enumerate(patients):
        patient.eupid_exported = n in exporting
        shared = patient.eupid_exported and len(exporting) > 1
        patient.link_method = "eupid" if shared else "probabilistic"


def _registry_slips(rng: Random, patient: SourcePatient, *, swap: bool) -> None:
    """swap: the birth date may be swapped (a swap against a source giving the month only would leave
    nothing in common on the birth date: no registry clerk's slip is that unlucky on purpose here)."""
    diagnosis = patient.registrations[0].diagnosis
    birth = patient.birth.value
    if rng.random() < SWAP_SHARE and swap and birth.day <= 12 and birth.day != birth.month:
        swapped = birth.replace(month=birth.day, day=birth.month)
        # Only a younger swap well before the diagnosis: an older one could break the registry's age limit.
        if swapped > birth and (diagnosis.date.value - swapped).days > 60:
            patient.birth = PDate(swapped)
    if rng.random() < DIAGNOSIS_SHIFT_SHARE and diagnosis.date.precision == "day":
        later = plus(diagnosis.date.value, rng.randint(1, 6))
        if (patient.registrations[0].registration_date - later).days > 3:
            diagnosis.date = PDate(later)


def _lookalike(rng: Random, person: Person, patients: list[SourcePatient], keys: KeyBook,
               export_date: date) -> SourcePatient | None:
    home = patients[0]
    if home.source_id != "sacha_fr" or person.country != "IT" or rng.random() >= LOOKALIKE_SHARE:
        return None
    first = home.diagnoses[0]
    disease = next((d for d in vocab.CROSS_BORDER_DISEASES for v in d.variants
                    if v.morphology == first.morphology and v.topography == first.topography), None)
    birth = person.birth_date
    day = rng.choice([d for d in range(1, 29) if d != birth.day])
    other_birth = birth.replace(day=day)
    diagnosed = plus(first.date.value, rng.randint(40, 500))
    if (disease is None or (export_date - diagnosed).days < 60
            or (diagnosed - other_birth).days > REGISTRY_MAX_AGE_DAYS - 30):
        return None
    child = Person(f"{person.person_id}-L", person.sex, other_birth, "IT",
                   keys.eupid(rng) if rng.random() < EUPID_SHARE else None, "registry_it")
    course = _Course(other_birth, diagnosed, [Diagnosis("initial", PDate(diagnosed), first.morphology,
                                                        first.topography)], [], [], None)
    return _registry_view(rng, child, course, disease, keys, export_date)
