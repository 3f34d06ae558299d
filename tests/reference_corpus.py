"""Where the public reference corpus lives: committed under tests/reference/ (see its README for
origins and licences), or wherever RTW_REFERENCE_DIR points. Tests fail, not skip, without it."""

from __future__ import annotations

import os
from pathlib import Path

REFERENCE = Path(os.environ.get("RTW_REFERENCE_DIR", Path(__file__).resolve().parent / "reference"))
assert REFERENCE.is_dir(), f"reference corpus not found at {REFERENCE}"
