"""A delivery put in a subfolder of a drop zone never arrives (only the top is read): each pull says so, once,
naming the folders (as it names files, without a patient number), and lands what is at the top."""

from __future__ import annotations

import logging

from drop_zone import registry_sources, send

from etl.pull import PullPolicy, PullStatus, pull_source

FAST = PullPolicy(attempts=2, backoff_seconds=0.01)
EXPORT = b"codice_paziente;version\n1;A\n"
NOT_READ = "not read: a pull reads the top of the drop zone only, not its subfolders (put the exports there)"


def test_a_pull_names_the_subfolders_it_does_not_read_once(tmp_path, home, drop, caplog):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_20261101.csv", EXPORT)
    (drop / "sub").mkdir()
    send(drop / "sub" / "TREP_export_20261102.csv", EXPORT + b"2;B\n")
    (drop / ".snapshot").mkdir()  # a server's own
    caplog.set_level(logging.WARNING)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.PULLED and outcome.pulled == ["TREP_export_20261101.csv"], outcome.message
    said = f"the folder sub/ in {drop} is {NOT_READ}"
    assert outcome.message == f"registry_it: pulled 1 file(s) from {drop}: TREP_export_20261101.csv; {said}"
    assert [r.getMessage() for r in caplog.records] == [f"registry_it: {said}"]
    assert sorted(p.name for p in (home.landing / "registry_it").iterdir()) == [
        "TREP_export_20261101.csv", "TREP_export_20261101.csv.sha256"]

    (drop / "Pat_IMT-FR01-001").mkdir()  # a folder per patient: named without the number
    again = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert again.status is PullStatus.NOTHING_NEW
    assert again.message == (f"registry_it: nothing new in {drop}; the folders Pat_{{patient}}/, sub/ in {drop} are "
                             f"{NOT_READ}")
    assert "FR01" not in caplog.text
