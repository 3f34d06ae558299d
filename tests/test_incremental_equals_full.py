"""Nights of edited exports, loaded incrementally, leave the warehouse a fresh home loaded once from the
final exports holds.

The nightly run does work proportional to change: an unchanged source is skipped, a changed one carries
its unchanged patients' harmonised rows over (etl/transform/carry_over.py), rule findings are reused for
unchanged sources (etl/quality/rule_memo.py, gx_memo.py) and a mart is rebuilt only when a table it reads
changed (etl/load/marts.py). One home of 150 synthetic persons lives through a few nights of the edits
centres make (a date or code changed, a record deleted, one copied under a new key, one made invalid and
later fixed, a patient made to link to another source's patient and another made to stop, an unchanged
file sent again under a new name); after each night its warehouse is compared with a fresh home's, loaded
once from a copy of the same landing folder with the same key: every core table and mart, dq.issue,
dq.quarantine and dq.check_result of the last run, and the linkage, without the columns that name a run
or the export a row was first delivered in (a carried-over row keeps its lineage, by design).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import openpyxl
import pytest

from etl import pipeline
from etl.config import Home, resolve_home
from etl.synth import generate

KEY = "incremental-equals-full-key"
_PER_RUN = {"run_id", "source_file_sha256", "first_validation", "last_validation"}
_COMPARED_DQ = {  # dq tables and views, each as the last run left it
    "dq.issue": "run_id = (SELECT max(run_id) FROM meta.run)",
    "dq.check_result": "run_id = (SELECT max(run_id) FROM meta.run)",
    "dq.quarantine": "TRUE",
    "dq.link_candidate": "run_id = (SELECT max(run_id) FROM meta.run)",
    "stage.patient_link": "TRUE",
}

Rows = list[list[str]]


# --- the exports, as a centre edits them ---------------------------------------------------------

def _read(path: Path, encoding: str) -> Rows:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.reader(f, delimiter=";"))


def _write(path: Path, rows: Rows, encoding: str, day: str) -> None:
    text = io.StringIO()
    csv.writer(text, delimiter=";", lineterminator="\r\n").writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    when = datetime.strptime(day, "%Y%m%d").replace(hour=6).timestamp()
    os.utime(path, (when, when))  # an undated name's export day is its modification time's


def _cell(rows: Rows, key_column: str, key: str, column: str) -> str:
    header = rows[0]
    return next(r for r in rows[1:] if r[header.index(key_column)] == key)[header.index(column)]


def _set(rows: Rows, key_column: str, key: str, column: str, value: str) -> None:
    header = rows[0]
    for row in rows[1:]:
        if row[header.index(key_column)] == key:
            row[header.index(column)] = value


def _registry_it(home: Home, day: str, edit: Callable[[Rows], None]) -> None:
    """The next TREP export, dated `day`, as the last one with `edit` made (the last one stays in landing)."""
    folder = home.landing / "registry_it"
    rows = _read(sorted(folder.glob("TREP_export_*.csv"))[-1], "cp1252")
    edit(rows)
    _write(folder / f"TREP_export_{day}.csv", rows, "cp1252", day)


def _iltb(home: Home, form: str, day: str, edit: Callable[[Rows], None]) -> None:
    """The ILTB form's export sent again (same name), with `edit` made."""
    path = home.landing / "iltb" / f"ILTB_{form}.csv"
    rows = _read(path, "utf-8-sig")
    edit(rows)
    _write(path, rows, "utf-8-sig", day)


def _night_1(home: Home) -> None:
    def trep(rows: Rows) -> None:
        header = rows[0]
        _set(rows, "id_record", "3", "data_diagnosi", "01/02/2021")  # a date
        _set(rows, "id_record", "4", "morfologia", _cell(rows, "id_record", "9", "morfologia"))  # a code
        del rows[[r[0] for r in rows].index("5")]  # a record deleted
        copy = list(rows[[r[0] for r in rows].index("6")])  # a record copied under a new key
        copy[0], copy[header.index("codice_paziente")], copy[header.index("eupid")] = "9001", "TREP-009001", ""
        rows.append(copy)
        _set(rows, "id_record", "7", "data_diagnosi", "31/02/2025")  # an impossible date: quarantined
        # after this export's day: held back, then judged against the later export that repeats it unchanged
        _set(rows, "id_record", "8", "data_ultimo_contatto", "03/11/2026")
        # last seen "in 2026": placed not after the day of the export its record is in now, which a carried-over
        # row's lineage (this export, next night) does not name
        _set(rows, "id_record", "11", "data_ultimo_contatto", "00/00/2026")
        # died "in 2026": core.patient places the death so too, for a person whose rows did not change next night
        _set(rows, "id_record", "14", "stato_vitale", "M")
        _set(rows, "id_record", "14", "data_decesso", "00/00/2026")

    _registry_it(home, "20261102", trep)
    eupid = _cell(_read(sorted((home.landing / "registry_it").glob("*.csv"))[0], "cp1252"),
                  "codice_paziente", "TREP-000002", "eupid")
    _iltb(home, "ENROL", "20261102", lambda rows: _set(rows, "SUBJID", "ILTB-00003", "EUPID", eupid))  # links now
    _iltb(home, "FU", "20261102", lambda rows: rows[5].__setitem__(4, rows[7][4]))  # a contact's date
    _iltb(home, "TREAT", "20261102", lambda rows: rows.pop(3))


