"""`rtw rekey` keeps what was decided under the old key: erasures (rtw forget) stay enforced, with
the old key file rekey kept, or loudly refused without it; reviewers' decisions name the new
pseudonyms, and those that cannot are reported. One rekey serves the module (its fixture), one night after it
both erasures; forget after it finds what was written under the old key."""

from __future__ import annotations

import csv
import signal
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from hostile_home import rtw
from own_key_home import home_with_own_key
from shared_build import copy_of
from typer.testing import CliRunner
from warehouse_query import query_rows

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.crash import CRASH_ENV
from etl.forget import forget
from etl.link.decision import PatientRef, record_decision
from etl.repair import repair
from etl.steps import RunSummary
from etl.transform.keyguard import KeyMismatch, refuse_other_key
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, source_pseudonym

NEW_KEY = "rekey-test-new-key-0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def _key(home: Home) -> PseudonymKey:
    return PseudonymKey(home.key_file.read_text().strip().encode())


def _loaded(home: Home, source_id: str) -> set[str]:
    return {p for (p,) in query_rows(home, "SELECT DISTINCT source_patient_pseudonym FROM stage.patient_source "
                                           "WHERE source_id = ?", [source_id])}


def _registry_patient(home: Home, besides: frozenset[str] = frozenset()) -> str:
    """A patient number of the registry's export that is loaded (and whose pseudonym is not one of `besides`)."""
    text = next((home.landing / "registry_it").glob("*.csv")).read_text(encoding="cp1252")
    numbers = sorted({line.split(";")[1] for line in text.splitlines()[1:] if line.count(";") > 2})
    loaded, key = _loaded(home, "registry_it") - besides, _key(home)
    return next(n for n in numbers if source_pseudonym(key, "registry_it", n) in loaded)


def _redeliver(home: Home, day: int) -> None:
    """The centre's next export, still holding every patient (new name, new content)."""
    export = next((home.landing / "registry_it").glob("*.csv"))
    (home.landing / "registry_it" / f"TREP_export_202612{day:02d}.csv").write_bytes(export.read_bytes() + b"\n")
    export.unlink()


def _truth(home: Home, key: PseudonymKey) -> dict[tuple[str, str], str]:
    """(source, pseudonym) -> the patient's clear number, from the generator's answer key."""
    with (home.root / "truth" / "links.csv").open() as truth:
        rows = list(csv.DictReader(truth))
    return {(r["source_id"], source_pseudonym(key, r["source_id"], r["source_patient_key"])): r["source_patient_key"]
            for r in rows}


def _persons(home: Home) -> dict[tuple[str, str], tuple[str, str]]:
    """(source, pseudonym) -> (person, link method)."""
    rows = query_rows(home, "SELECT source_id, source_patient_pseudonym, patient_id, link_method "
                            "FROM stage.patient_link")
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def _queries_answered(home: Home) -> None:
    """The queries of a registry centre with a loaded patient sent and its answers imported."""
    (centre,), = query_rows(home, "SELECT min(centre_id) FROM dq.issue_span WHERE source_id = 'registry_it' AND "
                                  "patient_pseudonym IN (SELECT source_patient_pseudonym FROM stage.patient_source)")
    runner = CliRunner()
    sent = runner.invoke(app, ["queries", "--home", str(home.root), "--centre", centre, "--source", "registry_it"])
    assert sent.exit_code == 0, sent.output
    rows = list(csv.reader(next(home.reports.glob("*/queries/*.csv")).open(encoding="utf-8-sig")))
    for row in rows[1:]:
        row[rows[0].index("response")] = "cannot_determine"
    returned = home.root.parent / "returned.csv"
    with returned.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerows(rows)
    imported = runner.invoke(app, ["responses", "import", str(returned), "--home", str(home.root)])
    assert imported.exit_code == 0, imported.output


