"""An SPSS date of 0 (SPSS's day 0, 1582-10-14: a date left empty and typed as 0) in a registry's nightly file:
`rtw run` says so in the source's notices and quarantines the record rather than load the date; listed in
the mapping's `null_values` (a text no other value has, unlike "0"), the date loads as unknown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import test_registry_spss_stata as registry
from warehouse_query import query_rows

pytestmark = pytest.mark.integration


def test_a_date_typed_as_0_is_said_and_quarantined_unless_the_mapping_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = list(registry.CASES)
    dead = list(cases[1])
    dead[9], dead[11] = 2, registry.SPSS_EPOCH.date()  # status dead, date of death typed as 0
    cases[1] = tuple(dead)
    monkeypatch.setattr(registry, "CASES", cases)
    home, sources = registry._home(tmp_path, "spss")

    done = registry.rtw_run(home, sources)
    assert done.returncode == 0, done.stdout + done.stderr
    notices = [n for (n,) in query_rows(home, "SELECT notice FROM meta.source_notice") if "date 0" in n]
    assert notices == ["NRT_20261201.sav: 1 value(s) of overleden (DATE11) are 0, SPSS's date 0 (1582-10-14): no "
                       "date entered? (a date left empty and typed as 0, or computed from one); read as a date, it "
                       "quarantines its record as a date before 1900 (XT-DATE-NOT-BEFORE-1900) unless the "
                       'mapping\'s null_values lists "1582-10-14"']
    (reasons,) = query_rows(home, "SELECT reasons FROM dq.quarantine WHERE list_contains(rule_ids, "
                                  "'XT-DATE-NOT-BEFORE-1900')")
    assert reasons[0] == ["follow_up.death_date 1582-10-14 is SPSS's date 0, before 1900: no date entered? (the "
                          'mapping\'s null_values can name "1582-10-14")']

    mapping = sources / "nrt_nl.yaml"
    mapping.write_text(mapping.read_text().replace('null_values: ["", "999"]',
                                                   'null_values: ["", "999", "1582-10-14"]'))
    done = registry.rtw_run(home, sources)
    assert done.returncode == 0, done.stdout + done.stderr
    assert query_rows(home, "SELECT count(*) FROM dq.quarantine") == [(0,)]
    assert query_rows(home, "SELECT vital_status, death_date FROM core.follow_up WHERE vital_status = 'dead' "
                            "ORDER BY death_date") == [("dead", dt.date(2021, 2, 14)), ("dead", None)]
