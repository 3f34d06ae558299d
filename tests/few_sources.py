"""A home cut to the few sources a DAG test is about: each source more is five mapped tasks a night (wait, pull,
extract, harmonise, verdict), its share of publish, and its `rtw run`."""

from __future__ import annotations

import shutil
from pathlib import Path

from etl.config import SOURCES_DIR, Home


def mappings_of(folder: Path, *source_ids: str) -> dict[str, str]:
    """A new folder holding the checkout's mappings of these sources alone, and the Airflow Variable rtw_sources_dir
    that points the DAG's tasks and sensors at it (`rtw` reads RTW_SOURCES_DIR instead)."""
    folder.mkdir(parents=True)
    for source_id in source_ids:
        shutil.copy2(SOURCES_DIR / f"{source_id}.yaml", folder)
    return {"AIRFLOW_VAR_RTW_SOURCES_DIR": str(folder)}


def few_sources(home: Home, folder: Path, *source_ids: str) -> dict[str, str]:
    """mappings_of, and the home's landing holding these sources' exports alone (else each night notices a landing
    folder without a mapping)."""
    for landing in home.landing.iterdir():
        if landing.name not in source_ids:
            shutil.rmtree(landing)
    return mappings_of(folder, *source_ids)