def _citing(home: Home, pseudonym: str) -> tuple[int, int, int, list[str]]:
    """What names the patient by `pseudonym`: issue spans, query items, the centre's answers to those (which name
    their query by row key only), files (not secrets/)."""
    (spans, items, answers), = query_rows(home, """
        SELECT (SELECT count(*) FROM dq.issue_span WHERE patient_pseudonym = $1 OR starts_with(source_record_key, $2)),
               (SELECT count(*) FROM meta.query_item WHERE starts_with(source_record_key, $2)),
               (SELECT count(*) FROM meta.query_response r JOIN meta.query_item i USING (batch_id, row_key)
                WHERE starts_with(i.source_record_key, $2))""", [pseudonym, f"{pseudonym}|"])
    files = sorted(str(p.relative_to(home.root)) for p in home.root.rglob("*") if p.is_file()
                   and home.key_file.parent not in p.parents and pseudonym.encode() in p.read_bytes())
    return spans, items, answers, files


def _answers(home: Home) -> int:
    return query_rows(home, "SELECT count(*) FROM meta.query_response")[0][0]


def _two_unlinked(home: Home) -> tuple[PatientRef, PatientRef]:
    """Two patients of two sources, without EUPIDs, each alone in their person: a link can join them."""
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        alone = con.execute("""
            SELECT DISTINCT k.source_id, k.source_patient_pseudonym FROM stage.link_key k
            JOIN stage.patient_link l USING (source_id, source_patient_pseudonym)
            WHERE NOT k.has_eupid AND k.source_id IN ('registry_it', 'iltb') AND l.patient_id IN (
                SELECT patient_id FROM stage.patient_link GROUP BY 1 HAVING count(DISTINCT source_id) = 1)
            ORDER BY 1, 2""").fetchall()
    finally:
        con.close()
    first = next(PatientRef(*r) for r in alone if r[0] == "iltb")
    second = next(PatientRef(*r) for r in alone if r[0] == "registry_it")
    return first, second


NEW = PseudonymKey(NEW_KEY.encode())


@dataclass(frozen=True)
class Rekeyed:
    """A home re-keyed by `rtw rekey` (read it only)."""

    home: Home
    linked: tuple[PatientRef, PatientRef]  # under the old key: a reviewer linked them, and a night applied it
    linked_before: dict[tuple[str, str], tuple[str, str]]  # _persons before the rekey
    numbers: dict[tuple[str, str], str]  # _truth under the old key
    forgotten: str  # a registry patient forgotten under the old key, just before the rekey
    old_fingerprint: str
    said: str  # rekey's output, on one line


