"""The linkage step of publish: persons across sources, recomputed on every validated run.

It scores from stage only (harmonise's own ids in stage.link_key, never last run's result), so
running it twice gives the same persons. Steps: one feature row per source patient (SQL), Splink scores
the pairs of two sources that a blocking rule admits, reviewers' decisions add or remove links,
the connected components become persons (etl/link/cluster.py), and every stage table's
patient_id is rewritten through stage.record, so the cross-table rules and core see the linked
ids. Pairs between the two thresholds are kept in dq.link_candidate for clerical review.

The persons are a function of the feature rows, the model, the reviewers' decisions and the code
alone. When their fingerprint is the one in dq.link_scored (a night that brought follow-up but no
new or changed registration or diagnosis), and stage.patient_link still holds the persons that
scoring gave (its checksum is kept beside the fingerprint), the last run's persons stand and
nothing is scored: stage.patient_link is carried over to this run's records, dq.link_candidate
kept, as this run's list (the report of a run shows that run's list only), and the reviewers' decisions
that scoring could not apply said again in this run's notices.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from etl.config import LINKAGE_MEMORY_LIMIT, connect_duckdb, set_memory_limit
from etl.frames import row_dicts
from etl.link.cluster import (
    CLERICAL,
    HELD_APART,
    PROBABILISTIC,
    Edge,
    Link,
    SourcePatient,
    apart_by_shared_eupid,
    link_persons,
)
from etl.link.model import LinkageConfig, evidence_label, splink_settings
from etl.resources import code_digest
from etl.schema import drop_temp_tables, rows_digest

log = logging.getLogger(__name__)

Decisions = dict[tuple[tuple[str, str], tuple[str, str]], str]  # (left, right) in order -> link / unlink

FEATURES_SQL = """
-- One row per source patient: the quasi-identifiers linkage compares (birth date as keyed tokens).
WITH diagnosis_of_patient AS (
    SELECT DISTINCT r.source_id, r.patient_pseudonym AS source_patient_pseudonym, d.event_type,
           d.diagnosis_date, d.diagnosis_date_precision, d.icdo3_morphology, d.icdo3_topography
    FROM stage.diagnosis d
    JOIN stage.record r USING (source_id, source_record_key)
),
first_diagnosis AS (  -- the initial diagnosis, else the earliest event (its date alone is not the onset)
    SELECT source_id, source_patient_pseudonym,
           CASE WHEN event_type = 'initial' THEN diagnosis_date END AS diagnosis_date,
           CASE WHEN event_type = 'initial' THEN diagnosis_date_precision END AS diagnosis_date_precision,
           icdo3_morphology, icdo3_topography
    FROM diagnosis_of_patient
    -- Every column ordered: a tie kept whichever row lay first. Of one date, the most precise ('day').
    QUALIFY row_number() OVER (PARTITION BY source_id, source_patient_pseudonym
                               ORDER BY event_type = 'initial' DESC, diagnosis_date NULLS LAST,
                                        diagnosis_date_precision NULLS LAST, icdo3_morphology, icdo3_topography,
                                        event_type) = 1
),
last_relapse AS (  -- a board or trial that saw the patient at relapse dates that, not the onset
    SELECT source_id, source_patient_pseudonym, max(diagnosis_date) AS relapse_date
    FROM diagnosis_of_patient WHERE event_type = 'relapse' GROUP BY ALL
)
SELECT k.source_id, k.source_patient_pseudonym AS unique_id, k.harmonised_patient_id, k.has_eupid,
       CASE WHEN p.sex IN ('female', 'male') THEN p.sex END AS sex,
       p.birth_year, p.birth_month, k.birth_token, k.birth_swapped_token,
       p.country, p.centre_id, f.diagnosis_date, f.diagnosis_date_precision, l.relapse_date,
       f.icdo3_morphology, f.icdo3_topography
