"""Synthetic persons and their clinical course, as harmonised records per source.

Pure: `make_person` takes the person's index, the seed and the export date and returns the
person and how each source knows them (`SourcePatient`s); nothing is written here. Each person
draws from their own `random.Random` seeded from (seed, index), so a person does not change when
another one does, and nothing depends on hash or set order.

Date rules every clean record keeps (the data-quality rules check them):
birth < initial diagnosis < relapses < consent <= enrolment < treatment start < end; responses
and adverse events after the start of their treatment; follow-up after the first treatment;
death after everything else; every date on or before the export date. A partial date is only
written when the first day of its period still keeps that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from random import Random
from typing import TypeVar

from etl.synth import vocab
from etl.synth.records import (
    AdverseEvent,
    Alteration,
    BoardReview,
    Diagnosis,
    FollowUp,
    PDate,
    Person,
    Registration,
    Response,
    SourcePatient,
    Treatment,
    blur,
    plus,
)

T = TypeVar("T")
DrugChooser = Callable[[Random, list[str]], tuple[str, ...]]  # (rng, drugs given so far) -> next line's drugs
RouteChooser = Callable[[Random, tuple[str, ...]], str]  # (rng, drugs) -> access route

HOME_SOURCES: tuple[tuple[str, float], ...] = (("sacha_fr", 0.40), ("iltb", 0.22), ("registry_it", 0.26),
                                               ("esmart", 0.08), ("crizotinib_imt", 0.04))
ILTB_LINK_SHARE = 0.08  # of SACHA persons with a leukaemia, also submitted to the ILTB board
REGISTRY_LINK_SHARE = 0.05  # of SACHA persons, Italian residents with a very rare tumour also in TREP
EUPID_SHARE = 0.5  # of persons known to one source only
YEAR = 365.25
SACHA_MAX_AGE_DAYS = int(25 * YEAR) - 1  # inclusion before the 25th birthday
REGISTRY_MAX_AGE_DAYS = int(18 * YEAR) - 1  # diagnosis before the 18th birthday
SACHA_WINDOW_DAYS = 2300  # SACHA-France opened in 2020
ILTB_WINDOW_DAYS = 3200
REGISTRY_WINDOW_DAYS = int(26 * YEAR)
_EUPID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32: no I, L, O, U
_CRITERIA = {"leukaemia": "leukaemia", "cns": "RANO", "neuroblastoma": "INRC", "solid": "RECIST1.1"}
_RANK = ("CR", "CRi", "MLFS", "PR", "SD", "NR", "PD", "NE")  # best first


class KeyBook:
    """Patient numbers, handed out in the order persons are generated, and the EUPIDs in use."""

    def __init__(self) -> None:
        self._sacha: dict[str, int] = {}
        self._iltb = 0
        self._registry = 0
        self._trials: dict[tuple[str, str], int] = {}
        self._eupids: set[str] = set()

    def sacha(self, centre_id: str) -> str:
        number = self._sacha.get(centre_id, 0) + 1
        self._sacha[centre_id] = number
        return f"{centre_id[2:]}-{number:04d}"  # FR07 -> 07-0042

    def iltb(self) -> str:
        self._iltb += 1
        return f"ILTB-{self._iltb:05d}"

    def registry(self) -> str:
        self._registry += 1
        return f"TREP-{self._registry:06d}"

    def trial(self, source_id: str, site: str) -> str:
        """Trial subject ids, numbered per site: `ESMART-0101-0007`, `IMT-FR01-003`."""
        number = self._trials.get((source_id, site), 0) + 1
        self._trials[(source_id, site)] = number
        if source_id == "esmart":
            return f"ESMART-{site}-{number:04d}"
        return f"IMT-{site.replace('-', '')}-{number:03d}"

    def eupid(self, rng: Random) -> str:
        while True:
            token = "EU" + "".join(rng.choice(_EUPID_ALPHABET) for _ in range(8))
            if token not in self._eupids:
                self._eupids.add(token)
                return token


# -- small helpers ---------------------------------------------------------------------------

def _pick(rng: Random, items: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(items, weights=weights)[0]


def _between(rng: Random, first: date, last: date) -> date:
    if last <= first:
        return first
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _age_days(rng: Random, years: tuple[float, float, float]) -> int:
    low, mode, high = years
    return int(rng.triangular(low, high, mode) * YEAR)


def _recorded(rng: Random, day: date, after: date, p_month: float, p_year: float = 0.0) -> PDate:
    """`day` as the source records it: sometimes only to the month or year, if that keeps the order."""
    draw = rng.random()
    precision = "year" if draw < p_year else "month" if draw < p_year + p_month else "day"
    recorded = blur(day, precision)
    return recorded if recorded.value > after else PDate(day)


def _sex(rng: Random, sites: tuple[str, ...] = ()) -> str:
    """The person's sex; a tumour of a sex-specific organ (C51-C58 female, C60-C63 male) fixes it, so the
    synthetic truth holds no paratesticular sarcoma of a girl for XT-SEX-SITE to flag. The draw is made
    either way: the generator's later draws stay as they were."""
    drawn = _pick(rng, ("male", "female", "unknown"), (0.54, 0.455, 0.005))
    for site in sites:
        if "C51" <= site < "C59":
            return "female"
        if "C60" <= site < "C64":
            return "male"
    return drawn


