"""Ground truth of the synthetic exports: what a correct pipeline must load, per core table.

Layout (docs/synthetic-exports.md, "Ground truth"): `truth/<table>.csv` with `source_id`,
`source_record_key` (clear form `<source patient key>|<local part>`), `source_patient_key`,
then the harmonised core columns the sources fill (dates `YYYY-MM-DD`, booleans `true`/`false`,
empty for NULL); `links.csv`, `patient.csv` and `errors.csv`.

A record with an injected error is left out of every table and listed once in `errors.csv`;
a duplicate is the exception: its first copy loads, so it stays in the truth too.
`patient_source` follows the pipeline's rule: the first patient record of a source patient that
can be harmonised (not an impossible date or invalid code) gives the row; if that record carries
a loaded error (out of range, date order), the row is left out like any other erroneous record.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO

from etl.synth.errors import DUPLICATE, QUARANTINED_KINDS, InjectedError
from etl.synth.records import (
    AdverseEvent,
    Alteration,
    BoardReview,
    Diagnosis,
    FollowUp,
    PDate,
    Person,
    Response,
    SourcePatient,
    Treatment,
)
from etl.transform import values

KEY_COLUMNS = ["source_id", "source_record_key", "source_patient_key"]
TABLE_COLUMNS: dict[str, list[str]] = {
    "patient_source": ["centre_id", "link_method", "sex", "birth_year", "birth_month", "country"],
    "study_enrolment": ["study_id", "centre_id", "enrolment_date", "enrolment_date_precision",
                        "age_at_enrolment_days", "arm", "lvef_percent"],
    "consent": ["study_id", "consent_type", "status", "consent_date"],
    "diagnosis": ["event_type", "diagnosis_date", "diagnosis_date_precision", "age_at_diagnosis_days",
                  "icdo3_morphology", "icdo3_behaviour", "icdo3_topography", "laterality", "basis_of_diagnosis",
                  "disease_label", "tumour_size_mm"],
    "molecular_alteration": ["gene_symbol", "partner_gene", "alteration_type", "alteration", "hgvs", "assay",
                             "is_actionable", "report_date", "report_date_precision"],
    "tumour_board_review": ["board", "submission_date", "recommendation_date", "priority_rank",
                            "recommendation_type", "recommended_agents", "treatment_intent", "advice_followed",
                            "reason_not_followed"],
    "treatment": ["line_number", "drug_name", "atc_code", "access_route", "start_date", "start_date_precision",
                  "end_date", "end_reason"],
    "response_assessment": ["treatment_source_record_key", "assessment_date", "timepoint", "criteria", "response",
                            "mrd_value"],
    "adverse_event": ["treatment_source_record_key", "term", "meddra_code", "ctcae_grade", "onset_date", "end_date",
                      "is_serious", "relatedness", "outcome"],
    "follow_up": ["contact_date", "vital_status", "death_date", "disease_status", "trial_enrolment_status",
                  "trial_enrolment_reason"],
}
LINK_COLUMNS = ["source_id", "source_patient_key", "true_person_id", "eupid_exported"]
PATIENT_COLUMNS = ["true_person_id", "sex", "birth_year", "birth_month", "country", "death_date"]
ERROR_COLUMNS = ["source_id", "source_record_key", "field", "error_kind", "value"]

Row = dict[str, str]


@dataclass
class EmittedRecord:
    """One source record as written: its clear key, its truth rows and its error, if any."""

    record_key: str
    rows: list[tuple[str, Row]] = field(default_factory=list)
    error: InjectedError | None = None
    patient_source: Row | None = None  # set on the records that carry the patient's demographics

    @property
    def in_truth(self) -> bool:
        return self.error is None or self.error.kind == DUPLICATE


# -- harmonised values as text ---------------------------------------------------------------

def _date(value: date | None) -> str:
    return value.isoformat() if value else ""


def _bool(value: bool | None) -> str:
    return "" if value is None else "true" if value else "false"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def age_days(at: PDate, birth: PDate) -> int:
    """`age_at_*_days` as harmonise computes it (etl/transform/values.py: from the birth's age anchor,
    the 15th of its month)."""
    return values.age_days(values.PartialDate(at.value, at.precision), values.PartialDate(birth.value, birth.precision))


# -- rows per core table -----------------------------------------------------------------------

def patient_source_row(centre_id: str, link_method: str, sex: str, birth: PDate, country: str) -> Row:
    return {"centre_id": centre_id, "link_method": link_method, "sex": sex,
            "birth_year": str(birth.value.year),
            "birth_month": "" if birth.precision == "year" else str(birth.value.month), "country": country}


def enrolment_row(study_id: str, centre_id: str, enrolled: PDate, birth: PDate, arm: str | None = None,
                  lvef_percent: int | None = None) -> Row:
    return {"study_id": study_id, "centre_id": centre_id, "enrolment_date": _date(enrolled.value),
            "enrolment_date_precision": enrolled.precision, "age_at_enrolment_days": str(age_days(enrolled, birth)),
            "arm": _text(arm), "lvef_percent": "" if lvef_percent is None else f"{float(lvef_percent)}"}


def consent_row(study_id: str, consented: date | None, consent_type: str = "registry") -> Row:
    return {"study_id": study_id, "consent_type": consent_type, "status": "given", "consent_date": _date(consented)}


def diagnosis_row(diagnosis: Diagnosis, birth: PDate) -> Row:
    histology, _, behaviour = diagnosis.morphology.partition("/")
    return {"event_type": diagnosis.event_type, "diagnosis_date": _date(diagnosis.date.value),
            "diagnosis_date_precision": diagnosis.date.precision,
            "age_at_diagnosis_days": str(age_days(diagnosis.date, birth)),
            "icdo3_morphology": histology, "icdo3_behaviour": behaviour, "icdo3_topography": diagnosis.topography,
            "laterality": _text(diagnosis.laterality), "basis_of_diagnosis": _text(diagnosis.basis),
            "disease_label": _text(diagnosis.label),
            "tumour_size_mm": "" if diagnosis.size_mm is None else f"{float(diagnosis.size_mm)}"}


def alteration_row(alteration: Alteration) -> Row:
    return {"gene_symbol": alteration.gene, "partner_gene": _text(alteration.partner),
            "alteration_type": alteration.alteration_type, "alteration": alteration.alteration,
            "hgvs": _text(alteration.hgvs), "assay": alteration.assay,
            "is_actionable": _bool(alteration.is_actionable), "report_date": _date(alteration.report_date.value),
            "report_date_precision": alteration.report_date.precision}


def review_row(review: BoardReview) -> Row:
    return {"board": "ILTB", "submission_date": _date(review.submission_date),
            "recommendation_date": _date(review.recommendation_date), "priority_rank": str(review.priority_rank),
            "recommendation_type": review.recommendation_type.lower(),
            "recommended_agents": "|".join(review.agents),
            "treatment_intent": _text(review.intent).lower(), "advice_followed": _bool(review.followed),
            "reason_not_followed": _text(review.reason_not_followed)}


def treatment_row(treatment: Treatment) -> Row:
    given = treatment.drug_given  # a treatment whose drug the source leaves out: loaded without it (TRT-DRUG-PRESENT)
    return {"line_number": str(treatment.line), "drug_name": treatment.drug if given else "",
            "atc_code": _text(treatment.atc) if given else "",
            "access_route": treatment.route, "start_date": _date(treatment.start.value),
            "start_date_precision": treatment.start.precision, "end_date": _date(treatment.end),
            "end_reason": _text(treatment.end_reason)}


def response_row(response: Response, treatment_key: str) -> Row:
    return {"treatment_source_record_key": treatment_key, "assessment_date": _date(response.date),
            "timepoint": response.timepoint, "criteria": response.criteria, "response": response.response,
            "mrd_value": _text(response.mrd)}


def adverse_event_row(event: AdverseEvent, treatment_key: str) -> Row:
    return {"treatment_source_record_key": treatment_key, "term": event.term, "meddra_code": event.meddra,
            "ctcae_grade": str(event.grade), "onset_date": _date(event.onset), "end_date": _date(event.end),
            "is_serious": _bool(event.is_serious), "relatedness": event.relatedness, "outcome": event.outcome}


def follow_up_row(follow_up: FollowUp) -> Row:
    return {"contact_date": _date(follow_up.contact_date), "vital_status": follow_up.vital_status,
            "death_date": _date(follow_up.death_date), "disease_status": _text(follow_up.disease_status),
            "trial_enrolment_status": _text(follow_up.trial_enrolment_status),
            "trial_enrolment_reason": _text(follow_up.trial_enrolment_reason)}


# -- writing -----------------------------------------------------------------------------------

class TruthWriter:
    """Streams the truth files as persons are generated; memory stays flat."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._handles: list[IO[str]] = []
        self._writers: dict[str, csv.DictWriter[str]] = {}
        self.records: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def __enter__(self) -> TruthWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        files = {"links": LINK_COLUMNS, "patient": PATIENT_COLUMNS, "errors": ERROR_COLUMNS}
        files.update({table: KEY_COLUMNS + columns for table, columns in TABLE_COLUMNS.items()})
        for name, columns in files.items():
            handle = (self.folder / f"{name}.csv").open("w", encoding="utf-8", newline="")
            self._handles.append(handle)
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            self._writers[name] = writer
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for handle in self._handles:
            handle.close()

    @property
    def paths(self) -> list[Path]:
        return [Path(h.name) for h in self._handles]

    def add_source_patient(self, patient: SourcePatient, records: list[EmittedRecord]) -> None:
        source = patient.source_id
        self._writers["links"].writerow({"source_id": source, "source_patient_key": patient.patient_key,
                                         "true_person_id": patient.person.person_id,
                                         "eupid_exported": "true" if patient.exported_eupid else "false"})
        keys = {"source_id": source, "source_patient_key": patient.patient_key}
        demographics = next((r for r in records if r.patient_source is not None
                             and (r.error is None or r.error.kind not in QUARANTINED_KINDS)), None)
        if demographics is not None and demographics.in_truth and demographics.patient_source is not None:
            self._writers["patient_source"].writerow(
                {**keys, "source_record_key": demographics.record_key, **demographics.patient_source})
        for record in records:
            self.records[source] = self.records.get(source, 0) + 1
            if record.error is not None:
                self.errors[source] = self.errors.get(source, 0) + 1
                self._writers["errors"].writerow({
                    "source_id": source, "source_record_key": record.record_key, "field": record.error.field,
                    "error_kind": record.error.kind, "value": record.error.value})
            if record.in_truth:
                for table, row in record.rows:
                    self._writers[table].writerow({**keys, "source_record_key": record.record_key, **row})

    def add_person(self, person: Person) -> None:
        self._writers["patient"].writerow({
            "true_person_id": person.person_id, "sex": person.sex, "birth_year": str(person.birth_date.year),
            "birth_month": str(person.birth_date.month), "country": person.country,
            "death_date": _date(person.death_date)})
