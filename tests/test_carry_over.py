"""A load that carries over the patients whose records did not change writes what harmonising every
patient writes (etl/transform/carry_over.py)."""

import ast
import hashlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from test_harmonise_parts import _record_sets, _sorted
from test_harmonise_screen import BOARD
from test_screen_whole_source import _export, _night, _patient

from etl import pipeline
from etl.extract.adapter import FORMAT_MODULES, record_frame
from etl.transform import carry_over
from etl.transform.mapping import SourceMapping
from etl.transform.parts import harmonise_to_folder
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"carry-over-test-key")
NEW_SHA = "f" * 64
_LINEAGE = ["source_file_sha256", "run_id"]  # a core row's export and run


def _next_export(mapping: SourceMapping, frames: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The record sets as the next snapshot sends them: from new files, one patient gone, and three
    values changed in the first record of each set of three other patients."""
    patients = sorted({str(k).strip().upper() for table in frames.values()
                       for k in table.column(mapping.patient_key).to_pylist()} - set(mapping.null_values))
    gone, changed = patients[0], set(patients[1:4])
    out = {}
    for name, table in frames.items():
        frame = record_frame(table)
        norm = frame[mapping.patient_key].astype(str).str.strip().str.upper()
        frame = frame[norm != gone].reset_index(drop=True)
        norm = norm[norm != gone].reset_index(drop=True)
        text = [c for c in frame.columns if frame[c].dtype == object and not c.startswith(("_", "source_file"))
                and c != mapping.patient_key]
        first = norm[norm.isin(changed)].drop_duplicates().index
        for column in text[:3]:
            frame.loc[first, column] = "changed " + frame.loc[first, column].astype(str)
        frame["source_file"] = f"next_{name}.csv"
        frame["source_file_sha256"] = NEW_SHA
        plain = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                           for f in table.schema])
        out[name] = pa.Table.from_pandas(frame, schema=plain, preserve_index=False)
    return out


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


@pytest.mark.parametrize("source_id", ["sacha_fr", "iltb", "esmart", "registry_it", "crizotinib_imt"])
def test_a_load_carrying_patients_over_writes_what_harmonising_all_writes(synthetic_run: Any, tmp_path: Path,
                                                                          source_id: str) -> None:
    home, _, _ = synthetic_run
    mapping, frames = _record_sets(home, source_id)
    last = _folder(tmp_path, "last")
    first = harmonise_to_folder(mapping, frames, KEY, "run-1", last)
    assert first.carried == 0 and (last / carry_over.MEMO).is_file()
    now = _next_export(mapping, frames)
    whole, carried = _folder(tmp_path, "whole"), _folder(tmp_path, "carried")
    one = harmonise_to_folder(mapping, now, KEY, "run-2", whole)
    two = harmonise_to_folder(mapping, now, KEY, "run-2", carried, previous=last, part_records=50)
    patients = pq.read_table(whole / carry_over.MEMO).column("source_patient_pseudonym").unique()
    assert 0 < two.carried <= len(patients) - 3  # the three changed patients are harmonised again
    assert (two.rows, two.rejected, two.file_counts, two.notices) == (one.rows, one.rejected, one.file_counts,
                                                                      one.notices)
    assert set(two.file_counts) == {NEW_SHA}  # every row counts for the file it comes from now
    names = sorted(p.name for p in whole.glob("*.parquet"))
    assert names == sorted(p.name for p in carried.glob("*.parquet"))
    for name in names:
        assert pq.read_schema(carried / name) == pq.read_schema(whole / name), name
        if name.removesuffix(".parquet") in {"patient_source", *mapping.tables}:  # a core table: lineage aside
            pd.testing.assert_frame_equal(_sorted(carried / name, _LINEAGE), _sorted(whole / name, _LINEAGE), obj=name)
        else:
            pd.testing.assert_frame_equal(_sorted(carried / name), _sorted(whole / name), obj=name)
    # A record names the export it comes from now; a carried core row the export and run that loaded it.
    assert set(pq.read_table(carried / "records.parquet").column("source_file_sha256").to_pylist()) == {NEW_SHA}
    old_files = {sha for table in frames.values() for sha in table.column("source_file_sha256").to_pylist()}
    lineage = pd.concat([pq.read_table(carried / f"{table}.parquet", columns=_LINEAGE).to_pandas()
                         for table in ("patient_source", *mapping.tables)]).drop_duplicates()
    assert "run-1" in set(lineage["run_id"])
    assert all(sha == NEW_SHA if run == "run-2" else sha in old_files
               for sha, run in lineage.itertuples(index=False)), lineage


def test_a_memo_of_another_key_mapping_or_code_carries_nothing_over(synthetic_run: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home, _, _ = synthetic_run
    mapping, frames = _record_sets(home, "registry_it")
    last = _folder(tmp_path, "last")
    harmonise_to_folder(mapping, frames, KEY, "run-1", last)
    assert harmonise_to_folder(mapping, frames, KEY, "run-2", _folder(tmp_path, "same"), previous=last).carried > 0
    other_key = harmonise_to_folder(mapping, frames, PseudonymKey(b"another key"), "run-2",
                                    _folder(tmp_path, "key"), previous=last)
    edited = mapping.model_copy(update={"title": "renamed"})
    other_mapping = harmonise_to_folder(edited, frames, KEY, "run-2", _folder(tmp_path, "mapping"), previous=last)
    monkeypatch.setattr(carry_over, "code_digest", lambda: "harmonise upgraded")
    other_code = harmonise_to_folder(mapping, frames, KEY, "run-2", _folder(tmp_path, "code"), previous=last)
    assert other_key.carried == other_mapping.carried == other_code.carried == 0


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _one_row_less(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)


@pytest.mark.parametrize(("damage", "file"), [(_truncated, carry_over.MEMO), (_truncated, "follow_up.parquet"),
                                              (Path.unlink, "diagnosis.parquet"), (_one_row_less, "records.parquet")])
def test_a_last_load_that_cannot_be_read_back_whole_carries_nothing_over(
        synthetic_run: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, file: str) -> None:
    home, _, _ = synthetic_run
    mapping, frames = _record_sets(home, "registry_it")
    last = _folder(tmp_path, "last")
    harmonise_to_folder(mapping, frames, KEY, "run-1", last)
    now = _next_export(mapping, frames)
    whole = harmonise_to_folder(mapping, now, KEY, "run-2", _folder(tmp_path, "whole"))
    damage(last / file)
    with caplog.at_level(logging.WARNING):
        again = harmonise_to_folder(mapping, now, KEY, "run-2", _folder(tmp_path, "again"), previous=last)
    assert again.carried == 0 and (again.rows, again.rejected, again.file_counts) == (whole.rows, whole.rejected,
                                                                                      whole.file_counts)
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "again").glob("*.parquet"))
    for name in names:
        pd.testing.assert_frame_equal(_sorted(tmp_path / "again" / name), _sorted(tmp_path / "whole" / name), obj=name)
    (said,) = [r.getMessage() for r in caplog.records if "cannot be read back" in r.getMessage()]
    assert said.startswith("registry_it: ") and str(last / file) in said and "harmonised again" in said


def test_records_of_one_set_from_several_files_are_harmonised_whole(synthetic_run: Any, tmp_path: Path) -> None:
    home, _, _ = synthetic_run
    mapping, frames = _record_sets(home, "registry_it")
    name, table = next(iter(frames.items()))
    files = pa.array(["a.csv" if i % 2 else "b.csv" for i in range(len(table))])
    split = {name: table.set_column(table.column_names.index("source_file"), "source_file", files)}
    last = _folder(tmp_path, "last")
    harmonise_to_folder(mapping, split, KEY, "run-1", last)
    assert not (last / carry_over.MEMO).exists()


def _later_contact(export: Path, every: int) -> None:
    """A later last-contact date on every `every`-th record of the registry's export."""
    lines = export.read_bytes().split(b"\r\n")
    column = lines[0].split(b";").index(b"data_ultimo_contatto")
    for i in range(1, len(lines), every):
        fields = lines[i].split(b";")
        if len(fields) > column:
            fields[column] = b"30/10/2026"
            lines[i] = b";".join(fields)
    export.write_bytes(b"\r\n".join(lines))


def _second_tumour(export: Path, line: int) -> None:
    """A new record, a later second tumour, for the patient of the export's `line`th record, whose record stays
    as it was: that patient has a changed and an unchanged record."""
    lines = export.read_bytes().split(b"\r\n")
    header = lines[0].split(b";")
    fields = lines[line].split(b";")
    fields[0] = str(max(int(row.split(b";")[0]) for row in lines[1:] if row) + 1).encode()
    for column in (b"data_diagnosi", b"data_registrazione"):  # a year after the first: the patient still a child
        day_month, year = fields[header.index(column)].rsplit(b"/", 1)
        fields[header.index(column)] = day_month + b"/" + str(int(year) + 1).encode()
    for column, value in ((b"morfologia", b"8910"), (b"topografia", b"C49.9")):
        fields[header.index(column)] = value
    rows = [row for row in lines if row]
    export.write_bytes(b"\r\n".join([*rows, b";".join(fields), b""]))


def _contents(warehouse: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every stage and core table's rows (sorted; lineage aside but where each record is now,
    stage.record) and the files' counts."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        found = {}
        for schema_name, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                              "WHERE schema_name IN ('stage', 'core')").fetchall():
            lineage = ("run_id",) if table == "record" else ("run_id", "source_file_sha256")
            columns = [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                                                 "AND table_name = ? AND NOT list_contains(?, column_name)",
                                                 [schema_name, table, list(lineage)]).fetchall()]
            found[f"{schema_name}.{table}"] = con.execute(
                f"SELECT {', '.join(columns)} FROM {schema_name}.{table} ORDER BY ALL").fetchall()
        found["meta.source_file"] = con.execute(
            "SELECT source_id, source_file_sha256, status, rows_read, rows_loaded, rows_quarantined, rows_superseded "
            "FROM meta.source_file ORDER BY ALL").fetchall()
        return found
    finally:
        con.close()


