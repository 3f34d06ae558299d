"""esmart: SDTM-like SAS transport files of an ESMART-style multi-arm trial of matched targeted therapy.

One SAS XPORT (v5) file per dataset, `ESMART_<DATASET>_<yyyymmdd>.xpt`, as a sponsor's data
management delivers them: DM (demographics, arm, consent and enrolment), DX (diagnoses with
ICD-O-3; a custom domain), MP (molecular profile; custom), EX (exposure, one record per drug of
the arm), RS (RECIST/RANO/INRC responses), AE (adverse events) and SS (subject status).
Gotchas of the format, on purpose:
- DM, DX, EX, RS and AE carry ISO 8601 character dates (`--DTC`), partial where the centre did
  not know the day or month (`2019-05`, `2019`); MP and SS carry SAS numeric dates (days since
  1960-01-01) with a DATE9. format, as raw EDC datasets do. A numeric date cannot be impossible,
  so impossible dates are only injected into the character ones.
- COUNTRY is ISO 3166 alpha-3 (`FRA`), as SDTM requires; the birth date is only `yyyy-mm` at
  sites that collect month and year of birth.
- Record keys are `<USUBJID>|<DATASET>[<--SEQ>]` (`DM[1]` for the one DM record); responses and
  adverse events refer to the first drug of the arm, `EX[1]`.
- XPORT headers hold the creation time; it is set to the export date so files are reproducible.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from random import Random
from types import TracebackType

import pandas as pd
import pyreadstat

from etl.synth import messy, truth, vocab
from etl.synth.errors import (
    DATE_ORDER,
    IMPOSSIBLE_DATE,
    INVALID_CODE,
    OUT_OF_RANGE,
    ErrorPlan,
    InjectedError,
    Option,
    broken_morphology,
    impossible_day,
)
from etl.synth.records import (
    AdverseEvent,
    Alteration,
    Diagnosis,
    FollowUp,
    PDate,
    Response,
    SourcePatient,
    Treatment,
    blur,
    plus,
)
from etl.synth.truth import EmittedRecord

SOURCE_ID = "esmart"
STUDY_ID = "ESMART"
MAX_AGE_DAYS = 6940  # "age 0-18" admits up to the day before the 19th birthday, at most 6940 days after birth
# Dataset -> (label, [(variable, label)]). Variables are at most 8 characters (XPORT v5).
DATASETS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "DM": ("Demographics", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("SUBJID", "Subject Identifier for the Study"), ("SITEID", "Study Site Identifier"),
        ("BRTHDTC", "Date/Time of Birth"), ("AGE", "Age"), ("AGEU", "Age Units"), ("SEX", "Sex"),
        ("COUNTRY", "Country"), ("ARMCD", "Planned Arm Code"), ("ARM", "Description of Planned Arm"),
        ("RFICDTC", "Date/Time of Informed Consent"), ("RFSTDTC", "Subject Reference Start Date/Time"),
        ("DTHDTC", "Date/Time of Death"), ("DTHFL", "Subject Death Flag"),
        ("EUPID", "European Unified Patient Identifier")]),
    "DX": ("Tumour Diagnosis", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("DXSEQ", "Sequence Number"), ("DXCAT", "Category of Diagnosis"), ("DXTERM", "Reported Diagnosis"),
        ("DXMORPH", "ICD-O-3 Morphology"), ("DXTOPO", "ICD-O-3 Topography"), ("DXSTDTC", "Date of Diagnosis")]),
    "MP": ("Molecular Profile", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("MPSEQ", "Sequence Number"), ("MPALTTYP", "Alteration Type"), ("MPGENE", "Gene Symbol (HGNC)"),
        ("MPPARTN", "Fusion Partner Gene"), ("MPALT", "Alteration"), ("MPHGVS", "HGVS Description"),
        ("MPASSAY", "Assay"), ("MPACTFL", "Actionable Flag"), ("MPDT", "Date of Report")]),
    "EX": ("Exposure", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("EXSEQ", "Sequence Number"), ("EXTRT", "Name of Treatment"), ("EXDOSE", "Dose"), ("EXDOSU", "Dose Units"),
        ("EXSTDTC", "Start Date/Time of Treatment"), ("EXENDTC", "End Date/Time of Treatment"),
        ("EXDSREAS", "Reason Treatment Ended")]),
    "RS": ("Disease Response", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("RSSEQ", "Sequence Number"), ("RSTESTCD", "Assessment Short Name"), ("RSTEST", "Assessment Name"),
        ("RSCAT", "Category for Assessment"), ("RSORRES", "Result or Finding in Original Units"),
        ("VISIT", "Visit Name"), ("RSDTC", "Date/Time of Assessment")]),
    "AE": ("Adverse Events", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("AESEQ", "Sequence Number"), ("AETERM", "Reported Term for the Adverse Event"),
        ("AEDECOD", "Dictionary-Derived Term"), ("AEPTCD", "Preferred Term Code"),
        ("AETOXGR", "Standard Toxicity Grade"), ("AESER", "Serious Event"), ("AEREL", "Causality"),
        ("AEOUT", "Outcome of Adverse Event"), ("AESTDTC", "Start Date/Time of Adverse Event"),
        ("AEENDTC", "End Date/Time of Adverse Event")]),
    "SS": ("Subject Status", [
        ("STUDYID", "Study Identifier"), ("DOMAIN", "Domain Abbreviation"), ("USUBJID", "Unique Subject Identifier"),
        ("SSSEQ", "Sequence Number"), ("SSTESTCD", "Status Assessment Short Name"),
        ("SSORRES", "Result or Finding in Original Units"), ("SSDT", "Date of Assessment"),
        ("SSDTHDT", "Date of Death")]),
}
NUMERIC = frozenset({"AGE", "DXSEQ", "MPSEQ", "EXSEQ", "EXDOSE", "RSSEQ", "AESEQ", "SSSEQ"})
SAS_DATES = frozenset({"MPDT", "SSDT", "SSDTHDT"})
SEX = {"male": "M", "female": "F", "unknown": "U"}
EVENT = {"initial": "INITIAL DIAGNOSIS", "relapse": "RELAPSE", "progression": "PROGRESSION"}
ALTERATION_TYPE = {"fusion": "FUSION", "SNV": "SNV", "indel": "INDEL", "CNV": "CNV", "expression": "EXPRESSION"}
END_REASON = {"completed": "COMPLETED", "progression": "PROGRESSIVE DISEASE", "toxicity": "ADVERSE EVENT",
              "death": "DEATH", "other": "PHYSICIAN DECISION"}
CRITERIA = {"RECIST1.1": "RECIST 1.1", "RANO": "RANO", "INRC": "INRC"}
TIMEPOINT = {"cycle1": ("OVRLRESP", "Overall Response", "END OF CYCLE 2"),
             "best": ("BESTRSP", "Best Overall Response", "END OF TREATMENT")}
RELATEDNESS = {"related": ("RELATED", "POSSIBLY RELATED"), "not_related": ("NOT RELATED", "UNLIKELY RELATED"),
               "unknown": ("UNKNOWN",)}
OUTCOME = {"recovered": "RECOVERED/RESOLVED", "recovering": "RECOVERING/RESOLVING",
           "not_recovered": "NOT RECOVERED/NOT RESOLVED", "sequelae": "RECOVERED/RESOLVED WITH SEQUELAE",
           "fatal": "FATAL", "unknown": "UNKNOWN"}
VITAL_STATUS = {"alive": "ALIVE", "dead": "DEAD", "lost": "LOST TO FOLLOW-UP"}
DOSE = {"ribociclib": (350, "mg/m2"), "topotecan": (0.75, "mg/m2"), "temozolomide": (100, "mg/m2"),
        "everolimus": (2.5, "mg/m2"), "olaparib": (150, "mg/m2"), "irinotecan": (50, "mg/m2"),
        "trametinib": (0.025, "mg/kg"), "ceralasertib": (80, "mg/m2"), "samotolisib": (115, "mg/m2")}
_XPORT_STAMP = re.compile(rb"\d{2}[A-Z]{3}\d{2}:\d{2}:\d{2}:\d{2}")
Row = dict[str, object]


def iso(day: PDate | date | None) -> str:
    """ISO 8601 as SDTM writes it, truncated to the known part: `2019-05-17`, `2019-05`, `2019`."""
    if day is None:
        return ""
    if isinstance(day, date):
        return day.isoformat()
    if day.precision == "month":
        return day.value.strftime("%Y-%m")
    if day.precision == "year":
        return f"{day.value.year:04d}"
    return day.value.isoformat()


def _impossible(plan: ErrorPlan, near: date) -> str:
    year, month, day = impossible_day(plan.rng, near)
    return f"{year:04d}-{month:02d}-{day:02d}"


class EsmartSasWriter:
    """Collects the datasets subject by subject and writes one XPORT file each on exit."""

    def __init__(self, folder: Path, export_date: date):
        self.folder = folder
        self.export_date = export_date
        self._rows: dict[str, list[Row]] = {name: [] for name in DATASETS}

    @property
    def paths(self) -> list[Path]:
        return [self.folder / f"ESMART_{name}_{self.export_date:%Y%m%d}.xpt" for name in DATASETS]

    def __enter__(self) -> EsmartSasWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            return
        stamp = self.export_date.strftime("%d%b%y").upper().encode() + b":06:00:00"
        for (name, (label, variables)), path in zip(DATASETS.items(), self.paths, strict=True):
            columns = [v for v, _ in variables]
            frame = pd.DataFrame(self._rows[name], columns=columns)
            for column in columns:
                if column in NUMERIC:
                    frame[column] = frame[column].astype("float64")
                elif column not in SAS_DATES:
                    frame[column] = frame[column].fillna("").astype(str)
            pyreadstat.write_xport(frame, str(path), file_label=label, table_name=name, file_format_version=5,
                                   column_labels=[text for _, text in variables],
                                   variable_format={c: "DATE9." for c in columns if c in SAS_DATES})
            path.write_bytes(_XPORT_STAMP.sub(stamp, path.read_bytes()))

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        subject = _Subject(self, patient, rng, plan)
        subject.demographics()
        for diagnosis in patient.diagnoses:
            subject.diagnosis(diagnosis)
        for alteration in patient.alterations:
            subject.alteration(alteration)
        first_drug = ""
        for treatment in patient.treatments:
            key = subject.exposure(treatment)
            first_drug = first_drug or key
        for treatment in patient.treatments:
            for response in treatment.responses:
                subject.response(response, first_drug)
            for event in treatment.adverse_events:
                subject.adverse_event(event, first_drug)
        for follow_up in patient.follow_ups:
            subject.status(follow_up)
        return subject.records


class _Subject:
    """The records of one subject across the datasets, with their sequence numbers."""

    def __init__(self, owner: EsmartSasWriter, patient: SourcePatient, rng: Random, plan: ErrorPlan):
        self.owner, self.patient, self.rng, self.plan = owner, patient, rng, plan
        self.birth = patient.birth  # as exported; an out-of-range error changes it
        self.numbers: dict[str, int] = {}
        self.records: list[EmittedRecord] = []

    def _emit(self, dataset: str, values: Row, rows: list[tuple[str, truth.Row]], options: list[Option],
              corrupt: dict[Option, tuple[str, str]], patient_source: truth.Row | None = None) -> str:
        """Write one record; `corrupt` gives per error option the variable and the bad value."""
        number = self.numbers.get(dataset, 0) + 1
        self.numbers[dataset] = number
        chosen = self.plan.choose(options)
        error = None
        if chosen is not None:
            variable, value = corrupt[chosen]
            values[variable] = value
            error = InjectedError(chosen[0], chosen[1], value)
        head: Row = {"STUDYID": STUDY_ID, "DOMAIN": dataset, "USUBJID": self.patient.patient_key}
        if dataset != "DM":
            head[f"{dataset}SEQ"] = number
        self.owner._rows[dataset].append({**head, **values})
        key = f"{self.patient.patient_key}|{dataset}[{number}]"
        self.records.append(EmittedRecord(key, rows, error, patient_source))
        return key

    def demographics(self) -> None:
        patient, person, rng, plan = self.patient, self.patient.person, self.rng, self.plan
        assert patient.enrolment_date is not None and patient.arm is not None
        arm = next(a for a in vocab.ESMART_ARMS if a.code == patient.arm)
        enrolled = PDate(patient.enrolment_date)
        death = person.death_date
        values: Row = {
            "SUBJID": patient.patient_key.rsplit("-", 1)[1], "SITEID": patient.centre_id,
            "BRTHDTC": iso(patient.birth), "AGE": float(int(truth.age_days(enrolled, patient.birth) / 365.25)),
            "AGEU": "YEARS", "SEX": SEX[person.sex], "COUNTRY": vocab.ISO3[person.country],
            "ARMCD": arm.code, "ARM": arm.name, "RFICDTC": iso(patient.consent_date), "RFSTDTC": iso(enrolled),
            "DTHDTC": iso(death), "DTHFL": "Y" if death else "",
            "EUPID": messy.lower_sometimes(rng, patient.exported_eupid, 0.03) if patient.exported_eupid else "",
        }
        corrupt: dict[Option, tuple[str, str]] = {
            (IMPOSSIBLE_DATE, "enrolment_date"): ("RFSTDTC", _impossible(plan, patient.enrolment_date)),
            (IMPOSSIBLE_DATE, "consent_date"): ("RFICDTC", _impossible(plan, patient.consent_date or enrolled.value)),
            (INVALID_CODE, "sex"): ("SEX", plan.rng.choice(("X", "9", "H"))),
        }
        # A birth date typed wrong makes the patient just past 0-18 (19) at enrolment, while every
        # diagnosis stays before the 19th birthday (so only the enrolment age rule is broken).
        typo = blur(plus(patient.enrolment_date, -(MAX_AGE_DAYS + 21 + plan.rng.randint(0, 20))),
                    patient.birth.precision)
        last_diagnosis = max(d.date.value for d in patient.diagnoses)
        if truth.age_days(PDate(last_diagnosis), typo) <= MAX_AGE_DAYS:
            corrupt[(OUT_OF_RANGE, "age_at_enrolment_days")] = ("BRTHDTC", iso(typo))
        number_before = len(self.records)
        self._emit("DM", values, [], list(corrupt), corrupt)
        record = self.records[number_before]
        if record.error is not None and record.error.field == "age_at_enrolment_days":
            self.birth = typo
            record.error = InjectedError(record.error.kind, record.error.field,
                                         str(truth.age_days(enrolled, typo)))
        record.rows = [
            ("study_enrolment", truth.enrolment_row(STUDY_ID, patient.centre_id, enrolled, self.birth, arm.code)),
            ("consent", truth.consent_row(STUDY_ID, patient.consent_date, "trial"))]
        record.patient_source = truth.patient_source_row(patient.centre_id, patient.expected_link_method, person.sex,
                                                         self.birth, person.country)

    def diagnosis(self, diagnosis: Diagnosis) -> None:
        plan = self.plan
        values: Row = {
            "DXCAT": EVENT[diagnosis.event_type], "DXTERM": messy.padded(self.rng, diagnosis.label or ""),
            "DXMORPH": diagnosis.morphology, "DXTOPO": messy.topography(self.rng, diagnosis.topography, 0.2),
            "DXSTDTC": iso(diagnosis.date),
        }
        before_birth = plus(self.patient.birth.value, -plan.rng.randint(60, 900))
        corrupt = {
            (IMPOSSIBLE_DATE, "diagnosis_date"): ("DXSTDTC", _impossible(plan, diagnosis.date.value)),
            (INVALID_CODE, "icdo3_morphology"): ("DXMORPH", broken_morphology(plan.rng, diagnosis.morphology)),
            (DATE_ORDER, "diagnosis_date"): ("DXSTDTC", iso(before_birth)),
        }
        self._emit("DX", values, [("diagnosis", truth.diagnosis_row(diagnosis, self.birth))], list(corrupt), corrupt)

    def alteration(self, alteration: Alteration) -> None:
        values: Row = {
            "MPALTTYP": ALTERATION_TYPE[alteration.alteration_type], "MPGENE": alteration.gene,
            "MPPARTN": alteration.partner or "", "MPALT": alteration.alteration, "MPHGVS": alteration.hgvs or "",
            "MPASSAY": alteration.assay, "MPACTFL": "Y" if alteration.is_actionable else "N",
            "MPDT": alteration.report_date.value,
        }
        corrupt = {(INVALID_CODE, "alteration_type"): ("MPALTTYP", self.plan.rng.choice(("MUTATION", "AMP", "DEL")))}
        self._emit("MP", values, [("molecular_alteration", truth.alteration_row(alteration))], list(corrupt), corrupt)

    def exposure(self, treatment: Treatment) -> str:
        plan = self.plan
        dose, unit = DOSE[treatment.drug]
        values: Row = {
            "EXTRT": treatment.drug.upper() if self.rng.random() < 0.85 else messy.drug_name(self.rng, treatment.drug),
            "EXDOSE": float(dose), "EXDOSU": unit, "EXSTDTC": iso(treatment.start), "EXENDTC": iso(treatment.end),
            "EXDSREAS": END_REASON[treatment.end_reason] if treatment.end_reason else "",
        }
        corrupt = {(IMPOSSIBLE_DATE, "start_date"): ("EXSTDTC", _impossible(plan, treatment.start.value))}
        before_start = iso(plus(treatment.start.value, -plan.rng.randint(5, 90)))
        if treatment.end:
            corrupt[(DATE_ORDER, "end_date")] = ("EXENDTC", before_start)
        return self._emit("EX", values, [("treatment", truth.treatment_row(treatment))], list(corrupt), corrupt)

    def response(self, response: Response, treatment_key: str) -> None:
        testcd, test, visit = TIMEPOINT[response.timepoint]
        values: Row = {"RSTESTCD": testcd, "RSTEST": test, "RSCAT": CRITERIA[response.criteria],
                       "RSORRES": response.response, "VISIT": visit, "RSDTC": iso(response.date)}
        corrupt = {
            (IMPOSSIBLE_DATE, "assessment_date"): ("RSDTC", _impossible(self.plan, response.date)),
            (INVALID_CODE, "response"): ("RSORRES", self.plan.rng.choice(("VGPR", "MR", "CRU"))),
        }
        self._emit("RS", values, [("response_assessment", truth.response_row(response, treatment_key))],
                   list(corrupt), corrupt)

    def adverse_event(self, event: AdverseEvent, treatment_key: str) -> None:
        rng, plan = self.rng, self.plan
        verbatim = event.term.lower() if rng.random() < 0.3 else event.term
        values: Row = {
            "AETERM": messy.padded(rng, verbatim), "AEDECOD": event.term, "AEPTCD": event.meddra,
            "AETOXGR": str(event.grade), "AESER": "Y" if event.is_serious else "N",
            "AEREL": rng.choice(RELATEDNESS[event.relatedness]), "AEOUT": OUTCOME[event.outcome],
            "AESTDTC": iso(event.onset), "AEENDTC": iso(event.end),
        }
        corrupt = {
            (INVALID_CODE, "ctcae_grade"): ("AETOXGR", plan.rng.choice(("6", "7", "0"))),
            (IMPOSSIBLE_DATE, "onset_date"): ("AESTDTC", _impossible(plan, event.onset)),
        }
        before_onset = iso(plus(event.onset, -plan.rng.randint(3, 40)))
        if event.end:
            corrupt[(DATE_ORDER, "end_date")] = ("AEENDTC", before_onset)
        self._emit("AE", values, [("adverse_event", truth.adverse_event_row(event, treatment_key))],
                   list(corrupt), corrupt)

    def status(self, follow_up: FollowUp) -> None:
        plan = self.plan
        values: Row = {"SSTESTCD": "SURVSTAT", "SSORRES": VITAL_STATUS[follow_up.vital_status],
                       "SSDT": follow_up.contact_date, "SSDTHDT": follow_up.death_date}
        future = plus(self.owner.export_date, plan.rng.randint(30, 400))
        corrupt: dict[Option, tuple[str, str]] = {
            (INVALID_CODE, "vital_status"): ("SSORRES", plan.rng.choice(("DECEASED", "A", "UNK"))),
            (OUT_OF_RANGE, "contact_date"): ("SSDT", future.isoformat()),
        }
        number_before = len(self.records)
        self._emit("SS", values, [("follow_up", truth.follow_up_row(follow_up))], list(corrupt), corrupt)
        record = self.records[number_before]
        if record.error is not None and record.error.field == "contact_date":
            self.owner._rows["SS"][-1]["SSDT"] = future  # a numeric date: written as a date, listed as ISO
