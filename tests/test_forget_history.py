"""`rtw forget` in a home with a history: two nights (the second with changed exports), a query batch sent
and answered, a run killed before its swap. The patient is linked to another source and has findings,
queries and answers; afterwards nothing under the home names them, whatever night wrote it."""

from __future__ import annotations

import csv
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.forget import ForgetResult, forget
from etl.synth import generate
from etl.transform.pseudonym import PseudonymKey, source_pseudonym

KEY = "forget-history-key-0123456789abcdef0123456"
PSEUDONYM_KEY = PseudonymKey(KEY.encode())


def _linked_patient_with_findings(home: Home, truth: Path) -> tuple[str, str, str]:
    """(number, centre, esmart pseudonym) of a sacha_fr patient one person with an esmart patient, with findings."""
    linked = {}
    with (truth / "links.csv").open() as links:
        rows = list(csv.DictReader(links))
    for row in rows:
        if row["source_id"] == "sacha_fr":
            partner = [r for r in rows if r["true_person_id"] == row["true_person_id"] and r["source_id"] == "esmart"]
            if len(partner) == 1:
                esmart = source_pseudonym(PSEUDONYM_KEY, "esmart", partner[0]["source_patient_key"])
                linked[source_pseudonym(PSEUDONYM_KEY, "sacha_fr", row["source_patient_key"])] = (
                    row["source_patient_key"], esmart)
    found = query_rows(home, """
        SELECT s.source_patient_pseudonym, s.centre_id, e.source_patient_pseudonym
        FROM core.patient_source s JOIN core.patient_source e USING (patient_id)
        WHERE s.source_id = 'sacha_fr' AND e.source_id = 'esmart'
          AND s.source_patient_pseudonym IN (SELECT patient_pseudonym FROM dq.issue WHERE source_id = 'sacha_fr')
        ORDER BY 1""")
    for pseudonym, centre, esmart in found:
        if pseudonym in linked and linked[pseudonym][1] == esmart:
            return linked[pseudonym][0], centre, esmart
    raise AssertionError("no sacha_fr patient with findings linked to an esmart patient")


def _subject(export: Path, number: str) -> str:
    match = re.search(rf'<SubjectData[^>]*SubjectKey="{re.escape(number)}".*?</SubjectData>', export.read_text(), re.S)
    assert match is not None
    return match.group(0)


def _crizotinib_patient(home: Home) -> str:
    """A workbook patient the warehouse holds, whose number no other source's export holds."""
    workbook = load_workbook(next((home.landing / "crizotinib_imt").glob("*.xlsx")), read_only=True)
    rows = list(workbook["Enrolment"].iter_rows(values_only=True))
    numbers = sorted({str(r[0]) for r in rows[rows.index(next(r for r in rows if r[0] == "Patient ID")) + 1:] if r[0]})
    loaded = {p for (p,) in query_rows(home, "SELECT source_patient_pseudonym FROM core.patient_source "
                                             "WHERE source_id = 'crizotinib_imt'")}
    others = b"".join(p.read_bytes() for p in home.landing.rglob("*") if p.is_file() and "crizotinib" not in p.name)
    return next(n for n in numbers if source_pseudonym(PSEUDONYM_KEY, "crizotinib_imt", n) in loaded
                and n.encode() not in others and sum(n in m for m in numbers) == 1)


def _answer_every_query(home: Home, centre: str, number: str) -> int:
    """Send the centre's queries and import its answers, the patient's quoting its number; how many answers."""
    runner = CliRunner()
    env = {"RTW_PSEUDONYM_KEY": KEY}
    sent = runner.invoke(app, ["queries", "--centre", centre, "--source", "sacha_fr", "--home", str(home.root)],
                         env=env)
    assert sent.exit_code == 0, sent.output
    sheet = next(home.reports.glob("*/queries/*.csv"))
    rows = list(csv.reader(sheet.open(encoding="utf-8-sig")))
    header = rows[0]
    for row in rows[1:]:
        row[header.index("response")] = "cannot_determine"
        row[header.index("comment")] = f"dossier {number} à revoir" if row[0] == source_pseudonym(
            PSEUDONYM_KEY, "sacha_fr", number) else "à revoir"
    returned = home.root.parent / "returned.csv"
    with returned.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows(rows)
    imported = runner.invoke(app, ["responses", "import", str(returned), "--home", str(home.root)], env=env)
    assert imported.exit_code == 0, imported.output
    return len(rows) - 1


