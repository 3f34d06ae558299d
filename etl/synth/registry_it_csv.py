"""registry_it: the national CSV export of TREP, the Italian registry of very rare paediatric tumours.

One file `TREP_export_<yyyymmdd>.csv`, one row per patient-tumour, Italian column names, and
the national conventions: cp1252, `;`, CRLF, decimal comma (`4,5` cm), `dd/mm/yyyy` dates with
`00` for an unknown day or month (`00/05/2010`) and `99/99/9999` for an unknown date.
Centres keep their habits: some write the topography without the dot (`C692`), some fill an
empty death date with the sentinel. A duplicate is the same row written twice in a row.
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
    impossible_day,
)
from etl.synth.records import PDate, Registration, SourcePatient, plus
from etl.synth.truth import EmittedRecord

SOURCE_ID = "registry_it"
STUDY_ID = "TREP"
COLUMNS = ["id_record", "codice_paziente", "codice_centro", "sesso", "data_nascita", "data_diagnosi",
           "data_registrazione", "morfologia", "comportamento", "topografia", "lateralita", "base_diagnosi",
           "dimensione_cm", "stato_vitale", "data_ultimo_contatto", "data_decesso", "eupid", "note"]
UNKNOWN_DATE = "99/99/9999"
SEX = {"male": "1", "female": "2", "unknown": "9"}
LATERALITY = {"right": "D", "left": "S", "bilateral": "B", "not_applicable": "N", "unknown": "9"}
VITAL_STATUS = {"alive": "V", "dead": "M", "lost": "P"}
UNDOTTED_TOPOGRAPHY_CENTRES = frozenset({"IT-GE01", "IT-TO01", "IT-NA01", "IT-PA01", "IT-CA01", "IT-TS01"})
SENTINEL_DEATH_DATE_CENTRES = frozenset({"IT-MI01", "IT-RM01", "IT-PD01", "IT-BA01", "IT-CT01"})


def dmy(day: PDate | date | None) -> str:
    """The registry writes unknown date parts as `00`."""
    return records.dmy(day, "00")


def size_cm(size_mm: int | None) -> str:
    """45 mm -> `4,5`; some round sizes are written without decimals (`12`)."""
    if size_mm is None:
        return ""
    whole, tenth = divmod(size_mm, 10)
    if tenth == 0 and whole % 2 == 0:
        return str(whole)
    return f"{whole},{tenth}"


class RegistryCsvWriter:
    """Writes the TREP export, one patient (one or more tumour rows) at a time."""

    def __init__(self, folder: Path, export_date: date):
        self.path = folder / f"TREP_export_{export_date:%Y%m%d}.csv"
        self.export_date = export_date
        self._handle: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._next_id = 1

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    def __enter__(self) -> RegistryCsvWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("w", encoding="cp1252", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS, delimiter=";", lineterminator="\r\n")
        self._writer.writeheader()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.close()

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        return [self._row(patient, registration, rng, plan, single=len(patient.registrations) == 1)
                for registration in patient.registrations]

    def _row(self, patient: SourcePatient, registration: Registration, rng: Random, plan: ErrorPlan,
             single: bool) -> EmittedRecord:
        assert self._writer is not None
        person, diagnosis, follow_up = patient.person, registration.diagnosis, registration.follow_up
        centre = patient.centre_id
        histology, _, behaviour = diagnosis.morphology.partition("/")
        if follow_up.death_date is not None:
            death = dmy(follow_up.death_date)
        elif follow_up.vital_status == "dead" or centre in SENTINEL_DEATH_DATE_CENTRES:
            death = UNKNOWN_DATE
        else:
            death = ""
        record_id = self._next_id
        self._next_id += 1
        values = {
            "id_record": str(record_id), "codice_paziente": patient.patient_key,
            "codice_centro": messy.lower_sometimes(rng, centre, 0.03), "sesso": SEX[person.sex],
            "data_nascita": dmy(patient.birth), "data_diagnosi": dmy(diagnosis.date),
            "data_registrazione": dmy(registration.registration_date), "morfologia": histology,
            "comportamento": behaviour,
            "topografia": diagnosis.topography.replace(".", "") if centre in UNDOTTED_TOPOGRAPHY_CENTRES
            else diagnosis.topography,
            "lateralita": messy.lower_sometimes(rng, LATERALITY[diagnosis.laterality or "unknown"]),
            "base_diagnosi": diagnosis.basis or "", "dimensione_cm": size_cm(diagnosis.size_mm),
            "stato_vitale": messy.lower_sometimes(rng, VITAL_STATUS[follow_up.vital_status]),
            "data_ultimo_contatto": dmy(follow_up.contact_date), "data_decesso": death,
            "eupid": patient.exported_eupid or "",
            "note": messy.padded(rng, registration.note, 0.2) if registration.note else "",
        }
        birth = patient.birth
        options: list[Option] = [
            (IMPOSSIBLE_DATE, "diagnosis_date"), (IMPOSSIBLE_DATE, "enrolment_date"), (INVALID_CODE, "sex"),
            (INVALID_CODE, "icdo3_morphology"), (INVALID_CODE, "laterality"), (INVALID_CODE, "vital_status"),
            (OUT_OF_RANGE, "contact_date"), (DATE_ORDER, "diagnosis_date"), (DUPLICATE, "")]
        if single:  # a wrong birth date would change the ages of the patient's other rows too
            options.append((OUT_OF_RANGE, "age_at_diagnosis_days"))
        chosen = plan.choose(options)
        error = None
        if chosen is not None:
            column, value = self._corrupt(chosen, patient, registration, plan)
            if column == "data_nascita":
                birth = PDate(date.fromisoformat(value))
                values[column] = dmy(birth)
                value = str(truth.age_days(diagnosis.date, birth))
            elif column:
                values[column] = value
            error = InjectedError(chosen[0], chosen[1], value)
        self._writer.writerow(values)
        if error is not None and error.kind == DUPLICATE:
            self._writer.writerow(values)
        rows = [("study_enrolment", truth.enrolment_row(STUDY_ID, centre, PDate(registration.registration_date),
                                                        birth)),
                ("diagnosis", truth.diagnosis_row(diagnosis, birth)),
                ("follow_up", truth.follow_up_row(follow_up))]
        return EmittedRecord(f"{patient.patient_key}|REG[{record_id}]", rows, error,
                             truth.patient_source_row(centre, patient.expected_link_method, person.sex, birth, "IT"))

    def _corrupt(self, chosen: Option, patient: SourcePatient, registration: Registration,
                 plan: ErrorPlan) -> tuple[str, str]:
        """The column to overwrite and the bad value (a birth date as ISO, to be formatted by the caller)."""
        rng = plan.rng
        diagnosed = registration.diagnosis.date.value

        def impossible(near: date) -> str:
            year, month, day = impossible_day(rng, near)
            return f"{day:02d}/{month:02d}/{year:04d}"

        if chosen[0] == DUPLICATE:
            return "", ""
        if chosen == (IMPOSSIBLE_DATE, "diagnosis_date"):
            return "data_diagnosi", impossible(diagnosed)
        if chosen == (IMPOSSIBLE_DATE, "enrolment_date"):
            return "data_registrazione", impossible(registration.registration_date)
        if chosen == (INVALID_CODE, "sex"):
            return "sesso", rng.choice(("7", "0", "M", "F"))
        if chosen == (INVALID_CODE, "icdo3_morphology"):
            histology = registration.diagnosis.morphology[:4]
            position = rng.randrange(1, 4)
            return "morfologia", histology[:position] + rng.choice("XO") + histology[position + 1:]
        if chosen == (INVALID_CODE, "laterality"):
            return "lateralita", rng.choice(("X", "L", "R", "DX"))
        if chosen == (INVALID_CODE, "vital_status"):
            return "stato_vitale", rng.choice(("D", "X", "VIVO"))
        if chosen == (OUT_OF_RANGE, "contact_date"):
            return "data_ultimo_contatto", dmy(plus(self.export_date, rng.randint(30, 400)))
        if chosen == (DATE_ORDER, "diagnosis_date"):
            return "data_diagnosi", dmy(plus(patient.birth.value, -rng.randint(30, 900)))
        # out of range: a birth date typed wrong makes the patient 22 or older at diagnosis
        return "data_nascita", plus(diagnosed, -int(365.25 * 22) - rng.randint(0, 700)).isoformat()
