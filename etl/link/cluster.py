"""Persons from links: connected components of source patients, with how each was linked.

A pure function of the source patients and the scored edges. Edges are taken strongest first
(a reviewer's link, then by match probability), and one is refused when it would put two
different EUPIDs, two patients of one source, or two patients held apart (a pair the evidence
sends to a reviewer: twins of two sexes) into one person: a chain of weaker links can never merge
what the evidence keeps apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CLERICAL, PROBABILISTIC, EUPID, UNLINKED = "clerical", "probabilistic", "eupid", "unlinked"
HELD_APART = "their persons hold two patients held apart for a reviewer (review_when)"


@dataclass(frozen=True)
class SourcePatient:
    source_id: str
    pseudonym: str
    harmonised_id: str  # harmonise's id: the EUPID digest when has_eupid, else one per source patient
    has_eupid: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.source_id, self.pseudonym


@dataclass(frozen=True)
class Edge:
    left: tuple[str, str]  # (source_id, pseudonym)
    right: tuple[str, str]
    probability: float
    method: str  # probabilistic / clerical


@dataclass(frozen=True)
class Link:
    """Where one source patient ends up."""

    patient_id: str
    link_method: str
    match_probability: float | None


def apart_by_shared_eupid(patients: Sequence[SourcePatient]) -> tuple[list[SourcePatient], list[list[SourcePatient]]]:
    """The patients, those of a EUPID two patients of one source share (a typo at a centre, or one child registered
    twice) each given an id of its own and no EUPID: harmonise gave them the EUPID's one id, and they started as
    one person, two children merged without a word. Linked by it to no one, each may still be linked on its
    score or by a reviewer, and never to the other (two patients of one source). Also the groups so split."""
    by_eupid: dict[str, list[SourcePatient]] = {}
    for p in patients:
        if p.has_eupid:
            by_eupid.setdefault(p.harmonised_id, []).append(p)
    shared = [group for group in by_eupid.values() if len({p.key for p in group}) > len({p.source_id for p in group})]
    split = {p.key for group in shared for p in group}
    return [SourcePatient(p.source_id, p.pseudonym, _own_id(p), False) if p.key in split else p
            for p in patients], shared


def _own_id(patient: SourcePatient) -> str:
    """An id of the patient's own, of the shape of harmonise's (drawn from keyed digests: nothing in clear)."""
    digest = hashlib.sha256(f"{patient.harmonised_id}|{patient.source_id}|{patient.pseudonym}".encode()).hexdigest()
    return digest[:len(patient.harmonised_id)]


def link_persons(patients: Sequence[SourcePatient], edges: Iterable[Edge],
                 refused: list[tuple[Edge, str]] | None = None,
                 apart: Iterable[tuple[tuple[str, str], tuple[str, str]]] = ()) -> dict[tuple[str, str], Link]:
    """Each source patient's person id and link method (see the module docstring). `apart`: pairs of
    source patients no edge may put into one person. `refused` collects the edges refused, with why: a
    reviewer's decision that could not take effect must be said, a pair linked on its score reviewed."""
    by_key = {p.key: p for p in patients}
    held: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for one, other in apart:
        held.setdefault(one, set()).add(other)
        held.setdefault(other, set()).add(one)
    # Records sharing harmonise's id (the same EUPID) start as one person.
    parent: dict[str, str] = {p.harmonised_id: p.harmonised_id for p in patients}
    eupid = {p.harmonised_id: p.harmonised_id if p.has_eupid else None for p in patients}
    sources: dict[str, set[str]] = {}
    keys: dict[str, set[tuple[str, str]]] = {}  # per person, its source patients
    held_from: dict[str, set[tuple[str, str]]] = {}  # per person, the source patients held apart from one of them
    for p in patients:
        sources.setdefault(p.harmonised_id, set()).add(p.source_id)
        keys.setdefault(p.harmonised_id, set()).add(p.key)
        held_from.setdefault(p.harmonised_id, set()).update(held.get(p.key, ()))

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    accepted: dict[tuple[str, str], list[Edge]] = {}
    ordered = sorted((e for e in edges if e.left in by_key and e.right in by_key),
                     key=lambda e: (e.method != CLERICAL, -e.probability, e.left, e.right))
    for edge in ordered:
        a, b = root(by_key[edge.left].harmonised_id), root(by_key[edge.right].harmonised_id)
        if a == b:
            continue
        clash = sources[a] & sources[b]
        why = "their persons hold two different EUPIDs" if eupid[a] and eupid[b] else \
            f"their persons each hold a patient of {', '.join(sorted(clash))}" if clash else \
            _held_pair(keys[a], keys[b], held) if held_from[a] & keys[b] else None
        if why:
            if refused is not None:
                refused.append((edge, why))
            continue
        low, high = sorted((a, b))  # deterministic: the smaller id is the root
        parent[high] = low
        eupid[low] = eupid[low] or eupid[high]
        sources[low] |= sources.pop(high)
        keys[low] |= keys.pop(high)
        held_from[low] |= held_from.pop(high)
        accepted.setdefault(edge.left, []).append(edge)
        accepted.setdefault(edge.right, []).append(edge)

    members: dict[str, list[SourcePatient]] = {}
    for p in patients:
        members.setdefault(root(p.harmonised_id), []).append(p)
    links: dict[tuple[str, str], Link] = {}
    for top, group in members.items():
        person = eupid[top] or min(p.harmonised_id for p in group)
        for p in group:
            links[p.key] = Link(person, *_method(p, group, accepted.get(p.key, [])))
    return links


def _held_pair(one: set[tuple[str, str]], other: set[tuple[str, str]],
               held: dict[tuple[str, str], set[tuple[str, str]]]) -> str:
    """HELD_APART, naming the first (in order) of the pairs held apart between two persons' patients
    `one` and `other`: the pair a reviewer links if one child, which the refused edge's need not be."""
    left, right = min(tuple(sorted((a, b))) for a in one for b in held.get(a, set()) & other)
    return f"{HELD_APART}, {left[0]}:{left[1]} and {right[0]}:{right[1]}"


def _method(patient: SourcePatient, group: list[SourcePatient], edges: list[Edge]) -> tuple[str, float | None]:
    if any(e.method == CLERICAL for e in edges):
        return CLERICAL, 1.0
    if patient.has_eupid and any(o.harmonised_id == patient.harmonised_id and o.key != patient.key for o in group):
        return EUPID, 1.0
    if edges:
        return PROBABILISTIC, max(e.probability for e in edges)
    if patient.has_eupid:
        return EUPID, 1.0
    return UNLINKED, None