def _next_night(home: Home) -> None:
    """The second night's exports: the ODM and the workbook under a new name, each with a change."""
    odm = next((home.landing / "sacha_fr").glob("*.xml"))
    (odm.parent / "SACHA_ODM_20261102.xml").write_text(odm.read_text().replace("20261101", "20261102"))
    odm.unlink()
    book = next((home.landing / "crizotinib_imt").glob("*.xlsx"))
    workbook = load_workbook(book)
    workbook.properties.title = "second night"
    workbook.save(book.parent / "CRIZOTINIB_IMT_export_20261102.xlsx")
    book.unlink()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("forget_history")
    home = Home(folder / "home")
    generate(home.root, patients=20, seed=7)
    truth = shutil.move(home.root / "truth", folder / "truth")  # the generator's answer key, not the home's
    assert pipeline.run(home, key_value=KEY).status == "completed"
    number, centre, esmart = _linked_patient_with_findings(home, Path(truth))
    subject = _subject(next((home.landing / "sacha_fr").glob("*.xml")), number)
    eupid = re.search(r'ItemOID="DM.EUPID" Value="([^"]+)"', subject)
    assert eupid is not None
    answers = _answer_every_query(home, centre, number)
    crizotinib = _crizotinib_patient(home)
    _next_night(home)
    assert pipeline.run(home, key_value=KEY).status == "completed"
    # A run killed before its swap leaves its next warehouse, a whole copy with the patient in it.
    leftover = home.root / f".{home.warehouse.name}.20261203T020000Z-dead.next"
    shutil.copyfile(home.warehouse, leftover)
    results = [forget(home, "sacha_fr", number, key_value=KEY), forget(home, "crizotinib_imt", crizotinib,
                                                                       key_value=KEY)]
    yield {"home": home, "number": number, "eupid": eupid.group(1), "esmart": esmart, "answers": answers,
           "crizotinib": crizotinib, "leftover": leftover, "results": results}


def _home(history: dict[str, object]) -> Home:
    home = history["home"]
    assert isinstance(home, Home)
    return home


def _bytes_naming(path: Path, needles: list[str]) -> list[str]:
    data = [path.read_bytes()]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as packed:
            data += [packed.read(m) for m in packed.namelist()]
    return [n for n in needles if any(n.encode() in d for d in data)]


def test_no_copy_of_an_earlier_export_keeps_the_patient(history: dict[str, object]) -> None:
    home = _home(history)
    number, eupid, crizotinib = str(history["number"]), str(history["eupid"]), str(history["crizotinib"])
    odm_copies = sorted((home.archive / "sacha_fr").iterdir())
    assert len(odm_copies) == 2  # the first night's snapshot, superseded and staged no longer, is kept
    assert {p.name: _bytes_naming(p, [f'SubjectKey="{number}"', eupid]) for p in odm_copies} == {
        p.name: [] for p in odm_copies}
    # The first night's workbook, staged no longer, is read again to tell: it held the patient, so it goes.
    books = sorted(p.name for p in (home.archive / "crizotinib_imt").iterdir())
    assert books == sorted(f"{p.name.removesuffix('.erased')}.erased" for p in (home.archive / "crizotinib_imt")
                           .iterdir()) and len(books) == 2
    assert [p for p in home.staging.rglob("*") if p.is_file() and _bytes_naming(p, [crizotinib])] == []


def test_the_centres_answers_to_the_patients_queries_go(history: dict[str, object]) -> None:
    home, number = _home(history), str(history["number"])
    comments = [c for (c,) in query_rows(home, "SELECT comment FROM meta.query_response")]
    assert not [c for c in comments if number in c]
    assert 0 < len(comments) < int(str(history["answers"]))  # the other patients' answers stay
    orphans = query_rows(home, "SELECT count(*) FROM meta.query_response r WHERE NOT EXISTS (SELECT 1 FROM "
                               "meta.query_item i WHERE i.batch_id = r.batch_id AND i.row_key = r.row_key)")
    assert orphans == [(0,)]


def test_a_killed_runs_next_warehouse_goes(history: dict[str, object]) -> None:
    leftover = history["leftover"]
    assert isinstance(leftover, Path) and not leftover.exists()
    sacha = history["results"]
    assert isinstance(sacha, list) and str(leftover) in sacha[0].files_deleted


def test_the_records_linked_in_other_sources_are_named_not_erased(history: dict[str, object]) -> None:
    home, results = _home(history), history["results"]
    assert isinstance(results, list) and isinstance(results[0], ForgetResult)
    esmart = str(history["esmart"])
    assert [r.split(" ")[0] for r in results[0].linked_elsewhere] == [f"esmart:{esmart}"]
    assert str(history["number"]) not in " ".join(results[0].linked_elsewhere)
    assert query_rows(home, "SELECT count(*) FROM core.patient_source WHERE source_id = 'esmart' AND "
                            "source_patient_pseudonym = ?", [esmart]) == [(1,)]


def test_nothing_under_the_home_names_the_patient(history: dict[str, object]) -> None:
    home = _home(history)
    pseudonym = source_pseudonym(PSEUDONYM_KEY, "sacha_fr", str(history["number"]))
    # The EUPID is the person's: the esmart record linked by it stays, with its own copies.
    needles = [str(history["number"]), str(history["eupid"]), pseudonym]
    found = {}
    for path in sorted(p for p in home.root.rglob("*") if p.is_file() and not p.is_symlink()):
        if path.relative_to(home.root).parts[0] in ("landing", "secrets") or "esmart" in str(path):
            continue
        if path == home.warehouse:
            con = duckdb.connect(str(path), read_only=True)
            try:
                erasures = con.execute("SELECT count(*) FROM meta.erasure WHERE source_patient_pseudonym = ?",
                                       [pseudonym]).fetchone()
            finally:
                con.close()
            assert erasures == (1,)  # by design, the pseudonym only: the bytes are searched for the rest
            needles_here = needles[:2]
        else:
            needles_here = needles
        if hits := _bytes_naming(path, needles_here):
            found[str(path.relative_to(home.root))] = hits
    assert found == {}
