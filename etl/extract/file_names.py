"""A landing file's name as the warehouse, the logs, the reports and `rtw` show it: without a patient number.

Some sources deliver a file per patient (`Fall_123456_Verlauf.csv`, `patient-ILTB-00012.xlsx`): the
name holds the patient's number, which stays in landing/, archive/ and staging/ (they hold clear
identifiers) and goes nowhere else. `shown_file_name` replaces each patient number in a name by
`{patient}`; everything that names a landing file outside those folders names it so
(meta.source_file, stage.record and dq.quarantine, notices, messages, logs, rtw status, accept, pull).

A patient number is what the source's own patient keys look like: each key of its staged exports
gives a shape (each run of digits and of letters by its length, the rest as written, except that
'-', '_' and ' ' stand for each other, and so does any Unicode dash or space, such as an en dash or a no-break
space, one character each: ILTB-00012 gives four letters, a separator, five digits), so
the number of a patient whose file arrives before anyone read their key is found too. As in free
text (`names_a_patient`), a key counts from four characters, digits only from six; and it holds a
digit: a shape of letters alone would take words. A number is taken whole, never inside a longer
run of digits (nor of letters), so a date such as 20261101 stays unless keys are eight digits long; but a
key starting with letters that three keys and one key in 32 of its shape or more start with (a source's or a
centre's prefix: ID, ILTB), two or more or one before six digits, may follow letters as those letters, in any
case and the keys' '-', '_' and ' ' alike (none put in), its digits as many as the keys' (`PatID1234.csv`,
`patid1234.csv` are `Pat{patient}.csv`, `pat{patient}.csv` for keys ID0001, where `ISO8601` and `Report2026`
stay). Any letters of the shape would take every word's end before as many digits; a prefix takes those that
end in it (`Visit2026.csv` for keys IT0001): the SHA-256 beside the name tells the file. In a free text
(`key_pattern`) the letters count as the keys write them and join them to the rest: a note's `visit 2026` stays.
A key's shape is tried before the guess of five digits or more below: `Fall_123456-01.csv` for keys 123456-01
is `Fall_{patient}.csv`.
When no key of the source is known yet (nothing staged: its first pull, its first run's plan), the mapping
names the key's column, not its shape, and a number is guessed: any run of five or more digits, run into
letters or not, unless it reads as a date (YYYYMMDD, with a time after it): a key ILTB-00012 written
`Pat_ILTB_00012` leaves five, and no date is five digits; any token of letters and digits joined by '-'
that holds a digit, from four characters, taken whole (`Pat_IMT-FR01-001.xlsx` is `Pat_{patient}.xlsx`),
unless it reads as a date (2026-11-01); and a number written in parts joined by '-', '_' or ' ', a token
holding a digit then tokens of digits only, five digits in all (`Pat_IMT_FR01_001.xlsx` is
`Pat_IMT_{patient}.xlsx`, `Fall 12 3456.csv` `Fall {patient}.csv`). Words part a name there, and a year, a
date or what follows a token of digits (a date's time) is no part of a number: `TREP_export_20261101.csv`,
`export_2026_11_01_1200.csv`, `Q3_2026.csv`, `v1_2_3.csv` and `part_3.csv` stay. Four digits run into letters
(`Pat0012`) stay until the keys are known: `ISO8601` reads alike. Once they are, a run of five or more digits
that is not a date stays hidden in a file name (`FallP00012Verlauf.csv` for keys P00001: a name hidden on the
first pull is not shown by the next), but for a month's stamp (`export_202611.csv`) unless a key has its shape;
a free text's five digits are hidden only in a key's shape (`key_pattern`). A source whose keys are known but
too short to name anyone has the runs of five or more digits that are not a date hidden, as before.

The rest of the name stays as delivered (forms, dates), so a data manager still finds the file; the
SHA-256 beside it in meta.source_file tells apart files whose names differ only in the number.

A file an earlier version recorded in clear and gone from landing since (`gone_file_name`) has no staged
keys to tell its number by: its name is shown as a sibling's (`Fall_{patient}_Verlauf.csv` for
`Fall_123456_Verlauf.csv`, whatever the number's shape unless it reads as a date), else with any run of six
or more digits that is not a date hidden, as for a source whose keys are not known yet. Hiding a number
that named no patient costs only the name's detail; the SHA-256 still tells the file.

A record set's name is shown the same way (`shown_record_sets`): a registry that sends a sheet per patient
(`Pat_123456`) has one record set `Pat_{patient}` holding every such sheet's rows, which a mapping maps
or ignores by that name; a notice or an error quoting the sheet (`StageResult.quoted`, `ExtractError.quoted`)
shows it so too.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import pyarrow as pa

from etl.extract.adapter import STAGED_NAME, compact_record_table, concat_record_tables
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import names_a_patient, normalise_patient_key
from etl.transform.records import staged_patient_keys

PATIENT = "{patient}"
_LETTERS = r"[^\W\d_]"
NAME_RUNS = re.compile(rf"\d+|{_LETTERS}+|.", re.DOTALL)  # runs of digits, of letters, and each other character
_SHORTEST_NUMBER_RUN_IN = 6  # digits after a key's single letter, run into letters (as a number alone)
_PREFIX_SHARE = 32  # a key's letters run into others' when one key in this many starts with them
_PREFIX_KEYS = 3  # ... and at least this many: in a small source, one key in 32 is any key's initials
SEPARATORS = "-_ "  # a name writes a key's ILTB-00012 as ILTB_00012 as often as not
# ... and a text with an en dash (U+2013) or a no-break space (U+00A0): Word and Excel put the dash for '-', and
# the space is typed or pasted for ' '. Every Unicode dash and space separator stands for them, one character each as
# they are, so a number's place in a text lines up. (`rtw forget` tries each way a name may write a key by SEPARATORS
# alone: each is one more HMAC per name.)
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
TYPED_SEPARATORS = SEPARATORS + _DASHES + _SPACES
TYPED_SPACES = " " + _SPACES
_ANY_SEPARATOR = f"[{re.escape(TYPED_SEPARATORS)}]"
_TYPED_AS = {**dict.fromkeys(_DASHES, "-"), **dict.fromkeys(_SPACES, " ")}
_AS_WRITTEN = {"-": f"[{re.escape('-' + _DASHES)}]", " ": f"[{re.escape(TYPED_SPACES)}]"}
_A_DATE = r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:\d{4}|\d{6})?(?!\d)"
_ANY_LONG_NUMBER = re.compile(rf"(?<!\d)(?!{_A_DATE})\d{{6,}}(?!\d)")
# A part of a name joined by '-' that is a date (2026-11-01, 01-11-2026, 2026-11, 20261101): never in a key
_DATE_PART = (rf"(?:{_A_DATE}|(?:19|20)\d\d-(?:0[1-9]|1[0-2])(?:-(?:0[1-9]|[12]\d|3[01]))?"
              rf"|(?:0[1-9]|[12]\d|3[01])-(?:0[1-9]|1[0-2])-(?:19|20)\d\d)(?![^\W_])")
_JOIN = rf"-(?!{_DATE_PART})(?=[^\W_])"
# Before any key of a source is known: a token of letters and digits joined by '-' (IMT-FR01-001, ILTB-00012,
# 01-0001) holding a digit, from four characters, taken whole. '_', ' ' and '.' part a name's words
# (TREP_export_20261101): a key written with '_' is found once the keys are known.
_KEY_LIKE = (rf"(?<![^\W_])(?<!-)(?!{_DATE_PART})(?=(?:[^\W_]|{_JOIN})*?\d)(?=(?:[^\W_]|{_JOIN}){{4}})"
             rf"[^\W_]+(?:{_JOIN}[^\W_]+)+(?![^\W_])(?!{_JOIN})")
# A token that is a date or a year (2026, 20261101, 01_11_2026, 2026.11.01): never a part of a number written in parts
_DATE_TOKEN = (rf"(?:{_A_DATE}|(?:19|20)\d\d|\d\d(?:\d\d)?[-_ .]\d\d[-_ .]\d\d(?:\d\d)?)(?![^\W_])")
_DIGITS_PART = rf"[-_ ](?!{_DATE_TOKEN})(?=\d+(?![^\W_]))"  # '-', '_' or ' ', then a token of digits only
# Before any key is known: a number written in parts joined by '-', '_' or ' ' (Fall 12 3456, Pat_IMT_FR01_001,
# IMT-FR01_001): a token holding a digit (maybe joined by '-' as a key is) then tokens of digits, five digits in
# all, none a date or a year, taken whole; never after a token of digits (a date's month, day or time:
# 2026_11_01_1200 stays). A word parts it (FR01_v2_3 is none). The five digits are counted in what it matched
# (`_guessed_numbers`): a count looking on would take a year after it (v1_2_3-2026), and look on from each token.
# It starts a token joined by '-' at its start only: a later start matches less.
_IN_PARTS = (rf"(?<![^\W_])(?<![^\W_]-)(?<!\d[-_ .])(?!{_DATE_TOKEN})(?=(?:[^\W_]|{_JOIN})*?\d)"
             rf"[^\W_]+(?:{_JOIN}[^\W_]+)*(?:{_DIGITS_PART}\d+)+")
_DIGITS_IN_PARTS = 5
# ... and a run of five digits or more that is not a date, run into letters or not (Pat00012, ILTB_00012)
_FIVE_DIGITS_OR_MORE = rf"(?<!\d)(?!{_A_DATE})\d{{5,}}(?!\d)"
_FIVE_OR_MORE = re.compile(_FIVE_DIGITS_OR_MORE)
_FIVE_DIGITS_OR_MORE_NO_MONTH = rf"(?<!\d)(?!(?:19|20)\d\d(?:0[1-9]|1[0-2])(?!\d)){_FIVE_DIGITS_OR_MORE}"
_KEYS_UNKNOWN = re.compile(f"(?P<parts>{_IN_PARTS})|{_KEY_LIKE}|{_FIVE_DIGITS_OR_MORE}")  # the longest first
_KEY_LIKE_OR_LONG = re.compile(f"{_KEY_LIKE}|{_FIVE_DIGITS_OR_MORE}")  # where parts hold too few digits
_NUMBER_IN_NAME = re.compile(r"(?=[\w-]*\d)[\w-]+")  # what a sibling's {patient} stands for, as in a record set
# A date, a sibling's {patient} stands for none: 20261101, 2026-11-01, 01.11.2026, with a time after it or not
_A_MONTH = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])")  # 202611: a monthly export's, for rtw forget
_DATE_ONLY = re.compile(rf"{_A_DATE}|(?:19|20)\d\d([-_.])\d\d\1\d\d(?:[-_T]\d{{4,6}})?|\d\d([-_.])\d\d\2\d{{4}}")


def _guessed_numbers(name: str) -> Iterator[re.Match[str]]:
    """The numbers guessed in a name before any key of its source is known (`_KEYS_UNKNOWN`), in their order:
    a number in parts holding fewer than five digits is none, and what else starts there is tried instead, as
    the alternation would have (v1_2-34-ab: 2-34-ab)."""
    pos = 0
    while (found := _KEYS_UNKNOWN.search(name, pos)) is not None:
        if found.group("parts") is not None and sum(c.isdigit() for c in found.group()) < _DIGITS_IN_PARTS:
            instead = _KEY_LIKE_OR_LONG.match(name, found.start())
            if instead is None:
                pos = found.start() + 1
                continue
            found = instead
        yield found
        pos = found.end()


def _edge(run: str) -> str:
    """What may not touch a number at an end that is this run: more of the same kind."""
    return r"\d" if run[0].isdigit() else _LETTERS if run[0].isalpha() else ""


def _shape_body(runs: Sequence[str], literal: bool, *, joined_as_written: bool = False, spaced: bool = False) -> str:
    """`joined_as_written`: each separator as the key writes it (a dash any dash, a space any space), not '-',
    '_' or ' ' alike (`TYPED_SEPARATORS`); `spaced`: with a space or not on either side of it (`07 – 0012` as a
    note types 07-0012; in a text, where a number's place need not line up with a name's), and where letters meet
    digits any separator a note may put there or none (ILTB00002, ILTB/00002, ILTB.00002 for ILTB-00002; TREP-000002
    for TREP000002): `NOTE_SEPARATOR`, `_JOINED`."""
    around = f"{_AS_WRITTEN[' ']}?" if spaced else ""
    shaped = []
    for at, r in enumerate(runs):
        before, after = runs[at - 1] if at else "", runs[at + 1] if at + 1 < len(runs) else ""
        if spaced and _letters_meet_digits(before, r):
            shaped.append(_JOINED)  # ID0001 written ID-0001
        if spaced and not r.isalnum() and _letters_meet_digits(before, after):
            shaped.append(NOTE_SEPARATOR)
        elif literal and r.isalnum():
            shaped.append(re.escape(r))
        elif r[0].isdigit():
            shaped.append(rf"\d{{{len(r)}}}")
        elif r[0].isalpha():
            shaped.append(rf"{_LETTERS}{{{len(r)}}}")
        elif joined_as_written:
            shaped.append(around + _AS_WRITTEN.get(_TYPED_AS.get(r, r), re.escape(r)) + around)
        else:
            shaped.append(around + _ANY_SEPARATOR + around if r in TYPED_SEPARATORS else re.escape(r))
    return "".join(shaped)


def _letters_meet_digits(before: str, after: str) -> bool:
    return bool(before) and bool(after) and before.isalnum() and after.isalnum() and \
        before[0].isalpha() != after[0].isalpha()


# Between a key's letters and digits in a note (and between any runs of the patient's own number: pseudonym.py): any
# separator typed, '/', '.' or a tab, spaced or not, or none; where the key writes none, a mark without spaces (ID-0001
# for ID0001, but a note's "in 2021" is no number)
_NOTE_SPACES = rf"[{re.escape(TYPED_SPACES)}\t]*"
NOTE_SEPARATOR = rf"(?:{_NOTE_SPACES}[{re.escape(TYPED_SEPARATORS)}/.\t]{_NOTE_SPACES})?"
_JOINED = rf"[{re.escape(''.join(c for c in TYPED_SEPARATORS if c not in TYPED_SPACES))}/.]?"


def _shape_end(runs: Sequence[str]) -> str:
    last = _edge(runs[-1])
    return f"(?!{last})" if last else ""


def runs_into_letters(runs: Sequence[str]) -> bool:
    """Whether a key so written, its letters first, is found after letters too (PatID1234), its digits as many as
    ever: from two letters, or one before six digits (P123456: as many as a number alone needs); one letter before
    fewer reads as a word's end before a year (Step2026 for keys P1234)."""
    return len(runs) > 1 and runs[0].isalpha() and (
        len(runs[0]) >= 2 or sum(len(r) for r in runs if r.isdigit()) >= _SHORTEST_NUMBER_RUN_IN)


