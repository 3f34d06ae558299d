"""Reading a file for onboarding: its record sets through the format's adapter, and its own metadata.

A file is staged by its adapter exactly as the nightly run stages it, but into a private temporary
folder (mode 0700, removed afterwards): nothing is written to the home, and only the record sets
are held in memory, whatever the file's size.

What a format declares about its columns (a CSV's dialect, SAS labels and formats, SPSS and Stata
value labels, ODM ItemDefs and CodeLists) comes from its adapter's `describe`; a format that
declares nothing is still profiled, from its values alone.

A file's name, its record sets' names (a sheet per patient) and the notices quoting them are shown as
the nightly run shows them (etl/extract/file_names.py), on the terminal, the profile page and in a
draft mapping alike: a patient number in them reads `{patient}`. No mapping says yet which column is
the patient key: the values of the columns named like one (`PATIENT_KEY_NAME`) give the numbers'
shapes, and any run of six or more digits that is not a date counts too.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl.extract.adapter import (
    LINE_COLUMN,
    LINEAGE_COLUMNS,
    ColumnInfo,
    FormatDetails,
    SourceAdapter,
    adapter_for,
    adapter_for_file,
    record_column,
    record_frame,
)
from etl.extract.errors import ExtractError
from etl.extract.file_names import (
    PatientNumbers,
    QuotedNames,
    placed,
    sheets_among,
    sheets_placed,
    shown_file_name,
    shown_record_sets,
)
from etl.extract.landing import sha256_of

__all__ = ["BOOKKEEPING_COLUMNS", "ColumnInfo", "FileRead", "FormatDetails", "OptionError", "data_columns",
           "describe_file", "read_file", "reader_options", "shown_error"]

#: columns the adapters add to every record set: lineage, not data
BOOKKEEPING_COLUMNS = frozenset({LINE_COLUMN, *LINEAGE_COLUMNS})
#: names of columns that may hold the patient key (the scaffold's guess of it too)
PATIENT_KEY_NAME = re.compile(r"subj|pati[eë]nt|paziente|paciente|patno|pat_?id|^pid$|usubjid|codice_paz|pat_?nr|"
                              r"(?<![a-z])paz(?![a-z])", re.IGNORECASE)  # cod_paz, id_paz: Italian registries


@dataclass(frozen=True)
class FileRead:
    """One file read for onboarding."""

    path: Path
    format: str
    sha256: str
    record_sets: dict[str, pd.DataFrame]
    notices: tuple[str, ...]
    details: FormatDetails
    advised_options: Mapping[str, Any] = field(default_factory=dict)  # StageResult.advised_options
    name: str = ""  # the file's name as shown: a patient number in it as {patient}


def read_file(path: Path, adapter: SourceAdapter | None = None, *, record_set: str | None = None,
              options: Any = None) -> FileRead:
    """Stage a file through its adapter into a temporary folder and return its record sets.

    Raises `ExtractError` (naming the file and the place) when the file cannot be read.
    """
    chosen = adapter or adapter_for_file(path)
    sha = sha256_of(path)
    reader_options = options if options is not None else chosen.Options()
    with tempfile.TemporaryDirectory(prefix="rtw-onboard-") as folder:
        staged = Path(folder) / chosen.staged_name(sha)
        result = chosen.stage(path, staged, reader_options, {"source_file": path.name, "source_file_sha256": sha})
        # Without a mapping, a one-record-set file's record set is named after the file.
        tables = chosen.record_tables(staged, record_set or path.stem)
        numbers = PatientNumbers.of(_patient_keys(tables.values()), any_long_number=True)
        record_sets = {name: record_frame(t) for name, t in shown_record_sets(tables, numbers).items()}
        # Frames are in memory now; the staged copy (clear identifiers) goes with the folder.
    headless = {name: frame for name, frame in record_sets.items() if header_is_a_record(frame)}
    record_sets.update({name: columns_by_position(frame) for name, frame in headless.items()})
    quoted = QuotedNames([path.name, *result.quoted, *tables])
    places = sheets_placed(result.quoted, numbers, sheets_among(reader_options))  # once: a notice per sheet
    notices = tuple(quoted.shown(placed(n, places), numbers) for n in result.notices)
    notices += tuple(f"{name}: its first row reads as a record, not column names (dates, numbers, values of their "
                     "own column): they are not shown, its columns are named by position (column 1, ...); a header "
                     "lower down is read with --option header_row=N (workbooks and CSV files), a file without one "
                     "needs one"
                     for name in headless)
    return FileRead(path, chosen.format, sha, record_sets, notices,
                    describe_file(chosen.format, path, reader_options), result.advised_options,
                    shown_file_name(path.name, numbers))


# A column name written as a value: a date (12/03/2010, 2010-03-12), a number with a decimal mark (4,7), ICD-O-3's
# 8720/3, or a name holding six digits or more (a patient number: NRX100000; a short key's shape, fu_1, is a name's).
_DECIMAL = re.compile(r"[+-]?\d+[.,]\d+")
_VALUE_SHAPES = (re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"), _DECIMAL, re.compile(r"\d{4}/\d"),
                 re.compile(r".*\d{6,}.*"))
HEADER_VALUES = 2  # column names read as values for a header row to be a record


def header_is_a_record(frame: pd.DataFrame) -> bool:
    """Whether a record set's column names are a record's values (an export without its header row, or a header
    row given too low): a name written as a value its own column holds more of (a date among dates, a decimal among
    decimals; with no value at all, as a one-record file without its header has, a name shaped as a date or a long
    number), or a value its own column holds again (a code: H, ES01), two at least and a third of the columns.
    Years (2019, 2020) are names a table may have; so are a questionnaire's items 1.1, 2.1 holding whole scores, a
    code-like name its column never holds, and names a row repeats each in its own column (a header repeated
    where exports were joined into one file)."""
    names = data_columns(frame)
    text = {name: frame[name].astype("string").str.strip() for name in names}
    repeated = _header_repeated(text)
    values = sum(1 for name in names if _written_as_its_values(name, text[name])
                 or (not repeated and bool((text[name] == name).any())))
    return values >= HEADER_VALUES and values * 3 >= len(names)


def _written_as_its_values(name: str, values: pd.Series) -> bool:
    """Whether a column's name is written as a value (`_VALUE_SHAPES`) and most of its filled values so too. A
    column with no filled value (a one-record file without its header: no rows at all) is judged by its name's
    shape alone, but for a decimal's: a header-only questionnaire's items 1.1, 2.1 are names."""
    filled = values.dropna()
    filled = filled[filled != ""]
    if not len(filled):
        return any(shape.fullmatch(name) for shape in _VALUE_SHAPES if shape is not _DECIMAL)
    return any(shape.fullmatch(name) and filled.str.fullmatch(shape.pattern).mean() >= 0.5 for shape in _VALUE_SHAPES)


def _header_repeated(text: Mapping[str, pd.Series]) -> bool:
    """Whether one row holds every column's name in that column: the header again, as a row."""
    if not text:
        return False
    same = pd.concat([(values == name).fillna(False) for name, values in text.items()], axis=1)
    return bool(same.all(axis=1).any())


