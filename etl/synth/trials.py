"""Synthetic persons of the two trials: ESMART (matched targeted therapy) and the crizotinib IMT trial.

Pure like `people`: each function takes the person's own `random.Random` and returns the person
and how each source knows them. The same date rules hold (birth < diagnoses < consent <= enrolment
< treatment start < end; responses and adverse events after their treatment's start; nothing after
death; nothing after the export).

Links to other sources:
- an ESMART patient of a French site whose trial line ended in progression may then get an
  off-label drug registered in SACHA (same EUPID, SACHA inclusion after the ESMART line);
- a crizotinib patient treated in Italy is often registered in TREP (IMT is a very rare tumour).
"""

from __future__ import annotations

from datetime import date
from random import Random

from etl.synth import vocab
from etl.synth.people import (
    _CRITERIA,
    _RANK,
    EUPID_SHARE,
    YEAR,
    KeyBook,
    _age_days,
    _basis,
    _between,
    _Course,
    _follow_ups,
    _Line,
    _pick,
    _recorded,
    _registry_view,
    _sacha_drugs,
    _sacha_route,
    _sex,
    _simulate_lines,
    _treatment,
)
from etl.synth.records import (
    Alteration,
    Diagnosis,
    FollowUp,
    PDate,
    Person,
    Response,
    SourcePatient,
    Treatment,
    blur,
    plus,
)

TRIAL_MAX_AGE_DAYS = int(19 * YEAR) - 1  # "age 0-18": both trials enrol up to the day before the 19th birthday
CLEAN_ENROLMENT_MAX_DAYS = int(18 * YEAR) - 1  # clean trial patients are enrolled before the 18th birthday
ESMART_WINDOW_DAYS = 3600  # ESMART opened in 2016
CRIZOTINIB_WINDOW_DAYS = 2600
ESMART_SACHA_SHARE = 0.85  # of French ESMART patients progressing on the trial, then treated off-label
CRIZOTINIB_REGISTRY_SHARE = 0.7  # of crizotinib patients treated in Italy, also registered in TREP
# Sites whose CRF collects only the month and year of birth (data minimisation).
ESMART_MONTH_BIRTH_COUNTRIES = frozenset({"FR", "NL", "DK"})
# ESMART site -> the SACHA centre of the same hospital.
ESMART_SACHA_CENTRE = {"0101": "FR02", "0102": "FR01", "0103": "FR03"}
IMT = vocab.Disease("imt", "solid", vocab.IMT_VARIANTS, (0.3, 7.0, 17.0), size_cm=(2.0, 12.0), death_risk=0.04)


def _eupid(rng: Random, keys: KeyBook, linked: bool) -> str | None:
    return keys.eupid(rng) if linked or rng.random() < EUPID_SHARE else None


def _events(rng: Random, initial: date, before: date, n_relapses: int) -> list[tuple[str, date]]:
    """The initial diagnosis, then relapses (or a progression when refractory), all before `before`."""
    events = [("initial", initial)]
    first, last = plus(initial, 90), plus(before, -21)
    if n_relapses and (last - first).days > 60 * n_relapses:
        offsets = sorted(rng.sample(range((last - first).days + 1), n_relapses))
        events += [("relapse", plus(first, offset)) for offset in offsets]
    else:
        events.append(("progression", max(plus(initial, 1), plus(before, -rng.randint(21, 60)))))
    return events


# -- ESMART -------------------------------------------------------------------------------------

def _esmart_profile(rng: Random, disease_key: str) -> list[vocab.AlterationSpec]:
    keys = [k for k, _ in vocab.ESMART_ACTIONABLE]
    weights = [w for _, w in vocab.ESMART_ACTIONABLE]
    found = [rng.choices(keys, weights)[0]]
    if rng.random() < 0.3:
        second = rng.choices(keys, weights)[0]
        if second not in found:
            found.append(second)
    if rng.random() < 0.35:
        found.append("MYCN amplification" if disease_key == "neuroblastoma" else "TP53 p.R248Q")
    return [vocab.ESMART_ALTERATIONS[k] for k in found]