FROM stage.link_key k
JOIN stage.patient_source p USING (source_id, source_patient_pseudonym)
LEFT JOIN first_diagnosis f USING (source_id, source_patient_pseudonym)
LEFT JOIN last_relapse l USING (source_id, source_patient_pseudonym)
ORDER BY k.source_id, k.source_patient_pseudonym
"""


@dataclass(frozen=True)
class LinkageSummary:
    source_patients: int
    pairs_scored: int
    linked_probabilistic: int
    linked_clerical: int
    review_candidates: int
    scored_in: str  # the run that scored the pairs: this one, or an earlier one whose persons stand


def link_sources(con: duckdb.DuckDBPyConnection, run_id: str, config: LinkageConfig,
                 person_tables: Sequence[str]) -> LinkageSummary:
    """Link the source patients in stage, rewrite the patient ids of `person_tables` (stage tables
    with patient_id and source_record_key), refresh dq.link_candidate (module docstring)."""
    fingerprint = _inputs_fingerprint(con, config)
    # Whose person the stage rows name now: a source not reloaded names the last run's persons.
    con.execute("CREATE OR REPLACE TEMP TABLE previous_link AS "
                "SELECT DISTINCT source_id, source_patient_pseudonym, patient_id FROM stage.patient_link")
    try:
        kept = _keep_last_links(con, fingerprint, run_id)
        if kept is None:  # the features are read only to be scored
            summary, unapplied = _link_anew(con, run_id, config, con.execute(FEATURES_SQL).df())
            con.execute("DELETE FROM dq.link_scored")
            con.execute("INSERT INTO dq.link_scored (fingerprint, links_checksum, run_id, source_patients, "
                        "pairs_scored, linked_probabilistic, linked_clerical, review_candidates, unapplied) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [fingerprint, _links_checksum(con), run_id, summary.source_patients, summary.pairs_scored,
                         summary.linked_probabilistic, summary.linked_clerical, summary.review_candidates,
                         json.dumps(unapplied)])
        else:
            summary, unapplied = kept
        _note_unapplied(con, run_id, unapplied)  # every night the decision stays unapplied, kept or scored
        _rewrite_patient_ids(con, person_tables)
    finally:
        drop_temp_tables(con, "previous_link")
    return summary


# The code that turns features into persons: a new version of it links again.
_CODE = code_digest(Path(__file__).parent.glob("*.py"), "splink", "duckdb")


def _inputs_fingerprint(con: duckdb.DuckDBPyConnection, config: LinkageConfig) -> str:
    """SHA-256 of what the persons depend on: the feature rows (in any order), the model, the decisions,
    this package's linkage code and the versions of Splink and DuckDB."""
    rows = rows_digest(con, FEATURES_SQL)
    decisions = rows_digest(con, "SELECT * FROM meta.link_decision")
    return hashlib.sha256(f"{rows}|{decisions}|{config.fingerprint}|{_CODE}".encode()).hexdigest()


def _links_checksum(con: duckdb.DuckDBPyConnection) -> str:
    """Of the persons in stage.patient_link (one per source patient, in any order)."""
    return rows_digest(con, "SELECT DISTINCT source_id, source_patient_pseudonym, patient_id, link_method, "
                             "match_probability FROM stage.patient_link")


def _keep_last_links(con: duckdb.DuckDBPyConnection, fingerprint: str,
                     run_id: str) -> tuple[LinkageSummary, list[tuple[str, str]]] | None:
    """When the last scoring was of `fingerprint` and stage.patient_link is still what it gave: its
    persons carried to this run's records (stage.patient_link rewritten), its review list made this
    run's, and its summary and the reviewers' decisions it could not apply (each source's and why); else None."""
    row = con.execute("SELECT source_patients, pairs_scored, linked_probabilistic, linked_clerical, "
                      "review_candidates, run_id, unapplied FROM dq.link_scored "
                      "WHERE fingerprint = ? AND links_checksum = ? AND unapplied IS NOT NULL",
                      [fingerprint, _links_checksum(con)]).fetchone()
    if row is None:
        return None
    log.info("linkage: the persons scored in run %s stand (no linkage feature, model or decision changed)", row[5])
    # A reloaded source's records are new rows of stage.link_key: each takes its source patient's person.
    # The other rows stay as they are (rewriting all of them cost the commit too).
    con.execute("CREATE OR REPLACE TEMP TABLE linked AS SELECT DISTINCT source_id, source_patient_pseudonym, "
                "patient_id, link_method, match_probability FROM stage.patient_link")
    try:
        con.execute("DELETE FROM stage.patient_link p "
                    f"WHERE NOT EXISTS (SELECT 1 FROM stage.link_key k WHERE {_SAME_KEY})")
        con.execute(f"{_INSERT_LINKS} WHERE NOT EXISTS (SELECT 1 FROM stage.patient_link p WHERE {_SAME_KEY})")
    finally:
        drop_temp_tables(con, "linked")
    # The list is this run's linkage as much as the scoring run's: the report of this run shows it
    # (it lists a run's own pairs only; dq.link_scored still names the run that scored them).
    con.execute("UPDATE dq.link_candidate SET run_id = ?", [run_id])
    return LinkageSummary(*row[:6]), [(source_id, message) for source_id, message in json.loads(row[6])]


