"""A night that reuses work (skipped sources, carried-over patients, reused rule findings, kept marts)
ends with the warehouse a first run on the same exports, mappings and reference tables gives.

One home of 40 synthetic persons is loaded once (night 1); each test copies it, makes one change, runs
night 2, and loads a fresh home once from a copy of the same landing folder (modification times kept),
mappings and population table, with the same key. Compared row for row: every core table and mart,
dq.issue and dq.check_result of the last validation, dq.quarantine, and the counts and export day of
each export file the fresh home holds, without the columns that name a run, an issue's span of runs
or the export a carried-over row was first delivered in (it keeps its lineage, by design). The edits
of records (test_incremental_equals_full.py) are not repeated here: these changes leave the exports'
bytes as they were.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from shared_build import built_once

from etl import pipeline
from etl.config import SOURCES_DIR, Home, resolve_home
from etl.load.populations import FILE_NAME, default_population_file
from etl.synth import generate

KEY = "night-equivalence-key-0123456789abcdef"
_PER_RUN = {"run_id", "source_file_sha256", "first_validation", "last_validation", "first_run_id", "last_run_id"}
_LAST_VALIDATION = "run_id = (SELECT max(run_id) FROM {db}.dq.check_result)"
_COMPARED = {  # besides core and marts: what the last validation left, and the export files now loaded
    "dq.issue": _LAST_VALIDATION,
    "dq.check_result": _LAST_VALIDATION,
    "dq.quarantine": "TRUE",
    "meta.source_file": "status <> 'superseded'",
}
LATE_CONTACT = "15/11/2026"  # after the first export (1 November), before the one sent again (1 December)

Change = Callable[[Home, Path], None]  # edits a home's landing or reference folder, or the mappings folder


def _at(path: Path, day: str) -> None:
    when = datetime.strptime(day, "%Y%m%d").replace(hour=6).timestamp()
    os.utime(path, (when, when))


def _later_contact(home: Home) -> str:
    """ILTB_FU.csv with its first contact after the export's day (its modification time kept): the record key."""
    path = home.landing / "iltb" / "ILTB_FU.csv"
    when = path.stat().st_mtime
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    rows[1][rows[0].index("FUDAT")] = LATE_CONTACT
    text = io.StringIO()
    csv.writer(text, delimiter=";", lineterminator="\r\n").writerows(rows)
    path.write_bytes(text.getvalue().encode("utf-8-sig"))
    os.utime(path, (when, when))
    return f"FU[{rows[1][rows[0].index('RECORDNO')]}]"


@pytest.fixture(scope="module")
def night_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the home after night 1 and of its mappings, built once for the session's workers."""

    def build(root: Path) -> None:
        home = resolve_home(root / "home").ensure()
        generate(home.root, patients=40, seed=12)
        late = _later_contact(home)
        shutil.copytree(SOURCES_DIR, root / "sources")
        assert pipeline.run(home, key_value=KEY, sources_dir=root / "sources").status == "completed"
        assert _held(home, late) == ["XT-DATE-NOT-AFTER-EXPORT"]  # a first run on it a month later loads it

    return built_once(tmp_path_factory, "night-equivalence", build)


def _columns(con: duckdb.DuckDBPyConnection, db: str, name: str) -> list[str]:
    schema, table = name.split(".")
    found = con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
                        "AND table_name = ? ORDER BY column_index", [db, schema, table]).fetchall()
    return [c for (c,) in found if c not in _PER_RUN]


