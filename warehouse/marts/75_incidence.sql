-- marts.incidence: one row per country x ICCC-3 main group (level main_group) and per country x
-- ICCC-3 subgroup (level subgroup): incidence per million children per year from the
-- population-based registries, and the very-rare flag computed from it beside the fixed list.
--
-- Definitions
--   sources: those with the parameter population_based: true (stage.source_params), e.g. TREP;
--     a trial or a hospital registry does not see every case and gives no incidence.
--   case: a person's first initial diagnosis (core.diagnosis, event_type initial) in the group,
--     whichever population-based sources of the country register it (counted once), with a known
--     date and ICCC-3 class; country: the person's country as that source records it (else as core.patient
--     has it); one no source gives is unknown (NULL), and its cases are counted as a country's without
--     population figures.
--   age band: the population table's (stage.child_population, one band per country, e.g. 0-17):
--     cases count when the age at diagnosis, in completed years (completed_years of
--     rule_functions.sql: on the calendar, as the age rules count it), lies in the band, so numerator
--     and denominator cover the same children. A diagnosis known only to its month or year is aged on the
--     day marts.survival places it on (placed_age_years of mart_functions.sql: mid-month or mid-year, not
--     before the birth, not after another diagnosis, a treatment start or the end of follow-up); its first
--     day made a child born in March 2002 and diagnosed "in 2020" 17, who is 18 on 1 July 2020.
--   period: from the first year of any initial diagnosis of the country's sources (every group, any
--     age: it shows registration had begun) to the year before the latest export of its sources
--     (the current year is never complete), keeping the years the population table has; cases of
--     other years are not counted. A country with cases but no population figures has its rows all
--     the same: the cases of its period at any age, and no person_years, incidence or flag.
--   incidence_per_million = n_cases / person_years * 1,000,000, person_years = the sum over the
--     period of the population on 1 January of each year: a crude rate over the one band, not
--     age-standardised. Its exact (Garwood) 95% interval: the Poisson means at which P(X >= n_cases) and
--     P(X <= n_cases) are 0.025, over the same person-years (1 case in 2 million: 0.013 to 2.79 per million).
--   is_very_rare_by_incidence: incidence_per_million < 2 (the EXPeRT / PARTNER definition: fewer
--     than 2 per million per year; exactly 2 is not very rare); NULL without population figures.
--   is_very_rare_listed: every case is a very rare tumour by the fixed list (core.diagnosis.is_very_rare).

-- poisson_pmf(j, mean): P(X = j) for X Poisson with that mean (> 0).
CREATE OR REPLACE TEMP MACRO poisson_pmf(j, mean) AS exp(j * ln(mean) - mean - lgamma(j + 1));
-- poisson_between(first, last, mean): P(first <= X <= last), a first below 0 counting from 0.
CREATE OR REPLACE TEMP MACRO poisson_between(first, last, mean) AS coalesce(list_sum(list_transform(
    range(greatest(first, 0)::BIGINT, (last + 1)::BIGINT), lambda j: poisson_pmf(j, mean))), 0);

CREATE OR REPLACE TABLE marts.incidence AS
WITH RECURSIVE registered AS (  -- initial diagnoses of the population-based sources (incidence_registered of mart_functions.sql)
    -- aged on the day one known only to its month or year is placed on, as marts.survival places its origin diagnosis
    -- (registered_age_years): not before the birth, not after another diagnosis or a treatment start, nor the end of
    -- follow-up
    SELECT registered.*, registered_age_years(registered, summary.follow_up_end_date) AS age_years
    FROM incidence_registered() AS registered
    LEFT JOIN marts.patient_summary AS summary USING (patient_id)
),

period AS (
    SELECT
        registered.country,
        min(year(registered.diagnosis_date)) AS first_year,
        max(year(export.exported_on)) - 1 AS last_year
    FROM registered
    JOIN meta.source_file AS export ON export.source_id = registered.source_id AND export.status = 'loaded'
    GROUP BY registered.country
),

population AS (
    SELECT
        period.country,
        period.first_year,
        period.last_year,
        child.year,
        child.population,
        child.age_band,
        child.min_age_years,
        child.max_age_years,
        child.source LIKE 'approximation%' AS is_approximate
    FROM period
    JOIN stage.child_population AS child
        ON child.country = period.country AND child.year BETWEEN period.first_year AND period.last_year
),

exposure AS (
    SELECT
        country,
        any_value(age_band) AS age_band,
        any_value(min_age_years) AS min_age_years,
        any_value(max_age_years) AS max_age_years,
        count(*) AS n_years,
        count(*) FILTER (WHERE is_approximate) AS n_years_approximate,
        sum(population) AS person_years
    FROM population
    GROUP BY country
),

