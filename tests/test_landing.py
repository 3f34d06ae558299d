import os

import pytest

from etl.extract.landing import archive, discover, named_as_export, sha256_of, temporary_export
from etl.transform.mapping import load_mappings


def test_the_newest_file_of_a_series_is_current_and_older_ones_are_superseded(tmp_path):
    mappings = load_mappings()
    folder = tmp_path / "landing" / "iltb"
    folder.mkdir(parents=True)
    (folder / "ILTB_ENROL.csv").write_text("a")
    (folder / "ILTB_FU.csv").write_text("b")
    (folder / "notes.txt").write_text("not an export")
    found = discover(tmp_path / "landing", mappings["iltb"])
    assert sorted((f.name, f.series) for f in found.current) == [("ILTB_ENROL.csv", "ENROL"), ("ILTB_FU.csv", "FU")]
    assert found.notices == ("iltb: notes.txt does not match 'ILTB_*.csv' / ILTB_(?P<record_set>[A-Z0-9]+)\\.csv; "
                             "ignored",)

    odm = tmp_path / "landing" / "sacha_fr"
    odm.mkdir()
    (odm / "SACHA_ODM_20261101.xml").write_text("new")
    (odm / "SACHA_ODM_20261001.xml").write_text("old")
    os.utime(odm / "SACHA_ODM_20261001.xml", (2e9, 2e9))  # a late copy of an old export stays old
    found = discover(tmp_path / "landing", mappings["sacha_fr"])
    assert [f.name for f in found.current] == ["SACHA_ODM_20261101.xml"]
    assert [f.name for f in found.superseded] == ["SACHA_ODM_20261001.xml"]


def test_an_export_downloaded_again_under_the_same_name_is_the_later_one(tmp_path):
    # A hunt: a same-day corrected re-export saved by the browser as "... (1).csv" sorted before the original (a
    # space before the dot) and was set aside unread, its death never loaded.
    folder = tmp_path / "landing" / "registry_it"
    folder.mkdir(parents=True)
    for name, text in [("TREP_export_20261101.csv", "first"), ("TREP_export_20261101 (1).csv", "corrected"),
                       ("TREP_export_20261101 (2).csv", "corrected again"), ("TREP_export_20261031 (3).csv", "old")]:
        (folder / name).write_text(text)
        os.utime(folder / name, (1e9, 1e9))  # one time: the names alone tell the order
    found = discover(tmp_path / "landing", load_mappings()["registry_it"])
    assert [f.name for f in found.current] == ["TREP_export_20261101 (2).csv"]
    assert sorted(f.name for f in found.superseded) == ["TREP_export_20261031 (3).csv", "TREP_export_20261101 (1).csv",
                                                        "TREP_export_20261101.csv"]
    assert found.notices == ("registry_it: TREP_export_20261101 (2).csv read as a later download of "
                             "TREP_export_20261101.csv, TREP_export_20261101 (1).csv, which it supersedes",)


def test_a_copy_of_an_export_under_another_name_is_set_aside_with_a_notice(tmp_path):
    folder = tmp_path / "landing" / "iltb"
    folder.mkdir(parents=True)
    (folder / "ILTB_FU.csv").write_text("the follow-up form")
    (folder / "ILTB_FU2.csv").write_text("the follow-up form")  # read, it would be counted as ILTB_FU.csv
    found = discover(tmp_path / "landing", load_mappings()["iltb"])
    assert [f.name for f in found.current] == ["ILTB_FU.csv"]
    assert found.notices == ("iltb: ILTB_FU2.csv set aside: the same bytes as ILTB_FU.csv (a copy)",)


def test_archive_copies_once_under_the_content_hash(tmp_path):
    folder = tmp_path / "landing" / "registry_it"
    folder.mkdir(parents=True)
    export = folder / "TREP_export_20261101.csv"
    export.write_bytes(b"id_record;x\r\n1;2\r\n")
    (landing_file,) = discover(tmp_path / "landing", load_mappings()["registry_it"]).current
    assert landing_file.sha256 == sha256_of(export)
    copy = archive(landing_file, tmp_path / "archive")
    assert copy.read_bytes() == export.read_bytes() and landing_file.sha256[:16] in copy.name
    assert archive(landing_file, tmp_path / "archive") == copy


def _registry_landing(tmp_path):
    folder = tmp_path / "landing" / "registry_it"
    folder.mkdir(parents=True)
    return folder


def test_a_file_still_being_written_waits_for_the_next_run(tmp_path):
    folder = _registry_landing(tmp_path)
    export = folder / "TREP_export_20261102.csv"
    export.write_bytes(b"id_record;x\r\n1;2\r\n")
    now = export.stat().st_mtime + 5
    found = discover(tmp_path / "landing", load_mappings()["registry_it"], quiet_seconds=60, now=now)
    assert found.current == () and "not read yet" in found.notices[0] and "quiet period of 60 s" in found.notices[0]
    later = discover(tmp_path / "landing", load_mappings()["registry_it"], quiet_seconds=60, now=now + 60)
    assert [f.name for f in later.current] == [export.name]


def test_a_done_marker_or_a_matching_manifest_declares_a_file_complete(tmp_path):
    folder = _registry_landing(tmp_path)
    marked, listed = folder / "TREP_export_20261102.csv", folder / "TREP_export_20261103.csv"
    marked.write_bytes(b"id_record;x\r\n1;2\r\n")
    listed.write_bytes(b"id_record;x\r\n1;3\r\n")
    (folder / f"{marked.name}.done").touch()
    (folder / f"{listed.name}.sha256").write_text(f"{sha256_of(listed)}  {listed.name}\n")
    mapping = load_mappings()["registry_it"]
    found = discover(tmp_path / "landing", mapping, quiet_seconds=3600)
    assert sorted(f.name for f in [*found.current, *found.superseded]) == [marked.name, listed.name]
    assert not found.notices  # the markers are not reported as stray files
    (folder / f"{listed.name}.sha256").write_text("0" * 64)
    found = discover(tmp_path / "landing", mapping, quiet_seconds=3600)
    assert "checksum does not match" in " ".join(found.notices)


