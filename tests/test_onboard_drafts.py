"""What `rtw scaffold` drafts from small inline columns: sex codes, privacy, keys."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from etl.onboard.profile import profile_column
from etl.onboard.scaffold import field_line


def _sex_codes(values: list[str]) -> dict[str, str]:
    spec, _ = field_line(profile_column("sexo", pd.Series(values)), None, True, sex=True)
    return yaml.safe_load(spec)["codes"]


@pytest.mark.parametrize(("values", "expected"), [
    (["H"] * 6 + ["M"] * 6, {"H": "male", "M": "female"}),  # Spanish: hombre / mujer
    (["M"] * 6 + ["F"] * 6, {"M": "male", "F": "female"}),
    (["M"] * 6 + ["W"] * 6, {"M": "male", "W": "female"}),  # German: männlich / weiblich
    (["M"] * 6 + ["X"] * 6, {"M": "TODO", "X": "TODO"}),  # M alone: male or mujer?
    (["1"] * 6 + ["2"] * 6 + ["9"] * 5, {"1": "male", "2": "female", "9": "unknown"}),
])
def test_sex_codes_are_drafted_by_the_column_s_other_codes(values, expected):
    assert _sex_codes(values) == expected


def test_two_codes_are_never_drafted_to_the_same_sex():
    from etl.onboard.scaffold import sex_values

    assert sex_values([("1", "Male"), ("M", None), ("F", None)]) == [("1", "TODO"), ("M", "TODO"), ("F", "female")]
    assert sex_values([("H", None), ("M", None), ("F", None)]) == [("H", "male"), ("M", "TODO"), ("F", "female")]
    assert sex_values([("V", "hombre"), ("M", "mujer")]) == [("V", "male"), ("M", "female")]