def columns_by_position(frame: pd.DataFrame) -> pd.DataFrame:
    """A record set whose column names are a record's values, its columns named by position instead (column 1,
    ...): the values are a patient's (number, name, birth date), never shown as names."""
    names = iter(range(1, len(frame.columns) + 1))
    return frame.rename(columns={c: c if c in BOOKKEEPING_COLUMNS else f"column {next(names)}" for c in frame.columns})


def _patient_keys(tables: Iterable[Any]) -> set[str]:
    """The values of the columns named like a patient key: what the file's patient numbers look like."""
    return {str(v) for t in tables for c in t.column_names if PATIENT_KEY_NAME.search(c)
            for v in record_column(t, c).dropna().unique()}


def data_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a record set that hold the source's data (not lineage)."""
    return [str(c) for c in frame.columns if c not in BOOKKEEPING_COLUMNS]


def describe_file(format_name: str, path: Path, options: Any = None) -> FormatDetails:
    """What the file's format declares about it (its adapter's `describe`, read with the reader `options`
    when given); empty for most formats."""
    return adapter_for(format_name).describe(path, options)


class OptionError(ValueError):
    """A reader option given with `--option` that the format does not take, or a value it cannot read."""


def reader_options(adapter: SourceAdapter, given: Mapping[str, Any]) -> Any:
    """The format's reader options from those given, or an `OptionError` saying, on one line, which option is
    wrong and why, and the options the format takes (pydantic's own text ran over lines, with a web link)."""
    from pydantic import ValidationError

    try:
        return adapter.Options.model_validate(dict(given))
    except ValidationError as exc:
        wrong = "; ".join(f"--option {'.'.join(str(p) for p in e['loc']) or '?'}: "
                          f"{'not an option of this format' if e['type'] == 'extra_forbidden' else e['msg']}"
                          for e in exc.errors())
        known = ", ".join(adapter.Options.model_fields) or "none"
        raise OptionError(f"{wrong} ({adapter.format} reader options: {known}; docs/adapters.md)") from None


def shown_error(exc: ExtractError, paths: Sequence[Path]) -> str:
    """A reader's refusal as `rtw profile` and `rtw scaffold` print it: the names it quotes (the file's, a
    workbook's sheets: `ExtractError.quoted`) as the nightly run shows them, a patient number as {patient}
    (the file was not read, its keys are unknown: as the pull shows names before a source's keys are staged,
    a token shaped like a key, `Pat_IMT-FR01-001.xlsx`, a run of five or more digits that is not a date, or a
    number written in parts, `Fall 12 3456.csv`).

    The text that says what to fix (line, row, cell, column, what was expected) stays whole. A name whose
    number is hidden says where it is instead, so the data manager still finds it: a file its place among
    those given (a file per patient), a sheet its place in the workbook (a sheet per patient)."""
    numbers = PatientNumbers(lambda: (), key_like=True)
    text = str(exc)
    for name, place in _places(exc, paths):
        shown = shown_file_name(name, numbers)
        if shown == name or name not in text:
            continue
        quoted = f"'{name}'"
        if quoted in text:
            text = text.replace(quoted, f"'{shown}' ({place})")
        else:
            text = text.replace(name, f"{shown} ({place})" if place else shown)
    return text


def _places(exc: ExtractError, paths: Sequence[Path]) -> list[tuple[str, str]]:
    """(a name an error may quote, where it is), longest first so no name is cut inside another: the files'
    paths and names (a path as given, its place among several), and the workbook's sheets, in its order."""
    many = len(paths) > 1
    places = [(str(p), f"file {i} of the {len(paths)} given" if many else "") for i, p in enumerate(paths, start=1)]
    places += [(p.name, place) for (_, place), p in zip(places, paths, strict=True)]
    places += [(sheet, f"sheet {i} of the workbook") for i, sheet in enumerate(exc.quoted, start=1)]
    return sorted(places, key=lambda item: -len(item[0]))
