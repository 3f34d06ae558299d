"""Keyed pseudonyms: the only way a patient key enters the warehouse.

A pseudonym is HMAC-SHA256 of the source's patient key under a secret key, so the same
patient always gets the same pseudonym, nobody without the key can recompute it, and no
clear patient number is ever stored. The key comes, in order, from an explicit value (the
Airflow Variable or secrets backend), env `RTW_PSEUDONYM_KEY`, or a key file in the home,
created with mode 0600 on first use. The key is never logged or printed: `PseudonymKey`
hides it in its repr.
A key is told apart from another by its fingerprint, an HMAC of a fixed label under the key:
the warehouse records it, and the key guard (etl/transform/keyguard.py) refuses a run whose key
has another one, before a missing key file would be silently created anew.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from etl import fsio

KEY_ENV = "RTW_PSEUDONYM_KEY"
log = logging.getLogger(__name__)
_DIGEST_CHARS = 24  # 96 bits: collisions are negligible at registry scale, ids stay readable
_SEPARATOR = "\x1f"  # unit separator: cannot appear in keys, so parts never run together
_FINGERPRINT_LABEL = b"rtw pseudonymisation key fingerprint v1"


_REMEMBERED = 1 << 17  # digests a key keeps: a harmonise part's patients, ~30 MB at most


@dataclass(frozen=True)
class PseudonymKey:
    secret: bytes = field(repr=False)
    # Harmonise asks for the same patient's pseudonyms once per record: an HMAC is computed once.
    _digests: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        return "PseudonymKey(<hidden>)"

    def digest(self, *parts: str) -> str:
        message = _SEPARATOR.join(parts)
        found = self._digests.get(message)
        if found is None:
            if len(self._digests) >= _REMEMBERED:
                self._digests.clear()
            found = self._digests[message] = hmac.new(self.secret, message.encode("utf-8"),
                                                      hashlib.sha256).hexdigest()[:_DIGEST_CHARS]
        return found

    def derived(self, purpose: str) -> bytes:
        """A key for another use (`purpose`, e.g. "pull ledger"): an HMAC of a label under the key, so its holder
        can compute neither the key nor a pseudonym; never stored, as the key is not."""
        return hmac.new(self.secret, f"rtw {purpose} key v1".encode(), hashlib.sha256).digest()

    def fingerprint(self) -> str:
        """Identifies the key without revealing it. Not a plain hash of the key (that would match the
        same key's hash anywhere else), and the label has no separator, so it never equals a pseudonym."""
        return hmac.new(self.secret, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def load_key(key_file: Path, explicit: str | None = None) -> PseudonymKey:
    """The pseudonymisation key: explicit value, else env, else the key file (created if missing). A blank one is
    refused (anyone could compute its pseudonyms); a short one is said once a process (`SHORT_KEY_CHARS`)."""
    value = explicit or os.environ.get(KEY_ENV)
    if value:
        return _checked(value, "the key given" if explicit else f"env {KEY_ENV}")
    if not key_file.exists():
        fsio.create_exclusive(key_file, secrets.token_hex(32).encode())  # whole or absent, 0600; first wins
    return _checked(key_file.read_text().strip(), str(key_file))


SHORT_KEY_CHARS = 32  # the generated keys have 64 hex characters; a shorter one may be guessed offline
NEW_KEY_HINT = "e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`"


class BlankKey(ValueError):
    """The pseudonymisation key is empty or blanks only."""


def _checked(value: str, where: str) -> PseudonymKey:
    if not value.strip():
        raise BlankKey(f"the pseudonymisation key in {where} is blank: give one of at least {SHORT_KEY_CHARS} "
                       f"characters, {NEW_KEY_HINT}")
    if len(value) < SHORT_KEY_CHARS:
        _said_short(where, len(value))
    return PseudonymKey(value.encode("utf-8"))


@functools.cache
def _said_short(where: str, length: int) -> None:
    log.warning("the pseudonymisation key in %s has %d characters, fewer than %d: a short key can be guessed "
                "offline and every pseudonym with it; rotate it with `rtw rekey --new-key-file` (docs/operations.md)",
                where, length, SHORT_KEY_CHARS)


def key_file_readings(key_file: Path) -> list[PseudonymKey]:
    """The key a key file holds, for matching a fingerprint: without the blanks and line break around it, as
    runs read the key file (`load_key`), and, when there are any, as written: rekey keeps a key given in env as
    runs used it (a Variable saved with a trailing newline), and that key is another key once stripped."""
    written = key_file.read_bytes()
    stripped = key_file.read_text(encoding="utf-8").strip().encode("utf-8")
    return [PseudonymKey(stripped)] + ([PseudonymKey(written)] if written != stripped else [])


def key_is_configured(key_file: Path, explicit: str | None = None) -> bool:
    """A key exists (explicit, env or key file); False: `load_key` would create a new one."""
    return bool(explicit or os.environ.get(KEY_ENV)) or key_file.exists()


def normalise_patient_key(source_patient_key: str) -> str:
    """Centres pad and case patient numbers inconsistently; ' 07-0042 ' and '07-0042' are one patient."""
    return source_patient_key.strip().upper()


def source_pseudonym(key: PseudonymKey, source_id: str, source_patient_key: str) -> str:
    """The pseudonym of a patient within one source."""
    return key.digest("source", source_id, normalise_patient_key(source_patient_key))


_EUPID_HEAD = "EU"
_CROCKFORD_DIGITS = str.maketrans("ILO", "110")  # the letters Crockford base 32 reads as digits
_SHORTEST_EUPID = 8  # letters and digits


def eupid_form(eupid: str) -> str:
    """An EUPID as sources are linked by it: its letters and digits, upper case, and after its `EU` the letters
    Crockford base 32 reads as digits read so (I and L as 1, O as 0: no EUPID symbol, and a hand copies
    `EUCK1QGG7D` as `EUCKLQGG7D`). Sources write one EUPID `EU9EE0KVCH`, `eu9ee0kvch` and `EU-9EE0-KVCH` (its
    symbols are Crockford base 32's, whose hyphens are read past), or with a space or an invisible character
    copied in: read as written, one child became two persons, their EUPIDs told apart and the pair kept off the
    review list, which no reviewer could link. "" when it is no one's EUPID: fewer than 8 letters and digits, or
    one symbol repeated after its `EU` (a source's "not known": `NK`, `UNK`, `0`, `EU00000000`), which linked
    every child of two sources so written into one person."""
    form = "".join(character for character in unicodedata.normalize("NFKC", eupid) if character.isalnum()).upper()
    head, symbols = (form[:2], form[2:]) if form.startswith(_EUPID_HEAD) else ("", form)
    symbols = symbols.translate(_CROCKFORD_DIGITS)
    return head + symbols if len(form) >= _SHORTEST_EUPID and len(set(symbols)) > 1 else ""


def person_id(key: PseudonymKey, source_id: str, source_patient_key: str, eupid: str | None) -> str:
    """The warehouse patient_id: from the EUPID when there is one, so sources link; else per source."""
    if eupid and (form := eupid_form(eupid)):
        return key.digest("eupid", form)
    return key.digest("person", source_id, normalise_patient_key(source_patient_key))


# A shorter patient number is found in any text and alone names nobody: "7", or digits only ("2503"
# is in an HGVS c.2503G>T, a year, a dose), which count from six.
_SHORTEST_KEY_HIDDEN, _SHORTEST_NUMBER_HIDDEN = 4, 6


def names_a_patient(source_patient_key: str) -> bool:
    """Whether a patient key, found in a text or a file name, would name its patient (see above)."""
    norm = normalise_patient_key(source_patient_key)
    return len(norm) >= (_SHORTEST_NUMBER_HIDDEN if norm.isdigit() else _SHORTEST_KEY_HIDDEN)


def holds_patient_key(text: str, source_patient_key: str) -> bool:
    """Whether a free text repeats the patient's own number (a note naming the patient), whatever its
    case and whichever separators join its runs ('-', '_', ' ' or a dash or space Word or Excel typed for them:
    ILTB\u201300012 for ILTB-00012, as the screen reads any patient's number; '/', '.', a tab, or none: ILTB00012,
    010002 for 01-0002), spaced or not (ILTB \u2013 00012),
    with marks no one sees typed or pasted into it or not (a zero-width space, a soft hyphen), standing on its own
    (not inside a longer run of letters or digits): such a text cannot leave harmonise as it is."""
    longest_run, written = _own_number(source_patient_key)
    folded = as_seen(text).casefold()
    if not written or longest_run not in folded:
        return False  # most texts: not even the number's longest run of letters or digits is there
    return re.search(written, folded) is not None


# Format characters (Unicode's Cf) a reader never sees in a text of our languages: a soft hyphen, zero-width spaces
# and joiners, bidi marks and isolates, word joiners, a byte order mark, tags
UNSEEN = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
                    "\ufff9-\ufffb\U000e0001\U000e0020-\U000e007f]")


_OTHER_DIGITS = re.compile(r"(?![0-9])\d")  # a digit of another script: full-width １０/０８/２０１２, Arabic-Indic


def as_seen(text: str) -> str:
    """The text as a reader sees it (without the `UNSEEN`): read past, such marks hide no number; a digit of another
    script as the digit it is (a full-width date is a date)."""
    if text.isascii():
        return text
    return _OTHER_DIGITS.sub(lambda digit: str(unicodedata.digit(digit.group())), UNSEEN.sub("", text))


@functools.lru_cache(maxsize=1 << 10)  # harmonise asks patient after patient, each for all of their texts
def _own_number(source_patient_key: str) -> tuple[str, str]:
    """A patient number's longest run of letters and digits (case-folded), and the regex of the number standing
    on its own in a case-folded text, each separator as any (file_names.TYPED_SEPARATORS), spaces around it or
    not; no regex for a number that names nobody (`names_a_patient`)."""
    from etl.extract.file_names import NOTE_SEPARATOR, TYPED_SEPARATORS  # here: file_names imports this module
    norm = as_seen(normalise_patient_key(source_patient_key)).casefold()
    if not names_a_patient(norm):
        return "", ""
    # any separator or none: ILTB00012, 010002 for 01-0002
    number = "".join(NOTE_SEPARATOR if c in TYPED_SEPARATORS else re.escape(c) for c in norm)
    return max(re.findall(r"[^\W_]+", norm) or [""], key=len), rf"(?<![^\W_]){number}(?![^\W_])"


def published_key(key: PseudonymKey, source_id: str, source_patient_key: str, local: str,
                  shows: Callable[[str], bool] | None = None) -> str:
    """`<pseudonym>|<local part>`: traceable, never clear. The local part (a record number, a form's
    keys) has the patient's own number replaced by the pseudonym wherever it holds it, even inside a
    longer number ("12345-01"): a wrong replacement there costs nothing.

    shows: whether a local part shows what no key may, asked with the patient's own number taken out
    (harmonise `publish_keys`: a number of the source's patient-key shape, typed into a record number, or the
    patient's own birth date). Such a local part, and one that holds the patient's own number in a case only
    case-folding finds (straße12 in STRASSE12-01), is published as `hidden_local`."""
    pseudonym = source_pseudonym(key, source_id, source_patient_key)
    norm = normalise_patient_key(source_patient_key)
    if len(norm) < _SHORTEST_KEY_HIDDEN or norm.casefold() not in local.casefold():
        return f"{pseudonym}|{shown_local(key, pseudonym, local, shows)}"
    own = re.compile(re.escape(norm), re.IGNORECASE)  # compiled only for the few that hold it: one per patient
    shown = own.sub(pseudonym, local)
    if norm.casefold() in shown.casefold() or (shows and shows(own.sub(" ", local))):
        shown = hidden_local(key, pseudonym, local)
    return f"{pseudonym}|{shown}"


def shown_local(key: PseudonymKey, first: str, local: str, shows: Callable[[str], bool] | None) -> str:
    """A local part as its record key shows it beside `first` (the pseudonym, or that the record has no patient
    key): as it is, or `hidden_local` when `shows` says it shows what no key may."""
    return hidden_local(key, first, local) if shows is not None and shows(local) else local


def hidden_local(key: PseudonymKey, pseudonym: str, local: str) -> str:
    """A local part that may not be shown, as a digest keyed by the key: the same record keeps it night after
    night and records keep apart, but a guess (each day of a decade for a birth date, a registry's few
    thousand patient numbers) cannot be checked against it, as it could against a plain hash beside the
    pseudonym it is published with."""
    return key.digest("record", pseudonym, local)


def publish_record_key(key: PseudonymKey, source_id: str, clear_record_key: str) -> str:
    """`<patient key>|<local part>` -> `<pseudonym>|<local part>` (`published_key`), for a patient key
    without "|"; harmonise hands the two parts apart."""
    patient_key, sep, local = clear_record_key.partition("|")
    if not sep:
        raise ValueError(f"record key {clear_record_key!r}: expected '<patient key>|<local part>'")
    return published_key(key, source_id, patient_key, local)


def record_id(source_id: str, table: str, published_record_key: str) -> str:
    """A stable row id. The record key is already pseudonymous, so a plain hash suffices."""
    message = _SEPARATOR.join((source_id, table, published_record_key)).encode("utf-8")
    return hashlib.sha256(message).hexdigest()[:_DIGEST_CHARS]