_SAME_KEY = " AND ".join(f"k.{c} = p.{c}" for c in ("source_id", "source_patient_pseudonym", "source_record_key",
                                                     "harmonised_patient_id"))


_INSERT_LINKS = """
    INSERT INTO stage.patient_link BY NAME
    SELECT k.source_id, k.source_patient_pseudonym, k.source_record_key, k.harmonised_patient_id,
           l.patient_id, l.link_method, l.match_probability
    FROM stage.link_key k JOIN linked l USING (source_id, source_patient_pseudonym)"""


def _link_anew(con: duckdb.DuckDBPyConnection, run_id: str, config: LinkageConfig,
               features: pd.DataFrame) -> tuple[LinkageSummary, list[tuple[str, str]]]:
    """Score the pairs, cluster them into persons (stage.patient_link), list the pairs to review; the summary and
    the reviewers' decisions not applied (each source's and why)."""
    patients, shared = apart_by_shared_eupid([
        SourcePatient(r["source_id"], r["unique_id"], r["harmonised_patient_id"], bool(r["has_eupid"]))
        for r in row_dicts(features[["source_id", "unique_id", "harmonised_patient_id", "has_eupid"]])])
    pairs = score_pairs(features, config, spill_to=_spill_folder(con))
    decisions = _latest_decisions(con)
    links, refused, review = link_scored(patients, row_dicts(pairs), decisions, config, run_id)
    con.execute("DELETE FROM stage.patient_link")
    if links:
        mapped = pd.DataFrame([{"source_id": s, "source_patient_pseudonym": p, "patient_id": link.patient_id,
                                "link_method": link.link_method, "match_probability": link.match_probability}
                               for (s, p), link in links.items()])
        con.register("linked", mapped)
        con.execute(_INSERT_LINKS)
        con.unregister("linked")
    con.execute("DELETE FROM dq.link_candidate")
    if not review.empty:
        con.register("review", review)
        con.execute("INSERT INTO dq.link_candidate BY NAME SELECT * FROM review")
        con.unregister("review")
    methods = [link.link_method for link in links.values()]
    said = _eupids_shared(shared) + unapplied_decisions(decisions, links, refused)
    return (LinkageSummary(len(patients), len(pairs), methods.count(PROBABILISTIC), methods.count(CLERICAL),
                           len(review), run_id), said)


def _eupids_shared(groups: list[list[SourcePatient]]) -> list[tuple[str, str]]:
    """What is said (each night, with the reviewers' decisions not applied) of a EUPID two patients of one source
    share: each patient of it is linked by it to no one (`apart_by_shared_eupid`)."""
    said = []
    for group in groups:
        names = ", ".join(_name(p.key) for p in sorted(group, key=lambda p: p.key))
        counts = Counter(p.source_id for p in group)
        for source in sorted(s for s, count in counts.items() if count > 1):  # the centre that typed it twice
            said.append((source, f"{names} share one EUPID, {counts[source]} of them patients of {source} (a typo at "
                                 "its centre, or one child registered twice): none is linked by it, each is linked on "
                                 "its score or by a reviewer alone; ask the centre to correct the EUPID"))
    return said


