"""Carry over the harmonised rows of the patients whose records did not change since the last load.

A nightly snapshot repeats most of what the last one held. Everything harmonise decides about a
record depends on its own patient only (etl/transform/parts.py), so a patient whose records are
what they were (every value, line and record set) harmonises as before: their rows are taken from
the harmonised folder of the source's last load, and only the other patients, and the records
without a patient key, are harmonised. Their core rows keep their lineage, the export that
delivered them as they are and the run that loaded them then (still in the archive), so publish
finds them unchanged: stage and core change by the rows that changed. Their records (stage.record,
where each record is now, which the quality report and the file counts read) name the new export.

Each load's folder holds MEMO: per source patient (`who`, a digest of the patient key, and the
pseudonym), a digest of their records and, per record set, the rows read and quarantined (what the
patient adds to the file counts). Both digests are MD5 behind a secret derived from the
pseudonymisation key: neither can be recomputed from a guessed patient number or record, and
DuckDB computes them over the whole source at once. A memo is used only when it was written
under the same mapping, key and harmonise code, and the source's patient keys had the same shapes: a record
key's local part holding a number of a key's shape is published hidden (harmonise `publish_keys`), so a patient
whose key has a new shape (654321 among TREP-000001, ...) hides an unchanged patient's REG[123456], and the
last of a shape leaving shows it again. That is rare, and what a hidden key was cannot be judged from its
digest: every patient is harmonised then. A source is carried over only when each record set
comes from one file (a chain of increments is harmonised whole) and every record set carries the
patient key, joined sections joined on it; otherwise no memo is written and everything is harmonised.

A free text hides the numbers, birth dates and EUPIDs of every patient of the source (etl/transform/screen.py),
and a patient who arrives later may be named by a carried note. The memo keeps the fingerprint of the
screen its load screened by; when the source's screen differs now, the carried rows are made what a
fresh load would write: their free text holding a digit (any, where an EUPID of the source has none) is
screened anew (a table's note, the patient
record's country mapped as written in patient_source: `harmonise.screened_fields`; only those columns;
a carried text that hid nothing is the text as written), and the patients whose carried rows the
screen may judge otherwise now are harmonised again: a `{patient}` or `{date}` in a note or a
`<hidden>` refused value (what was hidden is not kept), a refused value quoted that it hides now.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import fsio, resources, schema
from etl.config import WAREHOUSE_SQL_DIR, connect_duckdb
from etl.extract.adapter import FORMAT_MODULES, LINE_COLUMN
from etl.extract.file_names import PATIENT
from etl.transform.days import DATE
from etl.transform.harmonise import PATIENT_COUNT_COLUMNS, screened_fields
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey, source_pseudonym
from etl.transform.records import SourcePatientKeys
from etl.transform.screen import TextScreen

MEMO = "patients.parquet"
_MEMO_COLUMNS = ["who", "source_patient_pseudonym", "digest", *PATIENT_COUNT_COLUMNS[1:]]
_VERSION = 1
_FILES = b"rtw_files"  # the memo's metadata key: file name -> rows, of the files its load wrote
_SCREEN = b"rtw_screen"  # the memo's metadata key: the fingerprint of the screen its free text was screened by
_FILE_COLUMNS = ("source_file", "source_file_sha256")  # which export a row came from: stamped, not compared
_SEPARATOR, _NULL = "\x1f", "\x1e"


@dataclass
class Patients:
    """A load's source patients, each with the digest of their records, and what can be carried over."""

    fresh: pd.DataFrame  # who, source_patient_pseudonym, digest: the patients harmonised now
    fresh_rows: dict[str, np.ndarray]  # record set -> its rows to harmonise (the patients not carried over)
    files: dict[str, tuple[str, str]]  # record set -> (file name, sha256) it comes from now
    carried: pd.DataFrame  # the memo rows of the patients carried over (_MEMO_COLUMNS)
    previous: Path | None  # the folder they are carried from
    header: bytes  # what the digests hold for (_header)
    screen: TextScreen  # what a free text may not show now
    screened: str  # the screen's fingerprint
    rescreened: dict[str, list[str]]  # harmonised file -> its free-text columns to screen anew (screen changed)

    @property
    def carried_patients(self) -> int:
        return int(self.carried["source_patient_pseudonym"].nunique())

    def carried_file_counts(self) -> dict[str, dict[str, int]]:
        """What the carried patients' rows count for the files they come from now (sha256 -> counts)."""
        counts: dict[str, dict[str, int]] = {}
        by_set = self.carried.groupby("record_set")[["rows_read", "rows_quarantined"]].sum()
        for record_set, (read, quarantined) in by_set.iterrows():
            c = counts.setdefault(self.files[str(record_set)][1], {"rows_read": 0, "rows_loaded": 0,
                                                                   "rows_quarantined": 0})
            c["rows_read"] += int(read)
            c["rows_loaded"] += int(read - quarantined)
            c["rows_quarantined"] += int(quarantined)
        return counts


