-- marts.left_out: one row per mart x reason: the core rows (or patients) a mart leaves out, and
-- why, so an analyst reading a mart knows what it does not count. Every reason has a row, with 0
-- when nothing is left out.
--
-- Reasons
--   adverse_events, response: a record pointing to a treatment that is not in core (its
--     treatment form is missing or was held back; rule XT-TREATMENT-KNOWN lists each one), and a
--     record with no treatment at all; neither can be attributed to a drug or regimen.
--   response: an assessment at a timepoint the mart does not report (end of treatment, ...); one dated
--     before its line started (a baseline filed under the line, or a date error: no response to it); and
--     another assessment of the same person's line and timepoint: at cycle 1 a later one (the earliest
--     evaluable counts), at best a lesser one (the best counts), or the same line reported by another
--     source (marts.response_line: each line once).
--   survival_km, survival_landmark: a patient x origin whose OS or EFS time is unknown in
--     marts.survival (no date ends the follow-up: no contact dated, nor a death; a death without a
--     date counts at the end of follow-up), or negative (it ends before the origin: a date error in a source).
--   survival: a patient who died before the recommendation of their first submission in the advice
--     comparison, left out of the origin recommendation (never at risk while the advice existed).
--   survival, origin diagnosis (patients): a malignant initial diagnosis that no population-based registry
--     registered (the patient is known only to studies, which enrol after the diagnosis: left truncation); a
--     registered patient with no initial diagnosis known to be malignant (is_malignant), or whose malignant one is
--     known from a death certificate only, or is undated; and a patient who died before the first day the diagnosis
--     can be on. A patient without any dated contact keeps a row with an unknown time (survival_km above).
--   incidence: a case (person x ICCC-3 subgroup, as marts.incidence counts it: the first initial
--     diagnosis in a population-based registry, in a year it counts) whose age at diagnosis is unknown
--     (no birth date), or outside the population table's band (e.g. 18 in 0-17; one known only to its
--     month or year aged where marts.incidence places it).
--   survival, response: endpoints (death, relapse, progression, response) carried by records
--     held back in dq.quarantine that core does not hold otherwise (n_missed of
--     marts.held_back_endpoints, which lists the records).
--   survival: follow-up and diagnosis records refused while being read, whose death, relapse
--     or progression, if any, is not known (endpoint unknown in marts.held_back_endpoints).

CREATE OR REPLACE TABLE marts.left_out AS
WITH treatment_reference AS (
    SELECT 'adverse_events' AS mart, treatment_id, treatment_id IN (SELECT treatment_id FROM core.treatment) AS is_known
    FROM core.adverse_event
    UNION ALL
    SELECT 'response', treatment_id, treatment_id IN (SELECT treatment_id FROM core.treatment)
    FROM core.response_assessment
    WHERE timepoint IN ('cycle1', 'best')
),

response_of_line AS (
    -- The assessments of a known treatment, as marts.response_line reads them: those dated before their line started
    -- are no response to it; of the others, a person's line counts once per timepoint.
    SELECT count(*) FILTER (WHERE response.assessment_date < line.start_date) AS before_start,
           count(*) FILTER (WHERE response.assessment_date < line.start_date IS NOT true)
           - (SELECT count(*) FROM marts.response_line) AS repeated
    FROM (SELECT start_date, unnest(treatment_ids) AS treatment_id FROM marts.treatment_line) AS line
    JOIN core.response_assessment AS response USING (treatment_id)
    WHERE response.timepoint IN ('cycle1', 'best')
),

held_back AS (
    SELECT
        CASE endpoint WHEN 'response' THEN 'response' ELSE 'survival' END AS mart,
        endpoint,
        sum(n_missed) AS n,
        sum(n_records) AS n_records
    FROM marts.held_back_endpoints
    GROUP BY ALL
),

survival_time AS (  -- a time unknown (no end date) or negative, per endpoint, for both marts of the estimates
    SELECT mart, endpoint, count(*) FILTER (WHERE end_date IS NULL) AS unknown,
           count(*) FILTER (WHERE end_date < origin_date) AS negative
    FROM marts.survival
    CROSS JOIN LATERAL (SELECT 'OS' AS endpoint, os_end_date AS end_date
                        UNION ALL SELECT 'EFS', efs_end_date)
    CROSS JOIN (SELECT 'survival_km' AS mart UNION ALL SELECT 'survival_landmark')
    GROUP BY ALL
),

