"""harmonise's public `given_reader`: which spec gives a record a field's raw text, and what that text reads as,
the night's reading `rtw check` takes by a public name (tests/test_harmonise_public.py)."""

from __future__ import annotations

import pytest
from reg_mapping import reg_mapping

from etl.transform.harmonise import given_reader
from etl.transform.values import ValueRejected


def test_given_reader_says_which_spec_gives_a_record_its_value_and_reads_it():
    mapping = reg_mapping("""
null_values: ["", "NK"]
patient:
  from: REG
  fields:
    birth_date:
      type: date
      first_of:
        - {column: dob, format: "%d/%m/%Y"}
        - {template: "{anio}-{mes}", format: "%Y-%m"}
""")
    spec = mapping.patient.fields["birth_date"]
    full, month = spec.alternatives()
    reader = given_reader(mapping)
    assert reader.given(spec, {"dob": " 03/04/2011 ", "anio": "2011", "mes": "04"}) == (full, "03/04/2011")
    assert reader.given(spec, {"dob": "NK", "anio": "2011", "mes": "04"}) == (month, "2011-04")
    assert reader.given(spec, {"dob": "", "anio": "NK", "mes": "NK"}) is None
    assert str(reader.convert(month, "2011-04").value) == "2011-04-01"
    assert ValueRejected in reader.refused
    with pytest.raises(reader.refused):
        reader.convert(full, "31/02/2011")