def patients(mapping: SourceMapping, tables: Mapping[str, pa.Table], key: PseudonymKey,
             previous: Path | None, screen: TextScreen, keys: SourcePatientKeys) -> Patients | None:
    """The source's patients and those carried over from `previous` (the folder of the last load);
    None when the source cannot be carried over (see the module's docstring). screen: what a free text
    of the source may not show now; keys: the record sets' patient keys."""
    files = _files_of(mapping, tables)
    if files is None or not tables:
        return None
    norms = {}  # record set -> each row's normalised patient key (None: no key), in memory only
    with connect_duckdb() as con:
        rows = []
        for index, name in enumerate(sorted(tables)):
            table = tables[name]
            norms[name] = keys.of(name)
            con.register(f"set{index}", table.append_column("_norm", pa.array(norms[name], pa.string()))
                         .append_column("_order", pa.array(np.arange(len(table)))))
            rows.append(f"SELECT _norm, {_row_text(index, table)} AS r FROM set{index} WHERE _norm IS NOT NULL")
        secret = _memo_secret(key)
        # A patient's rows as a multiset: the count and the sums of their MD5s (the two halves apart,
        # so no sum overflows). No sort, no concatenation: a few bytes a patient, whatever their rows.
        found = con.execute(f"""
            SELECT _norm AS norm, md5(? || _norm) AS who,
                   md5(? || count(*)::VARCHAR || ',' || sum(md5_number_upper(r))::VARCHAR
                         || ',' || sum(md5_number_lower(r))::VARCHAR) AS digest
            FROM ({" UNION ALL ".join(rows)})
            GROUP BY _norm""", [f"who {secret}", f"records {secret}"]).df()
    header = _header(mapping, key, tables, screen)
    carried, screened_then = _carried(previous, header, found[["who", "digest"]])
    screened = screen.fingerprint(secret.encode())
    rescreened = {}
    if len(carried) and screened_then != screened:
        assert previous is not None
        rescreened = screened_fields(mapping)
        otherwise = _judged_otherwise(previous, rescreened, carried["source_patient_pseudonym"], screen)
        carried = carried[~carried["source_patient_pseudonym"].isin(otherwise)]
    fresh_patients = found[~found["who"].isin(carried["who"])]
    fresh_patients.insert(0, "source_patient_pseudonym", pd.Series(
        [source_pseudonym(key, mapping.source_id, norm) for norm in fresh_patients["norm"]],
        index=fresh_patients.index, dtype=object))
    kept = set(found["norm"]) - set(fresh_patients["norm"])
    fresh_rows = {name: ~norm.isin(kept).to_numpy() for name, norm in norms.items()}
    return Patients(fresh_patients[["who", "source_patient_pseudonym", "digest"]], fresh_rows, files, carried,
                    previous if len(carried) else None, header, screen, screened, rescreened)


def _files_of(mapping: SourceMapping, tables: Mapping[str, pa.Table]) -> dict[str, tuple[str, str]] | None:
    """Each record set's one file (name, sha256), or None when the source cannot be carried over."""
    if not mapping.joins_on_patient_key():
        return None  # a section joined on other keys may belong to another patient's record
    files = {}
    for name, table in tables.items():
        if not {mapping.patient_key, *_FILE_COLUMNS} <= set(table.column_names):
            return None
        if len(table) == 0:
            continue
        found = pa.Table.from_arrays([table.column(c).combine_chunks().dictionary_decode()
                                      if pa.types.is_dictionary(table.column(c).type) else table.column(c)
                                      for c in _FILE_COLUMNS], names=list(_FILE_COLUMNS)).group_by(
            list(_FILE_COLUMNS)).aggregate([])
        if len(found) != 1:
            return None  # records of one set from several files (increments): harmonised whole
        files[name] = (found.column(0)[0].as_py(), found.column(1)[0].as_py())
    return files