first_case AS (
    -- One case per person and subgroup: the first diagnosis any of the country's registries gives, aged as the one
    -- that must have come first (came_first, as marts.survival chooses its origin diagnosis; its year is the
    -- earliest's: a period that holds the other's lies within one year).
    SELECT
        registered.country,
        registered.patient_id,
        registered.iccc3_group,
        registered.iccc3_subgroup,
        year(min(registered.diagnosis_date)) AS diagnosis_year,
        arg_min(registered.age_years, (came_first(registered.diagnosis_date, registered.diagnosis_date_precision),
                                       registered.age_years)) AS age_years,
        bool_or(registered.is_very_rare) AS is_very_rare
    FROM registered
    GROUP BY ALL
),

counted_case AS (
    -- A country without population figures keeps its cases of the period, at any age (it has no band),
    -- so that it shows with its cases and no incidence rather than not at all.
    SELECT first_case.*
    FROM first_case
    JOIN period ON period.country IS NOT DISTINCT FROM first_case.country  -- an unknown country is one too
    LEFT JOIN exposure ON exposure.country = first_case.country
    LEFT JOIN population
        ON population.country = first_case.country AND population.year = first_case.diagnosis_year
    WHERE CASE WHEN exposure.country IS NULL
               THEN first_case.diagnosis_year BETWEEN period.first_year AND period.last_year
               ELSE population.year IS NOT NULL
                    AND first_case.age_years BETWEEN exposure.min_age_years AND exposure.max_age_years END
),

counted AS (
    SELECT
        country,
        CASE WHEN grouping(iccc3_subgroup) = 1 THEN 'main_group' ELSE 'subgroup' END AS level,
        iccc3_group,
        iccc3_subgroup,
        count(DISTINCT patient_id) AS n_cases,
        count(DISTINCT patient_id) FILTER (WHERE is_very_rare) AS n_cases_listed_very_rare
    FROM counted_case
    GROUP BY GROUPING SETS ((country, iccc3_group), (country, iccc3_group, iccc3_subgroup))
),

poisson_limit (n_cases, is_upper, mean, change, step) AS (
    -- Garwood's exact 95% limits of a Poisson count n, once per count: the lower is the mean at which
    -- P(X >= n) = 0.025 (0 for n = 0), the upper the mean at which P(X <= n) = 0.025. Newton's method (the slope
    -- of either tail is P(X = n - 1), resp. -P(X = n)) from the Wilson-Hilferty approximation of the chi-square
    -- quantiles they are (2 x lower = chi2(0.025; 2n), 2 x upper = chi2(0.975; 2n + 2)), until a step moves the
    -- mean by less than 1e-13 of it (2 to 5 steps up to n = 100,000; 30 at most). Each tail is summed from n outwards, over the terms within
    -- 10 sqrt(n) + 40 of n (the others weigh less than 1e-20 of it at the limit): 1.5 thousand terms, not
    -- 20 thousand, at n = 20,000, and the small tail itself, not 1 - the rest, keeps the lower limit within 1e-13.
    SELECT n_cases, is_upper,
           (n_cases + is_upper::INTEGER)
               * pow(1 - 1 / (9 * (n_cases + is_upper::INTEGER))
                     + CASE WHEN is_upper THEN 1.959963984540054 ELSE -1.959963984540054 END
                       / (3 * sqrt(n_cases + is_upper::INTEGER)), 3),
           NULL::DOUBLE, 0
    FROM (SELECT DISTINCT n_cases FROM counted) AS count
    CROSS JOIN (VALUES (false), (true)) AS side(is_upper)
    WHERE n_cases > 0 OR is_upper
    UNION ALL
    SELECT n_cases, is_upper, mean + newton_step, newton_step, step + 1
    FROM (SELECT *,
                 CASE WHEN is_upper
                      THEN (poisson_between(n_cases - 10 * sqrt(n_cases) - 40, n_cases, mean) - 0.025)
                           / poisson_pmf(n_cases, mean)
                      ELSE (0.025 - poisson_between(n_cases, n_cases + 10 * sqrt(n_cases) + 40, mean))
                           / poisson_pmf(n_cases - 1, mean) END AS newton_step
          FROM poisson_limit
          WHERE (change IS NULL OR abs(change) > 1e-13 * mean) AND step < 30)
),