def test_a_nightly_run_carries_the_unchanged_patients_over(small_run: Any, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A registry export with 1 record in 5 changed and a second tumour for a patient whose first record is
    unchanged: the rerun carries the other patients over and publishes what a rerun harmonising every patient
    publishes (the small run's 40 persons: what is compared is every row either way, the 400 of the synthetic run
    only made both runs longer)."""
    homes = []
    for name in ("carried", "whole"):
        home = copy_of(small_run, tmp_path / name)
        export = next((home.landing / "registry_it").glob("*.csv"))
        _later_contact(export, every=5)  # records 1, 6, 11, ...
        _second_tumour(export, line=2)
        homes.append(home)
    carried, whole = homes
    for memo in (whole.staging / "registry_it" / "harmonised").glob(f"*/{carry_over.MEMO}"):
        memo.unlink()  # the last load's patients are unknown: everyone is harmonised
    with caplog.at_level(logging.INFO, logger="rtw"):
        summaries = [pipeline.run(home, key_value=SMALL_RUN_KEY) for home in homes]
    for summary in summaries:
        assert summary.sources_changed == ["registry_it"] and summary.status == "completed", summary.message
    said = [r.getMessage() for r in caplog.records if "carried over" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("registry_it: harmonised"), said
    assert _contents(carried.warehouse) == _contents(whole.warehouse)
    # Only the folder of the registry's load is kept: the next load carries over from it.
    assert [p.name for p in (carried.staging / "registry_it" / "harmonised").iterdir()] == [summaries[0].run_id]
    assert any((carried.staging / "iltb" / "harmonised").iterdir())  # an unchanged source keeps its own
    # Nor is the staged copy of the export the new one superseded kept: only the new one's.
    export = next((carried.landing / "registry_it").glob("*.csv"))
    staged = sorted(p.name for p in (carried.staging / "registry_it").iterdir() if p.name != "harmonised")
    assert len(staged) == 1 and staged[0].startswith(f"{hashlib.sha256(export.read_bytes()).hexdigest()}.")
    con = duckdb.connect(str(carried.warehouse), read_only=True)
    try:  # the carried patients' rows are the rows of the load before, the changed ones this run's
        runs = con.execute("SELECT count(DISTINCT run_id) FROM core.follow_up WHERE source_id = 'registry_it'"
                           ).fetchone()
        # the patient with a second tumour: both records this run's (the patient is harmonised whole)
        second = con.execute("SELECT count(*), count(DISTINCT run_id), max(run_id) FROM core.diagnosis "
                             "WHERE source_id = 'registry_it' GROUP BY patient_id HAVING count(*) > 1").fetchall()
    finally:
        con.close()
    assert runs == (2,)
    assert second == [(2, 1, summaries[0].run_id)]


def _published_keys(folder: Path) -> list[str]:
    """Every record key a harmonised folder publishes, in any of its files."""
    return sorted({key for path in folder.glob("*.parquet") if "source_record_key" in pq.read_schema(path).names
                   for key in pq.read_table(path, columns=["source_record_key"]).column(0).to_pylist()})


def test_a_carried_record_key_is_published_as_a_full_load_does_when_the_keys_shapes_change(tmp_path: Path) -> None:
    """Whether a record key's local part is hidden depends on the shapes of every patient key of the source
    (screen.py `holds_number`): a patient whose key has a new shape (654321) makes an unchanged patient's record
    number of that shape (REG[123456]) hidden, and one who leaves shows it again, in the carried rows as in a
    full load. A record without a patient key is never carried: it is published as a full load does too."""
    first = [_patient(1, "01/03/2003") | {"rid": "123456"}, _patient(2, "02/03/2004"),
             {"pid": "", "rid": "123457", "born": ""}]
    night1, _, _ = _night(tmp_path, "1", first, "a")
    shown = {"REG[123456]", "REG[123457]"}
    assert shown <= {key.split("|")[1] for key in _published_keys(night1)}  # no key has six digits alone yet

    night2, said, fresh = _night(tmp_path, "2", [*first, {"pid": "654321", "rid": "3", "born": "01/01/2012"}], "b",
                                 previous=night1)
    assert _published_keys(night2) == _published_keys(fresh) and said.carried == 0  # the shapes changed
    assert not shown & {key.split("|")[1] for key in _published_keys(night2)}
    night3, said, fresh = _night(tmp_path, "3", first, "c", previous=night2)  # the patient 654321 is no more
    assert _published_keys(night3) == _published_keys(fresh) and said.carried == 0
    assert shown <= {key.split("|")[1] for key in _published_keys(night3)}


def test_a_column_named_with_a_quote_is_read_and_carried(tmp_path: Path) -> None:
    """A hunt: an export's column `Stadium "FIGO"` (mapped or not) made the run's SQL fail, the source with it,
    though `rtw check` found nothing: its name went into the statement unquoted."""
    first = [_patient(n, f"0{n}/03/2003") | {'Stadium "FIGO"': "II"} for n in (1, 2)]
    night1, said, _ = _night(tmp_path, "1", first, "a")
    night2, said, fresh = _night(tmp_path, "2", first, "b", previous=night1)
    assert said.carried == 2 and _published_keys(night2) == _published_keys(fresh)


def _imported_by(roots: list[Path], etl: Path) -> set[Path]:
    """The modules under `etl` that `roots` import at any depth, inside a function too, and the packages
    holding them, as Python's parser reads the imports."""
    found: set[Path] = set()
    todo = list(roots)
    while todo:
        if (path := todo.pop()) in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):  # a module's packages run first
                    module = etl.parent.joinpath(*parts[:depth])
                    todo += [p for p in (module.with_suffix(".py"), module / "__init__.py") if p.is_file()]
    return found