def _row_text(index: int, table: pa.Table) -> str:
    """SQL for everything harmonise reads in a row of record set number `index`: its values and line
    (its record set's name and columns are in the memo's header), or its place where it has no line
    (a repeated record key's first copy wins); the file it comes from is left out."""
    values = ", ".join(f"coalesce({schema.sql_name(c)}::VARCHAR, chr({ord(_NULL)}))" for c in _compared(table))
    place = "" if LINE_COLUMN in table.column_names else ", _order::VARCHAR"
    return f"concat_ws(chr({ord(_SEPARATOR)}), '{index}'{place}, {values})"


def _compared(table: pa.Table) -> list[str]:
    return sorted(c for c in table.column_names if c not in _FILE_COLUMNS)


def _memo_secret(key: PseudonymKey) -> str:
    """A secret of the key's own for the memo's digests: without it a digest cannot be recomputed from
    a guess of a patient's records."""
    return hmac.new(key.secret, b"rtw carry over memo", hashlib.sha256).hexdigest()


class Unreadable(Exception):
    """The last load's folder cannot be read back (a damaged or missing file): nothing is carried over."""


@contextmanager
def _reading_back(path: Path) -> Iterator[None]:
    """Reading the last load's files: what a damaged one raises, as Unreadable naming it."""
    try:
        yield
    except (MemoryError, pa.ArrowMemoryError, duckdb.OutOfMemoryException):
        raise  # not the file's fault: harmonising everything would need more memory still
    except (OSError, pa.ArrowException, duckdb.Error) as exc:
        raise Unreadable(f"{path}: {type(exc).__name__}: {exc}") from exc