def _night_2(home: Home) -> None:
    first = _read(sorted((home.landing / "registry_it").glob("*.csv"))[0], "cp1252")

    def trep(rows: Rows) -> None:
        _set(rows, "id_record", "7", "data_diagnosi", _cell(first, "id_record", "7", "data_diagnosi"))  # fixed
        _set(rows, "codice_paziente", "TREP-000012", "eupid", "")  # its link to sacha_fr by EUPID gone

    _registry_it(home, "20261103", trep)
    # ILTB-00024 is sacha_fr's 01-0008 (linked by their records): another birth date, no longer
    _iltb(home, "ENROL", "20261103", lambda rows: _set(rows, "SUBJID", "ILTB-00024", "BRTHDAT", "01/1990"))
    _iltb(home, "ADVICE", "20261103", lambda rows: _set(rows, "SUBJID", "ILTB-00002", "RECTYPE", "STANDARD"))


def _night_3(home: Home) -> None:
    trep = home.landing / "registry_it"
    shutil.copy2(trep / "TREP_export_20261103.csv", trep / "TREP_export_20261104.csv")  # sent again
    odm = next((home.landing / "sacha_fr").glob("*.xml")).read_text(encoding="utf-8")
    eupid = re.search(r'ItemOID="DM.EUPID" Value="(\w+)"', odm).group(1)  # type: ignore[union-attr]

    def enrol(rows: Rows) -> None:
        _set(rows, "SUBJID", "ILTB-00003", "EUPID", "")  # no longer linked to registry_it's patient
        _set(rows, "SUBJID", "ILTB-00004", "EUPID", eupid)  # linked to a patient of sacha_fr, a skipped source

    _iltb(home, "ENROL", "20261104", enrol)
    folder = home.landing / "crizotinib_imt"
    book = openpyxl.load_workbook(sorted(folder.glob("*.xlsx"))[-1])
    sheet = book["FollowUp"]
    sheet.cell(5, 3).value = sheet.cell(4, 3).value  # a visit's date
    sheet.delete_rows(6)  # a visit deleted
    book.save(folder / "CRIZOTINIB_IMT_export_20261104.xlsx")
    when = datetime(2026, 11, 4, 6).timestamp()
    os.utime(folder / "CRIZOTINIB_IMT_export_20261104.xlsx", (when, when))


# --- the comparison ------------------------------------------------------------------------------

def _columns(con: duckdb.DuckDBPyConnection, db: str, name: str) -> list[str]:
    schema, table = name.split(".")
    found = con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
                        "AND table_name = ? ORDER BY column_index", [db, schema, table]).fetchall()
    return [c for (c,) in found if c not in _PER_RUN]


def _compared(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every table compared, with the rows of it that are compared."""
    tables = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = 'whole' "
                         "AND schema_name IN ('core', 'marts') ORDER BY 1").fetchall()
    return {**{name: "TRUE" for (name,) in tables}, **_COMPARED_DQ}


def differences(incremental: Path, full: Path) -> dict[str, tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """Per table that differs: its rows only the incremental home holds, and those only the fresh one holds."""
    found = {}
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{incremental}' AS inc (READ_ONLY)")
        con.execute(f"ATTACH '{full}' AS whole (READ_ONLY)")
        for name, where in _compared(con).items():
            columns = ", ".join(f'"{c}"' for c in _columns(con, "whole", name))
            assert columns == ", ".join(f'"{c}"' for c in _columns(con, "inc", name)), name
            rows = {db: f"SELECT {columns} FROM {db}.{name} WHERE {where.replace('meta.', f'{db}.meta.')}"
                    for db in ("inc", "whole")}
            only_inc = con.execute(f"{rows['inc']} EXCEPT ALL {rows['whole']} ORDER BY ALL").fetchall()
            only_full = con.execute(f"{rows['whole']} EXCEPT ALL {rows['inc']} ORDER BY ALL").fetchall()
            if only_inc or only_full:
                found[name] = (only_inc, only_full)
    return found


def _fresh_copy(home: Home, folder: Path, key: str = KEY) -> Home:
    """A new home whose landing is a copy of `home`'s (modification times kept), loaded once with `key`."""
    fresh = resolve_home(folder).ensure()
    shutil.rmtree(fresh.landing)
    shutil.copytree(home.landing, fresh.landing)
    pipeline.run(fresh, key_value=key)
    return fresh


NIGHTS = {"night 1": (_night_1, ["iltb", "registry_it"]), "night 2": (_night_2, ["iltb", "registry_it"]),
          "night 3": (_night_3, ["crizotinib_imt", "iltb", "registry_it"])}  # each night's edits, the sources changed


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, tuple[list, list]]]:
    """Per night, what the incremental home's warehouse holds that the fresh home's does not, and back."""
    root = tmp_path_factory.mktemp("incremental")
    home = resolve_home(root / "home").ensure()
    generate(home.root, patients=150, seed=3)
    pipeline.run(home, key_value=KEY)
    found = {}
    for night, (edit, changed) in NIGHTS.items():
        edit(home)
        summary = pipeline.run(home, key_value=KEY)
        assert (summary.sources_changed, summary.sources_failed) == (changed, []), (night, summary)
        fresh = _fresh_copy(home, root / night.replace(" ", "_"))
        found[night] = differences(home.warehouse, fresh.warehouse)
    return found


@pytest.mark.integration
@pytest.mark.parametrize("night", list(NIGHTS))
def test_an_incremental_night_leaves_what_a_full_load_of_its_exports_leaves(
        nights: dict[str, dict[str, tuple[list, list]]], night: str) -> None:
    differing = {name: {"only incremental": inc[:5], "only full": full[:5]}
                 for name, (inc, full) in nights[night].items()}
    assert differing == {}