@dataclass
class _Line:
    drugs: tuple[str, ...]
    route: str
    start: date
    end: date | None
    end_reason: str | None
    responses: list[Response] = field(default_factory=list)
    adverse_events: list[AdverseEvent] = field(default_factory=list)


@dataclass
class _Course:
    """What happened to a person, before any source records it."""

    birth: date
    initial_date: date  # the true date of the initial diagnosis, even if a source knows it only partially
    diagnoses: list[Diagnosis]
    lines: list[_Line]
    follow_ups: list[FollowUp]
    death: date | None


# -- the shared clinical course ----------------------------------------------------------------

def _simulate_lines(rng: Random, first_start: date, n_lines: int, choose_drugs: DrugChooser,
                    choose_route: RouteChooser, export_date: date, dies: bool, criteria: str, group: str,
                    min_days: int = 21, max_days: int = 365) -> tuple[list[_Line], date | None]:
    """Lines of treatment one after the other until the export, and the death if it happens."""
    lines: list[_Line] = []
    start = first_start
    death: date | None = None
    for _ in range(n_lines):
        if start >= export_date:
            break
        drugs = choose_drugs(rng, [d for line in lines for d in line.drugs])
        route = choose_route(rng, drugs)
        planned_end = plus(start, rng.randint(min_days, max_days))
        planned_reason = _pick(rng, ("progression", "completed", "toxicity", "other", "death"),
                               (0.45, 0.25, 0.12, 0.08, 0.10 if dies else 0.0))
        ongoing = planned_end >= export_date
        end = None if ongoing else planned_end
        reason = None if ongoing else planned_reason
        lines.append(_Line(drugs, route, start, end, reason))
        if reason == "death":
            death = end
        if end is None or reason == "death":
            break
        start = plus(end, rng.randint(3, 60))
    if dies and death is None and lines:
        last = lines[-1]
        candidate = plus(last.end or last.start, rng.randint(15, 600))
        if candidate < export_date:
            death = candidate
            if last.end is None:
                last.end, last.end_reason = death, "death"
    for line in lines:
        _add_responses(rng, line, criteria, group, export_date, death)
        _add_adverse_events(rng, line, export_date, death)
    return lines, death


def _cap(line: _Line, export_date: date, death: date | None) -> date:
    """The last day anything of this line can be recorded."""
    last = min(export_date, death) if death else export_date
    return min(line.end, last) if line.end else last


def _add_responses(rng: Random, line: _Line, criteria: str, group: str, export_date: date,
                   death: date | None) -> None:
    cap = _cap(line, export_date, death)
    leukaemia = criteria == "leukaemia"
    cycle1 = plus(line.start, rng.randint(25, 35))
    if cycle1 <= cap:
        codes: tuple[str, ...]
        weights: tuple[float, ...]
        if leukaemia:
            # MLFS is an AML response; JMML criteria know a partial remission (PR).
            codes = ("CR", "CRi", "MLFS", "PR", "NR", "PD")
            weights = (0.35, 0.15, 0.05 if group == "aml" else 0.0, 0.15 if group == "jmml" else 0.0, 0.3, 0.15)
        else:
            codes, weights = ("CR", "PR", "SD", "PD", "NE"), (0.03, 0.22, 0.42, 0.28, 0.05)
        line.responses.append(Response(cycle1, "cycle1", criteria, _pick(rng, codes, weights)))
    if line.end is None:
        return
    best = plus(line.end, -rng.randint(0, 10))
    if line.responses and best <= line.responses[0].date:
        best = plus(line.responses[0].date, 1)
    if best > cap or best <= line.start:
        return
    outcome = line.end_reason or "other"
    table: dict[str, tuple[str, ...]]
    if leukaemia:
        table = {"progression": ("NR", "PD"), "completed": ("CR", "CRi"), "toxicity": ("CR", "NR"),
                 "death": ("NR", "PD"), "other": ("CR", "NR")}
    else:
        table = {"progression": ("PD", "SD"), "completed": ("CR", "PR", "SD"), "toxicity": ("SD", "PR", "NE"),
                 "death": ("PD", "NE"), "other": ("SD", "PR")}
    response = rng.choice(table[outcome])
    if line.responses:  # the best overall response is never worse than the response after cycle 1
        response = min(response, line.responses[0].response, key=_RANK.index)
    line.responses.append(Response(best, "best", criteria, response))


