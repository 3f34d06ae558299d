"""`rtw forget` of a patient whose files are named by their number (a file per patient, `Fall_123456_Verlauf.csv`):
afterwards no archive copy, tombstone or pull-ledger line under the home carries the number (landing/ is the
centre's), an unchanged night stays unchanged, and the same file uploaded again lands nothing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook
from test_file_names import KEY as NAMES_KEY
from test_file_names import NUMBERS, _as_an_earlier_version_left_it
from test_names_shown_upgrade import _run_killed_at, per_patient_night  # noqa: F401

from etl import pipeline, synth
from etl.config import SOURCES_DIR, Home, resolve_home
from etl.extract.landing import LandingFile, archive, erased_export, sha256_of
from etl.forget import forget, hide_erased_numbers, number_in_names
from etl.pull import pull_source
from etl.pull.dropzone import RemoteFile
from etl.pull.ledger import LedgerKey, read_ledger, unnamed
from etl.steps import RunSummary
from etl.transform.mapping import load_mapping
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, source_pseudonym

KEY = "forget-file-names-key-0123456789abcdef"
HEADER = ("id_record;codice_paziente;codice_centro;sesso;data_nascita;data_diagnosi;data_registrazione;morfologia;"
          "comportamento;topografia;lateralita;base_diagnosi;dimensione_cm;stato_vitale;data_ultimo_contatto;"
          "data_decesso;eupid;note")


def _case_file(folder: Path, number: str, note: str = "") -> None:
    """A German registry's export of one patient (a case: `Fall`), in the Italian registry's layout."""
    row = f"1;{number};IT-BO01;2;27/03/2010;05/11/2018;04/07/2019;8260;3;C73.9;N;7;1,3;V;18/03/2026;;;{note}"
    (folder / f"Fall_{number}_Verlauf.csv").write_bytes(f"{HEADER}\r\n{row}\r\n".encode("cp1252"))


def _source(sources: Path, source_id: str, like: str, files: str, drop_zone: Path) -> None:
    mapping = (SOURCES_DIR / f"{like}.yaml").read_text(encoding="utf-8").replace(f"source_id: {like}",
                                                                                 f"source_id: {source_id}")
    mapping = re.sub(r"(?m)^files: .*$", f'files: "{files}"', mapping)
    (sources / f"{source_id}.yaml").write_text(f"{mapping}\ndelivery: {{url: '{drop_zone}', quiet_seconds: 0}}\n")


def _night(home: Home, sources: Path) -> RunSummary:
    for source_id in ("registry_de", "crizotinib_pp"):
        assert pull_source(home, source_id, sources_dir=sources).failures == []
    summary = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert summary.sources_failed == [], summary.message
    return summary


# GX's run times, to the microsecond, in Data Docs' paths and pages (20261207T043510.123456Z, 1796618110.123456): a
# clock's six digits were once the planted 123456 (a fresh clone's make test failed so)
_CLOCKS = re.compile(r"\d{8}T\d{6}\.\d{6}Z|\d{10}\.\d{6}")


def _carrying(home: Home, numbers: re.Pattern[str]) -> list[str]:
    """The files under the home (landing/ and secrets/ aside) whose name or text carries a number; the
    warehouse by its text values."""
    found = []
    for path in sorted(home.root.rglob("*")):
        relative = path.relative_to(home.root)
        if relative.parts[0] in ("landing", "secrets"):
            continue
        if numbers.search(_CLOCKS.sub("", str(relative))):
            found.append(f"name: {relative}")
        elif path.is_file() and path.suffix not in (".duckdb", ".wal", ".parquet", ".xlsx") \
                and numbers.search(_CLOCKS.sub("", path.read_bytes().decode("latin-1"))):
            found.append(f"text: {relative}")
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name, list(column_name) FROM duckdb_columns() WHERE "
                             "data_type = 'VARCHAR' AND NOT internal GROUP BY ALL").fetchall()
        for schema, table, columns in tables:
            quoted = ", ".join(f'"{column}"' for column in columns)
            texts = con.execute(f"SELECT concat_ws(chr(31), {quoted}) FROM {schema}.{table}").fetchall()
            found += [f"warehouse: {schema}.{table}" for (text,) in texts if text and numbers.search(text)][:1]
    return found


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Two nights of a source sending a CSV per patient (the first night's superseded by the second's) and
    one sending a workbook per patient, pulled from drop zones; then the second night's CSV patient and the
    workbook's patient erased, and the first night's patient erased ahead (no longer loaded)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RTW_QUIET_SECONDS", "0")  # the files are written a moment before they are read
        env.setenv(KEY_ENV, KEY)  # the pulls know an erased patient's file by its listing (etl/pull/ledger.py)
        yield _forgotten(tmp_path_factory.mktemp("forget_file_names"))


def _forgotten(root: Path) -> dict[str, object]:
    generated = root / "synth"
    synth.generate(generated, patients=30, seed=4)
    (workbook,) = (generated / "landing" / "crizotinib_imt").glob("*.xlsx")
    rows = list(load_workbook(workbook, read_only=True)["Enrolment"].iter_rows(values_only=True))
    enrolled = str(rows[[r[0] for r in rows].index("Patient ID") + 1][0])  # IMT-FR01-001: letters and digits
    home = resolve_home(root / "home").ensure()
    sources, csv_zone, book_zone = root / "sources", root / "zone_de", root / "zone_pp"
    for folder in (sources, csv_zone, book_zone):
        folder.mkdir()
    _source(sources, "registry_de", "registry_it", "Fall_*_Verlauf.csv", csv_zone)
    _source(sources, "crizotinib_pp", "crizotinib_imt", "Pat_*.xlsx", book_zone)
    _case_file(csv_zone, "123456")
    shutil.copy(workbook, book_zone / f"Pat_{enrolled}.xlsx")
    _night(home, sources)
    _case_file(csv_zone, "234567")  # sorts after 123456: the current export, 123456's superseded
    _night(home, sources)
    numbers = re.compile(rf"123456|234567|{'[-_ ]'.join(enrolled.split('-'))}", re.IGNORECASE)
    before = _carrying(home, numbers)
    results = [forget(home, "registry_de", "234567", key_value=KEY, sources_dir=sources),
               forget(home, "registry_de", "123456", key_value=KEY, sources_dir=sources, not_loaded=True),
               forget(home, "crizotinib_pp", enrolled.lower(), key_value=KEY, sources_dir=sources)]
    return {"home": home, "sources": sources, "zones": (csv_zone, book_zone), "numbers": numbers,
            "before": before, "results": results}


@pytest.mark.integration
def test_no_name_tombstone_or_ledger_line_keeps_the_number(forgotten):
    home, numbers = forgotten["home"], forgotten["numbers"]
    assert isinstance(home, Home) and isinstance(numbers, re.Pattern)
    # Before: the archive copies (the first night's too), the workbook's, and the ledgers named them.
    assert {line.split("/")[0] for line in forgotten["before"]} >= {"name: archive", "text: pulled"}
    assert _carrying(home, numbers) == []
    assert sorted(p.name for p in (home.archive / "registry_de").iterdir()) == sorted(
        [f"{s}.erased" for s in _prefixes(home, "registry_de")]
        + [f"{s}__Fall_{{patient}}_Verlauf.csv" for s in _prefixes(home, "registry_de")])
    (prefix,) = _prefixes(home, "crizotinib_pp")
    assert [p.name for p in (home.archive / "crizotinib_pp").iterdir()] == [f"{prefix}.erased"]  # deleted whole
    results = forgotten["results"]
    assert isinstance(results, list)
    assert not any(numbers.search(p) for r in results for p in [*r.files_rewritten, *r.files_deleted])


def _prefixes(home: Home, source_id: str) -> list[str]:
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return sorted(sha[:16] for (sha,) in con.execute(
            "SELECT source_file_sha256 FROM meta.source_file WHERE source_id = ?", [source_id]).fetchall())


@pytest.mark.integration
def test_an_unchanged_night_stays_unchanged_and_an_upload_again_lands_nothing(forgotten):
    home, sources, numbers = forgotten["home"], forgotten["sources"], forgotten["numbers"]
    assert isinstance(home, Home) and isinstance(sources, Path) and isinstance(numbers, re.Pattern)
    archived = sorted(p.name for p in home.archive.rglob("*"))
    looked = [pull_source(home, s, sources_dir=sources) for s in ("registry_de", "crizotinib_pp")]
    assert [(o.pulled, o.skipped) for o in looked] == [([], []), ([], [])]  # known as listed: not downloaded
    unchanged = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert unchanged.sources_changed == [] and sorted(p.name for p in home.archive.rglob("*")) == archived
    # The same files uploaded again (a new time): downloaded, known by their content, not landed.
    later = os.stat(home.warehouse).st_mtime + 60
    for zone in forgotten["zones"]:  # type: ignore[attr-defined]
        for path in zone.iterdir():
            os.utime(path, (later, later))
    outcomes = [pull_source(home, s, sources_dir=sources) for s in ("registry_de", "crizotinib_pp")]
    assert [o.pulled for o in outcomes] == [[], []]
    assert {k.reason for o in outcomes for k in o.skipped} == {"re-uploaded with the same content as already pulled"}
    again = pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert again.sources_changed == [] and sorted(p.name for p in home.archive.rglob("*")) == archived
    assert _carrying(home, numbers) == []
    # and the next look at the drop zones: the files are known by how they were listed now
    assert all(pull_source(home, s, sources_dir=sources).skipped == [] for s in ("registry_de", "crizotinib_pp"))


@pytest.mark.integration
def test_a_changed_re_delivery_of_an_erased_patients_file_keeps_no_number(forgotten):
    """After the erasure the centre sends the patient's files again with other content: the current CSV
    (held: it holds no one else), the superseded one and the workbook are pulled and looked at by the next
    run, which knows the key: their copies and ledger lines are named without the number, as forget names
    them, and the run names the next pull's files so too."""
    home, sources, numbers = forgotten["home"], forgotten["sources"], forgotten["numbers"]
    assert isinstance(home, Home) and isinstance(sources, Path) and isinstance(numbers, re.Pattern)
    csv_zone, book_zone = forgotten["zones"]  # type: ignore[misc]
    _case_file(csv_zone, "234567", note="corrected")
    _case_file(csv_zone, "123456", note="corrected")
    (book,) = book_zone.iterdir()
    load_workbook(book).save(book)  # saved again: other bytes
    for source_id in ("registry_de", "crizotinib_pp"):
        assert pull_source(home, source_id, sources_dir=sources).failures == []
    assert _carrying(home, numbers) != []  # the pull does not pseudonymise names: the run tells the number
    pipeline.run(home, key_value=KEY, sources_dir=sources)
    assert _carrying(home, numbers) == []
    copies = sorted(p.name for p in (home.archive / "registry_de").iterdir())
    held = sha256_of(csv_zone / "Fall_234567_Verlauf.csv")[:16]  # the current export, held: no one else in it
    assert {f"{held}.erased", f"{held}__Fall_{{patient}}_Verlauf.csv"} <= set(copies)
    new_book = sha256_of(book)[:16]  # scrubbed: deleted behind the tombstone named by its hash
    assert f"{new_book}.erased" in [p.name for p in (home.archive / "crizotinib_pp").iterdir()]
    looked = [pull_source(home, s, sources_dir=sources) for s in ("registry_de", "crizotinib_pp")]
    assert [(o.pulled, o.skipped) for o in looked] == [([], []), ([], [])]  # unnamed lines: known as listed
    assert sorted(p.name for p in (home.archive / "registry_de").iterdir()) == copies


