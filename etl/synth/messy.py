"""The everyday messiness of real exports, limited to what the pipeline must harmonise.

Only what docs/synthetic-exports.md lists under "Messiness": surrounding whitespace, lower-case
codes, drug names in mixed case, topography with or without the dot, partial dates (decided
in people.py), sentinel dates, empty optional fields and accented text. Every function takes the
writer's render `Random` and draws a fixed number of times, whatever it returns.
"""

from __future__ import annotations

from random import Random


def padded(rng: Random, text: str, share: float = 0.03) -> str:
    """Surrounding whitespace left by free-text entry."""
    draw, side = rng.random(), rng.random()
    if draw >= share:
        return text
    return f" {text}" if side < 0.3 else f"{text} " if side < 0.8 else f" {text}  "


def lower_sometimes(rng: Random, code: str, share: float = 0.05) -> str:
    return code.lower() if rng.random() < share else code


def drug_name(rng: Random, inn: str) -> str:
    """INNs as centres type them: `crizotinib`, `Crizotinib`, `CRIZOTINIB`."""
    draw = rng.random()
    if draw < 0.25:
        return inn[:1].upper() + inn[1:]
    if draw < 0.4:
        return inn.upper()
    return inn


def topography(rng: Random, code: str, share_undotted: float) -> str:
    """`C69.2` or `C692`."""
    return code.replace(".", "") if rng.random() < share_undotted else code
