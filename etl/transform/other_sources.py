"""The other sources' patient keys a source's free text is screened by: a tumour board's note names a registry's
patient (`see registry TREP-000002`), which the source's own keys' shapes do not find (etl/transform/screen.py).

Each source's shapes are its own keys' (`PatientNumbers.text_shapes`), kept in staging/.key_shapes/<source>.json
(regexes, no number) by the source's own harmonise, from the keys it read: another source's harmonise (when its
screen is first used: a text holding a digit, or the carry-over's fingerprint) and the plan read a file, not a
registry's 100,000 keys every night. A source none has kept them for (an earlier version's load), or whose
mapping or this code changed since, has them read from its staged exports, and kept. A
source with keys of eight digits has every other source's notes lose their eight-digit codes (MedDRA 10019211)
as its own do: a note's detail, never a number.

A source harmonised before another's exports are first staged (a new deployment's first night, a new source:
`rtw run` prepares the sources one or two at a time, the DAG side by side) does not know that source's keys yet. Its
harmonised folder says which shapes its screen looked for (SCREENED_WITH); the next night's plan asks
(`screen_missed`) whether a free text it loaded holds a number of a shape known since, and loads the source
again if one does: its carried notes are then screened anew (the screen's fingerprint holds the shapes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl import fsio
from etl.config import SOURCES_DIR, Home
from etl.extract.adapter import STAGED_NAME
from etl.extract.file_names import PatientNumbers, shapes_pattern
from etl.resources import code_digest
from etl.transform.harmonise import screened_fields
from etl.transform.mapping import SourceMapping, load_mapping
from etl.transform.pseudonym import as_seen
from etl.transform.records import staged_patient_keys
from etl.transform.screen import TextScreen, staged_source_folders

log = logging.getLogger(__name__)

SCREENED_WITH = "screened_with.json"  # in a source's harmonised folder: the other sources' shapes its screen knew
_SHAPES_MEMOS = ".key_shapes"  # staging/.key_shapes/<source>.json


def source_shapes(home: Home, sources_dir: Path = SOURCES_DIR, *, but: str | None = None) -> dict[str, frozenset[str]]:
    """The keys' shapes of every source staged in the home with a mapping in `sources_dir` (but `but`), each its
    own keys' (`PatientNumbers.text_shapes`): as its last harmonise kept them (`keep_shapes`), else read from its
    staged exports and kept."""
    return {folder.name: _staged_shapes(folder, mapping)
            for folder, mapping in staged_source_folders(home, sources_dir) if folder.name != but}


def other_source_shapes(home: Home, source_id: str, sources_dir: Path = SOURCES_DIR) -> list[frozenset[str]]:
    """The keys' shapes of every source but `source_id` (`source_shapes`): what a free text of `source_id` is
    screened by besides its own patients' (`TextScreen`'s others)."""
    return list(source_shapes(home, sources_dir, but=source_id).values())


def keep_shapes(home: Home, source_id: str, mapping_path: Path, screen: TextScreen) -> None:
    """Keep the shapes of the keys a source's harmonise read (its `screen`'s own), for the other sources' harmonise
    and the plan (`source_shapes`): read there, its keys' shapes cost a file, not its staged exports. Called once
    the load is not held: a cut export's fewer keys never narrow another source's screen."""
    memo = home.staging / _SHAPES_MEMOS / f"{source_id}.json"
    try:
        looked_at = _looked_at(mapping_path)
    except OSError as exc:  # the next reader reads them from the staged exports
        log.info("%s: the shapes of its keys were not kept (%s)", source_id, exc.__class__.__name__)
        return
    _keep(memo, looked_at, screen.own_shapes)


@functools.cache
def _shapes_code() -> str:
    etl = Path(__file__).parents[1]
    return code_digest([etl / "extract" / "file_names.py", etl / "extract" / "adapter.py",
                        etl / "transform" / "pseudonym.py", etl / "transform" / "records.py"])


def _looked_at(mapping_path: Path) -> dict[str, str]:
    """What kept shapes were read by: the source's mapping (the columns its patient key is read from) and this code."""
    return {"mapping": hashlib.sha256(mapping_path.read_bytes()).hexdigest(), "code": _shapes_code()}


def _keep(memo: Path, looked_at: dict[str, str], shapes: frozenset[str]) -> None:
    try:
        memo.parent.mkdir(exist_ok=True)
        with fsio.written_atomically(memo) as temporary:
            temporary.write_text(json.dumps({**looked_at, "shapes": sorted(shapes)}), encoding="utf-8")
    except OSError as exc:
        log.info("%s: the shapes of its keys were not kept (%s)", memo.stem, exc.__class__.__name__)