count_interval AS (  -- each side's last step: the loop stops there
    SELECT n_cases, coalesce(arg_max(mean, step) FILTER (WHERE NOT is_upper), 0) AS lower_mean,
           arg_max(mean, step) FILTER (WHERE is_upper) AS upper_mean
    FROM poisson_limit
    GROUP BY n_cases
)

SELECT
    counted.country,
    counted.level,
    counted.iccc3_group,
    counted.iccc3_subgroup,
    exposure.age_band,
    period.first_year,
    period.last_year,
    coalesce(exposure.n_years, 0) AS n_years,
    coalesce(exposure.n_years_approximate, 0) AS n_years_approximate,
    counted.n_cases,
    exposure.person_years,
    counted.n_cases * 1e6 / exposure.person_years AS incidence_per_million,
    count_interval.lower_mean * 1e6 / exposure.person_years AS incidence_ci_lower,
    count_interval.upper_mean * 1e6 / exposure.person_years AS incidence_ci_upper,
    counted.n_cases * 1e6 / exposure.person_years < 2 AS is_very_rare_by_incidence,
    counted.n_cases_listed_very_rare,
    counted.n_cases_listed_very_rare = counted.n_cases AS is_very_rare_listed
FROM counted
JOIN period ON period.country IS NOT DISTINCT FROM counted.country
LEFT JOIN exposure ON exposure.country = counted.country
JOIN count_interval USING (n_cases)
ORDER BY counted.country, counted.iccc3_group, counted.level, counted.iccc3_subgroup;

COMMENT ON TABLE marts.incidence IS 'Incidence per million children per year by country and ICCC-3 main group or subgroup, from the population-based registries (source parameter population_based) and the child population table, with the very-rare flag (< 2 per million per year) computed beside the fixed list (docs/endpoints.md).';
COMMENT ON COLUMN marts.incidence.country IS 'Country of residence as the registry records it; NULL when no source gives it (cases counted, no incidence). Codes: ISO 3166-1 alpha-2.';
COMMENT ON COLUMN marts.incidence.level IS 'Whether the row is an ICCC-3 main group or a subgroup. Codes: main_group / subgroup.';
COMMENT ON COLUMN marts.incidence.iccc3_group IS 'ICCC-3 main group. Codes: ICCC-3 main group (I to XII).';
COMMENT ON COLUMN marts.incidence.iccc3_subgroup IS 'ICCC-3 subgroup; NULL on a main_group row. Codes: ICCC-3 subgroup.';
COMMENT ON COLUMN marts.incidence.age_band IS 'Ages counted, in completed years, from the population table (e.g. 0-17); NULL without population figures (cases of every age counted).';
COMMENT ON COLUMN marts.incidence.first_year IS 'First year of the period: the first year of any initial diagnosis the country''s registries give (every group, any age). Unit: year.';
COMMENT ON COLUMN marts.incidence.last_year IS 'Last year of the period: the year before the latest export of the country''s registries. Unit: year.';
COMMENT ON COLUMN marts.incidence.n_years IS 'Years of the period with a population figure (the only years counted). Unit: years.';
COMMENT ON COLUMN marts.incidence.n_years_approximate IS 'Of those, years whose population figure is an approximation (the table''s source column says how it was derived). Unit: years.';
COMMENT ON COLUMN marts.incidence.n_cases IS 'Persons first diagnosed in the group in those years, at an age in the band. Unit: persons.';
COMMENT ON COLUMN marts.incidence.person_years IS 'Sum of the yearly child populations (on 1 January) over those years; NULL without population figures. Unit: person-years.';
COMMENT ON COLUMN marts.incidence.incidence_per_million IS 'n_cases / person_years * 1,000,000; NULL without population figures. Unit: cases per million children per year.';
COMMENT ON COLUMN marts.incidence.incidence_ci_lower IS 'Lower limit of the exact (Garwood) 95% Poisson interval of incidence_per_million; 0 for no case; NULL without population figures. Unit: cases per million children per year.';
COMMENT ON COLUMN marts.incidence.incidence_ci_upper IS 'Upper limit of the exact (Garwood) 95% Poisson interval of incidence_per_million; NULL without population figures. Unit: cases per million children per year.';
COMMENT ON COLUMN marts.incidence.is_very_rare_by_incidence IS 'Very rare by incidence: fewer than 2 per million children per year (exactly 2 is not); NULL without population figures.';
COMMENT ON COLUMN marts.incidence.n_cases_listed_very_rare IS 'Cases that the fixed very-rare list (core.diagnosis.is_very_rare) flags. Unit: persons.';
COMMENT ON COLUMN marts.incidence.is_very_rare_listed IS 'Every case of the row is very rare by the fixed list.';
