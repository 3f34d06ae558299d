"""Child populations per country and year: the denominators of marts.incidence.

The table is a CSV with one row per country and year: `country` (ISO 3166-1 alpha-2, as the registries write
it: GR and GB, not Eurostat's EL and UK), `year`
(the population on 1 January), `age_band` (completed years, e.g. `0-17`; one band per country),
`population` (persons) and `source` (where the figure comes from, or how it was approximated).
The package ships one (`reference/child_population.csv`, docs/endpoints.md says how it was
built); a deployment replaces it with `<home>/reference/child_population.csv`, e.g. an extract of
Eurostat `demo_pjan` or of its national statistics office. Publish copies the table into
`stage.child_population`, so that a later rebuild of the marts (`rtw forget`) uses the same figures.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pandas as pd

from etl.load.countries import ISO_3166_ALPHA2
from etl.resources import data_root

FILE_NAME = "child_population.csv"
COLUMNS = ["country", "year", "age_band", "population", "source"]
_BAND = re.compile(r"^(\d{1,2})-(\d{1,2})$")
# Eurostat's own geo codes (demo_pjan writes Greece EL, the United Kingdom UK): figures under them would match
# no case, the registries writing the ISO code.
_EUROSTAT_CODES = {"EL": "GR", "UK": "GB"}


class PopulationTableError(ValueError):
    """The population table cannot be used; the message names the file, row and field."""


def default_population_file() -> Path:
    """The table shipped with the package."""
    return data_root() / "reference" / FILE_NAME


def population_file(home_root: Path) -> Path:
    """`<home>/reference/child_population.csv` when the deployment keeps one, else the shipped table."""
    own = home_root / "reference" / FILE_NAME
    return own if own.is_file() else default_population_file()


def read_child_population(path: Path) -> pd.DataFrame:
    """The table, checked: every column present, a known band, a positive whole population, one band
    and one row per country and year. Adds `min_age_years` and `max_age_years` from the band."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as error:
        raise PopulationTableError(f"{path}: cannot read the population table: {error}") from error
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise PopulationTableError(f"{path}: the columns {missing} are missing; expected {COLUMNS}")
    rows = []
    for line, row in enumerate(table[COLUMNS].itertuples(index=False), start=2):
        country, year, band, population, source = (str(v).strip() for v in row)
        where = f"{path}, line {line}"
        if country not in ISO_3166_ALPHA2:
            hint = (f"Eurostat's code; the registries write {_EUROSTAT_CODES[country]}"
                    if country in _EUROSTAT_CODES else "e.g. IT")
            raise PopulationTableError(f"{where}: country '{country}' is not an ISO 3166-1 alpha-2 code ({hint})")
        if not re.fullmatch(r"\d{4}", year):
            raise PopulationTableError(f"{where}: year '{year}' is not a calendar year (e.g. 2019)")
        found = _BAND.match(band)
        if found is None or int(found[1]) > int(found[2]):
            raise PopulationTableError(f"{where}: age_band '{band}' is not a range of completed years (e.g. 0-17)")
        if not population.isdigit() or int(population) == 0:
            raise PopulationTableError(f"{where}: population '{population}' is not a positive whole number")
        if not source:
            raise PopulationTableError(f"{where}: source is empty; name where the figure comes from")
        rows.append((country, int(year), band, int(population), source, int(found[1]), int(found[2])))
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "min_age_years", "max_age_years"])
    bands = frame.groupby("country").age_band.nunique()
    if (bands > 1).any():
        raise PopulationTableError(f"{path}: one age band per country, but {sorted(bands[bands > 1].index)} "
                                   "have several")
    repeated = frame[frame.duplicated(["country", "year"])]
    if len(repeated):
        first = repeated.iloc[0]
        raise PopulationTableError(f"{path}: {first.country} {first.year} is given twice")
    return frame


def population_digest(frame: pd.DataFrame) -> str:
    """Changes when a figure does: a new table must rebuild the marts."""
    return hashlib.sha256(frame[COLUMNS].to_csv(index=False).encode()).hexdigest()


def write_child_population(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    """Replace stage.child_population with this table."""
    con.execute("CREATE SCHEMA IF NOT EXISTS stage")
    con.register("child_population_frame", frame)
    try:
        con.execute("CREATE OR REPLACE TABLE stage.child_population AS SELECT CAST(country AS VARCHAR) AS country, "
                    "CAST(year AS INTEGER) AS year, CAST(age_band AS VARCHAR) AS age_band, "
                    "CAST(population AS BIGINT) AS population, CAST(source AS VARCHAR) AS source, "
                    "CAST(min_age_years AS INTEGER) AS min_age_years, CAST(max_age_years AS INTEGER) AS max_age_years "
                    "FROM child_population_frame")
    finally:
        con.unregister("child_population_frame")
