"""A bad mapping fails its own source only: the others load, and the run's report names it and why."""

from __future__ import annotations

import csv
import shutil

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from warehouse_query import query_rows

from etl import pipeline
from etl.config import SOURCES_DIR, resolve_home
from etl.synth import generate

pytestmark = pytest.mark.integration
KEY_TEXT = "isolation-test-key"


def test_a_broken_mapping_fails_its_source_and_the_report_shows_it(small_run, tmp_path):
    home = copy_of(small_run, tmp_path)  # its first run read the shipped mappings
    assert query_rows(home, "SELECT sources_failed FROM meta.run") == [([],)]
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES_DIR, sources)

    # A data manager's typo: an unknown key in one mapping.
    broken = sources / "iltb.yaml"
    broken.write_text(broken.read_text().replace("title:", "titel: oops\ntitle:", 1))
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, sources_dir=sources)

    assert summary.status == "completed_with_failures"
    assert summary.sources_failed == ["iltb"]
    assert "iltb.yaml" in summary.message and "titel" in summary.message
    assert "sacha_fr" in summary.sources_unchanged
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        kept = con.execute("SELECT count(*) FROM core.study_enrolment WHERE source_id = 'iltb'").fetchone()
    finally:
        con.close()
    assert kept is not None and kept[0] > 0  # the failed source keeps its last good data

    # The run changed no data, yet its report is written: a failed source is news.
    page = home.reports / summary.run_id / "index.html"
    assert summary.report == str(page) and page.exists()
    html = page.read_text()
    assert 'id="sources-failed" class="failed">iltb<' in html and "titel" in html
    assert (home.reports / "latest").resolve() == page.parent.resolve()


def test_what_a_source_did_not_expect_fails_it_alone_saying_the_step_and_error(tmp_path, monkeypatch, caplog):
    """A bug, or a damaged file under the home, in one source's harmonise: the run goes on, as it does
    when a worker process or a DAG task dies, and the run record says why as the DAG's does: the step and
    the exception; the text of one that may quote an export's value is in the log only."""
    home = resolve_home(tmp_path / "home").ensure()
    generate(home.root, patients=60, seed=5)
    with (home.root / "truth" / "links.csv").open() as links:
        patient = next(row["source_patient_key"] for row in csv.DictReader(links) if row["source_id"] == "esmart")
    harmonise = pipeline.harmonise_to_folder

    def failing(mapping, *args, **kwargs):  # type: ignore[no-untyped-def]
        if mapping.source_id == "esmart":
            raise RuntimeError(f"a value of patient {patient}\nthe rest of the text")
        return harmonise(mapping, *args, **kwargs)
    monkeypatch.setattr(pipeline, "harmonise_to_folder", failing)
    summary = pipeline.run(home, key_value=KEY_TEXT)
    assert summary.status == "completed_with_failures" and summary.sources_failed == ["esmart"]
    assert summary.sources_changed == ["crizotinib_imt", "iltb", "registry_it", "sacha_fr"]
    assert summary.message == ("esmart: harmonise crashed: RuntimeError (its text, which may quote an export's value, "
                               "is in the run's log)")
    assert patient not in summary.message
    assert any("esmart" in r.getMessage() and "the rest of the text" in r.getMessage() for r in caplog.records)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        loaded = dict(con.execute("SELECT source_id, count(*) FROM core.study_enrolment GROUP BY 1").fetchall())
    finally:
        con.close()
    assert "esmart" not in loaded and set(loaded) == {"crizotinib_imt", "iltb", "registry_it", "sacha_fr"}
