"""`rtw forget` end to end: a copy of the session's small synthetic run, three patients erased, every file
searched afterwards."""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from pathlib import Path

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.forget import ERASED_PATIENT
from etl.transform.pseudonym import PseudonymKey, load_key, source_pseudonym

KEY = SMALL_RUN_KEY  # the shared run's: its home is copied, not generated and loaded again


def _unique(keys: list[str], landing: Path, source_id: str) -> str:
    """A key no other key contains and no other source's export mentions: a byte search finds only it."""
    others = b"".join(p.read_bytes() for p in landing.rglob("*") if p.is_file() and p.parent.name != source_id)
    for key in keys:
        if not any(key in other for other in keys if other != key) and key.encode() not in others:
            return key
    raise AssertionError(f"no unambiguous patient key in {source_id}")


def _registry_key(landing: Path) -> str:
    text = next((landing / "registry_it").glob("*.csv")).read_text(encoding="cp1252")
    keys = sorted({line.split(";")[1] for line in text.splitlines()[1:] if line.count(";") > 2})
    return _unique(keys[len(keys) // 2:], landing, "registry_it")


def _sacha_key(landing: Path) -> str:
    text = next((landing / "sacha_fr").glob("*.xml")).read_text(encoding="utf-8")
    keys = sorted(set(re.findall(r'SubjectKey="([^"]+)"', text)))
    return _unique(keys[len(keys) // 2:], landing, "sacha_fr")


def _crizotinib_key(home: Home, key: PseudonymKey) -> str:
    """A patient of the workbook who is in core (not quarantined whole)."""
    from openpyxl import load_workbook

    workbook = load_workbook(next((home.landing / "crizotinib_imt").glob("*.xlsx")), read_only=True)
    rows = list(workbook["Enrolment"].iter_rows(values_only=True))
    keys = sorted({str(r[0]) for r in rows[rows.index(next(r for r in rows if r[0] == "Patient ID")) + 1:] if r[0]})
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        linked = {p for (p,) in con.execute("SELECT source_patient_pseudonym FROM core.patient_source "
                                            "WHERE source_id = 'crizotinib_imt'").fetchall()}
    finally:
        con.close()
    return _unique([k for k in keys if source_pseudonym(key, "crizotinib_imt", k) in linked], home.landing,
                   "crizotinib_imt")


def _text_of_table(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str]) -> list[str]:
    if not columns:
        return []
    cast = " || chr(31) || ".join(f'coalesce(CAST("{c}" AS VARCHAR), \'\')' for c in columns)
    return [r[0] for r in con.execute(f"SELECT {cast} FROM {relation}").fetchall()]


def _traces(home: Home, needles: list[str], pseudonyms: set[str]) -> list[str]:
    """Where any needle remains: file bytes, Parquet and DuckDB text, XLSX members (landing/, secrets/ aside)."""
    found = []
    for path in sorted(p for p in home.root.rglob("*") if p.is_file() and not p.is_symlink()):
        top = path.relative_to(home.root).parts[0]
        if top in ("landing", "secrets"):
            continue
        data = path.read_bytes()
        # meta.erasure holds the pseudonyms by design: the file's bytes are searched for the rest
        texts = [] if path.suffix == ".duckdb" else [data.decode("utf-8", errors="replace")]
        raw_needles = [n for n in needles if n not in pseudonyms] if path.suffix == ".duckdb" else needles
        found += [f"{path.relative_to(home.root)}: bytes of needle {needles.index(n)}" for n in raw_needles
                  if n.encode() in data]
        if path.suffix == ".parquet":
            con = duckdb.connect()
            columns = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
            texts += _text_of_table(con, f"read_parquet('{path}')", columns)
            con.close()
        elif path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as workbook:
                texts += [workbook.read(m).decode("utf-8", errors="replace") for m in workbook.namelist()]
        elif path.suffix == ".duckdb":
            con = duckdb.connect(str(path), read_only=True)
            relations = con.execute("SELECT schema_name, table_name, list(column_name) FROM duckdb_columns() "
                                    "WHERE NOT internal GROUP BY ALL").fetchall()
            for schema_name, table, columns in relations:
                if (schema_name, table) == ("meta", "erasure"):
                    columns = [c for c in columns if c != "source_patient_pseudonym"]  # by design
                texts += _text_of_table(con, f'"{schema_name}"."{table}"', columns)
            con.close()
        found += [f"{path.relative_to(home.root)}: needle {i}" for i, needle in enumerate(needles)
                  if any(needle in text for text in texts)]
    return found


def _core_counts(home: Home) -> dict[str, int]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'core' "
                                            "AND table_name <> 'patient'").fetchall()]
        return {t: con.execute(f"SELECT count(*) FROM core.{t}").fetchone()[0] for t in tables}  # type: ignore[index]
    finally:
        con.close()


def _rows_of(home: Home, source_id: str, pseudonym: str) -> dict[str, int]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        tables = _core_counts(home)
        return {t: con.execute(f"SELECT count(*) FROM core.{t} WHERE source_id = ? AND "  # type: ignore[index]
                               "starts_with(source_record_key, ?)", [source_id, f"{pseudonym}|"]).fetchone()[0]
                for t in tables}
    finally:
        con.close()


def _person_of(home: Home, source_id: str, pseudonym: str) -> str:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        row = con.execute("SELECT patient_id FROM core.patient_source WHERE source_id = ? AND "
                          "source_patient_pseudonym = ?", [source_id, pseudonym]).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def _assert_rows_read_add_up(home: Home) -> None:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        wrong = con.execute("SELECT file_name FROM meta.source_file WHERE rows_read <> rows_loaded + "
                            "rows_quarantined + rows_superseded").fetchall()
    finally:
        con.close()
    assert wrong == []


@pytest.fixture(scope="module")
def erased(small_run: Home, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = copy_of(small_run, tmp_path_factory.mktemp("forget"))
    shutil.rmtree(home.root / "truth")  # the generator's answer key, not part of a warehouse home
    key = load_key(home.key_file, KEY)
    # A CSV, an ODM and an Excel source: each format's archive copy and staged files lose the patient.
    patients = {"registry_it": _registry_key(home.landing), "sacha_fr": _sacha_key(home.landing),
                "crizotinib_imt": _crizotinib_key(home, key)}
    pseudonyms = {s: source_pseudonym(key, s, k) for s, k in patients.items()}
    persons = {s: _person_of(home, s, p) for s, p in pseudonyms.items()}
    before = _core_counts(home)
    theirs = {s: _rows_of(home, s, p) for s, p in pseudonyms.items()}
    other = _plant_unapplied_link(home, pseudonyms["registry_it"])
    outputs = []
    runner = CliRunner()
    published = runner.invoke(app, ["export", "--public", "--home", str(home.root)], env={"RTW_PSEUDONYM_KEY": KEY})
    assert published.exit_code == 0 and sorted(home.public.glob("*.csv")), published.output
    for source_id, patient in patients.items():
        result = runner.invoke(app, ["forget", "--source", source_id, "--patient", patient,
                                     "--home", str(home.root), "--yes"], env={"RTW_PSEUDONYM_KEY": KEY})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return {"home": home, "patients": patients, "pseudonyms": pseudonyms, "persons": persons,
            "before": before, "theirs": theirs, "outputs": outputs, "other": other}


def _plant_unapplied_link(home: Home, pseudonym: str) -> str:
    """The notice linkage leaves when a reviewer's link of the patient and another could not be applied
    (etl/link/run.py: it names both): returns the other patient's name in it."""
    con = duckdb.connect(str(home.warehouse))
    try:
        other = con.execute("SELECT source_patient_pseudonym FROM stage.patient_source WHERE source_id = "
                            "'registry_it' AND source_patient_pseudonym <> ? LIMIT 1", [pseudonym]).fetchone()[0]
        run_id = con.execute("SELECT max(run_id) FROM meta.run").fetchone()[0]
        con.execute("INSERT INTO meta.source_notice VALUES (?, 'registry_it', ?)", [
            run_id, f"linkage: the reviewer's link of registry_it:{pseudonym} and registry_it:{other} was not "
                    "applied: the link was refused"])
    finally:
        con.close()
    return f"registry_it:{other}"


def _pseudonyms(erased: dict[str, object]) -> list[str]:
    pseudonyms = erased["pseudonyms"]
    assert isinstance(pseudonyms, dict)
    return list(pseudonyms.values())


def _needles(erased: dict[str, object]) -> list[str]:
    patients, pseudonyms = erased["patients"], erased["pseudonyms"]
    assert isinstance(patients, dict) and isinstance(pseudonyms, dict)
    needles = [*patients.values(), *pseudonyms.values(), *(f"{p}|" for p in pseudonyms.values())]
    home = erased["home"]
    assert isinstance(home, Home)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        linked = {r[0] for r in con.execute("SELECT patient_id FROM core.patient").fetchall()}
    finally:
        con.close()
    persons = erased["persons"]
    assert isinstance(persons, dict)
    return needles + [p for p in persons.values() if p not in linked]  # a person another source links stays


def test_forget_leaves_no_trace_under_the_home(erased: dict[str, object]) -> None:
    home = erased["home"]
    assert isinstance(home, Home)
    assert _traces(home, _needles(erased), set(_pseudonyms(erased))) == []
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        recorded = dict(con.execute("SELECT source_id, source_patient_pseudonym FROM meta.erasure").fetchall())
    finally:
        con.close()
    assert recorded == erased["pseudonyms"]
    assert (home.reports / "latest" / "index.html").is_file()
    assert (home.marts / "current").is_dir()


def test_forget_keeps_the_runs_record_and_names_the_patient_there_no_more(erased: dict[str, object]) -> None:
    """A run's notice that names the patient beside another stays, about the other, with the patient unnamed."""
    home, other = erased["home"], erased["other"]
    assert isinstance(home, Home) and isinstance(other, str)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        notices = [n for (n,) in con.execute("SELECT notice FROM meta.source_notice WHERE contains(notice, ?)",
                                             [other]).fetchall()]
    finally:
        con.close()
    assert notices == [f"linkage: the reviewer's link of registry_it:{ERASED_PATIENT} and {other} was not "
                       "applied: the link was refused"]


def test_forget_withdraws_the_public_export_and_says_to_write_it_again(erased: dict[str, object]) -> None:
    """Its aggregates counted the patient, like the marts sets from before the erasure."""
    home, outputs = erased["home"], erased["outputs"]
    assert isinstance(home, Home) and isinstance(outputs, list)
    assert not home.public.exists()
    said = " ".join(" ".join(o.split()) for o in outputs)
    assert f"{home.public} counted the patient and is removed: run 'rtw export --public' again" in said


def test_forget_keeps_the_other_patients(erased: dict[str, object]) -> None:
    home, before, theirs = erased["home"], erased["before"], erased["theirs"]
    assert isinstance(home, Home) and isinstance(before, dict) and isinstance(theirs, dict)
    expected = {t: n - sum(rows[t] for rows in theirs.values()) for t, n in before.items()}
    assert _core_counts(home) == expected
    assert all(sum(rows.values()) > 0 for rows in theirs.values())  # the patients had data to erase
    _assert_rows_read_add_up(home)


def test_forget_never_prints_the_patient_key(erased: dict[str, object]) -> None:
    outputs, patients = erased["outputs"], erased["patients"]
    assert isinstance(outputs, list) and isinstance(patients, dict)
    for output in outputs:
        assert "erased" in output
        assert not any(k in output for k in patients.values())


def test_later_runs_keep_the_patient_out(erased: dict[str, object], caplog: pytest.LogCaptureFixture) -> None:
    home = erased["home"]
    assert isinstance(home, Home)
    counts = _core_counts(home)
    # The centres send new exports that still hold the patients: copies under a new name and content.
    for source_id, pattern, name in (("registry_it", "*.csv", "TREP_export_20261102.csv"),
                                     ("sacha_fr", "*.xml", "SACHA_ODM_20261102.xml")):
        export = next((home.landing / source_id).glob(pattern))
        (home.landing / source_id / name).write_bytes(export.read_bytes() + b"\n")
        export.unlink()
    with caplog.at_level(logging.INFO):
        summary = pipeline.run(home, key_value=KEY, force=True)
    assert summary.status == "completed", summary.message
    # The folders forget rewrote are read back whole: the other patients are carried over.
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "cannot be read back" in m]
    assert {m.split(":")[0] for m in said if "carried over from the last load" in m} >= {"registry_it", "sacha_fr"}
    assert _core_counts(home) == counts
    assert _traces(home, _needles(erased), set(_pseudonyms(erased))) == []
    _assert_rows_read_add_up(home)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        superseded = dict(con.execute(
            "SELECT source_id, rows_superseded FROM meta.source_file "
            "WHERE status = 'loaded' AND source_id IN ('registry_it', 'sacha_fr')").fetchall())
    finally:
        con.close()
    assert superseded["registry_it"] == 1  # the erased patient's record, read and left out
    assert superseded["sacha_fr"] > 0


def test_forget_refuses_an_unknown_patient_and_redoes_the_files_of_an_erased_one_without_naming_them(
        erased: dict[str, object]) -> None:
    home, patients = erased["home"], erased["patients"]
    assert isinstance(home, Home) and isinstance(patients, dict)
    runner = CliRunner()
    for patient, reason, code in ((patients["registry_it"], "erased already", 0),
                                  ("NO-SUCH-PATIENT-42", "no patient", 1)):
        result = runner.invoke(app, ["forget", "--source", "registry_it", "--patient", patient,
                                     "--home", str(home.root), "--yes"], env={"RTW_PSEUDONYM_KEY": KEY})
        assert result.exit_code == code, result.output
        assert reason in result.output and patient not in result.output
    assert _traces(home, _needles(erased), set(_pseudonyms(erased))) == []  # done again, nothing comes back


def test_a_deleted_binary_archive_copy_is_not_archived_again_from_landing(tmp_path):
    from datetime import date

    from etl.config import SOURCES_DIR, resolve_home
    from etl.extract.landing import LandingFile, archive, sha256_of
    from etl.forget import scrub_export_copies
    from etl.transform.mapping import load_mapping
    from etl.transform.pseudonym import PseudonymKey

    home = resolve_home(tmp_path / "home").ensure()
    export = home.landing / "esmart" / "ESMART_DM_20261101.xpt"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"HEADER RECORD*******LIBRARY stands in for a SAS file holding the erased patient")
    landed = LandingFile("esmart", export, sha256_of(export), export.stat().st_size, "DM", date(2026, 11, 1))
    copy = archive(landed, home.archive)
    assert copy.exists()
    _, deleted = scrub_export_copies(home, load_mapping(SOURCES_DIR / "esmart.yaml"), PseudonymKey(b"k"), {"p"},
                                     [landed.sha256])
    assert deleted == [str(copy)] and not copy.exists()
    archive(landed, home.archive)  # the next run: the centre's export is still in landing/
    assert not copy.exists() and sorted(p.name for p in copy.parent.iterdir()) == [f"{copy.name}.erased"]
