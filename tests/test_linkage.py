"""Linkage across sources (etl/link): pure clustering, then a synthetic run measured against the truth.

The run is the session's shared one (conftest.synthetic_run: 400 persons, seed 11); a test that
records decisions works on a copy of its home.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from conftest import SYNTHETIC_RUN_KEY
from warehouse_query import query_frame as _query

from etl import pipeline
from etl.config import Home, resolve_home
from etl.link.cluster import CLERICAL, EUPID, PROBABILISTIC, UNLINKED, Edge, SourcePatient, link_persons
from etl.link.decision import DecisionError, PatientRef, parse_patient, record_decision
from etl.link.evaluate import measure
from etl.link.model import load_config
from etl.quality.report import build_report
from etl.synth import DEFAULT_EXPORT_DATE
from etl.synth.people import KeyBook, make_person
from etl.transform.harmonise import birth_tokens
from etl.transform.pseudonym import PseudonymKey, source_pseudonym
from etl.transform.values import PartialDate

KEY = PseudonymKey(SYNTHETIC_RUN_KEY.encode())


# -- clustering: a pure function ----------------------------------------------------------------

def _patient(source: str, name: str, eupid: str | None = None) -> SourcePatient:
    return SourcePatient(source, name, eupid or f"id-{source}-{name}", eupid is not None)


def test_two_different_eupids_are_never_one_person_whatever_the_score():
    a, b, c = _patient("s1", "a", "E1"), _patient("s2", "b", "E2"), _patient("s3", "c")
    links = link_persons([a, b, c], [Edge(a.key, c.key, 0.99, PROBABILISTIC), Edge(b.key, c.key, 0.98, PROBABILISTIC)])
    assert links[a.key].patient_id == links[c.key].patient_id == "E1"  # the stronger edge wins
    assert links[b.key].patient_id == "E2" and links[b.key].link_method == EUPID


def test_a_person_never_holds_two_patients_of_one_source_and_the_id_is_deterministic():
    a, b, c = _patient("s1", "a"), _patient("s2", "b"), _patient("s1", "c")
    edges = [Edge(a.key, b.key, 0.95, PROBABILISTIC), Edge(c.key, b.key, 0.97, PROBABILISTIC)]
    links = link_persons([a, b, c], edges)
    assert links[b.key].patient_id == links[c.key].patient_id == min(b.harmonised_id, c.harmonised_id)
    assert links[a.key] .link_method == UNLINKED and links[a.key].match_probability is None
    assert links[b.key].link_method == PROBABILISTIC and links[b.key].match_probability == 0.97
    assert link_persons([c, b, a], list(reversed(edges))) == links


def test_a_reviewers_link_comes_first_and_a_shared_eupid_is_said_so():
    a, b, c = _patient("s1", "a", "E1"), _patient("s2", "b", "E1"), _patient("s3", "c")
    links = link_persons([a, b, c], [Edge(c.key, a.key, 1.0, CLERICAL)])
    assert {links[p.key].patient_id for p in (a, b, c)} == {"E1"}
    assert [links[p.key].link_method for p in (a, b, c)] == [CLERICAL, EUPID, CLERICAL]


def test_birth_tokens_are_keyed_and_the_swap_matches_the_swapped_date():
    given = birth_tokens(KEY, PartialDate(date(2015, 3, 7), "day"))
    swapped = birth_tokens(KEY, PartialDate(date(2015, 7, 3), "day"))
    assert given["birth_swapped_token"] == swapped["birth_token"]
    assert "2015" not in str(given) and given["birth_token"] != KEY.digest("birth", "2015-03-07x")
    assert birth_tokens(KEY, PartialDate(date(2015, 3, 3), "day"))["birth_swapped_token"] is None
    assert birth_tokens(KEY, PartialDate(date(2015, 3, 1), "month")) == {"birth_token": None,
                                                                          "birth_swapped_token": None}


def test_a_decision_names_two_patients_of_two_sources(tmp_path):
    assert parse_patient(" iltb:abc ") == PatientRef("iltb", "abc")
    with pytest.raises(DecisionError, match="SOURCE:PSEUDONYM"):
        parse_patient("abc")
    with pytest.raises(DecisionError, match="one source"):
        record_decision(resolve_home(tmp_path), PatientRef("iltb", "a"), PatientRef("iltb", "b"), "link")


# -- a synthetic run against the truth ----------------------------------------------------------


def test_pairwise_linkage_meets_the_targets_and_links_without_eupids(synthetic_run):
    home, truth_dir, _ = synthetic_run
    quality = measure(home.warehouse, truth_dir, KEY)
    assert quality.true_pairs >= 5
    assert quality.precision >= 0.99 and quality.f1 >= 0.98, quality
    assert quality.share_linked_without_eupid >= 1 / 3, quality


def test_lookalike_children_are_not_linked(synthetic_run):
    home, truth_dir, _ = synthetic_run
    links = pd.read_csv(truth_dir / "links.csv", dtype=str, keep_default_na=False)
    person = _query(home, "SELECT source_id, source_patient_pseudonym, patient_id FROM stage.patient_link")
    id_of = {(r.source_id, r.source_patient_pseudonym): r.patient_id for r in person.itertuples()}
    ids: dict[str, set[str]] = {}
    for link in links.itertuples():
        found = id_of.get((link.source_id, source_pseudonym(KEY, link.source_id, link.source_patient_key)))
        if found:
            ids.setdefault(link.true_person_id, set()).add(found)
    lookalikes = [p for p in ids if p.endswith("-L")]
    assert lookalikes, "the synthetic exports should hold look-alike children"
    assert all(not ids[child] & ids.get(child.removesuffix("-L"), set()) for child in lookalikes)


def test_no_person_holds_two_eupids_and_methods_say_what_happened(synthetic_run):
    home, _, _ = synthetic_run
    assert _query(home, """
        SELECT l.patient_id FROM stage.patient_link l JOIN stage.link_key k USING (source_id, source_patient_pseudonym)
        WHERE k.has_eupid GROUP BY 1 HAVING count(DISTINCT k.harmonised_patient_id) > 1""").empty
    sources = _query(home, "SELECT patient_id, source_id, link_method, match_probability FROM core.patient_source")
    threshold = load_config().link_threshold
    assert set(sources.link_method) == {EUPID, PROBABILISTIC, UNLINKED}
    probabilistic = sources[sources.link_method == PROBABILISTIC].match_probability
    assert ((probabilistic >= threshold) & (probabilistic <= 1)).all()
    assert (sources[sources.link_method == EUPID].match_probability == 1.0).all()
    unlinked = sources[sources.link_method == UNLINKED]
    assert unlinked.match_probability.isna().all()
    shared = sources.groupby("patient_id").source_id.nunique()
    assert (shared[unlinked.patient_id] == 1).all(), "an unlinked source patient shares its person with no one"
    assert (shared[sources[sources.link_method == PROBABILISTIC].patient_id] > 1).all()


def _birth_dates(truth_dir: Path, patients: int, seed: int) -> dict[tuple[str, str], date]:
    """(source, pseudonym) -> the birth date the source exports, from the generator itself."""
    keys, dates = KeyBook(), {}
    for index in range(patients):
        _, source_patients = make_person(index, seed, DEFAULT_EXPORT_DATE, keys)
        for p in source_patients:
            dates[(p.source_id, source_pseudonym(KEY, p.source_id, p.patient_key))] = p.birth.value
    return dates


def test_no_clear_birth_date_anywhere_in_the_warehouse(synthetic_run):
    """Every row that names a source patient: no DATE equal to their birth date, no text holding it."""
    home, truth_dir, _ = synthetic_run
    births = _birth_dates(truth_dir, 400, 11)
    con = duckdb.connect(str(home.warehouse), read_only=True)
    found = []
    try:
        tables = con.execute("""
            SELECT schema_name, table_name, list(column_name), list(data_type) FROM duckdb_columns()
            WHERE schema_name IN ('stage', 'core', 'dq', 'meta', 'marts') GROUP BY ALL""").fetchall()
        for schema, table, columns, types in tables:
            if "source_record_key" not in columns or "source_id" not in columns:
                continue
            checked = [(c, t) for c, t in zip(columns, types) if t in ("DATE", "VARCHAR")]
            selected = ", ".join(f'"{c}"' for c, _ in checked)
            rows = con.execute(f"SELECT source_id, source_record_key, {selected} FROM {schema}.{table}").fetchall()
            for source_id, record_key, *values in rows:
                birth = births.get((source_id, str(record_key).partition("|")[0]))
                if birth is None:
                    continue
                texts = (birth.isoformat(), birth.strftime("%d/%m/%Y"), birth.strftime("%Y%m%d"))
                for (column, kind), value in zip(checked, values):
                    if (kind == "DATE" and value == birth) or (kind == "VARCHAR" and value
                                                               and any(t in value for t in texts)):
                        found.append(f"{schema}.{table}.{column}")
    finally:
        con.close()
    assert len(births) > 400 and not found, sorted(set(found))


@pytest.fixture
def copied_home(synthetic_run, tmp_path) -> Home:
    home, _, _ = synthetic_run
    shutil.copytree(home.root, tmp_path / "home", symlinks=True)
    return resolve_home(tmp_path / "home")


def _method_of(home: Home, *patients: PatientRef) -> list[tuple[str, str, float | None]]:
    rows = _query(home, "SELECT source_id, source_patient_pseudonym, patient_id, link_method, match_probability "
                        "FROM core.patient_source")
    by = {(r.source_id, r.source_patient_pseudonym): r for r in rows.itertuples()}
    return [(by[(p.source_id, p.pseudonym)].patient_id, by[(p.source_id, p.pseudonym)].link_method,
             by[(p.source_id, p.pseudonym)].match_probability) for p in patients]


def test_the_review_list_is_in_the_report_and_decisions_persist_across_runs(copied_home, tmp_path, monkeypatch):
    # A lower review threshold fills the clerical review list of this copy.
    config = load_config().model_dump(exclude={"fingerprint"})
    config["fields"] = {name: [level.model_dump() for level in levels] for name, levels in load_config().fields.items()}
    config["review_threshold"] = 0.0001
    (tmp_path / "linkage.yaml").write_text(json.dumps(config))
    monkeypatch.setenv("RTW_LINKAGE_CONFIG", str(tmp_path / "linkage.yaml"))
    pipeline.run(copied_home, key_value=SYNTHETIC_RUN_KEY)  # a changed model re-links
    candidates = _query(copied_home, "SELECT * FROM dq.link_candidate ORDER BY match_probability DESC")
    assert len(candidates) >= 3
    # Every field's level, and the sources of rivals where another patient of one source matches as well.
    assert all(set(json.loads(e)) - {"rival"} == set(config["fields"]) for e in candidates.evidence)
    page = build_report(copied_home.warehouse, copied_home.reports).read_text()
    assert page.count('<tr data-left="') == len(candidates)
    first = candidates.iloc[0]
    left = PatientRef(first.source_id_l, first.source_patient_pseudonym_l)
    right = PatientRef(first.source_id_r, first.source_patient_pseudonym_r)
    assert f"{left}" in page and "birth date: " in page

    record_decision(copied_home, left, right, "link", note="same child")
    pipeline.run(copied_home, key_value=SYNTHETIC_RUN_KEY)
    (id_l, method_l, p_l), (id_r, method_r, p_r) = _method_of(copied_home, left, right)
    assert id_l == id_r and method_l == method_r == CLERICAL and p_l == p_r == 1.0
    pipeline.run(copied_home, key_value=SYNTHETIC_RUN_KEY)  # nothing new: the decision still holds
    assert _method_of(copied_home, left, right)[0][1] == CLERICAL

    record_decision(copied_home, left, right, "unlink")
    pipeline.run(copied_home, key_value=SYNTHETIC_RUN_KEY)
    (id_l, _, _), (id_r, _, _) = _method_of(copied_home, left, right)
    assert id_l != id_r
    decisions = _query(copied_home, "SELECT decision, decided_by, note FROM meta.link_decision ORDER BY decided_at")
    assert list(decisions.decision) == ["link", "unlink"] and decisions.note[0] == "same child"


def test_unlinking_a_probabilistic_pair_splits_the_person(copied_home):
    pairs = _query(copied_home, """
        SELECT a.source_id AS sa, a.source_patient_pseudonym AS pa, b.source_id AS sb, b.source_patient_pseudonym AS pb
        FROM core.patient_source a JOIN core.patient_source b USING (patient_id)
        WHERE a.source_id < b.source_id AND a.link_method = 'probabilistic' AND b.link_method = 'probabilistic'
        ORDER BY ALL LIMIT 1""")
    assert not pairs.empty
    row: Any = pairs.iloc[0]
    left, right = PatientRef(row.sa, row.pa), PatientRef(row.sb, row.pb)
    record_decision(copied_home, left, right, "unlink", note="different children")
    pipeline.run(copied_home, key_value=SYNTHETIC_RUN_KEY)
    (id_l, method_l, _), (id_r, method_r, _) = _method_of(copied_home, left, right)
    assert id_l != id_r and {method_l, method_r} <= {UNLINKED, EUPID}  # a EUPID of its own stays said


def test_forgetting_a_linked_patient_leaves_no_id_drawn_from_their_key(copied_home, synthetic_run):
    from etl.forget import forget

    _, truth_dir, _ = synthetic_run
    # A probabilistic link whose person id is this patient's own harmonise id (the smaller of the two).
    found = _query(copied_home, """
        SELECT source_id, source_patient_pseudonym, patient_id FROM stage.patient_link
        WHERE link_method = 'probabilistic' AND patient_id = harmonised_patient_id ORDER BY ALL LIMIT 1""")
    assert not found.empty
    source, pseudonym, person = found.iloc[0]
    links = pd.read_csv(truth_dir / "links.csv", dtype=str, keep_default_na=False)
    clear = next(k for s, k in zip(links.source_id, links.source_patient_key)
                 if s == source and source_pseudonym(KEY, s, k) == pseudonym)
    forget(copied_home, source, clear, key_value=SYNTHETIC_RUN_KEY)
    con = duckdb.connect(str(copied_home.warehouse), read_only=True)
    try:
        columns = con.execute("SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE "
                              "data_type = 'VARCHAR' AND schema_name IN ('stage', 'core', 'dq', 'marts') ").fetchall()
        cited = [f"{s}.{t}.{c}" for s, t, c in columns
                 if con.execute(f'SELECT count(*) FROM {s}.{t} WHERE "{c}" IN (?, ?)',
                                [person, pseudonym]).fetchone()[0]]  # type: ignore[index]
    finally:
        con.close()
    assert not cited
