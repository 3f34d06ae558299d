"""Which columns' values identify a person, told by the column's name or label alone, and which tables of value
labels may name one whatever their column's name.

Shared by `rtw profile` and `rtw scaffold` (etl/onboard/profile.py: such a column's values are never shown, nor
drafted as codes; a table of more than `MANY_LABELS` value labels is counted, neither listed nor drafted) and the
nightly readers' notices (etl/extract/readstat.py: such a variable's value labels and declared missing values are
counted, not listed; a registry may label its patient numbers with the patients' names). Plain `re`, no pandas:
every run's readers import it.
"""

from __future__ import annotations

import re
from collections.abc import Sized

#: a variable with more value labels has them counted, never listed, whatever its name: so long a table may give
#: each patient's number its name (a register's `v1` labelled 'Zoë García Pérez'), and six of its labels tell a
#: reviewer little of a real code list that long (a hospital's, a histology's)
MANY_LABELS = 20

# Names and labels of columns whose values identify a person (in the languages of our sources).
IDENTIFYING_NAME = re.compile(
    r"subj|pati.nt|paziente|paciente|(?<![a-z])paz(?![a-z])|patno|pat_?id|pid\b|usubjid|eupid|mrn|nhs|ssn|insee|(?<![a-z])ipp(?![a-z])|"
    r"(?<![a-z])nip(?![a-z])|(?<![a-z])fall_?n(?:r|ummer)|(?<![a-z])dossier(?:_?n|$)|(?<![a-z])nhc(?![a-z])|"
    r"(?<![a-z])historia(?:_?cl|$)|(?<![a-z])pat_?(?:nr|no|num)|(?<![a-z])dni(?![a-z])|codice_?fiscale|"
    r"name|nom(?![a-z])|nome|nombre|nominativ|apellido|naam|nazwisk|(?<![a-z])imi[eę](?![a-z])|initial|"
    r"birth|brth|dob\b|nascita|naiss|geburt|nacim|nascim|geboort|"
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


def too_many_labels(labels: Sized) -> bool:
    """Whether a table of value labels is too long to list (more than `MANY_LABELS`): it may name each patient
    under a plain name (`v17`, `ref`), so its labels are counted, not listed, however its column is named."""
    return len(labels) > MANY_LABELS
