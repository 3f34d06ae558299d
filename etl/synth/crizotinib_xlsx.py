"""crizotinib_imt: the Excel CRF export of a crizotinib trial in ALK/ROS1-rearranged IMT.

One workbook `CRIZOTINIB_IMT_export_<yyyymmdd>.xlsx`, one sheet per form (Enrolment, Diagnosis,
Molecular, Treatment, Response, AdverseEvents, FollowUp), laid out as the trial office's export
tool writes it: a title in row 1, the export line in row 2, the column names in row 3, data from
row 4, and a styled but empty table area below the data (blank trailing rows).
Every sheet starts with `Patient ID` and `Record` (the 1-based number of the form for that
patient), so a record key is `<Patient ID>|<Sheet>[<Record>]`.
Gotchas of the format, on purpose:
- Dates are Excel date cells, except at sites whose staff type them as text `dd/mm/yyyy`
  (DE-01, BE-01), and the month and year of birth (text `mm/yyyy`, the only birth information
  collected). A partial diagnosis date is text `mm/yyyy` at those sites, elsewhere what Excel makes
  of `12/2021` typed in: the date 2021-12-01 in a cell formatted `mmm-yy`.
- Numbers (Record, LVEF, size, CTCAE grade) are numeric cells; the MedDRA code is text.
- A duplicate is a row pasted twice, one under the other.
- openpyxl stamps the time of writing into the workbook properties and the zip entries; both
  are set to the export date so the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime, time
from pathlib import Path
from random import Random
from types import TracebackType

from openpyxl import Workbook
from openpyxl.styles import Border, Font, Side

from etl.synth import messy, truth
from etl.synth.errors import (
    DATE_ORDER,
    DUPLICATE,
    IMPOSSIBLE_DATE,
    INELIGIBLE,
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

SOURCE_ID = "crizotinib_imt"
STUDY_ID = "CRIZOTINIB"
TITLE = "Crizotinib in children with ALK/ROS1-rearranged inflammatory myofibroblastic tumour - CRF export"
HEADER_ROW = 3
MAX_AGE_DAYS = 6940  # "age 0-18" admits up to the day before the 19th birthday, at most 6940 days after birth
KEY_COLUMNS = ["Patient ID", "Record"]
SHEETS: dict[str, list[str]] = {
    "Enrolment": ["Site", "Country of residence", "Sex", "Month/year of birth", "EUPID", "Informed consent date",
                  "Enrolment date", "LVEF at screening (%)"],
    "Diagnosis": ["Event", "Date of diagnosis", "Diagnosis", "ICD-O-3 morphology", "ICD-O-3 topography",
                  "Largest diameter (mm)"],
    "Molecular": ["Result type", "Gene", "Partner gene", "Alteration", "Method", "Actionable", "Report date"],
    "Treatment": ["Drug", "Start date", "End date", "Reason for stopping"],
    "Response": ["Assessment date", "Timepoint", "RECIST 1.1 response"],
    "AdverseEvents": ["AE term (MedDRA PT)", "MedDRA code", "CTCAE grade", "Serious", "Relationship to crizotinib",
                      "Onset date", "End date", "Outcome"],
    "FollowUp": ["Visit date", "Vital status", "Date of death", "Disease status"],
}
TEXT_DATE_SITES = frozenset({"DE-01", "BE-01"})
SEX = {"male": "Male", "female": "Female", "unknown": "Unknown"}
EVENT = {"initial": "Initial", "relapse": "Relapse", "progression": "Progression"}
RESULT_TYPE = {"fusion": "Fusion", "expression": "Expression"}
END_REASON = {"completed": "Completed", "progression": "Progression", "toxicity": "Toxicity", "death": "Death",
              "other": "Other"}
TIMEPOINT = {"cycle1": "Week 8", "best": "Best response"}
RESPONSE_WORDS = {"CR": "Complete response", "PR": "Partial response", "SD": "Stable disease",
                  "PD": "Progressive disease", "NE": "Not evaluable"}
RELATEDNESS = {"related": "Related", "not_related": "Not related", "unknown": "Unknown"}
OUTCOME = {"recovered": "Recovered", "recovering": "Recovering", "not_recovered": "Not recovered",
           "sequelae": "Recovered with sequelae", "fatal": "Fatal", "unknown": "Unknown"}
VITAL_STATUS = {"alive": "Alive", "dead": "Dead", "lost": "Lost to follow-up"}
DISEASE_STATUS = {"no_evidence_of_disease": "No evidence of disease", "stable": "Stable disease",
                  "progression": "Progression", "unknown": "Unknown"}
TRAILING_BLANK_ROWS = 5
# Eligibility deviations are more common than typing errors in a small trial: the Enrolment
# record draws its error at this multiple of the error rate.
ENROLMENT_ERROR_BOOST = 5
_MODIFIED = re.compile(rb">[^<]*</dcterms:modified>")
Cell = str | int | float | date | None


class _Month(date):
    """A month typed into a date cell: the month's first day, formatted to show the month (`mmm-yy`)."""
