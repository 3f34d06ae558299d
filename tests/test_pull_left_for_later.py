"""What the pull from a folder drop zone leaves there for later, and how it says so: a 0-byte export (an upload
not yet begun, or cut short) is left as a file still uploading is, and each file left for later is logged as a
warning naming the source and the file, so that the Airflow task's log shows it and not only `rtw pull`'s output
and the task's XCom."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from drop_zone import registry_sources, send

from etl.config import Home
from etl.pull import DropZoneState, PullPolicy, PullStatus, check_drop_zone, pull_source
from etl.pull.ledger import read_ledger

FAST = PullPolicy(attempts=3, backoff_seconds=0.01)
EXPORT = b"codice_paziente;version\n1;A\n"
EMPTY = ("it is empty (0 bytes), no export is: an upload not yet begun, or cut short; nothing landed, the next pull "
         "takes it once it has its content")


def _landed(home: Home) -> list[str]:
    folder = home.landing / "registry_it"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".sha256")) if folder.exists() else []


def _pulled(home: Home) -> list[str]:
    return [Path(e.remote_path).name for e in read_ledger(home, "registry_it").entries]


def test_an_empty_export_is_left_for_later_and_lands_once_it_has_its_content(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", b"")  # landed, the newest of its series failed the source each night
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.failures == [], outcome.message
    assert _landed(home) == ["TREP_export_20261101.csv"] and _pulled(home) == ["TREP_export_20261101.csv"]
    assert [(s.name, s.reason) for s in outcome.skipped] == [("TREP_export_20261102.csv", EMPTY)]
    assert f"left for later: TREP_export_20261102.csv ({EMPTY})" in outcome.message

    again = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)  # said at each pull while it is so
    assert again.status is PullStatus.NOTHING_NEW and [s.name for s in again.skipped] == ["TREP_export_20261102.csv"]
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NOTHING_NEW, look.message

    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n")  # the full delivery, under the same name
    assert check_drop_zone(home, "registry_it", sources_dir=sources).state is DropZoneState.NEW_EXPORT
    full = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert full.status is PullStatus.PULLED and full.pulled == ["TREP_export_20261102.csv"], full.message
    assert (home.landing / "registry_it" / "TREP_export_20261102.csv").read_bytes() == EXPORT + b"2;B\n"


def test_an_export_emptied_in_place_is_left_and_the_one_pulled_stays(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261101.csv", b"", age=1800)  # the sender truncates it before writing it again
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.NOTHING_NEW
    assert [(s.name, s.reason) for s in outcome.skipped] == [("TREP_export_20261101.csv", EMPTY)]
    assert (home.landing / "registry_it" / "TREP_export_20261101.csv").read_bytes() == EXPORT
    assert _pulled(home) == ["TREP_export_20261101.csv"]


def test_each_file_left_for_later_is_logged_as_a_warning_naming_the_source_and_the_file(tmp_path, home, drop, caplog):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    send(drop / "TREP_export_20261102.csv", EXPORT + b"2;B\n", age=5)  # within the quiet period
    send(drop / "TREP_export_20261103.csv", b"")
    (drop / "TREP_export_20261104.csv").symlink_to(tmp_path / "elsewhere.csv")
    declared = hashlib.sha256(b"to come").hexdigest()
    send(drop / "TREP_export_20261105.csv.sha256", f"{declared}  TREP_export_20261105.csv\n".encode())
    caplog.set_level(logging.INFO)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.pulled == ["TREP_export_20261101.csv"], outcome.message
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    said = {"TREP_export_20261102.csv": "changed ",  # within the quiet period
            "TREP_export_20261103.csv": "it is empty", "TREP_export_20261104.csv": "a symbolic link",
            "TREP_export_20261105.csv": "TREP_export_20261105.csv.sha256 declares its checksum, but it is not in the "
                                        "drop zone"}  # a delivery that came short
    assert [s.name for s in outcome.skipped] == list(said)
    assert all(s.reason.startswith(said[s.name]) for s in outcome.skipped), outcome.skipped
    assert warned == [f"registry_it: {s.name} in {drop} left for later: {s.reason}" for s in outcome.skipped]