def test_an_export_whose_copy_forget_renamed_is_not_archived_again(tmp_path):
    home = resolve_home(tmp_path / "home").ensure()
    export = home.landing / "registry_de" / "Fall_123456_Verlauf.csv"
    export.parent.mkdir(parents=True)
    _case_file(export.parent, "123456")
    landed = LandingFile("registry_de", export, sha256_of(export), export.stat().st_size, "REG", date(2026, 11, 1))
    tombstone = erased_export(home.archive, "registry_de", landed.sha256)
    tombstone.parent.mkdir(parents=True)
    tombstone.write_bytes(b"")
    archive(landed, home.archive)  # the next run: the centre's export is still in landing/
    assert [p.name for p in tombstone.parent.iterdir()] == [tombstone.name] == [f"{landed.sha256[:16]}.erased"]


@pytest.mark.parametrize(("key", "name", "shown"), [
    ("123456", "Fall_123456_Verlauf.csv", "Fall_{patient}_Verlauf.csv"),
    ("123456", "Fall123456.csv", "Fall{patient}.csv"),
    ("123456", "Fall_1234567_Verlauf.csv", "Fall_1234567_Verlauf.csv"),  # another, longer number
    ("123456", "Fall_0123456.csv", "Fall_0123456.csv"),
    ("ILTB-00012", "patient_iltb_00012.xlsx", "patient_{patient}.xlsx"),  # any case, '-' written '_'
    ("ILTB-00012", "patient-ILTB-000123.xlsx", "patient-ILTB-000123.xlsx"),
    ("imt-fr01-001", "/drop/IMT-FR01-001/Pat_IMT-FR01-001.xlsx", "/drop/{patient}/Pat_{patient}.xlsx"),
])
def test_the_number_is_found_in_a_name_as_names_write_it(key, name, shown):
    number = number_in_names(key)
    assert number is not None and number.sub("{patient}", name) == shown