Row = dict[str, Cell]


def _impossible(plan: ErrorPlan, near: date) -> str:
    year, month, day = impossible_day(plan.rng, near)
    return f"{day:02d}/{month:02d}/{year:04d}"


class CrizotinibXlsxWriter:
    """Collects the sheets patient by patient and writes the workbook on exit."""

    def __init__(self, folder: Path, export_date: date):
        self.folder = folder
        self.export_date = export_date
        self.path = folder / f"CRIZOTINIB_IMT_export_{export_date:%Y%m%d}.xlsx"
        self._rows: dict[str, list[list[Cell]]] = {name: [] for name in SHEETS}

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    def __enter__(self) -> CrizotinibXlsxWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            return
        stamp = datetime.combine(self.export_date, time(6, 0))
        workbook = Workbook()
        workbook.remove(workbook.active)
        workbook.properties.creator = "CRF export"
        workbook.properties.created = workbook.properties.modified = stamp
        thin = Side(style="thin")
        for name, columns in SHEETS.items():
            sheet = workbook.create_sheet(name)
            sheet.cell(1, 1, f"{TITLE}: {name}").font = Font(bold=True, size=12)
            sheet.cell(2, 1, f"Exported {self.export_date:%d/%m/%Y}; {len(self._rows[name])} records")
            for index, column in enumerate(KEY_COLUMNS + columns, 1):
                sheet.cell(HEADER_ROW, index, column).font = Font(bold=True)
            for number, values in enumerate(self._rows[name], HEADER_ROW + 1):
                for index, value in enumerate(values, 1):
                    cell = sheet.cell(number, index, value)
                    if isinstance(value, date):
                        cell.number_format = "mmm-yy" if isinstance(value, _Month) else "DD/MM/YYYY"
            # The export tool draws the table's borders a few rows past the data: styled empty cells.
            last = HEADER_ROW + len(self._rows[name])
            for number in range(last + 1, last + 1 + TRAILING_BLANK_ROWS):
                for index in range(1, len(KEY_COLUMNS + columns) + 1):
                    sheet.cell(number, index).border = Border(top=thin, bottom=thin, left=thin, right=thin)
        buffer = io.BytesIO()
        workbook.save(buffer)
        self.path.write_bytes(_fixed_zip_times(buffer.getvalue(), stamp))

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        subject = _Subject(self, patient, rng, plan)
        dropped_fusion = subject.enrolment()
        for diagnosis in patient.diagnoses:
            subject.diagnosis(diagnosis)
        alterations = patient.alterations[:-1] if dropped_fusion else patient.alterations
        for alteration in alterations:
            subject.alteration(alteration)
        for treatment in patient.treatments:
            key = subject.treatment(treatment)
            for response in treatment.responses:
                subject.response(response, key)
            for event in treatment.adverse_events:
                subject.adverse_event(event, key)
        for follow_up in patient.follow_ups:
            subject.follow_up(follow_up)
        return subject.records


