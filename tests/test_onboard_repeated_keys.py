"""`rtw check` counts the records whose key repeats an earlier record's as the nightly run does: it fills the record
key by harmonise's own `fill_key` (values stripped, `{record_set}` the record set's name), so a key padded with
spaces or written in a record set's own template is a repeat in both or in neither."""

from __future__ import annotations

from functools import partial

import pytest
from read_records import records_of

from etl.onboard.check import check_record_sets
from etl.transform.harmonise import KEY_UNIQUE, harmonise_source
from etl.transform.mapping import SourceMapping
from etl.transform.pseudonym import PseudonymKey


def _mapping(record_key: str, record_keys: dict[str, str]) -> SourceMapping:
    return SourceMapping.model_validate({
        "source_id": "nrx", "title": "NRX", "format": "csv", "files": "NRX_*.csv", "patient_key": "pat_nr",
        "record_set_from_file": r"NRX_(?P<record_set>[A-Z]+)\.csv",
        "record_key": record_key, "record_keys": record_keys,
        "patient": {"from": "PAC", "fields": {"country": {"const": "ES"}}},
        "tables": {"follow_up": {"from": "SEG", "fields": {"contact_date": {"column": "fecha", "type": "date",
                                                                             "format": "%d/%m/%Y"}}}}})


_frame = partial(records_of, file_name="NRX.csv")


@pytest.mark.parametrize(("record_key", "record_keys"), [
    ("{record_set}[{visita}]", {"PAC": "{record_set}"}),
    ("{record_set}", {"SEG": "visit {visita}/{centro}"}),
])
def test_check_counts_the_repeated_keys_the_night_quarantines(record_key, record_keys):
    mapping = _mapping(record_key, record_keys)
    patients = _frame([{"pat_nr": f"NRX-{p}"} for p in range(3)])
    # ' 1' and '1' are one key once stripped; so are ' NRX-0' and 'NRX-0'; '1' at another centre is not.
    visits = _frame([{"pat_nr": pat, "visita": visit, "centro": centre, "fecha": "01/02/2020"}
                     for pat, visit, centre in [("NRX-0", "1", "ES01"), ("NRX-0", " 1", "ES01"),
                                                (" NRX-0", "1 ", "ES01"), ("NRX-0", "1", "ES02"),
                                                ("NRX-1", "2", "ES01"), ("NRX-1", "2", "ES01")]])
    record_sets = {"PAC": patients, "SEG": visits}
    night = harmonise_source(mapping, record_sets, PseudonymKey(b"k"), "run-1")
    quarantined = int((night.rejections["rule_id"] == KEY_UNIQUE).sum())
    repeated = [f for f in check_record_sets(mapping, record_sets) if "repeat the key of an earlier" in f.message]
    said = record_keys.get("SEG", record_key)
    expected = 3 if "centro" in said else 4
    assert quarantined == expected
    assert len(repeated) == 1 and repeated[0].message.startswith(f"{quarantined} of 6 records repeat the key")
