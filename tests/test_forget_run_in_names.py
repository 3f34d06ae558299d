"""A file of an erased patient named by the number run into the letters before it (`PatID0002.csv` for key ID0002)
and sent again with other content after the erasure: `rtw forget` renamed its copies, but the run that looks at
the names sent since (`hide_erased_numbers`) took a run of letters whole (`PatID0002`, never `ID0002`), so the
re-delivery kept its clear name in archive/ and the pull ledger. A run of letters before digits is now cut to its
last letters too, two to six of them (one before six digits): first in upper case only, which kept `patid1234.csv`
and `exportit0001abc.csv` in clear where a name's screen hides them; now in any case."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_forget_file_names import HEADER, KEY, _carrying, _source

from etl import pipeline
from etl.config import SOURCES_DIR, Home, resolve_home
from etl.forget import _numbers_in_name, forget, hide_erased_numbers
from etl.pull import pull_source
from etl.pull.dropzone import RemoteFile
from etl.pull.ledger import read_ledger
from etl.transform.mapping import load_mapping
from etl.transform.pseudonym import KEY_ENV, PseudonymKey, source_pseudonym

ERASED = re.compile(r"ID[-_ ]?0002", re.IGNORECASE)


def _export(path: Path, note: str = "") -> None:
    """The source's export of every patient (ID0001 to ID0004), in the Italian registry's layout."""
    rows = [f"{i};ID000{i};IT-BO01;2;27/03/2010;05/11/2018;04/07/2019;8260;3;C73.9;N;7;1,3;V;18/03/2026;;;{note}"
            for i in range(1, 5)]
    path.write_bytes("\r\n".join([HEADER, *rows, ""]).encode("cp1252"))


def _night(home: Home, sources: Path) -> None:
    assert pull_source(home, "registry_de", sources_dir=sources).failures == []
    assert pipeline.run(home, key_value=KEY, sources_dir=sources).sources_failed == []


@pytest.fixture
def erased_then_sent_again(tmp_path: Path) -> Iterator[tuple[Home, Path, Path]]:
    """A source pulled from a drop zone two nights: an export of everyone, then one named by a patient's number run
    into 'Pat' (`PatID0002.csv`: it supersedes, as test_names_run_into_letters.py's); then ID0002 erased."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RTW_QUIET_SECONDS", "0")
        env.setenv(KEY_ENV, KEY)
        home = resolve_home(tmp_path / "home").ensure()
        sources, zone = tmp_path / "sources", tmp_path / "zone"
        sources.mkdir()
        zone.mkdir()
        _source(sources, "registry_de", "registry_it", "*.csv", zone)
        _export(zone / "Export_20261101.csv")  # the first night stages the keys: ID0001 ...
        _night(home, sources)
        _export(zone / "PatID0002.csv")
        _night(home, sources)
        forget(home, "registry_de", "ID0002", key_value=KEY, sources_dir=sources)
        assert _carrying(home, ERASED) == []  # forget renamed the copy: its own number run into letters
        yield home, sources, zone


@pytest.mark.integration
def test_a_changed_re_delivery_named_run_into_letters_keeps_no_number(erased_then_sent_again):
    home, sources, zone = erased_then_sent_again
    _export(zone / "PatID0002.csv", note="corrected")  # sent again after the erasure, with other content
    assert pull_source(home, "registry_de", sources_dir=sources).failures == []
    assert _carrying(home, ERASED) != []  # the pull pseudonymises no name: the run tells the number
    _night(home, sources)
    assert _carrying(home, ERASED) == []
    assert [p for p in (home.archive / "registry_de").iterdir() if "{patient}" in p.name]
    assert pull_source(home, "registry_de", sources_dir=sources).pulled == []  # its ledger line: known as listed


def _remote(path: str) -> RemoteFile:
    return RemoteFile(path=path, name=path.rpartition("/")[2], size=316, version="v1")


@pytest.mark.parametrize(("erased", "name", "shown"), [
    ("ID1234", "PatID1234.csv", "Pat{patient}.csv"),
    ("ID-1234", "Verlauf_PatID_1234.csv", "Verlauf_Pat{patient}.csv"),  # '-' written '_'
    ("ID1234", "PATID1234.csv", "PAT{patient}.csv"),  # a name in upper case: any of its last letters
    ("ID1234", "patid1234.csv", "pat{patient}.csv"),  # in lower case too, as a name's screen hides it
    ("IT0001", "exportit0001abc.csv", "export{patient}abc.csv"),
    ("IT-0001", "Verlaufit_0001.csv", "Verlauf{patient}.csv"),
    ("IT0001", "export_it0001abc.csv", "export_{patient}abc.csv"),  # whole: it was found before
    ("ILTB-00012", "PatientILTB00012.xlsx", "PatientILTB00012.xlsx"),  # the key joins by '-': not so written
    ("ILTB-00012", "PatientILTB-00012.xlsx", "Patient{patient}.xlsx"),
    ("P123456", "FallP123456Verlauf.csv", "Fall{patient}Verlauf.csv"),  # one letter, before six digits
    ("IMT-FR01-001", "Pat_XIMT-FR01-001.xlsx", "Pat_X{patient}.xlsx"),
])
def test_a_run_finds_an_erased_number_run_into_letters(tmp_path, erased, name, shown):
    home = Home(tmp_path / "home").ensure()
    key = PseudonymKey(KEY.encode())
    archived = home.archive / "registry_de"
    archived.mkdir(parents=True)
    (archived / f"{'a' * 16}__{name}").write_bytes(b"")
    ledger = read_ledger(home, "registry_de", mend=True)
    ledger.record(_remote(f"/drop/{name}"), "a" * 64, [name])
    mapping = load_mapping(SOURCES_DIR / "registry_it.yaml").model_copy(update={"source_id": "registry_de"})
    found = hide_erased_numbers(home, mapping, key, {source_pseudonym(key, "registry_de", erased)})
    assert found == (shown != name)
    assert f"{'a' * 16}__{shown}" in [p.name for p in archived.iterdir()]
    assert (name in ledger.path.read_text()) == (shown == name)


def test_a_name_s_parts_cut_letters_in_any_case_to_a_key_s_few_only():
    assert {"ID1234", "EFID1234", "CDEFID1234"} <= set(_numbers_in_name("PatientenakteABCDEFID1234.csv"))
    assert "BCDEFID1234" not in set(_numbers_in_name("PatientenakteABCDEFID1234.csv"))  # seven letters
    assert {"id1234", "akteid1234"} <= set(_numbers_in_name("patientenakteid1234.csv"))
    assert "nakteid1234" not in set(_numbers_in_name("patientenakteid1234.csv"))
    assert set(_numbers_in_name("Fall_123456_Verlauf.csv")) == {  # a word's end: two or three letters, one before six
        "Fall_123456", "Fall_123456_Verlauf", "123456", "123456_Verlauf",
        *(f"{cut}_123456{end}" for cut in ("all", "ll", "l") for end in ("", "_Verlauf"))}