def esmart_person(rng: Random, person_id: str, export_date: date,
                  keys: KeyBook) -> tuple[Person, list[SourcePatient]]:
    disease_key, label, _ = _pick(rng, vocab.ESMART_DISEASES, [w for *_, w in vocab.ESMART_DISEASES])
    disease = vocab.DISEASE[disease_key]
    variant = _pick(rng, disease.variants, [v.weight for v in disease.variants])
    site, site_country, _ = _pick(rng, vocab.ESMART_SITES, [w for *_, w in vocab.ESMART_SITES])

    n_relapses = _pick(rng, (0, 1, 2), (0.3, 0.5, 0.2))
    to_enrolment = rng.randint(90, 400) if n_relapses == 0 else rng.randint(300, 2200)
    age_at_diagnosis = max(60, _age_days(rng, disease.age_years))
    # The margin keeps ages under 18 also from a month-precise birth date (taken as the 15th).
    enrolment_age = min(age_at_diagnosis + to_enrolment, CLEAN_ENROLMENT_MAX_DAYS - rng.randint(20, 300))
    age_at_diagnosis = max(60, min(age_at_diagnosis, enrolment_age - 90))
    enrolment = _between(rng, plus(export_date, -ESMART_WINDOW_DAYS), plus(export_date, -30))
    birth = plus(enrolment, -enrolment_age)
    initial = plus(birth, age_at_diagnosis)
    events = _events(rng, initial, enrolment, n_relapses)
    diagnoses = []
    previous = birth
    for n, (event_type, day) in enumerate(events):
        when = _recorded(rng, day, previous, *((0.15, 0.03) if n == 0 else (0.05, 0.0)))
        diagnoses.append(Diagnosis(event_type, when, variant.morphology, variant.topography, label))
        previous = day
    last_event = events[-1][1]
    consent = max(plus(last_event, 1), plus(enrolment, -rng.randint(0, 20)))
    reported = _between(rng, plus(last_event, 1), plus(enrolment, -1))
    profile = _esmart_profile(rng, disease_key)
    alterations = [Alteration(s.alteration_type, s.gene, s.partner, s.alteration, s.hgvs, rng.choice(s.assays),
                              s.is_actionable, PDate(reported)) for s in profile]
    actionable = {s.alteration for s in profile if s.is_actionable}
    arm = rng.choice([a for a in vocab.ESMART_ARMS if actionable & set(a.alterations)])

    criteria = _CRITERIA[disease.group]
    dies = rng.random() < disease.death_risk
    start = plus(enrolment, rng.randint(1, 14))
    lines, death = _simulate_lines(rng, start, 1, lambda _rng, _given: arm.drugs, lambda _rng, _drugs: "trial",
                                   export_date, dies, criteria, disease.key, min_days=28, max_days=420)
    trial_line = lines[0]
    sacha_centre = ESMART_SACHA_CENTRE.get(site)
    sacha_lines: list[_Line] = []
    inclusion: date | None = None
    if (sacha_centre and death is None and trial_line.end_reason == "progression" and trial_line.end is not None
            and trial_line.end < plus(export_date, -100) and rng.random() < ESMART_SACHA_SHARE):
        inclusion = plus(trial_line.end, rng.randint(20, 90))
        sacha_lines, death = _simulate_lines(
            rng, plus(inclusion, rng.randint(1, 21)), _pick(rng, (1, 2), (0.7, 0.3)), _sacha_drugs(disease, []),
            _sacha_route, export_date, rng.random() < disease.death_risk, criteria, disease.key)
    follow_ups = [FollowUp(f.contact_date, f.vital_status, f.death_date, None)  # the SS dataset has no disease status
                  for f in _follow_ups(rng, start, export_date, death, disease.group)]

    country = site_country  # SDTM DM.COUNTRY is the site's country; ESMART knows no other
    person = Person(person_id, _sex(rng), birth, country, _eupid(rng, keys, inclusion is not None), "esmart", death)
    recorded_birth = blur(birth, "month") if site_country in ESMART_MONTH_BIRTH_COUNTRIES else PDate(birth)
    treatments = [Treatment(1, drug, None, "trial", PDate(trial_line.start), trial_line.end, trial_line.end_reason,
                            list(trial_line.responses) if n == 0 else [],
                            list(trial_line.adverse_events) if n == 0 else [])
                  for n, drug in enumerate(trial_line.drugs)]
    esmart = SourcePatient("esmart", keys.trial("esmart", site), site, person, recorded_birth,
                           enrolment_date=enrolment, consent_date=consent, diagnoses=diagnoses,
                           alterations=alterations, treatments=treatments, follow_ups=follow_ups, arm=arm.code)
    patients = [esmart]
    if inclusion is not None and sacha_centre is not None:
        patients.append(_sacha_view_of_esmart(rng, person, events, disease, variant, trial_line, inclusion,
                                              sacha_lines, follow_ups, sacha_centre, keys))
    return person, patients