def _add_adverse_events(rng: Random, line: _Line, export_date: date, death: date | None) -> None:
    cap = _cap(line, export_date, death)
    last_day = min(export_date, death) if death else export_date
    span = (cap - line.start).days
    if span >= 2:
        for _ in range(_pick(rng, (0, 1, 2, 3, 4), (0.25, 0.3, 0.2, 0.15, 0.1))):
            specific = [t for d in line.drugs for t in vocab.AE_BY_DRUG.get(d, ())]
            if specific and rng.random() < 0.35:
                term, meddra = rng.choice(specific)
            else:
                term, meddra, _ = _pick(rng, vocab.AE_TERMS, [w for *_, w in vocab.AE_TERMS])
            grade = _pick(rng, (1, 2, 3, 4), (0.35, 0.35, 0.22, 0.08))
            onset = plus(line.start, rng.randint(1, span))
            resolved = plus(onset, rng.randint(1, 40))
            end = resolved if resolved <= last_day else None  # still ongoing at death or export
            if end is not None:
                outcome = _pick(rng, ("recovered", "sequelae"), (0.92, 0.08))
            else:
                outcome = _pick(rng, ("recovering", "not_recovered", "unknown"), (0.5, 0.4, 0.1))
            serious = rng.random() < (0.7 if grade >= 3 else 0.05)
            related = _pick(rng, ("related", "not_related", "unknown"), (0.6, 0.3, 0.1))
            line.adverse_events.append(AdverseEvent(term, meddra, grade, onset, end, serious, related, outcome))
        line.adverse_events.sort(key=lambda ae: ae.onset)
    if line.end_reason == "death" and death is not None and rng.random() < 0.4 and (death - line.start).days >= 2:
        onset = plus(death, -rng.randint(1, min(10, (death - line.start).days - 1)))
        term, meddra = rng.choice((("Sepsis", "10040047"), ("Febrile neutropenia", "10016288"),
                                   ("Lung infection", "10061229")))
        line.adverse_events.append(AdverseEvent(term, meddra, 5, onset, death, True,
                                                _pick(rng, ("related", "not_related", "unknown"), (0.3, 0.5, 0.2)),
                                                "fatal"))


def _follow_ups(rng: Random, first: date, export_date: date, death: date | None, group: str,
                lost_share: float = 0.04, interval: tuple[int, int] = (60, 180)) -> list[FollowUp]:
    """Contacts every two to six months from `first`, ending with death, loss or the last contact."""
    lost: date | None = None
    if death is None and rng.random() < lost_share and (export_date - first).days > 120:
        lost = _between(rng, plus(first, 90), plus(export_date, -1))
    stop = death or lost or export_date
    follow_ups = []
    contact = plus(first, rng.randint(60, 150))
    statuses = ("no_evidence_of_disease", "stable", "progression", "unknown")
    weights = (0.4, 0.25, 0.25, 0.1) if group == "leukaemia" else (0.25, 0.4, 0.25, 0.1)
    while contact < stop:
        follow_ups.append(FollowUp(contact, "alive", None, _pick(rng, statuses, weights)))
        contact = plus(contact, rng.randint(*interval))
    if death is not None:
        reported = min(plus(death, rng.randint(0, 20)), export_date)
        follow_ups.append(FollowUp(reported, "dead", death, _pick(rng, ("progression", "unknown"), (0.8, 0.2))))
    elif lost is not None:
        follow_ups.append(FollowUp(lost, "lost", None, "unknown"))
    return follow_ups


# -- SACHA ------------------------------------------------------------------------------------

def _basis(rng: Random, group: str, label: str, relapse: bool) -> str | None:
    if rng.random() < 0.04:
        return None  # left empty by the centre
    if group == "leukaemia":
        return _pick(rng, ("5", "7"), (0.85, 0.15))
    if "DIPG" in label or (relapse and group == "cns"):
        return _pick(rng, ("2", "7"), (0.8, 0.2))
    if relapse:
        return _pick(rng, ("7", "6", "2"), (0.5, 0.3, 0.2))
    return _pick(rng, ("7", "6", "4", "2", "9"), (0.8, 0.06, 0.05, 0.06, 0.03))


def _sacha_drugs(disease: vocab.Disease, profile: list[vocab.AlterationSpec]) -> DrugChooser:
    """How a SACHA centre picks the next single agent: targeted to the profile, else the disease's list."""
    candidates: list[str] = []
    for spec in profile:
        for _, agents in spec.options:
            if vocab.ATC.get(agents[0]):
                candidates.append(agents[0])
    if disease.group == "leukaemia":
        candidates += {"b_all": ["blinatumomab", "inotuzumab ozogamicin"], "t_all": ["venetoclax", "daratumumab"],
                       "aml": ["venetoclax", "gemtuzumab ozogamicin"]}[disease.key]
    else:
        candidates += list(disease.drugs)
    unique = list(dict.fromkeys(candidates))

    def choose(rng: Random, given: list[str]) -> tuple[str, ...]:
        fresh = [d for d in unique if d not in given] or unique
        return (rng.choice(fresh),)
    return choose