def key_shape(key: str, *, literal: bool = False, spaced: bool = False) -> str:
    """The regex of the numbers shaped like a patient key (see the module docstring); `literal`: of the key
    itself as a name writes it (its runs as they are, '-', '_' and ' ' alike; to match in any case), run into
    letters before it too when its own letters come first (`runs_into_letters`): `rtw forget` looks for one
    patient's own number, not for any number of the shape. `spaced`: a separator with a space or not on either
    side (a free text's `07 – 0012`)."""
    runs = NAME_RUNS.findall(normalise_patient_key(key))
    first = "" if literal and runs_into_letters(runs) else _edge(runs[0])
    return f"{f'(?<!{first})' if first else ''}{_shape_body(runs, literal, spaced=spaced)}{_shape_end(runs)}"


def _run_in_shapes(keys: Mapping[str, int], *, in_text: bool) -> set[str]:
    """The regexes of the keys whose letters come first, run into the letters before them: letters that at least
    three keys, and one key in 32 of that shape, start with, then the rest of the shape (PatID1234 for keys ID0001,
    ID0002, ID0003: `Pat{patient}`). A source's prefix or a centre's (ID, ILTB, IMT) ends few words before as many
    digits; letters that few keys start with (initials such as SO0001, RT0002: ISO8601, Report2026) would take any
    word's end. In a file name the letters count in any case and the keys' '-', '_' and ' ' alike (patid0012,
    PatILTB_0012 for keys ILTB-0001): a word's end before a year that the keys' letters end (Visit2026 for keys
    IT0001) is hidden there too, and the SHA-256 beside the name still tells the file. `in_text`: as the keys
    write the letters (case and all) and join them to the rest: a note's `follow-up visit 2026` is read.
    `keys`: each written with its digits as 0 (`_digits_as_zero`), with how many keys write it so."""
    letters: dict[tuple[int, str], Counter[str]] = {}  # by the shape (how many letters, the rest), the keys' letters
    written: dict[str, set[str]] = {}  # the letters as normalised (upper-case), and as the keys write them
    for key, count in keys.items():
        runs = NAME_RUNS.findall(key.strip())
        if runs_into_letters(runs):
            shape = (len(runs[0]), _shape_body(runs[1:], literal=False, joined_as_written=in_text, spaced=in_text)
                     + _shape_end(runs))
            own = normalise_patient_key(runs[0])
            letters.setdefault(shape, Counter())[own] += count
            written.setdefault(own, {own}).add(runs[0])
    # The letters first, then a letter before them: a name's every place is tried, and few start with them
    return {rf"(?{'' if in_text else 'i'}:{'|'.join(re.escape(w) for w in _prefix_letters(common, written, in_text))})"
            rf"(?<={_LETTERS}.{{{width}}}){rest}"
            for (width, rest), held in letters.items()
            if (common := [w for w, n in held.items() if n >= _PREFIX_KEYS and n * _PREFIX_SHARE >= held.total()])}