def _sacha_view_of_esmart(rng: Random, person: Person, events: list[tuple[str, date]], disease: vocab.Disease,
                          variant: vocab.Variant, trial_line: _Line, inclusion: date, lines: list[_Line],
                          follow_ups: list[FollowUp], centre: str, keys: KeyBook) -> SourcePatient:
    """SACHA registers the off-label drug given after progression on the trial."""
    assert trial_line.end is not None
    progressed = plus(trial_line.end, -rng.randint(0, 10))
    diagnoses = []
    previous = person.birth_date
    for n, (event_type, day) in enumerate([*events, ("progression", progressed)]):
        when = _recorded(rng, day, previous, *((0.12, 0.03) if n == 0 else (0.05, 0.0)))
        label = variant.label_fr if n == 0 else f"{variant.label_fr} - progression sous essai ESMART"
        diagnoses.append(Diagnosis(event_type, when, variant.morphology, variant.topography, label,
                                   _basis(rng, disease.group, variant.label_fr, n > 0)))
        previous = day
    consent = max(plus(progressed, 1), plus(inclusion, -rng.randint(0, 10)))
    first = lines[0].start if lines else inclusion
    seen = []
    for f in follow_ups:
        status = ("progression" if f.vital_status == "dead"
                  else _pick(rng, ("stable", "progression", "unknown"), (0.4, 0.45, 0.15)))
        if f.contact_date > first:  # SACHA follows its patients from their first off-label drug
            seen.append(FollowUp(f.contact_date, f.vital_status, f.death_date, status))
    return SourcePatient("sacha_fr", keys.sacha(centre), centre, person, PDate(person.birth_date),
                         enrolment_date=inclusion, consent_date=consent, diagnoses=diagnoses,
                         treatments=[_treatment(n, line, drug) for n, line in enumerate(lines, 1)
                                     for drug in line.drugs],
                         follow_ups=seen)


# -- crizotinib IMT -----------------------------------------------------------------------------

def _imt_response(rng: Random, response: Response, cycle1: str | None) -> Response:
    """IMT with an ALK/ROS1 fusion answers crizotinib well (objective responses in most patients)."""
    if response.timepoint == "cycle1":
        code = _pick(rng, ("CR", "PR", "SD", "PD"), (0.1, 0.55, 0.3, 0.05))
    else:
        code = _pick(rng, ("CR", "PR", "SD", "PD"), (0.35, 0.45, 0.15, 0.05))
        if cycle1 is not None:
            code = min(code, cycle1, key=_RANK.index)
    return Response(response.date, response.timepoint, response.criteria, code)


