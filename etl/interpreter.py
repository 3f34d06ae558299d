"""The command of a new Python process of the run's own code: one that finds modules where the run does.

`python -m module` and `python -c code` put the folder they start in first on their module path: a run started
from a checkout of another version of the package (a data manager's `cd` before `rtw run`) had its source
workers, its GX process and its ODM reader import that copy's `etl` beside the run's own, and anything there
named as a module they import (`json.py`, `pickle.py`). These commands start an interpreter that puts no folder
of its own first (-P) and is given the run's module path first (sys.path, as JSON on the command line: folders,
nothing of the data; the folder a `python -c` run started in, which its path holds as '', as that folder). The
PYTHON* settings of the environment hold for it as for the run (PYTHONDONTWRITEBYTECODE, PYTHONHASHSEED, ...).
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["code_command", "module_command"]

_ON_THE_RUN_S_PATH = "import json, sys; sys.path[:0] = json.loads(sys.argv.pop(1))\n"
_RUN_MODULE = "import runpy; runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"


def module_command(module: str, *arguments: str) -> list[str]:
    """`python -m module arguments...` on the run's module path: the module runs as __main__, its
    sys.argv[1:] the `arguments`."""
    return [sys.executable, "-P", "-c", _ON_THE_RUN_S_PATH + _RUN_MODULE, _module_path(), module, *arguments]


def code_command(code: str, *arguments: str) -> list[str]:
    """`python -c code arguments...` on the run's module path: the code's sys.argv[1:] the `arguments`."""
    return [sys.executable, "-P", "-c", _ON_THE_RUN_S_PATH + code, _module_path(), *arguments]


def _module_path() -> str:
    # An entry that is no text (a Path appended by a plugin) is passed over by imports, and here; '' is the folder
    # the run started in, which the child shares
    return json.dumps([os.path.abspath(entry) for entry in sys.path if isinstance(entry, str)])
