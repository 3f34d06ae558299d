"""marts.incidence against counts made by hand: small warehouses with chosen cases, a population table
written for them, and the rates, with their exact Poisson intervals, worked out with scipy."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from scipy.stats import chi2

from etl.config import WAREHOUSE_SQL_DIR
from etl.load.marts import build_marts
from etl.load.populations import PopulationTableError, read_child_population, write_child_population
from etl.quality.validate import write_source_params


class Registry:
    """A warehouse with one population-based registry (exported in June 2022) and a population table."""

    def __init__(self, tmp_path: Path, populations: list[str]) -> None:
        self.con = duckdb.connect()
        for ddl in ("core.sql", "meta.sql"):
            self.con.execute((WAREHOUSE_SQL_DIR / ddl).read_text())
        write_source_params(self.con, {"registry": {"population_based": True}})
        table = tmp_path / "child_population.csv"
        table.write_text("country,year,age_band,population,source\n" + "".join(f"{row}\n" for row in populations))
        write_child_population(self.con, read_child_population(table))
        self.con.execute("INSERT INTO meta.source_file (source_id, file_name, source_file_sha256, status, exported_on) "
                         "VALUES ('registry', 'r.csv', 'x', 'loaded', DATE '2022-06-01')")
        self._n = 0

    def insert(self, table: str, **values: Any) -> None:
        self._n += 1
        row = {"source_id": "registry", "source_file_sha256": "0" * 64, "run_id": "r1",
               "source_record_key": f"{table}-{self._n}", **values}
        self.con.execute(f"INSERT INTO core.{table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         list(row.values()))

    def case(self, patient_id: str, country: str | None, diagnosed: str = "2020-05-01", subgroup: str = "XI(b)",
             age_days: int | None = 3000, *, precision: str = "day", born: tuple[int, int] | None = None,
             died: str | None = None) -> None:
        """A child of 8 (3,000 days) registered with an initial diagnosis of the subgroup, given to the precision
        (stored as the first day of its period); born: (year, month), whence the age (from the 15th), as harmonise
        computes it."""
        if born is not None:
            age_days = (date.fromisoformat(diagnosed) - date(born[0], born[1], 15)).days
        self.insert("patient", patient_id=patient_id, country=country, n_sources=1,
                    birth_year=born and born[0], birth_month=born and born[1], vital_status="dead" if died else None,
                    death_date=died, death_date_precision="day" if died else None)
        self.insert("diagnosis", diagnosis_id=f"d-{patient_id}", patient_id=patient_id, event_type="initial",
                    diagnosis_date=diagnosed, diagnosis_date_precision=precision, age_at_diagnosis_days=age_days,
                    iccc3_group=subgroup.split("(")[0], iccc3_subgroup=subgroup, icdo3_behaviour="3", is_very_rare=True)

    def rows(self, columns: str, where: str = "level = 'subgroup'") -> list[tuple[Any, ...]]:
        build_marts(self.con)
        return self.con.execute(f"SELECT {columns} FROM marts.incidence WHERE {where} "
                                "ORDER BY country NULLS LAST, iccc3_subgroup").fetchall()


ITALY_2020_2021 = ["IT,2020,0-17,1000000,x", "IT,2021,0-17,1000000,x"]


@pytest.mark.parametrize(("written", "iso"), [("EL", "GR"), ("UK", "GB")])
def test_a_population_table_with_eurostat_s_own_country_codes_is_refused(tmp_path, written, iso):
    """Eurostat's demo_pjan, the extract docs/endpoints.md suggests, writes Greece EL and the United Kingdom UK.
    Read as they were, their figures matched no case (registries write GR, GB) and the cases had no incidence."""
    table = tmp_path / "child_population.csv"
    table.write_text(f"country,year,age_band,population,source\nIT,2020,0-17,1000,x\n{written},2020,0-17,1000,x\n")
    with pytest.raises(PopulationTableError, match=rf"line 3: country '{written}' is not an ISO 3166-1 .*{iso}"):
        read_child_population(table)


def test_a_case_whose_country_is_unknown_has_a_row_and_no_incidence(tmp_path):
    """Neither the registry nor any other source gives the child's country: the case was in no row at all, and
    in no count of marts.left_out. It has a row of its own, as a country without population figures has."""
    registry = Registry(tmp_path, ITALY_2020_2021)
    registry.case("I1", "IT")
    registry.case("U1", None)
    registry.case("U2", None, diagnosed="2021-03-01", age_days=7000)  # any age: there is no band to place it in
    assert registry.rows("country, age_band, first_year, last_year, n_years, n_cases, person_years, "
                         "incidence_per_million, is_very_rare_by_incidence") == [
        ("IT", "0-17", 2020, 2021, 2, 1, 2_000_000, 0.5, True),
        (None, None, 2020, 2021, 0, 2, None, None, None)]


@pytest.mark.parametrize("n_cases", [1, 2, 3, 10, 150])
def test_the_rate_has_its_exact_poisson_interval(tmp_path, n_cases):
    """Very rare means fewer than 2 per million a year, and a rare tumour gives a few cases: 3 over 2 million
    person-years is 1.5 per million, yet 0.31 to 4.38 (exact 95%). The mart gave the rate alone. The limits are
    Garwood's: chi-square quantiles of 2n and 2n + 2 degrees of freedom, halved, over the person-years."""
    registry = Registry(tmp_path, ITALY_2020_2021)
    for n in range(n_cases):
        registry.case(f"P{n}", "IT", diagnosed=f"{2020 + n % 2}-05-01")
    ((n, person_years, rate, lower, upper),) = registry.rows(
        "n_cases, person_years, incidence_per_million, incidence_ci_lower, incidence_ci_upper")
    assert (n, person_years, rate) == (n_cases, 2_000_000, n_cases / 2)
    per_million = 1e6 / person_years
    assert lower == pytest.approx(chi2.ppf(0.025, 2 * n_cases) / 2 * per_million, rel=1e-9)
    assert upper == pytest.approx(chi2.ppf(0.975, 2 * n_cases + 2) / 2 * per_million, rel=1e-9)


