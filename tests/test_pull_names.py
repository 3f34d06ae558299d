"""No patient number in what the pull says of a file it could not land, nor in `rtw profile`'s refusals: a
file per patient's name escaped in a refusal (a control character in it), a failure no one foresaw, and a
reader's refusal of a file named by a key-like number were said in clear, the source's first pull, onboarding."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path

from drop_zone import registry_sources, send

from etl.extract.errors import ExtractError
from etl.onboard.reading import shown_error
from etl.pull import PullPolicy, PullStatus, deliveries, pull_all, pull_source

FAST = PullPolicy(attempts=2, backoff_seconds=0.01)
NUMBER = re.compile(r"FR01[-_ ]00\d")
A = b"codice_paziente;version\n1;A\n"


def test_a_file_refused_by_its_name_is_said_without_its_number(tmp_path, home, drop, caplog):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_IMT-FR01-001\x07.csv", A)  # a control character: escaped when said
    send(drop / "TREP_export_IMT-FR01-002.csv", A)
    send(drop / "TREP_export_IMT-FR01-002.csv.sha256", f"{'0' * 64}  TREP_export_IMT-FR01-002.csv\n".encode())
    caplog.set_level(logging.DEBUG)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and len(outcome.failures) == 2, outcome.message
    assert "TREP_export_{patient}\\x07.csv from" in outcome.message
    assert "its name holds a control character (TREP_export_{patient}\\x07.csv)" in outcome.message
    assert "TREP_export_{patient}.csv from" in outcome.message  # its checksum does not match: said so too
    assert not NUMBER.search(outcome.model_dump_json()) and not NUMBER.search(caplog.text)


def test_a_failure_no_one_foresaw_is_said_with_the_sources_numbers(tmp_path, home, drop, monkeypatch):
    sources = registry_sources(tmp_path, drop)
    send(drop / "TREP_export_IMT-FR01-001.csv", A)

    def unforeseen(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(drop / "TREP_export_IMT-FR01-001.csv"))

    monkeypatch.setattr(deliveries, "_pull", unforeseen)
    (outcome,) = pull_all(home, sources_dir=sources, policy=FAST)
    assert outcome.status is PullStatus.FAILED and "the pull failed: OSError: " in outcome.message
    assert "TREP_export_{patient}.csv" in outcome.message and not NUMBER.search(outcome.message)


def test_a_readers_refusal_hides_a_number_shaped_like_a_key():
    """rtw profile and scaffold: the file was not read, its keys are unknown; a key-like number is hidden, as the
    pull hides one before the source's keys are known, and the refusal places the file among those given."""
    paths = [Path("exports/Pat_IMT-FR01-001.xlsx"), Path("exports/Pat_IMT-FR01-002.xlsx")]
    refusal = ExtractError("Pat_IMT-FR01-002.xlsx: not an Excel or OpenDocument workbook (it is plain text)")
    shown = shown_error(refusal, paths)
    assert shown == ("Pat_{patient}.xlsx (file 2 of the 2 given): not an Excel or OpenDocument workbook "
                     "(it is plain text)")
    assert shown_error(ExtractError("TREP_export_20261101.csv: empty"), [Path("TREP_export_20261101.csv")]) == \
        "TREP_export_20261101.csv: empty"  # a date stays