def _prefix_letters(common: Iterable[str], written: Mapping[str, set[str]], in_text: bool) -> list[str]:
    """The prefixes as matched: in a text each as the keys write it, in a name each once (matched in any case)."""
    return sorted(set().union(*(written[c] for c in common)) if in_text else common)


class PatientNumbers:
    """What a patient number looks like in one source's file names; its keys are read when first needed
    (a name without a digit never needs them)."""

    def __init__(self, keys: Callable[[], Iterable[str]], *, any_long_number: bool = False,
                 key_like: bool = False) -> None:
        self._keys = keys
        self._any_long_number = any_long_number
        self._key_like = key_like

    @classmethod
    def of(cls, keys: Iterable[str], *, any_long_number: bool = False) -> PatientNumbers:
        """`any_long_number`: a run of six or more digits that is not a date counts too, besides the keys'
        shapes (onboarding: the keys given are a guess, no mapping names the patient key yet). A file name's
        runs of five or more that are not a date count whenever a key has a shape; this adds a month's stamp
        (202611), as the source's first pull and a source without keys of a shape hide it."""
        known = list(keys)
        return cls(lambda: known, any_long_number=any_long_number)

    @classmethod
    def staged(cls, staging: Path, mapping: SourceMapping) -> PatientNumbers:
        """The keys of every export of the source staged in `staging` (the home's staging/). Before any is
        staged (the source's first pull, its first run's plan), a token shaped like a key counts too: the
        mapping names the key's column, not its shape."""
        return cls(lambda: staged_keys(staging / mapping.source_id, mapping), key_like=True)

    @functools.cached_property
    def _known(self) -> list[str]:
        return list(self._keys())

    @functools.cached_property
    def _shaped(self) -> Counter[str]:
        """The keys that give a shape (those that name a patient and hold a digit), each with its digits as 0
        and counted: a source's thousands of keys (TREP-000001, TREP-000002, ...) are written a few ways, and
        each way is shaped once."""
        written = Counter(k.translate(_DIGITS_AS_ZERO) for k in self._known)
        return Counter({k: n for k, n in written.items() if names_a_patient(k) and any(c.isdigit() for c in k)})

    @functools.cached_property
    def _key_shapes(self) -> set[str]:
        return {key_shape(k) for k in self._shaped}

    @functools.cached_property
    def _shapes(self) -> set[str]:
        """The keys' shapes in a file name: run into letters in any case, '-', '_' and ' ' alike."""
        return self._key_shapes | _run_in_shapes(self._shaped, in_text=False)

    @functools.cached_property
    def _text_shapes(self) -> set[str]:
        """The keys' shapes in a free text: a separator spaced around or not (`07 – 0012`, as the patient's own
        number is found: pseudonym.holds_patient_key); run into letters only as the keys write and join them."""
        return {key_shape(k, spaced=True) for k in self._shaped} | _run_in_shapes(self._shaped, in_text=True)

    def found(self, name: str) -> Iterator[re.Match[str]]:
        """Each patient number in a file name, in its order."""
        return _guessed_numbers(name) if self._guessed else self._pattern.finditer(name)

    @functools.cached_property
    def _guessed(self) -> bool:
        return self._key_like and not self._known

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str]:
        if not self._shapes:  # keys too short to name anyone in a name, or none known yet (`_guessed`)
            return _FIVE_OR_MORE if self._key_like else _ANY_LONG_NUMBER
        # Five digits or more, as before the keys were known: a name hidden then is not shown once they are
        # (FallP00012Verlauf.csv for keys P00001, Pat_ILTB00012.xlsx for keys ILTB-00001). A file name only: in a
        # free text (`key_pattern`) five digits are as often a dose or a count.
        # A month's stamp (export_202611.csv) stays, as a date does: the keys now tell a number's shape; but
        # onboarding's keys are a guess (`any_long_number`), and it hides six digits or more that are no date.
        # After the keys' shapes: tried first, five digits would cut a key that starts with them (123456-01, 12345A).
        guesses = [_FIVE_DIGITS_OR_MORE_NO_MONTH, *([_ANY_LONG_NUMBER.pattern] if self._any_long_number else [])]
        return re.compile("|".join([_alternatives(self._shapes).pattern, *guesses]))

    def is_key(self, part: str) -> bool:
        """Whether `part` of a name is one of the keys itself, in any case, '-', '_' and ' ' alike."""
        return joined_alike(part) in self._keys_alike

    @functools.cached_property
    def _keys_alike(self) -> set[str]:
        return {joined_alike(k) for k in self._known}

    @functools.cached_property
    def key_pattern(self) -> re.Pattern[str] | None:
        """The keys' shapes alone, without the guess of any long number (None: no key has a shape): what a
        free text is screened by (etl/transform/screen.py), where a long number is as often a dose; run into
        letters only as the keys write them (`_run_in_shapes`): a note's `visit 2026` or `doses 1000 mg` stays."""
        return shapes_pattern(self._text_shapes)

    @property
    def text_shapes(self) -> frozenset[str]:
        """The regexes `key_pattern` joins: another source's screen adds them to its own (`shapes_pattern`)."""
        return frozenset(self._text_shapes)