def differences(nightly: Path, fresh: Path) -> dict[str, dict[str, list[tuple[object, ...]]]]:
    """Per table that differs: the rows only the nightly home holds, and those only the fresh one holds."""
    found = {}
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{nightly}' AS nightly (READ_ONLY)")
        con.execute(f"ATTACH '{fresh}' AS fresh (READ_ONLY)")
        tables = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = "
                             "'fresh' AND schema_name IN ('core', 'marts') ORDER BY 1").fetchall()
        for name, where in {**{t: "TRUE" for (t,) in tables}, **_COMPARED}.items():
            columns = ", ".join(f'"{c}"' for c in _columns(con, "fresh", name))
            assert columns == ", ".join(f'"{c}"' for c in _columns(con, "nightly", name)), name
            rows = {db: f"SELECT {columns} FROM {db}.{name} WHERE {where.format(db=db)}" for db in ("nightly", "fresh")}
            only_nightly = con.execute(f"{rows['nightly']} EXCEPT ALL {rows['fresh']} ORDER BY ALL").fetchall()
            only_fresh = con.execute(f"{rows['fresh']} EXCEPT ALL {rows['nightly']} ORDER BY ALL").fetchall()
            if only_nightly or only_fresh:
                found[name] = {"only nightly": only_nightly[:5], "only fresh": only_fresh[:5]}
    return found


def _night_2(night_1: Path, root: Path, change: Change) -> tuple[Home, Home, list[str]]:
    """Night 2 on a copy of the night-1 home after `change`, and a fresh home loaded once from the same
    landing, reference folder and mappings: both homes, and the sources night 2 loaded again."""
    shutil.copytree(night_1, root, symlinks=True)
    nightly, sources = resolve_home(root / "home"), root / "sources"
    change(nightly, sources)
    changed = pipeline.run(nightly, key_value=KEY, sources_dir=sources).sources_changed
    fresh = resolve_home(root / "fresh").ensure()
    shutil.rmtree(fresh.landing)
    shutil.copytree(nightly.landing, fresh.landing)
    if (nightly.root / "reference").is_dir():
        shutil.copytree(nightly.root / "reference", fresh.root / "reference")
    pipeline.run(fresh, key_value=KEY, sources_dir=sources)
    return nightly, fresh, changed


def _held(home: Home, record: str) -> list[str]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return [rule for (rules,) in con.execute("SELECT rule_ids FROM dq.quarantine WHERE source_id = 'iltb' "
                                                 "AND source_record_key LIKE '%|' || ?", [record]).fetchall()
                for rule in rules]


def _sent_again_later(home: Home, sources: Path) -> None:
    """ILTB_FU.csv delivered again, the same bytes a month later: an undated name's export day is its
    modification time's."""
    _at(home.landing / "iltb" / "ILTB_FU.csv", "20261201")


def _mappings_edited(home: Home, sources: Path) -> None:
    """A code list value remapped and a rule's threshold parameter changed (registry_it), an error rule
    switched off (iltb): mappings only, the exports as they were."""
    registry = sources / "registry_it.yaml"
    text = registry.read_text().replace("{D: right, S: left,", "{D: left, S: left,", 1)
    registry.write_text(text.replace("max_age_at_diagnosis_years: 18", "max_age_at_diagnosis_years: 10", 1))
    iltb = sources / "iltb.yaml"
    iltb.write_text(iltb.read_text() + "\nquality:\n  XT-DATE-NOT-AFTER-EXPORT: {enabled: false}\n")


def _population_changed(home: Home, sources: Path) -> None:
    with default_population_file().open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        row[3] = str(int(row[3]) // 2)
    (home.root / "reference").mkdir(mode=0o700, exist_ok=True)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    (home.root / "reference" / FILE_NAME).write_text(text.getvalue(), encoding="utf-8")


CHANGES: dict[str, tuple[Change, list[str]]] = {  # each change, and the sources night 2 loads again
    "an export sent again unchanged, a month later": (_sent_again_later, ["iltb"]),
    "mappings edited (a code remapped, a threshold parameter, a rule switched off)": (_mappings_edited,
                                                                                     ["iltb", "registry_it"]),
    "the population table changed": (_population_changed, []),
}


@pytest.mark.integration
@pytest.mark.parametrize("change", list(CHANGES))
def test_night_2_leaves_what_a_first_run_on_its_exports_leaves(night_1: Path, tmp_path: Path, change: str) -> None:
    edit, reloaded = CHANGES[change]
    nightly, fresh, changed = _night_2(night_1, tmp_path / "night-2", edit)
    assert differences(nightly.warehouse, fresh.warehouse) == {}
    assert changed == reloaded

