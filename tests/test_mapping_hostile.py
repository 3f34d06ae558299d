"""Mappings a data manager may write without seeing what YAML or the parser makes of them: each is refused
when it loads, naming the file, the key (and line) and what to write instead; values are read as written."""

from pathlib import Path

import pytest

from etl.transform.mapping import MappingError, load_mapping
from etl.transform.values import ValueRejected, parse_date

MAPPING = """\
source_id: reg_test
title: a test registry
format: csv
files: "*.csv"
record_set: REG
patient_key: pid
record_key: "REG[{{rid}}]"
date_format: {date_format}
patient:
  from: REG
  fields:
    sex: {{column: sex, codes: {sex_codes}}}
tables:
  diagnosis:
    from: REG
    fields:
      diagnosis_date: {{column: diag, type: date}}
      {field}
"""


def _load(tmp_path: Path, *, sex_codes: str = '{"1": male, "2": female}', date_format: str = '"%d/%m/%Y"',
          field: str = "laterality: {column: side}") -> object:
    path = tmp_path / "reg_test.yaml"
    path.write_text(MAPPING.format(sex_codes=sex_codes, date_format=date_format, field=field))
    return load_mapping(path)


def _refused(tmp_path: Path, **given: str) -> str:
    with pytest.raises(MappingError) as caught:
        _load(tmp_path, **given)
    assert str(tmp_path / "reg_test.yaml") in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(("text", "fmt"), [
    ("201912", "%Y%m%d"),  # read as 2 January 2019
    ("2019123", "%Y%m%d"),  # 3 December or 23 January
    ("1122019", "%d%m%Y"),  # 11 February or 1 December
])
def test_a_compact_date_reads_two_digit_days_and_months_only(text, fmt):
    with pytest.raises(ValueRejected, match="is not a date written"):
        parse_date(text, fmt)


def test_a_compact_date_written_whole_and_a_separated_one_digit_day_are_read():
    assert parse_date("20190517", "%Y%m%d").value.isoformat() == "2019-05-17"
    assert parse_date("01122019", "%d%m%Y").value.isoformat() == "2019-12-01"
    assert parse_date("UK052019", "%d%m%Y").precision == "month"
    assert parse_date("5/1/2019", "%d/%m/%Y").value.isoformat() == "2019-01-05"
    assert parse_date("2019-5", "%Y-%m-%d").precision == "month"


@pytest.mark.parametrize("formats", ['["%d/%m/%Y", "%m/%d/%Y"]', '["%m%d%Y", "%Y", "%d%m%Y"]'])
def test_date_formats_giving_day_and_month_in_either_order_are_refused(tmp_path, formats):
    message = _refused(tmp_path, date_format=formats)
    assert "date_format: " in message and "give day and month in either order" in message
    field = f"report_date: {{column: r, type: date, format: {formats}}}"
    assert "fields.report_date.format: " in _refused(tmp_path, field=field)


def test_date_formats_of_one_order_load():
    # dd.mm.yyyy beside mm/yyyy and yyyy, or dots beside slashes, read no value two ways.
    for formats in (["%d.%m.%Y", "%m.%Y", "%Y"], ["%d.%m.%Y", "%m/%d/%Y"]):
        assert parse_date("03.04.2019", tuple(formats)).value.isoformat() == "2019-04-03"