def _carried(previous: Path | None, header: bytes, digests: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The previous memo's rows of the patients whose digest is the same now, and the fingerprint of the
    screen their free text was screened by (None: not known)."""
    nothing = pd.DataFrame(columns=_MEMO_COLUMNS), None
    if previous is None or not (memo := previous / MEMO).is_file():
        return nothing
    with _reading_back(memo):
        stored = pq.read_table(memo)
    metadata = stored.schema.metadata or {}
    if metadata.get(b"rtw") != header:
        return nothing
    for name, rows in json.loads(metadata[_FILES]).items():  # what the load wrote is all there
        path = previous / f"{name}.parquet"
        with _reading_back(path):
            found = pq.read_metadata(path).num_rows
        if found != rows:
            raise Unreadable(f"{path}: holds {found} rows, its load wrote {rows}")
    screened = metadata[_SCREEN].decode() if _SCREEN in metadata else None
    return stored.to_pandas().merge(digests, on=["who", "digest"])[_MEMO_COLUMNS], screened


def _judged_otherwise(previous: Path, free_text: Mapping[str, list[str]], carried: pd.Series,
                      screen: TextScreen) -> set[str]:
    """The carried patients (by pseudonym) whose rows in `previous` the screen judges otherwise now, or may
    (what it hid then is not kept): a note holding a {patient} or {date}, a refused value hidden, or
    quoted and holding what the screen hides now."""
    wheres = []  # (file, which rows, the text to judge: NULL for a note, judged otherwise whatever it holds)
    with _reading_back(previous):
        for table, columns in free_text.items():
            path = previous / f"{table}.parquet"
            names = set(pq.read_schema(path).names) if path.is_file() else set()
            present = [c for c in columns if c in names]
            if present:
                wheres.append((path, " OR ".join(f"contains(\"{c}\", '{hidden}')"
                                                 for c in present for hidden in (PATIENT, DATE)), "NULL"))
        if (rejections := previous / "rejections.parquet").is_file():
            wheres.append((rejections, "value IS NOT NULL" if screen.hides_without_digit
                           else r"contains(value, '<hidden>') OR regexp_matches(value, '\d')", "value"))
        if not wheres:
            return set()
        with connect_duckdb() as con:
            con.register("carried", pa.table({"p": carried.unique()}))
            found = con.execute("SELECT DISTINCT p, t FROM (" + " UNION ALL ".join(
                f"SELECT split_part(source_record_key, '|', 1) AS p, {text} AS t "
                f"FROM read_parquet({schema.sql_text(str(path))}) WHERE {where}" for path, where, text in wheres)
                + ") WHERE p IN (SELECT p FROM carried)").fetchall()
    return {p for p, text in found if text is None or "<hidden>" in text or screen.holds(text)}


def _header(mapping: SourceMapping, key: PseudonymKey, tables: Mapping[str, pa.Table], screen: TextScreen) -> bytes:
    """What a memo's digests hold for: its format, the mapping, the key (its fingerprint), harmonise's
    code, the record sets in the order digested with the columns compared, and the shapes of the source's
    patient keys (`TextScreen.key_fingerprint`): whether a record key's local part is hidden follows them."""
    return json.dumps({"version": _VERSION, "mapping": hashlib.sha256(mapping.model_dump_json().encode()).hexdigest(),
                       "key": key.fingerprint(), "code": code_digest(),
                       "record_sets": [[name, _compared(tables[name])] for name in sorted(tables)],
                       "key_shapes": screen.key_fingerprint(_memo_secret(key).encode())}).encode()


@cache
def code_digest() -> str:
    """The code and tables harmonise runs on (`harmonise_code`) and the versions of the libraries that type
    its values: a change harmonises everything."""
    return resources.code_digest(harmonise_code(), "pandas", "pyarrow", "numpy")


def harmonise_code() -> list[Path]:
    """What harmonise runs on: etl/transform with its vocabularies, every module under etl/ the harmonise step
    imports at any depth (`imported_modules`: etl/spreadsheet.py's words for yes and no, file_names.py's key
    shapes, ...), and the warehouse's columns it writes. Derived, not listed: a module harmonise comes to
    import is covered the day it does (tests/test_carry_over.py holds it to what a real harmonise loads)."""
    etl = Path(__file__).resolve().parents[1]
    # parts.py runs the step; the format readers are imported by name (adapter_for): their typed_numbers and
    # sparse_columns tell harmonise how a value reads
    roots = [etl / "transform" / "parts.py", *(etl / "extract" / f"{name}.py" for name in FORMAT_MODULES.values())]
    return sorted({*resources.code_files(etl / "transform"), *imported_modules(roots, etl),
                   WAREHOUSE_SQL_DIR / "core.sql", WAREHOUSE_SQL_DIR / "stage.sql"})


# An import of a module of the package: `from etl.x import a, b` (a and b may be modules), `import etl.x`, at any
# indentation (a function's lazy import counts too)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(etl(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)"
                     r"|import[ \t]+(etl(?:\.\w+)*))", re.MULTILINE)


def imported_modules(roots: Iterable[Path], etl: Path) -> set[Path]:
    """The modules of the package `etl` (its folder) that `roots`, modules of it, import at any depth, with the
    packages holding them, and the roots. Read by a regex, not parsed: the step's ~40 modules take 8 ms so,
    150 ms through `ast` (a run computes the digest every time); a docstring's line read as an import only
    adds a module."""
    files: dict[str, list[Path]] = {}  # dotted name -> its module's file, if it names one

    def file_of(name: str) -> list[Path]:
        if (paths := files.get(name)) is None:
            where = etl.parent.joinpath(*name.split("."))
            paths = files[name] = [p for p in (where.with_suffix(".py"), where / "__init__.py") if p.is_file()]
        return paths

    found: set[Path] = set()
    todo = list(roots)
    while todo:
        if (path := todo.pop()) in found:
            continue
        found.add(path)
        for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
            module, names, plain = match.groups()
            parts = (plain or module).split(".")
            todo += [p for depth in range(1, len(parts) + 1) for p in file_of(".".join(parts[:depth]))]  # its packages
            if names:  # a name imported from a package may be a module of it
                todo += [p for name in re.findall(r"\w+", names) for p in file_of(f"{module}.{name}")]
    return found


