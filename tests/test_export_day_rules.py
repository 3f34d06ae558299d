"""A rule that judges a record by its export's day reads the export the record is in now (stage.record), not
the one that first delivered its rows: an unchanged patient's harmonised rows are carried over, keeping that
older export as their lineage (etl/transform/carry_over.py), so a rule reading the day through a row's
source_file_sha256 judged a carried-over record against an export the source has since replaced, while a fresh
load of the same exports judged it against the new one.

Two layers: every such rule on a hand-made stage whose rows were carried over from an earlier export; and a
home living through two exports around a year boundary, compared after each night with a fresh home loaded once
from the same landing folder (as tests/test_incremental_equals_full.py does).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from conftest import SMALL_RUN_KEY
from rule_stage import carried_over, flagged, stage
from shared_build import copy_of
from test_incremental_equals_full import Rows, _fresh_copy, _registry_it, _set, differences

from etl import pipeline
from etl.config import Home

EARLIER, NOW = date(2026, 12, 30), date(2027, 1, 2)  # the exports either side of a new year


# -- the rules on a hand-made stage ----------------------------------------------------------------

def test_a_carried_over_contact_is_not_after_the_export_it_is_in_now():
    con = carried_over(stage({"follow_up": [{"follow_up_id": k, "source_record_key": k, "contact_date": seen}
                                            for k, seen in (("new-year-eve", date(2026, 12, 31)),
                                                            ("after-now", date(2027, 1, 3)))]},
                             exported_on=NOW), EARLIER)
    assert set(flagged(con, "XT-DATE-NOT-AFTER-EXPORT")) == {"after-now"}


def test_a_carried_over_birth_year_is_as_plausible_as_the_export_it_is_in_now_says():
    """Born in 1986: within 40 years of an export of 2026, not of one of 2027."""
    con = carried_over(stage({"patient_source": [
        {"source_record_key": f"born-{year}", "source_patient_pseudonym": f"s{year}", "link_method": "exact",
         "birth_year": year} for year in (1986, 1987)]}, exported_on=NOW), EARLIER)
    assert set(flagged(con, "XT-BIRTH-YEAR-PLAUSIBLE")) == {"born-1986"}


# -- nights around a year boundary, against a fresh load --------------------------------------------

BORN_1986 = "2"  # the registry record (one row per patient) whose year of birth is made 1986
Differences = dict[str, tuple[list, list]]


def _born_1986(rows: Rows) -> None:
    # diagnosed at 10, a child as the registry registers
    _set(rows, "id_record", BORN_1986, "data_nascita", "06/03/1986")
    _set(rows, "id_record", BORN_1986, "data_diagnosi", "24/06/1996")


def _another_patient_noted(rows: Rows) -> None:
    # the source changes, the patient born in 1986 does not: their rows are carried over
    _set(rows, "id_record", "4", "note", "Rivisto al controllo di gennaio.")


NIGHTS = {"2026-12-30": _born_1986, "2027-01-02": _another_patient_noted}


def _birth_years_flagged(home: Home) -> set[str]:
    """The years of birth XT-BIRTH-YEAR-PLAUSIBLE flagged in the registry by the home's last run."""
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return {v for (v,) in con.execute("SELECT value FROM dq.issue WHERE rule_id = 'XT-BIRTH-YEAR-PLAUSIBLE' "
                                          "AND source_id = 'registry_it' "
                                          "AND run_id = (SELECT max(run_id) FROM meta.run)").fetchall()}


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, small_run: Home) -> dict[str, tuple[Differences, set[str]]]:
    """Per night (its TREP export's day), on a copy of the session's small first run: what the incremental
    home's warehouse holds that a fresh one does not, and back; and the years of birth the incremental home
    found implausible."""
    root = tmp_path_factory.mktemp("export_day")
    home = copy_of(small_run, root)
    found = {}
    for day, edit in NIGHTS.items():
        _registry_it(home, day.replace("-", ""), edit)
        summary = pipeline.run(home, key_value=SMALL_RUN_KEY)
        assert (summary.sources_changed, summary.sources_failed) == (["registry_it"], []), (day, summary)
        fresh = _fresh_copy(home, root / day, SMALL_RUN_KEY)
        found[day] = (differences(home.warehouse, fresh.warehouse), _birth_years_flagged(home))
    return found


@pytest.mark.integration
@pytest.mark.parametrize("day", list(NIGHTS))
def test_a_night_across_the_new_year_leaves_what_a_full_load_of_its_exports_leaves(
        nights: dict[str, tuple[Differences, set[str]]], day: str) -> None:
    differing = {name: {"only incremental": inc[:5], "only full": full[:5]}
                 for name, (inc, full) in nights[day][0].items()}
    assert differing == {}


@pytest.mark.integration
def test_a_birth_year_carried_over_into_the_new_year_is_judged_by_it(
        nights: dict[str, tuple[Differences, set[str]]]) -> None:
    assert "1986" not in nights["2026-12-30"][1]
    assert "1986" in nights["2027-01-02"][1]
