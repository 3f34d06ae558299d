"""`rtw status` shows the files each source's last pull left in its drop zone for later: the pull said so only as a
warning in its log and in its outcome's message, so a data manager reading `rtw status` in the morning did not
learn that a sender's upload had waited three nights. Each file: its name as shown (no patient number), why, since
when it waits (the first of the pulls in a row that left it) and how many pulls that is; a file landed or gone
since is not shown, and a pull logs as an error a file left by more pulls in a row than RTW_LEFT_FOR_LATER_PULLS."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from drop_zone import registry_sources, send

from etl import pipeline
from etl.config import Home, SettingError, count_setting
from etl.pull import PullPolicy, PullStatus, pull_source
from etl.pull.nights import read_pulls

FAST = PullPolicy(attempts=2, backoff_seconds=0.01)
EXPORT = b"codice_paziente;version\n1;A\n"
EMPTY = "it is empty (0 bytes), no export is: an upload not yet begun, or cut short"
NUMBER = re.compile(r"FR01[-_ ]00\d")
TITLE = "Left for later in the drop zones (at each source's last pull)"


def _status(home: Home) -> subprocess.CompletedProcess[str]:
    rtw = Path(sys.executable).with_name("rtw")
    return subprocess.run([str(rtw), "status", "--home", str(home.root)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"}, timeout=120, check=False)


def _left(said: str) -> list[list[str]]:
    """The rows of `rtw status`'s files left for later (none: the table is not there), as their cells."""
    if TITLE not in said:
        return []
    table = said.split(TITLE, 1)[1].split("└", 1)[0]
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in table.splitlines()
            if line.startswith("│") and line[1:].strip().split("│")[0].strip()]


def _pull(home: Home, sources: Path) -> PullStatus:
    return pull_source(home, "registry_it", sources_dir=sources, policy=FAST).status


def _pulled_at(home: Home) -> list[str]:
    return [f"{p.at:%Y-%m-%d %H:%M:%S}" for p in read_pulls(home)]