def _sacha_route(rng: Random, drugs: tuple[str, ...]) -> str:
    # Drugs without a paediatric marketing authorisation come through an AAC more often.
    p_compassionate = 0.6 if drugs[0] in {"lorlatinib", "selpercatinib", "tagraxofusp"} else 0.2
    return "compassionate" if rng.random() < p_compassionate else "off_label"


def _profile(rng: Random, leukaemia: vocab.Leukaemia) -> list[vocab.AlterationSpec]:
    found = [vocab.ALTERATIONS[key] for key, share in leukaemia.profile if rng.random() < share]
    if not found:
        found = [vocab.ALTERATIONS[leukaemia.profile[0][0]]]
    return found


def _sacha_person(rng: Random, person_id: str, export_date: date, keys: KeyBook,
                  iltb_link_share: float = ILTB_LINK_SHARE) -> tuple[Person, list[SourcePatient]]:
    cross_border = rng.random() < REGISTRY_LINK_SHARE
    pool = vocab.CROSS_BORDER_DISEASES if cross_border else vocab.SACHA_DISEASES
    disease = _pick(rng, pool, [d.sacha_weight for d in pool])
    variant = _pick(rng, disease.variants, [v.weight for v in disease.variants])
    leukaemia = vocab.LEUKAEMIA.get(disease.key) if disease.group == "leukaemia" else None
    also_iltb = leukaemia is not None and rng.random() < iltb_link_share

    n_relapses = _pick(rng, (0, 1, 2), (0.25, 0.55, 0.2))
    to_inclusion = rng.randint(60, 300) if n_relapses == 0 else rng.randint(240, 1800)
    age_at_diagnosis = max(60, _age_days(rng, disease.age_years))
    if cross_border:
        age_at_diagnosis = min(age_at_diagnosis, REGISTRY_MAX_AGE_DAYS - rng.randint(30, 400))
    if age_at_diagnosis + to_inclusion > SACHA_MAX_AGE_DAYS:
        age_at_diagnosis = max(60, SACHA_MAX_AGE_DAYS - to_inclusion - rng.randint(0, 365))
    inclusion = _between(rng, plus(export_date, -SACHA_WINDOW_DAYS), plus(export_date, -30))
    birth = plus(inclusion, -(age_at_diagnosis + to_inclusion))
    initial = plus(birth, age_at_diagnosis)

    # Diagnosis events: the initial one, then relapses (or progression when refractory).
    events: list[tuple[str, date]] = [("initial", initial)]
    first, last = plus(initial, 90), plus(inclusion, -14)
    if n_relapses and (last - first).days > 60 * n_relapses:
        offsets = sorted(rng.sample(range((last - first).days + 1), n_relapses))
        events += [("relapse", plus(first, offset)) for offset in offsets]
    else:
        events.append(("progression", plus(inclusion, -rng.randint(14, 45))))
    diagnoses = []
    previous = birth
    for n, (event_type, day) in enumerate(events):
        when = _recorded(rng, day, previous, *((0.12, 0.03) if n == 0 else (0.05, 0.0)))
        label = variant.label_fr if n == 0 else rng.choice((variant.label_fr, f"{variant.label_fr} - rechute"))
        diagnoses.append(Diagnosis(event_type, when, variant.morphology, variant.topography, label,
                                   _basis(rng, disease.group, variant.label_fr, n > 0)))
        previous = day
    consent = max(plus(events[-1][1], 1), plus(inclusion, -rng.randint(0, 10)))

    profile = _profile(rng, leukaemia) if leukaemia else []
    dies = rng.random() < disease.death_risk
    criteria = _CRITERIA[disease.group]
    lines, death = _simulate_lines(rng, plus(inclusion, rng.randint(1, 21)),
                                   _pick(rng, (1, 2, 3), (0.6, 0.3, 0.1)), _sacha_drugs(disease, profile),
                                   _sacha_route, export_date, dies, criteria, disease.key)
    follow_ups = _follow_ups(rng, lines[0].start if lines else inclusion, export_date, death, disease.group)
    course = _Course(birth, initial, diagnoses, lines, follow_ups, death)

    if cross_border:
        country = "IT"
        centre = rng.choice(("FR15", "FR07", "FR03", "FR02"))  # near the Italian border, or Paris
    else:
        centre = _pick(rng, [c for c, _ in vocab.SACHA_CENTRES], vocab.SACHA_CENTRE_WEIGHTS)
        country = "FR" if rng.random() < 0.95 else _pick(rng, *zip(*vocab.SACHA_FOREIGN_RESIDENCE, strict=True))
    linked = cross_border or also_iltb
    person = Person(person_id, _sex(rng, (variant.topography,)), birth, country,
                    keys.eupid(rng) if linked or rng.random() < EUPID_SHARE else None, "sacha_fr")

    sacha = SourcePatient("sacha_fr", keys.sacha(centre), centre, person, PDate(birth),
                          enrolment_date=inclusion, consent_date=consent, diagnoses=diagnoses,
                          treatments=[_treatment(n, line, drug) for n, line in enumerate(lines, 1)
                                      for drug in line.drugs],
                          follow_ups=follow_ups)
    patients = [sacha]
    if also_iltb and leukaemia is not None:
        patients.append(_iltb_view_of_sacha(rng, person, course, leukaemia, variant, profile, keys, export_date))
    if cross_border:
        patients.append(_registry_view(rng, person, course, disease, keys, export_date))
    return person, patients


