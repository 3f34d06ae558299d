"""sacha_fr: the Ennov EDC export of the SACHA registry as CDISC ODM 1.3.2 XML.

One Snapshot file `SACHA_ODM_<yyyymmdd>.xml`: `Study` (GlobalVariables and a MetaDataVersion
with the protocol, events, forms, item groups, items and French code lists), `AdminData` (the
users and the 31 centres FR01..FR31), then one `ClinicalData` with a `SubjectData` per patient.
The file is streamed with `lxml.etree.xmlfile`, one subject at a time, so the patient count
does not change the memory needed.

ODM gotchas kept on purpose: an empty optional item is absent rather than empty; partial dates
(`2019-05`, `2019`) are `partialDate` items; a repeat key is written only on repeating events
and item groups (the record key then reads it as 1); about one ItemData in 200 carries the
AuditRecord of a correction. Elements are built without a namespace and written inside the
`ODM` element that declares the default ODM namespace, so they are ODM elements without
re-declaring it on every subject.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from random import Random
from types import TracebackType
from typing import Any

from lxml import etree

from etl.synth import messy, truth
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
    Diagnosis,
    FollowUp,
    PDate,
    Response,
    SourcePatient,
    Treatment,
    plus,
)
from etl.synth.truth import EmittedRecord
from etl.synth.vocab import SACHA_AUDIT_REASONS, SACHA_CENTRES

SOURCE_ID = "sacha_fr"
STUDY_ID = "SACHA"
ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
MDV_OID = "MDV.SACHA.4"
AUDIT_SHARE = 1 / 200

SEX = {"male": "1", "female": "2", "unknown": "9"}
DX_EVENT = {"initial": "1", "relapse": "2", "progression": "3"}
ROUTE = {"off_label": "HAMM", "compassionate": "AAC"}
END_REASON = {"completed": "1", "progression": "2", "toxicity": "3", "death": "4", "other": "5"}
RELATEDNESS = {"related": "1", "not_related": "2", "unknown": "9"}
OUTCOME = {"recovered": "1", "recovering": "2", "not_recovered": "3", "sequelae": "4", "fatal": "5", "unknown": "9"}
TIMEPOINT = {"cycle1": "C1", "best": "BOR"}
CRITERIA = {"RECIST1.1": "RECIST", "RANO": "RANO", "INRC": "INRC", "leukaemia": "LEUK"}
VITAL_STATUS = {"alive": "1", "dead": "2", "lost": "3"}
DISEASE_STATUS = {"no_evidence_of_disease": "1", "stable": "2", "progression": "3", "unknown": "9"}

# -- metadata --------------------------------------------------------------------------------

STUDY_EVENTS = (  # OID, name, repeating, type, forms
    ("SE.INCLUSION", "Inclusion", "No", "Scheduled", ("F.DEMOG", "F.DIAG")),
    ("SE.TREATMENT", "Ligne de traitement", "Yes", "Unscheduled", ("F.TRT", "F.AE", "F.RESP")),
    ("SE.FOLLOWUP", "Suivi", "Yes", "Unscheduled", ("F.FU",)),
)
FORMS = (  # OID, name, item groups
    ("F.DEMOG", "Données démographiques", ("IG.DEMOG",)),
    ("F.DIAG", "Diagnostic et rechutes", ("IG.DIAG",)),
    ("F.TRT", "Traitement hors AMM / AAC", ("IG.TRT",)),
    ("F.AE", "Événements indésirables", ("IG.AE",)),
    ("F.RESP", "Évaluation de la réponse", ("IG.RESP",)),
    ("F.FU", "Suivi", ("IG.FU",)),
)
ITEM_GROUPS = (  # OID, name, repeating, items
    ("IG.DEMOG", "Démographie", "No", ("DM.SEX", "DM.BRTHDTC", "DM.COUNTRY", "DM.EUPID", "DM.INCLDTC", "DM.CONSDTC")),
    ("IG.DIAG", "Diagnostic", "Yes", ("DX.EVENT", "DX.DIAGDTC", "DX.LABEL", "DX.MORPH", "DX.TOPO", "DX.BASIS")),
    ("IG.TRT", "Traitement", "No", ("TR.DRUG", "TR.ATC", "TR.ROUTE", "TR.STDTC", "TR.ENDTC", "TR.ENDRSN")),
    ("IG.AE", "Événement indésirable", "Yes", ("AE.TERM", "AE.MEDDRA", "AE.GRADE", "AE.STDTC", "AE.ENDTC", "AE.SER",
                                               "AE.REL", "AE.OUT")),
    ("IG.RESP", "Réponse", "Yes", ("RS.DTC", "RS.TPT", "RS.CRIT", "RS.RESP")),
    ("IG.FU", "Suivi", "No", ("FU.DTC", "FU.STATUS", "FU.DTHDTC", "FU.DISEASE")),
)
ITEMS: dict[str, tuple[str, str, str | None, str]] = {  # OID: name, DataType, CodeList, question (fr)
    "DM.SEX": ("SEX", "integer", "CL.SEX", "Sexe"),
    "DM.BRTHDTC": ("BRTHDTC", "date", None, "Date de naissance"),
    "DM.COUNTRY": ("COUNTRY", "text", None, "Pays de résidence (ISO 3166)"),
    "DM.EUPID": ("EUPID", "text", None, "Identifiant européen du patient (EUPID)"),
    "DM.INCLDTC": ("INCLDTC", "date", None, "Date d'inclusion"),
    "DM.CONSDTC": ("CONSDTC", "date", None, "Date de signature du consentement"),
    "DX.EVENT": ("DXEVENT", "integer", "CL.DXEVENT", "Événement"),
    "DX.DIAGDTC": ("DIAGDTC", "partialDate", None, "Date du diagnostic"),
    "DX.LABEL": ("DXLABEL", "text", None, "Diagnostic (en clair)"),
    "DX.MORPH": ("MORPH", "text", None, "Morphologie CIM-O-3"),
    "DX.TOPO": ("TOPO", "text", None, "Topographie CIM-O-3"),
    "DX.BASIS": ("BASIS", "integer", "CL.BASIS", "Base du diagnostic"),
    "TR.DRUG": ("DRUG", "text", None, "Médicament (DCI)"),
    "TR.ATC": ("ATC", "text", None, "Code ATC"),
    "TR.ROUTE": ("ROUTE", "text", "CL.ROUTE", "Cadre d'accès"),
    "TR.STDTC": ("STDTC", "date", None, "Date de début"),
    "TR.ENDTC": ("ENDTC", "date", None, "Date de fin"),
    "TR.ENDRSN": ("ENDRSN", "integer", "CL.ENDRSN", "Motif d'arrêt"),
    "AE.TERM": ("AETERM", "text", None, "Événement indésirable (MedDRA PT)"),
    "AE.MEDDRA": ("AEMEDDRA", "text", None, "Code MedDRA PT"),
    "AE.GRADE": ("AEGRADE", "integer", "CL.GRADE", "Grade CTCAE v5"),
    "AE.STDTC": ("AESTDTC", "date", None, "Date de début"),
    "AE.ENDTC": ("AEENDTC", "date", None, "Date de fin"),
    "AE.SER": ("AESER", "text", "CL.NY", "Grave"),
    "AE.REL": ("AEREL", "integer", "CL.AEREL", "Lien avec le traitement"),
    "AE.OUT": ("AEOUT", "integer", "CL.AEOUT", "Évolution"),
    "RS.DTC": ("RSDTC", "date", None, "Date d'évaluation"),
    "RS.TPT": ("RSTPT", "text", "CL.TPT", "Temps d'évaluation"),
    "RS.CRIT": ("RSCRIT", "text", "CL.CRIT", "Critères"),
    "RS.RESP": ("RSRESP", "text", "CL.RESP", "Réponse"),
    "FU.DTC": ("FUDTC", "date", None, "Date des dernières nouvelles"),
    "FU.STATUS": ("FUSTATUS", "integer", "CL.FUSTATUS", "Statut vital"),
    "FU.DTHDTC": ("DTHDTC", "date", None, "Date du décès"),
    "FU.DISEASE": ("FUDIS", "integer", "CL.FUDISEASE", "État de la maladie"),
}
CODE_LISTS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "CL.SEX": ("Sexe", "integer", (("1", "Masculin"), ("2", "Féminin"), ("9", "Inconnu"))),
    "CL.DXEVENT": ("Événement", "integer", (("1", "Diagnostic initial"), ("2", "Rechute"), ("3", "Progression"))),
    "CL.BASIS": ("Base du diagnostic", "integer", (
        ("0", "Certificat de décès uniquement"), ("1", "Clinique"), ("2", "Investigation clinique (imagerie)"),
        ("4", "Marqueurs tumoraux spécifiques"), ("5", "Cytologie / hématologie"),
        ("6", "Histologie d'une métastase"), ("7", "Histologie de la tumeur primitive"), ("9", "Inconnu"))),
    "CL.ROUTE": ("Cadre d'accès", "text", (("HAMM", "Hors autorisation de mise sur le marché"),
                                           ("AAC", "Autorisation d'accès compassionnel"))),
    "CL.ENDRSN": ("Motif d'arrêt", "integer", (("1", "Traitement terminé"), ("2", "Progression"), ("3", "Toxicité"),
                                                ("4", "Décès"), ("5", "Autre"))),
    "CL.GRADE": ("Grade CTCAE", "integer", tuple((str(g), f"Grade {g}") for g in range(1, 6))),
    "CL.NY": ("Oui/Non", "text", (("O", "Oui"), ("N", "Non"))),
    "CL.AEREL": ("Imputabilité", "integer", (("1", "Lié"), ("2", "Non lié"), ("9", "Inconnu"))),
    "CL.AEOUT": ("Évolution", "integer", (("1", "Résolu"), ("2", "En cours de résolution"), ("3", "Non résolu"),
                                           ("4", "Résolu avec séquelles"), ("5", "Fatal"), ("9", "Inconnu"))),
    "CL.TPT": ("Temps d'évaluation", "text", (("C1", "Fin du cycle 1"), ("BOR", "Meilleure réponse"))),
    "CL.CRIT": ("Critères", "text", (("RECIST", "RECIST 1.1"), ("RANO", "RANO"), ("INRC", "INRC"),
                                     ("LEUK", "Critères leucémie"))),
    "CL.RESP": ("Réponse", "text", (("CR", "Réponse complète"), ("PR", "Réponse partielle"), ("SD", "Maladie stable"),
                                    ("PD", "Progression"), ("NE", "Non évaluable"),
                                    ("CRi", "RC avec récupération hématologique incomplète"),
                                    ("MLFS", "Moelle sans leucémie morphologique"), ("NR", "Non-réponse"))),
    "CL.FUSTATUS": ("Statut vital", "integer", (("1", "Vivant"), ("2", "Décédé"), ("3", "Perdu de vue"))),
    "CL.FUDISEASE": ("État de la maladie", "integer", (("1", "Pas de maladie décelable"), ("2", "Stable"),
                                                        ("3", "Progression"), ("9", "Inconnu"))),
}


def _e(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, tag, attributes)


def _translated(parent: etree._Element, tag: str, text: str) -> None:
    translated = etree.SubElement(etree.SubElement(parent, tag), "TranslatedText")
    translated.set(XML_LANG, "fr")
    translated.text = text


def metadata_elements(export_date: date) -> tuple[etree._Element, etree._Element]:
    """`Study` (global variables and metadata) and `AdminData` (users and centres)."""
    study = etree.Element("Study", OID=STUDY_ID)
    variables = _e(study, "GlobalVariables")
    etree.SubElement(variables, "StudyName").text = "SACHA-France"
    etree.SubElement(variables, "StudyDescription").text = (
        "Sécurisation de l'accès aux médicaments innovants pour les enfants et adolescents atteints de cancer: "
        "registre des prescriptions hors AMM et des accès compassionnels")
    etree.SubElement(variables, "ProtocolName").text = "SACHA-France"
    mdv = _e(study, "MetaDataVersion", OID=MDV_OID, Name="SACHA eCRF v4")
    protocol = _e(mdv, "Protocol")
    for order, (oid, *_) in enumerate(STUDY_EVENTS, 1):
        _e(protocol, "StudyEventRef", StudyEventOID=oid, OrderNumber=str(order),
           Mandatory="Yes" if order == 1 else "No")
    for oid, name, repeating, kind, forms in STUDY_EVENTS:
        event = _e(mdv, "StudyEventDef", OID=oid, Name=name, Repeating=repeating, Type=kind)
        for order, form in enumerate(forms, 1):
            _e(event, "FormRef", FormOID=form, OrderNumber=str(order), Mandatory="Yes" if order == 1 else "No")
    for oid, name, groups in FORMS:
        form = _e(mdv, "FormDef", OID=oid, Name=name, Repeating="No")
        for order, group in enumerate(groups, 1):
            _e(form, "ItemGroupRef", ItemGroupOID=group, OrderNumber=str(order), Mandatory="Yes")
    for oid, name, repeating, items in ITEM_GROUPS:
        group = _e(mdv, "ItemGroupDef", OID=oid, Name=name, Repeating=repeating)
        for order, item in enumerate(items, 1):
            _e(group, "ItemRef", ItemOID=item, OrderNumber=str(order), Mandatory="Yes" if order == 1 else "No")
    for oid, (name, data_type, code_list, question) in ITEMS.items():
        item = _e(mdv, "ItemDef", OID=oid, Name=name, DataType=data_type)
        _translated(item, "Question", question)
        if code_list:
            _e(item, "CodeListRef", CodeListOID=code_list)
    for oid, (name, data_type, codes) in CODE_LISTS.items():
        code_list = _e(mdv, "CodeList", OID=oid, Name=name, DataType=data_type)
        for code, decode in codes:
            _translated(_e(code_list, "CodeListItem", CodedValue=code), "Decode", decode)

    admin = etree.Element("AdminData", StudyOID=STUDY_ID)
    for centre, name in SACHA_CENTRES:
        user = _e(admin, "User", OID=f"USR.{centre}", UserType="Investigator")
        etree.SubElement(user, "LoginName").text = f"arc.{centre.lower()}"
        etree.SubElement(user, "DisplayName").text = f"ARC {centre}"
        etree.SubElement(user, "Organization").text = name
        _e(user, "LocationRef", LocationOID=centre)
    for number in (1, 2):
        user = _e(admin, "User", OID=f"USR.MON{number:02d}", UserType="Sponsor")
        etree.SubElement(user, "LoginName").text = f"monitor{number:02d}"
        etree.SubElement(user, "DisplayName").text = f"Moniteur {number:02d}"
        etree.SubElement(user, "Organization").text = "Unicancer, promoteur"
    for centre, name in SACHA_CENTRES:
        location = _e(admin, "Location", OID=centre, Name=name, LocationType="Site")
        _e(location, "MetaDataVersionRef", StudyOID=STUDY_ID, MetaDataVersionOID=MDV_OID,
           EffectiveDate=date(2020, 6, 1).isoformat())
    return study, admin


# -- clinical data ---------------------------------------------------------------------------

def iso(day: PDate | date) -> str:
    """ODM date: `2019-05-17`, or partial `2019-05` / `2019`."""
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


Items = list[tuple[str, str | None]]


class _Subject:
    """The SubjectData of one patient, built item group by item group."""

    def __init__(self, patient: SourcePatient, rng: Random, export_date: date):
        self.patient, self.rng, self.export_date = patient, rng, export_date
        self.element = etree.Element("SubjectData", SubjectKey=patient.patient_key)
        _e(self.element, "SiteRef", LocationOID=patient.centre_id)
        self.forms: dict[tuple[str, str, str], etree._Element] = {}
        self.events: dict[tuple[str, str], etree._Element] = {}

    def group(self, event: str, event_repeat: int | None, form: str, group: str, group_repeat: int | None,
              items: Items, entered: date) -> str:
        """Write one ItemGroupData (first entered in the EDC on `entered`); returns its clear record key."""
        event_key = (event, str(event_repeat))
        if event_key not in self.events:
            attributes = {"StudyEventOID": event}
            if event_repeat is not None:
                attributes["StudyEventRepeatKey"] = str(event_repeat)
            self.events[event_key] = _e(self.element, "StudyEventData", **attributes)
        form_key = (*event_key, form)
        if form_key not in self.forms:
            self.forms[form_key] = _e(self.events[event_key], "FormData", FormOID=form)
        attributes = {"ItemGroupOID": group}
        if group_repeat is not None:
            attributes["ItemGroupRepeatKey"] = str(group_repeat)
        element = _e(self.forms[form_key], "ItemGroupData", **attributes)
        for oid, value in items:
            if value is None:
                continue  # ODM leaves an empty optional item out
            item = _e(element, "ItemData", ItemOID=oid, Value=value)
            if self.rng.random() < AUDIT_SHARE:
                self._audit(item, entered)
        local = f"{event}[{event_repeat or 1}]/{form}[1]/{group}[{group_repeat or 1}]"
        return f"{self.patient.patient_key}|{local}"

    def _audit(self, item: etree._Element, entered: date) -> None:
        """A correction made at the centre or asked for by a monitor, after the entry, before the export."""
        first = min(entered, plus(self.export_date, -1))
        span = (self.export_date - first).days
        day = plus(first, self.rng.randint(0, span - 1))
        stamp = datetime.combine(day, time(0)) + timedelta(seconds=self.rng.randint(7 * 3600, 19 * 3600))
        audit = _e(item, "AuditRecord")
        monitor = self.rng.random() < 0.2
        user = f"USR.MON0{self.rng.randint(1, 2)}" if monitor else f"USR.{self.patient.centre_id}"
        _e(audit, "UserRef", UserOID=user)
        _e(audit, "LocationRef", LocationOID=self.patient.centre_id)
        etree.SubElement(audit, "DateTimeStamp").text = stamp.isoformat() + "Z"
        etree.SubElement(audit, "ReasonForChange").text = self.rng.choice(SACHA_AUDIT_REASONS)


def _set(items: Items, oid: str, value: str) -> None:
    for n, (item, _) in enumerate(items):
        if item == oid:
            items[n] = (oid, value)
            return
    items.append((oid, value))


class SachaOdmWriter:
    """Writes the SACHA ODM export, one patient at a time."""

    def __init__(self, folder: Path, export_date: date):
        self.path = folder / f"SACHA_ODM_{export_date:%Y%m%d}.xml"
        self.export_date = export_date
        self._contexts: list[Any] = []
        self._file: Any = None

    @property
    def paths(self) -> list[Path]:
        return [self.path]

    def __enter__(self) -> SachaOdmWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = datetime.combine(self.export_date, time(1, 30)).isoformat() + "Z"
        xmlfile = etree.xmlfile(str(self.path), encoding="UTF-8")
        self._file = xmlfile.__enter__()
        self._file.write_declaration()
        root = self._file.element(f"{{{ODM_NS}}}ODM", {
            "FileOID": f"SACHA.EXPORT.{self.export_date:%Y%m%d}", "FileType": "Snapshot", "Granularity": "All",
            "CreationDateTime": created, "ODMVersion": "1.3.2", "Originator": "Ennov Clinical",
            "SourceSystem": "Ennov EDC", "SourceSystemVersion": "8.2"}, nsmap={None: ODM_NS})
        root.__enter__()
        self._file.write("\n")
        for element in metadata_elements(self.export_date):
            self._file.write(element, pretty_print=True)
        clinical = self._file.element("ClinicalData", {"StudyOID": STUDY_ID, "MetaDataVersionOID": MDV_OID})
        clinical.__enter__()
        self._contexts = [clinical, root, xmlfile]
        self._file.write("\n")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        clinical, root, xmlfile = self._contexts  # opened in that order: xmlfile, root, clinical
        self._contexts = []
        clinical.__exit__(kind, error, trace)
        self._file.write("\n")
        root.__exit__(kind, error, trace)
        xmlfile.__exit__(kind, error, trace)

    def write_patient(self, patient: SourcePatient, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        subject = _Subject(patient, rng, self.export_date)
        birth, records = self._demographics(subject, patient, rng, plan)
        for n, diagnosis in enumerate(patient.diagnoses, 1):
            records.append(self._diagnosis(subject, n, diagnosis, birth, rng, plan))
        for treatment in patient.treatments:
            records.extend(self._treatment(subject, treatment, rng, plan))
        for n, follow_up in enumerate(patient.follow_ups, 1):
            records.append(self._follow_up(subject, n, follow_up, plan))
        self._file.write(subject.element, pretty_print=True)
        return records

    # -- one method per item group -------------------------------------------------------------
    def _demographics(self, subject: _Subject, patient: SourcePatient, rng: Random,
                      plan: ErrorPlan) -> tuple[PDate, list[EmittedRecord]]:
        person = patient.person
        assert patient.enrolment_date is not None
        eupid = messy.lower_sometimes(rng, patient.exported_eupid, 0.03) if patient.exported_eupid else None
        items: Items = [("DM.SEX", SEX[person.sex]), ("DM.BRTHDTC", iso(patient.birth)),
                        ("DM.COUNTRY", messy.lower_sometimes(rng, person.country, 0.05)), ("DM.EUPID", eupid),
                        ("DM.INCLDTC", iso(patient.enrolment_date)),
                        ("DM.CONSDTC", iso(patient.consent_date) if patient.consent_date else None)]
        birth = patient.birth
        options: list[Option] = [(IMPOSSIBLE_DATE, "enrolment_date"), (IMPOSSIBLE_DATE, "consent_date"),
                                 (INVALID_CODE, "sex"), (OUT_OF_RANGE, "age_at_enrolment_days")]
        error = None
        chosen = plan.choose(options)
        if chosen == (IMPOSSIBLE_DATE, "enrolment_date"):
            error = InjectedError(*chosen, _impossible(plan, patient.enrolment_date))
            _set(items, "DM.INCLDTC", error.value)
        elif chosen == (IMPOSSIBLE_DATE, "consent_date"):
            error = InjectedError(*chosen, _impossible(plan, patient.consent_date or patient.enrolment_date))
            _set(items, "DM.CONSDTC", error.value)
        elif chosen == (INVALID_CODE, "sex"):
            error = InjectedError(*chosen, plan.rng.choice(("7", "0", "M", "3")))
            _set(items, "DM.SEX", error.value)
        elif chosen is not None:
            # A birth year typed wrong makes the patient 31 or older at inclusion.
            birth = PDate(plus(patient.enrolment_date, -int(365.25 * 31) - plan.rng.randint(0, 1500)))
            enrolled = PDate(patient.enrolment_date)
            error = InjectedError(*chosen, str(truth.age_days(enrolled, birth)))
            _set(items, "DM.BRTHDTC", iso(birth))
        key = subject.group("SE.INCLUSION", None, "F.DEMOG", "IG.DEMOG", None, items,
                            patient.enrolment_date)
        record = EmittedRecord(key, [
            ("study_enrolment", truth.enrolment_row(STUDY_ID, patient.centre_id, PDate(patient.enrolment_date), birth)),
            ("consent", truth.consent_row(STUDY_ID, patient.consent_date))], error,
            truth.patient_source_row(patient.centre_id, patient.expected_link_method, person.sex, birth,
                                     person.country))
        return birth, [record]

    def _diagnosis(self, subject: _Subject, n: int, diagnosis: Diagnosis, birth: PDate, rng: Random,
                   plan: ErrorPlan) -> EmittedRecord:
        items: Items = [("DX.EVENT", DX_EVENT[diagnosis.event_type]), ("DX.DIAGDTC", iso(diagnosis.date)),
                        ("DX.LABEL", messy.padded(rng, diagnosis.label or "")), ("DX.MORPH", diagnosis.morphology),
                        ("DX.TOPO", messy.topography(rng, diagnosis.topography, 0.3)), ("DX.BASIS", diagnosis.basis)]
        error = None
        chosen = plan.choose([(IMPOSSIBLE_DATE, "diagnosis_date"), (INVALID_CODE, "icdo3_morphology"),
                              (DATE_ORDER, "diagnosis_date")])
        if chosen == (IMPOSSIBLE_DATE, "diagnosis_date"):
            error = InjectedError(*chosen, _impossible(plan, diagnosis.date.value))
            _set(items, "DX.DIAGDTC", error.value)
        elif chosen == (INVALID_CODE, "icdo3_morphology"):
            error = InjectedError(*chosen, broken_morphology(plan.rng, diagnosis.morphology))
            _set(items, "DX.MORPH", error.value)
        elif chosen is not None:
            error = InjectedError(*chosen, iso(plus(birth.value, -plan.rng.randint(30, 900))))
            _set(items, "DX.DIAGDTC", error.value)
        key = subject.group("SE.INCLUSION", None, "F.DIAG", "IG.DIAG", n, items,
                            subject.patient.enrolment_date or diagnosis.date.value)
        return EmittedRecord(key, [("diagnosis", truth.diagnosis_row(diagnosis, birth))], error)

    def _treatment(self, subject: _Subject, treatment: Treatment, rng: Random, plan: ErrorPlan) -> list[EmittedRecord]:
        line = treatment.line
        drug: str | None = messy.padded(rng, messy.drug_name(rng, treatment.drug))
        atc = messy.lower_sometimes(rng, treatment.atc, 0.03) if treatment.atc else None
        if not treatment.drug_given:  # left out (drawn all the same: the rest of the record stays as it was)
            drug = atc = None
        items: Items = [("TR.DRUG", drug), ("TR.ATC", atc),
                        ("TR.ROUTE", messy.lower_sometimes(rng, ROUTE[treatment.route])),
                        ("TR.STDTC", iso(treatment.start)),
                        ("TR.ENDTC", iso(treatment.end) if treatment.end else None),
                        ("TR.ENDRSN", END_REASON[treatment.end_reason] if treatment.end_reason else None)]
        options: list[Option] = [(IMPOSSIBLE_DATE, "start_date"), (INVALID_CODE, "access_route")]
        if treatment.end:
            options.append((DATE_ORDER, "end_date"))
        error = None
        chosen = plan.choose(options)
        if chosen == (IMPOSSIBLE_DATE, "start_date"):
            error = InjectedError(*chosen, _impossible(plan, treatment.start.value))
            _set(items, "TR.STDTC", error.value)
        elif chosen == (INVALID_CODE, "access_route"):
            error = InjectedError(*chosen, plan.rng.choice(("ATU", "XYZ", "RTU")))
            _set(items, "TR.ROUTE", error.value)
        elif chosen is not None:
            error = InjectedError(*chosen, iso(plus(treatment.start.value, -plan.rng.randint(5, 90))))
            _set(items, "TR.ENDTC", error.value)
        treatment_key = subject.group("SE.TREATMENT", line, "F.TRT", "IG.TRT", None, items,
                                      treatment.start.value)
        records = [EmittedRecord(treatment_key, [("treatment", truth.treatment_row(treatment))], error)]
        for n, event in enumerate(treatment.adverse_events, 1):
            records.append(self._adverse_event(subject, line, n, event, treatment_key, rng, plan))
        for n, response in enumerate(treatment.responses, 1):
            records.append(self._response(subject, line, n, response, treatment_key, rng, plan))
        return records

    def _adverse_event(self, subject: _Subject, line: int, n: int, event: AdverseEvent, treatment_key: str, rng: Random,
                       plan: ErrorPlan) -> EmittedRecord:
        items: Items = [("AE.TERM", event.term), ("AE.MEDDRA", event.meddra), ("AE.GRADE", str(event.grade)),
                        ("AE.STDTC", iso(event.onset)), ("AE.ENDTC", iso(event.end) if event.end else None),
                        ("AE.SER", messy.lower_sometimes(rng, "O" if event.is_serious else "N")),
                        ("AE.REL", RELATEDNESS[event.relatedness]), ("AE.OUT", OUTCOME[event.outcome])]
        options: list[Option] = [(INVALID_CODE, "ctcae_grade"), (IMPOSSIBLE_DATE, "onset_date")]
        if event.end:
            options.append((DATE_ORDER, "end_date"))
        error = None
        chosen = plan.choose(options)
        if chosen == (INVALID_CODE, "ctcae_grade"):
            error = InjectedError(*chosen, plan.rng.choice(("7", "0", "6")))
            _set(items, "AE.GRADE", error.value)
        elif chosen == (IMPOSSIBLE_DATE, "onset_date"):
            error = InjectedError(*chosen, _impossible(plan, event.onset))
            _set(items, "AE.STDTC", error.value)
        elif chosen is not None:
            error = InjectedError(*chosen, iso(plus(event.onset, -plan.rng.randint(2, 30))))
            _set(items, "AE.ENDTC", error.value)
        key = subject.group("SE.TREATMENT", line, "F.AE", "IG.AE", n, items, event.onset)
        return EmittedRecord(key, [("adverse_event", truth.adverse_event_row(event, treatment_key))], error)

    def _response(self, subject: _Subject, line: int, n: int, response: Response, treatment_key: str, rng: Random,
                  plan: ErrorPlan) -> EmittedRecord:
        items: Items = [("RS.DTC", iso(response.date)),
                        ("RS.TPT", messy.lower_sometimes(rng, TIMEPOINT[response.timepoint], 0.03)),
                        ("RS.CRIT", CRITERIA[response.criteria]), ("RS.RESP", response.response)]
        error = None
        chosen = plan.choose([(IMPOSSIBLE_DATE, "assessment_date"), (INVALID_CODE, "response")])
        if chosen == (IMPOSSIBLE_DATE, "assessment_date"):
            error = InjectedError(*chosen, _impossible(plan, response.date))
            _set(items, "RS.DTC", error.value)
        elif chosen is not None:
            error = InjectedError(*chosen, plan.rng.choice(("RC", "RP", "VGPR", "CCR")))
            _set(items, "RS.RESP", error.value)
        key = subject.group("SE.TREATMENT", line, "F.RESP", "IG.RESP", n, items, response.date)
        return EmittedRecord(key, [("response_assessment", truth.response_row(response, treatment_key))], error)

    def _follow_up(self, subject: _Subject, n: int, follow_up: FollowUp, plan: ErrorPlan) -> EmittedRecord:
        items: Items = [("FU.DTC", iso(follow_up.contact_date)), ("FU.STATUS", VITAL_STATUS[follow_up.vital_status]),
                        ("FU.DTHDTC", iso(follow_up.death_date) if follow_up.death_date else None),
                        ("FU.DISEASE", DISEASE_STATUS[follow_up.disease_status or "unknown"])]
        error = None
        chosen = plan.choose([(IMPOSSIBLE_DATE, "contact_date"), (INVALID_CODE, "vital_status"),
                              (OUT_OF_RANGE, "contact_date")])
        if chosen == (IMPOSSIBLE_DATE, "contact_date"):
            error = InjectedError(*chosen, _impossible(plan, follow_up.contact_date))
            _set(items, "FU.DTC", error.value)
        elif chosen == (INVALID_CODE, "vital_status"):
            error = InjectedError(*chosen, plan.rng.choice(("4", "0", "D")))
            _set(items, "FU.STATUS", error.value)
        elif chosen is not None:
            error = InjectedError(*chosen, iso(plus(self.export_date, plan.rng.randint(30, 400))))
            _set(items, "FU.DTC", error.value)
        key = subject.group("SE.FOLLOWUP", n, "F.FU", "IG.FU", None, items, follow_up.contact_date)
        return EmittedRecord(key, [("follow_up", truth.follow_up_row(follow_up))], error)
