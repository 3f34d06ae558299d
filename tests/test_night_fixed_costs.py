"""A night's fixed costs: what every `rtw run` pays whatever changed, cut without changing what it writes."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline


def test_the_collector_leaves_out_what_was_alive_before_the_run_and_takes_it_back_after(small_run: Any,
                                                                                       tmp_path: Path) -> None:
    # The libraries' objects (pandas, DuckDB, pydantic: 87,000 at the CLI's start) are not walked by the
    # night's collections: one walk of them was 41 ms of a 0.24 s unchanged night at 2,000 persons, and
    # publish's two collections 0.5-0.8 s of a 1%-changed night at 20,000 persons.
    home = copy_of(small_run, tmp_path)
    frozen: list[int] = []
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY, progress=lambda _: frozen.append(gc.get_freeze_count()))
    assert summary.sources_changed == [] and summary.status == "completed"
    assert frozen and min(frozen) > 0, frozen
    assert gc.get_freeze_count() == 0  # a caller's process (a test session) collects them again after
