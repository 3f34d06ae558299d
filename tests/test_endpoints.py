"""The study endpoints (issue 10, part 5) equal an independent recomputation from the synthetic truth,
and hold at their edges on hand-made warehouses.

Against the truth: the shared marts warehouse (marts_fixture), copied, with every person the
generator gave an injected error (or whom linkage did not resolve one-to-one) removed from core, and
its marts rebuilt; the truth of the remaining persons, restated in pandas (endpoints_expected.py),
must then give every row of the new marts exactly.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import endpoints_expected as expected
import pandas as pd
import pytest
from marts_fixture import CORE_TABLES, KEY_TEXT, MartsWarehouse, add_marts, built_warehouse
from test_marts import _norm, assert_same

from etl.config import WAREHOUSE_SQL_DIR
from etl.load.marts import build_marts
from etl.load.populations import (
    PopulationTableError,
    default_population_file,
    read_child_population,
    write_child_population,
)
from etl.quality.validate import write_source_params
from etl.transform.pseudonym import PseudonymKey, source_pseudonym

pytestmark = pytest.mark.integration
KEY = PseudonymKey(KEY_TEXT.encode())


# -- against the truth ---------------------------------------------------------------------------------

class CleanTruth:
    """The truth of the persons without injected errors, keyed by their warehouse patient_id."""

    def __init__(self, folder: Path, patient_of: dict[tuple[str, str], str]):
        self.folder = folder
        links = self.read("links")
        links["patient_id"] = [patient_of.get((s, k)) for s, k in zip(links.source_id, links.source_patient_key)]
        errors = self.read("errors")
        errors["source_patient_key"] = errors.source_record_key.str.split("|").str[0]
        tainted = set(links.merge(errors, on=["source_id", "source_patient_key"]).true_person_id)
        ids_of_person = links.groupby("true_person_id").patient_id.agg(lambda s: set(s))
        persons_of_id = links.dropna(subset=["patient_id"]).groupby("patient_id").true_person_id.nunique()
        unresolved = {p for p, ids in ids_of_person.items() if len(ids) != 1 or None in ids}
        unresolved |= set(links[links.patient_id.isin(persons_of_id[persons_of_id > 1].index)].true_person_id)
        self.removed = tainted | unresolved
        self.links = links[~links.true_person_id.isin(self.removed)]
        self.person_of = {(s, k): p for s, k, p in zip(self.links.source_id, self.links.source_patient_key,
                                                       self.links.patient_id)}
        self.kept_patient_ids = set(self.links.patient_id)
        self.persons = len(ids_of_person)

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.folder / f"{name}.csv", dtype=str, keep_default_na=False)

    def table(self, name: str, dates: tuple[str, ...] = ()) -> pd.DataFrame:
        """A truth table of the kept persons, with `person` = their patient_id."""
        frame = self.read(name)
        frame["person"] = [self.person_of.get((s, k)) for s, k in zip(frame.source_id, frame.source_patient_key)]
        frame = frame[frame.person.notna()].copy()
        for column in dates:
            frame[column] = pd.to_datetime(frame[column].replace("", None))
        return frame


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> tuple[MartsWarehouse, CleanTruth]:
    built = built_warehouse(tmp_path_factory, synthetic_run)
    sources = built.query("SELECT source_id, source_patient_pseudonym, patient_id FROM core.patient_source")
    pseudonym_to_id = {(s, p): i for s, p, i in sources.itertuples(index=False)}
    links = pd.read_csv(built.home.root / "truth" / "links.csv", dtype=str, keep_default_na=False)
    patient_of = {(s, k): pseudonym_to_id[(s, source_pseudonym(KEY, s, k))] for s, k in
                  zip(links.source_id, links.source_patient_key) if (s, source_pseudonym(KEY, s, k)) in pseudonym_to_id}
    truth = CleanTruth(built.home.root / "truth", patient_of)
    assert len(truth.removed) < 0.5 * truth.persons, "most persons should be free of injected errors"
    folder = tmp_path_factory.mktemp("endpoints")
    warehouse = folder / "warehouse.duckdb"
    shutil.copy2(built.warehouse, warehouse)
    con = duckdb.connect(str(warehouse))
    try:
        con.register("kept", pd.DataFrame({"patient_id": sorted(truth.kept_patient_ids)}))
        for table in CORE_TABLES:
            con.execute(f"DELETE FROM core.{table} WHERE patient_id NOT IN (SELECT patient_id FROM kept)")
        con.unregister("kept")
    finally:
        con.close()
    add_marts(warehouse)
    return MartsWarehouse(built.home, warehouse), truth


def _board(truth: CleanTruth) -> pd.DataFrame:
    reviews = truth.table("tumour_board_review", ("submission_date", "recommendation_date"))
    reviews["advice_followed"] = reviews.advice_followed.map({"true": True, "false": False, "": None})
    return expected.submissions(reviews)


def _person_lines(truth: CleanTruth) -> pd.DataFrame:
    treatments = truth.table("treatment", ("start_date",))
    treatments["source_line"] = [n or k for n, k in zip(treatments.line_number, treatments.source_record_key)]
    treatments["treatment_key"] = list(zip(treatments.source_id, treatments.source_record_key))
    return expected.person_lines(treatments)


def _response_lines(truth: CleanTruth) -> pd.DataFrame:
    lines = _person_lines(truth)
    assessments = truth.table("response_assessment", ("assessment_date",))
    assessments["treatment_key"] = list(zip(assessments.source_id, assessments.treatment_source_record_key))
    assessments["order"] = 0  # the responses of one line at one date agree in the synthetic sources
    assessments["response"] = assessments.response.replace("", None)
    return expected.response_lines(lines, assessments, _board(truth))


def test_board_response_equals_the_truth(endpoints):
    built, truth = endpoints
    answered = expected.answered_lines(_person_lines(truth), _board(truth))
    wanted = expected.board_response(_board(truth), answered, _response_lines(truth))
    mart = built.query("SELECT * FROM marts.board_response")
    assert_same(mart, wanted, ["advice_group", "timepoint"], tolerance={"orr_ci_lower": 1e-9, "orr_ci_upper": 1e-9})
    cycle1 = mart.set_index(["advice_group", "timepoint"]).n_assessed
    assert cycle1["followed", "cycle1"] > 10 and cycle1["not_followed", "cycle1"] > 0


def test_treatment_lines_count_each_line_of_a_person_once_assessed_or_not(endpoints):
    built, truth = endpoints
    answered = expected.answered_lines(_person_lines(truth), _board(truth))
    wanted = pd.DataFrame({"patient_id": answered.person, "regimen": answered.drugs.map(expected.regimen),
                           "start_date": answered.start_date, "start_date_precision": answered.start_date_precision,
                           "n_sources": answered.n_sources, "advice_group": answered.advice_group,
                           "recommendation_date": answered.recommendation_date})
    assert wanted.start_date.notna().all(), "the synthetic sources give every line a start: the key below is one"
    mart = built.query("SELECT * FROM marts.treatment_line")
    assert_same(mart, wanted, ["patient_id", "regimen", "start_date"])
    assert (mart.n_sources > 1).any(), "some persons' lines come from two sources: counted once"


def test_response_lines_count_each_line_of_a_person_once(endpoints):
    built, truth = endpoints
    wanted = _response_lines(truth).rename(columns={"person": "patient_id"})
    mart = built.query("SELECT * FROM marts.response_line")
    key = ["patient_id", "regimen", "start_date", "timepoint"]
    assert_same(mart, wanted[[*key, "n_sources", "advice_group", "response", "assessment_date"]], key)
    assert (mart.n_sources > 1).any(), "some persons' lines come from two sources: counted once"
    assert not mart.duplicated(key).any()


def test_survival_from_the_recommendation_equals_the_truth(endpoints):
    built, truth = endpoints
    people = truth.read("patient")
    death = pd.to_datetime(people.death_date.replace("", None))
    person_death = dict(zip(people.true_person_id, death))
    death_dates = pd.Series({patient: person_death[person] for person, patient
                             in zip(truth.links.true_person_id, truth.links.patient_id)})
    wanted = expected.recommendation_origin(_board(truth), death_dates).rename(columns={"person": "patient_id"})
    mart = built.query("SELECT * FROM marts.survival WHERE origin = 'recommendation'")
    assert_same(mart, wanted, ["patient_id"])
    others = built.query("SELECT count(*) AS n FROM marts.survival WHERE origin <> 'recommendation' "
                         "AND advice_group IS NOT NULL")
    assert others.n[0] == 0, "advice groups only from the recommendation: no immortal time"
    km = built.query("SELECT DISTINCT origin FROM marts.survival_km WHERE grouping = 'advice_group'")
    assert list(km.origin) == ["recommendation"]


Bounds = tuple[pd.Series, dict[Any, Any], dict[Any, tuple[date | None, date | None]], dict[Any, list[date]]]


def _diagnosis_bounds(truth: CleanTruth) -> Bounds:
    """What places a diagnosis known only to its month or year (marts.survival's origin diagnosis, and the age
    marts.incidence counts): per patient, the death date, the end of follow-up, (the first day of the birth, the
    end of follow-up), and the last day each diagnosis and treatment start can be on."""
    people = truth.read("patient").set_index("true_person_id")
    patient_of = dict(zip(truth.links.true_person_id, truth.links.patient_id))
    person = {patient: true_id for true_id, patient in patient_of.items()}
    death = pd.to_datetime(people.death_date.replace("", None))
    follow_up = truth.table("follow_up", ("contact_date",))
    contacts = follow_up.groupby("person").contact_date.max()
    # Dead: a death date, or a contact saying so without one (the death then counts at the last contact).
    said_dead = set(follow_up.person[follow_up.vital_status == "dead"])
    death_dates = pd.Series({patient: death[true_id] if pd.notna(death[true_id]) or patient not in said_dead
                             else contacts.get(patient) for patient, true_id in person.items()})
    # Alive: followed to the last day known alive, the last contact or a later diagnosis, treatment or assessment.
    seen = pd.concat([truth.table("diagnosis", ("diagnosis_date",)).set_index("person").diagnosis_date,
                      truth.table("treatment", ("start_date",)).set_index("person").start_date,
                      truth.table("response_assessment", ("assessment_date",)).set_index("person").assessment_date])
    last_seen = seen.dropna().groupby(level=0).max()
    alive_to = {patient: max(day, last_seen.get(patient, day)) for patient, day in contacts.items() if pd.notna(day)}
    death_dates = pd.Series({patient: alive_to.get(patient) if patient in said_dead and pd.isna(day) else day
                             for patient, day in death_dates.items()})
    follow_up_end = {patient: (death_dates[patient] if pd.notna(death_dates[patient]) else alive_to.get(patient))
                     for patient in person}
    ends = {patient: (expected.birth_first_day(people.birth_year[true_id] or None, people.birth_month[true_id] or None),
                      follow_up_end[patient].date() if pd.notna(follow_up_end[patient]) else None)
            for patient, true_id in person.items()}
    diagnoses = truth.table("diagnosis", ("diagnosis_date",))
    treatments = truth.table("treatment", ("start_date",))
    known_on: dict[Any, list[date]] = {}  # the last day each diagnosis and treatment start can be on
    for frame, column in ((diagnoses, "diagnosis_date"), (treatments, "start_date")):
        for person, day, precision in zip(frame.person, frame[column], frame[f"{column}_precision"], strict=True):
            if pd.notna(day):
                known_on.setdefault(person, []).append(expected.period_end(day.date(), precision or "day"))
    return death_dates, follow_up_end, ends, known_on


def test_survival_from_the_diagnosis_equals_the_truth(endpoints):
    """OS from the first malignant initial diagnosis, of the persons the population-based registry (registry_it, as
    marts.incidence) registered, from the truth's diagnoses (some known only to the month or year), births, deaths
    and contacts: the origin as placed, the event and the time."""
    built, truth = endpoints
    death_dates, follow_up_end, ends, known_on = _diagnosis_bounds(truth)
    diagnoses = truth.table("diagnosis", ("diagnosis_date",))
    registered = set(diagnoses.person[(diagnoses.source_id == "registry_it") & (diagnoses.event_type == "initial")])
    origins = expected.diagnosis_origin(diagnoses, registered, death_dates, ends, known_on)
    dead = origins.person.map(death_dates)
    ended = pd.to_datetime(origins.person.map(follow_up_end))
    wanted = origins.rename(columns={"person": "patient_id"}).assign(
        os_event=dead.notna().to_numpy(), os_end_date=ended.to_numpy(),
        os_days=(ended - origins.origin_date).dt.days.to_numpy())
    mart = built.query("SELECT * FROM marts.survival WHERE origin = 'diagnosis'")
    assert_same(mart, wanted, ["patient_id"])
    assert mart.os_event.any() and (mart.origin_date_precision != "day").any() and mart.iccc3_group.nunique() > 1


def test_trial_enrolment_reasons_equal_the_truth(endpoints):
    built, truth = endpoints
    contacts = truth.table("follow_up", ("contact_date",))
    enrolment = truth.table("study_enrolment", ("enrolment_date",))
    first = enrolment.groupby(["source_id", "person"]).enrolment_date.min().rename("enrolment_date").reset_index()
    contacts = contacts.merge(first, on=["source_id", "person"], how="left")
    wanted = expected.trial_enrolment_reasons(contacts)
    mart = built.query("SELECT * FROM marts.trial_enrolment_reasons")
    assert_same(mart, wanted, ["follow_up_month", "trial_enrolment_status", "trial_enrolment_reason"])
    assert {3, 6, 9, 12} <= set(mart.follow_up_month) and "not_given" in set(mart.trial_enrolment_reason)


def test_incidence_equals_the_truth_and_the_shipped_population_table(endpoints):
    built, truth = endpoints
    diagnosis = truth.table("diagnosis", ("diagnosis_date",))
    diagnosis = diagnosis[(diagnosis.source_id == "registry_it") & (diagnosis.event_type == "initial")]
    core = built.query("SELECT source_id, patient_id, diagnosis_date, iccc3_group, iccc3_subgroup, is_very_rare "
                       "FROM core.diagnosis")  # ICCC-3 is derived, not in the truth: joined by person and date
    core["diagnosis_date"] = pd.to_datetime(core.diagnosis_date)
    cases = diagnosis.merge(core.rename(columns={"patient_id": "person"}),
                            on=["source_id", "person", "diagnosis_date"])
    countries = truth.table("patient_source")[["source_id", "person", "country"]]
    cases = cases.merge(countries, on=["source_id", "person"])
    shipped = pd.read_csv(default_population_file())
    latest = built.query("SELECT max(year(exported_on)) AS y FROM meta.source_file "
                         "WHERE source_id = 'registry_it' AND status = 'loaded'").y[0]
    _, _, ends, known_on = _diagnosis_bounds(truth)  # a diagnosis known to its month or year aged where it is placed
    wanted = expected.incidence(cases, shipped, {"IT": int(latest) - 1}, ends, known_on)
    mart = built.query("SELECT * FROM marts.incidence")
    assert_same(mart, wanted, ["country", "level", "iccc3_group", "iccc3_subgroup"],
                tolerance={"incidence_per_million": 1e-9})
    assert set(mart.country) == {"IT"} and (mart.age_band == "0-17").all()


# -- at the edges, on hand-made warehouses ----------------------------------------------------------------

Insert = Callable[..., None]


def _empty_warehouse() -> tuple[duckdb.DuckDBPyConnection, Insert]:
    con = duckdb.connect()
    for ddl in ("core.sql", "meta.sql"):
        con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
    counter = iter(range(10_000))

    def insert(table: str, source_id: str = "src", **values: Any) -> None:
        row = {"source_id": source_id, "source_file_sha256": "0" * 64, "run_id": "r1",
               "source_record_key": f"{table}-{next(counter)}", **values}
        con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))
    return con, insert


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return [{k: _norm(v) for k, v in r.items()} for r in con.execute(sql).df().to_dict("records")]


def _board_patient(insert: Insert, patient_id: str, followed: bool | None, *, rank2_followed: bool = False,
                   recommended: str = "2022-03-01", vital_status: str = "alive", death_date: str | None = None) -> None:
    insert("patient", patient_id=patient_id, vital_status=vital_status, death_date=death_date,
           last_contact_date="2023-01-01", n_sources=1)
    insert("study_enrolment", source_id="iltb", enrolment_id=f"e-{patient_id}", patient_id=patient_id,
           study_id="ILTB", enrolment_date="2022-02-01")
    for rank, agents, is_followed in ((1, "drug a", followed), (2, "drug b", rank2_followed if followed is not None
                                                                 else None)):
        insert("tumour_board_review", source_id="iltb", review_id=f"r-{patient_id}-{rank}", patient_id=patient_id,
               board="ILTB", submission_date="2022-02-20", recommendation_date=recommended, priority_rank=rank,
               recommendation_type="off_label", recommended_agents=agents, advice_followed=is_followed)


def test_a_line_reported_by_two_sources_counts_once_and_the_control_is_the_boards_own():
    con, insert = _empty_warehouse()
    # P1 followed the priority-1 advice; SACHA and the board registry both report the line and its response.
    _board_patient(insert, "P1", True)
    for source, key in (("iltb", "t1"), ("sacha_fr", "t2")):
        insert("treatment", source_id=source, treatment_id=key, patient_id="P1", line_number=1, drug_name="drug a",
               start_date="2022-03-10")
        insert("response_assessment", source_id=source, response_id=f"x-{key}", patient_id="P1", treatment_id=key,
               timepoint="cycle1", response="CR", assessment_date="2022-04-10")
    # P2: no advice followed (control), treated with drug c; P3: the rank-2 option followed (in neither group).
    _board_patient(insert, "P2", False)
    insert("treatment", source_id="iltb", treatment_id="t3", patient_id="P2", line_number=1, drug_name="drug c",
           start_date="2022-03-20")
    insert("response_assessment", source_id="iltb", response_id="x3", patient_id="P2", treatment_id="t3",
           timepoint="cycle1", response="PD", assessment_date="2022-04-20")
    _board_patient(insert, "P3", False, rank2_followed=True)
    insert("treatment", source_id="iltb", treatment_id="t4", patient_id="P3", line_number=1, drug_name="drug b",
           start_date="2022-03-20")
    insert("response_assessment", source_id="iltb", response_id="x4", patient_id="P3", treatment_id="t4",
           timepoint="cycle1", response="CR", assessment_date="2022-04-20")
    # P4: another study's patient, never seen by the board: not a control.
    insert("patient", patient_id="P4", vital_status="alive", last_contact_date="2023-01-01", n_sources=1)
    insert("treatment", source_id="sacha_fr", treatment_id="t5", patient_id="P4", line_number=1, drug_name="drug c",
           start_date="2022-03-20")
    insert("response_assessment", source_id="sacha_fr", response_id="x5", patient_id="P4", treatment_id="t5",
           timepoint="cycle1", response="PR", assessment_date="2022-04-20")
    build_marts(con)
    lines = _rows(con, "SELECT patient_id, n_sources, advice_group FROM marts.response_line ORDER BY patient_id")
    assert [(r["patient_id"], r["n_sources"], r["advice_group"]) for r in lines] == [
        ("P1", 2, "followed"), ("P2", 1, "not_followed"), ("P3", 1, "not_compared"), ("P4", 1, "not_compared")]
    cycle1 = {r["advice_group"]: r for r in _rows(con, "SELECT * FROM marts.board_response WHERE timepoint = 'cycle1'")}
    assert (cycle1["followed"]["n_assessed"], cycle1["followed"]["orr"]) == (1, 1.0)
    assert (cycle1["not_followed"]["n_submissions"], cycle1["not_followed"]["n_assessed"],
            cycle1["not_followed"]["orr"]) == (1, 1, 0.0)
    groups = dict(con.execute("SELECT DISTINCT patient_id, advice_group FROM marts.board_advice").fetchall())
    assert groups == {"P1": "followed", "P2": "not_followed", "P3": "lower_priority_followed"}


def test_survival_starts_at_the_recommendation_and_leaves_out_who_died_before_it():
    con, insert = _empty_warehouse()
    _board_patient(insert, "P1", True)
    # P2 died (2022-02-25) before the recommendation (2022-03-01) reached the centre's records.
    _board_patient(insert, "P2", False, vital_status="dead", death_date="2022-02-25")
    build_marts(con)
    rows = _rows(con, "SELECT patient_id, origin, origin_date, advice_group, os_days FROM marts.survival "
                      "ORDER BY patient_id, origin")
    assert [(r["patient_id"], r["origin"], r["advice_group"]) for r in rows] == [
        ("P1", "enrolment", None), ("P1", "recommendation", "followed"), ("P2", "enrolment", None)]
    recommended = next(r for r in rows if r["origin"] == "recommendation")
    assert (recommended["origin_date"], recommended["os_days"]) == (date(2022, 3, 1), 306)
    # Landmarks from the recommendation: at 1 year (P1 followed for 306 days) nobody is at risk any more.
    by_advice = "origin = 'recommendation' AND endpoint = 'OS' AND grouping = 'advice_group'"
    landmarks = {r["years"]: r for r in _rows(con, f"SELECT * FROM marts.survival_landmark WHERE {by_advice}")}
    assert set(landmarks) == {1, 2, 3, 5} and landmarks[1]["group_value"] == "followed"
    assert (landmarks[1]["n_patients"], landmarks[1]["n_at_risk"], landmarks[1]["survival"]) == (1, 0, None)
    steps = _rows(con, f"SELECT time_days, n_at_risk, survival FROM marts.survival_km WHERE {by_advice} "
                       "ORDER BY time_days")
    assert [(s["time_days"], s["n_at_risk"], s["survival"]) for s in steps] == [(0.0, 1, 1.0), (306.0, 1, 1.0)]


def test_trial_enrolment_visits_round_to_the_nearest_quarter():
    con, insert = _empty_warehouse()
    insert("patient", patient_id="P1", vital_status="alive", last_contact_date="2023-01-01", n_sources=1)
    insert("study_enrolment", source_id="iltb", enrolment_id="e1", patient_id="P1", study_id="ILTB",
           enrolment_date="2022-01-01")
    for day, status, reason in (("2022-01-20", "not_enrolled", "no_trial_available"),  # 19 days: visit 3
                                ("2022-05-20", "not_enrolled", None),  # 139 days = 4.6 months: visit 6
                                ("2022-06-25", "enrolled", "target_matched_trial"),  # 175 days: visit 6
                                ("2022-09-01", None, None)):  # not asked: not counted
        insert("follow_up", source_id="iltb", follow_up_id=f"f-{day}", patient_id="P1", contact_date=day,
               vital_status="alive", trial_enrolment_status=status, trial_enrolment_reason=reason)
    build_marts(con)
    rows = con.execute("SELECT follow_up_month, trial_enrolment_status, trial_enrolment_reason, n_contacts "
                       "FROM marts.trial_enrolment_reasons").fetchall()
    assert rows == [(3, "not_enrolled", "no_trial_available", 1), (6, "enrolled", "target_matched_trial", 1),
                    (6, "not_enrolled", "not_given", 1)]


def _incidence_warehouse(tmp_path: Path, population: int, n_cases: int) -> duckdb.DuckDBPyConnection:
    """A population-based registry with n_cases of XI(b) in 2020-2021 and a population table of two years."""
    con, insert = _empty_warehouse()
    write_source_params(con, {"registry": {"population_based": True}, "trial": {"max_age_years": 18}})
    table = tmp_path / "child_population.csv"
    table.write_text("country,year,age_band,population,source\n"
                     f"IT,2020,0-17,{population},test figure\nIT,2021,0-17,{population},approximation: test\n")
    write_child_population(con, read_child_population(table))
    con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, exported_on) VALUES "
                "('registry', 'r.csv', 'x', 'loaded', DATE '2022-06-01')")
    for n in range(n_cases):
        insert("patient", patient_id=f"P{n}", country="IT", n_sources=1)
        insert("diagnosis", source_id="registry", diagnosis_id=f"d{n}", patient_id=f"P{n}", event_type="initial",
               diagnosis_date=f"{2020 + n % 2}-05-01", age_at_diagnosis_days=3000, iccc3_group="XI",
               iccc3_subgroup="XI(b)", is_very_rare=True)
    # Not counted: an adult (age 18 is outside 0-17), a case of a year without a population, a trial's patient.
    insert("patient", patient_id="A", country="IT", n_sources=1)
    insert("diagnosis", source_id="registry", diagnosis_id="da", patient_id="A", event_type="initial",
           diagnosis_date="2020-05-01", age_at_diagnosis_days=6600, iccc3_group="XI", iccc3_subgroup="XI(b)")
    insert("diagnosis", source_id="registry", diagnosis_id="db", patient_id="A", event_type="initial",
           diagnosis_date="2019-05-01", age_at_diagnosis_days=3000, iccc3_group="XI", iccc3_subgroup="XI(b)")
    insert("diagnosis", source_id="trial", diagnosis_id="dc", patient_id="A", event_type="initial",
           diagnosis_date="2020-05-01", age_at_diagnosis_days=3000, iccc3_group="XI", iccc3_subgroup="XI(b)")
    build_marts(con)
    return con


def test_incidence_with_a_tiny_population_and_the_very_rare_flag_at_exactly_two_per_million(tmp_path):
    # 4 cases over 2 years of 1,000,000 children: exactly 2 per million per year, not very rare.
    con = _incidence_warehouse(tmp_path, 1_000_000, 4)
    row = _rows(con, "SELECT * FROM marts.incidence WHERE level = 'subgroup'")[0]
    assert (row["first_year"], row["last_year"], row["n_years"], row["n_years_approximate"]) == (2019, 2021, 2, 1)
    assert (row["n_cases"], row["person_years"], row["incidence_per_million"]) == (4, 2_000_000, 2.0)
    assert row["is_very_rare_by_incidence"] is False and row["is_very_rare_listed"] is True
    fewer = _rows(_incidence_warehouse(tmp_path, 1_000_000, 3),
                  "SELECT * FROM marts.incidence WHERE level = 'subgroup'")
    assert (fewer[0]["incidence_per_million"], fewer[0]["is_very_rare_by_incidence"]) == (1.5, True)


def test_a_population_table_with_a_mistake_is_refused_with_its_line(tmp_path):
    table = tmp_path / "child_population.csv"
    table.write_text("country,year,age_band,population,source\nIT,2020,0-17,1000,x\nIT,2021,0-14,9.5,x\n")
    with pytest.raises(PopulationTableError, match=r"line 3: population '9\.5'"):
        read_child_population(table)
    shipped = read_child_population(default_population_file())
    assert set(shipped.age_band) == {"0-17"} and shipped.source.str.len().gt(0).all()
