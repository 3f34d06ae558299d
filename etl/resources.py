"""Where the files the pipeline reads live: mappings, SQL, GX suites and the DAG.

In the repository they are the top-level folders `sources/`, `warehouse/`, `expectations/`
and `dags/`. The wheel carries the same folders as package data under `etl/_data/` (hatch
`force-include` in pyproject.toml), so an installed `rtw` needs no checkout. Each folder is
resolved once through `importlib.resources`: the packaged copy when it is there, else the
repository's. Templates and vocabularies already live inside `etl/` and travel with it.

A deployment keeping its own mappings points at them with env `RTW_SOURCES_DIR` (the DAG:
Airflow Variable `rtw_sources_dir`, passed to `sources_dir` as the override).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import cache
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

SOURCES_ENV = "RTW_SOURCES_DIR"
SOURCES_VARIABLE = "rtw_sources_dir"  # the Airflow Variable the DAG reads and passes as the override

REPO_ROOT = Path(__file__).resolve().parents[1]
_PACKAGED = "_data"  # etl/_data/<folder> in the wheel; absent in a checkout


@cache
def data_root() -> Path:
    """The folder holding `sources/`, `warehouse/`, `expectations/` and `dags/`: the installed
    package data, else the repository root."""
    packaged = files("etl") / _PACKAGED
    # A wheel unpacks to real files; a package imported from a zip would need as_file(), and is not supported.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged.resolve()
    return REPO_ROOT


def sources_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The mappings: `override` (e.g. the Airflow Variable `rtw_sources_dir`), else env
    `RTW_SOURCES_DIR`, else the shipped `sources/`. A folder named but missing is an error
    (a typo would otherwise import nothing, silently)."""
    folder = chosen_sources_dir(override)
    if not folder.is_dir():
        where = "the override" if override else SOURCES_ENV
        raise FileNotFoundError(f"the mappings folder {folder} (from {where}) does not exist or is not a folder; "
                                f"point {SOURCES_ENV} or the Airflow Variable {SOURCES_VARIABLE} at a folder "
                                "of <source>.yaml files")
    return folder


def chosen_sources_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """`sources_dir` without the check, for defaults computed at import (where raising would
    turn `rtw --help` into a traceback)."""
    chosen = override or os.environ.get(SOURCES_ENV)
    return Path(chosen).expanduser().resolve() if chosen else data_root() / "sources"


def warehouse_sql_dir() -> Path:
    """The warehouse DDL (`core.sql`, ...), with `checks/` and `marts/` inside it."""
    return data_root() / "warehouse"


def checks_dir() -> Path:
    """The cross-table SQL rules of the rule catalogue."""
    return warehouse_sql_dir() / "checks"


def expectations_dir() -> Path:
    """The GX suites and the harmonise rules of the rule catalogue."""
    return data_root() / "expectations"


def dags_dir() -> Path:
    """The Airflow DAG folder (`AIRFLOW__CORE__DAGS_FOLDER`)."""
    return data_root() / "dags"


def code_files(folder: Path) -> list[Path]:
    """The files below `folder` that make its code what it is: sources, templates, vocabularies; not
    what a build or Python leaves there (compiled modules, bytecode and its temporaries, hidden files),
    which differ between machines and come and go while a run reads the folder."""
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".so", ".pyd", ".o", ".pyc")
            and not any(part == "__pycache__" or part.startswith(".") for part in p.relative_to(folder).parts)]


@cache
def installed_version(library: str) -> str:
    """The installed version of `library`, looked up once a process (each lookup scans the installed
    packages: a run asks for several, again and again)."""
    return version(library)


def code_digest(paths: Iterable[Path], *libraries: str) -> str:
    """SHA-256 of the code a memo is computed by: each file's name and bytes (in path order) and the
    installed versions of `libraries`. A memo (carried-over rows, verdicts, linked persons) kept under
    another digest is computed again: an upgrade redoes what its change could change, nothing more."""
    digest = hashlib.sha256()
    for library in libraries:
        digest.update(f"{library} {installed_version(library)}\0".encode())
    for path in sorted(p.resolve() for p in paths):  # one order however the installation's path is spelled
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()