def test_a_done_marker_older_than_its_file_declares_nothing(tmp_path):
    # Yesterday's marker is still there while tonight's export is rewritten in place.
    folder = _registry_landing(tmp_path)
    export = folder / "TREP_export_20261102.csv"
    export.write_bytes(b"id_record;x\r\n1;2\r\n")
    marker = folder / f"{export.name}.done"
    marker.touch()
    os.utime(marker, (export.stat().st_mtime - 86400,) * 2)
    mapping = load_mappings()["registry_it"]
    found = discover(tmp_path / "landing", mapping, quiet_seconds=3600)
    assert found.current == () and "marker written after it declares it complete" in found.notices[0]
    os.utime(marker, (export.stat().st_mtime,) * 2)
    assert [f.name for f in discover(tmp_path / "landing", mapping, quiet_seconds=3600).current] == [export.name]


def test_links_devices_and_folders_are_refused_not_followed(tmp_path):
    folder = _registry_landing(tmp_path)
    secret = tmp_path / "outside.csv"
    secret.write_text("id_record;x\r\n1;secret\r\n")
    (folder / "TREP_export_20261102.csv").symlink_to(secret)
    (folder / "TREP_export_20261103.csv").symlink_to("/etc/passwd")
    os.mkfifo(folder / "TREP_export_20261104.csv")
    found = discover(tmp_path / "landing", load_mappings()["registry_it"])
    assert found.current == () and found.problems == ()
    link = "refused: a symbolic link (exports are delivered as files, never linked in)"
    assert sorted(found.notices) == [
        f"registry_it: TREP_export_20261102.csv {link}", f"registry_it: TREP_export_20261103.csv {link}",
        "registry_it: TREP_export_20261104.csv refused: not a regular file (a device, pipe or socket)"]


def test_an_unreadable_file_holds_its_source_with_the_reason(tmp_path, monkeypatch):
    folder = _registry_landing(tmp_path)
    export = folder / "TREP_export_20261102.csv"
    export.write_bytes(b"id_record;x\r\n1;2\r\n")
    real_open = type(export).open

    def refuse(self, *args, **kwargs):  # root reads any file: a read error is simulated where it is raised
        if self.name == export.name:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(type(export), "open", refuse)
    found = discover(tmp_path / "landing", load_mappings()["registry_it"])
    assert found.current == ()
    assert found.problems == ("registry_it: TREP_export_20261102.csv cannot be read (Permission denied); "
                              "expected a readable file: the source keeps its last good data",)


@pytest.mark.parametrize(("files", "name", "said"), [
    ("*.csv", "~$TREP_export_20261101.csv", "a lock file (~$"),  # its own name fits the glob
    ("TREP_export_*.csv", "TREP_export_20261102.csv.filepart", "an upload's temporary name (.filepart)"),  # its file's
    ("TREP_export_*.csv", "notes.txt.part", None),  # a temporary, but of no export: passed over as any other file
    ("*.csv", "TREP_export_20261101.csv", None),  # an export
])
def test_the_reader_and_the_pull_judge_a_temporary_name_by_one_rule(files, name, said):
    """`temporary_export` is the landing reader's and the pull's (etl/pull/deliveries.py: a drop zone's file,
    a zip member) alike, `named_as_export` what the exports are named by for both."""
    mapping = load_mappings()["registry_it"].model_copy(update={"files": files})
    why = temporary_export(name, lambda n: named_as_export(mapping, n))
    assert (why if said is None else why and why[:len(said)]) == said, why
    assert named_as_export(mapping, "TREP_export_20261101.csv") and not named_as_export(mapping, "notes.txt")
    iltb = load_mappings()["iltb"]  # ILTB_*.csv, its record set in the name: ILTB_(?P<record_set>[A-Z0-9]+)\.csv
    assert named_as_export(iltb, "ILTB_FU.csv") and not named_as_export(iltb, "ILTB_fu.csv")  # the glob's, no series
    assert temporary_export(name, lambda n: False) is None  # judged by what `fits` takes: a zip delivery's glob


@pytest.mark.parametrize(("files", "name"), [
    ("*.csv", "~$TREP_export_20261101.csv"),  # Excel's lock file, copied in with the export it stands for
    ("TREP_export_*", "TREP_export_20261101.csv.part"),  # an upload's temporary, copied in by hand
    ("TREP_export_*.csv", "TREP_export_20261102.csv.filepart"),  # no export by the glob, but one on its way
])
def test_an_uploads_temporary_or_a_lock_file_copied_into_landing_is_not_read(tmp_path, files, name):
    """The pull's rule (etl/pull/deliveries.py) holds for a file copied into landing by hand: such a name is
    never an export, whatever the mapping's files glob takes in, and the notice says why."""
    folder = _registry_landing(tmp_path)
    (folder / "TREP_export_20261101.csv").write_bytes(b"id_record;x\r\n1;2\r\n")
    (folder / name).write_bytes(b"id_record;x\r\n1;")
    mapping = load_mappings()["registry_it"].model_copy(update={"files": files})
    found = discover(tmp_path / "landing", mapping, quiet_seconds=0)
    assert [f.name for f in found.current] == ["TREP_export_20261101.csv"] and not found.waiting
    assert [f.name for f in found.superseded] == []
    (notice,) = found.notices
    assert notice.startswith(f"registry_it: {name} not read: ") and "never an export" in notice, notice
