"""The study endpoints restated in pandas, independently of their SQL (warehouse/marts/2*, 4*, 5*, 6*, 7*).

Each function takes plain frames with the columns it names, whatever they were read from (the
generator's truth in test_endpoints, core tables in test_marts), so the same definition is checked
against both. `person` is whoever a row belongs to: a true person id, or a patient_id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd
from scipy.stats import binomtest

TARGETED = {"trial", "off_label", "compassionate"}
OBJECTIVE = {"CR", "CRi", "PR", "MLFS"}


def _is_true(value: Any) -> bool:
    return value is True or value == "true" or (isinstance(value, bool) and value)


def _is_known(value: Any) -> bool:
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)) or value is pd.NA)


def submissions(reviews: pd.DataFrame) -> pd.DataFrame:
    """One row per board submission: person, recommendation_date, advice_group, agents (of its priority-1 advice).

    reviews: person, board, submission_date, recommendation_date, priority_rank, recommendation_type,
    recommended_agents ('a|b'), advice_followed (True / False / unknown)."""
    rows = []
    keys = ["person", "board", "submission_date", "recommendation_date"]
    for key, group in reviews.groupby(keys, dropna=False):
        first = group[group.priority_rank.astype(int) == 1]
        followed = [_is_true(v) for v in group.advice_followed]
        if first.empty:  # the priority-1 advice is not known (its review held back)
            advice = "not_known"
        elif not first.recommendation_type.isin(TARGETED).any():
            advice = "no_targeted_advice"
        elif any(_is_true(v) for v in first.advice_followed):
            advice = "followed"
        elif any(followed):
            advice = "lower_priority_followed"
        elif all(_is_known(v) or t == "none" for v, t in zip(group.advice_followed, group.recommendation_type)):
            advice = "not_followed"
        else:
            advice = "not_known"
        agents = {a for text in first.recommended_agents if isinstance(text, str) and text for a in text.split("|")}
        rows.append({**dict(zip(keys, key)), "advice_group": advice, "agents": agents})
    return pd.DataFrame(rows, columns=[*keys, "advice_group", "agents"])


def person_lines(treatments: pd.DataFrame) -> pd.DataFrame:
    """One row per line of a person, whichever sources report it: person, drugs (sorted tuple),
    start_date, start_date_precision, n_sources, treatment_keys (the source records of its treatments).

    treatments: person, source_id, source_line (the source's line number, or the record for none),
    drug_name (empty or missing when the source names none), start_date, start_date_precision (day when absent),
    treatment_key."""
    treatments = treatments.copy()
    treatments["precision"] = (treatments.start_date_precision.replace("", None).fillna("day")
                               if "start_date_precision" in treatments else "day")
    treatments["rank"] = treatments.precision.map(PRECISION_RANK)
    earliest = (treatments.dropna(subset=["start_date"]).sort_values(["start_date", "rank"], kind="stable")
                .groupby(["person", "source_id", "source_line"]).precision.first())
    per_source = (treatments.groupby(["person", "source_id", "source_line"])
                  .agg(drugs=("drug_name", lambda s: tuple(sorted(set(s.dropna()) - {""}))),
                       start_date=("start_date", "min"), treatment_keys=("treatment_key", set)).reset_index())
    per_source["precision"] = [earliest.get(key) for key
                               in zip(per_source.person, per_source.source_id, per_source.source_line)]
    per_source["drugs"] = _named(per_source)
    per_source[["start_date", "precision", "start_nth"]] = _dated_within(per_source)
    per_source["rank"] = per_source.precision.map(PRECISION_RANK)
    # a start left to the month or year is not the line of its first day ("March 2022" is not 1 March), and a source's
    # second line "March 2022" is a second start
    per_source["match"] = [(f"{start}|{precision}" + (f"|{nth}" if nth > 1 else "") if rank else str(start))
                           if pd.notna(start) else f"{source}|{line}"
                           for start, precision, nth, rank, source, line
                           in zip(per_source.start_date, per_source.precision, per_source.start_nth,
                                  per_source["rank"], per_source.source_id, per_source.source_line)]
    return (per_source.sort_values("rank", kind="stable").groupby(["person", "drugs", "match"])
            .agg(start_date=("start_date", "first"), start_date_precision=("precision", "first"),
                 n_sources=("source_id", "nunique"),
                 treatment_keys=("treatment_keys", lambda s: set().union(*s))).reset_index())


def came_first(start: Any, precision: str) -> tuple[date, int, date]:
    """The order in which dates given to the day, month or year must have come (came_first of mart_functions.sql):
    the earliest last day they can be on, of equal ones the most precise, then the earliest first day."""
    day = pd.Timestamp(start).date()
    return period_end(day, precision), PRECISION_RANK[precision], day


def _line_order(line: Any) -> tuple[int, Any]:
    """A source's lines in its order: by line number, then a line without one."""
    return (0, int(line)) if str(line).isdigit() else (1, str(line))


def _named(lines: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each source's line's drugs, a line naming none taking those of the person's line naming them on the same start
    given alike (the first by drugs), else of another source's line given within its period or to a wider period
    holding it that lends down (_lends_down), the one that came first."""
    rows = list(lines[["source_id", "person", "drugs", "start_date", "precision"]].itertuples(index=False, name=None))
    named_of: dict[Any, list[tuple[Any, ...]]] = {}  # per person, the lines that name their drugs and give a start
    unnamed_of: dict[Any, list[tuple[Any, ...]]] = {}  # and those naming none, as the sources give them
    for row in rows:
        if pd.notna(row[3]):
            (named_of if row[2] else unnamed_of).setdefault(row[1], []).append(row)
    drugs_of = []
    for source, person, drugs, start, precision in rows:
        candidates = []
        if not drugs and pd.notna(start):
            first, last = pd.Timestamp(start).date(), period_end(pd.Timestamp(start).date(), precision)
            for s, _, d, day, given in named_of.get(person, []):
                other = pd.Timestamp(day).date()
                if other == first and given == precision:  # "March 2022" is not its source's line of 1 March
                    candidates.append((0, (), d))
                elif s != source and ((first <= other and period_end(other, given) <= last)  # within its period
                                      or (PRECISION_RANK[given] > PRECISION_RANK[precision]  # a wider one holding it
                                          and other <= first <= period_end(other, given)
                                          and _lends_down((s, d, other, given), named_of[person],
                                                          unnamed_of[person]))):
                    candidates.append((1, came_first(day, given), d))
        drugs_of.append(min(candidates)[2] if candidates else drugs)
    return drugs_of


def _lends_down(line: tuple[Any, ...], named: list[tuple[Any, ...]], unnamed: list[tuple[Any, ...]]) -> bool:
    """Whether a line naming its drugs (source, drugs, first day, precision) lends them to a line given within its
    period: no line of another source naming them is dated more precisely within it (crizotinib "March 2022" beside
    crizotinib on 3 March may be that line), and one start alone naming none is (beside 14 and 20 March naming none,
    it may be either). named, unnamed: the person's lines naming their drugs, and naming none."""
    source, drugs, first, given = line

    def finer_within(s: Any, day: Any, p: str) -> bool:
        return (s != source and PRECISION_RANK[p] < PRECISION_RANK[given]
                and first <= pd.Timestamp(day).date() <= period_end(first, given))

    # 14 March naming no drug from two sources is one line: starts are counted, not the sources giving them
    return (not any(d == drugs and finer_within(s, day, p) for s, _, d, day, p in named)
            and len({(pd.Timestamp(day).date(), p) for s, _, _, day, p in unnamed if finer_within(s, day, p)}) == 1)


def _dated_within(lines: pd.DataFrame) -> pd.DataFrame:
    """Each source's line's start and its precision, a line started only in a month or year taking those of a line
    of the same person and drugs another source dates more precisely within that period: a source's k-th such line
    (by line number) the k-th of those starts (by came_first), but for a start a line of its own source gives. The
    lines given to the month are matched first (to the starts given to the day), then those given to the year (to
    the starts given to the day or month, as matched): "2022", "March 2022" and 14 March 2022 are one start. A start
    left to its month or year is the source's nth so given (its nth line of those drugs and that period), with
    start_nth: a source's two lines "March 2022" are two starts."""
    rows = list(lines[["source_id", "person", "source_line", "drugs", "start_date", "precision"]]
                .itertuples(index=False, name=None))
    nth: dict[int, int] = {}
    same_start: dict[tuple[Any, ...], list[int]] = {}
    for i, (source, person, _, drugs, start, precision) in enumerate(rows):
        if pd.notna(start) and PRECISION_RANK[precision]:
            same_start.setdefault((source, person, drugs, start, precision), []).append(i)
    for alike in same_start.values():
        nth.update({i: k for k, i in enumerate(sorted(alike, key=lambda i: _line_order(rows[i][2])), start=1)})
    starts = [(row[4], row[5], nth.get(i, 1)) for i, row in enumerate(rows)]
    for level in ("month", "year"):
        periods: dict[tuple[Any, ...], list[int]] = {}
        # per person and drugs, the starts more precise than the level, each with the sources that give it
        given_by: dict[tuple[Any, ...], dict[tuple[Any, str, int], set[Any]]] = {}
        for i, (source, person, _, drugs, _, _) in enumerate(rows):
            start, precision, start_nth = starts[i]
            if pd.isna(start):
                continue
            if precision == level:
                periods.setdefault((source, person, drugs, pd.Timestamp(start).date()), []).append(i)
            elif PRECISION_RANK[precision] < PRECISION_RANK[level]:
                given_by.setdefault((person, drugs), {}).setdefault((start, precision, start_nth), set()).add(source)
        for (source, person, drugs, first), partial in periods.items():
            last = period_end(first, level)
            dated = sorted((start for start, sources in given_by.get((person, drugs), {}).items()
                            if first <= pd.Timestamp(start[0]).date() <= last and source not in sources),
                           key=lambda start: (came_first(start[0], start[1]), start[2]))
            for i, start in zip(sorted(partial, key=lambda i: _line_order(rows[i][2])), dated):
                starts[i] = start
    return pd.DataFrame(starts, index=lines.index, columns=["start_date", "precision", "start_nth"])


def regimen(drugs: tuple[str, ...]) -> str:
    """A line's drugs as the marts write them: joined by ' + ', unknown when no treatment names one."""
    return " + ".join(drugs) or "unknown"


def answered_lines(lines: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """marts.treatment_line: person_lines() with line (a number), advice_group and recommendation_date: the
    comparable submission each line answers (its first line after the recommendation, with an advised drug
    when followed; the earlier submission's when two), not_compared for every other line. Assessed or not.
    board: submissions()."""
    lines = lines.reset_index(drop=True).copy()
    lines["line"] = lines.index
    group_of: dict[int, tuple[Any, str]] = {}
    comparable = board[board.advice_group.isin(["followed", "not_followed"]) & board.recommendation_date.notna()]
    for submission in comparable.sort_values("recommendation_date").itertuples(index=False):
        # not surely before the recommendation: a line "in March 2022" answers one of 15 March 2022
        mine = lines[(lines.person == submission.person) & lines.start_date.notna()]
        recommended = pd.Timestamp(submission.recommendation_date).date()
        mine = mine[pd.Series([period_end(pd.Timestamp(start).date(), given) >= recommended
                               for start, given in zip(mine.start_date, mine.start_date_precision)], index=mine.index,
                              dtype=bool)]
        if submission.advice_group == "followed":
            mine = mine[[bool(set(d) & submission.agents) for d in mine.drugs]]
        if len(mine):
            first = min(mine.itertuples(), key=lambda line: (came_first(line.start_date, line.start_date_precision),
                                                             line.drugs))
            group_of.setdefault(int(first.line), (submission.recommendation_date, submission.advice_group))
    lines["advice_group"] = [group_of.get(line, (None, "not_compared"))[1] for line in lines.line]
    lines["recommendation_date"] = [group_of.get(line, (None, ""))[0] for line in lines.line]
    return lines


RESPONSES_BEST_FIRST = ("CR", "CRi", "MLFS", "PR", "SD", "NR", "PD")


def _best_first(response: object) -> int:
    """A response's place in the best overall response order; NE and a missing one come last."""
    return RESPONSES_BEST_FIRST.index(response) if response in RESPONSES_BEST_FIRST else len(RESPONSES_BEST_FIRST)


def response_lines(lines: pd.DataFrame, assessments: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """marts.response_line: person, regimen, start_date, n_sources, advice_group, timepoint, assessment_date,
    response; and start_date_precision (marts.treatment_line's), which tells "1 November 2025" from "November 2025".
    assessments: treatment_key, timepoint, assessment_date, response, order (ties);
    board: submissions()."""
    lines = answered_lines(lines, board)
    key_line = {key: line for line, keys in zip(lines.line, lines.treatment_keys) for key in keys}
    columns = ["treatment_key", "timepoint", "assessment_date", "response", "order"]
    assessed = assessments.loc[assessments.timepoint.isin(["cycle1", "best"])
                               & assessments.treatment_key.isin(key_line), columns].copy()
    assessed["line"] = assessed.treatment_key.map(key_line)
    # An assessment dated before its line started is no response to it.
    started = assessed.line.map(dict(zip(lines.line, lines.start_date)))
    assessed = assessed[~(pd.to_datetime(assessed.assessment_date) < pd.to_datetime(started)).to_numpy()]
    # The best overall response is the best one given (NE or missing last), the cycle-1 one the earliest
    # evaluable (NE or missing only when no other is given).
    last = len(RESPONSES_BEST_FIRST)
    assessed["rank"] = [_best_first(response) if timepoint == "best" else int(_best_first(response) == last)
                        for timepoint, response in zip(assessed.timepoint, assessed.response)]
    assessed = (assessed.sort_values(["rank", "assessment_date", "order"], na_position="last")
                .drop_duplicates(["line", "timepoint"]))
    merged = assessed.merge(lines, on="line")
    merged["regimen"] = merged.drugs.map(regimen)
    return merged[["person", "regimen", "start_date", "start_date_precision", "n_sources", "advice_group", "timepoint",
                   "assessment_date", "response"]]


def wilson(responders: int, n: int) -> tuple[float | None, float | None]:
    if not n:
        return None, None
    interval = binomtest(responders, n).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def board_response(board: pd.DataFrame, answered: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """marts.board_response from submissions(), answered_lines() and response_lines(): a submission's line
    counts as treated whether or not it was assessed."""
    rows = []
    for group in ("followed", "not_followed"):
        mine = board[(board.advice_group == group) & board.recommendation_date.notna()]
        n_treated = int((answered.advice_group == group).sum())
        answered_assessed = lines[lines.advice_group == group]
        for timepoint in ("best", "cycle1"):
            assessed = answered_assessed[answered_assessed.timepoint == timepoint]
            n, responders = len(assessed), int(assessed.response.isin(OBJECTIVE).sum())
            low, high = wilson(responders, n)
            rows.append({"advice_group": group, "timepoint": timepoint, "n_submissions": len(mine),
                         "n_treated": n_treated, "n_assessed": n, "n_objective_response": responders,
                         "orr": responders / n if n else None, "orr_ci_lower": low, "orr_ci_upper": high})
    return pd.DataFrame(rows)


def period_end(first_day: date, precision: str | None) -> date:
    """The last day a date given to the day, month or year (stored as its period's first day) can be."""
    if precision == "year":
        return date(first_day.year, 12, 31)
    if precision == "month":
        following = date(first_day.year + first_day.month // 12, first_day.month % 12 + 1, 1)
        return following - timedelta(days=1)
    return first_day


def placed_date(first_day: date, precision: str | None, not_before: date | None = None,
                not_after: date | None = None) -> date:
    """A date known only to its month or year placed in the middle of the days it can be on (as registries
    impute an incidence date, and core.patient a death): not before `not_before` (the first day the birth can
    be on) when that lies in the period, not after `not_after` (the end of follow-up) unless that comes before
    the period (a date error, left to show)."""
    last = period_end(first_day, precision)
    if not_after is not None:
        last = max(first_day, min(last, not_after))
    first = not_before if not_before is not None and first_day < not_before <= last else first_day
    return first + timedelta(days=(last - first).days // 2)


def birth_first_day(birth_year: Any, birth_month: Any) -> date | None:
    """The first day a birth known to its year (and month) can be on."""
    if birth_year is None or pd.isna(birth_year):
        return None
    return date(int(birth_year), 1 if birth_month is None or pd.isna(birth_month) else int(birth_month), 1)


PRECISION_RANK = {"day": 0, "month": 1, "year": 2}


def first_given(dates: pd.DataFrame) -> pd.DataFrame:
    """Per person, the date that must have come first (the earliest last day it can be; of equal ones the most
    precise, then the earliest first day, then by `tie`), as core.patient chooses among deaths and
    marts.survival among origins. dates: person, first_day, precision, tie."""
    dates = dates.assign(precision=dates.precision.fillna("day"))
    dates["last_day"] = [period_end(pd.Timestamp(d).date(), p) for d, p in zip(dates.first_day, dates.precision)]
    dates["rank"] = dates.precision.map(PRECISION_RANK)
    ordered = dates.sort_values(["person", "last_day", "rank", "first_day", "tie"], kind="stable")
    return ordered.drop_duplicates("person").drop(columns=["last_day", "rank"]).reset_index(drop=True)


def origin_bound(day: date, end: date | None, events: Sequence[date], known_on: Sequence[date] = ()) -> date | None:
    """What an origin whose period starts on `day` cannot be placed after (marts.survival's origin_bound): the end
    of follow-up, a relapse or progression dated after `day` (the event then follows it, and counts), and for the
    diagnosis a day a diagnosis or treatment start is known by, on or after `day`."""
    bounds = [e for e in events if e > day] + [d for d in known_on if d >= day] + ([end] if end is not None else [])
    return min(bounds) if bounds else None


def export_now(files: pd.DataFrame) -> dict[tuple[str, str], date | None]:
    """Per export file (source_id, source_file_sha256), the day of the export its records are in now (export_now() of
    warehouse/export_now.sql): its own while it is loaded, else the latest loaded file's of its series (none
    without a series). files: the rows of meta.source_file."""
    loaded = files[files.status == "loaded"]
    latest = loaded.groupby(["source_id", "series"]).exported_on.max()  # a NULL series is of no group
    days = {}
    for source_id, sha, series, status, day in zip(files.source_id, files.source_file_sha256, files.series,
                                                   files.status, files.exported_on, strict=True):
        now = day if status == "loaded" else latest.get((source_id, series), pd.NaT)
        days[source_id, sha] = pd.Timestamp(now).date() if pd.notna(now) else None
    return days


def event_last_day(first_day: date, precision: str | None, death: date | None, exported_on: date | None = None) -> date:
    """The last day a relapse or progression can be on (marts.survival's efs_candidate): its period's, not after
    the death nor the export its record is in now (export_now), unless that comes before its first day (a date
    error)."""
    bounds = [d for d in (death, exported_on) if d is not None]
    last = period_end(first_day, precision)
    return max(first_day, min(last, *bounds)) if bounds else last


def first_efs_event(events: Sequence[tuple[date, str, str, int, date]]) -> tuple[str, date] | None:
    """marts.survival's first EFS event and its date, of the events after the origin (and the death, whenever it
    was: day precision, rank 2, its day as its last), each (first day, precision, type, rank, last day as
    event_last_day gives it): the one whose period starts first (then the earliest last day, the rank), placed in
    the middle of the days from its first day to the earliest last day any of them can be on."""
    if not events:
        return None
    first_day, precision, event_type, _, _ = min(events, key=lambda e: (e[0], e[4], e[3]))
    return event_type, placed_date(first_day, precision, None, min(e[4] for e in events))


def recommendation_origin(board: pd.DataFrame, death_dates: pd.Series,
                          ends: dict[Any, tuple[date | None, date | None]] | None = None,
                          events: dict[Any, list[date]] | None = None) -> pd.DataFrame:
    """marts.survival, origin recommendation: person, origin_date, origin_date_precision, advice_group; a
    person who died before the first day the recommendation can be on is left out. death_dates: person ->
    death date (NaT when alive or unknown). board: submissions(), with recommendation_date_precision when
    known (else day). ends: person -> (first day of the birth, end of follow-up) that bound a recommendation
    known only to its month or year (placed_date), as do `events`: person -> the days of their relapses and
    progressions as given (origin_bound)."""
    comparable = board[board.advice_group.isin(["followed", "not_followed"]) & board.recommendation_date.notna()]
    precision = (comparable.recommendation_date_precision if "recommendation_date_precision" in comparable
                 else pd.Series("day", index=comparable.index))
    first = first_given(pd.DataFrame({"person": comparable.person, "first_day": comparable.recommendation_date,
                                      "precision": precision, "tie": comparable.advice_group}))
    died = first.person.map(death_dates)
    kept = first[~(died.notna() & (died < first.first_day))]
    ends, events = ends or {}, events or {}
    placed = []
    for person, first_day, precision in zip(kept.person, kept.first_day, kept.precision):
        day = pd.Timestamp(first_day).date()
        born, end = ends.get(person, (None, None))
        placed.append(placed_date(day, precision, born, origin_bound(day, end, events.get(person, []))))
    return pd.DataFrame({"person": kept.person, "origin_date": pd.to_datetime(pd.Series(placed, dtype=object)).values,
                         "origin_date_precision": kept.precision,
                         "advice_group": kept.tie}).reset_index(drop=True)


MALIGNANT = {"3"}  # the malignant ICD-O-3 behaviour the warehouse holds (harmonise refuses /6 and /9)
DEATH_CERTIFICATE_ONLY = "0"  # ENCR basis of diagnosis


def diagnosis_origin(diagnoses: pd.DataFrame, registered: set[Any], death_dates: pd.Series,
                     ends: dict[Any, tuple[date | None, date | None]] | None = None,
                     known_on: dict[Any, list[date]] | None = None,
                     events: dict[Any, list[date]] | None = None) -> pd.DataFrame:
    """marts.survival, origin diagnosis: person, origin_date, origin_date_precision. Of a person a population-based
    registry registered (`registered`), the malignant initial diagnoses (behaviour /3: /6 and /9 are never loaded)
    not known from a death certificate only; the one that must have come first (first_given), placed in its period
    (placed_date) not before the birth and not after the end of follow-up (`ends`: person -> (first day of the
    birth, end of follow-up)) nor after a date known to the day on or after its period's first day (`known_on`:
    person -> the days of their diagnoses and treatment starts known to the day), nor after a relapse or progression
    dated after it (`events`: origin_bound). A person who died before the first day the diagnosis can be on is left
    out. diagnoses: person, event_type, diagnosis_date, diagnosis_date_precision, icdo3_behaviour,
    basis_of_diagnosis; death_dates: person -> death date (NaT when alive)."""
    origins = diagnoses[(diagnoses.event_type == "initial") & diagnoses.icdo3_behaviour.isin(MALIGNANT)
                        & (diagnoses.basis_of_diagnosis != DEATH_CERTIFICATE_ONLY) & diagnoses.diagnosis_date.notna()
                        & diagnoses.person.isin(registered)]
    first = first_given(pd.DataFrame({"person": origins.person, "first_day": origins.diagnosis_date,
                                      "precision": origins.diagnosis_date_precision.replace("", None), "tie": ""}))
    died = first.person.map(death_dates)
    kept = first[~(died.notna() & (died < first.first_day))]
    ends, known_on, events = ends or {}, known_on or {}, events or {}
    placed = []
    for person, first_day, precision in zip(kept.person, kept.first_day, kept.precision):
        day = pd.Timestamp(first_day).date()
        born, end = ends.get(person, (None, None))
        # a date before the period's first day (a date error) bounds nothing; the end always does
        placed.append(placed_date(day, precision, born,
                                  origin_bound(day, end, events.get(person, []), known_on.get(person, []))))
    return pd.DataFrame({"person": kept.person, "origin_date": pd.to_datetime(pd.Series(placed, dtype=object)).values,
                         "origin_date_precision": kept.precision}).reset_index(drop=True)


def trial_enrolment_reasons(contacts: pd.DataFrame) -> pd.DataFrame:
    """marts.trial_enrolment_reasons. contacts: person, contact_date, enrolment_date (the first in the
    contact's source), trial_enrolment_status, trial_enrolment_reason."""
    answered = contacts[contacts.trial_enrolment_status.notna() & (contacts.trial_enrolment_status != "")].copy()
    days = (answered.contact_date - answered.enrolment_date).dt.days
    quarter = 365.25 / 4
    answered["follow_up_month"] = [max(3, 3 * _round_half_away(d / quarter)) if pd.notna(d) and d >= 0 else None
                                   for d in days]
    answered["trial_enrolment_reason"] = [r if isinstance(r, str) and r else "not_given"
                                          for r in answered.trial_enrolment_reason]
    keys = ["follow_up_month", "trial_enrolment_status", "trial_enrolment_reason"]
    counted = (answered.groupby(keys, dropna=False)
               .agg(n_contacts=("person", "size"), n_patients=("person", "nunique")).reset_index())
    totals = counted.groupby(["follow_up_month", "trial_enrolment_status"], dropna=False).n_contacts.transform("sum")
    counted["share_of_status"] = counted.n_contacts / totals
    return counted


def _round_half_away(value: float) -> int:
    """DuckDB's round: halves away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def _completed_years(on: date, age_days: int) -> int:
    """The age in completed years on the calendar, the birthday `age_days` before `on`."""
    born = on - timedelta(days=age_days)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def incidence(cases: pd.DataFrame, populations: pd.DataFrame, last_year: dict[str, int],
              ends: dict[Any, tuple[date | None, date | None]] | None = None,
              known_on: dict[Any, list[date]] | None = None) -> pd.DataFrame:
    """marts.incidence. cases: person, country, iccc3_group, iccc3_subgroup, diagnosis_date,
    diagnosis_date_precision, age_at_diagnosis_days, is_very_rare (initial diagnoses of the population-based
    sources); populations: country, year, age_band, population, source; last_year: country -> last year. A
    diagnosis known only to its month or year is aged on the day it is placed on, as diagnosis_origin places it
    (`ends`, `known_on`: its bounds); of a person's diagnoses of a subgroup, the one that must have come first."""
    cases = cases.copy()
    ends, known_on = ends or {}, known_on or {}
    precisions = cases.diagnosis_date_precision.replace("", None).fillna("day")
    ages = []
    for person, on, precision, days in zip(cases.person, cases.diagnosis_date, precisions,
                                           cases.age_at_diagnosis_days, strict=True):
        day = pd.Timestamp(on).date()
        born, end = ends.get(person, (None, None))
        placed = placed_date(day, precision, born, origin_bound(day, end, [], known_on.get(person, [])))
        ages.append(_completed_years(placed, int(days) + (placed - day).days))
    cases["age_years"] = ages
    cases["last_day"] = [period_end(pd.Timestamp(d).date(), p) for d, p in zip(cases.diagnosis_date, precisions)]
    cases["rank"] = precisions.map(PRECISION_RANK)
    first = (cases.sort_values(["last_day", "rank", "diagnosis_date", "age_years"], kind="stable")
             .groupby(["country", "person", "iccc3_group", "iccc3_subgroup"], dropna=False)
             .agg(diagnosis_date=("diagnosis_date", "min"), age_years=("age_years", "first"),
                  is_very_rare=("is_very_rare", "any")).reset_index())
    first["year"] = first.diagnosis_date.dt.year
    rows = []
    for country, mine in first.groupby("country"):
        first_year = int(cases[cases.country == country].diagnosis_date.dt.year.min())
        years = populations[(populations.country == country)
                            & populations.year.between(first_year, last_year[country])]
        low, high = (int(x) for x in years.age_band.iloc[0].split("-")) if len(years) else (0, -1)
        counted = mine[mine.year.isin(set(years.year)) & mine.age_years.between(low, high)]
        person_years = float(years.population.sum()) if len(years) else None
        levels = [("main_group", g, None, members) for g, members in counted.groupby("iccc3_group")]
        levels += [("subgroup", g, s, members)
                   for (g, s), members in counted.groupby(["iccc3_group", "iccc3_subgroup"])]
        for level, group, subgroup, members in levels:
            n = members.person.nunique()
            listed = members[members.is_very_rare].person.nunique()
            rate = n * 1e6 / person_years if person_years else None
            rows.append({"country": country, "level": level, "iccc3_group": group, "iccc3_subgroup": subgroup,
                         "age_band": years.age_band.iloc[0] if len(years) else None, "first_year": first_year,
                         "last_year": last_year[country], "n_years": len(years),
                         "n_years_approximate": int(years.source.str.startswith("approximation").sum()),
                         "n_cases": n, "person_years": person_years, "incidence_per_million": rate,
                         "is_very_rare_by_incidence": None if rate is None else rate < 2,
                         "n_cases_listed_very_rare": listed, "is_very_rare_listed": listed == n})
    return pd.DataFrame(rows)