def link_scored(patients: Sequence[SourcePatient], scored: list[dict[Any, Any]], decisions: Decisions,
                config: LinkageConfig, run_id: str) -> tuple[dict[tuple[str, str], Link], list[tuple[Edge, str]],
                                                            pd.DataFrame]:
    """The persons from the scored pairs and the decisions, the links clustering refused (with why), and
    the review list: the pairs between the thresholds, those held back, and those clustering refused."""
    eupid_of = {p.key: p.harmonised_id for p in patients if p.has_eupid}
    # Two different EUPIDs are never one person: link_persons refuses that before it looks at `apart`.
    apart = held_apart(scored, eupid_of.keys(), decisions, config)
    contested = rivals(scored, eupid_of, decisions, config, apart)  # for the links and the review list alike
    edges = linking_edges(scored, decisions, config, eupid_of, contested)
    refused: list[tuple[Edge, str]] = []
    links = link_persons(patients, edges, refused, apart)
    not_linked = {_pair(*edge.left, *edge.right): why for edge, why in refused if edge.method == PROBABILISTIC}
    return links, refused, _review_list(scored, eupid_of, decisions, config, run_id, contested, not_linked)


def linking_edges(scored: list[dict[Any, Any]], decisions: Decisions, config: LinkageConfig,
                  eupid_of: Mapping[tuple[str, str], str] | None = None, contested: Rivals | None = None) -> list[Edge]:
    """The links to cluster: the scored pairs at or above the link threshold but those a reviewer
    decided (or reviews: _linked_on_score), and the pairs a reviewer linked (that edge alone: a second,
    on its score, was refused with it and listed for review beside the notice). eupid_of: each record's
    EUPID, of the records that have one; contested: the `rivals` of `scored`, when the caller has them."""
    if contested is None:
        contested = rivals(scored, eupid_of or {}, decisions, config)
    edges = [Edge((r["source_l"], r["id_l"]), (r["source_r"], r["id_r"]), float(r["match_probability"]), PROBABILISTIC)
             for r in scored if _linked_on_score(r, config, contested) and _pair_of(r) not in decisions]
    return edges + [Edge(a, b, 1.0, CLERICAL) for (a, b), decision in decisions.items() if decision == "link"]


def _linked_on_score(scored: dict[Any, Any], config: LinkageConfig, contested: Rivals) -> bool:
    """At or above the link threshold, showing no evidence that sends a pair to a reviewer whatever its
    score (review_when: twins born one day share everything but sex, or but their diagnosis dates), and
    standing out among the patients of one source that match one of its two records (rivals)."""
    return bool(scored["match_probability"] >= config.link_threshold) and not _held_back(scored, config) \
        and _pair_of(scored) not in contested


def _held_back(scored: dict[Any, Any], config: LinkageConfig) -> bool:
    """Showing, on every field of one review_when condition, one of its labels."""
    return any(all(_evidence(scored, config, field) in labels for field, labels in condition.items())
               for condition in config.review_when)


def held_apart(scored: list[dict[Any, Any]], with_eupid: Set[tuple[str, str]], decisions: Decisions,
               config: LinkageConfig) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """The pairs review_when holds back (likelier twins than one child), but those a reviewer linked and
    those of two EUPIDs (their EUPIDs say): no chain of links through other records makes them one person
    (a record giving no sex matched a boy and his twin sister alike, and joined them)."""
    return {pair for r in scored if _held_back(r, config) and decisions.get(pair := _pair_of(r)) != "link"
            and not (pair[0] in with_eupid and pair[1] in with_eupid)}


def _evidence(scored: dict[Any, Any], config: LinkageConfig, field: str) -> str:
    return evidence_label(config, field, int(scored[f"gamma_{field}"]))


Rivals = dict[tuple[tuple[str, str], tuple[str, str]], set[str]]  # pair -> the sources whose patients contest it


