"""What the files of statistical packages read with ReadStat (pyreadstat) share: SAS, SPSS, Stata.

Each of these files is one dataset of typed variables (numbers and text), with a label, a display
format and a storage length per variable, and often value labels and declared missing values. The
format modules (`sas.py`, `spss.py`, `stata.py`) find out what a file is, read its metadata and its
observations a chunk at a time with pyreadstat, and say what each variable's format means; this
module holds what is done to every one of them alike:

- `Dataset`, `Variable`: a dataset's own description (what `rtw profile` shows and the staged
  file's schema metadata keeps), with its notices (which count, not list, the value labels and missing
  values of a variable that identifies a person: etl/identifying.py); `declared_variables` and `declared_codes` make it
  from pyreadstat's metadata (the codes written as the values are, `code_text`), `column_details`
  gives it to `rtw profile` and `rtw scaffold`;
- `read_with`: one pyreadstat read, its errors turned into an `ExtractError` naming the file;
  `bytes_after`: the refusal of a file holding bytes after the end its format says;
- `read_in_chunks`: observations `size` at a time, the count checked against what the file
  declares, undecodable text located (`where_undecodable`: the variable and observation);
- `numbers_as_text`, `singles_as_text`, `temporal_as_text`, `column_as_text`: values as the raw
  strings every adapter stages (whole numbers without ".0", no exponent, dates as ISO text);
- `stage_dataset`: the chunks written, all or nothing, to one Parquet file of strings with
  `_line` (the observation number, from 1) and lineage; `stage_apart` does it in a child process
  (`isolated.py`), where a file that crashes ReadStat fails on its own.

The date formats differ (SAS and Stata count from 1960, SPSS from 1582-10-14; days, seconds or
milliseconds): each module gives `temporal_as_text` its own clock. A date of 0, the package's date 0
(1960-01-01, 1582-10-14), is staged as the package shows it and counted by a notice naming the variable:
it is rarely a patient's date (a paediatric warehouse's patients were born decades later) and most often
a date left empty and typed as 0. SPSS's quarantines its record as a date before 1900; SAS's and Stata's
would load as 1 January 1960, said by nothing else. A mapping's `null_values` can name its text.
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, Self, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from etl.extract import isolated
from etl.extract.adapter import LINE_COLUMN, ColumnInfo, staging_writer
from etl.extract.adapter import what_it_is as adapter_what_it_is
from etl.extract.errors import ExtractError
from etl.fsio import written_atomically
from etl.identifying import MANY_LABELS, looks_identifying, too_many_labels

DatasetT = TypeVar("DatasetT", bound="Dataset")
T = TypeVar("T")
Shown = Literal["date", "datetime", "time"]  # what a temporal format shows
Precision = Literal["D", "M", "Y", "s"]  # to which unit: day, month, year, second

#: observations per chunk are chosen so that a chunk holds about this many cells: measured on
#: 500,000 x 20 XPORT, staging peaks at +140 MiB with 500,000 cells a chunk (+400 MiB with 2 million),
#: in the same time
CHUNK_CELLS = 500_000

_LISTED_VARIABLES = 12  # labels and formats named in a notice; all are in the metadata
_LISTED_CODES = 6  # value labels named per variable in a notice

EPOCH_1960 = np.datetime64("1960-01-01T00:00:00", "ms")  # SAS's and Stata's day 0
# Dates ISO strings can carry, from the first year of the Gregorian calendar (SAS holds 1582-20000).
_FIRST = np.datetime64("1582-01-01T00:00:00", "ms")
_LAST = np.datetime64("10000-01-01T00:00:00", "ms")
_EXACT_INTEGER = 2.0**53


class Variable(NamedTuple):
    """What a dataset declares about one variable."""

    label: str | None  # "Unique Subject Identifier"
    format: str | None  # "DATE9.", "$20.", "8.2", "ADATE10", "%td", a user format "SEXF."; None when none is set
    type: Literal["numeric", "character"]
    length: int  # storage length in bytes
    temporal: str | None = None  # "date", "date (month)", "datetime", "time": how the values are converted


@dataclass(frozen=True)
class Dataset:
    """A dataset's own description: name, label, encoding, one `Variable` per variable, and what it
    says of its codes: value labels (`codes`: variable -> code as staged -> label), the values it
    declares missing (`missing`: variable -> "9", "90 thru 99"), and the value label tables its
    variables name that it does not hold (`unlabelled`: variable -> table name; Stata). Each format
    subclasses it to name its `package` ("SAS") in the notices."""

    package: ClassVar[str] = ""

    file_format: str  # "XPORT v5", "sas7bdat", "sav", "zsav", "dta 118"
    table_name: str | None
    file_label: str | None
    file_encoding: str | None
    variables: dict[str, Variable]
    rows: int | None  # None when the file does not say (XPORT)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unlabelled: dict[str, str] = field(default_factory=dict)

    @property
    def column_labels(self) -> dict[str, str | None]:
        return {name: v.label for name, v in self.variables.items()}

    @property
    def column_formats(self) -> dict[str, str | None]:
        return {name: v.format for name, v in self.variables.items()}

    def to_json(self) -> str:
        # Value labels and missing values only when the file has some (SAS files never do).
        said = {key: value for key, value in (("codes", self.codes), ("missing", self.missing),
                                              ("unlabelled", self.unlabelled)) if value}
        return json.dumps({
            "file_format": self.file_format, "table_name": self.table_name, "file_label": self.file_label,
            "file_encoding": self.file_encoding, "rows": self.rows,
            "variables": {name: v._asdict() for name, v in self.variables.items()}, **said})

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        raw = json.loads(text)
        variables = {name: Variable(**fields) for name, fields in raw.pop("variables").items()}
        missing = {name: tuple(values) for name, values in raw.pop("missing", {}).items()}
        return cls(variables=variables, missing=missing, **raw)

    def describe(self) -> list[str]:
        """Short notices: the dataset, the variables converted to dates, every label and format, then
        the value labels, the value label tables named but not held, and the declared missing values, if any.
        The value labels and missing values of a variable that identifies a person are counted, not listed
        (the notices reach meta.source_notice and the run's report), as are a long table's labels."""
        name = f"dataset {self.table_name}" if self.table_name else "a dataset"
        label = f" '{self.file_label}'" if self.file_label else ""
        rows = f", {self.rows} observations" if self.rows is not None else ""
        encoding = f", encoding {self.file_encoding}" if self.file_encoding else ""
        notices = [f"{self.package} {self.file_format}, {name}{label}, {len(self.variables)} variables{rows}{encoding}"]
        temporal = [f"{n} {v.format} -> {v.temporal}" for n, v in self.variables.items() if v.temporal]
        if temporal:
            notices.append("dates converted to ISO text: " + ", ".join(temporal))
        declared = [n + (f" '{v.label}'" if v.label else "") + (f" {v.format}" if v.format else "")
                    for n, v in self.variables.items() if v.label or v.format]
        if declared:
            notices.append("labels and formats: " + listed(declared))
        if self.codes:
            coded = [self._codes_said(n, codes) for n, codes in self.codes.items()]
            notices.append("value labels, not applied (the data keeps the codes; a mapping's codes: translate "
                           "them): " + listed(coded))
        if self.unlabelled:
            named = [f"{n} '{table}'" for n, table in self.unlabelled.items()]
            notices.append("value label tables named by variables but not in the file, so their codes come "
                           "without labels (dropped or never defined in the package, or the name damaged in transfer; "
                           "ask for the file saved with them if the mapping's codes: need them): " + listed(named))
        if self.missing:
            missing = [f"{n}: {_counted(len(values), 'value')}, not listed (an identifying variable)"
                       if self._identifying(n) else f"{n} " + ", ".join(values) for n, values in self.missing.items()]
            notices.append("values the file declares missing, kept as delivered (a mapping's codes: or "
                           "null_values: say what they mean): " + listed(missing))
        return notices

    def _identifying(self, name: str) -> bool:
        """Whether a variable's codes may identify a person, by its name or label: not a date's, even a birth
        date's, whose labels and missing values are its placeholders (9999-12-31 'not known'), as `rtw profile`
        lists them."""
        variable = self.variables.get(name)
        return looks_identifying(name, variable.label if variable else None) and not (variable and variable.temporal)

    def _codes_said(self, name: str, codes: Mapping[str, str]) -> str:
        """A variable's value labels in the notice (`codes_said`), counted for a variable whose values identify a
        person (its codes are patient numbers, its labels may be the patients' names)."""
        return codes_said(name, codes, "an identifying variable" if self._identifying(name) else None)


def codes_said(name: str, codes: Mapping[str, str | None], hidden_reason: str | None = None) -> str:
    """A variable's value labels as a notice says them: the first `_LISTED_CODES`, or only their count for a
    variable whose values are hidden (`hidden_reason`: why) and for a table of more than `MANY_LABELS` labels (a
    name per patient under a plain name). `rtw profile` says them so too, hiding more columns than the reader."""
    if hidden_reason:
        return f"{name}: {_counted(len(codes), 'value label')}, not listed ({hidden_reason})"
    if too_many_labels(codes):
        return (f"{name}: {_counted(len(codes), 'value label')}, not listed (more than {MANY_LABELS}: so long a "
                "table may name each patient; the staged file's metadata has all)")
    more = len(codes) - _LISTED_CODES
    return f"{name} " + ", ".join(f"{code} '{label}'" for code, label in list(codes.items())[:_LISTED_CODES]) + (
        f" and {more} more" if more > 0 else "")


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def listed(items: list[str]) -> str:
    """A notice's items: the first `_LISTED_VARIABLES`, then how many more (`rtw profile` says them so too)."""
    more = len(items) - _LISTED_VARIABLES
    return "; ".join(items[:_LISTED_VARIABLES]) + (
        f"; and {more} more (the staged file's metadata has all)" if more > 0 else "")


class EncodingOptions(BaseModel):
    """Reader options of a dataset: only its text encoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    encoding: str | None = Field(
        None, description="text encoding, overriding the file's (iconv name: latin1, cp1252, utf-8)")


# -- reading --------------------------------------------------------------------------------------
class UndecodableText(ExtractError):
    """Text of the file that its encoding (declared, assumed or given) does not decode."""


def read_with(reader: Callable[..., tuple[pd.DataFrame, Any]], path: Path, package: str, file_format: str,
              source: Any = None, *, where: str = "", **kwargs: Any) -> tuple[pd.DataFrame, Any]:
    """One pyreadstat read (`reader`: read_sav, read_dta, ...) of the file, or of `source` (a file-like
    view of it); its errors as an `ExtractError` naming the file and `where` (`from_observation`)."""
    import pyreadstat  # here, not above: every run discovers the adapters, few read these (its import is 0.07 s)

    try:
        frame, meta = reader(str(path) if source is None else source, disable_datetime_conversion=True, **kwargs)
    except UnicodeDecodeError as error:
        raise UndecodableText(f"{path.name}{where}: text that is not UTF-8 (byte "
                              f"{error.object[error.start:error.end]!r}); expected UTF-8, or the source's "
                              "`options: encoding:` (e.g. latin1, cp1252)") from None
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError) as error:
        message = str(error)
        if "encoding" in message or "character set" in message:
            given = kwargs.get("encoding")
            raise UndecodableText(f"{path.name}{where}: text cannot be decoded as {given or 'the declared encoding'} "
                                  f"({message}); expected a valid `options: encoding:` (iconv name: latin1, "
                                  "cp1252, utf-8)") from None
        if "expected number of rows" in message:
            raise ExtractError(f"{path.name}{where}: the file ends before the observations its header declares "
                               f"({message}); expected a complete {package} {file_format} file (truncated in "
                               "transfer?)") from None
        raise ExtractError(f"{path.name}{where}: unreadable {file_format} file ({message}); expected a complete "
                           f"{package} {file_format} file (truncated or damaged in transfer?)") from None
    # readstat gives no name for a variable whose name it cannot read (damaged bytes): it would stage as None
    if unnamed := [position for position, name in enumerate(meta.column_names, 1) if not name]:
        raise ExtractError(f"{path.name}: variable {unnamed[0]} of {len(meta.column_names)} has no name that can be "
                           f"read (empty, or bytes that are not text in the file's encoding); expected a name for "
                           f"every variable ({package} {file_format} file damaged in transfer?)")
    return frame, meta


def what_it_is(path: Path, head: bytes) -> str:
    """What a file that is not the package's is (etl/extract/adapter.py `what_it_is`), for the refusal."""
    return adapter_what_it_is(path, head, named_like="a dataset", html="a web application's export?",
                              xml="an ODM file?")


def bytes_after(path: Path, size: int, end: int, last: str, where: str) -> ExtractError:
    """The refusal of a file of `size` bytes that its format says ends at byte `end`, after `last` ("its last
    page"; `where`: how that is known): readstat reads to there and ignores the rest, as if the file were whole."""
    return ExtractError(f"{path.name}: holds {size - end:,} bytes after {last}: {where}; expected the file to end "
                        "there (another file appended to it, or one sent again into the same name?)")


def from_observation(offset: int) -> str:
    """Where a chunk read at `offset` (0-based) failed, for `read_with`'s message: nothing for the first chunk
    (the file as a whole: most files are one chunk, whose size says nothing to a data manager), else the
    observation from which the file could not be read (those before it were)."""
    return f", from observation {offset + 1:,} on" if offset else ""


#: read_rows(offset, size, encoding): `size` observations from `offset` (0-based), text decoded with `encoding`
ReadRows = Callable[[int, int, str | None], pd.DataFrame]


def read_in_chunks(path: Path, declared_rows: int | None, size: int, read_rows: ReadRows, *,
                   encoding: str | None, expected_encoding: str = "UTF-8") -> Iterator[tuple[int, pd.DataFrame]]:
    """The observations `size` at a time, as (first observation number, raw frame); a last full chunk is
    followed by an empty one when the file does not say how many it holds. Fewer observations than
    declared are refused; text `encoding` does not decode is located (`where_undecodable`)."""
    offset = 0
    while True:
        try:
            frame = read_rows(offset, size, encoding)
        except UndecodableText as error:
            raise where_undecodable(path, read_rows(offset, size, "latin1"), offset, expected_encoding,
                                    error) from None
        yield offset + 1, frame
        offset += len(frame)
        if len(frame) < size or offset == declared_rows:
            break
    if declared_rows is not None and offset != declared_rows:
        raise ExtractError(f"{path.name}: {offset} observations read, but the file declares {declared_rows}; "
                           "expected a complete file (truncated in transfer?)")


def where_undecodable(path: Path, as_latin1: pd.DataFrame, offset: int, expected: str,
                      error: ExtractError) -> ExtractError:
    """The error, with the variable and observation of the first value that is not `expected` text, and
    the bytes that are not: never the value, which may name a patient (the message is logged and kept
    in meta.run, meta.source_file and meta.source).

    `as_latin1` is the chunk read again as latin-1 (any byte decodes): its values are the file's
    bytes, which are looked at as the expected encoding would read them."""
    try:
        codec = codecs.lookup(expected).name
    except LookupError:
        return error
    for column in as_latin1.columns:
        if as_latin1[column].dtype != object:
            continue
        for position, value in enumerate(as_latin1[column]):
            if not isinstance(value, str):
                continue
            raw = value.encode("latin-1")
            try:
                raw.decode(codec)
            except UnicodeDecodeError as undecodable:
                return ExtractError(
                    f"{path.name}, observation {offset + position + 1}, variable {column}: bytes "
                    f"{raw[undecodable.start:undecodable.end]!r} at byte {undecodable.start + 1} of the value are "
                    f"not {expected} (the value is not shown: it may identify a patient); {_encoding_hint(raw, codec)}")
    return error


def _encoding_hint(raw: bytes, codec: str) -> str:
    if codec != "utf-8":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "the value reads as UTF-8: set the source's `options: encoding: utf-8`"
    return "set the source's `options: encoding:` (e.g. latin1, cp1252, cp1250)"


def chunk_rows(variables: int, cells: int = CHUNK_CELLS) -> int:
    """Observations per chunk for a dataset of `variables` variables (about `cells` cells a chunk)."""
    return max(1_000, cells // max(1, variables))


# -- values to text -------------------------------------------------------------------------------
def numbers_as_text(values: np.ndarray, digits: int = 15) -> np.ndarray:
    """Doubles as text: whole numbers without ".0", others to `digits` significant digits, never in
    exponent notation; NaN -> "". 15 digits are what a double holds without binary noise (0.1 + 0.2
    is "0.3")."""
    out = np.full(len(values), "", dtype=object)
    present = np.isfinite(values)
    whole = present & (np.floor(values) == values) & (np.abs(values) < _EXACT_INTEGER)
    out[whole] = values[whole].astype(np.int64).astype(str)
    rest = present & ~whole
    if rest.any():
        spec = f".{digits}g"
        texts = [format(v, spec) for v in values[rest].tolist()]
        out[rest] = [_positional(text, digits) if "e" in text else text for text in texts]
    return out


def singles_as_text(values: np.ndarray) -> np.ndarray:
    """Single-precision numbers (a Stata `float`) as the shortest text that is the same single: the
    value delivered, not the binary noise of its double (0.1, not 0.10000000149011612)."""
    out = numbers_as_text(values)
    present = np.isfinite(values)
    rest = present & ~((np.floor(values) == values) & (np.abs(values) < _EXACT_INTEGER))
    if rest.any():
        out[rest] = [np.format_float_positional(np.float32(v), unique=True, trim="-") for v in values[rest].tolist()]
    return out


def _positional(text: str, digits: int) -> str:
    # harmonise reads positional notation only: 1e-07 -> 0.0000001
    return np.format_float_positional(float(text), precision=digits, unique=True, fractional=False, trim="-")


def temporal_as_text(values: np.ndarray, value: Shown, unit: Precision, *, count_ms: float,
                     epoch: np.datetime64 = EPOCH_1960) -> tuple[np.ndarray, int]:
    """Counts of `count_ms` milliseconds since `epoch` as ISO text at the format's precision (a time:
    since midnight, as H:M:S); also how many are outside years 1582-9999, which are kept as numbers."""
    out = np.full(len(values), "", dtype=object)
    present = np.isfinite(values)
    if value == "time":
        seconds = values if count_ms == 1000 else values * (count_ms / 1000)
        out[present] = [clock(float(v)) for v in seconds[present]]
        return out, 0
    first = (_FIRST - epoch).astype(np.int64)
    last = (_LAST - epoch).astype(np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        ms = np.where(present, np.round(values * count_ms), 0)
    in_range = present & (ms >= first) & (ms < last)
    stamps = epoch + ms[in_range].astype(np.int64).astype("timedelta64[ms]")
    if value == "date":
        stamps = stamps.astype("datetime64[D]")  # a date carrying a fraction of a day is still that day
    text = np.datetime_as_string(stamps, unit=unit).astype(object)
    if unit == "s":  # milliseconds only where a value has them (E8601DT23.3)
        fractional = ms[in_range] % 1000 != 0
        text[fractional] = np.datetime_as_string(stamps[fractional], unit="ms")
    out[in_range] = text
    outside = present & ~in_range
    out[outside] = numbers_as_text(values[outside])
    return out, int(outside.sum())


def describe_temporal(value: Shown, unit: Precision) -> str:
    """What a temporal format's values become: 'date', 'date (month)', 'datetime', 'date of a datetime'."""
    shown = {"D": "date", "M": "date (month)", "Y": "date (year)", "s": value}[unit]
    return shown if value != "datetime" or unit == "s" else f"{shown} of a datetime"


def clock(seconds: float) -> str:
    """Seconds since midnight as H:M:S, past 24 h and before 0 as the packages show them (25:00:00)."""
    sign = "-" if seconds < 0 else ""
    whole, micro = divmod(round(abs(seconds) * 1_000_000), 1_000_000)
    text = f"{sign}{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{text}.{micro:06d}".rstrip("0") if micro else text


#: (variable, its values as doubles) -> (text, how many of its dates were kept as numbers)
NumbersAsText = Callable[[Variable, np.ndarray], tuple[np.ndarray, int]]


class ColumnText(NamedTuple):
    """One variable's values of a chunk as text, and what was kept as written."""

    text: np.ndarray
    not_dates: int  # temporal values outside 1582-9999, kept as numbers
    special_missing: int  # special missing values (Stata .a-.z), kept as written


def column_as_text(series: pd.Series, variable: Variable | None, as_text: NumbersAsText) -> ColumnText:
    """A variable's values as text: character values as read (missing: ""), numeric ones by `as_text`.
    A numeric variable's special missing value, read as its letter, is written as the package
    writes it (`.a`)."""
    if variable is None or variable.type == "character":
        return ColumnText(series.fillna("").to_numpy(dtype=object), 0, 0)
    letters = None
    if series.dtype == object:  # numbers with special missing values (letters), or None for missing
        raw = series.to_numpy(dtype=object)
        letters = np.fromiter((isinstance(v, str) for v in raw), dtype=bool, count=len(raw))
        series = pd.to_numeric(series.where(~letters), errors="coerce")
    text, not_dates = as_text(variable, series.to_numpy(dtype=np.float64))
    if letters is None or not letters.any():
        return ColumnText(text, not_dates, 0)
    text[letters] = ["." + letter for letter in raw[letters]]
    return ColumnText(text, not_dates, int(letters.sum()))


# -- staging --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagedDataset:
    """What `stage_dataset` wrote: the observations, the dataset, what was kept as written."""

    rows: int
    metadata: Dataset
    not_dates: dict[str, int]
    special_missing: dict[str, int]
    day_zero: dict[str, tuple[int, str]] = field(default_factory=dict)  # variable -> (how many, as staged)

    def notices(self, path: Path) -> list[str]:
        """The dataset's description, then what was kept as written, and an empty dataset said."""
        metadata = self.metadata
        notices = [f"{path.name}: {line}" for line in replace(metadata, rows=self.rows).describe()]
        notices += [f"{path.name}: {count} value(s) of {name} ({metadata.variables[name].format}) are not dates "
                    "between 1582 and 9999: kept as numbers" for name, count in self.not_dates.items()]
        notices += [f"{path.name}: {count} value(s) of {name} are {metadata.package} special missing values "
                    "(.a-.z), kept as written (.a): a mapping's codes: or null_values: say what they mean"
                    for name, count in self.special_missing.items()]
        notices += [f"{path.name}: {count} value(s) of {name} ({metadata.variables[name].format}) are 0, "
                    f"{metadata.package}'s date 0 ({text}): no date entered? (a date left empty and typed as 0, or "
                    f"computed from one); read as a date, {_day_zero_loads(text)} unless the mapping's null_values "
                    f"lists \"{text}\"" for name, (count, text) in self.day_zero.items()]
        if not self.rows:
            notices.append(f"{path.name}: no observations")
        return notices


def read_apart(path: Path, read: Callable[[], T], *, what: str, out: Path | None = None) -> T:
    """`read()` of `path` in a child process (etl/extract/isolated.py): a file that crashes ReadStat fails on
    its own, said to be a damaged `what` ("SPSS data file (.sav, .zsav)")."""
    return isolated.read_apart(path, read, what=what, out=out, reader="ReadStat", prepare=_ready_to_fork)


@functools.cache
def _ready_to_fork() -> None:
    """Import, before the first fork, what the child reads and stages with: pyreadstat, and the modules Arrow's
    and narwhals's conversions of a pandas frame import on first use."""
    import numpy.rec  # noqa: F401  pandas's isna (fillna) imports it on first use
    import pyreadstat  # noqa: F401

    frame = pd.DataFrame({"number": [1.0], "text": ["a"]})
    pa.Table.from_pandas(frame)
    try:  # pyreadstat 1.3 makes its frames through narwhals (not a dependency of ours: a later one may not)
        import narwhals.stable.v2 as nw
    except ImportError:
        pass
    else:
        nw.from_native(frame, eager_only=True)


Chunks = Callable[[], Iterator[tuple[int, pd.DataFrame, Dataset]]]


def stage_apart(path: Path, out: Path, chunks: Chunks, as_text: NumbersAsText, lineage: Mapping[str, str] | None,
                metadata_key: bytes, *, what: str) -> StagedDataset:
    """`stage_dataset` of `chunks()` in a child process (`read_apart`): `chunks` (a functools.partial of a
    format's chunk reader) reads there, and `as_text` is a module's function (both pickle)."""
    staging = functools.partial(_stage_chunks, path, out, chunks, as_text, dict(lineage or {}), metadata_key)
    return read_apart(path, staging, what=what, out=out)


def _stage_chunks(path: Path, out: Path, chunks: Chunks, as_text: NumbersAsText, lineage: Mapping[str, str],
                  metadata_key: bytes) -> StagedDataset:
    return stage_dataset(path, out, chunks(), as_text, lineage, metadata_key)


def stage_dataset(path: Path, out: Path, chunks: Iterator[tuple[int, pd.DataFrame, Dataset]],
                  as_text: NumbersAsText, lineage: Mapping[str, str], metadata_key: bytes) -> StagedDataset:
    """Write a dataset's chunks to one Parquet file: variables as text, `_line`, lineage; its
    description in the schema metadata under `metadata_key` (JSON).

    Written under a temporary name in the same folder and renamed into place, so a failure
    never leaves half a file where a reader would look.
    """
    rows = 0
    not_dates: dict[str, int] = {}
    special: dict[str, int] = {}
    day_zero: dict[str, tuple[int, str]] = {}
    metadata: Dataset | None = None
    writer: pq.ParquetWriter | None = None
    with written_atomically(out) as temp:
        try:
            for first, frame, metadata in chunks:
                if writer is None:
                    schema = _staging_schema(path, metadata, lineage, metadata_key)
                    writer = staging_writer(temp, schema)
                # Column by column, each column's text dropped once it is Arrow: a chunk is held
                # raw and as Arrow, never also as Python strings whole.
                arrays = []
                for name in metadata.variables:
                    column = column_as_text(frame[name], metadata.variables[name], as_text)
                    arrays.append(pa.array(column.text, type=pa.string()))
                    if column.not_dates:
                        not_dates[name] = not_dates.get(name, 0) + column.not_dates
                    if column.special_missing:
                        special[name] = special.get(name, 0) + column.special_missing
                    if zeros := _day_zero(frame[name], metadata.variables[name], as_text):
                        count, _text = day_zero.get(name, (0, ""))
                        day_zero[name] = (count + zeros, code_text(0, metadata.variables[name], as_text))
                arrays.append(pa.array(np.arange(first, first + len(frame), dtype=np.int64)))
                arrays += [pa.repeat(pa.scalar(value, pa.string()), len(frame)) for value in lineage.values()]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
    assert metadata is not None  # the chunks are at least one (maybe empty)
    return StagedDataset(rows, metadata, not_dates, special, day_zero)


def _day_zero(values: pd.Series, variable: Variable, as_text: NumbersAsText) -> int:
    """How many values of a date variable are 0, the package's date 0 (SPSS's 1582-10-14, SAS's and Stata's
    1960-01-01): no date of a patient of the warehouse, but most often a date left empty and typed as 0. Not
    a time's (midnight), nor a Stata year's (`%ty`: the year 0, kept as a number)."""
    if variable.temporal in (None, "time") or code_text(0, variable, as_text) == "0":
        return 0
    return int((pd.to_numeric(values, errors="coerce") == 0).sum())


def _day_zero_loads(text: str) -> str:
    """What a date 0 staged as `text` does read as a core date."""
    if text[:4] < "1900":
        return "it quarantines its record as a date before 1900 (XT-DATE-NOT-BEFORE-1900)"
    return f"it loads as {text[:10]}"


def _staging_schema(path: Path, metadata: Dataset, lineage: Mapping[str, str], metadata_key: bytes) -> pa.Schema:
    reserved = sorted({LINE_COLUMN, *lineage} & set(metadata.variables))
    if reserved:
        raise ExtractError(f"{path.name}: variable(s) {reserved} clash with the reader's own columns "
                           f"({LINE_COLUMN}, lineage); expected other variable names")
    fields = [pa.field(name, pa.string()) for name in metadata.variables]
    fields.append(pa.field(LINE_COLUMN, pa.int64()))
    fields += [pa.field(key, pa.string()) for key in lineage]
    return pa.schema(fields, metadata={metadata_key: metadata.to_json().encode()})


def staged_metadata(staged: Path, metadata_key: bytes, kind: type[DatasetT]) -> DatasetT | None:
    """The description kept in a staged file's schema under `metadata_key`; None for a file staged otherwise."""
    raw = pq.read_schema(staged).metadata or {}
    return kind.from_json(raw[metadata_key]) if metadata_key in raw else None


# -- what a dataset declares ----------------------------------------------------------------------
#: a variable's display format -> what its values are written as ('date', 'date (month)', 'datetime',
#: 'time', ...: `describe_temporal`), None for a format whose values are not dates or times
TemporalOf = Callable[[str | None], str | None]


def declared_variables(meta: Any, temporal_of: TemporalOf) -> dict[str, Variable]:
    """The variables pyreadstat's metadata declares: label, format, type, storage length, and what a
    numeric variable's format makes of its values (`temporal_of`)."""
    variables: dict[str, Variable] = {}
    for name, label in zip(meta.column_names, meta.column_labels):
        display = meta.original_variable_types.get(name) or None
        numeric = meta.readstat_variable_types.get(name) != "string"
        variables[name] = Variable(
            label=label or None, format=display, type="numeric" if numeric else "character",
            length=int(meta.variable_storage_width.get(name) or 8), temporal=temporal_of(display) if numeric else None)
    return variables


def declared_codes(meta: Any, variables: Mapping[str, Variable], as_text: NumbersAsText) -> dict[str, dict[str, str]]:
    """The value labels pyreadstat's metadata declares: variable -> code as its values are staged -> label."""
    return {name: {code_text(code, variables[name], as_text): str(label) for code, label in labels.items()}
            for name, labels in meta.variable_value_labels.items() if name in variables}


def column_details(metadata: Dataset, without_codes: Collection[str] = ()) -> dict[str, ColumnInfo]:
    """A dataset's variables as `rtw profile` and `rtw scaffold` see them: label, format and code list
    (none for the variables `without_codes`)."""
    return {name: ColumnInfo(label=variable.label, declared_type=variable.format,
                             codes=None if name in without_codes else dict(metadata.codes.get(name, {})) or None,
                             temporal=variable.temporal)
            for name, variable in metadata.variables.items()}


def code_text(code: object, variable: Variable, as_text: NumbersAsText) -> str:
    """A value the file declares of a variable (a value label's code, a missing value) as its staged
    values write it, by the variable's own `as_text`: 1.0 -> "1"; a date variable's count as its date (a
    label on an SPSS date's 0 is '1582-10-14', where the data say so, not '0'); a numeric variable's
    special missing value, which pyreadstat gives as its letter, -> ".a"."""
    if isinstance(code, str):
        return f".{code}" if variable.type == "numeric" else code
    if isinstance(code, (int, float, np.integer, np.floating)):
        return str(as_text(variable, np.array([code], dtype=np.float64))[0][0])
    return str(code)
