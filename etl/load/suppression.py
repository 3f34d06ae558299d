"""Small-cell suppression for published aggregates: primary and complementary.

Primary: every published count from 1 to min_cell - 1 is withheld (0 is published: it names
nobody). Complementary: a withheld count must not be recomputable from what is published. A
reader can recompute a count from a *relation*, a total and its parts:
- within a row, a total and its parts, e.g. n_assessed = n_complete + n_partial + ... (exact);
  or a part of a total whose remainder is not published but implied, e.g. n_patients_exposed and
  n_patients_grade3plus imply the patients without a grade >= 3 event, a cell of its own;
- across rows, a totals row (NULL in a dimension = all) and the rows it sums; or a row a table
  declares the total of groups (GroupTotals: survival_landmark's grouping 'all' row sums the groups
  of each other grouping). Such totals are taken as exact: a patient in no group of a grouping would
  make a remainder, but a reader who takes it for 0 must not recover a cell either. Or a count that only
  shrinks from row to row (Shrinking: survival_landmark's n_at_risk from landmark to landmark, and from
  OS to EFS), whose difference between two rows is implied: the persons who left in between.
- across tables, a table whose rows total another's (TotalsOf): board_response's n_assessed and
  n_objective_response sum response's regimens of the same advice group and timepoint, so the two
  are suppressed together (suppress_tables), their cells one problem.
The classic heuristic then makes every relation hold either no unknown cell or at least two:
when exactly one is unknown (withheld, or an implied remainder from 1 to min_cell - 1), the
smallest other part is withheld too, else the total. Two unknown parts of a total shown are not
enough when they add up to less than min_cell: the total less the parts shown gives their sum, a
small count of its own (2 cases in two withheld subgroups), so a further positive part is withheld.
Repeat until nothing changes. Then the pattern is checked as a whole, as a reader would attack it: relations
together give bounds no relation alone gives (a year's total less one subgroup's followed and another's cases
bounds a third's cases), so each group of cells not shown that relations link is a linear program, and a small
count whose least and greatest values both lie from 1 to min_cell - 1 gets the nearest cell shown withheld
beside it; the heuristic and the check run again until none is. Columns derived from counts (rates, confidence
intervals, medians) are withheld with any of their counts.

Implied counts: a column derived from counts can give away a count that is never written. A Kaplan-Meier
estimate shown with its n_patients tells how many events there were before its landmark (with no censoring,
n_patients * (1 - survival); with censoring nearly so), and with n_at_risk, how many were censored. Such a
count is declared (PublicTable.implied) and is a cell like the others, in its relations and across rows,
known where what derives from it is shown: withholding it withholds the estimate, never a written count.

Quantiles of a few values are those values: the quartiles cut the registrations they are taken over into
four bands of a quarter each, a count of its own ("2 of 9 registered within 40 days"). They are withheld
unless each band holds min_cell: over fewer than bands * min_cell values (Quantiles).

Labels: a count withheld leaves its row's label shown, so a label a centre wrote (a drug name, a
centre code, a country) is published only when it is in the column's closed list (ISO 3166 for a
country) or shared: some row shows it for at least min_cell persons. Any other reads "other".
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Cell = tuple[int, str]  # (row position, column); implied remainders use a column "~..." (never published)


@dataclass(frozen=True)
class Relation:
    """total = sum(parts) in each row; when not exact, a remainder total - sum(parts) is implied."""

    total: str
    parts: tuple[str, ...]
    exact: bool = False


@dataclass(frozen=True)
class GroupTotals:
    """Rows whose `dimension` reads `label` total, for every other value of `dimension`, the rows with
    that value that agree with them on `within` (each count adds up)."""

    dimension: str
    label: str
    within: tuple[str, ...]


@dataclass(frozen=True)
class Shrinking:
    """Rows that agree on `within`, their `dimension` in the given `order`: each row's `count` is among every
    earlier row's (the patients at risk at 3 years were at risk at 1 year; those at risk of an EFS event, at
    risk of death), and their difference, implied, a cell of its own."""

    count: str
    dimension: str
    order: tuple[Any, ...]
    within: tuple[str, ...]


@dataclass(frozen=True)
class TotalsOf:
    """Each row totals, for every count named, the rows of another public `table` that agree with it on `on`
    (board_response's n_assessed sums response's regimens of its advice group and timepoint)."""

    table: str
    on: tuple[str, ...]
    counts: tuple[str, ...]


@dataclass(frozen=True)
class Quantiles:
    """Quantile `columns` of the values a row counts in `over`, cutting them into `bands` bands (the quartiles:
    four), withheld where a band would hold fewer than min_cell values: `over` below bands * min_cell."""

    columns: tuple[str, ...]
    over: str
    bands: int


@dataclass(frozen=True)
class PublicTable:
    """How an aggregate mart is published: its counts, the relations between them, and what derives from them."""

    name: str
    dimensions: tuple[str, ...]
    counts: tuple[str, ...]
    relations: tuple[Relation, ...] = ()
    derived: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column -> the counts it reveals
    has_totals: bool = False  # rows with NULL dimensions are totals over them; every count adds up
    group_totals: tuple[GroupTotals, ...] = ()  # rows labelled as totals of other rows' groups
    totals_of: tuple[TotalsOf, ...] = ()  # other public tables whose counts these rows total
    shrinking: tuple[Shrinking, ...] = ()  # counts that only shrink from row to row (at risk from landmark to landmark)
    # Dimensions whose labels centres write -> the labels always published (the column's closed list, if any).
    written: Mapping[str, frozenset[str]] = field(default_factory=dict)
    persons: str = ""  # the count of persons a row's labels describe: shared labels are shown for min_cell of them
    # Counts the frame holds that are never written but that a column derived from them gives away (the events
    # before a landmark, from its Kaplan-Meier estimate): cells like the counts, known where the derived column is
    # shown, withheld by withholding it; dropped from the published frame.
    implied: tuple[str, ...] = ()
    quantiles: tuple[Quantiles, ...] = ()  # quantiles withheld over too few values, whatever their counts

    @property
    def cells(self) -> tuple[str, ...]:
        """Every count suppression protects: the counts written and those implied."""
        return self.counts + self.implied


@dataclass(frozen=True)
class Constraint:
    """Cells of which a reader knows the first equals the sum of the others."""

    total: Cell
    parts: tuple[Cell, ...]


def protect(values: Mapping[Cell, int], published: set[Cell], constraints: Sequence[Constraint],
            min_cell: int, implied: Collection[Cell] = frozenset(), floors: Mapping[Cell, int] | None = None
            ) -> set[Cell]:
    """The published cells to withhold so that no small cell can be read or recomputed.

    implied: published cells that are not written (the events a survival estimate gives away): withholding one
    withholds no count, so a complement is taken among them first.
    """
    sensitive = {cell for cell, value in values.items() if 0 < value < min_cell}
    withheld = sensitive & published
    audited: dict[frozenset[Cell], list[Cell]] = {}  # a linked group of cells not shown -> its cells exposed
    while True:
        _complement(values, published, constraints, min_cell, implied, sensitive, withheld)
        exposed = _exposed(values, published - withheld, constraints, min_cell, audited, floors or {})
        blurring: set[Cell] = set()
        for cell in exposed:  # each one's nearest cell shown: a second unknown where the bounds closed on it
            chosen = _nearest_shown(cell, published - withheld, constraints, implied, values)
            if chosen is not None:
                blurring.add(chosen)
        if not blurring:
            return withheld
        withheld |= blurring


def _complement(values: Mapping[Cell, int], published: set[Cell], constraints: Sequence[Constraint], min_cell: int,
                implied: Collection[Cell], sensitive: set[Cell], withheld: set[Cell]) -> None:
    """The classic heuristic (module docstring), one relation at a time, until it withholds nothing more."""
    changed = True
    while changed:
        changed = False
        for constraint in constraints:
            cells = (constraint.total, *constraint.parts)
            unknown = [c for c in cells if c in withheld or c not in published]
            parts = [c for c in constraint.parts if c in published and c not in withheld]
            if _small_sum(constraint, unknown, values, min_cell):
                # The total shown less the parts shown gives the unknown parts' sum, a small count of its own
                # (2 cases in two withheld subgroups): a positive part goes too, else the total.
                candidates = [c for c in parts if values[c] > 0] or [constraint.total]
            elif len(unknown) == 1 and (unknown[0] in withheld or unknown[0] in sensitive):
                # Withhold the smallest part that is still shown (positive before zero), else the total.
                candidates = parts or ([constraint.total] if constraint.total not in withheld else [])
            else:
                continue
            if candidates:
                withheld.add(min(candidates, key=lambda c: _preference(c, implied, values)))
                changed = True


def _exposed(values: Mapping[Cell, int], shown: set[Cell], constraints: Sequence[Constraint], min_cell: int,
             audited: dict[frozenset[Cell], list[Cell]], floors: Mapping[Cell, int]) -> list[Cell]:
    """The small counts not shown that a reader can still tell are small (from 1 to min_cell - 1), the relations
    taken together rather than one at a time: relations that are not exact give bounds (a subgroup's cases are at
    least its followed ones; the year's cases less two subgroups' are at most a third's) that close on a count as
    no relation alone does. Each group of cells not shown that relations link is a linear program, each of its
    small cells bounded (`audited` keeps a group's answer: one the next complement leaves alone is not solved
    again)."""
    exposed = []
    for cells, relations in _linked(shown, constraints):
        if cells not in audited and any(0 < values[c] < min_cell for c in cells):
            audited[cells] = _bounded_small(values, cells, relations, min_cell, floors)
        exposed += audited.get(cells, [])
    return sorted(exposed)


def _linked(shown: set[Cell], constraints: Sequence[Constraint]) -> list[tuple[frozenset[Cell], list[Constraint]]]:
    """The cells not shown, in groups that relations link, with the relations of each group."""
    parent: dict[Cell, Cell] = {}

    def root(cell: Cell) -> Cell:
        while parent.setdefault(cell, cell) != cell:
            parent[cell] = parent[parent[cell]]
            cell = parent[cell]
        return cell

    hidden = [[c for c in (k.total, *k.parts) if c not in shown] for k in constraints]
    for cells in hidden:
        for cell in cells[1:]:
            parent[root(cell)] = root(cells[0])
        if cells:
            root(cells[0])
    members: dict[Cell, set[Cell]] = {}
    for cell in parent:
        members.setdefault(root(cell), set()).add(cell)
    relations: dict[Cell, list[Constraint]] = {}
    for constraint, cells in zip(constraints, hidden, strict=True):
        if cells:
            relations.setdefault(root(cells[0]), []).append(constraint)
    return [(frozenset(cells), relations[top]) for top, cells in members.items()]


def _bounded_small(values: Mapping[Cell, int], cells: frozenset[Cell], relations: Sequence[Constraint],
                   min_cell: int, floors: Mapping[Cell, int]) -> list[Cell]:
    """The group's small cells whose least and greatest values, given the cells shown and every relation (each
    total the sum of its parts, every count at least 0, or 1 where `floors` says a reader knows it), both lie from
    1 to min_cell - 1. A solution with many small cells at 0 (or at min_cell) shows them free at once; only the
    others are bounded one at a time."""
    from scipy.optimize import linprog  # only a public export audits

    order = sorted(cells)
    index = {cell: i for i, cell in enumerate(order)}
    matrix = np.zeros((len(relations), len(order)))
    known = np.zeros(len(relations))
    for row, constraint in enumerate(relations):
        for sign, cell in ((1, constraint.total), *((-1, part) for part in constraint.parts)):
            if cell in index:
                matrix[row, index[cell]] += sign
            else:
                known[row] -= sign * values[cell]
    # No count reaches _CAP: a solution within it is one the reader cannot rule out, and a greatest value at it
    # is no bound they know.
    bounds = [(floors.get(cell, 0), _CAP) for cell in order]

    def solved(weights: dict[Cell, int]) -> Any:
        objective = np.zeros(len(order))
        for cell, weight in weights.items():
            objective[index[cell]] = weight
        return linprog(objective, A_eq=matrix, b_eq=known, bounds=bounds, method="highs")

    def freed_by(found: Any, cells: list[Cell], sign: int) -> set[Cell]:
        at = dict(zip(order, found.x, strict=True))
        return {c for c in cells if (at[c] < 1 - 1e-6 if sign > 0 else at[c] > min_cell - 1 + 1e-6)}

    def free(cells: list[Cell], sign: int) -> set[Cell]:
        """Those of the cells that can be 0 (sign 1) or min_cell and more (sign -1): solutions pushing all the
        cells left that way free many at once; each cell none of them frees is then pushed alone."""
        freed: set[Cell] = set()
        left = list(cells)
        while left:
            found = solved(dict.fromkeys(left, sign))
            if found.status == 2:  # relations that do not hold as exact (a patient in no group): nothing is told
                return set(cells)
            newly = freed_by(found, left, sign) if found.success else set()
            if not newly:
                break
            freed |= newly
            left = [c for c in left if c not in newly]
        for cell in left:
            one = solved({cell: sign})
            if not one.success or freed_by(one, [cell], sign):
                freed.add(cell)
        return freed

    small = [cell for cell in order if 0 < values[cell] < min_cell]
    can_be_none = free(small, 1)
    above_zero = [cell for cell in small if cell not in can_be_none]
    return sorted(set(above_zero) - free(above_zero, -1)) if above_zero else []


_CAP = 10**6


def _nearest_shown(cell: Cell, shown: set[Cell], constraints: Sequence[Constraint], implied: Collection[Cell],
                   values: Mapping[Cell, int]) -> Cell | None:
    """The cell shown to withhold to blur an exposed cell: the nearest (in a relation of the cell itself, else of
    a cell hidden beside it, and so on), then as the heuristic chooses (an implied one, a positive one, the
    smallest); None when every cell it is linked to is withheld already."""
    distance: dict[Cell, int] = {}
    reached, frontier, step = {cell}, {cell}, 0
    while frontier and not distance:
        near = [k for k in constraints if frontier & {k.total, *k.parts}]
        for constraint in near:
            for other in (constraint.total, *constraint.parts):
                if other in shown:
                    distance.setdefault(other, step)
        frontier = {c for k in near for c in (k.total, *k.parts) if c not in shown} - reached
        reached |= frontier
        step += 1
    return min(distance, key=lambda c: (distance[c], *_preference(c, implied, values)), default=None)


def _preference(cell: Cell, implied: Collection[Cell], values: Mapping[Cell, int]) -> tuple[bool, bool, int]:
    """Which of several cells to withhold first, as the heuristic and the audit both choose: an implied one, then a
    positive one before a zero, then the smallest."""
    return cell not in implied, values[cell] == 0, values[cell]


def _small_sum(constraint: Constraint, unknown: list[Cell], values: Mapping[Cell, int], min_cell: int) -> bool:
    """Whether the total is known and the parts not known add up to a count from 1 to min_cell - 1."""
    if not unknown or constraint.total in unknown:
        return False
    return 0 < sum(values[c] for c in unknown) < min_cell


def _row_constraints(frame: pd.DataFrame, table: PublicTable,
                     values: dict[Cell, int]) -> Iterable[Constraint]:
    for row in range(len(frame)):
        for relation in table.relations:
            parts = [(row, part) for part in relation.parts]
            if not relation.exact:
                remainder = (row, f"~{relation.total}-{'-'.join(relation.parts)}")
                values[remainder] = values[(row, relation.total)] - sum(values[p] for p in parts)
                parts.append(remainder)
            yield Constraint((row, relation.total), tuple(parts))


def _margin_constraints(frame: pd.DataFrame, table: PublicTable) -> Iterable[Constraint]:
    """A totals row (NULL in a dimension) equals the sum of the rows that fill that dimension in."""
    keys = [tuple(None if pd.isna(v) else v for v in row) for row in frame[list(table.dimensions)].itertuples(False)]
    for total_row, total_key in enumerate(keys):
        for position, _ in enumerate(table.dimensions):
            if total_key[position] is not None:
                continue
            children = [row for row, key in enumerate(keys) if key[position] is not None
                        and all(key[i] == total_key[i] for i in range(len(key)) if i != position)]
            if children:
                for count in table.cells:
                    yield Constraint((total_row, count), tuple((row, count) for row in children))


def _group_total_constraints(frame: pd.DataFrame, table: PublicTable) -> Iterable[Constraint]:
    """A row labelled as the total equals, for each other value of its dimension, the sum of the rows of that value."""
    for totals in table.group_totals:
        key = _key(frame, totals.within)
        is_total = frame[totals.dimension] == totals.label
        for total_row in frame.index[is_total]:
            same = frame[~is_total & (key == key[total_row])]
            for _, children in same.groupby(totals.dimension, sort=False):
                for count in table.cells:
                    yield Constraint((total_row, count), tuple((row, count) for row in children.index))


def suppress(frame: pd.DataFrame, table: PublicTable, min_cell: int = 5) -> pd.DataFrame:
    """The frame as it may be published: small counts, their complements and what derives from them withheld.

    Counts become nullable integers (NULL = withheld), and `suppressed_cells` lists the columns withheld in
    each row, so a reader can tell withheld from missing.
    """
    return suppress_tables({table.name: frame}, (table,), min_cell)[table.name]


def suppress_tables(frames: Mapping[str, pd.DataFrame], tables: Sequence[PublicTable],
                    min_cell: int = 5) -> dict[str, pd.DataFrame]:
    """The frames as they may be published (see suppress), withheld together: a table whose rows total
    another's counts (TotalsOf) would otherwise give back what the other withholds."""
    frames = {table.name: frames[table.name].reset_index(drop=True) for table in tables}
    offsets = dict(zip(frames, itertools.accumulate((len(f) for f in frames.values()), initial=0), strict=False))
    values: dict[Cell, int] = {}
    published: set[Cell] = set()
    implied: set[Cell] = set()
    floors: dict[Cell, int] = {}  # a row of persons exists because it counts one: a reader knows its count is 1 or more
    constraints: list[Constraint] = []
    for table in tables:  # each table's cells on rows of their own: offset by the rows of the tables before it
        shift = offsets[table.name]
        frame = frames[table.name]
        if table.persons and bool((frame[table.persons] >= 1).all()):
            floors |= {(row + shift, table.persons): 1 for row in range(len(frame))}
        local, shown, relations = _cells(frame, table)
        values.update({(row + shift, column): value for (row, column), value in local.items()})
        published |= {(row + shift, column) for row, column in shown}
        implied |= {(row + shift, column) for row, column in shown if column in table.implied}
        constraints += [Constraint(_moved(k.total, shift), tuple(_moved(c, shift) for c in k.parts)) for k in relations]
    constraints += list(_totals_of_constraints(frames, tables, offsets))
    withheld = protect(values, published, constraints, min_cell, implied, floors)
    return {table.name: _published(frames[table.name], table, {
        (row - offsets[table.name], column) for row, column in withheld
        if offsets[table.name] <= row < offsets[table.name] + len(frames[table.name])}, min_cell) for table in tables}