def carried_rows(found: Patients) -> Iterator[tuple[str, pa.Table]]:
    """Per harmonised file name (`diagnosis`, `records`, ...), the carried patients' rows from the
    previous folder. A record (stage.record: where each record is now) takes the file its record set
    comes from now, and so does each section it joined; its line is what it was (the digest covers it).
    A core row keeps its lineage: the export that delivered it as it is, and the run that loaded it then;
    its free text is screened anew when the screen changed since."""
    if found.previous is None:
        return
    with connect_duckdb() as con:
        con.register("carried", pa.table({"p": found.carried["source_patient_pseudonym"].unique()}))
        con.register("file_now", pa.table({"record_set": list(found.files),
                                           "file": [f for f, _ in found.files.values()],
                                           "sha": [s for _, s in found.files.values()]}))
        carried = "split_part(source_record_key, '|', 1) IN (SELECT p FROM carried)"
        for path in sorted(found.previous.glob("*.parquet")):
            name, source = path.stem, schema.sql_text(str(path))
            if name == "records":  # the sections it joined too: their rows count for the files they come from now
                query = (f"SELECT r.* REPLACE (coalesce(f.file, r.source_file) AS source_file, "
                         f"coalesce(f.sha, r.source_file_sha256) AS source_file_sha256, "
                         f"map_from_entries(list_transform(map_entries(r.section_file_sha256), s -> "
                         f"{{'key': s.key, 'value': coalesce(n.sha_of[s.key], s.value)}})) AS section_file_sha256) "
                         f"FROM read_parquet({source}) r LEFT JOIN file_now f USING (record_set) "
                         f"CROSS JOIN (SELECT map(list(record_set), list(sha)) AS sha_of FROM file_now) n "
                         f"WHERE {carried}")
            elif name not in ("removals", Path(MEMO).stem):  # those are of the load that wrote them
                query = f"SELECT * FROM read_parquet({source}) WHERE {carried}"
            else:
                continue
            with _reading_back(path):
                rows = con.execute(query).to_arrow_table()
            yield name, _screened_anew(rows, found.rescreened.get(name, []), found.screen)


def _screened_anew(rows: pa.Table, columns: list[str], screen: TextScreen) -> pa.Table:
    """The rows with each of their free-text `columns` screened by `screen` (a text without a digit as it is)."""
    for column in (c for c in columns if c in rows.column_names):
        values = rows.column(column)
        if not screen.hides_without_digit and not pc.any(pc.match_substring_regex(values, r"\d")).as_py():
            continue
        screened = [screen.screened(text) if text is not None else None for text in values.to_pylist()]
        rows = rows.set_column(rows.schema.get_field_index(column), rows.schema.field(column),
                               pa.array(screened, values.type))
    return rows


def write_memo(found: Patients, fresh_counts: list[pd.DataFrame], folder: Path, written: Mapping[str, int]) -> None:
    """This load's MEMO: every patient's digest with their counts (harmonised now or carried over), and
    the rows of each file written to `folder` (the next load reads them back only when all are there)."""
    counts = pd.concat([c for c in fresh_counts if not c.empty] or [pd.DataFrame(columns=PATIENT_COUNT_COLUMNS)],
                       ignore_index=True)
    fresh = found.fresh.merge(counts, on="source_patient_pseudonym")
    memo = pd.concat([frame for frame in (fresh[_MEMO_COLUMNS], found.carried) if not frame.empty]
                     or [pd.DataFrame(columns=_MEMO_COLUMNS)], ignore_index=True)
    table = pa.Table.from_pandas(memo.astype({"rows_read": "int64", "rows_quarantined": "int64"}),
                                 schema=_MEMO_SCHEMA, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({"rtw": found.header, _FILES: json.dumps(dict(written)),
                                                  _SCREEN: found.screened}), folder / MEMO)


def recount_memo(folder: Path) -> None:
    """The memo's rows per file as `folder` holds them now: `rtw forget` rewrote files of it without a
    patient (and the memo without their row). A listed file that is missing stays as the memo says."""
    memo = folder / MEMO
    if not memo.is_file():
        return
    table = pq.read_table(memo)
    metadata = dict(table.schema.metadata or {})
    if _FILES not in metadata:
        return
    files = {name: pq.read_metadata(folder / f"{name}.parquet").num_rows if (folder / f"{name}.parquet").is_file()
             else rows for name, rows in json.loads(metadata[_FILES]).items()}
    with fsio.written_atomically(memo) as temp:
        pq.write_table(table.replace_schema_metadata({**metadata, _FILES: json.dumps(files).encode()}), temp)


_MEMO_SCHEMA = pa.schema([("who", pa.string()), ("source_patient_pseudonym", pa.string()), ("digest", pa.string()),
                          ("record_set", pa.string()), ("rows_read", pa.int64()), ("rows_quarantined", pa.int64())])