def shapes_pattern(shapes: Iterable[str]) -> re.Pattern[str] | None:
    """The keys' shapes (`PatientNumbers.text_shapes`, of one source or several) as one pattern, the longest
    tried first; None without any."""
    shapes = set(shapes)
    return _alternatives(shapes) if shapes else None


def joined_alike(key: str) -> str:
    """A key as its number, whichever of '-', '_' and ' ' join its runs and in whichever case."""
    return normalise_patient_key(key).translate(_ALIKE)


_ALIKE = str.maketrans(dict.fromkeys(TYPED_SEPARATORS, "-"))
# A key's digits (0-9) as 0: its runs, its length, its shape and whether it names a patient stay as they were
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")


def _alternatives(shapes: set[str]) -> re.Pattern[str]:
    return re.compile("|".join(sorted(shapes, key=lambda s: (-len(s), s))))


def staged_keys(folder: Path, mapping: SourceMapping) -> set[str]:
    """The patient keys of the staged exports in a source's staging folder."""
    if not folder.is_dir():
        return set()
    return {k for staged in sorted(folder.iterdir()) if STAGED_NAME.fullmatch(staged.name)
            for k in staged_patient_keys(staged, mapping)}


def shown_file_name(name: str, numbers: PatientNumbers) -> str:
    """A landing file's name as shown anywhere outside landing/, archive/ and staging/: each patient
    number in it replaced by {patient}."""
    if not any(c.isdigit() for c in name):
        return name
    shown, shown_to = [], 0
    for number in numbers.found(name):
        shown += [name[shown_to:number.start()], PATIENT]
        shown_to = number.end()
    return "".join(shown) + name[shown_to:]


