"""Which columns' values identify a person, told by the column's name or label alone.

Shared by `rtw profile` (etl/onboard/profile.py: such a column's values are never shown, nor drafted
as codes) and the nightly readers' notices (etl/extract/readstat.py: such a variable's value labels and
declared missing values are counted, not listed; a registry may label its patient numbers with the
patients' names). Plain `re`, no pandas: every run's readers import it.
"""

from __future__ import annotations

import re

# Names and labels of columns whose values identify a person (in the languages of our sources).
IDENTIFYING_NAME = re.compile(
    r"subj|pati.nt|paziente|paciente|(?<![a-z])paz(?![a-z])|patno|pat_?id|pid\b|usubjid|eupid|mrn|nhs|ssn|insee|(?<![a-z])ipp(?![a-z])|"
    r"(?<![a-z])nip(?![a-z])|(?<![a-z])fall_?n(?:r|ummer)|(?<![a-z])dossier(?:_?n|$)|(?<![a-z])nhc(?![a-z])|"
    r"(?<![a-z])historia(?:_?cl|$)|(?<![a-z])pat_?(?:nr|no|num)|(?<![a-z])dni(?![a-z])|codice_?fiscale|"
    r"name|nom\b|nome|nombre|apellido|naam|initial|birth|brth|dob\b|nascita|naiss|geburt|nacim|nascim|geboort|"
    r"address|email|phone|tel\b",
    re.IGNORECASE)
# Labels are sentences ("Subject Death Flag", "Sexo del paciente"), so only phrases that name an identifier count: a
# patient's number in our sources' languages ("Número de paciente", "N° dossier", "Codice paziente", Patientennummer).
_NUMBER_WORD = (r"(?:n[úu]mero|num[ée]ro|n[º°o.]|nr\.?|nummer|id|identificador|identifiant|identificativo|"
                r"c[óo]digo|codice|code)")
_PERSON_WORD = r"(?:paciente|patient|paziente|pati[eë]nt|sujet|sujeto|soggetto|dossier)"
IDENTIFYING_LABEL = re.compile(
    rf"(?<![\w]){_NUMBER_WORD}\s*(?:(?:de la|de|del|du|di|dei|van|van de)\s+)?{_PERSON_WORD}\b|"
    rf"\b{_PERSON_WORD}(?:en)?[\s-]*(?:nummer|nr|id|kennung)\b|"
    r"(subject|patient|participant)\s+(id|identifier|number|no|key|code)\b|\bname\b|initials|birth|"
    r"\bnom\b|pr[ée]nom|\bnombre\b|apellido|vorname|nachname|cognome|\bnaam\b|nascita|geburt|nacimiento|nascimento|"
    r"geboorte|eupid|unified patient",
    re.IGNORECASE)


def looks_identifying(name: str, label: str | None = None) -> bool:
    """Whether a column named `name` (labelled `label`) holds values that identify a person: a patient
    number, a name, a birth date, an address (`pat_nr`, `apellido1`, `fecha_nacimiento`; `v1` labelled
    'Número de paciente')."""
    return bool(IDENTIFYING_NAME.search(name) or (label and IDENTIFYING_LABEL.search(label)))