def test_a_country_without_population_figures_has_no_interval(tmp_path):
    registry = Registry(tmp_path, ITALY_2020_2021)
    registry.case("F1", "FR")
    assert registry.rows("country, n_cases, incidence_ci_lower, incidence_ci_upper") == [("FR", 1, None, None)]


def test_a_diagnosis_known_to_the_year_is_aged_where_the_survival_marts_place_it(tmp_path):
    """Born in March 2002 and diagnosed "in 2020": the age was taken on 1 January 2020 (17, counted in 0-17), while
    marts.survival places the diagnosis mid-year, on 1 July 2020, when the child is 18. The age is taken on the day
    the diagnosis is placed on, bounded as the survival marts bound it: a child who died on 10 February 2020 was
    diagnosed by then, at 17, and counts. marts.left_out counts the child of 18."""
    registry = Registry(tmp_path, ITALY_2020_2021)
    registry.case("Y1", "IT", diagnosed="2020-01-01", precision="year", born=(2002, 3))
    registry.case("Y2", "IT", diagnosed="2020-01-01", precision="year", born=(2002, 3), died="2020-02-10")
    registry.case("M1", "IT", diagnosed="2020-03-01", precision="month", born=(2002, 3))  # placed on 16 March: 18
    assert registry.rows("n_cases") == [(1,)]
    placed = dict(registry.con.execute("SELECT patient_id, origin_date FROM marts.survival "
                                       "WHERE origin = 'diagnosis'").fetchall())
    assert placed == {"Y1": date(2020, 7, 1), "Y2": date(2020, 1, 21), "M1": date(2020, 3, 16)}
    assert registry.con.execute("SELECT n_rows FROM marts.left_out WHERE mart = 'incidence' "
                                "AND reason LIKE 'age at diagnosis outside%'").fetchall() == [(2,)]


def test_the_interval_of_a_large_count_keeps_its_precision(tmp_path):
    """Garwood's lower limit is the mean at which P(X >= n) = 0.025. Found as the mean at which P(X <= n - 1), a sum
    near 0.975, passed 0.975, it lost 2e-12 of its value at 16,000 cases (a country's main group in a few decades);
    summed as the small tail itself, the limits stay within 1e-13 of the exact ones."""
    registry = Registry(tmp_path, ITALY_2020_2021)
    n_cases = 16_000
    for table, columns, values in (
            ("patient", "patient_id, country, n_sources", "'P' || i, 'IT', 1"),
            ("diagnosis", "diagnosis_id, patient_id, event_type, diagnosis_date, diagnosis_date_precision, "
                          "age_at_diagnosis_days, iccc3_group, iccc3_subgroup, icdo3_behaviour, is_very_rare",
             "'d-P' || i, 'P' || i, 'initial', DATE '2020-05-01', 'day', 3000, 'XI', 'XI(b)', '3', true")):
        registry.con.execute(
            f"INSERT INTO core.{table} (source_id, source_file_sha256, run_id, source_record_key, {columns}) "
            f"SELECT 'registry', repeat('0', 64), 'r1', '{table}-' || i, {values} FROM range({n_cases}) AS cases(i)")
    ((n, lower, upper),) = registry.rows("n_cases, incidence_ci_lower, incidence_ci_upper")
    per_million = 1e6 / 2_000_000
    assert n == n_cases
    assert lower == pytest.approx(chi2.ppf(0.025, 2 * n_cases) / 2 * per_million, rel=1e-13)
    assert upper == pytest.approx(chi2.ppf(0.975, 2 * n_cases + 2) / 2 * per_million, rel=1e-13)