def _treatment(line_number: int, line: _Line, drug: str) -> Treatment:
    return Treatment(line_number, drug, vocab.ATC.get(drug), line.route, PDate(line.start), line.end,
                     line.end_reason, list(line.responses), list(line.adverse_events))


# -- ILTB -------------------------------------------------------------------------------------

def _iltb_site(rng: Random) -> str:
    return _pick(rng, [s for s, _ in vocab.ILTB_SITES], [w for _, w in vocab.ILTB_SITES])


def _alterations(rng: Random, profile: list[vocab.AlterationSpec], diagnosed: date,
                 latest: date) -> list[Alteration]:
    found = []
    turnaround = {"flow cytometry": (1, 4), "FISH": (3, 10), "panel": (10, 25), "RNA-seq": (10, 30), "WES": (20, 45)}
    for spec in profile:
        assay = rng.choice(spec.assays)
        low, high = turnaround[assay]
        reported = min(plus(diagnosed, rng.randint(low, high)), latest)
        found.append(Alteration(spec.alteration_type, spec.gene, spec.partner, spec.alteration, spec.hgvs, assay,
                                spec.is_actionable, _recorded(rng, reported, diagnosed, 0.03)))
    return found


def _options(rng: Random, profile: list[vocab.AlterationSpec]) -> list[tuple[str, tuple[str, ...]]]:
    options = list(dict.fromkeys(o for spec in profile if spec.is_actionable for o in spec.options))
    rng.shuffle(options)
    return options[:3]


def _iltb_person(rng: Random, person_id: str, export_date: date, keys: KeyBook) -> tuple[Person, list[SourcePatient]]:
    leukaemia = _pick(rng, vocab.LEUKAEMIAS, [lk.weight for lk in vocab.LEUKAEMIAS])
    morphology = _pick(rng, *zip(*leukaemia.morphologies, strict=True))
    initial = rng.random() < leukaemia.initial_share
    age = max(60, _age_days(rng, leukaemia.age_years))
    enrolment = _between(rng, plus(export_date, -ILTB_WINDOW_DAYS), plus(export_date, -20))
    diagnosed = plus(enrolment, -rng.randint(3, 40))
    birth = plus(diagnosed, -age)
    consent = min(enrolment, max(plus(diagnosed, 1), plus(enrolment, -rng.randint(0, 5))))
    birth_month = blur(birth, "month")
    diagnosis = Diagnosis("initial" if initial else "relapse",
                          _recorded(rng, diagnosed, plus(birth_month.age_anchor, 30), 0.04, 0.01),
                          morphology, "C42.1", rng.choice(vocab.ILTB_LABEL_VARIANTS[leukaemia.label]))

    profile = _profile(rng, leukaemia)
    alterations = _alterations(rng, profile, diagnosed, plus(export_date, -1))
    submitted = plus(max([enrolment] + [a.report_date.value for a in alterations]), rng.randint(1, 10))
    advised = plus(submitted, rng.randint(2, 14))
    reviews: list[BoardReview] = []
    lines: list[_Line] = []
    death: date | None = None
    dies = rng.random() < leukaemia.death_risk
    if advised <= export_date:
        options = _options(rng, profile)
        if not options:
            options = [("STANDARD", rng.choice(vocab.STANDARD_SALVAGE))] if rng.random() < 0.5 else [("NONE", ())]
        known = advised <= plus(export_date, -30)
        followed = None
        if known:
            followed = _pick(rng, (0, 1, None), (0.7, 0.12 if len(options) > 1 else 0.0, 0.18))
        intent = _pick(rng, ("BRIDGING", "CURATIVE", "PALLIATIVE"), (0.5, 0.3, 0.2))
        for rank, (rectype, agents) in enumerate(options, 1):
            if rectype == "NONE":
                reviews.append(BoardReview(submitted, advised, rank, rectype, (), None, None, None))
                continue
            is_followed = None if not known else followed == rank - 1
            reason = None
            if is_followed is False and rank == 1 and rng.random() < 0.85:
                reason = rng.choice(vocab.ILTB_REASONS_NOT_FOLLOWED)
            reviews.append(BoardReview(submitted, advised, rank, rectype, agents, intent, is_followed, reason))
        plan: list[tuple[str, tuple[str, ...]]] = []
        if followed is not None and options[followed][0] != "NONE":
            plan.append(options[followed])
        elif known and rng.random() < 0.5:
            plan.append(("STANDARD", rng.choice(vocab.STANDARD_SALVAGE)))
        if plan and rng.random() < 0.3:
            plan.append(("STANDARD", rng.choice(vocab.STANDARD_SALVAGE)))
        if plan:
            routes = iter([rectype.lower() for rectype, _ in plan])
            lines, death = _simulate_lines(rng, plus(advised, rng.randint(3, 30)), len(plan),
                                           _planned(plan), lambda _rng, _drugs: next(routes), export_date, dies,
                                           "leukaemia", leukaemia.key, min_days=14, max_days=240)
    first = lines[0].start if lines else enrolment
    follow_ups = _follow_ups(rng, first, export_date, death, "leukaemia", interval=(80, 100))  # 3-monthly
    if death is None and dies and not lines:
        # Died before any board-advised treatment could start, after the board's work on the case.
        last_known = max([enrolment] + [a.report_date.value for a in alterations]
                         + [r.recommendation_date for r in reviews])
        candidate = plus(last_known, rng.randint(20, 400))
        if candidate < export_date:
            death = candidate
            follow_ups = [f for f in follow_ups if f.contact_date < death]
            follow_ups.append(FollowUp(min(plus(death, rng.randint(0, 20)), export_date), "dead", death, "progression"))
    follow_ups = _with_trial_status(rng, follow_ups, lines)
    site = _iltb_site(rng)
    country = site[:2] if rng.random() < 0.97 else rng.choice(("BE", "LU", "AT", "CH", "NO", "IE"))
    person = Person(person_id, _sex(rng), birth, country, keys.eupid(rng) if rng.random() < EUPID_SHARE else None,
                    "iltb")
    treatments = []
    for n, line in enumerate(lines, 1):
        text = rng.choice(vocab.ILTB_END_REASONS[line.end_reason]) if line.end_reason else None
        for drug in line.drugs:
            treatments.append(_iltb_treatment(rng, n, line, drug, text))
    patient = SourcePatient("iltb", keys.iltb(), site, person, birth_month, enrolment_date=enrolment,
                            consent_date=consent, diagnoses=[diagnosis], alterations=alterations, reviews=reviews,
                            treatments=treatments, follow_ups=follow_ups)
    return person, [patient]


