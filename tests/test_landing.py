import os

from etl.extract.landing import archive, discover, sha256_of
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