def test_a_number_too_short_to_name_anyone_is_not_looked_for():
    assert number_in_names("2503") is None and number_in_names("7") is None


def test_a_run_finds_an_erased_patients_number_however_a_name_writes_it(tmp_path):
    home = Home(tmp_path / "home").ensure()
    key = PseudonymKey(KEY.encode())
    erased = {source_pseudonym(key, "iltb", "ILTB-00012")}
    landed = home.landing / "iltb" / "patient_iltb_00012.csv"  # sent again after the erasure
    landed.parent.mkdir(parents=True)
    landed.write_bytes(b"")
    archived = home.archive / "iltb"
    archived.mkdir(parents=True)
    for copy in ("aaaaaaaaaaaaaaaa__patient_iltb_00012.csv", "bbbbbbbbbbbbbbbb__patient_iltb_00013.csv"):
        (archived / copy).write_bytes(b"")
    ledger = read_ledger(home, "iltb", mend=True)
    ledger.record(_remote("/drop/ILTB 00012/patient_iltb_00012.csv"), "a" * 64, ["patient_iltb_00012.csv"])
    ledger.record(_remote("/drop/ILTB 00013/patient_iltb_00013.csv"), "b" * 64, ["patient_iltb_00013.csv"])
    assert hide_erased_numbers(home, load_mapping(SOURCES_DIR / "iltb.yaml"), key, erased) == 1
    assert sorted(p.name for p in archived.iterdir()) == [f"{'a' * 16}.erased", f"{'a' * 16}__patient_{{patient}}.csv",
                                                          f"{'b' * 16}__patient_iltb_00013.csv"]
    text = ledger.path.read_text()
    assert "00012" not in text and "/drop/{patient}/patient_{patient}.csv" in text and text.count("00013") == 3
    assert landed.exists()  # landing/ is the centre's
    assert hide_erased_numbers(home, load_mapping(SOURCES_DIR / "iltb.yaml"), key, set()) == 0