def _with_trial_status(rng: Random, follow_ups: list[FollowUp], lines: list[_Line]) -> list[FollowUp]:
    """ILTB's follow-ups with the trial question answered at each contact with a living patient:
    enrolled while a trial line is under way; the reason a code, missing now and then (8%)."""
    answered = []
    for follow_up in follow_ups:
        if follow_up.vital_status != "alive":
            answered.append(follow_up)
            continue
        day = follow_up.contact_date
        in_trial = any(line.route == "trial" and line.start <= day and (line.end is None or day <= line.end)
                       for line in lines)
        status = "enrolled" if in_trial else "not_enrolled"
        reasons = vocab.ILTB_TRIAL_REASONS[status]
        if status == "not_enrolled" and follow_up.disease_status == "no_evidence_of_disease":
            reasons = (("in_remission", 0.7), *reasons)
        reason = None if rng.random() < 0.08 else _pick(rng, [r for r, _ in reasons], [w for _, w in reasons])
        answered.append(replace(follow_up, trial_enrolment_status=status, trial_enrolment_reason=reason))
    return answered


def _planned(plan: list[tuple[str, tuple[str, ...]]]) -> DrugChooser:
    """Lines given in the order the plan lists them."""
    agents = [a for _, a in plan]

    def choose(rng: Random, given: list[str]) -> tuple[str, ...]:
        done, total = 0, 0
        for line in agents:  # lines already given, from the number of drugs given so far
            if total >= len(given):
                break
            total += len(line)
            done += 1
        return agents[min(done, len(agents) - 1)]
    return choose


def _with_mrd(rng: Random, response: Response) -> Response:
    if response.response in {"CR", "CRi", "MLFS"}:
        value = rng.choice((0.0005, 0.001, 0.002, 0.005, 0.008, 0.01, 0.02, 0.05, 0.1, 0.3, 0.8, 1.5))
    elif rng.random() < 0.7:
        value = round(rng.uniform(5, 85), 1)
    else:
        return Response(response.date, response.timepoint, response.criteria, response.response)
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return Response(response.date, response.timepoint, response.criteria, response.response, text)


def _iltb_treatment(rng: Random, line_number: int, line: _Line, drug: str, end_text: str | None) -> Treatment:
    responses = [_with_mrd(rng, r) for r in line.responses]
    return Treatment(line_number, drug, vocab.ATC.get(drug), line.route, PDate(line.start), line.end, end_text,
                     responses, [])