def _moved(cell: Cell, shift: int) -> Cell:
    return cell[0] + shift, cell[1]


def _cells(frame: pd.DataFrame, table: PublicTable) -> tuple[dict[Cell, int], set[Cell], list[Constraint]]:
    """A table's counts (and the remainders its relations imply), those published, and what a reader knows of them."""
    values = {(row, column): int(value) for column in table.cells for row, value in enumerate(frame[column].tolist())}
    published = {(row, column) for row, column in values if column in table.counts}
    for column in table.implied:  # known through what derives from it, where that is shown
        shown = frame[[c for c, sources in table.derived.items() if column in sources]].notna().any(axis=1)
        published |= {(int(row), column) for row in np.flatnonzero(shown.to_numpy())}
    constraints = list(_row_constraints(frame, table, values))
    if table.has_totals:
        constraints += list(_margin_constraints(frame, table))
    constraints += list(_group_total_constraints(frame, table))
    constraints += list(_shrinking_constraints(frame, table, values))
    return values, published, constraints


def _shrinking_constraints(frame: pd.DataFrame, table: PublicTable, values: dict[Cell, int]) -> Iterable[Constraint]:
    """An earlier row's count less a later one's is the persons who left in between: 12 at risk at 3 years
    and 10 at 5 years tell that 2 had an event or were censored; so does any pair of rows, not only neighbours."""
    for shrinking in table.shrinking:
        rank = frame[shrinking.dimension].map({value: i for i, value in enumerate(shrinking.order)})
        ordered = frame.assign(_within=_key(frame, shrinking.within), _rank=rank)[rank.notna()]
        for _, rows in ordered.sort_values(["_within", "_rank"], kind="stable").groupby("_within", sort=False):
            for earlier, later in itertools.combinations(rows.index.tolist(), 2):
                gone = (later, f"~{shrinking.count}-since-row-{earlier}")
                values[gone] = values[(earlier, shrinking.count)] - values[(later, shrinking.count)]
                yield Constraint((earlier, shrinking.count), ((later, shrinking.count), gone))


