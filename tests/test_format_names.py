"""A mapping's format is checked by its name, its reader alone imported: checking each mapping imported every
reader (35-55 ms of every night, an unchanged one too), and adding a format keeps one table of their names."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_mapping import _refused

from etl.config import REPO_ROOT, SOURCES_DIR
from etl.extract.adapter import FORMAT_MODULES, SourceAdapter, adapter_for, adapters
from etl.extract.errors import ExtractError

READERS = {f"etl.extract.{module}" for module in FORMAT_MODULES.values()}


def test_the_format_names_are_those_of_the_readers() -> None:
    # A new reader module without its line in FORMAT_MODULES (or a line naming another module) fails here.
    import etl.extract as package

    defined: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        adapter = getattr(importlib.import_module(f"etl.extract.{info.name}"), "ADAPTER", None)
        if isinstance(adapter, SourceAdapter):
            assert adapter.format not in defined, f"two adapters for format {adapter.format!r}"
            defined[adapter.format] = info.name
    assert defined == FORMAT_MODULES
    assert list(adapters()) == sorted(FORMAT_MODULES)  # the order rtw profile tries them in, by suffix


def test_checking_a_mapping_imports_its_own_formats_reader_alone() -> None:
    code = ("import sys; from pathlib import Path; from etl.transform.mapping import load_mapping; "
            f"load_mapping(Path({str(SOURCES_DIR / 'registry_it.yaml')!r})); "
            "print(sorted(m for m in sys.modules if m.startswith('etl.extract.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    imported = set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert imported & READERS == {"etl.extract.delimited"}


def test_an_unknown_format_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    mapping = tmp_path / "registry_it.yaml"
    mapping.write_text((SOURCES_DIR / "registry_it.yaml").read_text().replace("format: csv", "format: xlsb"))
    assert "'xlsb' is not a known format; known: csv, excel, odm, sas, spss, stata" in _refused(mapping)
    with pytest.raises(ExtractError, match=r"no adapter for format 'xlsb' \(known: csv, excel, odm, sas, spss"):
        adapter_for("xlsb")
