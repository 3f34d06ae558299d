"""One rule for a malignant tumour: the behaviours harmonise lets into the warehouse (etl/transform/icdo3.py) and
the ones the marts count as malignant (is_malignant, warehouse/mart_functions.sql) are the same definition."""

from __future__ import annotations

import duckdb
import pytest
from endpoints_expected import MALIGNANT

from etl.config import WAREHOUSE_SQL_DIR
from etl.quality.sql_checks import rule_functions_sql
from etl.quality.validate import write_source_params
from etl.transform.icdo3 import MALIGNANT_BEHAVIOUR, VALID_BEHAVIOURS, IcdO3Error, parse_morphology


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(rule_functions_sql())  # period_end, which mart_functions.sql's macros read
    con.execute((WAREHOUSE_SQL_DIR / "core.sql").read_text())  # which its table macros read
    write_source_params(con, {})
    con.execute((WAREHOUSE_SQL_DIR / "mart_functions.sql").read_text())
    return con


@pytest.mark.parametrize("behaviour", [None, *"0123456789"])
def test_is_malignant_counts_the_one_malignant_behaviour_the_warehouse_holds(con, behaviour):
    # /6 and /9 were counted too, though harmonise never lets them in: the macro said what the warehouse is not
    assert con.execute("SELECT is_malignant(?)", [behaviour]).fetchone() == (behaviour == MALIGNANT_BEHAVIOUR,)


@pytest.mark.parametrize("code", ["9500/6", "9500/9"])
def test_a_metastatic_or_uncertain_behaviour_never_reaches_the_warehouse(code):
    assert MALIGNANT_BEHAVIOUR in VALID_BEHAVIOURS and not {"6", "9"} & VALID_BEHAVIOURS
    with pytest.raises(IcdO3Error, match="code the primary tumour, malignant /3"):
        parse_morphology(code)
    with pytest.raises(IcdO3Error, match="code the primary tumour, malignant /3"):
        parse_morphology("9500", code[-1])


def test_the_pandas_restatement_counts_the_same_one_malignant_behaviour():
    # tests/endpoints_expected.py still counted /6 and /9, which the warehouse never holds
    assert {MALIGNANT_BEHAVIOUR} == MALIGNANT
