"""A joined section's row goes where its record goes: a record held back holds back the section row it
joined, counted quarantined in the section's own file (docs/mapping.md, `from:` a list), after publish's
recount too, on a night that carries the record over unchanged, and in a full load of the same exports; an
erased patient's section rows are counted superseded in their own file.

iLTB's diagnosis is made from [ENROL, DIAGX] joined on [SUBJID, RECORDNO] (DIAGX: one laterality row per
ENROL record), in a copy of the small run (40 persons); one ENROL record has an impossible diagnosis date.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from test_carry_over import _contents
from warehouse_query import query_frame, query_rows

from etl import pipeline
from etl.config import REPO_ROOT, Home
from etl.forget import forget
from etl.transform import carry_over

Rows = list[list[str]]
HELD = 1  # the ENROL record (its place among the records) given an impossible diagnosis date


def _edit(export: Path, edit: Callable[[Rows], None]) -> None:
    """Rewrite an iLTB export (UTF-8 with BOM, ';', CRLF) with `edit` applied to its records."""
    header, *rows = [line.split(";") for line in export.read_text(encoding="utf-8-sig").splitlines() if line]
    edit(rows)
    export.write_text("\ufeff" + "".join(";".join(r) + "\r\n" for r in [header, *rows]), encoding="utf-8",
                      newline="")


def _set(column: str, place: int, value: str, header_of: Path) -> Callable[[Rows], None]:
    index = header_of.read_text(encoding="utf-8-sig").splitlines()[0].split(";").index(column)

    def edit(rows: Rows) -> None:
        rows[place][index] = value
    return edit


def _sections_joined(root: Path, home: Home) -> Path:
    """The shipped mappings with iLTB's diagnosis joined from [ENROL, DIAGX]; DIAGX written into landing."""
    sources = root / "sources"
    shutil.copytree(REPO_ROOT / "sources", sources)
    mapping = sources / "iltb.yaml"
    single = "  diagnosis:\n    from: ENROL\n    fields:\n"
    assert single in mapping.read_text(encoding="utf-8")
    mapping.write_text(mapping.read_text(encoding="utf-8").replace(single, (
        "  diagnosis:\n    from: [ENROL, DIAGX]\n    join_on: [SUBJID, RECORDNO]\n    fields:\n"
        "      laterality: {column: LAT}\n"))  # 1 of 9 records held back: not a shrunken export
        + "max_shrink: 0.25\n", encoding="utf-8")
    enrol = home.landing / "iltb" / "ILTB_ENROL.csv"
    header, *rows = [line.split(";") for line in enrol.read_text(encoding="utf-8-sig").splitlines() if line]
    keys = [(r[header.index("SUBJID")], r[header.index("RECORDNO")]) for r in rows]
    (home.landing / "iltb" / "ILTB_DIAGX.csv").write_text(
        "\ufeffSUBJID;RECORDNO;LAT\r\n" + "".join(f"{s};{n};not_applicable\r\n" for s, n in keys),
        encoding="utf-8", newline="")
    _edit(enrol, _set("DIAGDAT", HELD, "31/02/2024", enrol))
    return sources


def _iltb_counts(home: Home) -> dict[str, tuple[int, int, int, int]]:
    files = query_rows(home, "SELECT file_name, rows_read, rows_loaded, rows_quarantined, rows_superseded "
                             "FROM meta.source_file WHERE source_id = 'iltb' AND status = 'loaded'")
    return {name: tuple(counts) for name, *counts in files}


def _held_keys(home: Home) -> list[str]:
    return query_frame(home, "SELECT source_record_key FROM dq.quarantine WHERE source_id = 'iltb' "
                             "AND record_set = 'ENROL'").source_record_key.tolist()


@pytest.fixture(scope="module")
def nights(small_run: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Night 1 loads the joined diagnosis; night 2 sends both files again, each with another patient's record
    changed, into the home (which carries the held record over) and into a copy of it after night 1 without
    the last load's memo (which harmonises every patient: a full load of the same exports)."""
    root = tmp_path_factory.mktemp("sections")
    home = copy_of(small_run, root / "carried")
    sources = _sections_joined(root, home)
    first = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)
    found: dict[str, Any] = {"first": _iltb_counts(home), "first_held": _held_keys(home), "first_run": first.run_id}
    whole = Home(root / "whole" / "home")
    shutil.copytree(home.root, whole.root, symlinks=True)
    for memo in (whole.staging / "iltb" / "harmonised").glob(f"*/{carry_over.MEMO}"):
        memo.unlink()
    return found | {"home": home, "whole": whole, "sources": sources, "first_status": first.status}