def rivals(scored: list[dict[Any, Any]], eupid_of: Mapping[tuple[str, str], str], decisions: Decisions,
           config: LinkageConfig, apart: Set[tuple[tuple[str, str], tuple[str, str]]] | None = None) -> Rivals:
    """The pairs that another patient of one source contests: of the patients of that source scored with
    one of the pair's records, the pair's share of their Bayes factors (2^match weight) is below the
    link threshold (or at most a half), so its odds against the rivals are under 19 to 1. Both twins
    registered by one source match the other twin's record alike, while one child registered twice by a
    source is rare: such a pair is either twin, for a reviewer to say, where clustering linked whichever
    sorted first. Two patients held `apart` (of two sources) contest a record alike: a record giving no
    sex matches a boy and his twin sister (`apart`: held_apart's pairs when not given). So do two records
    of two different EUPIDs (eupid_of: each record's EUPID, of those that have one), scored together or
    not. Pairs of two EUPIDs are left out, their EUPIDs say whether they are one, and pairs a reviewer
    unlinked: the twin left is no longer contested."""
    if apart is None:
        apart = held_apart(scored, eupid_of.keys(), decisions, config)
    candidates: dict[tuple[tuple[str, str], str], list[tuple[float, tuple[tuple[str, str], tuple[str, str]]]]] = {}
    partners: dict[tuple[str, str], dict[tuple[str, str], tuple[float, tuple[tuple[str, str], tuple[str, str]]]]] = {}
    for r in scored:
        left, right = pair = _pair_of(r)
        if (left in eupid_of and right in eupid_of) or decisions.get(pair) == "unlink":
            continue
        for record, other in pair, (right, left):
            candidates.setdefault((record, other[0]), []).append((float(r["match_weight"]), pair))
            partners.setdefault(record, {})[other] = (float(r["match_weight"]), pair)
    # A contest: pairs of one record whose other records cannot all be its person, each with the source
    # of the patients contesting it.
    contests = [[(weight, pair, source) for weight, pair in weighed]
                for (_, source), weighed in candidates.items() if len(weighed) > 1]
    for record in sorted(partners):  # two of its partners that cannot be one person (in order: a pair sorts)
        for one, other in combinations(sorted(partners[record]), 2):
            if (one, other) in apart or (one in eupid_of and other in eupid_of and eupid_of[one] != eupid_of[other]):
                contests.append([(*partners[record][one], other[0]), (*partners[record][other], one[0])])
    contested: Rivals = {}
    for contest in contests:
        top = max(weight for weight, _, _ in contest)
        total = sum(2.0 ** (weight - top) for weight, _, _ in contest)
        for weight, pair, source in contest:
            share = 2.0 ** (weight - top) / total
            # More than half, too: two pairs tied at a half each stood out under a link threshold of 0.5.
            if share < config.link_threshold or share <= 0.5:
                contested.setdefault(pair, set()).add(source)
    return contested