def _remote(path: str, size: int = 316, version: str = "v1") -> RemoteFile:
    return RemoteFile(path=path, name=path.rpartition("/")[2], size=size, version=version)


def test_the_ledger_keeps_an_erased_patients_file_by_digests_only(tmp_path):
    home = Home(tmp_path / "home").ensure()
    ledger = read_ledger(home, "registry_de", mend=True)
    ledger.record(_remote("/drop/Fall_123456_Verlauf.csv"), "a" * 64, ["Fall_123456_Verlauf.csv"])
    ledger.record(_remote("/drop/Fall_234567_Verlauf.csv"), "b" * 64, ["Fall_234567_Verlauf.csv"])
    ledger.record(_remote("/drop/cases.zip"), "c" * 64, ["Fall_123456_Notiz.csv", "Fall_234567_Notiz.csv"])
    number = number_in_names("123456")
    assert number is not None
    key = LedgerKey.of(PseudonymKey(KEY.encode()))
    assert unnamed(home, "registry_de", lambda name: number.sub("{patient}", name), key) == 2
    text = ledger.path.read_text()
    assert "123456" not in text and text.count("234567") == 3 and "/drop/cases.zip" in text
    after = read_ledger(home, "registry_de", mend=True, key=key)
    assert after.has(_remote("/drop/Fall_123456_Verlauf.csv"))  # listed as it was pulled: not pulled again
    assert not after.has(_remote("/drop/Fall_123456_Verlauf.csv", version="v2"))  # uploaded again: looked at
    assert after.has_content(_remote("/drop/Fall_123456_Verlauf.csv", version="v2"), "a" * 64)
    assert not after.has_content(_remote("/drop/Fall_123456_Verlauf.csv", version="v2"), "d" * 64)
    assert after.has(_remote("/drop/Fall_234567_Verlauf.csv")) and after.has(_remote("/drop/cases.zip"))
    after.record(_remote("/drop/Fall_123456_Verlauf.csv", version="v2"), "a" * 64, [])  # the same content again
    assert "123456" not in ledger.path.read_text()
    assert read_ledger(home, "registry_de", key=key).has(_remote("/drop/Fall_123456_Verlauf.csv", version="v2"))
    # The patient's file sent again with new content is a new export: recorded as any other.
    after.record(_remote("/drop/Fall_123456_Verlauf.csv", version="v3"), "e" * 64, ["Fall_123456_Verlauf.csv"])
    final = read_ledger(home, "registry_de")
    assert final.has(_remote("/drop/Fall_123456_Verlauf.csv", version="v3"))
    assert not final.has(_remote("/drop/Fall_123456_Verlauf.csv"))  # the last pulled from the path counts


@pytest.mark.integration
def test_report_pages_an_upgrade_still_had_to_rewrite_lose_the_number_too(per_patient_night, tmp_path):  # noqa: F811
    """An upgrade renamed the files in the history and was killed before it rewrote the earlier runs' report
    pages, which name the exports in clear: forget renames the erased patient's archive copy, by whose name
    the rewrite finds the clear name, so it rewrites the pages first; no later run could."""
    home, sources, earlier = per_patient_night(tmp_path)  # test_file_names.per_patient's, after a night
    pages = _as_an_earlier_version_left_it(home, earlier)
    _run_killed_at(home, sources, "outputs")  # after its swap: the rewrite is pending
    assert [p for p in pages if "234567" in p.read_text(encoding="utf-8")]
    forget(home, "registry_de", "234567", key_value=NAMES_KEY, sources_dir=sources)
    assert [p for p in pages if p.exists()] == pages  # the pages cite no pseudonym: kept, not deleted
    assert [p for p in pages if "234567" in p.read_text(encoding="utf-8")] == []
    pipeline.run(home, key_value=NAMES_KEY, sources_dir=sources)  # its repair finishes the rewrite
    assert [p for p in pages if NUMBERS.search(p.read_text(encoding="utf-8"))] == []
