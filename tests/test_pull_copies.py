"""An export sent again under another name with the same bytes (a sender's retry), pulled from a folder drop zone:
not landed when the file it copies is still its series' current one (landed, it became the series' newest file and
the night read the whole source again, its records named after the copy), said with the earlier file's name and
day; landed as any new export when a later file replaced the one it copies (the series goes back to it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from drop_zone import registry_sources, send, zipped

from etl.config import Home
from etl.pull import DropZoneState, PullPolicy, PullStatus, check_drop_zone, pull_source
from etl.pull.ledger import LedgerKey, read_ledger, unnamed
from etl.transform.pseudonym import KEY_ENV, PseudonymKey

FAST = PullPolicy(attempts=3, backoff_seconds=0.01)
A = b"codice_paziente;version\n1;A\n"
B = A + b"2;B\n"
KEY = "pull-copies-key-0123456789abcdef0123"
LEDGER_KEY = LedgerKey.of(PseudonymKey(KEY.encode()))


def _landed(home: Home) -> dict[str, bytes]:
    folder = home.landing / "registry_it"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.endswith(".sha256")}


def _copy_of(home: Home, name: str) -> str:
    """The reason said of a copy of `name`, with the day its ledger line says it was pulled."""
    pulled = next(e.pulled_at for e in read_ledger(home, "registry_it").entries if Path(e.remote_path).name == name)
    return (f"same bytes as {name} pulled on {pulled:%Y-%m-%d}: sent again under another name, not landed (the "
            "import would read it again as a new export)")


def test_a_current_export_sent_again_under_another_name_is_said_not_landed(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261101_retry.csv", A)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.NOTHING_NEW and outcome.pulled == [], outcome.message
    assert [(s.name, s.reason) for s in outcome.skipped] == [
        ("TREP_export_20261101_retry.csv", _copy_of(home, "TREP_export_20261101.csv"))]
    assert _landed(home) == {"TREP_export_20261101.csv": A}
    # Recorded: not downloaded nor said again
    assert [(Path(e.remote_path).name, e.landed) for e in read_ledger(home, "registry_it").entries] == [
        ("TREP_export_20261101.csv", ["TREP_export_20261101.csv"]), ("TREP_export_20261101_retry.csv", [])]
    again = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert again.status is PullStatus.NOTHING_NEW and again.skipped == [], again.message


def test_a_copy_sent_again_to_its_name_lands_once_the_file_it_copied_is_replaced(tmp_path, home, drop):
    """A copy's line names the file it copied: its bytes are not what landing holds from its path. Sent there again
    they are a copy again while that file is current; once a later export replaced it they land (they were taken
    for the last pulled from that path: the sensor said nothing new, or the pull 're-uploaded', and the later
    export, a bad one the sender took back, stayed current)."""
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261103.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert read_ledger(home, "registry_it").entries[-1].copy_of == str(drop / "TREP_export_20261101.csv")
    send(drop / "TREP_export_20261103.csv", A, age=2400)  # sent again while the file it copies is current
    again = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert [(s.name, s.reason) for s in again.skipped] == [
        ("TREP_export_20261103.csv", _copy_of(home, "TREP_export_20261101.csv"))], again.message
    send(drop / "TREP_export_20261102.csv", B)  # a later export (a bad one): the series' current file
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261103.csv", A, age=1800)  # the sender sends the good bytes again
    send(drop / "TREP_export_20261103.csv.sha256", f"{hashlib.sha256(A).hexdigest()}  TREP_export_20261103.csv\n"
         .encode(), age=1800)
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NEW_EXPORT, look.message
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.pulled == ["TREP_export_20261103.csv"] and outcome.skipped == [], outcome.message
    assert _landed(home) == {"TREP_export_20261101.csv": A, "TREP_export_20261102.csv": B,
                             "TREP_export_20261103.csv": A}
    assert read_ledger(home, "registry_it").entries[-1].copy_of is None


def test_a_copy_whose_checksum_declares_it_is_no_new_export_to_the_sensor(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261102.csv", A)
    send(drop / "TREP_export_20261102.csv.sha256", f"{hashlib.sha256(A).hexdigest()}  TREP_export_20261102.csv\n"
         .encode())
    look = check_drop_zone(home, "registry_it", sources_dir=sources)
    assert look.state is DropZoneState.NOTHING_NEW, look.message


def test_a_copy_of_an_export_a_later_one_replaced_lands_as_a_new_export(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261102.csv", B)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261103.csv", A)  # the sender takes the series back to the first export
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.pulled == ["TREP_export_20261103.csv"], outcome.message
    assert outcome.skipped == []


def test_a_copy_of_a_file_corrected_since_under_its_own_name_lands(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261101.csv", B, age=1800)  # corrected in place: landing holds B under that name
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "TREP_export_20261102.csv", A)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.pulled == ["TREP_export_20261102.csv"] and outcome.skipped == [], outcome.message


def test_a_zip_sent_again_under_another_name_is_said_unless_a_later_zip_replaced_its_members(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop, ", unzip: true")
    first = zipped({"TREP_export_20261101.csv": A})
    send(drop / "REG_1.zip", first)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "REG_1_retry.zip", first)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.NOTHING_NEW, outcome.message
    assert [(s.name, s.reason) for s in outcome.skipped] == [("REG_1_retry.zip", _copy_of(home, "REG_1.zip"))]

    send(drop / "REG_2.zip", zipped({"TREP_export_20261101.csv": B}))  # the same member, corrected
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    send(drop / "REG_1_again.zip", first)
    back = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert back.pulled == ["TREP_export_20261101.csv"] and back.skipped == [], back.message
    assert _landed(home) == {"TREP_export_20261101.csv": A}


def test_two_files_of_one_delivery_with_the_same_bytes_both_land(tmp_path, home, drop):
    sources = registry_sources(tmp_path, drop)  # no earlier pull to name: the night reads the source anyway
    send(drop / "TREP_export_20261101.csv", A)
    send(drop / "TREP_export_20261102.csv", A)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.pulled == ["TREP_export_20261101.csv", "TREP_export_20261102.csv"], outcome.message


def test_an_erased_patients_file_sent_again_under_another_name_is_known_by_its_content(tmp_path, home, drop,
                                                                                      monkeypatch):
    """rtw forget's ledger lines know such a file by its content before any copy is looked for: said as before,
    without its earlier name (which held the number)."""
    sources = registry_sources(tmp_path, drop, files="Fall_*_Verlauf*.csv")
    monkeypatch.delenv(KEY_ENV, raising=False)
    send(drop / "Fall_123456_Verlauf.csv", A)
    pull_source(home, "registry_it", sources_dir=sources)
    assert unnamed(home, "registry_it", lambda name: name.replace("123456", "{patient}"), LEDGER_KEY) == 1
    send(drop / "Fall_123456_Verlauf_retry.csv", A)
    outcome = pull_source(home, "registry_it", sources_dir=sources, key_value=KEY)
    assert outcome.pulled == [] and "123456" not in outcome.model_dump_json(), outcome.message
    assert [s.reason for s in outcome.skipped] == ["re-uploaded with the same content as already pulled"]


def test_bytes_never_landed_are_no_copy_without_a_look_at_the_series(tmp_path, home, drop):
    """copy_of is asked of each file downloaded and each the sensor's checksums declare: bytes no earlier pull landed
    cost no walk of the ledger's landing names (a rebuild of them, sorted, each call took 20 ms at 20,000 lines)."""
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", A)
    pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    asked: list[str] = []

    def series(name: str) -> str:
        asked.append(name)
        return "TREP_export"

    ledger = read_ledger(home, "registry_it")
    assert ledger.copy_of(hashlib.sha256(B).hexdigest(), series, "TREP_export_20261102.csv") is None
    assert asked == []
    earlier = ledger.copy_of(hashlib.sha256(A).hexdigest(), series, "TREP_export_20261102.csv")
    assert earlier is not None and Path(earlier.remote_path).name == "TREP_export_20261101.csv"