initial_diagnosis AS (
    -- As marts.survival's origin diagnosis: per patient with an initial diagnosis, what keeps them out of it.
    SELECT
        patient_id,
        bool_or(source_id IN (SELECT source_id FROM stage.source_params WHERE population_based)) AS is_registered,
        bool_or(is_malignant(icdo3_behaviour)) AS has_malignant,
        bool_or(is_malignant(icdo3_behaviour) AND coalesce(basis_of_diagnosis, '') <> '0') AS has_malignant_not_dco,
        bool_or(is_malignant(icdo3_behaviour) AND coalesce(basis_of_diagnosis, '') <> '0'
                AND diagnosis_date IS NOT NULL) AS has_origin
    FROM core.diagnosis
    WHERE event_type = 'initial' AND patient_id IN (SELECT patient_id FROM core.patient)
    GROUP BY patient_id
),

registered_diagnosis AS (  -- as marts.incidence: initial diagnoses of the population-based registries, aged so
    SELECT registered.*, registered_age_years(registered, summary.follow_up_end_date) AS age_years
    FROM incidence_registered() AS registered
    LEFT JOIN marts.patient_summary AS summary USING (patient_id)
),

incidence_case AS (
    -- Each first case, in a year marts.incidence counts (up to the year before the latest export, with a
    -- population figure), with the band of that figure.
    SELECT first_case.*, child.min_age_years, child.max_age_years
    FROM (
        SELECT country, patient_id, iccc3_group, iccc3_subgroup, year(min(diagnosis_date)) AS diagnosis_year,
               arg_min(age_years, (came_first(diagnosis_date, diagnosis_date_precision), age_years)) AS age_years
        FROM registered_diagnosis
        GROUP BY ALL
    ) AS first_case
    JOIN (
        SELECT registered.country, max(year(export.exported_on)) - 1 AS last_year
        FROM registered_diagnosis AS registered
        JOIN meta.source_file AS export ON export.source_id = registered.source_id AND export.status = 'loaded'
        GROUP BY registered.country
    ) AS period ON period.country = first_case.country AND first_case.diagnosis_year <= period.last_year
    JOIN stage.child_population AS child
        ON child.country = first_case.country AND child.year = first_case.diagnosis_year
),