def _fixed_zip_times(data: bytes, stamp: datetime) -> bytes:
    """The same workbook dated `stamp`: openpyxl dates the zip entries and `modified` at the time of saving."""
    out = io.BytesIO()
    modified = f">{stamp:%Y-%m-%dT%H:%M:%S}Z</dcterms:modified>".encode()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = _MODIFIED.sub(modified, content)
            target.writestr(entry, content)
    return out.getvalue()


class _Subject:
    """The rows of one patient across the sheets, with their record numbers."""

    def __init__(self, owner: CrizotinibXlsxWriter, patient: SourcePatient, rng: Random, plan: ErrorPlan):
        self.owner, self.patient, self.rng, self.plan = owner, patient, rng, plan
        self.birth = patient.birth  # as exported; an ineligible age changes it
        self.text_dates = patient.centre_id in TEXT_DATE_SITES
        self.numbers: dict[str, int] = {}
        self.records: list[EmittedRecord] = []

    def _day(self, day: PDate | date | None) -> Cell:
        """A date cell, or the text some sites type; a month a date cell formatted to show it, or text
        (`05/2019`) where dates are typed as text; a year always text."""
        if day is None:
            return None
        if isinstance(day, PDate):
            if day.precision == "month":
                return day.value.strftime("%m/%Y") if self.text_dates else _Month(day.value.year, day.value.month, 1)
            if day.precision == "year":
                return f"{day.value.year:04d}"
            day = day.value
        return day.strftime("%d/%m/%Y") if self.text_dates else day

    def _emit(self, sheet: str, values: Row, rows: list[tuple[str, truth.Row]], options: list[Option],
              corrupt: dict[Option, tuple[str, Cell]], rate: float | None = None) -> EmittedRecord:
        """Write one record; `corrupt` gives per error option the column and the bad value."""
        number = self.numbers.get(sheet, 0) + 1
        self.numbers[sheet] = number
        plan = self.plan if rate is None else ErrorPlan(self.plan.rng, rate)
        chosen = plan.choose([*options, (DUPLICATE, "")])
        error = None
        if chosen is not None and chosen[0] != DUPLICATE:
            column, value = corrupt[chosen]
            if column:
                values[column] = value
            error = InjectedError(chosen[0], chosen[1], "" if value is None else str(value))
        elif chosen is not None:
            error = InjectedError(DUPLICATE, "", "")
        cells = [self.patient.patient_key, number, *(values.get(c) for c in SHEETS[sheet])]
        self.owner._rows[sheet].append(cells)
        if error is not None and error.kind == DUPLICATE:
            self.owner._rows[sheet].append(list(cells))
        record = EmittedRecord(f"{self.patient.patient_key}|{sheet}[{number}]", rows, error)
        self.records.append(record)
        return record

    def enrolment(self) -> bool:
        """The Enrolment record; True when its injected error is a missing ALK/ROS1 fusion."""
        patient, person, rng, plan = self.patient, self.patient.person, self.rng, self.plan
        assert patient.enrolment_date is not None and patient.lvef_percent is not None
        enrolled = PDate(patient.enrolment_date)
        values: Row = {
            "Site": patient.centre_id, "Country of residence": messy.lower_sometimes(rng, person.country, 0.03),
            "Sex": messy.lower_sometimes(rng, SEX[person.sex], 0.1),
            "Month/year of birth": patient.birth.value.strftime("%m/%Y"),
            "EUPID": messy.lower_sometimes(rng, patient.exported_eupid, 0.03) if patient.exported_eupid else None,
            "Informed consent date": self._day(patient.consent_date), "Enrolment date": self._day(enrolled),
            "LVEF at screening (%)": patient.lvef_percent,
        }
        corrupt: dict[Option, tuple[str, Cell]] = {
            (IMPOSSIBLE_DATE, "enrolment_date"): ("Enrolment date", _impossible(plan, patient.enrolment_date)),
            (INVALID_CODE, "sex"): ("Sex", plan.rng.choice(("X", "H", "9"))),
            (INELIGIBLE, "lvef_percent"): ("LVEF at screening (%)", plan.rng.randint(50, 60)),
        }
        # Enrolled shortly after the 19th birthday, though diagnosed before it: only the age rule breaks.
        late_birth = blur(plus(patient.enrolment_date, -(MAX_AGE_DAYS + 21 + plan.rng.randint(0, 20))), "month")
        last_diagnosis = max(d.date.value for d in patient.diagnoses)
        if truth.age_days(PDate(last_diagnosis), late_birth) <= MAX_AGE_DAYS:
            corrupt[(INELIGIBLE, "age_at_enrolment_days")] = ("Month/year of birth", late_birth.value.strftime("%m/%Y"))
        fusion = patient.alterations[-1]
        if len(patient.alterations) > 1 and fusion.alteration_type == "fusion":
            # ALK seen by immunohistochemistry, but the fusion test found no rearrangement (not written).
            corrupt[(INELIGIBLE, "molecular_alteration")] = ("", None)
        record = self._emit("Enrolment", values, [], list(corrupt), corrupt,
                            rate=min(1.0, plan.rate * ENROLMENT_ERROR_BOOST))
        error = record.error
        if error is not None and error.field == "age_at_enrolment_days":
            self.birth = late_birth
            record.error = InjectedError(error.kind, error.field, str(truth.age_days(enrolled, late_birth)))
        record.rows = [
            ("study_enrolment", truth.enrolment_row(STUDY_ID, patient.centre_id, enrolled, self.birth,
                                                    lvef_percent=patient.lvef_percent)),
            ("consent", truth.consent_row(STUDY_ID, patient.consent_date, "trial"))]
        record.patient_source = truth.patient_source_row(patient.centre_id, patient.expected_link_method, person.sex,
                                                         self.birth, person.country)
        return error is not None and error.field == "molecular_alteration"

    def diagnosis(self, diagnosis: Diagnosis) -> None:
        plan = self.plan
        values: Row = {
            "Event": EVENT[diagnosis.event_type], "Date of diagnosis": self._day(diagnosis.date),
            "Diagnosis": messy.padded(self.rng, diagnosis.label or ""), "ICD-O-3 morphology": diagnosis.morphology,
            "ICD-O-3 topography": messy.topography(self.rng, diagnosis.topography, 0.15),
            "Largest diameter (mm)": diagnosis.size_mm,
        }
        corrupt: dict[Option, tuple[str, Cell]] = {
            (IMPOSSIBLE_DATE, "diagnosis_date"): ("Date of diagnosis", _impossible(plan, diagnosis.date.value)),
            (INVALID_CODE, "icdo3_morphology"): ("ICD-O-3 morphology",
                                                 broken_morphology(plan.rng, diagnosis.morphology)),
        }
        self._emit("Diagnosis", values, [("diagnosis", truth.diagnosis_row(diagnosis, self.birth))],
                   list(corrupt), corrupt)

    def alteration(self, alteration: Alteration) -> None:
        plan = self.plan
        values: Row = {
            "Result type": RESULT_TYPE[alteration.alteration_type], "Gene": alteration.gene,
            "Partner gene": alteration.partner, "Alteration": messy.padded(self.rng, alteration.alteration),
            "Method": alteration.assay, "Actionable": "Yes" if alteration.is_actionable else "No",
            "Report date": self._day(alteration.report_date),
        }
        corrupt: dict[Option, tuple[str, Cell]] = {
            (INVALID_CODE, "alteration_type"): ("Result type", plan.rng.choice(("Mutation", "Rearranged", "Positive"))),
            (IMPOSSIBLE_DATE, "report_date"): ("Report date", _impossible(plan, alteration.report_date.value)),
        }
        self._emit("Molecular", values, [("molecular_alteration", truth.alteration_row(alteration))],
                   list(corrupt), corrupt)

    def treatment(self, treatment: Treatment) -> str:
        plan = self.plan
        drug = messy.drug_name(self.rng, treatment.drug)  # drawn all the same when left out
        values: Row = {
            "Drug": drug if treatment.drug_given else None, "Start date": self._day(treatment.start),
            "End date": self._day(treatment.end),
            "Reason for stopping": END_REASON[treatment.end_reason] if treatment.end_reason else None,
        }
        corrupt: dict[Option, tuple[str, Cell]] = {
            (IMPOSSIBLE_DATE, "start_date"): ("Start date", _impossible(plan, treatment.start.value)),
        }
        before_start = self._day(plus(treatment.start.value, -plan.rng.randint(5, 90)))
        if treatment.end:
            corrupt[(DATE_ORDER, "end_date")] = ("End date", before_start)
        record = self._emit("Treatment", values, [("treatment", truth.treatment_row(treatment))], list(corrupt),
                            corrupt)
        if record.error is not None and record.error.kind == DATE_ORDER:
            record.error = InjectedError(DATE_ORDER, "end_date", _text_date(before_start))
        return record.record_key

    def response(self, response: Response, treatment_key: str) -> None:
        plan = self.plan
        code = RESPONSE_WORDS[response.response] if self.rng.random() < 0.2 else response.response
        values: Row = {"Assessment date": self._day(response.date), "Timepoint": TIMEPOINT[response.timepoint],
                       "RECIST 1.1 response": code}
        corrupt: dict[Option, tuple[str, Cell]] = {
            (IMPOSSIBLE_DATE, "assessment_date"): ("Assessment date", _impossible(plan, response.date)),
            (INVALID_CODE, "response"): ("RECIST 1.1 response", plan.rng.choice(("VGPR", "MR", "Partial"))),
        }
        self._emit("Response", values, [("response_assessment", truth.response_row(response, treatment_key))],
                   list(corrupt), corrupt)

    def adverse_event(self, event: AdverseEvent, treatment_key: str) -> None:
        plan = self.plan
        values: Row = {
            "AE term (MedDRA PT)": event.term, "MedDRA code": event.meddra, "CTCAE grade": event.grade,
            "Serious": "Yes" if event.is_serious else "No",
            "Relationship to crizotinib": RELATEDNESS[event.relatedness],
            "Onset date": self._day(event.onset), "End date": self._day(event.end), "Outcome": OUTCOME[event.outcome],
        }
        corrupt: dict[Option, tuple[str, Cell]] = {
            (INVALID_CODE, "ctcae_grade"): ("CTCAE grade", plan.rng.choice((6, 7, 0))),
        }
        before_onset = self._day(plus(event.onset, -plan.rng.randint(3, 40)))
        if event.end:
            corrupt[(DATE_ORDER, "end_date")] = ("End date", before_onset)
        record = self._emit("AdverseEvents", values,
                            [("adverse_event", truth.adverse_event_row(event, treatment_key))], list(corrupt), corrupt)
        if record.error is not None and record.error.kind == DATE_ORDER:
            record.error = InjectedError(DATE_ORDER, "end_date", _text_date(before_onset))

    def follow_up(self, follow_up: FollowUp) -> None:
        plan = self.plan
        values: Row = {
            "Visit date": self._day(follow_up.contact_date), "Vital status": VITAL_STATUS[follow_up.vital_status],
            "Date of death": self._day(follow_up.death_date),
            "Disease status": DISEASE_STATUS[follow_up.disease_status] if follow_up.disease_status else None,
        }
        future = self._day(plus(self.owner.export_date, plan.rng.randint(30, 400)))
        corrupt: dict[Option, tuple[str, Cell]] = {
            (INVALID_CODE, "vital_status"): ("Vital status", plan.rng.choice(("Deceased", "Unknown", "A"))),
            (OUT_OF_RANGE, "contact_date"): ("Visit date", future),
        }
        record = self._emit("FollowUp", values, [("follow_up", truth.follow_up_row(follow_up))], list(corrupt),
                            corrupt)
        if record.error is not None and record.error.kind == OUT_OF_RANGE:
            record.error = InjectedError(OUT_OF_RANGE, "contact_date", _text_date(future))


def _text_date(value: Cell) -> str:
    """A bad date as errors.csv lists it: as the sheet shows it (`dd/mm/yyyy`)."""
    return value.strftime("%d/%m/%Y") if isinstance(value, date) else str(value)
