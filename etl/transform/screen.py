"""Screen a text for what it may not show of a source's patients: their numbers, birth dates and EUPIDs.

A value typed into a field may name another patient than the record's own: `see also ILTB-00002,
born 2024-01-15` in a tumour board's reason, `TREP-000002` typed into a laterality. The record's own
number and birth date are caught by harmonise; this catches those of every patient of the source:

- a patient number is anything shaped like one of the source's patient keys (each run of digits and
  of letters by its length, '-', '_' and ' ' alike, and any Unicode dash or space as one of them, such as the
  en dash Word puts for '-', spaced around or not, and where letters meet digits '/', '.', a tab or none: ILTB00002;
  etl/extract/file_names.py `key_shape`), so the
  number of a patient of another part, or of none yet, is found too; run into a word before it
  (`seen by PatID1234` for keys ID0001: the letters of three keys or more, as the keys write them and join
  them to their digits, their digits as many: `PatientNumbers.key_pattern`; a file name takes them in any
  case and across '-', '_' or ' ', where a word's end costs only the name's detail), so a dose, a date,
  `ISO8601` or `visit 2026` stays; and in a free text (not a record key) anything shaped like another source's keys
  (`others`: a tumour board's note names a registry's patient), each source's shapes its own keys';
- a birth date is a date written as a day (2024-01-15, 15/01/2024, 01/15/2024, 20240115, 15.01.24, 15 01 2024,
  15 January 2024, 15JAN2024, 1er janvier 2024, ...: etl/transform/days.py `DAY_WRITTEN`) that is the birth date of a
  patient of the source, or that falls in the birth month of one whose source gives the month only (the text
  would tell the day the warehouse never holds); and any day in digits the words before it call a birth date
  (`DOB 08112011`, `née le 8/11/11`, `geb. am 8.11.2011`: `_BIRTH_SAID`), whoever's it is and however written;
- an EUPID is one the source delivers for any of its patients, a whole token of letters and digits in any
  case, or written in parts as linkage reads it (`EU-9EE0-KVCH`, `EU - 9EE0 - KVCH` or `EU 9EE0 KVCH` of
  `EU9EE0KVCH`: a mark or spaces between its parts; full-width letters too) (harmonise uses the EUPID field as written
  and loads it hashed; in another field it names a person across registries). Not in a record key (`holds_number`):
  its key would change as patients arrive.

Each is read in a text as it is seen: marks no one sees typed or pasted into it (a zero-width space, a soft hyphen)
hide nothing (pseudonym.as_seen). `screened` replaces each by `{patient}` or `{date}` (a text loaded as written keeps
the rest);
`holds` says whether a value may be quoted in a message at all (a birth date to the day only); `holds_number`
whether it holds a number of a key's shape, whoever's birth dates the source holds (a record key: it stays the
same as patients arrive and leave, unless one brings or takes away a key's shape, and hides the record's own
patient's birth date by `shows_day`). A date
that is nobody's birth date stays, and so does a number of no key's shape; neither can find a name, a
place, or a day written in words (`the third of March 2014`): those only a reader can see (docs/privacy.md).

Cheap by construction: the shapes, dates and EUPIDs are gathered once per source (the births only when a text
first holds a digit; etl/transform/parts.py `source_screen`: every part of a large source is screened by
every patient of it), and a text without a digit is passed by without a regex (but a look-up of its tokens, when
the source has EUPIDs). A patient's free text
carried over from the last load is screened anew when the screen changed since (`fingerprint`,
etl/transform/carry_over.py): a note names a patient who arrived later; none is carried over when the keys'
shapes changed (`key_fingerprint`): a record key of the new shape is hidden, one of a shape gone shown.

What a person types into the warehouse (`rtw link/unlink --note`, a centre's comment on a query) is
screened the same way before it is stored (`typed_text_screen`): by every source's keys and EUPIDs, and by the
birth months the warehouse holds (it has no day: any day of such a month is taken for one); a centre's comment has
every day hidden (`hide_days`, etl/quality/responses.py): it corrects a birth date in a month not held.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow.parquet as pq

from etl.config import SOURCES_DIR, Home
from etl.extract.adapter import STAGED_NAME, adapter_for, record_column
from etl.extract.file_names import PATIENT, PatientNumbers, shapes_pattern, staged_keys
from etl.transform.days import DATE, DAYS, day_readings, days_shown
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.pseudonym import as_seen, eupid_form, names_a_patient
from etl.transform.values import PartialDate

log = logging.getLogger(__name__)

_DIGIT = re.compile(r"\d")
_TOKEN = re.compile(r"[^\W_]+")  # a run of letters and digits: where an EUPID is looked for
# Between an EUPID's parts written apart: a mark, spaced or not, or spaces (EU-9EE0-KVCH, EU - 9EE0, EU 9EE0 KVCH)
_PARTS_APART = re.compile(r"\s{0,2}(?:[^\w\s]|_)?\s{0,2}")
T = TypeVar("T")
_IN_KEYS_KEPT = 1 << 16  # texts judged and kept (TextScreen.in_key, names_a_patient)
# A day in digits right after words that say it is a birth date, in the network's languages (DOB 08112011, né le
# 8/11/11, geb. am 8.11.2011): hidden whoever's it is and however written, even as the screen reads no other day
# (eight digits day first, a year of two digits unpadded); a year alone stays (the warehouse holds birth years).
# The digits are looked for first (few notes hold any), then the words just before them. Each alternative starts with
# a digit, and what stands before it is judged after: a regex starting with a look-behind is tried at every character
# (7 times slower).
_DAY_DIGITS = re.compile(r"\d(?:\d{3}(?P<iso>[./-])\d{1,2}(?P=iso)\d{1,2}"
                         r"|\d?(?P<mark>[./-])\d{1,2}(?P=mark)(?:\d{4}|\d{2})"
                         r"|\d?\s\d{1,2}\s(?:\d{4}|\d{2})|\d{7}|\d{5})(?!\d)")
_BIRTH_SAID = re.compile(
    r"(?<![^\W\d_])(?:born|b\.|dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|n[ée]e?|ddn|date\s+de\s+naissance"
    r"|geb\.?|geboren|geburtsdatum|nat[oa]|data\s+di\s+nascita|nacid[oa]|fecha\s+de\s+nacimiento|nascid[oa]"
    r"|data\s+de\s+nascimento|geboortedatum|urodzon[ya]|data\s+urodzenia)(?![^\W\d_])"
    r"[\s:=,]{0,3}(?:(?:le|am|il|el|on|em|op|dnia|the)\s+)?$", re.IGNORECASE)
_SAID_BEFORE = 40  # characters before a day where its words are looked for


def _kept(memo: dict[str, T], text: str, judged: Callable[[str], T]) -> T:
    """What `judged` says of `text`, judged once while `memo` keeps it (at most _IN_KEYS_KEPT texts: emptied when
    full, as a source numbering every record apart repeats none)."""
    if (found := memo.get(text)) is None:
        if len(memo) >= _IN_KEYS_KEPT:
            memo.clear()
        found = memo[text] = judged(text)
    return found


def _births_said(text: str) -> Iterator[re.Match[str]]:
    """Each day in digits a text says is a birth date (`_BIRTH_SAID`)."""
    for day in _DAY_DIGITS.finditer(text):
        before = text[max(0, day.start() - _SAID_BEFORE):day.start()]
        if not before[-1:].isdigit() and before[-1:] not in "./-" and _BIRTH_SAID.search(before):
            yield day


def _read(token: str) -> str:
    """A token as an EUPID is looked up: upper case, a full-width or other compatibility form as linkage reads
    it (`eupid_form`: NFKC)."""
    return (token if token.isascii() else unicodedata.normalize("NFKC", token)).upper()


class TextScreen:
    """A source's patient numbers (by their keys' shapes), birth dates and EUPIDs, found in a text."""

    def __init__(self, numbers: PatientNumbers, births: Callable[[], Iterable[PartialDate]],
                 eupids: Callable[[], Iterable[str]] = tuple,
                 others: Callable[[], Iterable[frozenset[str]]] = tuple) -> None:
        """others: the other sources' keys' shapes (other_sources.py), which a free text is screened by too: a
        tumour board's note names a registry's patient. Not a record key (`holds_number`)."""
        self._numbers = numbers
        self._births = births
        self._eupids_given = eupids
        self._others = others
        self._in_keys: dict[str, tuple[bool, frozenset[date]]] = {}
        self._patients_named: dict[str, bool] = {}  # `names_a_patient`'s memo
        self._others_seen: frozenset[str] | None = None  # once `_text_keys` is made

    @classmethod
    def of(cls, keys: Iterable[str], births: Iterable[PartialDate], eupids: Iterable[str] = ()) -> TextScreen:
        known, linked = list(births), list(eupids)
        return cls(PatientNumbers.of(keys), lambda: known, lambda: linked)

    @functools.cached_property
    def _eupids(self) -> frozenset[str]:
        """The source's EUPIDs (upper-case), those long enough to name anyone (as a patient key: `names_a_patient`):
        each as written and as linkage reads it (`eupid_form`: `EU-9EE0-KVCH` is `EU9EE0KVCH` in a text too)."""
        return frozenset(e for given in self._eupids_given() for e in {given.strip().upper(), eupid_form(given)}
                         if names_a_patient(e))

    @functools.cached_property
    def _eupid_pattern(self) -> re.Pattern[str] | None:
        """The EUPIDs written with more than letters and digits (none of the EUPID format's), each taken whole in any
        case; those of letters and digits are found among a text's tokens (`_TOKEN`), a set's look-up each."""
        odd = sorted((e for e in self._eupids if not e.isalnum()), key=lambda e: (-len(e), e))
        return re.compile(rf"(?<![^\W_])(?:{'|'.join(map(re.escape, odd))})(?![^\W_])", re.IGNORECASE) if odd else None

    @functools.cached_property
    def hides_without_digit(self) -> bool:
        """Whether a text without a digit may hold what the screen hides: an EUPID of letters only (EUABCDEFGH)."""
        return any(not any(c.isdigit() for c in e) for e in self._eupids)

    @functools.cached_property
    def _eupids_in_order(self) -> list[str]:
        """The source's EUPIDs as linkage reads them (letters and digits only), in order: what a run of tokens
        written apart may begin (`_begins_one`), without a set of every beginning (a registry's 100,000 EUPIDs)."""
        return sorted(e for e in self._eupids if e.isalnum())

    @functools.cached_property
    def _eupid_heads(self) -> frozenset[str]:
        """The first one and two characters of the EUPIDs: a token that begins none of them is passed at once."""
        return frozenset(e[:n] for e in self._eupids_in_order for n in (1, 2))

    def _begins_one(self, read: str) -> bool:
        if read[:2] not in self._eupid_heads:
            return False
        ordered = self._eupids_in_order
        at = bisect.bisect_left(ordered, read)
        return at < len(ordered) and ordered[at].startswith(read)

    def _eupids_hidden(self, text: str) -> str:
        """The text with each of the source's EUPIDs in it replaced by {patient}: as written, or as linkage reads
        it (`eupid_form`), a whole token or tokens a mark apart that read together as one (`EU-9EE0-KVCH`,
        `eu 9ee0 kvch`, `EU - 9EE0 - KVCH`, a full-width `ＥＵ９ＥＥ０ＫＶＣＨ` of `EU9EE0KVCH`)."""
        if not self._eupids:
            return text
        if any(self._begins_one(_read(t)) for t in _TOKEN.findall(text)):  # most texts name none
            text = self._parts_hidden(text)
        return self._eupid_pattern.sub(PATIENT, text) if self._eupid_pattern is not None else text

    def _parts_hidden(self, text: str) -> str:
        """`_eupids_hidden`'s tokens: each run of tokens a mark apart that reads as one EUPID, the longest."""
        tokens = [(m.start(), m.end(), _read(m.group())) for m in _TOKEN.finditer(text)]
        spans, at = [], 0
        while at < len(tokens):
            start, _, read = tokens[at]
            last = at if read in self._eupids else None
            after = at
            while self._begins_one(read) and after + 1 < len(tokens) \
                    and _PARTS_APART.fullmatch(text[tokens[after][1]:tokens[after + 1][0]]):
                after += 1
                read += tokens[after][2]
                if read in self._eupids:
                    last = after
            if last is None:
                at += 1
                continue
            spans.append((start, tokens[last][1]))
            at = last + 1
        for start, end in reversed(spans):
            text = text[:start] + PATIENT + text[end:]
        return text

    @functools.cached_property
    def _pattern(self) -> DaysOr:
        """A day, or a number of the source's keys' shapes (a record key's local part: `holds_number`)."""
        return DaysOr(self._numbers.key_pattern)

    @functools.cached_property
    def _other_shapes(self) -> frozenset[str]:
        return frozenset().union(*self._others())

    @functools.cached_property
    def _text_keys(self) -> re.Pattern[str] | None:
        """The shapes of the source's keys and of every other source's (`others`): what a free text may not show."""
        self._others_seen = self._other_shapes
        return shapes_pattern(self._numbers.text_shapes | self._other_shapes)

    @property
    def own_shapes(self) -> frozenset[str]:
        """The shapes of the source's own keys (`PatientNumbers.text_shapes`), kept for the other sources' screens."""
        return self._numbers.text_shapes

    @property
    def others_seen(self) -> frozenset[str] | None:
        """The other sources' shapes the screen looked for, once a text or the fingerprint asked it (None: nothing
        did, and no text of the source was screened)."""
        return self._others_seen

    @functools.cached_property
    def _text_pattern(self) -> DaysOr:
        return DaysOr(self._text_keys)

    @functools.cached_property
    def _birth_days(self) -> tuple[frozenset[date], frozenset[tuple[int, int]]]:
        """The birth dates given to the day, and the (year, month) of those given to the month."""
        days, months = set(), set()
        for birth in self._births():
            if birth.precision == "day":
                days.add(birth.value)
            elif birth.precision == "month":
                months.add((birth.value.year, birth.value.month))
        return frozenset(days), frozenset(months)

    def _is_birth(self, written: str, by_month: bool) -> bool:
        """Whether a day written as digits, read any way it may be, is a birth date of the source (`by_month`:
        or in the birth month of a patient known to the month)."""
        days, months = self._birth_days
        if not by_month:
            months = frozenset()
        if not days and not months:
            return False
        return any(read in days or (read.year, read.month) in months for read in day_readings(written))

    def _hidden(self, match: re.Match[str], is_day: bool, by_month: bool = True) -> str | None:
        """What a match of `_text_pattern` is replaced by; None: it names nobody and stays."""
        if not is_day:
            return PATIENT
        day = match.group("day")
        if self._is_birth(day, by_month):
            return DATE
        keys = self._text_keys
        return PATIENT if keys is not None and keys.fullmatch(day) else None  # a key of eight digits

    def fingerprint(self, secret: bytes) -> str:
        """A digest of what the screen looks for (the keys' shapes, the birth days and months), keyed by
        `secret`: it cannot be recomputed from guessed birth dates. Equal fingerprints screen a text alike."""
        days, months = self._birth_days
        keys = self._text_keys
        looked_for = json.dumps([keys.pattern if keys is not None else None, sorted(day.isoformat() for day in days),
                                 sorted(months), *([sorted(self._eupids), "in parts"] if self._eupids else []),
                                 _BIRTH_SAID.pattern])
        return hmac.new(secret, looked_for.encode(), hashlib.sha256).hexdigest()

    def key_fingerprint(self, secret: bytes) -> str:
        """A digest of the keys' shapes alone, keyed by `secret`: equal ones judge a record key's local part alike
        (`holds_number`, `in_key`), whoever's birth dates the source holds."""
        return hmac.new(secret, json.dumps([self._key_shapes()]).encode(), hashlib.sha256).hexdigest()

    def _key_shapes(self) -> str | None:
        keys = self._numbers.key_pattern
        return keys.pattern if keys is not None else None

    def holds(self, text: str) -> bool:
        """Whether the text holds a number shaped like a patient key of the source, or a birth date of it given
        to the day. Not a day in a birth month: in a source giving months only, nearly every refused date
        (12/13/2021 for 13/12/2021) would be, and a query that cannot quote it is hard to answer. Or one of the
        source's EUPIDs. Read as seen (`as_seen`): a zero-width space typed into a number hides it from no reader."""
        text = as_seen(text)
        if self._eupids and self._eupids_hidden(text) != text:
            return True
        if not _DIGIT.search(text):
            return False
        if next(_births_said(text), None) is not None:
            return True
        return any(self._hidden(m, is_day, by_month=False) is not None
                   for m, is_day in self._text_pattern.finditer(text))

    def holds_number(self, text: str) -> bool:
        """Whether the text holds a number shaped like a patient key of the source, whoever's it is (a day is read
        as a day, unless it has a key's shape itself: eight digits). Not a birth date: what a record key may not
        show (harmonise `publish_keys`). The answer follows the shapes of every key of the source: a patient with
        a key of a new shape can make it yes for another patient's record (`key_fingerprint`)."""
        text = as_seen(text)
        if not _DIGIT.search(text) or (keys := self._numbers.key_pattern) is None:
            return False
        return any(not is_day or keys.fullmatch(m.group("day")) for m, is_day in self._pattern.finditer(text))

    def names_a_patient(self, text: str) -> bool:
        """Whether the text holds the number of one of the source's patients, found by their keys' shapes and read as
        one of the keys (a shape alone does not do: a centre's code may have one): what a code used as written, a
        centre, may not hold (harmonise holds such a record back). Judged once per text: a source's few centres
        repeat on every record (bounded as `in_key`'s memo)."""
        return _kept(self._patients_named, text, self._names_a_patient)

    def _names_a_patient(self, text: str) -> bool:
        seen = as_seen(text)
        return (_DIGIT.search(seen) is not None and self._numbers.key_pattern is not None
                and any(self._numbers.is_key(m.group("day") if is_day else m.group(0))
                        for m, is_day in self._pattern.finditer(seen)))

    def in_key(self, local: str) -> tuple[bool, frozenset[date]]:
        """What a record key's local part shows: whether a number of the keys' shape (`holds_number`), and the
        days it may be read as (`days_shown`, for the record's own birth date). Judged once per local part: a
        form's keys repeat across every patient (harmonise `publish_keys`); a registry numbering every record
        apart repeats none, so the memo is bounded."""
        return _kept(self._in_keys, local, lambda text: (self.holds_number(text), days_shown(text)))

    def screened(self, text: str) -> str:
        """The text with each patient number (or EUPID of the source) replaced by {patient} and each birth date by
        {date}; read as seen (`as_seen`), the marks no one sees left out of a text that hid anything."""
        seen = as_seen(text)
        shown = self._eupids_hidden(seen)  # first: a key's shape inside an EUPID (EU12345678) is part of it
        if _DIGIT.search(shown):
            for day in reversed(list(_births_said(shown))):
                shown = shown[:day.start()] + DATE + shown[day.end():]
            shown = self._text_pattern.sub(lambda m, is_day: self._hidden(m, is_day) or m.group(0), shown)
        return text if shown == seen else shown


class DaysOr:
    """A day written (days.py `DAYS`) or a number of the `keys`' shapes, found in a text as the one pattern
    `DAY_WRITTEN|keys` would find them: the leftmost, a day first where both start (a number shape inside a date,
    01-2024 in 15-01-2024, is part of the date). Two patterns: the day's takes 30 ms to compile, once for the
    process, where the one pattern was compiled for each source's keys (9 in a run of five sources, 0.3 s)."""

    def __init__(self, keys: re.Pattern[str] | None) -> None:
        self._keys = keys

    def finditer(self, text: str) -> Iterator[tuple[re.Match[str], bool]]:
        """Each match, left to right, none overlapping another, and whether it is a day's (its group `day`)."""
        keys = self._keys
        day, key = DAYS.search(text), keys.search(text) if keys is not None else None
        while day is not None or key is not None:
            is_day = key is None or (day is not None and day.start() <= key.start())
            found = day if is_day else key
            assert found is not None
            yield found, is_day
            end = max(found.end(), found.start() + 1)  # past an empty match too (no shape makes one)
            if day is not None and day.start() < end:
                day = DAYS.search(text, end)
            if key is not None and key.start() < end:
                assert keys is not None
                key = keys.search(text, end)

    def sub(self, replaced: Callable[[re.Match[str], bool], str], text: str) -> str:
        """The text with each match (`finditer`) replaced by what `replaced` gives for it."""
        parts, at = [], 0
        for found, is_day in self.finditer(text):
            parts += [text[at:found.start()], replaced(found, is_day)]
            at = found.end()
        return "".join(parts) + text[at:] if parts else text


def typed_text_screen(home: Home, con: duckdb.DuckDBPyConnection, sources_dir: Path = SOURCES_DIR,
                      numbers: PatientNumbers | None = None) -> TextScreen:
    """What a text typed by a person (a link decision's note, a centre's comment) is screened by before it is
    stored through `con`: the shapes of every source's staged patient keys (read only if the text holds a
    digit), every source's staged EUPIDs, as harmonise's screen of a source's free text has them (read when
    the first text is screened), and the birth months of the warehouse's patients. numbers: the keys' shapes when
    the caller has read them already (`every_source_numbers`)."""
    months = [PartialDate(date(year, month, 1), "month") for year, month in con.execute(
        "SELECT DISTINCT birth_year, birth_month FROM core.patient_source "
        "WHERE birth_year IS NOT NULL AND birth_month BETWEEN 1 AND 12").fetchall()]
    return TextScreen(numbers or every_source_numbers(home, sources_dir), lambda: months,
                      lambda: (e for folder, mapping in _staged_sources(home, sources_dir)
                               for e in _staged_eupids(folder, mapping)))


def every_source_numbers(home: Home, sources_dir: Path = SOURCES_DIR) -> PatientNumbers:
    """The shapes of every source's staged patient keys (read when first needed): what a typed text, or the name
    of a file a person hands in (a centre's returned queries), may not show."""
    return PatientNumbers(lambda: (k for folder, mapping in _staged_sources(home, sources_dir)
                                   for k in staged_keys(folder, mapping)))


def staged_source_folders(home: Home, sources_dir: Path) -> Iterator[tuple[Path, Path]]:
    """Each source's staging folder with its mapping file in `sources_dir` (a folder without one is no source's)."""
    for folder in sorted(home.staging.iterdir()) if home.staging.is_dir() else []:
        path = sources_dir / f"{folder.name}.yaml"
        if folder.is_dir() and path.is_file():
            yield folder, path


def _staged_sources(home: Home, sources_dir: Path) -> Iterator[tuple[Path, SourceMapping]]:
    for folder, path in staged_source_folders(home, sources_dir):
        try:
            mapping = load_mapping(path)
        except (OSError, ValueError) as exc:  # the nightly run says what is wrong with it
            log.warning("%s: cannot read the mapping (%s); a typed text is not screened for its patients' numbers "
                        "and EUPIDs", path, exc.__class__.__name__)
            continue
        yield folder, mapping


def _staged_eupids(folder: Path, mapping: SourceMapping) -> Iterator[str]:
    """The EUPIDs in a source's staged exports, as written: the values of the columns its EUPID field reads, in
    any record set (a superset of the current patients': an old or increment file's too). A one-record-set file
    reads those columns only; another format's record sets are read whole (ODM's items are rows until then)."""
    spec = mapping.patient.fields.get("eupid")
    if spec is None or spec.const is not None:
        return
    columns, adapter = spec.columns(), adapter_for(mapping.format)
    for staged in sorted(folder.iterdir()):
        if not STAGED_NAME.fullmatch(staged.name):
            continue
        if adapter.one_record_set_per_file:  # a Parquet file, or a folder of them
            tables = [pq.read_table(part, columns=sorted(columns & set(pq.read_schema(part).names)))
                      for part in ([staged] if staged.is_file() else sorted(staged.glob("*.parquet")))]
        else:
            tables = list(adapter.record_tables(staged, mapping.patient.head).values())
        for table in tables:
            for column in sorted(columns & set(table.column_names)):
                yield from (e for e in record_column(table, column).dropna().astype(str).unique() if e.strip())