def _staged_shapes(folder: Path, mapping_path: Path) -> frozenset[str]:
    """The shapes of a source's keys: those its last harmonise kept (`keep_shapes`), while its mapping and this code
    are the ones that read them; else read from its staged exports, and kept. What cannot be read (the mapping, an
    export replaced or damaged under the read, the folder) leaves the shapes last kept in the screen, with a
    warning: a screen never looks for fewer numbers than it did for a fault of another source's files."""
    memo = folder.parent / _SHAPES_MEMOS / f"{folder.name}.json"
    try:
        kept = json.loads(memo.read_text(encoding="utf-8"))
        kept_shapes = frozenset(kept["shapes"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not one this code reads
        kept, kept_shapes = None, frozenset()
    try:
        looked_at = _looked_at(mapping_path)
        if kept is not None and all(kept.get(name) == value for name, value in looked_at.items()):
            return kept_shapes
        mapping = load_mapping(mapping_path)
        staged = sorted(p for p in folder.iterdir() if STAGED_NAME.fullmatch(p.name))
    except (OSError, ValueError) as exc:  # its own run says what is wrong with it
        log.warning("%s: its patient keys cannot be read for the screen of another source's free text (%s): the "
                    "shapes kept from its last read stand", folder.name, exc.__class__.__name__)
        return kept_shapes
    keys, unread = _staged_keys_found(staged, mapping)
    shapes = PatientNumbers.of(keys).text_shapes
    if unread:  # replaced or damaged under the read: those kept stand beside, and nothing is kept
        log.warning("%s: %s not read for the screen of another source's free text (%s): the shapes kept from its "
                    "last read stand beside", folder.name, unread[0][0], unread[0][1])
        return shapes | kept_shapes
    _keep(memo, looked_at, shapes)
    return shapes


def _staged_keys_found(staged: list[Path], mapping: SourceMapping) -> tuple[set[str], list[tuple[str, str]]]:
    """The patient keys of each export `staged` (`staged_keys`'s), and those not read, with why: one replaced
    meanwhile is gone (another source's extract stages beside this harmonise), one damaged on disk staged again
    by its own source's next extract."""
    keys: set[str] = set()
    unread = []
    for export in staged:
        try:
            keys |= staged_patient_keys(export, mapping)
        except (OSError, pa.ArrowException) as exc:
            unread.append((export.name, exc.__class__.__name__))
    return keys, unread


def write_screened_with(folder: Path, screen: TextScreen) -> None:
    """Say in a source's harmonised `folder` which other sources' shapes its screen looked for (null: it screened
    no text, and none can have missed a number)."""
    seen = screen.others_seen
    (folder / SCREENED_WITH).write_text(json.dumps(sorted(seen) if seen is not None else None), encoding="utf-8")


def screen_missed(source_id: str, mapping: SourceMapping, harmonised: Path,
                  shapes: Mapping[str, frozenset[str]]) -> str | None:
    """Why the source is loaded again (None: it need not be): a free text of its last load (its `harmonised`
    folder) holds a number shaped like another source's keys (`shapes`: every source's, `source_shapes`) that its
    screen did not know then, its notes to be screened anew. Texts found to hold none are noted as screened by
    those shapes too (SCREENED_WITH): they are read again only when another shape arrives. A load of an earlier
    version, which says nothing of it, is taken as having known them (an upgrade loads every source again in any
    case); one whose files cannot be read is loaded again (harmonise rewrites them)."""
    try:
        seen = json.loads((harmonised / SCREENED_WITH).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    try:
        if seen is None:
            return None
        missed = set().union(*(known for name, known in shapes.items() if name != source_id)) - set(seen)
        if not missed or (pattern := shapes_pattern(missed)) is None:
            return None
        if _holds_any(harmonised, screened_fields(mapping), pattern):
            return ("a free text it loaded holds a number shaped like another source's patient keys, known since: "
                    "loaded again, its free text screened by them")
    except (OSError, ValueError, TypeError, re.error, pa.ArrowException) as exc:
        return (f"its last load's free text cannot be read for the other sources' patient keys "
                f"({exc.__class__.__name__}): loaded again")
    try:
        with fsio.written_atomically(harmonised / SCREENED_WITH) as temporary:
            temporary.write_text(json.dumps(sorted({*seen, *missed})), encoding="utf-8")
    except OSError as exc:  # read again the next night
        log.info("%s: what its free text was found clean of was not kept (%s)", source_id, exc.__class__.__name__)
    return None


def _holds_any(harmonised: Path, fields: Mapping[str, list[str]], pattern: re.Pattern[str]) -> bool:
    """Whether a value of the harmonised tables' free-text `fields` holds a match of `pattern`, as seen."""
    for table, names in fields.items():
        path = harmonised / f"{table}.parquet"
        columns = sorted(set(names) & set(pq.read_schema(path).names)) if names and path.is_file() else []
        for column in pq.read_table(path, columns=columns).columns if columns else []:
            values = column.unique().to_pylist() if pa.types.is_string(column.type) else []
            if any(isinstance(v, str) and pattern.search(as_seen(v)) for v in values):
                return True
    return False