def _totals_of_constraints(frames: Mapping[str, pd.DataFrame], tables: Sequence[PublicTable],
                           offsets: Mapping[str, int]) -> Iterable[Constraint]:
    """A row of a table that totals another's counts equals the sum of the other's rows that agree with it on `on`."""
    for table in tables:
        for totals in table.totals_of:
            if totals.table not in frames:
                raise ValueError(f"{table.name} totals {totals.table}: suppress them together (suppress_tables)")
            parts = frames[totals.table]
            part_key = _key(parts, totals.on)
            for total_row, key in enumerate(_key(frames[table.name], totals.on)):
                children = [offsets[totals.table] + int(row) for row in np.flatnonzero(part_key.to_numpy() == key)]
                for count in totals.counts:
                    yield Constraint((offsets[table.name] + total_row, count), tuple((row, count) for row in children))


def _key(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    return frame[list(columns)].astype(str).agg("\x1f".join, axis=1) if columns else pd.Series("", index=frame.index)


def _published(frame: pd.DataFrame, table: PublicTable, withheld: set[Cell], min_cell: int) -> pd.DataFrame:
    """The frame with its withheld counts, and the columns derived from them, NULL and listed in suppressed_cells;
    quantiles over too few values NULL and listed too; implied counts dropped."""
    out = frame.copy()
    for column in table.counts:
        out[column] = out[column].astype("Int64")
    masked: dict[int, list[str]] = {}

    def hide(rows: list[int], columns: list[str]) -> None:
        out.loc[rows, columns] = None
        for row in rows:
            masked.setdefault(row, []).extend(columns)

    for row, column in sorted(withheld):
        if column in table.counts:
            out.at[row, column] = pd.NA
            masked.setdefault(row, []).append(column)
    for column, sources in table.derived.items():
        hide([row for row in range(len(out)) if any((row, count) in withheld for count in sources)], [column])
    for quantiles in table.quantiles:  # those there are: none over no value is no quantile withheld
        few = (frame[quantiles.over] < quantiles.bands * min_cell) & frame[list(quantiles.columns)].notna().any(axis=1)
        hide(np.flatnonzero(few.to_numpy()).tolist(), list(quantiles.columns))
    out["suppressed_cells"] = [";".join(sorted(set(masked.get(row, [])))) for row in range(len(out))]
    if table.has_totals:
        for column in table.dimensions:
            out[column] = out[column].map(_label)
    return out.drop(columns=list(table.implied))


OTHER = "other"
_MART_WORDS = frozenset({"unknown", OTHER})  # what the marts themselves write for a missing value


def generalise(frame: pd.DataFrame, table: PublicTable, min_cell: int = 5) -> pd.DataFrame:
    """The frame with every written label that is neither in its closed list nor shared read as "other".

    A label is shared when some row shows it for at least min_cell persons (table.persons): a count
    of persons in one row is a floor of those sharing it. Rows keep their own counts, so several
    rows may read "other" (a drug misspelt with a name and a drug given to two children).
    """
    if not table.written:
        return frame
    out = frame.copy()
    common = frame[table.persons] >= min_cell
    for column, closed in table.written.items():
        shared = set(frame.loc[common, column].dropna()) | closed | _MART_WORDS
        rare = frame[column].notna() & ~frame[column].isin(shared)
        out.loc[rare, column] = OTHER
    return out


def _label(value: Any) -> str:
    """A dimension value as published: "all" in a totals row; 2023, not 2023.0, for a year."""
    if pd.isna(value):
        return "all"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
