"""The marts bound their origins all at once (origin_known() joined on the patient and origin_bounded_by, the least day
per origin), which gives what origin_known_by gives each origin alone: the day it is known to have come by, NULL when
none is."""

from __future__ import annotations

from test_mart_functions import _known_origins, _with_macros

from etl.load.marts import _code, _functions_sql, _marts

# Origins (patient, first day, by_diagnoses): on the day of a treatment start, a progression, before and after
# everything, of a patient with nothing known, a date error (a treatment before the origin).
_ORIGINS = ("(VALUES ('P1', DATE '2021-01-01', true), ('P1', DATE '2021-01-01', false), "
            "        ('P1', DATE '2021-03-10', true), ('P1', DATE '2021-03-10', false), "
            "        ('P1', DATE '2021-06-01', true), ('P1', DATE '2021-06-01', false), "
            "        ('P1', DATE '2019-01-01', false), ('P1', DATE '2022-01-01', true), "
            "        ('P2', DATE '2022-05-01', true), ('P2', DATE '2022-05-01', false), ('P3', DATE '2022-05-01', true)"
            ") AS origin (patient_id, first_day, by_diagnoses)")


def test_the_grouped_bound_of_every_origin_is_origin_known_by_of_each():
    warehouse = _known_origins()
    warehouse.relapse("P1", "2021-03-01", "month")  # an event on its first day, a diagnosis by its last
    con = _with_macros(warehouse).con
    each = con.execute(
        "SELECT origin.*, bound.known_on FROM " + _ORIGINS
        + " CROSS JOIN LATERAL origin_known_by(origin.patient_id, origin.first_day, origin.by_diagnoses) AS bound "
          "ORDER BY ALL").fetchall()
    grouped = con.execute(
        "SELECT origin.*, bound.known_on FROM " + _ORIGINS + " LEFT JOIN ("
        "  SELECT origin.patient_id, origin.first_day, origin.by_diagnoses, min(known.known_on) AS known_on "
        "  FROM " + _ORIGINS + " JOIN origin_known() AS known ON known.patient_id = origin.patient_id "
        "   AND origin_bounded_by(known.known_on, known.is_event, origin.first_day, origin.by_diagnoses) "
        "  GROUP BY ALL) AS bound USING (patient_id, first_day, by_diagnoses) ORDER BY ALL").fetchall()
    assert grouped == each
    assert sum(known_on is None for *_, known_on in each) == 4  # after everything, nothing known, P2 events only


def test_no_mart_bounds_its_origins_one_lateral_join_at_a_time():
    # A lateral join per origin was a sixth of marts.survival's time: the marts and their macros join once.
    code = [_code(_functions_sql()), *(_code(mart.sql) for mart in _marts())]
    assert not any("LATERAL origin_known_by" in " ".join(text.split()) for text in code)
    # mart_functions.sql (incidence_registered()), patient_summary, survival
    assert sum("origin_bounded_by(" in text for text in code) == 3