def crizotinib_person(rng: Random, person_id: str, export_date: date,
                      keys: KeyBook) -> tuple[Person, list[SourcePatient]]:
    variant = _pick(rng, IMT.variants, [v.weight for v in IMT.variants])
    site, site_country, _ = _pick(rng, vocab.CRIZOTINIB_SITES, [w for *_, w in vocab.CRIZOTINIB_SITES])
    relapsed = rng.random() < 0.25  # relapse after surgery, else unresectable at diagnosis
    to_enrolment = rng.randint(400, 1500) if relapsed else rng.randint(45, 150)
    age_at_diagnosis = max(60, _age_days(rng, IMT.age_years))
    enrolment_age = min(age_at_diagnosis + to_enrolment, CLEAN_ENROLMENT_MAX_DAYS - rng.randint(20, 200))
    age_at_diagnosis = max(30, min(age_at_diagnosis, enrolment_age - 45))
    enrolment = _between(rng, plus(export_date, -CRIZOTINIB_WINDOW_DAYS), plus(export_date, -30))
    birth = plus(enrolment, -enrolment_age)
    initial = plus(birth, age_at_diagnosis)
    events = [("initial", initial)]
    if relapsed and (enrolment - initial).days > 200:
        events.append(("relapse", _between(rng, plus(initial, 150), plus(enrolment, -45))))
    recorded_birth = blur(birth, "month")  # the CRF asks for month and year of birth only
    diagnoses = []
    previous = recorded_birth.age_anchor
    for n, (event_type, day) in enumerate(events):
        size = rng.randint(15, 120) if rng.random() < 0.85 else None
        when = _recorded(rng, day, previous, 0.08 if n == 0 else 0.0)
        diagnoses.append(Diagnosis(event_type, when, variant.morphology, variant.topography, variant.label_fr,
                                   size_mm=size))
        previous = day
    last_event = events[-1][1]
    consent = max(plus(last_event, 1), plus(enrolment, -rng.randint(0, 14)))

    gene, partner, _ = _pick(rng, vocab.IMT_FUSIONS, [w for *_, w in vocab.IMT_FUSIONS])
    reported = _between(rng, plus(last_event, 7), plus(enrolment, -1))
    alterations = []
    if partner == "ALK" and rng.random() < 0.7:
        ihc = _between(rng, plus(last_event, 2), reported)
        alterations.append(Alteration("expression", "ALK", None, "ALK overexpression", None, "IHC", True, PDate(ihc)))
    alterations.append(Alteration("fusion", gene, partner, f"{gene}::{partner}", None,
                                  rng.choice(("RNA-seq", "panel")), True, PDate(reported)))

    dies = rng.random() < IMT.death_risk
    start = plus(enrolment, rng.randint(1, 10))
    lines, death = _simulate_lines(rng, start, 1, lambda _rng, _given: ("crizotinib",),
                                   lambda _rng, _drugs: "trial", export_date, dies, "RECIST1.1", "imt",
                                   min_days=56, max_days=900)
    line = lines[0]
    responses: list[Response] = []
    for response in line.responses:
        responses.append(_imt_response(rng, response, responses[0].response if responses else None))
    line.responses = responses
    follow_ups = _follow_ups(rng, start, export_date, death, "solid")
    lvef = rng.randint(61, 78)

    country = site_country if rng.random() < 0.97 else rng.choice(("LU", "CH", "AT"))
    also_registry = site_country == "IT" and rng.random() < CRIZOTINIB_REGISTRY_SHARE
    person = Person(person_id, _sex(rng), birth, country, _eupid(rng, keys, also_registry), "crizotinib_imt",
                    death)
    trial = SourcePatient("crizotinib_imt", keys.trial("crizotinib_imt", site), site, person, recorded_birth,
                          enrolment_date=enrolment, consent_date=consent, diagnoses=diagnoses,
                          alterations=alterations,
                          treatments=[Treatment(1, "crizotinib", None, "trial", PDate(line.start), line.end,
                                                line.end_reason, line.responses, line.adverse_events)],
                          follow_ups=follow_ups, lvef_percent=lvef)
    patients = [trial]
    if also_registry:
        course = _Course(birth, initial, diagnoses, lines, follow_ups, death)
        patients.append(_registry_view(rng, person, course, IMT, keys, export_date))
    return person, patients
