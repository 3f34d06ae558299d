-- rule_id: ENR-AGE-ELIGIBLE
-- category: plausibility
-- subcategory: validation
-- level: field
-- severity: error
-- threshold: 0
-- table: study_enrolment
-- field: age_at_enrolment_days
-- scope: age_at_enrolment_days IS NOT NULL
-- params: min_age_years, max_age_years
-- description: The patient is outside the age range the study or registry enrols at inclusion (its min_age_years to max_age_years): the birth or enrolment date is wrong, or the patient was not eligible.
-- expected: an age at enrolment within the source's range (max_age_years x 365.25 days at most)
-- Grain: one row per enrolment record outside its source's range; a missing bound does not limit.
WITH enrolment AS (
    SELECT e.source_id, e.source_record_key, e.age_at_enrolment_days AS age_days,
           p.min_age_years, p.max_age_years
    FROM study_enrolment e
    JOIN source_params p USING (source_id)
    WHERE e.age_at_enrolment_days IS NOT NULL
)
SELECT source_id, source_record_key, age_days::VARCHAR AS value,
       'age at enrolment ' || round(age_days / 365.25, 1) || ' years; the source enrols from '
       || coalesce(min_age_years::VARCHAR, '0') || ' to ' || coalesce(max_age_years::VARCHAR, 'any age')
       || ' years (params min_age_years, max_age_years)' AS message
FROM enrolment
WHERE age_days < min_age_years * 365.25 OR age_days > max_age_years * 365.25
