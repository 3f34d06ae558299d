"""The shipped mappings' dates read what their readers stage: an Excel date cell formatted to show a month or a year
stages as `2017-05` or `2017` (etl/extract/excel_shown.py), so an Excel source's field written as a month or a year
reads that too. A hunt: the crizotinib trial's month and year of birth, `%m/%Y` only, quarantined every patient whose
site typed "05/2017" into a cell Excel made a month-formatted date."""

from __future__ import annotations

import pytest

from etl.transform.mapping import as_formats, load_mappings
from etl.transform.values import parse_date

MAPPINGS = load_mappings()


def _date_fields(source_id: str) -> list[tuple[str, tuple[str, ...]]]:
    mapping = MAPPINGS[source_id]
    specs = [("patient", mapping.patient), *mapping.tables.items()]
    return [(f"{table}.{name}", as_formats(field.format or mapping.date_format))
            for table, spec in specs for name, field in spec.fields.items() if field.type == "date"]


@pytest.mark.parametrize("source_id", sorted(s for s, m in MAPPINGS.items() if m.format == "excel"))
def test_an_excel_source_reads_a_month_or_year_as_its_date_cells_stage_it(source_id: str) -> None:
    for field, formats in _date_fields(source_id):
        if any("%d" not in fmt for fmt in formats):  # the field takes a month or a year
            assert parse_date("2017-05", formats).precision == "month", field
