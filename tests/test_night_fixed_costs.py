"""A night's fixed costs: what every `rtw run` pays whatever changed, cut without changing what it writes."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Any

from conftest import SMALL_RUN_KEY
from shared_build import copy_of

from etl import pipeline, publish_outputs


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


def test_publish_leaves_out_of_its_collections_what_was_alive_before_it_as_the_dags_publish_task_calls_it(
        small_run: Any, tmp_path: Path) -> None:
    # The DAG's publish task runs publish_run in a process of its own, outside `run`: Airflow's, the DAG's and the
    # libraries' objects (210,000) took 0.3-0.5 s a collection there.
    home = copy_of(small_run, tmp_path)
    planned = pipeline.plan(home, key_value=SMALL_RUN_KEY)
    frozen: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            frozen.append(gc.get_freeze_count())

    gc.callbacks.append(seen)
    try:
        summary = pipeline.publish_run(home, planned, [], trigger="airflow")
    finally:
        gc.callbacks.remove(seen)
    assert summary.status == "completed"
    assert frozen and min(frozen) > 0, frozen
    assert gc.get_freeze_count() == 0


def _open_here(path: Path) -> bool:
    """Whether this process holds `path` open (DuckDB holds a database's file open while it is open)."""
    target = str(path.resolve())
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
    return False


def test_a_changed_night_reads_the_warehouse_through_databases_held_open(small_run: Any, tmp_path: Path,
                                                                        monkeypatch) -> None:
    # A connect to a 20,000-person warehouse was 25-190 ms: harmonise's reads of the live warehouse (4) and the
    # outputs' of the published one (4) are DuckDB's open database when one is held, at no cost.
    home = copy_of(small_run, tmp_path)
    export = next((home.landing / "registry_it").glob("*.csv"))
    lines = export.read_bytes().split(b"\r\n")
    column = lines[0].split(b";").index(b"data_ultimo_contatto")
    fields = lines[1].split(b";")
    fields[column] = b"30/10/2026"  # a later last contact, as bench.py's 1%-changed night
    lines[1] = b";".join(fields)
    export.write_bytes(b"\r\n".join(lines))
    held: dict[str, bool] = {}

    def seeing(name: str, module: Any, function: str) -> None:
        original = getattr(module, function)

        def spied(*args: Any, **kwargs: Any) -> Any:
            held[name] = _open_here(home.warehouse)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, function, spied)

    seeing("harmonise", pipeline, "harmonise_to_folder")
    seeing("marts", publish_outputs, "export_parquet")
    seeing("report", publish_outputs, "build_report")
    summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
    assert summary.sources_changed == ["registry_it"] and summary.validated and not summary.notes
    assert held == {"harmonise": True, "marts": True, "report": True}
    assert not _open_here(home.warehouse)  # every one closed by the run's end
