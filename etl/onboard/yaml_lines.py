"""Where a key path sits in a YAML file, so that a mapping error names its line.

pydantic reports an error at a location such as `('tables', 'diagnosis', 'fields', 'x', 'type')`;
`line_of` walks the YAML node tree (which keeps each node's position) along that path and returns
the line of the deepest key it finds. A location part that is not a key (pydantic adds the type
tried in a union, e.g. `str`) ends the walk there, which is still the right line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

_DOTTED_KEY_PATH = re.compile(r"^([^\s:]+(?:\.[^\s:]+)*): ")


@dataclass(frozen=True)
class Located:
    line: int  # 1-based
    path: tuple[str | int, ...]  # the part of the asked path found in the file


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of a text (None for an empty document); raises yaml.YAMLError."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of one step, or None when the path does not continue here."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item
    return None


def line_of(root: yaml.Node | None, path: Sequence[str | int]) -> Located:
    """The line of the deepest key of `path` present in the tree (line 1 when none is)."""
    if root is None:
        return Located(1, ())
    node, line, found = root, root.start_mark.line + 1, []
    for part in path:
        step = _child(node, part)
        if step is None:
            break
        key, node = step
        line = key.start_mark.line + 1
        found.append(part)
    return Located(line, tuple(found))


def line_of_dotted(root: yaml.Node | None, dotted: str) -> Located:
    """Like `line_of` for a path written `tables.diagnosis.fields.x`, where keys may themselves hold dots
    (ODM item OIDs such as `DM.SEX`): at each level the longest key that fits is taken."""
    parts = dotted.split(".")
    if root is None:
        return Located(1, ())
    node, line, found = root, root.start_mark.line + 1, []
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            candidate = ".".join(parts[i:j])
            step = _child(node, int(candidate) if candidate.isdigit() else candidate) or _child(node, candidate)
            if step is not None:
                key, node = step
                line = key.start_mark.line + 1
                found.append(candidate)
                i = j
                break
        else:
            break
    return Located(line, tuple(found))


def split_key_path(message: str) -> tuple[str, str] | None:
    """('tables.x.fields.y', 'the rest') from a message 'tables.x.fields.y: the rest', else None."""
    match = _DOTTED_KEY_PATH.match(message)
    return (match.group(1), message[match.end():]) if match else None