def test_a_file_left_for_later_is_shown_with_why_and_since_when(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", b"")  # a sender that never finishes its upload
    assert _pull(home, sources) is PullStatus.PULLED
    done = _status(home)  # no warehouse yet: the pulls are shown, then why status cannot say more
    assert done.returncode == 1 and "no warehouse yet" in done.stdout, done.stdout + done.stderr
    [[source_id, name, since, pulls, reason]] = _left(done.stdout)
    assert (source_id, name, pulls) == ("registry_it", "TREP_export_20261102.csv", "1")
    assert reason.startswith(EMPTY) and [since] == _pulled_at(home)


def test_waiting_since_is_the_first_pull_that_left_it_across_pulls_and_one_that_could_not_look(tmp_path, home,
                                                                                                  drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261102.csv", b"")
    assert _pull(home, sources) is PullStatus.NOTHING_NEW
    drop.rename(tmp_path / "away")  # the drop zone out of reach: that pull saw nothing, and breaks no row
    assert _pull(home, sources) is PullStatus.FAILED
    (tmp_path / "away").rename(drop)
    send(drop / "TREP_export_20261103.csv", b"")  # left from the third pull on
    assert _pull(home, sources) is PullStatus.NOTHING_NEW
    first, _, third = _pulled_at(home)
    rows = _left(_status(home).stdout)
    assert [r[1:4] for r in rows] == [["TREP_export_20261102.csv", first, "2"],  # waiting longest, first
                                      ["TREP_export_20261103.csv", third, "1"]]


def test_a_file_landed_or_gone_since_is_no_longer_shown(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261102.csv", b"")
    send(drop / "TREP_export_20261103.csv", b"")
    _pull(home, sources)
    assert len(_left(_status(home).stdout)) == 2
    send(drop / "TREP_export_20261102.csv", EXPORT)  # its content came
    (drop / "TREP_export_20261103.csv").unlink()  # taken back by its sender
    assert _pull(home, sources) is PullStatus.PULLED
    assert TITLE not in _status(home).stdout
    send(drop / "TREP_export_20261102.csv", b"")  # landed, then sent again empty: waiting anew, since now
    send(drop / "TREP_export_20261103.csv", b"")  # gone, then sent again empty: waiting anew, not since the first
    assert _pull(home, sources) is PullStatus.NOTHING_NEW
    third = _pulled_at(home)[-1]
    assert [r[1:4] for r in _left(_status(home).stdout)] == [["TREP_export_20261102.csv", third, "1"],
                                                             ["TREP_export_20261103.csv", third, "1"]]


def test_a_file_sent_again_with_the_same_content_is_not_waiting(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    _pull(home, sources)
    send(drop / "TREP_export_20261101.csv", EXPORT, age=1800)  # re-uploaded unchanged: no pull lands it
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert [s.reason for s in outcome.skipped] == ["re-uploaded with the same content as already pulled"]
    assert outcome.left_for_later == [] and TITLE not in _status(home).stdout


def test_a_file_declared_not_delivered_waits_whatever_its_name(tmp_path, home, drop):
    # Its reason begins with its checksum file's name, here as a copy's reason begins ("same bytes as "): told
    # from a re-upload of bytes pulled before by what the pull found, not by the words of its reason.
    sources = registry_sources(tmp_path, drop, files="*.csv")
    name = "same bytes as 2026.csv"
    send(drop / f"{name}.sha256", f"{hashlib.sha256(b'to come').hexdigest()}  {name}\n".encode())
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert [s.name for s in outcome.skipped] == [name] and outcome.skipped[0].reason.startswith("same bytes as ")
    assert outcome.left_for_later == outcome.skipped
    assert [r[1] for r in _left(_status(home).stdout)] == [name]


def test_the_pulls_xcom_says_of_a_file_skipped_its_name_and_why_only(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    _pull(home, sources)
    send(drop / "TREP_export_20261101.csv", EXPORT, age=1800)  # re-uploaded unchanged: skipped, not waiting
    send(drop / "TREP_export_20261102.csv", b"")  # waiting
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert {s.name: s.waits for s in outcome.skipped} == {"TREP_export_20261101.csv": False,  # kept as shown
                                                          "TREP_export_20261102.csv": True}
    dumped = outcome.model_dump(mode="json")
    assert [sorted(s) for s in dumped["skipped"]] == [["name", "reason"]] * 2
    assert [sorted(s) for s in dumped["left_for_later"]] == [["name", "reason"]]


def test_names_are_shown_without_a_patient_number(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_IMT-FR01-001.csv", b"")  # a file per patient, not yet uploaded
    send(drop / "TREP_export_IMT-FR01-002.csv", EXPORT, age=5)  # still being written
    _pull(home, sources)
    _pull(home, sources)
    said = _status(home).stdout
    assert sorted(r[1] for r in _left(said)) == ["TREP_export_{patient}.csv"] * 2
    recorded = (home.root / "pulled" / "registry_it.pulls.jsonl").read_text()
    assert "TREP_export_{patient}.csv" in recorded
    assert not NUMBER.search(said) and not NUMBER.search(recorded)


def test_many_files_left_are_capped_with_how_many_more(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    for day in range(1, 9):
        send(drop / f"TREP_export_2026110{day}.csv", b"")
    _pull(home, sources)
    rows = _left(_status(home).stdout)
    assert [r[1] for r in rows] == [f"TREP_export_2026110{day}.csv" for day in range(1, 6)] + ["and 3 more"]


def test_a_file_left_by_more_pulls_than_the_setting_is_logged_as_an_error(tmp_path, home, drop, caplog,
                                                                          monkeypatch):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261102.csv", b"")
    monkeypatch.setenv("RTW_LEFT_FOR_LATER_PULLS", "2")
    caplog.set_level(logging.WARNING, logger="rtw")
    for _ in range(2):  # a night or two: an upload that ends late, only a warning
        assert _pull(home, sources) is PullStatus.NOTHING_NEW
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2
    caplog.clear()
    assert _pull(home, sources) is PullStatus.NOTHING_NEW  # the pull does not fail for it
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    first = _pulled_at(home)[0]
    assert error.startswith(f"registry_it: TREP_export_20261102.csv has been left for later in the drop zone by 3 "
                            f"pulls in a row, since {first[:16]} UTC (more than RTW_LEFT_FOR_LATER_PULLS=2): {EMPTY}")
    [row] = _left(_status(home).stdout)
    assert row[3] == "3 (more than 2)"
    monkeypatch.setenv("RTW_LEFT_FOR_LATER_PULLS", "many")  # a setting it cannot read: said, the pull recorded
    caplog.clear()
    assert _pull(home, sources) is PullStatus.NOTHING_NEW
    assert "RTW_LEFT_FOR_LATER_PULLS='many' is not a whole number of 1 or more (e.g. 3); 3 taken" in caplog.text
    assert read_pulls(home)[-1].left[0].pulls == 4
    shown = _status(home)  # status marks the long waits by the default, and leaves the word to the pull
    assert _left(shown.stdout)[0][3] == "4 (more than 3)" and "many" not in shown.stdout + shown.stderr


def test_a_setting_it_cannot_read_is_said_only_by_a_pull_that_left_a_file(tmp_path, home, drop, caplog, monkeypatch):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    monkeypatch.setenv("RTW_LEFT_FOR_LATER_PULLS", "many")
    caplog.set_level(logging.WARNING, logger="rtw")
    assert _pull(home, sources) is PullStatus.PULLED
    assert _pull(home, sources) is PullStatus.NOTHING_NEW  # nothing waits: nothing to measure against it
    assert caplog.records == []
    send(drop / "TREP_export_20261102.csv", b"")
    assert _pull(home, sources) is PullStatus.NOTHING_NEW
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "registry_it: RTW_LEFT_FOR_LATER_PULLS='many' is not a whole number of 1 or more (e.g. 3); 3 taken"]


def test_the_setting_is_a_whole_number_of_one_or_more(monkeypatch):
    monkeypatch.delenv("RTW_LEFT_FOR_LATER_PULLS", raising=False)
    assert count_setting("RTW_LEFT_FOR_LATER_PULLS", 3) == 3
    monkeypatch.setenv("RTW_LEFT_FOR_LATER_PULLS", " 7 ")
    assert count_setting("RTW_LEFT_FOR_LATER_PULLS", 3) == 7
    for wrong in ("0", "-1", "2.5", "two"):
        monkeypatch.setenv("RTW_LEFT_FOR_LATER_PULLS", wrong)
        with pytest.raises(SettingError, match=rf"^RTW_LEFT_FOR_LATER_PULLS='{re.escape(wrong)}' is not a whole"):
            count_setting("RTW_LEFT_FOR_LATER_PULLS", 3)


@pytest.mark.integration
def test_status_with_a_warehouse_shows_them_after_the_runs(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261102.csv", b"")
    _pull(home, sources)
    pipeline.run(home, key_value="left-for-later-test-key", sources_dir=sources)
    done = _status(home)
    assert done.returncode == 0 and home.warehouse.exists(), done.stdout + done.stderr
    assert done.stdout.index("Last runs") < done.stdout.index(TITLE) < done.stdout.index("Source files")
    assert [r[1] for r in _left(done.stdout)] == ["TREP_export_20261102.csv"]


def test_two_pulls_at_once_each_record_their_pull(tmp_path):
    """The DAG's pull and a hand-run `rtw pull` of one source at once: each adds its line to the source's pulls
    (read, added to and written again under the source's pull lock), none lost with its failure."""
    import threading

    from etl.pull.nights import record_pull

    home = Home(tmp_path / "home")

    def pulls(who: str) -> None:
        for n in range(30):
            record_pull(home, "registry_it", f"{who} failed {n}", [])

    threads = [threading.Thread(target=pulls, args=(who,)) for who in ("airflow", "rtw pull")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.failure or "" for p in read_pulls(home)) == sorted(
        f"{who} failed {n}" for who in ("airflow", "rtw pull") for n in range(30))