def reads_as_patient_number(name: str, span: tuple[int, int], numbers: PatientNumbers,
                            siblings: Iterable[str]) -> bool:
    """Whether the part of `name` at `span` is a patient number there, for `rtw forget` to take out of the name:
    `shown_file_name` hides it, and it does not read as a date (20261101, 202611, 2026-11-01) unless one of
    `siblings` (the source's other names) has, in its place, a number of the same shapes that does not, or
    `{patient}`: a file per patient (`Fall_12345678_Verlauf.csv` beside `Fall_20261101_Verlauf.csv`). Showing a
    name hides a date shaped like a key at no cost; renaming a snapshot's copy and ledger line as an erased
    patient's file would cost its checksum's comparison, and is no file of the patient's. One of `numbers`' keys
    itself is one wherever it is found (`PatID1234.csv` for key ID1234): the keys' shapes run it into letters
    only when enough keys share its letters, which an erasure's few keys do not tell."""
    start, end = span
    if not numbers.is_key(name[start:end]) and not any(
            m.start() <= start and end <= m.end() for m in numbers.found(name)):
        return False
    if not _reads_as_date(name[start:end]):
        return True
    before, after = name[:start], name[end:]
    shapes = numbers.key_pattern  # a sibling's number tells a file per patient in a key's shape, not any five digits
    for sibling in siblings:
        if len(sibling) <= len(before) + len(after) or not sibling.startswith(before) or not sibling.endswith(after):
            continue
        place = (len(before), len(sibling) - len(after))
        number = sibling[place[0]:place[1]]
        if number == PATIENT or (not _reads_as_date(number) and any(
                m.span() == place for m in (shapes.finditer(sibling) if shapes else numbers.found(sibling)))):
            return True
    return False