reason (mart, reason, unit, n_rows) AS (
    SELECT mart, 'points to a treatment that is not in core (missing or held back; XT-TREATMENT-KNOWN)',
           CASE mart WHEN 'adverse_events' THEN 'adverse events' ELSE 'response assessments' END,
           count(*) FILTER (WHERE treatment_id IS NOT NULL AND NOT is_known)
    FROM treatment_reference GROUP BY mart
    UNION ALL
    SELECT mart, 'recorded against no treatment, so not attributed to a drug',
           CASE mart WHEN 'adverse_events' THEN 'adverse events' ELSE 'response assessments' END,
           count(*) FILTER (WHERE treatment_id IS NULL)
    FROM treatment_reference GROUP BY mart
    UNION ALL
    SELECT 'response', 'assessed at a timepoint other than cycle 1 or best response', 'response assessments',
           count(*) FILTER (WHERE timepoint IS NULL OR timepoint NOT IN ('cycle1', 'best'))
    FROM core.response_assessment
    UNION ALL
    SELECT 'response', 'dated before its line started: no response to it (a baseline filed under the line, or a date '
           || 'error)', 'response assessments', before_start
    FROM response_of_line
    UNION ALL
    SELECT 'response', 'another assessment of the same line and timepoint: at cycle 1 a later one (the earliest '
           || 'evaluable counts), at best a lesser one (the best counts), or the same line from another source',
           'response assessments', repeated
    FROM response_of_line
    UNION ALL
    SELECT mart, 'unknown ' || endpoint || ' time in marts.survival: no date ends the follow-up (no contact '
           || 'dated, nor a death)', 'patients x origins', unknown
    FROM survival_time
    UNION ALL
    SELECT mart, 'negative ' || endpoint || ' time in marts.survival: it ends before the origin (a date error in '
           || 'a source)', 'patients x origins', negative
    FROM survival_time
    UNION ALL
    SELECT 'survival', 'died before the recommendation: never at risk while the advice existed (origin recommendation)',
           'patients', (SELECT count(DISTINCT patient_id) FROM marts.board_advice
                        WHERE advice_group IN ('followed', 'not_followed') AND recommendation_date IS NOT NULL)
                       - (SELECT count(*) FROM marts.survival WHERE origin = 'recommendation')
    UNION ALL
    SELECT 'survival', 'a malignant initial diagnosis no population-based registry registered: a study enrols after '
           || 'the diagnosis, so only who lived to enrol would count (left truncation; origin diagnosis)', 'patients',
           count(*) FILTER (WHERE has_malignant AND NOT is_registered)
    FROM initial_diagnosis
    UNION ALL
    SELECT 'survival', 'no initial diagnosis known to be malignant (behaviour /3; e.g. 8825/1, a benign '
           || 'CNS tumour, a behaviour not given; origin diagnosis)', 'patients',
           count(*) FILTER (WHERE is_registered AND NOT has_malignant)
    FROM initial_diagnosis
    UNION ALL
    SELECT 'survival', 'malignant initial diagnosis known from a death certificate only (basis 0): no survival time '
           || '(origin diagnosis)', 'patients',
           count(*) FILTER (WHERE is_registered AND has_malignant AND NOT has_malignant_not_dco)
    FROM initial_diagnosis
    UNION ALL
    SELECT 'survival', 'malignant initial diagnosis without a date (origin diagnosis)', 'patients',
           count(*) FILTER (WHERE is_registered AND has_malignant_not_dco AND NOT has_origin)
    FROM initial_diagnosis
    UNION ALL
    SELECT 'survival', 'died before the initial diagnosis: never at risk from it (a diagnosis at autopsy, or a date '
           || 'error; origin diagnosis)', 'patients',
           (SELECT count(*) FILTER (WHERE is_registered AND has_origin) FROM initial_diagnosis)
           - (SELECT count(*) FROM marts.survival WHERE origin = 'diagnosis')
    UNION ALL
    SELECT 'incidence', 'age at diagnosis unknown (no birth date): not placed in the age band', 'cases',
           count(*) FILTER (WHERE age_years IS NULL)
    FROM incidence_case
    UNION ALL
    SELECT 'incidence', 'age at diagnosis outside the age band of the population table (e.g. 18 in 0-17)', 'cases',
           count(*) FILTER (WHERE NOT age_years BETWEEN min_age_years AND max_age_years)
    FROM incidence_case
    UNION ALL
    SELECT all_marts.mart, endpoint.endpoint || ' carried by a record held back in dq.quarantine, not in core otherwise '
           || '(marts.held_back_endpoints)', endpoint.unit, coalesce(held_back.n, 0)
    FROM (SELECT 'survival' AS mart UNION ALL SELECT 'response') AS all_marts
    JOIN (VALUES ('survival', 'death', 'deaths'), ('survival', 'relapse', 'relapses'),
                 ('survival', 'progression', 'progressions'), ('response', 'response', 'response assessments'))
        AS endpoint (mart, endpoint, unit) USING (mart)
    LEFT JOIN held_back USING (mart, endpoint)
    UNION ALL
    SELECT 'survival', 'a follow-up or diagnosis record refused while being read: a death, relapse or progression '
           || 'it may carry is not known (marts.held_back_endpoints, endpoint unknown)', 'records',
           coalesce((SELECT sum(n_records) FROM held_back WHERE endpoint = 'unknown'), 0)
)

SELECT mart, reason, unit, n_rows::BIGINT AS n_rows
FROM reason
ORDER BY mart, reason;

COMMENT ON TABLE marts.left_out IS 'What each mart leaves out and why: one row per mart and reason, with the number of rows left out (0 when none), so an analyst knows what a mart does not count.';
COMMENT ON COLUMN marts.left_out.mart IS 'The mart that leaves the rows out. Codes: adverse_events / incidence / response / survival / survival_km / survival_landmark.';
COMMENT ON COLUMN marts.left_out.reason IS 'Why the rows are left out, in words (the rule or mart that explains it in brackets).';
COMMENT ON COLUMN marts.left_out.unit IS 'What a left-out row is: adverse events, response assessments, patients, patients x origins, deaths, relapses, progressions, records, cases (person x ICCC-3 subgroup).';
COMMENT ON COLUMN marts.left_out.n_rows IS 'How many are left out. Unit: rows (see unit).';