def _iltb_view_of_sacha(rng: Random, person: Person, course: _Course, leukaemia: vocab.Leukaemia,
                        variant: vocab.Variant, profile: list[vocab.AlterationSpec], keys: KeyBook,
                        export_date: date) -> SourcePatient:
    """The board saw the SACHA patient at their last relapse and advised the first SACHA drug."""
    relapses = [d for d in course.diagnoses if d.event_type == "relapse"]
    last_event = max(d.date.value for d in course.diagnoses)
    seen = relapses[-1] if relapses else course.diagnoses[0]
    true_event = last_event if relapses else course.initial_date
    enrolment = plus(last_event, rng.randint(1, 5))
    consent = enrolment
    submitted = plus(enrolment, rng.randint(1, 3))
    advised = plus(submitted, rng.randint(2, 5))  # the SACHA treatment starts at least 15 days after the event
    birth_month = blur(course.birth, "month")
    diagnosis = Diagnosis(seen.event_type if seen.event_type != "progression" else "initial",
                          _recorded(rng, true_event, plus(birth_month.age_anchor, 30), 0.03),
                          variant.morphology, "C42.1", leukaemia.label)
    alterations = _alterations(rng, profile, true_event, plus(submitted, -1))
    reviews = []
    treatments = []
    if course.lines:
        first = course.lines[0]
        rectype = "OFF_LABEL" if first.route == "off_label" else "COMPASSIONATE"
        intent = _pick(rng, ("BRIDGING", "CURATIVE"), (0.7, 0.3))
        reviews.append(BoardReview(submitted, advised, 1, rectype, first.drugs, intent, True, None))
        for n, line in enumerate(course.lines, 1):
            text = rng.choice(vocab.ILTB_END_REASONS[line.end_reason]) if line.end_reason else None
            for drug in line.drugs:
                treatments.append(_iltb_treatment(rng, n, line, drug, text))
    else:
        reviews.append(BoardReview(submitted, advised, 1, "NONE", (), None, None, None))
    kept = [f for f in course.follow_ups[:-1] if rng.random() < 0.5] + course.follow_ups[-1:]
    kept = _with_trial_status(rng, kept, course.lines)  # new records: SACHA's own stay without
    site = rng.choice(vocab.ILTB_FRENCH_SITES)
    return SourcePatient("iltb", keys.iltb(), site, person, birth_month, enrolment_date=enrolment,
                         consent_date=consent, diagnoses=[diagnosis], alterations=alterations, reviews=reviews,
                         treatments=treatments, follow_ups=kept)


# -- registry_it -------------------------------------------------------------------------------

def _registry_diagnosis(rng: Random, disease: vocab.Disease, variant: vocab.Variant, day: date,
                        birth: date) -> Diagnosis:
    if disease.paired_organ:
        laterality = _pick(rng, ("right", "left", "bilateral", "unknown"), (0.48, 0.48, 0.01, 0.03))
    else:
        laterality = _pick(rng, ("not_applicable", "unknown"), (0.97, 0.03))
    low, high = disease.size_cm
    size = rng.randint(int(low * 10), int(high * 10)) if rng.random() < 0.85 else None
    basis = _pick(rng, ("7", "6", "5", "4", "2", "1", "9"), (0.82, 0.04, 0.04, 0.02, 0.04, 0.01, 0.03))
    return Diagnosis("initial", _recorded(rng, day, birth, 0.06, 0.02), variant.morphology, variant.topography,
                     None, basis, laterality, size)


def _registry_follow_up(rng: Random, status: str, contact: date, death: date | None) -> FollowUp:
    if status == "dead" and rng.random() < 0.1:
        death = None  # the registry knows of the death but not its date (99/99/9999)
    return FollowUp(contact, status, death, None)


def _note(rng: Random, status: str) -> str | None:
    notes = vocab.REGISTRY_NOTES + (vocab.REGISTRY_LOST_NOTE,) * 3 if status == "lost" else vocab.REGISTRY_NOTES
    return rng.choice(notes) if rng.random() < 0.3 else None