def _reads_as_date(part: str) -> bool:
    return bool(_DATE_ONLY.fullmatch(part) or _A_MONTH.fullmatch(part))


def gone_file_name(name: str, siblings: Iterable[str]) -> str:
    """The name of a file recorded in clear and gone from landing since, as shown (see the module
    docstring): as the sibling shown with {patient} whose shape it has, else with any long number that
    is not a date hidden. A name already shown with {patient} stays: the source's keys judged it."""
    if PATIENT in name or not any(c.isdigit() for c in name):
        return name
    for sibling in sorted(siblings, key=lambda s: (-len(s), s)):
        before, placeholder, after = sibling.partition(PATIENT)
        number = name.removeprefix(before).removesuffix(after) if placeholder else ""
        if len(number) + len(before) + len(after) == len(name) and _NUMBER_IN_NAME.fullmatch(number) \
                and not _DATE_ONLY.fullmatch(number):
            return sibling
    return shown_file_name(name, PatientNumbers.of([]))


def shown_record_sets(record_sets: Mapping[str, pa.Table], numbers: PatientNumbers) -> dict[str, pa.Table]:
    """A source's record sets by their names as shown: those whose names differ only in the patient number
    (a sheet per patient) are one record set, their rows in the order read (like per-form files)."""
    grouped: dict[str, list[pa.Table]] = {}
    for name, table in record_sets.items():
        grouped.setdefault(shown_file_name(name, numbers), []).append(table)
    return {name: tables[0] if len(tables) == 1 else compact_record_table(concat_record_tables(
        [_decoded(t) for t in tables])) for name, tables in grouped.items()}