def _pair_of(scored: dict[Any, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    return _pair(scored["source_l"], scored["id_l"], scored["source_r"], scored["id_r"])


def _spill_folder(con: duckdb.DuckDBPyConnection) -> str:
    """Where scoring may spill: beside the warehouse's own spill folder, so crash repair clears both."""
    row = con.execute("SELECT current_setting('temp_directory')").fetchone()
    return f"{row[0] if row else '.tmp'}.linkage"


def _scoring_database(spill_to: str) -> duckdb.DuckDBPyConnection:
    """Splink's own DuckDB, in memory up to linkage's limit, then on disk at `spill_to`."""
    scoring = connect_duckdb()
    set_memory_limit(scoring, LINKAGE_MEMORY_LIMIT, "RTW_LINKAGE_MEMORY_LIMIT")
    scoring.execute("SET temp_directory = ?", [spill_to])
    return scoring


def score_pairs(features: pd.DataFrame, config: LinkageConfig, *, spill_to: str) -> pd.DataFrame:
    """Splink's scores of the pairs of two sources above the review threshold, with the evidence gammas.

    Columns: source_l, id_l, source_r, id_r, match_weight, match_probability, gamma_<field>... (the
    level each field reached; the compared values Splink returns with them are dropped here)."""
    columns = ["source_l", "id_l", "source_r", "id_r", "match_weight", "match_probability",
               *(f"gamma_{f}" for f in config.fields)]
    sources = [s for s, frame in features.groupby("source_id", sort=True) if len(frame)]
    if len(sources) < 2:
        return pd.DataFrame(columns=columns)
    from splink import DuckDBAPI, Linker  # imported here: a run without two sources never pays for it

    logging.getLogger("splink").setLevel(logging.WARNING)  # its INFO lines would fill every run's log
    scoring = _scoring_database(spill_to)
    db_api = DuckDBAPI(scoring)
    model_columns = ["unique_id", "sex", "birth_year", "birth_month", "birth_token", "birth_swapped_token",
                     "country", "centre_id", "diagnosis_date", "diagnosis_date_precision", "relapse_date",
                     "icdo3_morphology", "icdo3_topography"]
    tables = [db_api.register(features.loc[features.source_id == s, model_columns].reset_index(drop=True),
                              dataset_display_name=str(s)) for s in sources]
    linker = Linker(tables, splink_settings(config, prior(features, config)), log_level=None)
    try:
        predicted = linker.inference.predict(threshold_match_probability=config.review_threshold).as_pandas_dataframe()
    finally:
        scoring.close()
    predicted = predicted.rename(columns={"source_dataset_l": "source_l", "unique_id_l": "id_l",
                                          "source_dataset_r": "source_r", "unique_id_r": "id_r"})
    # One orientation per pair (source_l < source_r), so decisions and reports name a pair one way.
    swap = predicted.source_l > predicted.source_r
    for a, b in (("source_l", "source_r"), ("id_l", "id_r")):
        predicted.loc[swap, [a, b]] = predicted.loc[swap, [b, a]].to_numpy()
    return predicted[columns].sort_values(["source_l", "id_l", "source_r", "id_r"]).reset_index(drop=True)


def prior(features: pd.DataFrame, config: LinkageConfig) -> float:
    """P(two records of two sources are one person): pairs agreeing on the deterministic rules,
    divided by the rules' recall, over every cross-source pair (the estimate Splink documents for
    estimate_probability_two_random_records_match); the configured prior when none agrees."""
    sizes = features.groupby("source_id").size()
    pairs = (int(sizes.sum()) ** 2 - int((sizes ** 2).sum())) // 2
    if pairs == 0:
        return config.prior
    con = connect_duckdb()
    try:
        con.register("f", features)
        rules = " OR ".join(f"({rule})" for rule in config.prior_rules)
        row = con.execute(f"SELECT count(*) FROM f l JOIN f r ON l.source_id < r.source_id AND ({rules})").fetchone()
    finally:
        con.close()
    agreeing = int(row[0]) if row else 0
    if agreeing == 0:
        return config.prior
    return min(0.5, agreeing / config.prior_rules_recall / pairs)


def _pair(source_a: str, id_a: str, source_b: str, id_b: str) -> tuple[tuple[str, str], tuple[str, str]]:
    a, b = sorted(((source_a, id_a), (source_b, id_b)))
    return a, b


def _latest_decisions(con: duckdb.DuckDBPyConnection) -> Decisions:
    """The latest reviewer decision on each pair (either orientation)."""
    rows = con.execute("SELECT source_id_l, source_patient_pseudonym_l, source_id_r, source_patient_pseudonym_r, "
                       "decision FROM meta.link_decision ORDER BY decided_at").fetchall()
    return {_pair(*row[:4]): row[4] for row in rows}


def _name(patient: tuple[str, str]) -> str:
    return f"{patient[0]}:{patient[1]}"


def unapplied_decisions(decisions: Decisions, links: dict[tuple[str, str], Link],
                        refused: list[tuple[Edge, str]]) -> list[tuple[str, str]]:
    """The reviewers' decisions this linkage could not apply, as (source, what and why): a link the
    clustering refused, an unlink of two patients still one person (a shared EUPID, or links through
    other patients), a decision on a patient the warehouse no longer holds."""
    said = [(edge.left[0], f"the reviewer's link of {_name(edge.left)} and {_name(edge.right)} was not applied: "
                           + (f"{why}: link the two, if one child" if why.startswith(HELD_APART) else
                              f"{why}, and a person has one EUPID and one patient per source"))
            for edge, why in refused if edge.method == CLERICAL]
    for (a, b), decision in sorted(decisions.items()):
        gone = [_name(p) for p in (a, b) if p not in links]
        if gone:
            said.append((a[0], f"the reviewer's {decision} of {_name(a)} and {_name(b)} was not applied: "
                               f"{' and '.join(gone)} is not in the warehouse"))
        elif decision == "unlink" and links[a].patient_id == links[b].patient_id:
            said.append((a[0], f"the reviewer's unlink of {_name(a)} and {_name(b)} was not applied: they are still "
                               "one person, through a shared EUPID or their links to other patients of that person "
                               "(unlink those too, or ask the centre to correct the EUPID)"))
    return said


def _note_unapplied(con: duckdb.DuckDBPyConnection, run_id: str, unapplied: list[tuple[str, str]]) -> None:
    """In the run's log and its notices (meta.source_notice, in the report): the reviewer learns it had no effect."""
    for source_id, message in unapplied:
        log.warning("linkage: %s", message)
        notice = [run_id, source_id, f"linkage: {message}"]
        con.execute("INSERT INTO meta.source_notice SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM meta.source_notice "
                    "WHERE run_id = ? AND source_id = ? AND notice = ?)", notice * 2)


# The stage columns linkage writes: a rule reading none of them judges the same rows before linkage as after.
LINKAGE_WRITES = frozenset({"patient_id", "link_method", "match_probability"})


def _rewrite_patient_ids(con: duckdb.DuckDBPyConnection, person_tables: Sequence[str]) -> None:
    """Every stage row of a linked source patient takes the person's id. A row names harmonise's id
    (loaded this run) or the last run's person (kept: previous_link, which knows every source patient
    of the last run), so only the records of source patients linked to another person than either are
    looked at. At 100,000 persons that is 2% of them: each table's update took 0.05 s instead of 0.5 s,
    and a first load's 0.4 s instead of 2.4 s (its source patients have no last run: every record was
    looked at), linkage's peak 1,174 MiB instead of 1,231-1,281."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE record_person AS
        SELECT DISTINCT r.source_id, r.source_record_key, l.patient_id
        FROM stage.patient_link l
        LEFT JOIN previous_link p USING (source_id, source_patient_pseudonym)
        JOIN stage.record r ON r.source_id = l.source_id AND r.patient_pseudonym = l.source_patient_pseudonym
        WHERE l.patient_id <> l.harmonised_patient_id OR p.patient_id <> l.patient_id""")
    try:
        for table in person_tables:
            con.execute(f"""
                UPDATE stage.{table} t SET patient_id = m.patient_id FROM record_person m
                WHERE t.source_id = m.source_id AND t.source_record_key = m.source_record_key
                  AND t.patient_id IS DISTINCT FROM m.patient_id""")
        con.execute("""
            UPDATE stage.patient_source p SET link_method = l.link_method, match_probability = l.match_probability
            FROM stage.patient_link l
            WHERE p.source_id = l.source_id AND p.source_patient_pseudonym = l.source_patient_pseudonym
              AND (p.link_method IS DISTINCT FROM l.link_method
                   OR p.match_probability IS DISTINCT FROM l.match_probability)""")
    finally:
        drop_temp_tables(con, "record_person")


def _review_list(scored: list[dict[Any, Any]], eupid_of: Mapping[tuple[str, str], str], decisions: Decisions,
                 config: LinkageConfig, run_id: str, contested: Rivals | None = None,
                 refused: dict[tuple[tuple[str, str], tuple[str, str]], str] | None = None) -> pd.DataFrame:
    """The pairs between the thresholds (and those above it that review_when or rivals hold back, or that
    clustering `refused`: pair -> why), with the evidence per field, the rivals' sources and why clustering
    refused it; not pairs of two EUPIDs (never one person, or already one), which no reviewer needs to see.
    eupid_of: each record's EUPID, of the records that have one."""
    rows = []
    if contested is None:
        contested = rivals(scored, eupid_of, decisions, config)
    refused = refused or {}
    for r in scored:
        left, right = _pair_of(r)
        if (_linked_on_score(r, config, contested) and (left, right) not in refused) or \
                (left in eupid_of and right in eupid_of):
            continue
        evidence = {f: _evidence(r, config, f) for f in config.fields}
        if sources := contested.get((left, right)):
            evidence["rival"] = "another patient of " + " and of ".join(sorted(sources))
        if why := refused.get((left, right)):
            evidence["refused"] = why
        rows.append({"run_id": run_id, "source_id_l": left[0], "source_patient_pseudonym_l": left[1],
                     "source_id_r": right[0], "source_patient_pseudonym_r": right[1],
                     "match_weight": float(r["match_weight"]), "match_probability": float(r["match_probability"]),
                     "evidence": json.dumps(evidence), "decision": decisions.get((left, right))})
    return pd.DataFrame(rows)