# A source's two nights harmonised in a fresh interpreter, the second carrying over from the first: the etl
# modules it then holds, one a line.
_HARMONISE_TWO_NIGHTS = """
import sys, tempfile
from pathlib import Path
import pyarrow as pa
from etl.transform.mapping import SourceMapping
from etl.transform.parts import harmonise_to_folder
from etl.transform.pseudonym import PseudonymKey
mapping, rows, key = SourceMapping.model_validate_json(sys.argv[1]), pa.ipc.open_stream(sys.stdin.buffer).read_all(), \
    PseudonymKey(b"k")
with tempfile.TemporaryDirectory() as folder:
    (last := Path(folder) / "1").mkdir(); (now := Path(folder) / "2").mkdir()
    harmonise_to_folder(mapping, {"REG": rows}, key, "run-1", last)
    assert harmonise_to_folder(mapping, {"REG": rows}, key, "run-2", now, previous=last).carried == 2
print("\\n".join(sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})))
"""


def test_the_code_digest_covers_every_module_of_etl_harmonise_imports() -> None:
    """An upgrade of any of them harmonises every patient again, as it would harmonise them otherwise (the memo's
    code digest missed etl/spreadsheet.py, whose BOOLEAN_WORDS harmonise reads a yes/no by). What harmonise
    imports is found two ways: by Python's parser from the harmonise step (parts.py) and the format readers
    adapter_for imports by name (their typed_numbers, sparse_columns), lazy imports too; and as the modules a
    real harmonise of two nights of a small source, carrying over, has loaded."""
    covered = {path.resolve() for path in carry_over.harmonise_code()}
    etl = Path(carry_over.__file__).resolve().parents[1]
    roots = [etl / "transform" / "parts.py", *(etl / "extract" / f"{module}.py" for module in FORMAT_MODULES.values())]
    parsed = _imported_by(roots, etl)
    assert etl / "spreadsheet.py" in parsed
    assert sorted(str(p.relative_to(etl)) for p in parsed - covered) == []
    stream = pa.BufferOutputStream()
    rows = _export([_patient(1, "01/03/2003"), _patient(2, "02/03/2004")], "a")["REG"]
    with pa.ipc.new_stream(stream, rows.schema) as writer:
        writer.write_table(rows)
    mapping = BOARD.model_dump_json(by_alias=True, exclude_unset=True)
    done = subprocess.run([sys.executable, "-c", _HARMONISE_TWO_NIGHTS, mapping], input=stream.getvalue().to_pybytes(),
                          capture_output=True, check=True)
    loaded = {Path(line).resolve() for line in done.stdout.decode().splitlines()}
    loaded = {path for path in loaded if path.is_relative_to(etl)}
    assert etl / "spreadsheet.py" in loaded
    assert sorted(str(p.relative_to(etl)) for p in loaded - covered) == []