def _decoded(table: pa.Table) -> pa.Table:
    """The record set with its text as plain strings: compact ones encode each its own way, and concatenate
    only so."""
    for i, column in enumerate(table.columns):
        if pa.types.is_dictionary(column.type):
            plain = column.type.value_type
            table = table.set_column(i, table.field(i).with_type(plain), column.cast(plain))
    return table


class QuotedNames:
    """The file names a message may quote (a notice, a reader's error with the file's path): those that may
    hold a number. Made once for many messages: a folder of a file per patient has thousands, and each of its
    messages is looked at. The names a message holds are found in one reading of it (a trie: each name looked
    for in every message made a pull of 4,000 files take seconds) and shown; where two whose numbers are hidden
    overlap, they are replaced in turn, the longest first, so that no name is cut inside another. A name shown
    as it is (no number in it read as one) leaves a shorter name inside it to be shown (`StepP0012.csv`,
    `P0012.csv`)."""

    # A radix trie: a node maps the first character of each edge to the edge's characters and the node after
    # them; `_NAME` marks a node where a name ends. A node per character took 50 MB for 20,000 names.
    _NAME = ""  # no edge starts with the empty string

    def __init__(self, names: Iterable[str]) -> None:
        self._trie: dict[str, tuple[str, dict]] = {}
        self._shown_as: dict[str, str] = {}
        self._shown_by: PatientNumbers | None = None  # the numbers `_shown_as` was shown by
        self.add(names)

    def add(self, names: Iterable[str]) -> None:
        """More names a message may quote (a pull learns some as it goes)."""
        for name in names:
            if not any(c.isdigit() for c in name):
                continue
            node, at = self._trie, 0
            while at < len(name):
                if (edge := node.get(name[at])) is None:
                    node = node.setdefault(name[at], (name[at:], {}))[1]
                    break
                label, after = edge
                same = len(label) if name.startswith(label, at) else next(
                    (i for i, (c, d) in enumerate(zip(label, name[at:])) if c != d), len(name) - at)
                if same < len(label):  # the name leaves the edge inside it: a node there
                    after = {label[same]: (label[same:], after)}
                    node[name[at]] = (label[:same], after)
                node, at = after, at + same
            node[self._NAME] = ("", {})

    def shown(self, text: str, numbers: PatientNumbers) -> str:
        """`text` with each of the names in it as shown."""
        if numbers is not self._shown_by:
            self._shown_as, self._shown_by = {}, numbers
        places = [(at, name, said) for at, name in self._places(text)
                  if (said := self._said(name, numbers)) != name]
        if all(at >= before + len(name) for (before, name, _), (at, _, _) in pairwise(places)):
            parts, copied = [], 0  # apart, as most are: in one pass
            for at, name, said in places:
                parts += [text[copied:at], said]
                copied = at + len(name)
            return "".join(parts) + text[copied:]
        for name in sorted({name for _, name, _ in places}, key=lambda n: (-len(n), n)):
            if name in text:  # not if cut by a longer one
                text = text.replace(name, self._said(name, numbers))
        return text

    def _places(self, text: str) -> list[tuple[int, str]]:
        """Where each name starts in `text`, and which, in order."""
        places, trie, end = [], self._trie, len(text)
        for at in range(end):
            node, after = trie, at
            while True:
                if self._NAME in node and after > at:
                    places.append((at, text[at:after]))
                if after == end or (edge := node.get(text[after])) is None or not text.startswith(edge[0], after):
                    break
                after, node = after + len(edge[0]), edge[1]
        return places

    def _said(self, name: str, numbers: PatientNumbers) -> str:
        if (shown := self._shown_as.get(name)) is None:
            shown = self._shown_as[name] = shown_file_name(name, numbers)
        return shown