def test_a_held_back_records_section_row_counts_quarantined_in_its_own_file(nights: dict[str, Any]) -> None:
    assert nights["first_status"] == "completed"
    assert len(nights["first_held"]) == 1
    counts = nights["first"]
    assert counts["ILTB_ENROL.csv"][:3] == (counts["ILTB_DIAGX.csv"][0], counts["ILTB_DIAGX.csv"][0] - 1, 1)
    # Before: DIAGX counted its held row loaded (9 read, 9 loaded, 0 quarantined) once publish recounted.
    assert counts["ILTB_DIAGX.csv"] == (counts["ILTB_DIAGX.csv"][0], counts["ILTB_DIAGX.csv"][0] - 1, 1, 0)
    assert all(read == loaded + held + gone for read, loaded, held, gone in counts.values()), counts


def test_a_night_carrying_the_held_record_over_counts_as_a_full_load(nights: dict[str, Any],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    summaries = []
    for home in (nights["home"], nights["whole"]):
        landing = home.landing / "iltb"
        enrol, diagx = landing / "ILTB_ENROL.csv", landing / "ILTB_DIAGX.csv"
        _edit(enrol, _set("CONSDAT", 3, "02/09/2023", enrol))  # new files, the held record's rows unchanged
        _edit(diagx, _set("LAT", 5, "left", diagx))
        with caplog.at_level(logging.INFO, logger="rtw"):
            summaries.append(pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=nights["sources"]))
    assert [s.sources_changed for s in summaries] == [["iltb"], ["iltb"]]
    assert all(s.status == "completed" for s in summaries), [s.message for s in summaries]
    said = [r.getMessage() for r in caplog.records if "carried over" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("iltb: harmonised"), said
    carried, whole = nights["home"], nights["whole"]
    (held,) = _held_keys(carried)
    assert held == nights["first_held"][0]
    # its patient carried over: their other records' rows are night 1's
    assert query_rows(carried, "SELECT DISTINCT run_id FROM stage.follow_up WHERE source_id = 'iltb' "
                               "AND split_part(source_record_key, '|', 1) = split_part(?, '|', 1)",
                      [held]) == [(nights["first_run"],)]
    counts = _iltb_counts(carried)
    assert counts["ILTB_DIAGX.csv"] == (counts["ILTB_DIAGX.csv"][0], counts["ILTB_DIAGX.csv"][0] - 1, 1, 0)
    assert counts["ILTB_ENROL.csv"][2] == 1
    assert _iltb_counts(whole) == counts
    assert _contents(carried.warehouse) == _contents(whole.warehouse)  # stage.record's section files too


def test_an_erased_patients_section_rows_are_counted_superseded_in_their_own_file(nights: dict[str, Any]) -> None:
    home = nights["home"]  # after the second night
    enrol = home.landing / "iltb" / "ILTB_ENROL.csv"
    header, *rows = [line.split(";") for line in enrol.read_text(encoding="utf-8-sig").splitlines() if line]
    subject = header.index("SUBJID")
    patient = next(r[subject] for r in rows if r[subject] != rows[HELD][subject])  # their records all loaded
    theirs = sum(r[subject] == patient for r in rows)
    before = _iltb_counts(home)
    erased = forget(home, "iltb", patient, key_value=SMALL_RUN_KEY, sources_dir=nights["sources"])
    assert erased.records_removed >= theirs  # their ENROL records, and their other forms'
    after = _iltb_counts(home)
    for name in ("ILTB_ENROL.csv", "ILTB_DIAGX.csv"):  # before: DIAGX kept its rows loaded
        assert after[name][3] == before[name][3] + theirs, (name, before[name], after[name])
        assert after[name][1] == before[name][1] - theirs
    assert all(read == loaded + held + gone for read, loaded, held, gone in after.values()), after
