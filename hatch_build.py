"""Builds the package's one C extension, `etl.extract._odm_walk` (ODM's hot loop in C).

Hatchling runs this for every wheel: for an editable one (`uv sync`, `make install`) the extension
is compiled in place, beside its source, where the checkout imports it from; for a wheel to install
elsewhere, under build/ and into the wheel. It is compiled against lxml's own headers (lxml ships
them, with libxml2's). Where it cannot be compiled (no C compiler, no Python headers), the build says
so and goes on: ODM exports are then read in Python, the same rows more slowly
(`tests/test_odm_chunks.py::test_the_c_walk_is_built` fails there).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXTENSION, SOURCE = "etl.extract._odm_walk", "etl/extract/_odm_walk.c"


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        import lxml
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext

        build = Path(self.root) / "build"
        extension = Extension(EXTENSION, [SOURCE], include_dirs=lxml.get_include(), extra_compile_args=["-O2"])
        command = build_ext(Distribution({"ext_modules": [extension], "script_name": "hatch_build.py"}))
        # Only an editable install writes over the checkout's copy, which a running reader may have mapped.
        command.inplace = version == "editable"
        command.build_temp, command.build_lib = str(build / "temp"), str(build / "lib")
        command.ensure_finalized()
        try:
            command.run()
        except Exception as error:  # the reader falls back to Python: slower, not wrong
            print(f"hatch_build: {EXTENSION} not built ({error}); ODM subjects will be read in Python",
                  file=sys.stderr)
            return
        if not command.inplace:
            built = Path(command.get_ext_fullpath(EXTENSION))
            build_data["force_include"][str(built)] = f"etl/extract/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