def sheets_placed(sheets: Sequence[str], numbers: PatientNumbers, among: str = "the workbook") -> dict[str, str]:
    """The sheets (in the workbook's order) whose name is shown with its patient number hidden, each with its
    place among them: a sheet per patient is `Pat_{patient}` in every notice or refusal, which could not tell
    one sheet from another."""
    return {sheet: f"sheet {i} of {among}" for i, sheet in enumerate(sheets, start=1)
            if shown_file_name(sheet, numbers) != sheet}


def sheets_among(options: object) -> str:
    """What a sheet's place counts among: staging names the sheets it read in the workbook's order, every one
    unless the reader option `sheets:` chose some."""
    return "those chosen by `sheets`" if getattr(options, "sheets", None) else "the workbook"


def placed(notice: str, places: Mapping[str, str]) -> str:
    """A notice (or a refusal) with each sheet it quotes (`sheet 'Pat_123456'`) followed by its place, before
    the name is shown without its number; as `shown_error` places a sheet a refusal quotes."""
    for sheet, place in places.items():
        notice = notice.replace(f"'{sheet}'", f"'{sheet}' ({place})")
    return notice


def sheets_shown(text: str, sheets: Sequence[str], numbers: PatientNumbers, among: str = "the workbook") -> str:
    """A notice or refusal quoting a workbook's `sheets` (in its order), each shown as the run shows names and
    placed when its number is hidden: `sheet 'Pat_{patient}' (sheet 3 of the workbook)`."""
    return QuotedNames(sheets).shown(placed(text, sheets_placed(sheets, numbers, among)), numbers)


def names_shown(text: str, names: Iterable[str], numbers: PatientNumbers) -> str:
    """One message with each of `names` in it as shown (`QuotedNames` serves many)."""
    return QuotedNames(names).shown(text, numbers)