def _registry_person(rng: Random, person_id: str, export_date: date,
                     keys: KeyBook) -> tuple[Person, list[SourcePatient]]:
    disease = _pick(rng, vocab.REGISTRY_DISEASES, [d.registry_weight for d in vocab.REGISTRY_DISEASES])
    variant = _pick(rng, disease.variants, [v.weight for v in disease.variants])
    age = min(max(30, _age_days(rng, disease.age_years)), REGISTRY_MAX_AGE_DAYS - 1)
    diagnosed = _between(rng, plus(export_date, -REGISTRY_WINDOW_DAYS), plus(export_date, -60))
    birth = plus(diagnosed, -age)
    registered = min(plus(diagnosed, rng.randint(5, 720)), plus(export_date, -1))
    death: date | None = None
    if rng.random() < disease.death_risk:
        death = plus(diagnosed, rng.randint(90, 4000))
        if death <= registered:
            death = plus(registered, rng.randint(10, 400))
        if death >= export_date:
            death = None
    if death is not None:
        status, contact = "dead", death
    elif rng.random() < 0.06:
        status, contact = "lost", _between(rng, plus(registered, 1), plus(export_date, -1))
    else:
        status, contact = "alive", _between(rng, max(plus(registered, 1), plus(export_date, -500)),
                                            plus(export_date, -1))
    rows = [Registration(registered, _registry_diagnosis(rng, disease, variant, diagnosed, birth),
                         _registry_follow_up(rng, status, contact, death), _note(rng, status))]
    # A second very rare tumour (e.g. after a cancer predisposition syndrome) is rare but happens.
    if rng.random() < 0.03:
        second = _pick(rng, vocab.REGISTRY_DISEASES, [d.registry_weight for d in vocab.REGISTRY_DISEASES])
        second_variant = _pick(rng, second.variants, [v.weight for v in second.variants])
        later = plus(diagnosed, rng.randint(400, 3000))
        later_registered = plus(later, rng.randint(5, 200))
        if (later - birth).days < REGISTRY_MAX_AGE_DAYS and later_registered < contact:
            rows.append(Registration(later_registered,
                                     _registry_diagnosis(rng, second, second_variant, later, birth),
                                     rows[0].follow_up, _note(rng, status)))
    centre = _pick(rng, [c for c, _ in vocab.REGISTRY_CENTRES], [w for _, w in vocab.REGISTRY_CENTRES])
    sites = tuple(row.diagnosis.topography for row in rows)
    person = Person(person_id, _sex(rng, sites), birth, "IT", keys.eupid(rng) if rng.random() < EUPID_SHARE else None,
                    "registry_it", death)
    patient = SourcePatient("registry_it", keys.registry(), centre, person, PDate(birth), registrations=rows)
    return person, [patient]


def _registry_view(rng: Random, person: Person, course: _Course, disease: vocab.Disease, keys: KeyBook,
                   export_date: date) -> SourcePatient:
    """The TREP row of a SACHA patient resident in Italy: their initial diagnosis and latest status."""
    initial = course.diagnoses[0]
    diagnosed = course.initial_date
    latest = course.follow_ups[-1] if course.follow_ups else None
    last_day = min(course.death or export_date, export_date)
    registered = _between(rng, plus(diagnosed, 10), min(plus(diagnosed, 400), plus(last_day, -1)))
    if latest is None:
        follow_up = FollowUp(_between(rng, plus(registered, 1), plus(export_date, -1)), "alive", None, None)
    elif latest.vital_status == "dead":
        follow_up = FollowUp(course.death or latest.contact_date, "dead", course.death, None)
    else:
        follow_up = FollowUp(max(latest.contact_date, plus(registered, 1)), latest.vital_status, None, None)
    variant = next(v for v in disease.variants if v.morphology == initial.morphology
                   and v.topography == initial.topography)
    diagnosis = _registry_diagnosis(rng, disease, variant, diagnosed, course.birth)
    centre = _pick(rng, [c for c, _ in vocab.REGISTRY_CENTRES], [w for _, w in vocab.REGISTRY_CENTRES])
    return SourcePatient("registry_it", keys.registry(), centre, person, PDate(course.birth),
                         registrations=[Registration(registered, diagnosis, follow_up,
                                                                 _note(rng, follow_up.vital_status))])


# -- entry point -------------------------------------------------------------------------------

def make_person(index: int, seed: int, export_date: date, keys: KeyBook,
                iltb_link_share: float = ILTB_LINK_SHARE) -> tuple[Person, list[SourcePatient]]:
    """Person number `index` (0-based) and every source that knows them (and, rarely, a look-alike
    child's registration: a source patient of another person, etl/synth/identity.py). iltb_link_share: of SACHA
    persons with a leukaemia, those also submitted to the ILTB board."""
    rng = Random(f"rtw-synth/{seed}/person/{index}")
    person_id = f"P{index + 1:06d}"
    home = _pick(rng, *zip(*HOME_SOURCES, strict=True))
    if home == "sacha_fr":
        person, patients = _sacha_person(rng, person_id, export_date, keys, iltb_link_share)
    elif home == "iltb":
        person, patients = _iltb_person(rng, person_id, export_date, keys)
    elif home == "registry_it":
        person, patients = _registry_person(rng, person_id, export_date, keys)
    else:
        from etl.synth import trials  # trials builds on this module's helpers

        make = trials.esmart_person if home == "esmart" else trials.crizotinib_person
        person, patients = make(rng, person_id, export_date, keys)
    deaths = [f.death_date for p in patients for f in p.follow_ups if f.death_date]
    deaths += [r.follow_up.death_date for p in patients for r in p.registrations if r.follow_up.death_date]
    person.death_date = min(deaths) if deaths else None
    from etl.synth import identity  # builds on this module's helpers

    # Its own Random: how sources identify the person never shifts the course drawn above.
    patients = identity.vary(Random(f"rtw-synth/{seed}/identity/{index}"), person, patients, keys, export_date)
    return person, patients
