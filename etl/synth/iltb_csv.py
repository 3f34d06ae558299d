"""iltb: the Ennov EDC per-form CSV export of the leukaemia target board registry.

One file per form, `ILTB_<FORM>.csv`: UTF-8 with a BOM, `;`, CRLF, a header row, and the Ennov
key columns `STUDY;SITE;SUBJID;RECORDNO` first (RECORDNO: the 1-based number of the record in
that form for that subject). Dates are `dd/mm/yyyy` with `UK` for an unknown day or month
(`UK/05/2019`); the birth date is `mm/yyyy` only. Decimals use `.`.
A duplicate is the same row written twice in a row, as a double submission produces it.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from random import Random
from types import TracebackType
from typing import IO

from etl.synth import messy, records, truth
from etl.synth.errors import (
    DATE_ORDER,
    DUPLICATE,
    IMPOSSIBLE_DATE,
    INVALID_CODE,
    OUT_OF_RANGE,
    ErrorPlan,
    InjectedError,
    Option,
    broken_morphology,
    impossible_day,
)
from etl.synth.records import Alteration, BoardReview, FollowUp, PDate, Response, SourcePatient, plus
from etl.synth.truth import EmittedRecord

SOURCE_ID = "iltb"
STUDY_ID = "ILTB"
KEY_COLUMNS = ["STUDY", "SITE", "SUBJID", "RECORDNO"]
FORMS: dict[str, list[str]] = {
    "ENROL": ["SEX", "BRTHDAT", "COUNTRY", "EUPID", "ENRDAT", "CONSDAT", "DIAG", "DIAGDAT", "MORPH", "TOPO",
              "DIAGTYPE"],
    "EVENT": ["EVTTYPE", "GENE", "PARTNER", "ALTERATION", "HGVS", "ASSAY", "ACTIONABLE", "REPDAT"],
    "ADVICE": ["SUBMDAT", "RECDAT", "PRIORITY", "RECTYPE", "AGENTS", "INTENT", "FOLLOWED", "REASON_NF"],
    "TREAT": ["LINE", "DRUG", "ATC", "ROUTE", "STDAT", "ENDAT", "ENDRSN"],
    "RESP": ["TRTREC", "ASSDAT", "TPT", "RESP", "MRD"],
    "FU": ["FUDAT", "STATUS", "DTHDAT", "DISSTAT", "TRIALENR", "TRIALRSN"],
}
SEX = {"male": "M", "female": "F", "unknown": "U"}
EVENT_TYPE = {"fusion": "FUSION", "SNV": "SNV", "indel": "INDEL", "CNV": "CNV", "expression": "EXPRESSION",
              "surface_marker": "SURFACE_MARKER"}
TIMEPOINT = {"cycle1": "C1", "best": "BOR"}
VITAL_STATUS = {"alive": "ALIVE", "dead": "DEAD", "lost": "LOST"}
DISEASE_STATUS = {"no_evidence_of_disease": "NED", "stable": "STABLE", "progression": "PROGRESSION",
                  "unknown": "UNKNOWN"}
TRIAL_STATUS = {"enrolled": "Y", "not_enrolled": "N"}
Row = dict[str, str]


def dmy(day: PDate | date | None) -> str:
    """Ennov writes unknown date parts as `UK`."""
    return records.dmy(day, "UK")


def _impossible(plan: ErrorPlan, near: date) -> str:
    year, month, day = impossible_day(plan.rng, near)
    return f"{day:02d}/{month:02d}/{year:04d}"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else "Y" if value else "N"


class IltbCsvWriter:
    """Writes the six ILTB form files, one subject at a time."""

    def __init__(self, folder: Path, export_date: date):
        self.folder = folder
        self.export_date = export_date
        self._handles: dict[str, IO[str]] = {}
        self._writers: dict[str, csv.DictWriter[str]] = {}

    @property
    def paths(self) -> list[Path]:
        return [self.folder / f"ILTB_{form}.csv" for form in FORMS]

    def __enter__(self) -> IltbCsvWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        for form, columns in FORMS.items():
            handle = (self.folder / f"ILTB_{form}.csv").open("w", encoding="utf-8-sig", newline="")
            self._handles[form] = handle
            writer = csv.DictWriter(handle, fieldnames=KEY_COLUMNS + columns, delimiter=";", lineterminator="\r\n")
            writer.writeheader()
            self._writers[form] = writer
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for handle in self._handles.values():
            handle.close()

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        writer = _Subject(self, patient, rng, plan)
        writer.enrolment()
        for alteration in patient.alterations:
            writer.alteration(alteration)
        for review in patient.reviews:
            writer.review(review)
        writer.treatments()
        for follow_up in patient.follow_ups:
            writer.follow_up(follow_up)
        return writer.records


class _Subject:
    """The rows of one subject across the forms, with their record numbers."""

    def __init__(self, owner: IltbCsvWriter, patient: SourcePatient, rng: Random, plan: ErrorPlan):
        self.owner, self.patient, self.rng, self.plan = owner, patient, rng, plan
        self.numbers: dict[str, int] = {}
        self.records: list[EmittedRecord] = []

    def _emit(self, form: str, values: Row, rows: list[tuple[str, Row]], options: list[Option],
              corrupt: dict[Option, tuple[str, str]], patient_source: Row | None = None) -> str:
        """Write one record; `corrupt` gives per error option the column and bad value to write."""
        number = self.numbers.get(form, 0) + 1
        self.numbers[form] = number
        chosen = self.plan.choose([*options, (DUPLICATE, "")])
        error = None
        if chosen is not None and chosen[0] != DUPLICATE:
            column, value = corrupt[chosen]
            values[column] = value
            error = InjectedError(chosen[0], chosen[1], value)
        elif chosen is not None:
            error = InjectedError(DUPLICATE, "", "")
        row = {"STUDY": STUDY_ID, "SITE": self.patient.centre_id, "SUBJID": self.patient.patient_key,
               "RECORDNO": str(number), **values}
        self.owner._writers[form].writerow(row)
        if error is not None and error.kind == DUPLICATE:
            self.owner._writers[form].writerow(row)
        key = f"{self.patient.patient_key}|{form}[{number}]"
        self.records.append(EmittedRecord(key, rows, error, patient_source))
        return key

    def _bad_date(self, near: date) -> str:
        return _impossible(self.plan, near)

    def enrolment(self) -> None:
        patient, rng, plan = self.patient, self.rng, self.plan
        person = patient.person
        diagnosis = patient.diagnoses[0]
        assert patient.enrolment_date is not None
        values = {
            "SEX": messy.lower_sometimes(rng, SEX[person.sex]),
            "BRTHDAT": patient.birth.value.strftime("%m/%Y"),
            "COUNTRY": messy.lower_sometimes(rng, person.country, 0.03),
            "EUPID": messy.lower_sometimes(rng, patient.exported_eupid, 0.03) if patient.exported_eupid else "",
            "ENRDAT": dmy(patient.enrolment_date), "CONSDAT": dmy(patient.consent_date),
            "DIAG": messy.padded(rng, diagnosis.label or ""), "DIAGDAT": dmy(diagnosis.date),
            "MORPH": diagnosis.morphology, "TOPO": messy.topography(rng, diagnosis.topography, 0.1),
            "DIAGTYPE": messy.lower_sometimes(rng, diagnosis.event_type.upper(), 0.03),
        }
        before_birth = plus(patient.birth.value, -plan.rng.randint(60, 900))
        corrupt = {
            (IMPOSSIBLE_DATE, "enrolment_date"): ("ENRDAT", self._bad_date(patient.enrolment_date)),
            (IMPOSSIBLE_DATE, "diagnosis_date"): ("DIAGDAT", self._bad_date(diagnosis.date.value)),
            (INVALID_CODE, "sex"): ("SEX", plan.rng.choice(("X", "7", "H"))),
            (INVALID_CODE, "icdo3_morphology"): ("MORPH", broken_morphology(plan.rng, diagnosis.morphology)),
            (INVALID_CODE, "event_type"): ("DIAGTYPE", plan.rng.choice(("REFRACTORY", "SECOND RELAPSE"))),
            (DATE_ORDER, "diagnosis_date"): ("DIAGDAT", dmy(before_birth)),
        }
        rows = [("study_enrolment", truth.enrolment_row(STUDY_ID, patient.centre_id, PDate(patient.enrolment_date),
                                                        patient.birth)),
                ("consent", truth.consent_row(STUDY_ID, patient.consent_date)),
                ("diagnosis", truth.diagnosis_row(diagnosis, patient.birth))]
        self._emit("ENROL", values, rows, list(corrupt), corrupt,
                   truth.patient_source_row(patient.centre_id, patient.expected_link_method, person.sex, patient.birth,
                                            person.country))

    def alteration(self, alteration: Alteration) -> None:
        values = {
            "EVTTYPE": EVENT_TYPE[alteration.alteration_type], "GENE": alteration.gene,
            "PARTNER": alteration.partner or "", "ALTERATION": messy.padded(self.rng, alteration.alteration, 0.02),
            "HGVS": alteration.hgvs or "", "ASSAY": alteration.assay, "ACTIONABLE": _yes_no(alteration.is_actionable),
            "REPDAT": dmy(alteration.report_date),
        }
        corrupt = {
            (IMPOSSIBLE_DATE, "report_date"): ("REPDAT", self._bad_date(alteration.report_date.value)),
            (INVALID_CODE, "alteration_type"): ("EVTTYPE", self.plan.rng.choice(("MUTATION", "TRANSLOCATION"))),
        }
        self._emit("EVENT", values, [("molecular_alteration", truth.alteration_row(alteration))], list(corrupt),
                   corrupt)

    def review(self, review: BoardReview) -> None:
        rng = self.rng
        agents = [messy.drug_name(rng, a) for a in review.agents]
        separator = " | " if rng.random() < 0.2 else "|"
        values = {
            "SUBMDAT": dmy(review.submission_date), "RECDAT": dmy(review.recommendation_date),
            "PRIORITY": str(review.priority_rank),
            "RECTYPE": messy.lower_sometimes(rng, review.recommendation_type, 0.03),
            "AGENTS": separator.join(agents), "INTENT": review.intent or "", "FOLLOWED": _yes_no(review.followed),
            "REASON_NF": messy.padded(rng, review.reason_not_followed or "") if review.reason_not_followed else "",
        }
        corrupt = {
            (IMPOSSIBLE_DATE, "recommendation_date"): ("RECDAT", self._bad_date(review.recommendation_date)),
            (INVALID_CODE, "recommendation_type"): ("RECTYPE", self.plan.rng.choice(("OFFLABEL", "HORS AMM"))),
        }
        self._emit("ADVICE", values, [("tumour_board_review", truth.review_row(review))], list(corrupt), corrupt)

    def treatments(self) -> None:
        rng, plan = self.rng, self.plan
        first_of_line: dict[int, tuple[int, str]] = {}
        for treatment in self.patient.treatments:
            drug = messy.padded(rng, messy.drug_name(rng, treatment.drug))
            given = treatment.drug_given  # left out: drawn all the same, so the rest of the record stays as it was
            values = {
                "LINE": str(treatment.line), "DRUG": drug if given else "",
                "ATC": (treatment.atc or "") if given else "",
                "ROUTE": messy.lower_sometimes(rng, treatment.route.upper()),
                "STDAT": dmy(treatment.start), "ENDAT": dmy(treatment.end), "ENDRSN": treatment.end_reason or "",
            }
            corrupt = {
                (IMPOSSIBLE_DATE, "start_date"): ("STDAT", self._bad_date(treatment.start.value)),
                (INVALID_CODE, "access_route"): ("ROUTE", plan.rng.choice(("OFFLABEL", "XYZ", "EAP"))),
            }
            if treatment.end:
                corrupt[(DATE_ORDER, "end_date")] = ("ENDAT", dmy(plus(treatment.start.value,
                                                                        -plan.rng.randint(5, 90))))
            key = self._emit("TREAT", values, [("treatment", truth.treatment_row(treatment))], list(corrupt), corrupt)
            if treatment.line not in first_of_line:
                first_of_line[treatment.line] = (self.numbers["TREAT"], key)
                # Responses are assessed per line and recorded against its first drug.
                for response in treatment.responses:
                    self._response(response, *first_of_line[treatment.line])

    def _response(self, response: Response, record_number: int, treatment_key: str) -> None:
        values = {
            "TRTREC": str(record_number), "ASSDAT": dmy(response.date),
            "TPT": messy.lower_sometimes(self.rng, TIMEPOINT[response.timepoint], 0.03),
            "RESP": response.response, "MRD": response.mrd or "",
        }
        corrupt = {
            (IMPOSSIBLE_DATE, "assessment_date"): ("ASSDAT", self._bad_date(response.date)),
            (INVALID_CODE, "response"): ("RESP", self.plan.rng.choice(("CCR", "VGPR", "MRD-"))),
            (OUT_OF_RANGE, "mrd_value"): ("MRD", str(self.plan.rng.choice((140, 110, 250)))),
        }
        self._emit("RESP", values, [("response_assessment", truth.response_row(response, treatment_key))],
                   list(corrupt), corrupt)

    def follow_up(self, follow_up: FollowUp) -> None:
        values = {
            "FUDAT": dmy(follow_up.contact_date),
            "STATUS": messy.lower_sometimes(self.rng, VITAL_STATUS[follow_up.vital_status], 0.03),
            "DTHDAT": dmy(follow_up.death_date),
            "DISSTAT": DISEASE_STATUS[follow_up.disease_status] if follow_up.disease_status else "",
            "TRIALENR": TRIAL_STATUS.get(follow_up.trial_enrolment_status or "", ""),
            "TRIALRSN": (follow_up.trial_enrolment_reason or "").upper(),
        }
        corrupt = {
            (IMPOSSIBLE_DATE, "contact_date"): ("FUDAT", self._bad_date(follow_up.contact_date)),
            (INVALID_CODE, "vital_status"): ("STATUS", self.plan.rng.choice(("DECEASED", "UNKNOWN", "A"))),
            (OUT_OF_RANGE, "contact_date"): ("FUDAT", dmy(plus(self.owner.export_date,
                                                               self.plan.rng.randint(30, 400)))),
        }
        self._emit("FU", values, [("follow_up", truth.follow_up_row(follow_up))], list(corrupt), corrupt)
