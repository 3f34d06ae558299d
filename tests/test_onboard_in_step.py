"""A follow-up table without a visit number repeats each patient's number, birth date and initials on every visit:
rtw profile showed them (`A160721575 ×6`, `03.02.10 ×6`) and rtw scaffold copied them into a draft's code lists, as
no name or shape told them (an insurance number KVNR, a birth date written dd.mm.yy, GebDat). Columns whose values
repeat in step, one to one, are a patient's own: hidden, whatever their names."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from etl.onboard.profile import columns_in_step, profile_file
from etl.onboard.reading import read_file


def _follow_up(path: Path) -> tuple[list[str], list[str]]:
    """8 patients x 6 visits on their own dates; the patients' insurance numbers and birth dates."""
    rng = random.Random(3)
    rows, numbers, births = ["KVNR;GebDat;Datum;Status;Geschlecht;Zentrum;Standort"], [], []
    for patient in range(8):
        number = f"A{rng.randint(10 ** 8, 10 ** 9 - 1)}"
        born = f"{patient + 1:02d}.0{patient % 9 + 1}.{patient + 5:02d}"
        numbers.append(number)
        births.append(born)
        centre = ["MUC", "BER"][patient % 2]
        for _visit in range(6):
            day = f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2024"
            rows.append(f"{number};{born};{day};{rng.choice(['stabil', 'progress', 'CR'])};{'mw'[patient % 2]};"
                        f"{centre};Klinik {centre}")  # a centre and its place, in step: two values
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    return numbers, births


def test_a_patient_s_values_repeated_in_step_on_every_visit_are_hidden(tmp_path: Path) -> None:
    path = tmp_path / "Verlauf_20261101.csv"
    numbers, births = _follow_up(path)
    (record_set,) = profile_file(read_file(path)).record_sets
    shown = {c.name: c for c in record_set.columns}
    for name in ("KVNR", "GebDat"):
        assert shown[name].top_values == () and "repeats in step" in str(shown[name].hidden_reason), name
    every_value = " ".join(v.value for c in record_set.columns for v in c.top_values)
    assert not any(n in every_value or b in every_value for n, b in zip(numbers, births, strict=True))
    # A sex, a status, a centre and its name (two values, in step) stay shown: too few values to name anyone.
    assert all(shown[name].top_values for name in ("Status", "Geschlecht", "Zentrum", "Standort"))


def test_columns_are_in_step_one_to_one_only():
    frame = pd.DataFrame({"a": [str(i // 2) for i in range(12)], "b": [f"x{i // 2}" for i in range(12)],
                          "c": [str(i // 2 % 3) for i in range(12)], "d": [str(i) for i in range(12)]})
    assert columns_in_step(frame, ["a", "b", "c", "d"]) == {"a", "b"}  # c: 3 values; d: no repeats