@pytest.fixture(scope="module")
def rekeyed(tmp_path_factory: pytest.TempPathFactory) -> Rekeyed:
    """The home whose first run created its key file, where a reviewer linked two patients of two sources (and an
    unlink names a patient no export holds), a night applied it, a registry patient was forgotten, then `rtw rekey`:
    the one rekey each test below starts from (the reviewers' link and the erasure are of other patients)."""
    root = tmp_path_factory.mktemp("rekey_erasure")
    home = copy_of(home_with_own_key(tmp_path_factory)[0], root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        old_key = _key(home)
        first, second = _two_unlinked(home)
        record_decision(home, first, second, "link", note="one child, per the centres")
        con = duckdb.connect(str(home.warehouse))
        try:  # a decision on a patient the exports no longer hold
            con.execute("INSERT INTO meta.link_decision VALUES ('iltb', 'ffffffffffffffffffffffff', 'registry_it', "
                        "?, 'unlink', 'reviewer', now(), NULL)", [second.pseudonym])
        finally:
            con.close()
        assert pipeline.run(home).status == "completed"
        linked_before = _persons(home)

        forgotten = _registry_patient(home, besides=frozenset({second.pseudonym}))
        forget(home, "registry_it", forgotten)
        numbers = _truth(home, old_key)
        _queries_answered(home)
        new_key_file = root / "new.key"
        new_key_file.write_text(NEW_KEY + "\n")
        result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file", str(new_key_file)])
    assert result.exit_code == 0, result.output
    return Rekeyed(home, (first, second), linked_before, numbers, forgotten, old_key.fingerprint(),
                   " ".join(result.output.split()))


@pytest.fixture(scope="module")
def next_night(rekeyed: Rekeyed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, RunSummary, str]:
    """The night after the rekey, on a copy: a second registry patient forgotten after the rekey (one queried and
    answered under the old key), on a host whose clock is an hour behind the one that rekeyed, and the centre's next
    export still holding both patients forgotten. (home, the night's summary, the patient forgotten after the rekey)"""
    home = copy_of(rekeyed.home, tmp_path_factory.mktemp("rekey_next_night"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        queried = {rekeyed.numbers[("registry_it", k.split("|")[0])] for (k,) in query_rows(
            home, "SELECT source_record_key FROM meta.query_item WHERE source_id = 'registry_it'")}
        after = min(n for n in queried if source_pseudonym(NEW, "registry_it", n) in _loaded(home, "registry_it"))
        forget(home, "registry_it", after)
        con = duckdb.connect(str(home.warehouse))
        try:  # forgotten on a host whose clock is an hour behind the one that rekeyed
            assert con.execute("UPDATE meta.erasure SET erased_at = erased_at - INTERVAL 1 HOUR "
                               "WHERE source_patient_pseudonym = ?",
                               [source_pseudonym(NEW, "registry_it", after)]).fetchone() == (1,)
        finally:
            con.close()
        _redeliver(home, 2)
        return home, pipeline.run(home), after


def test_a_patient_forgotten_before_a_rekey_stays_out_after_it(rekeyed: Rekeyed,
                                                              next_night: tuple[Home, RunSummary, str]) -> None:
    erased = source_pseudonym(NEW, "registry_it", rekeyed.forgotten)
    assert erased not in _loaded(rekeyed.home, "registry_it")

    home, summary, _ = next_night  # the centre still sends the patient
    assert summary.status == "completed", summary.message
    assert erased not in _loaded(home, "registry_it")


def test_a_patient_forgotten_after_a_rekey_stays_out_whatever_the_clocks_say(
        next_night: tuple[Home, RunSummary, str]) -> None:
    home, summary, after = next_night
    assert summary.status == "completed"
    assert source_pseudonym(NEW, "registry_it", after) not in _loaded(home, "registry_it")


def test_a_patient_forgotten_after_a_rekey_leaves_nothing_named_by_their_old_pseudonym(
        rekeyed: Rekeyed, next_night: tuple[Home, RunSummary, str]) -> None:
    """The issue history, queries, the centre's answers and the reports of the runs before the rekey name the
    patient by their pseudonym under the old key: forget finds them under every kept key."""
    home, _, after = next_night
    (old,) = [p for (s, p), n in rekeyed.numbers.items() if s == "registry_it" and n == after]
    spans, items, answers, files = _citing(rekeyed.home, old)  # before the erasure
    assert spans and items and answers and any(f.startswith("reports/") for f in files)

    assert _citing(home, old) == (0, 0, 0, [])
    assert _answers(home) == _answers(rekeyed.home) - answers  # the patient's answers, not just their queries


def test_without_the_old_key_file_the_source_is_refused_loudly_not_let_back(rekeyed: Rekeyed, tmp_path: Path) -> None:
    home = copy_of(rekeyed.home, tmp_path)
    for old in home.key_file.parent.glob("pseudonym.key.*.old"):
        old.unlink()

    _redeliver(home, 3)
    summary = pipeline.run(home)
    assert summary.status == "completed_with_failures"
    assert "registry_it" in summary.message and "cannot be kept out" in summary.message
    assert rekeyed.old_fingerprint[:8] in summary.message and "pseudonym.key.<time>.old" in summary.message
    assert source_pseudonym(NEW, "registry_it", rekeyed.forgotten) not in _loaded(home, "registry_it")


def test_a_rekey_killed_before_it_wrote_the_key_file_is_finished_by_rekey_again(rekeyed: Rekeyed,
                                                                                tmp_path: Path) -> None:
    """Killed after its publish (crash point after_swap), a rekey leaves the warehouse on the new key and the key file
    holding the retired one: the runs' refusal says so (not that the key file holds the new key), and rekey with the
    same new key installs it."""
    home = copy_of(rekeyed.home, tmp_path)
    (kept,) = home.key_file.parent.glob("pseudonym.key.*.old")
    home.key_file.write_bytes(kept.read_bytes())  # what the killed rekey left

    with pytest.raises(KeyMismatch) as refused:
        pipeline.run(home)
    message = str(refused.value)
    assert "stopped before it wrote the new key" in message and "it holds the retired key" in message
    assert "the new key is in" not in message

    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(NEW_KEY + "\n")
    result = CliRunner().invoke(app, ["rekey", "--home", str(home.root), "--new-key-file", str(new_key_file)])
    assert result.exit_code == 0, result.output
    assert "finished the rekey of run" in " ".join(result.output.split())
    assert home.key_file.read_text().strip() == NEW_KEY
    assert list(home.key_file.parent.glob("pseudonym.key.*.old")) == [kept]  # it holds the retired key already
    refuse_other_key(home)  # runs take the key file's key again


def test_a_rekey_killed_after_harmonising_leaves_no_rows_under_its_key(rekeyed: Rekeyed, tmp_path: Path) -> None:
    """A rekey killed once a source is harmonised under its new key (never installed) left that harmonised folder:
    rows under a key no one holds, where forget would never find its patient. Forget and the next run's repair
    remove the harmonised folders of runs that never published."""
    killed_home = copy_of(rekeyed.home, tmp_path / "killed")
    before = set(killed_home.staging.glob("*/harmonised/*"))
    new_key_file = tmp_path / "newer.key"
    new_key_file.write_text("rekey-test-newer-key-0123456789abcdef0123456789\n")
    killed = rtw(killed_home.root, "rekey", "--new-key-file", str(new_key_file),
                 env={KEY_ENV: None, CRASH_ENV: "harmonised"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (left,) = set(killed_home.staging.glob("*/harmonised/*")) - before
    repaired = copy_of(killed_home, tmp_path / "repaired")

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        done = forget(killed_home, "registry_it", _registry_patient(killed_home))
        assert str(left) in done.files_deleted and not left.exists()

        said = repair(repaired)
    assert not (repaired.root / left.relative_to(killed_home.root)).exists()
    assert any("harmonised files of runs that never published" in line for line in said)
    assert {p.relative_to(repaired.root) for p in repaired.staging.glob("*/harmonised/*")} == {
        p.relative_to(killed_home.root) for p in before}  # the published runs' are kept


def test_rekey_converts_the_reviewers_decisions_and_says_which_it_drops(rekeyed: Rekeyed) -> None:
    first, second = rekeyed.linked
    persons = rekeyed.linked_before
    assert persons[(first.source_id, first.pseudonym)] == persons[(second.source_id, second.pseudonym)]

    said = rekeyed.said
    assert "1 reviewer decisions (rtw link / unlink) now name the new pseudonyms; 1 dropped" in said
    assert "dropped: unlink of iltb:ffffffffffffffffffffffff and registry_it:" in said
    assert "iltb:ffffffffffffffffffffffff in no export" in said

    new = [(p.source_id, source_pseudonym(NEW, p.source_id, rekeyed.numbers[(p.source_id, p.pseudonym)]))
           for p in (first, second)]
    persons = _persons(rekeyed.home)
    assert persons[new[0]] == persons[new[1]] and persons[new[0]][1] == "clerical"
    decisions = query_rows(rekeyed.home, "SELECT source_id_l, source_patient_pseudonym_l, source_id_r, "
                                         "source_patient_pseudonym_r, decision, note FROM meta.link_decision")
    assert decisions == [(*new[0], *new[1], "link", "one child, per the centres")]
